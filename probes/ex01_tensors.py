"""Probes for ex01_tensors."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from . import probe


# Taken when the worker starts, before any student module is imported (the worker preloads the
# probes): numpy's C methods, which a submission that replaces ``np.add`` cannot reach. This is
# defence in depth; the verdict does not rest on it (see the probe's "What it trusts").
_copy, _iadd = np.ndarray.copy, np.ndarray.__iadd__
_urandom = os.urandom


@probe
def to_tensor_batch_copy(impl: ModuleType, arrays: list[np.ndarray], view: str | None = None,
                         kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stack ``arrays`` (optionally as non-contiguous views), then add a whole number drawn at
    random (after the call) to every input array in place, and return the result as it is after
    that change.

    What it trusts: nothing it reports is a judgement. It returns the output values only, read
    after the inputs changed; the grader compares them with the stack of the arrays it sent. A
    result that shares memory with an input shows the change (the same offset everywhere) and
    fails as a wrong value. There is no flag to forge, and the offset is not known to code that
    runs before or after this probe, so turning an aliased result into the right values means
    computing them from the inputs, which is the task.
    """
    arrays = [_copy(a) for a in arrays]  # the probe's own inputs: the change below stays in here
    if view == "T":
        arrays = [a.T for a in arrays]
    elif view == "stride":
        arrays = [a[:, ::2] for a in arrays]
    out = impl.to_tensor_batch(arrays, **(kwargs or {}))
    offset = 1 + int.from_bytes(_urandom(2), "little") % 1000
    for a in arrays:
        _iadd(a, offset)
    del offset
    return {"out": out}
