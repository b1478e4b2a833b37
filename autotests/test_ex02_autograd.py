"""Autotests for ex02_autograd: gradient descent by hand, a custom autograd Function, higher
derivatives and input saliency.

Functions and models cannot be sent to the worker, so the probes in
``probes/ex02_autograd.py`` build them there (functions by name, models from the
state dicts sent here) and report what the submission did; every expected value is computed
here from a formula.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_speed, projection_agrees
from grader.worker.wire import tensor_facts

pytestmark = pytest.mark.exercise("ex02_autograd")

# -- feedback ------------------------------------------------------------------------------------------
RETURN_FLOAT = Msg("应返回 Python float：对 0 维张量调用 .item()", "Return a Python float: call .item() on the 0-dim tensor")
ACCUMULATE = Msg("梯度在迭代间累积：每次更新后需要清零（`x.grad.zero_()` 或 `x.grad = None`）",
                 "Gradients accumulate across steps: zero them after each update (x.grad.zero_() or x.grad = None)")
NON_LEAF_X = Msg("更新后 x 不再是叶子节点（它的 .grad 变成 None）：请在 torch.no_grad() 中原地更新：`x -= lr * x.grad`",
                 "x is no longer a leaf after the update (its .grad becomes None): update it in place under "
                 "torch.no_grad(): x -= lr * x.grad")
INPLACE_NEEDS_NO_GRAD = Msg("对需要梯度的叶子张量原地更新时必须放在 `with torch.no_grad():` 块中",
                            "An in-place update of a leaf that requires grad must run inside with torch.no_grad():")
LOST_REQUIRES_GRAD = Msg("更新后 x 不再 requires_grad：不要在 no_grad 中创建新张量，而是原地更新原来的 x",
                         "x no longer requires grad after the update: do not build a new tensor under no_grad, "
                         "update the original x in place")
DIVERGING_IS_NOT_AN_ERROR = Msg("学习率过大时结果可以发散（很大、Inf 或 NaN），但函数不应报错",
                                "With too large a learning rate the result may diverge (huge, inf or nan), but the "
                                "function must not raise")
NOT_A_PAIR = Msg("fit_line 应返回两个 float 组成的元组 (w, b)", "fit_line must return a tuple of two floats (w, b)")
BROADCAST = Msg("预测与目标形状不一致（(N,1) 与 (N,)）会广播成 (N,N)，损失就错了：先把 x 和 y 都展平成 (N,)",
                "Prediction and target shapes differ ((N,1) vs (N,)), so they broadcast to (N,N) and the loss is "
                "wrong: flatten x and y to (N,) first")
SUM_NOT_MEAN = Msg("损失应取平均 .mean() 而不是求和 .sum()：求和时梯度随 N 放大，学习率需要随 N 缩放",
                   "Use the mean squared error, not the sum: with sum the gradient grows with N and the learning "
                   "rate would have to shrink with it")
DIVERGED = Msg("拟合发散（NaN/Inf）：损失应取平均 .mean() 而不是求和 .sum()，否则给定的学习率太大",
               "The fit diverged (NaN/Inf): use the mean squared error, not the sum, or the given learning rate is "
               "too large")
NON_LEAF_W = Msg("w 或 b 不是叶子张量，.grad 为 None：用 torch.zeros(..., requires_grad=True) 直接创建"
                 "（要缩放时先缩放，再 requires_grad_()）",
                 "w or b is not a leaf tensor, so its .grad is None: create it directly with requires_grad=True "
                 "(to scale it, scale first and then call requires_grad_())")
IGNORES_GRAD_OUTPUT = Msg("backward() 必须乘以 grad_output（链式法则）", "backward must multiply by grad_output (chain rule)")
WRONG_NUM_GRADS = Msg("backward() 的返回值个数必须等于 forward() 的输入个数：返回 (grad_x, None)，`beta` 对应 None",
                      "backward must return one gradient per forward input: return (grad_x, None), with None for beta")
MISSING_BETA = Msg("β≠1 时梯度错误：导数 σ(βx) + βx·σ(βx)(1−σ(βx)) 中缺少 β 因子",
                   "Wrong gradient when beta != 1: the derivative sigmoid(beta*x) + beta*x*sigmoid(beta*x)*(1 - "
                   "sigmoid(beta*x)) is missing the beta factor")
BETA_HINT = Msg("β≠1 时才出错？检查导数第二项中的 β 因子：β·x·σ(βx)(1−σ(βx))",
                "Wrong only when beta != 1? Check the beta factor in the derivative's second term: "
                "beta*x*sigmoid(beta*x)*(1 - sigmoid(beta*x))")
NOT_THE_FUNCTION = Msg("swish() 应通过 SwishFn.apply(x, beta) 使用你写的 autograd.Function，而不是由普通运算自动求导",
                       "swish must go through your autograd.Function with SwishFn.apply(x, beta), not rely on "
                       "autograd of plain tensor operations")
FLOAT32_BUFFER = Msg("float64 输入得到了 float32 输出：新建的张量（torch.zeros()、torch.empty()、torch.tensor()）默认是 "
                     "float32，请传入 dtype=x.dtype 或使用 torch.zeros_like(x)",
                     "A float64 input gave a float32 output: new tensors (torch.zeros, torch.empty, torch.tensor) default "
                     "to float32; pass dtype=x.dtype or use torch.zeros_like(x)")
UNSTABLE = Msg("|x| 很大时出现 NaN/Inf：请用 torch.sigmoid，不要手写 exp(x)/(1+exp(x))",
               "NaN/Inf for large |x|: use torch.sigmoid instead of exp(x)/(1+exp(x))")
CREATE_GRAPH = Msg("求高阶导需要 torch.autograd.grad(..., create_graph=True)：否则一阶导不在计算图上"
                   "（报错 'does not require grad' 或得到全 0）",
                   "Higher derivatives need torch.autograd.grad(..., create_graph=True): without it the first "
                   "derivative is cut from the graph ('does not require grad', or all zeros)")
ZEROS_EXPECTED = Msg("导数已不再依赖 x，结果应全为 0", "The derivative no longer depends on x, so the result is all zeros")
CONSTANT_ZEROS = Msg("当导数不再依赖 x 时应返回 0，而不是报错：检查 y.requires_grad，并用 allow_unused=True"
                     "（或 materialize_grads=True）",
                     "When the derivative no longer depends on x, return zeros instead of raising: check "
                     "y.requires_grad and pass allow_unused=True (or materialize_grads=True)")
BACKWARD_ACCUMULATES = Msg("使用 torch.autograd.grad 而非 .backward()：.grad 会在多次求导之间累积",
                           "Use torch.autograd.grad, not .backward(): .grad accumulates from one derivative to "
                           "the next")
MUTATES_CALLER_X = Msg("修改了调用者的张量 x（requires_grad、.grad 或数值）：请在副本上求导 "
                       "x = x.detach().clone().requires_grad_()",
                       "The caller's tensor x was changed (requires_grad, .grad or values): differentiate a copy, "
                       "x = x.detach().clone().requires_grad_()")
PARAM_GRADS = Msg("模型参数上残留了梯度：请用 torch.autograd.grad(目标, x) 只对输入求导，不要 backward()",
                  "Gradients were left on the model's parameters: use torch.autograd.grad(target, x) to "
                  "differentiate with respect to the input only, not backward()")
SUM_LOGITS = Msg("应只取每个样本目标类别的 logit（用 gather()），不要把所有类别的 logit 相加",
                 "Select each sample's target-class logit (gather); do not sum the logits of all classes")
NO_ABS = Msg("显著性是梯度的绝对值：别忘了 .abs()", "Saliency is the absolute value of the gradient: apply .abs()")
MODE_NOT_RESTORED = Msg("模型的 train/eval 模式没有恢复：开始时记下 model.training，结束前 model.train(was_training)",
                        "The model's train/eval mode was not restored: remember model.training and call "
                        "model.train(was_training) before returning")
EVAL_MODE = Msg("显著性应在 eval 模式下计算（关闭 Dropout），结果才确定",
                "Compute the saliency in eval mode (dropout off) so that it is deterministic")
SALIENCY_ATTACHED = Msg("返回的显著性不应需要梯度：返回梯度的绝对值即可（不要 create_graph，也不要返回计算图上的张量）",
                        "The returned saliency must not require grad: return the gradient's absolute value (no "
                        "create_graph, no tensor that is still on the graph)")
PER_SAMPLE_LOOP = Msg("对整批只做一次前向和一次反向：把各样本目标 logit 求和后对 x 求导，就得到每个样本的梯度",
                      "Use one forward and one backward for the whole batch: the gradient of the sum of the target "
                      "logits with respect to x gives every sample's gradient at once")
DEFAULT_STEPS = Msg("默认参数应为 steps=100：显式传入 steps=100 的同一调用结果正确",
                    "The default should be steps=100: the same call with steps=100 passed explicitly is right")
DEFAULT_LR = Msg("默认参数应为 lr=0.1：显式传入 lr=0.1 的同一调用结果正确",
                 "The default should be lr=0.1: the same call with lr=0.1 passed explicitly is right")
POINT_LOOP = Msg("如果你在 Python 循环里逐点计算损失，请改为对所有点一次性计算（向量化）",
                 "If the loss is computed point by point in a Python loop, compute it over all points at once")

NON_LEAF_WARNING = "not a leaf Tensor"
CREATE_GRAPH_BACKWARD_WARNING = "backward() with create_graph=True"


# -- helpers --------------------------------------------------------------------------------------------
def _raised(error: str, what: str, hint: Msg | None = None) -> None:
    checks.fail(Msg(f"{what}：你的代码抛出了异常：{error}", f"{what}: your code raised an exception: {error}"), hint)


def _assert_float(got: Any, what: str) -> float:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        checks.fail(Msg(f"{what}：应返回 Python float，实际得到 {type(got).__name__}",
                        f"{what}: expected a Python float, got {type(got).__name__}"), RETURN_FLOAT)
    return float(got)


def _assert_caller_x_untouched(res: dict[str, Any], x: torch.Tensor, requires_grad: bool) -> None:
    """The caller's x after the call, judged here: the values the grader sent, the same
    requires_grad (as the wire read it from the tensor's C base), no .grad."""
    after = res.get("caller_x")
    untouched = (isinstance(after, torch.Tensor) and after.shape == x.shape and torch.equal(after.detach(), x)
                 and tensor_facts(after).requires_grad == requires_grad and res.get("caller_x_grad") is None)
    checks.assert_true(untouched, Msg(f"x.requires_grad={requires_grad} 时：", f"With x.requires_grad={requires_grad}: ")
                       + MUTATES_CALLER_X)


def _seed(rng: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=rng))


def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=rng, dtype=torch.float64))


def _same_projections(what: str, rel_tol: float) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def check(got: dict[str, Any], want: dict[str, Any]) -> None:
        for key, value in want.items():
            if key.endswith("_norm"):
                continue  # the scale of the gate, read from the reference only
            g = got.get(key)
            same = g == value if key.endswith("_shape") else (
                isinstance(value, float) and projection_agrees(g, value, want.get(f"{key}_norm", abs(value)), rel_tol))
            if not same:
                checks.fail(Msg(f"{what}：计时测试中的结果与参考结果不一致（{key}）",
                                f"{what}: during the timing runs the result differed from the reference ({key})"))
    return check


def _close(got: Any, want: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    """``got`` equals ``want`` (by default to float64 precision): used to decide which hint an
    observation supports, never to pass or fail a test."""
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.double(), want.double(), rtol=rtol, atol=atol))


# -- T2.1 minimize_scalar ----------------------------------------------------------------------------------
DERIVATIVES = {"quadratic": lambda x: 2 * (x - 3), "quartic": lambda x: 4 * x**3 - 3}


def _gradient_descent(f: str, x0: float, lr: float, steps: int, accumulate: bool = False) -> list[float]:
    """x after 0, 1, …, ``steps`` steps of plain gradient descent (``accumulate``: gradients never zeroed)."""
    xs, x, grad = [x0], x0, 0.0
    for _ in range(steps):
        grad = grad + DERIVATIVES[f](x) if accumulate else DERIVATIVES[f](x)
        x = x - lr * grad
        xs.append(x)
    return xs


def _minimize(student: Any, f: str, x0: float, steps: list[int | None], lr: float | None = None) -> list[float]:
    """``minimize_scalar`` results for each entry of ``steps``, after the checks every run must pass."""
    res = student.probe("run_minimize", f=f, x0=x0, steps=steps, lr=lr)
    what = f"minimize_scalar({f}, x0={x0:.4g}" + ("" if lr is None else f", lr={lr:g}") + ")"
    # What the probe saw next to student code (counts, warnings) only chooses the hint; the verdict is
    # the error or the values, which the callers compare with gradient descent computed here.
    if res["nonleaf_calls"] or any(NON_LEAF_WARNING in w for w in res["warnings"]):
        hint = NON_LEAF_X
    elif res["no_grad_calls"]:
        hint = LOST_REQUIRES_GRAD
    else:
        hint = INPLACE_NEEDS_NO_GRAD if res["error"] is not None and "leaf Variable" in res["error"] else None
    if res["error"] is not None:
        _raised(res["error"], what, hint)
    return [_assert_float(v, what) for v in res["values"]]


def _number_close(got: float, expected: float, what: str, atol: float,
                  mistakes: dict[Msg, float] | None = None, hint: Msg | None = None,
                  match_atol: float | None = None) -> None:
    """``got`` within ``atol`` of ``expected``; on failure, the mistake it matches (within ``match_atol``,
    by default ``atol``) replaces ``hint``."""
    if math.isfinite(got) and abs(got - expected) <= atol:
        return
    match_atol = atol if match_atol is None else match_atol
    for mistake, wrong in (mistakes or {}).items():
        if math.isfinite(got) and abs(got - wrong) <= match_atol:
            hint = Msg(f"看起来像常见错误：{mistake.zh}", f"This looks like a common mistake: {mistake.en}")
            break
    checks.assert_number_close(got, expected, what, atol=atol, hint=hint)


@graded(task="minimize_scalar", kind="shape", points=1, visibility="public")
def test_minimize_scalar_returns_float(student, rng):
    """minimize_scalar returns a Python float (not a tensor)."""
    (value,) = _minimize(student, "quadratic", _uniform(rng, -4, 2), [5])
    checks.assert_true(math.isfinite(value), Msg(f"minimize_scalar 返回了 {value}", f"minimize_scalar returned {value}"))


@graded(task="minimize_scalar", kind="accuracy", points=2, visibility="public")
def test_minimize_scalar_converges(student, spec, rng):
    """With the defaults it finds the minimum of (x-3)² to 1e-3; with lr=0.02 and 300 steps that of x⁴-3x
    (whose gradient is not symmetric about the minimum)."""
    tol = spec.param("minimize_tol")
    x0 = _uniform(rng, -5, 1)
    (got,) = _minimize(student, "quadratic", x0, [None])
    _number_close(got, 3.0, f"minimize_scalar((x-3)², x0={x0:.4g})", tol,
                  mistakes={ACCUMULATE: _gradient_descent("quadratic", x0, 0.1, 100, accumulate=True)[-1]})
    x0 = _uniform(rng, 1.2, 2.0)
    (got,) = _minimize(student, "quartic", x0, [300], lr=0.02)
    _number_close(got, 0.75 ** (1 / 3), f"minimize_scalar(x⁴-3x, x0={x0:.4g}, lr=0.02, steps=300)", tol,
                  mistakes={ACCUMULATE: _gradient_descent("quartic", x0, 0.02, 300, accumulate=True)[-1]})


@graded(task="minimize_scalar", kind="gradient", points=2, visibility="public")
def test_minimize_scalar_trajectory(student, spec, rng):
    """After k = 0…5 steps x equals plain gradient descent x ← x − lr·f'(x), step for step."""
    tol = dict(atol=spec.param("trajectory_atol"), rtol=spec.param("trajectory_rtol"),
               rel_l2=spec.param("trajectory_rtol"))
    steps = [0, 1, 2, 3, 4, 5]
    for f, x0, lr in (("quadratic", _uniform(rng, -4, 2), 0.1), ("quartic", _uniform(rng, 1.2, 1.8), 0.01)):
        got = _minimize(student, f, x0, steps, lr=lr)
        expected = torch.tensor(_gradient_descent(f, x0, lr, 5), dtype=torch.float64)
        wrong = torch.tensor(_gradient_descent(f, x0, lr, 5, accumulate=True), dtype=torch.float64)
        checks.assert_close(torch.tensor(got, dtype=torch.float64), expected,
                            f"minimize_scalar({f}, x0={x0:.4g}, lr={lr:g}, steps=k), k = 0…5",
                            mistakes={ACCUMULATE: wrong}, **tol)


@graded(task="minimize_scalar", kind="accuracy", points=1, visibility="hidden")
def test_minimize_scalar_defaults_and_one_step(student, spec, rng):
    """steps=0 returns x0, steps=1 is exactly x0 − lr·f'(x0), and the defaults are lr=0.1, steps=100."""
    atol, rtol = spec.param("trajectory_atol"), spec.param("trajectory_rtol")
    x0 = _uniform(rng, -2, 2)
    got = _minimize(student, "quartic", x0, [0, 1], lr=0.05)
    for k, value in zip((0, 1), got):
        expected = _gradient_descent("quartic", x0, 0.05, k)[-1]
        _number_close(value, expected, f"minimize_scalar(x⁴-3x, x0={x0:.4g}, lr=0.05, steps={k})",
                      atol + rtol * abs(expected))
    # Each default is judged by a call that leaves it out; the same call with the value passed
    # explicitly comes first, so "check the default" is said only when that one is right.
    x0 = _uniform(rng, -4, 1)
    for lr, steps, given, left_out, hint in ((0.001, 100, "lr=0.001", "steps", DEFAULT_STEPS),
                                             (0.1, 3, "steps=3", "lr", DEFAULT_LR)):
        expected = 3 + (1 - 2 * lr) ** steps * (x0 - 3)
        tol = atol + rtol * abs(expected)
        mistakes = {ACCUMULATE: _gradient_descent("quadratic", x0, lr, steps, accumulate=True)[-1]}
        (explicit,) = _minimize(student, "quadratic", x0, [steps], lr=lr)
        _number_close(explicit, expected, f"minimize_scalar((x-3)², x0={x0:.4g}, lr={lr:g}, steps={steps})", tol,
                      mistakes=mistakes)
        (default,) = _minimize(student, "quadratic", x0, [None if left_out == "steps" else steps],
                               lr=None if left_out == "lr" else lr)
        _number_close(default, expected, f"minimize_scalar((x-3)², x0={x0:.4g}, {given})", tol, hint=hint)


@graded(task="minimize_scalar", kind="accuracy", points=1, visibility="hidden")
def test_minimize_scalar_divergent_lr(student, spec, rng):
    """A learning rate that diverges gives the diverging iterate (or inf/nan) and never raises."""
    rtol = spec.param("trajectory_rtol")
    x0 = _uniform(rng, 3.5, 4.5)
    res = student.probe("run_minimize", f="quadratic", x0=x0, steps=[40], lr=1.1)
    if res["error"] is not None:
        _raised(res["error"], "minimize_scalar((x-3)², lr=1.1, steps=40)", DIVERGING_IS_NOT_AN_ERROR)
    got = _assert_float(res["values"][0], "minimize_scalar((x-3)², lr=1.1, steps=40)")
    expected = 3 + (1 - 2.2) ** 40 * (x0 - 3)
    accumulated = _gradient_descent("quadratic", x0, 1.1, 40, accumulate=True)[-1]
    _number_close(got, expected, f"minimize_scalar((x-3)², x0={x0:.4g}, lr=1.1, steps=40)", rtol * abs(expected),
                  mistakes={ACCUMULATE: accumulated}, match_atol=rtol * abs(accumulated))
    res = student.probe("run_minimize", f="quartic", x0=3.0, steps=[30], lr=0.5)
    if res["error"] is not None:
        _raised(res["error"], "minimize_scalar(x⁴-3x, x0=3, lr=0.5, steps=30)", DIVERGING_IS_NOT_AN_ERROR)
    _assert_float(res["values"][0], "minimize_scalar(x⁴-3x, x0=3, lr=0.5, steps=30)")


# -- T2.2 fit_line ------------------------------------------------------------------------------------------
def _line_data(rng: torch.Generator, n: int, noise: float, dtype: torch.dtype = torch.float64):
    x = torch.rand(n, generator=rng, dtype=dtype) * 2 - 1
    y = 2 * x + 1 + noise * torch.randn(n, generator=rng, dtype=dtype)
    return x, y


def _line_descent(x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, *, reduce: str = "mean",
                  broadcast: bool = False, accumulate: bool = False) -> list[float]:
    """(w, b) after ``steps`` steps of gradient descent on the squared error from w = b = 0, in float64.

    The variants model common mistakes: ``reduce="sum"``, residuals broadcast to (N, N), and
    gradients that are never zeroed.
    """
    x, y = x.reshape(-1).double(), y.reshape(-1).double()
    xs, ys = (x[:, None], y[None, :]) if broadcast else (x, y)
    w = b = gw_acc = gb_acc = 0.0
    for _ in range(steps):
        r = w * xs + b - ys
        scale = 1.0 / r.numel() if reduce == "mean" else 1.0
        gw = float((2 * r * xs).sum()) * scale
        gb = float((2 * r).sum()) * scale
        gw_acc, gb_acc = (gw_acc + gw, gb_acc + gb) if accumulate else (gw, gb)
        w, b = w - lr * gw_acc, b - lr * gb_acc
    return [w, b]


def _fit(student: Any, x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> list[float]:
    res = student.probe("run_fit_line", x=x, y=y, kwargs=kwargs)
    args = "".join(f", {k}={v}" for k, v in kwargs.items())
    what = f"fit_line(x{list(x.shape)}, y{list(y.shape)}{args})"
    if any(NON_LEAF_WARNING in w for w in res["warnings"]):
        checks.fail(NON_LEAF_W)
    if res["error"] is not None:
        _raised(res["error"], what)
    value = res["value"]
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        checks.fail(Msg(f"{what}：得到 {type(value).__name__}", f"{what}: got {type(value).__name__}"), NOT_A_PAIR)
    return [_assert_float(v, what) for v in value]


@graded(task="fit_line", kind="shape", points=1, visibility="public")
def test_fit_line_returns_two_floats(student, rng):
    """fit_line returns a pair (w, b) of Python floats."""
    x, y = _line_data(rng, 50, 0.05, torch.float32)
    _fit(student, x, y, steps=5)


@graded(task="fit_line", kind="accuracy", points=2, visibility="public")
def test_fit_line_recovers_line(student, spec, rng):
    """On y = 2x + 1 + noise the defaults (lr=0.05, 500 steps) recover w ≈ 2 and b ≈ 1."""
    n, noise = spec.param("fit_line_n"), spec.param("fit_line_noise")
    x, y = _line_data(rng, n, noise, torch.float32)
    w, b = _fit(student, x, y)
    tol = spec.param("fit_line_tol")
    summed = _line_descent(x, y, 0.05, 500, reduce="sum")
    diverged = not (math.isfinite(w) and math.isfinite(b))
    hint = DIVERGED if diverged and not all(math.isfinite(v) for v in summed) else None
    accumulated = _line_descent(x, y, 0.05, 500, accumulate=True)
    data = f"y = 2x + 1 + {noise:g} * randn({n})"
    for i, (got, want) in enumerate(((w, 2.0), (b, 1.0))):
        _number_close(got, want, f"fit_line(x, y)[{i}], {data}", tol, mistakes={ACCUMULATE: accumulated[i]},
                      hint=hint, match_atol=1e-4)


@graded(task="fit_line", kind="gradient", points=2, visibility="public")
def test_fit_line_first_steps_match_mse_gradient(student, spec, rng):
    """From w = b = 0, each of the first three steps moves (w, b) by −lr times the gradient of the MSE."""
    tol = dict(atol=spec.param("trajectory_atol"), rtol=spec.param("trajectory_rtol"),
               rel_l2=spec.param("trajectory_rtol"))
    x, y = _line_data(rng, 30, 0.1)
    got, expected = [], []
    mistakes: dict[Msg, list[float]] = {SUM_NOT_MEAN: [], ACCUMULATE: []}
    for steps in (1, 2, 3):
        got += _fit(student, x, y, lr=0.05, steps=steps)
        expected += _line_descent(x, y, 0.05, steps)
        mistakes[SUM_NOT_MEAN] += _line_descent(x, y, 0.05, steps, reduce="sum")
        mistakes[ACCUMULATE] += _line_descent(x, y, 0.05, steps, accumulate=True)
    checks.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                        "fit_line(x, y, lr=0.05, steps=k) → [w, b], k = 1, 2, 3",
                        mistakes={m: torch.tensor(v, dtype=torch.float64) for m, v in mistakes.items()}, **tol)


@graded(task="fit_line", kind="shape", points=1, visibility="hidden")
def test_fit_line_column_vectors(student, spec, rng):
    """x and y given as (N, 1) columns, in any combination with (N,), give the same fit as flat vectors.

    Flat vectors come first: a fit that is already wrong for them is not a shape problem."""
    tol = dict(atol=spec.param("trajectory_atol"), rtol=spec.param("trajectory_rtol"),
               rel_l2=spec.param("trajectory_rtol"))
    x, y = _line_data(rng, 40, 0.1)
    expected = torch.tensor(_line_descent(x, y, 0.05, 20), dtype=torch.float64)
    mistakes = {BROADCAST: torch.tensor(_line_descent(x, y, 0.05, 20, broadcast=True), dtype=torch.float64),
                ACCUMULATE: torch.tensor(_line_descent(x, y, 0.05, 20, accumulate=True), dtype=torch.float64)}
    for xs, ys in ((x, y), (x[:, None], y), (x, y[:, None]), (x[:, None], y[:, None])):
        got = _fit(student, xs, ys, steps=20)
        checks.assert_close(torch.tensor(got, dtype=torch.float64), expected,
                            f"fit_line(x{list(xs.shape)}, y{list(ys.shape)}, steps=20) → [w, b]",
                            mistakes=mistakes, **tol)


@graded(task="fit_line", kind="accuracy", points=1, visibility="hidden")
def test_fit_line_single_point(student, spec, rng):
    """One point cannot pin down a line, but fit_line still runs and follows gradient descent."""
    tol = dict(atol=spec.param("trajectory_atol"), rtol=spec.param("trajectory_rtol"),
               rel_l2=spec.param("trajectory_rtol"))
    x = torch.tensor([_uniform(rng, 0.2, 0.8)], dtype=torch.float64)
    y = torch.tensor([_uniform(rng, 1.0, 3.0)], dtype=torch.float64)
    got = _fit(student, x, y)
    checks.assert_close(torch.tensor(got, dtype=torch.float64),
                        torch.tensor(_line_descent(x, y, 0.05, 500), dtype=torch.float64),
                        f"fit_line(torch.tensor([{float(x):.3f}]), torch.tensor([{float(y):.3f}])) → [w, b]",
                        mistakes={ACCUMULATE: torch.tensor(_line_descent(x, y, 0.05, 500, accumulate=True),
                                                           dtype=torch.float64)}, **tol)


@graded(task="fit_line", kind="speed", points=1, visibility="hidden")
def test_fit_line_speed(student, reference_worker, spec, rng):
    """A vectorised loss over all points: no more than a few times slower than the reference."""
    n, steps = spec.param("fit_line_speed_n"), spec.param("fit_line_speed_steps")

    def check(got: dict[str, Any], want: dict[str, Any]) -> None:
        value = got.get("value")
        ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(g, float) and abs(g - r) <= 1e-3 for g, r in zip(value, want["value"]))
        checks.assert_true(ok, Msg("fit_line：计时测试中的结果与参考结果不一致",
                                   "fit_line: during the timing runs the result differed from the reference"))

    result = compare_speed(
        lambda seed: student.probe("time_fit_line", n=n, steps=steps, seed=seed),
        lambda seed: reference_worker.probe("time_fit_line", n=n, steps=steps, seed=seed),
        lambda i: _seed(rng), check, rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"),
    )
    assert_speed(result, spec.param("speed_factor"), "fit_line", hint=POINT_LOOP)


# -- T2.3 SwishFn / swish -----------------------------------------------------------------------------------
def _swish(x: torch.Tensor, beta: float) -> torch.Tensor:
    return x * torch.sigmoid(beta * x)


def _swish_derivative(x: torch.Tensor, beta: float, beta_in_derivative: float | None = None) -> torch.Tensor:
    """d/dx x·σ(βx) = σ(βx) + βx·σ(βx)(1 − σ(βx)); ``beta_in_derivative`` replaces the second β (a mistake)."""
    sig = 1.0 / (1.0 + torch.exp(-beta * x))
    factor = beta if beta_in_derivative is None else beta_in_derivative
    return sig * (1.0 + factor * x * (1.0 - sig))


def _swish_mistakes(x: torch.Tensor, beta: float, grad_output: torch.Tensor) -> dict[Msg, torch.Tensor]:
    """The input gradient each known wrong backward gives for ``grad_output``."""
    return {IGNORES_GRAD_OUTPUT: _swish_derivative(x, beta), MISSING_BETA: grad_output * _swish_derivative(x, beta, 1.0),
            IGNORES_GRAD_OUTPUT + MISSING_BETA: _swish_derivative(x, beta, 1.0)}


def _swish_backward_hint(student: Any, x: torch.Tensor, beta: float, rng: torch.Generator) -> Msg | None:
    """Before a finite-difference check: swish keeps float64 (a float32 output spoils the differences,
    so dtype is checked first), then the known wrong backward the student's gradient matches, if any."""
    g = torch.randn(x.shape, dtype=torch.float64, generator=rng)
    res = student.vjp("swish", (x, beta), grad_output=g)
    checks.assert_dtype(res["output"], torch.float64, f"swish(x, {beta:g})", hint=FLOAT32_BUFFER)
    return next((hint for hint, wrong in _swish_mistakes(x, beta, g).items() if _close(res["grads"][0], wrong)), None)


def _swish_run(student: Any, x: torch.Tensor, beta: float, grad_output: torch.Tensor,
               marker: torch.Tensor | None = None) -> dict[str, Any]:
    res = student.probe("run_swish_fn", x=x, beta=beta, grad_output=grad_output, marker=marker)
    for label, what in (("apply", f"SwishFn.apply(x, {beta:g})"), ("swish", f"swish(x, {beta:g})")):
        error = res[label]["error"]
        if error is not None:
            wrong_count = "incorrect number of gradients" in error or "different than None" in error
            _raised(error, what, WRONG_NUM_GRADS if wrong_count else None)
    return res


@graded(task="swish", kind="accuracy", points=2, visibility="public")
def test_swish_forward_values(student, rng):
    """swish(x, beta) equals x·sigmoid(beta·x) in x's shape and dtype; beta defaults to 1."""
    x = torch.randn(4, 5, generator=rng) * 3
    for beta in (1.0, 1.7):
        checks.assert_close(student.swish(x, beta), _swish(x, beta), f"swish(x[4,5], {beta:g})")
    checks.assert_close(student.swish(x), _swish(x, 1.0), "swish(x)")
    x64 = torch.randn(2, 3, 4, dtype=torch.float64, generator=rng)
    out = student.swish(x64, 0.5)
    checks.assert_dtype(out, torch.float64, "swish(x.double(), 0.5)", hint=FLOAT32_BUFFER)
    checks.assert_close(out, _swish(x64, 0.5), "swish(x.double(), 0.5)")


@graded(task="swish", kind="gradient", points=2, visibility="public")
def test_swish_gradcheck(student, rng):
    """The hand-written backward agrees with finite differences of forward (float64, beta = 1.5)."""
    x = torch.randn(5, 3, dtype=torch.float64, generator=rng)
    hint = _swish_backward_hint(student, x, 1.5, rng)
    checks.assert_gradcheck(student, "swish", (x, 1.5), wrt=(0,), generator=rng, hint=hint)


@graded(task="swish", kind="gradient", points=1, visibility="public")
def test_swish_backward_formula(student, rng):
    """SwishFn.apply and swish stay on the graph, backward returns grad_output·(σ(βx) + βx·σ(βx)(1−σ(βx))) for x
    and None for beta, and swish goes through SwishFn."""
    beta = 2.0
    x = torch.randn(3, 4, dtype=torch.float64, generator=rng)
    g = torch.randn(3, 4, dtype=torch.float64, generator=rng)
    # The grader's marker: while the probe swaps SwishFn's backward for grad_output * marker, the
    # gradient of swish must show it (a value, not a name read next to student code).
    marker = 0.5 + torch.rand(3, 4, dtype=torch.float64, generator=rng)
    res = _swish_run(student, x, beta, g, marker)
    local = _swish_derivative(x, beta)
    mistakes = _swish_mistakes(x, beta, g)
    for label, what in (("apply", f"SwishFn.apply(x, {beta:g})"), ("swish", f"swish(x, {beta:g})")):
        checks.assert_dtype(res[label]["output"], torch.float64, what, hint=FLOAT32_BUFFER)
        checks.assert_close(res[label]["output"], _swish(x, beta), what)
        checks.assert_attached(res[label]["output"], what)
        checks.assert_grad(res[label]["grad"], g * local, f"x ({what})", mistakes=mistakes)
    if res["marked_error"] is not None:
        _raised(res["marked_error"], f"swish(x, {beta:g})", NOT_THE_FUNCTION)
    checks.assert_close(res["marked"], g * marker, f"swish(x, {beta:g}) → x.grad, SwishFn.backward := grad_output·m",
                        hint=NOT_THE_FUNCTION)


@graded(task="swish", kind="gradient", points=1, visibility="hidden")
def test_swish_gradcheck_shapes_and_betas(student, rng):
    """Finite-difference checks for other shapes and betas: (3,) with beta 0.5, (2, 3, 4) with beta -1.3."""
    for shape, beta in (((3,), 0.5), ((2, 3, 4), -1.3)):
        x = torch.randn(shape, dtype=torch.float64, generator=rng)
        hint = _swish_backward_hint(student, x, beta, rng)
        checks.assert_gradcheck(student, "swish", (x, beta), wrt=(0,), generator=rng,
                                hint=BETA_HINT if hint == MISSING_BETA else hint)


@graded(task="swish", kind="accuracy", points=1, visibility="hidden")
def test_swish_edge_cases(student, rng):
    """beta = 0 gives x/2; |x| = 100 stays finite in forward and backward; non-contiguous and meta inputs work."""
    x = torch.randn(7, generator=rng)
    checks.assert_close(student.swish(x, 0.0), x / 2, "swish(x, 0.0)")
    big = torch.tensor([-100.0, -60.0, -20.0, 0.0, 20.0, 60.0, 100.0])
    out = student.swish(big, 1.0)
    checks.assert_finite(out, "swish(±100, 1.0)", hint=UNSTABLE)
    checks.assert_close(out, _swish(big, 1.0), "swish(±100, 1.0)")  # finite but wrong: not the NaN of exp()
    res = student.vjp("swish", (big, 1.0), grad_output=torch.ones(7))
    checks.assert_attached(res["output"], "swish(±100, 1.0)")
    checks.assert_finite(res["grads"][0], "swish(±100, 1.0).sum().backward() → x.grad", hint=UNSTABLE)
    checks.assert_grad(res["grads"][0], _swish_derivative(big, 1.0), "x = ±100")
    t = torch.randn(6, 5, generator=rng)
    got = student.probe("call_transposed", name="swish", args=[t.T.contiguous(), 1.3], transpose={"0": [0, 1]})
    checks.assert_close(got, _swish(t, 1.3), "swish(x.T.contiguous().T, 1.3)")
    meta = student.swish(torch.empty(2, 3, device="meta"), 1.0)
    checks.assert_shape(meta, (2, 3), "swish(torch.empty(2, 3, device='meta'), 1.0)")
    checks.assert_device(meta, "meta", "swish(torch.empty(2, 3, device='meta'), 1.0)")


@graded(task="swish", kind="speed", points=1, visibility="hidden")
def test_swish_speed(student, reference_worker, spec, rng):
    """Forward + backward through SwishFn is no more than a few times slower than the reference."""
    shape, repeats = spec.param("swish_speed_shape"), spec.param("swish_speed_repeats")

    def run(impl: Any) -> Callable[[tuple[int, int]], Any]:
        return lambda seeds: impl.probe("time_swish", shape=shape, beta=1.0, seed=seeds[0], repeats=repeats,
                                        project_seed=seeds[1])

    result = compare_speed(run(student), run(reference_worker), lambda i: (_seed(rng), _seed(rng)),
                           _same_projections("swish()", 1e-4), rounds=spec.param("speed_rounds"),
                           student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "torch.autograd.grad(swish(x), x, grad_output)")


# -- T2.4 nth_derivative ------------------------------------------------------------------------------------
def _cube_derivative(x: torch.Tensor, k: int) -> torch.Tensor:
    forms = [x**3, 3 * x**2, 6 * x, torch.full_like(x, 6.0)]
    return forms[k] if k < len(forms) else torch.zeros_like(x)


def _sin_derivative(x: torch.Tensor, k: int) -> torch.Tensor:
    return [torch.sin(x), torch.cos(x), -torch.sin(x), -torch.cos(x)][k % 4]


def _backward_accumulated(derivative: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor,
                          n: int) -> torch.Tensor:
    """What repeated ``.backward(create_graph=True)`` leaves in x.grad: g₁ = f', gₖ = gₖ₋₁ + gₖ₋₁'."""
    return sum(math.comb(n - 1, j) * derivative(x, 1 + j) for j in range(n))


def _derivative(student: Any, f: str, x: torch.Tensor, n: int, **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_nth_derivative", f=f, x=x, n=n, **kwargs)
    what = f"nth_derivative({f}, x{list(x.shape)}, n={n})"
    res["what"] = what
    if res["error"] is not None:
        _raised(res["error"], what, CREATE_GRAPH if "does not require grad" in res["error"] else None)
    return res


def _derivative_mistakes(derivative: Callable[[torch.Tensor, int], torch.Tensor],
                         x: torch.Tensor, n: int) -> dict[Msg, torch.Tensor]:
    mistakes = {CREATE_GRAPH: torch.zeros_like(x)}
    if n >= 2:
        mistakes[BACKWARD_ACCUMULATES] = _backward_accumulated(derivative, x, n)
    return mistakes


@graded(task="nth_derivative", kind="shape", points=1, visibility="public")
def test_nth_derivative_shape(student, rng):
    """The derivative has x's shape and dtype (a vector in float64, a matrix in float32)."""
    for x, n in ((torch.randn(5, dtype=torch.float64, generator=rng), 1), (torch.randn(2, 3, generator=rng), 2)):
        res = _derivative(student, "cube", x, n)
        checks.assert_dtype(res["value"], x.dtype, res["what"])
        checks.assert_shape(res["value"], x.shape, res["what"])


@graded(task="nth_derivative", kind="gradient", points=2, visibility="public")
def test_nth_derivative_cube(student, spec, rng):
    """For x³ the first three derivatives are 3x², 6x and 6."""
    x = torch.randn(6, dtype=torch.float64, generator=rng) * 2
    for n in (1, 2, 3):
        res = _derivative(student, "cube", x, n)
        hint = BACKWARD_ACCUMULATES if any(CREATE_GRAPH_BACKWARD_WARNING in w for w in res["warnings"]) else None
        checks.assert_close(res["value"], _cube_derivative(x, n), res["what"], atol=spec.param("derivative_atol"),
                            mistakes=_derivative_mistakes(_cube_derivative, x, n), hint=hint)


@graded(task="nth_derivative", kind="accuracy", points=1, visibility="public")
def test_nth_derivative_sin_cycle(student, spec, rng):
    """For sin, n = 0…4 gives sin, cos, −sin, −cos, sin (n = 0 is f(x) itself)."""
    x = torch.rand(8, dtype=torch.float64, generator=rng) * 6 - 3
    for n in range(5):
        res = _derivative(student, "sin", x, n)
        hint = BACKWARD_ACCUMULATES if any(CREATE_GRAPH_BACKWARD_WARNING in w for w in res["warnings"]) else None
        checks.assert_close(res["value"], _sin_derivative(x, n), res["what"], atol=spec.param("derivative_atol"),
                            mistakes=_derivative_mistakes(_sin_derivative, x, n), hint=hint)


@graded(task="nth_derivative", kind="gradient", points=1, visibility="hidden")
def test_nth_derivative_constant_gives_zeros(student, rng):
    """Once the derivative no longer depends on x the answer is zeros, not an error (x³ for n = 4, 5;
    3x − 1 for n = 2; x times a constant that requires grad for n = 2)."""
    x = torch.randn(4, dtype=torch.float64, generator=rng)
    _derivative(student, "cube", x, 2)  # a failure here is about create_graph, and says so
    for f, n in (("cube", 4), ("cube", 5), ("linear", 2), ("scaled", 2)):
        res = student.probe("run_nth_derivative", f=f, x=x, n=n)
        what = f"nth_derivative({f}, x{list(x.shape)}, n={n})"
        if res["error"] is not None:
            _raised(res["error"], what, CONSTANT_ZEROS)
        checks.assert_close(res["value"], torch.zeros_like(x), what, hint=ZEROS_EXPECTED)


@graded(task="nth_derivative", kind="gradient", points=1, visibility="hidden")
def test_nth_derivative_leaves_input_alone(student, spec, rng):
    """The caller's x keeps its values, its requires_grad flag (False or True) and gets no .grad; 2-D x works."""
    x = torch.rand(2, 3, dtype=torch.float64, generator=rng) * 4 - 2
    for requires_grad in (False, True):
        res = _derivative(student, "sin", x, 2, x_requires_grad=requires_grad)
        checks.assert_close(res["value"], _sin_derivative(x, 2), res["what"], atol=spec.param("derivative_atol"))
        _assert_caller_x_untouched(res, x, requires_grad)


# -- T2.5 input_saliency -----------------------------------------------------------------------------------
def _linear_state(rng: torch.Generator, d: int, c: int) -> dict[str, torch.Tensor]:
    return {"weight": torch.randn(c, d, generator=rng), "bias": torch.randn(c, generator=rng)}


def _mlp_state(rng: torch.Generator, d: int, h: int, c: int,
               dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Weights of Linear(d, h) → Tanh → Dropout → Linear(h, c), as the probe's ``build_model`` names them."""
    return {"0.weight": torch.randn(h, d, generator=rng, dtype=dtype) / d**0.5,
            "0.bias": torch.randn(h, generator=rng, dtype=dtype) * 0.1,
            "3.weight": torch.randn(c, h, generator=rng, dtype=dtype) / h**0.5,
            "3.bias": torch.randn(c, generator=rng, dtype=dtype) * 0.1}


def _mlp_input_gradient(state: dict[str, torch.Tensor], x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """∂(rows · logits)/∂x per sample for the MLP in eval mode: W1ᵀ (rows_W2 ⊙ (1 − tanh²))."""
    w1, b1 = state["0.weight"], state["0.bias"]
    h = torch.tanh(x @ w1.T + b1)
    return (rows @ state["3.weight"] * (1 - h**2)) @ w1


def _one_hot(target: torch.Tensor, c: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, c).to(dtype)


def _saliency(student: Any, state: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor,
              model: str = "model", **kwargs: Any) -> dict[str, Any]:
    """The run_saliency probe; ``model`` is how the label names the model (``model.train()``)."""
    res = student.probe("run_saliency", state=state, x=x, target=target, **kwargs)
    what = f"input_saliency({model}, x{list(x.shape)}, target)"
    res["what"] = what
    if res["error"] is not None:
        _raised(res["error"], what)
    checks.assert_tensor(res["value"], what)
    return res


def _assert_no_trace(res: dict[str, Any], state: dict[str, torch.Tensor], x: torch.Tensor, train: bool,
                     requires_grad: bool) -> None:
    """What input_saliency left behind, from the data the probe returned: no parameter .grad (one
    entry per parameter of the state sent), the caller's x untouched, every module in its mode."""
    grads = res.get("param_grads")
    checks.assert_true(isinstance(grads, list) and len(grads) == len(state) and all(g is None for g in grads),
                       PARAM_GRADS)
    _assert_caller_x_untouched(res, x, requires_grad)
    modes = res.get("training")
    checks.assert_true(isinstance(modes, list) and modes and all(flag is train for flag in modes), MODE_NOT_RESTORED)


@graded(task="input_saliency", kind="shape", points=1, visibility="public")
def test_input_saliency_shape(student, rng):
    """The saliency has x's shape and dtype, is non-negative and does not require grad."""
    state = _linear_state(rng, 4, 3)
    state["weight"][:, 0] = -state["weight"][:, 0].abs() - 0.1  # every class's gradient has a negative entry
    x = torch.randn(6, 4, generator=rng)
    res = _saliency(student, state, x, torch.randint(0, 3, (6,), generator=rng))
    out = res["value"]
    checks.assert_dtype(out, torch.float32, res["what"])
    checks.assert_shape(out, (6, 4), res["what"])
    checks.assert_true(bool((out >= 0).all()), Msg("显著性出现负值：", "The saliency has negative entries: ") + NO_ABS)
    checks.assert_true(not tensor_facts(out).requires_grad, SALIENCY_ATTACHED)


@graded(task="input_saliency", kind="accuracy", points=2, visibility="public")
def test_input_saliency_linear_model(student, rng):
    """For a linear model the saliency of sample i is |W[target_i]|."""
    d, c, b = 5, 4, 8
    state = _linear_state(rng, d, c)
    x = torch.randn(b, d, generator=rng)
    target = torch.randint(0, c, (b,), generator=rng)
    res = _saliency(student, state, x, target)
    w = state["weight"]
    checks.assert_close(res["value"], w[target].abs(), res["what"],
                        mistakes={SUM_LOGITS: w.sum(0).abs().expand(b, d), NO_ABS: w[target]})


@graded(task="input_saliency", kind="gradient", points=2, visibility="public")
def test_input_saliency_leaves_no_trace(student, rng):
    """After the call every parameter's .grad is still None, the caller's x is unchanged (values,
    requires_grad, no .grad), and the model is still in eval mode."""
    d, h, c, b = 6, 10, 3, 5
    state = _mlp_state(rng, d, h, c)
    x = torch.randn(b, d, generator=rng)
    target = torch.randint(0, c, (b,), generator=rng)
    expected = _mlp_input_gradient(state, x, _one_hot(target, c, x.dtype)).abs()
    for requires_grad in (False, True):
        res = _saliency(student, state, x, target, x_requires_grad=requires_grad)
        _assert_no_trace(res, state, x, train=False, requires_grad=requires_grad)
        checks.assert_close(res["value"], expected, res["what"], atol=1e-5,
                            mistakes={SUM_LOGITS: _mlp_input_gradient(state, x, torch.ones(b, c)).abs()})


@graded(task="input_saliency", kind="accuracy", points=1, visibility="hidden")
def test_input_saliency_train_mode_dropout(student, rng):
    """A model in train mode with dropout gets its eval-mode saliency (deterministic), and stays in train mode."""
    d, h, c, b = 6, 32, 4, 12
    state = _mlp_state(rng, d, h, c)
    x = torch.randn(b, d, generator=rng)
    target = torch.randint(0, c, (b,), generator=rng)
    expected = _mlp_input_gradient(state, x, _one_hot(target, c, x.dtype)).abs()
    # The same model in eval mode tells whether "use eval mode" explains a wrong train-mode answer.
    in_eval = _saliency(student, state, x, target, dropout=0.5)["value"]
    res = _saliency(student, state, x, target, model="model.train()", train=True, dropout=0.5)
    checks.assert_close(res["value"], expected, res["what"], atol=1e-5,
                        hint=EVAL_MODE if _close(in_eval, expected, rtol=1e-4, atol=1e-5) else None)
    _assert_no_trace(res, state, x, train=True, requires_grad=False)


@graded(task="input_saliency", kind="accuracy", points=1, visibility="hidden")
def test_input_saliency_float64_and_batch_one(student, rng):
    """A float64 MLP with per-sample targets, for a batch of 7 and a batch of 1."""
    d, h, c = 5, 9, 6
    state = _mlp_state(rng, d, h, c, torch.float64)
    for b in (7, 1):
        x = torch.randn(b, d, dtype=torch.float64, generator=rng)
        target = torch.randint(0, c, (b,), generator=rng)
        res = _saliency(student, state, x, target)
        grad = _mlp_input_gradient(state, x, _one_hot(target, c, x.dtype))
        checks.assert_close(res["value"], grad.abs(), res["what"],
                            mistakes={SUM_LOGITS: _mlp_input_gradient(state, x, torch.ones(b, c, dtype=x.dtype)).abs(),
                                      NO_ABS: grad})


@graded(task="input_saliency", kind="speed", points=1, visibility="hidden")
def test_input_saliency_speed(student, reference_worker, spec, rng):
    """One batched forward and backward: no more than a few times slower than the reference."""
    sizes, repeats = spec.param("saliency_speed_sizes"), spec.param("saliency_speed_repeats")

    def run(impl: Any) -> Callable[[tuple[int, int]], Any]:
        return lambda seeds: impl.probe("time_saliency", sizes=sizes, seed=seeds[0], repeats=repeats,
                                        project_seed=seeds[1])

    forwards: list[int] = []
    same = _same_projections("input_saliency", 1e-4)

    def check(got: dict[str, Any], want: dict[str, Any]) -> None:
        forwards.append(got.pop("model_calls"))
        want.pop("model_calls")
        same(got, want)

    result = compare_speed(run(student), run(reference_worker), lambda i: (_seed(rng), _seed(rng)), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    # The per-sample hint only when the probe saw more than one forward pass per call.
    assert_speed(result, spec.param("speed_factor"), "input_saliency",
                 hint=PER_SAMPLE_LOOP if max(forwards) > repeats else None)
