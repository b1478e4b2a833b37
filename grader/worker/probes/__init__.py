"""Probes: trusted test code that runs in the worker against a student (or reference) module.

A probe builds objects from the student's code, exercises them (a forward pass, a few training
steps, a backward) and returns plain data: tensors, numbers, flags. It never decides a verdict;
the tests in the grader compare what it returns.

The probes belong to the course, not to the tool: ``<course>/probes/<exercise>.py`` (and
``common.py`` for probes every exercise can use). They are imported as submodules of this
package, so ``from . import probe`` works in them: inside a sandbox the backend copies them into
the staged worker package; in the grader's own process (the reference) :func:`use_course_probes`
adds the course's folder to this package's search path.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

Probe = Callable[..., Any]
_REGISTRY: dict[str, Probe] = {}
_OWN_PATH = list(__path__)


def probe(fn: Probe) -> Probe:
    """Register ``fn`` under ``<exercise>.<function name>``."""
    exercise = fn.__module__.rsplit(".", 1)[-1]
    _REGISTRY[f"{exercise}.{fn.__name__}"] = fn
    return fn


def use_course_probes(directory: Path | None) -> None:
    """Import probes from ``directory`` (a course's ``probes/``) in this process from now on.

    Switching to another course forgets the probes loaded from the previous one.
    """
    wanted = _OWN_PATH + ([str(directory)] if directory is not None else [])
    if list(__path__) == wanted:
        return
    __path__[:] = wanted
    _REGISTRY.clear()
    for name in [n for n in sys.modules if n.startswith(f"{__name__}.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def preload() -> None:
    """Import every probe module now, before any student module, so what they take at import
    (references to library functions) is taken before student code can replace it."""
    for module in sorted({info.name for info in pkgutil.iter_modules(__path__)}):
        importlib.import_module(f"{__name__}.{module}")


def find_probe(exercise: str, name: str) -> Probe:
    """The probe ``name`` of ``exercise`` (or a shared one from ``common``); KeyError if none."""
    for module in ("common", exercise):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{module}":
                raise
        if f"{module}.{name}" in _REGISTRY:
            return _REGISTRY[f"{module}.{name}"]
    raise KeyError(f"no probe {name!r} for {exercise} (looked in the course's probes/common.py and probes/{exercise}.py)")


def run_probe(exercise: str, name: str, impl: ModuleType, kwargs: dict[str, Any]) -> Any:
    return find_probe(exercise, name)(impl, **kwargs)
