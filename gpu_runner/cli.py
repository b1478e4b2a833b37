"""``gpu_runner``: the instructor's commands for nbgrader courses on a GPU host.

``gpu_runner nb build`` writes nbgrader source notebooks from the exercises; ``gpu_runner
autograde`` grades submitted notebooks with nbgrader and the grader's sandbox (see
:mod:`gpu_runner.nb.autograde`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Grading on GPU hosts: nbgrader notebooks.")
nb_app = typer.Typer(no_args_is_help=True, help="nbgrader notebooks made from the exercises.")
app.add_typer(nb_app, name="nb")


def _fail(message: str, code: int = 2) -> typer.Exit:
    print(f"gpu_runner: {message}", file=sys.stderr)
    return typer.Exit(code)


def _course(course_dir: Optional[Path]):  # noqa: ANN202 - a grader Course
    from grader.catalog import CourseNotFound, find_course

    try:
        return find_course(course_dir)
    except CourseNotFound as missing:
        raise _fail(missing.message.en) from None


@nb_app.command("build")
def nb_build(
    assignments: list[str] = typer.Argument(None, help="exercise ids (default: every exercise), e.g. ex01_tensors"),
    out: Path = typer.Option(Path("."), "--out", help="the nbgrader course folder (source/ is written in it)"),
    course_dir: Optional[Path] = typer.Option(None, "--course", help="the grader course (default: found upward)"),
) -> None:
    """Write nbgrader source notebooks (source/<exercise>/<exercise>.ipynb) from the exercises."""
    from gpu_runner.nb.build import build_source

    course = _course(course_dir)
    try:
        chosen = [course.resolve(a) for a in assignments] if assignments else None
    except KeyError as unknown:
        raise _fail(unknown.args[0]) from None
    for path in build_source(course, out, chosen):
        print(f"wrote {path}")


@app.command()
def autograde(
    nb_course: Path = typer.Argument(..., help="the nbgrader course folder (with submitted/ and gradebook.db)"),
    assignment: str = typer.Argument(..., help="the assignment, e.g. ex01_tensors"),
    student: list[str] = typer.Option(None, "--student", help="only these students (default: all submitted)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="'all' or ids like '0,1': one student at a time per GPU"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="students graded at once (at most one per GPU)"),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto, docker, bwrap or process"),
    lang: str = typer.Option("en", "--lang", help="en or zh: the feedback written into the notebooks"),
    course_dir: Optional[Path] = typer.Option(None, "--course", help="the grader course (default: found upward)"),
) -> None:
    """Autograde submitted notebooks: nbgrader sanitises and keeps the gradebook, the grader grades in its sandbox."""
    from gpu_runner.nb.run import autograde_students, find_renamed_notebooks

    course = _course(course_dir)
    nb_course = nb_course.resolve()
    submitted = nb_course / "submitted"
    students = list(student) if student else sorted(p.name for p in submitted.iterdir()
                                                    if (p / assignment).is_dir()) if submitted.is_dir() else []
    if not students:
        raise _fail(f"no submission of {assignment} in {submitted}")
    slots = _gpu_slots(gpus)
    for name, found in find_renamed_notebooks(nb_course, assignment, students).items():
        print(f"{name}: graded {found} as {assignment}'s notebook (it was renamed)")
    outcomes = autograde_students(nb_course, course.root, assignment, students, sandbox=sandbox, lang=lang,
                                  slots=slots, jobs=jobs)
    failed = [name for name, outcome in outcomes.items() if not outcome.get("success")]
    for name, outcome in outcomes.items():
        print(f"{name}: {'graded' if outcome.get('success') else 'FAILED'}"
              + ("" if outcome.get("success") else f"\n{outcome.get('error', '')[-1500:]}"))
    if failed:
        raise _fail(f"{len(failed)} of {len(outcomes)} students could not be autograded: {', '.join(failed)}", 3)


def _gpu_slots(gpus: Optional[str]) -> list[str | None]:
    if not gpus:
        return [None]
    from gpu_runner.devices import gpu_slots

    try:
        return list(gpu_slots(gpus))
    except ValueError as none:
        raise _fail(str(none)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
