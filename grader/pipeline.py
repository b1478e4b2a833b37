"""The grading pipeline: ingest → sandbox → probe and check (pytest) → score → report.

Each stage is one function so the whole run reads top to bottom in :func:`grade_submission`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from grader import __version__
from grader.catalog import Course
from grader.grading import GradingRun, new_seed_id
from grader.i18n import Lang, Msg
from grader.ingest import ArchiveRejected, Submission, extract_submission
from grader.plugin import RUN_PLUGIN_NAME
from grader.report import ExerciseResult, Report, TestResult, msg_json, now_iso
from grader.manifest import Manifest, ManifestMismatch, course_manifest, sha256_file
from grader.remote import WorkerSession
from grader.sandbox import Limits, SandboxUnavailable
from grader.selftest import check_host
from grader.verdicts import HostFault, Status


class _RegisterRun:
    """Hands the pipeline's GradingRun to the plugin before any test is collected."""

    def __init__(self, run: GradingRun) -> None:
        self.run = run

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.pluginmanager.register(self.run, RUN_PLUGIN_NAME)


def pytest_arguments(course: Course) -> list[str]:
    """How the grader runs a course's autotests: its own plugin, and no conftest of any folder
    around (the course's or the caller's), so a run does not depend on where it starts."""
    autotests = course.autotests_dir
    # no:unraisableexception: its forced garbage collections cost ~0.8 s per submission, for warnings
    # about the grader's own objects that no report shows.
    return ["-p", "grader.plugin", "--noconftest", "-p", "no:terminal", "-p", "no:cacheprovider",
            "-p", "no:unraisableexception", "--rootdir", str(autotests), "-c", str(autotests / "pytest.ini")]


def run_autotests(run: GradingRun, *, markexpr: str = "", keyword: str = "",
                  exercises: list[str] | None = None) -> int:
    """Run the course's autotests against ``run``'s implementation; results land in ``run.results``."""
    autotests = run.course.autotests_dir
    targets = [str(autotests / f"test_{e}.py") for e in exercises] if exercises else [str(autotests)]
    args = [*targets, *pytest_arguments(run.course), "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if markexpr:
        args += ["-m", markexpr]
    if keyword:
        args += ["-k", keyword]
    return int(pytest.main(args, plugins=[_RegisterRun(run)]))


class NothingSelected(ValueError):
    """``-k`` (or an empty course) selected no test: a usage error, not a score of 0/0."""

    def __init__(self, message: Msg) -> None:
        super().__init__(message.en)
        self.message = message


HASH_LIMIT_BYTES = 1 << 30  # a file this large is refused by intake anyway; do not spend minutes hashing it


def submission_record(zip_path: Path, student: str | None, submission: Submission | None = None) -> dict[str, Any]:
    """What a gradebook needs to know about the handed-in file and what became of each of its files."""
    digest = None
    try:
        if zip_path.stat().st_size <= HASH_LIMIT_BYTES:
            digest = sha256_file(zip_path)
    except OSError:
        pass
    files: dict[str, list[dict[str, Any]]] = {"graded": [], "ignored": [], "refused": []}
    for outcome in submission.files if submission else []:
        entry: dict[str, Any] = {"path": outcome.path, "reason": msg_json(outcome.reason)}
        if outcome.used_as:
            entry["used_as"] = outcome.used_as
        files[outcome.disposition].append(entry)
    return {"file": zip_path.name, "sha256": digest or "0" * 64, "student": student, "files": files}


def course_record(course: Course, manifest: Manifest | None) -> dict[str, Any]:
    return {"id": course.id, "version": course.version, "kind": course.kind,
            "manifest_sha256": manifest.sha256 if manifest else None}


def build_report(run: GradingRun, submission: Submission | None, started: float,
                 manifest: Manifest | None = None, record: dict[str, Any] | None = None,
                 started_at: str | None = None) -> Report:
    by_exercise: dict[str, list[TestResult]] = {}
    for result in run.results:
        by_exercise.setdefault(result.exercise, []).append(result)
    exercises = [
        ExerciseResult(
            id=spec.id,
            title=spec.title,
            submitted=run.submitted(spec.id),
            tests=by_exercise.get(spec.id, []),
            output=run.capture.text(spec.id),
            output_truncated=run.capture.truncated(spec.id),
            problem=run.intake_problems.get(spec.id),
        )
        for spec in run.course.exercises()
        if spec.id in by_exercise
    ]
    warnings: list[Msg] = []
    if not run.sandbox.isolated:
        warnings.append(Msg(
            "学生代码在普通子进程中运行，未做任何隔离（`--sandbox process`）。",
            "Student code ran in a plain subprocess with no isolation (`--sandbox process`).",
        ))
    not_run = [r for r in run.results if r.status in (Status.NOT_RUN, Status.GRADER_ERROR)]
    if not_run:
        warnings.append(Msg(
            f"{len(not_run)} 个测试因评测主机的问题未能运行，分数不是最终结果。",
            f"{len(not_run)} tests could not run because of the grading host; the score is not final.",
        ))
    session = run.session
    report = Report(
        course=course_record(run.course, manifest),
        tool_version=__version__,
        complete=not not_run,
        exercises=exercises,
        submission=record or {},
        lang=run.lang,
        seed_id=run.seed_id,
        sandbox={**run.sandbox.describe(), "worker_restarts": session.restarts if session else 0},
        environment=session.facts if session else {},
        warnings=warnings,
        duration_s=time.monotonic() - started,
    )
    if started_at:
        report.started_at = started_at
    return report


def refused_report(course: Course, manifest: Manifest, record: dict[str, Any], reason: Msg, lang: Lang,
                   started: float, started_at: str) -> Report:
    """The record of an archive that could not be graded: zero out of what the course is worth."""
    from grader.inventory import collect_tests

    worth = sum(t.points for t in collect_tests(course))
    exercises = [ExerciseResult(id=spec.id, title=spec.title, submitted=False) for spec in course.exercises()]
    return Report(exercises=exercises, status="refused", refusal=reason, submission=record,
                  course=course_record(course, manifest), tool_version=__version__, lang=lang, started_at=started_at,
                  duration_s=time.monotonic() - started, max_score_override=worth)


def grade_submission(
    zip_path: Path,
    course: Course,
    *,
    sandbox: str = "process",
    lang: Lang = "en",
    seed_id: str | None = None,
    keyword: str = "",
    limits: Limits | None = None,
    gpus: str | None = None,
    student: str | None = None,
    on_result: Callable[[TestResult], None] | None = None,
    shared_reference: WorkerSession | None = None,
) -> Report:
    """Grade one submission zip with every autotest (public and hidden) of the course.

    A refused archive gives a report with ``status: refused`` (not an exception); a fault of the
    host raises :class:`HostFault` before anyone is graded. ``shared_reference``: a reference
    worker kept across submissions (a batch); it stays open.
    """
    started, started_at = time.monotonic(), now_iso()
    try:
        manifest = course_manifest(course)
    except ManifestMismatch as changed:
        raise HostFault(str(changed)) from None
    workdir = Path(tempfile.mkdtemp(prefix="grader-submission-"))
    try:
        try:
            submission = extract_submission(zip_path, workdir / "submission",
                                            exercises=[spec.id for spec in course.exercises()])
        except ArchiveRejected as rejected:
            return refused_report(course, manifest, submission_record(zip_path, student), rejected.message, lang,
                                  started, started_at)
        run = GradingRun(
            course=course,
            modules_dir=submission.exercises_dir,
            sandbox_name=sandbox,
            reference_dir=course.solutions_dir,
            seed_id=seed_id or new_seed_id(),
            lang=lang,
            limits=limits or Limits(),
            gpus=gpus,
            on_result=on_result,
            print_summary=False,
            intake_problems=dict(submission.problems),
            shared_reference=shared_reference,
        )
        try:
            try:
                check_host(run)  # starts the sandbox and both workers: no student is graded on a broken host
            except SandboxUnavailable as unavailable:
                raise HostFault(str(unavailable)) from None
            code = run_autotests(run, keyword=keyword)
            if run.host_fault is not None:
                raise HostFault(run.host_fault)  # the submission is graded again once the host is fixed
            if code == pytest.ExitCode.INTERRUPTED:
                raise KeyboardInterrupt  # stopped part way: a partial report must not pass for a grade
            if not run.results:
                raise NothingSelected(Msg(f"没有测试匹配 -k {keyword!r}", f"no test matches -k {keyword!r}") if keyword
                                      else Msg("该课程没有测试", "the course has no tests"))
            return build_report(run, submission, started, manifest, submission_record(zip_path, student, submission),
                                started_at)
        finally:
            run.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
