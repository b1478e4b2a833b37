"""``grader check`` where students are: an ordinary Linux user with hundreds of threads, no
network, a Windows-like Python without ``fcntl``/``termios``/``resource``/``fork``, and a fresh
student install from the kit's wheel with a CPU build of torch."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from support import COURSE, ROOT

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "submission" / "exercises"
STUDENT_USER = "torch-grader-student"


def kit_with(student_kit: Path, into: Path, solutions: Path) -> Path:
    shutil.copytree(student_kit, into)
    for path in solutions.glob("ex*.py"):
        shutil.copyfile(path, into / "exercises" / path.name)
    return into


# The small CPU build of torch that a student install uses here has no torchvision beside it (and
# so no Pillow): the tasks that need them are left out of these checks. On a student's machine with
# torchvision they run like the rest; without it they are reported as not run, never as failed.
# Nor the deploy extra (onnx, onnxruntime), which the kit's README installs for the ONNX task only.
NEEDS_TORCHVISION = ["-k", "not (image_folder or transforms_ or eval_transform or train_transform or (transfer and resnet)"
                     " or onnx or predict_bytes)"]


def assert_full(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"Total: (\d+)/\1 \(100\.0%\)", proc.stdout), proc.stdout[-3000:]


def assert_example_mistakes(proc: subprocess.CompletedProcess[str]) -> None:
    """The example's slips show as failures with their symptoms; nothing crashes."""
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "population variance" in proc.stdout and "fit_line" in proc.stdout
    assert not re.search(r"\b(crashed|timed out|grader error)\b", proc.stdout), proc.stdout[-3000:]


# -- an ordinary user with 300 threads, no network ---------------------------------------------------
@pytest.fixture(scope="module")
def student_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("creating a student account needs root (CI runs as root)")
    try:
        return pwd.getpwnam(STUDENT_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", STUDENT_USER],
                       check=True)
        return pwd.getpwnam(STUDENT_USER)


def as_user(user: pwd.struct_passwd, command: list[str]) -> list[str]:
    """``command`` as ``user`` (no capabilities left), in a network namespace with no interface up."""
    return ["unshare", "--net", "--", "runuser", "-u", user.pw_name, "--", *command]


@pytest.fixture(scope="module")
def shared_dir():  # noqa: ANN201 - yields a folder
    """A scratch folder other users can enter (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="grader-student-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


CPU_TORCH = "torch==2.13.0"  # a CPU build on this machine's disk; the kit's ranges admit it


@pytest.fixture(scope="module")
def student_venv(student_kit: Path, shared_dir: Path) -> Path:
    """What a student installs: a venv from the system's Python, a CPU torch, the kit's wheel."""
    base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    venv = shared_dir / "venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    wheel = next((student_kit / "tool").glob("*.whl"))
    install = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", CPU_TORCH, str(wheel)],
                             capture_output=True, text=True, timeout=900)
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip(f"{CPU_TORCH} is not available to pip here")
    assert install.returncode == 0, install.stderr[-3000:]
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    return venv


def test_student_install_is_small_and_checks(student_venv: Path, student_kit: Path, tmp_path: Path) -> None:
    listed = subprocess.run([student_venv / "bin" / "python", "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert "docker" not in listed and "nvidia" not in listed and "torchvision" not in listed, listed
    size = sum(p.stat().st_size for p in student_venv.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"student install: {size / 2**20:.0f} MiB")
    assert size < 1.5 * 2**30, f"a student install takes {size / 2**30:.2f} GiB"
    good = kit_with(student_kit, tmp_path / "good", COURSE.solutions_dir)
    assert_full(subprocess.run([student_venv / "bin" / "grader", "check", *NEEDS_TORCHVISION], cwd=good,
                               capture_output=True, text=True, timeout=600))


@pytest.fixture
def busy_user(student_user: pwd.struct_passwd, student_venv: Path):  # noqa: ANN201 - yields the user
    """The student user with 300 idle threads alive, as a desktop session would have."""
    holder = subprocess.Popen(
        ["runuser", "-u", student_user.pw_name, "--", str(student_venv / "bin" / "python"), "-c",
         "import threading, time\n"
         "for _ in range(300): threading.Thread(target=time.sleep, args=(900,), daemon=True).start()\n"
         "print('ready', flush=True); time.sleep(900)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield student_user
    finally:
        subprocess.run(["pkill", "-KILL", "-u", student_user.pw_name], check=False)
        holder.wait()


def user_threads(user: pwd.struct_passwd) -> int:
    from grader.sandbox.process import tasks_of_user

    return tasks_of_user(user.pw_uid)


@pytest.mark.parametrize("sandbox", ["local", "process"])
def test_check_as_an_ordinary_user_with_300_threads_offline(student_kit: Path, shared_dir: Path, student_venv: Path,
                                                           busy_user: pwd.struct_passwd, sandbox: str) -> None:
    assert user_threads(busy_user) >= 300
    work = shared_dir / f"work-{sandbox}"
    home = work / "home"
    home.mkdir(parents=True)
    good = kit_with(student_kit, work / "good", COURSE.solutions_dir)
    buggy = kit_with(student_kit, work / "buggy", EXAMPLE)
    subprocess.run(["chown", "-R", f"{busy_user.pw_uid}:{busy_user.pw_gid}", str(work)], check=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    command = as_user(busy_user, [str(student_venv / "bin" / "grader"), "check", "--sandbox", sandbox])
    assert_full(subprocess.run(command + NEEDS_TORCHVISION, cwd=good / "exercises", env=env, capture_output=True,
                               text=True, timeout=600))
    assert_example_mistakes(subprocess.run(command, cwd=buggy, env=env, capture_output=True, text=True, timeout=600))
    packed = subprocess.run(as_user(busy_user, [str(student_venv / "bin" / "grader"), "pack"]), cwd=good, env=env,
                            capture_output=True, text=True, timeout=120)
    assert packed.returncode == 0 and (good / "submission.zip").is_file(), packed.stdout + packed.stderr


# -- a Windows-like Python ----------------------------------------------------------------------------
BLOCKER = '''"""Make this interpreter Windows-like for the grader: no fcntl, termios, resource, fork."""
import os, site, sys

class _Unavailable:
    def find_spec(self, name, path=None, target=None):
        if name in ("fcntl", "termios", "resource"):
            raise ImportError(f"No module named {name!r} (Windows-like test interpreter)")
        return None

for _name in ("fcntl", "termios", "resource"):
    sys.modules.pop(_name, None)
sys.meta_path.insert(0, _Unavailable())
for _attr in ("fork", "forkpty"):
    if hasattr(os, _attr):
        delattr(os, _attr)
site.addsitedir(SITE_PACKAGES)
'''


@pytest.fixture(scope="module")
def windows_like_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv whose every process (the CLI and the worker it starts) lacks the POSIX-only modules."""
    venv = tmp_path_factory.mktemp("winlike") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_dir = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (site_dir / "_windows_like.py").write_text(BLOCKER.replace("SITE_PACKAGES", repr(sysconfig.get_paths()["purelib"])))
    (site_dir / "_windows_like.pth").write_text("import _windows_like\n")
    probe = subprocess.run([python, "-I", "-c", "import os, grader.cli, grader.plugin, grader.remote, "
                            "grader.sandbox.local, grader.worker.__main__\n"
                            "try:\n import fcntl\nexcept ImportError: print('no fcntl', hasattr(os, 'fork'))"],
                           capture_output=True, text=True, cwd=venv)
    assert probe.stdout.strip() == "no fcntl False", probe.stdout + probe.stderr
    return str(python)


def test_check_on_a_windows_like_python(student_kit: Path, tmp_path: Path, windows_like_python: str) -> None:
    good = kit_with(student_kit, tmp_path / "good", COURSE.solutions_dir)
    assert_full(subprocess.run([windows_like_python, "-m", "grader", "check", *NEEDS_TORCHVISION], cwd=good,
                               capture_output=True, text=True, timeout=600))
    buggy = kit_with(student_kit, tmp_path / "buggy", EXAMPLE)
    assert_example_mistakes(subprocess.run([windows_like_python, "-m", "grader", "check"], cwd=buggy,
                                           capture_output=True, text=True, timeout=600))


def test_a_hanging_call_ends_at_its_deadline_on_a_windows_like_python(student_kit: Path, tmp_path: Path,
                                                                   windows_like_python: str) -> None:
    """Without a zygote the worker cannot abort one call: the checker restarts it and goes on."""
    kit = kit_with(student_kit, tmp_path / "kit", COURSE.solutions_dir)
    source = (kit / "exercises" / "ex01_tensors.py").read_text()
    source = source.replace("def standardize(", "def standardize(*a, **k):\n    while True:\n        pass\n\n\ndef _unused(", 1)
    (kit / "exercises" / "ex01_tensors.py").write_text(source)
    spec = (kit / "autotests" / "ex01_tensors.toml").read_text() + "\n[deadlines]\ncpu_floor_s = 0.5\nwall_floor_s = 3\n"
    (kit / "autotests" / "ex01_tensors.toml").write_text(spec)
    proc = subprocess.run([windows_like_python, "-m", "grader", "check", "ex01"], cwd=kit, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "standardize" in proc.stdout and "timed out" in proc.stdout
    assert "patchify ·" not in proc.stdout  # the summary lists only failures: the other tasks still pass
