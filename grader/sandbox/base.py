"""The interface every sandbox backend implements: start one worker, hand back its streams."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import grader.worker

WORKER_PACKAGE = "grader_worker"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one worker. Defaults suit the CPU exercises on a 2-core host."""

    memory_bytes: int = 6 * 1024**3  # importing torch alone maps ~3.3 GB of address space
    cpu_seconds: int = 1800
    file_size_bytes: int = 64 * 1024**2
    processes: int = 256
    open_files: int = 256
    tmpfs_bytes: int = 256 * 1024**2
    cpus: float = 1.0  # CPU share for backends that can cap it (Docker, cgroups)


@dataclass(frozen=True)
class WorkerLaunch:
    """What a backend needs to start a worker: where the exercise modules are, and its limits."""

    modules_dir: Path
    limits: Limits = field(default_factory=Limits)
    gpus: str | None = None  # None: no GPU visible; "all" or "0,1": exactly those devices


@dataclass(frozen=True)
class ExitInfo:
    code: int | None  # exit status, or None when killed by a signal
    signal: int | None
    oom_killed: bool = False  # the backend knows the memory cap killed it (cgroup, Docker)

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return name
        return f"exit code {self.code}"


class RunningWorker(Protocol):
    """A started worker: the request/reply channel and the student's merged output."""

    requests: BinaryIO
    replies: BinaryIO
    output: BinaryIO
    abortable: bool  # a call past its deadline can be stopped without losing the worker (a zygote)

    def kill(self) -> None:
        """Kill the worker and everything it started; safe to call twice."""

    def poll(self) -> ExitInfo | None:
        """How the worker ended, or None while it runs."""

    def wait(self, timeout: float) -> ExitInfo | None: ...


class Sandbox(Protocol):
    name: str
    isolated: bool  # False only for the plain-process backend

    def start(self, launch: WorkerLaunch) -> RunningWorker: ...

    def describe(self) -> dict[str, object]:
        """Facts for the report: backend name, isolation, image id, GPU devices…"""

    def close(self) -> None:
        """Release what the backend holds (pre-started containers, temp dirs)."""


def worker_command(python: str, lib_dir: str, modules_dir: str, own_pid_namespace: bool = False,
                   forking: bool = True) -> list[str]:
    """The command line that starts the worker with only ``lib_dir`` added to an isolated path.

    ``own_pid_namespace``: every process in the sandbox is the worker's, so strays left by
    student code can be swept after each request. ``forking=False``: no zygote, the worker
    serves every request itself (platforms without ``fork``).
    """
    bootstrap = (
        f"import sys; sys.path.insert(0, {lib_dir!r}); "
        f"from {WORKER_PACKAGE}.__main__ import main; main()"
    )
    return ([python, "-I", "-c", bootstrap, "--modules", modules_dir]
            + (["--sweep-all"] if own_pid_namespace else []) + ([] if forking else ["--direct"]))


def stage_worker_package(into: Path, probes_dir: Path | None = None) -> Path:
    """Copy the worker package alone into ``into/grader_worker``, with the course's probes; return ``into``.

    The worker is shipped by itself so the sandbox's import path never reaches the rest of the
    course (``solutions/`` and ``autotests/``). The course's ``probes/*.py`` become submodules of
    ``grader_worker.probes``, where the worker looks them up.
    """
    source = Path(grader.worker.__file__).parent
    shutil.copytree(source, into / WORKER_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    if probes_dir is not None:
        for path in sorted(Path(probes_dir).glob("*.py")):
            if path.name != "__init__.py":
                shutil.copyfile(path, into / WORKER_PACKAGE / "probes" / path.name)
    return into


MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for the dynamic threshold on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024


def worker_environment(home: str, gpus: str | None, tmpdir: str | None = None) -> dict[str, str]:
    """A minimal environment: none of the grader's variables reach student code."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmpdir or home,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # Fixed malloc thresholds: with glibc's defaults a large tensor may come from a fresh mmap
        # (page faults on every call) or from the heap depending on what was freed before, which
        # made the same code cost 1x to 2.5x from one round to the next and speed ratios noise.
        "GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}",
    }
    if gpus is None:
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif gpus != "all":
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


@dataclass(frozen=True)
class WorkerFolders:
    scratch: Path  # removed when the worker is killed
    lib: Path  # the staged worker package and the course's probes
    home: Path  # the worker's empty working folder and HOME


def prepare_worker_folders(prefix: str, probes_dir: Path | None) -> WorkerFolders:
    """A fresh scratch folder with the worker code staged in it and an empty home."""
    scratch = make_scratch(prefix)
    lib = stage_worker_package(scratch / "lib", probes_dir)
    home = scratch / "home"
    home.mkdir()
    return WorkerFolders(scratch, lib, home)


def host_python() -> str:
    return sys.executable


def make_scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
