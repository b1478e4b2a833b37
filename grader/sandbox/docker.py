"""The Docker backend: one hardened, throw-away container per worker life.

Each container runs the runner image (Python and the pinned torch stack only, see
:mod:`grader.sandbox.image`) with:

* the worker package, staged alone, bind-mounted read-only at ``/opt/grader-lib``;
* the submission's exercise files (``*.py`` only) bind-mounted read-only at ``/submission``;
* no network, a read-only root filesystem, size-capped tmpfs at ``/tmp`` and ``/home/worker``
  (the working directory and ``HOME``), uid/gid 65534, no capabilities, no-new-privileges, the
  seccomp profile in ``seccomp.json``, pids/memory(=memory+swap)/CPU limits, ulimits on open
  files, file size, CPU time and core dumps, private IPC, an init process, no TTY, no logs kept
  by the engine, a minimal environment, and the label ``torch-grader=worker``.

Nothing else reaches the container: not ``solutions/``, not the tests, not the Docker socket,
not the grader's environment. The request/reply channel is the container's stdin/stdout and the
student's output its stderr, carried over one attach connection that a thread demultiplexes into
two pipes.

Containers left behind by a grader that crashed carry the label and the owning process; the
next :class:`DockerSandbox` removes those whose owner is gone (:func:`cleanup_leftovers`).

Importing torch in a fresh container takes seconds, so a sandbox can keep a small pool of
containers that are already started, have imported torch and sent their hello frame; each one
serves exactly one worker life, and each sandbox (one per submission) has its own pool.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import shutil
import signal as signals
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import docker
import docker.errors
import docker.types
import requests.exceptions

from grader.sandbox.base import (
    ExitInfo, Limits, WorkerLaunch, make_scratch, stage_worker_package, worker_command, worker_environment,
)
from grader.sandbox.cgroup import MemoryCapCounter
from grader.sandbox.image import find_runner_image, runner_tag

try:
    from grader.sandbox import SandboxUnavailable
except ImportError:  # pragma: no cover - the package defines it; keep this module usable alone
    class SandboxUnavailable(RuntimeError):  # type: ignore[no-redef]
        pass

LABEL = "torch-grader"
WORKER_LABEL = {LABEL: "worker"}
OWNER_LABEL = f"{LABEL}.owner"
LIB_MOUNT = "/opt/grader-lib"
SUBMISSION_MOUNT = "/submission"
HOME = "/home/worker"
USER = "65534:65534"
PYTHON = "python3"
SECCOMP_PROFILE = Path(__file__).with_name("seccomp.json")
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_NOT_RUNNING = ("created", "exited", "dead")


class DockerSandboxError(SandboxUnavailable):
    """No Docker engine answers, or the runner image is missing; the message says how to fix it."""


DockerUnavailable = DockerSandboxError


class GpuUnavailable(DockerSandboxError):
    """GPUs were requested but the engine cannot pass them to containers."""


GPU_HELP = (
    "the Docker engine cannot give containers a GPU ({detail}). Install the NVIDIA driver and "
    "nvidia-container-toolkit on the host, run `nvidia-ctk runtime configure --runtime=docker` "
    "and restart dockerd; check with `docker run --rm --gpus all <image> nvidia-smi`. "
    "Or grade without --gpus."
)


# -- configuration (pure: no engine needed) -------------------------------------------------

def parse_gpus(gpus: str | None) -> list[str] | None:
    """``None`` → no GPU; ``"all"`` → ``[]`` (every device); ``"0,1"`` → ``["0", "1"]``."""
    if gpus is None:
        return None
    text = gpus.strip()
    if text == "all":
        return []
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids or not all(i.isdigit() or i.startswith(("GPU-", "MIG-")) for i in ids):
        raise ValueError(f"--gpus takes 'all' or device numbers like '0' or '0,1', not {gpus!r}")
    return ids


def device_requests(gpus: str | None) -> list[docker.types.DeviceRequest]:
    ids = parse_gpus(gpus)
    if ids is None:
        return []
    if not ids:
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


def container_environment(gpus: str | None) -> dict[str, str]:
    """The worker's whole environment (the image adds nothing secret): no grader variables."""
    env = worker_environment(HOME, gpus, tmpdir="/tmp")
    if gpus is None:
        # Belt and braces: even an engine whose default runtime is nvidia shows no device.
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    else:
        # The container sees only the requested devices, renumbered from 0: a host-side mask
        # such as CUDA_VISIBLE_DEVICES=1 would hide them.
        env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def load_seccomp_profile() -> str:
    return json.dumps(json.loads(SECCOMP_PROFILE.read_text(encoding="utf-8")), separators=(",", ":"))


def container_config(launch: WorkerLaunch, image: str, *, lib_dir: str | Path, submission_dir: str | Path,
                     seccomp: str | None = None, gpus: str | None = None, owner: str | None = None,
                     python: str = PYTHON) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create`` that start one hardened worker.

    ``gpus`` defaults to ``launch.gpus``. Pure: tests inspect it without an engine.
    """
    limits: Limits = launch.limits
    gpus = launch.gpus if gpus is None else gpus
    tmpfs_opts = f"size={limits.tmpfs_bytes},nosuid,nodev,noexec"
    config: dict[str, Any] = {
        "image": image,
        "command": worker_command(python, LIB_MOUNT, SUBMISSION_MOUNT, own_pid_namespace=True),
        "entrypoint": [],  # whatever the image says, run exactly the worker (under docker-init)
        "user": USER,
        "working_dir": HOME,
        "environment": container_environment(gpus),
        "hostname": "sandbox",
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {
            "/tmp": f"{tmpfs_opts},mode=1777",
            HOME: f"{tmpfs_opts},mode=0700,uid=65534,gid=65534",
        },
        "mounts": [
            docker.types.Mount(target=LIB_MOUNT, source=str(lib_dir), type="bind", read_only=True),
            docker.types.Mount(target=SUBMISSION_MOUNT, source=str(submission_dir), type="bind", read_only=True),
        ],
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", f"seccomp={seccomp or load_seccomp_profile()}"],
        "pids_limit": limits.processes,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,  # equal to the memory limit: no swap
        "nano_cpus": int(limits.cpus * 1e9),
        "shm_size": limits.tmpfs_bytes,
        "oom_score_adj": 500,  # if the host runs short, the worker goes first
        "ulimits": [
            docker.types.Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            docker.types.Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
            docker.types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        "ipc_mode": "private",
        "init": True,
        "tty": False,
        "stdin_open": True,  # with detach=False this also sets StdinOnce: our hang-up closes its stdin
        "detach": False,
        "log_config": docker.types.LogConfig(type="none"),  # output is taken from the attach stream
        "labels": {**WORKER_LABEL, **({OWNER_LABEL: owner} if owner else {})},
    }
    requests_ = device_requests(gpus)
    if requests_:
        config["device_requests"] = requests_
    return config


def exit_info_from_state(state: dict[str, Any]) -> ExitInfo:
    """ExitInfo from a container's ``State``: 128+N is signal N; an OOM kill is SIGKILL, flagged."""
    code = int(state.get("ExitCode", 0) or 0)
    oom = bool(state.get("OOMKilled"))
    signal_number = None
    if oom:
        signal_number = signals.SIGKILL.value
    elif code > 128 and (code - 128) in {s.value for s in signals.Signals}:
        signal_number = code - 128
    return _exit_info(None if signal_number else code, signal_number, oom)


def _exit_info(code: int | None, signal_number: int | None, oom: bool) -> ExitInfo:
    return ExitInfo(code=code, signal=signal_number, oom_killed=oom)


# -- engine helpers -------------------------------------------------------------------------

def engine_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping within ``timeout`` seconds."""
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no socket, no permission, old engine: all mean "no"
        return False


def runner_image_present(image: str | None = None) -> bool:
    """True when an engine answers and has the runner image (``grader image build`` makes it)."""
    try:
        client = docker.from_env(timeout=5)
        try:
            return find_runner_image(client, image) is not None
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        return False


def _process_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def _engine_answers(api: Any) -> bool:
    """Whether the Docker engine behind ``api`` (a low-level client) still answers a ping."""
    try:
        return bool(api.ping())
    except Exception:  # noqa: BLE001 - any failure to answer means it is gone
        return False


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or '?'}"


def _owner_alive(token: str | None) -> bool:
    if not token or token.count(":") < 2:
        return False
    host, pid, start = token.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # another machine's grader shares this engine: not ours to judge
    return pid.isdigit() and _process_start(int(pid)) == start


def cleanup_leftovers(client: Any, include_live_owners: bool = False) -> list[str]:
    """Remove worker containers (label ``torch-grader=worker``) whose grader process is gone.

    With ``include_live_owners`` every worker container goes, even those of running graders.
    Returns the ids removed.
    """
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=worker"}):
        if not include_live_owners and _owner_alive(container.labels.get(OWNER_LABEL)):
            continue
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True, v=True)
            removed.append(container.id)
    return removed


def _gpu_error(exc: Exception) -> GpuUnavailable | None:
    text = str(exc).lower()
    if any(k in text for k in ("could not select device driver", "nvidia", "unknown runtime", "gpu")):
        return GpuUnavailable(GPU_HELP.format(detail=str(exc).strip().splitlines()[0][:300]))
    return None


# -- a running worker -----------------------------------------------------------------------

class _SocketWriter:
    """The ``requests`` stream: writes go to the container's stdin over the attach socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to closed worker channel")
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        if self.closed:
            raise ValueError("flush of closed worker channel")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    os.set_blocking(w, False)
    return r, w


class DockerWorker:
    """One container: ``requests`` → its stdin, ``replies`` ← its stdout, ``output`` ← its stderr."""

    requests: Any
    replies: BinaryIO
    output: BinaryIO
    abortable = True  # the zygote inside stops a call on request

    def __init__(self, client: Any, container: Any, sock: Any, slot: Path | None,
                 on_kill: Any = None) -> None:
        self._client = client
        self._api = client.api
        self.container = container
        self.id: str = container.id
        self.slot = slot
        self._on_kill = on_kill
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)
        self._sock_holder = sock  # keeps the HTTP response (and so the connection) alive
        self._sock: socket.socket = raw
        self.requests = _SocketWriter(raw)
        out_r, self._out_w = _pipe()
        err_r, self._err_w = _pipe()
        self.replies = os.fdopen(out_r, "rb")
        self.output = os.fdopen(err_r, "rb")
        self.started_at = time.monotonic()
        self.first_reply_at: float | None = None
        self.hello = threading.Event()  # the worker wrote to its channel (its hello frame)
        self.ended = threading.Event()  # the attach stream ended: the worker closed its stdio
        self._oom = False
        self._memory_dir: tuple[Path, int] | None = None
        self._cap_counter: MemoryCapCounter | None = None
        self.created_wall = time.time()
        self._exit: ExitInfo | None = None
        self._stop = threading.Event()
        self._kill_lock = threading.Lock()
        self._killed = False
        self._kill_done = threading.Event()
        self._demux_thread = threading.Thread(target=self._demux, name=f"docker-demux-{self.id[:12]}", daemon=True)
        self._demux_thread.start()

    # -- the attach stream -------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes | None:
        chunks, need = [], n
        while need:
            chunk = self._sock.recv(need)
            if not chunk:
                return None
            chunks.append(chunk)
            need -= len(chunk)
        return b"".join(chunks)

    def _write_all(self, fd: int, data: bytes) -> bool:
        """Write into one of our pipes; False if its reader is gone or the worker is being killed."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                if self._stop.is_set():
                    return False
                select.select([], [fd], [], 0.2)
            except OSError:  # EPIPE: nobody reads this stream any more
                return False
        return True

    def _demux(self) -> None:
        """Split the multiplexed attach stream (8-byte headers: stream, 0, 0, 0, u32 BE size)."""
        targets = {1: self._out_w, 2: self._err_w}
        alive = {1: True, 2: True}
        try:
            while True:
                header = self._recv_exact(8)
                if header is None:
                    break
                kind, size = header[0], struct.unpack(">I", header[4:8])[0]
                while size:
                    chunk = self._sock.recv(min(size, 1 << 20))
                    if not chunk:
                        return
                    size -= len(chunk)
                    if kind == 1 and not self.hello.is_set():
                        self.first_reply_at = time.monotonic()
                        self.hello.set()
                    if alive.get(kind):
                        alive[kind] = self._write_all(targets[kind], chunk)
        except OSError:
            pass
        finally:
            for fd in (self._out_w, self._err_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.ended.set()

    # -- exit status -------------------------------------------------------------------------
    def _inspect_exit(self) -> ExitInfo | None:
        try:
            state = self._api.inspect_container(self.id)["State"]
        except docker.errors.NotFound:
            return self._exit
        if state.get("Running") or state.get("Status") not in _NOT_RUNNING:
            return None
        if state.get("Status") == "created":
            return None
        self._exit = exit_info_from_state(state)
        self._oom = bool(state.get("OOMKilled"))
        return self._exit

    @property
    def oom_killed(self) -> bool:
        """Whether the memory cap killed a process in this container: the worker, or a child it forked.

        While the container runs, Docker 20.10 leaves ``State.OOMKilled`` false when the OOM killer
        picks a child, so this reads the container's memory cgroup counter (same host), or else asks
        the engine for the container's ``oom`` events.
        """
        if self._oom or self._killed:
            return self._oom
        count = self._cgroup_oom_kills()
        if count is not None:
            self._oom = count > 0
            return self._oom
        with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
            now = int(time.time()) + 1
            events = self._client.events(since=int(self.created_wall) - 1, until=now, decode=True,
                                         filters={"container": self.id, "event": "oom"})
            self._oom = any(True for _ in events)
        return self._oom

    def _memory_cgroup(self) -> tuple[Path, int] | None:
        """The container's memory cgroup folder and cgroup version, where this host can read it."""
        if self._memory_dir is None:
            self._memory_dir = (Path("/nonexistent"), 0)
            try:
                pid = int(self._api.inspect_container(self.id)["State"]["Pid"])
                lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines() if pid else []
            except (OSError, ValueError, KeyError, docker.errors.APIError, requests.exceptions.RequestException):
                lines = []
            for line in lines:
                _, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    self._memory_dir = (Path("/sys/fs/cgroup/memory") / path.lstrip("/"), 1)
                elif controllers == "" and not any(":memory:" in x for x in lines):
                    self._memory_dir = (Path("/sys/fs/cgroup") / path.lstrip("/"), 2)
        return None if self._memory_dir[1] == 0 else self._memory_dir

    def _cgroup_oom_kills(self) -> int | None:
        """The kernel's count of OOM kills in the container's memory cgroup, if this host can read it."""
        found = self._memory_cgroup()
        if found is None:
            return None
        folder, version = found
        try:
            text = (folder / ("memory.events" if version == 2 else "memory.oom_control")).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def memory_cap_hits(self) -> int | None:
        """How often the container's memory usage reached its cap; None where this host cannot tell."""
        if self._cap_counter is None:
            found = self._memory_cgroup()
            if found is None:
                return None
            self._cap_counter = MemoryCapCounter(*found)
        return self._cap_counter.hits()

    def poll(self) -> ExitInfo | None:
        if self._exit is not None:
            return self._exit
        if not self.ended.is_set():
            return None  # its stdout/stderr are still open, so it runs
        return self._inspect_exit()

    def wait(self, timeout: float) -> ExitInfo | None:
        if self._exit is not None:
            return self._exit
        deadline = time.monotonic() + timeout
        self.ended.wait(max(0.0, timeout))
        while True:
            info = self._inspect_exit()
            if info is not None or time.monotonic() >= deadline:
                return info
            with contextlib.suppress(requests.exceptions.RequestException, docker.errors.APIError):
                self._api.wait(self.id, timeout=max(0.1, min(deadline - time.monotonic(), 5.0)))

    def host_alive(self) -> bool:
        """Whether the engine still answers: a worker that vanished with its engine died of the
        host, not of the submission."""
        return _engine_answers(self._api)

    # -- the end -----------------------------------------------------------------------------
    def kill(self) -> None:
        """Kill and remove the container and release its folder; safe to call twice."""
        with self._kill_lock:
            first = not self._killed
            self._killed = True
        if not first:
            self._kill_done.wait(30.0)  # another thread is removing it: return once it is gone
            return
        self._stop.set()
        try:
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                self._api.kill(self.id)
            if self._exit is None:
                with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                    self.wait(10.0)
            with contextlib.suppress(docker.errors.NotFound):
                try:
                    self._api.remove_container(self.id, force=True, v=True)
                except (docker.errors.APIError, requests.exceptions.RequestException):
                    time.sleep(0.5)  # e.g. "removal already in progress"; one more try
                    with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                        self._api.remove_container(self.id, force=True, v=True)
        finally:
            self.requests.closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._demux_thread.join(5.0)
            with contextlib.suppress(OSError):
                self._sock.close()
            if self._exit is None:
                self._exit = _exit_info(None, signals.SIGKILL.value, False)
            if self._on_kill is not None:
                self._on_kill(self)
            self._kill_done.set()

    @property
    def removed(self) -> bool:
        return self._killed


# -- the backend ----------------------------------------------------------------------------

class DockerSandbox:
    """Starts each worker in a fresh hardened container; optionally keeps ``pool_size`` warm."""

    name = "docker"
    isolated = True

    def __init__(self, *, image: str | None = None, gpus: str | None = None, limits: Limits | None = None,
                 pool_size: int = 0, client: Any = None, cleanup: bool = True,
                 probes_dir: Path | None = None) -> None:
        self.gpus = gpus
        try:
            parse_gpus(gpus)  # reject a malformed value before anything starts
        except ValueError as exc:
            raise DockerSandboxError(str(exc)) from None
        self.limits = limits or Limits()
        self.pool_size = max(0, int(pool_size))
        if client is None:
            if not engine_available():
                raise DockerSandboxError(
                    "no Docker engine answers: start it (`sudo systemctl start docker` or `sudo dockerd &`) "
                    "and make sure this user may use /var/run/docker.sock")
            client = docker.from_env(timeout=120)
        self.client = client
        self.image_tag = image or runner_tag()
        found = find_runner_image(client, self.image_tag)
        if found is None:
            raise DockerSandboxError(
                f"the runner image {self.image_tag} is missing: build it with `grader image build` "
                f"(or scripts/docker-image.sh)")
        self.image_id: str = found.id
        version = client.version()
        self.engine_version = str(version.get("Version", "?"))
        self.api_version = str(version.get("ApiVersion", "?"))
        if cleanup:
            cleanup_leftovers(client)
        self._owner = owner_token()
        self._seccomp = load_seccomp_profile()
        if gpus is not None:
            self.check_gpus(gpus)  # before anything is made that close() would have to undo
        self._root = make_scratch("grader-docker-")
        self._lib = stage_worker_package(self._root / "lib", probes_dir)
        (self._root / "slots").mkdir()
        self._slots = 0
        self._starts = 0  # workers handed out so far
        self._lock = threading.Lock()
        self._closed = False
        self._live: set[DockerWorker] = set()
        self._pool: list[DockerWorker] = []
        self._pool_error: BaseException | None = None
        self._refill = threading.Event()
        self._refiller: threading.Thread | None = None
        self.last_start: dict[str, float | bool] = {}
        if self.pool_size:
            self._refiller = threading.Thread(target=self._keep_pool_full, name="docker-pool", daemon=True)
            self._refiller.start()
            self._refill.set()

    # -- containers --------------------------------------------------------------------------
    def _new_slot(self) -> Path:
        with self._lock:
            self._slots += 1
            slot = self._root / "slots" / str(self._slots)
        slot.mkdir(mode=0o755)
        return slot

    def _launch(self, limits: Limits, gpus: str | None, modules_dir: Path | None = None) -> DockerWorker:
        slot = self._new_slot()
        if modules_dir is not None:
            _copy_modules(modules_dir, slot)
        config = container_config(WorkerLaunch(slot, limits, gpus), self.image_id, lib_dir=self._lib,
                                  submission_dir=slot, seccomp=self._seccomp, gpus=gpus, owner=self._owner)
        container = self.client.containers.create(**config)
        try:
            sock = self.client.api.attach_socket(
                container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            worker = DockerWorker(self.client, container, sock, slot, on_kill=self._forget)
            with self._lock:
                self._live.add(worker)
            try:
                container.start()
            except docker.errors.APIError as exc:
                worker.kill()
                gpu_problem = _gpu_error(exc) if gpus is not None else None
                if gpu_problem is not None:
                    raise gpu_problem from None
                raise
        except BaseException:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
            shutil.rmtree(slot, ignore_errors=True)
            raise
        return worker

    def _forget(self, worker: DockerWorker) -> None:
        with self._lock:
            self._live.discard(worker)
            if worker in self._pool:
                self._pool.remove(worker)
        if worker.slot is not None:
            shutil.rmtree(worker.slot, ignore_errors=True)

    def check_gpus(self, gpus: str) -> None:
        """Start a throw-away container with the GPU request; raise GpuUnavailable if it cannot."""
        config = {
            "image": self.image_id, "command": ["true"], "entrypoint": [], "network_mode": "none",
            "labels": {**WORKER_LABEL, OWNER_LABEL: owner_token()}, "device_requests": device_requests(gpus),
            "log_config": docker.types.LogConfig(type="none"), "user": USER,
        }
        container = self.client.containers.create(**config)
        try:
            container.start()
            container.wait(timeout=60)
        except docker.errors.APIError as exc:
            raise _gpu_error(exc) or GpuUnavailable(GPU_HELP.format(detail=str(exc)[:300])) from None
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)

    # -- the pool ----------------------------------------------------------------------------
    def _keep_pool_full(self) -> None:
        while True:
            self._refill.wait()
            self._refill.clear()
            while True:
                with self._lock:
                    if self._closed or len(self._pool) >= self.pool_size or self._pool_error is not None:
                        break
                try:
                    worker = self._launch(self.limits, self.gpus)
                except BaseException as exc:  # noqa: BLE001 - start() reports it
                    with self._lock:
                        self._pool_error = exc
                    break
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._pool.append(worker)
                if closed:
                    worker.kill()
            with self._lock:
                if self._closed:
                    return

    def _take_warm(self) -> DockerWorker | None:
        """A pooled worker that is still alive, preferring one whose hello has arrived."""
        with self._lock:
            alive = [w for w in self._pool if not w.ended.is_set()]
            dead = [w for w in self._pool if w.ended.is_set()]
            ready = [w for w in alive if w.hello.is_set()]
            chosen = (ready or alive or [None])[0]
            if chosen is not None:
                self._pool.remove(chosen)
        for worker in dead:
            worker.kill()
        return chosen

    def start(self, launch: WorkerLaunch) -> DockerWorker:
        if self._closed:
            raise RuntimeError("the docker sandbox is closed")
        gpus = launch.gpus if launch.gpus is not None else self.gpus
        begin = time.monotonic()
        worker = None
        if self.pool_size and launch.limits == self.limits and gpus == self.gpus:
            worker = self._take_warm()
            if worker is not None:
                try:
                    _copy_modules(launch.modules_dir, worker.slot)  # type: ignore[arg-type]
                except BaseException:
                    worker.kill()
                    raise
            if self._starts:
                # A restart: this submission lost a worker once and may again, so keep a spare. Not
                # after the first start: most submissions never need a second worker, and a spare
                # nobody uses costs a container start and a torch import on a busy host.
                self._refill.set()
        self._starts += 1
        warm = worker is not None
        if worker is None:
            with self._lock:
                error, self._pool_error = self._pool_error, None
            if isinstance(error, SandboxUnavailable):
                raise error
            try:
                worker = self._launch(launch.limits, gpus, launch.modules_dir)
            except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
                if _engine_answers(self.client.api):
                    raise
                raise DockerSandboxError(f"the Docker engine stopped answering ({type(exc).__name__}); "
                                         "start it again (e.g. `systemctl start docker`)") from None
        self.last_start = {"warm": warm, "hello_ready": worker.hello.is_set(), "start_s": time.monotonic() - begin}
        return worker

    # -- facts and the end -------------------------------------------------------------------
    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "isolated": self.isolated,
            "image": self.image_tag,
            "image_id": self.image_id,
            "engine": f"Docker {self.engine_version} (API {self.api_version})",
            "gpus": self.gpus,
            "pool_size": self.pool_size,
            "worker_code": "bind-mounted read-only at run time (not in the image)",
            "seccomp_profile": "sha256:" + hashlib.sha256(self._seccomp.encode()).hexdigest()[:16],
        }

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._live)
            self._pool.clear()
        self._refill.set()
        if self._refiller is not None:
            self._refiller.join(60)
        with self._lock:
            workers += [w for w in self._live if w not in workers]
        for worker in workers:
            worker.kill()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_modules(modules_dir: Path, slot: Path) -> None:
    """Copy the submission's top-level ``*.py`` files into a slot folder (readable, not writable, by 65534)."""
    for path in sorted(Path(modules_dir).glob("*.py")):
        if path.is_file() and not path.is_symlink():
            target = slot / path.name
            shutil.copyfile(path, target)
            os.chmod(target, 0o644)
