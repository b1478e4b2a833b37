"""Probes for ex01_tensors."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from . import probe


@probe
def to_tensor_batch_copy(impl: ModuleType, arrays: list[np.ndarray], view: str | None = None,
                         kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stack ``arrays`` (optionally as non-contiguous views) and report whether memory is shared."""
    if view == "T":
        arrays = [a.T for a in arrays]
    elif view == "stride":
        arrays = [a[:, ::2] for a in arrays]
    before = [a.copy() for a in arrays]
    out = impl.to_tensor_batch(arrays, **(kwargs or {}))
    result = out.detach().clone() if isinstance(out, torch.Tensor) else out
    shares = False
    if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.numel():
        with torch.no_grad():
            out.add_(1) if out.dtype != torch.bool else out.logical_not_()
        shares = any(not np.array_equal(a, b) for a, b in zip(arrays, before))
    return {"out": result, "shares_memory": shares}
