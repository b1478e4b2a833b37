"""The autotests catch wrong answers: every broken variant of a reference loses points with a
message that names its symptom, and correct solutions written differently score full."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import COURSE, Variant, grade_folder, load_variants

from grader.verdicts import Status

MUTANTS = load_variants("mutant")
ALTERNATIVES = load_variants("alternative")


def _write_variant(variant: Variant, folder: Path) -> Path:
    source = (COURSE.solutions_dir / f"{variant.exercise}.py").read_text(encoding="utf-8")
    (folder / f"{variant.exercise}.py").write_text(variant.apply(source), encoding="utf-8")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m.exercise}-{m.name}" for m in MUTANTS])
def test_mutant_loses_points_with_a_clear_message(mutant: Variant, tmp_path: Path) -> None:
    results = grade_folder(_write_variant(mutant, tmp_path), [mutant.exercise], keyword=" or ".join(mutant.fails))
    for name in mutant.fails:
        result = results[name]
        assert result.status not in (Status.PASSED, Status.GRADER_ERROR), f"{name} did not catch: {mutant.description}"
        assert result.score == 0
        text = " ".join(m.en for m in (result.message, result.detail) if m is not None)  # what an instructor sees
        assert mutant.message.lower() in text.lower(), f"{name}: message lacks {mutant.message!r}: {text}"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ALTERNATIVES, ids=[f"{v.exercise}-{v.name}" for v in ALTERNATIVES])
def test_correct_alternative_scores_full(variant: Variant, tmp_path: Path) -> None:
    results = grade_folder(_write_variant(variant, tmp_path), [variant.exercise])
    failed = {n: (r.status.value, r.message.en if r.message else "") for n, r in results.items()
              if r.status != Status.PASSED}
    assert results and not failed, failed


def test_every_exercise_has_mutants_and_alternatives() -> None:
    exercises = {spec.id for spec in COURSE.exercises()}
    assert exercises <= {m.exercise for m in MUTANTS}
    assert exercises <= {a.exercise for a in ALTERNATIVES}
