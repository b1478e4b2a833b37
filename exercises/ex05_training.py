"""练习 5：训练、评估、学习率调度与早停 / Exercise 5: training, evaluation, schedules and early stopping.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex05`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex05`` (one task: ``grader check ex05 -k train_epoch``).

评分程序在它自己的代码里创建模型、数据加载器、损失函数和优化器，交给你的函数，然后从外部检查效果：
每个 epoch 之后的参数（float64 下与逐步手算的结果比较）、BatchNorm 的统计量、学习率序列。
所以请严格按下面写明的顺序和约定实现，不要自己打乱数据、改变学习率或创建额外的优化器。
The grader builds the models, loaders, losses and optimizers in its own code, hands them to your
functions and checks the effect from outside: the parameters after every epoch (compared in float64
with a step-by-step computation), BatchNorm statistics, the learning rates. So follow the order and
conventions stated below exactly; do not reshuffle data, change learning rates or make extra
optimizers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader


def train_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                optimizer: torch.optim.Optimizer, device: str | torch.device = "cpu") -> tuple[float, float]:
    """训练一个 epoch，返回 ``(平均损失, 准确率)``，两者都是 Python ``float``。

    - 先调用 ``model.train()``：模型可能刚做完评估，还处在 eval 模式（Dropout、BatchNorm 的行为不同）。
    - 按 ``loader`` 给出的顺序遍历每个 batch ``(inputs, targets)``，不要自己打乱或跳过。每个 batch：
      把 ``inputs`` **和** ``targets`` 都移到 ``device``（``.to(device)``）→ ``optimizer.zero_grad()``
      → ``outputs = model(inputs)`` → ``loss = criterion(outputs, targets)`` → ``loss.backward()``
      → ``optimizer.step()``。每个 batch 恰好更新一次参数。
    - ``criterion`` 返回该 batch 的**平均**损失（``reduction="mean"``）。最后一个 batch 可能更小
      （例如 10 个样本、batch 为 4：4、4、2），所以平均损失要按样本数加权：
      ``Σ(loss_b × n_b) / N``，``n_b`` 是第 b 个 batch 的样本数，``N`` 是这个 epoch 的样本总数。
      不要用 batch 平均值的平均（``/ len(loader)``），也不要把 batch 平均值之和除以 ``N``。
    - 每个 batch 的损失取 ``step()`` 之前前向传播得到的那个值；累加时用 ``loss.item()``，
      不要累加张量本身（那样会一直保留计算图，内存不断增长）。
    - 准确率 = 预测正确的样本数 / ``N``，预测为 ``outputs.argmax(dim=1)``（类别维是第 1 维），
      用的也是 ``step()`` 之前的 ``outputs``。结果在 ``[0, 1]`` 之间。

    Train for one epoch and return ``(mean loss, accuracy)``, both Python ``float``.

    - Call ``model.train()`` first: the model may just have been evaluated and still be in eval
      mode (Dropout and BatchNorm behave differently).
    - Go through the batches ``(inputs, targets)`` in the order ``loader`` gives them; do not
      reshuffle or skip any. For each batch: move ``inputs`` **and** ``targets`` to ``device``
      (``.to(device)``) → ``optimizer.zero_grad()`` → ``outputs = model(inputs)`` →
      ``loss = criterion(outputs, targets)`` → ``loss.backward()`` → ``optimizer.step()``. Exactly
      one parameter update per batch.
    - ``criterion`` returns the batch's **mean** loss (``reduction="mean"``). The last batch may be
      smaller (10 samples with batch size 4: 4, 4, 2), so weight the mean loss by the number of
      samples: ``sum(loss_b * n_b) / N``, with ``n_b`` the size of batch b and ``N`` the number of
      samples in the epoch. Not the mean of the batch means (``/ len(loader)``), and not the sum of
      batch means divided by ``N``.
    - A batch's loss is the value of its forward pass, before ``step()``. Accumulate
      ``loss.item()``, not the tensor itself (that keeps every graph alive and memory grows).
    - Accuracy = correctly predicted samples / ``N``, with ``outputs.argmax(dim=1)`` as the
      prediction (classes are dimension 1), from the same ``outputs`` before ``step()``. It lies in
      ``[0, 1]``.
    """
    raise NotImplementedError("TODO: train_epoch")


def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
             device: str | torch.device = "cpu") -> tuple[float, float]:
    """在 ``loader`` 上评估模型，返回 ``(平均损失, 准确率)``，两者都是 Python ``float``。

    - 先调用 ``model.eval()``（Dropout 关闭，BatchNorm 使用并且**不修改**它的运行统计量），
      整个评估在 ``torch.no_grad()`` 中进行（装饰器 ``@torch.no_grad()`` 或 ``with`` 块都可以；
      ``torch.inference_mode()`` 也可以）：不构建计算图，不改变任何参数或 ``.grad``。
    - 把 ``inputs`` 和 ``targets`` 移到 ``device``。不调用 ``backward()``，不更新参数。
    - 平均损失和准确率的定义与 ``train_epoch`` 相同：按样本数加权 ``Σ(loss_b × n_b) / N``，
      预测为 ``outputs.argmax(dim=1)``。同一个模型连续评估两次，结果必须完全相同。
    - 批大小可能为 1（BatchNorm 在 train 模式下会因此报错，在 eval 模式下没问题）。
    - 返回时模型留在 eval 模式即可（``train_epoch`` 会自己切回 train 模式）。

    Evaluate the model on ``loader`` and return ``(mean loss, accuracy)``, both Python ``float``.

    - Call ``model.eval()`` first (Dropout off; BatchNorm uses its running statistics and does
      **not** change them) and run the whole evaluation under ``torch.no_grad()`` (the
      ``@torch.no_grad()`` decorator or a ``with`` block; ``torch.inference_mode()`` works too): no
      graph is built, no parameter or ``.grad`` changes.
    - Move ``inputs`` and ``targets`` to ``device``. No ``backward()``, no parameter update.
    - Mean loss and accuracy are defined as in ``train_epoch``: weighted by sample count,
      ``sum(loss_b * n_b) / N``, predictions ``outputs.argmax(dim=1)``. Evaluating the same model
      twice in a row gives exactly the same result.
    - A batch may hold a single sample (BatchNorm raises on that in train mode, not in eval mode).
    - The model may stay in eval mode afterwards (``train_epoch`` switches back itself).
    """
    raise NotImplementedError("TODO: evaluate")


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int,
        lr: float = 1e-2, device: str = "cpu") -> dict:
    """完整的训练流程：训练 ``epochs`` 个 epoch，记录历史，保留验证准确率最高的参数，结束时加载它。

    - 损失函数为 ``nn.CrossEntropyLoss()``（默认取平均）；优化器为
      ``torch.optim.Adam(model.parameters(), lr=lr)``，在循环**之前只创建一次**（每个 epoch 重新创建
      会丢掉 Adam 的动量状态）。不使用学习率调度器。
    - 每个 epoch：先 ``train_epoch(model, train_loader, criterion, optimizer, device)``，再
      ``evaluate(model, val_loader, criterion, device)``（就是本文件中你写的这两个函数）。
    - 验证准确率**严格大于**此前最好的值时（第一个 epoch 总是算作更好），记录 ``best_acc`` 并保存参数的
      **深拷贝** ``best_state``（``copy.deepcopy(model.state_dict())`` 或
      ``{k: v.clone() for k, v in model.state_dict().items()}``）。``model.state_dict()`` 里的张量与
      模型共享内存，不拷贝的话它会随训练继续改变。准确率相同时保留较早的 epoch。
    - 所有 epoch 结束后，``model.load_state_dict(best_state)``：函数返回时模型的参数就是最佳 epoch
      结束时的参数（不一定是最后一个 epoch）。
    - 返回字典：``{"train_loss": [...], "val_loss": [...], "val_acc": [...], "best_acc": float,
      "best_state": dict}``。三个列表各有 ``epochs`` 个 Python ``float``（第 i 个是第 i 个 epoch 的
      ``train_epoch`` 损失、``evaluate`` 损失和准确率）；``best_state`` 的键与 ``model.state_dict()``
      相同。``epochs >= 1``。

    The whole training run: train for ``epochs`` epochs, record the history, keep the weights with
    the best validation accuracy and load them at the end.

    - The loss is ``nn.CrossEntropyLoss()`` (mean reduction); the optimizer is
      ``torch.optim.Adam(model.parameters(), lr=lr)``, created **once**, before the loop (one per
      epoch would throw away Adam's moment estimates). No learning-rate scheduler.
    - Each epoch: ``train_epoch(model, train_loader, criterion, optimizer, device)``, then
      ``evaluate(model, val_loader, criterion, device)`` (your own two functions in this file).
    - When the validation accuracy is **strictly greater** than the best so far (the first epoch
      always is), record ``best_acc`` and keep a **deep copy** of the weights as ``best_state``
      (``copy.deepcopy(model.state_dict())`` or ``{k: v.clone() for k, v in
      model.state_dict().items()}``). The tensors of ``model.state_dict()`` share memory with the
      model: without a copy they keep changing as training goes on. On a tie keep the earlier epoch.
    - After the last epoch, ``model.load_state_dict(best_state)``: when the function returns, the
      model holds the weights from the end of the best epoch (not necessarily the last one).
    - Return ``{"train_loss": [...], "val_loss": [...], "val_acc": [...], "best_acc": float,
      "best_state": dict}``. The three lists hold ``epochs`` Python floats each (entry i: epoch i's
      ``train_epoch`` loss, ``evaluate`` loss and accuracy); ``best_state`` has the keys of
      ``model.state_dict()``. ``epochs >= 1``.
    """
    raise NotImplementedError("TODO: fit")


class EarlyStopping:
    """早停：验证损失连续 ``patience`` 次没有改善就发出停止信号，并在内存中保存最佳参数。

    - ``EarlyStopping(patience=7, min_delta=0.0)``。属性：``best_loss``（初始 ``None``）、
      ``counter``（初始 ``0``）、``early_stop``（初始 ``False``）、``best_state``（初始 ``None``）。
    - ``stopper(val_loss, model)`` 每个 epoch 调用一次（``val_loss`` 是 Python ``float``），返回
      ``early_stop``（``bool``）。
    - **改善**的定义：``best_loss is None``（第一次调用），或 ``val_loss < best_loss - min_delta``
      （严格小于：恰好改善 ``min_delta`` 不算改善）。``NaN`` 永远不算改善（第一次调用也不算）。
    - 改善时：``best_loss = val_loss``，``counter = 0``，``best_state`` = 当前
      ``model.state_dict()`` 的**拷贝**（每个张量 ``.clone()`` 或 ``copy.deepcopy``；之后模型再变，
      它也不能变）。
    - 没有改善时：``counter += 1``；``counter >= patience`` 时 ``early_stop = True``。所以
      ``patience=3`` 时，第 3 次连续没有改善的调用返回 ``True``；``patience=0`` 或 ``1`` 时第一次没有
      改善就停止。
    - 只在内存中保存：不要写任何文件（例如 ``best_model.pth``），评分时当前目录可能是只读的。

    Early stopping: signal a stop after ``patience`` calls in a row without improvement of the
    validation loss, and keep the best weights in memory.

    - ``EarlyStopping(patience=7, min_delta=0.0)``. Attributes: ``best_loss`` (``None`` at first),
      ``counter`` (``0``), ``early_stop`` (``False``), ``best_state`` (``None``).
    - ``stopper(val_loss, model)`` is called once per epoch (``val_loss`` a Python ``float``) and
      returns ``early_stop`` (a ``bool``).
    - An **improvement** is: ``best_loss is None`` (the first call), or
      ``val_loss < best_loss - min_delta`` (strictly: improving by exactly ``min_delta`` is not an
      improvement). ``NaN`` is never an improvement (not even on the first call).
    - On an improvement: ``best_loss = val_loss``, ``counter = 0``, and ``best_state`` = a **copy**
      of the current ``model.state_dict()`` (``.clone()`` every tensor, or ``copy.deepcopy``: it
      must not change when the model changes later).
    - Otherwise: ``counter += 1``; when ``counter >= patience``, ``early_stop = True``. So with
      ``patience=3`` the third non-improving call in a row returns ``True``; with ``patience`` 0 or
      1 the first non-improving call stops.
    - Keep everything in memory: write no file (such as ``best_model.pth``); while grading the
      current folder may be read-only.
    """

    def __init__(self, patience: int = 7, min_delta: float = 0.0) -> None:
        raise NotImplementedError("TODO: EarlyStopping.__init__")

    def __call__(self, val_loss: float, model: nn.Module) -> bool:
        raise NotImplementedError("TODO: EarlyStopping.__call__")


def make_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """线性预热 + 余弦退火的学习率调度器，返回 ``torch.optim.lr_scheduler.LambdaLR``。

    ``LambdaLR`` 把每个参数组的学习率设为 ``基础学习率 × factor(step)``，``step`` 是已经调用
    ``scheduler.step()`` 的次数（创建时为 0）。请返回 ``LambdaLR(optimizer, factor)``，其中：

    - ``step < warmup_steps``：``factor = (step + 1) / warmup_steps``（第 0 步就大于 0，
      第 ``warmup_steps - 1`` 步达到 1）；
    - ``warmup_steps <= step < total_steps``：令 ``p = (step - warmup_steps) / (total_steps - warmup_steps)``，
      ``factor = min_lr_ratio + (1 - min_lr_ratio) × 0.5 × (1 + cos(π·p))``（从 1 降到 ``min_lr_ratio``）；
    - ``step >= total_steps``：``factor = min_lr_ratio``（保持最小值，余弦不能再升回去）。
    - ``warmup_steps = 0`` 表示没有预热（不能除以 0）；``warmup_steps == total_steps`` 表示预热后直接
      保持 ``min_lr_ratio``。``0 <= warmup_steps <= total_steps``，``total_steps >= 1``。
    - ``factor`` 是**倍数**：每个参数组按它自己的基础学习率缩放，不要返回或直接写入绝对学习率。
      ``factor`` 只能依赖传入的 ``step``，不要自己计数：从 ``state_dict()`` 恢复的调度器必须从
      原来的步数继续。

    A learning-rate schedule with linear warm-up and cosine decay, returned as a
    ``torch.optim.lr_scheduler.LambdaLR``.

    ``LambdaLR`` sets each parameter group's learning rate to ``base lr × factor(step)``, where
    ``step`` counts the ``scheduler.step()`` calls so far (0 when it is created). Return
    ``LambdaLR(optimizer, factor)`` with:

    - ``step < warmup_steps``: ``factor = (step + 1) / warmup_steps`` (above 0 at step 0, 1 at
      step ``warmup_steps - 1``);
    - ``warmup_steps <= step < total_steps``: with
      ``p = (step - warmup_steps) / (total_steps - warmup_steps)``,
      ``factor = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * p))`` (from 1 down to
      ``min_lr_ratio``);
    - ``step >= total_steps``: ``factor = min_lr_ratio`` (it stays at the minimum; the cosine must
      not rise again).
    - ``warmup_steps = 0`` means no warm-up (no division by zero); ``warmup_steps == total_steps``
      means ``min_lr_ratio`` right after the warm-up. ``0 <= warmup_steps <= total_steps`` and
      ``total_steps >= 1``.
    - ``factor`` is a **multiplier**: every parameter group scales its own base learning rate; do
      not return or write absolute learning rates. ``factor`` depends only on the ``step`` it is
      given, never on a counter of its own: a scheduler restored from ``state_dict()`` must carry
      on from the step it had reached.
    """
    raise NotImplementedError("TODO: make_warmup_cosine")


def clipped_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                 max_norm: float) -> float:
    """带梯度裁剪的一步更新，返回裁剪**前**的总梯度范数（Python ``float``）。

    - 顺序：``optimizer.zero_grad()`` → ``loss.backward()`` → 把所有参数梯度的**全局** L2 范数
      裁剪到 ``max_norm``（``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)``）→
      ``optimizer.step()``。裁剪必须在 ``step()`` 之前，否则这一步用的还是没裁剪的梯度。
    - ``loss`` 是评分程序用 ``model`` 算出的标量损失；参数的 ``.grad`` 在调用前可能还留着旧值
      （所以要先 ``zero_grad()``）。
    - 全局范数 ``total = sqrt(Σ_p ||p.grad||²)``，只算有梯度的参数（冻结的参数 ``grad`` 为 ``None``，
      它们不参与也不被更新）。``total > max_norm`` 时所有梯度乘以同一个系数
      ``max_norm / (total + 1e-6)``（方向不变），否则不变。不是对每个元素截断（``clamp``），也不是
      每个参数分别裁剪。
    - 返回 ``total``（``clip_grad_norm_`` 的返回值，即裁剪前的范数），不是裁剪后的范数。
    - 参数可能是 float64。

    One optimisation step with gradient clipping; return the total gradient norm **before**
    clipping (a Python ``float``).

    - In this order: ``optimizer.zero_grad()`` → ``loss.backward()`` → clip the **global** L2 norm
      of all parameter gradients to ``max_norm``
      (``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)``) → ``optimizer.step()``.
      Clip before ``step()``, or the step uses the unclipped gradients.
    - ``loss`` is a scalar the grader computed with ``model``; the parameters' ``.grad`` may still
      hold old values before the call (hence ``zero_grad()`` first).
    - The global norm is ``total = sqrt(sum over p of ||p.grad||^2)`` over the parameters that have
      a gradient (frozen ones have ``grad`` None: they take no part and are not updated). If
      ``total > max_norm`` every gradient is multiplied by the same ``max_norm / (total + 1e-6)``
      (the direction is kept); otherwise they stay as they are. Not an element-wise ``clamp``, and
      not each parameter clipped on its own.
    - Return ``total`` (what ``clip_grad_norm_`` returns: the norm before clipping), not the norm
      after clipping.
    - The parameters may be float64.
    """
    raise NotImplementedError("TODO: clipped_step")
