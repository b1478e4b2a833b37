"""Which submissions a batch grades, and whose they are.

Instructors hand ``grader batch`` what their LMS gave them. Recognised, per INPUT:

- a ``.zip`` file: one submission; the student id is the file name without ``.zip``;
- a CSV file with a header naming a student column (``student``, ``student_id``, ``id``) and a
  file column (``file``, ``path``, ``submission``); relative paths are read from the CSV's folder;
- a folder, read by the first layout that fits it:
  - **Moodle** "Download all submissions", with or without "in folders": entries named
    ``Full Name_123456_assignsubmission_file_…``; the student id is the participant number;
  - **Canvas** "Download submissions": files named ``name_12345_67890_file.zip`` (``name_LATE_…``
    for late ones); the student id is the Canvas user id;
  - a folder per student (``DIR/<student>/…``), each holding one ``.zip`` or the ``exNN_*.py``
    files themselves (packed here, byte-for-byte reproducibly);
  - a folder of zips (``DIR/<student>.zip``).

A student whose files cannot be told apart (two zips, nothing usable) is not guessed at: the
item carries a ``problem`` and the batch records a refused report that says why.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from grader.i18n import Msg
from grader.ingest import ArchiveRejected, exercise_files, pack_directory

MOODLE_ENTRY = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_[a-z]+_?(?P<rest>.*)$")
CANVAS_FILE = re.compile(r"^(?P<name>[a-z0-9]+?)(?:_LATE)?_(?P<id>\d+)_(?P<sub>\d+)_(?P<rest>.+)$")
STUDENT_COLUMNS = ("student", "student_id", "id")
FILE_COLUMNS = ("file", "path", "submission")
_SKIP = {".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX"}


class BatchInputError(ValueError):
    """INPUT cannot be read as submissions; the message says what was expected."""


@dataclass(frozen=True)
class BatchItem:
    student: str  # the id grades.csv and report.json carry
    path: Path | None  # the zip to grade; None when ``problem`` says why there is none
    name: str = ""  # the student's name where the LMS layout gives one
    source: str = ""  # which layout the item was read from
    problem: Msg | None = None


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name not in _SKIP and not p.name.startswith("."))


def _from_files(student: str, files: list[Path], packed_dir: Path, source: str, name: str = "") -> BatchItem:
    """One student's item from what they uploaded: one zip, or exercise files to pack."""
    zips = [p for p in files if p.is_file() and p.suffix.lower() == ".zip"]
    if len(zips) == 1:
        return BatchItem(student, zips[0], name, source)
    if len(zips) > 1:
        listed = ", ".join(p.name for p in zips)
        return BatchItem(student, None, name, source, Msg(f"交了多个压缩包（{listed}），无法确定评哪一个",
                                                         f"several zip files were handed in ({listed}); which "
                                                         "one to grade is not clear"))
    folders = [p for p in files if p.is_dir()] + sorted({p.parent for p in files if p.is_file()})
    for folder in folders:
        if exercise_files(folder):
            try:
                return BatchItem(student, pack_directory(folder, packed_dir / f"{output_folder_name(student)}.zip"), name, source)
            except ArchiveRejected as rejected:
                return BatchItem(student, None, name, source, rejected.message)
    return BatchItem(student, None, name, source, Msg("没有找到压缩包或 `exNN_*.py` 练习文件",
                                                     "no zip file and no exNN_*.py exercise file was handed in"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "student"


def _moodle(entries: list[Path], packed_dir: Path) -> list[BatchItem] | None:
    matches = [(p, MOODLE_ENTRY.match(p.name)) for p in entries]
    if not matches or not all(m for _, m in matches):
        return None
    grouped: dict[str, tuple[str, list[Path]]] = {}
    for path, match in matches:
        assert match is not None
        name, files = grouped.setdefault(match["id"], (match["name"], []))
        files.extend(_visible(path) if path.is_dir() else [path])
    return [_from_files(sid, files, packed_dir, "moodle", name) for sid, (name, files) in grouped.items()]


def _canvas(entries: list[Path], packed_dir: Path) -> list[BatchItem] | None:
    matches = [(p, CANVAS_FILE.match(p.name)) for p in entries]
    if not matches or not all(m and p.is_file() for p, m in matches):
        return None
    grouped: dict[str, tuple[str, list[Path]]] = {}
    for path, match in matches:
        assert match is not None
        grouped.setdefault(match["id"], (match["name"], []))[1].append(path)
    return [_from_files(sid, files, packed_dir, "canvas", name) for sid, (name, files) in grouped.items()]


def _folder(folder: Path, packed_dir: Path) -> list[BatchItem]:
    entries = _visible(folder)
    for layout in (_moodle, _canvas):
        found = layout(entries, packed_dir)
        if found is not None:
            return found
    items = []
    for entry in entries:
        if entry.is_dir():
            items.append(_from_files(entry.name, _visible(entry), packed_dir, "folder per student"))
        elif entry.suffix.lower() == ".zip":
            items.append(BatchItem(entry.stem, entry, source="folder of zips"))
    return items


def _csv(path: Path) -> list[BatchItem]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        student_col = next((c for c in STUDENT_COLUMNS if c in header), None)
        file_col = next((c for c in FILE_COLUMNS if c in header), None)
        if student_col is None or file_col is None:
            raise BatchInputError(f"{path}: the CSV needs a header with a student column ({', '.join(STUDENT_COLUMNS)}) "
                                  f"and a file column ({', '.join(FILE_COLUMNS)}); found {header}")
        items = []
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not row.get(student_col):
                continue
            target = Path(row[file_col])
            target = target if target.is_absolute() else path.parent / target
            if target.is_file():
                items.append(BatchItem(row[student_col], target, source="csv"))
            else:
                items.append(BatchItem(row[student_col], None, source="csv",
                                       problem=Msg(f"找不到提交文件 {row[file_col]}", f"the file {row[file_col]} is missing")))
        return items


def discover(inputs: list[Path], packed_dir: Path) -> list[BatchItem]:
    """Every submission named by ``inputs``, one item per student; raises BatchInputError on a
    path that does not exist or a student id that appears twice."""
    items: list[BatchItem] = []
    for path in inputs:
        if path.is_dir():
            items.extend(_folder(path, packed_dir))
        elif path.is_file() and path.suffix.lower() == ".csv":
            items.extend(_csv(path))
        elif path.is_file() and path.suffix.lower() == ".zip":
            items.append(BatchItem(path.stem, path, source="zip"))
        else:
            raise BatchInputError(f"{path}: not a folder, a .zip or a .csv")
    counts = Counter(item.student for item in items)
    twice = sorted(student for student, count in counts.items() if count > 1)
    if twice:
        raise BatchInputError(f"these student ids appear more than once: {', '.join(twice)}; "
                              "give each submission once (or a CSV that names who is who)")
    return items


def output_folder_name(student: str) -> str:
    """A folder name for a student id on any file system (ids keep their own text in the reports)."""
    slug = _slug(student)
    if slug == student:
        return slug
    import hashlib

    return f"{slug}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
