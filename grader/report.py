"""The report: the record of one grading, written as ``report.json`` and printed as a summary.

``report.json`` is the single source of truth: every message in both languages, every test with
its hint and, apart, the details an instructor may see; renderers (the terminal summary, and
later HTML or Gradescope) choose a language and an audience. Its shape is published as a JSON
Schema (``grader/report.schema.json``) that every report the tests write is validated against.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from grader.i18n import Lang, Msg
from grader.verdicts import Status

SCHEMA_VERSION = "2.0"
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
REPORT_FILE = "report.json"


def msg_json(message: Msg | None) -> dict[str, str] | None:
    return {"zh": message.zh, "en": message.en} if message is not None else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


RegradeCause = Literal["host", "chance"]


@dataclass(frozen=True)
class Regrade:
    """A test graded twice: how the first run ended (what any audience may read of it), why it ran
    again (``host``: a timeout or speed verdict the host's load may have caused; ``chance``: a short
    training run that missed its threshold, run once more on fresh data), and whether the second
    run had the host to itself."""

    first_status: Status
    first_message: Msg | None
    alone: bool
    cause: RegradeCause = "host"


@dataclass
class TestResult:
    __test__ = False  # a result record, not a pytest test class

    name: str
    nodeid: str
    exercise: str
    task: str
    kind: str
    visibility: str
    max_score: float
    score: float
    status: Status
    message: Msg | None = None  # what any audience may read: the observed symptom and a hint
    duration_s: float = 0.0
    detail: Msg | None = None  # inputs, expected values, the numbers: instructors, and students for public tests
    shows: str = "all"  # what a student sees of it: "all", "hint" (no detail) or "name" (pass/fail only)
    regrade: Regrade | None = None  # the first outcome, when the test was graded once more
    evidence: list[dict[str, Any]] = field(default_factory=list)  # figures for renderers (grader.evidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "kind": self.kind,
            "visibility": self.visibility,
            "shows": self.shows,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status.value,
            "message": msg_json(self.message),
            "detail": msg_json(self.detail),
            "duration_s": round(self.duration_s, 3),
            "evidence": self.evidence,
            "regrade": None if self.regrade is None else {
                "first_status": self.regrade.first_status.value,
                "first_message": msg_json(self.regrade.first_message),
                "alone": self.regrade.alone,
                "cause": self.regrade.cause,
            },
        }


@dataclass
class ExerciseResult:
    id: str
    title: Msg
    submitted: bool
    tests: list[TestResult] = field(default_factory=list)
    output: str = ""
    output_truncated: bool = False  # the submission printed more than the report keeps
    problem: Msg | None = None  # why the submitted file could not be graded (intake), if so

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": msg_json(self.title),
            "submitted": self.submitted,
            "problem": msg_json(self.problem),
            "score": self.score,
            "max_score": self.max_score,
            "output": self.output,
            "output_truncated": self.output_truncated,
            "tests": [t.to_json() for t in self.tests],
        }


@dataclass
class Report:
    exercises: list[ExerciseResult]
    status: str = "graded"  # graded, or refused (the archive could not be graded at all)
    refusal: Msg | None = None
    submission: dict[str, Any] = field(default_factory=dict)  # file, sha256, student, files by disposition
    course: dict[str, Any] = field(default_factory=dict)  # id, version, kind, manifest_sha256
    tool_version: str = ""
    complete: bool = True  # False: some tests could not run on this host (status not_run / grader_error)
    lang: Lang = "en"  # the language the summary was printed in
    seed_id: str = ""
    sandbox: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[Msg] = field(default_factory=list)
    started_at: str = field(default_factory=now_iso)
    finished_at: str = ""
    duration_s: float = 0.0
    max_score_override: float | None = None  # a refused archive: what the course is worth

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        if self.max_score_override is not None:
            return self.max_score_override
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "refusal": msg_json(self.refusal),
            "score": self.score,
            "max_score": self.max_score,
            "complete": self.complete,
            "submission": self.submission,
            "course": self.course,
            "tool_version": self.tool_version,
            "lang": self.lang,
            "seed_id": self.seed_id,
            "sandbox": self.sandbox,
            "environment": self.environment,
            "warnings": [msg_json(w) for w in self.warnings],
            "started_at": self.started_at,
            "finished_at": self.finished_at or now_iso(),
            "duration_s": round(self.duration_s, 2),
            "exercises": [e.to_json() for e in self.exercises],
        }

    def write(self, out_dir: Path) -> Path:
        """Write ``report.json`` atomically: a reader sees the old report or the new one, never half."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / REPORT_FILE
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".json", dir=out_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, ensure_ascii=False, indent=2)
        os.replace(tmp, path)
        return path


def clear_report(out_dir: Path) -> None:
    """Remove an older report before grading starts, so a failed run never leaves a stale one."""
    (out_dir / REPORT_FILE).unlink(missing_ok=True)


def validate_report(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``data`` does not follow the published schema."""
    import jsonschema

    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


__all__ = ["SCHEMA_VERSION", "TestResult", "ExerciseResult", "Report", "clear_report", "validate_report"]
