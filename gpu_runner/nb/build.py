"""nbgrader *source* notebooks made from the course's exercises (``gpu_runner nb build``).

One assignment per exercise (``source/ex01_tensors/ex01_tensors.ipynb``), built from the stub and
the reference, so the notebook and the ``.py`` exercise never drift apart:

- a markdown cell with the exercise's introduction, then per function or class of the stub:
- a locked markdown cell with its bilingual contract (the stub's docstring);
- a solution cell: the stub's code with each ``raise NotImplementedError`` replaced by the
  reference's body between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (``nbgrader
  generate_assignment`` turns it back into the stub);
- per task, a locked, graded test cell worth the task's points (public and hidden tests
  together): it runs the task's *public* tests on the student's own machine
  (:func:`grader.notebook.check`); the hidden tests are never in the notebook — the grader runs them
  in the sandbox and writes the task's score into this cell at ``gpu_runner autograde`` time.

Hidden tests are graded only by the grader, not as nbgrader hidden-test regions: such regions are
stripped from the released notebook but would run in the student's kernel at grading time (student
code in the same process as the checks) and would need the reference's expected values in the
notebook; the grader keeps both on its side of the sandbox.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.catalog import Course, ExerciseSpec

SCHEMA_VERSION = 3
SETUP_ID = "setup"


def _meta(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
          points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id,
                            "schema_version": SCHEMA_VERSION}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _docstring_of(node: ast.AST) -> str:
    return ast.get_docstring(node, clean=True) or ""  # type: ignore[arg-type]


def _lines(source: str, node: ast.stmt) -> list[str]:
    return source.splitlines()[node.lineno - 1: node.end_lineno]  # type: ignore[operator]


def _body_without_docstring(node: ast.FunctionDef) -> list[ast.stmt]:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        return body[1:]
    return body


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Every function by qualified name: ``standardize``, ``MLP.forward``."""
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    return found


def _reindent(lines: list[str], indent: str) -> list[str]:
    width = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return [indent + line[width:] if line.strip() else "" for line in lines]


def _solution_cell(stub_src: str, ref_src: str, node: ast.stmt, ref_functions: dict[str, ast.FunctionDef],
                   helpers: list[str]) -> str:
    """The stub's code for ``node`` with each ``raise NotImplementedError`` turned into the
    reference's body inside a solution region."""
    lines = _lines(stub_src, node)
    offset = node.lineno
    edits: list[tuple[int, int, list[str]]] = []
    members = [(node.name, node)] if isinstance(node, ast.FunctionDef) else \
        [(f"{node.name}.{item.name}", item) for item in node.body if isinstance(item, ast.FunctionDef)]  # type: ignore[attr-defined]
    for qualified, function in members:
        body = _body_without_docstring(function)
        raises = [s for s in body if isinstance(s, ast.Raise) and "NotImplementedError" in ast.unparse(s)]
        reference = ref_functions.get(qualified)
        if not raises or reference is None:
            continue
        kept = {ast.dump(s) for s in body if s not in raises}  # e.g. super().__init__(), already in the stub
        ref_body = [s for s in _body_without_docstring(reference) if ast.dump(s) not in kept]
        indent = lines[raises[0].lineno - offset][: raises[0].col_offset]
        region = [f"{indent}### BEGIN SOLUTION"]
        for helper in helpers:
            region += _reindent(helper.splitlines(), indent)
        for statement in ref_body:
            region += _reindent(_lines(ref_src, statement), indent)
        region.append(f"{indent}### END SOLUTION")
        edits.append((raises[0].lineno - offset, raises[0].end_lineno - offset, region))  # type: ignore[operator]
        helpers = []
    for start, end, region in sorted(edits, reverse=True):
        lines[start: end + 1] = region
    return "\n".join(lines)


def _helpers_by_user(ref_tree: ast.Module, ref_src: str, stub_names: set[str]) -> dict[str, list[str]]:
    """Module-level helpers of the reference that the stub lacks, placed inside the solution region
    of the first function that uses them (so the released notebook does not show them)."""
    helpers = {n.name: "\n".join(_lines(ref_src, n)) for n in ref_tree.body
               if isinstance(n, ast.FunctionDef) and n.name not in stub_names}
    placed: dict[str, list[str]] = {}
    for node in ref_tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in stub_names:
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            for name in [h for h in helpers if h in used]:
                qualified = node.name if isinstance(node, ast.FunctionDef) else next(
                    (f"{node.name}.{m.name}" for m in node.body if isinstance(m, ast.FunctionDef)
                     and name in {x.id for x in ast.walk(m) if isinstance(x, ast.Name)}), node.name)
                placed.setdefault(qualified.split(".")[0], []).append(helpers.pop(name))
    return placed


def _setup_code(stub_tree: ast.Module, stub_src: str, ref_tree: ast.Module, ref_src: str) -> str:
    """Imports (the stub's, then any the reference adds) and the reference's module constants."""
    lines: list[str] = []
    seen: set[str] = set()
    for tree, src in ((stub_tree, stub_src), (ref_tree, ref_src)):
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                    isinstance(node, (ast.Assign, ast.AnnAssign)) and tree is ref_tree):
                text = "\n".join(_lines(src, node))
                if text not in seen:
                    seen.add(text)
                    lines.append(text)
    return "\n".join(lines)


def build_notebook(course: Course, spec: ExerciseSpec, task_points: dict[str, float]) -> nbformat.NotebookNode:
    stub_src = (course.exercises_dir / f"{spec.id}.py").read_text(encoding="utf-8")
    ref_src = (course.solutions_dir / f"{spec.id}.py").read_text(encoding="utf-8")
    stub_tree, ref_tree = ast.parse(stub_src), ast.parse(ref_src)
    ref_functions = _functions(ref_tree)
    defs = [n for n in stub_tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    helpers = _helpers_by_user(ref_tree, ref_src, {n.name for n in defs})
    cells = [new_markdown_cell(f"# {spec.title.zh} / {spec.title.en}\n\n{_docstring_of(stub_tree)}",
                               metadata=_meta("intro", locked=True)),
             new_code_cell(_setup_code(stub_tree, stub_src, ref_tree, ref_src), metadata=_meta(SETUP_ID, locked=True))]
    placed: set[str] = set()
    for node in defs:
        cells.append(new_markdown_cell(f"## `{node.name}`\n\n{_docstring_of(node)}",
                                       metadata=_meta(f"contract_{node.name}", locked=True)))
        cells.append(new_code_cell(_solution_cell(stub_src, ref_src, node, ref_functions, helpers.get(node.name, [])),
                                   metadata=_meta(node.name, solution=True)))
        if node.name in task_points:
            cells.append(_test_cell(spec.id, node.name, task_points[node.name]))
            placed.add(node.name)
    for task in [t for t in task_points if t not in placed]:
        cells.append(_test_cell(spec.id, task, task_points[task]))
    notebook = new_notebook(cells=cells)
    notebook.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "torch_grader": {"exercise": spec.id, "course": course.id, "course_version": course.version},
    })
    return notebook


def _test_cell(exercise: str, task: str, points: float) -> nbformat.NotebookNode:
    source = (f"# 公开测试（评分时评测系统还会运行隐藏测试）/ public tests (grading also runs hidden tests)\n"
              f"from grader.notebook import check\n"
              f"check({exercise!r}, {task!r}, globals())")
    return new_code_cell(source, metadata=_meta(f"test_{task}", grade=True, locked=True, points=points))


def task_points(course: Course) -> dict[str, dict[str, float]]:
    """Points per task per exercise: every test of the task, public and hidden."""
    from grader.inventory import collect_tests

    points: dict[str, dict[str, float]] = {}
    for test in collect_tests(course):
        by_task = points.setdefault(test.exercise, {})
        by_task[test.task] = by_task.get(test.task, 0.0) + test.points
    return points


def build_source(course: Course, nb_course: Path, assignments: list[str] | None = None) -> list[Path]:
    """Write ``source/<exercise>/<exercise>.ipynb`` under the nbgrader course folder ``nb_course``."""
    points = task_points(course)
    written = []
    for spec in course.exercises():
        if assignments and spec.id not in assignments:
            continue
        notebook = build_notebook(course, spec, points.get(spec.id, {}))
        path = nb_course / "source" / spec.id / f"{spec.id}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.validate(notebook)
        path.write_text(json.dumps(notebook, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written
