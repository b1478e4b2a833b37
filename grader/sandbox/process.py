"""The plain-process backend: a subprocess with rlimits and an empty working directory.

It separates the student's code from the grader's process but isolates nothing else (the
filesystem and network stay reachable), so reports made with it carry a warning.
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
)


def _apply_rlimits(limits: Limits) -> None:
    os.setsid()  # own process group, so kill() reaches everything the student spawns
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


def worker_environment(home: str, gpus: str | None) -> dict[str, str]:
    """A minimal environment: none of the grader's variables reach student code."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "CUDA_VISIBLE_DEVICES": "" if gpus is None else ("" if gpus == "all" else gpus),
    }
    if gpus == "all":
        del env["CUDA_VISIBLE_DEVICES"]
    return env


class ProcessWorker:
    def __init__(self, proc: subprocess.Popen[bytes], scratch: Path) -> None:
        self._proc = proc
        self._scratch = scratch
        assert proc.stdin and proc.stdout and proc.stderr
        self.requests = proc.stdin
        self.replies = proc.stdout
        self.output = proc.stderr

    def _exit_info(self, code: int | None) -> ExitInfo | None:
        if code is None:
            return None
        return ExitInfo(code=None, signal=-code) if code < 0 else ExitInfo(code=code, signal=None)

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
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self._scratch, ignore_errors=True)


class ProcessSandbox:
    name = "process"
    isolated = False

    def start(self, launch: WorkerLaunch) -> ProcessWorker:
        scratch = make_scratch("grader-worker-")
        lib = stage_worker_package(scratch / "lib")
        home = scratch / "home"
        home.mkdir()
        command = worker_command(host_python(), str(lib), str(launch.modules_dir))
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=home,
            env=worker_environment(str(home), launch.gpus),
            preexec_fn=lambda: _apply_rlimits(launch.limits),
            close_fds=True,
        )
        return ProcessWorker(proc, scratch)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "isolated": self.isolated}

    def close(self) -> None:
        pass
