"""One grading run: the submission's worker, the reference, the secret salt, and the results so far.

The pytest plugin asks this object for the fixtures tests use (``student``, ``reference``, ``rng``)
and hands it each test's outcome. It lives in the grader process only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from grader.catalog import Course, ExerciseSpec
from grader.host_lock import HostLock
from grader.i18n import Lang, Msg
from grader.implementations import LocalImplementation, RemoteImplementation, load_module
from grader.remote import OutputCapture, WorkerSession
from grader.report import TestResult
from grader.sandbox import Limits, Sandbox, WorkerLaunch, get_sandbox
from grader.verdicts import HostBusy, Status, SubmissionProblem
from grader.worker.probes import use_course_probes


def new_seed_id() -> str:
    """A fresh secret salt, shown as the run's seed id once grading is over."""
    return secrets.token_hex(8)


@dataclass(eq=False)  # registered as a pytest plugin, so it must stay hashable
class GradingRun:
    course: Course
    modules_dir: Path | None  # the submission's exercise files; None: grade nothing (all "not submitted")
    sandbox_name: str = "process"
    reference_dir: Path | None = None  # None where the reference is not available (students)
    seed_id: str = field(default_factory=new_seed_id)
    lang: Lang = "en"
    limits: Limits = field(default_factory=Limits)
    gpus: str | None = None
    on_result: Callable[[TestResult], None] | None = None
    print_summary: bool = True  # plain pytest prints the scores; ``grader`` prints its own summary
    budget_s: float = 1800.0  # CPU seconds the submission's worker may use in all (work, not queueing)
    wall_budget_s: float = 4 * 3600.0  # the backstop for the whole submission on a very busy host
    started: float = field(default_factory=time.monotonic)
    results: list[TestResult] = field(default_factory=list)
    deselected: list[tuple[str, str, float]] = field(default_factory=list)  # (exercise, visibility, points)
    intake_problems: dict[str, Msg] = field(default_factory=dict)  # exercise -> why its file cannot be graded
    capture: OutputCapture = field(default_factory=OutputCapture)
    # A reference worker kept by the caller across runs (a batch, the project's tests): it runs only
    # trusted code, so one can serve many submissions; this run uses it and leaves it open.
    shared_reference: WorkerSession | None = None
    host_lock: HostLock = field(default_factory=HostLock)  # shared per test; alone for a regrade
    host_fault: str | None = None  # set when the host broke mid-run: the run ends, nobody is scored
    _sandbox: Sandbox | None = None
    _session: WorkerSession | None = None
    _reference_session: WorkerSession | None = None
    _students: dict[str, RemoteImplementation] = field(default_factory=dict)

    # -- implementations -------------------------------------------------------------------
    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = get_sandbox(self.sandbox_name, self.gpus, self.course.probes_dir)
        return self._sandbox

    @property
    def session(self) -> WorkerSession | None:
        return self._session

    @property
    def device(self) -> str:
        """Where speed tests time the work: the GPU when the run has one, else the CPU."""
        return "cuda" if self.gpus is not None else "cpu"

    def wall_end(self) -> float:
        """The monotonic time by which the whole submission must be done (the backstop)."""
        return self.started + self.wall_budget_s

    def submitted(self, exercise: str) -> bool:
        return exercise in self.intake_problems or (
            self.modules_dir is not None and (self.modules_dir / f"{exercise}.py").is_file())

    def student(self, spec: ExerciseSpec) -> RemoteImplementation:
        if spec.id in self.intake_problems:
            raise SubmissionProblem(self.intake_problems[spec.id], Status.IMPORT_ERROR)
        if not self.submitted(spec.id):
            raise SubmissionProblem(Msg("未提交该练习文件", "This exercise was not submitted"), Status.NOT_SUBMITTED)
        used = self._session.cpu_used_s if self._session is not None else 0.0
        if used > self.budget_s:
            raise SubmissionProblem(Msg(
                f"整个提交已用完评测的 CPU 时间（{used:.0f} 秒，上限 {self.budget_s:.0f} 秒），其余测试未运行。",
                f"The submission used up its CPU time for grading ({used:.0f} s of {self.budget_s:.0f} s); the "
                "remaining tests did not run.",
            ), Status.TIMED_OUT)
        if time.monotonic() > self.wall_end():
            raise HostBusy(Msg(
                f"评测主机太忙：{self.wall_budget_s / 3600:.0f} 小时内未能评完这份提交（不是你的问题），其余测试未计分",
                f"The grading host was too busy to finish this submission within {self.wall_budget_s / 3600:.0f} h "
                "(not your doing); the remaining tests were not scored"))
        if spec.id not in self._students:
            self._students[spec.id] = RemoteImplementation(self.student_session(), spec.id, spec.deadlines,
                                                           reference=self.reference_remote(spec), device=self.device)
        return self._students[spec.id]

    def student_session(self) -> WorkerSession:
        """The session of the submission's worker (created, not started)."""
        if self._session is None:
            assert self.modules_dir is not None
            launch = WorkerLaunch(self.modules_dir, self.limits, self.gpus)
            self._session = WorkerSession(self.sandbox, launch, self.capture)
        return self._session

    def reference_session(self) -> WorkerSession | None:
        if self.reference_dir is None:
            return None
        if self.shared_reference is not None:
            return self.shared_reference
        if self._reference_session is None:
            from grader.sandbox.process import ProcessSandbox  # trusted code: no isolation needed

            self._reference_session = WorkerSession(ProcessSandbox(self.course.probes_dir),
                                                    WorkerLaunch(self.reference_dir, self.limits, self.gpus))
        return self._reference_session

    def reference(self, spec: ExerciseSpec) -> LocalImplementation | None:
        path = self.reference_dir / f"{spec.id}.py" if self.reference_dir else None
        if path is None or not path.is_file():
            return None
        use_course_probes(self.course.probes_dir)
        return LocalImplementation(load_module(path, spec.id), spec.id)

    def reference_remote(self, spec: ExerciseSpec) -> RemoteImplementation | None:
        """The reference in a worker of its own, so speed is measured the same way on both sides."""
        session = self.reference_session()
        if session is None or not (self.reference_dir / f"{spec.id}.py").is_file():
            return None
        return RemoteImplementation(session, spec.id, spec.deadlines, device=self.device)

    # -- seeds -----------------------------------------------------------------------------
    def seed(self, nodeid: str) -> int:
        """A per-test seed derived from the secret salt: unguessable before, replayable after."""
        digest = hmac.new(self.seed_id.encode(), nodeid.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def generator(self, nodeid: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed(nodeid))

    # -- results ---------------------------------------------------------------------------
    def record(self, result: TestResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def close(self) -> None:
        for session in (self._session, self._reference_session):
            if session is not None:
                session.close()
        if self._sandbox is not None:
            self._sandbox.close()
