"""What one audience, in one language, may read of a report: the shared input of every renderer.

The audience rule is the terminal summary's (``grader.summary``): an instructor sees everything; a
student sees of a hidden test its name, kind, result and hint, or only the name and result when the
test says so, and never its detail or evidence (expected values, error maps, timings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grader.i18n import Lang, Msg
from grader.summary import KIND, STATUS, VISIBILITY, WORDS
from grader.verdicts import Status

AUDIENCES = ("student", "instructor")
OUTPUT_SHOWN = 20_000  # characters of captured output a rendering keeps (report.json keeps its own cap)
KINDS = ("shape", "gradient", "accuracy", "speed")


@dataclass
class TestView:
    name: str
    label: str  # the test's name without ``test_``
    task: str
    kind: str
    kind_label: str
    visibility: str
    visibility_label: str
    status: str
    status_label: str
    passed: bool
    score: float
    max_score: float
    message: str | None
    evidence: list[dict[str, Any]]
    duration_s: float


@dataclass
class ExerciseView:
    id: str
    title: str
    submitted: bool
    problem: str | None
    score: float
    max_score: float
    tests: list[TestView]
    by_kind: list[tuple[str, float, float]]  # (kind label, score, max) for kinds the exercise has
    output: str
    output_cut: bool

    @property
    def failed(self) -> list[TestView]:
        return [t for t in self.tests if not t.passed]

    @property
    def passed_count(self) -> int:
        return sum(t.passed for t in self.tests)


@dataclass
class ReportView:
    lang: Lang
    audience: str
    student: str
    status: str
    refusal: str | None
    score: float
    max_score: float
    complete: bool
    exercises: list[ExerciseView]
    warnings: list[str]
    environment: list[tuple[str, str]]
    files: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    duration_s: float = 0.0
    finished_at: str = ""

    @property
    def percent(self) -> float:
        return 100 * self.score / self.max_score if self.max_score else 0.0


def text(message: dict[str, str] | None, lang: Lang) -> str | None:
    return None if message is None else Msg(message.get("zh", ""), message.get("en", "")).render(lang)


def visible_message(test: dict[str, Any], audience: str, lang: Lang) -> str | None:
    if audience == "instructor" or test.get("shows") == "all":
        return text(test.get("detail") or test.get("message"), lang)
    if test.get("shows") == "name":
        return None
    return text(test.get("message"), lang)


def visible_evidence(test: dict[str, Any], audience: str) -> list[dict[str, Any]]:
    """Evidence is detail: an instructor's, and a student's only where the test shows everything.
    A mismatch of a test that passed (a check that tried one convention, then another) is noise."""
    if audience != "instructor" and test.get("shows") != "all":
        return []
    evidence = list(test.get("evidence") or [])
    if test.get("status") == "passed":
        evidence = [e for e in evidence if e.get("kind") != "mismatch"]
    return evidence


def build_view(report: dict[str, Any], lang: Lang, audience: str) -> ReportView:
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {', '.join(AUDIENCES)}, not {audience!r}")
    exercises = [_exercise(e, lang, audience) for e in report.get("exercises", [])]
    return ReportView(
        lang=lang, audience=audience,
        student=str((report.get("submission") or {}).get("student") or ""),
        status=str(report.get("status", "graded")),
        refusal=text(report.get("refusal"), lang),
        score=float(report.get("score", 0.0)), max_score=float(report.get("max_score", 0.0)),
        complete=bool(report.get("complete", True)),
        exercises=exercises,
        warnings=[text(w, lang) or "" for w in report.get("warnings") or []],
        environment=_environment(report, lang),
        files=_files(report, lang),
        duration_s=float(report.get("duration_s", 0.0)),
        finished_at=str(report.get("finished_at", "")),
    )


def _exercise(data: dict[str, Any], lang: Lang, audience: str) -> ExerciseView:
    tests = [_test(t, lang, audience) for t in data.get("tests", [])]
    by_kind = []
    for kind in KINDS:
        of_kind = [t for t in tests if t.kind == kind]
        if of_kind:
            by_kind.append((KIND[kind].render(lang), sum(t.score for t in of_kind), sum(t.max_score for t in of_kind)))
    output = str(data.get("output") or "")
    return ExerciseView(
        id=str(data.get("id", "")), title=text(data.get("title"), lang) or "",
        submitted=bool(data.get("submitted", True)), problem=text(data.get("problem"), lang),
        score=float(data.get("score", 0.0)), max_score=float(data.get("max_score", 0.0)),
        tests=tests, by_kind=by_kind,
        output=output[:OUTPUT_SHOWN], output_cut=len(output) > OUTPUT_SHOWN or bool(data.get("output_truncated")),
    )


def _test(data: dict[str, Any], lang: Lang, audience: str) -> TestView:
    status = str(data.get("status", "failed"))
    try:
        status_label = STATUS[Status(status)].render(lang)
    except ValueError:
        status_label = status
    kind = str(data.get("kind", ""))
    visibility = str(data.get("visibility", "hidden"))
    return TestView(
        name=str(data.get("name", "")), label=str(data.get("name", "")).removeprefix("test_"),
        task=str(data.get("task", "")), kind=kind,
        kind_label=KIND[kind].render(lang) if kind in KIND else kind,
        visibility=visibility,
        visibility_label=VISIBILITY[visibility].render(lang) if visibility in VISIBILITY else visibility,
        status=status, status_label=status_label, passed=status == "passed",
        score=float(data.get("score", 0.0)), max_score=float(data.get("max_score", 0.0)),
        message=None if status == "passed" else visible_message(data, audience, lang),
        evidence=visible_evidence(data, audience),
        duration_s=float(data.get("duration_s", 0.0)),
    )


ENVIRONMENT_LABELS = {
    "tool": Msg("评测工具版本", "tool version"),
    "course": Msg("课程", "course"),
    "sandbox": Msg("沙箱", "sandbox"),
    "image": Msg("镜像", "image"),
    "device": Msg("设备", "device"),
    "torch": Msg("PyTorch 版本", "PyTorch version"),
    "seed": WORDS["seed"],
    "finished": Msg("完成时间", "finished at"),
}


def _environment(report: dict[str, Any], lang: Lang) -> list[tuple[str, str]]:
    course = report.get("course") or {}
    sandbox = report.get("sandbox") or {}
    env = report.get("environment") or {}
    devices = env.get("devices") or []
    device = ", ".join(str(d) for d in devices) if devices else "cpu"
    if env.get("cuda") or env.get("driver"):
        device += f" (CUDA {env.get('cuda') or '?'}, driver {env.get('driver') or '?'})"
    rows = [
        ("tool", str(report.get("tool_version", ""))),
        ("course", " ".join(str(course.get(k, "")) for k in ("id", "version") if course.get(k))),
        ("sandbox", str(sandbox.get("backend", ""))),
        ("image", str(sandbox.get("image", "") or "")),
        ("device", device),
        ("torch", str(env.get("torch", "") or "")),
        ("seed", str(report.get("seed_id", ""))),
        ("finished", str(report.get("finished_at", ""))),
    ]
    return [(ENVIRONMENT_LABELS[key].render(lang), value) for key, value in rows if value]


def _files(report: dict[str, Any], lang: Lang) -> dict[str, list[dict[str, str]]]:
    files = (report.get("submission") or {}).get("files") or {}
    shown: dict[str, list[dict[str, str]]] = {}
    for disposition in ("graded", "ignored", "refused"):
        entries = files.get(disposition) or []
        if entries:
            shown[WORDS[disposition].render(lang)] = [
                {"path": str(e.get("path", "")), "reason": text(e.get("reason"), lang) or ""} for e in entries]
    return shown
