"""Probes for ex01_tensors."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from . import probe


# Taken when the worker starts, before any student module is imported (the worker preloads the
# probes): methods of the C base types, which student code cannot replace (it can replace
# ``np.array_equal`` or ``torch.Tensor.add_``).
_BASE = torch._C.TensorBase
_detach, _clone, _add_, _logical_not_ = _BASE.detach, _BASE.clone, _BASE.add_, _BASE.logical_not_
_device, _numel = _BASE.device.__get__, _BASE.numel


def _unchanged(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.ndarray.all(np.ndarray.__eq__(a, b)))


@probe
def to_tensor_batch_copy(impl: ModuleType, arrays: list[np.ndarray], view: str | None = None,
                         kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stack ``arrays`` (optionally as non-contiguous views) and report whether memory is shared.

    What it trusts: ``out`` is returned as data (the wire reads it through the C base class).
    ``shares_memory`` is an observation made next to student code: it changes the output in place
    and compares the input arrays with copies taken before the call, using only C-level methods
    taken before the submission was imported, so patching ``numpy`` or ``torch.Tensor`` does not
    change it. Code in the same process can still reach this module: defence in depth.
    """
    if view == "T":
        arrays = [a.T for a in arrays]
    elif view == "stride":
        arrays = [a[:, ::2] for a in arrays]
    before = [np.ndarray.copy(a) for a in arrays]
    out = impl.to_tensor_batch(arrays, **(kwargs or {}))
    is_tensor = isinstance(out, torch.Tensor)
    result = _clone(_detach(out)) if is_tensor else out
    shares = False
    if is_tensor and _device(out).type == "cpu" and _numel(out):
        with torch.no_grad():
            _add_(out, 1) if out.dtype != torch.bool else _logical_not_(out)
        shares = any(not _unchanged(a, b) for a, b in zip(arrays, before))
    return {"out": result, "shares_memory": shares}
