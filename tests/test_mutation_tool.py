"""The mutation tool (bench/mutation_run.py): every operator makes mutants, ids are stable, the
parts of a reference that are not behaviour (docstrings, annotations, error messages, the stub's
NotImplementedError) are left alone, and a small seeded run grades end to end."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from support import ROOT

_spec = importlib.util.spec_from_file_location("mutation_run", ROOT / "bench" / "mutation_run.py")
mutation_run = importlib.util.module_from_spec(_spec)
sys.modules["mutation_run"] = mutation_run  # dataclasses look their module up by name
_spec.loader.exec_module(mutation_run)

SAMPLE = '''"""Module docstring: 1 + 1 == 2."""

from typing import Literal

import torch


def scaled(x: torch.Tensor, k: Literal[3] = 2, eps: float = 1e-5) -> Literal[4]:
    """Docstring with an expression: x * 2 < 3."""
    if k < 0 or not x.is_floating_point():
        raise ValueError(f"k must be >= 0, got {k + 1}")
    y = (x - x.mean(dim=1, keepdim=True)) / (x.std() + eps)
    y = y.clamp_min(0).detach()
    total = y.sum(0) @ x.T
    return total ** 2 // k


def stub(x: torch.Tensor) -> torch.Tensor:
    """Left for the student."""
    raise NotImplementedError("write me")
'''


def _mutants(source: str = SAMPLE) -> list:
    return mutation_run.generate_mutants(source, "ex00_sample")[0]


@pytest.mark.parametrize("operator, description", [
    ("binop", "-→+"), ("binop", "/→*"), ("binop", "+→-"), ("binop", "@→*"), ("binop", "**→*"),
    ("binop", "//→/"), ("compare", "<→<="), ("compare", "<→>="), ("boolop", "or→and"), ("not", "drop not"),
    ("constant", "0→1"), ("constant", "2→3"), ("constant", "1e-05→2e-05"),
    ("keyword", "keepdim=True→False"), ("keyword", "dim=1→0"), ("keyword", "dim=1→2"),
    ("drop_call", "drop .clamp_min()"), ("drop_call", "drop .detach()"), ("swap_call", ".sum→.mean"),
    ("swap_call", ".mean→.sum"), ("delete", "stmt→pass"), ("return", "return→return None"),
])
def test_each_operator_makes_mutants(operator: str, description: str) -> None:
    """Every operator class of the exercise bar rewrites the sample at least once."""
    made = {(m.operator, m.description) for m in _mutants()}
    assert (operator, description) in made, sorted(made)


def test_a_mutant_changes_only_its_site() -> None:
    """`/` → `*` on the standardising line: the module is the reference with that one operator swapped."""
    mutant = next(m for m in _mutants() if m.description == "/→*")
    assert mutant.line == 12
    assert mutant.original == "y = (x - x.mean(dim=1, keepdim=True)) / (x.std() + eps)"
    assert mutant.mutated == "y = (x - x.mean(dim=1, keepdim=True)) * (x.std() + eps)"
    expected = ast.parse(SAMPLE.replace("keepdim=True)) / (x", "keepdim=True)) * (x"))
    assert ast.dump(ast.parse(mutant.source)) == ast.dump(expected)


def test_ids_are_stable_and_unique() -> None:
    """The same reference gives the same ids in the same order; no two mutants share one."""
    first, second = [m.id for m in _mutants()], [m.id for m in _mutants()]
    assert first == second
    assert len(set(first)) == len(first)
    assert "ex00_sample:12:8:binop:/→*" in first


def test_docstrings_annotations_messages_and_stub_raise_left_alone() -> None:
    """No mutant touches a docstring, an annotation (Literal[3]), an error message's expression
    ({k + 1}) or `raise NotImplementedError`; the raise ValueError statement itself may go."""
    mutants = _mutants()
    docstring_lines, stub_raise_line = {1, 9, 19}, 20
    assert not [m.id for m in mutants if m.line in docstring_lines | {stub_raise_line}]
    for m in mutants:
        tree = ast.parse(m.source)
        assert ast.get_docstring(tree) == "Module docstring: 1 + 1 == 2."
        functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert ast.get_docstring(functions["scaled"]) == "Docstring with an expression: x * 2 < 3."
        assert ast.unparse(functions["scaled"].returns) == "Literal[4]"
        assert ast.unparse(functions["scaled"].args.args[1].annotation) == "Literal[3]"
    on_raise = [m for m in mutants if m.line == 11]
    assert [(m.operator, m.mutated) for m in on_raise] == [("delete", "pass")]


def test_counts_add_up_and_identical_trees_are_discarded() -> None:
    """What was made is what compiled plus what was discarded; nothing equals the reference."""
    mutants, counts = mutation_run.generate_mutants(SAMPLE, "ex00_sample")
    assert counts["generated"] == (counts["compiled"] + counts["equivalent"] + counts["duplicate"]
                                   + counts["not_compiling"])
    assert counts["compiled"] == len(mutants)
    reference = ast.dump(ast.parse(SAMPLE))
    assert all(ast.dump(ast.parse(m.source)) != reference for m in mutants)
    sources = [m.source for m in mutants]
    assert len(set(sources)) == len(sources)
    # Two sites whose rewrites give the same module: the second is counted as a duplicate, not graded.
    twice = "def f(x):\n    return x.clamp_min(0).clamp_min(0)\n"
    mutants, counts = mutation_run.generate_mutants(twice, "ex00_twice")
    assert counts["duplicate"] == 1  # dropping either clamp leaves `x.clamp_min(0)`
    assert [m.mutated for m in mutants if m.operator == "drop_call"] == ["return x.clamp_min(0)"]


def test_every_reference_generates_and_compiles() -> None:
    """Each exercise's reference yields compiling mutants, every one a change of a single line."""
    for exercise in mutation_run.discover_exercises():
        source = (ROOT / "solutions" / f"{exercise}.py").read_text(encoding="utf-8")
        mutants, counts = mutation_run.generate_mutants(source, exercise)
        assert counts["compiled"] > 20, exercise
        assert all(m.id.startswith(f"{exercise}:") for m in mutants)


def test_sample_is_seeded_and_stable() -> None:
    """The same seed picks the same mutants, in source order; another seed picks others."""
    mutants = _mutants()
    one = [m.id for m in mutation_run.stable_sample(mutants, 5, seed=0)]
    assert set(one) == {m.id for m in mutation_run.stable_sample(list(reversed(mutants)), 5, seed=0)}
    assert len(one) == 5 and one == [m.id for m in mutants if m.id in set(one)]
    assert one != [m.id for m in mutation_run.stable_sample(mutants, 5, seed=1)]
    assert len(mutation_run.stable_sample(mutants, None, seed=0)) == len(mutants)


def test_helpers_are_graded_with_the_task_that_uses_them() -> None:
    """A mutant in SwishFn is graded on the swish tests; one in an unnamed helper on the whole exercise."""
    source = (ROOT / "solutions" / "ex02_autograd.py").read_text(encoding="utf-8")
    mutants = mutation_run.generate_mutants(source, "ex02_autograd")[0]
    outcome = mutation_run.TestOutcome
    reference = {"test_swish_a": outcome("swish", "accuracy", 1, 1), "test_fit_b": outcome("fit_line", "shape", 1, 1)}
    in_swish_fn = next(m for m in mutants if m.scope == "SwishFn")
    assert mutation_run.tests_for(in_swish_fn, reference, source, "task") == ("task:swish", ["test_swish_a"])
    in_fit_line = next(m for m in mutants if m.scope == "fit_line")
    assert mutation_run.tests_for(in_fit_line, reference, source, "task") == ("task:fit_line", ["test_fit_b"])
    assert mutation_run.tests_for(in_fit_line, reference, source, "exercise")[0] == "exercise"


@pytest.mark.slow
def test_small_seeded_run_grades_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two sampled mutants of ex01_tensors are graded for real; the report has the documented shape."""
    out = tmp_path / "mutation.json"
    assert mutation_run.main(["--exercise", "ex01_tensors", "--sample", "2", "--seed", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["schema_version"] == 1 and report["sample"] == 2
    summary = report["exercises"]["ex01_tensors"]
    assert summary["reference_score"] == summary["reference_max_score"] > 0
    assert summary["sampled"] == len(summary["mutants"]) == 2
    assert summary["killed"] + summary["survived"] + summary["errors"] == 2
    for verdict in summary["mutants"]:
        assert verdict["status"] in {"killed", "survived"}, verdict
        assert verdict["id"].startswith("ex01_tensors:") and verdict["tests_graded"].startswith(("task:", "exercise"))
        assert (verdict["status"] == "killed") == bool(verdict["failed_tests"])
    assert "kill rate" in capsys.readouterr().out
