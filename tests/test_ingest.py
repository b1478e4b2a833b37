"""Hostile and careless submission archives are refused before they touch the disk."""

from __future__ import annotations

import io
import stat
import struct
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from grader import ingest
from grader.i18n import Msg
from grader.ingest import (
    EXERCISE_FILE,
    ArchiveRejected,
    IngestLimits,
    Submission,
    extract_submission,
    pack_directory,
)

GOOD = b"import torch\n\n\ndef add(a, b):\n    return a + b\n"


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]],
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point of some tests
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def special(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


def files_under(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*")] if dest.exists() else []


def assert_rejected(zip_path: Path, dest: Path, *words: str, entry: str | None = None,
                    limits: IngestLimits = IngestLimits()) -> ArchiveRejected:
    """``words`` must appear in the English text; ``entry`` (a name, quoted) in both languages."""
    with pytest.raises(ArchiveRejected) as caught:
        extract_submission(zip_path, dest, limits)
    exc = caught.value
    assert isinstance(exc.message, Msg) and exc.message.zh and exc.message.en
    assert str(exc) == str(exc.message)
    for word in words:
        assert word in exc.message.en, exc.message
    if entry is not None:
        assert repr(entry) in exc.message.en and repr(entry) in exc.message.zh, exc.message
    assert files_under(dest) == [], "a rejected archive must leave dest empty"
    return exc


# --- accepted layouts ------------------------------------------------------------------------

@pytest.mark.parametrize("names", [
    ["exercises/", "exercises/ex01_a.py", "exercises/ex02_b_c.py"],
    ["ex01_a.py", "ex02_b_c.py"],
    ["submission/", "submission/exercises/", "submission/exercises/ex01_a.py",
     "submission/exercises/ex02_b_c.py"],
    ["mywork/ex01_a.py", "mywork/ex02_b_c.py"],
    ["hw/exercises/ex01_a.py", "hw/exercises/ex02_b_c.py",
     "__MACOSX/hw/exercises/._ex01_a.py"],
])
def test_accepted_layouts(tmp_path: Path, names: list[str]) -> None:
    entries = [(n, b"" if n.endswith("/") else GOOD + n.encode()) for n in names]
    dest = tmp_path / "out"
    sub = extract_submission(make_zip(tmp_path / "s.zip", entries), dest)
    assert isinstance(sub, Submission)
    assert sub.root == dest and sub.exercises_dir == dest / "exercises"
    assert sorted(sub.modules) == ["ex01_a", "ex02_b_c"]
    for ex_id, path in sub.modules.items():
        assert path == dest / "exercises" / f"{ex_id}.py"
        source = next(n for n in names if n.endswith(f"/{ex_id}.py") or n == f"{ex_id}.py")
        assert path.read_bytes() == GOOD + source.encode()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(sub.exercises_dir.stat().st_mode) == 0o755
    assert sorted(p.name for p in files_under(dest)) == ["ex01_a.py", "ex02_b_c.py", "exercises"]
    assert sub.ignored == [n for n in names if "__MACOSX" in n]


def test_existing_empty_dest_is_fine_and_non_empty_dest_is_refused(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert extract_submission(zpath, empty).modules["ex01_a"].read_bytes() == GOOD
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_submission(zpath, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


def test_non_exercise_entries_are_ignored_or_refused_not_extracted(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("exercises/ex09_inner.py", GOOD)
    ignored = ["exercises/README.md", "exercises/__pycache__/ex01_a.cpython-311.pyc", "exercises/nested.zip",
               "a/b/c/d/ex03_deep.py", "exercises/ex4_short.py", "exercises/ex05_Upper.py",
               "exercises/ex\u0660\u0661_arabic_digits.py"]
    refused = ["exercises/torch.py", "exercises/sitecustomize.py", "exercises/conftest.py", "x.pth"]
    others = ["sitecustomize.py"]  # not beside the exercises: ignored, never importable
    entries = [("exercises/ex01_a.py", GOOD)]
    entries += [(n, inner.getvalue() if n.endswith(".zip") else b"import os\n") for n in ignored + refused + others]
    dest = tmp_path / "out"
    sub = extract_submission(make_zip(tmp_path / "s.zip", entries), dest)
    assert list(sub.modules) == ["ex01_a"]
    assert sorted(f.path for f in sub.listed("ignored")) == sorted(ignored + others)
    assert sorted(f.path for f in sub.listed("refused")) == sorted(refused)
    assert all(f.reason.zh and f.reason.en for f in sub.files)
    assert sorted(p.relative_to(dest).as_posix() for p in files_under(dest)) == [
        "exercises", "exercises/ex01_a.py"]


def test_exercise_pattern_is_ascii_and_anchored() -> None:
    assert EXERCISE_FILE.match("ex01_tensors.py")
    assert not EXERCISE_FILE.match("ex\u0660\u0661_a.py")
    assert not EXERCISE_FILE.fullmatch("ex01_a.py\n")


# --- not a usable archive --------------------------------------------------------------------

def test_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "submission.zip"
    bogus.write_text("def add(a, b): return a + b\n")
    assert_rejected(bogus, tmp_path / "out", "submission.zip", "grader pack")


def test_missing_file(tmp_path: Path) -> None:
    assert_rejected(tmp_path / "nope.zip", tmp_path / "out", "nope.zip")


def test_empty_zip(tmp_path: Path) -> None:
    assert_rejected(make_zip(tmp_path / "s.zip", []), tmp_path / "out",
                    "exercises/exNN_*.py", "grader pack")


def test_only_readme(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("README.md", b"hi"), ("exercises/", b"")])
    assert_rejected(zpath, tmp_path / "out", "exercises/exNN_*.py", "grader pack")


def test_corrupt_data_fails_crc(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD)],
                     compression=zipfile.ZIP_STORED)
    raw = bytearray(zpath.read_bytes())
    at = raw.index(GOOD)
    raw[at] ^= 0xFF
    zpath.write_bytes(bytes(raw))
    assert_rejected(zpath, tmp_path / "out", "corrupt", entry="exercises/ex01_a.py")


def test_header_that_understates_size_is_caught(tmp_path: Path) -> None:
    data = b"".join(b"x = %d\n" % i for i in range(20_000))  # ~150 KB, declared as 1000
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", data)])
    raw = bytearray(zpath.read_bytes())
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, 1000)
    struct.pack_into("<I", raw, central + 24, 1000)
    zpath.write_bytes(bytes(raw))
    assert zipfile.ZipFile(zpath).getinfo("exercises/ex01_a.py").file_size == 1000
    assert_rejected(zpath, tmp_path / "out", "corrupt", entry="exercises/ex01_a.py")


# --- paths that would escape dest ------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../evil.py", "/abs.py", "exercises/../../x.py", "exercises/..", "C:/x.py",
])
def test_escaping_paths(tmp_path: Path, name: str) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD), (name, GOOD)])
    assert_rejected(zpath, tmp_path / "out", entry=name)
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "x.py").exists()


def test_backslash_names_are_folders(tmp_path: Path) -> None:
    """PowerShell's Compress-Archive writes ``\\`` between folders: they are normalised to ``/``."""
    zpath = make_zip(tmp_path / "s.zip", [("hw1\\exercises\\ex01_a.py", GOOD)])
    sub = extract_submission(zpath, tmp_path / "out")
    assert list(sub.modules) == ["ex01_a"] and sub.files[0].path == "hw1/exercises/ex01_a.py"


@pytest.mark.parametrize("name,word", [("C:\\x.py", "absolute"), ("\\\\server\\x.py", "absolute"),
                                       ("..\\evil.py", "'..'")])
def test_backslash_names_that_escape(tmp_path: Path, name: str, word: str) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex02_b.py", GOOD), (name, GOOD)])
    assert_rejected(zpath, tmp_path / "out", word, entry=name)


# --- entry kinds -----------------------------------------------------------------------------

def test_symlink_entry(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [
        ("exercises/ex02_b.py", GOOD), (special("exercises/ex01_a.py", stat.S_IFLNK), b"/etc/passwd")])
    exc = assert_rejected(zpath, tmp_path / "out", entry="exercises/ex01_a.py")
    assert "symlink" in exc.message.en


def test_symlink_is_refused_even_when_it_would_be_ignored(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [
        ("exercises/ex02_b.py", GOOD), (special("link", stat.S_IFLNK), b"../../")])
    assert_rejected(zpath, tmp_path / "out", "symlink", entry="link")


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK])
def test_device_and_other_special_entries(tmp_path: Path, kind: int) -> None:
    zpath = make_zip(tmp_path / "s.zip", [
        ("exercises/ex02_b.py", GOOD), (special("exercises/ex01_a.py", kind), b"")])
    exc = assert_rejected(zpath, tmp_path / "out", entry="exercises/ex01_a.py")
    assert "special file" in exc.message.en


def test_encrypted_entry(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD)])
    raw = bytearray(zpath.read_bytes())  # zipfile cannot write encrypted data: set the flag bit
    raw[raw.index(b"PK\x03\x04") + 6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    zpath.write_bytes(bytes(raw))
    assert zipfile.ZipFile(zpath).getinfo("exercises/ex01_a.py").flag_bits & 0x1
    exc = assert_rejected(zpath, tmp_path / "out", entry="exercises/ex01_a.py")
    assert "encrypted" in exc.message.en


# --- names that clash ------------------------------------------------------------------------

def test_duplicate_names(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD),
                                          ("exercises/ex01_a.py", b"import os\n")])
    exc = assert_rejected(zpath, tmp_path / "out", entry="exercises/ex01_a.py")
    assert "duplicate" in exc.message.en


@pytest.mark.parametrize("other", ["Exercises/ex01_a.py", "exercises/EX01_A.py"])
def test_case_collision(tmp_path: Path, other: str) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD), (other, GOOD)])
    exc = assert_rejected(zpath, tmp_path / "out", repr("exercises/ex01_a.py"), entry=other)
    assert "case" in exc.message.en


def test_same_exercise_in_two_places(tmp_path: Path) -> None:
    """Identical copies: one is graded. Different copies: the one in exercises/ is graded."""
    same = extract_submission(make_zip(tmp_path / "a.zip", [("exercises/ex01_a.py", GOOD), ("ex01_a.py", GOOD)]),
                              tmp_path / "a")
    assert [f.path for f in same.listed("graded")] == ["ex01_a.py"]
    assert "same content" in same.listed("ignored")[0].reason.en
    other = extract_submission(make_zip(tmp_path / "b.zip", [("exercises/ex01_a.py", GOOD), ("old/ex01_a.py", b"x = 1\n")]),
                               tmp_path / "b")
    assert [f.path for f in other.listed("graded")] == ["exercises/ex01_a.py"]
    assert other.modules["ex01_a"].read_bytes() == GOOD


# --- sizes and counts ------------------------------------------------------------------------

def test_too_many_entries_is_rejected_quickly(tmp_path: Path) -> None:
    zpath = tmp_path / "many.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("exercises/ex01_a.py", GOOD)
        for i in range(20_000):
            zf.writestr(f"junk/{i}.txt", b"")
    start = time.monotonic()
    assert_rejected(zpath, tmp_path / "out", "20001", "200")
    assert time.monotonic() - start < 5


def test_entry_count_is_checked_even_when_end_record_hides_it(tmp_path: Path) -> None:
    entries = [(f"junk/{i}.txt", b"") for i in range(10)] + [("exercises/ex01_a.py", GOOD)]
    zpath = make_zip(tmp_path / "s.zip", entries)
    raw = bytearray(zpath.read_bytes())
    end = raw.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", raw, end + 8, 0xFFFF, 0xFFFF)  # "see ZIP64", which is absent
    zpath.write_bytes(bytes(raw))
    assert_rejected(zpath, tmp_path / "out", "11 entries", limits=IngestLimits(max_files=5))


def test_oversized_archive_file_is_refused_before_parsing(tmp_path: Path) -> None:
    noise = bytes((i * 7919) % 251 for i in range(200_000))
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD), ("data.bin", noise)],
                     compression=zipfile.ZIP_STORED)
    limits = IngestLimits(max_files=5, max_total_bytes=1000)
    assert_rejected(zpath, tmp_path / "out", "zip file is too large", limits=limits)


def test_zip_bomb(tmp_path: Path) -> None:
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("exercises/ex01_a.py", b"\0" * (50 * 1024**2))
    assert zpath.stat().st_size < 200 * 1024
    assert_rejected(zpath, tmp_path / "out", "too large", entry="exercises/ex01_a.py")


def test_suspicious_ratio_below_size_limit(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD),
                                          ("exercises/ex02_b.py", b"#" * (1024**2))])
    assert_rejected(zpath, tmp_path / "out", "compression ratio", entry="exercises/ex02_b.py")


def test_small_members_are_exempt_from_ratio(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", b"#" * (60 * 1024))])
    assert extract_submission(zpath, tmp_path / "out").modules["ex01_a"].stat().st_size == 60 * 1024


def test_total_size_limit(tmp_path: Path) -> None:
    entries = [(f"exercises/ex0{i}_a.py", GOOD * 30) for i in range(1, 5)]
    zpath = make_zip(tmp_path / "s.zip", entries)
    limits = IngestLimits(max_total_bytes=len(GOOD) * 100)
    assert_rejected(zpath, tmp_path / "out", str(len(GOOD) * 120), limits=limits)


def test_ignored_members_count_toward_size_limits(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD),
                                          ("data/big.bin", bytes(range(256)) * 2000)])
    assert_rejected(zpath, tmp_path / "out", entry="data/big.bin",
                    limits=IngestLimits(max_file_bytes=1000))


def test_streaming_count_does_not_trust_declared_size(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the header checks were fooled; the byte count while streaming must still stop it.
    monkeypatch.setattr(ingest, "_check_sizes", lambda infos, limits: None)
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD),
                                          ("exercises/ex02_b.py", b"y = 2\n" * 50_000)])
    limits = IngestLimits(max_file_bytes=100_000)
    assert_rejected(zpath, tmp_path / "out", "size limit", entry="exercises/ex02_b.py",
                    limits=limits)


def test_streaming_count_enforces_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_check_sizes", lambda infos, limits: None)
    entries = [(f"exercises/ex0{i}_a.py", b"z = 3\n" * 10_000) for i in range(1, 4)]
    limits = IngestLimits(max_total_bytes=150_000)
    assert_rejected(make_zip(tmp_path / "s.zip", entries), tmp_path / "out", "size limit",
                    limits=limits)


# --- content ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"x = '\xff\xfe'\n", "x = 'é'\n".encode("latin-1"),
                                  b"".join(b"v%d = %d\n" % (i, i * 7919) for i in range(20_000)) + b"\xe4\xb8"],
                         ids=["invalid-bytes", "latin-1", "truncated-at-end"])
def test_unreadable_exercise_fails_only_itself(tmp_path: Path, data: bytes) -> None:
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", GOOD),
                                          ("exercises/ex02_b.py", data)])
    sub = extract_submission(zpath, tmp_path / "out")
    assert list(sub.modules) == ["ex01_a"]
    refused = sub.listed("refused")
    assert [f.path for f in refused] == ["exercises/ex02_b.py"] and "UTF-8" in refused[0].reason.en
    assert "coding" in sub.problems["ex02_b"].en and "编码" in sub.problems["ex02_b"].zh
    assert not (tmp_path / "out" / "exercises" / "ex02_b.py").exists()


def test_declared_encodings_and_bom_are_read_as_python_does(tmp_path: Path) -> None:
    gbk = "# -*- coding: gbk -*-\n# 张量\ndef f():\n    return '你好'\n".encode("gbk")
    bom = b"\xef\xbb\xbf" + "def g():\r\n    return '好'\r\n".encode()
    sub = extract_submission(make_zip(tmp_path / "s.zip", [("ex01_a.py", gbk), ("ex02_b.py", bom)]), tmp_path / "out")
    assert list(sub.modules) == ["ex01_a", "ex02_b"] and not sub.problems
    assert sub.modules["ex01_a"].read_bytes() == gbk  # Python reads it as it was written


def test_utf8_with_chinese_is_fine(tmp_path: Path) -> None:
    text = "# 张量练习\ndef f():\n    return '你好'\n".encode()
    zpath = make_zip(tmp_path / "s.zip", [("exercises/ex01_a.py", text)])
    assert extract_submission(zpath, tmp_path / "out").modules["ex01_a"].read_bytes() == text


# --- pack_directory --------------------------------------------------------------------------

def _student_tree(root: Path) -> dict[str, bytes]:
    ex = root / "exercises"
    (ex / "__pycache__").mkdir(parents=True)
    files = {"ex01_tensors.py": GOOD, "ex02_autograd.py": "# 梯度\nx = 1\n".encode()}
    for name, data in files.items():
        (ex / name).write_bytes(data)
    (ex / "helper.py").write_text("pass\n")
    (ex / "README.md").write_text("notes\n")
    (ex / "__pycache__" / "ex01_tensors.cpython-311.pyc").write_bytes(b"\0")
    return files


@pytest.mark.parametrize("from_exercises_dir", [False, True])
def test_pack_round_trip(tmp_path: Path, from_exercises_dir: bool) -> None:
    files = _student_tree(tmp_path / "work")
    source = tmp_path / "work" / "exercises" if from_exercises_dir else tmp_path / "work"
    out = tmp_path / "dist" / "submission.zip"
    assert pack_directory(source, out) == out
    assert zipfile.ZipFile(out).namelist() == ["exercises/ex01_tensors.py", "exercises/ex02_autograd.py",
                                               "exercises/helper.py"]  # the student's helper module too
    sub = extract_submission(out, tmp_path / "graded")
    assert sub.listed("ignored") == [] and sub.listed("refused") == []
    assert {f"{k}.py": p.read_bytes() for k, p in sub.modules.items()} == files
    assert (sub.exercises_dir / "helper.py").read_text() == "pass\n"


def test_pack_is_deterministic(tmp_path: Path) -> None:
    _student_tree(tmp_path / "work")
    a = pack_directory(tmp_path / "work", tmp_path / "a.zip")
    b = pack_directory(tmp_path / "work", tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()


def test_pack_without_exercises(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.py").write_text("pass\n")
    for source in (tmp_path / "work", tmp_path / "missing"):
        with pytest.raises(ArchiveRejected) as caught:
            pack_directory(source, tmp_path / "out.zip")
        assert str(source) in caught.value.message.en and caught.value.message.zh
    assert not (tmp_path / "out.zip").exists()
