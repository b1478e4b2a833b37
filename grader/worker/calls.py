"""The operations a test can run against an exercise module, shared by the worker and the reference.

The grader runs the reference in its own process through these same functions, so a student
result and a reference result are produced and encoded the same way.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import torch

from .probes import run_probe


def _target(module: ModuleType, name: str) -> Any:
    target = getattr(module, name, None)
    if target is None:
        raise AttributeError(f"{module.__name__}.py has no function or class named {name!r}")
    return target


def call(module: ModuleType, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    return _target(module, name)(*args, **kwargs)


def vjp(module: ModuleType, name: str, args: Sequence[Any], kwargs: dict[str, Any],
        grad_output: torch.Tensor, wrt: Sequence[int]) -> dict[str, Any]:
    """Call ``name`` with the tensors at positions ``wrt`` requiring grad; return output and input grads.

    The output keeps its autograd facts (so a detached result is visible to the checks); the
    gradients are ``None`` for inputs that no gradient reached.
    """
    args = list(args)
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
    output = _target(module, name)(*args, **kwargs)
    grads: list[Any] = [None] * len(wrt)
    if isinstance(output, torch.Tensor) and output.requires_grad:
        grads = list(torch.autograd.grad(output, [args[i] for i in wrt], grad_outputs=grad_output,
                                         allow_unused=True))
    return {"output": output, "grads": grads}


def dispatch(module: ModuleType, exercise: str, request: dict[str, Any]) -> Any:
    """Run one request (``call``, ``vjp`` or ``probe``) against ``module``."""
    op = request.get("op")
    name = str(request.get("name"))
    kwargs = request.get("kwargs") or {}
    if op == "call":
        return call(module, name, request.get("args") or (), kwargs)
    if op == "vjp":
        return vjp(module, name, request.get("args") or (), kwargs, request["grad_output"], request["wrt"])
    if op == "probe":
        return run_probe(exercise, name, module, kwargs)
    raise ValueError(f"unknown operation {op!r}")
