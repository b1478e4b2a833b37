"""Verdicts under load: correct code loses no point on a busy host, and wrong code is still caught.

Grades, with the real ``grader run`` (one process per grading, as a class batch would), the full
reference and the correct alternatives of ``tests/mutants/*.toml`` (one alternative per exercise
per submission) while the host is loaded: ``--parallel`` gradings at once, plus ``--burners`` busy
loops (default: one per core). Then, under the same load, a submission with an endless loop and
one 10x slower than the reference (the reference's work done ten times in a speed-tested task).

For each grading it records points lost, tests regraded (and whether the regrade changed the
outcome), tests not scored because the host was busy, and the wall time; the summary says whether
any correct submission lost a point and whether the two wrong ones were caught.

    python bench/under_load.py --gradings 50 [--parallel 3] [--burners 2] [--exercises ex01_tensors ex02_autograd]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from grader.catalog import find_course  # noqa: E402
from support import load_variants  # noqa: E402

COURSE = find_course(ROOT)
ENDLESS = ("ex01_tensors", "def standardize(", "def standardize(x, dim=0, eps=1e-5):\n    while True:\n        pass\n\n\n"
           "def _replaced_standardize(")


def _spin() -> None:
    while True:
        pass


def reference_files(exercises: list[str]) -> dict[str, str]:
    return {e: (COURSE.solutions_dir / f"{e}.py").read_text(encoding="utf-8") for e in exercises}


def submissions(exercises: list[str], count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` correct submissions: the reference, then the alternatives grouped one per exercise, in turn."""
    alternatives: dict[str, list] = {}
    for variant in load_variants("alternative"):
        if variant.exercise in exercises:
            alternatives.setdefault(variant.exercise, []).append(variant)
    groups = [[v for v in row if v is not None] for row in zip_longest(*alternatives.values())]
    kinds: list[tuple[str, dict[str, str]]] = [("reference", reference_files(exercises))]
    for group in groups:
        files = reference_files(exercises)
        for variant in group:
            files[variant.exercise] = variant.apply(files[variant.exercise])
        kinds.append(("alternatives:" + ",".join(v.name for v in group), files))
    return [kinds[i % len(kinds)] for i in range(count)]


def wrong_submissions(exercises: list[str]) -> list[tuple[str, dict[str, str]]]:
    files = reference_files(exercises)
    endless = dict(files)
    exercise, old, new = ENDLESS
    endless[exercise] = files[exercise].replace(old, new, 1)
    slow = dict(files)
    slow["ex01_tensors"] = files["ex01_tensors"] + (
        "\n\n_reference_masked_mean = masked_mean\n\n\n"
        "def masked_mean(x, mask, dim):\n"
        "    for _ in range(9):\n"
        "        _reference_masked_mean(x, mask, dim)\n"
        "    return _reference_masked_mean(x, mask, dim)\n")
    return [("endless loop in standardize", endless), ("masked_mean 10x slower", slow)]


def grade(name: str, files: dict[str, str], folder: Path, index: int, keyword: str) -> dict:
    zip_path = folder / f"s{index}.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for exercise, source in files.items():
            zf.writestr(f"exercises/{exercise}.py", source)
    out = folder / f"out{index}"
    started = time.monotonic()
    command = [sys.executable, "-m", "grader", "run", str(zip_path), "--out", str(out), "--course", str(ROOT),
               "--sandbox", "process"] + (["-k", keyword] if keyword else [])
    proc = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    elapsed = time.monotonic() - started
    report_path = out / "report.json"
    if not report_path.exists():
        return {"name": name, "error": proc.stderr[-2000:], "s": elapsed}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    graded = [e for e in report["exercises"] if e["id"] in files]  # the rest were not handed in
    tests = [t for e in graded for t in e["tests"]]
    return {
        "name": name, "s": elapsed, "score": sum(e["score"] for e in graded),
        "max_score": sum(e["max_score"] for e in graded),
        "lost": [(t["name"], t["status"], (t["message"] or {}).get("en", "")[:200]) for t in tests
                 if t["score"] < t["max_score"]],
        "regraded": [(t["name"], t["regrade"]["first_status"], t["status"], t["regrade"]["alone"]) for t in tests
                     if t.get("regrade")],
        "not_run": [t["name"] for t in tests if t["status"] == "not_run"],
        "statuses": {t["name"]: t["status"] for t in tests},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradings", type=int, default=50, help="correct submissions to grade")
    parser.add_argument("--parallel", type=int, default=3, help="gradings at once")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="busy loops meanwhile")
    parser.add_argument("--exercises", nargs="*", default=[s.id for s in COURSE.exercises()])
    parser.add_argument("-k", dest="keyword", default="", help="a pytest -k selection within those exercises")
    parser.add_argument("--json", type=Path, help="write every grading's record here")
    args = parser.parse_args()
    if "ex01_tensors" not in args.exercises:
        parser.error("the wrong submissions are in ex01_tensors: include it in --exercises")
    burners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.burners)]
    for burner in burners:
        burner.start()
    records: list[dict] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, ThreadPoolExecutor(args.parallel) as pool:
            folder = Path(tmp)
            print(f"{args.gradings} correct gradings, {args.parallel} at once, {args.burners} busy loop(s), "
                  f"{os.cpu_count()} CPUs, exercises: {' '.join(args.exercises)}", flush=True)
            futures = [pool.submit(grade, name, files, folder, i, args.keyword)
                       for i, (name, files) in enumerate(submissions(args.exercises, args.gradings))]
            wrong = [pool.submit(grade, name, files, folder, 10_000 + i, args.keyword)
                     for i, (name, files) in enumerate(wrong_submissions(args.exercises))]
            for number, future in enumerate(futures, 1):
                record = future.result()
                records.append(record)
                lost = "ERROR" if "error" in record else f"{record['max_score'] - record['score']:g} lost"
                print(f"  [{number:>3}/{args.gradings}] {record['name'][:60]:<60} {lost:>8}  "
                      f"{len(record.get('regraded', []))} regraded  {record['s']:5.0f} s", flush=True)
            caught = [future.result() for future in wrong]
    finally:
        for burner in burners:
            burner.terminate()
    elapsed = time.monotonic() - started
    correct_lost = sum(len(r.get("lost", [])) for r in records)
    errors = sum("error" in r for r in records)
    regrades = [g for r in records for g in r.get("regraded", [])]
    changed = sum(first != final for _, first, final, _ in regrades)
    print(f"\ncorrect gradings: {len(records)}; tests that lost points: {correct_lost}; gradings that failed: {errors}; "
          f"tests regraded: {len(regrades)} (outcome changed by the regrade: {changed}; alone: "
          f"{sum(alone for *_, alone in regrades)}); tests not scored (host busy): "
          f"{sum(len(r.get('not_run', [])) for r in records)}; median grading {statistics.median(r['s'] for r in records):.0f} s; "
          f"all {elapsed:.0f} s")
    for record in records:
        for lost in record.get("lost", []):
            print("  LOST", record["name"], lost)
    endless, slow = caught
    endless_status = endless.get("statuses", {}).get("test_standardize_zero_mean_unit_variance")
    slow_status = slow.get("statuses", {}).get("test_masked_mean_speed")
    print(f"endless loop: test_standardize_zero_mean_unit_variance -> {endless_status}")
    print(f"10x slower masked_mean: test_masked_mean_speed -> {slow_status}")
    if args.json:
        args.json.write_text(json.dumps({"correct": records, "wrong": caught}, indent=1), encoding="utf-8")
    ok = correct_lost == 0 and errors == 0 and endless_status == "timed_out" and slow_status == "failed"
    print("RESULT:", "0 points lost, both wrong submissions caught" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
