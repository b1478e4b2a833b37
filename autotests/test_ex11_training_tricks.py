"""Autotests for ex11_training_tricks: the Noam schedule, gradient accumulation, distillation, FGSM and
adversarial training, Mixup and ensembles.

These tasks mostly change things (learning rates, parameters, modes, statistics, the random state),
so the probes in ``probes/ex11_training_tricks.py`` hand the submission trusted models, loaders,
optimizers and generators and report what happened to them. Every expected value is recomputed
here in float64 from the data the test sent, with PyTorch's own losses; numbers the submission
reports about itself are only compared. The distillation run's evaluation labels stay here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed
from grader.worker.wire import tensor_facts

pytestmark = pytest.mark.exercise("ex11_training_tricks")

# -- feedback ----------------------------------------------------------------------------------------
NOAM_ZERO = Msg("`LambdaLR` 构造时就以 `step=0` 调用倍数函数：第 0 步请按第 1 步计算（`max(step, 1)`），"
                "不能除以 0，也不能返回 0",
                "LambdaLR calls the factor with step=0 when it is constructed: compute step 0 as step 1 "
                "(max(step, 1)); do not divide by zero and do not return 0")
NOAM_PEAK = Msg("峰值应恰好在 `step == warmup_steps`：`s = max(step, 1)`，"
                "`d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)`（不要用 `step + 1`）",
                "The peak must be exactly at step == warmup_steps: s = max(step, 1), "
                "d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5) (not step + 1)")
NOAM_FORMULA = Msg("Noam 公式：`d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)`",
                   "The Noam formula is d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)")
NOAM_FACTOR = Msg("`LambdaLR` 的函数返回的是倍数：学习率 = 基础学习率 × `noam_lambda(step, ...)`，"
                  "不要再乘或除以某个学习率", "LambdaLR's function returns a factor: lr = base lr * "
                  "noam_lambda(step, ...); do not multiply or divide it by a learning rate")
NOAM_TYPE = Msg("应返回 `torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: noam_lambda(step, d_model, warmup_steps))`",
                "Return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: noam_lambda(step, d_model, warmup_steps))")
NOAM_RESUME = Msg("倍数只能依赖传入的 `step`：从 `state_dict()` 恢复的调度器必须从原来的步数继续",
                  "The factor must depend only on the step it is given: a scheduler restored from state_dict() "
                  "must carry on from its step")

ACC_SCALE = Msg("梯度是大批量的 k 倍：每个微批的 `loss` 要除以这一组的微批个数（`loss / k`）",
                "The gradient is k times that of the big batch: divide each micro-batch loss by its group's "
                "number of micro-batches (loss / k)")
ACC_ZERO_EACH = Msg("每个微批都清零了梯度，没有累积：只在 `optimizer.step()` 之后调用 `optimizer.zero_grad()`",
                    "Gradients were zeroed every micro-batch, so nothing accumulated: call optimizer.zero_grad() "
                    "only after optimizer.step()")
ACC_REST = Msg("最后不足 k 个微批的那一组没有更新：它也要 `optimizer.step()` 一次",
               "The last group with fewer than k micro-batches was not applied: it also needs an optimizer.step()")
ACC_REST_SCALE = Msg("最后一组只有 r 个微批时，损失应除以 r 而不是 k（这一组的平均）",
                     "When the last group holds only r micro-batches, divide its losses by r, not k (the group's mean)")
ACC_START = Msg("开始时先 `optimizer.zero_grad()`：调用前参数上留有旧梯度", "Call optimizer.zero_grad() first: the "
                "parameters held old gradients before the call")
ACC_TRAIN = Msg("开头要调用 `model.train()`：模型可能还处在 eval 模式", "Call model.train() at the start: the model "
                "may still be in eval mode")
ACC_RETURN = Msg("返回值是按样本数加权的平均损失，用没有除以 m 的 `loss.item()`：Σ(`loss.item()` × n_b) / N",
                 "Return the sample-weighted mean loss of the unscaled losses: sum(loss.item() * n_b) / N")

KD_BATCHMEAN = Msg("KL 散度要用 `reduction=\"batchmean\"`：\"mean\" 还会再除以类别数 C",
                   "Use reduction=\"batchmean\" for the KL divergence: \"mean\" also divides by the number of classes C")
KD_T2 = Msg("软目标部分要乘以 `T ** 2`（温度的平方）", "Multiply the soft-target part by T ** 2 (the temperature squared)")
KD_LOG = Msg("`F.kl_div` 的第一个参数是学生的 `log_softmax(student_logits / T)`（对数概率），第二个是教师的 "
             "`softmax(teacher_logits / T)`", "F.kl_div takes the student's log_softmax(student_logits / T) "
             "(log-probabilities) first and the teacher's softmax(teacher_logits / T) second")
KD_DIRECTION = Msg("KL 的方向是 KL(p_teacher ‖ p_student)：学生是对数概率输入，教师是目标分布",
                   "The KL goes KL(p_teacher || p_student): the student gives the log-probabilities, the teacher the "
                   "target distribution")
KD_ALPHA = Msg("`alpha` 是软目标（KL）部分的权重，`1 - alpha` 是硬标签交叉熵的权重",
               "alpha weighs the soft (KL) part and 1 - alpha the hard-label cross-entropy")
KD_HARD_T = Msg("硬标签的交叉熵用原始的 `student_logits`，不要除以温度",
                "The hard-label cross-entropy uses the raw student_logits, not divided by the temperature")
KD_TEACHER_GRAD = Msg("梯度传到了 `teacher_logits`：教师的输出是常数，请 `detach()`（或在 `torch.no_grad()` 中计算）",
                      "A gradient reached teacher_logits: the teacher's outputs are constants, detach() them (or compute "
                      "them under torch.no_grad())")
KD_TEACHER_EVAL = Msg("教师要在 eval 模式下、`torch.no_grad()` 中前向：先 `teacher.eval()`，它的 BatchNorm 统计量不能改变",
                      "Run the teacher in eval mode under torch.no_grad(): call teacher.eval() first, and its BatchNorm "
                      "statistics must not change")
KD_TEACHER_FROZEN = Msg("教师的参数不能得到梯度、不能改变：`optimizer` 只更新学生", "The teacher's parameters get no "
                        "gradient and do not change: the optimizer updates the student only")
KD_STUDENT_TRAIN = Msg("更新学生之前要 `student.train()`：学生可能还处在 eval 模式", "Call student.train() before "
                       "updating the student: it may still be in eval mode")
KD_DEFAULTS = Msg("默认参数为 `temperature=3.0`、`alpha=0.5`", "The defaults are temperature=3.0 and alpha=0.5")
KD_ORDER = Msg("学生的一步：`optimizer.zero_grad()` → `loss.backward()` → `optimizer.step()`，返回 `loss.item()`",
               "The student's step: optimizer.zero_grad() -> loss.backward() -> optimizer.step(); return loss.item()")

FGSM_ASCEND = Msg("扰动方向应使损失增大：`x + epsilon * grad.sign()`（不是减号）", "Perturb in the direction that "
                  "increases the loss: x + epsilon * grad.sign() (not minus)")
FGSM_SIGN = Msg("FGSM 用梯度的符号：`epsilon * grad.sign()`，不是梯度本身", "FGSM uses the sign of the gradient: "
                "epsilon * grad.sign(), not the gradient itself")
FGSM_CLAMP = Msg("结果要截断到 `clamp` 给出的范围（`x_adv.clamp(low, high)`）；`clamp=None` 时不截断",
                 "Clamp the result to the range clamp gives (x_adv.clamp(low, high)); do not clamp when clamp=None")
FGSM_INPUT = Msg("不要修改调用者的输入：在副本上求梯度，`x.detach().clone().requires_grad_(True)`",
                 "Do not change the caller's input: take the gradient on a copy, x.detach().clone().requires_grad_(True)")
FGSM_DETACH = Msg("返回的对抗样本要 `detach()`：它不能带着计算图（`requires_grad=False`）",
                  "Detach the adversarial batch you return: it must not carry a graph (requires_grad=False)")
FGSM_PARAM_GRADS = Msg("攻击不能改动参数的 `.grad`：用 `torch.autograd.grad(loss, x_adv)` 只对输入求导，"
                       "不要 `loss.backward()` 或 `zero_grad()`",
                       "The attack must leave the parameters' .grad alone: differentiate with respect to the input only "
                       "with torch.autograd.grad(loss, x_adv), not loss.backward() or zero_grad()")
FGSM_EVAL = Msg("攻击要在 eval 模式下进行（BatchNorm 用运行统计量、不改变它们），结束后恢复调用前的模式",
                "Attack in eval mode (BatchNorm uses and keeps its running statistics), then restore the mode the "
                "model had before")
FGSM_DEVICE = Msg("在 'meta' 设备上出错：新建的张量（`torch.zeros`/`rand`…）要放在输入的设备上（`device=x.device`）",
                  "It failed on the meta device: make new tensors (torch.zeros/rand...) on the input's device "
                  "(device=x.device)")
FGSM_VECTORISE = Msg("整批一次前向、一次反向，不要逐个样本循环", "One forward and one backward pass for the whole "
                     "batch: no loop over samples")
ADV_MIX = Msg("损失应为 `(1 - adv_weight) * CE(model(x), y) + adv_weight * CE(model(x_adv), y)`",
              "The loss is (1 - adv_weight) * CE(model(x), y) + adv_weight * CE(model(x_adv), y)")
ADV_TRAIN = Msg("攻击之后要 `model.train()` 再训练（`fgsm_attack` 在 eval 模式下进行）", "Call model.train() after "
                "the attack, before training (fgsm_attack runs in eval mode)")
ADV_ZERO = Msg("旧的梯度被加进来了：`backward()` 之前先 `optimizer.zero_grad()`", "Old gradients were added in: call "
               "optimizer.zero_grad() before backward()")

MIX_BLEND = Msg("混合应为 `lam * x + (1 - lam) * x[perm]`：x 与它的一个置换按 `lam` 混合",
                "The blend is lam * x + (1 - lam) * x[perm]: x mixed with a permutation of itself by lam")
MIX_PERM = Msg("标签与样本要用同一个置换：`y_a = y`，`y_b = y[perm]`", "Use one permutation for the samples and the "
               "labels: y_a = y, y_b = y[perm]")
MIX_REPRO = Msg("随机数要全部来自传入的 `generator`：同一个种子应给出相同结果（`np.random`、`random`、"
                "`torch.distributions.Beta(...).sample()` 都不用它）",
                "Draw every random number from the generator you are given: the same seed must give the same result "
                "(np.random, random and torch.distributions.Beta(...).sample() do not use it)")
MIX_GLOBAL = Msg("全局随机数状态被改变了：不要用全局随机数（`torch.rand` 不带 `generator=`、`torch.manual_seed`）",
                 "The global random state changed: do not use the global generator (torch.rand without generator=, "
                 "torch.manual_seed)")
MIX_BETA = Msg("`lam` 应服从 Beta(alpha, alpha)：两个参数都是 `alpha`（`g = Gamma(alpha)` 两次，`lam = g1 / (g1 + g2)`）",
               "lam must follow Beta(alpha, alpha), both parameters alpha (two Gamma(alpha) draws, lam = g1 / (g1 + g2))")
MIX_NO_MIX = Msg("`alpha <= 0` 时 `lam = 1.0`，混合结果就是 x 本身", "For alpha <= 0, lam = 1.0 and the blend is x itself")
MIX_FLOAT = Msg("整数图像（例如 `uint8`）要先转成 `float32`；`lam` 是 Python float",
                "Convert integer images (e.g. uint8) to float32 first; lam is a Python float")
MIX_LOSS = Msg("Mixup 损失为 `lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)`",
               "The Mixup loss is lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)")

ENS_SOFTMAX = Msg("\"prob\" 模式要先对每个成员的 logits 做 `softmax` 再平均，不是平均 logits",
                  "In \"prob\" mode softmax each member's logits, then average; do not average the logits")
ENS_DIM = Msg("`softmax` 要作用在类别维（`dim=-1`），不是成员维或批次维", "Softmax over the classes (dim=-1), not over "
              "the members or the batch")
ENS_MEAN_THEN_SOFTMAX = Msg("\"prob\" 是概率的平均：先 `softmax` 再平均，不是对平均 logits 做 `softmax`",
                            "\"prob\" is the mean of the probabilities: softmax then average, not the softmax of the "
                            "mean logits")
ENS_LIST = Msg("成员没有注册为子模块：请用 `self.models = nn.ModuleList(models)`，否则 `.eval()`、`.double()`、"
               "`parameters()` 都传不到成员", "The members are not registered: use self.models = nn.ModuleList(models), "
               "or .eval(), .double() and parameters() never reach them")
ENS_VOTE = Msg("\"vote\" 返回每个类别的票数（浮点数）：每个成员给自己 `argmax(dim=-1)` 的类别投一票",
               "\"vote\" returns the votes per class (floats): each member votes for its argmax(dim=-1) class")
ENS_DEVICE = Msg("在 'meta' 设备上出错：计票用的张量要建在输入的设备上（例如 `F.one_hot` 或 `torch.zeros(..., device=x.device)`）",
                 "It failed on the meta device: build the vote counts on the input's device (F.one_hot, or "
                 "torch.zeros(..., device=x.device))")
ENS_INVALID = Msg("`combine` 不是 \"prob\"、\"logit\"、\"vote\" 之一或没有成员时，应在 `__init__` 中抛出 `ValueError`",
                  "Raise ValueError in __init__ when combine is not \"prob\", \"logit\" or \"vote\", or there are no members")
ENS_GRAD = Msg("梯度要传到每个成员的参数：不要 `detach()`，也不要在 `torch.no_grad()` 中前向",
               "Gradients must reach every member's parameters: no detach() and no torch.no_grad() in forward")


# -- helpers -------------------------------------------------------------------------------------------

def _check_error(res: dict[str, Any], what: str, hint: Msg | None = None) -> None:
    if res.get("error"):
        checks.fail(Msg(f"{what}：你的代码抛出了异常：{res['error']}", f"{what}: your code raised an exception: "
                        f"{res['error']}"), hint)


def _near(a: Any, b: float, tol: float = 1e-9) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and \
        abs(a - b) <= tol * max(1.0, abs(b))


def _number(got: Any, expected: float, what: str, mistakes: dict[Msg, float] | None = None, tol: float = 1e-9,
            hint: Msg | None = None) -> None:
    """``got`` is a Python number equal to ``expected``; a mistake it matches becomes the hint."""
    if _near(got, expected, tol):
        return
    hint = next((Msg(f"看起来像常见错误：{m.zh}", f"This looks like a common mistake: {m.en}")
                 for m, wrong in (mistakes or {}).items() if _near(got, wrong, tol)), hint)
    checks.assert_number_close(got, expected, what, atol=tol * max(1.0, abs(expected)), hint=hint)


def _blobs(rng: torch.Generator, n: int, dim: int, classes: int, spread: float,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit-variance Gaussian clusters around orthogonal centres at distance ``spread`` from 0; and the centres."""
    basis, _ = torch.linalg.qr(torch.randn(dim, classes, generator=rng, dtype=torch.float64))
    centres = basis.T * spread
    labels = torch.randperm(n, generator=rng) % classes
    x = centres[labels] + torch.randn(n, dim, generator=rng, dtype=torch.float64)
    return x.to(dtype), labels, centres.to(dtype)


def _linear_state(rng: torch.Generator, d: int, k: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    return {"fc.weight": torch.randn(k, d, generator=rng, dtype=torch.float64) * scale,
            "fc.bias": torch.randn(k, generator=rng, dtype=torch.float64) * 0.1}


def _mlp_state(rng: torch.Generator, d: int, h: int, k: int, bn: bool = False) -> dict[str, torch.Tensor]:
    state = {}
    if bn:
        state.update({"bn.weight": 1.0 + 0.2 * torch.randn(d, generator=rng, dtype=torch.float64),
                      "bn.bias": 0.2 * torch.randn(d, generator=rng, dtype=torch.float64),
                      "bn.running_mean": 0.3 * torch.randn(d, generator=rng, dtype=torch.float64),
                      "bn.running_var": 0.5 + torch.rand(d, generator=rng, dtype=torch.float64),
                      "bn.num_batches_tracked": torch.tensor(5)})
    state.update({"fc1.weight": torch.randn(h, d, generator=rng, dtype=torch.float64) / math.sqrt(d),
                  "fc1.bias": 0.1 * torch.randn(h, generator=rng, dtype=torch.float64),
                  "fc2.weight": torch.randn(k, h, generator=rng, dtype=torch.float64) / math.sqrt(h),
                  "fc2.bias": 0.1 * torch.randn(k, generator=rng, dtype=torch.float64)})
    return state


def _net(params: dict[str, torch.Tensor], x: torch.Tensor, bn_train: bool = False) -> torch.Tensor:
    """The probes' ``[BatchNorm1d] → Linear [→ Tanh → Linear]`` as a function of its parameters."""
    if "bn.weight" in params:
        x = F.batch_norm(x, params["bn.running_mean"].clone(), params["bn.running_var"].clone(), params["bn.weight"],
                         params["bn.bias"], training=bn_train)
    if "fc.weight" in params:
        return F.linear(x, params["fc.weight"], params["fc.bias"])
    return F.linear(torch.tanh(F.linear(x, params["fc1.weight"], params["fc1.bias"])), params["fc2.weight"],
                    params["fc2.bias"])


def _trainable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.clone().requires_grad_(True) for n, t in state.items()
            if t.is_floating_point() and "running" not in n}


def _check_params(got: dict[str, Any], want: dict[str, torch.Tensor], what: str,
                  mistakes: dict[Msg, dict[str, torch.Tensor]] | None = None, hint: Msg | None = None) -> None:
    """Every parameter equals the recomputed one (float64, 1e-10); a mistake it matches becomes the hint."""
    for name, value in want.items():
        checks.assert_close(got.get(name), value.detach(), f"{what}[{name!r}]", atol=1e-10, rtol=1e-10, rel_l2=1e-10,
                            hint=hint, mistakes={m: p[name].detach() for m, p in (mistakes or {}).items()})


# -- T11.1 the Noam schedule --------------------------------------------------------------------------------
def _noam(step: int, d_model: int, warmup: int, variant: str | None = None) -> float:
    if variant == "zero" and step == 0:
        return 0.0
    s = step + 1 if variant == "shift" else max(step, 1)
    return d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)


def _noam_values(student, steps: range, d_model: int, warmup: int) -> list[float]:
    values = []
    for step in steps:
        what = f"noam_lambda({step}, {d_model}, {warmup})"
        got = checks.call_or_fail(lambda: student.noam_lambda(step, d_model, warmup), what, NOAM_ZERO if step == 0 else None)
        _number(got, _noam(step, d_model, warmup), what,
                {NOAM_PEAK: _noam(step, d_model, warmup, "shift"), NOAM_ZERO: _noam(step, d_model, warmup, "zero")},
                hint=NOAM_FORMULA)
        values.append(got)
    return values


@graded(task="noam_lambda", kind="shape", points=1, visibility="public")
def test_noam_step_zero(student):
    """noam_lambda(0, ...) is a finite float equal to the value at step 1, and make_noam_scheduler builds
    (LambdaLR calls the factor with step 0 at construction)."""
    what = "noam_lambda(0, 16, 4)"
    got = checks.call_or_fail(lambda: student.noam_lambda(0, 16, 4), what, NOAM_ZERO)
    _number(got, _noam(1, 16, 4), what, {NOAM_ZERO: 0.0}, hint=NOAM_ZERO)
    res = student.probe("run_noam_scheduler", base_lrs=[1.0], d_model=16, warmup_steps=4, steps=1)
    _check_error(res, "make_noam_scheduler(optimizer, 16, 4)", NOAM_ZERO)
    checks.assert_true(res["is_lambda_lr"], Msg(f"make_noam_scheduler 返回了 {res['type']}",
                                                f"make_noam_scheduler returned a {res['type']}"), NOAM_TYPE)


@graded(task="noam_lambda", kind="accuracy", points=2, visibility="public")
def test_noam_values_and_peak(student):
    """Steps 0 to 4 * warmup follow the formula (step 0 as step 1); the largest value is at step == warmup."""
    d_model, warmup = 32, 5
    values = _noam_values(student, range(0, 4 * warmup + 1), d_model, warmup)
    peak = max(range(len(values)), key=lambda i: (values[i], -i))
    checks.assert_equal(peak, warmup, "argmax(noam_lambda(step, 32, 5) for step in range(21))", hint=NOAM_PEAK)


@graded(task="noam_lambda", kind="accuracy", points=2, visibility="public")
def test_noam_scheduler_learning_rates(student):
    """Two parameter groups with base learning rates 1.0 and 0.5: before each of 12 steps their learning
    rates are base lr * noam_lambda(step, 8, 3)."""
    res = student.probe("run_noam_scheduler", base_lrs=[1.0, 0.5], d_model=8, warmup_steps=3, steps=12)
    what = "make_noam_scheduler(optimizer, 8, 3)"
    _check_error(res, what, NOAM_ZERO)
    checks.assert_true(res["is_lambda_lr"], Msg(f"{what} 返回了 {res['type']}", f"{what} returned a {res['type']}"),
                       NOAM_TYPE)
    factors = torch.tensor([_noam(s, 8, 3) for s in range(12)], dtype=torch.float64)
    expected = torch.stack([factors, 0.5 * factors], dim=1)
    shifted = torch.tensor([_noam(s, 8, 3, "shift") for s in range(12)], dtype=torch.float64)
    checks.assert_close(res["lrs"], expected, "optimizer.param_groups[i]['lr']",
                        atol=1e-12, rtol=1e-9, rel_l2=1e-9, hint=NOAM_FACTOR,
                        mistakes={NOAM_PEAK: torch.stack([shifted, 0.5 * shifted], dim=1),
                                  NOAM_FACTOR: torch.stack([factors, factors], dim=1)})


@graded(task="noam_lambda", kind="accuracy", points=1, visibility="hidden")
def test_noam_warmup_one_paper_sizes_and_resume(student):
    """warmup_steps = 1 (the peak at step 1), the paper's d_model = 512 with 4000 warm-up steps, and a
    scheduler restored from state_dict() after 5 steps carries on from step 5."""
    _noam_values(student, range(0, 4), 4, 1)
    for step in (0, 1, 3999, 4000, 4001, 16000):
        what = f"noam_lambda({step}, 512, 4000)"
        got = checks.call_or_fail(lambda: student.noam_lambda(step, 512, 4000), what, NOAM_ZERO if step == 0 else None)
        _number(got, _noam(step, 512, 4000), what, {NOAM_PEAK: _noam(step, 512, 4000, "shift")}, hint=NOAM_FORMULA)
    res = student.probe("run_noam_scheduler", base_lrs=[2.0], d_model=8, warmup_steps=1, steps=9, resume_at=5)
    _check_error(res, "make_noam_scheduler(optimizer, 8, 1)", NOAM_RESUME)
    expected = torch.tensor([[2.0 * _noam(s, 8, 1)] for s in range(9)], dtype=torch.float64)
    checks.assert_close(res["lrs"], expected, "optimizer.param_groups[0]['lr']", atol=1e-12,
                        rtol=1e-9, rel_l2=1e-9, hint=NOAM_RESUME)


# -- T11.2 train_epoch_accumulate --------------------------------------------------------------------------------
def _replay_accumulate(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int, k: int,
                       lr: float, momentum: float = 0.0, epochs: int = 1, scale: float = 1.0,
                       variant: str | None = None) -> tuple[list[dict[str, torch.Tensor]], list[float]]:
    """Accumulation over unshuffled micro-batches in float64; ``variant`` replays a mistake:
    ``no_scale``, ``zero_each``, ``drop_rest``, ``rest_by_k``, ``stale`` (no zero_grad at the start)."""
    params = _trainable(state)
    optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    if variant == "stale":
        for p in params.values():
            p.grad = torch.full_like(p, 0.5)
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
    snapshots, losses = [], []
    for _ in range(epochs):
        if variant != "stale":
            optimizer.zero_grad()
        total = 0.0
        for i, (xb, yb) in enumerate(batches):
            start = i - i % k
            m = min(k, len(batches) - start)
            if variant == "zero_each":
                optimizer.zero_grad()
            loss = F.cross_entropy(_net(params, xb * scale), yb)
            divisor = {"no_scale": 1, "rest_by_k": k}.get(variant or "", m)
            (loss / divisor).backward()
            total += loss.item() * len(yb)
            if i + 1 == start + m:
                if not (variant == "drop_rest" and m < k):
                    optimizer.step()
                optimizer.zero_grad()
        snapshots.append({n: p.detach().clone() for n, p in params.items()})
        losses.append(total / len(y))
    return snapshots, losses


ACC_MISTAKES = {ACC_SCALE: "no_scale", ACC_ZERO_EACH: "zero_each", ACC_REST: "drop_rest", ACC_REST_SCALE: "rest_by_k"}


def _accumulate(student, state, x, y, what: str, **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_accumulate", state=state, x=x, y=y, **kwargs)
    _check_error(res, what)
    return res


def _problem(rng: torch.Generator, n: int, d: int, k: int, mlp: bool = False):
    state = _mlp_state(rng, d, 5, k) if mlp else _linear_state(rng, d, k)
    return state, torch.randn(n, d, generator=rng, dtype=torch.float64), torch.randint(0, k, (n,), generator=rng)


@graded(task="train_epoch_accumulate", kind="shape", points=1, visibility="public")
def test_accumulate_returns_weighted_mean_loss(student, rng):
    """It returns a Python float: the sample-weighted mean of the unscaled micro-batch losses."""
    state, x, y = _problem(rng, 10, 3, 2)
    what = "train_epoch_accumulate(model, loader, criterion, optimizer, 2)"
    res = _accumulate(student, state, x, y, what, batch_size=3, accumulation_steps=2, lr=0.1)
    _, losses = _replay_accumulate(state, x, y, 3, 2, 0.1)
    got = res["returned"][0]
    _number(got, losses[0], what, hint=ACC_RETURN)


@graded(task="train_epoch_accumulate", kind="gradient", points=2, visibility="public")
def test_accumulate_equals_one_big_batch(student, rng):
    """Four micro-batches of 8 with accumulation_steps = 4 give exactly one SGD step on the batch of 32
    (float64 MLP, 1e-10)."""
    state, x, y = _problem(rng, 32, 4, 3, mlp=True)
    what = "train_epoch_accumulate(model, loader(batch_size=8), criterion, optimizer, 4)"
    res = _accumulate(student, state, x, y, what, batch_size=8, accumulation_steps=4, lr=0.5)
    params = _trainable(state)
    F.cross_entropy(_net(params, x), y).backward()
    expected = {n: p.detach() - 0.5 * p.grad for n, p in params.items()}
    mistakes = {m: _replay_accumulate(state, x, y, 8, 4, 0.5, variant=v)[0][0] for m, v in ACC_MISTAKES.items()}
    _check_params(res["params"][0], expected, "model.state_dict()", mistakes)
    checks.assert_equal(res["steps"], 1, "len(optimizer_steps)", hint=ACC_ZERO_EACH if res["steps"] > 1 else None)


@graded(task="train_epoch_accumulate", kind="accuracy", points=2, visibility="public")
def test_accumulate_last_short_group(student, rng):
    """Ten micro-batches of 3 with accumulation_steps = 4 and SGD with momentum: groups of 4, 4 and 2,
    three updates, the last group's losses divided by 2; weights and returned loss as replayed."""
    state, x, y = _problem(rng, 30, 4, 3)
    what = "train_epoch_accumulate(model, loader(batch_size=3), criterion, optimizer, 4)"
    res = _accumulate(student, state, x, y, what, batch_size=3, accumulation_steps=4, lr=0.2, momentum=0.9)
    expected, losses = _replay_accumulate(state, x, y, 3, 4, 0.2, 0.9)
    mistakes = {m: _replay_accumulate(state, x, y, 3, 4, 0.2, 0.9, variant=v)[0][0] for m, v in ACC_MISTAKES.items()}
    _check_params(res["params"][0], expected[0], "model.state_dict()", mistakes, hint=ACC_REST if res["steps"] == 2 else None)
    _number(res["returned"][0], losses[0], what, hint=ACC_RETURN)


@graded(task="train_epoch_accumulate", kind="gradient", points=1, visibility="hidden")
def test_accumulate_one_step_and_uneven_batches(student, rng):
    """accumulation_steps = 1 is plain training (two epochs, momentum); 29 samples in micro-batches of 4
    (the last holds 1) with accumulation_steps = 3 over two epochs."""
    state, x, y = _problem(rng, 12, 3, 2)
    res = _accumulate(student, state, x, y, "train_epoch_accumulate(model, loader, criterion, optimizer, 1)",
                      batch_size=4, accumulation_steps=1, lr=0.1, momentum=0.9, epochs=2)
    expected, _ = _replay_accumulate(state, x, y, 4, 1, 0.1, 0.9, epochs=2)
    for epoch in range(2):
        _check_params(res["params"][epoch], expected[epoch], f"model.state_dict()#{epoch + 1}")
    state, x, y = _problem(rng, 29, 3, 4, mlp=True)
    what = "train_epoch_accumulate(model, loader(batch_size=4), criterion, optimizer, 3)"
    res = _accumulate(student, state, x, y, what, batch_size=4, accumulation_steps=3, lr=0.3, momentum=0.5, epochs=2)
    expected, losses = _replay_accumulate(state, x, y, 4, 3, 0.3, 0.5, epochs=2)
    mistakes = {m: _replay_accumulate(state, x, y, 4, 3, 0.3, 0.5, epochs=2, variant=v)[0][1]
                for m, v in ACC_MISTAKES.items()}
    _check_params(res["params"][1], expected[1], "model.state_dict()#2", mistakes)
    _number(res["returned"][1], losses[1], f"{what}#2", hint=ACC_RETURN)


@graded(task="train_epoch_accumulate", kind="accuracy", points=1, visibility="hidden")
def test_accumulate_train_mode_and_stale_gradients(student, rng):
    """The model starts in eval mode (it scales its input by 0.5 only in train mode) with old gradients on
    its parameters: the update is the train-mode one from fresh gradients."""
    state, x, y = _problem(rng, 16, 3, 3)
    what = "train_epoch_accumulate(model.eval(), loader, criterion, optimizer, 2)"
    res = _accumulate(student, state, x, y, what, batch_size=4, accumulation_steps=2, lr=0.2, scale=0.5,
                      start_eval=True, stale=0.5)
    expected, _ = _replay_accumulate(state, x, y, 4, 2, 0.2, scale=0.5)
    mistakes = {ACC_START: _replay_accumulate(state, x, y, 4, 2, 0.2, scale=0.5, variant="stale")[0][0]}
    stayed_eval = bool(res["seen"]) and not any(train for train, _ in res["seen"])
    _check_params(res["params"][0], expected[0], "model.state_dict()", mistakes, hint=ACC_TRAIN if stayed_eval else None)


# -- T11.3 distillation ----------------------------------------------------------------------------------------
def _kd(s: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float,
        variant: str | None = None) -> torch.Tensor:
    """Hinton's loss computed with PyTorch's own functions; ``variant`` gives a common mistake."""
    T = temperature
    log_p = F.log_softmax(s / T, dim=-1)
    p_t = F.softmax(t / T, dim=-1)
    if variant == "softmax_student":
        soft = F.kl_div(F.softmax(s / T, dim=-1), p_t, reduction="batchmean")
    elif variant == "reversed":
        soft = F.kl_div(F.log_softmax(t / T, dim=-1), F.softmax(s / T, dim=-1), reduction="batchmean")
    else:
        soft = F.kl_div(log_p, p_t, reduction="batchmean")
        if variant == "mean":  # "mean" divides by every element, so by the number of classes too
            soft = soft / s.shape[-1]
    if variant != "no_t2":
        soft = soft * T ** 2
    hard = F.cross_entropy(s / T if variant == "hard_over_t" else s, labels)
    if variant == "alpha_swapped":
        return (1 - alpha) * soft + alpha * hard
    return alpha * soft + (1 - alpha) * hard


KD_MISTAKES = {KD_BATCHMEAN: "mean", KD_T2: "no_t2", KD_LOG: "softmax_student", KD_DIRECTION: "reversed",
               KD_ALPHA: "alpha_swapped", KD_HARD_T: "hard_over_t"}


def _logits(rng: torch.Generator, b: int, c: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (2 * torch.randn(b, c, generator=rng, dtype=dtype), 2 * torch.randn(b, c, generator=rng, dtype=dtype),
            torch.randint(0, c, (b,), generator=rng))


def _check_kd(student, s, t, labels, temperature: float, alpha: float, defaults: bool = False) -> None:
    """The loss against the formula; with ``defaults`` the call leaves out temperature and alpha (3.0, 0.5)."""
    what = f"distillation_loss(s[{s.shape[0]},{s.shape[1]}], t, labels, {temperature}, {alpha})"
    if defaults:
        what = f"distillation_loss(s[{s.shape[0]},{s.shape[1]}], t, labels)"
        got = student.distillation_loss(s, t, labels)
    else:
        got = student.distillation_loss(s, t, labels, temperature, alpha)
    checks.assert_shape(got, (), what)
    mistakes = {m: _kd(s, t, labels, temperature, alpha, v) for m, v in KD_MISTAKES.items()}
    checks.assert_close(got, _kd(s, t, labels, temperature, alpha), what, mistakes=mistakes)


@graded(task="distillation_loss", kind="shape", points=1, visibility="public")
def test_distillation_loss_is_a_scalar(student, rng):
    """A 0-dim tensor in the dtype of the student's logits (float32 and float64)."""
    for dtype in (torch.float32, torch.float64):
        s, t, labels = _logits(rng, 4, 3, dtype)
        what = f"distillation_loss(s.to({dtype}), t, labels)"
        got = student.distillation_loss(s, t, labels)
        checks.assert_shape(got, (), what)
        checks.assert_dtype(got, dtype, what)


@graded(task="distillation_loss", kind="accuracy", points=2, visibility="public")
def test_distillation_loss_values(student, rng):
    """alpha · T² · KL(p_teacher ‖ p_student) (batchmean) + (1 − alpha) · CE for T = 3, 1 and 4 and several
    alphas, with B != C, and with the defaults T = 3, alpha = 0.5."""
    for b, c, temperature, alpha in ((6, 4, 3.0, 0.5), (5, 7, 1.0, 0.3), (3, 5, 4.0, 0.8)):
        _check_kd(student, *_logits(rng, b, c), temperature, alpha)
    _check_kd(student, *_logits(rng, 4, 6), 3.0, 0.5, defaults=True)


@graded(task="distillation_loss", kind="gradient", points=2, visibility="public")
def test_distillation_loss_gradients(student, rng):
    """Gradients reach the student's logits and agree with finite differences (float64); none reaches the
    teacher's logits."""
    s, t, labels = _logits(rng, 4, 3)
    checks.assert_gradcheck(student, "distillation_loss", [s, t, labels, 2.0, 0.6], wrt=(0,), generator=rng)
    res = student.vjp("distillation_loss", [s, t, labels, 2.0, 0.6], grad_output=torch.tensor(1.0, dtype=torch.float64),
                      wrt=(0, 1))
    checks.assert_attached(res["output"], "distillation_loss(s, t, labels, 2.0, 0.6)")
    checks.assert_no_grad(res["grads"][1], "teacher_logits", hint=KD_TEACHER_GRAD)
    expected = torch.func.grad(lambda z: _kd(z, t, labels, 2.0, 0.6))(s)
    checks.assert_grad(res["grads"][0], expected, "student_logits")


@graded(task="distillation_loss", kind="accuracy", points=1, visibility="hidden")
def test_distillation_limits_batch_one_and_meta(student, rng):
    """alpha = 0 is the cross-entropy, alpha = 1 the soft part alone (0 when student and teacher agree),
    batch 1 works, and the loss runs on the meta device."""
    s, t, labels = _logits(rng, 5, 4)
    _check_kd(student, s, t, labels, 2.0, 0.0)
    _check_kd(student, s, t, labels, 2.0, 1.0)
    same = student.distillation_loss(s, s.clone(), labels, 3.0, 1.0)
    checks.assert_close(same, torch.tensor(0.0, dtype=torch.float64), "distillation_loss(s, s, labels, 3.0, 1.0)",
                        atol=1e-10, rel_l2=math.inf, hint=KD_LOG)
    _check_kd(student, *_logits(rng, 1, 3), 3.0, 0.5)
    meta = [torch.empty(4, 3, device="meta"), torch.empty(4, 3, device="meta"),
            torch.zeros(4, dtype=torch.long, device="meta")]
    what = "distillation_loss(s.to('meta'), t.to('meta'), labels.to('meta'))"
    got = checks.call_or_fail(lambda: student.distillation_loss(*meta), what, FGSM_DEVICE)
    checks.assert_shape(got, (), what)
    checks.assert_device(got, "meta", what, hint=FGSM_DEVICE)


def _distill_expected(sstate, tstate, x, y, lr, temperature, alpha, student_scale=0.5, teacher_train=False,
                      zero_grad=True):
    """The student's parameters after one SGD step (float64); ``teacher_train`` uses batch statistics."""
    with torch.no_grad():
        teacher_logits = _net(tstate, x, bn_train=teacher_train)
    params = _trainable(sstate)
    loss = _kd(_net(params, x * student_scale), teacher_logits, y, temperature, alpha)
    loss.backward()
    stale = 0.0 if zero_grad else 0.5
    return {n: p.detach() - lr * (p.grad + stale) for n, p in params.items()}, loss.item()


@graded(task="distillation_loss", kind="gradient", points=2, visibility="public")
def test_distill_step_updates_only_the_student(student, rng):
    """One distill_step with the teacher in train mode (with BatchNorm) and the student in eval mode (its
    input scaled by 0.5 in train mode) holding old gradients: the student's update is the train-mode one against eval-mode
    teacher logits; the teacher's parameters, gradients (None), BatchNorm statistics stay, and it ends
    in eval mode."""
    d, k = 5, 3
    sstate = _linear_state(rng, d, k)
    tstate = _mlp_state(rng, d, 6, k, bn=True)
    x = torch.randn(12, d, generator=rng, dtype=torch.float64)
    y = torch.randint(0, k, (12,), generator=rng)
    what = "distill_step(student.eval(), teacher.train(), x, y, optimizer, 2.0, 0.7)"
    res = student.probe("run_distill_step", student_state=sstate, teacher_state=tstate, x=x, y=y, lr=0.5,
                        temperature=2.0, alpha=0.7)
    _check_error(res, what)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        checks.assert_close(res["teacher_bn"][name], tstate[f"bn.{name}"], f"teacher.bn.{name}", atol=0, rtol=0,
                            rel_l2=0, hint=KD_TEACHER_EVAL)
    checks.assert_true(not res["teacher_training"], Msg(f"{what} 之后教师处在 train 模式",
                                                        f"After {what} the teacher is in train mode"), KD_TEACHER_EVAL)
    for name, grad in res["teacher_grads"].items():
        checks.assert_true(grad is None, Msg(f"{what} 之后 teacher.{name}.grad 不是 None",
                                             f"After {what} teacher.{name}.grad is not None"), KD_TEACHER_FROZEN)
        checks.assert_close(res["teacher"][name], tstate[name], f"teacher.{name}", atol=0, rtol=0, rel_l2=0,
                            hint=KD_TEACHER_FROZEN)
    expected, loss = _distill_expected(sstate, tstate, x, y, 0.5, 2.0, 0.7)
    stayed_eval = bool(res["seen"]) and not any(train for train, _ in res["seen"])
    mistakes = {KD_TEACHER_EVAL: _distill_expected(sstate, tstate, x, y, 0.5, 2.0, 0.7, teacher_train=True)[0],
                KD_ORDER: _distill_expected(sstate, tstate, x, y, 0.5, 2.0, 0.7, zero_grad=False)[0]}
    _check_params(res["student"], expected, "student.state_dict()", mistakes, hint=KD_STUDENT_TRAIN if stayed_eval else None)
    _number(res["returned"], loss, what, hint=KD_ORDER)
    what = "distill_step(student.eval(), teacher.train(), x, y, optimizer)"
    res = student.probe("run_distill_step", student_state=sstate, teacher_state=tstate, x=x, y=y, lr=0.5,
                        temperature=None, alpha=None)
    _check_error(res, what)
    _check_params(res["student"], _distill_expected(sstate, tstate, x, y, 0.5, 3.0, 0.5)[0], "student.state_dict()",
                  hint=KD_DEFAULTS)


@graded(task="distillation_loss", kind="accuracy", points=2, visibility="hidden")
def test_distilled_student_learns_from_the_teacher(student, spec, rng):
    """With alpha = 1 and random labels, a small student trained only by distill_step matches a good
    teacher on held-out blobs (the evaluation labels stay here)."""
    p, f = spec.param("distill_blobs"), spec.param("distill_fit")
    n = p["n_train"]
    x, y, centres = _blobs(rng, n + p["n_eval"], p["dim"], p["classes"], p["spread"])
    teacher = {"fc.weight": centres * p["teacher_scale"], "fc.bias": -0.5 * p["teacher_scale"] * (centres ** 2).sum(1)}
    random_labels = torch.randint(0, p["classes"], (n,), generator=rng)
    res = student.probe("distill_fit", teacher_state=teacher, x_train=x[:n], y_given=random_labels, x_eval=x[n:],
                        hidden=f["hidden"], epochs=f["epochs"], lr=f["lr"], batch_size=f["batch_size"],
                        seed=seed_from(rng), temperature=f["temperature"], alpha=f["alpha"])
    logits = res["logits"]
    what = "distill_step(student, teacher, x, random_labels, optimizer, 3.0, 1.0)"
    checks.assert_shape(logits, (p["n_eval"], p["classes"]), what)
    checks.assert_finite(logits, what)
    acc = float((logits.argmax(1) == y[n:]).double().mean())
    threshold = spec.param("distill_accuracy")
    checks.assert_true(acc >= threshold, Msg(
        f"{what}：蒸馏后学生在留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}（标签是随机的，学生只能从教师学习）",
        f"{what}: after distillation the student's held-out accuracy is {acc:.3f}, at least {threshold:.2f} is "
        "required (the labels are random: the student can learn only from the teacher)"), KD_ALPHA)


# -- T11.4 FGSM and adversarial training ----------------------------------------------------------------------
def _fgsm(state, x, y, eps, clamp=(0.0, 1.0), variant: str | None = None) -> torch.Tensor:
    x_adv = x.clone().requires_grad_(True)
    loss = F.cross_entropy(_net(state, x_adv, bn_train=variant == "train_mode"), y)
    grad = torch.autograd.grad(loss, x_adv)[0]
    step = grad * eps if variant == "raw_grad" else eps * grad.sign()
    out = x - step if variant == "descend" else x + step
    if clamp is not None and variant != "no_clamp":
        out = out.clamp(*clamp)
    return out.detach()


FGSM_MISTAKES = {FGSM_ASCEND: "descend", FGSM_CLAMP: "no_clamp", FGSM_SIGN: "raw_grad", FGSM_EVAL: "train_mode"}


def _fgsm_problem(rng, n=10, d=6, k=3, bn=False):
    state = _mlp_state(rng, d, 8, k, bn=bn)
    return state, torch.rand(n, d, generator=rng, dtype=torch.float64), torch.randint(0, k, (n,), generator=rng)


def _run_fgsm(student, state, x, y, eps, what, **kwargs):
    res = student.probe("run_fgsm", state=state, x=x, y=y, epsilon=eps, **kwargs)
    _check_error(res, what)
    return res


def _check_fgsm(res, state, x, y, eps, what, clamp=(0.0, 1.0)) -> None:
    got = checks.assert_tensor(res["x_adv"], what)
    mistakes = {m: _fgsm(state, x, y, eps, clamp, v) for m, v in FGSM_MISTAKES.items()}
    checks.assert_close(got, _fgsm(state, x, y, eps, clamp), what, atol=1e-12, rtol=1e-12, rel_l2=1e-12,
                        mistakes=mistakes)


@graded(task="fgsm_attack", kind="shape", points=1, visibility="public")
def test_fgsm_shape_detached_and_input_untouched(student, rng):
    """The adversarial batch has x's shape and dtype and is detached; the caller's x keeps its values and
    does not require grad."""
    state, x, y = _fgsm_problem(rng)
    what = "fgsm_attack(model, x, y, 0.1)"
    res = _run_fgsm(student, state, x, y, 0.1, what)
    got = checks.assert_tensor(res["x_adv"], what)
    checks.assert_shape(got, x.shape, what)
    checks.assert_dtype(got, torch.float64, what)
    checks.assert_true(not tensor_facts(got).requires_grad, Msg(f"{what} 返回的张量 requires_grad=True",
                                                                f"{what} returned a tensor with requires_grad=True"),
                       FGSM_DETACH)
    checks.assert_true(not res["x_requires_grad"], Msg(f"{what} 之后调用者的 x.requires_grad 为 True",
                                                       f"After {what} the caller's x.requires_grad is True"), FGSM_INPUT)
    checks.assert_close(res["x_after"], x, "x", atol=0, rtol=0, rel_l2=0, hint=FGSM_INPUT)


@graded(task="fgsm_attack", kind="accuracy", points=2, visibility="public")
def test_fgsm_values(student, rng):
    """An MLP in eval mode, inputs in [0, 1]: the result is clamp(x + eps · sign(∇x CE), 0, 1), so it
    stays within eps of x and within [0, 1]."""
    state, x, y = _fgsm_problem(rng, n=16)
    what = "fgsm_attack(model, x, y, 0.2)"
    _check_fgsm(_run_fgsm(student, state, x, y, 0.2, what), state, x, y, 0.2, what)


@graded(task="fgsm_attack", kind="gradient", points=2, visibility="public")
def test_fgsm_leaves_parameters_and_mode(student, rng):
    """With BatchNorm, the model in train mode and old gradients on its parameters: the attack uses
    eval-mode statistics and changes none of them, the gradients stay as they were, and the model is back
    in train mode afterwards."""
    state, x, y = _fgsm_problem(rng, n=12, bn=True)
    what = "fgsm_attack(model.train(), x, y, 0.1)"
    res = _run_fgsm(student, state, x, y, 0.1, what, train_mode=True, stale=0.25)
    for name, grad in res["grads"].items():
        checks.assert_true(grad is not None and bool((grad == 0.25).all()), Msg(
            f"{what} 改变了 model.{name}.grad", f"{what} changed model.{name}.grad"), FGSM_PARAM_GRADS)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        checks.assert_close(res["bn_after"][name], res["bn_before"][name], f"model.bn.{name}", atol=0, rtol=0,
                            rel_l2=0, hint=FGSM_EVAL)
    checks.assert_true(res["training_after"], Msg(f"{what} 之后模型处在 eval 模式",
                                                  f"After {what} the model is in eval mode"), FGSM_EVAL)
    _check_fgsm(res, state, x, y, 0.1, what)


@graded(task="fgsm_attack", kind="shape", points=1, visibility="hidden")
def test_fgsm_no_clamp_zero_epsilon_and_meta(student, rng):
    """clamp=None on inputs outside [0, 1] is not clamped; epsilon = 0 returns x; the attack runs on the
    meta device."""
    state, _, y = _fgsm_problem(rng, n=8)
    x = 3 * torch.randn(8, 6, generator=rng, dtype=torch.float64)
    what = "fgsm_attack(model, x, y, 0.3, None)"
    _check_fgsm(_run_fgsm(student, state, x, y, 0.3, what, clamp=None), state, x, y, 0.3, what, clamp=None)
    state, x, y = _fgsm_problem(rng, n=8)
    what = "fgsm_attack(model, x, y, 0.0)"
    res = _run_fgsm(student, state, x, y, 0.0, what)
    checks.assert_close(res["x_adv"], x, what, atol=0, rtol=0, rel_l2=0)
    what = "fgsm_attack(model.to('meta'), x.to('meta'), y.to('meta'), 0.1)"
    got = checks.call_or_fail(lambda: student.probe("fgsm_meta", d=5, k=3, batch=4), what, FGSM_DEVICE)
    checks.assert_shape(got, (4, 5), what)
    checks.assert_device(got, "meta", what, hint=FGSM_DEVICE)


@graded(task="fgsm_attack", kind="speed", points=1, visibility="hidden")
def test_fgsm_speed(student, reference_worker, spec, rng):
    """FGSM on a batch of 256 costs at most a few times the reference's one forward and backward pass."""
    p = spec.param("fgsm_speed")
    factor = spec.param("speed_factor")
    result = compare_probe_speed(student, reference_worker, "repeat_fgsm", [{"randn": [p["batch"], p["d"]]}], rng,
                                 rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"), factor=factor,
                                 d=p["d"], hidden=p["hidden"], k=p["k"], model_seed=seed_from(rng))
    assert_speed(result, factor, "fgsm_attack", hint=FGSM_VECTORISE)


def _adversarial_expected(state, x, y, lr, eps, w, scale=0.5, variant: str | None = None):
    """Parameters after one adversarial SGD step (float64): attack in eval mode (the gate is the
    identity), training forward passes in train mode (the gate scales by ``scale``)."""
    x_adv = _fgsm(state, x, y, eps)
    params = _trainable(state)
    s = 1.0 if variant == "eval" else scale
    clean = F.cross_entropy(_net(params, x * s), y)
    attacked = F.cross_entropy(_net(params, x_adv * s), y)
    weights = {"clean_only": (1.0, 0.0), "adv_only": (0.0, 1.0)}.get(variant or "", (1 - w, w))
    loss = weights[0] * clean + weights[1] * attacked
    loss.backward()
    stale = 0.5 if variant == "stale" else 0.0
    return {n: p.detach() - lr * (p.grad + stale) for n, p in params.items()}, loss.item()


@graded(task="fgsm_attack", kind="gradient", points=2, visibility="public")
def test_adversarial_step_update(student, rng):
    """One adversarial_step (adv_weight 0.3) on a model left in eval mode with old gradients: the attack
    as fgsm_attack, then a train-mode SGD step on the mixed clean and attacked loss."""
    state, x, y = _fgsm_problem(rng, n=10)
    what = "adversarial_step(model.eval(), x, y, optimizer, 0.1, 0.3)"
    res = student.probe("run_adversarial_step", state=state, x=x, y=y, lr=0.5, epsilon=0.1, adv_weight=0.3)
    _check_error(res, what)
    expected, loss = _adversarial_expected(state, x, y, 0.5, 0.1, 0.3)
    mistakes = {ADV_MIX: _adversarial_expected(state, x, y, 0.5, 0.1, 0.3, variant="clean_only")[0],
                Msg(ADV_MIX.zh, ADV_MIX.en + " "): _adversarial_expected(state, x, y, 0.5, 0.1, 0.3,
                                                                          variant="adv_only")[0],
                ADV_TRAIN: _adversarial_expected(state, x, y, 0.5, 0.1, 0.3, variant="eval")[0],
                ADV_ZERO: _adversarial_expected(state, x, y, 0.5, 0.1, 0.3, variant="stale")[0]}
    _check_params(res["params"], expected, "model.state_dict()", mistakes)
    _number(res["returned"], loss, what, hint=ADV_MIX)


@graded(task="fgsm_attack", kind="accuracy", points=1, visibility="hidden")
def test_adversarial_step_default_weight(student, rng):
    """adv_weight defaults to 0.5 (an MLP with 4 classes, eps 0.05)."""
    state, x, y = _fgsm_problem(rng, n=9, d=4, k=4)
    what = "adversarial_step(model.eval(), x, y, optimizer, 0.05)"
    res = student.probe("run_adversarial_step", state=state, x=x, y=y, lr=0.3, epsilon=0.05)
    _check_error(res, what)
    expected, loss = _adversarial_expected(state, x, y, 0.3, 0.05, 0.5)
    _check_params(res["params"], expected, "model.state_dict()", hint=ADV_MIX)
    _number(res["returned"], loss, what, hint=ADV_MIX)


# -- T11.5 Mixup -----------------------------------------------------------------------------------------------
def _mixup_parts(out: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    checks.assert_true(isinstance(out, list) and len(out) == 4, Msg(
        f"{what}：应返回 `(mixed_x, y_a, y_b, lam)` 四元组", f"{what}: expected a (mixed_x, y_a, y_b, lam) tuple"))
    mixed = checks.assert_tensor(out[0], f"{what}[0]")
    return mixed, checks.assert_tensor(out[1], f"{what}[1]"), checks.assert_tensor(out[2], f"{what}[2]"), out[3]


def _mixup(student, x, y, alpha, seed, what, global_seeds=(1, 2)) -> dict[str, Any]:
    res = student.probe("run_mixup", x=x, y=y, alpha=alpha, seed=seed, global_seeds=list(global_seeds))
    _check_error(res, what)
    return res


def _lam(value: Any, what: str) -> float:
    checks.assert_true(isinstance(value, float) and 0.0 <= value <= 1.0, Msg(
        f"{what}[3]：`lam` 应为 [0, 1] 内的 Python float，实际为 {value!r}",
        f"{what}[3]: lam must be a Python float in [0, 1], got {value!r}"), MIX_FLOAT)
    return value


def _check_blend(out: Any, x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """mixed = lam·x + (1 − lam)·x[perm] for a permutation recovered from the result; y_b = y[perm]."""
    mixed, y_a, y_b, lam = _mixup_parts(out, what)
    lam = _lam(lam, what)
    checks.assert_shape(mixed, x.shape, f"{what}[0]")
    checks.assert_equal(y_a.tolist(), y.tolist(), f"{what}[1].tolist()", hint=MIX_PERM)
    flat_x, flat_m = x.reshape(len(x), -1).double(), mixed.reshape(len(x), -1).double()
    if lam < 1.0:
        partner = (flat_m - lam * flat_x) / (1.0 - lam)
        perm = torch.cdist(partner, flat_x).argmin(dim=1)
    else:
        perm = torch.arange(len(x))
    checks.assert_true(sorted(perm.tolist()) == list(range(len(x))), Msg(
        f"{what}[0]：每一行应是 x 的一行与 `x[perm]` 的对应行按 `lam` 的混合，`perm` 是一个置换",
        f"{what}[0]: each row must be a row of x blended by lam with the matching row of x[perm], perm a permutation"),
        MIX_BLEND)
    checks.assert_close(mixed, (lam * x.double() + (1 - lam) * x.double()[perm]).to(mixed.dtype), f"{what}[0]",
                        hint=MIX_BLEND)
    checks.assert_equal(y_b.tolist(), y[perm].tolist(), f"{what}[2].tolist()", hint=MIX_PERM)


@graded(task="mixup_batch", kind="shape", points=1, visibility="public")
def test_mixup_shapes_and_types(student, rng):
    """Shapes and dtypes kept (float64 images of 2×3×3), labels of (B,), lam a Python float in [0, 1]."""
    x = torch.rand(6, 2, 3, 3, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=rng)
    what = "mixup_batch(x[6,2,3,3], y, 1.0, generator)"
    res = _mixup(student, x, y, 1.0, seed_from(rng), what, global_seeds=(1,))
    mixed, y_a, y_b, lam = _mixup_parts(res["outs"][0], what)
    checks.assert_shape(mixed, x.shape, f"{what}[0]")
    checks.assert_dtype(mixed, torch.float64, f"{what}[0]")
    checks.assert_shape(y_a, (6,), f"{what}[1]")
    checks.assert_shape(y_b, (6,), f"{what}[2]")
    _lam(lam, what)


@graded(task="mixup_batch", kind="accuracy", points=2, visibility="public")
def test_mixup_blend_and_permutation(student, rng):
    """mixed = lam·x + (1 − lam)·x[perm] for one permutation perm, with y_a = y and y_b = y[perm]
    (three draws)."""
    x = torch.randn(12, 5, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=rng)
    for _ in range(3):
        what = "mixup_batch(x[12,5], y, 1.0, generator)"
        res = _mixup(student, x, y, 1.0, seed_from(rng), what, global_seeds=(1,))
        _check_blend(res["outs"][0], x, y, what)


@graded(task="mixup_batch", kind="accuracy", points=2, visibility="public")
def test_mixup_reproducible_and_global_rng_untouched(student, rng):
    """Generators with the same seed give the same result whatever the global seed, and the global random
    state is the same after the call as before."""
    x = torch.randn(8, 4, generator=rng)
    y = torch.randint(0, 3, (8,), generator=rng)
    what = "mixup_batch(x, y, 0.4, torch.Generator().manual_seed(seed))"
    res = _mixup(student, x, y, 0.4, seed_from(rng), what)
    first, second = res["outs"]
    a, b = _mixup_parts(first, what), _mixup_parts(second, what)
    checks.assert_true(a[3] == b[3], Msg(f"{what}：同一个种子两次调用得到的 `lam` 不同（{a[3]!r} 与 {b[3]!r}）",
                                         f"{what}: two calls with the same seed gave different lam ({a[3]!r} and {b[3]!r})"),
                       MIX_REPRO)
    for i in range(3):
        checks.assert_close(b[i], a[i], f"{what}[{i}]", atol=0, rtol=0, rel_l2=0, hint=MIX_REPRO)
    checks.assert_true(all(res["global_untouched"]), Msg(f"{what} 改变了全局随机数状态",
                                                         f"{what} changed the global random state"), MIX_GLOBAL)
    _check_blend(first, x, y, what)


@graded(task="mixup_batch", kind="accuracy", points=1, visibility="hidden")
def test_mixup_lambda_distribution_and_edge_cases(student, rng):
    """lam follows Beta(alpha, alpha) (mean and variance of 400 draws for alpha 0.4, 2 and the default 1);
    alpha = 0 gives lam = 1 and x itself; a batch of one; uint8 images become float32."""
    for alpha in (0.4, 2.0, None):
        what = f"mixup_batch(x, y, {alpha}, generator)[3]" if alpha else "mixup_batch(x, y, generator=generator)[3]"
        res = student.probe("mixup_lambdas", alpha=alpha, seed=seed_from(rng), draws=400)
        alpha = alpha or 1.0  # the default: lam uniform on [0, 1]
        _check_error(res, what)
        lams = res["lams"]
        checks.assert_true(all(isinstance(v, float) for v in lams), Msg(f"{what}：`lam` 应为 Python float",
                                                                        f"{what}: lam must be a Python float"), MIX_FLOAT)
        values = torch.tensor(lams, dtype=torch.float64)
        mean, var = float(values.mean()), float(values.var())
        want_var = 1.0 / (4 * (2 * alpha + 1))
        # 400 draws. The reference over 200 seeds: |mean - 0.5| at most 0.057 (alpha 0.4) and 0.028 (alpha 2),
        # |variance - 1 / (4 (2 alpha + 1))| at most 0.016 and 0.009. A uniform lam misses the variance by
        # 0.056 for alpha 0.4; Beta(alpha, 1) misses the mean by 0.21.
        ok = abs(mean - 0.5) <= 0.09 and abs(var - want_var) <= 0.03
        checks.assert_true(ok, Msg(f"{what}：均值 {mean:.3f}、方差 {var:.4f}，Beta({alpha}, {alpha}) 应为 0.5 与 {want_var:.4f}",
                                   f"{what}: mean {mean:.3f} and variance {var:.4f}; Beta({alpha}, {alpha}) has 0.5 "
                                   f"and {want_var:.4f}"), MIX_BETA)
    x = torch.randn(5, 3, generator=rng)
    y = torch.randint(0, 3, (5,), generator=rng)
    what = "mixup_batch(x, y, 0.0, generator)"
    mixed, _, _, lam = _mixup_parts(_mixup(student, x, y, 0.0, seed_from(rng), what, (1,))["outs"][0], what)
    checks.assert_true(lam == 1.0, Msg(f"{what}[3]：得到 {lam!r}，期望 1.0", f"{what}[3]: got {lam!r}, expected 1.0"),
                       MIX_NO_MIX)
    checks.assert_close(mixed, x, f"{what}[0]", hint=MIX_NO_MIX)
    x1, y1 = torch.randn(1, 4, generator=rng), torch.tensor([2])
    what = "mixup_batch(x[1,4], y[1], 1.0, generator)"
    _check_blend(_mixup(student, x1, y1, 1.0, seed_from(rng), what, (1,))["outs"][0], x1, y1, what)
    images = torch.randint(0, 256, (4, 1, 2, 2), generator=rng, dtype=torch.uint8)
    labels = torch.randint(0, 3, (4,), generator=rng)
    what = "mixup_batch(images_uint8, y, 1.0, generator)"
    out = _mixup(student, images, labels, 1.0, seed_from(rng), what, (1,))["outs"][0]
    mixed, _, _, _ = _mixup_parts(out, what)
    checks.assert_dtype(mixed, torch.float32, f"{what}[0]", hint=MIX_FLOAT)
    _check_blend(out, images.float(), labels, what)


@graded(task="mixup_batch", kind="gradient", points=2, visibility="public")
def test_mixup_loss_value_and_gradient(student, rng):
    """lam · CE(pred, y_a) + (1 − lam) · CE(pred, y_b), with its gradient reaching pred through both terms."""
    pred = torch.randn(7, 4, generator=rng, dtype=torch.float64)
    y_a, y_b = torch.randint(0, 4, (7,), generator=rng), torch.randint(0, 4, (7,), generator=rng)
    lam = 0.3
    what = "mixup_loss(nn.CrossEntropyLoss(), pred, y_a, y_b, 0.3)"
    res = student.probe("run_mixup_loss", pred=pred, y_a=y_a, y_b=y_b, lam=lam)
    _check_error(res, what)

    def loss_of(p, la, lb):
        return la * F.cross_entropy(p, y_a) + lb * F.cross_entropy(p, y_b)

    expected = loss_of(pred, lam, 1 - lam)
    mistakes = {MIX_LOSS: loss_of(pred, 1 - lam, lam), Msg(MIX_LOSS.zh, MIX_LOSS.en + " "): loss_of(pred, lam, 0.0)}
    checks.assert_close(res["loss"], expected, what, mistakes=mistakes)
    want = torch.func.grad(lambda p: loss_of(p, lam, 1 - lam))(pred)
    checks.assert_true(res["grad"] is not None, Msg(f"{what}：没有梯度传到 `pred`", f"{what}: no gradient reached pred"),
                       MIX_LOSS)
    checks.assert_close(res["grad"], want, "torch.autograd.grad(loss, pred)[0]", hint=MIX_LOSS)


# -- T11.6 Ensemble -------------------------------------------------------------------------------------------
def _members(rng, m: int, d: int, c: int) -> list[dict[str, torch.Tensor]]:
    return [{"fc.weight": torch.randn(c, d, generator=rng), "fc.bias": 0.3 * torch.randn(c, generator=rng)}
            for _ in range(m)]


def _stacked(states, x, scale: float = 1.0) -> torch.Tensor:
    return torch.stack([F.linear(x * scale, s["fc.weight"].to(x.dtype), s["fc.bias"].to(x.dtype)) for s in states])


def _combined(outs: torch.Tensor, combine: str) -> torch.Tensor:
    if combine == "prob":
        return outs.softmax(dim=-1).mean(0)
    if combine == "logit":
        return outs.mean(0)
    return F.one_hot(outs.argmax(-1), outs.shape[-1]).sum(0).to(outs.dtype)


def _ensemble_mistakes(outs: torch.Tensor, combine: str, train_outs: torch.Tensor) -> dict[Msg, torch.Tensor]:
    found = {ENS_LIST: _combined(train_outs, combine)}
    if combine == "prob":
        found.update({ENS_SOFTMAX: outs.mean(0), ENS_DIM: outs.softmax(dim=0).mean(0),
                      ENS_MEAN_THEN_SOFTMAX: outs.mean(0).softmax(-1)})
    return found


def _run_ensemble(student, states, x, what: str, **kwargs: Any) -> dict[str, Any]:
    res = student.probe("run_ensemble", states=states, x=x, **kwargs)
    _check_error(res, what, ENS_LIST if kwargs.get("to_double") else None)
    return res


@graded(task="Ensemble", kind="shape", points=1, visibility="public")
def test_ensemble_shapes(student, rng):
    """(B, C) in every mode with B != C: "prob" rows sum to 1, "vote" rows to the number of members."""
    states, x = _members(rng, 3, 4, 5), torch.randn(7, 4, generator=rng)
    for combine in ("prob", "logit", "vote"):
        what = f"Ensemble(models, combine={combine!r})(x[7,4])"
        out = checks.assert_tensor(_run_ensemble(student, states, x, what, combine=combine)["out"], what)
        checks.assert_shape(out, (7, 5), what, hint=ENS_DIM)
        if combine != "logit":
            total = 1.0 if combine == "prob" else 3.0
            checks.assert_close(out.sum(-1), torch.full((7,), total), f"{what}.sum(-1)",
                                hint=ENS_DIM if combine == "prob" else ENS_VOTE)


@graded(task="Ensemble", kind="accuracy", points=2, visibility="public")
def test_ensemble_values(student, rng):
    """Mean probability (the default), mean logit and vote counts of three members in eval mode."""
    states, x = _members(rng, 3, 4, 3), torch.randn(6, 4, generator=rng)
    outs, train_outs = _stacked(states, x), _stacked(states, x, 0.5)
    for combine in (None, "logit", "vote"):
        mode = combine or "prob"
        what = "Ensemble(models)(x)" if combine is None else f"Ensemble(models, combine={combine!r})(x)"
        res = _run_ensemble(student, states, x, what, combine=combine, scale=0.5)
        checks.assert_close(res["out"], _combined(outs, mode), what, mistakes=_ensemble_mistakes(outs, mode, train_outs),
                            hint=ENS_VOTE if mode == "vote" else None)


@graded(task="Ensemble", kind="gradient", points=2, visibility="public")
def test_ensemble_registers_members(student, rng):
    """The members are registered (parameters named models.<i>.*), ensemble.eval() and .double() reach them,
    and gradients of "prob" and "logit" reach every member's parameters."""
    states = _members(rng, 3, 4, 3)
    x = torch.randn(5, 4, generator=rng, dtype=torch.float64)
    for combine in ("prob", "logit"):
        what = f"Ensemble(models, combine={combine!r}).eval().double()(x)"
        g = torch.randn(5, 3, generator=rng, dtype=torch.float64)
        res = _run_ensemble(student, states, x, what, combine=combine, scale=0.5, to_double=True, grad_output=g)
        expected_names = sorted(f"models.{i}.fc.{p}" for i in range(3) for p in ("weight", "bias"))
        checks.assert_equal(sorted(res["param_names"]), expected_names, "sorted(n for n, _ in ensemble.named_parameters())",
                            hint=ENS_LIST)
        checks.assert_true(not any(res["member_training"]), Msg(f"{what}：eval() 之后仍有成员处在 train 模式",
                                                                f"{what}: a member is still in train mode after eval()"),
                           ENS_LIST)
        params = [{n: v.double().requires_grad_(True) for n, v in s.items()} for s in states]
        out = _combined(torch.stack([F.linear(x, p["fc.weight"], p["fc.bias"]) for p in params]), combine)
        flat = [t for p in params for t in p.values()]
        want = torch.autograd.grad(out, flat, g)
        checks.assert_close(res["out"], out.detach(), what)
        checks.assert_true(res["grads"] is not None, Msg(f"{what}：输出没有连在计算图上", f"{what}: the output is not on the graph"),
                           ENS_GRAD)
        names = [f"{i}.{n}" for i in range(3) for n in ("fc.weight", "fc.bias")]
        for name, w in zip(names, want):
            checks.assert_grad(res["grads"][name], w, f"models[{name.split('.')[0]}].{name.split('.', 1)[1]}",
                               hint=ENS_GRAD)


@graded(task="Ensemble", kind="shape", points=1, visibility="hidden")
def test_ensemble_single_member_invalid_and_meta(student, rng):
    """One member in "prob" mode gives its softmax; an unknown combine or no member raises ValueError; every
    mode runs on the meta device."""
    states, x = _members(rng, 1, 3, 4), torch.randn(2, 3, generator=rng)
    what = "Ensemble([model])(x)"
    res = _run_ensemble(student, states, x, what)
    checks.assert_close(res["out"], _stacked(states, x)[0].softmax(-1), what, hint=ENS_SOFTMAX)
    for combine, members in (("mean", 2), ("prob", 0)):
        what = f"Ensemble([nn.Linear(2, 2)] * {members}, combine={combine!r})"
        got = student.probe("ensemble_rejects", combine=combine, members=members)
        checks.assert_equal(got, "ValueError", what, hint=ENS_INVALID)
    for combine in ("prob", "logit", "vote"):
        what = f"Ensemble(models, combine={combine!r}).to('meta')(x.to('meta'))"
        got = checks.call_or_fail(lambda: student.probe("ensemble_meta", d=3, k=4, members=2, batch=5, combine=combine),
                            what, ENS_DEVICE)
        checks.assert_shape(got, (5, 4), what)
        checks.assert_device(got, "meta", what, hint=ENS_DEVICE)
