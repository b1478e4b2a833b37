"""A readable summary of results for the terminal (rich)."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.text import Text

from grader.i18n import Lang, Msg
from grader.report import Report, TestResult
from grader.verdicts import Status

STYLE = {
    Status.PASSED: ("✔", "green"),
    Status.NOT_RUN: ("–", "magenta"),
    Status.NOT_SUBMITTED: ("∅", "yellow"),
    Status.NOT_IMPLEMENTED: ("…", "yellow"),
}
LABEL = {
    "en": {"exercise": "Exercise", "score": "Score", "total": "Total", "seed": "seed id",
           "output": "captured output", "report": "report"},
    "zh": {"exercise": "练习", "score": "得分", "total": "总分", "seed": "种子编号",
           "output": "捕获的输出", "report": "报告"},
}


def _first_lines(text: str, n: int = 4) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[:n]) + ("\n…" if len(lines) > n else "")


def _print_tests(tests: Iterable[TestResult], lang: Lang, console: Console) -> None:
    for test in tests:
        mark, style = STYLE.get(test.status, ("✘", "red"))
        line = Text(f"  {mark} ", style=style)
        line.append(f"{test.task} · {test.name.removeprefix('test_')} ")
        line.append(f"{test.score:g}/{test.max_score:g} ", style="bold")
        line.append(f"[{test.kind}, {test.visibility}] {test.status.value}", style=style)
        console.print(line)
        if test.message and test.status != Status.PASSED:
            for message_line in _first_lines(test.message.render(lang)).splitlines():
                console.print(Text(f"      {message_line}", style="dim" if test.status == Status.NOT_RUN else ""))


def print_report(report: Report, console: Console | None = None, show_passed: bool = False) -> None:
    console = console or Console()
    words = LABEL[report.lang]
    for warning in report.warnings:
        console.print(f"[yellow]⚠ {warning.render(report.lang)}[/]")
    for exercise in report.exercises:
        passed = sum(t.status == Status.PASSED for t in exercise.tests)
        console.print(Text.assemble(
            (f"{exercise.id} · {exercise.title.render(report.lang)}", "bold"),
            f"  {exercise.score:g}/{exercise.max_score:g}  ", (f"{passed}/{len(exercise.tests)} ✔", "green")))
        _print_tests([t for t in exercise.tests if show_passed or t.status != Status.PASSED], report.lang, console)
        if exercise.output.strip():
            console.print(f"  [dim]{words['output']}:[/] {_first_lines(exercise.output, 3)!r}")
    pct = 100 * report.score / report.max_score if report.max_score else 0.0
    console.print(f"[bold]{words['total']}: {report.score:g}/{report.max_score:g} ({pct:.1f}%)[/]"
                  f"  [dim]{words['seed']} {report.seed_id}[/]")


def results_table(results: list[TestResult], lang: Lang, writer: Any) -> None:
    """Scores at the end of a plain ``pytest autotests`` run."""
    console = Console(file=writer._file if hasattr(writer, "_file") else None)
    _print_tests(results, lang, console)
    score = sum(r.score for r in results)
    total = sum(r.max_score for r in results)
    console.print(f"[bold]{LABEL[lang]['score']}: {score:g}/{total:g}[/]")


def print_check_scope(run: Any, console: Console) -> None:
    """After ``grader check``: per exercise, what ran here and what is graded only after hand-in."""
    lang: Lang = run.lang
    ran: dict[str, list[TestResult]] = {}
    for result in run.results:
        ran.setdefault(result.exercise, []).append(result)
    for exercise, results in ran.items():
        spec = run.course.spec(exercise)
        kinds: dict[str, int] = {}
        for result in results:
            kinds[result.kind] = kinds.get(result.kind, 0) + 1
        by_kind = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        hidden = [(v, pts) for ex, v, pts in run.deselected if ex == exercise and v == "hidden"]
        tests = spec.hidden_tests if spec.hidden_tests is not None else len(hidden)
        points = spec.hidden_points if spec.hidden_points is not None else sum(p for _, p in hidden)
        console.print(Msg(
            f"{exercise}：本地运行了 {len(results)} 个公开测试（{by_kind}）；隐藏测试 {tests} 个（{points:g} 分）"
            "未在本地运行，提交后评分。",
            f"{exercise}: ran {len(results)} public tests here ({by_kind}); hidden tests: {tests} "
            f"({points:g} points), not run here, graded after you hand in.",
        ).render(lang), highlight=False)
