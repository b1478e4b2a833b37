"""What grading a class costs: per-submission overhead against the tests' own floor, and the
throughput of ``grader batch`` against one ``grader run`` after another.

1. **Overhead** (``--rounds`` pairs, interleaved): the *floor* is the full course's tests run
   against the reference solutions with both workers already up and every module imported, in
   one process (only the tests' own work: calls, probes, comparisons); the *pipeline* is one
   submission as a batch grades it (intake, a fresh sandbox and worker, the tests, the report),
   with the batch's shared reference worker. Reported: the median of the per-pair ratios.
2. **Throughput** on a class of 50 (correct, alternative, mutated, buggy, hostile, broken
   archives): sequential ``grader run`` (a fresh command per submission, as a grader without
   ``batch`` would) on a stratified sample, against ``grader batch --jobs 2`` on all 50, with the
   local executor and with Ray (same seed secret): submissions per hour, and whether the two
   executors gave identical grades.

Usage: ``python bench/batch_cost.py [--rounds 5] [--sample 10] [--sandbox auto] [--skip-ray]``.
Results are printed and written to ``bench/results/batch-cost.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from grader.catalog import find_course  # noqa: E402
from grader.grading import GradingRun  # noqa: E402
from grader.ingest import pack_directory  # noqa: E402
from grader.pipeline import grade_submission, run_autotests  # noqa: E402
from grader.remote import WorkerSession  # noqa: E402
from grader.sandbox import WorkerLaunch, resolve_auto  # noqa: E402
from grader.sandbox.process import ProcessSandbox  # noqa: E402

SECRET = "batch-cost-bench"
HOSTILE = {
    "exit_at_import": ("ex01_tensors", "import os\nos._exit(3)\n"),
    "flood_at_import": ("ex02_autograd", "while True:\n    print('flood ' * 1000)\n"),
    "endless_forward": ("ex03_modules", None),  # the MLP's forward never returns
    "memory_hog": ("ex04_data", "HOARD = [bytearray(64 * 1024 * 1024) for _ in range(200)]\n"),
}


def _solutions(exercises: set[str] | None = None) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ROOT / "solutions").glob("ex*.py"))
            if exercises is None or p.stem in exercises}


def shared_exercises(tree: Path) -> set[str]:
    """The exercises this checkout and ``tree`` both grade: a class made of these is the same work for
    both (an older tool ignores files of exercises it does not know, which would flatter it)."""
    return {p.stem for p in (ROOT / "solutions").glob("ex*.py")} & {p.stem for p in (tree / "solutions").glob("ex*.py")}


def _zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"exercises/{name}", text)


def build_class(folder: Path, exercises: set[str] | None = None) -> dict[str, str]:
    """50 submissions in ``folder`` (files of ``exercises`` only, when given); returns student -> kind."""
    from support import load_variants

    folder.mkdir(parents=True)
    kinds: dict[str, str] = {}
    base = _solutions(exercises)
    example = {Path(n).name: zipfile.ZipFile(ROOT / "examples" / "submission.zip").read(n).decode()
               for n in zipfile.ZipFile(ROOT / "examples" / "submission.zip").namelist()
               if n.endswith(".py") and (exercises is None or Path(n).stem in exercises)}

    def add(kind: str, files: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        student = f"s{len(kinds):02d}"
        kinds[student] = kind
        if raw is not None:
            (folder / f"{student}.zip").write_bytes(raw)
        else:
            _zip(folder / f"{student}.zip", {n: t + f"\n# {student}\n" for n, t in (files or {}).items()})

    for _ in range(22):
        add("correct", base)
    alternatives, mutants = ([v for v in load_variants(kind) if f"{v.exercise}.py" in base]
                             for kind in ("alternative", "mutant"))
    for variant in alternatives[:: max(1, len(alternatives) // 4)][:4]:
        add("alternative", {**base, f"{variant.exercise}.py": variant.apply(base[f"{variant.exercise}.py"])})
    for variant in mutants[:: max(1, len(mutants) // 10)][:10]:
        add("mutant", {**base, f"{variant.exercise}.py": variant.apply(base[f"{variant.exercise}.py"])})
    for _ in range(5):
        add("buggy example", example)
    for name, (exercise, code) in HOSTILE.items():
        source = base[f"{exercise}.py"]
        if code is None:
            source = source.replace("        x = x.flatten(1)", "        while x is not None:\n            pass\n"
                                    "        x = x.flatten(1)", 1)
        else:
            source = code + source
        add(f"hostile: {name}", {**base, f"{exercise}.py": source})
    broken = [b"not a zip at all", b"PK\x05\x06" + b"\0" * 18]
    for raw in broken:
        add("broken archive", raw=raw)
    traversal, readme_only, truncated = (tempfile.mktemp(suffix=".zip") for _ in range(3))
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../../etc/ex01_tensors.py", base["ex01_tensors.py"])
    with zipfile.ZipFile(readme_only, "w") as archive:
        archive.writestr("README.txt", "forgot the files")
    _zip(Path(truncated), base)
    add("broken archive", raw=Path(traversal).read_bytes())
    add("broken archive", raw=Path(readme_only).read_bytes())
    add("broken archive", raw=Path(truncated).read_bytes()[: Path(truncated).stat().st_size // 2])
    assert len(kinds) == 50, len(kinds)
    return kinds


def overhead(backend: str, rounds: int) -> dict[str, object]:
    course = find_course(ROOT)
    reference = WorkerSession(ProcessSandbox(course.probes_dir), WorkerLaunch(course.solutions_dir))
    archive = pack_directory(ROOT / "solutions", Path(tempfile.mkdtemp()) / "reference.zip")
    warm = GradingRun(course=course, modules_dir=(ROOT / "solutions").resolve(), sandbox_name=backend,
                      reference_dir=course.solutions_dir, shared_reference=reference, print_summary=False)
    run_autotests(warm)  # starts both workers and imports every module: what the floor leaves out
    grade_submission(archive, course, sandbox=backend, shared_reference=reference)
    floors, pipelines = [], []
    for _ in range(rounds):
        warm.results.clear()
        start = time.perf_counter()
        run_autotests(warm)
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = grade_submission(archive, course, sandbox=backend, shared_reference=reference)
        pipelines.append(time.perf_counter() - start)
        assert report.score == report.max_score, "the reference must score full"
    warm.close()
    reference.close()
    ratios = [p / f for p, f in zip(pipelines, floors)]
    return {"floor_s": [round(x, 2) for x in floors], "pipeline_s": [round(x, 2) for x in pipelines],
            "median_floor_s": round(statistics.median(floors), 2),
            "median_pipeline_s": round(statistics.median(pipelines), 2),
            "median_ratio": round(statistics.median(ratios), 3)}


def sequential(folder: Path, students: list[str], backend: str, out: Path, tree: Path = ROOT) -> dict[str, object]:
    """``grader run`` of ``tree`` (this checkout, or an older one: the tool before the batch work),
    one submission after another."""
    import os

    times = []
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for student in students:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "grader", "run", str(folder / f"{student}.zip"), "--out",
                        str(out / student), "--sandbox", backend, "--course", str(tree)],
                       capture_output=True, timeout=3600, env=env, cwd=tree)
        times.append(time.perf_counter() - start)
    return {"submissions": len(students), "wall_s": round(sum(times), 1),
            "per_hour": round(3600 * len(times) / sum(times), 1), "median_s": round(statistics.median(times), 1)}


def batch(folder: Path, out: Path, backend: str, executor: str) -> dict[str, object]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out), "--jobs", "2",
                           "--sandbox", backend, "--executor", executor, "--seed-id", SECRET, "--course", str(ROOT)],
                          capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"batch ({executor}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"submissions": 50, "wall_s": round(wall, 1), "per_hour": round(3600 * 50 / wall, 1)}


def grades(out: Path) -> dict[str, tuple[str, str]]:
    return {r["student"]: (r["status"], r["score"]) for r in csv.DictReader((out / "grades.csv").open())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample", type=int, default=10, help="submissions graded by sequential `grader run`")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--baseline-tree", type=Path, help="also time sequential `grader run` of this checkout "
                        "(e.g. a `git worktree` of the commit before the batch work)")
    args = parser.parse_args()
    backend = resolve_auto() if args.sandbox == "auto" else args.sandbox
    work = Path(tempfile.mkdtemp(prefix="batch-cost-"))
    exercises = shared_exercises(args.baseline_tree.resolve()) if args.baseline_tree else None
    kinds = build_class(work / "class", exercises)
    results: dict[str, object] = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, "
                                  f"{__import__('os').cpu_count()} cores", "sandbox": backend,
                                  "class": {k: sum(1 for v in kinds.values() if v == k) for k in sorted(set(kinds.values()))},
                                  "exercises": sorted(exercises) if exercises else "all"}
    results["overhead"] = overhead(backend, args.rounds)
    print(json.dumps(results["overhead"]), flush=True)
    sample = sorted(kinds)[:: max(1, 50 // args.sample)][: args.sample]
    results["sequential_grader_run"] = {**sequential(work / "class", sample, backend, work / "seq"), "sample": sample}
    print(json.dumps(results["sequential_grader_run"]), flush=True)
    if args.baseline_tree:
        results["sequential_grader_run_baseline_tree"] = {
            **sequential(work / "class", sample, backend, work / "seq-base", args.baseline_tree.resolve()),
            "tree": subprocess.run(["git", "-C", str(args.baseline_tree), "rev-parse", "--short", "HEAD"],
                                   capture_output=True, text=True).stdout.strip()}
        print(json.dumps(results["sequential_grader_run_baseline_tree"]), flush=True)
    results["batch_local"] = batch(work / "class", work / "local", backend, "local")
    print(json.dumps(results["batch_local"]), flush=True)
    results["speedup_local"] = round(results["batch_local"]["per_hour"] /  # type: ignore[index]
                                     results["sequential_grader_run"]["per_hour"], 2)  # type: ignore[index]
    if args.baseline_tree:
        results["speedup_local_vs_baseline_tree"] = round(
            results["batch_local"]["per_hour"] / results["sequential_grader_run_baseline_tree"]["per_hour"], 2)  # type: ignore[index]
    if not args.skip_ray:
        results["batch_ray"] = batch(work / "class", work / "ray", backend, "ray")
        local, ray = grades(work / "local"), grades(work / "ray")
        results["ray_grades_identical"] = local == ray
        results["ray_grade_differences"] = {s: [local[s], ray.get(s)] for s in local if local[s] != ray.get(s)}
    local = grades(work / "local")
    results["grades_by_kind"] = {kind: sorted({local[s][1] for s in kinds if kinds[s] == kind}) for kind in set(kinds.values())}
    out = ROOT / "bench" / "results" / "batch-cost.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
