"""``grader batch``: plan the jobs, skip what is already graded, run the rest, write as they land.

The driver is the only writer of the output folder: every outcome is written (atomically) the
moment it arrives, and ``grades.csv`` and ``batch.json`` are rewritten from the reports on disk
after each one, so they are never behind what a killed batch leaves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator

from grader import __version__
from grader.batch.inputs import BatchItem, output_folder_name
from grader.batch.job import Job, Settings, submission_seed
from grader.render import write_formats
from grader.batch.store import BatchStore, BatchSummary, grades_csv, submission_status, write_atomic
from grader.catalog import Course
from grader.manifest import course_manifest, sha256_file
from grader.report import msg_json, now_iso


class BatchStopped(RuntimeError):
    """The batch stopped before the end (a host fault); the output folder is resumable."""


@dataclass
class Progress:
    """Callbacks for a progress display: planned totals, then one call per finished submission."""

    on_plan: Callable[[int, int], None] = lambda total, reused: None
    on_done: Callable[[Job, str, float], None] = lambda job, status, seconds: None


def resume_key(job: Job, manifest: str, keyword: str) -> dict[str, Any]:
    """What a report must have been graded with to count as done: same content, course, tool, tests."""
    return {"sha256": job.sha256, "manifest_sha256": manifest, "tool_version": __version__, "keyword": keyword,
            "seed_id": job.seed_id}


def plan(items: list[BatchItem], manifest: str, store: BatchStore, secret: str, force: bool,
         keyword: str = "") -> tuple[list[Job], list[Job]]:
    """(jobs to grade, jobs already graded) for ``items``, against the course's ``manifest`` hash."""
    todo, reused = [], []
    for item in items:
        folder = output_folder_name(item.student)
        digest = sha256_file(item.path) if item.path is not None else None
        job = Job(student=item.student, name=item.name, folder=folder,
                  zip_path=str(item.path) if item.path is not None else None, sha256=digest,
                  seed_id=submission_seed(secret, digest or item.student),
                  problem=msg_json(item.problem))
        if not force and digest is not None and store.is_done(folder, resume_key(job, manifest, keyword)):
            reused.append(job)
        else:
            todo.append(job)
    return todo, reused


def _outcome_status(outcome: dict[str, Any]) -> str:
    if "report" not in outcome:
        return "host fault" if "host_fault" in outcome else "grader error"
    return submission_status(outcome["report"])


def write_tables(store: BatchStore, course: Course, jobs: list[Job], reports: dict[str, dict[str, Any] | None],
                 summary: BatchSummary) -> None:
    """``grades.csv`` and ``batch.json`` from the reports (by folder) as they stand."""
    ordered = [reports.get(job.folder) for job in jobs]
    exercises = [spec.id for spec in course.exercises()]
    rows = [(job.student, job.name, job.folder, report) for job, report in zip(jobs, ordered)]
    write_atomic(store.out / "grades.csv", grades_csv(rows, exercises))
    write_atomic(store.out / "batch.json", json.dumps(summary.to_json(ordered, now_iso()), ensure_ascii=False, indent=2))


def run_batch(items: list[BatchItem], course: Course, out: Path, *, settings: Settings, workers: int,
              gpus: list[str] | None, executor: str = "local", address: str | None = None,
              secret: str | None = None, force: bool = False, progress: Progress | None = None) -> BatchSummary:
    """Grade ``items`` into ``out``; raises BatchStopped on a host fault (after writing the tables)."""
    progress = progress or Progress()
    store = BatchStore(out)
    key = store.secret(secret)
    manifest = course_manifest(course).sha256
    todo, reused = plan(items, manifest, store, key, force, settings.keyword)
    all_jobs = todo + reused
    all_jobs.sort(key=lambda j: j.student)
    if gpus:
        workers = min(workers, len(gpus))  # at most one job per GPU
    summary = BatchSummary(executor=executor, jobs=workers, gpus=gpus, started_at=now_iso(),
                           total=len(items), reused=len(reused))
    progress.on_plan(len(todo), len(reused))
    # What is on disk now (reports of earlier runs count until replaced); kept in memory from here.
    reports: dict[str, dict[str, Any] | None] = {job.folder: store.read_report(job.folder) for job in all_jobs}
    started = time.monotonic()
    outcomes = _execute(todo, settings, workers, executor, address, gpus)
    try:
        for job, outcome, seconds in outcomes:
            status = _outcome_status(outcome)
            if "report" in outcome:
                path = store.write_report(job.folder, outcome["report"], resume_key(job, manifest, settings.keyword),
                                          outcome.get("feedback", ""))
                write_formats(outcome["report"], path.parent, list(settings.formats), settings.lang,  # type: ignore[arg-type]
                              settings.audience)
                reports[job.folder] = outcome["report"]
                summary.graded_now += 1
                summary.durations_s.append(seconds)
            elif "host_fault" in outcome:
                summary.stopped = f"host fault while grading {job.student}: {outcome['host_fault']}"
                progress.on_done(job, status, seconds)
                break
            else:
                summary.errors.append({"student": job.student, "error": str(outcome.get("error", ""))})
            summary.wall_s = time.monotonic() - started
            write_tables(store, course, all_jobs, reports, summary)
            progress.on_done(job, status, seconds)
    except KeyboardInterrupt:
        summary.stopped = "stopped by Ctrl-C"
        raise
    except OSError as exc:  # the output folder cannot be written (disk full, gone): the host's
        summary.stopped = f"cannot write the output folder {out}: {exc}"
    finally:
        outcomes.close()  # stops the graders (and their sandboxes) before the tables are final
        summary.wall_s = time.monotonic() - started
        try:
            write_tables(store, course, all_jobs, reports, summary)
        except OSError as exc:
            summary.stopped = summary.stopped or f"cannot write the output folder {out}: {exc}"
    if summary.stopped:
        raise BatchStopped(summary.stopped)
    return summary


def _execute(todo: list[Job], settings: Settings, workers: int, executor: str, address: str | None,
             gpus: list[str] | None) -> Generator[tuple[Job, dict[str, Any], float], None, None]:
    """The chosen executor's stream of outcomes; nothing is started when there is nothing to grade."""
    if not todo:
        return
    if executor == "ray":
        from grader.batch.ray_executor import run_ray

        yield from run_ray(todo, settings, workers, address=address, gpus=bool(gpus))
    else:
        from grader.batch.local import run_local

        slots: list[str | None] = list(gpus) if gpus else [None]
        yield from run_local(todo, settings, workers, slots)
