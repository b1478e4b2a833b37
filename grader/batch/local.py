"""The local executor: N grader processes on this host, each grading one submission at a time.

Each process owns a slot: a GPU id where the batch has GPUs (so at most one job per GPU), else
nothing. Jobs go to idle processes one at a time over a pipe; a process that dies (the host's
OOM killer, a grader bug) costs only the submission it held, recorded as the grader's failure,
and a fresh process takes its slot.

Stopping: Ctrl-C reaches only this process (the graders ignore SIGINT); it sends SIGTERM to every
grader, which ends its run (the student's sandbox and its containers are removed on the way out),
and waits for them. If this process is killed outright, the graders get SIGTERM from the kernel
(``PR_SET_PDEATHSIG``), so nothing keeps running.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator

from grader.batch.job import Job, Settings

STOP_WAIT_S = 60.0  # how long graders get to remove their sandboxes after SIGTERM


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _on_term(signum: int, frame: Any) -> None:
    # KeyboardInterrupt is what pytest stops a session for (any other exception it would record as
    # a test's failure); the run unwinds and its ``finally`` closes the sandbox.
    raise KeyboardInterrupt


def _serve(conn: Connection, settings: Settings, slot: str | None) -> None:
    """A grader process: grade the jobs that arrive until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    _die_with_parent()
    from grader.batch.job import close_shared, grade_job

    try:
        while True:
            job = conn.recv()
            if job is None:
                break
            conn.send((job.folder, grade_job(job, settings, slot)))
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the batch ended or was stopped: whatever was in flight is not reported
    finally:
        close_shared()


@dataclass
class _Grader:
    process: Any
    conn: Connection
    slot: str | None
    job: Job | None = None
    started: float = 0.0


def run_local(jobs: list[Job], settings: Settings, workers: int, slots: list[str | None]) -> Iterator[tuple[Job, dict[str, Any], float]]:
    """Grade ``jobs`` on ``workers`` processes; yields (job, outcome, seconds) as each finishes."""
    context = multiprocessing.get_context("spawn")
    pending = deque(jobs)
    graders: list[_Grader] = []

    def start(slot: str | None) -> _Grader:
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, settings, slot), daemon=False,
                                  name=f"grader-batch-{slot or len(graders)}")
        process.start()
        child.close()
        return _Grader(process, parent, slot)

    try:
        for index in range(min(workers, max(1, len(jobs)))):
            graders.append(start(slots[index % len(slots)]))
        while pending or any(g.job is not None for g in graders):
            for index, grader in enumerate(graders):
                if grader.job is None and pending:
                    job = pending.popleft()
                    try:
                        grader.conn.send(job)
                    except OSError:  # it died while idle: a fresh one takes the slot and the job
                        grader.conn.close()
                        grader = graders[index] = start(grader.slot)
                        grader.conn.send(job)
                    grader.job, grader.started = job, time.monotonic()
            busy = [g for g in graders if g.job is not None]
            ready = wait([g.conn for g in busy] + [g.process.sentinel for g in busy], timeout=1.0)
            for index, grader in enumerate(graders):
                if grader.job is None:
                    continue
                if grader.conn in ready:
                    try:
                        _, outcome = grader.conn.recv()
                    except (EOFError, OSError):
                        outcome = None
                    if outcome is not None:
                        job, grader.job = grader.job, None
                        yield job, outcome, time.monotonic() - grader.started
                        continue
                if grader.process.sentinel in ready or not grader.process.is_alive():
                    job, grader.job = grader.job, None
                    code = grader.process.exitcode
                    grader.conn.close()
                    graders[index] = start(grader.slot)
                    yield job, {"error": f"the grader process ended while grading (exit code {code})"}, \
                        time.monotonic() - grader.started
    finally:
        _stop(graders)


def _stop(graders: list[_Grader]) -> None:
    for grader in graders:
        if grader.process.is_alive():
            if grader.job is None:
                try:
                    grader.conn.send(None)
                except OSError:
                    grader.process.terminate()
            else:
                grader.process.terminate()  # SIGTERM: the run in flight closes its sandbox
    deadline = time.monotonic() + STOP_WAIT_S
    for grader in graders:
        grader.process.join(max(0.0, deadline - time.monotonic()))
        if grader.process.is_alive():
            grader.process.kill()
            grader.process.join(5.0)
        grader.conn.close()
