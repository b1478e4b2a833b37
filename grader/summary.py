"""A readable summary of a report for the terminal (rich), in one language, for one audience.

Chinese output is all Chinese and English all English, labels included; numbers and code stay as
they are. The ``student`` audience sees of a hidden test its name, kind, result and the hint (or
less, as the test declares); the ``instructor`` audience sees everything.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.text import Text

from grader.i18n import Lang, Msg
from grader.report import Report, TestResult
from grader.verdicts import Status

MARK = {
    Status.PASSED: ("✔", "green"),
    Status.NOT_RUN: ("–", "magenta"),
    Status.NOT_SUBMITTED: ("∅", "yellow"),
    Status.NOT_IMPLEMENTED: ("…", "yellow"),
}
WORDS: dict[str, Msg] = {
    "points": Msg("得分", "points"),
    "tests_passed": Msg("通过的测试", "tests passed"),
    "total": Msg("总分", "Total"),
    "seed": Msg("种子编号", "seed id"),
    "output": Msg("捕获的输出", "captured output"),
    "truncated": Msg("已截断", "truncated"),
    "graded": Msg("已评分的文件", "graded files"),
    "ignored": Msg("忽略的文件", "ignored files"),
    "refused": Msg("拒收的文件", "refused files"),
    "not_submitted": Msg("未提交", "not submitted"),
    "problem": Msg("文件问题", "file problem"),
}
KIND = {"shape": Msg("形状", "shape"), "gradient": Msg("梯度", "gradient"),
        "accuracy": Msg("准确性", "accuracy"), "speed": Msg("速度", "speed")}
VISIBILITY = {"public": Msg("公开", "public"), "hidden": Msg("隐藏", "hidden")}
STATUS = {
    Status.PASSED: Msg("通过", "passed"), Status.FAILED: Msg("未通过", "failed"),
    Status.NOT_IMPLEMENTED: Msg("未实现", "not implemented"), Status.NOT_SUBMITTED: Msg("未提交", "not submitted"),
    Status.ERROR: Msg("出错", "error"), Status.IMPORT_ERROR: Msg("导入失败", "import failed"),
    Status.TIMED_OUT: Msg("超时", "timed out"), Status.OUT_OF_MEMORY: Msg("内存不足", "out of memory"),
    Status.OUTPUT_LIMIT: Msg("输出过多", "too much output"), Status.CRASHED: Msg("崩溃", "crashed"),
    Status.NOT_RUN: Msg("未运行", "not run"), Status.GRADER_ERROR: Msg("评测程序错误", "grader error"),
}
AUDIENCES = ("student", "instructor")


def _first_lines(text: str, n: int = 4) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[:n]) + ("\n…" if len(lines) > n else "")


def visible_message(test: TestResult, audience: str) -> Msg | None:
    """What ``audience`` may read about ``test``."""
    if audience == "instructor" or test.shows == "all":
        return test.detail or test.message
    if test.shows == "name":
        return None
    return test.message


def _print_tests(tests: Iterable[TestResult], lang: Lang, console: Console, audience: str) -> None:
    for test in tests:
        mark, style = MARK.get(test.status, ("✘", "red"))
        line = Text(f"  {mark} ", style=style)
        line.append(f"{test.task} · {test.name.removeprefix('test_')} ")
        line.append(f"{test.score:g}/{test.max_score:g} ", style="bold")
        sep = "，" if lang == "zh" else ", "
        line.append(f"[{KIND[test.kind].render(lang)}{sep}{VISIBILITY[test.visibility].render(lang)}] "
                    f"{STATUS[test.status].render(lang)}", style=style)
        console.print(line)
        message = visible_message(test, audience) if test.status != Status.PASSED else None
        if message is not None:
            for message_line in _first_lines(message.render(lang)).splitlines():
                console.print(Text(f"      {message_line}", style="dim" if test.status == Status.NOT_RUN else ""))


def _print_files(report: Report, console: Console) -> None:
    lang = report.lang
    files = report.submission.get("files") or {}
    for disposition in ("graded", "ignored", "refused"):
        entries = files.get(disposition) or []
        if not entries:
            continue
        console.print(f"[bold]{WORDS[disposition].render(lang)}[/] ({len(entries)})", highlight=False)
        for entry in entries:
            reason = Msg(**entry["reason"]).render(lang)
            target = f" → {entry['used_as']}" if entry.get("used_as") and not entry["path"].endswith(entry["used_as"]) else ""
            console.print(Text(f"  {entry['path']}{target}: {reason}"), soft_wrap=True)


def print_report(report: Report, console: Console | None = None, show_passed: bool = False,
                 audience: str = "student") -> None:
    console = console or Console()
    lang = report.lang
    _print_files(report, console)
    for warning in report.warnings:
        console.print(f"[yellow]⚠ {warning.render(lang)}[/]")
    for exercise in report.exercises:
        passed = sum(t.status == Status.PASSED for t in exercise.tests)
        full = exercise.max_score > 0 and exercise.score == exercise.max_score
        header = Text.assemble((f"{exercise.id} · {exercise.title.render(lang)}", "bold"), "  ")
        header.append(f"{WORDS['points'].render(lang)} {exercise.score:g}/{exercise.max_score:g}",
                      style="green" if full else "red" if exercise.submitted else "yellow")
        header.append(f"  {WORDS['tests_passed'].render(lang)} {passed}/{len(exercise.tests)}")
        if full:
            header.append(" ✔", style="green")
        if not exercise.submitted:
            header.append(f"  ({WORDS['not_submitted'].render(lang)})", style="yellow")
        console.print(header)
        if exercise.problem is not None:
            console.print(Text(f"  {WORDS['problem'].render(lang)}: {exercise.problem.render(lang)}", style="red"))
        _print_tests([t for t in exercise.tests if show_passed or t.status != Status.PASSED], lang, console, audience)
        if exercise.output.strip():
            cut = f" ({WORDS['truncated'].render(lang)})" if exercise.output_truncated else ""
            console.print(f"  [dim]{WORDS['output'].render(lang)}{cut}:[/] {_first_lines(exercise.output, 3)!r}")
    pct = 100 * report.score / report.max_score if report.max_score else 0.0
    console.print(f"[bold]{WORDS['total'].render(lang)}: {report.score:g}/{report.max_score:g} ({pct:.1f}%)[/]"
                  f"  [dim]{WORDS['seed'].render(lang)} {report.seed_id}[/]")


def results_table(results: list[TestResult], lang: Lang, writer: Any) -> None:
    """Scores at the end of a plain ``pytest autotests`` run."""
    console = Console(file=writer._file if hasattr(writer, "_file") else None)
    _print_tests(results, lang, console, "student")
    score = sum(r.score for r in results)
    total = sum(r.max_score for r in results)
    console.print(f"[bold]{WORDS['points'].render(lang)}: {score:g}/{total:g}[/]")


def print_check_scope(run: Any, console: Console) -> None:
    """After ``grader check``: per exercise, what ran here and what is graded only after hand-in."""
    lang: Lang = run.lang
    ran: dict[str, list[TestResult]] = {}
    for result in run.results:
        ran.setdefault(result.exercise, []).append(result)
    sep = "，" if lang == "zh" else ", "
    for exercise, results in ran.items():
        spec = run.course.spec(exercise)
        kinds: dict[str, int] = {}
        for result in results:
            kinds[result.kind] = kinds.get(result.kind, 0) + 1
        by_kind = sep.join(f"{KIND[kind].render(lang)} {count}" for kind, count in sorted(kinds.items()))
        hidden = [(v, pts) for ex, v, pts in run.deselected if ex == exercise and v == "hidden"]
        tests = spec.hidden_tests if spec.hidden_tests is not None else len(hidden)
        points = spec.hidden_points if spec.hidden_points is not None else sum(p for _, p in hidden)
        console.print(Msg(
            f"{exercise}：本地运行了 {len(results)} 个公开测试（{by_kind}）；隐藏测试 {tests} 个（{points:g} 分）"
            "未在本地运行，提交后评分。",
            f"{exercise}: ran {len(results)} public tests here ({by_kind}); hidden tests: {tests} "
            f"({points:g} points), not run here, graded after you hand in.",
        ).render(lang), highlight=False, soft_wrap=True)
