"""练习 7：迁移学习与冻结 / Exercise 7: transfer learning and freezing.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex07`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex07`` (one task: ``grader check ex07 -k freeze_all_but``).

评分程序在它自己的代码里创建模型（包括课程自带的“预训练”数字主干），交给你的函数，然后检查参数、
``requires_grad``、梯度、BatchNorm 统计量和输出。评分环境**没有网络**：不要下载任何东西。
The grader builds the models in its own code (the course's "pretrained" digits backbone among
them), hands them to your functions and inspects parameters, ``requires_grad`` flags, gradients,
BatchNorm statistics and outputs. The grader has **no network**: download nothing.

前缀规则（任务 1 和 3 共用）：前缀 ``p`` 匹配参数名 ``name`` 当且仅当 ``name == p`` 或
``name.startswith(p + ".")``。所以 ``"fc"`` 匹配 ``fc.weight``，但不匹配 ``fc_extra.weight``。
The prefix rule (tasks 1 and 3): a prefix ``p`` matches a parameter name ``name`` exactly when
``name == p`` or ``name.startswith(p + ".")``. So ``"fc"`` matches ``fc.weight`` but not
``fc_extra.weight``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def freeze_all_but(model: nn.Module, trainable_prefixes: Sequence[str]) -> list[str]:
    """冻结除指定前缀外的所有参数，返回可训练参数名的列表。

    - 遍历 ``model.named_parameters()``：名字匹配 ``trainable_prefixes`` 中任一前缀（见模块说明的前缀
      规则）的参数设 ``requires_grad=True``（即使它之前被冻结），其余参数设 ``requires_grad=False``。
    - 返回可训练参数全名（如 ``"fc.weight"``）的**排序**列表（``list[str]``）。
    - ``trainable_prefixes`` 为空时冻结全部参数并返回 ``[]``。用同样的参数调用两次结果不变；换一组前缀
      再调用，会按新前缀重新设置（之前冻结的可以被解冻）。
    - 冻结靠 ``requires_grad``：``model.eval()`` 不会冻结任何参数（它只切换 Dropout/BN 的行为），
      也不要用 ``torch.no_grad()`` 包住某些层的前向。不要改变模型的 train/eval 模式。

    Freeze every parameter except those whose name matches a prefix; return the trainable names.

    - Walk ``model.named_parameters()``: a parameter whose name matches any prefix in
      ``trainable_prefixes`` (the prefix rule in the module docstring) gets
      ``requires_grad=True`` (even if it was frozen before), every other one
      ``requires_grad=False``.
    - Return the **sorted** list (``list[str]``) of the trainable parameters' full names (such as
      ``"fc.weight"``).
    - An empty ``trainable_prefixes`` freezes everything and returns ``[]``. Calling twice with the
      same prefixes changes nothing; calling again with other prefixes re-applies the rule (what was
      frozen may be unfrozen).
    - Freezing is done through ``requires_grad``: ``model.eval()`` freezes nothing (it only
      switches Dropout/BatchNorm behaviour), and do not run some layers' forward under
      ``torch.no_grad()``. Leave the model's train/eval mode as it is.
    """
    raise NotImplementedError("TODO: freeze_all_but")


def replace_classifier(model: nn.Module, num_classes: int, attr: str = "fc") -> nn.Module:
    """把模型的分类头换成新的 ``nn.Linear``，输入维度取自旧的分类头。

    - ``attr`` 是分类头在模型中的路径，可以带点号，例如 ``"fc"`` 或 ``"classifier.3"``
      （``model.classifier[3]``）。点号路径要逐级 ``getattr`` 找到父模块，再对父模块 ``setattr``；
      ``setattr(model, "classifier.3", …)`` 只会造出一个无用的新属性，前向传播仍用旧层。
    - 旧的分类头可以是 ``nn.Linear``，也可以是容器（例如 ``nn.Sequential(nn.Dropout(0.3), nn.Linear(…))``）：
      ``in_features`` 取旧头中第一个 ``nn.Linear``（按 ``old.modules()`` 的顺序）的 ``in_features``，不要写死。
      整个旧头（``attr`` 处的模块）被替换为 ``nn.Linear(in_features, num_classes)``（带偏置）。
    - 新层与旧层在同一设备、同一 dtype 上（例如 ``model.double()`` 或 ``"meta"`` 设备上的模型）：
      ``nn.Linear(..., device=old.weight.device, dtype=old.weight.dtype)``。
    - 新层可训练（新建的层本来就是 ``requires_grad=True``），即使模型之前已被整体冻结；模型其余部分
      （参数值和 ``requires_grad``）保持不变。
    - 在原模型上修改，并返回这个模型本身。

    Swap the model's classifier head for a new ``nn.Linear`` whose input size comes from the old head.

    - ``attr`` is the head's path in the model and may be dotted: ``"fc"`` or ``"classifier.3"``
      (``model.classifier[3]``). Resolve a dotted path with ``getattr`` down to the parent module,
      then ``setattr`` on the parent; ``setattr(model, "classifier.3", …)`` only creates a useless
      new attribute and forward keeps using the old layer.
    - The old head is an ``nn.Linear`` or a container (e.g.
      ``nn.Sequential(nn.Dropout(0.3), nn.Linear(…))``): ``in_features`` is that of the first
      ``nn.Linear`` in it (in ``old.modules()`` order); never hard-code it. The whole old head (the
      module at ``attr``) is replaced by ``nn.Linear(in_features, num_classes)`` (with bias).
    - The new layer is on the old one's device and dtype (a model after ``.double()`` or on the
      ``"meta"`` device): ``nn.Linear(..., device=old.weight.device, dtype=old.weight.dtype)``.
    - The new layer is trainable (new layers are ``requires_grad=True``) even if the model was
      frozen before; the rest of the model (values and ``requires_grad``) stays as it was.
    - Modify the model in place and return that same model.
    """
    raise NotImplementedError("TODO: replace_classifier")


def discriminative_param_groups(model: nn.Module, lr_map: dict[str, float],
                                default_lr: float | None = None) -> list[dict]:
    """按参数名前缀分配不同的学习率，生成可直接传给 ``torch.optim`` 优化器的参数组。

    - 返回 ``list[dict]``，每个 dict 为 ``{"params": [参数, …], "lr": float}``，例如可用于
      ``torch.optim.Adam(groups)`` 或 ``torch.optim.SGD(groups, lr=…)``。组的顺序和分组方式随意，
      但每个参数的学习率必须正确；没有参数的组可以省略。
    - 只包含可训练参数（``requires_grad=True``）：冻结参数不能进入优化器（它们可能还带着旧的 ``.grad``，
      进入优化器就会被更新）。每个可训练参数**恰好出现一次**（重复出现时 Adam 会报错）。
    - 参数的学习率：在 ``lr_map`` 中找出所有匹配它名字的前缀（前缀规则见模块说明），取**最长**的那个
      前缀的学习率（``"blocks.2"`` 优先于 ``"blocks"``）；没有前缀匹配时用 ``default_lr``。
    - 某个可训练参数没有前缀匹配且 ``default_lr is None`` 时，抛出 ``ValueError``。

    Per-prefix learning rates: build parameter groups that a ``torch.optim`` optimizer accepts.

    - Return a ``list[dict]``, each ``{"params": [parameter, …], "lr": float}``, usable as
      ``torch.optim.Adam(groups)`` or ``torch.optim.SGD(groups, lr=…)``. The order of the groups and
      how parameters are grouped are free, but every parameter's learning rate must be right;
      groups without parameters may be left out.
    - Only trainable parameters (``requires_grad=True``): frozen ones must stay out of the
      optimizer (they may still hold a stale ``.grad``, and the optimizer would move them). Every
      trainable parameter appears **exactly once** (Adam raises on duplicates).
    - A parameter's learning rate: of the prefixes in ``lr_map`` that match its name (the prefix
      rule in the module docstring) the **longest** wins (``"blocks.2"`` over ``"blocks"``); with
      no matching prefix it gets ``default_lr``.
    - A trainable parameter that no prefix matches while ``default_lr is None`` raises
      ``ValueError``.
    """
    raise NotImplementedError("TODO: discriminative_param_groups")


def train_with_frozen_bn(model: nn.Module) -> nn.Module:
    """让模型进入训练模式，但所有 BatchNorm 层保持 eval（不更新运行统计量）并冻结其仿射参数。

    - 先 ``model.train()``（Dropout 等层要处于训练模式），**然后**把每个 BatchNorm 层设为 eval：
      顺序很重要，``model.train()`` 会把所有子模块（包括 BN）切回训练模式。
    - “BatchNorm 层”指 ``isinstance(m, nn.modules.batchnorm._BatchNorm)`` 的模块：包括
      ``BatchNorm1d/2d/3d`` 和它们之外的子类（如 ``SyncBatchNorm``），不只是 ``BatchNorm2d``。
    - 每个 BN 层的 ``weight`` 和 ``bias`` 设 ``requires_grad=False``；其余层的 ``requires_grad``
      保持原样（不要冻结或解冻它们）。
    - 不要修改 ``track_running_stats``（设为 False 会让 BN 在训练模式下改用批统计量）。
    - 效果：之后的训练前向传播中 BN 用运行统计量做归一化，``running_mean``、``running_var``、
      ``num_batches_tracked`` 都不变。
    - 之后调用 ``model.train()`` 会撤销这个效果：训练循环应在每个 epoch 开始时调用本函数，
      而不是 ``model.train()``。返回传入的模型本身。

    Put the model in train mode, except every BatchNorm layer, which stays in eval mode (its
    running statistics frozen) with its affine parameters frozen.

    - First ``model.train()`` (Dropout and the rest in train mode), **then** put each BatchNorm
      layer in eval: the order matters, ``model.train()`` switches every sub-module (BN included)
      back to training.
    - "BatchNorm layer" means ``isinstance(m, nn.modules.batchnorm._BatchNorm)``: ``BatchNorm1d/2d/3d``
      and other subclasses (like ``SyncBatchNorm``), not just ``BatchNorm2d``.
    - Each BN layer's ``weight`` and ``bias`` get ``requires_grad=False``; every other layer keeps
      its ``requires_grad`` as it was (do not freeze or unfreeze it).
    - Don't change ``track_running_stats`` (False makes BN normalise with batch statistics in train
      mode).
    - Effect: in later training forward passes BN normalises with its running statistics, and
      ``running_mean``, ``running_var`` and ``num_batches_tracked`` stay unchanged.
    - Calling ``model.train()`` afterwards undoes this: a training loop calls this function at the
      start of every epoch instead of ``model.train()``. Return the model you were given.
    """
    raise NotImplementedError("TODO: train_with_frozen_bn")


def finetune_few_shot(backbone: nn.Module, feat_dim: int, x: torch.Tensor, y: torch.Tensor,
                      num_classes: int, epochs: int = 200, lr: float = 1e-2) -> nn.Module:
    """冻结预训练主干，只训练一个新的线性分类头，完成小样本分类。

    - ``backbone``：预训练主干，把 ``(N, 1, 8, 8)`` 的 float32 图像（取值 0–1）映射为 ``(N, feat_dim)``
      的特征；它含有 BatchNorm。交给你时它处于**训练模式**、所有参数可训练，并且参数上还留着预训练时的
      ``.grad``。
    - ``x``：``(N, 1, 8, 8)`` float32 训练图像（每类只有几张）；``y``：``(N,)`` int64 标签，取值
      ``0 … num_classes-1``（是否重映射由调用者决定，你不用处理）。
    - 要求：冻结主干（``requires_grad_(False)``）并让它保持 ``eval()``（训练中它的参数和 BN 运行统计量
      一位都不能变）；新建 ``head = nn.Linear(feat_dim, num_classes)``；优化器**只**接收 ``head`` 的参数
      （``torch.optim.Adam(head.parameters(), lr=lr)``）：主干残留的 ``.grad`` 或 weight decay 会更新
      传给优化器的“冻结”参数。用交叉熵在整批 ``x`` 上训练 ``epochs`` 步（每步 ``zero_grad`` →
      ``backward`` → ``step``）。
    - 训练中不要对整个模型调用 ``.train()``（会把主干的 BN 切回训练模式）。
    - 返回 ``nn.Sequential(backbone, head)``（传入的主干对象本身，不是副本），输出 ``(B, num_classes)``
      的 logits。

    Freeze a pretrained backbone and train only a new linear head on a few labelled samples.

    - ``backbone``: a pretrained network mapping float32 images ``(N, 1, 8, 8)`` (values in 0–1)
      to features ``(N, feat_dim)``; it contains BatchNorm. It comes to you in **train mode**,
      every parameter trainable and still holding the ``.grad`` its pretraining left.
    - ``x``: ``(N, 1, 8, 8)`` float32 training images (a few per class); ``y``: ``(N,)`` int64
      labels in ``0 … num_classes-1`` (any remapping is the caller's business).
    - Freeze the backbone (``requires_grad_(False)``) and keep it in ``eval()`` (not one bit of its
      parameters or BatchNorm running statistics may change in training); create
      ``head = nn.Linear(feat_dim, num_classes)``; give the optimizer the head's parameters
      **only** (``torch.optim.Adam(head.parameters(), lr=lr)``): the backbone's stale ``.grad`` or
      weight decay would move "frozen" parameters handed to an optimizer. Train with cross-entropy
      on the full batch ``x`` for ``epochs`` steps (``zero_grad`` → ``backward`` → ``step`` each).
    - Never call ``.train()`` on the whole model while training (it puts the backbone's BN back in
      training mode).
    - Return ``nn.Sequential(backbone, head)`` (the backbone object you were given, not a copy); it
      outputs ``(B, num_classes)`` logits.
    """
    raise NotImplementedError("TODO: finetune_few_shot")


def build_resnet18_transfer(num_classes: int, in_channels: int = 3, freeze_backbone: bool = True) -> nn.Module:
    """离线构建用于迁移学习的 torchvision resnet18：无预训练权重，新的 fc，可选冻结主干和单通道输入。

    - 用 ``torchvision.models.resnet18(weights=None)`` 构建（评分环境离线：``pretrained=True`` 或
      ``weights="DEFAULT"`` 会尝试下载权重，直接失败）。返回这个 ``ResNet`` 对象，保留它的子模块名
      （``conv1``、``bn1``、``layer1`` … ``layer4``、``fc``）。
    - ``freeze_backbone=True`` 时冻结所有原有参数（``requires_grad=False``）；``False`` 时全部可训练。
    - ``in_channels != 3`` 时把 ``conv1`` 换成 ``nn.Conv2d(in_channels, 64, kernel_size=7, stride=2,
      padding=3, bias=False)``；``fc`` 换成 ``nn.Linear(in_features, num_classes)``，``in_features``
      先从旧的 ``fc`` 读取（512）再替换。新建的层必须可训练：在冻结**之后**创建它们。
    - 所以 ``freeze_backbone=True`` 时可训练的只有 ``fc.*``（以及新的 ``conv1.weight``）。
    - 输入 ``(B, in_channels, H, W)``（例如 32×32），输出 ``(B, num_classes)``；eval 模式下 ``B = 1`` 也可以。

    Build a torchvision resnet18 for transfer learning, offline: no pretrained weights, a new fc,
    an optional frozen backbone and an optional 1-channel stem.

    - Build it with ``torchvision.models.resnet18(weights=None)`` (the grader is offline:
      ``pretrained=True`` or ``weights="DEFAULT"`` tries to download weights and fails). Return
      that ``ResNet`` object with its sub-module names (``conv1``, ``bn1``, ``layer1`` … ``layer4``,
      ``fc``).
    - ``freeze_backbone=True`` freezes every original parameter (``requires_grad=False``);
      ``False`` leaves everything trainable.
    - With ``in_channels != 3`` replace ``conv1`` by ``nn.Conv2d(in_channels, 64, kernel_size=7,
      stride=2, padding=3, bias=False)``; replace ``fc`` by ``nn.Linear(in_features, num_classes)``,
      reading ``in_features`` from the old ``fc`` (512) before replacing it. New layers must be
      trainable: create them **after** freezing.
    - So with ``freeze_backbone=True`` only ``fc.*`` (and a new ``conv1.weight``) are trainable.
    - Input ``(B, in_channels, H, W)`` (32×32, say), output ``(B, num_classes)``; ``B = 1`` works in
      eval mode.
    """
    raise NotImplementedError("TODO: build_resnet18_transfer")
