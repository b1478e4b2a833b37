"""练习 11：训练技巧 / Exercise 11: training tricks.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex11`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex11`` (one task: ``grader check ex11 -k noam``).

评分程序在它自己的代码里创建模型、数据加载器、优化器和随机数生成器，交给你的函数，然后从外部检查效果：
参数更新后的值（float64 下与逐步手算的结果比较）、学习率序列、梯度落在哪些张量上、BatchNorm 的统计量、
模型的 train/eval 模式。所以请严格按下面写明的顺序和约定实现，不要自己打乱数据、创建额外的优化器或
使用全局随机数。函数要支持 ``float64``；新建的张量请放在输入所在的设备上（``device=x.device``），
评分程序会在 ``meta`` 设备上运行部分函数。
The grader builds the models, loaders, optimizers and random generators in its own code, hands them
to your functions and checks the effect from outside: the parameters after an update (compared in
float64 with a step-by-step computation), the learning rates, which tensors received gradients,
BatchNorm statistics, the modules' train/eval modes. So follow the order and conventions stated below
exactly; do not reshuffle data, make extra optimizers or use the global random generator. Support
``float64``, and make new tensors on the inputs' device (``device=x.device``): the grader runs some
of your functions on the ``meta`` device.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def noam_lambda(step: int, d_model: int, warmup_steps: int) -> float:
    """Transformer 论文（Attention Is All You Need）的 Noam 学习率倍数，返回 Python ``float``。

    - 公式：``s = max(step, 1)``，``factor = d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)``。
    - **第 0 步按第 1 步计算**（``max(step, 1)``）：``LambdaLR`` 在构造时就会以 ``step = 0`` 调用它，
      ``0 ** -0.5`` 会抛出 ``ZeroDivisionError``，而直接返回 0 会让第一次更新的学习率为 0。
    - 前 ``warmup_steps`` 步线性增加，**在 ``step == warmup_steps`` 时达到最大值**
      ``(d_model · warmup_steps) ** -0.5``，之后按 ``step ** -0.5`` 衰减。
    - ``d_model >= 1``，``warmup_steps >= 1``（``warmup_steps = 1`` 时第 1 步就是最大值）。

    The Noam learning-rate factor of the Transformer paper (Attention Is All You Need), as a Python
    ``float``.

    - Formula: ``s = max(step, 1)``, ``factor = d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)``.
    - **Step 0 is computed as step 1** (``max(step, 1)``): ``LambdaLR`` calls the lambda with
      ``step = 0`` when it is constructed; ``0 ** -0.5`` raises ``ZeroDivisionError``, and returning 0
      would make the first update's learning rate 0.
    - It grows linearly for ``warmup_steps`` steps, **peaks at ``step == warmup_steps``** at
      ``(d_model * warmup_steps) ** -0.5``, then decays as ``step ** -0.5``.
    - ``d_model >= 1``, ``warmup_steps >= 1`` (with ``warmup_steps = 1`` the peak is at step 1).
    """
    raise NotImplementedError("TODO: noam_lambda")


def make_noam_scheduler(optimizer: torch.optim.Optimizer, d_model: int,
                        warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """返回 ``torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)``，其中
    ``lr_lambda(step) = noam_lambda(step, d_model, warmup_steps)``。

    - ``LambdaLR`` 把每个参数组的学习率设为 ``基础学习率 × lr_lambda(step)``，``step`` 是已经调用
      ``scheduler.step()`` 的次数（构造时为 0）。``lr_lambda`` 返回的是**倍数**：不要乘上或除以某个
      学习率，也不要直接改写 ``optimizer.param_groups``。想要原论文的绝对学习率，就把优化器的
      基础学习率设为 1。多个参数组各自按自己的基础学习率缩放。

    Return ``torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)`` with
    ``lr_lambda(step) = noam_lambda(step, d_model, warmup_steps)``.

    - ``LambdaLR`` sets each parameter group's learning rate to ``base lr * lr_lambda(step)``, where
      ``step`` counts the ``scheduler.step()`` calls so far (0 at construction). ``lr_lambda`` returns a
      **multiplier**: do not multiply or divide it by a learning rate, and do not write
      ``optimizer.param_groups`` yourself. For the paper's absolute learning rates give the optimizer a
      base learning rate of 1. Several parameter groups each scale their own base learning rate.
    """
    raise NotImplementedError("TODO: make_noam_scheduler")


def train_epoch_accumulate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                           optimizer: torch.optim.Optimizer, accumulation_steps: int) -> float:
    """梯度累积：把 ``accumulation_steps``（记为 ``k``）个微批的梯度累加起来再更新一次，模拟大批量。

    - 先 ``model.train()``，再 ``optimizer.zero_grad()``（调用前参数上可能留有旧梯度）。
    - 按 ``loader`` 的顺序把微批每 ``k`` 个分成一组（第 1–k 个、第 k+1–2k 个……）。``loader`` 有长度
      ``len(loader)``，最后一组可能不足 ``k`` 个（记为 ``r`` 个）。对每个微批 ``(inputs, targets)``：
      ``loss = criterion(model(inputs), targets)``，然后 ``(loss / m).backward()``，其中 ``m`` 是**这一组
      的微批个数**（完整的组是 ``k``，最后不足的一组是 ``r``）。一组的最后一个微批 backward 之后：
      ``optimizer.step()``，再 ``optimizer.zero_grad()``。
    - 于是每次更新用的是这一组各微批平均损失的平均值的梯度：``k`` 个同样大小的微批与一个 ``k`` 倍大的
      批次做一次普通训练步完全相同。最后不足 ``k`` 个的那组**也要更新一次**，不能丢掉。
      ``k = 1`` 时就是普通的逐批训练。更新次数为 ``ceil(len(loader) / k)``。
    - ``criterion`` 返回微批的平均损失。返回值是这个 epoch 的平均损失（Python ``float``），按样本数加权、
      用**没有除以 m** 的损失：``Σ(loss.item() × n_b) / N``（``n_b`` 是微批的样本数，``N`` 是样本总数）。
    - 不要把数据移到别的设备，也不要自己创建优化器。

    Gradient accumulation: add up the gradients of ``accumulation_steps`` (call it ``k``) micro-batches,
    then update once, as if the batch were ``k`` times larger.

    - First ``model.train()``, then ``optimizer.zero_grad()`` (the parameters may hold old gradients).
    - Split the micro-batches, in ``loader`` order, into groups of ``k`` (micro-batches 1..k, k+1..2k,
      ...). ``loader`` has a length ``len(loader)``; the last group may hold fewer than ``k`` (call it
      ``r``). For each micro-batch ``(inputs, targets)``: ``loss = criterion(model(inputs), targets)``,
      then ``(loss / m).backward()``, where ``m`` is **the number of micro-batches in its group** (``k``
      for a full group, ``r`` for the last, shorter one). After the backward of a group's last
      micro-batch: ``optimizer.step()``, then ``optimizer.zero_grad()``.
    - Each update thus uses the gradient of the mean of the group's micro-batch mean losses: ``k``
      micro-batches of equal size give exactly one ordinary step on a batch ``k`` times larger. The
      last group with fewer than ``k`` micro-batches **also gets its update**; do not drop it. ``k = 1``
      is plain batch-by-batch training. There are ``ceil(len(loader) / k)`` updates.
    - ``criterion`` returns a micro-batch's mean loss. Return the epoch's mean loss (a Python ``float``)
      weighted by sample count, using the losses **before dividing by m**: ``sum(loss.item() * n_b) / N``
      (``n_b`` the micro-batch's size, ``N`` the number of samples).
    - Do not move data to another device and do not make an optimizer of your own.
    """
    raise NotImplementedError("TODO: train_epoch_accumulate")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 3.0, alpha: float = 0.5) -> torch.Tensor:
    """知识蒸馏损失（Hinton 等人的约定），返回标量张量：

    ``loss = alpha · T² · KL(p_teacher ‖ p_student) + (1 − alpha) · CE(student_logits, labels)``

    - ``student_logits``、``teacher_logits``：``(B, C)``，``labels``：``(B,)`` 的 ``int64`` 类别下标。
      ``T = temperature > 0``，``0 <= alpha <= 1``（``alpha`` 是软目标部分的权重）。
    - ``p_teacher = softmax(teacher_logits / T, dim=-1)``，学生用 ``log_softmax(student_logits / T, dim=-1)``
      （``F.kl_div`` 的第一个参数要的是对数概率，第二个是概率）。KL 对类别求和、对批次求平均：
      ``F.kl_div(..., reduction="batchmean")``（``"mean"`` 还会再除以类别数 ``C``）。
    - **乘以 ``T²``**：温度让软目标部分的梯度缩小了 ``T²`` 倍，乘回来才能与硬标签部分保持相同量级。
    - 硬标签部分是 ``F.cross_entropy(student_logits, labels)``，**不除以温度**、平均到批次。
    - 教师的输出是常数：梯度不能传到 ``teacher_logits``（对它 ``detach()``）。梯度要能传到
      ``student_logits``。结果的 dtype 与 ``student_logits`` 相同（支持 ``float64`` 和 ``meta`` 设备）。

    The knowledge-distillation loss (Hinton et al.'s convention), as a scalar tensor:

    ``loss = alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student_logits, labels)``

    - ``student_logits``, ``teacher_logits``: ``(B, C)``; ``labels``: ``(B,)`` ``int64`` class indices.
      ``T = temperature > 0``, ``0 <= alpha <= 1`` (``alpha`` weighs the soft-target part).
    - ``p_teacher = softmax(teacher_logits / T, dim=-1)``; the student enters as
      ``log_softmax(student_logits / T, dim=-1)`` (``F.kl_div`` takes log-probabilities first and
      probabilities second). The KL is summed over classes and averaged over the batch:
      ``F.kl_div(..., reduction="batchmean")`` (``"mean"`` also divides by the number of classes ``C``).
    - **Multiply by ``T^2``**: the temperature shrinks the soft part's gradients by ``T^2``; scaling back
      keeps them on the same scale as the hard-label part.
    - The hard-label part is ``F.cross_entropy(student_logits, labels)``, **not** divided by the
      temperature, averaged over the batch.
    - The teacher's outputs are constants: no gradient may reach ``teacher_logits`` (``detach()`` them).
      Gradients must reach ``student_logits``. The result has the dtype of ``student_logits`` (support
      ``float64`` and the ``meta`` device).
    """
    raise NotImplementedError("TODO: distillation_loss")


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer, temperature: float = 3.0, alpha: float = 0.5) -> float:
    """蒸馏训练的一步：只更新学生，返回这一步的损失（Python ``float``）。

    - 教师：先 ``teacher.eval()``（并保持 eval 模式：它的 Dropout 关闭，BatchNorm 用运行统计量且
      **不改变**它们），在 ``torch.no_grad()`` 中计算 ``teacher(x)``。教师的参数不能得到梯度
      （``.grad`` 保持 ``None``），也不能改变。``optimizer`` 只包含学生的参数。
    - 学生：``student.train()`` → ``optimizer.zero_grad()`` →
      ``loss = distillation_loss(student(x), teacher_logits, y, temperature, alpha)`` →
      ``loss.backward()`` → ``optimizer.step()``。返回 ``loss.item()``（更新之前算出的损失）。

    One distillation training step: update the student only; return the step's loss (a Python ``float``).

    - Teacher: first ``teacher.eval()`` (and leave it in eval mode: its dropout is off, its BatchNorm uses
      and **does not change** its running statistics), compute ``teacher(x)`` under ``torch.no_grad()``.
      The teacher's parameters get no gradient (``.grad`` stays ``None``) and do not change.
      ``optimizer`` holds the student's parameters only.
    - Student: ``student.train()`` → ``optimizer.zero_grad()`` →
      ``loss = distillation_loss(student(x), teacher_logits, y, temperature, alpha)`` →
      ``loss.backward()`` → ``optimizer.step()``. Return ``loss.item()`` (computed before the update).
    """
    raise NotImplementedError("TODO: distill_step")


def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """FGSM（快速梯度符号法）对抗样本：``x_adv = clamp(x + epsilon · sign(∇ₓ CE(model(x), y)))``。

    - 损失是 ``F.cross_entropy(model(x), y)``（批次平均）。``x``：``(B, ...)`` 浮点张量，``y``：``(B,)``
      ``int64`` 类别下标，``epsilon >= 0``。
    - 沿损失**增大**的方向走：``+ epsilon · grad.sign()``，整批一次前向、一次反向，不要逐个样本循环。
    - ``clamp = (low, high)`` 时把结果截断到 ``[low, high]``（有效像素范围）；``clamp = None`` 时不截断。
      于是 ``|x_adv − x| <= epsilon`` 逐元素成立。
    - **不要修改调用者的 ``x``**：不要对它设置 ``requires_grad``，也不要原地改它的值；在副本上求梯度，
      例如 ``x.detach().clone().requires_grad_(True)``。
    - **模型参数不能得到梯度**：调用前后每个参数的 ``.grad`` 保持原样（不累加、也不清零）。用
      ``torch.autograd.grad(loss, x_adv)`` 只对输入求导，而不是 ``loss.backward()``。
    - 攻击在 **eval 模式**下进行（BatchNorm 用运行统计量且不改变它们，Dropout 关闭），结束后把模型恢复到
      调用前的模式（调用前是 train 就恢复 train）。
    - 返回值与 ``x`` 形状、dtype、设备相同，且已 ``detach()``（``requires_grad=False``）。

    An FGSM (fast gradient sign method) adversarial batch:
    ``x_adv = clamp(x + epsilon * sign(grad_x CE(model(x), y)))``.

    - The loss is ``F.cross_entropy(model(x), y)`` (batch mean). ``x``: a ``(B, ...)`` floating tensor,
      ``y``: ``(B,)`` ``int64`` class indices, ``epsilon >= 0``.
    - Step in the direction that **increases** the loss: ``+ epsilon * grad.sign()``, with one forward and
      one backward pass for the whole batch; no loop over samples.
    - With ``clamp = (low, high)`` clamp the result to ``[low, high]`` (the valid pixel range); with
      ``clamp = None`` do not clamp. So ``|x_adv - x| <= epsilon`` holds elementwise.
    - **Do not change the caller's ``x``**: do not set ``requires_grad`` on it and do not modify it in
      place; take the gradient on a copy, e.g. ``x.detach().clone().requires_grad_(True)``.
    - **The model's parameters receive no gradient**: every parameter's ``.grad`` is the same after the
      call as before (nothing added, nothing cleared). Differentiate with respect to the input only,
      with ``torch.autograd.grad(loss, x_adv)``, not ``loss.backward()``.
    - The attack runs in **eval mode** (BatchNorm uses and does not change its running statistics,
      dropout is off); afterwards restore the mode the model had before the call (train if it was in
      train mode).
    - The result has the shape, dtype and device of ``x`` and is detached (``requires_grad=False``).
    """
    raise NotImplementedError("TODO: fgsm_attack")


def adversarial_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                     epsilon: float, adv_weight: float = 0.5) -> float:
    """一步对抗训练：在干净批次和 FGSM 攻击后的批次上混合训练，返回损失（Python ``float``）。

    - ``x_adv = fgsm_attack(model, x, y, epsilon)``（默认截断到 ``[0, 1]``）。
    - 然后 ``model.train()`` → ``optimizer.zero_grad()`` →
      ``loss = (1 − adv_weight) · CE(model(x), y) + adv_weight · CE(model(x_adv), y)``（``F.cross_entropy``，
      批次平均）→ ``loss.backward()`` → ``optimizer.step()``。返回 ``loss.item()``。
    - ``x_adv`` 是常数输入（已 detach）：梯度只用于更新参数，不流回输入。

    One adversarial-training step on the clean batch mixed with its FGSM-attacked copy; return the loss
    (a Python ``float``).

    - ``x_adv = fgsm_attack(model, x, y, epsilon)`` (clamped to ``[0, 1]`` by default).
    - Then ``model.train()`` → ``optimizer.zero_grad()`` →
      ``loss = (1 - adv_weight) * CE(model(x), y) + adv_weight * CE(model(x_adv), y)``
      (``F.cross_entropy``, batch mean) → ``loss.backward()`` → ``optimizer.step()``. Return
      ``loss.item()``.
    - ``x_adv`` is a constant input (detached): the gradient updates the parameters and does not flow
      back into the inputs.
    """
    raise NotImplementedError("TODO: adversarial_step")


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup：把批次与它的一个随机置换按 ``lam`` 混合，返回 ``(mixed_x, y_a, y_b, lam)``。

    - ``x``：``(B, ...)``；整数类型（例如 ``uint8`` 图像）先转成 ``float32``，浮点类型保持原 dtype。
      ``y``：``(B,)`` 类别下标。
    - ``alpha > 0`` 时 ``lam ~ Beta(alpha, alpha)``；``alpha <= 0`` 时 ``lam = 1.0``（不混合）。
      ``lam`` 是 ``[0, 1]`` 内的 Python ``float``。
    - 置换 ``perm = torch.randperm(B, generator=generator)``（放到 ``x`` 的设备上），``x`` 和 ``y`` 用
      **同一个**置换：``mixed_x = lam · x + (1 − lam) · x[perm]``，``y_a = y``，``y_b = y[perm]``。
      整批一次完成，不要逐个样本循环。
    - **所有随机数都从 ``generator`` 中抽取**（``generator=None`` 时才用全局随机数）：同一个种子的
      生成器给出完全相同的结果，全局随机数状态（``torch.manual_seed`` 控制的那个）不能被改变。
      ``np.random``、``random`` 和 ``torch.distributions.Beta(...).sample()`` 都不接受 ``generator``。
      可用 Gamma 变量：``g = torch._standard_gamma(torch.full((2,), alpha, dtype=torch.float64),
      generator=generator)``，``lam = g[0] / g.sum()``；或在 ``torch.random.fork_rng()`` 中用从
      ``generator`` 抽出的种子调用 ``torch.manual_seed`` 后再用 ``Beta`` 采样。

    Mixup: blend the batch with a random permutation of itself by ``lam``; return
    ``(mixed_x, y_a, y_b, lam)``.

    - ``x``: ``(B, ...)``; an integer dtype (e.g. ``uint8`` images) is converted to ``float32`` first,
      a floating dtype is kept. ``y``: ``(B,)`` class indices.
    - For ``alpha > 0``, ``lam ~ Beta(alpha, alpha)``; for ``alpha <= 0``, ``lam = 1.0`` (no mixing).
      ``lam`` is a Python ``float`` in ``[0, 1]``.
    - The permutation ``perm = torch.randperm(B, generator=generator)`` (moved to ``x``'s device) is
      **the same** for ``x`` and ``y``: ``mixed_x = lam * x + (1 - lam) * x[perm]``, ``y_a = y``,
      ``y_b = y[perm]``. The whole batch at once; no loop over samples.
    - **Every random number comes from ``generator``** (the global generator only when
      ``generator=None``): generators with the same seed give identical results, and the global random
      state (the one ``torch.manual_seed`` sets) must not change. ``np.random``, ``random`` and
      ``torch.distributions.Beta(...).sample()`` take no ``generator``. Gamma variates work:
      ``g = torch._standard_gamma(torch.full((2,), alpha, dtype=torch.float64), generator=generator)``,
      ``lam = g[0] / g.sum()``; so does sampling ``Beta`` inside ``torch.random.fork_rng()`` after
      ``torch.manual_seed`` with a seed drawn from ``generator``.
    """
    raise NotImplementedError("TODO: mixup_batch")


def mixup_loss(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor,
               y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Mixup 的损失：``lam · criterion(pred, y_a) + (1 − lam) · criterion(pred, y_b)``（标量张量）。

    梯度要能通过两项传到 ``pred``。不要把 ``y_a``、``y_b`` 混成一个标签后再算损失。

    The Mixup loss: ``lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)`` (a scalar tensor).

    Gradients reach ``pred`` through both terms. Do not blend ``y_a`` and ``y_b`` into one label first.
    """
    raise NotImplementedError("TODO: mixup_loss")


class Ensemble(nn.Module):
    """多个分类模型的集成。

    - ``Ensemble(models, combine="prob")``：``models`` 是至少一个 ``nn.Module`` 的序列，每个把 ``(B, ...)``
      映射到 logits ``(B, C)``。保存为 ``self.models = nn.ModuleList(models)``（普通的 Python 列表不会注册
      子模块：``.eval()``、``.to()``、``.double()``、``parameters()`` 都不会传到它们）。
      ``combine`` 不是 ``"prob"``、``"logit"``、``"vote"`` 之一，或 ``models`` 为空时，在 ``__init__`` 中
      抛出 ``ValueError``。没有其它带参数的子模块。
    - ``forward(x)`` 返回 ``(B, C)``，dtype 与成员输出相同：
      - ``"prob"``：**先对每个成员的 logits 在类别维（``dim=-1``）做 softmax，再对成员求平均**，
        返回平均概率（每行之和为 1）；
      - ``"logit"``：成员 logits 的平均（不做 softmax）；
      - ``"vote"``：每个成员投一票给自己 ``argmax`` 的类别，返回每个类别得到的票数（浮点数，每行之和为
        成员个数）。新建的张量要放在输入的设备上（``meta`` 设备也要能运行）。
    - ``forward`` 不改变模式：``ensemble.eval()`` 让所有成员进入 eval 模式，由调用者负责。
      ``"prob"`` 和 ``"logit"`` 的梯度要传到每个成员的参数。

    An ensemble of classifiers.

    - ``Ensemble(models, combine="prob")``: ``models`` is a sequence of at least one ``nn.Module``, each
      mapping ``(B, ...)`` to logits ``(B, C)``. Keep them as ``self.models = nn.ModuleList(models)`` (a
      plain Python list registers nothing: ``.eval()``, ``.to()``, ``.double()`` and ``parameters()`` do
      not reach them). Raise ``ValueError`` in ``__init__`` when ``combine`` is not one of ``"prob"``,
      ``"logit"``, ``"vote"``, or ``models`` is empty. No other submodule with parameters.
    - ``forward(x)`` returns ``(B, C)`` in the dtype of the members' outputs:
      - ``"prob"``: **softmax each member's logits over the classes (``dim=-1``), then average over the
        members**: the mean probabilities (each row sums to 1);
      - ``"logit"``: the mean of the members' logits (no softmax);
      - ``"vote"``: each member votes for its ``argmax`` class; return the votes per class (floats,
        each row sums to the number of members). Make new tensors on the input's device (it must run
        on the ``meta`` device too).
    - ``forward`` does not change modes: ``ensemble.eval()`` puts every member in eval mode, and that is
      the caller's job. In ``"prob"`` and ``"logit"`` gradients reach every member's parameters.
    """

    def __init__(self, models: Sequence[nn.Module], combine: str = "prob") -> None:
        super().__init__()
        raise NotImplementedError("TODO: Ensemble.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: Ensemble.forward")
