"""Three real reports for the renderer and browser tests: a passing, a failing and a hostile
submission, each graded once by ``grader run`` on a few tests of every kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import COURSE, ROOT, write_zip

KEYWORD = "standardize or mlp_learns or lenet_learns or fit_line or pairwise"
HOSTILE_PRINT = """
import sys
print('<script>alert("owned")</script> <img src=x onerror=alert(1)> \\x1b[31mred\\x1b[0m \\x07bell')
sys.stdout.write('flood ' * (10 * 1024 * 1024 // 6))
"""
JUNIT_XSD = ROOT / ".venv" / "share" / "junit-10.xsd"  # scripts/setup.sh puts it there (GRADER_BROWSER=1)
REQUIRE_BROWSER = os.environ.get("GRADER_REQUIRE_BROWSER") == "1"


def _zip(tmp: Path, name: str, sources: dict[str, str]) -> Path:
    return write_zip(tmp / f"{name}.zip", {f"exercises/{k}.py": v for k, v in sources.items()})


def graded_reports(tmp: Path) -> dict[str, Path]:
    """{name: folder holding report.json and every rendering} for passing, failing and hostile."""
    reference = {p.stem: p.read_text(encoding="utf-8") for p in COURSE.solutions_dir.glob("ex0[1236]_*.py")}
    hostile_ex01 = reference["ex01_tensors"].replace("def standardize(", HOSTILE_PRINT + "\n\ndef standardize(", 1)
    zips = {
        "passing": _zip(tmp, "passing", reference),
        "failing": ROOT / "examples" / "submission.zip",
        "hostile": _zip(tmp, "hostile", {"ex01_tensors": hostile_ex01}),
    }
    folders = {}
    for name, archive in zips.items():
        out = tmp / name
        proc = subprocess.run([sys.executable, "-m", "grader", "run", str(archive), "--out", str(out), "--course",
                               str(ROOT), "-k", KEYWORD, "--student", f"{name}-student", "--format",
                               "json,html,md,gradescope,junit"], capture_output=True, text=True, timeout=900)
        assert (out / "report.json").exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
        folders[name] = out
    return folders


def load(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))
