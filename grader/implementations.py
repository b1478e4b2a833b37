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

from grader.deadlines import DeadlineRule
from grader.remote import WorkerSession
from grader.verdicts import CpuLimitExceeded
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
    """The submission's module, reached through its sandboxed worker.

    Every call runs under the exercise's :class:`~grader.deadlines.DeadlineRule`: a CPU limit the
    zygote enforces (work), a wall-clock backstop the session enforces (hangs), and a CPU budget
    for the whole test. A call stopped at the CPU floor is measured against the reference before
    it is judged: where the reference itself needs a good share of the floor for the same request
    (a slow host), the call is run again under the scaled limit.
    """

    def __init__(self, session: WorkerSession, exercise: str, rule: DeadlineRule | None = None,
                 reference: RemoteImplementation | None = None, device: str = "cpu") -> None:
        self.session = session
        self.exercise = exercise
        self.device = device  # where speed tests time the work: "cuda" in a run with a GPU
        self.rule = rule or DeadlineRule()
        self.reference = reference  # where the same request is measured when a call passes the floor
        self.deadline: float | None = None  # monotonic time when the current test's wall backstop ends
        self.test_cpu_s = 0.0  # CPU the current test's calls have used
        self.test_budget_s: float | None = None  # None outside a test (no budget of its own)

    def begin_test(self, cpu_budget_s: float | None = None) -> None:
        """A new test: its CPU budget starts afresh, and its wall backstop from now."""
        budget = cpu_budget_s if cpu_budget_s is not None else self.rule.test_cpu_s
        self.test_budget_s = budget
        self.test_cpu_s = 0.0
        self.deadline = time.monotonic() + self.rule.wall_limit(budget)

    def run(self, request: dict[str, Any]) -> Any:
        limit = self.rule.cpu_limit()
        try:
            return self._send(request, limit)
        except CpuLimitExceeded as stopped:
            if stopped.test_budget:
                raise  # the test's own CPU budget ran out, not the call's
            reference_cpu = self._reference_cpu(request)
            scaled = self.rule.cpu_limit(reference_cpu)
            if scaled <= limit:
                raise CpuLimitExceeded(stopped.used_s, limit, reference_cpu) from None
            try:  # the reference needs much of the floor here: the same call, with the scaled limit
                return self._send(request, scaled)
            except CpuLimitExceeded as again:
                raise CpuLimitExceeded(again.used_s, again.limit_s, reference_cpu,
                                       test_budget=again.limit_s < scaled) from None

    def _send(self, request: dict[str, Any], cpu_limit_s: float) -> Any:
        budget = self.test_budget_s
        left = budget - self.test_cpu_s if budget is not None else None
        if left is not None and left <= 0:
            raise CpuLimitExceeded(self.test_cpu_s, budget, test_budget=True)
        limit = min(cpu_limit_s, left) if left is not None else cpu_limit_s
        timeout = self.rule.wall_limit(limit)
        if self.deadline is not None:
            timeout = max(0.5, min(timeout, self.deadline - time.monotonic()))
        self.session.last_cost = None
        try:
            return self.session.request({**request, "exercise": self.exercise, "cpu_limit_s": limit}, timeout)
        except CpuLimitExceeded as stopped:
            self.test_cpu_s += stopped.used_s
            if left is not None and limit < cpu_limit_s:
                raise CpuLimitExceeded(self.test_cpu_s, budget, test_budget=True) from None  # type: ignore[arg-type]
            raise
        finally:
            cost = self.session.last_cost
            if isinstance(cost, dict) and isinstance(cost.get("cpu_s"), (int, float)):
                self.test_cpu_s += float(cost["cpu_s"])

    def _reference_cpu(self, request: dict[str, Any]) -> float | None:
        """CPU seconds the reference needs for the same request on this host, or None if unknown."""
        if self.reference is None:
            return None
        self.reference.session.last_cost = None
        try:
            self.reference.session.request({**request, "exercise": self.exercise,
                                            "cpu_limit_s": self.rule.test_cpu_s},
                                           self.rule.wall_limit(self.rule.test_cpu_s))
        except Exception:  # noqa: BLE001 - a request the reference cannot replay: no figure to scale by
            return None
        return _cpu(self.reference.session.last_cost)

    def generate(self, args: list[Any], seed: int, repeats: int) -> Any:
        """Have the worker make inputs for a timed request (see ``grader/worker/arena.py``); untimed."""
        return self.session.request({"op": "generate", "args": args, "seed": seed, "repeats": repeats,
                                     "exercise": self.exercise}, self.rule.wall_limit(self.rule.cpu_floor_s))

    def last_cost(self) -> dict[str, float] | None:
        """What the last request cost, as the worker's zygote measured it (``cpu_s``, ``wall_s``)."""
        return self.session.last_cost


def _cpu(cost: Any) -> float | None:
    value = cost.get("cpu_s") if isinstance(cost, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


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
