"""How far a speed verdict can be trusted: false fails, detection, and attacks, measured side by side.

For each variant of ex01's ``masked_mean`` this runs the real speed comparison (the one
``test_masked_mean_speed`` uses: student and reference in workers of their own, timed from the
grader, every repetition on inputs of its own and checked) ``--runs`` times, while a busy loop
keeps the other core(s) busy, and prints the distribution of the median time ratios and how often
each would fail at the course's speed factor and at a tight factor:

- ``reference``: the reference graded as if it were a submission (a fail is a false fail);
- ``slower_1.5x``: the reference doing half its calls twice, 1.5x the work (a fail is a detection);
- ``burners``: the reference plus threads and a daemon in its own session that spin while the
  grader times the other side (it must not look faster than ``reference``);
- ``cache``: a loop-based version that remembers results by content (it must never pass: its
  outputs are checked on every repetition).

    python bench/speed_integrity.py --runs 200 [--sandbox process|bwrap|docker] [--busy 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.catalog import find_course  # noqa: E402
from grader.grading import GradingRun  # noqa: E402
from grader.timing import compare_generated_speed  # noqa: E402
from grader.verdicts import CheckFailed, HostBusy  # noqa: E402

COURSE = find_course(ROOT)
REFERENCE = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
SLOWER = REFERENCE + '''

_reference_masked_mean = masked_mean
_calls = [0]


def masked_mean(x, mask, dim):
    _calls[0] += 1
    if _calls[0] % 2 == 0:  # every second call does all of its work twice: 1.5x the work per round
        _reference_masked_mean(x, mask, dim)
    return _reference_masked_mean(x, mask, dim)
'''
BURNERS = REFERENCE + '''
import os as _os
import threading as _threading


def _burn():
    while True:
        sum(i * i for i in range(20000))


for _ in range(4):
    _threading.Thread(target=_burn, daemon=True).start()
if _os.fork() == 0:
    try:
        _os.setsid()
        if _os.fork() == 0:
            _os.execv("/bin/sh", ["/bin/sh", "-c", "while :; do :; done"])
    finally:
        _os._exit(0)
'''
CACHE = REFERENCE + '''

def masked_mean(x, mask, dim):
    rows = []
    for b in range(x.shape[0]):
        m = mask[b].to(x.dtype)
        while m.dim() < x[b].dim():
            m = m.unsqueeze(-1)
        rows.append((x[b] * m).sum(dim - 1) / m.expand_as(x[b]).sum(dim - 1).clamp_min(1))
    return torch.stack(rows)


_slow = masked_mean
_cache = {}


def masked_mean(x, mask, dim):
    key = (x.shape, float(x.sum()), int(mask.sum()), dim)
    if key not in _cache:
        _cache[key] = _slow(x, mask, dim)
    return _cache[key].clone()
'''
VARIANTS = {"reference": REFERENCE, "slower_1.5x": SLOWER, "burners": BURNERS, "cache": CACHE}


def _spin() -> None:
    while True:
        pass


def measure(name: str, source: str, runs: int, sandbox: str, rounds: int | None = None,
            repeats: int | None = None, factor: float | None = None) -> dict[str, object]:
    spec = next(s for s in COURSE.exercises() if s.id == "ex01_tensors")
    b, t, h = spec.param("masked_mean_speed_shape")
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as folder:
        (Path(folder) / "ex01_tensors.py").write_text(source, encoding="utf-8")
        run = GradingRun(course=COURSE, modules_dir=Path(folder), sandbox_name=sandbox,
                         reference_dir=COURSE.solutions_dir, print_summary=False)
        try:
            student, reference = run.student(spec), run.reference_remote(spec)
            generator = torch.Generator().manual_seed(0)
            ratios: list[float] = []
            wall_ratios: list[float] = []
            rounds_used: list[int] = []
            wrong = busy = 0
            started = time.monotonic()
            for _ in range(runs):
                try:
                    result = compare_generated_speed(
                        student, reference, "masked_mean", [{"randn": [b, t, h]}, {"rand_bool": [b, t], "p": 0.7}, 1],
                        generator, rounds=rounds or spec.param("speed_rounds"),
                        repeats=repeats or spec.param("speed_repeats"), factor=factor)
                except CheckFailed:
                    wrong += 1
                    continue
                except HostBusy:
                    busy += 1
                    continue
                ratios.append(result.median_ratio)
                rounds_used.append(len(result.ratios))
                wall_ratios.append(statistics.median(result.wall_ratios))
            elapsed = time.monotonic() - started
        finally:
            run.close()
    return {"name": name, "ratios": ratios, "wall_ratios": wall_ratios, "rounds": rounds_used, "wrong": wrong, "busy": busy, "s": elapsed,
            "factor": spec.param("speed_factor")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sandbox", default="process")
    parser.add_argument("--busy", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="busy loops kept running meanwhile (default: every core but one)")
    parser.add_argument("--tight", type=float, default=1.25, help="a tight factor, to show the precision")
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=None, help="rounds per comparison (default: the course's)")
    parser.add_argument("--repeats", type=int, default=None, help="calls per round (default: the course's)")
    args = parser.parse_args()
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    try:
        print(f"{args.runs} runs per variant, sandbox {args.sandbox}, {args.busy} busy loop(s), "
              f"{os.cpu_count()} CPUs; ratio = median over rounds of student time / reference time")
        print(f"{'variant':<12} {'metric':<7} {'min':>6} {'median':>7} {'max':>6}  {'fail@course':>11} "
              f"{'fail@tight':>10} {'wrong':>5} {'busy':>4} {'s':>6} {'rounds':>6}")
        for name in args.only:
            r = measure(name, VARIANTS[name], args.runs, args.sandbox, args.rounds, args.repeats, args.tight)
            for metric, key in (("verdict", "ratios"), ("wall", "wall_ratios")):
                ratios = r[key]
                assert isinstance(ratios, list)
                counted = len(ratios)
                if ratios:
                    over_course = sum(x > r["factor"] for x in ratios)
                    over_tight = sum(x > args.tight for x in ratios)
                    lo, mid, hi = min(ratios), statistics.median(ratios), max(ratios)
                    print(f"{name:<12} {metric:<7} {lo:6.2f} {mid:7.2f} {hi:6.2f}  {over_course:>5}/{counted:<5} "
                          f"{over_tight:>4}/{counted:<5} {r['wrong']:>5} {r['busy']:>4} {r['s']:6.0f} "
                          f"{statistics.median(r['rounds']):6.0f}", flush=True)
                else:
                    print(f"{name:<12} {metric:<7} {'-':>6} {'-':>7} {'-':>6}  {'-':>11} {'-':>10} {r['wrong']:>5} "
                          f"{r['busy']:>4} {r['s']:6.0f}", flush=True)
        print(f"course factor {r['factor']:g}x, tight factor {args.tight:g}x (the comparison measures on near it: "
              "'rounds' is the median number of rounds a comparison took); 'verdict': the ratio the speed tests "
              "judge (CPU time of the process that ran the code, or its wall time where it waited: "
              "grader/timing.py work_s); 'wall': wall-clock time of the same rounds, side by side; 'wrong': outputs "
              "differed from the reference's on some repetition (no speed point); 'busy': the host was judged "
              "too busy to time")
    finally:
        for spinner in spinners:
            spinner.terminate()


if __name__ == "__main__":
    main()
