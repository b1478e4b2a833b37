"""Grading one submission of a batch, in a grader process that serves many.

A batch's grader processes (local pool workers or Ray tasks) each keep what is safe to share for
the whole batch: the course, loaded once, and one reference worker (trusted code only). A student
sandbox is never shared: every submission gets its own, closed before the next starts.

The result crosses back as plain data (the report's JSON), never as objects of the run.
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.i18n import Msg


@dataclass(frozen=True)
class Job:
    """One submission to grade, as the batch planned it."""

    student: str
    name: str
    folder: str  # where its report goes, under OUT/submissions
    zip_path: str | None  # None: ``problem`` says why there is nothing to grade
    sha256: str | None
    seed_id: str
    problem: dict[str, str] | None = None  # a Msg as JSON


@dataclass(frozen=True)
class Settings:
    """What every job of a batch shares: the course, the sandbox, the language, the audience."""

    course_root: str
    sandbox: str
    lang: str = "en"
    keyword: str = ""
    audience: str = "student"  # what feedback.txt shows: hidden tests by name and hint only, or everything
    formats: tuple[str, ...] = ()  # renderings written beside each report.json (grader.render)


def submission_seed(secret: str, sha256: str) -> str:
    """The seed id of one submission: derived from the batch's secret and the content, so a rerun
    of the batch (a resume, another executor) gives the same inputs, and nobody can predict them
    without the secret."""
    return hmac.new(secret.encode(), sha256.encode(), hashlib.sha256).hexdigest()[:16]


class _Process:
    """What one grader process keeps across the jobs it runs."""

    course: Any = None
    reference: Any = None
    gpus: str | None = None


def _shared(settings: Settings, gpus: str | None = None) -> tuple[Any, Any]:
    from grader.catalog import find_course
    from grader.remote import WorkerSession
    from grader.sandbox import Limits, WorkerLaunch
    from grader.sandbox.process import ProcessSandbox

    if _Process.course is None or str(_Process.course.root) != settings.course_root or _Process.gpus != gpus:
        course = find_course(Path(settings.course_root))
        if _Process.reference is not None:
            _Process.reference.close()
        _Process.course, _Process.gpus = course, gpus
        # Timed on the same device as the student: a GPU run's reference sees the same GPU.
        _Process.reference = WorkerSession(ProcessSandbox(course.probes_dir),
                                           WorkerLaunch(course.solutions_dir, Limits(), gpus))
    return _Process.course, _Process.reference


def close_shared() -> None:
    if _Process.reference is not None:
        _Process.reference.close()
    _Process.course = _Process.reference = None


def _feedback(report: Any, audience: str) -> str:
    """The report as ``grader run`` prints it, as plain text for the student (or the instructor)."""
    import io

    from rich.console import Console

    from grader.summary import print_report

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, force_terminal=False)
    if report.refusal is not None:
        console.print(report.refusal.render(report.lang), highlight=False)
    else:
        print_report(report, console, audience=audience)
    return buffer.getvalue()


def grade_job(job: Job, settings: Settings, gpus: str | None = None, data: bytes | None = None) -> dict[str, Any]:
    """Grade ``job`` and return ``{"report": …}``; or ``{"host_fault": …}`` when this host cannot
    grade; or ``{"error": …}`` when the grader itself failed on this submission (its bug, never
    the student's zero). ``data`` carries the zip's bytes where the job runs on another machine."""
    from grader.manifest import course_manifest
    from grader.pipeline import grade_submission, refused_report, submission_record
    from grader.report import now_iso
    from grader.verdicts import HostFault

    try:
        course, reference = _shared(settings, gpus)
        if job.zip_path is None:
            import time

            assert job.problem is not None
            record = {"file": "", "sha256": "0" * 64, "student": job.student,
                      "files": {"graded": [], "ignored": [], "refused": []}}
            report = refused_report(course, course_manifest(course), record, Msg(**job.problem),
                                    settings.lang, time.monotonic(), now_iso())  # type: ignore[arg-type]
            return {"report": report.to_json(), "feedback": _feedback(report, settings.audience)}
        with tempfile.TemporaryDirectory(prefix="grader-batch-job-") as scratch:
            zip_path = Path(job.zip_path)
            if data is not None:
                zip_path = Path(scratch) / Path(job.zip_path).name
                zip_path.write_bytes(data)
            report = grade_submission(zip_path, course, sandbox=settings.sandbox, lang=settings.lang,  # type: ignore[arg-type]
                                      seed_id=job.seed_id, keyword=settings.keyword, gpus=gpus,
                                      student=job.student, shared_reference=reference)
            return {"report": report.to_json(), "feedback": _feedback(report, settings.audience)}
    except HostFault as fault:
        return {"host_fault": str(fault)}
    except Exception as exc:  # noqa: BLE001 - the grader's own failure: recorded, the batch goes on
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
