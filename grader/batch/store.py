"""A batch's output folder: one report per submission, the class's grades, the batch summary.

::

    OUT/
      submissions/<student>/report.json   written atomically, one per submission
      grades.csv                          student, name, status, score, max, one column per exercise
      batch.json                          counts, durations, failures by cause, why it stopped
      .batch-secret                       the batch's seed secret (mode 600): replays, never shown

A report is the batch's memory: a submission whose report names the same content hash, course
manifest and tool version, and is complete, is not graded again. So a batch killed at any point
(or a Docker engine that died under it) loses only the submissions in flight, and running the
same command again finishes the rest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBMISSIONS = "submissions"
REPORT = "report.json"
SECRET = ".batch-secret"
KEY = ".graded-with.json"  # beside each report: what it was graded with, for resuming
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; outputs are for the course staff
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class BatchStore:
    out: Path

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)

    # -- the seed secret -------------------------------------------------------------------
    def secret(self, given: str | None = None) -> str:
        """The batch's seed secret: ``given``, else the one this folder already has, else a new one."""
        path = self.out / SECRET
        if given:
            return given
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        value = secrets.token_hex(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        return value

    # -- reports ---------------------------------------------------------------------------
    def report_path(self, folder: str) -> Path:
        return self.out / SUBMISSIONS / folder / REPORT

    def read_report(self, folder: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.report_path(folder).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def is_done(self, folder: str, key: dict[str, Any]) -> bool:
        """Whether a complete report graded with exactly ``key`` (content hash, course manifest, tool
        version, test selection) is on disk."""
        report = self.read_report(folder)
        try:
            recorded = json.loads((self.out / SUBMISSIONS / folder / KEY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(report) and report.get("complete") is True and recorded == key \
            and report.get("submission", {}).get("sha256") == key.get("sha256")  # type: ignore[union-attr]

    def write_report(self, folder: str, report: dict[str, Any], key: dict[str, Any], feedback: str = "") -> Path:
        """Write one submission's files; the report last, since a report on disk means done."""
        path = self.report_path(folder)
        if feedback:
            write_atomic(path.with_name("feedback.txt"), feedback)
        write_atomic(path.with_name(KEY), json.dumps(key, sort_keys=True))
        write_atomic(path, json.dumps(report, ensure_ascii=False, indent=2))
        return path


def submission_status(report: dict[str, Any] | None) -> str:
    """One word per submission for grades.csv: graded, refused, incomplete, or pending."""
    if report is None:
        return "pending"
    if report.get("status") == "refused":
        return "refused"
    return "graded" if report.get("complete") else "incomplete"


def grades_csv(rows: list[tuple[str, str, str, dict[str, Any] | None]], exercises: list[str]) -> str:
    """``rows``: (student, name, folder, report or None)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "name", "status", "score", "max_score", *exercises, "report"])
    for student, name, folder, report in rows:
        scores = {e["id"]: e["score"] for e in (report or {}).get("exercises", [])}
        writer.writerow([
            student, name, submission_status(report),
            _number((report or {}).get("score")), _number((report or {}).get("max_score")),
            *(_number(scores.get(e)) for e in exercises),
            f"{SUBMISSIONS}/{folder}/{REPORT}" if report else "",
        ])
    return buffer.getvalue()


def _number(value: Any) -> str:
    if value is None:
        return ""
    return f"{float(value):g}"


@dataclass
class BatchSummary:
    """What ``batch.json`` records of one invocation and of the folder as it now stands."""

    executor: str
    jobs: int
    gpus: list[str] | None
    started_at: str
    total: int = 0
    reused: int = 0  # already graded with the same content, course and tool: not graded again
    graded_now: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)  # the grader's own failures
    durations_s: list[float] = field(default_factory=list)  # of the submissions graded now
    stopped: str | None = None  # why the batch stopped before the end (a host fault, Ctrl-C)
    wall_s: float = 0.0

    def to_json(self, reports: list[dict[str, Any] | None], finished_at: str) -> dict[str, Any]:
        statuses = Counter(submission_status(r) for r in reports)
        by_cause: Counter[str] = Counter()
        for report in reports:
            if report is None:
                continue
            if report.get("status") == "refused":
                by_cause["refused archive"] += 1
            for exercise in report.get("exercises", []):
                for test in exercise.get("tests", []):
                    if test.get("status") not in ("passed", "failed"):
                        by_cause[str(test.get("status"))] += 1
        durations = sorted(self.durations_s)
        return {
            "executor": self.executor, "jobs": self.jobs, "gpus": self.gpus,
            "started_at": self.started_at, "finished_at": finished_at, "wall_s": round(self.wall_s, 1),
            "stopped": self.stopped,
            "counts": {"submissions": self.total, **{k: statuses.get(k, 0) for k in
                                                       ("graded", "refused", "incomplete", "pending")},
                       "graded_now": self.graded_now, "reused": self.reused, "grader_errors": len(self.errors)},
            "durations_s": {
                "median": round(statistics.median(durations), 1) if durations else None,
                "max": round(durations[-1], 1) if durations else None,
                "per_hour": round(3600 * self.graded_now / self.wall_s, 1) if self.wall_s and self.graded_now else None,
            },
            "failures_by_cause": dict(sorted(by_cause.items())),
            "grader_errors": self.errors,
        }
