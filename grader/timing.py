"""Speed relative to the reference, measured around worker calls.

Student and reference run in workers of the same kind and are timed the same way, in
alternating order (A B, B A, …) with fresh inputs each round; every output is checked, so a
fast wrong answer (or a cached one) does not count. The verdict is the median of the per-round
ratios, which shrugs off a round disturbed by the rest of the machine. A request's time is the one
its worker's zygote measured (trusted code that runs no student code: see ``served_s``), or the
grader's own clock around the call where there is no zygote; nothing the student's process says
about itself is used.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from grader import evidence
from grader.i18n import Msg
from grader.verdicts import CheckFailed, HostBusy


@dataclass(frozen=True)
class SpeedComparison:
    student_s: list[float]  # what the verdict compares (see ``work_s``), one per quiet round
    reference_s: list[float]
    student_wall_s: list[float] = field(default_factory=list)  # wall time of the same rounds, for reports
    reference_wall_s: list[float] = field(default_factory=list)

    @property
    def wall_ratios(self) -> list[float]:
        return [s / max(r, 1e-9) for s, r in zip(self.student_wall_s, self.reference_wall_s)]

    @property
    def ratios(self) -> list[float]:
        return [s / max(r, 1e-9) for s, r in zip(self.student_s, self.reference_s)]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


# The reference's worker runs no student code, so what it says its request cost is believed: the
# share of a CPU it got while it ran. A round whose reference got much less than in a typical round
# (the median) was disturbed by something else on the host and is timed again; steady load
# (another grader on the host) slows both sides alike and is no reason to refuse. Below the floor
# nothing is measurable.
RELATIVE_QUIET = 0.7
QUIET_FLOOR = 0.25
MIN_JUDGED_WALL_S = 0.01  # below this, the share is noise (timer and scheduler granularity)


def _timed(fn: Callable[[Any], Any], inputs: Any, impl: Any) -> tuple[float, Any, Any]:
    """Wall time of ``fn(inputs)`` around the call, its result, and the cost its worker reported."""
    start = time.perf_counter()
    out = fn(inputs)
    elapsed = time.perf_counter() - start
    return elapsed, out, impl.last_cost() if impl is not None and hasattr(impl, "last_cost") else None


# A request whose wall time is this much over its CPU time was not computing all along: it waited
# (preempted on a busy host, or for work it handed to a process of its own that the CPU clock does
# not count); then its wall time is what counts.
WAITING_FACTOR = 1.25


def work_s(cost: Any) -> float:
    """What a request's speed is judged on: the CPU time of the process that ran it, as its zygote
    measured it; or its wall time where that is clearly more (it waited rather than computed).

    CPU time is what the code costs, untouched by whatever else the host runs at the time (on a
    2-core host with the other core busy, wall-time ratios of the reference against itself spread
    from 0.83 to 1.62 over 200 runs, CPU-time ratios far less: see the README). It cannot be
    lowered by handing work to a forked process: that request waits, and its wall time counts.
    """
    wall = served_s(cost)
    cpu = cost.get("cpu_s") if isinstance(cost, dict) else None
    if wall is None:
        raise ValueError("a cost measured by a zygote is needed")
    if not isinstance(cpu, (int, float)) or cpu <= 0 or wall > WAITING_FACTOR * cpu:
        return wall
    return float(cpu)


def served_s(cost: Any) -> float | None:
    """The wall time a worker's zygote measured for a request (from waking the child to its reply).

    Trusted for student and reference alike: the zygote runs no student code and replaces whatever
    the child said about itself. It leaves out what is the same for any submission (the grader's
    side of the channel, the zygote's sweeps for strays), so a ratio of two is not diluted by it.
    """
    if not isinstance(cost, dict) or cost.get("by") != "zygote":
        return None
    wall = cost.get("wall_s")
    return float(wall) if isinstance(wall, (int, float)) and wall >= 0 else None


def cpu_share(cost: Any) -> float | None:
    """CPU seconds per wall second of a request, from a worker's own report; None when not judged."""
    if not isinstance(cost, dict):
        return None
    cpu, wall = cost.get("cpu_s"), cost.get("wall_s")
    if not isinstance(cpu, (int, float)) or not isinstance(wall, (int, float)) or wall < MIN_JUDGED_WALL_S:
        return None
    return float(cpu) / float(wall)


HOST_BUSY = Msg("评测主机太忙，无法公平地计时：这个速度测试没有计分（不是你的问题），请在空闲的主机上重新评测",
                "The grading host was too busy to time this fairly: this speed test was not scored (not your "
                "doing); regrade on a quiet host")


def compare_speed(
    student: Callable[[Any], Any],
    reference: Callable[[Any], Any],
    make_inputs: Callable[[int], Any],
    check: Callable[[Any, Any], None],
    rounds: int = 7,
    warmup: int = 1,
    reference_impl: Any = None,
    student_impl: Any = None,
    factor: float | None = None,
    max_rounds: int | None = None,
) -> SpeedComparison:
    """Time ``student`` against ``reference`` on ``rounds`` fresh inputs, checking each output.

    With ``factor`` (the ratio the test will judge against), ``EARLY_ROUNDS`` quiet rounds that all
    lie far from it on the same side (at most half of it, or at least twice it) settle the verdict
    early: most submissions are either the vectorised answer or a loop many times slower, and their
    later rounds would only repeat it. A median ratio close to the factor after
    ``rounds`` (within ``AMBIGUOUS`` either way) is measured on, up to ``max_rounds`` (3 x rounds):
    clear verdicts cost 7 rounds, close ones get the precision of 21 (see the README's figures).

    With ``reference_impl`` (the reference's worker), rounds in which the reference got much less of
    a CPU than in a typical round are timed again with new inputs (up to ``3 * rounds`` in all); when
    too few rounds are quiet (or the reference got under a quarter of a CPU
    in a typical round) the test is not scored (:class:`HostBusy`) rather than failed: a busy
    host is not the student's fault, and a submission cannot make it busy (its processes are
    stopped or killed between its requests, and capped by a CPU quota while they run).
    """
    samples: list[tuple[float, float, float | None]] = []
    wall_samples: list[tuple[float, float]] = []
    wanted, most = rounds, max_rounds or 3 * rounds
    i = 0
    while True:
        inputs = make_inputs(i)
        if i % 2 == 0:
            ts, out_s, cost_s = _timed(student, inputs, student_impl)
            tr, out_r, cost_r = _timed(reference, inputs, reference_impl)
        else:
            tr, out_r, cost_r = _timed(reference, inputs, reference_impl)
            ts, out_s, cost_s = _timed(student, inputs, student_impl)
        wall_s, wall_r = served_s(cost_s), served_s(cost_r)
        if wall_s is not None and wall_r is not None:  # both measured by the zygotes: no IPC, no sweeps
            walls = (wall_s, wall_r)
            ts, tr = work_s(cost_s), work_s(cost_r)
        else:
            walls = (ts, tr)
        share = cpu_share(cost_r)
        check(out_s, out_r)
        i += 1
        if i <= warmup:
            continue
        samples.append((ts, tr, share))
        wall_samples.append(walls)
        quiet = _quiet(samples)
        if factor is not None and _clear_early(quiet, factor):
            break
        if len(quiet) >= wanted:
            if wanted < most and factor is not None and _close_to(quiet, factor):
                wanted = most
                continue
            break
        if len(samples) >= 3 * wanted:
            if len(quiet) > wanted // 2:
                break
            raise HostBusy(HOST_BUSY)
    kept = [w for sample, w in zip(samples, wall_samples) if sample in quiet]
    return SpeedComparison([q[0] for q in quiet], [q[1] for q in quiet], [w[0] for w in kept], [w[1] for w in kept])


AMBIGUOUS = 1.25  # a median ratio within this factor of the verdict's factor is measured on
EARLY_ROUNDS = 3  # quiet rounds that settle a verdict when every one of them is CLEAR of the factor
CLEAR = 2.0


def _clear_early(quiet: list[tuple[float, float, float | None]], factor: float) -> bool:
    """Every one of at least ``EARLY_ROUNDS`` quiet rounds at most ``factor / CLEAR`` or every one at
    least ``factor * CLEAR``. Single rounds of the reference against itself spread 0.34-2.44 at worst
    (ex08's), so three rounds of a submission truly past the factor all landing under half of it (or
    the reverse) is a chance of about one in 10^4 or less; anything less clear gets every round."""
    if len(quiet) < EARLY_ROUNDS:
        return False
    ratios = [s / max(r, 1e-9) for s, r, _ in quiet]
    return max(ratios) <= factor / CLEAR or min(ratios) >= factor * CLEAR


def _close_to(quiet: list[tuple[float, float, float | None]], factor: float) -> bool:
    ratio = statistics.median(s / max(r, 1e-9) for s, r, _ in quiet)
    return factor / AMBIGUOUS <= ratio <= factor * AMBIGUOUS


def _quiet(samples: list[tuple[float, float, float | None]]) -> list[tuple[float, float, float | None]]:
    """The rounds whose reference got a fair share of a CPU, compared with a typical round."""
    shares = [share for _, _, share in samples if share is not None]
    if not shares:
        return samples
    typical = statistics.median(shares)
    if typical < QUIET_FLOOR:
        return []
    return [s for s in samples if s[2] is None or s[2] >= RELATIVE_QUIET * typical]


def projection_agrees(got: Any, want: float, scale: float, rel_tol: float) -> bool:
    """``got`` = <out, w> is within ``rel_tol`` of the reference's ``want``, relative to ``scale``.

    ``scale`` is the norm of the reference's output (taken from the reference's run, never the
    student's): over a random ``w`` the projection of an error ``d`` has spread ``|d|``, so the gate
    is "the output differs by at most about ``rel_tol`` of its size". Scaling by ``|want|`` instead
    would make the gate arbitrarily tight whenever the projection lands near zero by chance, and
    fail correct code written with another, equally exact formula.
    """
    return isinstance(got, float) and abs(got - want) <= rel_tol * (abs(scale) + 1.0)


def _projections_agree(got: Any, want: Any, rel_tol: float) -> bool:
    """Every repetition's output agrees with the reference's (the projections, one per repetition)."""
    mine, theirs, scales = got.get("projections"), want.get("projections"), want.get("norms")
    return (isinstance(mine, list) and isinstance(theirs, list) and isinstance(scales, list)
            and len(mine) == len(theirs) == len(scales)
            and all(projection_agrees(g, r, s, rel_tol) for g, r, s in zip(mine, theirs, scales)))


def _fresh_rounds(student: Any, reference: Any, args: list[Any], generator: Any,
                  repeats: int) -> Callable[[int], dict[str, Any]]:
    """Each round, fresh inputs in both workers, made untimed and while no student code runs (see
    the arena), and the seed of the projection that compares their outputs."""
    import torch

    def make_round(_: int) -> dict[str, Any]:
        seed, project_seed = (int(v) for v in torch.randint(0, 2**62, (2,), generator=generator))
        return {"student": student.generate(args, seed, repeats), "reference": reference.generate(args, seed, repeats),
                "project_seed": project_seed}

    return make_round


def compare_generated_speed(
    student: Any,
    reference: Any,
    name: str,
    args: list[Any],
    generator: Any,
    *,
    rounds: int = 7,
    repeats: int = 10,
    kwargs: dict[str, Any] | None = None,
    rel_tol: float = 1e-3,
    factor: float | None = None,
) -> SpeedComparison:
    """Speed of ``name`` on inputs made inside each worker (see the ``repeat_generated`` probe).

    ``args`` describe the inputs (``{"randn": shape}`` …) rather than carry them. Each round, both
    workers' zygotes make ``repeats`` sets of inputs (untimed, while the student's process is
    stopped), then one timed request per worker runs ``repeats`` calls of real work on them. The
    outputs are compared through a random projection the reference computes the same way. The comparison is a gate, not the
    value check (the accuracy tests judge values): close enough that the timed code does the
    real work (a fast wrong answer earns no speed point), loose enough that one small numerical
    mistake (a sample instead of a population variance: about 2e-4 here) costs only the tests
    about it, not the speed point too.
    """
    def run(impl: Any, side: str) -> Callable[[dict[str, Any]], Any]:
        device = getattr(impl, "device", "cpu")
        on_device = {"device": device} if device != "cpu" else {}  # a GPU run times on the GPU
        return lambda round_: impl.probe("repeat_generated", name=name, layout=round_[side],
                                         project_seed=round_["project_seed"], kwargs=kwargs or {}, **on_device)

    def check(got: Any, want: Any) -> None:
        if got.get("shape") != want.get("shape") or not _projections_agree(got, want, rel_tol):
            if got.get("shape") != want.get("shape"):
                raise CheckFailed(Msg(
                    f"{name}：计时测试中的输出形状为 {got.get('shape')}，期望 {want.get('shape')}",
                    f"{name}: during the timing runs the output had shape {got.get('shape')}, "
                    f"expected {want.get('shape')}",
                ), Msg("计时测试中的输出形状与参考结果不同，未计算速度",
                       "during the timing runs the output shape differed from the reference's, so speed was not judged"))
            differed = Msg("计时测试中（较大的随机输入）输出的数值与参考结果不一致，未计算速度",
                           "during the timing runs (larger random inputs) the output values differed from the "
                           "reference, so speed was not judged")
            raise CheckFailed(Msg(f"{name}：{differed.zh}", f"{name}: {differed.en}"), differed)

    return compare_speed(run(student, "student"), run(reference, "reference"),
                         _fresh_rounds(student, reference, args, generator, repeats), check, rounds=rounds,
                         reference_impl=reference, student_impl=student, factor=factor)


def compare_probe_speed(
    student: Any,
    reference: Any,
    probe: str,
    args: list[Any],
    generator: Any,
    *,
    rounds: int = 7,
    repeats: int = 10,
    factor: float | None = None,
    rel_tol: float = 1e-3,
    **probe_kwargs: Any,
) -> SpeedComparison:
    """Like ``compare_generated_speed``, through an exercise's own timing probe: ``probe`` is called
    as ``probe(layout=…, project_seed=…, **probe_kwargs)`` in both workers and answers with the
    output's shape and one random projection per repetition (see ``repeat_generated``), for work
    that is more than one call of a function: a module built from arguments, a training step, an
    attack."""
    def run(impl: Any, side: str) -> Callable[[dict[str, Any]], Any]:
        return lambda round_: impl.probe(probe, layout=round_[side], project_seed=round_["project_seed"],
                                         **probe_kwargs)

    def check(got: Any, want: Any) -> None:
        if got.get("shape") != want.get("shape") or not _projections_agree(got, want, rel_tol):
            differed = Msg("计时测试中（较大的随机输入）结果与参考结果不一致，未计算速度",
                           "during the timing runs (larger random inputs) the result differed from the reference, so "
                           "speed was not judged")
            raise CheckFailed(differed, differed)

    return compare_speed(run(student, "student"), run(reference, "reference"),
                         _fresh_rounds(student, reference, args, generator, repeats), check, rounds=rounds,
                         reference_impl=reference, student_impl=student, factor=factor)


REFERENCE = Msg("参考实现", "the reference")


def assert_speed(result: SpeedComparison, factor: float, what: str, hint: Msg | None = None,
                 baseline: Msg = REFERENCE) -> None:
    """The median time ratio of the timed code to ``baseline`` (the reference, unless a test
    compares two runs of the student's own code) is at most ``factor``."""
    ratio = result.median_ratio
    evidence.record("speed", what=what, ratios=[round(r, 4) for r in result.ratios], median_ratio=round(ratio, 4),
                    factor=factor, student_ms=round(1000 * statistics.median(result.student_s), 4),
                    reference_ms=round(1000 * statistics.median(result.reference_s), 4),
                    baseline="reference" if baseline is REFERENCE else "own")
    if ratio > factor:
        ms_s = 1000 * statistics.median(result.student_s)
        ms_r = 1000 * statistics.median(result.reference_s)
        message = Msg(
            f"{what} 比{baseline.zh}慢 {ratio:.1f} 倍（中位数 {ms_s:.1f} 毫秒对 {ms_r:.1f} 毫秒，允许 {factor:g} 倍）。"
            "请使用向量化的张量运算代替 Python 循环。",
            f"{what} is {ratio:.1f}x slower than {baseline.en} (median {ms_s:.1f} ms vs {ms_r:.1f} ms, "
            f"allowed {factor:g}x). Use vectorised tensor operations instead of Python loops.",
        )
        # What a student may see of a hidden test: the symptom and the hint, without the timings.
        symptom = Msg(f"比{baseline.zh}慢得多：请使用向量化的张量运算代替 Python 循环",
                      f"much slower than {baseline.en}: use vectorised tensor operations instead of Python loops")
        raise CheckFailed(message + hint if hint else message, symptom + hint if hint else symptom)
