"""练习 3：nn.Module 与网络构建 / Exercise 3: nn.Module and building networks.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex03`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex03`` (one task: ``grader check ex03 -k count_parameters``).

评分程序会在它自己的代码里创建你的模块（例如 ``MLP(12, [10, 7], 5)``），运行、反向传播、训练几步，
并检查参数、``state_dict`` 的键名和输出。所以请严格遵守下面写明的结构和名字。
The grader builds your modules in its own code (e.g. ``MLP(12, [10, 7], 5)``), runs them,
back-propagates, trains them for a few steps and inspects their parameters, ``state_dict`` keys and
outputs, so keep to the structure and names stated below.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """可配置层数的全连接网络（多层感知机）。

    - ``MLP(in_dim, hidden_dims, out_dim, dropout=0.0, batch_norm=False)``。
    - 每个隐藏层 ``h``（按 ``hidden_dims`` 的顺序）依次是：``nn.Linear(上一层宽度, h)`` →
      ``nn.BatchNorm1d(h)``（仅当 ``batch_norm=True``）→ ``nn.ReLU()`` → ``nn.Dropout(dropout)``
      （仅当 ``dropout > 0``）。最后是 ``nn.Linear(最后宽度, out_dim)``，它**后面什么都没有**：
      输出是原始 logits（``CrossEntropyLoss`` 需要它），不能再接 ReLU 或 Dropout。
    - ``hidden_dims`` 可以为空：此时网络就是一个 ``nn.Linear(in_dim, out_dim)``。
    - 子层必须**注册**：放进 ``nn.ModuleList`` 或 ``nn.Sequential``，不能放在普通 Python 列表里，
      否则 ``parameters()``、``state_dict()``、``.to()``、``.train()/.eval()`` 都看不到它们。
    - ``forward(x)``：``x`` 形状为 ``(B, *)``，先从第 1 维展平成 ``(B, in_dim)``（``x.flatten(1)``），
      返回 ``(B, out_dim)``。不要用 ``x.view(-1, in_dim)``：特征数不对时它会悄悄改变批大小，
      而应该报错。``x`` 可能不连续（例如转置后的视图），``view`` 在这种输入上会失败。
    - 必须支持 ``.double()``、``.to("meta")``，以及 eval 模式下 ``B = 1``。

    A fully connected network (multi-layer perceptron) with a configurable number of layers.

    - ``MLP(in_dim, hidden_dims, out_dim, dropout=0.0, batch_norm=False)``.
    - Each hidden size ``h`` (in the order of ``hidden_dims``) adds, in this order:
      ``nn.Linear(previous width, h)`` → ``nn.BatchNorm1d(h)`` (only if ``batch_norm``) →
      ``nn.ReLU()`` → ``nn.Dropout(dropout)`` (only if ``dropout > 0``). Then comes
      ``nn.Linear(last width, out_dim)`` with **nothing after it**: the output is raw logits (what
      ``CrossEntropyLoss`` expects), no ReLU, no Dropout.
    - ``hidden_dims`` may be empty: the network is then a single ``nn.Linear(in_dim, out_dim)``.
    - Sub-layers must be **registered**: keep them in an ``nn.ModuleList`` or ``nn.Sequential``,
      not in a plain Python list, or ``parameters()``, ``state_dict()``, ``.to()`` and
      ``.train()/.eval()`` cannot see them.
    - ``forward(x)``: ``x`` has shape ``(B, *)``; flatten it from dimension 1 to ``(B, in_dim)``
      (``x.flatten(1)``) and return ``(B, out_dim)``. Do not use ``x.view(-1, in_dim)``: with the
      wrong number of features it silently changes the batch size instead of raising. ``x`` may be
      non-contiguous (a transposed view, say), where ``view`` fails.
    - It must work after ``.double()`` and ``.to("meta")``, and with ``B = 1`` in eval mode.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        raise NotImplementedError("TODO: MLP.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: MLP.forward")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """统计模型的参数个数（元素个数，不是张量个数），返回 Python ``int``。

    - ``trainable_only=True`` 时只统计 ``requires_grad=True`` 的参数；``False`` 时统计全部参数。
    - 共享（绑定）的参数只算一次，例如词嵌入和输出层共用同一个权重。
    - 缓冲区（buffer，例如 BatchNorm 的 ``running_mean``/``running_var``/``num_batches_tracked``）
      不是参数，不能计入。提示：``model.parameters()`` 已经去重，而 ``state_dict()`` 包含缓冲区。
    - 没有参数的模块返回 ``0``。

    Count a model's parameters (elements, not tensors) and return a Python ``int``.

    - With ``trainable_only=True`` count only parameters with ``requires_grad=True``; with
      ``False`` count them all.
    - A shared (tied) parameter counts once, e.g. an embedding and an output layer sharing one
      weight.
    - Buffers (BatchNorm's ``running_mean``/``running_var``/``num_batches_tracked``) are not
      parameters and must not be counted. Hint: ``model.parameters()`` already removes duplicates;
      ``state_dict()`` includes buffers.
    - A module without parameters gives ``0``.
    """
    raise NotImplementedError("TODO: count_parameters")


def init_weights(m: nn.Module) -> None:
    """初始化**一个**子模块的参数，用法：``model.apply(init_weights)``（``apply`` 会对每个子模块调用它）。

    - ``nn.Linear``：权重用 Xavier 均匀分布（``nn.init.xavier_uniform_``），偏置置 0。
    - ``nn.Conv2d``：权重用 Kaiming 正态分布，``mode="fan_out"``、``nonlinearity="relu"``
      （``nn.init.kaiming_normal_``），偏置置 0。
    - ``nn.BatchNorm1d/2d/3d``：权重（gamma）置 1，偏置（beta）置 0。
    - 其它模块（LayerNorm、Embedding、ReLU、容器……）保持不变。
    - 层可能没有偏置（``bias=False``，此时 ``m.bias is None``）：请先判断。
    - 必须**原地**初始化（带下划线的 ``nn.init.xxx_()``，已弃用的无下划线版本会发出警告）；
      不要给 ``m.weight`` 赋一个新的 ``nn.Parameter``：之前创建的优化器还拿着旧参数。
      初始化后的参数仍是叶子张量，``requires_grad=True``。
    - 不返回任何值。

    Initialise the parameters of **one** sub-module; use it as ``model.apply(init_weights)``
    (``apply`` calls it on every sub-module).

    - ``nn.Linear``: Xavier-uniform weight (``nn.init.xavier_uniform_``), zero bias.
    - ``nn.Conv2d``: Kaiming-normal weight with ``mode="fan_out"``, ``nonlinearity="relu"``
      (``nn.init.kaiming_normal_``), zero bias.
    - ``nn.BatchNorm1d/2d/3d``: weight (gamma) 1, bias (beta) 0.
    - Anything else (LayerNorm, Embedding, ReLU, containers, …) is left untouched.
    - A layer may have no bias (``bias=False`` makes ``m.bias`` None): check first.
    - Initialise **in place** (the ``nn.init.*_()`` functions with the trailing underscore; the
      deprecated ones without it warn); do not assign a new ``nn.Parameter`` to ``m.weight``: an
      optimizer created earlier still holds the old one. The parameters stay leaf tensors with
      ``requires_grad=True``.
    - Return nothing.
    """
    raise NotImplementedError("TODO: init_weights")


def build_sequential(sizes: Sequence[int], dropout: float = 0.5) -> nn.Sequential:
    """用 ``OrderedDict`` 构建带名字的 ``nn.Sequential``。

    - ``sizes = [d0, d1, ..., dN]``（至少两个数）给出 N 个线性层 ``fc1 … fcN``，``fci`` 为
      ``nn.Linear(d(i-1), di)``。
    - 除最后一层外，每个 ``fci`` 后面依次是 ``relu{i}``（``nn.ReLU``）和 ``dropout{i}``
      （``nn.Dropout(dropout)``）；``dropout == 0`` 时省略所有 dropout 层。最后的 ``fcN`` 后面没有激活。
    - 例：``build_sequential([8, 16, 4])`` 的子模块依次为 ``fc1, relu1, dropout1, fc2``，
      ``state_dict`` 的键为 ``fc1.weight, fc1.bias, fc2.weight, fc2.bias``。名字从 1 开始。
    - 小心在循环里复用同一个键（例如一直写 ``"fc"``）：后面的层会覆盖前面的层。

    Build a named ``nn.Sequential`` from an ``OrderedDict``.

    - ``sizes = [d0, d1, ..., dN]`` (at least two numbers) gives N linear layers ``fc1 … fcN``,
      ``fci`` being ``nn.Linear(d(i-1), di)``.
    - Every ``fci`` except the last is followed by ``relu{i}`` (``nn.ReLU``) and then
      ``dropout{i}`` (``nn.Dropout(dropout)``); with ``dropout == 0`` leave all dropout layers
      out. The final ``fcN`` has no activation after it.
    - Example: ``build_sequential([8, 16, 4])`` has the children ``fc1, relu1, dropout1, fc2`` in
      this order and the ``state_dict`` keys ``fc1.weight, fc1.bias, fc2.weight, fc2.bias``.
      Numbering starts at 1.
    - Beware of reusing one key in a loop (always ``"fc"``, say): later layers overwrite earlier
      ones.
    """
    raise NotImplementedError("TODO: build_sequential")


class MultiHeadNet(nn.Module):
    """共享主干 + 多个任务输出头（多任务网络），每次只运行被选中的头。

    - ``MultiHeadNet(in_dim, hidden, heads)``，``heads`` 是 ``{头的名字: 输出维度}``，例如
      ``{"cls": 10, "reg": 1}``。
    - ``self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())``。
    - ``self.heads = nn.ModuleDict(...)``，每个名字对应 ``nn.Linear(hidden, 输出维度)``——输入是主干的
      输出大小 ``hidden``，不是 ``in_dim``。必须用 ``nn.ModuleDict``：普通 ``dict`` 里的头不会出现在
      ``parameters()``、``state_dict()`` 中，也不会被 ``.to()`` 移动。
    - 因此 ``state_dict`` 的键为 ``trunk.0.weight, trunk.0.bias, heads.<名字>.weight,
      heads.<名字>.bias``。头的名字不能包含 ``"."``（``nn.ModuleDict`` 会抛出 ``KeyError``）。
    - ``forward(x, head)``：``x`` 形状 ``(B, in_dim)``，返回 ``(B, heads[head])``，头后面没有激活。
      **只计算**被选中的头（不要先算出所有头再挑一个）；未知的头名抛出 ``KeyError``。
    - 必须支持 ``.double()`` 和 ``.to("meta")``（所有头都要被移动）。

    A shared trunk plus several task heads (a multi-task network); only the selected head runs.

    - ``MultiHeadNet(in_dim, hidden, heads)`` with ``heads`` mapping a head's name to its output
      size, e.g. ``{"cls": 10, "reg": 1}``.
    - ``self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())``.
    - ``self.heads = nn.ModuleDict(...)`` holding ``nn.Linear(hidden, size)`` per name: its input
      is the trunk's output size ``hidden``, not ``in_dim``. It must be an ``nn.ModuleDict``: heads
      in a plain ``dict`` are missing from ``parameters()`` and ``state_dict()`` and are not moved
      by ``.to()``.
    - So the ``state_dict`` keys are ``trunk.0.weight, trunk.0.bias, heads.<name>.weight,
      heads.<name>.bias``. Head names contain no ``"."`` (``nn.ModuleDict`` raises ``KeyError``).
    - ``forward(x, head)``: ``x`` is ``(B, in_dim)``; return ``(B, heads[head])`` with no
      activation after the head. Compute **only** the selected head (not every head and then pick
      one); an unknown head name raises ``KeyError``.
    - It must work after ``.double()`` and ``.to("meta")`` (every head moves).
    """

    def __init__(self, in_dim: int, hidden: int, heads: dict[str, int]) -> None:
        super().__init__()
        raise NotImplementedError("TODO: MultiHeadNet.__init__")

    def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:
        raise NotImplementedError("TODO: MultiHeadNet.forward")
