"""The ``grader`` command: ``check`` and ``pack`` for students, ``run``, ``batch`` and ``report`` for
graders, ``export`` and ``image`` for instructors. Every command acts on one course folder: ``--course DIR``, else the
nearest folder upward from here that holds ``course.toml``.

Exit status: 0 done; 1 ``check`` found failing tests, or ``batch`` left submissions ungraded by a
failure of the grader itself (rerun to retry them); 2 bad input or usage (one line says why);
3 the grading host cannot grade (nothing was scored; a batch stops resumably); 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from grader.catalog import Course, CourseNotFound, find_course
from grader.i18n import Lang, Msg
from grader.ingest import ArchiveRejected, exercise_files, helper_files, pack_directory
from grader.sandbox import SandboxUnavailable, resolve_auto
from grader.verdicts import HostFault

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Grade PyTorch exercises in a sandbox. 评测 PyTorch 练习。")
console = Console(stderr=False)

COURSE_OPTION = typer.Option(None, "--course", help="the course folder (default: $GRADER_COURSE, else the "
                                                      "nearest folder upward with course.toml)")
FORMAT_OPTION = typer.Option("terminal,json", "--format",
                             help="comma-separated: terminal, json, html, md, gradescope, junit")
HOST_FAULT_EXIT = 3


def fail(message: str | Msg, code: int = 2, lang: Lang = "en") -> typer.Exit:
    """Print a one-line reason (no traceback, no wrapping) and return the exit to raise."""
    text = message.render(lang) if isinstance(message, Msg) else message
    print(f"grader: {text}", file=sys.stderr)
    return typer.Exit(code)


def host_fault(fault: HostFault, lang: Lang = "en") -> typer.Exit:
    return fail(Msg(f"评测主机故障，未评任何提交：{fault}", f"host problem, nobody was graded: {fault}"),
                HOST_FAULT_EXIT, lang)


def _lang(value: str) -> Lang:
    if value not in ("en", "zh"):
        raise typer.BadParameter("use en or zh")
    return value  # type: ignore[return-value]


def _audience(value: str) -> str:
    if value not in ("student", "instructor"):
        raise typer.BadParameter("use student or instructor")
    return value


def _course(course_dir: Optional[Path], lang: Lang = "en") -> Course:
    try:
        return find_course(course_dir)
    except CourseNotFound as missing:
        raise fail(missing.message, lang=lang) from None


def _progress():  # noqa: ANN202 - returns a callback
    from grader.report import TestResult

    def on_result(result: TestResult) -> None:
        mark = "." if result.status.value == "passed" else "x"
        console.print(mark, end="", highlight=False)

    return on_result


def _exercise_folder(course: Course, folder: Optional[Path]) -> Path:
    """The folder ``check`` and ``pack`` read: ``--dir`` if given, else the course's ``exercises/``."""
    chosen = (folder or course.exercises_dir).resolve()
    if (chosen / "exercises").is_dir():
        chosen = chosen / "exercises"
    return chosen


def _show_folder(course: Course, folder: Path, files: list[Path], lang: Lang) -> None:
    """Say which course and which files a student command used, so two copies never get mixed up."""
    words = Msg("课程", "course").render(lang), Msg("文件", "files").render(lang)
    console.print(f"{words[0]}: {course.describe()}", highlight=False, soft_wrap=True)
    names = ", ".join(p.name for p in files) or Msg("（无）", "(none)").render(lang)
    console.print(f"{words[1]}: {folder}: {names}", highlight=False, soft_wrap=True)


@app.command()
def run(
    submission: Path = typer.Argument(..., help="submission.zip"),
    out: Path = typer.Option(Path("grader-out"), "--out", help="folder for report.json"),
    lang: str = typer.Option("en", "--lang", help="en or zh"),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto, docker, bwrap or process (no isolation)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs to expose: 'all' or ids like '0,1' (default: none)"),
    seed_id: Optional[str] = typer.Option(None, "--seed-id", help="replay the inputs of an earlier run"),
    keyword: str = typer.Option("", "-k", help="only tests matching this pytest -k expression"),
    student: Optional[str] = typer.Option(None, "--student", help="the student's id, recorded in the report"),
    audience: str = typer.Option("student", "--audience", help="student (hidden tests show name and hint only) "
                                                                "or instructor (everything)"),
    formats: str = FORMAT_OPTION,
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Grade a submission zip against all tests (public and hidden) and write a report."""
    from grader.pipeline import NothingSelected, grade_submission
    from grader.render import write_formats
    from grader.report import clear_report
    from grader.summary import print_report

    language = _lang(lang)
    viewer = _audience(audience)
    chosen = _formats(formats)
    course = _course(course_dir, language)
    clear_report(out)  # whatever happens next, an older report in this folder is not left standing
    if not submission.is_file():
        raise fail(Msg(f"找不到文件 {submission}", f"{submission} is not a file"), lang=language)
    try:
        backend = resolve_auto() if sandbox == "auto" else sandbox
    except SandboxUnavailable as unavailable:
        raise host_fault(HostFault(str(unavailable)), language) from None
    console.print(Msg(f"评测 {submission}：课程 {course.describe()}，沙箱 {backend} …",
                      f"grading {submission} with {course.describe()} in the {backend} sandbox …").render(language),
                  highlight=False, soft_wrap=True)
    try:
        report = grade_submission(submission, course, sandbox=backend, lang=language, seed_id=seed_id,
                                  keyword=keyword, gpus=gpus, student=student, on_result=_progress())
    except HostFault as fault:
        raise host_fault(fault, language) from None
    except NothingSelected as nothing:
        raise fail(nothing.message, lang=language) from None
    console.print()
    path = report.write(out)
    rendered = write_formats(report.to_json(), out, [f for f in chosen if f != "terminal"], language, viewer)
    if report.refusal is not None:
        console.print(f"{Msg('报告', 'report').render(language)}: {path}", highlight=False, soft_wrap=True)
        raise fail(report.refusal, lang=language)
    if "terminal" in chosen:
        print_report(report, console, audience=viewer)
    for written in [path, *rendered]:
        console.print(f"{Msg('报告', 'report').render(language)}: {written}", highlight=False, soft_wrap=True)
    if not report.complete:
        raise fail(Msg("有些测试无法在此主机上运行，报告已标记为不完整（见 report.json 中的 not_run）",
                       "some tests could not run on this host; the report is marked incomplete "
                       "(see not_run in report.json)"), HOST_FAULT_EXIT, language)


def _formats(value: str) -> list[str]:
    from grader.render import FORMATS

    chosen = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise fail(f"--format: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return chosen


def _default_jobs() -> int:
    """Two graders per three cores, at least one: each submission keeps a worker of its own and the
    reference's busy, and speed tests want a core that is not fought over."""
    import os

    return max(1, (os.cpu_count() or 2) * 2 // 3)


@app.command()
def batch(
    inputs: list[Path] = typer.Argument(..., help="folders of submissions (zips, a folder per student, a Moodle "
                                                   "or Canvas download), zips, or a CSV of student,file"),
    out: Path = typer.Option(..., "--out", help="output folder: reports, grades.csv, batch.json (resumable)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="submissions graded at once (default: 2 per 3 cores)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="'all' or ids like '0,1': one job per GPU"),
    executor: str = typer.Option("local", "--executor", help="local (this host) or ray (a Ray cluster)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local cluster)"),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto, docker, bwrap or process (no isolation)"),
    lang: str = typer.Option("en", "--lang", help="en or zh: the language of feedback.txt"),
    audience: str = typer.Option("student", "--audience", help="what feedback.txt shows: student or instructor"),
    force: bool = typer.Option(False, "--force", help="grade again what this folder already graded"),
    seed_id: Optional[str] = typer.Option(None, "--seed-id", help="the batch's seed secret (default: the "
                                                                   "folder's own, made on first use)"),
    keyword: str = typer.Option("", "-k", help="only tests matching this pytest -k expression"),
    formats: str = typer.Option("json", "--format", help="renderings beside each report.json, comma-separated: "
                                                          "json, html, md, gradescope, junit"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Grade a whole class: one sandbox per submission, N at once, resumable; grades.csv at the end."""
    from grader.batch.inputs import BatchInputError, discover
    from grader.batch.job import Settings
    from grader.batch.progress import BatchProgress
    from grader.batch.runner import BatchStopped, run_batch
    from grader.manifest import ManifestMismatch

    language = _lang(lang)
    viewer = _audience(audience)
    if executor not in ("local", "ray"):
        raise fail("--executor: use local or ray")
    course = _course(course_dir, language)
    try:
        items = discover(inputs, out / ".packed")
    except BatchInputError as bad:
        raise fail(str(bad)) from None
    if not items:
        raise fail(f"no submission found in {', '.join(map(str, inputs))}")
    gpu_list = _gpu_list(gpus)
    try:
        backend = resolve_auto() if sandbox == "auto" else sandbox
    except SandboxUnavailable as unavailable:
        raise host_fault(HostFault(str(unavailable)), language) from None
    workers = jobs if jobs and jobs > 0 else _default_jobs()
    settings = Settings(course_root=str(course.root), sandbox=backend, lang=language, keyword=keyword,
                        audience=viewer, formats=tuple(f for f in _formats(formats) if f not in ("json", "terminal")))
    console.print(f"batch: {len(items)} submissions, {course.describe()}, {backend} sandbox, {executor} executor",
                  highlight=False, soft_wrap=True)
    display = BatchProgress(console)
    try:
        with display:
            summary = run_batch(items, course, out, settings=settings, workers=workers, gpus=gpu_list,
                                executor=executor, address=address, secret=seed_id, force=force,
                                progress=display.callbacks())
    except KeyboardInterrupt:
        raise fail(f"stopped; run the same command again to grade the rest ({out})", 130) from None
    except BatchStopped as stopped:
        raise host_fault(HostFault(f"{stopped}; fix the host and run the same command again to grade the rest"),
                         language) from None
    except ManifestMismatch as changed:
        raise host_fault(HostFault(str(changed)), language) from None
    console.print(display.final_line(summary), highlight=False, soft_wrap=True)
    console.print(f"grades: {out / 'grades.csv'}  summary: {out / 'batch.json'}", highlight=False, soft_wrap=True)
    if summary.errors:
        names = ", ".join(e["student"] for e in summary.errors[:10]) + (" …" if len(summary.errors) > 10 else "")
        raise fail(f"{len(summary.errors)} submissions were not graded because the grader itself failed ({names}; "
                   "see grader_errors in batch.json); run the same command again to retry them", 1)


def _gpu_list(gpus: Optional[str]) -> list[str] | None:
    if not gpus:
        return None
    from gpu_runner.devices import gpu_slots

    try:
        return gpu_slots(gpus)
    except ValueError as none:
        raise fail(str(none)) from None


@app.command()
def check(
    exercise: Optional[str] = typer.Argument(None, help="e.g. ex01 (default: all)"),
    keyword: str = typer.Option("", "-k", help="only tests matching this expression, e.g. a task name"),
    lang: str = typer.Option("en", "--lang"),
    folder: Optional[Path] = typer.Option(None, "--dir", help="folder with your exercise files (default: the course's exercises/)"),
    sandbox: str = typer.Option("local", "--sandbox", help="local (default: your own code, a plain process), process, bwrap or docker"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Run the public tests on your own exercise files (no reference solution needed, no network)."""
    import time

    from grader.grading import GradingRun
    from grader.pipeline import build_report, run_autotests
    from grader.selftest import check_host
    from grader.summary import print_check_scope, print_report

    language = _lang(lang)
    course = _course(course_dir, language)
    try:
        exercises = [course.resolve(exercise)] if exercise else None
    except KeyError as unknown:
        raise fail(unknown.args[0]) from None
    modules = _exercise_folder(course, folder)
    files = [p for p in exercise_files(modules) if exercises is None or p.stem in exercises]
    _show_folder(course, modules, files, language)
    run = GradingRun(course=course, modules_dir=modules, reference_dir=None, lang=language,
                     on_result=_progress(), print_summary=False, sandbox_name=sandbox)
    started = time.monotonic()
    try:
        check_host(run, references=False)
        run_autotests(run, markexpr="public", keyword=keyword, exercises=exercises)
        if not run.results:
            raise fail(Msg(f"没有公开测试匹配 -k {keyword!r}", f"no public test matches -k {keyword!r}") if keyword
                       else Msg("该课程没有公开测试", "this course has no public tests"), lang=language)
        report = build_report(run, None, started)
    except (HostFault, SandboxUnavailable) as fault:
        raise fail(Msg(f"无法在本机运行检查：{fault}", f"the checker cannot run on this computer: {fault}"),
                   HOST_FAULT_EXIT, language) from None
    finally:
        run.close()
    console.print()
    report.warnings.clear()  # your own code on your own machine: no isolation warning needed
    print_report(report, console)
    print_check_scope(run, console)
    if report.score < report.max_score:
        raise typer.Exit(1)


@app.command()
def pack(
    folder: Optional[Path] = typer.Argument(None, help="folder with exNN_*.py files (default: the course's exercises/)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="default: submission.zip in the course folder"),
    lang: str = typer.Option("en", "--lang"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Build submission.zip from your exercise files."""
    language = _lang(lang)
    course = _course(course_dir, language)
    modules = _exercise_folder(course, folder)
    _show_folder(course, modules, exercise_files(modules) + helper_files(modules), language)
    try:
        path = pack_directory(modules, output or course.root / "submission.zip")
    except ArchiveRejected as rejected:
        raise fail(rejected.message, lang=language) from None
    console.print(f"{Msg('已写入', 'wrote').render(language)} {path.resolve()}", highlight=False, soft_wrap=True)


export_app = typer.Typer(no_args_is_help=True, help="Make the folders a course hands out: a student kit, an autograder.")
app.add_typer(export_app, name="export")


@export_app.command("student")
def export_student(
    target: Path = typer.Argument(..., help="folder to create (must not exist, or be empty)"),
    zip_it: bool = typer.Option(False, "--zip", help="also write TARGET.zip"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """The kit students get: stubs, public tests, the tool; never solutions or hidden tests."""
    from grader.kit import ExportError, export_student_kit

    course = _course(course_dir)
    try:
        result = export_student_kit(course, target, make_zip=zip_it)
    except ExportError as exc:
        raise fail(str(exc)) from None
    console.print(result.summary(), highlight=False)


@export_app.command("autograder")
def export_autograder(
    target: Path = typer.Argument(..., help="folder to create (must not exist, or be empty)"),
    zip_it: bool = typer.Option(False, "--zip", help="also write TARGET.zip, ready to upload to Gradescope"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Everything a grading host needs, with a manifest of content hashes; a Gradescope autograder as is."""
    from grader.kit import ExportError, export_autograder_course

    course = _course(course_dir)
    try:
        result = export_autograder_course(course, target, make_zip=zip_it)
    except ExportError as exc:
        raise fail(str(exc)) from None
    console.print(result.summary(), highlight=False)


report_app = typer.Typer(no_args_is_help=True, help="Render report.json again: other formats, language or audience.")
app.add_typer(report_app, name="report")


@report_app.command("render")
def report_render(
    report_file: Path = typer.Argument(..., help="a report.json written by grader run or grader batch"),
    formats: str = typer.Option("html", "--format", help="comma-separated: terminal, json, html, md, gradescope, junit"),
    lang: str = typer.Option("en", "--lang", help="en or zh"),
    audience: str = typer.Option("student", "--audience", help="student or instructor"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the files (default: beside the report); "
                                                           "'-' prints a single format"),
) -> None:
    """Render a report in other formats; report.json itself is never changed."""
    import json

    from grader.render import FILE_NAMES, render

    language, viewer, chosen = _lang(lang), _audience(audience), _formats(formats)
    try:
        data = json.loads(report_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(f"{report_file}: cannot read a report ({exc})") from None
    if not isinstance(data, dict) or "exercises" not in data:
        raise fail(f"{report_file}: not a report.json written by the grader")
    if out is not None and str(out) == "-":
        if len(chosen) != 1:
            raise fail("--out -: choose exactly one --format")
        sys.stdout.write(render(data, chosen[0], language, viewer))
        return
    folder = out or report_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        target = folder / FILE_NAMES[name]
        if target.resolve() == report_file.resolve():
            target = folder / f"report.{viewer}.json"  # never overwrite the grading's own record
        target.write_text(render(data, name, language, viewer), encoding="utf-8")
        console.print(str(target), highlight=False, soft_wrap=True)


@report_app.command("class")
def report_class(
    folder: Path = typer.Argument(..., help="a grader batch output folder, or any folder of report.json files"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for class.html and grades.csv (default: FOLDER)"),
    lang: str = typer.Option("en", "--lang", help="en or zh"),
) -> None:
    """A class dashboard: score histograms, the tests most students fail, time and failures by cause."""
    from grader.render.dashboard import render_class

    if not folder.is_dir():
        raise fail(f"{folder} is not a folder")
    html, grades, count = render_class(folder, _lang(lang))
    if not count:
        raise fail(f"no report.json under {folder}")
    target = out or folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "class.html").write_text(html, encoding="utf-8")
    grades_name = "grades.csv" if not (target / "grades.csv").exists() or out is not None else "class-grades.csv"
    (target / grades_name).write_text(grades, encoding="utf-8")
    console.print(f"{count} reports: {target / 'class.html'}, {target / grades_name}", highlight=False, soft_wrap=True)


image_app = typer.Typer(no_args_is_help=True, help="Build the Docker sandbox's images (no registry needed).")
app.add_typer(image_app, name="image")


@image_app.command("base")
def image_base(
    force: bool = typer.Option(False, "--force", help="debootstrap again even if the image exists"),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Debian mirror (default: this host's apt sources)"),
) -> None:
    """Make torch-grader-base:bookworm locally: debootstrap → docker import."""
    from grader.sandbox.image import ImageBuildError, build_base_image, docker_client

    try:
        image_id = build_base_image(docker_client(), force=force, mirror=mirror)
    except ImageBuildError as exc:
        raise fail(str(exc)) from None
    print(f"base image: {image_id}")


@image_app.command("build")
def image_build(
    force: bool = typer.Option(False, "--force", help="rebuild even if the image is up to date"),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Debian mirror (default: this host's apt sources)"),
    index_url: Optional[str] = typer.Option(None, "--index-url", help="Python package index (default: this host's pip configuration)"),
    course_dir: Optional[Path] = COURSE_OPTION,
) -> None:
    """Build the runner image from the course's lock file (base image and wheelhouse first if missing)."""
    from grader.sandbox.image import ImageBuildError, build_runner_image, docker_client, read_lock, runner_tag

    course = _course(course_dir)
    try:
        lock = read_lock(course.root)
        image_id = build_runner_image(docker_client(), lock=lock, force=force, mirror=mirror, index_url=index_url)
    except ImageBuildError as exc:
        raise fail(str(exc)) from None
    print(f"runner image {runner_tag()}: {image_id}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
