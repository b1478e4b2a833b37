"""Reference solution for ex01_tensors (hidden from students)."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor_batch(arrays: list[np.ndarray], dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    if len(arrays) == 0:
        raise ValueError("need at least one array")
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError("all arrays must have the same shape")
    return torch.stack([torch.tensor(a, dtype=dtype) for a in arrays]).to(device)


def standardize(x: torch.Tensor, dim: int | tuple[int, ...] = 0, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps)


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sq = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)
    return sq.clamp_min(0)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError("height and width must be divisible by patch")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    b = patches.shape[0]
    x = patches.reshape(b, height // patch, width // patch, channels, patch, patch)
    x = x.permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, height, width)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    total = (x * m).sum(dim)
    count = m.expand_as(x).sum(dim).clamp_min(1)
    return total / count
