"""The plain-process backend: a subprocess with rlimits and an empty working directory.

It separates the student's code from the grader's process but isolates nothing else (the
filesystem and network stay reachable), so reports made with it carry a warning. The
subprocess machinery here (rlimits, a cgroup where the host allows, killing the whole tree)
is shared with the bubblewrap backend.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

from grader.sandbox.base import (
    Limits, WorkerLaunch, host_python, prepare_worker_folders, worker_command, worker_environment,
)
from grader.sandbox.cgroup import WorkerCgroup
from grader.sandbox.local import SubprocessWorker


def tasks_of_user(uid: int) -> int:
    """Processes and threads this user runs now: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count


def process_rlimit(limits: Limits, cgroup: WorkerCgroup | None) -> int | None:
    """The RLIMIT_NPROC to set, or None when the cgroup caps processes already.

    RLIMIT_NPROC counts every process and thread of the user, not of the worker: a user with
    300 threads running elsewhere would hit a cap of 256 at the first fork. So the cap is what
    the user runs now plus the worker's allowance.
    """
    if cgroup is not None:
        return None
    return tasks_of_user(os.getuid()) + limits.processes


def _enter_limits(limits: Limits, cgroup: WorkerCgroup | None, nproc: int | None, gpu: bool = False) -> None:
    """Runs in the child between fork and exec.

    With a GPU there is no address-space limit: CUDA reserves far more virtual memory than any cap
    on it would allow, and fails to initialise under one; the cgroup's memory cap holds instead.
    """
    os.setsid()  # own process group, so kill() reaches everything the student spawns
    if cgroup is not None:
        cgroup.attach()
    for which, value in (
        (resource.RLIMIT_AS, None if gpu else limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        if value is not None:
            resource.setrlimit(which, (value, value))


def spawn(command: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, scratch: Path,
          gpu: bool = False) -> SubprocessWorker:
    cgroup = WorkerCgroup.create(limits.processes, limits.memory_bytes, limits.cpus)
    nproc = process_rlimit(limits, cgroup)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        preexec_fn=lambda: _enter_limits(limits, cgroup, nproc, gpu),
        close_fds=True,
    )
    return SubprocessWorker(proc, scratch, cgroup)


class ProcessSandbox:
    name = "process"
    isolated = False

    def __init__(self, probes_dir: Path | None = None) -> None:
        self.probes_dir = probes_dir

    def start(self, launch: WorkerLaunch) -> SubprocessWorker:
        folders = prepare_worker_folders("grader-worker-", self.probes_dir)
        command = worker_command(host_python(), str(folders.lib), str(launch.modules_dir))
        return spawn(command, cwd=folders.home, env=worker_environment(str(folders.home), launch.gpus),
                     limits=launch.limits, scratch=folders.scratch, gpu=launch.gpus is not None)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "isolated": self.isolated}

    def close(self) -> None:
        pass
