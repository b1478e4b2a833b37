"""练习 10：高级技巧 I：损失、正则、归一化 / Exercise 10: losses, regularisation, normalisation.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex10`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex10`` (one task: ``grader check ex10 -k layer_norm``).

评分程序在它自己的代码里创建你的模块和模型，并与 PyTorch 自带的 ``F.cross_entropy``、``F.linear``、
``F.batch_norm``、``F.layer_norm`` 比较，所以请严格按下面写明的签名、属性名和约定实现。
所有函数和模块都要支持 ``float64``；新建的张量要放在输入（或参数）所在的设备上，``meta`` 设备也要能运行。
The grader builds your modules and models in its own code and compares them with PyTorch's own
``F.cross_entropy``, ``F.linear``, ``F.batch_norm`` and ``F.layer_norm``, so keep to the signatures,
attribute names and conventions stated below. Everything must work in ``float64``; make new tensors on
the device of the inputs (or parameters): the ``meta`` device must work too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """多分类 focal loss：``loss_i = -alpha_t · (1 − pt)^gamma · log(pt)``。

    - ``FocalLoss(alpha=None, gamma=2.0, reduction="mean")``；``reduction`` 只能是 ``"mean"``、``"sum"``、
      ``"none"``，否则在 ``__init__`` 中抛出 ``ValueError``。
    - ``forward(logits, target)``：``logits`` 为 ``(N, C)`` 的原始分数（浮点），``target`` 为 ``(N,)`` 的 int64 类别下标。
    - ``log(pt)`` 是目标类别的 ``log_softmax(logits, dim=1)``，``pt = exp(log(pt))``。**请用 ``log_softmax``**：
      先 ``softmax`` 再 ``log`` 在 logit 约为 ±100 时会得到 ``log(0)``。``pt`` 不要 ``detach``：
      调制因子 ``(1 − pt)^gamma`` 的梯度也要传播。
    - ``alpha``：``None`` 表示 ``alpha_t = 1``；一个浮点数表示每个样本都乘以这个数；形状 ``(C,)`` 的张量表示每类权重，
      ``alpha_t = alpha[target_i]``（按目标类别取值）。张量 ``alpha`` 可能是 ``float32`` 而 logits 是 ``float64``：
      使用前转换到 logits 的 dtype 和设备。
    - ``reduction="mean"`` 返回 N 个 ``loss_i`` 的**算术平均**（除以 N，即使给了 ``alpha``；这与
      ``F.cross_entropy(weight=…)`` 除以权重之和不同），``"sum"`` 返回总和（两者都是形状 ``()`` 的标量），
      ``"none"`` 返回 ``(N,)``。
    - 因此 ``gamma=0``、``alpha=None`` 时等于 ``F.cross_entropy(logits, target, reduction=...)``，梯度也相同。

    Multi-class focal loss: ``loss_i = -alpha_t · (1 − pt)^gamma · log(pt)``.

    - ``FocalLoss(alpha=None, gamma=2.0, reduction="mean")``; ``reduction`` is ``"mean"``, ``"sum"`` or
      ``"none"``, anything else raises ``ValueError`` in ``__init__``.
    - ``forward(logits, target)``: ``logits`` are ``(N, C)`` raw floating-point scores, ``target`` an
      ``(N,)`` int64 tensor of class indices.
    - ``log(pt)`` is ``log_softmax(logits, dim=1)`` at the target class and ``pt = exp(log(pt))``. **Use
      ``log_softmax``**: ``softmax`` followed by ``log`` gives ``log(0)`` for logits around ±100. Do not
      detach ``pt``: the gradient of the factor ``(1 − pt)^gamma`` must flow too.
    - ``alpha``: ``None`` means ``alpha_t = 1``; a float multiplies every sample's loss; a ``(C,)`` tensor
      holds per-class weights and ``alpha_t = alpha[target_i]`` (gathered by target class). A tensor
      ``alpha`` may be ``float32`` while the logits are ``float64``: convert it to the logits' dtype and
      device before use.
    - ``reduction="mean"`` returns the **plain average** of the N values ``loss_i`` (divided by N, with
      ``alpha`` too; unlike ``F.cross_entropy(weight=...)``, which divides by the sum of the weights),
      ``"sum"`` their sum (both scalars of shape ``()``), ``"none"`` the ``(N,)`` vector.
    - So with ``gamma=0`` and ``alpha=None`` it equals ``F.cross_entropy(logits, target, reduction=...)``,
      gradients included.
    """

    def __init__(self, alpha: float | torch.Tensor | None = None, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        raise NotImplementedError("TODO: FocalLoss.__init__")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: FocalLoss.forward")


class LabelSmoothingCE(nn.Module):
    """标签平滑交叉熵，采用 PyTorch 的约定：平滑后的目标分布在目标类别上为 ``1 − ε + ε/C``，其它每个类别为 ``ε/C``。

    - ``LabelSmoothingCE(num_classes, smoothing=0.1, ignore_index=-100)``；``ε = smoothing``，``C = num_classes``；
      ``smoothing`` 不在 ``[0, 1]`` 内时在 ``__init__`` 中抛出 ``ValueError``。
      （另一种常见写法是其它类别 ``ε/(C−1)``：**本题不用它**。）
    - ``forward(logits, target)``：``logits`` 为 ``(N, C)`` 或 ``(N, C, d1, ...)``（类别在第 1 维，与
      ``F.cross_entropy`` 相同），``target`` 为 ``(N,)`` 或 ``(N, d1, ...)`` 的 int64。``logits.size(1) != C`` 时抛出 ``ValueError``。
    - 每个位置的损失为 ``−Σ_c q_c · log_softmax(logits, dim=1)_c``，``q`` 是上面的平滑分布；
      等价地 ``(1 − ε) · nll + ε · mean_c(−log p_c)``。
    - ``target == ignore_index`` 的位置不计入损失，**也不计入分母**：返回未被忽略位置的平均值（形状 ``()`` 的标量）。
      这与 ``F.cross_entropy(logits, target, label_smoothing=ε, ignore_index=...)`` 的数值和梯度相同。
    - **所有**目标都被忽略时返回 0（仍在计算图上，梯度为 0），不能是 NaN。这里规格与 ``F.cross_entropy`` 不同（它返回 NaN）。
    - 向量化（``gather``、``scatter_`` 或 ``one_hot``），不要在 Python 中逐行循环：计时测试会与参考实现比较（最多慢 3 倍）。

    Label-smoothed cross-entropy with PyTorch's convention: the smoothed target distribution is
    ``1 − ε + ε/C`` on the target class and ``ε/C`` on every other class.

    - ``LabelSmoothingCE(num_classes, smoothing=0.1, ignore_index=-100)``; ``ε = smoothing``, ``C = num_classes``;
      raise ``ValueError`` in ``__init__`` when ``smoothing`` is not in ``[0, 1]``.
      (Another common form puts ``ε/(C−1)`` on the other classes: **not this one**.)
    - ``forward(logits, target)``: ``logits`` are ``(N, C)`` or ``(N, C, d1, ...)`` (classes on dim 1, as
      in ``F.cross_entropy``), ``target`` is ``(N,)`` or ``(N, d1, ...)`` int64. Raise ``ValueError`` when
      ``logits.size(1) != C``.
    - Each position's loss is ``−Σ_c q_c · log_softmax(logits, dim=1)_c`` with ``q`` the smoothed
      distribution above; equivalently ``(1 − ε) · nll + ε · mean_c(−log p_c)``.
    - Positions where ``target == ignore_index`` add nothing **and are not counted in the denominator**:
      return the mean over the positions that are not ignored (a scalar of shape ``()``). This equals
      ``F.cross_entropy(logits, target, label_smoothing=ε, ignore_index=...)``, values and gradients.
    - When **every** target is ignored return 0 (still on the graph, with zero gradient), never NaN. Here
      the spec differs from ``F.cross_entropy`` (which returns NaN).
    - Vectorised (``gather``, ``scatter_`` or ``one_hot``), no Python loop over rows: a timing test
      compares you with the reference (at most 3 times slower).
    """

    def __init__(self, num_classes: int, smoothing: float = 0.1, ignore_index: int = -100) -> None:
        super().__init__()
        raise NotImplementedError("TODO: LabelSmoothingCE.__init__")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: LabelSmoothingCE.forward")


class DropConnectLinear(nn.Module):
    """DropConnect 线性层：训练时随机丢弃**权重**（不是激活），保留的权重除以 ``(1 − p)``；评估时就是普通的线性层。

    - ``DropConnectLinear(in_features, out_features, p=0.5, bias=True, generator=None)``；``p`` 必须在 ``[0, 1)``
      内，否则在 ``__init__`` 中抛出 ``ValueError``。
    - 参数与 ``nn.Linear`` 相同（评分程序会 ``load_state_dict``）：``self.weight`` 为 ``nn.Parameter``，形状
      ``(out_features, in_features)``；``self.bias`` 形状 ``(out_features,)``，``bias=False`` 时没有偏置参数
      （``self.register_parameter("bias", None)``）。初始化与 ``nn.Linear`` 相同：``weight`` 用
      ``nn.init.kaiming_uniform_(weight, a=math.sqrt(5))``，偏置取 ``±1/√in_features`` 上的均匀分布。
    - ``forward(x)``：``x`` 为 ``(B, in_features)``，返回 ``(B, out_features)``。
      - 训练模式（``self.training``）且 ``p > 0``：每次前向重新生成**一个**与 ``weight`` 同形状的 0/1 掩码 ``M``
        （每个权重独立地以概率 ``1 − p`` 保留，例如 ``rand >= p``），整个批共享这一个掩码，返回
        ``F.linear(x, weight * M / (1 − p), bias)``。偏置从不丢弃。
      - 评估模式，或 ``p == 0``：返回 ``F.linear(x, weight, bias)``，不缩放、不丢弃。
      - 所以期望上训练输出等于评估输出。
    - 掩码用 ``generator`` 生成（``torch.rand(..., generator=self.generator)``；``None`` 表示全局随机数生成器）：
      传入同一种子的生成器会得到相同的输出，而且不改变全局随机数状态。
    - 掩码要建在权重所在的设备上、用权重的 dtype（``device=self.weight.device``，或 ``torch.rand_like``）：
      在 ``meta`` 设备上、训练模式下也要能运行。梯度要传到 ``weight``、``bias`` 和 ``x``。

    A DropConnect linear layer: in training it randomly drops **weights** (not activations) and divides
    the kept ones by ``(1 − p)``; in eval mode it is a plain linear layer.

    - ``DropConnectLinear(in_features, out_features, p=0.5, bias=True, generator=None)``; ``p`` must lie
      in ``[0, 1)``, otherwise raise ``ValueError`` in ``__init__``.
    - Parameters as in ``nn.Linear`` (the grader calls ``load_state_dict``): ``self.weight`` an
      ``nn.Parameter`` of shape ``(out_features, in_features)``; ``self.bias`` of shape ``(out_features,)``,
      and no bias parameter when ``bias=False`` (``self.register_parameter("bias", None)``). Initialise
      them as ``nn.Linear`` does: ``nn.init.kaiming_uniform_(weight, a=math.sqrt(5))`` for the weight, the
      bias uniform on ``±1/√in_features``.
    - ``forward(x)``: ``x`` is ``(B, in_features)``; return ``(B, out_features)``.
      - Train mode (``self.training``) with ``p > 0``: draw **one** fresh 0/1 mask ``M`` of the weight's
        shape on every forward (each weight kept independently with probability ``1 − p``, e.g.
        ``rand >= p``), shared by the whole batch, and return
        ``F.linear(x, weight * M / (1 − p), bias)``. The bias is never dropped.
      - Eval mode, or ``p == 0``: return ``F.linear(x, weight, bias)``, no scaling, nothing dropped.
      - So in expectation the train-mode output equals the eval-mode one.
    - Draw the mask with ``generator`` (``torch.rand(..., generator=self.generator)``; ``None`` means the
      global generator): a generator seeded the same gives the same output, and the global RNG state is
      left alone.
    - Make the mask on the weight's device with the weight's dtype (``device=self.weight.device``, or
      ``torch.rand_like``): the layer must run in train mode on the ``meta`` device. Gradients reach
      ``weight``, ``bias`` and ``x``.
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        raise NotImplementedError("TODO: DropConnectLinear.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: DropConnectLinear.forward")


def batch_norm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                       running_var: torch.Tensor, training: bool, momentum: float = 0.1,
                       eps: float = 1e-5) -> torch.Tensor:
    """手写 BatchNorm 前向，与 ``F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)`` 相同。

    - ``x`` 为 ``(N, C)``、``(N, C, L)`` 或 ``(N, C, H, W)``：通道在第 1 维，每个通道在**其余所有维**
      （``(N,)``、``(N, L)``、``(N, H, W)``）上统计。``weight``、``bias``、``running_mean``、``running_var`` 都是 ``(C,)``。
    - ``training=True``：用当前批的均值和**有偏**方差归一化：``y = (x − mean) / sqrt(var + eps) · weight + bias``；
      并**原地**更新调用者的 ``running_mean`` 和 ``running_var``（``mul_``/``add_`` 或 ``copy_``，不要换成新张量）：
      ``running = (1 − momentum) · running + momentum · batch_stat``，其中运行方差使用**无偏**方差
      （有偏方差乘以 ``n/(n − 1)``，``n = x.numel() // C`` 是每个通道的值个数）。
      这个更新不进入计算图（在 ``torch.no_grad()`` 中进行，或用 ``detach()``）。
      ``n == 1``（例如训练时输入为 ``(1, C)``）时抛出 ``ValueError``，与 PyTorch 相同；``(1, C, H, W)`` 是可以的。
    - ``training=False``：用 ``running_mean``、``running_var`` 归一化，不修改它们。
    - 返回与 ``x`` 同形状、同 dtype 的张量；梯度要传到 ``x``、``weight`` 和 ``bias``。``meta`` 设备上也要能运行。

    Batch norm's forward pass by hand, equal to
    ``F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)``.

    - ``x`` is ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``: channels on dim 1, and each channel's
      statistics are taken over **all the other dims** (``(N,)``, ``(N, L)``, ``(N, H, W)``). ``weight``,
      ``bias``, ``running_mean`` and ``running_var`` are ``(C,)``.
    - ``training=True``: normalise with the batch mean and the **biased** batch variance,
      ``y = (x − mean) / sqrt(var + eps) · weight + bias``, and update the caller's ``running_mean`` and
      ``running_var`` **in place** (``mul_``/``add_`` or ``copy_``, not new tensors):
      ``running = (1 − momentum) · running + momentum · batch_stat``, where the running variance takes the
      **unbiased** variance (the biased one times ``n/(n − 1)``, ``n = x.numel() // C`` values per
      channel). Keep that update off the autograd graph (inside ``torch.no_grad()``, or ``detach()``).
      Raise ``ValueError`` when ``n == 1`` (e.g. a ``(1, C)`` input in training), as PyTorch does; a
      ``(1, C, H, W)`` input is fine.
    - ``training=False``: normalise with ``running_mean`` and ``running_var`` and leave them unchanged.
    - Return a tensor of ``x``'s shape and dtype; gradients reach ``x``, ``weight`` and ``bias``. It must
      run on the ``meta`` device too.
    """
    raise NotImplementedError("TODO: batch_norm_forward")


def layer_norm(x: torch.Tensor, normalized_shape: tuple[int, ...] | int, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """手写 LayerNorm，与 ``F.layer_norm(x, normalized_shape, weight, bias, eps)`` 相同。

    - ``normalized_shape`` 是一个整数或整数元组，等于 ``x`` 最后几维的形状（例如 ``x`` 为 ``(B, T, D)`` 时 ``(D,)``
      或 ``(T, D)``）；一个整数 ``D`` 表示 ``(D,)``。不相等时抛出 ``ValueError``。
    - 对每个样本，在最后 ``len(normalized_shape)`` 维上**一起**计算均值和**有偏**方差（``unbiased=False``；
      ``x.var()`` 默认是无偏的），``y = (x − mean) / sqrt(var + eps)``（``eps`` 在开方里面）。
    - ``weight``、``bias`` 形状为 ``normalized_shape`` 或 ``None``：``y = y · weight + bias``（为 ``None`` 的一项跳过）。
    - 返回与 ``x`` 同形状、同 dtype 的张量；输入可能不连续；梯度要传到 ``x``、``weight``、``bias``；``meta`` 设备上也要能运行。

    Layer norm by hand, equal to ``F.layer_norm(x, normalized_shape, weight, bias, eps)``.

    - ``normalized_shape`` is an int or a tuple of ints equal to the shape of ``x``'s last dims (for
      ``x`` of shape ``(B, T, D)``: ``(D,)`` or ``(T, D)``); an int ``D`` means ``(D,)``. Raise ``ValueError``
      when they differ.
    - For each sample, take the mean and the **biased** variance over the last
      ``len(normalized_shape)`` dims **together** (``unbiased=False``; ``x.var()`` is unbiased by
      default), and ``y = (x − mean) / sqrt(var + eps)`` (``eps`` inside the square root).
    - ``weight`` and ``bias`` have shape ``normalized_shape`` or are ``None``: ``y = y · weight + bias``
      (skipping a ``None``).
    - Return a tensor of ``x``'s shape and dtype; inputs may be non-contiguous; gradients reach ``x``,
      ``weight`` and ``bias``; it must run on the ``meta`` device too.
    """
    raise NotImplementedError("TODO: layer_norm")


def weight_decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """为优化器（如 ``torch.optim.AdamW``）构造两个参数组：需要权重衰减的参数和不需要的参数。

    - 返回 ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``，
      顺序固定；两个列表都是 ``nn.Parameter`` 对象（不是名字），其中一个可以为空。
    - **不衰减**（放进 ``no_decay``）：
      1. 归一化层的所有参数：按**模块类型**判断，``isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
         nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm))``
         （子类也算）；不要看模块的名字（名为 ``ln_f`` 的也可能是 LayerNorm，名为 ``normalizer`` 的也可能是 Linear）；
      2. 任何模块上名字恰好是 ``bias`` 的参数（看参数自己的名字，不要用 ``"bias" in name`` 这种子串匹配：
         ``unbiased_proj.weight`` 要衰减）。
    - **其余参数都衰减**：``nn.Linear``、``nn.Conv*``、``nn.Embedding`` 的 ``weight``，以及自定义的 ``nn.Parameter``
      （包括一维的，例如一个缩放向量：不要按 ``param.ndim == 1`` 判断）。
    - ``requires_grad=False`` 的（冻结的）参数不放进任何组；每个可训练参数**恰好出现一次**（共享的权重也只出现一次；
      ``model.named_parameters()`` 已经去重）。

    Two parameter groups for an optimizer (such as ``torch.optim.AdamW``): the parameters to decay and
    the ones not to.

    - Return ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``
      in this order; both lists hold ``nn.Parameter`` objects (not names), and either may be empty.
    - **Not decayed** (in ``no_decay``):
      1. every parameter of a normalisation layer, decided by **module type**:
         ``isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm))``
         (subclasses included), never by the module's name (a LayerNorm may be called ``ln_f``, a Linear
         ``normalizer``);
      2. any module's parameter whose own name is exactly ``bias`` (the parameter's own name, not a
         substring test such as ``"bias" in name``: ``unbiased_proj.weight`` is decayed).
    - **Every other parameter is decayed**: the ``weight`` of ``nn.Linear``, ``nn.Conv*`` and
      ``nn.Embedding``, and custom ``nn.Parameter``\\ s (1-D ones too, e.g. a scale vector: do not decide by
      ``param.ndim == 1``).
    - Parameters with ``requires_grad=False`` (frozen) are in no group; every trainable parameter is in
      **exactly one** group, once (a tied weight too; ``model.named_parameters()`` already lists it once).
    """
    raise NotImplementedError("TODO: weight_decay_param_groups")
