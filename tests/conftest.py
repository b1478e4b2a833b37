"""Session fixtures: the course's exports, built once with the real ``grader export`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from reports_support import graded_reports
from support import ROOT


# This run's own host lock (regrades wait for its tests only): test runs sharing a machine, and
# graders already running on it, neither wait for nor count one another (gradings in subprocesses
# inherit it).
os.environ["GRADER_HOST_LOCK"] = str(Path(tempfile.mkdtemp(prefix="grader-tests-lock-")) / "host.lock")


def _export(kind: str, target: Path, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "grader", "export", kind, str(target), *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


@pytest.fixture(scope="session")
def student_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student kit of this course (and its zip beside it)."""
    return _export("student", tmp_path_factory.mktemp("export") / "kit", "--zip")


@pytest.fixture(scope="session")
def autograder_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export("autograder", tmp_path_factory.mktemp("export") / "autograder")


@pytest.fixture(scope="session")
def graded_report_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A passing, a failing and a hostile submission graded once for the report and browser tests."""
    return graded_reports(tmp_path_factory.mktemp("reports"))


def pytest_report_header(config: pytest.Config) -> str:
    """Which mutants run (see tests/test_mutants.py): say it, so that a failure can be replayed."""
    if os.environ.get("GRADER_MUTANTS") == "all":
        return "mutants: all (GRADER_MUTANTS=all)"
    import datetime

    seed = os.environ.get("GRADER_MUTANT_SEED") or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return f"mutants: a sample per exercise, seed {seed} (replay: GRADER_MUTANT_SEED={seed}; all: GRADER_MUTANTS=all)"
