"""Probes: trusted test code that runs in the worker against a student (or reference) module.

A probe builds objects from the student's code, exercises them (a forward pass, a few training
steps, a backward) and returns plain data: tensors, numbers, flags. It never decides a verdict;
the tests in the grader compare what it returns. One module per exercise, named like it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable

Probe = Callable[..., Any]
_REGISTRY: dict[str, Probe] = {}


def probe(fn: Probe) -> Probe:
    """Register ``fn`` under ``<exercise>.<function name>``."""
    exercise = fn.__module__.rsplit(".", 1)[-1]
    _REGISTRY[f"{exercise}.{fn.__name__}"] = fn
    return fn


def find_probe(exercise: str, name: str) -> Probe:
    """The probe ``name`` of ``exercise`` (or a shared one from ``common``); KeyError if none."""
    importlib.import_module(f"{__name__}.common")
    if f"common.{name}" in _REGISTRY:
        return _REGISTRY[f"common.{name}"]
    importlib.import_module(f"{__name__}.{exercise}")
    return _REGISTRY[f"{exercise}.{name}"]


def run_probe(exercise: str, name: str, impl: ModuleType, kwargs: dict[str, Any]) -> Any:
    return find_probe(exercise, name)(impl, **kwargs)
