"""Autotests for ex05_training: the training loop, evaluation, the whole fit, early stopping, a
warm-up cosine schedule and gradient clipping.

These tasks are the loop itself, so the probes in ``probes/ex05_training.py`` hand the submission a
trusted model, loader, loss and optimizer and report what happened to them: the parameters after
every epoch or step, BatchNorm statistics, the last output the model made, the learning rates the
optimizer holds. Every expected value is recomputed here (in float64) from the data the test sent,
or taken from the reference run in a worker of its own; a number the loop reports about itself is
only compared, never believed. Records of modes and grad mode seen inside the worker choose hints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.worker.wire import tensor_facts

pytestmark = pytest.mark.exercise("ex05_training")

# -- feedback ----------------------------------------------------------------------------------------
RETURN_FLOATS = Msg("应返回两个 Python float：累加 `loss.item()`，不要累加损失张量本身（那样会保留每个批次的计算图）",
                    "Return two Python floats: accumulate loss.item(), not the loss tensor itself (that keeps every "
                    "batch's graph alive)")
ZERO_GRAD = Msg("梯度在批次之间累积了：每个批次在 backward() 之前先调用 optimizer.zero_grad()",
                "Gradients accumulate across batches: call optimizer.zero_grad() before each backward()")
NO_UPDATE = Msg("参数没有改变：每个批次都要 loss.backward() 再 optimizer.step()（zero_grad() 放在 backward() 之前，"
                "不能放在 backward() 与 step() 之间）",
                "The parameters did not change: every batch needs loss.backward() and then optimizer.step() "
                "(zero_grad() goes before backward(), not between backward() and step())")
WEIGHTED = Msg("平均损失应按样本数加权：Σ(`loss.item()` × 批大小) / N；最后一个批次可能更小，不能除以 len(loader)，"
               "也不能把批次平均值之和除以 N",
               "Weight the mean loss by batch size: sum(loss.item() * batch_size) / N; the last batch may be smaller, "
               "so neither divide by len(loader) nor divide the sum of batch means by N")
TRAIN_MODE = Msg("train_epoch 开头要调用 model.train()：模型可能刚评估完，还处在 eval 模式",
                 "Call model.train() at the start of train_epoch: the model may still be in eval mode after an "
                 "evaluation")
DEVICE = Msg("输入和标签都要用 `.to(device)` 移到 `device` 上", "Move both the inputs and the targets to device with "
             ".to(device)")
ARGMAX = Msg("预测应为 outputs.argmax(dim=1)：类别是第 1 维，第 0 维是批次",
             "Predictions are outputs.argmax(dim=1): classes are dimension 1, dimension 0 is the batch")
EVAL_MODE = Msg("评估前要调用 model.eval()：train 模式下 Dropout 生效、BatchNorm 用批次统计量并修改运行统计量",
                "Call model.eval() before evaluating: in train mode dropout is active and BatchNorm uses batch "
                "statistics and changes its running statistics")
NO_GRAD = Msg("评估时构建了计算图：请把评估放在 torch.no_grad() 中", "Evaluation built an autograd graph: wrap it in "
              "torch.no_grad()")
NO_BACKWARD = Msg("评估不能调用 backward() 或更新参数", "Evaluation must not call backward() or update the parameters")
BEST_COPY = Msg("best_state 随训练继续改变：请保存拷贝（`copy.deepcopy(model.state_dict())` 或 `{k: v.clone() ...}`）",
                "best_state keeps changing as training goes on: copy the state dict (copy.deepcopy(model.state_dict()) "
                "or {k: v.clone() ...})")
BEST_RELOAD = Msg("训练结束后模型的参数不是最佳一轮的参数：最后要 model.load_state_dict(best_state)",
                  "After training the model does not hold the best epoch's weights: load the best state at the end "
                  "with model.load_state_dict(best_state)")
BEST_STRICT = Msg("验证准确率严格大于此前最好值时才更新最佳参数：准确率相同时保留较早的一轮",
                  "Keep a new best only when the validation accuracy is strictly greater: on a tie keep the earlier "
                  "epoch")
OPT_ONCE = Msg("优化器应在循环之前只创建一次：每轮重新创建 Adam 会丢失它的动量状态",
               "Create the optimizer once, before the loop: a new Adam every epoch loses its moment estimates")
HISTORY = Msg("返回的字典应包含 train_loss、val_loss、val_acc（每轮一个 float）、best_acc 和 best_state",
              "The returned dict holds train_loss, val_loss, val_acc (one float per epoch), best_acc and best_state")
ACC_SAMPLES = Msg("准确率 = 预测正确的样本数 / 样本总数 N（不是批次数）", "Accuracy = correct predictions / number of samples N "
                  "(not the number of batches)")
ONE_VAL_PASS = Msg("每轮只评估一次：evaluate(model, val_loader, ...) 遍历 val_loader 一遍",
                   "Evaluate once per epoch: evaluate(model, val_loader, ...) goes through val_loader once")
ES_RESET = Msg("有改善时 `counter` 应清零", "Reset counter to 0 on an improvement")
ES_STRICT = Msg("改善必须严格小于 best_loss - min_delta：恰好改善 min_delta 不算改善",
                "An improvement must be strictly below best_loss - min_delta: improving by exactly min_delta is not one")
ES_NAN = Msg("NaN 永远不算改善（`nan < x` 为 False，但 `not (nan >= x)` 为 True）",
             "NaN is never an improvement (nan < x is False, but not (nan >= x) is True)")
ES_PATIENCE = Msg("`counter` 达到 `patience`（`counter >= patience`）时就应停止", "Stop as soon as counter reaches patience "
                  "(counter >= patience)")
ES_FILES = Msg("不要在当前目录写文件（例如 best_model.pth）：请在内存中保存 best_state",
               "Do not write files (such as best_model.pth): keep best_state in memory")
ES_COPY = Msg("best_state 应是拷贝：之后模型改变时它不能跟着变（`.clone()` 每个张量或 `copy.deepcopy`）",
              "best_state must be a copy that does not follow later changes of the model (.clone() every tensor, or "
              "copy.deepcopy)")
ES_BOOL = Msg("调用应返回 `bool`（early_stop）", "The call must return a bool (early_stop)")
W_TYPE = Msg("应返回 torch.optim.lr_scheduler.LambdaLR(optimizer, factor)",
             "Return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)")
W_FACTOR = Msg("多参数组时应按各自基础学习率缩放：`factor` 是倍数，不要乘上某个学习率",
               "With several parameter groups each scales its own base learning rate: factor is a multiplier, do "
               "not multiply it by a learning rate")
W_FIRST = Msg("第 0 步学习率不应为 0：预热因子是 `(step + 1) / warmup_steps`", "The first step's learning rate must be "
              "above 0: the warm-up factor is (step + 1) / warmup_steps")
W_CLAMP = Msg("超过 total_steps 后学习率应保持最小值，余弦不能再升回去", "After total_steps the learning rate stays at "
              "the minimum: clamp it, the cosine must not rise again")
W_MIN = Msg("余弦退火应结束在 min_lr_ratio × 基础学习率", "The cosine must end at min_lr_ratio times the base "
            "learning rate")
W_RESUME = Msg("`factor` 只能依赖传入的 `step`，不要自己计数：从 state_dict() 恢复的调度器必须从原来的步数继续",
               "factor must depend only on the step it is given, not on a counter of its own: a scheduler restored "
               "from state_dict() must carry on from its step")
C_FLOAT = Msg("应返回 Python float：`float(norm)` 或 `norm.item()`", "Return a Python float: float(norm) or norm.item()")
C_BEFORE = Msg("裁剪必须在 optimizer.step() 之前：这一步用的还是没裁剪的梯度", "Clip before optimizer.step(): this step "
               "used the unclipped gradients")
C_GLOBAL = Msg("应按全局范数等比例缩放所有梯度（clip_grad_norm_），而不是逐元素截断或不裁剪",
               "Clip by global norm (clip_grad_norm_), scaling every gradient by the same factor, not by value and "
               "not skipped")
C_PRE = Msg("应返回裁剪前的总范数（clip_grad_norm_ 的返回值）", "Return the pre-clip total norm (what clip_grad_norm_ "
            "returns)")
C_ZERO = Msg("旧的梯度被加进来了：先调用 optimizer.zero_grad() 再 backward()", "Old gradients were added in: call "
             "optimizer.zero_grad() before backward()")


# -- helpers -------------------------------------------------------------------------------------------

def _raised(error: str, what: str, hint: Msg | None = None) -> None:
    checks.fail(Msg(f"{what}：你的代码抛出了异常：{error}", f"{what}: your code raised an exception: {error}"), hint)


def _error_hint(res: dict[str, Any]) -> Msg | None:
    """The hint an exception from the submission supports (moved to device, argmax dim, BN in train mode)."""
    error = res.get("error") or ""
    if res.get("not_on_device"):
        return DEVICE
    if "must match the size of tensor" in error:
        return ARGMAX
    if "more than 1 value per channel" in error:
        return EVAL_MODE
    return None


def _check_error(res: dict[str, Any], what: str) -> None:
    if res.get("error"):
        _raised(res["error"], what, _error_hint(res))


def _pair(got: Any, what: str) -> tuple[float, float]:
    """A returned ``(loss, accuracy)``: two Python numbers."""
    ok = isinstance(got, list) and len(got) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in got)
    if not ok:
        shown = [type(v).__name__ for v in got] if isinstance(got, list) else type(got).__name__
        checks.fail(Msg(f"{what}：应返回 (float, float)，实际得到 {shown}",
                        f"{what}: expected (float, float), got {shown}"), RETURN_FLOATS)
    return float(got[0]), float(got[1])


def _near(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isfinite(a) and abs(a - b) <= tol * max(1.0, abs(b))


def _number(got: float, expected: float, what: str, mistakes: dict[Msg, float] | None = None,
            tol: float = 1e-9) -> None:
    """``got`` equals ``expected`` (float64 precision); a mistake it matches becomes the hint."""
    if _near(got, expected, tol):
        return
    hint = next((Msg(f"看起来像常见错误：{m.zh}", f"This looks like a common mistake: {m.en}")
                 for m, wrong in (mistakes or {}).items() if _near(got, wrong, tol)), None)
    checks.assert_number_close(got, expected, what, atol=tol * max(1.0, abs(expected)), hint=hint)


def _same(a: Any, b: torch.Tensor, tol: float = 1e-10) -> bool:
    """Used to pick a hint, never to pass or fail."""
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=tol,
                                                                               atol=tol)


def _blobs(rng: torch.Generator, n: int, dim: int, classes: int, spread: float,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-variance Gaussian clusters around orthogonal centres at distance ``spread`` from 0."""
    basis, _ = torch.linalg.qr(torch.randn(dim, classes, generator=rng, dtype=torch.float64))
    labels = torch.randperm(n, generator=rng) % classes
    x = basis.T[labels] * spread + torch.randn(n, dim, generator=rng, dtype=torch.float64)
    return x.to(dtype), labels


def _linear_problem(rng: torch.Generator, n: int, d: int, k: int) -> dict[str, torch.Tensor]:
    """A float64 Linear(d, k) with small random weights and ``n`` labelled points."""
    return {"weight": torch.randn(k, d, generator=rng, dtype=torch.float64) * 0.5,
            "bias": torch.randn(k, generator=rng, dtype=torch.float64) * 0.1,
            "x": torch.randn(n, d, generator=rng, dtype=torch.float64),
            "y": torch.randint(0, k, (n,), generator=rng)}


@dataclass
class Replay:
    """What ``train_epoch`` must do, recomputed here: parameters, weighted losses and accuracies per epoch."""

    params: list[list[torch.Tensor]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    mean_of_means: list[float] = field(default_factory=list)
    means_over_n: list[float] = field(default_factory=list)
    acc_over_batches: list[float] = field(default_factory=list)


def _replay_training(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     epochs: int, lr: float, momentum: float, scale: float = 1.0, zero_grad: bool = True) -> Replay:
    """SGD on ``Linear(scale · x)`` over unshuffled batches, in float64 (``zero_grad=False``: the mistake)."""
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([w, b], lr=lr, momentum=momentum)
    out_ = Replay()
    n = len(y)
    for _ in range(epochs):
        total, correct, means = 0.0, 0, []
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            if zero_grad:
                optimizer.zero_grad()
            out = F.linear(xb * scale, w, b)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            correct += int((out.argmax(1) == yb).sum())
            means.append(loss.item())
        out_.params.append([w.detach().clone(), b.detach().clone()])
        out_.losses.append(total / n)
        out_.accs.append(correct / n)
        out_.mean_of_means.append(sum(means) / len(means))
        out_.means_over_n.append(sum(means) / n)
        out_.acc_over_batches.append(correct / len(means))
    return out_


def _train(student, problem: dict[str, torch.Tensor], what: str, **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_train_epoch", weight=problem["weight"], bias=problem["bias"], x=problem["x"],
                        y=problem["y"], **kwargs)
    _check_error(res, what)
    return res


def _check_trajectory(res: dict[str, Any], problem: dict[str, torch.Tensor], expected: Replay,
                      mistakes: dict[Msg, Replay], what: str) -> None:
    """The Linear's weight and bias after every epoch equal the recomputed ones to ~1e-10."""
    for epoch, (got, want) in enumerate(zip(res["params"], expected.params)):
        for i, name in enumerate(("weight", "bias")):
            unchanged = _same(got[i], problem[name], 0.0) and not _same(want[i], problem[name], 0.0)
            checks.assert_close(got[i], want[i], f"model.{name} ({what} #{epoch + 1})", atol=1e-10, rtol=1e-10,
                                rel_l2=1e-10, hint=NO_UPDATE if unchanged else None,
                                mistakes={m: r.params[epoch][i] for m, r in mistakes.items()})


# -- T5.1 train_epoch --------------------------------------------------------------------------------------
@graded(task="train_epoch", kind="shape", points=1, visibility="public")
def test_train_epoch_returns_two_floats(student, rng):
    """train_epoch returns (loss, accuracy) as Python floats, the accuracy in [0, 1]."""
    problem = _linear_problem(rng, 10, 3, 2)
    what = "train_epoch(model, loader, criterion, optimizer)"
    res = _train(student, problem, what, batch_size=4, epochs=1, lr=0.1)
    loss, acc = _pair(res["returned"][0], what)
    checks.assert_true(math.isfinite(loss) and 0.0 <= acc <= 1.0, Msg(
        f"{what}：得到 ({loss!r}, {acc!r})，损失应有限、准确率应在 [0, 1] 内",
        f"{what}: got ({loss!r}, {acc!r}); the loss must be finite and the accuracy within [0, 1]"))


@graded(task="train_epoch", kind="gradient", points=2, visibility="public")
def test_train_epoch_exact_trajectory(student, rng):
    """Linear(3, 2) in float64, SGD with momentum, 10 samples in batches of 4: the weights after each
    of two epochs equal those of zero_grad → forward → backward → step per batch, to 1e-10."""
    problem = _linear_problem(rng, 10, 3, 2)
    settings = {"batch_size": 4, "epochs": 2, "lr": 0.1, "momentum": 0.9}
    res = _train(student, problem, "train_epoch(model, loader, criterion, optimizer)", **settings)
    args = (problem["weight"], problem["bias"], problem["x"], problem["y"], 4, 2, 0.1, 0.9)
    _check_trajectory(res, problem, _replay_training(*args), {ZERO_GRAD: _replay_training(*args, zero_grad=False)},
                      "train_epoch")


@graded(task="train_epoch", kind="accuracy", points=2, visibility="public")
def test_train_epoch_weighted_loss_and_accuracy(student, rng):
    """10 samples in batches of 4, 4 and 2: the loss is Σ loss_b·n_b / N of the forward passes before
    each step, the accuracy the share of argmax(dim=1) hits."""
    problem = _linear_problem(rng, 10, 3, 2)
    what = "train_epoch(model, loader, criterion, optimizer)"
    res = _train(student, problem, what, batch_size=4, epochs=2, lr=0.1, momentum=0.9)
    expected = _replay_training(problem["weight"], problem["bias"], problem["x"], problem["y"], 4, 2, 0.1, 0.9)
    for epoch in range(2):
        loss, acc = _pair(res["returned"][epoch], what)
        _number(loss, expected.losses[epoch], f"{what}[0] #{epoch + 1}",
                {WEIGHTED: expected.mean_of_means[epoch], Msg(WEIGHTED.zh, WEIGHTED.en + " "): expected.means_over_n[epoch]})
        _number(acc, expected.accs[epoch], f"{what}[1] #{epoch + 1}", {ACC_SAMPLES: expected.acc_over_batches[epoch]},
                tol=1e-12)


@graded(task="train_epoch", kind="accuracy", points=2, visibility="public")
def test_train_epoch_learns_blobs(student, spec, rng):
    """A small MLP with dropout trained by train_epoch (SGD, shuffled batches) separates Gaussian blobs;
    held-out points are scored here."""
    p = spec.param("train_blobs")
    x, y = _blobs(rng, p["n_train"] + p["n_eval"], p["dim"], p["classes"], p["spread"])
    n = p["n_train"]
    res = student.probe("train_and_predict", x_train=x[:n], y_train=y[:n], x_eval=x[n:], hidden=p["hidden"],
                        epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"], seed=seed_from(rng))
    _assert_accuracy(res["logits"], y[n:], spec.param("train_accuracy"), "train_epoch(model, loader, ...)")


def _assert_accuracy(logits: Any, labels: torch.Tensor, threshold: float, what: str) -> None:
    checks.assert_shape(logits, (len(labels), int(labels.max()) + 1), what)
    checks.assert_finite(logits, what)
    acc = float((logits.argmax(1) == labels).double().mean())
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：训练后在留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy after training is {acc:.3f}, at least {threshold:.2f} is required"))


@graded(task="train_epoch", kind="accuracy", points=2, visibility="hidden")
def test_train_epoch_switches_to_train_mode(student, rng):
    """The model starts in eval mode and scales its input by 0.5 only in train mode (a deterministic
    stand-in for dropout): weights and loss after two epochs of 70 samples in batches of 32 must be
    those of train-mode forward passes."""
    problem = _linear_problem(rng, 70, 4, 3)
    what = "train_epoch(model.eval(), loader, criterion, optimizer)"
    res = _train(student, problem, what, batch_size=32, epochs=2, lr=0.05, momentum=0.9, scale=0.5)
    args = (problem["weight"], problem["bias"], problem["x"], problem["y"], 32, 2, 0.05, 0.9)
    expected = _replay_training(*args, scale=0.5)
    stayed_eval = bool(res["seen"]) and not any(train for train, _ in res["seen"])
    mistakes = {ZERO_GRAD: _replay_training(*args, scale=0.5, zero_grad=False)}
    if stayed_eval:  # what the model saw picks the hint; the values decide
        mistakes = {TRAIN_MODE: _replay_training(*args, scale=1.0), **mistakes}
    _check_trajectory(res, problem, expected, mistakes, "train_epoch")
    for epoch in range(2):
        loss, _ = _pair(res["returned"][epoch], what)
        _number(loss, expected.losses[epoch], f"{what}[0] #{epoch + 1}",
                {WEIGHTED: expected.mean_of_means[epoch], Msg(WEIGHTED.zh, WEIGHTED.en + " "): expected.means_over_n[epoch]})


@graded(task="train_epoch", kind="gradient", points=1, visibility="hidden")
def test_train_epoch_trajectory_other_sizes(student, rng):
    """Linear(5, 4), three epochs of 23 samples in batches of 5 (last batch 3), SGD without momentum."""
    problem = _linear_problem(rng, 23, 5, 4)
    res = _train(student, problem, "train_epoch(model, loader, criterion, optimizer)", batch_size=5, epochs=3,
                 lr=0.2, momentum=0.0)
    args = (problem["weight"], problem["bias"], problem["x"], problem["y"], 5, 3, 0.2, 0.0)
    _check_trajectory(res, problem, _replay_training(*args), {ZERO_GRAD: _replay_training(*args, zero_grad=False)},
                      "train_epoch")
    expected = _replay_training(*args)
    loss, acc = _pair(res["returned"][2], "train_epoch(model, loader, criterion, optimizer)")
    _number(acc, expected.accs[2], "train_epoch(model, loader, criterion, optimizer)[1] #3", tol=1e-12)


@graded(task="train_epoch", kind="shape", points=1, visibility="hidden")
def test_train_epoch_moves_batches_to_device(student, rng):
    """Inputs and targets reach the model and the loss only after .to(device); the result is unchanged."""
    problem = _linear_problem(rng, 9, 3, 2)
    what = "train_epoch(model, loader, criterion, optimizer, device)"
    res = _train(student, problem, what, batch_size=4, epochs=1, lr=0.1, host_tensors=True)
    expected = _replay_training(problem["weight"], problem["bias"], problem["x"], problem["y"], 4, 1, 0.1, 0.0)
    _check_trajectory(res, problem, expected, {}, "train_epoch")


# -- T5.2 evaluate ------------------------------------------------------------------------------------------
def _bn_eval(x: torch.Tensor, bn: dict[str, torch.Tensor] | None) -> torch.Tensor:
    if bn is None:
        return x
    return (x - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5)


def _eval_expected(problem: dict[str, torch.Tensor], batch_size: int,
                   bn: dict[str, torch.Tensor] | None = None) -> tuple[float, float, float]:
    """Weighted loss and accuracy of ``Linear(BN_eval(x))`` over unshuffled batches, and the mean of
    the batch means (the mistake)."""
    x, y = problem["x"], problem["y"]
    total, correct, means = 0.0, 0, []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = F.linear(_bn_eval(xb, bn), problem["weight"], problem["bias"])
        means.append(F.cross_entropy(out, yb).item())
        total += means[-1] * len(yb)
        correct += int((out.argmax(1) == yb).sum())
    return total / len(y), correct / len(y), sum(means) / len(means)


def _evaluate(student, problem: dict[str, torch.Tensor], what: str, **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_evaluate", weight=problem["weight"], bias=problem["bias"], x=problem["x"],
                        y=problem["y"], **kwargs)
    _check_error(res, what)
    return res


def _check_eval_values(res: dict[str, Any], expected: tuple[float, float, float], what: str) -> None:
    in_train_mode = any(train for train, _ in res["seen"])
    hint = EVAL_MODE if in_train_mode else None  # observed next to student code: a hint only
    for i, got in enumerate(res["returned"]):
        loss, acc = _pair(got, what)
        label = f"{what} #{i + 1}"
        if not (_near(loss, expected[0]) and _near(acc, expected[1], 1e-12)) and hint is not None:
            checks.fail(Msg(f"{label}：得到 ({loss:.6g}, {acc:.6g})，期望 ({expected[0]:.6g}, {expected[1]:.6g})",
                            f"{label}: got ({loss:.6g}, {acc:.6g}), expected ({expected[0]:.6g}, {expected[1]:.6g})"),
                       hint)
        _number(loss, expected[0], f"{label}[0]", {WEIGHTED: expected[2]})
        _number(acc, expected[1], f"{label}[1]", tol=1e-12)


@graded(task="evaluate", kind="shape", points=1, visibility="public")
def test_evaluate_returns_two_floats(student, rng):
    """evaluate returns (loss, accuracy) as Python floats."""
    problem = _linear_problem(rng, 8, 3, 2)
    what = "evaluate(model, loader, criterion)"
    res = _evaluate(student, problem, what, batch_size=4, repeats=1)
    _pair(res["returned"][0], what)


@graded(task="evaluate", kind="accuracy", points=2, visibility="public")
def test_evaluate_values_in_eval_mode(student, rng):
    """The model (left in train mode, where it scales its input by 0.5) is evaluated in eval mode:
    10 samples in batches of 4, 4 and 2 give the weighted loss and accuracy, twice the same."""
    problem = _linear_problem(rng, 10, 3, 3)
    what = "evaluate(model.train(), loader, criterion)"
    res = _evaluate(student, problem, what, batch_size=4)
    _check_eval_values(res, _eval_expected(problem, 4), what)


@graded(task="evaluate", kind="gradient", points=2, visibility="public")
def test_evaluate_builds_no_graph(student, rng):
    """Under no_grad the model's outputs do not require grad, and no parameter gets a .grad or changes."""
    problem = _linear_problem(rng, 10, 3, 2)
    what = "evaluate(model, loader, criterion)"
    res = _evaluate(student, problem, what, batch_size=4, repeats=1)
    checks.assert_true(not res["grads_set"], Msg(f"{what} 之后这些参数有了 .grad：{res['grads_set']}",
                                                 f"After {what} these parameters have a .grad: {res['grads_set']}"),
                       NO_BACKWARD)
    for i, name in enumerate(("weight", "bias")):
        checks.assert_close(res["params"][i], problem[name], f"model.{name}", atol=0, rtol=0, rel_l2=0,
                            hint=NO_BACKWARD)
    output = checks.assert_tensor(res["last_output"], "model(inputs)")
    checks.assert_true(not tensor_facts(output).requires_grad, Msg(
        f"{what} 中模型的输出 requires_grad=True", f"Inside {what} the model's outputs have requires_grad=True"), NO_GRAD)


@graded(task="evaluate", kind="accuracy", points=2, visibility="hidden")
def test_evaluate_keeps_batchnorm_statistics(student, rng):
    """With a BatchNorm1d before the Linear and 9 samples (last batch of 1): running statistics are used,
    left unchanged, and the result equals the eval-mode computation."""
    problem = _linear_problem(rng, 9, 4, 3)
    bn = {"running_mean": torch.randn(4, generator=rng, dtype=torch.float64) * 0.3,
          "running_var": torch.rand(4, generator=rng, dtype=torch.float64) + 0.5}
    what = "evaluate(model_with_bn.train(), loader, criterion)"
    res = _evaluate(student, problem, what, batch_size=4, bn=bn)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        checks.assert_close(res["bn_after"][name], res["bn_before"][name], f"model[1].{name}", atol=0, rtol=0,
                            rel_l2=0, hint=EVAL_MODE)
    _check_eval_values(res, _eval_expected(problem, 4, bn), what)


@graded(task="evaluate", kind="accuracy", points=1, visibility="hidden")
def test_evaluate_many_classes_and_batches(student, rng):
    """Five classes, 37 samples in batches of 8 (last batch 5): loss and accuracy equal the eval-mode values."""
    problem = _linear_problem(rng, 37, 6, 5)
    problem["weight"] = problem["weight"] * 3  # confident enough that accuracy varies between classes
    what = "evaluate(model.train(), loader, criterion)"
    res = _evaluate(student, problem, what, batch_size=8)
    _check_eval_values(res, _eval_expected(problem, 8), what)


@graded(task="evaluate", kind="shape", points=1, visibility="hidden")
def test_evaluate_moves_batches_to_device(student, rng):
    """Inputs and targets reach the model and the loss only after .to(device)."""
    problem = _linear_problem(rng, 9, 3, 2)
    what = "evaluate(model, loader, criterion, device)"
    res = _evaluate(student, problem, what, batch_size=4, repeats=1, host_tensors=True)
    _check_eval_values(res, _eval_expected(problem, 4), what)


# -- T5.3 fit ----------------------------------------------------------------------------------------------------
HISTORY_KEYS = ("train_loss", "val_loss", "val_acc", "best_acc", "best_state")


def _history(res: dict[str, Any], epochs: int, what: str) -> dict[str, Any]:
    checks.assert_true(res["type"] == "dict", Msg(f"{what}：应返回 dict，实际得到 {res['type']}",
                                                  f"{what}: expected a dict, got {res['type']}"), HISTORY)
    history = res["history"]
    missing = [k for k in HISTORY_KEYS if k not in history]
    checks.assert_true(not missing, Msg(f"{what}：返回的字典缺少键 {missing}", f"{what}: the returned dict lacks {missing}"),
                       HISTORY)
    for key in ("train_loss", "val_loss", "val_acc"):
        values = history[key]
        ok = isinstance(values, list) and len(values) == epochs and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        checks.assert_true(ok, Msg(f"{what}[{key!r}]：应为 {epochs} 个 float 的列表，实际为 {values!r}"[:300],
                                   f"{what}[{key!r}]: expected a list of {epochs} floats, got {values!r}"[:300]), HISTORY)
    best_acc = history["best_acc"]
    checks.assert_true(isinstance(best_acc, (int, float)) and not isinstance(best_acc, bool), Msg(
        f"{what}['best_acc']：应为 float，实际为 {best_acc!r}", f"{what}['best_acc']: expected a float, got {best_acc!r}"),
        HISTORY)
    state = history["best_state"]
    keys = sorted(state) if isinstance(state, dict) else state
    checks.assert_equal(keys, sorted(res["state_keys"]), f"sorted({what}['best_state'])", hint=HISTORY)
    return history


def _degrading_problem(rng: torch.Generator, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Blobs a Linear starts out classifying well, trained on labels shifted by one class: validation
    accuracy falls epoch after epoch, so the best epoch is an early one."""
    d, k, n = p["dim"], p["classes"], p["n"]
    x, y = _blobs(rng, 2 * n, d, k, p["spread"], torch.float64)
    basis = torch.zeros(k, d, dtype=torch.float64)
    for c in range(k):
        basis[c] = x[:n][y[:n] == c].mean(0)
    return {"weight": basis * p["init_scale"], "bias": torch.zeros(k, dtype=torch.float64),
            "x_train": x[:n], "y_train": (y[:n] + 1) % k, "x_val": x[n:], "y_val": y[n:]}


def _fit(impl, problem: dict[str, torch.Tensor], p: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return impl.probe("run_fit", x_train=problem["x_train"], y_train=problem["y_train"], x_val=problem["x_val"],
                      y_val=problem["y_val"], weight=problem["weight"], bias=problem["bias"], epochs=p["epochs"],
                      lr=p["lr"], batch_size=p["batch_size"], **kwargs)


def _val_accuracy(snapshot: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    out = F.linear(x, snapshot["weight"], snapshot["bias"])
    return int((out.argmax(1) == y).sum()) / len(y)


@graded(task="fit", kind="shape", points=1, visibility="public")
def test_fit_returns_history(student, spec, rng):
    """fit returns a dict with one float per epoch in train_loss, val_loss and val_acc, a float best_acc
    and a best_state with the model's state_dict keys."""
    p = {**spec.param("fit_degrading"), "epochs": 3}
    res = _fit(student, _degrading_problem(rng, p), p)
    _history(res, 3, "fit(model, train_loader, val_loader, 3)")


@graded(task="fit", kind="accuracy", points=2, visibility="public")
def test_fit_restores_best_epoch(student, spec, rng):
    """Validation accuracy falls during training: after fit the model holds the weights of the epoch
    with the best validation accuracy (computed here from the weights after each epoch), and best_state
    is a copy of them that later changes to the model do not reach."""
    p = spec.param("fit_degrading")
    problem = _degrading_problem(rng, p)
    what = f"fit(model, train_loader, val_loader, {p['epochs']})"
    res = _fit(student, problem, p)
    history = _history(res, p["epochs"], what)
    snapshots = res["snapshots"]
    checks.assert_true(len(snapshots) == p["epochs"], Msg(
        f"{what}：val_loader 被遍历了 {len(snapshots)} 次，应为每轮一次（{p['epochs']} 次）",
        f"{what}: val_loader was iterated {len(snapshots)} times, expected once per epoch ({p['epochs']})"),
        ONE_VAL_PASS)
    accs = [_val_accuracy(s, problem["x_val"], problem["y_val"]) for s in snapshots]
    best = accs.index(max(accs))
    final, later = res["final"], res.get("best_state_later")
    follows = isinstance(later, dict) and _same(later.get("weight"), final["weight"] + 1.0)
    stale_last = _same(final["weight"], snapshots[-1]["weight"])
    tied = [i for i, a in enumerate(accs) if a == accs[best]]
    hint = BEST_COPY if follows else BEST_STRICT if len(tied) > 1 and _same(final["weight"], snapshots[tied[-1]][
        "weight"]) else BEST_RELOAD if stale_last else None
    for name in ("weight", "bias"):
        checks.assert_close(final[name], snapshots[best][name], f"model.{name}", atol=1e-12, rtol=1e-12, rel_l2=1e-12,
                            hint=hint)
    for name in ("weight", "bias"):
        got = later.get(name) if isinstance(later, dict) else later
        checks.assert_close(got, snapshots[best][name], f"{what}['best_state'][{name!r}]", atol=1e-12, rtol=1e-12,
                            rel_l2=1e-12, hint=BEST_COPY if follows else None)


@graded(task="fit", kind="accuracy", points=2, visibility="public")
def test_fit_learns_blobs(student, spec, rng):
    """fit trains an MLP on Gaussian blobs for a few epochs; held-out points are scored here."""
    p = spec.param("fit_blobs")
    n_train, n_val = p["n_train"], p["n_val"]
    x, y = _blobs(rng, n_train + n_val + p["n_test"], p["dim"], p["classes"], p["spread"])
    res = student.probe("run_fit", x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:n_train + n_val],
                        y_val=y[n_train:n_train + n_val], epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"],
                        hidden=p["hidden"], seed=seed_from(rng), x_test=x[n_train + n_val:])
    _assert_accuracy(res["test_logits"], y[n_train + n_val:], spec.param("fit_accuracy"),
                     "fit(model, train_loader, val_loader, epochs)")


@graded(task="fit", kind="gradient", points=2, visibility="hidden")
def test_fit_trajectory_matches_reference(student, reference_worker, spec, rng):
    """In float64 the weights after every epoch and the final weights equal the reference's (one Adam
    for the whole run, train then evaluate each epoch); best_acc is the best validation accuracy."""
    p = spec.param("fit_degrading")
    problem = _degrading_problem(rng, p)
    what = f"fit(model, train_loader, val_loader, {p['epochs']})"
    got, want = _fit(student, problem, p), _fit(reference_worker, problem, p)
    history = _history(got, p["epochs"], what)
    checks.assert_true(len(got["snapshots"]) == p["epochs"], Msg(
        f"{what}：val_loader 被遍历了 {len(got['snapshots'])} 次", f"{what}: val_loader was iterated "
        f"{len(got['snapshots'])} times"), ONE_VAL_PASS)
    first_right = _same(got["snapshots"][0]["weight"], want["snapshots"][0]["weight"])
    for epoch, (mine, theirs) in enumerate(zip(got["snapshots"], want["snapshots"])):
        for name in ("weight", "bias"):
            checks.assert_close(mine[name], theirs[name], f"model.{name} (fit() #{epoch + 1})", atol=1e-10, rtol=1e-10,
                                rel_l2=1e-10, hint=OPT_ONCE if first_right and epoch > 0 else None)
    # The recorded numbers come from train_epoch and evaluate, graded in their own tasks: here only
    # best_acc, which must be the best validation accuracy of the epochs (recomputed from the weights).
    best = max(_val_accuracy(snap, problem["x_val"], problem["y_val"]) for snap in got["snapshots"])
    _number(float(history["best_acc"]), best, f"{what}['best_acc']", tol=1e-12)
    for name in ("weight", "bias"):
        checks.assert_close(got["final"][name], want["final"][name], f"model.{name}", atol=1e-10, rtol=1e-10,
                            rel_l2=1e-10, hint=BEST_RELOAD)


@graded(task="fit", kind="accuracy", points=1, visibility="hidden")
def test_fit_keeps_earliest_of_tied_epochs(student, spec, rng):
    """Validation points far from the decision boundary stay correct in every epoch: all epochs tie, so
    the model must end with the weights of the first one."""
    p = {**spec.param("fit_degrading"), "lr": spec.param("fit_tie_lr")}
    problem = _degrading_problem(rng, p)
    k = p["classes"]
    problem["x_val"] = problem["weight"].repeat(2, 1) * spec.param("fit_tie_scale")
    problem["y_val"] = torch.arange(k).repeat(2)
    what = f"fit(model, train_loader, val_loader, {p['epochs']})"
    res = _fit(student, problem, p)
    _history(res, p["epochs"], what)
    snapshots = res["snapshots"]
    checks.assert_true(len(snapshots) == p["epochs"], Msg(
        f"{what}：val_loader 被遍历了 {len(snapshots)} 次", f"{what}: val_loader was iterated {len(snapshots)} times"),
        ONE_VAL_PASS)
    accs = [_val_accuracy(s, problem["x_val"], problem["y_val"]) for s in snapshots]
    best = accs.index(max(accs))
    tied_later = any(_same(res["final"]["weight"], snapshots[i]["weight"]) for i, a in enumerate(accs)
                     if a == accs[best] and i > best)
    checks.assert_close(res["final"]["weight"], snapshots[best]["weight"], "model.weight", atol=1e-12, rtol=1e-12,
                        rel_l2=1e-12, hint=BEST_STRICT if tied_later else BEST_RELOAD)


@graded(task="fit", kind="shape", points=1, visibility="hidden")
def test_fit_single_epoch(student, spec, rng):
    """With epochs=1 the history has one entry per list and the model keeps the weights after that epoch."""
    p = {**spec.param("fit_degrading"), "epochs": 1}
    problem = _degrading_problem(rng, p)
    res = _fit(student, problem, p)
    _history(res, 1, "fit(model, train_loader, val_loader, 1)")
    checks.assert_close(res["final"]["weight"], res["snapshots"][0]["weight"], "model.weight", atol=1e-12, rtol=1e-12,
                        rel_l2=1e-12, hint=BEST_RELOAD)


# -- T5.4 EarlyStopping --------------------------------------------------------------------------------------------
def _stop_run(student, losses: list[float], **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_early_stopping", losses=losses, **kwargs)
    what = "EarlyStopping(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + f")({losses})"
    if res["files"]:
        checks.fail(Msg(f"{what}：在当前目录写了文件 {res['files']}", f"{what}: wrote files {res['files']} into the "
                        "current folder"), ES_FILES)
    if res["error"]:
        _raised(res["error"], what, ES_FILES if "Read-only" in res["error"] or "Permission" in res["error"] else None)
    for call in res["calls"]:
        if not isinstance(call["returned"], bool):
            checks.fail(Msg(f"{what}：返回了 {call['returned']!r}", f"{what}: returned {call['returned']!r}"), ES_BOOL)
    return res


def _check_calls(res: dict[str, Any], expected: list[tuple[bool, int, float | None]], what: str,
                 hint: Msg | None) -> None:
    """The value returned by each call, and counter and best_loss after it, equal the table."""
    got = [(c["returned"], c["counter"], c["best_loss"]) for c in res["calls"]]
    same = len(got) == len(expected) and all(
        g[0] == e[0] and g[1] == e[1] and (g[2] == e[2] or (isinstance(g[2], float) and isinstance(e[2], float)
                                                             and abs(g[2] - e[2]) < 1e-12)) for g, e in zip(got, expected))
    if not same:
        checks.fail(Msg(f"{what}：每次调用后的 （返回值, `counter`, best_loss） 为 {got}，应为 {expected}",
                        f"{what}: (returned, counter, best_loss) after each call were {got}, expected {expected}"), hint)


@graded(task="EarlyStopping", kind="shape", points=1, visibility="public")
def test_early_stopping_initial_state(student):
    """A new EarlyStopping has best_loss None, counter 0, early_stop False, best_state None; a call returns a bool."""
    res = _stop_run(student, [1.0], patience=3)
    checks.assert_equal(res["initial"], [None, 0, False, None],
                        "[stopper.best_loss, stopper.counter, stopper.early_stop, stopper.best_state]")


@graded(task="EarlyStopping", kind="accuracy", points=2, visibility="public")
def test_early_stopping_tables(student):
    """Loss sequences with their expected (returned, counter, best_loss) after each call."""
    res = _stop_run(student, [1.0, 0.9, 0.91, 0.92, 0.93], patience=3)
    _check_calls(res, [(False, 0, 1.0), (False, 0, 0.9), (False, 1, 0.9), (False, 2, 0.9), (True, 3, 0.9)],
                 "EarlyStopping(patience=3)([1.0, 0.9, 0.91, 0.92, 0.93])", ES_PATIENCE)
    res = _stop_run(student, [1.0, 1.1, 0.5, 0.6, 0.7, 0.8], patience=3)
    _check_calls(res, [(False, 0, 1.0), (False, 1, 1.0), (False, 0, 0.5), (False, 1, 0.5), (False, 2, 0.5),
                       (True, 3, 0.5)], "EarlyStopping(patience=3)([1.0, 1.1, 0.5, 0.6, 0.7, 0.8])", ES_RESET)
    res = _stop_run(student, [1.0, 0.75, 0.5, 0.4], patience=2, min_delta=0.25)
    _check_calls(res, [(False, 0, 1.0), (False, 1, 1.0), (False, 0, 0.5), (False, 1, 0.5)],
                 "EarlyStopping(patience=2, min_delta=0.25)([1.0, 0.75, 0.5, 0.4])", ES_STRICT)


def _expected_stops(losses: list[float], patience: int, min_delta: float, *, reset: bool = True,
                    strict: bool = True, nan_improves: bool = False,
                    stop_above: bool = False) -> tuple[list[tuple[bool, int, float | None]], int | None]:
    """The rule (keyword arguments switch on common mistakes); the calls until the first stop, and the best call."""
    best, counter, stop, best_call, calls = None, 0, False, None, []
    for i, loss in enumerate(losses):
        if nan_improves:  # written as not (loss >= best - min_delta)
            improved = best is None or not loss >= best - min_delta
        elif best is None:
            improved = not math.isnan(loss)
        elif math.isnan(loss):
            improved = False
        else:
            improved = loss < best - min_delta if strict else loss <= best - min_delta
        if improved:
            best, best_call = loss, i
            counter = 0 if reset else counter
        else:
            counter += 1
            stop = stop or (counter > patience if stop_above else counter >= patience)
        calls.append((stop, counter, best))
        if stop:
            break
    return calls, best_call


def _stop_hint(res: dict[str, Any], losses: list[float], patience: int, min_delta: float) -> Msg | None:
    got = [(c["returned"], c["counter"], c["best_loss"]) for c in res["calls"]]
    for hint, mistake in ((ES_RESET, {"reset": False}), (ES_STRICT, {"strict": False}),
                          (ES_NAN, {"nan_improves": True}), (ES_PATIENCE, {"stop_above": True})):
        wrong, _ = _expected_stops(losses, patience, min_delta, **mistake)
        if [tuple(w) for w in wrong] == got or (len(wrong) == len(got) and all(
                w[0] == g[0] and w[1] == g[1] for w, g in zip(wrong, got))):
            return hint
    return None


@graded(task="EarlyStopping", kind="accuracy", points=2, visibility="hidden")
def test_early_stopping_random_sequences(student, rng):
    """Random loss sequences with plateaus, exact min_delta steps, NaN and patience 0, 1 and more."""
    cases: list[tuple[list[float], int, float]] = [
        ([0.5, float("nan"), 0.6, 0.4, 0.45], 2, 0.0),
        ([float("nan"), 1.0, 1.0, 0.9], 2, 0.0),
        ([1.0, 1.5, 0.25], 0, 0.0),
        ([2.0, 1.0, 1.0, 0.5, 0.5, 0.5], 1, 0.0),
        ([1.0, 0.5, 0.25, 0.125, 0.0625], 2, 0.25),
    ]
    for _ in range(4):
        patience = int(torch.randint(1, 5, (1,), generator=rng))
        steps = (torch.randint(-4, 3, (12,), generator=rng).double() * 0.125).tolist()
        losses, value = [], 4.0
        for s in steps:
            value += s
            losses.append(value)
        cases.append((losses, patience, [0.0, 0.125, 0.25][int(torch.randint(0, 3, (1,), generator=rng))]))
    for losses, patience, min_delta in cases:
        res = _stop_run(student, losses, patience=patience, min_delta=min_delta)
        expected, _ = _expected_stops(losses, patience, min_delta)
        _check_calls(res, expected, f"EarlyStopping(patience={patience}, min_delta={min_delta})({losses})",
                     _stop_hint(res, losses, patience, min_delta))


@graded(task="EarlyStopping", kind="accuracy", points=1, visibility="hidden")
def test_early_stopping_keeps_a_copy_of_the_best_weights(student):
    """best_state holds the weights of the best call (weight i, bias -i at call i), unchanged by later
    changes of the model, and no file is written."""
    losses = [3.0, 2.0, 2.5, 1.5, 1.75, 1.6, 1.7]
    res = _stop_run(student, losses, patience=3)
    expected, best_call = _expected_stops(losses, 3, 0.0)
    _check_calls(res, expected, f"EarlyStopping(patience=3)({losses})", _stop_hint(res, losses, 3, 0.0))
    state = res["best_state"]
    checks.assert_true(isinstance(state, dict) and {"weight", "bias"} <= set(state), Msg(
        f"stopper.best_state 应为包含 weight 和 bias 的 state_dict，实际为 {state!r}"[:300],
        f"stopper.best_state must be a state_dict with weight and bias, got {state!r}"[:300]), ES_COPY)
    follows = _same(state["weight"], torch.full((1, 2), 1e3, dtype=torch.float64))
    checks.assert_close(state["weight"], torch.full((1, 2), float(best_call), dtype=torch.float64),
                        "stopper.best_state['weight']", hint=ES_COPY if follows else None)
    checks.assert_close(state["bias"], torch.full((1,), -float(best_call), dtype=torch.float64),
                        "stopper.best_state['bias']", hint=ES_COPY if follows else None)


# -- T5.5 make_warmup_cosine -----------------------------------------------------------------------------------------
def _factor(step: int, warmup: int, total: int, min_ratio: float, *, first_zero: bool = False,
            unclamped: bool = False, ignore_min: bool = False) -> float:
    """The schedule's factor at ``step`` (keyword arguments switch on common mistakes)."""
    low = 0.0 if ignore_min else min_ratio
    if step < warmup:
        return step / warmup if first_zero else (step + 1) / warmup
    if step >= total and not unclamped:
        return low
    progress = (step - warmup) / (total - warmup)
    return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _lrs(base_lrs: list[float], warmup: int, total: int, min_ratio: float, steps: int, scale: float = 1.0,
         **mistake: bool) -> torch.Tensor:
    return torch.tensor([[lr * scale * _factor(s, warmup, total, min_ratio, **mistake) for lr in base_lrs]
                         for s in range(steps)], dtype=torch.float64)


def _schedule(student, base_lrs: list[float], warmup: int, total: int, steps: int,
              min_lr_ratio: float | None = None, resume_at: int | None = None) -> tuple[dict[str, Any], str]:
    res = student.probe("run_warmup_cosine", base_lrs=base_lrs, warmup_steps=warmup, total_steps=total, steps=steps,
                        min_lr_ratio=min_lr_ratio, resume_at=resume_at)
    what = f"make_warmup_cosine(optimizer, {warmup}, {total}" + (
        "" if min_lr_ratio is None else f", {min_lr_ratio}") + ")"
    return res, what


def _check_schedule(res: dict[str, Any], base_lrs: list[float], warmup: int, total: int, min_ratio: float,
                    steps: int, what: str, hint: Msg | None = None) -> None:
    expected = _lrs(base_lrs, warmup, total, min_ratio, steps)
    mistakes = {W_FACTOR: _lrs(base_lrs, warmup, total, min_ratio, steps, scale=base_lrs[0])}
    if warmup > 0:
        mistakes[W_FIRST] = _lrs(base_lrs, warmup, total, min_ratio, steps, first_zero=True)
    if steps > total > warmup:
        mistakes[W_CLAMP] = _lrs(base_lrs, warmup, total, min_ratio, steps, unclamped=True)
    if min_ratio > 0:
        mistakes[W_MIN] = _lrs(base_lrs, warmup, total, min_ratio, steps, ignore_min=True)
    checks.assert_close(res["lrs"], expected, f"optimizer.param_groups[i]['lr'] ({what})", atol=1e-12,
                        rtol=1e-9, rel_l2=1e-9, mistakes=mistakes, hint=hint)


@graded(task="make_warmup_cosine", kind="shape", points=1, visibility="public")
def test_warmup_cosine_returns_lambda_lr(student):
    """make_warmup_cosine returns a LambdaLR that drives every parameter group."""
    res, what = _schedule(student, [0.1, 0.02], 3, 10, 12, 0.1)
    checks.assert_true(res["is_lambda_lr"], Msg(f"{what}：返回了 {res['type']}", f"{what}: returned {res['type']}"),
                       W_TYPE)
    checks.assert_shape(res["lrs"], (12, 2), f"optimizer.param_groups[i]['lr'] ({what})")


@graded(task="make_warmup_cosine", kind="accuracy", points=2, visibility="public")
def test_warmup_cosine_values(student):
    """Two groups (base lr 0.1 and 0.02), warm-up 5, total 20, min_lr_ratio 0.1: every learning rate of
    steps 0 to 29 follows the formula, and stays at the minimum after step 20."""
    base = [0.1, 0.02]
    res, what = _schedule(student, base, 5, 20, 30, 0.1)
    _check_schedule(res, base, 5, 20, 0.1, 30, what)


@graded(task="make_warmup_cosine", kind="accuracy", points=1, visibility="hidden")
def test_warmup_cosine_edge_cases(student, rng):
    """No warm-up, warm-up as long as the whole schedule, the default min_lr_ratio, other sizes."""
    base = [0.05, 0.3, 1.0]
    for warmup, total, ratio in ((0, 8, 0.2), (6, 6, 0.05), (4, 9, None)):
        res, what = _schedule(student, base, warmup, total, total + 4, ratio)
        _check_schedule(res, base, warmup, total, ratio or 0.0, total + 4, what)
    warmup = int(torch.randint(1, 10, (1,), generator=rng))
    total = warmup + int(torch.randint(1, 40, (1,), generator=rng))
    res, what = _schedule(student, base, warmup, total, total + 10, 0.01)
    _check_schedule(res, base, warmup, total, 0.01, total + 10, what)


@graded(task="make_warmup_cosine", kind="accuracy", points=1, visibility="hidden")
def test_warmup_cosine_resumes_from_state_dict(student):
    """A new optimizer and scheduler that load the old ones' state_dict() after 7 steps carry on."""
    base = [0.1, 0.02]
    res, what = _schedule(student, base, 4, 16, 20, 0.1, resume_at=7)
    _check_schedule(res, base, 4, 16, 0.1, 20, what + ".load_state_dict(...)", hint=W_RESUME)


# -- T5.6 clipped_step -------------------------------------------------------------------------------------------------
def _mlp_state(rng: torch.Generator, d: int, h: int, k: int) -> dict[str, torch.Tensor]:
    f64 = torch.float64
    return {"0.weight": torch.randn(h, d, generator=rng, dtype=f64) * 0.6,
            "0.bias": torch.randn(h, generator=rng, dtype=f64) * 0.2,
            "2.weight": torch.randn(k, h, generator=rng, dtype=f64) * 0.6,
            "2.bias": torch.randn(k, generator=rng, dtype=f64) * 0.2}


def _mlp_grads(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               frozen: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    p = {k: v.clone().requires_grad_(k not in frozen) for k, v in state.items()}
    out = F.linear(torch.tanh(F.linear(x, p["0.weight"], p["0.bias"])), p["2.weight"], p["2.bias"])
    names = [k for k in p if k not in frozen]
    return dict(zip(names, torch.autograd.grad(F.mse_loss(out, y), [p[k] for k in names])))


def _norm(grads: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads.values()))


def _clipped(grads: dict[str, torch.Tensor], max_norm: float) -> dict[str, torch.Tensor]:
    coef = min(1.0, max_norm / (_norm(grads) + 1e-6))
    return {k: g * coef for k, g in grads.items()}


def _clip_problem(rng: torch.Generator, n: int = 16, d: int = 5, h: int = 7, k: int = 3):
    state = _mlp_state(rng, d, h, k)
    x = torch.randn(n, d, generator=rng, dtype=torch.float64)
    y = torch.randn(n, k, generator=rng, dtype=torch.float64) * 2
    return state, x, y


# Allows the 1e-6 in clip_grad_norm_'s max_norm / (norm + 1e-6): a clip written by hand as max_norm / norm
# is right too (the norms here are 1.2 to 6.8 over 600 draws, so that differs by 1e-6 at most, relative to
# each gradient and each step); the mistakes differ by 5 % or more.
CLIP_TOL = {"atol": 1e-12, "rtol": 1e-5, "rel_l2": 1e-5}


def _check_clipped_step(res: dict[str, Any], state: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                        max_norm: float, lr: float, stale: float | None) -> None:
    """Gradients after the call are the globally clipped ones; each parameter moved by -lr times them."""
    clipped = _clipped(grads, max_norm)
    with_stale = _clipped({k: g + stale for k, g in grads.items()}, max_norm) if stale is not None else None
    for name, want in clipped.items():
        mistakes = {C_GLOBAL: grads[name].clamp(-max_norm, max_norm)}
        if with_stale is not None:
            mistakes[C_ZERO] = with_stale[name]
        if max_norm < _norm(grads):
            mistakes[Msg(C_GLOBAL.zh, C_GLOBAL.en + " ")] = grads[name]
        checks.assert_grad(res["grads"][name], want, f"model.{name}", **CLIP_TOL, mistakes=mistakes)
    for name, want in clipped.items():  # the step itself, so that parameters near 0 get the same relative tolerance
        checks.assert_tensor(res["params"][name], f"model.{name}")
        checks.assert_close(state[name] - res["params"][name], lr * want, f"old_params[{name!r}] - model.{name}",
                            **CLIP_TOL, mistakes={C_BEFORE: lr * grads[name]})


@graded(task="clipped_step", kind="shape", points=1, visibility="public")
def test_clipped_step_returns_float(student, rng):
    """clipped_step returns the total norm as a Python float."""
    state, x, y = _clip_problem(rng)
    res = student.probe("run_clipped_step", state=state, x=x, y=y, max_norm=0.1, lr=0.1)
    got = res["returned"]
    checks.assert_true(isinstance(got, float), Msg(f"clipped_step(model, loss, optimizer, 0.1)：返回了 {type(got).__name__}",
                                                   f"clipped_step(model, loss, optimizer, 0.1): returned "
                                                   f"{type(got).__name__}"), C_FLOAT)


@graded(task="clipped_step", kind="gradient", points=2, visibility="public")
def test_clipped_step_clips_global_norm_before_step(student, rng):
    """With stale gradients present and max_norm a twentieth of the true norm: after the call every
    gradient is the fresh one scaled by max_norm / norm, and every parameter moved by -lr times it."""
    state, x, y = _clip_problem(rng)
    grads = _mlp_grads(state, x, y)
    max_norm, lr = 0.05 * _norm(grads), 0.5
    res = student.probe("run_clipped_step", state=state, x=x, y=y, max_norm=max_norm, lr=lr, stale=0.5)
    _check_clipped_step(res, state, grads, max_norm, lr, 0.5)


@graded(task="clipped_step", kind="accuracy", points=1, visibility="public")
def test_clipped_step_returns_pre_clip_norm(student, rng):
    """The returned value is the global L2 norm of the fresh gradients before clipping."""
    state, x, y = _clip_problem(rng)
    grads = _mlp_grads(state, x, y)
    norm = _norm(grads)
    res = student.probe("run_clipped_step", state=state, x=x, y=y, max_norm=0.25 * norm, lr=0.1)
    got = res["returned"]
    checks.assert_true(isinstance(got, float), Msg(f"clipped_step(...)：返回了 {type(got).__name__}",
                                                   f"clipped_step(...): returned {type(got).__name__}"), C_FLOAT)
    _number(got, norm, "clipped_step(model, loss, optimizer, max_norm)", {C_PRE: 0.25 * norm}, tol=1e-6)


@graded(task="clipped_step", kind="gradient", points=1, visibility="hidden")
def test_clipped_step_frozen_layer_and_large_max_norm(student, rng):
    """A frozen first layer keeps grad None and its values; with a max_norm above the norm the step is
    the plain SGD step; with a small one the norm counts only the trainable parameters."""
    state, x, y = _clip_problem(rng, n=11, d=4, h=6, k=2)
    frozen = ("0.weight", "0.bias")
    grads = _mlp_grads(state, x, y, frozen)
    for max_norm in (1e6, 0.1 * _norm(grads)):
        res = student.probe("run_clipped_step", state=state, x=x, y=y, max_norm=max_norm, lr=0.3, frozen=list(frozen))
        for name in frozen:
            checks.assert_no_grad(res["grads"][name], f"model.{name}")
            checks.assert_close(res["params"][name], state[name], f"model.{name}", atol=0, rtol=0, rel_l2=0)
        _check_clipped_step(res, state, grads, max_norm, 0.3, 0.5)
        _number(res["returned"], _norm(grads), "clipped_step(model, loss, optimizer, max_norm)", tol=1e-6)


@graded(task="clipped_step", kind="accuracy", points=1, visibility="hidden")
def test_clipped_step_without_stale_gradients(student, rng):
    """Fresh parameters (no .grad yet), a larger model and max_norm near the norm: the clipped step is exact."""
    state, x, y = _clip_problem(rng, n=25, d=9, h=12, k=4)
    grads = _mlp_grads(state, x, y)
    max_norm = 0.8 * _norm(grads)
    res = student.probe("run_clipped_step", state=state, x=x, y=y, max_norm=max_norm, lr=0.2, stale=None)
    _check_clipped_step(res, state, grads, max_norm, 0.2, None)
    _number(res["returned"], _norm(grads), "clipped_step(model, loss, optimizer, max_norm)", {C_PRE: max_norm},
            tol=1e-6)
