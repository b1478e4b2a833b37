"""nbgrader round trip with the real nbgrader: quickstart course, ``gpu_runner nb build``,
``nbgrader generate_assignment``, five students' submissions (correct, buggy, hostile, a tampered
locked cell, a ``!pip`` line), ``gpu_runner autograde`` (grading in a real sandbox),
``nbgrader generate_feedback`` and ``nbgrader export``; the exported CSV and the feedback HTML
carry the expected scores, equal to ``grader run``'s for the same code."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader")

from gpu_runner.nb.extract import NotebookRefused, extract_module  # noqa: E402
from grader.pipeline import grade_submission  # noqa: E402
from support import COURSE, ROOT, require_backend  # noqa: E402

ASSIGNMENT = "ex01_tensors"
REGION = re.compile(r"^(\s*)### BEGIN SOLUTION\n(.*?)^\s*### END SOLUTION\n?", re.MULTILINE | re.DOTALL)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m …`` as an instructor with the environment activated would run it."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=env)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _answers(source_nb: nbformat.NotebookNode) -> dict[str, str]:
    """grade_id -> the source cell with the solution regions' markers removed (the reference)."""
    return {cell.metadata["nbgrader"]["grade_id"]: REGION.sub(lambda m: m.group(2), cell.source)
            for cell in source_nb.cells if cell.metadata.get("nbgrader", {}).get("solution")}


def _submit(course: Path, student: str, notebook: nbformat.NotebookNode) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    (folder / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")


def _filled(released: nbformat.NotebookNode, answers: dict[str, str], edit=None) -> nbformat.NotebookNode:
    notebook = copy.deepcopy(released)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    if edit is not None:
        edit(notebook)
    return notebook


def test_magic_lines_are_refused_and_code_order_is_the_notebooks() -> None:
    cells = [nbformat.v4.new_code_cell("from __future__ import annotations\nimport torch",
                                       metadata={"nbgrader": {"grade_id": "setup", "locked": True}}),
             nbformat.v4.new_code_cell("def f():\n    return 1", metadata={"nbgrader": {"solution": True}}),
             nbformat.v4.new_code_cell("check()", metadata={"nbgrader": {"grade": True, "solution": False}})]
    module = extract_module(nbformat.v4.new_notebook(cells=cells))
    assert module.source.startswith("from __future__ import annotations") and "check()" not in module.source
    cells.insert(2, nbformat.v4.new_code_cell("!pip install torch\nx = 1"))
    with pytest.raises(NotebookRefused, match="cell 3 has a shell escape"):
        extract_module(nbformat.v4.new_notebook(cells=cells))


@pytest.mark.slow
def test_round_trip_with_real_nbgrader(tmp_path: Path) -> None:
    backend = require_backend("bwrap")
    _run("nbgrader", "quickstart", "course", cwd=tmp_path)
    course = tmp_path / "course"
    _run("gpu_runner", "nb", "build", ASSIGNMENT, "--out", str(course), "--course", str(ROOT), cwd=course)
    _run("nbgrader", "generate_assignment", ASSIGNMENT, "--force", cwd=course)
    released = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    text = json.dumps(released)
    reference = (ROOT / "solutions" / f"{ASSIGNMENT}.py").read_text()
    assert "BEGIN SOLUTION" not in text and "correction=0" not in text and "correction=0" in reference
    assert "hidden" not in {c.metadata.get("nbgrader", {}).get("grade_id", "") for c in released.cells}

    answers = _answers(source)
    buggy = {k: v.replace("correction=0", "correction=1") for k, v in answers.items()}
    hostile = {**answers, "standardize": "import os\nos._exit(3)\n" + answers["standardize"]}

    def tamper(notebook: nbformat.NotebookNode) -> None:
        for cell in notebook.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id") == "setup":
                cell.source += "\nimport os\nos._exit(3)"
            elif meta.get("grade") and not meta.get("solution"):
                cell.source = "print('all good')"
                cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "100"},
                                                       execution_count=1)]

    def pip_line(notebook: nbformat.NotebookNode) -> None:
        notebook.cells.insert(2, nbformat.v4.new_code_cell("!pip install numpy"))

    _submit(course, "alice", _filled(released, answers))
    _submit(course, "bob", _filled(released, buggy))
    _submit(course, "carol", _filled(released, hostile))
    _submit(course, "dave", _filled(released, answers, tamper))
    _submit(course, "erin", _filled(released, answers, pip_line))

    def noisy(notebook: nbformat.NotebookNode) -> None:
        """Warnings on stderr, a cell added at the end that an answer uses, a huge image output."""
        for cell in notebook.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "standardize":
                cell.source = ("import sys, warnings\nwarnings.warn('deprecated thing')\n"
                               "print('debug', file=sys.stderr)\n" + cell.source.replace(
                                   "    mean = ", "    _note()\n    mean = ", 1))
                cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * 20_000_000})]
        notebook.cells.append(nbformat.v4.new_code_cell("def _note():\n    print('helper', file=sys.stderr)"))

    _submit(course, "frank", _filled(released, answers, noisy))
    _submit(course, "gina", _filled(released, answers))
    (course / "submitted" / "gina" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").rename(
        course / "submitted" / "gina" / ASSIGNMENT / f"{ASSIGNMENT}-Copy1.ipynb")

    _run("gpu_runner", "autograde", str(course), ASSIGNMENT, "--sandbox", backend, "--course", str(ROOT), cwd=course)
    _run("nbgrader", "generate_feedback", ASSIGNMENT, cwd=course)
    _run("nbgrader", "export", cwd=course)

    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())
            if r["assignment"] == ASSIGNMENT}
    score = {name: float(row["raw_score"]) for name, row in rows.items()}
    worth = float(rows["alice"]["max_score"])
    assert worth > 0 and score["alice"] == worth, score
    assert score["dave"] == worth, "the restored locked cells are graded, not the tampered ones"
    assert 0 < score["bob"] < worth and score["carol"] == 0 and score["erin"] == 0, score
    assert score["frank"] == worth, "stderr output and a huge image cost nothing"
    assert score["gina"] == worth, "a renamed notebook is graded"

    # Equal to what `grader run` gives the same code.
    for student in ("alice", "bob"):
        notebook = nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        archive = tmp_path / f"{student}.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr(f"exercises/{ASSIGNMENT}.py", extract_module(notebook).source)
        report = grade_submission(archive, COURSE, sandbox=backend, keyword=ASSIGNMENT)
        assert report.score == score[student], (student, report.score, score[student])

    feedback = (course / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert f"{score['bob']:g}" in feedback and "population variance" in feedback
    erin = (course / "feedback" / "erin" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "shell escape" in erin


def test_public_checks_run_from_a_notebook_namespace(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """What a graded test cell does on the student's machine: the notebook's own functions, written
    to a module from the source IPython keeps, checked with the task's public tests."""
    import linecache

    from grader.notebook import check

    monkeypatch.chdir(ROOT)
    reference = (ROOT / "solutions" / f"{ASSIGNMENT}.py").read_text()
    for source, passes in ((reference, True), (reference.replace("correction=0", "correction=1"), False)):
        filename = f"<notebook-cell-{passes}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict = {"__name__": "__main__"}
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - trusted test code
        if passes:
            check(ASSIGNMENT, "standardize", namespace)
        else:
            with pytest.raises(AssertionError):
                check(ASSIGNMENT, "standardize", namespace)
        shown = capsys.readouterr().out
        assert "public tests here" in shown and ("population variance" in shown) != passes, shown
