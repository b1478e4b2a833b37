"""What exactly was graded with: a manifest of the course's content hashes.

The manifest lists every file of the course that can change a score (stubs, references, autotests
and their data, probes, data files, the lock of the grading environment) with its SHA-256. Its own
hash identifies the course content: ``grader export autograder`` writes it as ``manifest.json``,
and every report records it next to the tool's version, whether grading ran from the course's
repository or from an export (both give the same hash for the same content).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.catalog import Course

MANIFEST_FILE = "manifest.json"
LOCK_FILE = "requirements.lock"
CONTENT_PATTERNS = (
    LOCK_FILE,
    "exercises/*.py",
    "solutions/*.py",
    "autotests/*.py",
    "autotests/*.toml",
    "autotests/*.ini",
    "probes/*.py",
    "data/**/*",
)


class ManifestMismatch(RuntimeError):
    """The course folder no longer matches the manifest it was exported with."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_files(course: Course) -> list[str]:
    """Paths (relative, with ``/``) of the course's content files, sorted."""
    found: set[str] = set()
    for pattern in CONTENT_PATTERNS:
        for path in course.root.glob(pattern):
            if path.is_file() and "__pycache__" not in path.parts:
                found.add(path.relative_to(course.root).as_posix())
    return sorted(found)


@dataclass(frozen=True)
class Manifest:
    course_id: str
    course_version: str
    files: dict[str, str]  # relative path -> sha256

    @property
    def sha256(self) -> str:
        """The hash of the content: course id, version and every file's hash."""
        canonical = json.dumps({"course": self.course_id, "version": self.course_version, "files": self.files},
                               sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"course": self.course_id, "version": self.course_version, "sha256": self.sha256,
                "files": self.files}


def build_manifest(course: Course) -> Manifest:
    return Manifest(course.id, course.version, {name: sha256_file(course.root / name) for name in content_files(course)})


def course_manifest(course: Course) -> Manifest:
    """The manifest of ``course`` as it is now; for an export, checked against its ``manifest.json``.

    Raises ManifestMismatch when an exported course was changed after export, so a report never
    claims content it was not graded with.
    """
    current = build_manifest(course)
    recorded_path = course.root / MANIFEST_FILE
    if course.kind != "autograder" or not recorded_path.is_file():
        return current
    recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    expected = recorded.get("content", {}).get("files", {})
    changed = sorted(name for name in set(expected) | set(current.files)
                     if expected.get(name) != current.files.get(name))
    if changed:
        raise ManifestMismatch(
            f"the course at {course.root} changed after it was exported ({', '.join(changed[:5])}"
            f"{' …' if len(changed) > 5 else ''}): export it again or restore the files")
    return current
