"""HW1 张量操作 — 李明 (student id 20241137)

PyTorch 课程作业 1。本地跑过 grader check ex01。
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor_batch(arrays: list[np.ndarray], dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    if len(arrays) == 0:
        raise ValueError("arrays is empty")
    shape0 = np.shape(arrays[0])
    for i, arr in enumerate(arrays):
        if np.shape(arr) != shape0:
            raise ValueError(f"array {i} has shape {np.shape(arr)}, expected {shape0}")
    # np.stack 会新建一个连续的数组，所以后面 from_numpy 共享的是这个副本，不是原数组
    stacked = np.stack([np.asarray(a) for a in arrays], axis=0)
    return torch.from_numpy(stacked).to(device=device, dtype=dtype)


def standardize(x: torch.Tensor, dim: int | tuple[int, ...] = 0, eps: float = 1e-5) -> torch.Tensor:
    mu = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ||a-b||^2 = ||a||^2 - 2 a.b + ||b||^2
    a_sq = (a * a).sum(dim=1, keepdim=True)   # (N, 1)
    b_sq = (b * b).sum(dim=1).unsqueeze(0)    # (1, M)
    cross = a @ b.T                           # (N, M)
    dists = a_sq - 2 * cross + b_sq
    return dists


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    B, C, H, W = images.shape
    p = patch
    if H % p != 0 or W % p != 0:
        raise ValueError(f"image size {H}x{W} not divisible by patch {p}")
    nh, nw = H // p, W // p
    # (B, C, nh, p, nw, p) -> (B, nh, nw, C, p, p)
    t = images.reshape(B, C, nh, p, nw, p)
    t = t.permute(0, 2, 4, 1, 3, 5)
    return t.reshape(B, nh * nw, C * p * p)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    p = patch
    B = patches.shape[0]
    nh, nw = height // p, width // p
    t = patches.reshape(B, nh, nw, channels, p, p)
    t = t.permute(0, 3, 1, 4, 2, 5)   # -> (B, C, nh, p, nw, p)
    return t.reshape(B, channels, height, width)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    m = mask != 0  # bool / int / float 都统一成 bool
    m = m.to(x.device)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    # 用 where 而不是乘法，这样被遮住的位置就算是 nan 也不会影响结果
    zeros = torch.zeros((), dtype=x.dtype, device=x.device)
    total = torch.where(m, x, zeros).sum(dim=dim)
    count = m.to(x.dtype).sum(dim=dim)
    # print(total.shape, count.shape)
    return total / count.clamp(min=1)
