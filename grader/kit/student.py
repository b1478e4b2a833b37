"""``grader export student DIR``: the kit students get.

Built from a whitelist, never by copying the course and deleting: stubs, the public tests (hidden
tests and everything only they use cut out), their parameters and probes, public data, a
bilingual README and the tool's wheel. Nothing of ``solutions/``, hidden tests, mutants,
examples or git history can get in, and the finished kit is scanned for leaks before it is kept.
"""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

import tomli_w

from grader.catalog import Course
from grader.kit.common import ExportError, ExportResult, fresh_target, render_template, write_course_marker
from grader.inventory import CollectedTest, collect_tests
from grader.kit.leaks import course_secrets, find_leaks
from grader.kit.strip import probe_calls, probe_names, probes_only, public_tests_only, sibling_imports
from grader.kit.wheel import build_tool_wheel

PUBLIC_DATA = Path("data") / "public"  # only this part of data/ is shipped to students


def stub_problems(source: str, filename: str) -> list[str]:
    """Functions of a stub whose body is more than a docstring and ``raise NotImplementedError``."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
            body = [n for n in body if not (isinstance(n, ast.Expr) and "super" in ast.unparse(n))]
            if not (len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])):
                problems.append(f"{filename}: {node.name} has code besides raise NotImplementedError")
    return problems


def tool_requires_python() -> str:
    """The oldest Python the tool supports, as its metadata says (``>=3.10`` gives ``3.10``)."""
    import importlib.metadata

    return (importlib.metadata.metadata("torch-grader").get("Requires-Python") or ">=3.10").lstrip(">= ")


def tool_probe_names() -> set[str]:
    """Probes the tool itself calls (``impl.probe("name", …)`` in ``grader/``), e.g. for speed tests."""
    import grader

    return {name for path in Path(grader.__file__).resolve().parent.glob("*.py")
            for name in probe_calls(ast.parse(path.read_text(encoding="utf-8")))}


def _public_spec(path: Path, keep: set[str], hidden: list[CollectedTest]) -> str:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["params"] = {key: value for key, value in data.get("params", {}).items() if key in keep}
    data["hidden"] = {"tests": len(hidden), "points": sum(t.points for t in hidden)}
    header = f"# {path.stem}: public parameters of the student kit (hidden tests are graded after hand-in).\n"
    return header + tomli_w.dumps(data)


def export_student_kit(course: Course, target: Path, *, make_zip: bool = False) -> ExportResult:
    if course.kind == "student":
        raise ExportError(f"{course.root} is already a student kit; export from the course repository")
    target = fresh_target(target)
    try:
        return _build(course, target, make_zip)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _build(course: Course, target: Path, make_zip: bool) -> ExportResult:
    result = ExportResult(target, "student")
    try:
        tests = collect_tests(course)
    except RuntimeError as exc:
        raise ExportError(str(exc)) from None
    specs = course.exercises()
    problems = [p for spec in specs
                for p in stub_problems((course.exercises_dir / f"{spec.id}.py").read_text(encoding="utf-8"), f"{spec.id}.py")]
    if problems:
        raise ExportError("a stub holds code, refusing to export it: " + "; ".join(problems))

    write_course_marker(course, target, "student")
    (target / "exercises").mkdir()
    for spec in specs:
        shutil.copyfile(course.exercises_dir / f"{spec.id}.py", target / "exercises" / f"{spec.id}.py")

    autotests = target / "autotests"
    autotests.mkdir()
    for name in ("conftest.py", "pytest.ini"):
        shutil.copyfile(course.autotests_dir / name, autotests / name)
    wanted_probes = tool_probe_names()
    cut_names: set[str] = set()  # hidden-only probes, parameters and helpers (input generators…)
    cut_helpers: set[str] = set()
    kept_names: set[str] = set()
    for spec in specs:
        stripped = public_tests_only((course.autotests_dir / f"test_{spec.id}.py").read_text(encoding="utf-8"))
        (autotests / f"test_{spec.id}.py").write_text(stripped.source, encoding="utf-8")
        wanted_probes |= stripped.probes
        spec_path = course.autotests_dir / f"{spec.id}.toml"
        hidden = [t for t in tests if t.exercise == spec.id and t.visibility == "hidden"]
        (autotests / spec_path.name).write_text(_public_spec(spec_path, stripped.strings, hidden), encoding="utf-8")
        cut_names |= set(spec.params) - stripped.strings
        cut_helpers |= {name for name in stripped.removed if not name.startswith("test_")}
        kept_names |= stripped.kept
        result.counts[spec.id] = {"public": sum(t.exercise == spec.id and t.visibility == "public" for t in tests),
                                  "hidden": len(hidden)}

    (target / "probes").mkdir()
    probe_files = sorted(course.probes_dir.glob("*.py"))
    # helpers one probe module imports from another (``from .common import observe_errors``) stay
    shared = set().union(*(sibling_imports(p.read_text(encoding="utf-8")) for p in probe_files))
    for path in probe_files:
        source = path.read_text(encoding="utf-8")
        kept = probes_only(source, wanted_probes | shared)
        cut_names |= set(probe_names(source)) - wanted_probes
        cut_helpers |= set(kept.removed)
        kept_names |= kept.kept
        (target / "probes" / path.name).write_text(kept.source, encoding="utf-8")
    cut_names |= cut_helpers - kept_names  # a name cut in one file but defined in another is not a leak

    public_data = course.root / PUBLIC_DATA
    if public_data.is_dir():
        shutil.copytree(public_data, target / PUBLIC_DATA)

    wheel = build_tool_wheel(target / "tool")
    render_template("README.student.md.j2", target / "README.md", course, wheel=wheel.name,
                    python=tool_requires_python(),
                    exercises=[_exercise_row(spec, tests) for spec in specs])

    leaks = find_leaks(target, course_secrets(course, cut_names))
    if leaks:
        raise ExportError("the kit would leak, nothing was written: " + "; ".join(leaks[:10]))
    if make_zip:
        result.zip_path = Path(shutil.make_archive(str(target), "zip", root_dir=target.parent, base_dir=target.name))
    return result


def _exercise_row(spec, tests: list[CollectedTest]) -> dict[str, object]:  # noqa: ANN001 - an ExerciseSpec
    mine = [t for t in tests if t.exercise == spec.id]
    public = [t for t in mine if t.visibility == "public"]
    hidden = [t for t in mine if t.visibility == "hidden"]
    return {"id": spec.id, "title_zh": spec.title.zh, "title_en": spec.title.en, "tasks": list(spec.tasks),
            "public_tests": len(public), "public_points": sum(t.points for t in public),
            "hidden_tests": len(hidden), "hidden_points": sum(t.points for t in hidden)}
