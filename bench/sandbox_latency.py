"""Benchmark the sandbox backends: start → first test latency and per-submission overhead.

For each backend, several runs, medians reported:

* **start → first result**: from creating the backend to the first reply of a student call
  (sandbox start, worker start, torch import, module import, one small call).
* **overhead per submission**: wall time of ``grade_submission`` (ingest, sandbox and worker
  start, collection, tests, teardown) minus the wall time of the same tests run against a worker
  that is already up: what a submission costs beyond its tests' own work.

Usage: ``python bench/sandbox_latency.py [--runs 5] [--backends process,bwrap,docker]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.catalog import find_course  # noqa: E402
from grader.grading import GradingRun  # noqa: E402
from grader.pipeline import grade_submission, run_autotests  # noqa: E402
from grader.remote import WorkerSession  # noqa: E402
from grader.sandbox import SandboxUnavailable, WorkerLaunch, get_sandbox  # noqa: E402

KEYWORD = "test_standardize_zero_mean_unit_variance or test_patchify_shape or test_masked_mean_shape"


def first_result_s(backend: str, modules: Path) -> float:
    start = time.perf_counter()
    sandbox = get_sandbox(backend)
    session = WorkerSession(sandbox, WorkerLaunch(modules))
    try:
        session.request({"op": "call", "exercise": "ex01_tensors", "name": "standardize",
                         "args": [torch.ones(4, 3)]}, 120)
        return time.perf_counter() - start
    finally:
        session.close()
        sandbox.close()


def warm_tests_s(backend: str, modules: Path) -> float:
    """The tests alone: their wall time against a worker that has already started."""
    course = find_course(ROOT)
    run = GradingRun(course=course, modules_dir=modules, sandbox_name=backend,
                     reference_dir=course.solutions_dir, print_summary=False)
    try:
        run.student(course.spec("ex01_tensors")).call("standardize", torch.ones(4, 3))
        started = time.perf_counter()
        run_autotests(run, keyword=KEYWORD, exercises=["ex01_tensors"])
        return time.perf_counter() - started
    finally:
        run.close()


def grading_s(backend: str, zip_path: Path) -> float:
    started = time.perf_counter()
    grade_submission(zip_path, find_course(ROOT), sandbox=backend, keyword=KEYWORD)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="process,bwrap,docker")
    args = parser.parse_args()
    course = find_course(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        modules = Path(tmp) / "exercises"
        modules.mkdir()
        reference = (course.solutions_dir / "ex01_tensors.py").read_bytes()
        (modules / "ex01_tensors.py").write_bytes(reference)
        zip_path = Path(tmp) / "submission.zip"
        with zipfile.ZipFile(zip_path, "w") as zf:
            zf.writestr("exercises/ex01_tensors.py", reference)
        print(f"torch {torch.__version__}, {args.runs} runs per backend, medians\n")
        print("| backend | start → first result (s) | grading wall time (s) | tests on a warm worker (s) "
              "| overhead per submission (s) |")
        print("|---|---|---|---|---|")
        for backend in args.backends.split(","):
            try:
                get_sandbox(backend).close()
            except SandboxUnavailable as exc:
                print(f"| {backend} | unavailable: {exc} | | |")
                continue
            firsts = [first_result_s(backend, modules) for _ in range(args.runs)]
            grades = [grading_s(backend, zip_path) for _ in range(args.runs)]
            warm = [warm_tests_s(backend, modules) for _ in range(args.runs)]
            overhead = statistics.median(grades) - statistics.median(warm)
            print(f"| {backend} | {statistics.median(firsts):.2f} | {statistics.median(grades):.2f} "
                  f"| {statistics.median(warm):.2f} | {overhead:.2f} |", flush=True)


if __name__ == "__main__":
    main()
