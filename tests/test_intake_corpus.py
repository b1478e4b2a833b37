"""A corpus of archives that students really hand in: for each, what is graded, ignored and
refused, and why. Hostile archives stay refused whole (tests/test_ingest.py, tests/test_hostile.py)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import COURSE, ROOT

from grader.ingest import ArchiveRejected, extract_submission

IDS = [spec.id for spec in COURSE.exercises()]
OK = b"import torch\n\n\ndef f():\n    return 1\n"
OTHER = b"import torch\n\n\ndef f():\n    return 2\n"
GBK = "# -*- coding: gbk -*-\n# 张量练习（GBK 编码）\ndef f():\n    return '你好'\n".encode("gbk")
GBK_NO_LINE = "# 张量练习（GBK 编码，没有编码声明）\ndef f():\n    return '你好'\n".encode("gbk")
BOM = b"\xef\xbb\xbf# utf-8 with BOM\ndef f():\n    return 1\n"
CRLF = b"import torch\r\n\r\ndef f():\r\n    return 1\r\n"
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def inner_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("exercises/ex01_tensors.py", OK)
    return buffer.getvalue()


@dataclass
class Case:
    files: dict[str, bytes]
    graded: dict[str, str]  # archive path -> the module it becomes
    ignored: dict[str, str] = field(default_factory=dict)  # archive path -> words of the reason (English)
    refused: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # exercise -> words of its problem
    rejected: str | None = None  # the whole archive is refused with these words


CORPUS: dict[str, Case] = {
    "grader_pack": Case({"exercises/ex01_tensors.py": OK, "exercises/ex02_autograd.py": OK},
                        {"exercises/ex01_tensors.py": "ex01_tensors.py", "exercises/ex02_autograd.py": "ex02_autograd.py"}),
    "flat": Case({"ex01_tensors.py": OK}, {"ex01_tensors.py": "ex01_tensors.py"}),
    "powershell_backslashes": Case({"hw1\\exercises\\ex01_tensors.py": OK, "hw1\\exercises\\ex03_modules.py": OK},
                                   {"hw1/exercises/ex01_tensors.py": "ex01_tensors.py",
                                    "hw1/exercises/ex03_modules.py": "ex03_modules.py"}),
    "three_folders_deep": Case({"zhangsan_hw1/torch-grader/exercises/ex01_tensors.py": OK},
                               {"zhangsan_hw1/torch-grader/exercises/ex01_tensors.py": "ex01_tensors.py"}),
    "four_folders_deep": Case({"ex02_autograd.py": OK, "a/b/c/d/ex01_tensors.py": OK},
                              {"ex02_autograd.py": "ex02_autograd.py"},
                              ignored={"a/b/c/d/ex01_tensors.py": "folders deep"}),
    "macos_finder": Case({"hw/exercises/ex01_tensors.py": OK, "__MACOSX/hw/exercises/._ex01_tensors.py": b"\0\5",
                          "hw/.DS_Store": b"\0"},
                         {"hw/exercises/ex01_tensors.py": "ex01_tensors.py"},
                         ignored={"__MACOSX/hw/exercises/._ex01_tensors.py": "operating system",
                                  "hw/.DS_Store": "operating system"}),
    "near_miss_short_number": Case({"ex1_tensors.py": OK, "ex02_autograd.py": OK}, {"ex02_autograd.py": "ex02_autograd.py"},
                                   ignored={"ex1_tensors.py": "found `ex1_tensors.py`, expected `ex01_tensors.py`"}),
    "near_miss_capital": Case({"Ex02_autograd.py": OK, "ex01_tensors.py": OK}, {"ex01_tensors.py": "ex01_tensors.py"},
                              ignored={"Ex02_autograd.py": "found `Ex02_autograd.py`, expected `ex02_autograd.py`"}),
    "near_miss_browser_copy": Case({"exercises/ex03_modules (1).py": OK, "exercises/ex01_tensors.py": OK},
                                   {"exercises/ex01_tensors.py": "ex01_tensors.py"},
                                   ignored={"exercises/ex03_modules (1).py": "expected `ex03_modules.py`"}),
    "near_miss_singular": Case({"ex01_tensor.py": OK, "ex02_autograd.py": OK}, {"ex02_autograd.py": "ex02_autograd.py"},
                               ignored={"ex01_tensor.py": "found `ex01_tensor.py`, expected `ex01_tensors.py`"}),
    "near_miss_version": Case({"ex01_tensors_v2.py": OK, "ex02_autograd.py": OK}, {"ex02_autograd.py": "ex02_autograd.py"},
                              ignored={"ex01_tensors_v2.py": "expected `ex01_tensors.py`"}),
    "only_near_misses": Case({"ex1_tensors.py": OK}, {}, rejected="found `ex1_tensors.py`, expected `ex01_tensors.py`"),
    "notebook": Case({"ex01_tensors.ipynb": NOTEBOOK, "ex02_autograd.py": OK}, {"ex02_autograd.py": "ex02_autograd.py"},
                     ignored={"ex01_tensors.ipynb": "notebooks"}),
    "helper_module": Case({"exercises/ex01_tensors.py": b"import my_utils\n", "exercises/my_utils.py": OK},
                          {"exercises/ex01_tensors.py": "ex01_tensors.py", "exercises/my_utils.py": "my_utils.py"}),
    "helper_elsewhere": Case({"exercises/ex01_tensors.py": OK, "scratch/my_utils.py": OK},
                             {"exercises/ex01_tensors.py": "ex01_tensors.py"},
                             ignored={"scratch/my_utils.py": "not beside the exercise files"}),
    "helper_shadowing_libraries": Case(
        {"exercises/ex01_tensors.py": OK, "exercises/torch.py": OK, "exercises/numpy.py": OK,
         "exercises/json.py": OK, "exercises/grader_worker.py": OK, "exercises/sitecustomize.py": OK},
        {"exercises/ex01_tensors.py": "ex01_tensors.py"},
        refused={"exercises/torch.py": "shadow the module `torch`", "exercises/numpy.py": "`numpy`",
                 "exercises/json.py": "`json`", "exercises/grader_worker.py": "`grader_worker`",
                 "exercises/sitecustomize.py": "`sitecustomize`"}),
    "pth_file": Case({"exercises/ex01_tensors.py": OK, "exercises/evil.pth": b"import os\n"},
                     {"exercises/ex01_tensors.py": "ex01_tensors.py"}, refused={"exercises/evil.pth": ".pth"}),
    "gbk_with_coding_line": Case({"ex01_tensors.py": GBK}, {"ex01_tensors.py": "ex01_tensors.py"}),
    "gbk_without_coding_line": Case({"ex01_tensors.py": GBK_NO_LINE, "ex02_autograd.py": OK},
                                    {"ex02_autograd.py": "ex02_autograd.py"},
                                    refused={"ex01_tensors.py": "coding: gbk"},
                                    problems={"ex01_tensors": "cannot be read"}),
    "utf8_bom": Case({"ex01_tensors.py": BOM}, {"ex01_tensors.py": "ex01_tensors.py"}),
    "crlf": Case({"ex01_tensors.py": CRLF}, {"ex01_tensors.py": "ex01_tensors.py"}),
    "empty_file": Case({"ex01_tensors.py": b""}, {"ex01_tensors.py": "ex01_tensors.py"}),
    "only_comments": Case({"ex01_tensors.py": b"# TODO: start tomorrow\n# \xe6\x98\x8e\xe5\xa4\xa9\n"},
                          {"ex01_tensors.py": "ex01_tensors.py"}),
    "duplicate_identical": Case({"exercises/ex01_tensors.py": OK, "backup/ex01_tensors.py": OK},
                                {"backup/ex01_tensors.py": "ex01_tensors.py"},
                                ignored={"exercises/ex01_tensors.py": "same content"}),
    "duplicate_one_in_exercises": Case({"exercises/ex01_tensors.py": OK, "old/ex01_tensors.py": OTHER},
                                       {"exercises/ex01_tensors.py": "ex01_tensors.py"},
                                       ignored={"old/ex01_tensors.py": "the one in exercises/"}),
    "duplicate_ambiguous": Case({"a/ex01_tensors.py": OK, "b/ex01_tensors.py": OTHER, "ex02_autograd.py": OK},
                                {"ex02_autograd.py": "ex02_autograd.py"},
                                ignored={"a/ex01_tensors.py": "different versions", "b/ex01_tensors.py": "different versions"},
                                problems={"ex01_tensors": "keep only one"}),
    "nested_zip": Case({"ex02_autograd.py": OK, "submission.zip": inner_zip()}, {"ex02_autograd.py": "ex02_autograd.py"},
                       ignored={"submission.zip": "zip inside the zip"}),
    "notes_and_caches": Case({"exercises/ex01_tensors.py": OK, "README.md": b"# notes", "exercises/notes.txt": b"x",
                              "exercises/__pycache__/ex01_tensors.cpython-311.pyc": b"\0"},
                             {"exercises/ex01_tensors.py": "ex01_tensors.py"},
                             ignored={"README.md": "not a Python file", "exercises/notes.txt": "not a Python file",
                                      "exercises/__pycache__/ex01_tensors.cpython-311.pyc": "cache"}),
    "unknown_exercise": Case({"ex01_tensors.py": OK, "ex99_bonus.py": OK}, {"ex01_tensors.py": "ex01_tensors.py"},
                             ignored={"ex99_bonus.py": "not an exercise of this course"}),
    "zip_slip_stays_refused": Case({"ex01_tensors.py": OK, "../../evil.py": OK}, {}, rejected="'..'"),
}


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_archive(name: str, tmp_path: Path) -> None:
    case = CORPUS[name]
    zip_path = make_archive(tmp_path / f"{name}.zip", case.files)
    if case.rejected is not None:
        with pytest.raises(ArchiveRejected) as caught:
            extract_submission(zip_path, tmp_path / "out", exercises=IDS)
        assert case.rejected in caught.value.message.en and caught.value.message.zh
        return
    sub = extract_submission(zip_path, tmp_path / "out", exercises=IDS)
    assert len(sub.files) == len(case.files), "every file ends in exactly one list"
    assert {f.path: f.used_as for f in sub.listed("graded")} == case.graded
    for disposition, expected in (("ignored", case.ignored), ("refused", case.refused)):
        got = {f.path: f.reason for f in sub.listed(disposition)}
        assert set(got) == set(expected), (disposition, got)
        for path, words in expected.items():
            assert words in got[path].en, (path, got[path].en)
            assert got[path].zh and not any("\u4e00" <= ch <= "\u9fff" for ch in got[path].en)
    assert {ex: m.en for ex, m in sub.problems.items()}.keys() == case.problems.keys()
    for exercise, words in case.problems.items():
        assert words in sub.problems[exercise].en
    for used_as in case.graded.values():
        assert (sub.exercises_dir / used_as).is_file()
    assert sorted(p.name for p in sub.exercises_dir.iterdir()) == sorted(case.graded.values())


@pytest.mark.slow
def test_helpers_and_declared_encodings_grade_for_real(tmp_path: Path) -> None:
    """A helper module the exercise imports, a GBK file with its coding line and an unreadable
    one: graded end to end, the unreadable exercise alone fails, with the reason."""
    import json
    import subprocess
    import sys

    reference = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
    helper = ("def pairwise(a, b):\n"
              "    return ((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]).clamp_min(0)\n")
    ex01 = reference.replace("def pairwise_sq_dists(", "def _unused_pairwise(") + (
        "\n\nfrom my_utils import pairwise\n\n\ndef pairwise_sq_dists(a, b):\n    return pairwise(a, b)\n")
    ex02 = ("# -*- coding: gbk -*-\n# 自动微分\n" + (COURSE.solutions_dir / "ex02_autograd.py").read_text(encoding="utf-8")
            ).encode("gbk")
    zip_path = make_archive(tmp_path / "s.zip", {
        "hw\\exercises\\ex01_tensors.py": ex01.encode(), "hw\\exercises\\my_utils.py": helper.encode(),
        "hw\\exercises\\ex02_autograd.py": ex02,
        "hw\\exercises\\ex03_modules.py": "# 没有编码声明的 GBK 文件\nx = 1\n".encode("gbk"),
    })
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "grader", "run", str(zip_path), "--sandbox", "process", "--out", str(out),
                           "--course", str(ROOT), "-k", "pairwise or swish or MLP or mlp"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    by_id = {e["id"]: e for e in report["exercises"]}
    assert by_id["ex01_tensors"]["score"] == by_id["ex01_tensors"]["max_score"] > 0
    assert by_id["ex02_autograd"]["score"] == by_id["ex02_autograd"]["max_score"] > 0
    assert by_id["ex03_modules"]["score"] == 0 and "cannot be read" in by_id["ex03_modules"]["problem"]["en"]
    assert {t["status"] for t in by_id["ex03_modules"]["tests"]} == {"import_error"}
    assert "my_utils.py" in proc.stdout and "refused files" in proc.stdout
