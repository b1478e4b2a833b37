"""The public checks, from inside a student's notebook: ``check("ex01_tensors", "standardize", globals())``.

The graded test cells of the notebooks ``gpu_runner nb build`` makes call this. It runs on the
student's own machine, on their own code, like ``grader check``: the functions and classes the
notebook defined are written to a module (their source, as IPython keeps it), and the task's
public tests run against it in a worker process. The hidden tests are not here: the grader runs
them in its sandbox when it grades the submitted notebook.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any


def _notebook_source(exercise: str, namespace: dict[str, Any]) -> str:
    """The module the notebook amounts to: its imports, then each function and class it defined."""
    parts = ["from __future__ import annotations"]
    for name, value in namespace.items():
        if isinstance(value, types.ModuleType) and not name.startswith("_"):
            parts.append(f"import {value.__name__} as {name}" if value.__name__ != name else f"import {name}")
    for name, value in list(namespace.items()):
        if name.startswith("_") or getattr(value, "__module__", None) != "__main__":
            continue
        if isinstance(value, (types.FunctionType, type)):
            try:
                parts.append(inspect.getsource(value))
            except (OSError, TypeError):
                continue
        elif not callable(value) and isinstance(value, (int, float, str, tuple, frozenset)):
            parts.append(f"{name} = {value!r}")
    return "\n\n".join(parts) + "\n"


def check(exercise: str, task: str, namespace: dict[str, Any]) -> None:
    """Run ``task``'s public tests on the notebook's code; raise AssertionError if one fails."""
    with tempfile.TemporaryDirectory(prefix="grader-notebook-") as scratch:
        folder = Path(scratch) / "exercises"
        folder.mkdir()
        (folder / f"{exercise}.py").write_text(_notebook_source(exercise, namespace), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "grader", "check", exercise, "-k", task, "--dir", str(folder)],
                              capture_output=True, text=True)
    print(done.stdout.strip())
    if done.returncode == 2 and "course.toml" in done.stderr:
        print("(the public checks need the course kit: open the notebook inside the kit's folder)")
        return
    if done.returncode != 0:
        raise AssertionError(done.stderr.strip() or f"public tests of {task} failed")
