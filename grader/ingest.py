"""Check a student's ``submission.zip`` before anything of it reaches the disk.

A submission archive is untrusted input: it may hold paths that escape the destination
(``../x``, ``/etc/x``), symlinks or devices, names that collide on a case-insensitive file
system, headers that lie about sizes, or a zip bomb. Any of these rejects the whole archive with
a bilingual message and leaves the destination empty. Every entry is judged from the central
directory first; only then are the chosen files streamed into a fresh directory, counting the
bytes actually decompressed.

Within those limits intake takes what students really hand in: names with backslashes (zips
from Windows), the exercise files at any depth up to three folders, source files in any encoding
Python accepts (a coding line, a BOM), and the student's own helper modules beside the exercises.
Every file ends in exactly one of three lists, each with its reason: **graded** (an exercise or a
helper module), **ignored** (not needed: notes, metadata, a near-miss name said as "found X,
expected Y"), **refused** (unsafe or unreadable: a module that would shadow a library, a file
Python cannot decode; such a file costs only its own exercise).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
import tokenize
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

from grader.i18n import Msg

__all__ = [
    "EXERCISE_FILE",
    "ArchiveRejected",
    "IngestLimits",
    "Submission",
    "extract_submission",
    "pack_directory",
]

# re.ASCII: ``\d`` must not accept other scripts' digits (``ex٠١_a.py``).
EXERCISE_FILE = re.compile(r"^ex\d\d_[a-z0-9_]+\.py$", re.ASCII)

EXERCISES = "exercises"
MAX_DEPTH = 3  # folders above an exercise file: zhangsan_hw1/torch-grader/exercises/ex01_tensors.py
_MACOS_JUNK = "__MACOSX"  # Finder's "Compress" adds this folder next to the real one
_OS_JUNK = {".DS_Store", "Thumbs.db", "desktop.ini"}
_STARTUP_HOOKS = {"sitecustomize", "usercustomize", "conftest"}  # run by Python or pytest on their own
_WORKER_NAMES = {"grader", "grader_worker"}
_RATIO_FLOOR = 64 * 1024  # small members compress well for innocent reasons
_CHUNK = 64 * 1024
_EOCD_SEARCH = 22 + 0xFFFF  # the record plus the longest archive comment
_FILE_MODE = 0o644
_DIR_MODE = 0o755
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DRIVE = re.compile(r"^[A-Za-z]:")
# What the zip module raises for damaged or unreadable data; all mean "corrupt archive".
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
            NotImplementedError, RuntimeError, ValueError)


class ArchiveRejected(Exception):
    """The archive cannot be graded at all; ``message`` tells the student what to fix."""

    def __init__(self, message: Msg) -> None:
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class IngestLimits:
    """Bounds that keep a hostile or careless archive from filling the disk or memory."""

    max_files: int = 200
    max_file_bytes: int = 2 * 1024**2  # uncompressed, per member
    max_total_bytes: int = 20 * 1024**2  # uncompressed, all members
    max_ratio: float = 200.0  # per member, only above 64 KiB uncompressed


GRADED, IGNORED, REFUSED = "graded", "ignored", "refused"


@dataclass(frozen=True)
class FileOutcome:
    """What intake did with one file of the archive."""

    path: str  # its name in the archive, with ``/`` separators
    disposition: str  # graded, ignored or refused
    reason: Msg
    used_as: str | None = None  # graded: the module name it was extracted as ("ex01_tensors.py")


@dataclass(frozen=True)
class Submission:
    """Where the accepted files now live, and what happened to every file of the archive."""

    root: Path
    exercises_dir: Path
    modules: dict[str, Path]  # exercise id ("ex01_tensors") -> its .py file
    files: list[FileOutcome] = field(default_factory=list)
    problems: dict[str, Msg] = field(default_factory=dict)  # exercise -> why it cannot be graded (unreadable…)

    def listed(self, disposition: str) -> list[FileOutcome]:
        return [f for f in self.files if f.disposition == disposition]

    @property
    def ignored(self) -> list[str]:
        return [f.path for f in self.files if f.disposition != GRADED]


def _reject(zh: str, en: str) -> ArchiveRejected:
    return ArchiveRejected(Msg(zh, en))


def _check_name(info: zipfile.ZipInfo) -> list[str]:
    """Split an entry name into components, refusing anything that could leave ``dest``.

    Backslashes are separators (PowerShell's Compress-Archive writes them); the checks apply to
    the normalised name, so ``..\\x`` and ``C:\\x`` are refused like ``../x`` and ``/x``.
    """
    raw = info.orig_filename
    name = raw.replace("\\", "/")
    if "\x00" in raw or not name.strip("/"):
        raise _reject(f"压缩包中的条目名无效：{raw!r}。请用 `grader pack` 重新打包。",
                      f"invalid entry name {raw!r} in the archive; re-create it with `grader pack`.")
    if name.startswith("/") or _DRIVE.match(name):
        raise _reject(f"条目使用了绝对路径：{raw!r}。请只打包相对路径（`grader pack`）。",
                      f"entry {raw!r} has an absolute path; zip relative paths only (`grader pack`).")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _reject(f"条目路径包含“..”：{raw!r}。请用 `grader pack` 重新打包。",
                      f"entry {raw!r} contains a '..' path component; re-create it with `grader pack`.")
    return parts


def _check_kind(info: zipfile.ZipInfo) -> None:
    """Only plain, unencrypted files and folders: links and devices are never legitimate here."""
    if info.flag_bits & 0x1:
        raise _reject(f"条目 {info.filename!r} 已加密。请不要为压缩包设置密码。",
                      f"entry {info.filename!r} is encrypted; do not password-protect the zip.")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == 0:  # no Unix mode recorded (e.g. made on Windows)
        return
    allowed = {stat.S_IFDIR, stat.S_IFREG} if info.is_dir() else {stat.S_IFREG}
    if kind not in allowed:
        zh, en = ("符号链接", "symlink") if stat.S_ISLNK(mode) else ("特殊文件", "special file")
        raise _reject(f"条目 {info.filename!r} 是{zh}，不是普通文件。请只打包 .py 文件。",
                      f"entry {info.filename!r} is a {en}, not a regular file; zip plain .py files only.")


def _check_sizes(infos: list[zipfile.ZipInfo], limits: IngestLimits) -> None:
    """Refuse by the declared sizes before reading a byte (the stream is counted again later)."""
    total = 0
    for info in infos:
        name, size = info.filename, info.file_size
        if size > limits.max_file_bytes:
            raise _reject(
                f"文件 {name!r} 过大（{size} 字节，上限 {limits.max_file_bytes}）。请删除它后重新打包。",
                f"file {name!r} is too large ({size} bytes, limit {limits.max_file_bytes}); "
                "remove it and re-pack.")
        if size > _RATIO_FLOOR and size > limits.max_ratio * max(info.compress_size, 1):
            raise _reject(f"文件 {name!r} 的压缩比异常（疑似压缩炸弹）。请用 `grader pack` 重新打包。",
                          f"file {name!r} has a suspicious compression ratio (zip bomb?); "
                          "re-create the zip with `grader pack`.")
        total += size
    if total > limits.max_total_bytes:
        raise _reject(f"压缩包解压后共 {total} 字节，超过上限 {limits.max_total_bytes}。"
                      "请只提交 exercises/ 下的 .py 文件。",
                      f"the archive expands to {total} bytes, over the {limits.max_total_bytes} limit; "
                      "submit only the exercises/*.py files.")


def _check_unique(entries: list[tuple[zipfile.ZipInfo, list[str]]]) -> None:
    """Duplicates and case-only differences would overwrite each other on some file systems."""
    seen: dict[str, str] = {}
    for _, parts in entries:
        name = "/".join(parts)
        key = name.casefold()
        if key in seen:
            same = seen[key] == name
            raise _reject(
                f"压缩包中有重复条目：{name!r}" + ("" if same else f" 与 {seen[key]!r}（仅大小写不同）")
                + "。请用 `grader pack` 重新打包。",
                f"duplicate entry {name!r} in the archive"
                + ("" if same else f" (differs from {seen[key]!r} only in case)")
                + "; re-create it with `grader pack`.")
        seen[key] = name


def _exercise_near_miss(stem: str, expected: Sequence[str]) -> str | None:
    """The exercise a misnamed file was meant to be (``ex1_tensors``, ``Ex02_autograd``,
    ``ex03_modules (1)``, ``ex01_tensor``, ``ex01_tensors_v2``), or None."""
    if not expected:
        return None
    key = stem.casefold().strip()
    key = re.sub(r"\s*\(\d+\)$|[ _-]*(copy|副本|final|v\d+|\d+)$", "", key)
    key = re.sub(r"^ex(\d)(?!\d)", r"ex0\1", key).replace(" ", "_").replace("-", "_")
    if key in expected:
        return key
    number = re.match(r"^ex(\d\d)", key)
    same_number = [e for e in expected if number and e.startswith(f"ex{number.group(1)}_")]
    close = difflib.get_close_matches(key, list(expected), n=1, cutoff=0.75)
    return (same_number or close or [None])[0]


def _shadowed_module(stem: str) -> str | None:
    """The module a helper named ``stem`` would hide or hijack, if any."""
    if stem in _STARTUP_HOOKS:
        return stem
    if stem in sys.stdlib_module_names or stem in _WORKER_NAMES:
        return stem
    try:
        return stem if importlib.util.find_spec(stem) is not None else None
    except (ImportError, ValueError):
        return None


@dataclass
class _Plan:
    exercises: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    helpers: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)  # by archive path
    problems: dict[str, Msg] = field(default_factory=dict)


def _ignore(plan: _Plan, path: str, zh: str, en: str) -> None:
    plan.outcomes[path] = FileOutcome(path, IGNORED, Msg(zh, en))


def _refuse(plan: _Plan, path: str, zh: str, en: str) -> None:
    plan.outcomes[path] = FileOutcome(path, REFUSED, Msg(zh, en))


def _classify(entries: list[tuple[zipfile.ZipInfo, list[str]]], expected: Sequence[str] | None) -> _Plan:
    """Decide, from names alone, what becomes of every file; exercises first, then helpers beside them."""
    plan = _Plan()
    candidates: dict[str, list[tuple[zipfile.ZipInfo, list[str]]]] = {}
    python_files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    known = list(expected or [])
    for info, parts in entries:
        if info.is_dir():
            continue
        path, name, folders = "/".join(parts), parts[-1], parts[:-1]
        suffix = Path(name).suffix.casefold()
        if _MACOS_JUNK in folders or name.startswith("._") or name in _OS_JUNK:
            _ignore(plan, path, "操作系统生成的元数据文件", "metadata written by the operating system")
        elif "__pycache__" in folders or suffix in (".pyc", ".pyo"):
            _ignore(plan, path, "Python 编译缓存", "compiled Python cache")
        elif suffix == ".pth":
            _refuse(plan, path, "*.pth 文件会改变 Python 的启动方式，不允许提交",
                    "a *.pth file changes how Python starts; it is not accepted")
        elif suffix == ".zip":
            _ignore(plan, path, "不会打开压缩包里的压缩包：请只提交一个由 `grader pack` 生成的压缩包",
                    "a zip inside the zip is not opened: hand in one zip made by `grader pack`")
        elif len(folders) > MAX_DEPTH and suffix in (".py", ".ipynb"):
            _ignore(plan, path, f"位于超过 {MAX_DEPTH} 层的文件夹中，未查找", f"more than {MAX_DEPTH} folders deep: not looked at")
        elif suffix == ".ipynb":
            meant = _exercise_near_miss(Path(name).stem, known)
            hint = f"（请提交 {meant}.py）" if meant else ""
            hint_en = f" (hand in {meant}.py)" if meant else ""
            _ignore(plan, path, f"笔记本文件不通过这里评分：请提交 .py 练习文件，笔记本走 `nbgrader` 流程{hint}",
                    f"notebooks are not graded here: hand in the .py exercise file; notebooks go through "
                    f"the nbgrader path{hint_en}")
        elif suffix != ".py":
            _ignore(plan, path, "不是 Python 文件", "not a Python file")
        elif EXERCISE_FILE.fullmatch(name) and (expected is None or name[:-3] in known):
            candidates.setdefault(name[:-3], []).append((info, parts))
        else:
            python_files.append((info, parts))
    for exercise, found in candidates.items():
        _choose_exercise(plan, exercise, found)
    exercise_folders = {tuple(parts[:-1]) for info, parts in entries
                        if plan.outcomes.get("/".join(parts), FileOutcome("", "", Msg("", ""))).disposition == GRADED}
    for info, parts in python_files:
        path, stem = "/".join(parts), Path(parts[-1]).stem
        meant = _exercise_near_miss(stem, known)
        if meant is not None:
            _ignore(plan, path, f"找到 `{parts[-1]}`，应为 `{meant}.py`：文件名不对，未评分",
                    f"found `{parts[-1]}`, expected `{meant}.py`: not graded under this name")
        elif EXERCISE_FILE.fullmatch(parts[-1]):
            _ignore(plan, path, "不是本课程的练习", "not an exercise of this course")
        elif re.match(r"ex\d", stem, re.ASCII | re.IGNORECASE):
            _ignore(plan, path, "看起来是练习文件，但文件名不符合 `exNN_名称.py`，未评分",
                    "looks like an exercise file, but the name is not `exNN_name.py`: not graded")
        elif tuple(parts[:-1]) not in exercise_folders:
            _ignore(plan, path, "不在练习文件旁边，练习无法导入它", "not beside the exercise files, so they cannot import it")
        elif not (stem.isascii() and stem.isidentifier()):
            _ignore(plan, path, "文件名不是合法的模块名，无法导入", "the name is not a valid module name, so it cannot be imported")
        elif (shadowed := _shadowed_module(stem)) is not None:
            _refuse(plan, path, f"会遮蔽模块 `{shadowed}`（库或评测程序自身的模块），不允许作为辅助模块",
                    f"would shadow the module `{shadowed}` (a library's or the grader's own); not accepted as a helper")
        elif stem in plan.helpers:
            _ignore(plan, path, f"另一个同名辅助模块 `{stem}.py` 已被采用", f"another helper named `{stem}.py` was taken")
        else:
            plan.helpers[stem] = info
            plan.outcomes[path] = FileOutcome(path, GRADED, Msg("辅助模块，练习可以导入", "helper module the exercises can import"),
                                              used_as=f"{stem}.py")
    return plan


def _choose_exercise(plan: _Plan, exercise: str, found: list[tuple[zipfile.ZipInfo, list[str]]]) -> None:
    """One candidate per exercise: the only one; else identical copies; else the one in ``exercises/``."""
    found = sorted(found, key=lambda item: (len(item[1]), "/".join(item[1])))
    paths = ["/".join(parts) for _, parts in found]
    same = len({(info.CRC, info.file_size) for info, _ in found}) == 1
    in_exercises = [item for item in found if len(item[1]) > 1 and item[1][-2] == EXERCISES]
    chosen = found[0] if same else in_exercises[0] if len(in_exercises) == 1 else None
    for (info, parts), path in zip(found, paths):
        if chosen is not None and info is chosen[0]:
            plan.exercises[exercise] = info
            plan.outcomes[path] = FileOutcome(path, GRADED, Msg("练习文件", "exercise file"), used_as=f"{exercise}.py")
        elif chosen is not None:
            other = "/".join(chosen[1])
            if same:
                _ignore(plan, path, f"与已评分的 `{other}` 内容相同", f"same content as `{other}`, which was graded")
            else:
                _ignore(plan, path, f"另一个版本；评分的是 exercises/ 中的 `{other}`",
                        f"another version; the one in exercises/, `{other}`, was graded")
        else:
            _ignore(plan, path, f"{exercise}.py 有多个不同版本（{'、'.join(paths)}），无法确定评哪一个：请只保留一个",
                    f"{exercise}.py exists in different versions ({', '.join(paths)}); which one to grade is "
                    "unclear: keep only one")
    if chosen is None:
        plan.problems[exercise] = Msg(f"压缩包中有多个不同版本的 {exercise}.py（{'、'.join(paths)}）：请只保留一个后重新提交",
                                      f"the archive holds different versions of {exercise}.py ({', '.join(paths)}): "
                                      "keep only one and hand in again")


def _prepare_dest(dest: Path) -> None:
    """A non-empty destination is the grader's mistake, not the student's: not ArchiveRejected."""
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(f"extraction destination must be absent or empty: {dest}")
    else:
        dest.mkdir(mode=_DIR_MODE, parents=True)
    dest.chmod(_DIR_MODE)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dir_fd: int, filename: str,
                  file_budget: int, total_budget: int) -> int:
    """Stream one member to disk, counting real bytes; returns how many were written."""
    written = 0
    fd = os.open(filename, _WRITE_FLAGS, _FILE_MODE, dir_fd=dir_fd)
    try:
        os.fchmod(fd, _FILE_MODE)
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > file_budget or written > total_budget:
                    raise _reject(
                        f"文件 {info.filename!r} 解压后超过大小上限。请删除多余内容后重新打包。",
                        f"file {info.filename!r} expands beyond the size limit; "
                        "shrink it and re-pack.")
                os.write(fd, chunk)
    finally:
        os.close(fd)
    return written


def unreadable_source(data: bytes) -> str | None:
    """Why Python could not read ``data`` as source (its own rules: BOM, coding line, else UTF-8), or None."""
    lines = iter(data.splitlines(keepends=True))
    try:
        encoding, _ = tokenize.detect_encoding(lambda: next(lines, b""))
        data.decode(encoding)  # "utf-8-sig" when there is a BOM: it drops the mark itself
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return str(exc).splitlines()[0][:200]
    return None


def extract_submission(zip_path: Path, dest: Path, limits: IngestLimits = IngestLimits(),
                       exercises: Sequence[str] | None = None) -> Submission:
    """Validate the whole archive, then extract its exercise files and helper modules into ``dest/exercises``.

    ``exercises``: the course's exercise ids (near-miss names are reported against them); None
    accepts any ``exNN_*.py``. Raises :class:`ArchiveRejected` for any archive that cannot be
    graded; ``dest`` is then left empty. ``dest`` must be absent or an empty directory.
    """
    _prepare_dest(dest)
    ex_dir = dest / EXERCISES
    name = Path(zip_path).name
    try:
        try:
            fp = open(zip_path, "rb")
        except OSError as exc:
            raise _reject(f"无法读取 {name}（{exc.strerror}）。",
                          f"cannot read {name} ({exc.strerror}).") from None
        with fp:
            _check_container(fp, limits)
            try:
                zf = zipfile.ZipFile(fp)
            except _CORRUPT as exc:
                raise _reject(f"{name} 不是有效的压缩包（{exc}）。请用 `grader pack` 打包。",
                              f"{name} is not a valid zip file ({exc}); "
                              "create it with `grader pack`.") from None
            with zf:
                return _extract(zf, dest, ex_dir, limits, exercises)
    except BaseException:
        shutil.rmtree(ex_dir, ignore_errors=True)
        raise


def _too_many(count: int, limits: IngestLimits) -> ArchiveRejected:
    return _reject(f"压缩包有 {count} 个条目，超过上限 {limits.max_files}。"
                   "请只提交练习文件（`grader pack`）。",
                   f"the archive has {count} entries, over the {limits.max_files} limit; "
                   "submit only the exercise files (`grader pack`).")


def _check_container(fp: BinaryIO, limits: IngestLimits) -> None:
    """Cheap checks before ``zipfile`` parses the whole central directory into memory."""
    size = fp.seek(0, os.SEEK_END)
    # Compressed data hardly exceeds the uncompressed limit; 4 KiB of headers per entry is lavish.
    cap = limits.max_total_bytes * 101 // 100 + limits.max_files * 4096 + _EOCD_SEARCH
    if size > cap:
        raise _reject(f"压缩包文件过大（{size} 字节，上限 {cap}）。请只提交练习文件（`grader pack`）。",
                      f"the zip file is too large ({size} bytes, limit {cap}); "
                      "submit only the exercise files (`grader pack`).")
    fp.seek(max(0, size - _EOCD_SEARCH))
    tail = fp.read()
    at = tail.rfind(b"PK\x05\x06")  # end-of-central-directory record
    if at >= 0 and at + 22 <= len(tail):
        (count,) = struct.unpack_from("<H", tail, at + 10)
        if limits.max_files < count < 0xFFFF:  # 0xFFFF: ZIP64 holds the count; zipfile will tell
            raise _too_many(count, limits)
    fp.seek(0)


def _extract(zf: zipfile.ZipFile, dest: Path, ex_dir: Path, limits: IngestLimits,
             expected: Sequence[str] | None) -> Submission:
    """All checks on metadata first, then the streaming copy; nothing is trusted until read."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise _too_many(len(infos), limits)
    for info in infos:
        _check_kind(info)
    entries = [(info, _check_name(info)) for info in infos]
    _check_unique(entries)
    _check_sizes(infos, limits)
    plan = _classify(entries, expected)
    if not plan.exercises and not plan.problems:
        misses = [f.reason for f in plan.outcomes.values() if f.reason.en.startswith("found `")]
        zh_more = "；".join(m.zh for m in misses)
        en_more = "; ".join(m.en for m in misses)
        raise _reject("未找到练习文件 exercises/exNN_*.py" + (f"（{zh_more}）" if misses else "") + "；请运行 `grader pack` 打包。",
                      "no exercise file exercises/exNN_*.py found" + (f" ({en_more})" if misses else "")
                      + "; run `grader pack`.")
    ex_dir.mkdir(mode=_DIR_MODE)
    ex_dir.chmod(_DIR_MODE)
    modules: dict[str, Path] = {}
    remaining = limits.max_total_bytes
    dir_fd = os.open(ex_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        chosen = [(f"{ex_id}.py", info, ex_id) for ex_id, info in plan.exercises.items()]
        chosen += [(f"{stem}.py", info, None) for stem, info in plan.helpers.items()]
        for filename, info, ex_id in chosen:
            try:
                remaining -= _write_member(zf, info, dir_fd, filename, limits.max_file_bytes, remaining)
            except _CORRUPT as exc:
                raise _reject(f"压缩包已损坏，无法读取 {info.filename!r}（{exc}）。请重新打包。",
                              f"the archive is corrupt: cannot read {info.filename!r} ({exc}); "
                              "re-create it with `grader pack`.") from None
            path = "/".join(_check_name(info))
            why = unreadable_source((ex_dir / filename).read_bytes())
            if why is not None:
                os.unlink(filename, dir_fd=dir_fd)
                reason = Msg(
                    f"Python 无法读取此文件（{why}）：请另存为 UTF-8，或在第一行写明编码，如 `# -*- coding: gbk -*-`",
                    f"Python cannot read this file ({why}): save it as UTF-8, or declare its encoding on the first "
                    "line, e.g. `# -*- coding: gbk -*-`")
                plan.outcomes[path] = FileOutcome(path, REFUSED, reason)
                if ex_id is not None:
                    plan.problems[ex_id] = Msg(f"无法读取 {path}：", f"{path} cannot be read: ") + reason
                continue
            if ex_id is not None:
                modules[ex_id] = ex_dir / filename
    finally:
        os.close(dir_fd)
    files = [plan.outcomes["/".join(parts)] for info, parts in entries if not info.is_dir()]
    return Submission(root=dest, exercises_dir=ex_dir, modules=dict(sorted(modules.items())), files=files,
                      problems=plan.problems)


def exercise_files(source: Path) -> list[Path]:
    """The ``exNN_*.py`` files of an ``exercises/`` folder (or of ``source/exercises``), sorted."""
    folder = source / EXERCISES if (source / EXERCISES).is_dir() else source
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if EXERCISE_FILE.fullmatch(p.name) and p.is_file())


def helper_files(source: Path) -> list[Path]:
    """The student's own modules beside the exercise files (``my_utils.py``), sorted."""
    folder = source / EXERCISES if (source / EXERCISES).is_dir() else source
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.py") if p.is_file() and not EXERCISE_FILE.fullmatch(p.name)
                  and p.stem.isascii() and p.stem.isidentifier())


def pack_directory(source: Path, out: Path) -> Path:
    """Zip the ``exNN_*.py`` files of ``source`` (an ``exercises/`` folder or its parent) and the
    helper modules beside them.

    Entries are ``exercises/<name>.py`` with fixed timestamps and modes, so packing the same
    files twice gives the same bytes and the archive always passes the layout checks.
    """
    files = exercise_files(Path(source))
    if not files:
        raise _reject(f"在 {source} 中没有找到 exNN_*.py 练习文件。请在含有 exercises/ 的目录中运行。",
                      f"no exNN_*.py exercise file found in {source}; "
                      "run this in the folder that holds exercises/.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files + helper_files(Path(source)):
            info = zipfile.ZipInfo(f"{EXERCISES}/{path.name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out
