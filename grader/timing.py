"""Speed relative to the reference, measured by the grader around worker calls.

Student and reference run in workers of the same kind and are timed the same way, in
alternating order (A B, B A, …) with fresh inputs each round; every output is checked, so a
fast wrong answer (or a cached one) does not count. The verdict is the median of the per-round
ratios, which shrugs off a round disturbed by the rest of the machine. No number the worker
reports is used.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from grader.i18n import Msg
from grader.verdicts import CheckFailed


@dataclass(frozen=True)
class SpeedComparison:
    student_s: list[float]
    reference_s: list[float]

    @property
    def ratios(self) -> list[float]:
        return [s / max(r, 1e-9) for s, r in zip(self.student_s, self.reference_s)]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


def _timed(fn: Callable[[Any], Any], inputs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(inputs)
    return time.perf_counter() - start, out


def compare_speed(
    student: Callable[[Any], Any],
    reference: Callable[[Any], Any],
    make_inputs: Callable[[int], Any],
    check: Callable[[Any, Any], None],
    rounds: int = 7,
    warmup: int = 1,
) -> SpeedComparison:
    """Time ``student`` against ``reference`` on ``rounds`` fresh inputs, checking each output."""
    student_s: list[float] = []
    reference_s: list[float] = []
    for i in range(warmup + rounds):
        inputs = make_inputs(i)
        if i % 2 == 0:
            ts, out_s = _timed(student, inputs)
            tr, out_r = _timed(reference, inputs)
        else:
            tr, out_r = _timed(reference, inputs)
            ts, out_s = _timed(student, inputs)
        check(out_s, out_r)
        if i >= warmup:
            student_s.append(ts)
            reference_s.append(tr)
    return SpeedComparison(student_s, reference_s)


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
) -> SpeedComparison:
    """Speed of ``name`` on inputs generated inside each worker (see the ``repeat_generated`` probe).

    ``args`` describe the inputs (``{"randn": shape}`` …) rather than carry them, so each round
    costs one small request and ``repeats`` calls of real work. The outputs are compared through
    a random projection the reference computes the same way. The comparison is a gate, not the
    value check (the accuracy tests judge values): close enough that the timed code does the
    real work (a fast wrong answer earns no speed point), loose enough that one small numerical
    mistake (a sample instead of a population variance: about 2e-4 here) costs only the tests
    about it, not the speed point too.
    """
    import torch

    def run(impl: Any) -> Callable[[tuple[int, int]], Any]:
        return lambda seeds: impl.probe("repeat_generated", name=name, args=args, seed=seeds[0],
                                        repeats=repeats, project_seed=seeds[1], kwargs=kwargs or {})

    def same(got: Any, want: Any) -> bool:
        """Every repetition's output agrees with the reference's (the projections, one per repetition)."""
        mine, theirs = got.get("projections"), want.get("projections")
        return (isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs)
                and all(isinstance(g, float) and abs(g - r) <= rel_tol * (abs(r) + 1.0) for g, r in zip(mine, theirs)))

    def check(got: Any, want: Any) -> None:
        if got.get("shape") != want.get("shape") or not same(got, want):
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

    def seeds(_: int) -> tuple[int, int]:
        pair = torch.randint(0, 2**62, (2,), generator=generator)
        return int(pair[0]), int(pair[1])

    return compare_speed(run(student), run(reference), seeds, check, rounds=rounds)


def assert_speed(result: SpeedComparison, factor: float, what: str, hint: Msg | None = None) -> None:
    """The median student/reference time ratio is at most ``factor``."""
    ratio = result.median_ratio
    if ratio > factor:
        ms_s = 1000 * statistics.median(result.student_s)
        ms_r = 1000 * statistics.median(result.reference_s)
        message = Msg(
            f"{what} 比参考实现慢 {ratio:.1f} 倍（中位数 {ms_s:.1f} 毫秒对 {ms_r:.1f} 毫秒，允许 {factor:g} 倍）。"
            "请使用向量化的张量运算代替 Python 循环。",
            f"{what} is {ratio:.1f}x slower than the reference (median {ms_s:.1f} ms vs {ms_r:.1f} ms, "
            f"allowed {factor:g}x). Use vectorised tensor operations instead of Python loops.",
        )
        # What a student may see of a hidden test: the symptom and the hint, without the timings.
        symptom = Msg("比参考实现慢得多：请使用向量化的张量运算代替 Python 循环",
                      "much slower than the reference: use vectorised tensor operations instead of Python loops")
        raise CheckFailed(message + hint if hint else message, symptom + hint if hint else symptom)
