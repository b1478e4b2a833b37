"""Inputs for timed requests, made by the zygote while no student code can run.

A speed test times whole requests from the grader. Generating random inputs costs about as much as
a cheap operation on them, so inputs made inside the timed request would hide most of a slow
implementation's cost; inputs made in an untimed request by the child would let student code run
(a trace hook, a torch function mode) while they are made and work ahead. So the zygote makes them:
it runs no student code, and the child that serves the exercise is stopped between its requests.
They go into memory shared with every child forked later (one anonymous shared mapping made when
the worker starts); the timed request reads them there. Each timed round gets inputs of its own,
made afresh, so nothing a child writes into the arena survives into the next round.
"""

from __future__ import annotations

import mmap
from typing import Any

import torch

ARENA_BYTES = 256 * 1024 * 1024
ALIGN = 64


class ArenaTooSmall(ValueError):
    """The inputs a test asked for do not fit: a course setting, not the student's doing."""


def _materialize(spec: Any, generator: torch.Generator) -> Any:
    """Build an argument from its description: ``{"randn": shape}`` or ``{"rand_bool": shape, "p": p}``."""
    if isinstance(spec, dict) and "randn" in spec:
        dtype = getattr(torch, spec.get("dtype", "float32"))
        return torch.randn(spec["randn"], generator=generator, dtype=dtype) * spec.get("scale", 1.0)
    if isinstance(spec, dict) and "rand_bool" in spec:
        return torch.rand(spec["rand_bool"], generator=generator) < spec.get("p", 0.5)
    return spec


class Arena:
    """One shared mapping; ``generate`` fills it, ``inputs`` reads it back as tensors."""

    def __init__(self, size: int = ARENA_BYTES) -> None:
        self.size = size
        self.buffer = mmap.mmap(-1, size)  # anonymous and shared: children forked later see the same pages

    def _view(self, offset: int, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
        count = 1
        for n in shape:
            count *= n
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(self.buffer, dtype=dtype, count=count, offset=offset).view(shape)

    def generate(self, args: list[Any], seed: int, repeats: int) -> list[list[Any]]:
        """Make ``repeats`` sets of inputs (set ``r`` from a generator seeded ``seed + r``); return
        where each tensor lies: ``{"at": offset, "dtype": name, "shape": [...]}``, other values as they are."""
        layout: list[list[Any]] = []
        offset = 0
        for repetition in range(repeats):
            generator = torch.Generator().manual_seed(seed + repetition)
            entry: list[Any] = []
            for spec in args:
                value = _materialize(spec, generator)
                if not isinstance(value, torch.Tensor):
                    entry.append({"value": value})
                    continue
                nbytes = value.numel() * value.element_size()
                if offset + nbytes > self.size:
                    raise ArenaTooSmall(f"the inputs of one timed round need more than {self.size // 2**20} MiB; "
                                        "use smaller inputs or fewer repetitions in the course's speed settings")
                self._view(offset, value.dtype, list(value.shape)).copy_(value)
                entry.append({"at": offset, "dtype": str(value.dtype).removeprefix("torch."),
                              "shape": list(value.shape)})
                offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
            layout.append(entry)
        return layout

    def inputs(self, entry: list[Any]) -> list[Any]:
        """One repetition's inputs as tensors that view the arena (no copy)."""
        return [item["value"] if "value" in item else
                self._view(int(item["at"]), getattr(torch, item["dtype"]), list(item["shape"])) for item in entry]


_ARENA: Arena | None = None


def arena() -> Arena:
    """This worker's arena: made by the zygote before it forks (or on first use without a zygote)."""
    global _ARENA
    if _ARENA is None:
        _ARENA = Arena()
    return _ARENA


def generate_reply(request: dict[str, Any]) -> dict[str, Any]:
    """Answer a ``generate`` request; a failure here is the course's or the host's, never the student's."""
    try:
        layout = arena().generate(list(request.get("args") or []), int(request["seed"]), int(request["repeats"]))
    except (ArenaTooSmall, KeyError, TypeError, ValueError, RuntimeError) as exc:
        return {"ok": False, "error": {"type": type(exc).__name__, "kind": "grader", "phase": "generate",
                                       "message": str(exc), "traceback": ""}}
    return {"ok": True, "value": layout}
