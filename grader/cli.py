"""The ``grader`` command: ``run`` for graders, ``check`` and ``pack`` for students."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from grader.catalog import default_course
from grader.i18n import Lang
from grader.ingest import ArchiveRejected, pack_directory
from grader.sandbox import SandboxUnavailable, resolve_auto

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Grade PyTorch exercises in a sandbox. 评测 PyTorch 练习。")
console = Console(stderr=False)


def fail(message: str) -> typer.Exit:
    """Print a one-line reason (no traceback, no wrapping) and return the exit to raise."""
    print(f"grader: {message}", file=sys.stderr)
    return typer.Exit(2)


def _lang(value: str) -> Lang:
    if value not in ("en", "zh"):
        raise typer.BadParameter("use en or zh")
    return value  # type: ignore[return-value]


def _progress():  # noqa: ANN202 - returns a callback
    from grader.report import TestResult

    def on_result(result: TestResult) -> None:
        mark = "." if result.status.value == "passed" else "x"
        console.print(mark, end="", highlight=False)

    return on_result


@app.command()
def run(
    submission: Path = typer.Argument(..., help="submission.zip"),
    out: Path = typer.Option(Path("grader-out"), "--out", help="folder for report.json"),
    lang: str = typer.Option("en", "--lang", help="en or zh"),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto, docker, bwrap or process (no isolation)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs to expose: 'all' or ids like '0,1' (default: none)"),
    seed_id: Optional[str] = typer.Option(None, "--seed-id", help="replay the inputs of an earlier run"),
    keyword: str = typer.Option("", "-k", help="only tests matching this pytest -k expression"),
) -> None:
    """Grade a submission zip against all tests (public and hidden) and write a report."""
    from grader.pipeline import grade_submission
    from grader.summary import print_report

    language = _lang(lang)
    if not submission.is_file():
        raise fail(f"{submission} is not a file / 找不到文件")
    try:
        backend = resolve_auto() if sandbox == "auto" else sandbox
    except SandboxUnavailable as unavailable:
        raise fail(str(unavailable)) from None
    console.print(f"grading {submission} in the {backend} sandbox …", highlight=False)
    try:
        report = grade_submission(submission, default_course(), sandbox=backend, lang=language,
                                  seed_id=seed_id, keyword=keyword, gpus=gpus, on_result=_progress())
    except ArchiveRejected as rejected:
        raise fail(rejected.message.render(language)) from None
    except SandboxUnavailable as unavailable:
        raise fail(str(unavailable)) from None
    console.print()
    path = report.write(out)
    print_report(report, console)
    console.print(f"report: {path}", highlight=False)


@app.command()
def check(
    exercise: Optional[str] = typer.Argument(None, help="e.g. ex01 (default: all)"),
    keyword: str = typer.Option("", "-k", help="only tests matching this expression, e.g. a task name"),
    lang: str = typer.Option("en", "--lang"),
    folder: Path = typer.Option(None, "--dir", help="folder with your exercise files (default: exercises/)"),
    sandbox: str = typer.Option("process", "--sandbox", help="process (default: it is your own code), bwrap or docker"),
) -> None:
    """Run the public tests on your own exercises/ (no reference solution needed)."""
    import time

    from grader.grading import GradingRun
    from grader.pipeline import build_report, run_autotests
    from grader.summary import print_report

    language = _lang(lang)
    course = default_course()
    try:
        exercises = [course.resolve(exercise)] if exercise else None
    except KeyError as unknown:
        raise fail(unknown.args[0]) from None
    modules = (folder or course.exercises_dir).resolve()
    run = GradingRun(course=course, modules_dir=modules, reference_dir=None, lang=language,
                     on_result=_progress(), print_summary=False, sandbox_name=sandbox)
    started = time.monotonic()
    try:
        run_autotests(run, markexpr="public", keyword=keyword, exercises=exercises)
        report = build_report(run, None, started)
    finally:
        run.close()
    console.print()
    report.warnings.clear()  # your own code on your own machine: no isolation warning needed
    print_report(report, console)
    if report.score < report.max_score:
        raise typer.Exit(1)


@app.command()
def pack(
    folder: Path = typer.Argument(Path("exercises"), help="folder with exNN_*.py files"),
    output: Path = typer.Option(Path("submission.zip"), "-o", "--output"),
) -> None:
    """Build submission.zip from your exercise files."""
    try:
        path = pack_directory(folder, output)
    except ArchiveRejected as rejected:
        raise fail(str(rejected.message)) from None
    console.print(f"wrote {path}", highlight=False)


image_app = typer.Typer(no_args_is_help=True, help="Build the Docker sandbox's images (no registry needed).")
app.add_typer(image_app, name="image")


@image_app.command("base")
def image_base(force: bool = typer.Option(False, "--force", help="debootstrap again even if the image exists")) -> None:
    """Make torch-grader-base:bookworm locally: debootstrap → docker import."""
    from grader.sandbox.image import ImageBuildError, build_base_image, docker_client

    try:
        image_id = build_base_image(docker_client(), force=force)
    except ImageBuildError as exc:
        raise fail(str(exc)) from None
    print(f"base image: {image_id}")


@image_app.command("build")
def image_build(force: bool = typer.Option(False, "--force", help="rebuild even if the image is up to date")) -> None:
    """Build the runner image (base image and wheelhouse first if missing), with no network in the build."""
    from grader.sandbox.image import ImageBuildError, build_runner_image, docker_client, runner_tag

    try:
        image_id = build_runner_image(docker_client(), force=force)
    except ImageBuildError as exc:
        raise fail(str(exc)) from None
    print(f"runner image {runner_tag()}: {image_id}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
