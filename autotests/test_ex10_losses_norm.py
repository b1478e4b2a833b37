"""Autotests for ex10_losses_norm: focal loss, label-smoothed cross-entropy, DropConnect, batch and
layer normalisation written by hand, and weight-decay parameter groups.

Expected values come from PyTorch, run here: ``F.cross_entropy`` (with ``label_smoothing``,
``ignore_index`` and ``weight``), ``F.linear``, ``F.batch_norm`` (whose running statistics the tests
replay step by step) and ``F.layer_norm``; the focal loss from its formula, computed here with
``log_softmax``. DropConnect draws its mask from the student's generator, so its tests recover the mask
from the weight's gradient and check the output against ``F.linear`` with that mask. The modules are
driven through the probes in ``probes/ex10_losses_norm.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed

pytestmark = pytest.mark.exercise("ex10_losses_norm")

# -- feedback ----------------------------------------------------------------------------------------
LOG_SOFTMAX = Msg("请用 `log_softmax` 计算 `log(p)`：先 `softmax` 再取 `log` 在 logit 很大时会下溢成 `log(0)`，得到 NaN/Inf",
                  "Use log_softmax for log p: softmax followed by log underflows to log(0) (NaN/Inf) for large logits")
ALPHA_GATHER = Msg("`alpha` 张量应按目标类别取值（`alpha[target]`），而不是按样本位置逐元素相乘",
                   "Gather the alpha tensor by target class (alpha[target]), do not multiply it by sample position")
FOCAL_MEAN = Msg("`reduction=\"mean\"` 是对 N 个样本的损失求算术平均（除以 N），不是 `F.cross_entropy(weight=…)` 那样除以权重之和",
                 "reduction=\"mean\" is the plain average over the N samples (divide by N), not the weighted mean of "
                 "F.cross_entropy(weight=...) (divided by the sum of the weights)")
DETACH_PT = Msg("`pt` 不应 `detach`：调制因子 `(1 - pt) ** gamma` 的梯度也要传播",
                "Do not detach pt: the gradient of the factor (1 - pt) ** gamma must flow too")
FOCAL_FORMULA = Msg("`FocalLoss` 为 `-alpha_t * (1 - pt) ** gamma * log(pt)`，`pt` 是目标类别的 `softmax` 概率",
                    "The focal loss is -alpha_t * (1 - pt) ** gamma * log(pt), with pt the softmax probability of the target")
REDUCTION = Msg("`reduction`：`\"mean\"` 和 `\"sum\"` 返回标量（形状 `()`），`\"none\"` 返回每个样本的损失 `(N,)`",
                "reduction: \"mean\" and \"sum\" give a scalar (shape ()), \"none\" the per-sample losses (N,)")

SMOOTH_CONVENTION = Msg("平滑约定与规格不符：本题使用 ε/C（目标类别 1−ε+ε/C，其余 ε/C，与 `F.cross_entropy` 的 `label_smoothing` 一致），"
                        "不是 ε/(C−1)",
                        "Use the eps/C convention (1-eps+eps/C on the target, eps/C elsewhere, as F.cross_entropy's "
                        "label_smoothing), not eps/(C-1)")
IGNORED_MEAN = Msg("`ignore_index` 的位置不应计入平均：分母是未被忽略的目标个数",
                   "Exclude ignored targets: the mean divides by the number of targets that are not ignored")
ALL_IGNORED = Msg("所有目标都被忽略时损失应为 0（且仍在计算图上），不能是 NaN（规格在这里与 `F.cross_entropy` 不同）",
                  "When every target is ignored the loss is 0 (still on the graph), not NaN (here the spec differs "
                  "from F.cross_entropy)")
CLASS_DIM = Msg("类别在第 1 维：`(N, C)` 或 `(N, C, d1, ...)`，与 `F.cross_entropy` 相同；请用 `log_softmax(dim=1)`",
                "Classes are on dim 1, (N, C) or (N, C, d1, ...), as in F.cross_entropy: use log_softmax(dim=1)")
VECTORISE = Msg("请用 `scatter_`/`gather`/`one_hot` 一次性构造平滑目标，不要在 Python 中逐行循环",
                "Build the smoothed targets at once (scatter_, gather, one_hot), without a Python loop over rows")

MASK_WEIGHTS = Msg("这是 Dropout 而不是 DropConnect：应对权重矩阵做掩码（每次前向一个权重掩码，整个批共享），而不是对输入或输出激活",
                   "This is dropout, not DropConnect: mask the weight matrix (one weight mask per forward, shared by "
                   "the batch), not the input or output activations")
RESCALE = Msg("训练时保留的权重需除以 (1−p)，评估时不缩放、不丢弃（就是普通的 `F.linear`）",
              "Rescale kept weights by 1/(1-p) in training only; in eval mode the layer is a plain F.linear")
BIAS_KEPT = Msg("偏置不参与 DropConnect：只对 `weight` 做掩码", "The bias is never dropped: mask the weight only")
MASK_RATE = Msg("每个权重以概率 p 被丢弃（以 1−p 保留）：检查比较方向（`rand >= p` 表示保留）",
                "Each weight is dropped with probability p (kept with 1-p): check the comparison (rand >= p keeps)")
MASK_DEVICE = Msg("掩码需在权重所在的设备上创建（`torch.rand(self.weight.shape, device=self.weight.device, ...)` 或 `rand_like`）",
                  "Create the mask on the weight's device (torch.rand(self.weight.shape, device=self.weight.device, ...) "
                  "or rand_like)")
GENERATOR = Msg("掩码要用构造时传入的 `generator` 生成（`torch.rand(..., generator=self.generator)`）：同一种子给出相同结果，且不改变全局随机数状态",
                "Draw the mask with the generator given to the constructor (torch.rand(..., generator=self.generator)): "
                "the same seed gives the same output and the global RNG is left alone")
FRESH_MASK = Msg("每次训练模式的前向都要重新生成掩码，不要在 `__init__` 里只生成一次",
                 "Draw a new mask on every train-mode forward, not once in __init__")
BAD_P = Msg("p 必须在 [0, 1) 内：p = 1 或 p < 0 时在 `__init__` 中抛出 `ValueError`",
            "p must lie in [0, 1): raise ValueError in __init__ for p = 1 or p < 0")
LAYER_PARAMS = Msg("参数应与 `nn.Linear` 相同：`weight` 形状 (out_features, in_features)，`bias` 形状 (out_features,)（`bias=False` 时没有），"
                   "初始化也相同（`kaiming_uniform_(weight, a=math.sqrt(5))`，偏置为 ±1/√in_features 上的均匀分布）",
                   "Parameters as in nn.Linear: weight of shape (out_features, in_features), bias (out_features,) "
                   "(none when bias=False), initialised the same way (kaiming_uniform_(weight, a=math.sqrt(5)), the bias "
                   "uniform on ±1/sqrt(in_features))")

UNBIASED_RUNNING = Msg("运行方差应使用无偏估计（乘以 n/(n−1)），归一化本身使用有偏方差",
                       "Unbiased var for running stats (times n/(n-1)); normalise with the biased variance")
REDUCE_DIMS = Msg("4 维输入要在 (N, H, W) 上为每个通道统计均值和方差（`dim=[0, 2, 3]`），通道在第 1 维",
                  "Reduce over N,H,W for 4-D inputs (dim=[0, 2, 3]): one mean and variance per channel (dim 1)")
IN_PLACE = Msg("`running_mean`/`running_var` 需原地更新（`mul_`/`add_` 或 `copy_`），调用者的张量才会改变",
               "Update the running_mean/running_var buffers in place (mul_/add_ or copy_) so the caller's tensors change")
EVAL_RUNNING = Msg("评估模式（`training=False`）应使用运行统计量归一化，且不更新它们",
                   "In eval mode (training=False) normalise with the running statistics and leave them unchanged")
MOMENTUM = Msg("运行统计量的更新为 `running = (1 - momentum) * running + momentum * batch_stat`",
               "Update the running statistics as running = (1 - momentum) * running + momentum * batch_stat")
BUFFERS_GRAPH = Msg("运行统计量的更新不应进入计算图：在 `torch.no_grad()` 里更新，或用 `mean.detach()`",
                    "Keep the running-statistics update off the autograd graph: update under torch.no_grad() or use "
                    "mean.detach()")
ONE_VALUE = Msg("训练时每个通道只有 1 个值（例如形状 (1, C)）应抛出 `ValueError`，与 PyTorch 相同",
                "Raise ValueError in training when a channel has a single value (e.g. shape (1, C)), as PyTorch does")

LN_BIASED = Msg("LayerNorm 使用有偏方差（`unbiased=False`），而 `x.var()` 默认是无偏的",
                "LayerNorm uses the biased variance (unbiased=False); x.var() is unbiased by default")
LN_DIMS = Msg("LayerNorm 在最后 `len(normalized_shape)` 个维度上一起归一化", "LayerNorm normalises over the last len(normalized_shape) dims together")
LN_EPS = Msg("`eps` 加在方差上、开方之前：`(x - mean) / sqrt(var + eps)`", "Add eps to the variance, inside the square root: (x - mean) / sqrt(var + eps)")

GROUP_FORMAT = Msg("应返回两个参数组组成的列表：`[{\"params\": [...], \"weight_decay\": weight_decay}, {\"params\": [...], \"weight_decay\": 0.0}]`",
                   "Return a list of two groups: [{\"params\": [...], \"weight_decay\": weight_decay}, "
                   "{\"params\": [...], \"weight_decay\": 0.0}]")
NORM_BY_TYPE = Msg("请按模块类型判断归一化层参数（`isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, ...))`，子类也算）；"
                   "其它参数（包括自定义的一维参数）都要衰减，只有名为 `bias` 的参数例外",
                   "Decide by module type: the parameters of norm layers (isinstance of nn.BatchNorm1d, nn.LayerNorm, "
                   "nn.GroupNorm, ..., subclasses too) are not decayed; every other parameter is, custom 1-D ones "
                   "included, except those named bias")
SUBSTRING = Msg("名称子串匹配过宽：`\"bias\" in name` 会匹配 `unbiased_proj.weight`，`\"norm\" in name` 会匹配 `normalizer.weight`；"
                "请看参数自己的名字（`bias`）和所属模块的类型",
                "Substring match too broad: \"bias\" in name matches unbiased_proj.weight and \"norm\" in name matches "
                "normalizer.weight; look at the parameter's own name (bias) and its module's type")
DUPLICATE = Msg("同一个参数不能出现在两个组里（共享的权重也只列一次）", "A parameter may be in one group only (a tied weight is listed once)")
FROZEN = Msg("冻结的参数（`requires_grad=False`）不要放进任何组", "Leave frozen parameters (requires_grad=False) out of every group")
MISSING = Msg("每个可训练参数都必须恰好出现在一个组中", "Every trainable parameter must be in exactly one group")


# -- helpers -------------------------------------------------------------------------------------------

def _fail_on_error(res: dict, what: str, hint: Msg | None = None, key: str = "error") -> None:
    if res.get(key):
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {res[key]}", f"{what}: your code raised {res[key]}"), hint)


def _loss(student, cls: str, kwargs: dict, logits, target, what: str, grad_output=None, args=None,
          hint: Msg | None = None) -> dict:
    res = student.probe("loss_run", cls=cls, kwargs=kwargs, logits=logits, target=target, grad_output=grad_output,
                        args=args or [])
    _fail_on_error(res, what, hint)
    checks.assert_tensor(res.get("out"), what)
    return res


def _logits(rng, n: int, c: int, *rest: int, dtype=torch.float32, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(n, c, *rest, generator=rng, dtype=dtype)


def _targets(rng, n: int, c: int, *rest: int) -> torch.Tensor:
    return torch.randint(0, c, (n, *rest), generator=rng)


def _loss_gradcheck(student, cls: str, kwargs: dict, logits, target, rng, what: str, expected_grad=None,
                    mistakes=None, hint: Msg | None = None, eps: float = 1e-6, directions: int = 2) -> None:
    """Directional derivatives of <loss, v> from backward against central differences (float64), and,
    with ``expected_grad``, the gradient itself against PyTorch's."""
    logits = logits.double()
    for _ in range(directions):
        res = _loss(student, cls, kwargs, logits, target, what, hint=hint)
        out = res["out"]
        checks.assert_dtype(out, torch.float64, what, hint=hint)
        v = torch.randn(out.shape, generator=rng, dtype=torch.float64)
        res = _loss(student, cls, kwargs, logits, target, what, grad_output=v, hint=hint)
        checks.assert_attached(res["out"], what, hint)
        grad = res.get("grad")
        checks.assert_true(grad is not None, Msg(f"{what}：logits 没有得到梯度", f"{what}: no gradient reached the logits"), hint)
        if expected_grad is not None:
            checks.assert_close(grad, expected_grad(v), f"{what}.grad", hint=hint, mistakes=mistakes(v) if mistakes else None)
        u = torch.randn(logits.shape, generator=rng, dtype=torch.float64)
        u = u / torch.linalg.vector_norm(u)
        analytic = float((grad * u).sum())
        plus = _loss(student, cls, kwargs, logits + eps * u, target, what)["out"]
        minus = _loss(student, cls, kwargs, logits - eps * u, target, what)["out"]
        numeric = float(((plus - minus) * v).sum()) / (2 * eps)
        checks.assert_true(abs(analytic - numeric) <= 1e-5 + 1e-3 * abs(numeric), Msg(
            f"{what}：反向传播的梯度与数值差分不一致（方向导数 {analytic:.6g} 对 {numeric:.6g}）",
            f"{what}: gradients disagree with finite differences (directional derivative {analytic:.6g} vs {numeric:.6g})"),
            hint)


# -- T10.1 FocalLoss ---------------------------------------------------------------------------------------
def _focal(logits, target, alpha=None, gamma=2.0, reduction="mean", variant: str | None = None) -> torch.Tensor:
    """The focal loss computed here (``variant`` names a common mistake)."""
    log_pt = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    pt = log_pt.exp()
    if variant == "detach_pt":
        pt = pt.detach()
    loss = -((1 - pt) ** gamma) * log_pt
    weights = None
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(logits.dtype)
        weights = alpha if variant == "alpha_by_position" else alpha[target]
        loss = loss * weights
    elif alpha is not None:
        loss = loss * alpha
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    if variant == "weighted_mean" and weights is not None:
        return loss.sum() / weights.sum()
    return loss.mean()


def _focal_mistakes(logits, target, alpha, gamma, reduction) -> dict[Msg, torch.Tensor]:
    found = {FOCAL_MEAN: _focal(logits, target, alpha, gamma, reduction, "weighted_mean")}
    if isinstance(alpha, torch.Tensor) and alpha.shape[0] == logits.shape[0]:
        found[ALPHA_GATHER] = _focal(logits, target, alpha, gamma, reduction, "alpha_by_position")
    return found


def _check_focal(student, logits, target, kwargs: dict, what: str) -> None:
    res = _loss(student, "FocalLoss", kwargs, logits, target, what)
    alpha, gamma, reduction = kwargs.get("alpha"), kwargs.get("gamma", 2.0), kwargs.get("reduction", "mean")
    checks.assert_finite(res["out"], what, hint=LOG_SOFTMAX)
    checks.assert_close(res["out"], _focal(logits, target, alpha, gamma, reduction), what, hint=FOCAL_FORMULA,
                        mistakes=_focal_mistakes(logits, target, alpha, gamma, reduction))


@graded(task="FocalLoss", kind="shape", points=1, visibility="public")
def test_focal_reductions_shapes(student, rng):
    """"mean" and "sum" give a scalar, "none" an (N,) vector; a float64 input gives a float64 loss."""
    logits, target = _logits(rng, 6, 4), _targets(rng, 6, 4)
    for reduction, shape in (("mean", ()), ("sum", ()), ("none", (6,))):
        what = f"FocalLoss(reduction={reduction!r})(logits[6,4], target[6])"
        checks.assert_shape(_loss(student, "FocalLoss", {"reduction": reduction}, logits, target, what)["out"], shape,
                            what, hint=REDUCTION)
    what = "FocalLoss()(logits.double(), target)"
    checks.assert_dtype(_loss(student, "FocalLoss", {}, logits.double(), target, what)["out"], torch.float64, what)
    raised = student.probe("raises", name="FocalLoss", args=[], kwargs={"reduction": "avg"})
    checks.assert_equal(raised, "ValueError", "FocalLoss(reduction='avg')", hint=REDUCTION)


@graded(task="FocalLoss", kind="accuracy", points=2, visibility="public")
def test_focal_gamma_zero_is_cross_entropy(student, rng):
    """With gamma=0 and no alpha the loss equals F.cross_entropy for every reduction; with gamma=2 it
    equals -(1 - pt)^2 log pt."""
    logits, target = _logits(rng, 7, 5), _targets(rng, 7, 5)
    for reduction in ("mean", "sum", "none"):
        what = f"FocalLoss(gamma=0.0, reduction={reduction!r})(logits[7,5], target[7])"
        res = _loss(student, "FocalLoss", {"gamma": 0.0, "reduction": reduction}, logits, target, what)
        checks.assert_close(res["out"], F.cross_entropy(logits, target, reduction=reduction), what, hint=FOCAL_FORMULA)
    for gamma in (2.0, 1.0):
        _check_focal(student, logits, target, {"gamma": gamma, "reduction": "none"},
                     f"FocalLoss(gamma={gamma}, reduction='none')(logits[7,5], target[7])")
    _check_focal(student, logits, target, {}, "FocalLoss()(logits[7,5], target[7])")


@graded(task="FocalLoss", kind="gradient", points=2, visibility="public")
def test_focal_gradcheck(student, rng):
    """Gradients agree with finite differences (float64) and with autograd through the focal formula;
    with gamma=0 they equal F.cross_entropy's."""
    logits, target = _logits(rng, 5, 4, dtype=torch.float64), _targets(rng, 5, 4)

    def grads(gamma, variant=None):
        def at(v):
            x = logits.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(_focal(x, target, None, gamma, "mean", variant), x, v)
            return g
        return at

    _loss_gradcheck(student, "FocalLoss", {"gamma": 2.0}, logits, target, rng, "FocalLoss(gamma=2.0)(logits.double(), target)",
                    expected_grad=grads(2.0), mistakes=lambda v: {DETACH_PT: grads(2.0, "detach_pt")(v)})
    _loss_gradcheck(student, "FocalLoss", {"gamma": 0.0}, logits, target, rng, "FocalLoss(gamma=0.0)(logits.double(), target)",
                    expected_grad=grads(0.0), directions=1)


@graded(task="FocalLoss", kind="accuracy", points=2, visibility="hidden")
def test_focal_alpha_float_and_per_class(student, rng):
    """A float alpha scales every loss; a per-class alpha tensor is gathered by target (with N = C and
    N != C, float32 alpha with float64 logits); gamma=0 with alpha equals the per-sample
    F.cross_entropy(weight=alpha) and "mean" divides by N; batch 1 works."""
    c = 4
    alpha = torch.rand(c, generator=rng) + 0.1
    for n, dtype in ((4, torch.float32), (9, torch.float64), (1, torch.float32)):
        logits, target = _logits(rng, n, c, dtype=dtype), _targets(rng, n, c)
        if n == c:  # never the targets 0..C-1, where alpha by position equals alpha by class
            target[0] = 1 + int(target[0]) % (c - 1)
        for reduction in ("mean", "none"):
            _check_focal(student, logits, target, {"alpha": alpha, "gamma": 2.0, "reduction": reduction},
                         f"FocalLoss(alpha=tensor[{c}], gamma=2.0, reduction={reduction!r})(logits[{n},{c}], target[{n}])")
    logits, target = _logits(rng, 6, c), _targets(rng, 6, c)
    _check_focal(student, logits, target, {"alpha": 0.25, "gamma": 2.0, "reduction": "sum"},
                 "FocalLoss(alpha=0.25, gamma=2.0, reduction='sum')(logits[6,4], target[6])")
    what = f"FocalLoss(alpha=tensor[{c}], gamma=0.0)(logits[6,4], target[6])"
    res = _loss(student, "FocalLoss", {"alpha": alpha, "gamma": 0.0}, logits, target, what)
    checks.assert_close(res["out"], F.cross_entropy(logits, target, weight=alpha, reduction="none").mean(), what,
                        mistakes={FOCAL_MEAN: F.cross_entropy(logits, target, weight=alpha)}, hint=FOCAL_FORMULA)


@graded(task="FocalLoss", kind="accuracy", points=1, visibility="hidden")
def test_focal_large_logits_stay_finite(student, rng):
    """Logits of about ±100 give finite values equal to the log_softmax formula."""
    logits, target = _logits(rng, 6, 3, scale=60.0), _targets(rng, 6, 3)
    logits[0] = torch.tensor([100.0, -100.0, 0.0])
    target[0] = 1  # pt = exp(-200): log(softmax) is log(0) here
    _check_focal(student, logits, target, {"gamma": 2.0, "reduction": "none"},
                 "FocalLoss(gamma=2.0, reduction='none')(logits * 60, target)")


# -- T10.2 LabelSmoothingCE ----------------------------------------------------------------------------------
def _smooth_other(logits, target, eps: float, ignore_index: int = -100) -> torch.Tensor:
    """The eps/(C-1) convention (the seed's): 1-eps on the target, eps/(C-1) on every other class."""
    c = logits.shape[1]
    keep = target != ignore_index
    onehot = F.one_hot(torch.where(keep, target, 0), c).movedim(-1, 1).to(logits.dtype)
    q = onehot * (1 - eps) + (1 - onehot) * eps / (c - 1)
    loss = -(q * F.log_softmax(logits, 1)).sum(1)
    return (loss * keep).sum() / max(int(keep.sum()), 1)


def _smooth_all_counted(logits, target, eps: float, ignore_index: int = -100) -> torch.Tensor:
    per = F.cross_entropy(logits, target, label_smoothing=eps, ignore_index=ignore_index, reduction="none")
    return per.sum() / target.numel()


def _check_smoothing(student, logits, target, eps: float, what: str, ignore_index: int = -100) -> None:
    c = logits.shape[1]
    kwargs = {"smoothing": eps} if ignore_index == -100 else {"smoothing": eps, "ignore_index": ignore_index}
    res = _loss(student, "LabelSmoothingCE", kwargs, logits, target, what, args=[c])
    checks.assert_shape(res["out"], (), what)
    expected = F.cross_entropy(logits, target, label_smoothing=eps, ignore_index=ignore_index)
    mistakes = {SMOOTH_CONVENTION: _smooth_other(logits, target, eps, ignore_index)}
    if bool((target == ignore_index).any()):
        mistakes[IGNORED_MEAN] = _smooth_all_counted(logits, target, eps, ignore_index)
    checks.assert_close(res["out"], expected, what, mistakes=mistakes)


@graded(task="LabelSmoothingCE", kind="accuracy", points=2, visibility="public")
def test_smoothing_matches_cross_entropy(student, rng):
    """A scalar equal to F.cross_entropy(label_smoothing=eps) on (N, C) logits with N != C, for eps 0.1
    and 0.3; with eps = 0 it is plain cross-entropy."""
    logits, target = _logits(rng, 8, 5), _targets(rng, 8, 5)
    for eps in (0.1, 0.3, 0.0):
        _check_smoothing(student, logits, target, eps, f"LabelSmoothingCE(5, smoothing={eps})(logits[8,5], target[8])")


@graded(task="LabelSmoothingCE", kind="gradient", points=2, visibility="public")
def test_smoothing_gradcheck(student, rng):
    """Gradients agree with finite differences (float64) and equal F.cross_entropy(label_smoothing)'s."""
    logits, target = _logits(rng, 6, 4, dtype=torch.float64), _targets(rng, 6, 4)
    target[2] = -100

    def grad_of(fn):
        def at(v):
            x = logits.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(x), x, v)
            return g
        return at

    _loss_gradcheck(student, "LabelSmoothingCE", {"num_classes": 4, "smoothing": 0.2}, logits, target, rng,
                    "LabelSmoothingCE(4, smoothing=0.2)(logits.double(), target)",
                    expected_grad=grad_of(lambda x: F.cross_entropy(x, target, label_smoothing=0.2)),
                    mistakes=lambda v: {SMOOTH_CONVENTION: grad_of(lambda x: _smooth_other(x, target, 0.2))(v),
                                        IGNORED_MEAN: grad_of(lambda x: _smooth_all_counted(x, target, 0.2))(v)})


@graded(task="LabelSmoothingCE", kind="accuracy", points=2, visibility="hidden")
def test_smoothing_ignore_index_3d_and_two_classes(student, rng):
    """Ignored targets (-100 and a custom index) leave the loss and its denominator; (N, C, T) logits
    with classes on dim 1; C = 2; batch 1; float64."""
    logits, target = _logits(rng, 7, 4), _targets(rng, 7, 4)
    target[[1, 4]] = -100
    _check_smoothing(student, logits, target, 0.1, "LabelSmoothingCE(4, 0.1)(logits[7,4], target)")
    target = _targets(rng, 7, 4)
    target[[0, 5, 6]] = 3
    _check_smoothing(student, logits, target, 0.2, "LabelSmoothingCE(4, 0.2, ignore_index=3)(logits[7,4], target)",
                     ignore_index=3)
    logits, target = _logits(rng, 3, 5, 6, dtype=torch.float64), _targets(rng, 3, 5, 6)
    target[0, :2] = -100
    what = "LabelSmoothingCE(5, 0.1)(logits[3,5,6].double(), target[3,6])"
    res = _loss(student, "LabelSmoothingCE", {"smoothing": 0.1}, logits, target, what, args=[5], hint=CLASS_DIM)
    checks.assert_close(res["out"], F.cross_entropy(logits, target, label_smoothing=0.1), what, hint=CLASS_DIM)
    logits, target = _logits(rng, 1, 2), _targets(rng, 1, 2)
    _check_smoothing(student, logits, target, 0.4, "LabelSmoothingCE(2, 0.4)(logits[1,2], target[1])")


@graded(task="LabelSmoothingCE", kind="shape", points=1, visibility="hidden")
def test_smoothing_defaults_and_bad_arguments(student, rng):
    """The defaults are smoothing 0.1 and ignore_index -100; a smoothing outside [0, 1] and logits whose
    dim 1 is not num_classes raise ValueError."""
    logits, target = _logits(rng, 5, 4), _targets(rng, 5, 4)
    target[3] = -100
    what = "LabelSmoothingCE(4)(logits[5,4], target)"
    res = _loss(student, "LabelSmoothingCE", {}, logits, target, what, args=[4])
    checks.assert_close(res["out"], F.cross_entropy(logits, target, label_smoothing=0.1), what)
    for smoothing in (1.5, -0.1):
        raised = student.probe("raises", name="LabelSmoothingCE", args=[4], kwargs={"smoothing": smoothing})
        checks.assert_equal(raised, "ValueError", f"LabelSmoothingCE(4, smoothing={smoothing})", hint=Msg(
            "`smoothing` 必须在 [0, 1] 内，否则在 `__init__` 中抛出 `ValueError`",
            "smoothing must lie in [0, 1]: raise ValueError in __init__ otherwise"))
    res = student.probe("loss_run", cls="LabelSmoothingCE", kwargs={}, logits=logits, target=target.clamp(min=0), args=[5])
    checks.assert_equal(res.get("error_type"), "ValueError", "LabelSmoothingCE(5)(logits[5,4], target)", hint=Msg(
        "`logits.size(1)` 与 `num_classes` 不同时应抛出 `ValueError`", "Raise ValueError when logits.size(1) != num_classes"))


@graded(task="LabelSmoothingCE", kind="accuracy", points=1, visibility="hidden")
def test_smoothing_all_ignored_is_zero(student, rng):
    """Every target ignored gives 0, finite and still attached to the graph (F.cross_entropy gives NaN)."""
    logits = _logits(rng, 4, 3, dtype=torch.float64)
    target = torch.full((4,), -100)
    what = "LabelSmoothingCE(3, 0.1)(logits[4,3], torch.full((4,), -100))"
    res = _loss(student, "LabelSmoothingCE", {"smoothing": 0.1}, logits, target, what, args=[3],
                grad_output=torch.tensor(1.0, dtype=torch.float64), hint=ALL_IGNORED)
    checks.assert_finite(res["out"], what, hint=ALL_IGNORED)
    checks.assert_close(res["out"], torch.tensor(0.0, dtype=torch.float64), what, hint=ALL_IGNORED)
    checks.assert_attached(res["out"], what, ALL_IGNORED)
    checks.assert_grad(res.get("grad"), torch.zeros(4, 3, dtype=torch.float64), "logits", hint=ALL_IGNORED)


def _compare_timed(student, reference, args: list, rng, spec, **probe_kwargs):
    """``compare_probe_speed`` through this exercise's ``repeat_timed`` probe."""
    return compare_probe_speed(student, reference, "repeat_timed", args, rng, rounds=spec.param("speed_rounds"),
                               repeats=spec.param("speed_repeats"), factor=spec.param("speed_factor"), **probe_kwargs)


@graded(task="LabelSmoothingCE", kind="speed", points=1, visibility="hidden")
def test_smoothing_speed(student, reference_worker, spec, rng):
    """Label smoothing over a large batch costs at most a few times the reference's."""
    p = spec.param("smoothing_speed")
    args = [{"randn": [p["batch"], p["classes"]]}, {"randn": [p["batch"]]}]
    result = _compare_timed(student, reference_worker, args, rng, spec, num_classes=p["classes"], smoothing=0.1)
    assert_speed(result, spec.param("speed_factor"), "LabelSmoothingCE", hint=VECTORISE)


# -- T10.3 DropConnectLinear -----------------------------------------------------------------------------------
def _dc_state(rng, n_in: int, n_out: int, bias: bool = True) -> dict[str, torch.Tensor]:
    state = {"weight": torch.randn(n_out, n_in, generator=rng) / math.sqrt(n_in)}
    if bias:
        state["bias"] = 0.5 * torch.randn(n_out, generator=rng)
    return state


def _dc_run(student, rng, n_in: int, n_out: int, p: float, batch: int, bias: bool = True, what: str = "") -> tuple:
    """Run the layer in float64 on a batch whose rows 0 and 1 are equal; return (result, state, x, go)."""
    state = _dc_state(rng, n_in, n_out, bias)
    x = torch.randn(batch, n_in, generator=rng, dtype=torch.float64)
    x[1] = x[0]
    go = torch.randn(batch, n_out, generator=rng, dtype=torch.float64)
    ctor = {"in_features": n_in, "out_features": n_out, "p": p, "bias": bias}
    res = student.probe("dropconnect_run", ctor=ctor, state=state, x=x, grad_output=go, seed=seed_from(rng),
                        global_seed=seed_from(rng), dtype=torch.float64)
    _fail_on_error(res, what)
    return res, {k: v.double() for k, v in state.items()}, x, go


def _recover_mask(res: dict, state: dict, x, go, p: float, what: str) -> torch.Tensor:
    """The weight mask the forward used, read from the weight's gradient: dL/dW = (goᵀx) ⊙ M/(1-p)."""
    out = res.get("train")
    checks.assert_tensor(out, f"{what} (train)")
    checks.assert_attached(out, f"{what} (train)")
    checks.assert_shape(out, (x.shape[0], state["weight"].shape[0]), f"{what} (train)")
    gw = res["grads"].get("weight")
    checks.assert_true(gw is not None, Msg(f"{what}：`weight` 没有得到梯度", f"{what}: no gradient reached weight"),
                       MASK_WEIGHTS)
    full = go.T @ x
    ratio = gw / full
    scale = 1.0 / (1.0 - p)
    near = torch.where((ratio - scale).abs() < (ratio).abs(), torch.full_like(ratio, scale), torch.zeros_like(ratio))
    if not bool(((ratio - near).abs() <= 1e-6 * scale).all()):
        unscaled = bool(((ratio - torch.where(ratio.abs() > 0.5, 1.0, 0.0)).abs() <= 1e-6).all())
        checks.fail(Msg(f"{what}：`weight` 的梯度不是 (go.T @ x) 乘以 0 或 1/(1−p) 的掩码",
                        f"{what}: the weight's gradient is not (go.T @ x) times a mask of 0 and 1/(1-p)"),
                    RESCALE if unscaled else MASK_WEIGHTS)
    return near


@graded(task="DropConnectLinear", kind="shape", points=1, visibility="public")
def test_dropconnect_shapes_and_parameters(student, rng):
    """(B, out) outputs in train and eval mode; weight (out, in) and bias (out,) as in nn.Linear; no bias
    parameter with bias=False."""
    for bias in (True, False):
        what = f"DropConnectLinear(5, 3, p=0.4, bias={bias})(x[6,5])"
        res, state, x, go = _dc_run(student, rng, 5, 3, 0.4, 6, bias, what)
        expected = {"weight": [3, 5], **({"bias": [3]} if bias else {})}
        checks.assert_equal(res.get("param_shapes"), expected, f"{what}.named_parameters()", hint=LAYER_PARAMS)
        for mode in ("train", "eval"):
            checks.assert_shape(res.get(mode), (6, 3), f"{what} ({mode})")
            checks.assert_dtype(res.get(mode), torch.float64, f"{what} ({mode})")


@graded(task="DropConnectLinear", kind="accuracy", points=2, visibility="public")
def test_dropconnect_masks_weights(student, rng):
    """Eval mode is F.linear; one train-mode forward is F.linear with weight ⊙ M / (1 - p) for a 0/1 mask M
    shared by the whole batch (equal rows give equal outputs) and the bias untouched; p = 0 is F.linear."""
    p = 0.4
    what = "DropConnectLinear(16, 12, p=0.4)(x[5,16]).train()"
    res, state, x, go = _dc_run(student, rng, 16, 12, p, 5, True, what)
    w, b = state["weight"], state["bias"]
    plain = F.linear(x, w, b)
    checks.assert_close(res.get("eval"), plain, f"{what[:-8]}.eval()", hint=RESCALE,
                        mistakes={RESCALE: F.linear(x, w / (1 - p), b)})
    out = res["train"]
    checks.assert_true(not torch.allclose(out, plain), Msg(f"{what}：训练模式的输出与评估模式相同，没有丢弃任何权重",
                                                           f"{what}: the train-mode output equals the eval one: nothing was dropped"),
                       RESCALE)
    checks.assert_close(out[1], out[0], f"{what}[1]", hint=MASK_WEIGHTS)
    mask = _recover_mask(res, state, x, go, p, what)
    checks.assert_close(out, F.linear(x, w * mask, b), what, hint=MASK_WEIGHTS,
                        mistakes={BIAS_KEPT: F.linear(x, w * mask)})
    what = "DropConnectLinear(16, 12, p=0.0)(x[5,16]).train()"
    res, state, x, go = _dc_run(student, rng, 16, 12, 0.0, 5, True, what)
    checks.assert_close(res.get("train"), F.linear(x, state["weight"], state["bias"]), what, hint=RESCALE)


@graded(task="DropConnectLinear", kind="gradient", points=1, visibility="public")
def test_dropconnect_gradients(student, rng):
    """Dropped weights get zero gradient, kept ones (goᵀx)/(1 - p); the bias gets the whole sum of
    grad_output (never dropped); the input gets grad_output @ (weight ⊙ M / (1 - p))."""
    p = 0.3  # 48 outputs: a layer that drops bias entries too keeps all 48 with probability 0.7**48 < 1e-7
    what = "DropConnectLinear(10, 48, p=0.3)(x[4,10]).train()"
    res, state, x, go = _dc_run(student, rng, 10, 48, p, 4, True, what)
    mask = _recover_mask(res, state, x, go, p, what)
    checks.assert_grad(res["grads"].get("bias"), go.sum(0), "layer.bias", hint=BIAS_KEPT)
    checks.assert_grad(res.get("x_grad"), go @ (state["weight"] * mask), "x", hint=MASK_WEIGHTS)


@graded(task="DropConnectLinear", kind="accuracy", points=2, visibility="hidden")
def test_dropconnect_rate_and_expectation(student, spec, rng):
    """About a fraction p of the weights is dropped per forward, and the mean of many train-mode outputs
    is the eval output (identity in expectation), within the bounds set from the reference's spread."""
    p = spec.param("dropconnect_rate")["p"]
    n_in, n_out = spec.param("dropconnect_rate")["shape"]
    what = f"DropConnectLinear({n_in}, {n_out}, p={p})(x).train()"
    res, state, x, go = _dc_run(student, rng, n_in, n_out, p, 3, True, what)
    mask = _recover_mask(res, state, x, go, p, what)
    dropped = float((mask == 0).double().mean())
    sigma = math.sqrt(p * (1 - p) / mask.numel())
    z_rate = abs(dropped - p) / sigma
    limit = spec.param("dropconnect_rate")["max_z"]
    checks.assert_true(z_rate <= limit, Msg(
        f"{what}：被丢弃的权重比例为 {dropped:.3f}，期望约 {p}（偏离 {z_rate:.1f} 个标准差，允许 {limit}）",
        f"{what}: {dropped:.3f} of the weights were dropped, about {p} expected ({z_rate:.1f} standard deviations off, "
        f"{limit} allowed)"), MASK_RATE)
    m = spec.param("dropconnect_mean")
    p, draws = m["p"], m["draws"]
    state = _dc_state(rng, m["shape"][0], m["shape"][1])
    x = torch.randn(4, m["shape"][0], generator=rng)
    what = f"torch.stack([layer(x[4,{m['shape'][0]}]) for _ in range({draws})]).mean(0)"
    ctor = {"in_features": m["shape"][0], "out_features": m["shape"][1], "p": p}
    res = student.probe("dropconnect_mean", ctor=ctor, state=state, x=x, draws=draws, seed=seed_from(rng))
    _fail_on_error(res, what)
    mean = checks.assert_tensor(res.get("mean"), what)
    w, b, xd = state["weight"].double(), state["bias"].double(), x.double()
    expected = F.linear(xd, w, b)
    checks.assert_shape(mean, expected.shape, what)
    sd = torch.sqrt((xd.pow(2) @ w.pow(2).T) * p / (1 - p) / draws)
    z = float(((mean - expected).abs() / sd).max())
    limit = m["max_z"]
    checks.assert_true(z <= limit, Msg(
        f"{what}：多次训练前向的平均值与评估输出相差 {z:.1f} 个标准差（允许 {limit}）：期望上应等于普通的线性层",
        f"{what}: the mean of many train-mode outputs is {z:.1f} standard deviations from the eval output "
        f"({limit} allowed): in expectation it must equal the plain linear layer"), RESCALE)


@graded(task="DropConnectLinear", kind="accuracy", points=1, visibility="hidden")
def test_dropconnect_init_like_linear(student, spec, rng):
    """Fresh parameters follow nn.Linear's initialisation: weight and bias uniform on ±1/sqrt(in_features)
    (kaiming_uniform_ with a = sqrt(5) for the weight), so their spread is that bound over sqrt(3)."""
    n_in, n_out = spec.param("dropconnect_init")["shape"]
    limits = {"weight": spec.param("dropconnect_init")["weight_std_rel"], "bias": spec.param("dropconnect_init")["bias_std_rel"]}
    for n_in, names in ((n_in, ("weight", "bias")), (1, ("bias",))):  # one input: the bias bound is 1
        _check_init(student, rng, n_in, n_out, {name: limits[name] for name in names})


def _check_init(student, rng, n_in: int, n_out: int, limits: dict[str, float]) -> None:
    what = f"DropConnectLinear({n_in}, {n_out})"
    res = student.probe("dropconnect_init", in_features=n_in, out_features=n_out, seed=seed_from(rng))
    _fail_on_error(res, what)
    bound = 1.0 / math.sqrt(n_in)
    for name, rel in limits.items():
        t = checks.assert_tensor(res.get("params", {}).get(name), f"{what}.{name}")
        std, top = float(t.double().std()), float(t.abs().max())
        checks.assert_true(top <= bound * (1 + 1e-6) and abs(std / (bound / math.sqrt(3)) - 1) <= rel, Msg(
            f"{what}.{name}：取值范围 {top:.4g}、标准差 {std:.4g}，`nn.Linear` 的初始化为 ±{bound:.4g} 上的均匀分布"
            f"（标准差 {bound / math.sqrt(3):.4g}）",
            f"{what}.{name}: largest value {top:.4g} and spread {std:.4g}; nn.Linear's initialisation is uniform on "
            f"±{bound:.4g} (spread {bound / math.sqrt(3):.4g})"), LAYER_PARAMS)


@graded(task="DropConnectLinear", kind="shape", points=1, visibility="hidden")
def test_dropconnect_meta_device(student):
    """On the meta device, in train mode, the mask is made where the weight is: the output stays on meta."""
    what = "DropConnectLinear(6, 4, p=0.5).to('meta').train()(x.to('meta'))"
    res = student.probe("dropconnect_meta", ctor={"in_features": 6, "out_features": 4, "p": 0.5}, x_shape=[3, 6])
    _fail_on_error(res, what, MASK_DEVICE)
    checks.assert_shape(res.get("out"), (3, 4), what)
    checks.assert_device(res["out"], "meta", what, hint=MASK_DEVICE)


@graded(task="DropConnectLinear", kind="accuracy", points=1, visibility="hidden")
def test_dropconnect_generator_and_bad_p(student, rng):
    """The same generator seed gives the same output, the next forward a new mask, the global RNG is
    untouched; p = 1 and p < 0 raise ValueError."""
    what = "DropConnectLinear(12, 8, generator=g)(x[3,12]).train()"
    state = _dc_state(rng, 12, 8)
    x = torch.randn(3, 12, generator=rng, dtype=torch.float64)
    go = torch.ones(3, 8, dtype=torch.float64)
    global_seed = seed_from(rng)
    res = student.probe("dropconnect_run", ctor={"in_features": 12, "out_features": 8}, state=state, x=x,
                        grad_output=go, seed=seed_from(rng), global_seed=global_seed, dtype=torch.float64)
    _fail_on_error(res, what)
    _recover_mask(res, {k: v.double() for k, v in state.items()}, x, go, 0.5, what)  # the default p is 0.5
    out, again, nxt = (checks.assert_tensor(res.get(k), f"{what} ({k})") for k in ("train", "train_again", "train_next"))
    checks.assert_close(again, out.detach(), f"{what} (train_again)", hint=GENERATOR)
    checks.assert_true(not torch.allclose(nxt, out.detach()), Msg(
        f"{what}：连续两次训练前向得到了相同的输出", f"{what}: two train-mode forwards in a row gave the same output"),
        FRESH_MASK)
    fresh = torch.rand(8, generator=torch.Generator().manual_seed(global_seed))
    checks.assert_close(res.get("global_draw"), fresh, "torch.rand(8)", hint=GENERATOR)
    for p in (1.0, -0.1):
        raised = student.probe("raises", name="DropConnectLinear", args=[4, 3], kwargs={"p": p})
        checks.assert_equal(raised, "ValueError", f"DropConnectLinear(4, 3, p={p})", hint=BAD_P)


# -- T10.4 batch_norm_forward ------------------------------------------------------------------------------
def _bn_replay(steps: list[dict], weight, bias, rm, rv, momentum: float = 0.1, eps: float = 1e-5,
               variant: str | None = None) -> list[dict]:
    """The same steps through F.batch_norm (``variant`` names a common mistake)."""
    rm, rv = rm.clone(), rv.clone()
    out = []
    for step in steps:
        x, training = step["x"], step["training"]
        if variant == "out_of_place":
            y = F.batch_norm(x, rm.clone(), rv.clone(), weight, bias, training, momentum, eps)
        elif variant == "biased_running" and training:
            dims = [d for d in range(x.dim()) if d != 1]
            y = F.batch_norm(x, None, None, weight, bias, True, momentum, eps)
            rm.mul_(1 - momentum).add_(momentum * x.mean(dims))
            rv.mul_(1 - momentum).add_(momentum * x.var(dims, unbiased=False))
        elif variant == "batch_stats_in_eval":
            y = F.batch_norm(x, rm, rv, weight, bias, True, momentum, eps) if training else \
                F.batch_norm(x, None, None, weight, bias, True, momentum, eps)
        else:
            y = F.batch_norm(x, rm, rv, weight, bias, training, momentum, eps)
        out.append({"out": y, "running_mean": rm.clone(), "running_var": rv.clone()})
    return out


def _check_bn(student, steps: list[dict], c: int, rng, what: str, kwargs: dict | None = None,
              hint: Msg | None = None, dtype=torch.float32) -> None:
    weight = 1.0 + 0.3 * torch.randn(c, generator=rng, dtype=dtype)
    bias = 0.3 * torch.randn(c, generator=rng, dtype=dtype)
    rm = 0.2 * torch.randn(c, generator=rng, dtype=dtype)
    rv = 1.0 + 0.5 * torch.rand(c, generator=rng, dtype=dtype)
    res = student.probe("bn_steps", steps=steps, weight=weight, bias=bias, running_mean=rm, running_var=rv,
                        kwargs=kwargs or {})
    _fail_on_error(res, what, hint)
    expected = _bn_replay(steps, weight, bias, rm, rv, **(kwargs or {}))
    variants = {v: _bn_replay(steps, weight, bias, rm, rv, variant=v, **(kwargs or {}))
                for v in ("out_of_place", "biased_running", "batch_stats_in_eval")}
    hints = {"out_of_place": IN_PLACE, "biased_running": UNBIASED_RUNNING, "batch_stats_in_eval": EVAL_RUNNING}
    got_steps = res["steps"]
    checks.assert_true(len(got_steps) == len(steps), Msg(f"{what}：步数不对", f"{what}: wrong number of steps"))
    for i, (got, want, step) in enumerate(zip(got_steps, expected, steps)):
        mode = "train" if step["training"] else "eval"
        label = f"{what} step {i} ({mode})"
        for key in ("out", "running_mean", "running_var"):
            mistakes = {hints[v]: variants[v][i][key] for v in variants}
            extra_hint = hint if key == "out" else (hint or MOMENTUM)
            checks.assert_close(got[key], want[key], f"{label}: {key}", hint=extra_hint, mistakes=mistakes)
        checks.assert_true(not got["buffers_on_graph"], Msg(f"{label}：运行统计量带有 `requires_grad`",
                                                            f"{label}: the running statistics require grad"), BUFFERS_GRAPH)


def _bn_steps(rng, shape: tuple[int, ...], pattern: str = "tttef", dtype=torch.float32) -> list[dict]:
    """One step per letter: t = training, e / f = eval (f: an input from another distribution)."""
    steps = []
    for k, letter in enumerate(pattern):
        x = (1.5 + k * 0.2) * torch.randn(*shape, generator=rng, dtype=dtype) + 0.5 * k
        steps.append({"x": x, "training": letter == "t"})
    return steps


@graded(task="batch_norm_forward", kind="shape", points=1, visibility="public")
def test_batch_norm_shapes(student, rng):
    """(N, C) and (N, C, H, W) inputs give outputs of the same shape and dtype."""
    for shape in ((6, 3), (4, 3, 5, 2)):
        c = shape[1]
        x = torch.randn(*shape, generator=rng)
        what = f"batch_norm_forward(x{list(shape)}, weight, bias, running_mean, running_var, True)"
        out = student.batch_norm_forward(x, torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c), True)
        checks.assert_shape(out, shape, what)
        checks.assert_dtype(out, torch.float32, what)


@graded(task="batch_norm_forward", kind="accuracy", points=2, visibility="public")
def test_batch_norm_matches_pytorch(student, rng):
    """Three training steps then eval steps equal F.batch_norm, outputs and running statistics (updated in
    place, unbiased variance, momentum 0.1), for (N, C) and non-square (N, C, H, W) inputs."""
    _check_bn(student, _bn_steps(rng, (7, 3)), 3, rng, "batch_norm_forward(x[7,3], ...)")
    _check_bn(student, _bn_steps(rng, (5, 3, 4, 6)), 3, rng, "batch_norm_forward(x[5,3,4,6], ...)", hint=REDUCE_DIMS)


@graded(task="batch_norm_forward", kind="gradient", points=2, visibility="public")
def test_batch_norm_gradcheck(student, rng):
    """In training mode, gradients to x, weight and bias agree with finite differences (float64)."""
    for shape in ((5, 3), (3, 2, 3, 2)):
        c = shape[1]
        x = torch.randn(*shape, generator=rng, dtype=torch.float64)
        weight = 1.0 + 0.3 * torch.randn(c, generator=rng, dtype=torch.float64)
        bias = torch.randn(c, generator=rng, dtype=torch.float64)
        checks.assert_gradcheck(student, "batch_norm_forward", (x, weight, bias, torch.zeros(c), torch.ones(c), True),
                                wrt=(0, 1, 2), generator=rng, directions=2)


@graded(task="batch_norm_forward", kind="accuracy", points=2, visibility="hidden")
def test_batch_norm_momentum_eps_3d_float64(student, rng):
    """Momentum 0.3 and eps 1e-3, (N, C, L) inputs in float64, a (1, C, H, W) batch in training, and an
    eval step between training steps: all equal F.batch_norm, buffers included."""
    _check_bn(student, _bn_steps(rng, (4, 5, 7), "tetf", dtype=torch.float64), 5, rng,
              "batch_norm_forward(x[4,5,7].double(), ..., momentum=0.3, eps=1e-3)",
              kwargs={"momentum": 0.3, "eps": 1e-3}, dtype=torch.float64)
    _check_bn(student, _bn_steps(rng, (1, 2, 3, 4), "tte"), 2, rng, "batch_norm_forward(x[1,2,3,4], ...)", hint=REDUCE_DIMS)


@graded(task="batch_norm_forward", kind="shape", points=1, visibility="hidden")
def test_batch_norm_single_value_and_meta(student):
    """A (1, C) batch in training raises ValueError (as PyTorch); in eval it is fine, and so is a (2, C)
    batch in training; meta tensors give a meta output."""
    c = 3
    args = [torch.randn(1, c), torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c), True]
    raised = student.probe("raises", name="batch_norm_forward", args=args)
    checks.assert_equal(raised, "ValueError", "batch_norm_forward(x[1,3], ..., training=True)", hint=ONE_VALUE)
    out = student.batch_norm_forward(*args[:5], False)
    checks.assert_close(out, F.batch_norm(args[0], args[3], args[4], args[1], args[2], False),
                        "batch_norm_forward(x[1,3], ..., training=False)", hint=EVAL_RUNNING)
    two = torch.tensor([[0.5, -1.0, 2.0], [1.5, 3.0, 2.5]])  # two values per channel are enough
    out = checks.call_or_fail(lambda: student.batch_norm_forward(two, *args[1:5], True), "batch_norm_forward(x[2,3], ..., True)",
                        ONE_VALUE)
    checks.assert_close(out, F.batch_norm(two, None, None, args[1], args[2], True), "batch_norm_forward(x[2,3], ..., True)",
                        hint=ONE_VALUE)
    meta = [torch.empty(4, c, 5, 5, device="meta")] + [torch.empty(c, device="meta") for _ in range(4)] + [True]
    what = "batch_norm_forward(x.to('meta'), ..., True)"
    out = checks.call_or_fail(lambda: student.batch_norm_forward(*meta), what)
    checks.assert_shape(out, (4, c, 5, 5), what)
    checks.assert_device(out, "meta", what)


# -- T10.5 layer_norm ---------------------------------------------------------------------------------------
def _ln_mistakes(x, shape, weight, bias, eps=1e-5) -> dict[Msg, torch.Tensor]:
    dims = tuple(range(-len(shape), 0))
    mean = x.mean(dims, keepdim=True)

    def affine(y):
        y = y * weight if weight is not None else y
        return y + bias if bias is not None else y

    found = {LN_BIASED: affine((x - mean) / torch.sqrt(x.var(dims, keepdim=True) + eps)),
             LN_EPS: affine((x - mean) / (x.var(dims, unbiased=False, keepdim=True).sqrt() + eps))}
    if len(shape) > 1:
        last = x.mean(-1, keepdim=True)
        found[LN_DIMS] = affine((x - last) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps))
    return found


def _check_ln(got, x, shape, weight, bias, what: str, eps: float = 1e-5) -> None:
    expected = F.layer_norm(x, list(shape), weight, bias, eps)
    checks.assert_close(got, expected, what, mistakes=_ln_mistakes(x, shape, weight, bias, eps))


@graded(task="layer_norm", kind="accuracy", points=2, visibility="public")
def test_layer_norm_matches_pytorch(student, rng):
    """Equals F.layer_norm over one and two trailing dims of non-square inputs, with and without weight
    and bias."""
    x = 2.0 * torch.randn(3, 4, 6, generator=rng) + 1.0
    w, b = 1.0 + 0.3 * torch.randn(6, generator=rng), torch.randn(6, generator=rng)
    _check_ln(student.layer_norm(x, (6,), w, b), x, (6,), w, b, "layer_norm(x[3,4,6], (6,), weight, bias)")
    w2, b2 = 1.0 + 0.3 * torch.randn(4, 6, generator=rng), torch.randn(4, 6, generator=rng)
    _check_ln(student.layer_norm(x, (4, 6), w2, b2), x, (4, 6), w2, b2, "layer_norm(x[3,4,6], (4, 6), weight, bias)")
    _check_ln(student.layer_norm(x, (4, 6), None, None), x, (4, 6), None, None, "layer_norm(x[3,4,6], (4, 6), None, None)")
    _check_ln(student.layer_norm(x, (6,)), x, (6,), None, None, "layer_norm(x[3,4,6], (6,))")


@graded(task="layer_norm", kind="gradient", points=2, visibility="public")
def test_layer_norm_gradcheck(student, rng):
    """Gradients to x, weight and bias agree with finite differences (float64)."""
    x = torch.randn(2, 3, 5, generator=rng, dtype=torch.float64)
    w = 1.0 + 0.3 * torch.randn(3, 5, generator=rng, dtype=torch.float64)
    b = torch.randn(3, 5, generator=rng, dtype=torch.float64)
    checks.assert_gradcheck(student, "layer_norm", (x, (3, 5), w, b), wrt=(0, 2, 3), generator=rng, directions=2)


@graded(task="layer_norm", kind="accuracy", points=1, visibility="hidden")
def test_layer_norm_batch_one_int_shape_float64_noncontiguous(student, rng):
    """An int normalized_shape, batch 1, float64 with eps 1e-3, a non-contiguous input, and meta tensors."""
    x = torch.randn(1, 7, generator=rng, dtype=torch.float64)
    _check_ln(student.layer_norm(x, 7, None, None, 1e-3), x, (7,), None, None, "layer_norm(x[1,7].double(), 7, eps=1e-3)",
              eps=1e-3)
    x = torch.randn(5, 4, generator=rng)  # sent as x.T made contiguous, transposed back in the worker
    w, b = torch.rand(4, generator=rng) + 0.5, torch.randn(4, generator=rng)
    got = student.probe("call_transposed", name="layer_norm", args=[x.T.contiguous(), (4,), w, b], transpose={"0": [0, 1]})
    _check_ln(got, x, (4,), w, b, "layer_norm(x.T.contiguous().T, (4,), weight, bias)")
    raised = student.probe("raises", name="layer_norm", args=[torch.randn(2, 3, 4), (3, 5)])
    checks.assert_equal(raised, "ValueError", "layer_norm(x[2,3,4], (3, 5))", hint=Msg(
        "`normalized_shape` 与 `x` 最后几维的形状不同时应抛出 `ValueError`",
        "Raise ValueError when normalized_shape differs from the shape of x's last dims"))
    what = "layer_norm(x.to('meta'), (3, 4), weight, bias)"
    out = checks.call_or_fail(lambda: student.layer_norm(torch.empty(2, 3, 4, device="meta"), (3, 4),
                                                   torch.empty(3, 4, device="meta"), torch.empty(3, 4, device="meta")), what)
    checks.assert_shape(out, (2, 3, 4), what)
    checks.assert_device(out, "meta", what)


# -- T10.6 weight_decay_param_groups -----------------------------------------------------------------------------
SMALL_DECAY = {"fc1.weight", "fc2.weight"}
SMALL_ALL = ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"]
NET_DECAY = {"embed.weight", "conv.weight", "unbiased_proj.weight", "normalizer.weight", "scale.gain"}
NET_ALL = ["embed.weight", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "unbiased_proj.weight",
           "normalizer.weight", "normalizer.bias", "ln_f.weight", "ln_f.bias", "gn.weight", "gn.bias", "scale.gain",
           "frozen.weight", "frozen.bias", "head.bias"]


def _check_groups(student, rng, model: str, names: list[str], decayed: set[str], frozen: list[str],
                  weight_decay: float = 0.5, lr: float = 0.1) -> None:
    what = f"weight_decay_param_groups({model}(), {weight_decay})"
    res = student.probe("groups_probe", model=model, weight_decay=weight_decay, lr=lr, frozen=frozen, seed=seed_from(rng))
    _fail_on_error(res, what)
    groups = res.get("groups")
    if not isinstance(groups, list) or len(groups) != 2:
        checks.fail(Msg(f"{what} 返回了 {groups!r}", f"{what} returned {groups!r}"), GROUP_FORMAT)
    checks.assert_true(groups[0]["weight_decay"] == weight_decay and groups[1]["weight_decay"] == 0.0, Msg(
        f"{what}：两组的 `weight_decay` 为 {groups[0]['weight_decay']} 和 {groups[1]['weight_decay']}",
        f"{what}: the groups' weight_decay values are {groups[0]['weight_decay']} and {groups[1]['weight_decay']}"),
        GROUP_FORMAT)
    listed = [n for g in groups for n in g["names"]]
    duplicated = sorted({n for n in listed if listed.count(n) > 1})
    checks.assert_true(not duplicated, Msg(f"{what}：这些参数出现了不止一次：{duplicated}",
                                           f"{what}: these parameters are listed more than once: {duplicated}"), DUPLICATE)
    trainable = [n for n in names if not any(n.startswith(f + ".") for f in frozen)]
    included = sorted(n for n in listed if n not in trainable)
    checks.assert_true(not included, Msg(f"{what}：这些参数被冻结或不属于模型，却在参数组中：{included}",
                                         f"{what}: these are frozen or not the model's, yet in a group: {included}"), FROZEN)
    missing = sorted(set(trainable) - set(listed))
    checks.assert_true(not missing, Msg(f"{what}：这些可训练参数不在任何组中：{missing}",
                                        f"{what}: these trainable parameters are in no group: {missing}"), MISSING)
    _fail_on_error(res, f"torch.optim.AdamW({what}).step()", GROUP_FORMAT, key="adamw_error")
    wrong_decay = sorted(n for n in trainable if (n in groups[0]["names"]) != (n in decayed))
    if wrong_decay:
        substring = any(n in ("unbiased_proj.weight", "normalizer.weight") for n in wrong_decay)
        checks.fail(Msg(f"{what}：这些参数分错了组：{wrong_decay}", f"{what}: these parameters are in the wrong group: {wrong_decay}"),
                    SUBSTRING if substring else NORM_BY_TYPE)
    # The step decides: decayed parameters shrink by (1 - lr * wd), the others do not move.
    for name in names:
        factor = 1.0 - lr * weight_decay if name in decayed and name in trainable else 1.0
        checks.assert_close(res["after"][name], res["before"][name] * factor,
                            f"AdamW(groups, lr={lr}).step() → {name}", hint=NORM_BY_TYPE)


@graded(task="weight_decay_param_groups", kind="shape", points=1, visibility="public")
def test_groups_format(student, rng):
    """Two groups in order (decay, then no decay) that AdamW accepts, every parameter exactly once."""
    what = "weight_decay_param_groups(SmallNet(), 0.5)"
    res = student.probe("groups_probe", model="SmallNet", weight_decay=0.5, lr=0.1, frozen=[], seed=seed_from(rng))
    _fail_on_error(res, what)
    groups = res.get("groups")
    checks.assert_true(isinstance(groups, list) and len(groups) == 2, Msg(f"{what} 返回了 {groups!r}", f"{what} returned {groups!r}"),
                       GROUP_FORMAT)
    listed = sorted(n for g in groups for n in g["names"])
    checks.assert_equal(listed, sorted(SMALL_ALL), f"sorted(p for g in {what} for p in g['params'])", hint=MISSING)
    _fail_on_error(res, f"torch.optim.AdamW({what}).step()", GROUP_FORMAT, key="adamw_error")


@graded(task="weight_decay_param_groups", kind="accuracy", points=2, visibility="public")
def test_groups_decay_weights_only(student, rng):
    """Linear weights are decayed; biases and BatchNorm parameters are not: one AdamW step with zero
    gradients shrinks exactly the decayed parameters by (1 - lr * wd)."""
    _check_groups(student, rng, "SmallNet", SMALL_ALL, SMALL_DECAY, [])


@graded(task="weight_decay_param_groups", kind="accuracy", points=2, visibility="hidden")
def test_groups_tricky_names_tied_frozen(student, rng):
    """Embedding, Conv1d and custom 1-D parameters are decayed; BatchNorm, GroupNorm and a LayerNorm subclass
    named without "norm" are not; names like unbiased_proj and normalizer are decided by type, not
    substrings; a tied weight is listed once; frozen parameters are left out."""
    _check_groups(student, rng, "DecayNet", NET_ALL, NET_DECAY, ["frozen"], weight_decay=0.3, lr=0.2)
