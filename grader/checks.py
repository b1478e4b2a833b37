"""Tensor assertions shared by every autotest.

Each check raises :class:`~grader.verdicts.CheckFailed` with a bilingual message that states what
was expected and what came back: shapes, dtypes, devices, the largest errors and where they are.
Closeness is elementwise (atol + rtol) **and** gated on the relative L2 error, so an output of all
zeros cannot slip through a loose ``atol``. A ``mistakes`` map names common wrong answers: when the
submission's output matches one of them, the message says which mistake it looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from grader import evidence
from grader.i18n import Msg
from grader.verdicts import CheckFailed, Status, SubmissionProblem, ThresholdMissed
from grader.worker.wire import tensor_facts


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    rel_l2: float


TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(atol=1e-8, rtol=1e-6, rel_l2=1e-6),
    torch.float32: Tolerance(atol=1e-5, rtol=1e-4, rel_l2=1e-4),
    torch.float16: Tolerance(atol=1e-3, rtol=1e-2, rel_l2=1e-2),
    torch.bfloat16: Tolerance(atol=1e-2, rtol=2e-2, rel_l2=2e-2),
}
EXACT = Tolerance(0.0, 0.0, 0.0)


def tolerance_for(dtype: torch.dtype) -> Tolerance:
    return TOLERANCES.get(dtype, EXACT)


def fail(message: Msg, hint: Msg | None = None, symptom: Msg | None = None,
         error: type[CheckFailed] = CheckFailed) -> None:
    """Fail a check. ``message`` may name inputs and values; ``symptom`` must not (a student may
    see it, with the hint, for a hidden test). ``error`` says what kind of failure it is
    (``ThresholdMissed``: a training run's miss, which the grader runs once more)."""
    summary = symptom + hint if symptom and hint else symptom or hint
    raise error(message + hint if hint else message, summary)


def fail_on_probe_error(result: dict, what: str, hint: Msg | None = None) -> None:
    """Fail when a module probe reports that the student's code raised (``error``) or that their
    module refused the state_dict the grader sent (``load_error``)."""
    for key in ("error", "load_error"):
        if result.get(key):
            word = ("load_state_dict 失败：", "load_state_dict failed: ") if key == "load_error" else \
                   ("你的代码抛出了异常 ", "your code raised ")
            fail(Msg(f"{what}：{word[0]}{result[key]}", f"{what}: {word[1]}{result[key]}"), hint)


WRONG_SHAPE = Msg("结果的形状不对", "the result has the wrong shape")
WRONG_VALUES = Msg("结果的数值与期望不符", "the values differ from the expected result")
NOT_FINITE = Msg("结果中有 NaN 或 Inf", "the result contains NaN or Inf")


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def call_or_fail(fn: Any, what: str, hint: Msg | None = None) -> Any:
    """``fn()``, a call into the student's code: an exception it raised fails this check, with
    ``what`` and ``hint``, instead of being reported as a crash of the test. Other problems (not
    implemented, timed out, crashed) pass on as they are."""
    try:
        return fn()
    except SubmissionProblem as problem:
        if problem.status != Status.ERROR:
            raise
        fail(Msg(f"{what}：{problem.message.zh}", f"{what}: {problem.message.en}"), hint)


def assert_tensor(got: Any, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        fail(Msg(f"{what}：应返回 torch.Tensor，实际得到 {type(got).__name__}",
                 f"{what}: expected a torch.Tensor, got {type(got).__name__}"),
             symptom=Msg(f"应返回 torch.Tensor，实际得到 {type(got).__name__}",
                         f"expected a torch.Tensor, got {type(got).__name__}"))
    return got


def assert_shape(got: Any, shape: Sequence[int], what: str, hint: Msg | None = None) -> None:
    """The exact shape: no broadcasting, no squeezing."""
    t = assert_tensor(got, what)
    if list(t.shape) != [int(s) for s in shape]:
        evidence.record("mismatch", what=what, expected_shape=[int(s) for s in shape], got_shape=list(t.shape),
                        expected_dtype=None, got_dtype=str(t.dtype).removeprefix("torch."))
        fail(Msg(f"{what}：形状应为 {_fmt_shape(shape)}，实际为 {_fmt_shape(t.shape)}",
                 f"{what}: expected shape {_fmt_shape(shape)}, got {_fmt_shape(t.shape)}"), hint, WRONG_SHAPE)


def assert_dtype(got: Any, dtype: torch.dtype, what: str, hint: Msg | None = None) -> None:
    t = assert_tensor(got, what)
    if t.dtype != dtype:
        fail(Msg(f"{what}：dtype 应为 {dtype}，实际为 {t.dtype}", f"{what}: expected dtype {dtype}, got {t.dtype}"),
             hint, Msg(f"dtype 应为 {dtype}，实际为 {t.dtype}", f"expected dtype {dtype}, got {t.dtype}"))


def assert_device(got: Any, device: str | torch.device, what: str, hint: Msg | None = None) -> None:
    """The device the tensor was on where it was made (the worker, for student results)."""
    t = assert_tensor(got, what)
    expected = torch.device(device)
    actual = torch.device(tensor_facts(t).device)
    same = actual.type == expected.type and (expected.index is None or actual.index == expected.index)
    if not same:
        fail(Msg(f"{what}：应在设备 {expected} 上，实际在 {actual} 上",
                 f"{what}: expected device {expected}, got {actual}"), hint,
             Msg(f"应在设备 {expected} 上，实际在 {actual} 上", f"expected device {expected}, got {actual}"))


def assert_finite(got: Any, what: str, hint: Msg | None = None) -> None:
    t = assert_tensor(got, what)
    if t.is_floating_point() and t.device.type != "meta":
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            fail(Msg(f"{what}：包含 NaN/Inf（共 {int(bad.sum())} 个，首个位于索引 {index}，值 {t[index].item()}）",
                     f"{what}: contains NaN/Inf ({int(bad.sum())} elements, first at index {index}: {t[index].item()})"),
                 hint, NOT_FINITE)


def _matches(got: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> bool:
    if list(got.shape) != list(expected.shape):
        return False
    g, e = got.detach().double(), expected.detach().double()
    if not torch.equal(torch.isnan(g), torch.isnan(e)):
        return False
    g, e = torch.nan_to_num(g, nan=0.0), torch.nan_to_num(e, nan=0.0)
    if bool(((g - e).abs() > tol.atol + tol.rtol * e.abs()).any()):
        return False
    return _rel_l2(g, e) <= tol.rel_l2 or tol.rel_l2 == 0 and torch.equal(g, e)


def _rel_l2(g: torch.Tensor, e: torch.Tensor) -> float:
    diff = torch.linalg.vector_norm(g - e).item()
    scale = torch.linalg.vector_norm(e).item()
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def _diagnose(got: torch.Tensor, mistakes: Mapping[Msg, Any] | None, tol: Tolerance) -> Msg | None:
    for hint, wrong in (mistakes or {}).items():
        if isinstance(wrong, torch.Tensor) and _matches(got, wrong, tol):
            return Msg(f"看起来像常见错误：{hint.zh}", f"This looks like a common mistake: {hint.en}")
    return None


def assert_close(
    got: Any,
    expected: torch.Tensor,
    what: str,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    rel_l2: float | None = None,
    check_dtype: bool = True,
    hint: Msg | None = None,
    mistakes: Mapping[Msg, Any] | None = None,
) -> None:
    """Shape, dtype and values of ``got`` match ``expected`` within the dtype's tolerance."""
    t = assert_tensor(got, what)
    if check_dtype:  # dtype first: a wrong dtype often explains a wrong shape or wrong values too
        assert_dtype(t, expected.dtype, what, hint)
    assert_shape(t, expected.shape, what, hint)
    default = tolerance_for(expected.dtype)
    tol = Tolerance(
        default.atol if atol is None else atol,
        default.rtol if rtol is None else rtol,
        default.rel_l2 if rel_l2 is None else rel_l2,
    )
    if expected.device.type == "meta":
        return  # the test asked for a result without values (the meta device): shape and dtype were all
    if t.device.type == "meta":
        fail(Msg(f"{what}：结果在 `meta` 设备上，没有数值可以比较；请在要求的设备上计算真实结果",
                 f"{what}: the result is on the meta device and has no values to compare; compute real values "
                 "on the requested device"), hint,
             Msg("结果在 `meta` 设备上，没有数值", "the result is on the meta device and has no values"))
    if _matches(t, expected, tol):
        return
    g, e = t.detach().double().cpu(), expected.detach().double().cpu()
    nan_mismatch = ~torch.eq(torch.isnan(g), torch.isnan(e))
    abs_err = torch.where(nan_mismatch, torch.full_like(g, math.inf), torch.nan_to_num(g - e, nan=0.0).abs())
    if abs_err.numel() == 0:
        return
    flat = int(abs_err.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), abs_err.shape))
    rl2 = _rel_l2(torch.nan_to_num(g), torch.nan_to_num(e))
    gv, ev = g.reshape(-1)[flat].item(), e.reshape(-1)[flat].item()
    rel_err = abs(gv - ev) / abs(ev) if ev != 0 else math.inf
    where = f"{index}" if index else "()"
    evidence.record(
        "mismatch", what=what, expected_shape=list(e.shape), got_shape=list(g.shape),
        expected_dtype=str(expected.dtype).removeprefix("torch."), got_dtype=str(t.dtype).removeprefix("torch."),
        max_abs=evidence.finite(abs_err.reshape(-1)[flat].item()), max_rel=evidence.finite(rel_err),
        rel_l2=evidence.finite(rl2), worst_index=list(index), got=evidence.finite(gv), expected=evidence.finite(ev),
        atol=tol.atol, rtol=tol.rtol, error_map=evidence.error_map(abs_err),
    )
    detail = Msg(
        f"{what}：数值与期望不符。最大绝对误差 {abs_err.reshape(-1)[flat].item():.3g}，位于索引 {where}"
        f"（得到 {gv:.6g}，期望 {ev:.6g}，相对误差 {rel_err:.3g}）；相对 L2 误差 {rl2:.3g}"
        f"（允许 atol={tol.atol:g}, rtol={tol.rtol:g}, 相对L2={tol.rel_l2:g}）",
        f"{what}: values differ from the expected result. Max abs error {abs_err.reshape(-1)[flat].item():.3g} "
        f"at index {where} (got {gv:.6g}, expected {ev:.6g}, rel error {rel_err:.3g}); relative L2 error "
        f"{rl2:.3g} (allowed atol={tol.atol:g}, rtol={tol.rtol:g}, rel-L2={tol.rel_l2:g})",
    )
    symptom = WRONG_VALUES
    if bool((g == 0).all()) and not bool((e == 0).all()):
        all_zeros = Msg("（输出全为 0）", "(the output is all zeros)")
        detail, symptom = detail + all_zeros, symptom + all_zeros
    diagnosis = _diagnose(t, mistakes, tol)
    fail(diagnosis + detail if diagnosis else detail, hint, diagnosis + symptom if diagnosis else symptom)


def assert_at_least(value: float, threshold: float, message: Msg, *, metric: str = "accuracy",
                    curve: Any = None, hint: Msg | None = None) -> None:
    """A metric of a short training run (held-out accuracy, say) reaches ``threshold``. The value,
    the threshold and the training loss per step (``curve``, when the probe returns one) go to the
    report, where they are drawn as a curve with the threshold beside it. A miss raises
    ``ThresholdMissed``: the test is run once more on fresh data before the miss is reported."""
    _record_threshold(value, threshold, metric, curve, "at_least")
    if not (math.isfinite(value) and value >= threshold):
        fail(message, hint, error=ThresholdMissed)


def assert_at_most(value: float, threshold: float, message: Msg, *, metric: str = "mse",
                   curve: Any = None, hint: Msg | None = None) -> None:
    """A loss-like metric of a short training run (held-out MSE, say) stays below ``threshold``;
    recorded for the report like ``assert_at_least``."""
    _record_threshold(value, threshold, metric, curve, "at_most")
    if not (math.isfinite(value) and value < threshold):
        fail(message, hint, error=ThresholdMissed)


def _record_threshold(value: float, threshold: float, metric: str, curve: Any, direction: str) -> None:
    losses = [float(v) for v in curve] if isinstance(curve, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in curve) else []
    evidence.record("threshold", metric=metric, value=evidence.finite(value), threshold=threshold,
                    direction=direction, losses=evidence.thin_curve(losses))


def assert_number_close(got: Any, expected: float, what: str, *, atol: float, hint: Msg | None = None) -> None:
    """A Python number (not a tensor) within ``atol`` of ``expected``."""
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        fail(Msg(f"{what}：应返回 Python 数字（float），实际得到 {type(got).__name__}（可用 .item()）",
                 f"{what}: expected a Python number (float), got {type(got).__name__} (use .item())"), hint,
             Msg("应返回 Python 数字（float），可用 `.item()`", "expected a Python number (float); use `.item()`"))
    if not math.isfinite(got) or abs(got - expected) > atol:
        fail(Msg(f"{what}：得到 {got:.6g}，期望 {expected:.6g}（允许误差 {atol:g}）",
                 f"{what}: got {got:.6g}, expected {expected:.6g} (tolerance {atol:g})"), hint, WRONG_VALUES)


def assert_grad(got: Any, expected: torch.Tensor, what: str, hint: Msg | None = None, **tolerance: Any) -> None:
    """A gradient that must exist and match ``expected``."""
    if got is None:
        fail(Msg(f"{what} 没有得到梯度（.grad 为 None）：计算图是否断开（detach/.item()/no_grad）？",
                 f"No gradient reached {what} (.grad is None): is the graph broken (detach, .item(), no_grad)?"),
             hint, Msg("没有梯度传到输入（.grad 为 None）：计算图是否断开？",
                       "no gradient reached an input (.grad is None): is the graph broken?"))
    assert_close(got, expected, f"{what}.grad", hint=hint, **tolerance)


def assert_no_grad(got: Any, what: str, hint: Msg | None = None) -> None:
    """A tensor that must not have received a gradient (frozen, or a head that did not run)."""
    if got is not None and not (isinstance(got, torch.Tensor) and bool((got == 0).all())):
        fail(Msg(f"{what} 不应得到梯度，但它的 .grad 不为空",
                 f"{what} should not receive a gradient, but its .grad is set"), hint,
             Msg("某个张量得到了不应有的梯度", "a tensor received a gradient it should not have"))


def assert_attached(got: Any, what: str, hint: Msg | None = None) -> None:
    """An output that must still be part of the autograd graph."""
    t = assert_tensor(got, what)
    if not tensor_facts(t).requires_grad:
        fail(Msg(f"{what}：输出已脱离计算图（requires_grad=False），梯度无法回传。不要使用 detach()/.data/.item()/torch.no_grad()",
                 f"{what}: the output is detached from the autograd graph (requires_grad=False), so no gradient can "
                 "flow back. Avoid detach(), .data, .item() and torch.no_grad() here"), hint,
             Msg("输出已脱离计算图（requires_grad=False），梯度无法回传", "the output is detached from the autograd graph "
                 "(requires_grad=False), so no gradient can flow back"))


def assert_true(condition: bool, message: Msg, hint: Msg | None = None) -> None:
    if not condition:
        fail(message, hint)


def assert_equal(got: Any, expected: Any, what: str, hint: Msg | None = None) -> None:
    if type(got) is not type(expected) or got != expected:
        fail(Msg(f"{what}：得到 {got!r}，期望 {expected!r}", f"{what}: got {got!r}, expected {expected!r}"), hint,
             Msg("结果与期望不符", "the result differs from the expected one"))


def assert_gradcheck(
    impl: Any,
    name: str,
    args: Sequence[Any],
    *,
    wrt: Sequence[int] = (0,),
    kwargs: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    directions: int = 3,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    hint: Msg | None = None,
) -> None:
    """Backward agrees with finite differences of forward, in float64, through ``impl``.

    A randomised gradcheck: for random unit directions ``u`` and cotangents ``v`` it compares
    ``<vjp(v), u>`` from the implementation's backward with ``(v·f(x+εu) − v·f(x−εu)) / 2ε``
    computed here from its forward outputs. A few calls decide it, whatever the input size.
    """
    kwargs = dict(kwargs or {})
    args = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    what = f"{name}()"
    for k in range(directions):
        out = impl.call(name, *args, **kwargs)
        # Finite differences in float32 say nothing about backward: a float64 input must stay float64.
        assert_dtype(out, torch.float64, what, hint)
        v = torch.randn(out.shape, dtype=torch.float64, generator=generator)
        result = impl.vjp(name, args, grad_output=v, wrt=wrt, **kwargs)
        assert_attached(result["output"], what, hint)
        us = []
        analytic = 0.0
        for pos, grad in zip(wrt, result["grads"]):
            if grad is None:
                fail(Msg(f"{what}：第 {pos} 个输入没有得到梯度", f"{what}: no gradient reached input {pos}"), hint,
                     Msg(f"第 {pos} 个输入没有得到梯度", f"no gradient reached input {pos}"))
            assert_shape(grad, args[pos].shape, f"{what} → grads[{pos}]", hint)
            u = torch.randn(args[pos].shape, dtype=torch.float64, generator=generator)
            u = u / torch.linalg.vector_norm(u).clamp_min(1e-12)
            us.append(u)
            analytic += float((grad.double() * u).sum())
        plus, minus = list(args), list(args)
        for pos, u in zip(wrt, us):
            plus[pos] = args[pos] + eps * u
            minus[pos] = args[pos] - eps * u
        f_plus = impl.call(name, *plus, **kwargs)
        f_minus = impl.call(name, *minus, **kwargs)
        numeric = float(((f_plus.double() - f_minus.double()) * v).sum()) / (2 * eps)
        if abs(analytic - numeric) > atol + rtol * abs(numeric):
            fail(Msg(
                f"{what}：反向传播的梯度与前向的数值差分不一致（方向导数：`backward` 得 {analytic:.6g}，"
                f"数值差分得 {numeric:.6g}）。检查 `backward` 的公式，以及是否乘以 `grad_output`。",
                f"{what}: gradients from backward disagree with finite differences of forward (directional "
                f"derivative {analytic:.6g} from backward vs {numeric:.6g} numerically). Check the backward "
                "formula and that it multiplies by grad_output.",
            ), hint, Msg("反向传播的梯度与前向的数值差分不一致：检查 `backward` 的公式，以及是否乘以 `grad_output`",
                         "gradients from backward disagree with finite differences of forward: check the backward "
                         "formula and that it multiplies by grad_output"))


__all__ = [
    "assert_gradcheck",
    "Tolerance", "TOLERANCES", "tolerance_for", "fail", "assert_tensor", "assert_shape",
    "assert_dtype", "assert_device", "assert_finite", "assert_close", "assert_number_close",
    "assert_grad", "assert_no_grad", "assert_attached", "assert_true", "assert_equal",
]
