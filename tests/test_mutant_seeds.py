"""The seed sweep (bench/mutant_seeds.py) counts a pair as caught only when the test took the
mutant's points with the expected message, on every seed."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import pytest
from support import ROOT, Variant, load_variants

_spec = importlib.util.spec_from_file_location("mutant_seeds", ROOT / "bench" / "mutant_seeds.py")
mutant_seeds = importlib.util.module_from_spec(_spec)
sys.modules["mutant_seeds"] = mutant_seeds
_spec.loader.exec_module(mutant_seeds)


@pytest.mark.slow
def test_the_sweep_reports_what_escapes_and_only_that() -> None:
    mutants = {(m.exercise, m.name): m for m in load_variants("mutant")}
    caught_always = mutants[("ex01_tensors", "divide_by_length")]
    wrong_message = dataclasses.replace(mutants[("ex02_autograd", "saliency_no_abs")], message="words in no message")
    unchanged = Variant(exercise="ex12_projects", name="unchanged", description="the reference itself", replace=[],
                        fails=["test_detection_shapes_and_dtypes"], message="")
    caught = mutant_seeds.sweep_group([caught_always, wrong_message, unchanged], ["sweep-test-0", "sweep-test-1"])
    assert caught[("ex01_tensors", "divide_by_length", "test_masked_mean_values_and_empty_rows")] == [True, True]
    assert caught[("ex02_autograd", "saliency_no_abs", "test_input_saliency_shape")] == [False, False]
    assert caught[("ex12_projects", "unchanged", "test_detection_shapes_and_dtypes")] == [False, False]
    assert {(row["mutant"], row["caught"], row["seeds"]) for row in mutant_seeds.escapes(caught)} == {
        ("saliency_no_abs", 0, 2), ("unchanged", 0, 2)}
