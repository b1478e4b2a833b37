"""``grader export autograder DIR``: everything a grading host needs, with a manifest of hashes.

The course content (references, all tests, probes, data, the lock) is copied as is; the runner
image recipe and the tool's wheel come along so the host builds and grades with exactly what was
exported. ``setup.sh`` and ``run_autograder`` at the top make the folder (zipped with ``--zip``)
a Gradescope autograder as it is. ``manifest.json`` lists every file's SHA-256; ``grader run`` on this folder verifies
it and records its hash in every report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from grader import __version__
from grader.catalog import Course
from grader.kit.common import ExportError, ExportResult, fresh_target, render_template, write_course_marker
from grader.kit.wheel import build_tool_wheel
from grader.manifest import LOCK_FILE, MANIFEST_FILE, build_manifest, content_files, sha256_file
from grader.sandbox.image import IMAGE_DIR


GRADESCOPE_FILES = {"run_autograder": "run_autograder.j2", "setup.sh": "setup.sh.j2"}


def export_autograder_course(course: Course, target: Path, *, make_zip: bool = False) -> ExportResult:
    if course.kind == "student":
        raise ExportError(f"{course.root} is a student kit: it has no references or hidden tests to export")
    missing = [p for p in (course.solutions_dir, course.autotests_dir, course.probes_dir, course.root / LOCK_FILE)
               if not p.exists()]
    if missing:
        raise ExportError(f"the course lacks {', '.join(str(p) for p in missing)}: cannot grade without it")
    target = fresh_target(target)
    try:
        return _build(course, target, make_zip)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _build(course: Course, target: Path, make_zip: bool) -> ExportResult:
    for name in content_files(course):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(course.root / name, target / name)
    write_course_marker(course, target, "autograder")
    shutil.copytree(IMAGE_DIR, target / "image", ignore=shutil.ignore_patterns("__pycache__"))
    wheel = build_tool_wheel(target / "tool")
    manifest = build_manifest(course)
    extras = {p.relative_to(target).as_posix(): sha256_file(p)
              for folder in (target / "image", target / "tool") for p in sorted(folder.rglob("*")) if p.is_file()}
    (target / MANIFEST_FILE).write_text(json.dumps(
        {"tool_version": __version__, "content": manifest.to_json(), "recipe_and_tool": extras},
        indent=1, sort_keys=True) + "\n", encoding="utf-8")
    render_template("README.autograder.md.j2", target / "README.md", course, tool_version=__version__,
                    manifest_sha256=manifest.sha256, wheel=wheel.name)
    for name, template in GRADESCOPE_FILES.items():  # at the top, where Gradescope looks for them
        render_template(template, target / name, course, tool_version=__version__, wheel=wheel.name)
        (target / name).chmod(0o755)
    result = ExportResult(target, "autograder", manifest_sha256=manifest.sha256)
    if make_zip:  # Gradescope's upload: the folder's contents at the zip's top level
        result.zip_path = Path(shutil.make_archive(str(target), "zip", root_dir=target))
    return result
