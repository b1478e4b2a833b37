"""Sandbox backends behind one interface: ``get_sandbox(name)`` returns a started backend."""

from __future__ import annotations

from grader.sandbox.base import ExitInfo, Limits, RunningWorker, Sandbox, WorkerLaunch

__all__ = ["ExitInfo", "Limits", "RunningWorker", "Sandbox", "WorkerLaunch", "get_sandbox"]


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says how to install it."""


def get_sandbox(name: str) -> Sandbox:
    if name == "process":
        from grader.sandbox.process import ProcessSandbox

        return ProcessSandbox()
    raise SandboxUnavailable(f"unknown sandbox {name!r}: choose process")
