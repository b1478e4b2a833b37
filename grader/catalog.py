"""The course: a folder apart from the tool, and each exercise's declared data.

A course folder is marked by ``course.toml`` (id, version, kind); every ``grader`` command acts on
the course given by ``--course``, or else the nearest marked folder upward from where it runs.

Each exercise has ``autotests/<id>.toml`` beside its tests: titles in both languages, its tasks,
deadlines and the numbers its tests use (tolerances, thresholds, speed factors). Tests read
those numbers through :class:`ExerciseSpec` instead of burying them in test bodies.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.deadlines import DeadlineRule
from grader.i18n import Msg

EXERCISE_ID = re.compile(r"^ex\d\d_[a-z0-9_]+$")


@dataclass(frozen=True)
class ExerciseSpec:
    id: str
    title: Msg
    tasks: dict[str, Msg]
    deadlines: DeadlineRule = field(default_factory=DeadlineRule)
    params: dict[str, Any] = field(default_factory=dict)
    hidden_tests: int | None = None  # declared in a student kit, whose autotests hold no hidden test
    hidden_points: float | None = None

    def param(self, name: str) -> Any:
        """A declared number (tolerance, threshold, factor); KeyError names the file to fix."""
        try:
            return self.params[name]
        except KeyError:
            raise KeyError(f"autotests/{self.id}.toml has no [params] entry {name!r}") from None


def _msg(node: Any, where: str) -> Msg:
    if not isinstance(node, dict) or not {"zh", "en"} <= node.keys():
        raise ValueError(f"{where}: expected a table with 'zh' and 'en'")
    return Msg(str(node["zh"]), str(node["en"]))


def _deadlines(table: Any, path: Path) -> DeadlineRule:
    """The ``[deadlines]`` table (every key optional): see ``grader/deadlines.py`` for the rule."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [deadlines] must be a table")
    known = set(DeadlineRule.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"{path}: unknown [deadlines] keys {sorted(unknown)}; known: {sorted(known)}")
    return DeadlineRule(**{k: float(v) for k, v in table.items()})


def load_spec(path: Path) -> ExerciseSpec:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    exercise_id = path.stem
    return ExerciseSpec(
        id=exercise_id,
        title=_msg(data.get("title"), f"{path}: title"),
        tasks={name: _msg(title, f"{path}: tasks.{name}") for name, title in data.get("tasks", {}).items()},
        deadlines=_deadlines(data.get("deadlines", {}), path),
        params=dict(data.get("params", {})),
        hidden_tests=int(data["hidden"]["tests"]) if "hidden" in data else None,
        hidden_points=float(data["hidden"]["points"]) if "hidden" in data else None,
    )


COURSE_MARKER = "course.toml"
COURSE_KINDS = ("source", "student", "autograder")


class CourseNotFound(RuntimeError):
    """No course folder here; ``message`` says how to point the grader at one, in both languages."""

    def __init__(self, message: Msg | str) -> None:
        self.message = message if isinstance(message, Msg) else Msg(message, message)
        super().__init__(self.message.en)


@dataclass(frozen=True)
class Course:
    """A course folder: ``course.toml``, ``exercises/``, ``autotests/``, ``probes/``, ``data/`` and
    ``solutions/`` (absent from a student kit). The grader tool is installed apart from it."""

    root: Path
    id: str = "course"
    version: str = "0"
    kind: str = "source"
    title: Msg = Msg("课程", "Course")

    @classmethod
    def load(cls, root: Path) -> "Course":
        """The course whose marker is ``root/course.toml``; CourseNotFound says what is wrong with it."""
        marker = root / COURSE_MARKER
        try:
            data = tomllib.loads(marker.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CourseNotFound(f"{marker} cannot be read: {exc}") from None
        kind = str(data.get("kind", "source"))
        if kind not in COURSE_KINDS:
            raise CourseNotFound(f"{marker}: kind must be one of {', '.join(COURSE_KINDS)}, not {kind!r}")
        title = _msg(data["title"], f"{marker}: title") if "title" in data else Msg("课程", "Course")
        return cls(root=root.resolve(), id=str(data.get("id", root.name)), version=str(data.get("version", "0")),
                   kind=kind, title=title)

    @property
    def marker(self) -> Path:
        return self.root / COURSE_MARKER

    @property
    def exercises_dir(self) -> Path:
        return self.root / "exercises"

    @property
    def solutions_dir(self) -> Path:
        return self.root / "solutions"

    @property
    def autotests_dir(self) -> Path:
        return self.root / "autotests"

    @property
    def probes_dir(self) -> Path:
        return self.root / "probes"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def exercises(self) -> list[ExerciseSpec]:
        return [load_spec(p) for p in sorted(self.autotests_dir.glob("ex[0-9][0-9]_*.toml"))]

    def spec(self, exercise_id: str) -> ExerciseSpec:
        path = self.autotests_dir / f"{exercise_id}.toml"
        if not EXERCISE_ID.match(exercise_id) or not path.is_file():
            raise KeyError(f"unknown exercise {exercise_id!r}")
        return load_spec(path)

    def resolve(self, name: str) -> str:
        """Full exercise id from a prefix such as ``ex01`` or ``1``."""
        ids = [e.id for e in self.exercises()]
        if name.isdigit():
            name = f"ex{int(name):02d}"
        matches = [i for i in ids if i == name or i.startswith(name + "_")]
        if len(matches) != 1:
            raise KeyError(f"unknown exercise {name!r}; known: {', '.join(ids)}")
        return matches[0]

    def describe(self) -> str:
        return f"{self.id} {self.version} ({self.kind}) at {self.root}"


def find_course(explicit: Path | None = None, start: Path | None = None) -> Course:
    """The course to act on: ``explicit`` (``--course``), else ``$GRADER_COURSE``, else the nearest
    folder upward from ``start`` (the current folder) that holds ``course.toml``."""
    if explicit is None and os.environ.get("GRADER_COURSE"):
        explicit = Path(os.environ["GRADER_COURSE"])
    if explicit is not None:
        folder = Path(explicit).resolve()
        if not (folder / COURSE_MARKER).is_file():
            raise CourseNotFound(Msg(f"{folder} 不是课程文件夹（缺少 {COURSE_MARKER}）",
                                     f"{folder} is not a course folder: it has no {COURSE_MARKER}"))
        return Course.load(folder)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        try:
            if (folder / COURSE_MARKER).is_file():
                return Course.load(folder)
        except PermissionError:
            continue  # a folder this user may not look into holds no course of theirs
    raise CourseNotFound(Msg(
        f"{here} 及其上级文件夹中都没有 {COURSE_MARKER}：请在课程文件夹内运行，或用 --course 指定课程文件夹",
        f"no {COURSE_MARKER} in {here} or any folder above it: run the command inside your course folder "
        "or pass --course DIR"))
