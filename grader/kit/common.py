"""What both exports share: a fresh target folder, the course marker, templates, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.catalog import COURSE_MARKER, Course


class ExportError(RuntimeError):
    """The export cannot be made; the message says why and nothing was left behind."""


@dataclass
class ExportResult:
    folder: Path
    kind: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    zip_path: Path | None = None
    manifest_sha256: str | None = None

    def summary(self) -> str:
        files = sum(1 for p in self.folder.rglob("*") if p.is_file())
        lines = [f"{self.kind} export: {self.folder} ({files} files)"]
        lines += [f"  {ex}: {c['public']} public tests, {c['hidden']} hidden (not shipped)" for ex, c in self.counts.items()]
        if self.manifest_sha256:
            lines.append(f"  manifest sha256 {self.manifest_sha256}")
        if self.zip_path:
            lines.append(f"  zip: {self.zip_path}")
        return "\n".join(lines)


def fresh_target(target: Path) -> Path:
    target = Path(target).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} exists and is not empty: choose a new folder")
    target.mkdir(parents=True, exist_ok=True)
    return target


def write_course_marker(course: Course, target: Path, kind: str) -> None:
    import tomli_w

    data = {"id": course.id, "version": course.version, "kind": kind,
            "title": {"zh": course.title.zh, "en": course.title.en}}
    (target / COURSE_MARKER).write_text(f"# The course marker of a {kind} export of {course.id}.\n" + tomli_w.dumps(data),
                                        encoding="utf-8")


def render_template(name: str, out: Path, course: Course, **values: Any) -> None:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("grader.kit", "templates"), keep_trailing_newline=True,
                             autoescape=False, undefined=jinja2.StrictUndefined)
    text = env.get_template(name).render(course_id=course.id, version=course.version, title_zh=course.title.zh,
                                         title_en=course.title.en, **values)
    out.write_text(text, encoding="utf-8")
