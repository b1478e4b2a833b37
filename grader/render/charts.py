"""Geometry of the small inline-SVG charts a report shows: an error heat map, a training curve, a
strip of speed ratios. The markup is in ``templates/charts.svg.j2``; this module only computes
positions and colours.

Why not matplotlib: three fixed chart types of a few dozen shapes each, drawn for every report of
a batch; importing matplotlib costs about a second per process and tens of MB in the grading
image, and its SVG embeds fonts and ids that make reports differ between runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 320, 140
PAD = 28
LABEL_PAD = 52


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    size_x: float
    size_y: float
    colour: str
    value: str


def heat_map(grid: list[list[float | None]], cell_px: float = 12.0) -> dict[str, Any]:
    """Cells shaded from white (no error) to red (the largest error); a missing value is grey."""
    values = [v for row in grid for v in row if v is not None]
    top = max(values) if values else 0.0
    cells = []
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value is None:
                colour, label = "#999999", "NaN/Inf"
            else:
                share = value / top if top > 0 else 0.0
                shade = round(255 * (1 - share))
                colour, label = f"rgb(255,{shade},{shade})", f"{value:.3g}"
            cells.append(Cell(c * cell_px, r * cell_px, cell_px, cell_px, colour, label))
    cols = max((len(row) for row in grid), default=0)
    return {"cells": cells, "width": cols * cell_px, "height": len(grid) * cell_px, "top": f"{top:.3g}"}


def curve(values: list[float | None]) -> dict[str, Any] | None:
    """A polyline of a training loss per step, scaled to the chart; None with fewer than two points."""
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return None
    low, high = min(v for _, v in points), max(v for _, v in points)
    span = high - low or 1.0
    last = max(i for i, _ in points) or 1
    left = LABEL_PAD  # room for the y-axis labels (``0.0485``)
    inner_w, inner_h = WIDTH - left - PAD, HEIGHT - 2 * PAD
    coords = " ".join(f"{left + inner_w * i / last:.1f},{PAD + inner_h * (1 - (v - low) / span):.1f}" for i, v in points)
    return {"points": coords, "width": WIDTH, "height": HEIGHT, "pad": PAD, "left": left, "inner_w": inner_w,
            "low": f"{low:.3g}", "high": f"{high:.3g}", "steps": last + 1}


def meter(value: float | None, threshold: float, direction: str = "at_least") -> dict[str, Any]:
    """A bar for a metric with the threshold marked: over [0, 1] for an accuracy that must reach the
    threshold, over [0, 1.5 × the larger of value and threshold] for a loss that must stay below it."""
    inner_w = WIDTH - 2 * PAD
    below = direction == "at_most"
    upper = 1.5 * max(threshold, value or 0.0) if below else max(1.0, threshold)
    shown = 0.0 if value is None else min(max(value, 0.0), upper)
    ok = value is not None and (value < threshold if below else value >= threshold)
    return {"width": WIDTH, "height": 44, "pad": PAD, "bar": inner_w * shown / upper,
            "mark": PAD + inner_w * min(threshold, upper) / upper, "inner": inner_w, "ok": ok}


def ratio_strip(ratios: list[float], factor: float, median: float) -> dict[str, Any]:
    """Each round's time ratio on a log scale, with the allowed factor and the median marked."""
    finite = [r for r in ratios if r > 0 and math.isfinite(r)] or [1.0]
    low = min(min(finite), 1.0, factor) / 1.5
    high = max(max(finite), factor, median) * 1.5
    span = math.log(high) - math.log(low)
    inner_w = WIDTH - 2 * PAD

    def x(ratio: float) -> float:
        return PAD + inner_w * (math.log(max(ratio, low)) - math.log(low)) / span

    return {"width": WIDTH, "height": 60, "pad": PAD, "dots": [f"{x(r):.1f}" for r in finite],
            "factor_x": f"{x(factor):.1f}", "median_x": f"{x(median):.1f}", "one_x": f"{x(1.0):.1f}",
            "ok": median <= factor}
