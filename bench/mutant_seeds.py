"""Does each mutant lose its points on every seed, or only on lucky ones?

The tests draw their inputs from a per-run secret seed, so a test that catches a mutant on one
seed may miss it on another (a random score vector that happens to lie all above the threshold,
say). ``tests/test_mutants.py`` grades each mutant under one seed a day; this sweep grades every
mutant under ``--seeds`` seeds, with the workers kept up across seeds, and lists each (mutant,
expected test) pair that was not caught, with the expected message, every time. A sweep that
finds nothing bounds the escape rate (10 seeds: a pair escaping 1 run in 5 is seen 9 times in 10),
it does not prove it is zero: read the random draws of a test too.

Usage: ``python bench/mutant_seeds.py [--seeds 10] [--exercise ex12_projects ...] [--mutant NAME ...]``.
Results are printed and written to ``bench/results/mutant-seeds.json``. Exit status 1 when a pair
escaped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import COURSE, Variant, load_variants, shared_reference, shown_text, write_variants  # noqa: E402
from test_mutants import _grouped  # noqa: E402

from grader.grading import GradingRun  # noqa: E402
from grader.pipeline import run_autotests  # noqa: E402
from grader.verdicts import Status  # noqa: E402


def sweep_group(group: list[Variant], seeds: list[str]) -> dict[tuple[str, str, str], list[bool]]:
    """(exercise, mutant, test) -> per seed, whether the test took the mutant's points with the
    expected message."""
    run = GradingRun(course=COURSE, modules_dir=write_variants(group), reference_dir=COURSE.solutions_dir,
                     print_summary=False, shared_reference=shared_reference())
    keyword = " or ".join(sorted({name for v in group for name in v.fails}))
    caught: dict[tuple[str, str, str], list[bool]] = {}
    try:
        for seed in seeds:
            run.seed_id = seed
            run.results.clear()
            run_autotests(run, keyword=keyword, exercises=[v.exercise for v in group])
            results = {(r.exercise, r.name): r for r in run.results}
            for variant in group:
                for name in variant.fails:
                    result = results.get((variant.exercise, name))
                    took = result is not None and result.status not in (Status.PASSED, Status.GRADER_ERROR) \
                        and result.score == 0 and variant.message.lower() in shown_text(result).lower()
                    caught.setdefault((variant.exercise, variant.name, name), []).append(took)
    finally:
        run.close()
    return caught


def escapes(caught: dict[tuple[str, str, str], list[bool]]) -> list[dict[str, object]]:
    """The pairs not caught on every seed, with how often they were."""
    return [{"exercise": e, "mutant": m, "test": t, "caught": sum(v), "seeds": len(v)}
            for (e, m, t), v in sorted(caught.items()) if not all(v)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="number of the first seed (another sweep, other seeds)")
    parser.add_argument("--exercise", nargs="*", default=None)
    parser.add_argument("--mutant", nargs="*", default=None, help="only these mutants (by name)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mutant-seeds.json")
    args = parser.parse_args()
    mutants = [m for m in load_variants("mutant") if (not args.exercise or m.exercise in args.exercise)
               and (not args.mutant or m.name in args.mutant)]
    seeds = [f"seed-sweep-{k}" for k in range(args.first, args.first + args.seeds)]
    started = time.perf_counter()
    caught: dict[tuple[str, str, str], list[bool]] = {}
    groups = _grouped(mutants)
    for number, group in enumerate(groups, 1):
        caught |= sweep_group(group, seeds)
        missed = sum(not all(v) for v in caught.values())
        print(f"group {number}/{len(groups)}: {len(caught)} pairs, {missed} escaped some seed, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    escaped = escapes(caught)
    for row in escaped:
        print(f"ESCAPED {row['exercise']}:{row['mutant']} in {row['test']}: "
              f"caught on {row['caught']}/{row['seeds']} seeds")
    args.out.write_text(json.dumps({
        "date": date.today().isoformat(), "seeds": args.seeds, "first_seed": args.first, "mutants": len(mutants),
        "pairs": len(caught), "wall_s": round(time.perf_counter() - started, 1), "escapes": escaped,
    }, indent=2) + "\n")
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
