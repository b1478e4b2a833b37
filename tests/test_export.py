"""Exports: the student kit leaks nothing of the answers and works on its own; the autograder
export carries everything a grading host needs, with a manifest that reports record."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import COURSE, ROOT, write_zip

from grader.kit.leaks import course_secrets, find_leaks, reference_body_lines
from grader.kit.strip import hidden_test_names, public_tests_only

EXAMPLE = ROOT / "examples" / "submission" / "exercises"


def all_texts(folder: Path) -> dict[str, str]:
    """Every file's text, and every zip member's (the tool's wheel, the zipped kit)."""
    texts = {}
    for path in folder.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        texts[f"{path}!{member}"] = archive.read(member).decode("utf-8", "replace")
    return texts


def check(kit: Path, *args: str, cwd: Path | None = None, python: str = sys.executable,
          timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "grader", "check", *args], capture_output=True, text=True,
                          cwd=cwd or kit, timeout=timeout)


# -- the student kit leaks nothing --------------------------------------------------------------
def test_kit_holds_only_what_students_need(student_kit: Path) -> None:
    top = {p.name for p in student_kit.iterdir()}
    assert top == {"course.toml", "README.md", "exercises", "autotests", "probes", "tool", "data"}
    assert {p.name for p in (student_kit / "data").iterdir()} == {"public"}  # only the public data ships
    assert not any(p.name in ("solutions", ".git", "tests", "mutants", "examples") for p in student_kit.rglob("*"))
    assert "kind = \"student\"" in (student_kit / "course.toml").read_text()
    wheel = next((student_kit / "tool").glob("torch_grader-*.whl"))
    assert all(name.startswith(("grader/", "torch_grader-")) for name in zipfile.ZipFile(wheel).namelist())


def test_no_hidden_test_reference_line_or_mutant_survives(student_kit: Path) -> None:
    """Scanned independently of the exporter: names by regex, reference lines by AST, in zips too."""
    hidden = {name for path in COURSE.autotests_dir.glob("test_*.py") for name in hidden_test_names(path.read_text())}
    assert len(hidden) >= 40
    reference = {line for path in COURSE.solutions_dir.glob("ex*.py") for line in reference_body_lines(path.read_text())}
    stubs = {line.strip() for path in COURSE.exercises_dir.glob("ex*.py") for line in path.read_text().splitlines()}
    reference -= stubs
    assert len(reference) >= 50
    mutant_texts = set(re.findall(r'description = "([^"]{24,})"', "".join(
        p.read_text() for p in (ROOT / "tests" / "mutants").glob("*.toml"))))
    assert mutant_texts
    texts = all_texts(student_kit)
    assert any("!grader/" in where for where in texts), "the wheel's members were not scanned"
    for where, text in texts.items():
        names = set(re.findall(r"\btest_\w+", text))
        assert not names & hidden, (where, names & hidden)
        lines = {line.strip() for line in text.splitlines()}
        assert not lines & reference, (where, lines & reference)
        assert not [m for m in mutant_texts if m in text], where


def test_hidden_only_probes_and_parameters_are_cut(student_kit: Path) -> None:
    probes = (student_kit / "probes" / "ex03_modules.py").read_text()
    assert "def sequential_probe" in probes  # used by public tests
    kit_spec = (student_kit / "autotests" / "ex03_modules.toml").read_text()
    assert "accuracy_public" in kit_spec and "accuracy_hidden" not in kit_spec and "blobs_hidden" not in kit_spec
    assert "[hidden]" in kit_spec
    spec01 = (student_kit / "autotests" / "ex01_tensors.toml").read_text()
    assert "speed_shape" not in spec01


def test_leak_scanner_finds_planted_leaks(tmp_path: Path) -> None:
    """The exporter's own scan is not a test that cannot fail: planted leaks are reported."""
    secrets = course_secrets(COURSE, {"accuracy_hidden"})
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a.py").write_text("x = 1\n")
    assert find_leaks(clean, secrets) == []
    line = sorted(secrets.reference_lines)[0]
    hidden = sorted(secrets.hidden_tests)[0]
    (clean / "b.py").write_text(f"def f():\n    {line}\n")
    with zipfile.ZipFile(clean / "inner.zip", "w") as archive:
        archive.writestr("t.py", f"def {hidden}():\n    pass\n")
    (clean / "p.toml").write_text("accuracy_hidden = 0.9\n")
    (clean / "solutions").mkdir()
    problems = "\n".join(find_leaks(clean, secrets))
    assert "reference line" in problems and hidden in problems and "inner.zip!t.py" in problems
    assert "accuracy_hidden" in problems and "solutions: folder must not be shipped" in problems


def test_stripping_keeps_shared_helpers_and_drops_hidden_ones() -> None:
    source = '''import pytest
from grader.plugin import graded

HINT = "shared"
SECRET = "only hidden"

def _inputs():
    return 1

def _hidden_inputs():
    return 2

# about the public test
@graded(task="t", kind="shape", points=1, visibility="public")
def test_public(student):
    student.probe("public_probe", x=_inputs(), hint=HINT)

# about the hidden test
@graded(task="t", kind="shape", points=1)
def test_hidden(student):
    student.probe("hidden_probe", x=_hidden_inputs(), hint=SECRET + HINT)
'''
    stripped = public_tests_only(source)
    assert "test_public" in stripped.source and "_inputs" in stripped.source and "HINT" in stripped.source
    for gone in ("test_hidden", "_hidden_inputs", "SECRET", "hidden_probe", "about the hidden test"):
        assert gone not in stripped.source, gone
    assert stripped.probes == {"public_probe"}
    ast.parse(stripped.source)


# -- the kit works on its own ---------------------------------------------------------------------
@pytest.mark.slow
def test_kit_checks_a_correct_solution_in_full_and_names_its_folder(student_kit: Path, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    shutil.copytree(student_kit, kit)
    for path in COURSE.solutions_dir.glob("ex*.py"):
        shutil.copyfile(path, kit / "exercises" / path.name)
    proc = check(kit, "--lang", "en")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "course: pytorch-tutorial" in proc.stdout and str(kit / "exercises") in proc.stdout
    assert re.search(r"Total: (\d+)/\1 \(100\.0%\)", proc.stdout), proc.stdout
    assert re.search(r"ex01_tensors: ran 11 public tests here .*hidden tests: 14", proc.stdout.replace("\n", " ")), proc.stdout


@pytest.mark.slow
def test_kit_reports_the_example_mistakes(student_kit: Path, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    shutil.copytree(student_kit, kit)
    for path in EXAMPLE.glob("ex*.py"):
        shutil.copyfile(path, kit / "exercises" / path.name)
    proc = check(kit, "--lang", "en")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "population variance" in proc.stdout  # standardize: sample variance
    assert "fit_line" in proc.stdout  # gradients never zeroed


# -- the autograder export ----------------------------------------------------------------------
def test_autograder_export_has_everything_with_hashes(autograder_export: Path) -> None:
    manifest = json.loads((autograder_export / "manifest.json").read_text())
    files = manifest["content"]["files"]
    assert {"requirements.lock", "solutions/ex01_tensors.py", "autotests/test_ex01_tensors.py",
            "probes/ex01_tensors.py", "exercises/ex01_tensors.py"} <= set(files)
    for name, digest in files.items():
        import hashlib

        assert hashlib.sha256((autograder_export / name).read_bytes()).hexdigest() == digest
    assert (autograder_export / "image" / "Dockerfile").is_file()
    assert any((autograder_export / "tool").glob("*.whl"))
    assert not (autograder_export / "tests").exists() and not (autograder_export / "examples").exists()


@pytest.mark.slow
def test_reports_record_the_manifest_and_a_changed_export_is_refused(autograder_export: Path, tmp_path: Path) -> None:
    manifest = json.loads((autograder_export / "manifest.json").read_text())
    out = tmp_path / "out"
    run = [sys.executable, "-m", "grader", "run", str(ROOT / "examples" / "submission.zip"), "--sandbox", "process",
           "-k", "patchify", "--out", str(out)]
    proc = subprocess.run(run + ["--course", str(autograder_export)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["course"]["manifest_sha256"] == manifest["content"]["sha256"]
    assert report["course"]["kind"] == "autograder" and report["tool_version"] == manifest["tool_version"]
    # the course repository itself gives the same content hash
    proc = subprocess.run(run + ["--course", str(ROOT)], capture_output=True, text=True, timeout=600)
    assert json.loads((out / "report.json").read_text())["course"]["manifest_sha256"] == manifest["content"]["sha256"]

    changed = tmp_path / "changed"
    shutil.copytree(autograder_export, changed)
    with open(changed / "autotests" / "ex01_tensors.toml", "a") as spec:
        spec.write("\n# edited\n")
    proc = subprocess.run(run + ["--course", str(changed)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "changed after it was exported" in proc.stderr and "autotests/ex01_tensors.toml" in proc.stderr


# -- Gradescope ------------------------------------------------------------------------------------
def test_autograder_export_is_a_gradescope_autograder(autograder_export: Path) -> None:
    for name in ("run_autograder", "setup.sh"):
        path = autograder_export / name
        assert path.is_file() and os.access(path, os.X_OK), name
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # it parses
    assert "--sandbox \"${GRADER_SANDBOX:-bwrap}\"" in (autograder_export / "run_autograder").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("upload", ["files", "zip"])
def test_run_autograder_grades_as_gradescope_runs_it(autograder_export: Path, tmp_path: Path, upload: str) -> None:
    """Gradescope's layout (submission/, results/, source/) in a folder of ours: results.json with
    the documented fields, one entry per test, scores that add up."""
    import jsonschema

    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    reference = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
    if upload == "zip":
        write_zip(root / "submission" / "submission.zip", {"exercises/ex01_tensors.py": reference})
    else:
        (root / "submission" / "ex01_tensors.py").write_text(reference, encoding="utf-8")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "GRADER_SOURCE_DIR": str(autograder_export),
           "GRADER_PYTHON": sys.executable, "GRADER_ARGS": "-k standardize",
           "GRADER_SANDBOX": "bwrap" if shutil.which("bwrap") else "process"}
    proc = subprocess.run([str(autograder_export / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    jsonschema.validate(results, json.loads((ROOT / "tests" / "schemas" / "gradescope-results.schema.json").read_text()))
    ex01 = [t for t in results["tests"] if "ex01_tensors" in t["tags"]]
    assert ex01 and all(t["status"] == "passed" and t["score"] == t["max_score"] for t in ex01)
    assert results["score"] == sum(t["score"] for t in results["tests"]) > 0
