"""A cgroup per worker, where the host lets us make one: process and memory caps that hold for
root too (RLIMIT_NPROC does not), a CPU quota (where the cpu controller is available), and a
reliable way to kill everything a worker started, daemons that left its process group included.

Works with cgroup v1 (``pids`` and ``memory`` hierarchies) and v2 (one unified hierarchy). Where
neither is writable, :meth:`WorkerCgroup.create` returns None and the backends fall back to
rlimits alone.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "torch-grader-"


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class WorkerCgroup:
    dirs: list[Path]  # one per hierarchy (v1: pids and memory; v2: one)
    memory_dir: Path | None
    version: int

    cpu_capped: bool = False
    _cap_counter: "MemoryCapCounter | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, processes: int, memory_bytes: int, cpus: float | None = None) -> "WorkerCgroup | None":
        """A new cgroup with these caps; ``cpus`` (a CPU quota, e.g. 1.0) is applied where the cpu
        controller is available, so a worker's threads cannot take more than its share of the host."""
        name = PREFIX + secrets.token_hex(6)
        period = 100_000
        try:
            if (ROOT / "cgroup.controllers").exists():  # v2 mounted at the root
                controllers = set((ROOT / "cgroup.subtree_control").read_text().split())
                if not {"pids", "memory"} <= controllers:
                    return None
                group = ROOT / name
                group.mkdir()
                _write(group / "pids.max", str(processes))
                _write(group / "memory.max", str(memory_bytes))
                _write(group / "memory.swap.max", "0")
                capped = cpus is not None and "cpu" in controllers
                if capped:
                    _write(group / "cpu.max", f"{int(cpus * period)} {period}")
                return cls([group], group, 2, capped)
            pids, memory, cpu = ROOT / "pids" / name, ROOT / "memory" / name, ROOT / "cpu" / name
            if not (ROOT / "pids").is_dir() or not (ROOT / "memory").is_dir():
                return None
            pids.mkdir()
            memory.mkdir()
            _write(pids / "pids.max", str(processes))
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            try:
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))  # no swap either
            except OSError:
                pass
            dirs = [pids, memory]
            capped = False
            if cpus is not None and (ROOT / "cpu" / "cpu.cfs_quota_us").exists():
                try:
                    cpu.mkdir()
                    _write(cpu / "cpu.cfs_period_us", str(period))
                    _write(cpu / "cpu.cfs_quota_us", str(int(cpus * period)))
                    dirs.append(cpu)
                    capped = True
                except OSError:
                    pass  # no quota here: the other caps still hold
            return cls(dirs, memory, 1, capped)
        except OSError:
            return None

    def attach(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the calling process) into the cgroup; call before exec in the child."""
        for group in self.dirs:
            _write(group / "cgroup.procs", str(pid or os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for group in self.dirs:
            try:
                found.update(int(p) for p in (group / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup until none is left (forks racing the kill too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for exceeding the memory cap."""
        if self.memory_dir is None:
            return False
        try:
            if self.version == 2:
                events = (self.memory_dir / "memory.events").read_text()
            else:
                events = (self.memory_dir / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip() not in ("", "0"):
                return True
        return False

    def memory_cap_hits(self) -> int | None:
        """How often usage here reached the memory cap (see ``MemoryCapCounter``); None where unknown."""
        if self.memory_dir is None:
            return None
        if self._cap_counter is None:
            self._cap_counter = MemoryCapCounter(self.memory_dir, self.version)
        return self._cap_counter.hits()

    def remove(self) -> None:
        self.kill_all()
        for group in self.dirs:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def remove_leftovers() -> None:
    """Remove empty cgroups left by a grader that crashed; busy ones may belong to a live grader."""
    for parent in (ROOT, ROOT / "pids", ROOT / "memory", ROOT / "cpu"):
        if not parent.is_dir():
            continue
        for group in parent.glob(PREFIX + "*"):
            try:
                group.rmdir()
            except OSError:
                pass


class MemoryCapCounter:
    """Counts how often a memory cgroup's usage reached its cap, for telling a call that crawled at
    the cap (out of memory) from one that looped (too slow).

    cgroup v2 keeps that count (``memory.events``, key ``max``). On v1 the kernel's ``failcnt``
    stays 0 on some kernels, so a high-water mark at the cap (``memory.max_usage_in_bytes``) counts
    as one hit, and the mark is reset where this process may write it so the next hit counts again.
    """

    def __init__(self, folder: Path, version: int) -> None:
        self.folder, self.version = folder, version
        self._v1_hits = 0

    def hits(self) -> int | None:
        if self.version == 2:
            return _events_max(self.folder / "memory.events")
        try:
            failed = sum(int((self.folder / name).read_text())
                         for name in ("memory.failcnt", "memory.memsw.failcnt") if (self.folder / name).exists())
            peak = int((self.folder / "memory.max_usage_in_bytes").read_text())
            cap = int((self.folder / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            return None
        if peak >= CAP_REACHED * cap:
            self._v1_hits += 1
            try:
                (self.folder / "memory.max_usage_in_bytes").write_text("0")
            except OSError:
                pass  # not ours to reset: the mark stays at the cap and counts once
        return failed + self._v1_hits


CAP_REACHED = 0.99  # a high-water mark this close to the cap means usage reached it


def _events_max(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "max" and value.strip().isdigit():
            return int(value)
    return None
