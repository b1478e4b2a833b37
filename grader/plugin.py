"""The pytest plugin that turns autotests into a grader: markers, fixtures and result capture.

Loaded by ``autotests/conftest.py``. Under ``grader run`` the pipeline registers its
:class:`~grader.grading.GradingRun`; under plain ``pytest autotests`` (a student's machine) the
plugin makes one from the command-line options, grading ``exercises/`` of the course that holds
the autotests (or ``--course``).

Every test declares, with markers, its points, one kind (``shape``, ``gradient``, ``accuracy``,
``speed``) and one visibility (``public``, ``hidden``); :func:`graded` applies them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from _pytest.runner import runtestprotocol

from grader import evidence
from grader.catalog import CourseNotFound, ExerciseSpec, find_course
from grader.grading import GradingRun
from grader.i18n import Msg
from grader.implementations import LocalImplementation, RemoteImplementation
from grader.report import Regrade, RegradeCause, TestResult
from grader.sandbox import SandboxUnavailable
from grader.verdicts import CheckFailed, HostBusy, HostFault, Status, SubmissionProblem, ThresholdMissed

KINDS = ("shape", "gradient", "accuracy", "speed")
VISIBILITIES = ("public", "hidden")
RUN_PLUGIN_NAME = "grader-run"
HOST_FAULTS = (HostFault, SandboxUnavailable)  # raised in a test: the host broke, the run ends unscored


def graded(*, task: str, kind: str, points: float, visibility: str = "hidden") -> Callable[[Any], Any]:
    """Mark a test with its task, kind, points and visibility in one decorator."""
    if kind not in KINDS or visibility not in VISIBILITIES:
        raise ValueError(f"kind must be one of {KINDS} and visibility one of {VISIBILITIES}")
    marks = [pytest.mark.task(task), getattr(pytest.mark, kind), getattr(pytest.mark, visibility),
             pytest.mark.points(points)]

    def apply(fn: Any) -> Any:
        for mark in marks:
            fn = mark(fn)
        return fn

    return apply


# -- configuration -----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader")
    group.addoption("--submission", help="folder with the exercise files to grade (default: the course's exercises/)")
    group.addoption("--reference", help="folder with the reference solutions (default: the course's solutions/)")
    group.addoption("--course", help="the course folder (default: the one that holds these autotests)")
    group.addoption("--sandbox", default="local", help="sandbox backend for student code (default: local)")
    group.addoption("--seed-id", help="replay the inputs of an earlier run")
    group.addoption("--lang", default="en", choices=["en", "zh"])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exercise(id): the exercise a test module grades")
    config.addinivalue_line("markers", "task(name): the task (function or class) a test grades")
    config.addinivalue_line("markers", "points(n): points the test is worth")
    config.addinivalue_line("markers", "cpu_s(n): the test's CPU budget in seconds, overriding the exercise's")
    config.addinivalue_line("markers", "shows(level): what a student sees of the test: all, hint (no inputs or "
                                       "expected values; the default for hidden tests) or name (pass/fail only)")
    for kind in KINDS:
        config.addinivalue_line("markers", f"{kind}: a {kind} check")
    if not hasattr(config.option, "tbstyle"):
        # No terminal shows a traceback (the grader's runs): pytest's default style parses the source
        # of every frame of every failure, seconds per failing submission for text nobody reads.
        config.option.tbstyle = "native"
    for visibility in VISIBILITIES:
        config.addinivalue_line("markers", f"{visibility}: visible to students" if visibility == "public"
                                else f"{visibility}: run only by the grader")
    if config.pluginmanager.get_plugin(RUN_PLUGIN_NAME) is None:
        course_dir = config.getoption("--course")
        try:
            course = find_course(Path(course_dir) if course_dir else None, start=config.rootpath)
        except CourseNotFound as missing:
            raise pytest.UsageError(str(missing)) from None
        submission = config.getoption("--submission")
        modules = Path(submission) if submission else course.exercises_dir
        if (modules / "exercises").is_dir():
            modules = modules / "exercises"
        reference = config.getoption("--reference")
        run_kwargs: dict[str, Any] = {}
        if config.getoption("--seed-id"):
            run_kwargs["seed_id"] = config.getoption("--seed-id")
        run = GradingRun(
            course=course,
            modules_dir=modules.resolve(),
            sandbox_name=config.getoption("--sandbox"),
            reference_dir=Path(reference).resolve() if reference else course.solutions_dir,
            lang=config.getoption("--lang"),
            **run_kwargs,
        )
        config.pluginmanager.register(run, RUN_PLUGIN_NAME)
        config.add_cleanup(run.close)
    torch.set_num_threads(1)


def grading_run(config: pytest.Config) -> GradingRun:
    return config.pluginmanager.get_plugin(RUN_PLUGIN_NAME)


def marker_arg(item: pytest.Item, name: str) -> Any:
    mark = item.get_closest_marker(name)
    return mark.args[0] if mark and mark.args else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse tests that do not declare what they are worth: a grader must not guess."""
    problems = []
    for item in items:
        kinds = [k for k in KINDS if item.get_closest_marker(k)]
        visibility = [v for v in VISIBILITIES if item.get_closest_marker(v)]
        if len(kinds) != 1 or len(visibility) != 1 or marker_arg(item, "points") is None \
                or marker_arg(item, "exercise") is None or marker_arg(item, "task") is None:
            problems.append(item.nodeid)
    if problems:
        raise pytest.UsageError(
            "these tests lack exactly one kind, one visibility, points, task or exercise marker: "
            + ", ".join(problems))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember what a selection left out (``grader check`` counts the hidden tests it did not run)."""
    for item in items:
        run = grading_run(item.config)
        visibility = next((v for v in VISIBILITIES if item.get_closest_marker(v)), "hidden")
        run.deselected.append((marker_arg(item, "exercise"), visibility, float(marker_arg(item, "points") or 0)))


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec(request: pytest.FixtureRequest) -> ExerciseSpec:
    """The exercise's declared data (``autotests/<id>.toml``)."""
    exercise = request.node.get_closest_marker("exercise")
    if exercise is None:
        raise pytest.UsageError(f"{request.node.nodeid}: set pytestmark = pytest.mark.exercise('exNN_name')")
    return grading_run(request.config).course.spec(exercise.args[0])


@pytest.fixture
def student(request: pytest.FixtureRequest, spec: ExerciseSpec) -> RemoteImplementation:
    """The submission's implementation of this exercise, running in the sandboxed worker."""
    run = grading_run(request.config)
    impl = run.student(spec)
    budget = marker_arg(request.node, "cpu_s")
    impl.begin_test(float(budget) if budget is not None else None)
    impl.deadline = min(impl.deadline or float("inf"), run.wall_end())
    return impl


@pytest.fixture
def reference(request: pytest.FixtureRequest, spec: ExerciseSpec) -> LocalImplementation:
    """The reference solution (hidden tests only: students do not have it)."""
    if request.node.get_closest_marker("public") is not None:
        raise pytest.UsageError(f"{request.node.nodeid}: public tests must not use the reference")
    impl = grading_run(request.config).reference(spec)
    if impl is None:
        pytest.skip("reference solution not available")
    return impl


@pytest.fixture
def reference_worker(request: pytest.FixtureRequest, spec: ExerciseSpec) -> RemoteImplementation:
    """The reference run in a worker like the student's: the other side of a speed comparison."""
    impl = grading_run(request.config).reference_remote(spec)
    if impl is None:
        pytest.skip("reference solution not available")
    return impl


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> torch.Generator:
    """A generator seeded from the run's secret salt and the test's id (and, for a regrade, the
    attempt: a regrade gets inputs of its own, so nothing remembered from the first run helps)."""
    attempt = request.node.stash.get(ATTEMPT, 1)
    return grading_run(request.config).generator(request.node.nodeid + (f"#attempt{attempt}" if attempt > 1 else ""))


# -- outcomes ------------------------------------------------------------------------------------
# What a student may see of a hidden test that failed this way, when the failure has no summary of
# its own: the status, never the call, its inputs or the expected values.
STATUS_SUMMARY = {
    Status.FAILED: Msg("检查未通过", "The check failed"),
    Status.ERROR: Msg("你的代码在这个测试中抛出了异常", "Your code raised an exception in this test"),
    Status.TIMED_OUT: Msg("超时：这个测试没有在时限内完成", "Timed out: this test did not finish in time"),
    Status.CRASHED: Msg("运行你的代码的进程在这个测试中崩溃了", "The process running your code crashed in this test"),
    Status.OUT_OF_MEMORY: Msg("内存不足", "Out of memory"),
}
# Failures that do not depend on a test's inputs: the whole message is safe for every audience.
INPUT_FREE = (Status.NOT_IMPLEMENTED, Status.NOT_SUBMITTED, Status.IMPORT_ERROR, Status.OUTPUT_LIMIT,
              Status.NOT_RUN, Status.GRADER_ERROR)
SHOWS = ("all", "hint", "name")


def classify(excinfo: pytest.ExceptionInfo[BaseException] | None) -> tuple[Status, Msg | None, Msg | None]:
    """(status, the whole message, what a student may see of it in a hidden test)."""
    if excinfo is None:
        return Status.PASSED, None, None
    exc = excinfo.value
    if isinstance(exc, pytest.skip.Exception):  # the host lacks what the test needs: not the student's doing
        return Status.NOT_RUN, Msg(f"未在此评测主机上运行（原因：`{exc.msg}`）", f"Not run on this grading host: {exc.msg}"), None
    if isinstance(exc, HostBusy):  # the machine, not the submission: not scored, and said so
        return Status.NOT_RUN, exc.message, None
    if isinstance(exc, HOST_FAULTS):  # the host broke: nothing more is graded
        return Status.NOT_RUN, Msg(f"评测主机故障（不是你的问题）：{exc}", f"The grading host failed (not your doing): {exc}"), None
    if isinstance(exc, SubmissionProblem):
        return exc.status, exc.message, exc.summary
    if isinstance(exc, CheckFailed):
        digit_free = not any(ch.isdigit() for ch in exc.message.en + exc.message.zh)
        return Status.FAILED, exc.message, exc.summary or (exc.message if digit_free else None)
    if isinstance(exc, AssertionError):
        text = str(exc).split("\nassert ")[0]
        return Status.FAILED, Msg(text, text), None
    text = f"{type(exc).__name__}: {exc}"
    return Status.GRADER_ERROR, Msg(f"评分程序内部错误（不是你的错）：{text}",
                                    f"Internal grader error (not your fault): {text}"), None


def student_view(status: Status, message: Msg | None, summary: Msg | None) -> Msg | None:
    """The message any audience may read: the summary, or the whole message where it cannot hold a
    test's inputs, or the status alone."""
    if message is None or status in INPUT_FREE:
        return message
    return summary or STATUS_SUMMARY.get(status, STATUS_SUMMARY[Status.FAILED])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when == "setup" and call.excinfo is None:
        return  # the call phase reports
    if call.when == "teardown":
        return
    status, message, summary = classify(call.excinfo)
    run = grading_run(item.config)
    if call.excinfo is not None and isinstance(call.excinfo.value, HOST_FAULTS):
        run.host_fault = str(call.excinfo.value)
        item.session.shouldstop = f"host fault: {run.host_fault}"  # the rest would fail the same way
    if message is not None and status not in (Status.GRADER_ERROR, Status.NOT_RUN):
        outcome.get_result().longrepr = message.render(run.lang)  # the student's view, not a traceback
    points = float(marker_arg(item, "points") or 0)
    visibility = next(v for v in VISIBILITIES if item.get_closest_marker(v))
    shows = marker_arg(item, "shows") or ("all" if visibility == "public" else "hint")
    if shows not in SHOWS:
        raise pytest.UsageError(f"{item.nodeid}: shows must be one of {', '.join(SHOWS)}")
    safe = student_view(status, message, summary)
    item.stash[RESULT] = TestResult(
        name=item.name,
        nodeid=item.nodeid,
        exercise=marker_arg(item, "exercise"),
        task=marker_arg(item, "task"),
        kind=next(k for k in KINDS if item.get_closest_marker(k)),
        visibility=visibility,
        max_score=points,
        score=points if status == Status.PASSED else 0.0,
        status=status,
        message=safe,
        detail=message if message != safe else None,
        shows=shows,
        duration_s=call.duration,
        evidence=evidence.take(),
    )
    raised = call.excinfo.value if call.excinfo is not None else None
    load_may_matter = isinstance(raised, HostBusy) or (
        status == Status.TIMED_OUT and not getattr(raised, "load_independent", False)) or (
        status == Status.FAILED and item.get_closest_marker("speed") is not None)
    item.stash[RERUN_CAUSE] = "host" if load_may_matter else "chance" if isinstance(raised, ThresholdMissed) else None


RESULT = pytest.StashKey[TestResult]()
ATTEMPT = pytest.StashKey[int]()
# Why a test's outcome calls for a second run: "host", one a busy host can cause (regraded alone);
# "chance", a short training run that missed its threshold (run once more on fresh data); None: final.
RERUN_CAUSE = pytest.StashKey[RegradeCause | None]()


def _regrade_note(first: Msg, alone: bool) -> Msg:
    if alone:
        return Msg("（已单独重新评测一次；第一次：" + first.zh + "）", " (regraded once, alone; the first run: " + first.en + ")")
    return Msg("（已重新评测一次，但其他评测仍在运行；第一次：" + first.zh + "）",
               " (regraded once, though other gradings were still running; the first run: " + first.en + ")")


def _retrial_note(first: Msg) -> Msg:
    return Msg("（短时训练的结果有随机性，已换一组新数据再运行一次；第一次：" + first.zh + "）",
               " (run once more on fresh data, as a short training run can miss by chance; the first run: "
               + first.en + ")")


SAME_OUTCOME = Msg("结果相同", "the same outcome")


def _with_regrade(first: TestResult, final: TestResult, alone: bool, cause: RegradeCause) -> TestResult:
    """The regrade's outcome, with the first one recorded beside it and named in the message."""
    first_said = first.message or STATUS_SUMMARY.get(first.status, Msg(first.status.value, first.status.value))
    if first.status == final.status and first.message == final.message:
        first_said = SAME_OUTCOME
    suffix = _regrade_note(first_said, alone) if cause == "host" else _retrial_note(first_said)
    final.message = (final.message + suffix) if final.message is not None else Msg(
        suffix.zh.strip("（）"), suffix.en.strip(" ()"))
    final.regrade = Regrade(first_status=first.status, first_message=first.message, alone=alone, cause=cause)
    final.duration_s += first.duration_s
    return final


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Run a test holding the host lock shared; regrade it once, alone, when the host may be to blame,
    and once more on fresh data when a short training run missed its threshold.

    Several gradings may share a host (a class batch); a test's deadlines count CPU time, so load
    rarely matters, but a timeout or a speed verdict is checked once more with no other grading's
    test running before it is reported, and the report keeps both outcomes. A training run from a
    random start on a random split misses now and then with a correct solution too (a rare seed);
    a wrong one misses on fresh data again, so the second run's outcome is the one reported.
    """
    run = grading_run(item.config)
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    evidence.take()  # whatever an earlier test left behind is not this test's
    with run.host_lock.shared():
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    first = item.stash.get(RESULT, None)
    final = first
    cause = item.stash.get(RERUN_CAUSE, None)
    if first is not None and cause is not None:
        item.stash[ATTEMPT] = 2  # fresh inputs (another split and seed): nothing remembered from the first run helps
        # A chance miss needs no quiet host: it runs beside other gradings (shared() yields None: not alone).
        with run.host_lock.alone() if cause == "host" else run.host_lock.shared() as alone:
            evidence.take()
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
        second = item.stash.get(RESULT, None)
        if second is not None and second is not first:
            final = _with_regrade(first, second, bool(alone), cause)
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    if final is not None:
        run.record(final)
    return True


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = grading_run(config)
    if run.results and run.print_summary:
        from grader.summary import results_table

        results_table(run.results, run.lang, terminalreporter._tw)
