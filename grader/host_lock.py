"""Gradings that share a host take turns only when one of them must be measured alone.

Every test runs holding the host lock *shared*, so any number of gradings run side by side. A
test that timed out or failed a speed check is regraded once *alone*: the regrade takes the lock
exclusively, which waits for the tests other gradings have in flight to end and keeps them from
starting new ones until it is done. A second lock file, the gate, gives the regrade precedence:
a test enters through the gate (shared, for an instant), and a regrade closes the gate before it
waits, so a steady stream of other tests cannot starve it.

The lock files are per user, in the system's temporary folder, unless ``GRADER_HOST_LOCK`` names
another path (the project's own tests give each run its own). Where ``fcntl`` is missing (Windows:
a student's own check) the lock does nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ENV = "GRADER_HOST_LOCK"
ALONE_WAIT_S = 600.0  # how long a regrade waits for others' tests in flight before it goes ahead anyway


def default_path() -> Path:
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(tempfile.gettempdir()) / f"torch-grader-{user}.host.lock"


class HostLock:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.gate_path = self.path.with_name(self.path.name + ".gate")

    def _open(self, path: Path) -> IO[bytes]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+b")  # noqa: SIM115 - closed by the context managers below

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the host while one test runs, alongside other gradings' tests."""
        if fcntl is None:
            yield
            return
        with self._open(self.gate_path) as gate, self._open(self.path) as main:
            # Waits while a regrade has the gate closed. Every wait is bounded: a process that holds
            # a lock and never lets go (a stopped one, say) delays gradings but cannot stop them.
            gated = _flock_within(gate, fcntl.LOCK_SH, ALONE_WAIT_S)
            try:
                held = _flock_within(main, fcntl.LOCK_SH, ALONE_WAIT_S)
            finally:
                if gated:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                if held:
                    fcntl.flock(main, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self, wait_s: float = ALONE_WAIT_S) -> Iterator[bool]:
        """Hold the host with no other grading's test running; yields whether that was achieved
        (False when others' tests in flight did not end within ``wait_s``: the regrade goes ahead)."""
        if fcntl is None:
            yield False
            return
        with self._open(self.gate_path) as gate, self._open(self.path) as main:
            gated = _flock_within(gate, fcntl.LOCK_EX, wait_s)
            try:
                alone = gated and _flock_within(main, fcntl.LOCK_EX, wait_s)
                try:
                    yield alone
                finally:
                    if alone:
                        fcntl.flock(main, fcntl.LOCK_UN)
            finally:
                if gated:
                    fcntl.flock(gate, fcntl.LOCK_UN)


def _flock_within(handle: IO[bytes], mode: int, wait_s: float) -> bool:
    end = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
