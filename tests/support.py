"""Helpers for the project's own tests: grade folders and zips the way the product does."""

from __future__ import annotations

import atexit
import os
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grader.catalog import find_course
from grader.grading import GradingRun
from grader.pipeline import run_autotests
from grader.remote import WorkerSession
from grader.report import TestResult
from grader.sandbox import SandboxUnavailable, WorkerLaunch, get_sandbox
from grader.sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parents[1]
COURSE = find_course(Path(__file__).resolve().parents[1])


_REFERENCE: WorkerSession | None = None


def shared_reference() -> WorkerSession:
    """One reference worker for every grading in this test session (it runs trusted code only)."""
    global _REFERENCE
    if _REFERENCE is None:
        _REFERENCE = WorkerSession(ProcessSandbox(COURSE.probes_dir), WorkerLaunch(COURSE.solutions_dir))
        atexit.register(_REFERENCE.close)
    return _REFERENCE


def grade_folder(modules_dir: Path, exercises: list[str] | None = None, keyword: str = "",
                 markexpr: str = "", sandbox: str = "process") -> dict[str, TestResult]:
    """Grade the exercise files in ``modules_dir`` in this process; results by test name."""
    run = GradingRun(course=COURSE, modules_dir=modules_dir, sandbox_name=sandbox,
                     reference_dir=COURSE.solutions_dir, print_summary=False, shared_reference=shared_reference())
    try:
        run_autotests(run, markexpr=markexpr, keyword=keyword, exercises=exercises)
    finally:
        run.close()
    return {r.name: r for r in run.results}


def grade_folder_per_exercise(modules_dir: Path, exercises: list[str], keyword: str = "",
                              sandbox: str = "process") -> dict[tuple[str, str], TestResult]:
    """Like :func:`grade_folder` for several exercises at once; results by (exercise, test name)."""
    run = GradingRun(course=COURSE, modules_dir=modules_dir, sandbox_name=sandbox,
                     reference_dir=COURSE.solutions_dir, print_summary=False, shared_reference=shared_reference())
    try:
        run_autotests(run, keyword=keyword, exercises=exercises)
    finally:
        run.close()
    return {(r.exercise, r.name): r for r in run.results}


def require_backend(name: str) -> str:
    """``name`` if this host can run that sandbox; else skip the test, or fail it for Docker when
    ``GRADER_REQUIRE_DOCKER=1`` (CI sets it, so a missing engine cannot pass as a skip)."""
    try:
        get_sandbox(name).close()
    except SandboxUnavailable:
        if name == "docker" and os.environ.get("GRADER_REQUIRE_DOCKER") == "1":
            pytest.fail("GRADER_REQUIRE_DOCKER=1 but the docker sandbox is unavailable")
        pytest.skip(f"{name} sandbox unavailable on this host")
    return name


def write_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@dataclass
class Variant:
    exercise: str
    name: str
    description: str
    replace: list[tuple[str, str]]
    fails: list[str] = field(default_factory=list)
    message: str = ""

    def apply(self, source: str) -> str:
        for old, new in self.replace:
            count = source.count(old)
            if count != 1:
                raise AssertionError(f"{self.exercise}/{self.name}: {old!r} occurs {count} times in the reference")
            source = source.replace(old, new)
        return source


def write_variants(group: list[Variant]) -> Path:
    """A fresh folder holding each variant's exercise file (the reference with its changes)."""
    folder = Path(tempfile.mkdtemp(prefix="grader-variants-"))
    for variant in group:
        source = (COURSE.solutions_dir / f"{variant.exercise}.py").read_text(encoding="utf-8")
        (folder / f"{variant.exercise}.py").write_text(variant.apply(source), encoding="utf-8")
    return folder


def shown_text(result: TestResult) -> str:
    """The English text an instructor reads for a result: its message and detail."""
    return " ".join(m.en for m in (result.message, result.detail) if m is not None)


def load_variants(kind: str) -> list[Variant]:
    """``kind`` is ``mutant`` (must lose points) or ``alternative`` (must score full)."""
    variants = []
    for path in sorted((ROOT / "tests" / "mutants").glob("ex*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for entry in data.get(kind, []):
            variants.append(Variant(
                exercise=path.stem,
                name=entry["name"],
                description=entry.get("description", ""),
                replace=[(old, new) for old, new in entry["replace"]],
                fails=list(entry.get("fails", [])),
                message=entry.get("message", ""),
            ))
    return variants


# -- what a test leaves running: only this test session's, never another grader's on the host ---------
def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, start time in clock ticks, command line) of every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), int(fields[19]), cmdline)
    return table


def descendants(pid: int, table: dict[int, tuple[int, int, str]] | None = None) -> set[int]:
    table = table if table is not None else _proc_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (parent, _, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def process_start_ticks() -> int:
    """Now, in the clock ticks of /proc/<pid>/stat's start time (ticks since boot)."""
    with open("/proc/uptime") as handle:
        return int(float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


def leftover_processes(since_ticks: int, needles: tuple[str, ...] = ("grader_worker",)) -> list[str]:
    """Processes this test session left running: those matching ``needles`` that descend from this
    process, or that lost their grader (reparented up to init) and started after ``since_ticks``.
    Another grader's workers on the host are neither, so they never fail our checks; container
    processes are left to :func:`leftover_containers`."""
    table = _proc_table()
    ours = descendants(os.getpid(), table)
    return [f"{pid} {cmd}" for pid, (_, start, cmd) in table.items()
            if pid != os.getpid() and any(n in cmd for n in needles)
            and (pid in ours or (start >= since_ticks and _lost_its_grader(pid, table)))]


def _lost_its_grader(pid: int, table: dict[int, tuple[int, int, str]]) -> bool:
    parent = table.get(pid, (0, 0, ""))[0]
    while parent in table and parent > 1:
        command = table[parent][2]
        if "containerd-shim" in command or ("python" in command and "grader_worker" not in command):
            return False  # in a container, or a grader (some test run's, or another's) still holds it
        parent = table[parent][0]
    return True


def leftover_containers() -> list[str]:
    """Worker containers of this test session (labelled with this process as their owner)."""
    try:
        import docker

        from grader.sandbox.docker import OWNER_LABEL, owner_token

        client = docker.from_env(timeout=10)
        return [c.name for c in client.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}={owner_token()}"})]
    except Exception:  # noqa: BLE001 - no engine: nothing can be left
        return []
