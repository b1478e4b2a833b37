"""``grader batch``: the layouts it reads, the folder it keeps, and what survives a kill.

The end-to-end tests run the real command in a subprocess, in real sandboxes (bubblewrap), kill it
with real signals mid-run and run it again; the Ray test starts a real local Ray cluster and kills
one of its worker processes mid-task.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader.batch.inputs import BatchInputError, discover, output_folder_name
from grader.batch.job import submission_seed
from grader.batch.store import BatchSummary, grades_csv
from gpu_runner.devices import parse_nvidia_smi_list
from support import ROOT, descendants, require_backend, write_zip

SOLUTION = (ROOT / "solutions" / "ex01_tensors.py").read_text()
STUB = (ROOT / "exercises" / "ex01_tensors.py").read_text()
KEYWORD = "ex01 and shape"


# -- inputs -------------------------------------------------------------------------------------------
def _zip(path: Path, source: str = SOLUTION) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_zip(path, {"exercises/ex01_tensors.py": source})


def test_folder_of_zips_and_a_folder_per_student(tmp_path: Path) -> None:
    _zip(tmp_path / "in" / "ann.zip")
    (tmp_path / "in" / ".DS_Store").write_text("")
    items = discover([tmp_path / "in"], tmp_path / "packed")
    assert [(i.student, i.source) for i in items] == [("ann", "folder of zips")]

    per_student = tmp_path / "class"
    _zip(per_student / "li.lei" / "hw.zip")
    (per_student / "han_mei" / "exercises").mkdir(parents=True)
    (per_student / "han_mei" / "exercises" / "ex01_tensors.py").write_text(SOLUTION)
    _zip(per_student / "two" / "a.zip")
    _zip(per_student / "two" / "b.zip")
    (per_student / "empty").mkdir()
    items = {i.student: i for i in discover([per_student], tmp_path / "packed")}
    assert items["li.lei"].path == per_student / "li.lei" / "hw.zip"
    packed = items["han_mei"].path
    assert packed is not None and zipfile.ZipFile(packed).namelist() == ["exercises/ex01_tensors.py"]
    again = discover([per_student], tmp_path / "packed2")
    assert next(i.path for i in again if i.student == "han_mei").read_bytes() == packed.read_bytes()  # reproducible
    assert items["two"].path is None and "several zip files" in items["two"].problem.en
    assert items["empty"].path is None and "no zip file" in items["empty"].problem.en


def test_moodle_and_canvas_downloads(tmp_path: Path) -> None:
    moodle = tmp_path / "moodle"
    _zip(moodle / "Zhang San_123456_assignsubmission_file_" / "submission.zip")
    _zip(moodle / "Li Si_654321_assignsubmission_file_" / "hw1.zip")
    items = {i.student: i for i in discover([moodle], tmp_path / "p")}
    assert set(items) == {"123456", "654321"} and items["123456"].name == "Zhang San"
    assert {i.source for i in items.values()} == {"moodle"}

    flat = tmp_path / "moodle-flat"
    _zip(flat / "Wang Wu_777_assignsubmission_file_submission.zip")
    assert [(i.student, i.name) for i in discover([flat], tmp_path / "p")] == [("777", "Wang Wu")]

    canvas = tmp_path / "canvas"
    _zip(canvas / "zhangsan_1001_55501_submission.zip")
    _zip(canvas / "lisi_LATE_1002_55502_submission-1.zip")
    items = {i.student: i for i in discover([canvas], tmp_path / "p")}
    assert set(items) == {"1001", "1002"} and items["1002"].name == "lisi" and items["1001"].source == "canvas"


def test_csv_and_its_errors(tmp_path: Path) -> None:
    _zip(tmp_path / "files" / "a.zip")
    (tmp_path / "list.csv").write_text("Student_ID,File\ns1,files/a.zip\ns2,files/missing.zip\n,\n")
    items = {i.student: i for i in discover([tmp_path / "list.csv"], tmp_path / "p")}
    assert items["s1"].path == tmp_path / "files" / "a.zip"
    assert items["s2"].path is None and "missing" in items["s2"].problem.en
    (tmp_path / "bad.csv").write_text("who,what\nx,y\n")
    with pytest.raises(BatchInputError, match="student column"):
        discover([tmp_path / "bad.csv"], tmp_path / "p")
    with pytest.raises(BatchInputError, match="more than once"):
        discover([tmp_path / "files" / "a.zip", tmp_path / "files"], tmp_path / "p")
    with pytest.raises(BatchInputError, match="not a folder"):
        discover([tmp_path / "nothing-here"], tmp_path / "p")


def test_folder_names_and_seeds() -> None:
    assert output_folder_name("s123") == "s123"
    odd = output_folder_name("张 三/../x")
    assert "/" not in odd and odd != output_folder_name("张 四/../x")
    assert submission_seed("secret", "a" * 64) == submission_seed("secret", "a" * 64)
    assert submission_seed("secret", "a" * 64) != submission_seed("other", "a" * 64)


def test_grades_table_and_summary() -> None:
    report = {"status": "graded", "complete": True, "score": 7, "max_score": 10,
              "exercises": [{"id": "ex01_tensors", "score": 7, "max_score": 10,
                             "tests": [{"status": "timed_out"}, {"status": "passed"}]}]}
    refused = {"status": "refused", "complete": True, "score": 0, "max_score": 10, "exercises": []}
    rows = list(csv.reader(grades_csv([("a", "", "a", report), ("b", "", "b", refused), ("c", "", "c", None)],
                                      ["ex01_tensors", "ex02_autograd"]).splitlines()))
    assert rows[0][:5] == ["student", "name", "status", "score", "max_score"]
    assert rows[1][2:7] == ["graded", "7", "10", "7", ""] and rows[2][2] == "refused" and rows[3][2] == "pending"
    summary = BatchSummary("local", 2, None, "now", total=3, graded_now=2, durations_s=[3.0, 5.0], wall_s=10)
    data = summary.to_json([report, refused, None], "later")
    assert data["counts"]["graded"] == 1 and data["counts"]["pending"] == 1
    assert data["failures_by_cause"] == {"refused archive": 1, "timed_out": 1}
    assert data["durations_s"]["median"] == 4.0 and data["durations_s"]["per_hour"] == 720.0


def test_gpu_slots_from_nvidia_smi() -> None:
    listing = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)
  MIG 3g.20gb     Device  0: (UUID: MIG-1111)
  MIG 3g.20gb     Device  1: (UUID: MIG-2222)
"""
    slots = parse_nvidia_smi_list(listing)
    assert [d.slot for d in slots] == ["0", "MIG-1111", "MIG-2222"]
    assert slots[1].mig and "A100" in slots[1].name


def test_runner_keeps_going_past_grader_errors_and_stops_on_a_host_fault(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's bookkeeping with a scripted executor: a grader error leaves that submission
    pending (and the batch going), a host fault stops it, and neither writes a report."""
    from grader.batch import runner
    from grader.batch.inputs import BatchItem
    from grader.batch.job import Settings
    from grader.catalog import find_course

    items = [BatchItem(f"s{i}", _zip(tmp_path / "in" / f"s{i}.zip", SOLUTION + f"# {i}\n")) for i in range(4)]
    course = find_course(ROOT)
    fake = {"status": "graded", "complete": True, "score": 1, "max_score": 1, "exercises": [],
            "submission": {}, "course": {}, "tool_version": ""}

    def scripted(todo, settings, workers, executor, address, gpus):
        outcomes = [{"report": {**fake, "submission": {"sha256": todo[0].sha256}}}, {"error": "boom"},
                    {"host_fault": "engine gone"}, {"report": fake}]
        for job, outcome in zip(todo, outcomes):
            yield job, outcome, 1.0

    monkeypatch.setattr(runner, "_execute", scripted)
    settings = Settings(course_root=str(ROOT), sandbox="process")
    with pytest.raises(runner.BatchStopped, match="engine gone"):
        runner.run_batch(items, course, tmp_path / "out", settings=settings, workers=1, gpus=None)
    summary = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert summary["counts"]["graded"] == 1 and summary["counts"]["pending"] == 3
    assert summary["grader_errors"] == [{"student": "s1", "error": "boom"}] and "engine gone" in summary["stopped"]
    assert len(_reports(tmp_path / "out")) == 1

    def nothing_left(todo, settings, workers, executor, address, gpus):
        assert [job.student for job in todo] == ["s1", "s2", "s3"]  # s0 is done: not graded again
        for job in todo:
            yield job, {"report": {**fake, "submission": {"sha256": job.sha256}}}, 1.0

    monkeypatch.setattr(runner, "_execute", nothing_left)
    done = runner.run_batch(items, course, tmp_path / "out", settings=settings, workers=1, gpus=None)
    assert done.reused == 1 and done.graded_now == 3


# -- end to end: the real command, killed and resumed ---------------------------------------------------
def _class(folder: Path, count: int) -> Path:
    """``count`` submissions: correct, unfinished, a broken archive, and variants of them."""
    folder.mkdir(parents=True)
    for index in range(count):
        kind = index % 3
        if kind == 0:
            _zip(folder / f"s{index:02d}.zip", SOLUTION + f"\n# student {index}\n")
        elif kind == 1:
            _zip(folder / f"s{index:02d}.zip", STUB + f"\n# student {index}\n")
        else:
            (folder / f"s{index:02d}.zip").write_bytes(b"PK\x03\x04 not really a zip")
    return folder


def _command(inputs: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "grader", "batch", str(inputs), "--out", str(out), "--course", str(ROOT),
            "-k", KEYWORD, "--seed-id", "batch-test-secret", *extra]


def _reports(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "submissions").glob("*/report.json"):
        found[path.parent.name] = json.loads(path.read_text())
    return found


def _wait_for_reports(out: Path, count: int, process: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while len(_reports(out)) < count:
        assert process.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < deadline, "no report appeared in time"
        time.sleep(0.2)


def _wait_gone(pids: set[int], limit_s: float = 60) -> list[int]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and not _zombie(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _interrupt_and_resume(tmp_path: Path, how: signal.Signals, backend: str) -> None:
    inputs, out = _class(tmp_path / "in", 6), tmp_path / "out"
    command = _command(inputs, out, "--jobs", "1", "--sandbox", backend, "--format", "html,junit")
    # As from a terminal: SIGINT at its default even where this suite runs in the background (a
    # shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it).
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_reports(out, 2, batch)
    tree = descendants(batch.pid)
    assert tree, "the batch runs its grading in processes of its own"
    os.kill(batch.pid, how)
    output = batch.communicate(timeout=120)[0].decode()
    if how == signal.SIGINT:
        assert batch.returncode == 130 and "run the same command again" in output, output
    assert _wait_gone(tree) == [], "a grader or worker kept running after the batch was stopped"
    before = _reports(out)
    assert 2 <= len(before) < 6 and all(r["complete"] for r in before.values())
    stamps = {name: (out / "submissions" / name / "report.json").stat().st_mtime_ns for name in before}

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _reports(out)
    assert len(after) == 6
    for name in after:  # the renderings asked for, beside each report
        assert (out / "submissions" / name / "report.html").is_file() and (out / "submissions" / name / "junit.xml").is_file()
    assert {name: (out / "submissions" / name / "report.json").stat().st_mtime_ns for name in before} == stamps
    summary = json.loads((out / "batch.json").read_text())
    assert summary["counts"]["reused"] == len(before) and summary["counts"]["graded_now"] == 6 - len(before)
    assert summary["counts"]["pending"] == 0 and summary["stopped"] is None
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert {r["student"]: r["status"] for r in rows} == {f"s{i:02d}": ("refused" if i % 3 == 2 else "graded")
                                                        for i in range(6)}
    full = [r for r in rows if r["student"] in ("s00", "s03")]
    assert all(float(r["score"]) == float(r["max_score"]) > 0 for r in full)
    assert all(float(r["score"]) == 0 for r in rows if r["student"] in ("s01", "s04"))


@pytest.mark.slow
def test_a_killed_batch_loses_only_what_was_in_flight(tmp_path: Path) -> None:
    _interrupt_and_resume(tmp_path, signal.SIGKILL, require_backend("bwrap"))


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path: Path) -> None:
    _interrupt_and_resume(tmp_path, signal.SIGINT, require_backend("bwrap"))


def _dockerd_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def _engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_dead_docker_engine_stops_the_batch_resumably(tmp_path: Path) -> None:
    """dockerd killed mid-batch: the batch stops with a host-fault message, no submission is scored
    for the engine's death, and once the engine is back the same command grades the rest."""
    if os.environ.get("GRADER_TEST_MAY_STOP_DOCKERD") != "1":
        pytest.skip("kills and restarts this host's dockerd: set GRADER_TEST_MAY_STOP_DOCKERD=1 on a host where "
                    "nobody else uses the engine (CI does)")
    require_backend("docker")
    inputs, out = _class(tmp_path / "in", 6), tmp_path / "out"
    command = _command(inputs, out, "--jobs", "1", "--sandbox", "docker")
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_reports(out, 2, batch)
        for pid in _dockerd_pids():
            os.kill(pid, signal.SIGKILL)
        output = batch.communicate(timeout=300)[0].decode()
    finally:
        if batch.poll() is None:
            batch.kill()
        deadline = time.monotonic() + 30
        while not _engine_up() and time.monotonic() < deadline and _dockerd_pids():
            time.sleep(1)  # a service manager may bring it back by itself
        if not _engine_up():
            subprocess.run(["bash", str(ROOT / "scripts" / "docker-image.sh"), "runner"], check=True,
                           capture_output=True, timeout=300)
    assert batch.returncode == 3, output
    assert "host problem" in output and "engine" in output and "run the same command again" in output, output
    before = _reports(out)
    assert 2 <= len(before) < 6
    for report in before.values():  # what was written was graded on a live engine, in full
        assert report["complete"] and not any(t["status"] in ("crashed", "grader_error", "not_run")
                                              for e in report["exercises"] for t in e["tests"])
    summary = json.loads((out / "batch.json").read_text())
    assert "host fault" in summary["stopped"] and summary["counts"]["pending"] == 6 - len(before)

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads((out / "batch.json").read_text())
    assert len(_reports(out)) == 6 and summary["counts"]["reused"] == len(before) and summary["stopped"] is None


def _grades(out: Path) -> dict[str, tuple[str, str, str]]:
    return {r["student"]: (r["status"], r["score"], r["max_score"]) for r in csv.DictReader((out / "grades.csv").open())}


@pytest.mark.slow
def test_ray_grades_what_local_grades_and_survives_a_lost_worker(tmp_path: Path) -> None:
    """The same batch on a real local Ray cluster (started and stopped by the batch) gives the same
    grades as the local executor, even when one Ray worker is killed while it grades."""
    pytest.importorskip("ray")
    backend = require_backend("bwrap")
    inputs = _class(tmp_path / "in", 6)
    local = subprocess.run(_command(inputs, tmp_path / "local", "--jobs", "2", "--sandbox", backend),
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stdout + local.stderr

    batch = subprocess.Popen(_command(inputs, tmp_path / "ray", "--jobs", "2", "--sandbox", backend,
                                      "--executor", "ray"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    killed, cluster = None, set()
    deadline = time.monotonic() + 300
    while killed is None and batch.poll() is None and time.monotonic() < deadline:
        tree = descendants(batch.pid)  # the local cluster the batch started: its raylet, its workers
        cluster |= tree
        for pid in tree:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::_grade_on_node"):
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.1)
    output = batch.communicate(timeout=600)[0].decode()
    assert killed is not None, f"no Ray task was seen running: {output[-2000:]}"
    assert batch.returncode == 0, output[-3000:]
    assert _grades(tmp_path / "ray") == _grades(tmp_path / "local")
    summary = json.loads((tmp_path / "ray" / "batch.json").read_text())
    assert summary["executor"] == "ray" and summary["counts"]["graded_now"] == 6 and not summary["grader_errors"]
    assert _wait_gone(cluster) == [], "the local Ray cluster outlived the batch"
