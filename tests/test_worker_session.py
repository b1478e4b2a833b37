"""A worker that misbehaves ends one request with a clear problem; the next request gets a fresh one."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import pytest
import torch

from grader.i18n import Msg
from grader.remote import OutputCapture, WorkerSession, _short_of_memory
from grader.sandbox import Limits, WorkerLaunch, get_sandbox
from grader.sandbox.cgroup import MemoryCapCounter
from grader.verdicts import Status, SubmissionProblem

MODULE = '''
import os, sys, torch
print("imported")
def add(a, b): return a + b
def boom(): raise ValueError("bad value")
def todo(): raise NotImplementedError
def hang():
    while True: pass
def die(): os._exit(3)
def leave(): sys.exit(4)
def segv():
    import signal; os.kill(os.getpid(), signal.SIGSEGV)
def big(): return torch.empty(50 * 1024**3, dtype=torch.uint8)
def flood():
    while True: print("x" * 1000)
def forge():
    os.write(4, b"\\x10\\x00\\x00\\x00" + b'{"ok": true}' + b"    ")
    return 1
def module(): return torch.nn.Linear(2, 2)
'''


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("modules")
    (folder / "ex01_demo.py").write_text(MODULE)
    (folder / "ex02_broken.py").write_text("def f(:\n")
    (folder / "ex03_exits.py").write_text("import os\nos._exit(0)\n")
    (folder / "ex04_patcher.py").write_text(
        "import torch\ndef patch_torch():\n    torch.Tensor.__add__ = lambda a, b: a * 0\n")
    s = WorkerSession(get_sandbox("process"), WorkerLaunch(folder, Limits()), OutputCapture(flood_bytes=1_000_000))
    yield s
    s.close()


def call(session: WorkerSession, name: str, *args, exercise: str = "ex01_demo", timeout: float = 5.0):
    return session.request({"op": "call", "exercise": exercise, "name": name, "args": list(args)}, timeout)


def problem(session: WorkerSession, name: str, **kwargs) -> SubmissionProblem:
    with pytest.raises(SubmissionProblem) as info:
        call(session, name, **kwargs)
    return info.value


def test_calls_return_data(session: WorkerSession) -> None:
    assert torch.equal(call(session, "add", torch.ones(2), 2), torch.full((2,), 3.0))
    assert "imported" in session.capture.text("ex01_demo")
    assert session.facts["torch"] == torch.__version__


@pytest.mark.parametrize("name,status,words", [
    ("boom", Status.ERROR, "ValueError: bad value"),
    ("todo", Status.NOT_IMPLEMENTED, "Not implemented"),
    ("die", Status.CRASHED, "exit code 3"),
    ("leave", Status.ERROR, "sys.exit"),
    ("segv", Status.CRASHED, "SIGSEGV"),
    ("big", Status.OUT_OF_MEMORY, "Out of memory"),
    ("module", Status.ERROR, "cannot be graded"),
    ("missing", Status.ERROR, "no function or class named 'missing'"),
])
def test_failures_are_named(session: WorkerSession, name: str, status: Status, words: str) -> None:
    found = problem(session, name)
    assert found.status == status and words in found.message.en, found.message.en
    assert call(session, "add", 1, 2) == 3  # and the session carries on


def test_hang_is_killed_at_the_deadline(session: WorkerSession) -> None:
    start, restarts = time.monotonic(), session.restarts
    assert problem(session, "hang", timeout=2.0).status == Status.TIMED_OUT
    assert time.monotonic() - start < 6
    assert call(session, "add", 1, 1) == 2
    assert session.restarts == restarts  # the zygote killed the child; the worker lives on


def test_exercises_run_in_separate_processes(session: WorkerSession) -> None:
    """One exercise patching torch cannot change another exercise's results."""
    assert call(session, "patch_torch", exercise="ex04_patcher") is None
    assert call(session, "add", torch.ones(1), 1).tolist() == [2.0]


def test_output_flood_stops_the_worker(session: WorkerSession) -> None:
    assert problem(session, "flood", timeout=20.0).status == Status.OUTPUT_LIMIT
    assert call(session, "add", 1, 1) == 2


def test_forged_frames_are_garbage_not_results(session: WorkerSession) -> None:
    """Bytes written straight at the channel never become a result."""
    found = problem(session, "forge")
    assert found.status in (Status.CRASHED, Status.ERROR)
    assert call(session, "add", 2, 2) == 4


def test_import_failures_are_remembered(session: WorkerSession) -> None:
    first = problem(session, "f", exercise="ex02_broken")
    assert first.status == Status.IMPORT_ERROR and "SyntaxError" in first.message.en
    restarts = session.restarts
    assert problem(session, "f", exercise="ex03_exits").status == Status.IMPORT_ERROR
    assert problem(session, "f", exercise="ex03_exits").status == Status.IMPORT_ERROR
    assert session.restarts == restarts  # only the exercise's forked child died, not the worker
    assert problem(session, "f", exercise="ex09_absent").status == Status.NOT_SUBMITTED


def test_a_remembered_import_failure_does_not_pile_up_tracebacks(session: WorkerSession) -> None:
    """Each test that meets a remembered import failure gets it with its own traceback only: re-raising
    the stored exception chained every earlier test's frames onto it, and pytest formatted them all
    (tens of seconds for an exercise whose import failed)."""
    def depth() -> int:
        tb, frames = problem(session, "f", exercise="ex02_broken").__traceback__, 0
        while tb is not None:
            tb, frames = tb.tb_next, frames + 1
        return frames

    first = depth()
    assert [depth() for _ in range(5)] == [first] * 5


def test_the_worker_raises_a_remembered_import_failure_with_the_import_frames_only(tmp_path: Path) -> None:
    """The worker's side of the same rule: asking again for a module whose import failed raises the
    stored exception with the import's frames (the student's line), not with every earlier ask's."""
    from grader.worker.__main__ import ModuleHost

    (tmp_path / "ex01_bad.py").write_text("x = 1\nraise ValueError('boom')\n")
    host = ModuleHost(str(tmp_path))

    def frames() -> list[str]:
        with pytest.raises(ValueError) as info:
            host.get("ex01_bad")
        return [f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_tb(info.value.__traceback__)]

    first, again = frames(), frames()
    assert first[-1].endswith("ex01_bad.py:2") and again[-len(first) + 1:] == first[1:]
    assert [frames() for _ in range(3)] == [again] * 3


def test_worker_environment_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    (tmp_path / "ex01_env.py").write_text(
        "import os, sys\ndef env(): return dict(os.environ)\ndef path(): return list(sys.path)\n"
        "def cwd(): return os.getcwd()\n")
    s = WorkerSession(get_sandbox("process"), WorkerLaunch(tmp_path))
    try:
        env = call(s, "env", exercise="ex01_env")
        assert "GRADER_SECRET" not in env and env["OMP_NUM_THREADS"] == "1"
        assert not any("solutions" in p or p.endswith("/main") for p in call(s, "path", exercise="ex01_env"))
        assert call(s, "cwd", exercise="ex01_env") != str(tmp_path)
    finally:
        s.close()


DAEMON = '''
import os, time


def start_burner():
    """Leave a CPU burner in a session of its own, where a process-group sweep does not look."""
    reader, writer = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(writer, str(os.getpid()).encode())
            end = time.time() + 120
            while time.time() < end:
                pass
        os._exit(0)
    os.close(writer)
    return int(os.read(reader, 32))
'''


def test_a_daemon_in_its_own_session_does_not_outlive_the_request(tmp_path: Path) -> None:
    """Nothing of the student's survives between requests, so it cannot slow the reference's timing:
    a process that left its group is found through the worker's cgroup (or the sandbox's PID
    namespace) and killed when the request ends."""
    from grader.sandbox.cgroup import WorkerCgroup

    probe_group = WorkerCgroup.create(8, 1 << 30)
    if probe_group is None:
        pytest.skip("no cgroup can be made here: the process backend has no way to find such daemons")
    probe_group.remove()
    (tmp_path / "ex05_daemon.py").write_text(DAEMON)
    session = WorkerSession(get_sandbox("process"), WorkerLaunch(tmp_path, Limits()))
    try:
        pid = session.request({"op": "call", "exercise": "ex05_daemon", "name": "start_burner", "args": []}, 10)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "gone"
        assert state in ("gone", "Z"), f"the burner {pid} is still running ({state})"
    finally:
        session.close()


def test_memory_cap_counters_are_read_in_both_cgroup_layouts(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n")
    assert MemoryCapCounter(v2, 2).hits() == 5
    v1 = tmp_path / "v1"
    v1.mkdir()
    for name, value in (("failcnt", 0), ("memsw.failcnt", 0), ("limit_in_bytes", 1000), ("max_usage_in_bytes", 400)):
        (v1 / f"memory.{name}").write_text(f"{value}\n")
    counter = MemoryCapCounter(v1, 1)
    assert counter.hits() == 0
    (v1 / "memory.max_usage_in_bytes").write_text("1000\n")  # usage reached the cap once
    assert counter.hits() == 1 and (v1 / "memory.max_usage_in_bytes").read_text() == "0"  # mark reset
    assert counter.hits() == 1
    (v1 / "memory.memsw.failcnt").write_text("3\n")  # where the kernel counts failures, they add up
    assert counter.hits() == 4
    assert MemoryCapCounter(tmp_path / "missing", 1).hits() is None


def test_a_call_stopped_after_reaching_the_memory_cap_is_named_out_of_memory() -> None:
    """Near the cap the kernel reclaims and re-reads pages; a CPU or wall limit may then stop the call
    while the worker's own peak looks small (the cgroup holds page cache too). The cgroup's count of
    reaching the cap since the call was sent decides the verdict: memory, not an endless loop."""
    during, cap = Msg("调用", "the call"), 6 * 1024**3
    assert _short_of_memory({"peak_rss_bytes": 2 * 1024**3}, cap, during) is None
    found = _short_of_memory({"peak_rss_bytes": 2 * 1024**3}, cap, during, hit_cap=True)
    assert found is not None and found.status == Status.OUT_OF_MEMORY
    assert "reached its 6.0 GiB limit" in found.message.en and "6.0 GiB" in found.message.zh
    held = _short_of_memory({"peak_rss_bytes": 5 * 1024**3}, cap, during)
    assert held is not None and "held 5.0 GiB of its 6.0 GiB" in held.message.en
