"""The grading pipeline: ingest → sandbox → probe and check (pytest) → score → report.

Each stage is one function so the whole run reads top to bottom in :func:`grade_submission`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

from grader import __version__
from grader.catalog import Course
from grader.grading import GradingRun, new_seed_id
from grader.i18n import Lang, Msg
from grader.ingest import Submission, extract_submission
from grader.plugin import RUN_PLUGIN_NAME
from grader.report import ExerciseResult, Report, TestResult
from grader.manifest import Manifest, ManifestMismatch, course_manifest
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
    return ["-p", "grader.plugin", "--noconftest", "-p", "no:terminal", "-p", "no:cacheprovider",
            "--rootdir", str(autotests), "-c", str(autotests / "pytest.ini")]


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


def build_report(run: GradingRun, submission: Submission | None, started: float,
                 manifest: Manifest | None = None) -> Report:
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
        )
        for spec in run.course.exercises()
        if spec.id in by_exercise
    ]
    warnings: list[Msg] = []
    if not run.sandbox.isolated:
        warnings.append(Msg(
            "学生代码在普通子进程中运行，未做任何隔离（--sandbox process）。",
            "Student code ran in a plain subprocess with no isolation (--sandbox process).",
        ))
    not_run = [r for r in run.results if r.status in (Status.NOT_RUN, Status.GRADER_ERROR)]
    if not_run:
        warnings.append(Msg(
            f"{len(not_run)} 个测试因评测主机的问题未能运行，分数不是最终结果。",
            f"{len(not_run)} tests could not run because of the grading host; the score is not final.",
        ))
    course = run.course
    session = run.session
    return Report(
        course={"id": course.id, "version": course.version, "kind": course.kind,
                "manifest_sha256": manifest.sha256 if manifest else None},
        tool_version=__version__,
        complete=not not_run,
        exercises=exercises,
        lang=run.lang,
        seed_id=run.seed_id,
        sandbox={**run.sandbox.describe(), "worker_restarts": session.restarts if session else 0},
        environment=session.facts if session else {},
        warnings=warnings,
        ignored_files=submission.ignored if submission else [],
        duration_s=time.monotonic() - started,
    )


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
    on_result: Callable[[TestResult], None] | None = None,
) -> Report:
    """Grade one submission zip with every autotest (public and hidden) of the course."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="grader-submission-"))
    try:
        submission = extract_submission(zip_path, workdir / "submission")
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
        )
        try:
            manifest = course_manifest(course)
            try:
                check_host(run)  # starts the sandbox and both workers: no student is graded on a broken host
            except SandboxUnavailable as unavailable:
                raise HostFault(str(unavailable)) from None
            run_autotests(run, keyword=keyword)
            return build_report(run, submission, started, manifest)
        except ManifestMismatch as changed:
            raise HostFault(str(changed)) from None
        finally:
            run.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
