"""The report: a versioned schema for results, written as ``report.json`` and printed as a summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.i18n import Lang, Msg
from grader.verdicts import Status

SCHEMA_VERSION = "1.1"


@dataclass
class TestResult:
    name: str
    nodeid: str
    exercise: str
    task: str
    kind: str
    visibility: str
    max_score: float
    score: float
    status: Status
    message: Msg | None = None
    duration_s: float = 0.0

    def to_json(self, lang: Lang) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "kind": self.kind,
            "visibility": self.visibility,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status.value,
            "message": self.message.render(lang) if self.message else "",
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class ExerciseResult:
    id: str
    title: Msg
    submitted: bool
    tests: list[TestResult] = field(default_factory=list)
    output: str = ""

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def to_json(self, lang: Lang) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title.render(lang),
            "submitted": self.submitted,
            "score": self.score,
            "max_score": self.max_score,
            "output": self.output,
            "tests": [t.to_json(lang) for t in self.tests],
        }


@dataclass
class Report:
    exercises: list[ExerciseResult]
    course: dict[str, Any] = field(default_factory=dict)  # id, version, kind, manifest_sha256
    tool_version: str = ""
    complete: bool = True  # False: some tests could not run on this host (status not_run / grader_error)
    lang: Lang = "en"
    seed_id: str = ""
    sandbox: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[Msg] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "score": self.score,
            "max_score": self.max_score,
            "complete": self.complete,
            "course": self.course,
            "tool_version": self.tool_version,
            "lang": self.lang,
            "seed_id": self.seed_id,
            "sandbox": self.sandbox,
            "environment": self.environment,
            "warnings": [w.render(self.lang) for w in self.warnings],
            "ignored_files": self.ignored_files,
            "duration_s": round(self.duration_s, 2),
            "exercises": [e.to_json(self.lang) for e in self.exercises],
        }

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "report.json"
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
        return path


__all__ = ["SCHEMA_VERSION", "TestResult", "ExerciseResult", "Report"]
