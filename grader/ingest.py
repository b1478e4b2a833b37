"""Check a student's ``submission.zip`` before anything of it reaches the disk.

A submission archive is untrusted input: it may hold paths that escape the destination
(``../x``, ``/etc/x``), symlinks or devices, names that collide on a case-insensitive file
system, headers that lie about sizes, or a zip bomb. Every entry is judged from the central
directory first; only then are the exercise files, and nothing else, streamed into a fresh
directory, counting the bytes actually decompressed. Any problem rejects the whole archive
with a bilingual message and leaves the destination empty.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
_MACOS_JUNK = "__MACOSX"  # Finder's "Compress" adds this folder next to the real one
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


@dataclass(frozen=True)
class Submission:
    """Where the accepted exercise files now live, and what was left out."""

    root: Path
    exercises_dir: Path
    modules: dict[str, Path]  # exercise id ("ex01_tensors") -> its .py file
    ignored: list[str]  # archive entries that are not exercise files


def _reject(zh: str, en: str) -> ArchiveRejected:
    return ArchiveRejected(Msg(zh, en))


def _check_name(info: zipfile.ZipInfo) -> list[str]:
    """Split an entry name into components, refusing anything that could leave ``dest``."""
    raw = info.orig_filename
    if "\x00" in raw or not raw.strip("/"):
        raise _reject(f"压缩包中的条目名无效：{raw!r}。请用 `grader pack` 重新打包。",
                      f"invalid entry name {raw!r} in the archive; re-create it with `grader pack`.")
    if "\\" in raw:
        raise _reject(f"条目名包含反斜杠：{raw!r}。请用 `grader pack` 重新打包。",
                      f"entry name {raw!r} contains a backslash; re-create the zip with `grader pack`.")
    if raw.startswith("/") or _DRIVE.match(raw):
        raise _reject(f"条目使用了绝对路径：{raw!r}。请只打包相对路径（`grader pack`）。",
                      f"entry {raw!r} has an absolute path; zip relative paths only (`grader pack`).")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
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


def _check_unique(infos: list[zipfile.ZipInfo]) -> None:
    """Duplicates and case-only differences would overwrite each other on some file systems."""
    seen: dict[str, str] = {}
    for info in infos:
        name = info.filename.rstrip("/")
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


def _wrapper_depth(entries: list[tuple[zipfile.ZipInfo, list[str]]]) -> int:
    """1 when every entry sits in one top folder other than ``exercises/`` (a zipped folder)."""
    real = [(info, parts) for info, parts in entries if parts[0] != _MACOS_JUNK]
    tops = {parts[0] for _, parts in real}
    if len(tops) != 1 or tops == {EXERCISES}:
        return 0
    inside = all(len(parts) > 1 or info.is_dir() for info, parts in real)
    return 1 if inside else 0


def _select(infos: list[zipfile.ZipInfo]) -> tuple[dict[str, zipfile.ZipInfo], list[str]]:
    """Map exercise ids to their entries; everything else is reported as ignored."""
    entries = [(info, _check_name(info)) for info in infos]
    depth = _wrapper_depth(entries)
    chosen: dict[str, zipfile.ZipInfo] = {}
    ignored: list[str] = []
    for info, parts in entries:
        if info.is_dir():
            continue
        rel = parts[depth:] if parts[0] != _MACOS_JUNK else parts
        name = rel[-1]
        layout_ok = len(rel) == 1 or (len(rel) == 2 and rel[0] == EXERCISES)
        if not (layout_ok and EXERCISE_FILE.fullmatch(name)):
            ignored.append(info.filename)
            continue
        ex_id = name[: -len(".py")]
        if ex_id in chosen:
            raise _reject(
                f"练习 {ex_id} 出现了两次：{chosen[ex_id].filename!r} 和 {info.filename!r}。请只保留一份。",
                f"exercise {ex_id} appears twice: {chosen[ex_id].filename!r} and {info.filename!r}; "
                "keep only one.")
        chosen[ex_id] = info
    return chosen, ignored


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
    decoder = codecs.getincrementaldecoder("utf-8")()
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
                decoder.decode(chunk)
                os.write(fd, chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _reject(f"练习文件 {info.filename!r} 不是 UTF-8 文本。请用 UTF-8 编码保存后重新打包。",
                      f"exercise file {info.filename!r} is not UTF-8 text; "
                      "save it as UTF-8 and re-pack.") from None
    finally:
        os.close(fd)
    return written


def extract_submission(zip_path: Path, dest: Path,
                       limits: IngestLimits = IngestLimits()) -> Submission:
    """Validate the whole archive, then extract only its exercise files into ``dest/exercises``.

    Raises :class:`ArchiveRejected` for any archive that cannot be graded; ``dest`` is then
    left empty. ``dest`` must be absent or an empty directory.
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
                raise _reject(f"{name} 不是有效的 zip 文件（{exc}）。请用 `grader pack` 打包。",
                              f"{name} is not a valid zip file ({exc}); "
                              "create it with `grader pack`.") from None
            with zf:
                modules, ignored = _extract(zf, ex_dir, limits)
    except BaseException:
        shutil.rmtree(ex_dir, ignore_errors=True)
        raise
    return Submission(root=dest, exercises_dir=ex_dir, modules=modules, ignored=ignored)


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


def _extract(zf: zipfile.ZipFile, ex_dir: Path,
             limits: IngestLimits) -> tuple[dict[str, Path], list[str]]:
    """All checks on metadata first, then the streaming copy; nothing is trusted until read."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise _too_many(len(infos), limits)
    for info in infos:
        _check_kind(info)
    _check_unique(infos)
    chosen, ignored = _select(infos)
    _check_sizes(infos, limits)
    if not chosen:
        raise _reject("未找到 exercises/exNN_*.py 文件；请运行 `grader pack` 打包。",
                      "no exercises/exNN_*.py found; run `grader pack`.")
    ex_dir.mkdir(mode=_DIR_MODE)
    ex_dir.chmod(_DIR_MODE)
    modules: dict[str, Path] = {}
    remaining = limits.max_total_bytes
    dir_fd = os.open(ex_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for ex_id, info in chosen.items():
            filename = f"{ex_id}.py"
            try:
                remaining -= _write_member(zf, info, dir_fd, filename,
                                           limits.max_file_bytes, remaining)
            except _CORRUPT as exc:
                raise _reject(f"压缩包已损坏，无法读取 {info.filename!r}（{exc}）。请重新打包。",
                              f"the archive is corrupt: cannot read {info.filename!r} ({exc}); "
                              "re-create it with `grader pack`.") from None
            modules[ex_id] = ex_dir / filename
    finally:
        os.close(dir_fd)
    return dict(sorted(modules.items())), ignored


def exercise_files(source: Path) -> list[Path]:
    """The ``exNN_*.py`` files of an ``exercises/`` folder (or of ``source/exercises``), sorted."""
    folder = source / EXERCISES if (source / EXERCISES).is_dir() else source
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if EXERCISE_FILE.fullmatch(p.name) and p.is_file())


def pack_directory(source: Path, out: Path) -> Path:
    """Zip the ``exNN_*.py`` files of ``source`` (an ``exercises/`` folder or its parent).

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
        for path in files:
            info = zipfile.ZipInfo(f"{EXERCISES}/{path.name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out
