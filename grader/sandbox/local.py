"""The student's backend for ``grader check``: the worker in a plain subprocess, on any OS.

On a student's own machine there is nothing to protect from their code: a separate process with
a deadline is all ``check`` needs. This module is the portable part of running a worker in a
subprocess, so it imports nothing that Windows or macOS lacks (no ``resource``, ``fcntl``,
``termios``, no ``preexec_fn``, no ``fork``): the worker serves requests directly instead of
forking a child per exercise, and a call past its deadline costs a worker restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from grader.sandbox.base import (
    ExitInfo, WorkerLaunch, host_python, prepare_worker_folders, worker_command, worker_environment,
)


class SubprocessWorker:
    """A worker started as a child process (directly, or through bwrap)."""

    def __init__(self, proc: subprocess.Popen[bytes], scratch: Path, cgroup: Any = None,
                 abortable: bool = True) -> None:
        self._proc = proc
        self._scratch = scratch
        self._cgroup = cgroup
        self.abortable = abortable  # False: a worker without a zygote cannot stop one call and live on
        assert proc.stdin and proc.stdout and proc.stderr
        self.requests = proc.stdin
        self.replies = proc.stdout
        self.output = proc.stderr

    def _exit_info(self, code: int | None) -> ExitInfo | None:
        if code is None:
            return None
        oom = self._cgroup is not None and self._cgroup.oom_killed()
        if code < 0:
            return ExitInfo(code=None, signal=-code, oom_killed=oom)
        return ExitInfo(code=code, signal=None, oom_killed=oom)

    def memory_cap_hits(self) -> int | None:
        """How often the worker's cgroup reached its memory cap; None without a cgroup."""
        return None if self._cgroup is None else self._cgroup.memory_cap_hits()

    def poll(self) -> ExitInfo | None:
        return self._exit_info(self._proc.poll())

    def wait(self, timeout: float) -> ExitInfo | None:
        try:
            return self._exit_info(self._proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        kill_tree(self._proc)
        if self._cgroup is not None:
            self._cgroup.remove()  # also reaches daemons that left the process group
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self._scratch, ignore_errors=True)


def new_session_options() -> dict[str, Any]:
    """Popen options that give the worker a process group of its own, so one kill reaches its children."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill a worker and the processes it started."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalSandbox:
    """No isolation, no rlimits: the student's own code on the student's own machine."""

    name = "local"
    isolated = False

    def __init__(self, probes_dir: Path | None = None) -> None:
        self.probes_dir = probes_dir

    def start(self, launch: WorkerLaunch) -> SubprocessWorker:
        folders = prepare_worker_folders("grader-check-", self.probes_dir)
        env = {**worker_environment(str(folders.home), launch.gpus), **_platform_environment()}
        command = worker_command(host_python(), str(folders.lib), str(launch.modules_dir), forking=False)
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=folders.home, env=env, close_fds=True, **new_session_options())
        return SubprocessWorker(proc, folders.scratch, abortable=False)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "isolated": self.isolated}

    def close(self) -> None:
        pass


def _platform_environment() -> dict[str, str]:
    """Variables a Python process needs on this OS besides the minimal set (Windows: SYSTEMROOT)."""
    keep = ("SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "PATH", "PATHEXT", "COMSPEC") if sys.platform == "win32" else ()
    return {name: os.environ[name] for name in keep if name in os.environ}
