"""The Docker backend: hardened container settings (checked without an engine) and, where an engine
and the runner image exist, workers that run, fail, and stay inside their container.

Without an engine or the image the engine tests are skipped; with ``GRADER_REQUIRE_DOCKER=1`` they
fail instead (CI on a host that is meant to have Docker).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

from grader.deadlines import DeadlineRule  # noqa: E402
from grader.implementations import RemoteImplementation  # noqa: E402
from grader.remote import OutputCapture, WorkerSession  # noqa: E402
from grader.sandbox import Limits, WorkerLaunch  # noqa: E402
from grader.sandbox import docker as backend  # noqa: E402
from grader.sandbox.image import find_runner_image, runner_tag  # noqa: E402
from grader.verdicts import CpuLimitExceeded, Status, SubmissionProblem  # noqa: E402
from grader.worker import wire  # noqa: E402

REQUIRE = os.environ.get("GRADER_REQUIRE_DOCKER") == "1"

PROBE = r'''
import ctypes, errno, os, signal, socket, sys, time, torch
print("imported")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.personality.argtypes = [ctypes.c_ulong]

def _call(fn):
    ctypes.set_errno(0)
    result = fn()
    return [int(result), errno.errorcode.get(ctypes.get_errno(), "0")]

def add(a, b): return a + b
def hang():
    while True: pass
def die(): os._exit(3)
def segv(): os.kill(os.getpid(), signal.SIGSEGV)
def big(): return torch.empty(50 * 1024**3, dtype=torch.uint8)
def fill(n): return int(torch.ones(n, dtype=torch.uint8).sum())
def resident_bytes():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS:"))
def hold_and_spin(total):
    block = torch.ones(max(total - resident_bytes(), 1), dtype=torch.uint8)  # resident size now ~total
    end = time.process_time() + 60
    while time.process_time() < end:
        pass
    return int(block[0])
def flood():
    while True: print("x" * 1000)
def kill_worker(): os.kill(os.getppid(), signal.SIGKILL)
def forkbomb():
    while True:
        try: os.fork()
        except OSError: pass
def count_forks():
    pids = []
    try:
        while True:
            pid = os.fork()
            if pid == 0:
                signal.pause(); os._exit(0)
            pids.append(pid)
    except OSError as exc:
        for pid in pids: os.kill(pid, signal.SIGKILL)
        for pid in pids: os.waitpid(pid, 0)
        return [len(pids), errno.errorcode[exc.errno]]
def net():
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
def interfaces(): return sorted(os.listdir("/sys/class/net"))
def write(path, size=1, count=1):
    try:
        for i in range(count):
            with open(f"{path}{i if count > 1 else ''}", "wb") as f:
                f.write(b"x" * size)
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
def status():
    keep = ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp")
    lines = [l.split(":", 1) for l in open("/proc/self/status").read().splitlines()]
    return {k: v.strip() for k, v in lines if k in keep}
def env(): return dict(os.environ)
def listing(path): return sorted(os.listdir(path))
def exists(path): return os.path.exists(path)
def mounts(): return [line.split()[:4] for line in open("/proc/mounts")]
def limits():
    import resource
    names = ("RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_CPU")
    return {n: list(resource.getrlimit(getattr(resource, n))) for n in names}
def syscalls():
    out = {
        "unshare_user": _call(lambda: libc.unshare(0x10000000)),
        "ptrace": _call(lambda: libc.ptrace(0, 0, 0, 0)),
        "chroot": _call(lambda: libc.chroot(b"/tmp")),
        "mount": _call(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "keyctl": _call(lambda: libc.syscall(250, 0, 0, 0, 0)),
        "bpf": _call(lambda: libc.syscall(321, 0, 0, 0)),
        "perf_event_open": _call(lambda: libc.syscall(298, 0, 0, -1, -1, 0)),
        "io_uring_setup": _call(lambda: libc.syscall(425, 1, 0)),
        "userfaultfd": _call(lambda: libc.syscall(323, 0)),
        "personality_aslr_off": _call(lambda: libc.personality(0x0040000)),
        "personality_linux": _call(lambda: libc.personality(0)),
    }
    pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
    if pid == 0:
        os._exit(0)
    out["clone_newuser"] = [int(pid), errno.errorcode.get(ctypes.get_errno(), "0")]
    try:
        os.mkfifo("/tmp/fifo")
        out["mkfifo"] = "ok"
    except OSError as exc:
        out["mkfifo"] = errno.errorcode[exc.errno]
    return out
def torch_works():
    from torch.utils.data import DataLoader, TensorDataset
    x = torch.randn(64, 8)
    loader = DataLoader(TensorDataset(x), batch_size=16, num_workers=2)
    total = sum(float(b[0].sum()) for b in loader)
    return [abs(total - float(x.sum())) < 1e-3, float((x @ x.T).trace()) > 0]
'''


# -- engine-free checks of the container configuration --------------------------------------

def _config(tmp_path: Path, gpus: str | None = None, limits: Limits | None = None) -> dict:
    launch = WorkerLaunch(tmp_path, limits or Limits(), gpus)
    return backend.container_config(launch, "sha256:abc", lib_dir=tmp_path / "lib", submission_dir=tmp_path / "sub",
                                    owner="host:1:2")


def test_config_is_hardened(tmp_path: Path) -> None:
    limits = Limits(memory_bytes=3 * 1024**3, processes=99, open_files=77, file_size_bytes=1234, cpus=1.5,
                    tmpfs_bytes=5 * 1024**2, cpu_seconds=60)
    config = _config(tmp_path, limits=limits)
    assert config["network_mode"] == "none"
    assert config["read_only"] is True
    assert config["user"] == "65534:65534"
    assert config["cap_drop"] == ["ALL"] and not config.get("cap_add") and config["privileged"] is False
    assert "no-new-privileges:true" in config["security_opt"]
    seccomp = [o for o in config["security_opt"] if o.startswith("seccomp=")]
    assert len(seccomp) == 1
    profile = json.loads(seccomp[0].removeprefix("seccomp="))
    denied = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO" for n in rule["names"]}
    assert {"ptrace", "mount", "unshare", "setns", "bpf", "keyctl", "kexec_load", "init_module",
            "process_vm_readv", "open_by_handle_at", "userfaultfd", "perf_event_open", "clone3"} <= denied
    assert config["pids_limit"] == 99
    assert config["mem_limit"] == config["memswap_limit"] == 3 * 1024**3
    assert config["nano_cpus"] == 1_500_000_000
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in config["ulimits"]}
    assert ulimits == {"nofile": (77, 77), "fsize": (1234, 1234), "core": (0, 0), "cpu": (60, 60)}
    assert config["ipc_mode"] == "private" and config["init"] is True and config["tty"] is False
    assert config["stdin_open"] is True and config["detach"] is False
    assert config["log_config"]["Type"] == "none"
    assert config["labels"] == {"torch-grader": "worker", "torch-grader.owner": "host:1:2"}
    assert set(config["tmpfs"]) == {"/tmp", "/home/worker"}
    assert all(f"size={5 * 1024**2}" in opts for opts in config["tmpfs"].values())
    assert config["working_dir"] == "/home/worker" and config["environment"]["HOME"] == "/home/worker"
    assert config["command"][:2] == ["python3", "-I"] and config["command"][-3:] == ["--modules", "/submission", "--sweep-all"]


def test_config_mounts_only_worker_and_submission(tmp_path: Path) -> None:
    mounts = _config(tmp_path)["mounts"]
    assert [(m["Target"], m["Source"], m["Type"], m["ReadOnly"]) for m in mounts] == [
        ("/opt/grader-lib", str(tmp_path / "lib"), "bind", True),
        ("/submission", str(tmp_path / "sub"), "bind", True),
    ]
    text = json.dumps(_config(tmp_path), default=str)
    assert "docker.sock" not in text and "solutions" not in text and "autotests" not in text
    assert "volumes" not in _config(tmp_path)


def test_config_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    env = _config(tmp_path)["environment"]
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "GLIBC_TUNABLES", "CUDA_VISIBLE_DEVICES",
                        "NVIDIA_VISIBLE_DEVICES"}
    assert "s3cret" not in json.dumps(env)


def test_no_gpu_unless_asked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert "device_requests" not in config
    env = config["environment"]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_gpu_device_requests(tmp_path: Path) -> None:
    (one,) = _config(tmp_path, gpus="0")["device_requests"]
    assert one["DeviceIDs"] == ["0"] and one["Capabilities"] == [["gpu"]] and one.get("Count") in (None, 0)
    (two,) = _config(tmp_path, gpus="0,1")["device_requests"]
    assert two["DeviceIDs"] == ["0", "1"]
    (every,) = _config(tmp_path, gpus="all")["device_requests"]
    assert every["Count"] == -1 and not every.get("DeviceIDs") and every["Capabilities"] == [["gpu"]]
    env = _config(tmp_path, gpus="1")["environment"]
    assert "CUDA_VISIBLE_DEVICES" not in env and "NVIDIA_VISIBLE_DEVICES" not in env  # the engine picks devices
    with pytest.raises(ValueError, match="--gpus"):
        backend.parse_gpus("first")


def test_missing_gpu_support_is_a_clear_error() -> None:
    error = docker.errors.APIError('could not select device driver "" with capabilities: [[gpu]]')
    problem = backend._gpu_error(error)
    assert isinstance(problem, backend.GpuUnavailable)
    assert "nvidia-container-toolkit" in str(problem) and "without --gpus" in str(problem)


def test_exit_states() -> None:
    assert backend.exit_info_from_state({"ExitCode": 3}).code == 3
    segv = backend.exit_info_from_state({"ExitCode": 139})
    assert segv.signal == 11 and segv.code is None and not segv.oom_killed
    oom = backend.exit_info_from_state({"ExitCode": 137, "OOMKilled": True})
    assert oom.signal == 9 and oom.oom_killed


# -- with an engine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    """The Docker client; skips (or fails, with GRADER_REQUIRE_DOCKER=1) without an engine or image."""
    def unavailable(reason: str):
        if REQUIRE:
            pytest.fail(f"GRADER_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)

    if not backend.engine_available():
        unavailable("no Docker engine answers (start dockerd)")
    client = docker.from_env(timeout=120)
    if find_runner_image(client) is None:
        unavailable(f"the runner image {runner_tag()} is missing (run scripts/docker-image.sh)")
    yield client
    client.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("submission")
    (path / "ex01_probe.py").write_text(PROBE)
    (path / "notes.txt").write_text("only *.py files go in")
    return path


@pytest.fixture(scope="module")
def sandbox(engine):
    with backend.DockerSandbox(pool_size=1, client=engine) as box:
        yield box


@pytest.fixture(scope="module")
def session(sandbox, folder: Path):
    s = WorkerSession(sandbox, WorkerLaunch(folder, Limits()), OutputCapture(flood_bytes=1_000_000))
    yield s
    s.close()


def call(session: WorkerSession, name: str, *args, timeout: float = 20.0):
    return session.request({"op": "call", "exercise": "ex01_probe", "name": name, "args": list(args)}, timeout)


def problem(session: WorkerSession, name: str, *args, timeout: float = 20.0) -> SubmissionProblem:
    with pytest.raises(SubmissionProblem) as info:
        call(session, name, *args, timeout=timeout)
    return info.value


def container_exists(client, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False


def test_calls_work(session: WorkerSession) -> None:
    assert call(session, "add", 2, 3) == 5
    assert "imported" in session.capture.text("ex01_probe")
    assert session.facts["torch"].startswith("2.14.1") and session.facts["cuda_available"] is False
    assert call(session, "torch_works") == [True, True]  # fork, /dev/shm and threads under the seccomp profile


@pytest.mark.parametrize("name,status,words", [
    ("die", Status.CRASHED, "exit code 3"),
    ("segv", Status.CRASHED, "SIGSEGV"),
    ("big", Status.OUT_OF_MEMORY, "Out of memory"),
])
def test_failures_are_named(session: WorkerSession, name: str, status: Status, words: str) -> None:
    found = problem(session, name)
    assert found.status == status and words in found.message.en, found.message.en
    assert call(session, "add", 1, 2) == 3


def test_hang_times_out(session: WorkerSession) -> None:
    start = time.monotonic()
    assert problem(session, "hang", timeout=2.0).status == Status.TIMED_OUT
    assert time.monotonic() - start < 10
    assert call(session, "add", 1, 1) == 2


def test_dead_worker_container_is_removed(engine, session: WorkerSession) -> None:
    first = call(session, "add", 0, 0) == 0 and session._channel.worker.id  # type: ignore[union-attr]
    found = problem(session, "kill_worker")
    assert found.status == Status.CRASHED and "SIGKILL" in found.message.en, found.message.en
    assert not container_exists(engine, first)
    assert call(session, "add", 1, 1) == 2  # a fresh container (from the pool)
    assert session._channel.worker.id != first  # type: ignore[union-attr]


def test_flood_stops_and_removes_the_container(engine, session: WorkerSession) -> None:
    call(session, "add", 0, 0)
    first = session._channel.worker.id  # type: ignore[union-attr]
    assert problem(session, "flood", timeout=30.0).status == Status.OUTPUT_LIMIT
    assert not container_exists(engine, first)
    assert call(session, "add", 1, 1) == 2


def test_no_network(session: WorkerSession) -> None:
    assert call(session, "net") in ("OSError", "TimeoutError", "ConnectionRefusedError", "gaierror")
    assert call(session, "interfaces") == ["lo"]


def test_filesystem_is_read_only_except_tmpfs(session: WorkerSession) -> None:
    assert call(session, "write", "/usr/evil") == "EROFS"
    assert call(session, "write", "/submission/ex01_probe.py") == "EROFS"
    assert call(session, "write", "/opt/grader-lib/evil.py") == "EROFS"
    assert call(session, "write", "/tmp/ok") == "ok"
    assert call(session, "write", "/home/worker/ok") == "ok"
    assert call(session, "write", "/tmp/huge", 100 * 1024**2) == "EFBIG"  # fsize ulimit (64 MiB)
    assert call(session, "write", "/tmp/part", 60 * 1024**2, 5) == "ENOSPC"  # tmpfs size (256 MiB)


def test_only_worker_and_submission_are_visible(session: WorkerSession) -> None:
    assert call(session, "listing", "/submission") == ["ex01_probe.py"]
    assert call(session, "listing", "/opt/grader-lib") == ["grader_worker"]
    for path in ("/var/run/docker.sock", "/run/docker.sock", "/work", "/root/.docker"):
        assert call(session, "exists", path) is False, path
    # Host files inside: our two binds, the engine's generated /etc files and its init binary.
    binds = {m[1] for m in call(session, "mounts") if m[0].startswith("/dev/") and not m[1].startswith("/dev")}
    binds = {b for b in binds if not b.endswith("/docker-init")}
    assert binds <= {"/submission", "/opt/grader-lib", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}, binds


def test_runs_unprivileged(session: WorkerSession) -> None:
    status = call(session, "status")
    assert status["Uid"].split()[0] == "65534" and status["Gid"].split()[0] == "65534"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    limits = call(session, "limits")
    assert limits["RLIMIT_CORE"] == [0, 0] and limits["RLIMIT_NOFILE"][1] == Limits().open_files


def test_seccomp_refuses_dangerous_syscalls(session: WorkerSession) -> None:
    found = call(session, "syscalls")
    for name in ("unshare_user", "ptrace", "chroot", "mount", "keyctl", "bpf", "perf_event_open",
                 "io_uring_setup", "userfaultfd", "personality_aslr_off", "clone_newuser"):
        assert found[name] == [-1, "EPERM"], (name, found[name])
    assert found["mkfifo"] == "EPERM"
    assert found["personality_linux"] == [0, "0"]  # the plain Linux personality is still allowed


def test_environment_has_no_host_secrets(engine, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    with backend.DockerSandbox(client=engine) as box:
        s = WorkerSession(box, WorkerLaunch(folder))
        try:
            env = call(s, "env")
        finally:
            s.close()
    assert "GRADER_SECRET" not in env and "s3cret" not in json.dumps(env)
    assert env["HOME"] == "/home/worker" and env["OMP_NUM_THREADS"] == "1"


def test_fork_bomb_is_contained(session: WorkerSession) -> None:
    start = time.monotonic()
    forks, error = call(session, "count_forks", timeout=60.0)
    assert forks < Limits().processes and error == "EAGAIN"
    assert problem(session, "forkbomb", timeout=3.0).status in (Status.TIMED_OUT, Status.CRASHED)
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes
    assert call(session, "add", 1, 1) == 2
    assert time.monotonic() - start < 60


def test_memory_limit_kills_and_is_reported(engine, folder: Path) -> None:
    limits = Limits(memory_bytes=2 * 1024**3)
    with backend.DockerSandbox(client=engine, limits=limits) as box:
        s = WorkerSession(box, WorkerLaunch(folder, limits))
        try:
            assert call(s, "add", 1, 1) == 2
            worker = s._channel.worker  # type: ignore[union-attr]
            hits_before = worker.memory_cap_hits()
            assert isinstance(hits_before, int), "this host's memory cgroup counter is readable"
            found = problem(s, "fill", 3 * 1024**3, timeout=60.0)
            assert found.status in (Status.CRASHED, Status.OUT_OF_MEMORY), found.message.en
            assert "SIGKILL" in found.message.en or found.status == Status.OUT_OF_MEMORY
            assert worker.oom_killed  # the engine saw the memory cap kill a process in the container
            assert worker.memory_cap_hits() > hits_before  # and counted the usage reaching the cap
        finally:
            s.close()


def test_a_call_stopped_near_the_memory_cap_is_named_out_of_memory(engine, folder: Path) -> None:
    """Near the cgroup's cap the kernel evicts and re-reads pages and work crawls until a time limit
    ends it: the verdict names memory, the cause, with the figures the zygote read (VmHWM).

    The probe tops its resident size up to a share of the cap (torch's own footprint differs between
    hosts), and the CPU floor leaves room to fill the memory before the spin that the limit ends."""
    cap = 2 * 1024**3
    limits = Limits(memory_bytes=cap)
    with backend.DockerSandbox(client=engine, limits=limits) as box:
        s = WorkerSession(box, WorkerLaunch(folder, limits), OutputCapture())
        impl = RemoteImplementation(s, "ex01_probe", DeadlineRule(cpu_floor_s=4.0, wall_floor_s=60))
        try:
            with pytest.raises(CpuLimitExceeded):  # little memory held: the CPU limit is the cause
                impl.call("hold_and_spin", int(0.4 * cap))
            with pytest.raises(SubmissionProblem) as info:
                impl.call("hold_and_spin", int(0.87 * cap))  # over MEMORY_NEAR_CAP, short of the cap
            assert info.value.status == Status.OUT_OF_MEMORY, info.value.message.en
            assert "of its 2.0 GiB memory limit" in info.value.message.en
        finally:
            s.close()


def test_running_worker_protocol(engine, folder: Path) -> None:
    """The RunningWorker contract: frames in and out, output apart, kill twice, exit info after."""
    with backend.DockerSandbox(client=engine) as box:
        worker = box.start(WorkerLaunch(folder))
        assert worker.poll() is None
        assert wire.read_frame(worker.replies)["ok"]  # the hello
        worker.requests.write(wire.encode_frame({"op": "call", "exercise": "ex01_probe", "name": "add",
                                                 "args": [20, 22], "id": 7}))
        worker.requests.flush()
        reply = wire.read_frame(worker.replies)
        assert {k: reply[k] for k in ("ok", "value", "id")} == {"ok": True, "value": 42, "id": 7}
        assert set(reply) <= {"ok", "value", "id", "cost"}  # cost: what the request took the worker
        assert b"imported" in worker.output.read1(65536)
        worker.kill()
        worker.kill()  # twice is fine
        info = worker.poll()
        assert info is not None and info.signal == 9 and worker.wait(1.0) == info
        assert not container_exists(engine, worker.id)
        assert worker.replies.read() == b""  # the streams end


def test_leftovers_are_removed(engine) -> None:
    image = runner_tag()
    common = dict(image=image, command=["sleep", "300"], entrypoint=[], network_mode="none", detach=True)
    dead_owner = engine.containers.run(labels={"torch-grader": "worker",
                                               "torch-grader.owner": f"{socket.gethostname()}:999999999:1"}, **common)
    no_owner = engine.containers.run(labels={"torch-grader": "worker"}, **common)
    live_owner = engine.containers.run(labels={"torch-grader": "worker",
                                               "torch-grader.owner": backend.owner_token()}, **common)
    try:
        removed = backend.cleanup_leftovers(engine)
        assert dead_owner.id in removed and no_owner.id in removed and live_owner.id not in removed
        assert not container_exists(engine, dead_owner.id) and not container_exists(engine, no_owner.id)
        assert container_exists(engine, live_owner.id)
    finally:
        for c in (dead_owner, no_owner, live_owner):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


def test_pool_hands_out_a_warm_worker(engine, folder: Path) -> None:
    with backend.DockerSandbox(client=engine, pool_size=1) as box:
        deadline = time.monotonic() + 120
        while not (box._pool and box._pool[0].hello.is_set()):
            assert time.monotonic() < deadline, "the pool never got a ready container"
            time.sleep(0.05)
        s = WorkerSession(box, WorkerLaunch(folder))
        try:
            start = time.monotonic()
            assert call(s, "add", 1, 2) == 3
            took = time.monotonic() - start
            assert box.last_start["warm"] and box.last_start["hello_ready"]
            assert took < 5.0, took
            assert call(s, "listing", "/submission") == ["ex01_probe.py"]
            time.sleep(1.0)
            assert not box._pool and len(box._live) == 1  # no spare after the first start: most never need one
            first = {w.id for w in box._live}
            problem(s, "kill_worker")  # the zygote itself dies: the container is lost
            assert call(s, "add", 1, 1) == 2  # a restart, cold; from now on a spare is kept
            deadline = time.monotonic() + 120
            while not box._pool:
                assert time.monotonic() < deadline, "no spare after a restart"
                time.sleep(0.05)
            ids = first | {w.id for w in box._live}
            assert len(ids) == 3  # the first, its cold replacement, and the spare
        finally:
            s.close()
    for container_id in ids:
        assert not container_exists(engine, container_id)


def test_describe(sandbox) -> None:
    facts = sandbox.describe()
    assert facts["backend"] == "docker" and facts["isolated"] is True
    assert facts["image"] == runner_tag() and str(facts["image_id"]).startswith("sha256:")
    assert "Docker" in str(facts["engine"]) and facts["gpus"] is None


def test_gpu_request_without_gpu_support_is_a_clear_error(engine) -> None:
    try:
        box = backend.DockerSandbox(client=engine, gpus="0")
    except backend.GpuUnavailable as exc:
        assert "nvidia-container-toolkit" in str(exc)
        return
    box.close()
    pytest.skip("this engine can give containers GPU 0")
