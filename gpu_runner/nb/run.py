"""Autograde several students, each in a process of its own (one GPU each where there are GPUs).

nbgrader's gradebook is a database its autograde writes in short transactions; students graded in
parallel each run nbgrader's real autograde in their own process, so nothing of one student's
grading shares memory with another's.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any


def autograde_one(nb_course: str, course_root: str, assignment: str, student: str, sandbox: str, lang: str,
                  gpu: str | None) -> dict[str, Any]:
    """nbgrader's autograde of one student's assignment, graded in the sandbox."""
    _tools_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from gpu_runner.nb.autograde import autograde_config

    config = autograde_config(Path(nb_course), Path(course_root), sandbox, gpu, lang)
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    result = api.autograde(assignment, student, force=True, create=True)
    return {k: result.get(k) for k in ("success", "error", "log")}


def _tools_on_path() -> None:
    """nbgrader runs ``alembic`` (its gradebook migrations) by name: find it beside this interpreter
    even when the environment is not activated (``.venv/bin/gpu_runner …``)."""
    import os
    import sys

    here = os.path.dirname(sys.executable)
    if here not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


_FREE_SLOTS: Any = None


def _hold_slots(free: Any) -> None:
    global _FREE_SLOTS
    _FREE_SLOTS = free


def _worker(args: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """One student, on a GPU slot taken from the shared queue for as long as it grades (so never
    two students on one GPU)."""
    nb_course, course_root, assignment, student, sandbox, lang = args
    gpu = _FREE_SLOTS.get() if _FREE_SLOTS is not None else None
    try:
        return student, autograde_one(nb_course, course_root, assignment, student, sandbox, lang, gpu)
    finally:
        if _FREE_SLOTS is not None:
            _FREE_SLOTS.put(gpu)


def find_renamed_notebooks(nb_course: Path, assignment: str, students: list[str]) -> dict[str, str]:
    """Give a renamed notebook back its name: where a submission lacks the assignment's notebook but
    holds exactly one other (``ex01_tensors-Copy1.ipynb``, ``Untitled.ipynb``), that one is the
    student's work. nbgrader would skip it (it grades notebooks by name); it is copied to the
    expected name, and the original stays. Returns student -> the name found."""
    import shutil

    expected = {p.name for p in (nb_course / "source" / assignment).glob("*.ipynb")}
    renamed: dict[str, str] = {}
    if len(expected) != 1:
        return renamed  # several notebooks per assignment: which is which cannot be told apart
    name = next(iter(expected))
    for student in students:
        folder = nb_course / "submitted" / student / assignment
        if (folder / name).exists():
            continue
        others = [p for p in folder.glob("*.ipynb") if not p.name.startswith(".")]
        if len(others) == 1:
            shutil.copy2(others[0], folder / name)
            renamed[student] = others[0].name
    return renamed


def autograde_students(nb_course: Path, course_root: Path, assignment: str, students: list[str], *, sandbox: str,
                       lang: str, slots: list[str | None], jobs: int) -> dict[str, dict[str, Any]]:
    """Every student's autograde; ``slots`` are GPU ids (``[None]``: no GPU)."""
    gpu_run = slots != [None]
    jobs = max(1, min(jobs, len(students), len(slots) if gpu_run else jobs))
    tasks = [(str(nb_course), str(course_root), assignment, student, sandbox, lang) for student in students]
    context = multiprocessing.get_context("spawn")
    free = context.Manager().Queue() if gpu_run else None
    for slot in slots if gpu_run else []:
        free.put(slot)  # type: ignore[union-attr]
    if jobs == 1 and not gpu_run:
        return dict(_worker(task) for task in tasks)
    with context.Pool(jobs, initializer=_hold_slots, initargs=(free,), maxtasksperchild=1) as pool:
        return dict(pool.imap_unordered(_worker, tasks))
