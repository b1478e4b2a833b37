"""The bubblewrap backend: the embedded default where no Docker engine runs.

The worker gets new namespaces of every kind (no network), a root made only of read-only binds
of the system and the Python environment, size-capped tmpfs for ``/tmp``, ``/dev/shm`` and its
home, the submission read-only at ``/submission`` and the worker code at ``/opt/grader-lib``.
Nothing else of the host is visible: not the course (``solutions/``, ``autotests/``), not the
grader's files or environment. Limits come from rlimits and, where the host allows, a cgroup.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

from grader.sandbox.base import (
    Limits, WorkerLaunch, make_scratch, stage_worker_package, worker_command, worker_environment,
)
from grader.sandbox.process import SubprocessWorker, spawn

LIB = "/opt/grader-lib"
SUBMISSION = "/submission"
HOME = "/home/worker"
SANDBOX_UID = 65534


class BwrapUnavailable(RuntimeError):
    pass


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


VENV = "/opt/venv"


def python_binds() -> tuple[list[tuple[str, str]], str]:
    """Read-only binds that make the grader's Python usable inside, and the interpreter to run.

    A virtual environment is bound at ``/opt/venv`` rather than where it lives, so its path (which
    may sit inside the course checkout) is not disclosed to student code.
    """
    binds: dict[str, str] = {}
    for root in {Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}:
        if not str(root).startswith("/usr"):
            binds[str(root)] = str(root)
    python = sys.executable
    if sys.prefix != sys.base_prefix:
        binds[str(Path(sys.prefix).resolve())] = VENV
        python = f"{VENV}/bin/{Path(sys.executable).name}"
    return sorted(binds.items()), python


def gpu_device_nodes(gpus: str | None = "all") -> list[str]:
    """The device nodes a worker with ``gpus`` needs: the control nodes, and only the assigned GPUs'
    own nodes (``/dev/nvidiaN``). A MIG slice is named by UUID, whose parent GPU the node names do
    not show: every GPU node is bound then, and ``CUDA_VISIBLE_DEVICES`` narrows it to the slice."""
    present = set(glob.glob("/dev/nvidia*")) | set(glob.glob("/dev/nvidia-caps/*"))
    per_gpu = {node for node in present if node[len("/dev/nvidia"):].isdigit()}
    wanted = per_gpu
    if gpus not in (None, "all"):
        ids = [part.strip() for part in str(gpus).split(",") if part.strip()]
        if all(i.isdigit() for i in ids):
            wanted = {f"/dev/nvidia{i}" for i in ids} & per_gpu
    return sorted((present - per_gpu) | wanted)


def bwrap_command(launch: WorkerLaunch, lib: Path, python: str) -> list[str]:
    limits: Limits = launch.limits
    tmpfs = str(limits.tmpfs_bytes)
    command = [
        bwrap_path() or "bwrap",
        "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", tmpfs, "--tmpfs", "/tmp",
        "--size", tmpfs, "--tmpfs", "/dev/shm",
        "--size", tmpfs, "--tmpfs", HOME,
        "--ro-bind", str(lib), LIB,
        "--ro-bind", str(launch.modules_dir), SUBMISSION,
        "--chdir", HOME,
        "--clearenv",
    ]
    binds, _ = python_binds()
    for source, target in binds:
        command += ["--ro-bind", source, target]
    if launch.gpus is not None:
        for node in gpu_device_nodes(launch.gpus):
            command += ["--dev-bind", node, node]
        command += ["--ro-bind-try", "/sys", "/sys"]
    for key, value in worker_environment(HOME, launch.gpus).items():
        command += ["--setenv", key, value]
    return command + ["--", *worker_command(python, LIB, SUBMISSION, own_pid_namespace=True)]


class BwrapSandbox:
    name = "bwrap"
    isolated = True

    def __init__(self, gpus: str | None = None, probes_dir: Path | None = None) -> None:
        if bwrap_path() is None:
            raise BwrapUnavailable("bubblewrap is not installed: run `apt-get install bubblewrap`")
        if gpus is not None and not gpu_device_nodes():
            raise BwrapUnavailable(f"--gpus {gpus} was asked for, but this host has no /dev/nvidia* devices")
        self.gpus = gpus
        self.probes_dir = probes_dir

    def start(self, launch: WorkerLaunch) -> SubprocessWorker:
        scratch = make_scratch("grader-bwrap-")
        lib = stage_worker_package(scratch / "lib", self.probes_dir)
        command = bwrap_command(launch, lib, python_binds()[1])
        return spawn(command, cwd=scratch, env={"PATH": "/usr/bin:/bin"}, limits=launch.limits, scratch=scratch,
                     gpu=launch.gpus is not None)

    def describe(self) -> dict[str, object]:
        version = subprocess.run([bwrap_path() or "bwrap", "--version"], capture_output=True, text=True).stdout.strip()
        return {"backend": self.name, "isolated": self.isolated, "bwrap": version, "gpus": self.gpus}

    def close(self) -> None:
        pass


def works() -> bool:
    """Whether bubblewrap can create its namespaces here (user namespaces may be disabled)."""
    path = bwrap_path()
    if path is None:
        return False
    probe = subprocess.run([path, "--unshare-all", "--unshare-user", "--ro-bind", "/usr", "/usr",
                            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                            "--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true"],
                           capture_output=True, timeout=20)
    return probe.returncode == 0
