"""Faults of the grading host end as a host error before anyone is graded, never as a student's zero."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support import ROOT

pytestmark = pytest.mark.slow

EXAMPLE_ZIP = ROOT / "examples" / "submission.zip"


def grade(*args: str, python: str = sys.executable, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "grader", "run", str(EXAMPLE_ZIP), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def copy_course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    shutil.copytree(ROOT, course, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests", "examples",
                                                               "bench", "*.egg-info", "grader", "scripts"))
    return course


def test_torch_only_on_pythonpath_is_a_host_fault(tmp_path: Path) -> None:
    """The grader finds torch through PYTHONPATH, the worker (``python -I``) does not: stop, blame the host."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": f"{ROOT}{':'}{sysconfig.get_paths()['purelib']}"}
    out = tmp_path / "out"
    proc = grade("--sandbox", "process", "--out", str(out), "--course", str(ROOT), python=str(bare / "bin" / "python"),
                 env=env, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "host problem" in proc.stderr and "torch" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 8
    assert not (out / "report.json").exists(), "no report (no zero) may be written for a host fault"


def test_missing_reference_refuses_a_final_score(tmp_path: Path) -> None:
    course = copy_course(tmp_path)
    (course / "solutions" / "ex02_autograd.py").unlink()
    out = tmp_path / "out"
    proc = grade("--sandbox", "process", "--out", str(out), "--course", str(course), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "reference solutions missing" in proc.stderr and "ex02_autograd" in proc.stderr
    assert not (out / "report.json").exists()


def test_unreachable_docker_engine_is_a_host_fault(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:9"}  # nothing answers there
    proc = grade("--sandbox", "docker", "--out", str(tmp_path / "out"), "--course", str(ROOT), env=env, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "host problem" in proc.stderr and "Docker" in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_test_that_cannot_run_on_this_host_stays_in_max_score(tmp_path: Path) -> None:
    """A test skipped for a missing dependency is listed as not_run, counted in max_score, and the
    run says its score is not final (exit 3) instead of quietly shrinking the total."""
    course = copy_course(tmp_path)
    test_file = course / "autotests" / "test_ex01_tensors.py"
    test_file.write_text(test_file.read_text() + '''

@graded(task="standardize", kind="accuracy", points=2, visibility="hidden")
def test_standardize_needs_an_absent_library(student):
    """Needs a library this host lacks."""
    pytest.importorskip("a_library_this_host_lacks")
''')
    out = tmp_path / "out"
    proc = grade("--sandbox", "process", "-k", "standardize", "--out", str(out), "--course", str(course), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False
    tests = {t["name"]: t for e in report["exercises"] for t in e["tests"]}
    absent = tests["test_standardize_needs_an_absent_library"]
    assert absent["status"] == "not_run" and absent["score"] == 0 and absent["max_score"] == 2
    assert "a_library_this_host_lacks" in absent["message"]["en"]
    ex01 = next(e for e in report["exercises"] if e["id"] == "ex01_tensors")
    assert ex01["max_score"] == sum(t["max_score"] for t in ex01["tests"])
