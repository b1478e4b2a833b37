"""Scan a folder that leaves the course (a student kit) for anything of the answers.

Run by ``grader export student`` on its own result (a kit that leaks is deleted, not shipped)
and by the tests. Looks into every file, and into every member of the zips inside (the tool's
wheel, a zipped kit).
"""

from __future__ import annotations

import ast
import re
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from grader.catalog import Course
from grader.kit.strip import hidden_test_names

MIN_LINE_CHARS = 24  # shorter reference lines (``return out``, ``x = x.float()``) say nothing about a solution
FORBIDDEN_FOLDERS = ("solutions", ".git", "tests", "examples")
TOOL_FOLDER = "tool/"  # the grader's wheel


@dataclass(frozen=True)
class Secrets:
    hidden_tests: frozenset[str]
    reference_lines: frozenset[str]
    mutant_texts: frozenset[str]
    extra: frozenset[str]  # names cut out by the export: hidden-only probes, parameters and helpers


def _bare_header(line: str) -> bool:
    """``for i in range(1, n + 1):``: a loop or branch header that calls nothing of torch says nothing of a solution."""
    return line.endswith(":") and line.split(" ", 1)[0] in ("for", "if", "elif", "while", "with", "else:", "try:") \
        and not any(api in line for api in ("torch", "nn.", "F."))


def reference_body_lines(source: str) -> set[str]:
    """The code lines (stripped) inside the functions of a reference module, docstrings and comments left out."""
    lines = source.splitlines()
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        for statement in body:
            for line in lines[statement.lineno - 1:statement.end_lineno]:
                text = line.split("#", 1)[0].strip() if not line.strip().startswith("#") else ""
                if len(text) >= MIN_LINE_CHARS and not _bare_header(text):
                    found.add(text)
    return found


def course_secrets(course: Course, extra: set[str] = frozenset()) -> Secrets:  # type: ignore[assignment]
    hidden = {name for path in course.autotests_dir.glob("test_ex*.py")
              for name in hidden_test_names(path.read_text(encoding="utf-8"))}
    stubs = {line.strip() for path in course.exercises_dir.glob("ex*.py")
             for line in path.read_text(encoding="utf-8").splitlines()}
    reference = {line for path in course.solutions_dir.glob("ex*.py")
                 for line in reference_body_lines(path.read_text(encoding="utf-8"))} - stubs
    mutants: set[str] = set()
    for path in (course.root / "tests" / "mutants").glob("*.toml"):
        for entries in tomllib.loads(path.read_text(encoding="utf-8")).values():
            for entry in entries if isinstance(entries, list) else []:
                if len(entry.get("description", "")) >= MIN_LINE_CHARS:
                    mutants.add(entry["description"])
    return Secrets(frozenset(hidden), frozenset(reference), frozenset(mutants), frozenset(extra))


def _texts(folder: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every file under ``folder`` and every member of the zips in it."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        where = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        yield where, data.decode("utf-8", errors="replace")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    yield f"{where}!{member}", archive.read(member).decode("utf-8", errors="replace")


def find_leaks(folder: Path, secrets: Secrets) -> list[str]:
    """Every place in ``folder`` where something of ``secrets`` shows; empty when the folder is clean."""
    problems = [f"{path.relative_to(folder)}: folder must not be shipped"
                for path in folder.rglob("*") if path.is_dir() and path.name in FORBIDDEN_FOLDERS]
    for where, text in _texts(folder):
        if "/" + "solutions/" in where or where.startswith("solutions/"):
            problems.append(f"{where}: a reference file")
        lines = {line.strip() for line in text.splitlines()}
        problems += [f"{where}: reference line {line!r}" for line in sorted(secrets.reference_lines & lines)]
        for kind, words, pattern in (
            ("hidden test", secrets.hidden_tests, r"(?<!\w){}(?!\w)"),
            ("mutant", secrets.mutant_texts, "{}"),
            # a cut probe, parameter or helper shows as its definition, a key, or a quoted name; the
            # tool's own code (the wheel) may use the same names for its own things
            ("hidden-only probe, parameter or helper", secrets.extra if not where.startswith(TOOL_FOLDER) else frozenset(), r"def\s+{0}\s*\(|^\s*{0}\s*=|[\"']{0}[\"']"),
        ):
            problems += [f"{where}: {kind} {word!r}" for word in sorted(words)
                         if re.search(pattern.format(re.escape(word)), text, re.MULTILINE)]
    return problems
