"""练习 9：注意力与 Transformer / Exercise 9: attention and the Transformer.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex09`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex09`` (one task: ``grader check ex09 -k causal_mask``).

**整个练习只用一种掩码约定：布尔张量，True 表示“可以关注”（保留），False 表示“屏蔽”。**
这与 ``F.scaled_dot_product_attention`` 的布尔 ``attn_mask`` 相同，但与 ``nn.MultiheadAttention`` 的
``attn_mask`` 和 ``nn.TransformerEncoder`` 的 ``src_key_padding_mask`` **相反**（它们用 True 表示“忽略”）：
调用这些 PyTorch 模块时要先取反（``~mask``）。
**One mask convention for the whole exercise: a bool tensor, True = may attend (keep), False = blocked.**
This is the convention of ``F.scaled_dot_product_attention``'s bool ``attn_mask``, and the **opposite**
of ``nn.MultiheadAttention``'s ``attn_mask`` and ``nn.TransformerEncoder``'s ``src_key_padding_mask``
(True = ignore there): invert (``~mask``) before handing a mask to those modules.

评分程序会在它自己的代码里创建你的模块、加载它自己生成的 ``state_dict``（权重取自 PyTorch 的
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``）并比较输出，所以请严格使用下面写明的属性名。
所有函数和模块都要支持 ``float64`` 以及 ``meta`` 设备（新建的张量要放在输入所在的设备上）。
The grader builds your modules in its own code, loads ``state_dict``\\ s it makes (with weights taken
from PyTorch's ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``) and compares outputs, so
keep to the attribute names stated below. Every function and module must work in ``float64`` and on
the ``meta`` device (make new tensors on the inputs' device).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """缩放点积注意力 ``softmax(q·kᵀ / √d_k) · v``，返回 ``(output, weights)``。

    - ``q``：``(..., Lq, d_k)``，``k``：``(..., Lk, d_k)``，``v``：``(..., Lk, d_v)``；前面的批维
      （例如 ``(B,)`` 或 ``(B, h)``）相同。``Lq`` 可以不等于 ``Lk``。``d_k`` 取 ``q.size(-1)``。
    - ``mask``：``None`` 或布尔张量，可广播到 ``(..., Lq, Lk)``（例如 ``(Lq, Lk)`` 的因果掩码、
      ``(B, 1, 1, Lk)`` 的补齐掩码）。**True 表示可以关注**，False 的位置权重必须为 0。
    - softmax 作用于最后一维（key 维）：``weights`` 形状 ``(..., Lq, Lk)``，每一行之和为 1；
      ``output`` 形状 ``(..., Lq, d_v)``。
    - **整行都被屏蔽**（某个 query 没有任何可关注的 key）时：这一行的权重全为 0，输出全为 0，不能出现
      NaN（与 ``F.scaled_dot_product_attention`` 相同）。屏蔽请用 ``torch.finfo(dtype).min`` 或 ``-inf``
      再处理全屏蔽行；不要写死 ``-1e9``（float16 会溢出）。
    - 结果的 dtype 和设备与 ``q`` 相同；梯度要能传到 ``q``、``k``、``v``。不要在 Python 中循环遍历批或头：
      计时测试会与参考实现比较（最多慢 3 倍）。

    Scaled dot-product attention ``softmax(q·kᵀ / √d_k) · v``; return ``(output, weights)``.

    - ``q``: ``(..., Lq, d_k)``, ``k``: ``(..., Lk, d_k)``, ``v``: ``(..., Lk, d_v)`` with the same
      leading batch dimensions (e.g. ``(B,)`` or ``(B, h)``). ``Lq`` may differ from ``Lk``. ``d_k`` is
      ``q.size(-1)``.
    - ``mask``: ``None`` or a bool tensor that broadcasts to ``(..., Lq, Lk)`` (e.g. an ``(Lq, Lk)``
      causal mask, a ``(B, 1, 1, Lk)`` padding mask). **True means "may attend"**; where it is False
      the weight must be 0.
    - Softmax over the last (key) dimension: ``weights`` has shape ``(..., Lq, Lk)`` and each row
      sums to 1; ``output`` has shape ``(..., Lq, d_v)``.
    - **A fully masked row** (a query with no key it may attend to) has all-zero weights and an
      all-zero output, never NaN (as ``F.scaled_dot_product_attention`` gives). Mask with
      ``torch.finfo(dtype).min`` or ``-inf`` and then handle fully masked rows; do not hard-code
      ``-1e9`` (it overflows in float16).
    - The results have the dtype and device of ``q``; gradients reach ``q``, ``k`` and ``v``. Do not
      loop in Python over the batch or the heads: a timing test compares you with the reference (at
      most 3 times slower).
    """
    raise NotImplementedError("TODO: scaled_dot_product_attention")


class MultiHeadAttention(nn.Module):
    """多头注意力：线性投影、分头、缩放点积注意力、合并头、输出投影。

    - ``MultiHeadAttention(d_model, num_heads, dropout=0.0)``；``d_model % num_heads != 0`` 时在
      ``__init__`` 中抛出 ``ValueError``。``d_k = d_model // num_heads``。
    - 层（属性名必须一致，除此之外没有其它带参数的层）：``self.w_q``、``self.w_k``、``self.w_v``、
      ``self.w_o``，都是 ``nn.Linear(d_model, d_model)``（带偏置）；``self.dropout = nn.Dropout(dropout)``
      作用在注意力权重上（只影响训练模式）。
    - ``forward(q, k, v, mask=None)``：``q`` 为 ``(B, Lq, d_model)``，``k``、``v`` 为 ``(B, Lk, d_model)``
      （交叉注意力时 ``Lq ≠ Lk``）。``mask`` 可广播到 ``(B, num_heads, Lq, Lk)``，True 表示可以关注
      （与 ``scaled_dot_product_attention`` 相同）。输入可能是不连续的张量。
    - 分头：``(B, L, d_model)`` → ``view(B, L, num_heads, d_k)`` → ``transpose(1, 2)`` 得到
      ``(B, num_heads, L, d_k)``：第 ``i`` 个头使用投影结果的第 ``i·d_k … (i+1)·d_k − 1`` 列，与
      ``nn.MultiheadAttention`` 相同。合并时反过来（``transpose`` 之后用 ``reshape``，或先 ``.contiguous()``）。
    - 返回 ``(output, weights)``：``output`` 为 ``(B, Lq, d_model)``（经过 ``w_o``），``weights`` 为每个头的
      注意力权重 ``(B, num_heads, Lq, Lk)``（dropout 之前）。所有头一起计算，不要在 Python 中循环遍历头。
    - 把 ``nn.MultiheadAttention(d_model, num_heads, batch_first=True)`` 的 ``in_proj_weight.chunk(3)``
      依次作为 ``w_q``、``w_k``、``w_v`` 的权重（偏置同理），``out_proj`` 作为 ``w_o`` 时，输出与
      ``mha(q, k, v, attn_mask=~mask)`` 相同。

    Multi-head attention: projections, split heads, scaled dot-product attention, merge heads,
    output projection.

    - ``MultiHeadAttention(d_model, num_heads, dropout=0.0)``; raise ``ValueError`` in ``__init__``
      when ``d_model % num_heads != 0``. ``d_k = d_model // num_heads``.
    - Layers (exactly these attribute names, and no other layer with parameters): ``self.w_q``,
      ``self.w_k``, ``self.w_v``, ``self.w_o``, each ``nn.Linear(d_model, d_model)`` (with bias);
      ``self.dropout = nn.Dropout(dropout)`` acts on the attention weights (train mode only).
    - ``forward(q, k, v, mask=None)``: ``q`` is ``(B, Lq, d_model)``, ``k`` and ``v`` are
      ``(B, Lk, d_model)`` (``Lq != Lk`` in cross-attention). ``mask`` broadcasts to
      ``(B, num_heads, Lq, Lk)``, True = may attend (as in ``scaled_dot_product_attention``). Inputs
      may be non-contiguous.
    - Splitting heads: ``(B, L, d_model)`` → ``view(B, L, num_heads, d_k)`` → ``transpose(1, 2)`` gives
      ``(B, num_heads, L, d_k)``: head ``i`` uses columns ``i·d_k … (i+1)·d_k − 1`` of the projection,
      as in ``nn.MultiheadAttention``. Merge the other way round (``reshape`` after ``transpose``, or
      ``.contiguous()`` first).
    - Return ``(output, weights)``: ``output`` is ``(B, Lq, d_model)`` (after ``w_o``), ``weights`` the
      per-head attention weights ``(B, num_heads, Lq, Lk)`` (before dropout). All heads at once: no
      Python loop over heads.
    - With ``nn.MultiheadAttention(d_model, num_heads, batch_first=True)``'s ``in_proj_weight.chunk(3)``
      as the weights of ``w_q``, ``w_k``, ``w_v`` in that order (biases likewise) and ``out_proj`` as
      ``w_o``, the output equals ``mha(q, k, v, attn_mask=~mask)``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        raise NotImplementedError("TODO: MultiHeadAttention.__init__")

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("TODO: MultiHeadAttention.forward")


class PositionalEncoding(nn.Module):
    """正弦位置编码，加到输入上。

    - ``PositionalEncoding(d_model, max_len=5000, dropout=0.0)``。
    - 在 ``__init__`` 中算好 ``pe``（形状 ``(max_len, d_model)``，float32），用
      ``self.register_buffer("pe", pe)`` 注册：它在 ``state_dict()`` 里，但**不在** ``parameters()`` 里，
      并随 ``.to(device)``、``.double()`` 一起移动/转换。不要用 ``nn.Parameter``，也不要用普通属性。
    - ``pe[pos, 2i] = sin(pos / 10000^(2i/d_model))``，``pe[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``。
      ``d_model`` 可以是**奇数**：这时最后一列（偶数下标）是 sin，cos 只有 ``d_model // 2`` 列。
    - ``forward(x)``：``x`` 为 ``(B, T, d_model)``（批维在前），返回 ``dropout(x + pe[:T])``，形状不变。
      按序列长度 ``x.size(1)`` 截取，不是 ``x.size(0)``。``T > max_len`` 时抛出 ``ValueError``。
    - ``self.dropout = nn.Dropout(dropout)``；没有其它子模块或参数。

    Sinusoidal positional encoding, added to the input.

    - ``PositionalEncoding(d_model, max_len=5000, dropout=0.0)``.
    - Compute ``pe`` (shape ``(max_len, d_model)``, float32) in ``__init__`` and register it with
      ``self.register_buffer("pe", pe)``: it is in ``state_dict()`` but **not** in ``parameters()``, and
      it follows ``.to(device)`` and ``.double()``. Not an ``nn.Parameter``, not a plain attribute.
    - ``pe[pos, 2i] = sin(pos / 10000^(2i/d_model))``, ``pe[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``.
      ``d_model`` may be **odd**: then the last column (an even index) is a sine and there are only
      ``d_model // 2`` cosine columns.
    - ``forward(x)``: ``x`` is ``(B, T, d_model)`` (batch first); return ``dropout(x + pe[:T])``, same
      shape. Slice by the sequence length ``x.size(1)``, not ``x.size(0)``. Raise ``ValueError`` when
      ``T > max_len``.
    - ``self.dropout = nn.Dropout(dropout)``; no other submodule or parameter.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        raise NotImplementedError("TODO: PositionalEncoding.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: PositionalEncoding.forward")


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """因果掩码：``(size, size)`` 的布尔张量，``mask[i, j]`` 为 True 当且仅当 ``j ≤ i``
    （位置 ``i`` 只能看到它自己和之前的位置）。

    - dtype 为 ``torch.bool``（不是 0/1 的浮点数），放在 ``device`` 上（``None`` 表示默认设备；
      ``device="meta"`` 也要遵守）。不要先在 CPU 上建好再 ``.to()``。
    - 向量化（例如 ``arange`` 比较或 ``tril``），不要在 Python 中循环。

    A causal mask: an ``(size, size)`` bool tensor with ``mask[i, j]`` True exactly when ``j ≤ i``
    (position ``i`` sees itself and the positions before it).

    - dtype ``torch.bool`` (not a float 0/1 mask), made on ``device`` (``None`` means the default
      device; ``device="meta"`` must be honoured). Do not build it on the CPU and move it.
    - Vectorised (an ``arange`` comparison or ``tril``), no Python loop.
    """
    raise NotImplementedError("TODO: causal_mask")


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """补齐掩码：``lengths`` 为 ``(B,)`` 的整数张量（每个序列的真实长度，可以为 0），返回
    ``(B, 1, 1, T)`` 的布尔张量，``mask[b, 0, 0, t]`` 为 True 当且仅当 ``t < lengths[b]``。

    - ``T = max_len``；``max_len`` 为 ``None`` 时 ``T = int(lengths.max())``。``max_len`` 可以大于最长的序列。
    - 结果在 ``lengths.device`` 上（``meta`` 设备上会给出 ``max_len``）；dtype 为 ``torch.bool``。
    - 形状 ``(B, 1, 1, T)`` 可以直接广播到注意力分数 ``(B, h, Lq, T)``；和 ``causal_mask`` 用 ``&`` 组合
      得到 ``(B, 1, T, T)``。
    - 向量化（``arange`` 比较），不要在 Python 中循环遍历批。

    A padding mask: ``lengths`` is a ``(B,)`` integer tensor (each sequence's true length, possibly 0);
    return a ``(B, 1, 1, T)`` bool tensor with ``mask[b, 0, 0, t]`` True exactly when ``t < lengths[b]``.

    - ``T = max_len``; when ``max_len`` is ``None``, ``T = int(lengths.max())``. ``max_len`` may exceed
      the longest sequence.
    - The result is on ``lengths.device`` (on the ``meta`` device ``max_len`` is given); dtype
      ``torch.bool``.
    - The shape ``(B, 1, 1, T)`` broadcasts to attention scores ``(B, h, Lq, T)``; combined with
      ``causal_mask`` by ``&`` it gives ``(B, 1, T, T)``.
    - Vectorised (an ``arange`` comparison), no Python loop over the batch.
    """
    raise NotImplementedError("TODO: padding_mask")


class EncoderLayer(nn.Module):
    """Transformer 编码器层：自注意力 + 前馈网络（FFN），各带残差连接与 LayerNorm。

    - ``EncoderLayer(d_model, num_heads, d_ff, dropout=0.1, norm_first=False)``。
    - 子模块（属性名必须一致，除此之外没有其它带参数的层）：
      ``self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)``，
      ``self.linear1 = nn.Linear(d_model, d_ff)``，``self.linear2 = nn.Linear(d_ff, d_model)``，
      两个**独立的** ``self.norm1``、``self.norm2 = nn.LayerNorm(d_model)``，以及
      ``self.dropout``、``self.dropout1``、``self.dropout2 = nn.Dropout(dropout)``。
    - ``ff(x) = linear2(dropout(relu(linear1(x))))``，``sa(x) = self_attn(x, x, x, mask)[0]``。
    - post-norm（默认，``norm_first=False``）：``x = norm1(x + dropout1(sa(x)))``，
      然后 ``x = norm2(x + dropout2(ff(x)))``（先加残差，再归一化）。
    - pre-norm（``norm_first=True``）：``x = x + dropout1(sa(norm1(x)))``，然后 ``x = x + dropout2(ff(norm2(x)))``。
    - ``forward(x, mask=None)``：``x`` 为 ``(B, T, d_model)``，返回同样形状。``mask`` 可广播到
      ``(B, num_heads, T, T)``，True 表示可以关注（通常是 ``padding_mask`` 的 ``(B, 1, 1, T)``）；
      mask 只作用在注意力上。完全被屏蔽的行输出也必须是有限值。
    - 这正是 ``nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, activation="relu",
      batch_first=True, norm_first=...)`` 的计算：eval 模式下，拷贝权重后输出与它的
      ``layer(x, src_key_padding_mask=~keep)`` 相同。

    A Transformer encoder layer: self-attention and a feed-forward network (FFN), each with a residual
    connection and LayerNorm.

    - ``EncoderLayer(d_model, num_heads, d_ff, dropout=0.1, norm_first=False)``.
    - Submodules (exactly these attribute names, and no other layer with parameters):
      ``self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)``,
      ``self.linear1 = nn.Linear(d_model, d_ff)``, ``self.linear2 = nn.Linear(d_ff, d_model)``, two
      **separate** ``self.norm1``, ``self.norm2 = nn.LayerNorm(d_model)``, and
      ``self.dropout``, ``self.dropout1``, ``self.dropout2 = nn.Dropout(dropout)``.
    - ``ff(x) = linear2(dropout(relu(linear1(x))))`` and ``sa(x) = self_attn(x, x, x, mask)[0]``.
    - Post-norm (the default, ``norm_first=False``): ``x = norm1(x + dropout1(sa(x)))``, then
      ``x = norm2(x + dropout2(ff(x)))`` (add the residual first, then normalise).
    - Pre-norm (``norm_first=True``): ``x = x + dropout1(sa(norm1(x)))``, then
      ``x = x + dropout2(ff(norm2(x)))``.
    - ``forward(x, mask=None)``: ``x`` is ``(B, T, d_model)``; return the same shape. ``mask``
      broadcasts to ``(B, num_heads, T, T)``, True = may attend (usually ``padding_mask``'s
      ``(B, 1, 1, T)``); the mask acts on the attention only. Fully masked rows still give finite
      outputs.
    - This is exactly what ``nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout,
      activation="relu", batch_first=True, norm_first=...)`` computes: in eval mode, with its weights
      copied, the output equals its ``layer(x, src_key_padding_mask=~keep)``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        raise NotImplementedError("TODO: EncoderLayer.__init__")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError("TODO: EncoderLayer.forward")


class TransformerClassifier(nn.Module):
    """序列分类器：嵌入 × √d_model + 位置编码 + N 层编码器 + 对非 PAD 位置做平均池化 + 线性分类。

    - ``TransformerClassifier(vocab_size, d_model, num_heads, num_layers, d_ff, num_classes,
      max_len=128, pad_idx=0, dropout=0.1)``。
    - 子模块（属性名必须一致）：``self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)``，
      ``self.pos = PositionalEncoding(d_model, max_len, dropout)``，
      ``self.layers = nn.ModuleList([EncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)])``
      （post-norm），``self.classifier = nn.Linear(d_model, num_classes)``。
    - ``forward(tokens)``：``tokens`` 为 ``(B, T)`` 的 int64，``T ≤ max_len``，值为 ``pad_idx`` 的位置是 PAD
      （PAD 可以出现在任何位置，通常在末尾）。
      1. ``x = pos(embedding(tokens) · √d_model)``；
      2. ``keep = tokens != pad_idx``，每一层 ``x = layer(x, keep[:, None, None, :])``（PAD 不能被关注）；
      3. 对 ``keep`` 为 True 的位置求平均（PAD 位置不参与）；整条序列都是 PAD 时池化结果为 0 向量（不能是 NaN）；
      4. 返回 ``classifier(pooled)``，形状 ``(B, num_classes)``，原始 logits。
    - 因此 eval 模式下，在序列末尾追加 PAD 不会改变 logits。

    A sequence classifier: embedding × √d_model, positional encoding, N encoder layers, mean pooling
    over the non-PAD positions, a linear classifier.

    - ``TransformerClassifier(vocab_size, d_model, num_heads, num_layers, d_ff, num_classes,
      max_len=128, pad_idx=0, dropout=0.1)``.
    - Submodules (exactly these attribute names): ``self.embedding = nn.Embedding(vocab_size, d_model,
      padding_idx=pad_idx)``, ``self.pos = PositionalEncoding(d_model, max_len, dropout)``,
      ``self.layers = nn.ModuleList([EncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)])``
      (post-norm), ``self.classifier = nn.Linear(d_model, num_classes)``.
    - ``forward(tokens)``: ``tokens`` is ``(B, T)`` int64 with ``T ≤ max_len``; positions equal to
      ``pad_idx`` are PAD (anywhere, usually at the end).
      1. ``x = pos(embedding(tokens) · √d_model)``;
      2. ``keep = tokens != pad_idx``; each layer runs ``x = layer(x, keep[:, None, None, :])`` (PAD is
         never attended to);
      3. average over the positions where ``keep`` is True (PAD excluded); a sequence that is all PAD
         pools to the zero vector (not NaN);
      4. return ``classifier(pooled)``, shape ``(B, num_classes)``, raw logits.
    - So in eval mode appending PAD tokens at the end does not change the logits.
    """

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, d_ff: int,
                 num_classes: int, max_len: int = 128, pad_idx: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        raise NotImplementedError("TODO: TransformerClassifier.__init__")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: TransformerClassifier.forward")
