"""The zygote: imports torch once, then forks one child per exercise to run student code.

The zygote itself never runs student code. Each exercise's module is imported in a child of
its own, so one exercise that patches torch, leaks threads or crashes cannot touch another,
and a crashed child costs a fork (milliseconds) instead of a new sandbox (seconds: a container
start re-imports torch). The zygote relays frames between the grader and the child without
decoding their tensors, and on the grader's ``abort`` (a deadline passed) kills the child.
Between requests a child is stopped (SIGSTOP, every thread of it) and its strays are killed, so
nothing of the student's can use the CPU while the grader times the reference.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import wire
from .arena import arena, generate_reply


@dataclass
class Child:
    pid: int
    to_child: int
    from_child: int


class Zygote:
    def __init__(self, modules: str, requests_fd: int, replies_fd: int, sweep_all: bool = False) -> None:
        self.modules = modules
        self.requests_fd = requests_fd
        self.replies_fd = replies_fd
        self.children: dict[str, Child] = {}
        self.sweep_all = sweep_all  # the sandbox has its own PID namespace: every stray there is ours
        self.cgroup_procs = _own_cgroup_procs()  # a cgroup made for this worker: every process in it is ours
        arena()  # made before any fork: every child shares its pages (inputs for timed requests)
        _set_dumpable(False)  # no process of the same user (a child included) may ptrace or read our memory

    def _sweep(self) -> None:
        """Kill processes the student left behind (forks, daemons); keep the zygote and its children.

        In a PID namespace of its own (bwrap, Docker) every process but init, the zygote and its
        children is a stray. Elsewhere only the children's process groups are searched. A child
        whose own forks were strays is ended too: it would never reap them, and zombies count
        against the sandbox's process limit.
        """
        keep = {1, os.getpid(), os.getppid()}
        owners = {c.pid: exercise for exercise, c in self.children.items()}
        tainted: set[str] = set()
        in_cgroup = _read_pids(self.cgroup_procs) if self.cgroup_procs else set()
        for entry in os.listdir("/proc"):
            pid = int(entry) if entry.isdigit() else 0
            if not pid or pid in keep or pid in owners:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            parent, group = int(fields[1]), int(fields[2])
            if not (self.sweep_all or group in owners or pid in in_cgroup):
                continue  # daemons that left the group (setsid) are found through the cgroup
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            for owner in (parent, group):
                if owner in owners:
                    tainted.add(owners[owner])
        for exercise in tainted:
            self._end(exercise)

    # -- children --------------------------------------------------------------------------
    def _fork(self, exercise: str) -> Child:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        for attempt in range(20):  # killed strays may take a moment to be reaped
            try:
                pid = os.fork()
                break
            except BlockingIOError:
                if attempt == 19:
                    for fd in (to_r, to_w, from_r, from_w):
                        os.close(fd)
                    raise
                time.sleep(0.1)
        if pid == 0:  # the child: serve this exercise only
            try:
                _set_dumpable(True)  # the child is the student's: as any ordinary process
                os.setpgid(0, 0)
                keep = {0, 1, 2, to_r, from_w}
                for fd in [self.requests_fd, self.replies_fd, to_w, from_r] + [
                        f for c in self.children.values() for f in (c.to_child, c.from_child)]:
                    if fd not in keep:
                        os.close(fd)
                from .__main__ import serve

                serve(self.modules, to_r, from_w, hello=False)
            finally:
                os._exit(0)
        os.close(to_r)
        os.close(from_w)
        child = Child(pid, to_w, from_r)
        self.children[exercise] = child
        return child

    def _end(self, exercise: str) -> tuple[int | None, int | None]:
        """Kill and reap a child; return its (exit code, signal)."""
        child = self.children.pop(exercise)
        for fd in (child.to_child, child.from_child):
            os.close(fd)
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status = os.waitpid(child.pid, 0)
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        return os.WEXITSTATUS(status), None

    # -- relaying --------------------------------------------------------------------------
    def _reply(self, message: dict[str, Any]) -> None:
        wire.write_all(self.replies_fd, wire.encode_frame(message))

    def _error(self, request_id: Any, kind: str, message: str, **extra: Any) -> None:
        self._reply({"id": request_id, "ok": False,
                     "error": {"type": kind, "kind": kind, "phase": "call", "message": message, "traceback": "",
                               **extra}})

    def _relay(self, exercise: str, raw: bytes, request_id: Any, cpu_limit_s: float | None = None) -> bool:
        """Forward one request to the child and its reply back; False when told to shut down.

        The zygote measures what the request cost the child: wall time from waking it to its reply
        and the CPU time of the child process (every thread of it), and stamps both onto the reply
        as ``cost``; whatever the child said about itself is replaced. With ``cpu_limit_s`` the child
        is ended once its CPU time for this request passes the limit (work, not waiting for a CPU on
        a busy host, is what that limit counts).
        """
        self._sweep()  # strays of a child killed at a deadline, or daemons that left its group
        try:
            child = self.children.get(exercise) or self._fork(exercise)
        except OSError as exc:  # e.g. the process limit is used up
            self._error(request_id, "fork_failed", f"could not start a process: {exc}")
            return True
        clock = CpuClock(child.pid)
        delay_start = run_queue_delay(child.pid)
        _signal_group(child.pid, signal.SIGCONT)
        cpu_start, wall_start = clock.read(), time.perf_counter()
        try:
            wire.write_all(child.to_child, raw)
        except OSError:
            pass  # the child is gone; reading its reply below reports how it ended
        while True:
            ready, _, _ = select.select([child.from_child, self.requests_fd], [], [],
                                        None if cpu_limit_s is None else CPU_POLL_S)
            if not ready:
                used = _used(clock, cpu_start)
                if used is not None and used > cpu_limit_s:  # type: ignore[operator]
                    wall = time.perf_counter() - wall_start
                    waited = _delta(run_queue_delay(child.pid), delay_start)
                    peak = peak_rss_bytes(child.pid)
                    self._end(exercise)
                    self._error(request_id, "cpu_limit", f"used {used:.1f} s of CPU time (the limit was "
                                f"{cpu_limit_s:.1f} s)", cpu_s=used, wall_s=wall, waited_s=waited,
                                cpu_limit_s=cpu_limit_s, peak_rss_bytes=peak)
                    return True
                continue
            if child.from_child in ready:
                try:
                    reply, _ = wire.read_raw_frame(child.from_child)
                except wire.WireError:
                    cost = {"cpu_s": _used(clock, cpu_start), "wall_s": time.perf_counter() - wall_start}
                    code, sig = self._end(exercise)
                    self._error(request_id, "died", "the process ended", exit_code=code, signal=sig, **cost)
                    return True
                cost = {"cpu_s": _used(clock, cpu_start), "wall_s": time.perf_counter() - wall_start,
                        "by": "zygote"}
                # Between its requests nothing of the student's runs: the child (every thread of it)
                # and its process group are stopped, other strays are killed, so the reference's
                # timing, which happens now, cannot be disturbed by work left running here.
                _signal_group(child.pid, signal.SIGSTOP)
                self._sweep()
                try:
                    reply = wire.with_fields(reply, cost=cost)
                except (wire.WireError, ValueError):
                    self._end(exercise)
                    self._error(request_id, "protocol", "the reply could not be read")
                    return True
                wire.write_all(self.replies_fd, reply)
                return True
            _, control = wire.read_raw_frame(self.requests_fd)
            if control.get("op") in ("abort", "shutdown"):
                cost = {"cpu_s": _used(clock, cpu_start), "wall_s": time.perf_counter() - wall_start,
                        "waited_s": _delta(run_queue_delay(child.pid), delay_start),
                        "peak_rss_bytes": peak_rss_bytes(child.pid)}
                self._end(exercise)
                self._error(request_id, "aborted", "stopped at the grader's deadline", **cost)
                if control.get("op") == "shutdown":
                    return False
                self._reply({"id": control.get("id"), "ok": True, "value": None})
                return True
            # The grader sends one request at a time; anything else is a protocol error.
            self._error(control.get("id"), "protocol", "a request arrived while another was running")

    def serve(self, hello: dict[str, Any]) -> None:
        self._reply(hello)
        while True:
            try:
                raw, request = wire.read_raw_frame(self.requests_fd)
            except wire.WireError:
                break
            op = request.get("op")
            if op == "shutdown":
                break
            if op == "abort":  # nothing running: the deadline and the reply crossed
                self._reply({"id": request.get("id"), "ok": True, "value": None})
                continue
            if op == "generate":  # inputs for a timed request, made here while every child is stopped
                self._reply({**generate_reply(wire.decode_raw_frame(raw)), "id": request.get("id")})
                continue
            exercise = "" if op == "facts" else str(request.get("exercise", ""))
            limit = request.get("cpu_limit_s")
            limit = float(limit) if isinstance(limit, (int, float)) and limit > 0 else None
            if not self._relay(exercise, raw, request.get("id"), limit):
                break
        for exercise in list(self.children):
            self._end(exercise)


CPU_POLL_S = 0.05  # how often a running request's CPU time is compared with its limit


class CpuClock:
    """The CPU time of another process (all its threads, live and ended), in seconds.

    Read through the kernel's per-process CPU clock (``clock_getcpuclockid``: on Linux the clock id
    is ``(~pid << 3) | CPUCLOCK_SCHED``), which has nanosecond resolution, unlike
    ``/proc/<pid>/stat``'s ticks. Processes the child forks are not counted; they are strays,
    killed after the request. Where the clock cannot be read (not Linux) every reading is None.
    """

    def __init__(self, pid: int) -> None:
        self.clock_id = ((~pid) << 3) | 2
        self.last: float | None = None
        self.supported = sys.platform.startswith("linux")

    def read(self) -> float | None:
        if self.supported:
            try:
                self.last = time.clock_gettime(self.clock_id)
            except OSError:  # the process has ended: its last reading stands
                pass
        return self.last


def run_queue_delay(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a CPU (``schedstat``).

    Tells a call starved of CPU from one that sleeps or blocks (no CPU, no wait). None where the
    kernel does not keep the figure.
    """
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_bytes(pid: int) -> int | None:
    """The most resident memory ``pid`` has held (``VmHWM``), or None where the kernel does not say.

    A call stopped at its deadline while holding nearly all the memory cap was short of memory,
    not of time: near the cap the kernel evicts and re-reads pages and the work crawls.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return None


def _delta(now: float | None, start: float | None) -> float | None:
    return None if now is None or start is None else max(0.0, now - start)


def _used(clock: CpuClock, start: float | None) -> float | None:
    now = clock.read()
    return None if now is None or start is None else max(0.0, now - start)


def _set_dumpable(on: bool) -> None:
    """``prctl(PR_SET_DUMPABLE)``: off, the zygote's memory and what it measures are out of reach of
    its children even where the host lets processes of one user ptrace each other."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 1 if on else 0, 0, 0, 0)  # 4: PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the child's process group (the child itself when it has not made one yet)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PREFIX = "torch-grader-"  # the backends' per-worker cgroups (grader/sandbox/cgroup.py)


def _own_cgroup_procs() -> str | None:
    """``cgroup.procs`` of the cgroup the backend made for this worker, if it made one."""
    try:
        with open("/proc/self/cgroup", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if CGROUP_PREFIX not in path:
            continue
        base = CGROUP_ROOT if controllers == "" else f"{CGROUP_ROOT}/pids" if "pids" in controllers.split(",") else None
        if base is not None and os.path.exists(f"{base}{path}/cgroup.procs"):
            return f"{base}{path}/cgroup.procs"
    return None


def _read_pids(path: str) -> set[int]:
    try:
        with open(path, encoding="ascii") as handle:
            return {int(p) for p in handle.read().split()}
    except (OSError, ValueError):
        return set()
