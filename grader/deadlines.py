"""How long a submission's call may run: CPU time for work, wall time only as a backstop.

A busy grading host (other gradings, a class batch) stretches wall time, not work: a call that
needs 0.3 s of CPU may wait 20 s for a CPU when ten gradings share two cores. So "too much work"
is judged by the CPU time the call used, which the worker's zygote reads from the kernel (trusted
code outside the student's process, see ``grader/worker/zygote.py``), and the limit is scaled
from what the reference needs for the same call on this host, in this run:

    CPU limit  = max(cpu_floor_s, cpu_factor x the reference's CPU time for the same call)
    wall limit = max(wall_floor_s, wall_factor x the CPU limit)      (the backstop for hangs)

The reference is measured only when a call passes the floor (nearly every call stays far below
it), by sending the same request to the reference's worker. A call stopped by the wall backstop
is described by what was observed: the CPU time it used and how long it waited for a CPU; it is
called an endless loop only when its CPU time says it was computing all along.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.i18n import Msg


@dataclass(frozen=True)
class DeadlineRule:
    cpu_floor_s: float = 10.0  # CPU any call may use, whatever the reference needs
    cpu_factor: float = 20.0  # x the reference's CPU time for the same call
    wall_floor_s: float = 60.0
    wall_factor: float = 6.0  # x the CPU limit: on a loaded host a call gets a fraction of a CPU
    test_cpu_s: float = 60.0  # CPU for all of one test's calls together

    def cpu_limit(self, reference_cpu_s: float | None = None) -> float:
        scaled = self.cpu_factor * reference_cpu_s if reference_cpu_s is not None else 0.0
        return max(self.cpu_floor_s, scaled)

    def wall_limit(self, cpu_limit_s: float) -> float:
        return max(self.wall_floor_s, self.wall_factor * cpu_limit_s)

    def describe(self) -> str:
        return (f"CPU limit per call = max({self.cpu_floor_s:g} s, {self.cpu_factor:g} x the reference's CPU time "
                f"for the same call); wall-clock backstop = max({self.wall_floor_s:g} s, {self.wall_factor:g} x the "
                f"CPU limit); {self.test_cpu_s:g} s of CPU per test")


def seconds(value: float) -> str:
    """A duration for a message: milliseconds below a tenth of a second, where "0.00 s" says nothing."""
    return f"{value * 1000:.0f} ms" if value < 0.1 else f"{value:.1f} s"


def _reference_clause(reference_cpu_s: float | None) -> Msg:
    if reference_cpu_s is None:
        return Msg("", "")
    return Msg(f"；参考实现完成同一调用只需 {seconds(reference_cpu_s)}",
               f"; the reference needs {seconds(reference_cpu_s)} for the same call")


def cpu_exceeded(used_s: float, limit_s: float, reference_cpu_s: float | None, test_budget: bool = False) -> Msg:
    """The call computed for longer than its CPU limit: the one case that reads as an endless loop."""
    ref = _reference_clause(reference_cpu_s)
    if test_budget:
        return Msg(f"超时：这个测试的调用共用了 {used_s:.1f} 秒 CPU 时间（上限 {limit_s:.0f} 秒）{ref.zh}。"
                   "是否有死循环，或计算量远大于所需？",
                   f"Timed out: this test's calls used {used_s:.1f} s of CPU time in all (the limit is "
                   f"{limit_s:.0f} s){ref.en}. An endless loop, or far more work than needed?")
    return Msg(f"超时：调用用了 {used_s:.1f} 秒 CPU 时间仍未完成（上限 {limit_s:.0f} 秒）{ref.zh}。"
               "是否有死循环，或计算量远大于所需？",
               f"Timed out: the call used {used_s:.1f} s of CPU time without finishing (the limit is "
               f"{limit_s:.0f} s){ref.en}. An endless loop, or far more work than needed?")


@dataclass(frozen=True)
class WallVerdict:
    message: Msg
    load_independent: bool  # the observation rules load out (it slept): a regrade would change nothing


def wall_exceeded(wall_s: float, cpu_s: float | None, waited_s: float | None) -> WallVerdict:
    """What to say of a call stopped by the wall backstop, from what the zygote observed.

    ``waited_s`` is how long the call's main thread sat runnable without a CPU (the kernel's
    run-queue delay). Much waiting means a busy host, or processes the submission started that
    keep the CPU busy (the zygote cannot tell which from inside): the test is regraded alone, so
    other gradings are not the cause the second time. Little CPU and little waiting means the
    code slept or blocked, which no load explains.
    """
    if waited_s is not None and waited_s >= 0.5 * wall_s:
        used = seconds(cpu_s) if cpu_s is not None else "?"
        return WallVerdict(Msg(
            f"超时：调用 {wall_s:.0f} 秒仍未返回；它只用了 {used} CPU 时间，却有 {waited_s:.0f} 秒在等待 CPU："
            "评测主机很忙，或者代码启动的进程占满了 CPU",
            f"Timed out: no result after {wall_s:.0f} s; the call used only {used} of CPU time and waited "
            f"{waited_s:.0f} s for a CPU: the host was busy, or processes the code started kept the CPU busy"),
            load_independent=False)
    if cpu_s is not None and cpu_s < 0.25 * wall_s:
        return WallVerdict(Msg(
            f"超时：调用 {wall_s:.0f} 秒仍未返回，但只用了 {seconds(cpu_s)} CPU 时间：代码在等待"
            "（休眠？input()？锁？等待线程或子进程？），而不是在计算",
            f"Timed out: no result after {wall_s:.0f} s, but the call used only {seconds(cpu_s)} of CPU time: "
            "it was waiting (sleep? input()? a lock? a thread or process it started?), not computing"),
            load_independent=waited_s is not None)
    used = seconds(cpu_s) if cpu_s is not None else "?"
    return WallVerdict(Msg(
        f"超时：调用 {wall_s:.0f} 秒（{used} CPU 时间）仍未返回。是否有死循环，或计算量远大于所需？",
        f"Timed out: no result after {wall_s:.0f} s ({used} of CPU time). An endless loop, or far more "
        "work than needed?"), load_independent=False)
