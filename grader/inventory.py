"""What tests a course has: collected by pytest itself, so parametrised tests count as they run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.catalog import Course


@dataclass(frozen=True)
class CollectedTest:
    exercise: str
    name: str
    task: str
    kind: str
    visibility: str
    points: float


class _Collector:
    def __init__(self) -> None:
        self.tests: list[CollectedTest] = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from grader.plugin import KINDS, VISIBILITIES, marker_arg

        for item in items:
            self.tests.append(CollectedTest(
                exercise=marker_arg(item, "exercise"), name=item.name, task=marker_arg(item, "task"),
                kind=next(k for k in KINDS if item.get_closest_marker(k)),
                visibility=next(v for v in VISIBILITIES if item.get_closest_marker(v)),
                points=float(marker_arg(item, "points") or 0)))


def collect_tests(course: Course) -> list[CollectedTest]:
    """Every test of ``course``'s autotests with its markers (nothing is run)."""
    collector = _Collector()
    autotests = course.autotests_dir
    from grader.pipeline import pytest_arguments

    code = pytest.main([str(autotests), "--collect-only", *pytest_arguments(course), "--course", str(course.root)],
                       plugins=[collector])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"collecting the tests of {course.root} failed (pytest exit {int(code)}): "
                           f"run `pytest {Path(autotests)} --collect-only` to see why")
    return collector.tests
