"""``gpu_runner autograde``: nbgrader's own autograde, with its execution step replaced by the grader.

nbgrader does what it is good at and nothing of it is imitated: it sanitises each submitted
notebook (clears outputs, restores locked cells from the source, checks cell metadata), records the
submission and its lateness, turns each graded cell's output into a score (``SaveAutoGrades``)
and keeps the gradebook, so ``generate_feedback``, ``export`` and formgrader work unchanged. The
one step that would run student code in the instructor's process, ``Execute``, is replaced by
:class:`SandboxGrade`: it extracts the (restored) notebook's code into the exercise module, grades
it with ``grader`` in the sandbox (on the assigned GPU where asked), and writes into each task's
locked test cell what nbgrader reads as partial credit: the task's score as the cell's only
result, after the feedback as plain output. Nothing is written to stderr, so a student's warnings
never zero a cell (nbgrader zeroes a cell with any stderr output).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from gpu_runner.nb.extract import NotebookRefused, extract_module, is_test_cell

REPORT_SUFFIX = ".grader-report.json"


def _feedback(tests: list[Any], lang: str) -> str:
    lines = []
    for test in tests:
        mark = "✔" if test.status.value == "passed" else "✘"
        line = f"{mark} {test.name} {test.score:g}/{test.max_score:g}"
        if test.status.value != "passed" and test.message is not None:
            line += f": {test.message.render(lang)}"  # the audience-safe message: no hidden inputs
        lines.append(line)
    return "\n".join(lines) + "\n"


def _score_outputs(text: str, score: float) -> list[nbformat.NotebookNode]:
    return [nbformat.v4.new_output("stream", name="stdout", text=text),
            nbformat.v4.new_output("execute_result", data={"text/plain": f"{score:g}"}, execution_count=1)]


class SandboxGrade(NbGraderPreprocessor):
    """Grades a sanitised notebook in the grader's sandbox and puts each task's score in its cell."""

    course_root = Unicode("", help="the grader course (its course.toml folder)").tag(config=True)
    sandbox = Unicode("auto", help="auto, docker, bwrap or process").tag(config=True)
    gpus = Unicode("", help="the GPU this grading may use ('' for none)").tag(config=True)
    lang = Unicode("en", help="the language of the feedback written into the cells").tag(config=True)
    reports_dir = Unicode("", help="where each notebook's grader report goes (<student>/<assignment>/)").tag(config=True)

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict]:
        from grader.catalog import find_course
        from grader.pipeline import grade_submission
        from grader.sandbox import resolve_auto

        course = find_course(Path(self.course_root) if self.course_root else None)
        exercise = str(resources["nbgrader"]["notebook"])  # nbgrader grades only notebooks it knows by name
        if exercise not in {spec.id for spec in course.exercises()}:
            raise ValueError(f"{exercise}.ipynb is not an exercise of {course.describe()}")
        tests_cells = [cell for cell in nb.cells if is_test_cell(cell)]
        try:
            module = extract_module(nb)
        except NotebookRefused as refused:
            for cell in tests_cells:
                cell.outputs = _score_outputs(refused.message.render(self.lang) + "\n", 0)  # type: ignore[arg-type]
            return nb, resources
        backend = resolve_auto() if self.sandbox == "auto" else self.sandbox
        with tempfile.TemporaryDirectory(prefix="gpu-runner-nb-") as scratch:
            archive = Path(scratch) / "submission.zip"
            with zipfile.ZipFile(archive, "w") as handle:
                handle.writestr(f"exercises/{exercise}.py", module.source)
            report = grade_submission(archive, course, sandbox=backend, lang=self.lang,  # type: ignore[arg-type]
                                      keyword=exercise, gpus=self.gpus or None,
                                      student=str(resources["nbgrader"].get("student", "")))
        results = next((e.tests for e in report.exercises if e.id == exercise), [])
        by_task: dict[str, list[Any]] = {}
        for test in results:
            by_task.setdefault(test.task, []).append(test)
        for cell in tests_cells:
            task = cell.metadata["nbgrader"]["grade_id"].removeprefix("test_")
            tests = by_task.get(task, [])
            points = float(cell.metadata["nbgrader"].get("points", 0))
            score = min(points, sum(t.score for t in tests))
            cell.outputs = _score_outputs(_feedback(tests, self.lang) if tests else "no test graded this task\n", score)
            cell.execution_count = 1
        if self.reports_dir:
            import json

            info = resources["nbgrader"]
            target = Path(self.reports_dir) / str(info.get("student", "")) / str(info.get("assignment", ""))
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{exercise}{REPORT_SUFFIX}").write_text(
                json.dumps(report.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
        return nb, resources


def autograde_config(nb_course: Path, course_root: Path, sandbox: str, gpus: str | None, lang: str) -> Any:
    """nbgrader's configuration for an autograde that never executes the notebook here: its default
    steps, with ``Execute`` replaced by :class:`SandboxGrade`."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades,
    )
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(nb_course)
    config.Autograde.autograde_preprocessors = [SandboxGrade, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                                SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    config.SandboxGrade.reports_dir = str(nb_course / "autograded")
    config.SandboxGrade.course_root = str(course_root)
    config.SandboxGrade.sandbox = sandbox
    config.SandboxGrade.gpus = gpus or ""
    config.SandboxGrade.lang = lang
    return config
