"""The course material is consistent: stubs, references, tests and declared data line up."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import COURSE, ROOT

EXERCISES = [spec.id for spec in COURSE.exercises()]


def public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


@pytest.mark.parametrize("exercise", EXERCISES)
def test_stub_and_reference_share_their_public_api(exercise: str) -> None:
    stub, reference = COURSE.exercises_dir / f"{exercise}.py", COURSE.solutions_dir / f"{exercise}.py"
    assert public_names(stub) == public_names(reference)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_stubs_hold_no_solution(exercise: str) -> None:
    """Every function body of a stub is a docstring and ``raise NotImplementedError``."""
    tree = ast.parse((COURSE.exercises_dir / f"{exercise}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
            body = [n for n in body if not (isinstance(n, ast.Expr) and "super" in ast.unparse(n))]
            assert len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0]), (
                f"{exercise}.{node.name} has code besides raise NotImplementedError")
            docstring = ast.get_docstring(node) or ""
            if not node.name.startswith("_") and node.name not in ("forward", "backward", "__init__"):
                assert any("\u4e00" <= ch <= "\u9fff" for ch in docstring), f"{node.name}: no Chinese in docstring"
                assert any(ch.isascii() and ch.isalpha() for ch in docstring), f"{node.name}: no English in docstring"


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_task_is_tested_in_public_and_hidden(exercise: str) -> None:
    spec = COURSE.spec(exercise)
    source = (COURSE.autotests_dir / f"test_{exercise}.py").read_text(encoding="utf-8")
    for task in spec.tasks:
        assert f'task="{task}"' in source, f"{exercise}: task {task} has no test"
    assert 'visibility="public"' in source and 'visibility="hidden"' in source
    for kind in ("shape", "gradient", "accuracy"):
        assert f'kind="{kind}"' in source, f"{exercise}: no {kind} test"


def test_public_tests_run_without_the_reference(tmp_path: Path) -> None:
    """Students have no solutions/: the public tests must pass on a correct solution anyway."""
    for exercise in EXERCISES:
        (tmp_path / f"{exercise}.py").write_bytes((COURSE.solutions_dir / f"{exercise}.py").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(COURSE.autotests_dir), "-m", "public", "-q",
         "--submission", str(tmp_path), "--reference", str(tmp_path / "absent"), "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "skipped" not in proc.stdout.splitlines()[-1]


def test_check_and_pack_commands(tmp_path: Path) -> None:
    exercises = tmp_path / "exercises"
    exercises.mkdir()
    (exercises / "ex01_tensors.py").write_bytes((COURSE.solutions_dir / "ex01_tensors.py").read_bytes())
    check = subprocess.run([sys.executable, "-m", "grader", "check", "ex01", "-k", "patchify",
                            "--dir", str(exercises)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ex01_tensors" in check.stdout and "Total" in check.stdout
    packed = subprocess.run([sys.executable, "-m", "grader", "pack", str(tmp_path), "-o", str(tmp_path / "s.zip")],
                            capture_output=True, text=True, timeout=60)
    assert packed.returncode == 0, packed.stderr
    assert zipfile.ZipFile(tmp_path / "s.zip").namelist() == ["exercises/ex01_tensors.py"]


def test_shipped_example_submission_is_current(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from build_example import build

    fresh = build(tmp_path / "example.zip")
    shipped = ROOT / "examples" / "submission.zip"
    assert fresh.read_bytes() == shipped.read_bytes(), "run: python examples/build_example.py"
