"""Figures a test leaves for the report besides its verdict: where a tensor differs, a speed test's
ratios, the metric an accuracy test compared with its threshold and the loss curve behind it.

The checks record them in the grader process while a test runs; the plugin takes them when the test
ends and keeps them in ``report.json`` (``evidence``), where renderers draw heat maps, curves and
ratio strips. Evidence is data about the student's result next to the expected one, so a student
sees it only where the test's detail is shown (public tests), never for hidden ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch

MAP_CELLS = 16  # an error map is at most this many cells a side
CURVE_POINTS = 200  # a loss curve is thinned to at most this many points

_recorded: list[dict[str, Any]] = []


def record(kind: str, **data: Any) -> None:
    """Keep one piece of evidence for the test that is running now."""
    _recorded.append({"kind": kind, **data})


def take() -> list[dict[str, Any]]:
    """The evidence recorded since the last call, which starts a new test's record."""
    taken = list(_recorded)
    _recorded.clear()
    return taken


def finite(value: float) -> float | None:
    """A number JSON can hold: None for NaN and infinities."""
    return float(value) if math.isfinite(value) else None


def error_map(abs_err: torch.Tensor) -> list[list[float | None]] | None:
    """The largest absolute error per cell of a grid at most ``MAP_CELLS`` a side, for 2-D and 3-D
    outputs (3-D: the largest over the first dimension); None for other ranks."""
    if abs_err.dim() == 3:
        abs_err = abs_err.amax(dim=0) if abs_err.shape[0] > 0 else abs_err.sum(dim=0)
    if abs_err.dim() != 2 or abs_err.numel() == 0:
        return None
    rows, cols = abs_err.shape
    row_edges = _edges(rows)
    col_edges = _edges(cols)
    grid = []
    for r0, r1 in zip(row_edges, row_edges[1:]):
        grid.append([finite(float(abs_err[r0:r1, c0:c1].max())) for c0, c1 in zip(col_edges, col_edges[1:])])
    return grid


def _edges(size: int) -> list[int]:
    cells = min(size, MAP_CELLS)
    return [round(i * size / cells) for i in range(cells + 1)]


def thin_curve(values: list[float]) -> list[float | None]:
    """At most ``CURVE_POINTS`` evenly spaced values of a curve, its last value kept."""
    if len(values) <= CURVE_POINTS:
        return [finite(float(v)) for v in values]
    step = len(values) / CURVE_POINTS
    picked = [values[int(i * step)] for i in range(CURVE_POINTS - 1)] + [values[-1]]
    return [finite(float(v)) for v in picked]


__all__ = ["record", "take", "error_map", "thin_curve", "finite"]
