"""Probes every exercise can use: calls that need something done inside the worker."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from . import probe


@probe
def raises(impl: ModuleType, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str | None:
    """Call ``name`` and return the exception type it raised, or None.

    ``NotImplementedError`` is re-raised so an unfinished stub reads as "not implemented".
    """
    try:
        getattr(impl, name)(*args, **(kwargs or {}))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the type is the observation
        return type(exc).__name__
    return None


@probe
def call_transposed(impl: ModuleType, name: str, args: list[Any], transpose: dict[str, list[int]],
                    kwargs: dict[str, Any] | None = None) -> Any:
    """Call ``name`` with some tensor arguments made non-contiguous by ``transpose(d0, d1)``.

    The grader sends each such argument already transposed; transposing again here gives a view
    with the intended values and a non-contiguous layout.
    """
    args = list(args)
    for position, (d0, d1) in transpose.items():
        args[int(position)] = args[int(position)].transpose(d0, d1)
    return getattr(impl, name)(*args, **(kwargs or {}))


def _materialize(spec: Any, generator: torch.Generator) -> Any:
    """Build an argument from its description: ``{"randn": shape}`` or ``{"rand_bool": shape, "p": p}``."""
    if isinstance(spec, dict) and "randn" in spec:
        dtype = getattr(torch, spec.get("dtype", "float32"))
        return torch.randn(spec["randn"], generator=generator, dtype=dtype) * spec.get("scale", 1.0)
    if isinstance(spec, dict) and "rand_bool" in spec:
        return torch.rand(spec["rand_bool"], generator=generator) < spec.get("p", 0.5)
    return spec


@probe
def repeat_generated(impl: ModuleType, name: str, args: list[Any], seed: int, repeats: int, project_seed: int,
                     kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``name`` ``repeats`` times, each on new inputs generated here; return one projection per run.

    Used by speed tests: the grader times this whole call, so generating the inputs in the
    worker and returning numbers keeps data transfer out of the timing. What it trusts: nothing it
    reports is taken at its word. Every repetition gets inputs of its own (seed + repetition), so
    remembering results by identity or by content saves no work; every repetition's output is
    projected onto a random ``w`` (``<out, w>``) and the grader compares each projection with the
    reference's, so skipping work on all but one call is a wrong answer.
    """
    projections: list[float] = []
    shape: list[int] | None = None
    for repetition in range(repeats):
        generator = torch.Generator().manual_seed(seed + repetition)
        inputs = [_materialize(a, generator) for a in args]
        out = getattr(impl, name)(*inputs, **(kwargs or {}))
        if not isinstance(out, torch.Tensor):
            return {"projections": None, "type": type(out).__name__}
        if shape is None:
            shape = list(out.shape)
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(project_seed), dtype=torch.float64)
        if list(out.shape) != shape:
            return {"projections": None, "shape": list(out.shape), "type": "Tensor"}
        projections.append(float((out.detach().double() * w).sum()))
    return {"projections": projections, "shape": shape, "type": "Tensor"}
