"""The course: where exercises, references and autotests live, and each exercise's declared data.

Each exercise has ``autotests/<id>.toml`` beside its tests: titles in both languages, its tasks,
time limits and the numbers its tests use (tolerances, thresholds, speed factors). Tests read
those numbers through :class:`ExerciseSpec` instead of burying them in test bodies.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.i18n import Msg

EXERCISE_ID = re.compile(r"^ex\d\d_[a-z0-9_]+$")


@dataclass(frozen=True)
class ExerciseSpec:
    id: str
    title: Msg
    tasks: dict[str, Msg]
    call_timeout_s: float = 20.0
    test_timeout_s: float = 60.0
    params: dict[str, Any] = field(default_factory=dict)

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


def load_spec(path: Path) -> ExerciseSpec:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    exercise_id = path.stem
    return ExerciseSpec(
        id=exercise_id,
        title=_msg(data.get("title"), f"{path}: title"),
        tasks={name: _msg(title, f"{path}: tasks.{name}") for name, title in data.get("tasks", {}).items()},
        call_timeout_s=float(data.get("call_timeout_s", 20.0)),
        test_timeout_s=float(data.get("test_timeout_s", 60.0)),
        params=dict(data.get("params", {})),
    )


@dataclass(frozen=True)
class Course:
    """A course checkout: ``exercises/``, ``solutions/`` (absent on student machines), ``autotests/``."""

    root: Path

    @property
    def exercises_dir(self) -> Path:
        return self.root / "exercises"

    @property
    def solutions_dir(self) -> Path:
        return self.root / "solutions"

    @property
    def autotests_dir(self) -> Path:
        return self.root / "autotests"

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


def default_course() -> Course:
    """The course next to this package (a checkout), or ``$GRADER_COURSE``."""
    env = os.environ.get("GRADER_COURSE")
    return Course(Path(env).resolve() if env else Path(__file__).resolve().parents[1])
