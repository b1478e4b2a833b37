"""What a test holds to reach an implementation: the student's (remote) or the reference (local).

Both expose the same methods, so a test reads the same whichever it runs against::

    out = student.standardize(x, dim=0)          # attribute access calls the function
    res = student.probe("train_mlp", x=x, y=y)   # trusted probe code run against the module
    res = student.vjp("swish", (x, 1.0), grad_output=g, wrt=[0])
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import torch

from grader.remote import WorkerSession
from grader.worker import calls, wire


class Implementation:
    """Common surface of student and reference implementations of one exercise."""

    exercise: str

    def run(self, request: dict[str, Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.run({"op": "call", "name": name, "args": list(args), "kwargs": kwargs})

    def probe(self, probe_name: str, /, **kwargs: Any) -> Any:
        return self.run({"op": "probe", "name": probe_name, "kwargs": kwargs})

    def vjp(self, name: str, args: Sequence[Any], grad_output: torch.Tensor, wrt: Sequence[int] = (0,),
            **kwargs: Any) -> dict[str, Any]:
        return self.run({"op": "vjp", "name": name, "args": list(args), "kwargs": kwargs,
                         "grad_output": grad_output, "wrt": list(wrt)})

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)


class RemoteImplementation(Implementation):
    """The submission's module, reached through its sandboxed worker."""

    def __init__(self, session: WorkerSession, exercise: str, call_timeout_s: float) -> None:
        self.session = session
        self.exercise = exercise
        self.call_timeout_s = call_timeout_s
        self.deadline: float | None = None  # monotonic time when the current test's budget ends

    def run(self, request: dict[str, Any]) -> Any:
        timeout = self.call_timeout_s
        if self.deadline is not None:
            timeout = max(0.5, min(timeout, self.deadline - time.monotonic()))
        return self.session.request({**request, "exercise": self.exercise}, timeout)

    def generate(self, args: list[Any], seed: int, repeats: int) -> Any:
        """Have the worker make inputs for a timed request (see ``grader/worker/arena.py``); untimed."""
        return self.run({"op": "generate", "args": args, "seed": seed, "repeats": repeats})

    def last_cost(self) -> dict[str, float] | None:
        """CPU and wall seconds the worker says its last request took (trust it only for the reference)."""
        return self.session.last_cost


class LocalImplementation(Implementation):
    """The reference module, run in the grader's own process (it is trusted)."""

    def __init__(self, module: ModuleType, exercise: str) -> None:
        self.module = module
        self.exercise = exercise

    def run(self, request: dict[str, Any]) -> Any:
        # The round trip gives reference values the same form (CPU copies, facts) as student values.
        return wire.roundtrip({"value": calls.dispatch(self.module, self.exercise, request)})["value"]


def load_module(path: Path, exercise: str) -> ModuleType:
    """Import a trusted module (the reference) from a file, under a private name."""
    name = f"_grader_reference_{exercise}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
