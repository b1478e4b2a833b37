"""The autotests catch wrong answers: every broken variant of a reference loses points with a
message that names its symptom, and correct solutions written differently score full.

Variants are graded in groups that hold at most one variant per exercise: the worker keeps each
exercise in a process of its own, so one grading serves a variant of every exercise at once (a
variant can only disturb its own exercise). The test items stay one per variant.

Tiers: by default (CI, the README's test command) at most ``SAMPLE_PER_EXERCISE`` mutants of each
exercise run, a sample drawn afresh each UTC day (``GRADER_MUTANT_SEED`` fixes it), so that the
suite stays within its time as the course grows while every mutant keeps coming round;
``GRADER_MUTANTS=all`` runs every one (run it when an exercise or its tests change). Alternatives
always all run.
"""

from __future__ import annotations

import datetime
import functools
import os
import random
from itertools import zip_longest

import pytest
from support import COURSE, Variant, grade_folder_per_exercise, load_variants, shown_text, write_variants

from grader.report import TestResult
from grader.verdicts import Status


def _grouped(variants: list[Variant]) -> list[list[Variant]]:
    """Groups of variants with at most one per exercise, the larger exercises spread first."""
    by_exercise: dict[str, list[Variant]] = {}
    for variant in variants:
        by_exercise.setdefault(variant.exercise, []).append(variant)
    return [[v for v in row if v is not None] for row in zip_longest(*by_exercise.values())]


SAMPLE_PER_EXERCISE = 24


def _tier(variants: list[Variant]) -> list[Variant]:
    """All mutants with ``GRADER_MUTANTS=all``; otherwise a seeded sample of each exercise's."""
    if os.environ.get("GRADER_MUTANTS") == "all":
        return variants
    seed = os.environ.get("GRADER_MUTANT_SEED") or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    rng = random.Random(seed)
    by_exercise: dict[str, list[Variant]] = {}
    for variant in variants:
        by_exercise.setdefault(variant.exercise, []).append(variant)
    kept = set()
    for exercise, found in sorted(by_exercise.items()):
        chosen = found if len(found) <= SAMPLE_PER_EXERCISE else rng.sample(found, SAMPLE_PER_EXERCISE)
        kept |= {(v.exercise, v.name) for v in chosen}
    return [v for v in variants if (v.exercise, v.name) in kept]


ALL_MUTANTS = load_variants("mutant")
MUTANT_GROUPS = _grouped(_tier(ALL_MUTANTS))
ALTERNATIVE_GROUPS = _grouped(load_variants("alternative"))
MUTANTS = [(i, v) for i, group in enumerate(MUTANT_GROUPS) for v in group]
ALTERNATIVES = [(i, v) for i, group in enumerate(ALTERNATIVE_GROUPS) for v in group]


def _grade_group(group: list[Variant], keyword: str) -> dict[tuple[str, str], TestResult]:
    return grade_folder_per_exercise(write_variants(group), [v.exercise for v in group], keyword=keyword)


@functools.lru_cache(maxsize=4)
def _mutant_group(index: int) -> dict[tuple[str, str], TestResult]:
    group = MUTANT_GROUPS[index]
    return _grade_group(group, " or ".join(sorted({name for v in group for name in v.fails})))


@functools.lru_cache(maxsize=2)
def _alternative_group(index: int) -> dict[tuple[str, str], TestResult]:
    return _grade_group(ALTERNATIVE_GROUPS[index], "")


@pytest.mark.slow
@pytest.mark.parametrize("index,mutant", MUTANTS, ids=[f"{m.exercise}-{m.name}" for _, m in MUTANTS])
def test_mutant_loses_points_with_a_clear_message(index: int, mutant: Variant) -> None:
    results = _mutant_group(index)
    for name in mutant.fails:
        result = results[(mutant.exercise, name)]
        assert result.status not in (Status.PASSED, Status.GRADER_ERROR), f"{name} did not catch: {mutant.description}"
        assert result.score == 0
        text = shown_text(result)
        assert mutant.message.lower() in text.lower(), f"{name}: message lacks {mutant.message!r}: {text}"


@pytest.mark.slow
@pytest.mark.parametrize("index,variant", ALTERNATIVES, ids=[f"{v.exercise}-{v.name}" for _, v in ALTERNATIVES])
def test_correct_alternative_scores_full(index: int, variant: Variant) -> None:
    results = {name: r for (exercise, name), r in _alternative_group(index).items() if exercise == variant.exercise}
    failed = {n: (r.status.value, r.message.en if r.message else "") for n, r in results.items()
              if r.status != Status.PASSED}
    assert results and not failed, failed


def test_every_exercise_has_mutants_and_alternatives() -> None:
    exercises = {spec.id for spec in COURSE.exercises()}
    assert exercises <= {m.exercise for m in ALL_MUTANTS} and exercises <= {m.exercise for _, m in MUTANTS}
    assert exercises <= {a.exercise for _, a in ALTERNATIVES}


def test_the_sampled_tier_keeps_a_share_of_every_exercise() -> None:
    by_exercise: dict[str, int] = {}
    for _, mutant in MUTANTS:
        by_exercise[mutant.exercise] = by_exercise.get(mutant.exercise, 0) + 1
    for exercise in {m.exercise for m in ALL_MUTANTS}:
        total = sum(m.exercise == exercise for m in ALL_MUTANTS)
        assert by_exercise[exercise] == total if os.environ.get("GRADER_MUTANTS") == "all" else \
            by_exercise[exercise] == min(total, SAMPLE_PER_EXERCISE)


def test_mutant_names_are_unique_per_exercise() -> None:
    names = [(m.exercise, m.name) for m in ALL_MUTANTS]
    assert len(names) == len(set(names))


def test_groups_hold_one_variant_per_exercise() -> None:
    for group in MUTANT_GROUPS + ALTERNATIVE_GROUPS:
        assert len({v.exercise for v in group}) == len(group)
