"""练习 1：张量操作 / Exercise 1: tensor operations.

把每个函数里的 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex01`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex01`` (one task: ``grader check ex01 -k standardize``).
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor_batch(arrays: list[np.ndarray], dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """把若干形状相同的 NumPy 数组堆叠成一个批次张量。

    - 输入：``arrays`` 为非空列表，每个数组形状相同（可以不连续，例如 ``arr.T``）。
    - 输出：形状 ``(len(arrays), *arrays[0].shape)``，dtype 为 ``dtype``，位于 ``device``
      （包括 ``"meta"``）。
    - 结果必须是**副本**：修改结果不能改变原数组（``torch.from_numpy`` 会共享内存）。
    - 形状不一致或列表为空时抛出 ``ValueError``。

    Stack same-shaped NumPy arrays into one batch tensor.

    - Input: ``arrays``, a non-empty list of arrays of one shape (possibly non-contiguous).
    - Output: shape ``(len(arrays), *arrays[0].shape)``, dtype ``dtype``, on ``device``
      (``"meta"`` included).
    - The result must be a **copy**: changing it must not change the inputs
      (``torch.from_numpy`` shares memory).
    - Raise ``ValueError`` for an empty list or mismatched shapes.
    """
    raise NotImplementedError("TODO: to_tensor_batch")


def standardize(x: torch.Tensor, dim: int | tuple[int, ...] = 0, eps: float = 1e-5) -> torch.Tensor:
    """沿 ``dim`` 做标准化：``(x - mean) / sqrt(var + eps)``。

    - ``mean`` 和 ``var`` 沿 ``dim`` 计算（``dim`` 可以是负数或元组），``var`` 为**总体方差**
      （除以 N，而不是 N-1）。利用广播，不要写 Python 循环。
    - 输出与 ``x`` 形状、dtype、设备相同；常数列的结果为 0（不能出现 NaN）。
    - 必须可微：梯度能传回 ``x``。

    Standardise along ``dim``: ``(x - mean) / sqrt(var + eps)``.

    - ``mean`` and ``var`` are taken over ``dim`` (negative or a tuple allowed); ``var`` is the
      **population** variance (divide by N, not N-1). Use broadcasting, not Python loops.
    - The output has the shape, dtype and device of ``x``; a constant column gives 0 (no NaN).
    - It must be differentiable: gradients flow back to ``x``.
    """
    raise NotImplementedError("TODO: standardize")


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """两组向量之间的平方欧氏距离矩阵。

    - 输入：``a`` 形状 ``(N, D)``，``b`` 形状 ``(M, D)``，dtype 相同。
    - 输出：``(N, M)``，``out[i, j] = ||a[i] - b[j]||²``，dtype 与输入相同，且所有元素 ``>= 0``
      （浮点抵消可能产生很小的负数，请截断到 0）。
    - 向量化实现（提示：``||a||² - 2 a·b + ||b||²``，用一次矩阵乘法），不要用 Python 循环；必须可微。
      速度要求：不慢于矩阵乘法实现的 3 倍。``(a[:, None] - b[None]) ** 2`` 会生成 N×M×D 的中间张量，太慢也太占内存。

    Squared Euclidean distances between two sets of vectors.

    - Input: ``a`` of shape ``(N, D)``, ``b`` of shape ``(M, D)``, same dtype.
    - Output: ``(N, M)`` with ``out[i, j] = ||a[i] - b[j]||²``, the inputs' dtype, every entry
      ``>= 0`` (cancellation can give tiny negatives: clamp them to 0).
    - Vectorise it (hint: ``||a||² - 2 a·b + ||b||²`` with one matrix product), no Python loops; it
      must be differentiable. Speed: within 3× of a matrix-product implementation;
      ``(a[:, None] - b[None]) ** 2`` builds an N×M×D intermediate and is too slow and too big.
    """
    raise NotImplementedError("TODO: pairwise_sq_dists")


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """把图像切成不重叠的 ``patch × patch`` 小块并展平（ViT 风格）。

    - 输入：``(B, C, H, W)``；``H`` 和 ``W`` 都必须能被 ``patch`` 整除，否则抛出 ``ValueError``。
    - 输出：``(B, (H/p)*(W/p), C*p*p)``。小块按行优先排列（先从左到右，再从上到下），
      每个小块内部按 ``(C, p, p)`` 展平——与 ``F.unfold(images, p, stride=p).transpose(1, 2)`` 一致。
    - 提示：``reshape → permute → reshape``；只用 ``reshape`` 会打乱像素顺序。

    Cut images into non-overlapping ``patch × patch`` tiles and flatten them (ViT style).

    - Input ``(B, C, H, W)``; ``H`` and ``W`` must be divisible by ``patch``, else ``ValueError``.
    - Output ``(B, (H/p)*(W/p), C*p*p)``. Patches are in row-major order (left to right, then top
      to bottom), each flattened as ``(C, p, p)``: the same as
      ``F.unfold(images, p, stride=p).transpose(1, 2)``.
    - Hint: ``reshape → permute → reshape``; a bare ``reshape`` scrambles the pixels.
    """
    raise NotImplementedError("TODO: patchify")


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """``patchify`` 的逆操作：``unpatchify(patchify(x, p), p, C, H, W)`` 必须精确等于 ``x``。

    - 输入：``(B, (H/p)*(W/p), C*p*p)``；输出：``(B, C, H, W)``。注意非方形图像（H ≠ W）。

    The inverse of ``patchify``: ``unpatchify(patchify(x, p), p, C, H, W)`` must equal ``x`` exactly.

    - Input ``(B, (H/p)*(W/p), C*p*p)``; output ``(B, C, H, W)``. Mind non-square images (H ≠ W).
    """
    raise NotImplementedError("TODO: unpatchify")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """只对 ``mask`` 为真的位置沿 ``dim`` 求平均（变长序列的池化）。

    - ``mask`` 的形状是 ``x`` 形状的前缀，例如 ``x`` 为 ``(B, T, H)``、``mask`` 为 ``(B, T)``；
      ``mask`` 可以是 bool、整数或 0/1 浮点张量。需要把 mask 在末尾补维（``unsqueeze(-1)``）再广播。
    - 输出：去掉 ``dim`` 这一维，dtype 和设备与 ``x`` 相同。
    - 某一行全被遮蔽时结果为 0，而不是 NaN。对被遮蔽位置的梯度为 0。
    - 不要用 ``x[mask]``：布尔索引会把批次维展平。

    Mean over ``dim`` counting only positions where ``mask`` is true (pooling variable-length
    sequences).

    - ``mask``'s shape is a prefix of ``x``'s, e.g. ``x`` is ``(B, T, H)`` and ``mask`` is
      ``(B, T)``; it may be bool, integer or a 0/1 float tensor. Add trailing dimensions
      (``unsqueeze(-1)``) so it broadcasts.
    - Output: ``x`` without ``dim``, with ``x``'s dtype and device.
    - A row with nothing unmasked gives 0, not NaN. Masked positions get zero gradient.
    - Do not use ``x[mask]``: boolean indexing flattens the batch.
    """
    raise NotImplementedError("TODO: masked_mean")
