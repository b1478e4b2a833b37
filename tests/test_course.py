"""The course material is consistent: stubs, references, tests and declared data line up."""

from __future__ import annotations

import ast
import difflib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import COURSE, ROOT

from grader.kit.student import stub_problems

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
    """Every function body of a stub is a docstring and ``raise NotImplementedError``; public
    functions explain themselves in Chinese and English."""
    source = (COURSE.exercises_dir / f"{exercise}.py").read_text(encoding="utf-8")
    assert stub_problems(source, exercise) == []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            docstring = ast.get_docstring(node) or ""
            if not node.name.startswith("_") and node.name not in ("forward", "backward", "__init__"):
                assert any("\u4e00" <= ch <= "\u9fff" for ch in docstring), f"{node.name}: no Chinese in docstring"
                assert any(ch.isascii() and ch.isalpha() for ch in docstring), f"{node.name}: no English in docstring"


def test_stub_check_finds_code() -> None:
    assert stub_problems("def f(x):\n    \"doc\"\n    return x + 1\n", "ex99_x.py")


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


def _grader(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _used(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The course and files lines a student command prints."""
    lines = proc.stdout.splitlines()
    return next(l for l in lines if l.startswith("course: ")), next(l for l in lines if l.startswith("files: "))


@pytest.mark.slow
def test_check_and_pack_act_on_the_same_copy(student_kit: Path, tmp_path: Path) -> None:
    """Two copies of the homework: each command acts on the copy it runs in (from the course folder,
    from inside exercises/, or with --course from anywhere) and says which folder and files it used."""
    done, todo = tmp_path / "done", tmp_path / "todo"
    shutil.copytree(student_kit, done)
    shutil.copytree(student_kit, todo)
    shutil.copyfile(COURSE.solutions_dir / "ex01_tensors.py", done / "exercises" / "ex01_tensors.py")
    for where in (done, done / "exercises"):
        checked = _grader("check", "ex01", "-k", "patchify", cwd=where)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        packed = _grader("pack", cwd=where)
        assert packed.returncode == 0, packed.stderr
        assert _used(checked)[0] == _used(packed)[0] and str(done) in _used(checked)[0]
        assert _used(checked)[1] == f"files: {done / 'exercises'}: ex01_tensors.py"
        assert "ex01_tensors.py, ex02_autograd.py, ex03_modules.py" in _used(packed)[1]
        assert str(done / "submission.zip") in packed.stdout
        assert zipfile.ZipFile(done / "submission.zip").read("exercises/ex01_tensors.py") == \
            (done / "exercises" / "ex01_tensors.py").read_bytes()
    stub = _grader("check", "ex01", "-k", "patchify", cwd=todo / "exercises")
    assert stub.returncode == 1 and str(todo) in _used(stub)[0] and "Not implemented" in stub.stdout
    explicit = _grader("check", "ex01", "-k", "patchify", "--course", str(done), cwd=tmp_path)
    assert explicit.returncode == 0 and str(done) in _used(explicit)[0]
    lost = _grader("pack", cwd=tmp_path)
    assert lost.returncode == 2 and "course.toml" in lost.stderr and "--course" in lost.stderr
    assert len(lost.stderr.strip().splitlines()) == 1


def test_shipped_example_submission_is_current(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from build_example import build

    fresh = build(tmp_path / "example.zip")
    shipped = ROOT / "examples" / "submission.zip"
    assert fresh.read_bytes() == shipped.read_bytes(), "run: python examples/build_example.py"


def _code_lines(path: Path) -> list[str]:
    """A module's code with docstrings dropped and formatting normalised (``ast.unparse``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree).splitlines()


def test_example_submission_is_not_a_copy_of_the_reference() -> None:
    """The example is a student's own solution, not the reference with a few lines changed: a
    near-copy scores above 0.95 here (same API and imports make any two solutions share some)."""
    for exercise in EXERCISES:
        reference = _code_lines(COURSE.solutions_dir / f"{exercise}.py")
        example = _code_lines(ROOT / "examples" / "submission" / "exercises" / f"{exercise}.py")
        similarity = difflib.SequenceMatcher(None, reference, example, autojunk=False).ratio()
        assert similarity < 0.8, (exercise, round(similarity, 3))
