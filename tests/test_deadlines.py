"""Deadlines count work (CPU time, read by the zygote), not the host's queue; the host lock lets a
regrade run alone. Against real workers: a real zygote, real process CPU clocks, real flock."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from grader.catalog import load_spec
from grader.deadlines import DeadlineRule, wall_exceeded
from grader.host_lock import HostLock
from grader.implementations import RemoteImplementation
from grader.remote import OutputCapture, WorkerSession
from grader.sandbox import Limits, WorkerLaunch, get_sandbox
from grader.verdicts import CallTimedOut, CpuLimitExceeded

# ``spin(s)`` computes for about ``s`` seconds of CPU; ``work(n)`` does an amount of work fixed by n.
STUDENT = '''
import os, time
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds
def work(n):
    total = 0
    for i in range(int(n) * 3):  # three times the reference's work
        total += i * i
    return total % 7
def nap(seconds):
    time.sleep(seconds)
    return 0
def forge_cost():
    """Make this process's own clocks lie, then compute for 0.2 s."""
    real = time.process_time
    end = real() + 0.2
    time.process_time = time.perf_counter = lambda: 0.0
    while real() < end:
        pass
    return 1
'''
REFERENCE = '''
def work(n):
    total = 0
    for i in range(int(n)):
        total += i * i
    return total % 7
'''


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory):
    student_dir, reference_dir = tmp_path_factory.mktemp("student"), tmp_path_factory.mktemp("reference")
    (student_dir / "ex01_demo.py").write_text(STUDENT)
    (reference_dir / "ex01_demo.py").write_text(REFERENCE)
    sandbox = get_sandbox("process")
    student = WorkerSession(sandbox, WorkerLaunch(student_dir, Limits()), OutputCapture())
    reference = WorkerSession(sandbox, WorkerLaunch(reference_dir, Limits()), OutputCapture())
    yield student, reference
    student.close()
    reference.close()


def test_rule_scales_from_the_reference_with_a_floor() -> None:
    rule = DeadlineRule(cpu_floor_s=10, cpu_factor=20, wall_floor_s=60, wall_factor=6)
    assert rule.cpu_limit() == 10 and rule.cpu_limit(0.01) == 10 and rule.cpu_limit(2.0) == 40
    assert rule.wall_limit(10) == 60 and rule.wall_limit(40) == 240


def test_wall_verdicts_say_what_was_observed() -> None:
    starved = wall_exceeded(60, cpu_s=5, waited_s=50)
    assert not starved.load_independent and "waited 50 s for a CPU" in starved.message.en
    assert "endless loop" not in starved.message.en  # no guess the CPU time does not support
    asleep = wall_exceeded(60, cpu_s=0.01, waited_s=0.0)
    assert asleep.load_independent and "waiting" in asleep.message.en and "endless loop" not in asleep.message.en
    unknown = wall_exceeded(60, cpu_s=None, waited_s=None)
    assert not unknown.load_independent


def test_deadlines_table_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "ex09_demo.toml"
    path.write_text('title = { zh = "演示", en = "Demo" }\n[deadlines]\ncpu_floor_s = 3\n')
    assert load_spec(path).deadlines.cpu_floor_s == 3
    path.write_text('title = { zh = "演示", en = "Demo" }\n[deadlines]\ncall_timeout_s = 3\n')
    with pytest.raises(ValueError, match="unknown \\[deadlines\\] keys"):
        load_spec(path)


def test_the_zygote_stamps_its_own_measurement(workers) -> None:
    student, _ = workers
    impl = RemoteImplementation(student, "ex01_demo")
    assert impl.call("spin", 0.2) == 0.2
    cost = impl.last_cost()
    assert cost["by"] == "zygote" and 0.18 <= cost["cpu_s"] <= 0.6 and cost["wall_s"] >= cost["cpu_s"] * 0.9
    assert impl.call("forge_cost") == 1  # the child's own clocks now say nothing passes
    assert impl.last_cost()["cpu_s"] >= 0.18 and impl.last_cost()["wall_s"] >= 0.18


def test_cpu_limit_stops_work_not_waiting(workers) -> None:
    student, _ = workers
    impl = RemoteImplementation(student, "ex01_demo", DeadlineRule(cpu_floor_s=0.5, wall_floor_s=30))
    started = time.monotonic()
    with pytest.raises(CpuLimitExceeded) as info:
        impl.call("spin", 60)
    assert 0.5 <= info.value.used_s < 1.5 and time.monotonic() - started < 10
    assert "CPU time" in info.value.message.en and info.value.load_independent
    assert impl.call("nap", 1.0) == 0  # a second of sleep uses no CPU: under a 0.5 s CPU limit it finishes


def test_a_sleeping_call_is_named_as_waiting(workers) -> None:
    student, _ = workers
    impl = RemoteImplementation(student, "ex01_demo", DeadlineRule(cpu_floor_s=0.5, wall_floor_s=2.0, wall_factor=1))
    assert impl.call("spin", 0.01) == 0.01  # the module is loaded before the timed call
    with pytest.raises(CallTimedOut) as info:
        impl.call("nap", 30)
    assert "waiting" in info.value.message.en and "endless loop" not in info.value.message.en
    assert impl.call("spin", 0.01) == 0.01  # the worker survived the abort


def test_a_call_past_the_floor_is_measured_against_the_reference(workers) -> None:
    """Where the reference itself needs much of the floor (a slow host), the limit scales with it."""
    student, reference = workers
    n = _iterations_for(student, cpu_s=0.3)  # the reference needs about 0.3 s, the student 3x that
    rule = DeadlineRule(cpu_floor_s=0.5, cpu_factor=5, wall_floor_s=60)
    impl = RemoteImplementation(student, "ex01_demo", rule, reference=RemoteImplementation(reference, "ex01_demo"))
    assert impl.call("work", n) == sum(i * i for i in range(n * 3)) % 7  # stopped at 0.5 s, rerun under ~1.5 s
    strict = RemoteImplementation(student, "ex01_demo", DeadlineRule(cpu_floor_s=0.5, cpu_factor=1.5),
                                  reference=RemoteImplementation(reference, "ex01_demo"))
    with pytest.raises(CpuLimitExceeded) as info:  # 3x the reference's work is over 1.5x of it
        strict.call("work", n)
    assert info.value.reference_cpu_s is not None and "the reference needs" in info.value.message.en


def test_a_test_budget_counts_every_call(workers) -> None:
    student, _ = workers
    impl = RemoteImplementation(student, "ex01_demo", DeadlineRule(cpu_floor_s=5, test_cpu_s=0.6))
    impl.begin_test()
    impl.call("spin", 0.25)
    impl.call("spin", 0.25)
    with pytest.raises(CpuLimitExceeded) as info:
        impl.call("spin", 0.5)
    assert info.value.test_budget and "this test's calls" in info.value.message.en


def _iterations_for(student: WorkerSession, cpu_s: float) -> int:
    impl = RemoteImplementation(student, "ex01_demo")
    impl.call("work", 200_000)
    per_iteration = impl.last_cost()["cpu_s"] / (3 * 200_000)
    return max(1000, int(cpu_s / per_iteration))


# -- the host lock ------------------------------------------------------------------------------
def _hold_shared(path: str, seconds: float, ready: multiprocessing.Event) -> None:
    with HostLock(Path(path)).shared():
        ready.set()
        time.sleep(seconds)


def _another_grading_holds(path: Path, seconds: float) -> multiprocessing.Process:
    """Another process running a test (holding the lock shared) for ``seconds``; returns once it holds."""
    ready = multiprocessing.Event()
    other = multiprocessing.Process(target=_hold_shared, args=(str(path), seconds, ready))
    other.start()
    ready.wait(10)
    return other


def test_alone_waits_for_tests_in_flight_and_holds_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "host.lock"
    other = _another_grading_holds(path, 1.0)
    lock = HostLock(path)
    with lock.shared():  # shared holders run side by side
        pass
    started = time.monotonic()
    entered: list[float] = []
    with lock.alone() as alone:
        assert alone and time.monotonic() - started >= 0.8  # waited for the other grading's test

        def enter() -> None:
            with lock.shared():
                entered.append(time.monotonic())

        late = threading.Thread(target=enter)
        late.start()
        time.sleep(0.5)
        assert not entered  # a new test waits while the regrade runs
        done = time.monotonic()
    late.join(5)
    assert entered and entered[0] >= done
    other.join(5)


def test_alone_gives_up_waiting_rather_than_stall(tmp_path: Path) -> None:
    path = tmp_path / "host.lock"
    other = _another_grading_holds(path, 3.0)
    with HostLock(path).alone(wait_s=0.3) as alone:
        assert alone is False
    other.join(10)


def test_speed_counts_cpu_time_unless_the_request_waited() -> None:
    """CPU time of the process that ran the code is what a speed ratio compares; a request that
    waited (for work handed to a process of its own, which its CPU clock does not count) is
    judged on its wall time, so handing work away hides nothing."""
    from grader.timing import work_s

    assert work_s({"by": "zygote", "cpu_s": 0.010, "wall_s": 0.011}) == 0.010
    assert work_s({"by": "zygote", "cpu_s": 0.001, "wall_s": 0.050}) == 0.050  # it waited: wall time counts
    assert work_s({"by": "zygote", "cpu_s": None, "wall_s": 0.050}) == 0.050
    with pytest.raises(ValueError):
        work_s({"cpu_s": 0.01, "wall_s": 0.01})  # not measured by a zygote: never used


class _Timed:
    """A fake worker whose requests "cost" the next ratio's worth of CPU, as a zygote would say."""

    def __init__(self, costs: list[float]) -> None:
        self.costs, self.calls = list(costs), 0

    def __call__(self, inputs: object) -> int:
        self.calls += 1
        return 0

    def last_cost(self) -> dict[str, object]:
        cost = self.costs[min(self.calls - 1, len(self.costs) - 1)]
        return {"by": "zygote", "cpu_s": cost, "wall_s": cost}


@pytest.mark.parametrize(("student_costs", "rounds_timed"), [
    ([1.0] * 30, 1 + 3),                               # clearly fast: warm-up and 3 rounds settle it
    ([20.0] * 30, 1 + 3),                              # clearly slow (a loop): the same
    ([1.0, 1.0, 1.0, 4.0] + [1.0] * 26, 1 + 7),        # one round near the factor: every round
    ([3.0] * 30, 1 + 21),                              # at the factor: measured on, to 3 x rounds
])
def test_speed_rounds_stop_early_only_when_every_round_is_clear(student_costs: list[float],
                                                                 rounds_timed: int) -> None:
    """Three quiet rounds all at most half the factor (or all at least twice it) end the comparison;
    anything less clear gets the usual rounds, and a ratio near the factor gets the most."""
    from grader.timing import compare_speed

    student, reference = _Timed(student_costs), _Timed([1.0] * 30)
    result = compare_speed(student, reference, make_inputs=lambda i: i, check=lambda a, b: None, rounds=7,
                           reference_impl=reference, student_impl=student, factor=3.0)
    assert student.calls == rounds_timed
    assert len(result.ratios) == rounds_timed - 1
