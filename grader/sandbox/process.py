"""The plain-process backend: a subprocess with rlimits and an empty working directory.

It separates the student's code from the grader's process but isolates nothing else (the
filesystem and network stay reachable), so reports made with it carry a warning. The
subprocess machinery here (rlimits, a cgroup where the host allows, killing the whole tree)
is shared with the bubblewrap backend.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

from grader.sandbox.base import (
    ExitInfo, Limits, WorkerLaunch, host_python, make_scratch, stage_worker_package, worker_command,
    worker_environment,
)
from grader.sandbox.cgroup import WorkerCgroup


def _enter_limits(limits: Limits, cgroup: WorkerCgroup | None) -> None:
    """Runs in the child between fork and exec."""
    os.setsid()  # own process group, so kill() reaches everything the student spawns
    if cgroup is not None:
        cgroup.attach()
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


class SubprocessWorker:
    """A worker started as a child process (directly or through bwrap)."""

    def __init__(self, proc: subprocess.Popen[bytes], scratch: Path, cgroup: WorkerCgroup | None) -> None:
        self._proc = proc
        self._scratch = scratch
        self._cgroup = cgroup
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

    def poll(self) -> ExitInfo | None:
        return self._exit_info(self._proc.poll())

    def wait(self, timeout: float) -> ExitInfo | None:
        try:
            return self._exit_info(self._proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._cgroup is not None:
            self._cgroup.remove()  # also reaches daemons that left the process group
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self._scratch, ignore_errors=True)


def spawn(command: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, scratch: Path) -> SubprocessWorker:
    cgroup = WorkerCgroup.create(limits.processes, limits.memory_bytes)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        preexec_fn=lambda: _enter_limits(limits, cgroup),
        close_fds=True,
    )
    return SubprocessWorker(proc, scratch, cgroup)


class ProcessSandbox:
    name = "process"
    isolated = False

    def start(self, launch: WorkerLaunch) -> SubprocessWorker:
        scratch = make_scratch("grader-worker-")
        lib = stage_worker_package(scratch / "lib")
        home = scratch / "home"
        home.mkdir()
        command = worker_command(host_python(), str(lib), str(launch.modules_dir))
        return spawn(command, cwd=home, env=worker_environment(str(home), launch.gpus), limits=launch.limits,
                     scratch=scratch)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "isolated": self.isolated}

    def close(self) -> None:
        pass
