"""Exercise 9 — my solutions (attention, Transformer encoder, classifier).

Masks everywhere: bool, True = this key may be attended to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, returns (output, weights)."""
    d_k = q.size(-1)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(d_k)   # (..., Lq, Lk)
    if mask is None:
        weights = scores.softmax(dim=-1)
    else:
        # most negative finite value instead of -1e9 (float16!); a row that is masked
        # everywhere becomes uniform here and is zeroed right after -> no NaN, also in backward
        blocked = ~mask
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1).masked_fill(blocked, 0.0)
    return torch.matmul(weights, v), weights


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, L, d_model) -> (B, h, L, d_k); head i gets columns i*d_k ... (i+1)*d_k - 1
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.d_k).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, len_q = q.size(0), q.size(1)
        queries = self._heads(self.w_q(q))
        keys = self._heads(self.w_k(k))
        values = self._heads(self.w_v(v))
        _, attn = scaled_dot_product_attention(queries, keys, values, mask)   # (B, h, Lq, Lk)
        mixed = self.dropout(attn) @ values                                     # dropout only on the weights
        mixed = mixed.transpose(1, 2).reshape(batch, len_q, self.d_model)     # merge the heads again
        return self.w_o(mixed), attn


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        # angle[pos, i] = pos / 10000^(2i / d_model), one column per sin/cos pair
        pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
        angles = pos / torch.pow(10000.0, two_i / d_model)          # (max_len, ceil(d/2))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angles)
        n_cos = d_model // 2                                         # odd d_model: one sine more than cosines
        pe[:, 1::2] = torch.cos(angles[:, :n_cos])
        self.register_buffer("pe", pe.float())
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.size(1)
        if seq_len > self.pe.size(0):
            raise ValueError(f"sequence length {seq_len} > max_len {self.pe.size(0)}")
        return self.dropout(x + self.pe[:seq_len])


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """mask[i, j] = j <= i."""
    idx = torch.arange(size, device=device)
    return idx.unsqueeze(1) >= idx.unsqueeze(0)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, 1, 1, T) bool, True where t < lengths[b]."""
    if max_len is None:
        max_len = int(lengths.max())
    steps = torch.arange(max_len, device=lengths.device)
    keep = steps.unsqueeze(0) < lengths.unsqueeze(1)     # (B, T)
    return keep[:, None, None, :]


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _attention_block(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, _ = self.self_attn(x, x, x, mask)
        return self.dropout1(out)

    def _feed_forward_block(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(F.relu(self.linear1(x)))
        return self.dropout2(self.linear2(hidden))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self._attention_block(self.norm1(x), mask)
            x = x + self._feed_forward_block(self.norm2(x))
        else:
            x = self.norm1(x + self._attention_block(x, mask))
            x = self.norm2(x + self._feed_forward_block(x))
        return x


class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, d_ff: int,
                 num_classes: int, max_len: int = 128, pad_idx: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.pad_idx = pad_idx
        self.scale = math.sqrt(d_model)
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList(
            [EncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)]
        )
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = tokens != self.pad_idx                        # (B, T), True = real token
        h = self.pos(self.embedding(tokens) * self.scale)
        attn_mask = keep[:, None, None, :]                   # PAD keys are never attended to
        for layer in self.layers:
            h = layer(h, attn_mask)
        pooled = h.mean(dim=1)                               # average over the sequence
        return self.classifier(pooled)
