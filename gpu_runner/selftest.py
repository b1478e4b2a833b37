"""Run every GPU path of the grader on this machine, in a few minutes: ``python -m gpu_runner.selftest``.

Meant for a GPU host with no Docker engine and no package registry (everything it needs is in the
working tree): finds the GPUs, starts workers that see exactly one of them (plain process and
bubblewrap, where installed), checks what the worker reports about the device, grades the reference
on a GPU, and runs a two-submission batch with ``--gpus``. Prints one line per check and a JSON
summary; exit 0 when every check that could run passed, 1 when one failed, 2 with no GPU.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def _check(results: list[dict[str, Any]], name: str, fn: Callable[[], Any]) -> None:
    start = time.monotonic()
    try:
        detail = fn()
        results.append({"check": name, "ok": True, "detail": detail, "s": round(time.monotonic() - start, 1)})
    except Exception as exc:  # noqa: BLE001 - reported, the next check runs
        results.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}",
                        "trace": traceback.format_exc()[-1500:], "s": round(time.monotonic() - start, 1)})
    last = results[-1]
    print(f"{'ok  ' if last['ok'] else 'FAIL'} {name} ({last['s']} s): {last['detail']}", flush=True)


def _worker_facts(backend: str, slot: str) -> dict[str, Any]:
    from grader.catalog import find_course
    from grader.remote import WorkerSession
    from grader.sandbox import Limits, WorkerLaunch, get_sandbox

    course = find_course(ROOT)
    sandbox = get_sandbox(backend, slot, course.probes_dir)
    session = WorkerSession(sandbox, WorkerLaunch(course.solutions_dir, Limits(), slot))
    try:
        session.start()
        facts = dict(session.facts)
        assert facts.get("cuda_available"), f"the {backend} worker sees no GPU: {facts}"
        assert len(facts.get("devices", [])) == 1, f"the worker should see exactly one GPU: {facts.get('devices')}"
        return {k: facts.get(k) for k in ("devices", "cuda", "driver", "torch")}
    finally:
        session.close()
        sandbox.close()


def _grade_on_gpu(backend: str, slot: str) -> str:
    from grader.catalog import find_course
    from grader.ingest import pack_directory
    from grader.pipeline import grade_submission

    course = find_course(ROOT)
    archive = pack_directory(ROOT / "solutions", Path(tempfile.mkdtemp()) / "reference.zip")
    report = grade_submission(archive, course, sandbox=backend, gpus=slot, keyword="shape or speed")
    assert report.complete and report.score == report.max_score, \
        [(t.name, t.status.value, t.message) for e in report.exercises for t in e.tests if t.score < t.max_score]
    assert report.environment.get("devices"), "the report names no device"
    return f"{report.score:g}/{report.max_score:g} on {report.environment.get('devices')}"


def _batch_on_gpus(backend: str, slots: list[str]) -> str:
    import subprocess

    work = Path(tempfile.mkdtemp(prefix="gpu-selftest-"))
    from grader.ingest import pack_directory

    for student in ("a", "b"):
        pack_directory(ROOT / "solutions", work / "in" / f"{student}.zip")
    done = subprocess.run([sys.executable, "-m", "grader", "batch", str(work / "in"), "--out", str(work / "out"),
                           "--gpus", ",".join(slots), "--sandbox", backend, "-k", "shape", "--course", str(ROOT)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return (work / "out" / "grades.csv").read_text().strip().replace("\n", " | ")


def main() -> int:
    from gpu_runner.devices import discover_gpus

    devices = discover_gpus()
    if not devices:
        print("no GPU found (nvidia-smi and torch see none): nothing to test here")
        return 2
    results: list[dict[str, Any]] = []
    print(f"GPUs: {[(d.slot, d.name) for d in devices]}", flush=True)
    slot = devices[0].slot
    backends = ["process"] + (["bwrap"] if shutil.which("bwrap") else [])
    for backend in backends:
        _check(results, f"{backend} worker sees exactly GPU {slot}", lambda b=backend: _worker_facts(b, slot))
    for backend in backends:
        _check(results, f"reference graded on GPU {slot} ({backend})", lambda b=backend: _grade_on_gpu(b, slot))
    _check(results, "batch with --gpus", lambda: _batch_on_gpus(backends[-1], [d.slot for d in devices]))
    print(json.dumps({"devices": [d.__dict__ for d in devices], "results": results}, indent=2, default=str))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
