"""Sandbox backends behind one interface; :func:`get_sandbox` picks and starts one.

``auto`` prefers Docker when an engine answers, then bubblewrap, and otherwise refuses with a
message that says how to install one. ``process`` (no isolation) is used only when asked for;
``local`` (no isolation, no rlimits, any OS) is the default of ``grader check`` on a student's
own machine.
"""

from __future__ import annotations

from pathlib import Path

from grader.sandbox.base import ExitInfo, Limits, RunningWorker, Sandbox, WorkerLaunch

__all__ = ["ExitInfo", "Limits", "RunningWorker", "Sandbox", "SandboxUnavailable", "WorkerLaunch",
           "get_sandbox", "BACKENDS"]

BACKENDS = ("auto", "docker", "bwrap", "process", "local")


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says how to make it available."""


def _docker(gpus: str | None, probes_dir: Path | None) -> Sandbox:
    from grader.sandbox import docker

    if not docker.engine_available():
        raise SandboxUnavailable("no Docker engine answers: start dockerd (see scripts/docker-image.sh)")
    return docker.DockerSandbox(gpus=gpus, pool_size=1, probes_dir=probes_dir)


def _bwrap(gpus: str | None, probes_dir: Path | None) -> Sandbox:
    from grader.sandbox import bwrap

    if not bwrap.works():
        raise SandboxUnavailable("bubblewrap is missing or cannot create namespaces: "
                                 "run `apt-get install bubblewrap` and allow user namespaces")
    try:
        return bwrap.BwrapSandbox(gpus=gpus, probes_dir=probes_dir)
    except bwrap.BwrapUnavailable as exc:
        raise SandboxUnavailable(str(exc)) from None


def resolve_auto() -> str:
    """The backend ``auto`` stands for on this host."""
    from grader.sandbox import bwrap

    try:
        from grader.sandbox import docker
    except ImportError:  # the docker SDK is not installed
        docker = None  # type: ignore[assignment]
    if docker is not None and docker.engine_available() and docker.runner_image_present():
        return "docker"
    if bwrap.works():
        return "bwrap"
    raise SandboxUnavailable(
        "no sandbox available: start a Docker engine and build the image (`bash scripts/docker-image.sh`), "
        "or install bubblewrap (`apt-get install bubblewrap`); `--sandbox process` runs without isolation")


def get_sandbox(name: str, gpus: str | None = None, probes_dir: Path | None = None) -> Sandbox:
    """Start backend ``name``; ``probes_dir`` is the course's ``probes/``, shipped to every worker."""
    if name == "auto":
        name = resolve_auto()
    if name == "docker":
        return _docker(gpus, probes_dir)
    if name == "bwrap":
        return _bwrap(gpus, probes_dir)
    if name == "process":
        from grader.sandbox.process import ProcessSandbox

        return ProcessSandbox(probes_dir)
    if name == "local":
        from grader.sandbox.local import LocalSandbox

        return LocalSandbox(probes_dir)
    raise SandboxUnavailable(f"unknown sandbox {name!r}: choose one of {', '.join(BACKENDS)}")
