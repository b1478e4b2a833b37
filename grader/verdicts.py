"""What can happen to one test, and the exceptions that carry those outcomes to the scorer.

Anything the submission does wrong reaches a test as a :class:`SubmissionProblem`; a check that
fails raises :class:`CheckFailed`. The pytest plugin turns both into a status and a message a
student understands. Any other exception is the grader's own fault and says so.
"""

from __future__ import annotations

from enum import Enum

from grader.i18n import Msg


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # a check found a wrong value, shape, gradient, speed…
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SUBMITTED = "not_submitted"
    ERROR = "error"  # the student's code raised
    IMPORT_ERROR = "import_error"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    OUTPUT_LIMIT = "output_limit"
    CRASHED = "crashed"  # the worker died: a signal, os._exit, too many processes
    NOT_RUN = "not_run"  # could not run on this host (reference or a dependency missing): counts in max_score
    GRADER_ERROR = "grader_error"  # a bug in the grader: not the student's fault


class CheckFailed(AssertionError):
    """A check in a test found the submission's result wrong.

    ``message`` is the whole observation (the call, expected and actual values); ``summary``, when
    the check can give one, says the symptom and hint without any input or expected value, which
    is all a student may see of a hidden test.
    """

    def __init__(self, message: Msg, summary: Msg | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.summary = summary


class ThresholdMissed(CheckFailed):
    """A short training run's metric missed its threshold. Training from a random start on a random
    split can, rarely, do that to a correct solution too, so the grader runs such a test once more on
    fresh data before it reports the miss (a wrong solution misses both times)."""


class SubmissionProblem(Exception):
    """The submission could not produce a result; ``status`` says how."""

    status: Status = Status.ERROR

    def __init__(self, message: Msg, status: Status | None = None, summary: Msg | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.summary = summary  # None: the status alone is what a student may see of a hidden test
        if status is not None:
            self.status = status


class CallTimedOut(SubmissionProblem):
    status = Status.TIMED_OUT
    # True when what was observed rules out a busy host (CPU time past its limit; a call that slept):
    # regrading such a test alone would change nothing, and would hold up every other grading.
    load_independent = False


class CpuLimitExceeded(CallTimedOut):
    """The zygote stopped a call that used more CPU time than its limit: work, not waiting."""

    def __init__(self, used_s: float, limit_s: float, reference_cpu_s: float | None = None,
                 test_budget: bool = False) -> None:
        from grader.deadlines import cpu_exceeded

        message = cpu_exceeded(used_s, limit_s, reference_cpu_s, test_budget)
        super().__init__(message, None, message)  # figures of CPU time, never of a test's inputs
        self.used_s = used_s
        self.limit_s = limit_s
        self.reference_cpu_s = reference_cpu_s
        self.test_budget = test_budget
        self.load_independent = True  # CPU time, which waiting for a CPU does not add to


class WorkerDied(SubmissionProblem):
    status = Status.CRASHED


class HostBusy(Exception):
    """The grading host was too busy to time a speed test fairly: the test is not scored (not run),
    never failed. ``message`` says so in both languages."""

    def __init__(self, message: Msg) -> None:
        super().__init__(str(message))
        self.message = message


class HostFault(RuntimeError):
    """The grading host cannot grade (worker does not start, reference missing, image absent…).

    Never a student's zero: ``grader run`` stops before grading anyone and says what to fix.
    """
