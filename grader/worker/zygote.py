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

    def _relay(self, exercise: str, raw: bytes, request_id: Any) -> bool:
        """Forward one request to the child and its reply back; False when told to shut down."""
        self._sweep()  # strays of a child killed at a deadline, or daemons that left its group
        try:
            child = self.children.get(exercise) or self._fork(exercise)
        except OSError as exc:  # e.g. the process limit is used up
            self._error(request_id, "fork_failed", f"could not start a process: {exc}")
            return True
        _signal_group(child.pid, signal.SIGCONT)
        try:
            wire.write_all(child.to_child, raw)
        except OSError:
            pass  # the child is gone; reading its reply below reports how it ended
        while True:
            ready, _, _ = select.select([child.from_child, self.requests_fd], [], [])
            if child.from_child in ready:
                try:
                    reply, _ = wire.read_raw_frame(child.from_child)
                except wire.WireError:
                    code, sig = self._end(exercise)
                    self._error(request_id, "died", "the process ended", exit_code=code, signal=sig)
                    return True
                # Between its requests nothing of the student's runs: the child (every thread of it)
                # and its process group are stopped, other strays are killed, so the reference's
                # timing, which happens now, cannot be disturbed by work left running here.
                _signal_group(child.pid, signal.SIGSTOP)
                self._sweep()
                wire.write_all(self.replies_fd, reply)
                return True
            raw_control, control = wire.read_raw_frame(self.requests_fd)
            if control.get("op") in ("abort", "shutdown"):
                self._end(exercise)
                self._error(request_id, "aborted", "stopped at the grader's deadline")
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
            if not self._relay(exercise, raw, request.get("id")):
                break
        for exercise in list(self.children):
            self._end(exercise)


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
