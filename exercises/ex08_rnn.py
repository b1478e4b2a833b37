"""练习 8：循环神经网络 / Exercise 8: recurrent networks.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex08`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex08`` (one task: ``grader check ex08 -k last_valid_step``).

评分程序会在它自己的代码里创建你的模块（例如 ``SineForecaster(16, num_layers=2, cell="gru")``），加载它自己生成的
``state_dict``、运行、反向传播，并用固定的训练循环训练几个 epoch。所以请严格使用下面写明的层和属性名：
``state_dict`` 的键名和形状都会被检查。
The grader builds your modules in its own code (e.g. ``SineForecaster(16, num_layers=2, cell="gru")``),
loads ``state_dict``\\ s it generates, runs them, back-propagates and trains them with a fixed loop for a
few epochs. So keep to the layers and attribute names stated below: ``state_dict`` keys and shapes are
checked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: F401 - for BiLSTMClassifier


class LSTMCellScratch(nn.Module):
    """手写的 LSTM 单元，与 ``nn.LSTMCell`` 的计算完全相同。

    - 参数（名字和形状与 ``nn.LSTMCell`` 相同，``H = hidden_size``、``I = input_size``）：
      ``weight_ih``：``(4H, I)``，``weight_hh``：``(4H, H)``，``bias_ih``、``bias_hh``：``(4H,)``，都是
      ``nn.Parameter``，不要有别的参数。每个参数都初始化为 ``U(−1/√H, 1/√H)``（与 PyTorch 相同；测试会检查
      新建模块的参数落在这个区间内且不全相同）。
    - ``forward(x, state)``：``x`` 为 ``(B, I)``，``state`` 为 ``(h, c)``，各为 ``(B, H)``，或 ``None``。
      ``None`` 表示 ``h`` 和 ``c`` 都是全 0，且与 ``x`` **同设备、同 dtype**（例如 ``x.new_zeros(B, H)``；
      测试会在 ``meta`` 设备和 ``float64`` 上运行）。
    - 先算 ``gates = x @ weight_ihᵀ + bias_ih + h @ weight_hhᵀ + bias_hh``（``(B, 4H)``，一次矩阵乘法即可），
      再按 PyTorch 的顺序 **i, f, g, o** 切成四块（``gates.chunk(4, dim=1)``）：
      ``i = σ(·)``、``f = σ(·)``、``g = tanh(·)``（候选记忆用 **tanh**）、``o = σ(·)``；
      ``c' = f·c + i·g``，``h' = o·tanh(c')``。返回 ``(h', c')``，形状都是 ``(B, H)``，dtype 与设备同 ``x``。
    - 不要原地修改 ``x``、``h``、``c``；梯度必须能传到 ``x``、``state`` 和四个参数。
    - ``load_from(cell)``：把一个 ``nn.LSTMCell`` 的四个参数的**数值**复制到自己的参数里（在 ``torch.no_grad()``
      下用 ``copy_``），之后对任意输入，输出与 ``cell`` 相同（误差在浮点舍入范围内）。返回 ``None``。

    A hand-written LSTM cell that computes exactly what ``nn.LSTMCell`` does.

    - Parameters (the names and shapes of ``nn.LSTMCell``, ``H = hidden_size``, ``I = input_size``):
      ``weight_ih``: ``(4H, I)``, ``weight_hh``: ``(4H, H)``, ``bias_ih`` and ``bias_hh``: ``(4H,)``, all
      ``nn.Parameter``\\ s, and no other parameters. Initialise every one from ``U(−1/√H, 1/√H)`` (as PyTorch
      does; a test checks that a new module's values lie in that range and are not all equal).
    - ``forward(x, state)``: ``x`` is ``(B, I)``; ``state`` is ``(h, c)``, each ``(B, H)``, or ``None``.
      ``None`` means ``h`` and ``c`` are zeros **on x's device and in x's dtype** (e.g. ``x.new_zeros(B, H)``;
      the tests run on the ``meta`` device and in ``float64``).
    - Compute ``gates = x @ weight_ihᵀ + bias_ih + h @ weight_hhᵀ + bias_hh`` (``(B, 4H)``, one matrix product
      each is enough), split it in PyTorch's order **i, f, g, o** (``gates.chunk(4, dim=1)``):
      ``i = σ(·)``, ``f = σ(·)``, ``g = tanh(·)`` (the candidate uses **tanh**), ``o = σ(·)``;
      ``c' = f·c + i·g`` and ``h' = o·tanh(c')``. Return ``(h', c')``, both ``(B, H)``, in x's dtype and device.
    - Do not modify ``x``, ``h`` or ``c`` in place; gradients must reach ``x``, ``state`` and all four parameters.
    - ``load_from(cell)``: copy the **values** of an ``nn.LSTMCell``'s four parameters into your own (``copy_``
      under ``torch.no_grad()``); afterwards the outputs equal ``cell``'s on any input (up to rounding).
      Return ``None``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        raise NotImplementedError("TODO: LSTMCellScratch.__init__")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("TODO: LSTMCellScratch.forward")

    def load_from(self, cell: nn.LSTMCell) -> None:
        """把 ``cell`` 的四个参数的数值复制到自己的参数里（见类的说明），返回 ``None``。
        Copy the values of ``cell``'s four parameters into your own (see the class docstring); return ``None``."""
        raise NotImplementedError("TODO: LSTMCellScratch.load_from")


class SineForecaster(nn.Module):
    """预测正弦序列的下一个值：``(B, T, 1) → (B, 1)``。

    - 层（名字固定）：``self.rnn = nn.LSTM(1, hidden_size, num_layers, batch_first=True)``（``cell="lstm"``）
      或 ``nn.GRU(1, hidden_size, num_layers, batch_first=True)``（``cell="gru"``）；
      ``self.head = nn.Linear(hidden_size, 1)``。没有别的参数。
    - 输入 ``x`` 是 ``(B, T, 1)``（**批在前**：必须 ``batch_first=True``，否则 ``B ≠ T`` 时结果错误），``T ≥ 1``。
    - 输出：**最顶层**在**最后一个时间步**的隐藏状态经过 ``head``：``head(out[:, -1])``，形状 ``(B, 1)``
      （``B = 1`` 时也是 ``(1, 1)``，不要 ``squeeze``）。等价写法：LSTM 的 ``h_n[-1]``、GRU 的 ``h_n[-1]``
      （多层时 ``h_n`` 为 ``(num_layers, B, H)``，``h_n[0]`` 是第一层）。不要 ``out[:, 0]``（第一步），也不要
      ``out[-1]``（最后一个**样本**）。
    - 初始状态为 0（不传 ``h0``）；不要对输出加激活函数。

    Predict the next value of a sine sequence: ``(B, T, 1) → (B, 1)``.

    - Layers (fixed names): ``self.rnn = nn.LSTM(1, hidden_size, num_layers, batch_first=True)`` for
      ``cell="lstm"`` or ``nn.GRU(1, hidden_size, num_layers, batch_first=True)`` for ``cell="gru"``;
      ``self.head = nn.Linear(hidden_size, 1)``. No other parameters.
    - The input ``x`` is ``(B, T, 1)`` (**batch first**: ``batch_first=True`` is required, or the result is
      wrong when ``B ≠ T``), ``T ≥ 1``.
    - The output is the **top layer**'s hidden state at the **last time step** through ``head``:
      ``head(out[:, -1])``, shape ``(B, 1)`` (``(1, 1)`` for ``B = 1`` too: no ``squeeze``). Equivalent:
      ``h_n[-1]`` of the LSTM or the GRU (with several layers ``h_n`` is ``(num_layers, B, H)`` and ``h_n[0]``
      is the first layer). Not ``out[:, 0]`` (the first step) and not ``out[-1]`` (the last **sample**).
    - The initial state is zero (no ``h0`` passed); no activation on the output.
    """

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, cell: str = "lstm") -> None:
        super().__init__()
        raise NotImplementedError("TODO: SineForecaster.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: SineForecaster.forward")


def last_valid_step(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """右侧补齐的序列输出中，每个样本最后一个有效时间步的向量。

    - ``outputs``：``(B, T, H)``，任意浮点 dtype、任意设备；``lengths``：``(B,)`` 整数张量（``int64`` 或
      ``int32``），``1 ≤ lengths[b] ≤ T``，**可能在 CPU 上而 ``outputs`` 在别的设备上**（测试用 ``meta``
      设备上的 ``outputs`` 和 CPU 上的 ``lengths``），所以先 ``lengths.to(outputs.device)``。
    - 返回 ``(B, H)``：第 ``b`` 行是 ``outputs[b, lengths[b] − 1]``（最后有效位置是 ``length − 1``），dtype 和
      设备同 ``outputs``。``B = 1`` 时也是 ``(1, H)``。
    - 向量化：逐样本索引 ``outputs[arange(B), lengths − 1]`` 或 ``gather``。``outputs[:, lengths − 1]`` 会得到
      ``(B, B, H)``；不要在 Python 里循环遍历样本（计时测试与参考实现比较，最多慢 3 倍）。
    - 梯度只流向被取出的位置；不要 ``detach()``。

    The vector at each sequence's last valid time step, for right-padded outputs.

    - ``outputs``: ``(B, T, H)``, any floating dtype, any device; ``lengths``: ``(B,)`` integers (``int64`` or
      ``int32``) with ``1 ≤ lengths[b] ≤ T``, **possibly on the CPU while ``outputs`` is on another device**
      (a test uses ``outputs`` on the ``meta`` device with CPU ``lengths``): move them with
      ``lengths.to(outputs.device)``.
    - Return ``(B, H)`` whose row ``b`` is ``outputs[b, lengths[b] − 1]`` (the last valid position is
      ``length − 1``), in the dtype and on the device of ``outputs``; ``(1, H)`` for ``B = 1`` too.
    - Vectorise: index per sample, ``outputs[arange(B), lengths − 1]``, or ``gather``. ``outputs[:, lengths − 1]``
      gives ``(B, B, H)``; do not loop over samples in Python (a timing test compares you with the
      reference, at most 3 times slower).
    - The gradient flows only to the gathered positions; no ``detach()``.
    """
    raise NotImplementedError("TODO: last_valid_step")


class BiLSTMClassifier(nn.Module):
    """嵌入 + 打包的双向 LSTM + 线性分类头。

    - 层（名字固定）：``self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)``；
      ``self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True,
      dropout=dropout if num_layers > 1 else 0.0)``；``self.dropout = nn.Dropout(dropout)``；
      ``self.fc = nn.Linear(2 * hidden_dim, num_classes)``（双向：特征维度是 ``2 × hidden_dim``）。
    - ``forward(tokens, lengths)``：``tokens`` 为 ``(B, T)`` ``int64``，右侧用 ``pad_idx`` 补齐；``lengths``
      为 ``(B,)`` 整数，``1 ≤ lengths[b] ≤ T``，**未排序**，可能在任意设备上。用
      ``pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)``
      （它要求 ``lengths`` 在 CPU 上）把序列打包后送进 LSTM。
    - 特征：最顶层两个方向的最终隐藏状态拼接，**前向在前**：``torch.cat([h_n[-2], h_n[-1]], dim=1)``
      （``h_n`` 为 ``(num_layers·2, B, hidden_dim)``）。反向 LSTM 的最终状态对应时间步 0，不是
      ``lstm_out[:, -1]``。然后 ``fc(dropout(特征))``，返回 logits ``(B, num_classes)``（不加 softmax）。
    - 因为打包，在右侧再补任意多列 ``pad_idx`` 不改变 eval 模式下的输出；``pad_idx`` 那一行嵌入得不到梯度。

    Embedding, a packed bidirectional LSTM and a linear classifier.

    - Layers (fixed names): ``self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)``;
      ``self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True,
      dropout=dropout if num_layers > 1 else 0.0)``; ``self.dropout = nn.Dropout(dropout)``;
      ``self.fc = nn.Linear(2 * hidden_dim, num_classes)`` (bidirectional: the features are
      ``2 × hidden_dim`` wide).
    - ``forward(tokens, lengths)``: ``tokens`` is ``(B, T)`` ``int64``, right-padded with ``pad_idx``;
      ``lengths`` is ``(B,)`` integers, ``1 ≤ lengths[b] ≤ T``, **unsorted**, on any device. Pack with
      ``pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)`` (it needs the
      lengths on the CPU) and run the LSTM on the packed sequence.
    - Features: the top layer's final hidden states of both directions, **forward first**:
      ``torch.cat([h_n[-2], h_n[-1]], dim=1)`` (``h_n`` is ``(num_layers·2, B, hidden_dim)``). The backward
      direction's final state belongs to time step 0, not to ``lstm_out[:, -1]``. Then
      ``fc(dropout(features))``: return logits ``(B, num_classes)`` (no softmax).
    - Thanks to packing, extra ``pad_idx`` columns on the right do not change the outputs in eval mode; the
      embedding row ``pad_idx`` receives no gradient.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int,
                 num_layers: int = 1, pad_idx: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        raise NotImplementedError("TODO: BiLSTMClassifier.__init__")

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: BiLSTMClassifier.forward")


class Seq2Seq(nn.Module):
    """LSTM 编码器-解码器，支持可复现的 teacher forcing 和贪心解码。

    - 层（名字固定）：``self.encoder_embedding = nn.Embedding(vocab_size, embed_dim)``，
      ``self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)``，
      ``self.decoder_embedding = nn.Embedding(vocab_size, embed_dim)``，
      ``self.decoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)``（每次送入一个时间步 ``(B, 1, E)``），
      ``self.out = nn.Linear(hidden_dim, vocab_size)``。
    - 编码：``_, (h, c) = encoder(encoder_embedding(src))``，``(h, c)`` 是解码器的初始状态。
    - ``forward(src, tgt, teacher_forcing_ratio=0.5, generator=None)``：``src`` 为 ``(B, S)``，``tgt`` 为
      ``(B, T)``（``int64``，``tgt[:, 0]`` 是 ``<SOS>``，``T ≥ 2``）。对 ``t = 1, …, T−1``：解码器输入一个
      词元，输出第 ``t`` 步的 logits ``out(·)``（``(B, V)``），它预测 ``tgt[:, t]``。第 1 步的输入是 ``tgt[:, 0]``。
      第 ``t`` 步之后（``t ≤ T−2``）抽**一个**随机数 ``u = torch.rand((), generator=generator)``
      （CPU 上、整个批次共用、按步的顺序抽；``t = T−1`` 之后不再抽）：若 ``u < teacher_forcing_ratio``，下一步输入
      ``tgt[:, t]``（teacher forcing），否则输入本步预测 ``logits.argmax(1)``。所以 ratio 为 1 时总是用
      ``tgt``，为 0 时总是用自己的预测。
    - 只用传入的 ``generator``，不要动全局随机数状态（``torch.get_rng_state()`` 不变）；``generator=None``
      时才使用全局随机数。同一个种子 → 完全相同的输出。
    - 返回 ``(B, T−1, V)``：第 ``t−1`` 个位置是第 ``t`` 步的 logits，与 ``tgt[:, 1:]`` 对齐（**没有** t=0 的
      全 0 行）。dtype 为参数的 dtype，设备同 ``src``（新建张量请用 ``device=src.device``；测试会在 ``meta``
      设备上运行）。梯度经解码器的初始状态传到编码器。
    - ``greedy_decode(src, max_len)``（``@torch.no_grad()``）：同样编码，第一步输入 ``sos_idx``（每个样本一个），
      之后每步输入上一步的 ``argmax``；返回 ``max_len`` 个预测的词元 ``(B, max_len)``，``int64``，设备同 ``src``
      （不包括 ``<SOS>``，``max_len ≥ 1``）。当 ``tgt[:, 0] == sos_idx`` 时，
      ``forward(src, tgt, 0.0).argmax(-1)`` 等于 ``greedy_decode(src, T−1)``。

    An LSTM encoder-decoder with reproducible teacher forcing and greedy decoding.

    - Layers (fixed names): ``self.encoder_embedding = nn.Embedding(vocab_size, embed_dim)``,
      ``self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)``,
      ``self.decoder_embedding = nn.Embedding(vocab_size, embed_dim)``,
      ``self.decoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)`` (fed one step ``(B, 1, E)`` at a
      time) and ``self.out = nn.Linear(hidden_dim, vocab_size)``.
    - Encoding: ``_, (h, c) = encoder(encoder_embedding(src))``; ``(h, c)`` is the decoder's initial state.
    - ``forward(src, tgt, teacher_forcing_ratio=0.5, generator=None)``: ``src`` is ``(B, S)``, ``tgt`` is
      ``(B, T)`` (``int64``, ``tgt[:, 0]`` is ``<SOS>``, ``T ≥ 2``). For ``t = 1, …, T−1`` the decoder takes
      one token and gives step ``t``'s logits ``out(·)`` (``(B, V)``), which predict ``tgt[:, t]``. Step 1's
      input is ``tgt[:, 0]``. After step ``t`` (for ``t ≤ T−2``) draw **one** number
      ``u = torch.rand((), generator=generator)`` (on the CPU, one for the whole batch, in step order; none
      after step ``T−1``): if ``u < teacher_forcing_ratio`` the next input is ``tgt[:, t]`` (teacher forcing),
      otherwise this step's prediction ``logits.argmax(1)``. So ratio 1 always feeds ``tgt`` and ratio 0
      always feeds the model's own predictions.
    - Use only the given ``generator`` and leave the global RNG alone (``torch.get_rng_state()`` unchanged);
      only ``generator=None`` uses the global RNG. The same seed gives the same outputs.
    - Return ``(B, T−1, V)``: position ``t−1`` holds step ``t``'s logits, aligned with ``tgt[:, 1:]`` (**no**
      zero row for t=0). The dtype is the parameters' dtype, the device is src's (create tensors with
      ``device=src.device``; a test runs on the ``meta`` device). Gradients reach the encoder through the
      decoder's initial state.
    - ``greedy_decode(src, max_len)`` (``@torch.no_grad()``): encode the same way, feed ``sos_idx`` (one per
      sample) first and then each step's ``argmax``; return the ``max_len`` predicted tokens as
      ``(B, max_len)`` ``int64`` on src's device (without ``<SOS>``, ``max_len ≥ 1``). When
      ``tgt[:, 0] == sos_idx``, ``forward(src, tgt, 0.0).argmax(-1)`` equals ``greedy_decode(src, T−1)``.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_dim: int = 64, sos_idx: int = 1) -> None:
        super().__init__()
        raise NotImplementedError("TODO: Seq2Seq.__init__")

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, teacher_forcing_ratio: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError("TODO: Seq2Seq.forward")

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        """贪心解码 ``max_len`` 步，返回 ``(B, max_len)`` ``int64``，不含 ``<SOS>``（见类的说明）。
        Greedy decoding for ``max_len`` steps: ``(B, max_len)`` ``int64`` without ``<SOS>`` (see the class docstring)."""
        raise NotImplementedError("TODO: Seq2Seq.greedy_decode")
