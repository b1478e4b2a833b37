"""Render a ``report.json`` (as loaded) into each output format, for one language and audience."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
import markupsafe

from grader.i18n import Lang
from grader.render import charts
from grader.render.view import AUDIENCES, ReportView, build_view
from grader.render.words import words

FORMATS = ("terminal", "json", "html", "md", "gradescope", "junit")
FILE_NAMES = {"json": "report.json", "html": "report.html", "md": "report.md", "gradescope": "results.json",
              "junit": "junit.xml", "terminal": "report.txt"}
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot hold


def plain(text: str) -> str:
    """Text a terminal wrote, made safe to show as text: ANSI sequences and control characters gone."""
    return NOT_XML.sub("", ANSI.sub("", text))


def num(value: float) -> str:
    return f"{value:g}"


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "NaN/Inf"
    return f"{value:.3g}"


def shape(dims: list[int] | None) -> str:
    dims = list(dims or [])
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def grade_class(score: float, total: float) -> str:
    return "full" if total and score >= total else "zero" if not score else "partial"


@lru_cache(maxsize=2)
def _environment(markup: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("grader.render", "templates"),
                             autoescape=markup, undefined=jinja2.StrictUndefined, trim_blocks=False,
                             keep_trailing_newline=True)
    env.globals.update(num=num, fmt=fmt, shape=shape, grade_class=grade_class, heat_map=charts.heat_map,
                       curve=charts.curve, meter=charts.meter, ratio_strip=charts.ratio_strip)
    env.filters["md"] = _markdown_text
    env.filters["code"] = _code_spans
    return env


def _clean_view(report: dict[str, Any], lang: Lang, audience: str) -> ReportView:
    view = build_view(report, lang, audience)
    for exercise in view.exercises:
        exercise.output = plain(exercise.output)
    return view


def render_html(report: dict[str, Any], lang: Lang, audience: str) -> str:
    view = _clean_view(report, lang, audience)
    return _environment(True).get_template("report.html.j2").render(v=view, w=words(lang, audience))


def render_markdown(report: dict[str, Any], lang: Lang, audience: str) -> str:
    view = _clean_view(report, lang, audience)
    return _environment(False).get_template("report.md.j2").render(v=view, w=words(lang, audience))


CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _code_spans(text: str) -> markupsafe.Markup:
    """Text for HTML, escaped, with the messages' `code` in backticks shown as code."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(CODE_SPAN.sub(r"<code>\1</code>", escaped))


def _markdown_text(text: str) -> str:
    """Text safe inside a Markdown paragraph: HTML and the characters that would start emphasis,
    links or table cells escaped; `code` in backticks stays code. One line per line."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = re.sub(r"([\\*\[\]|])", r"\\\1", escaped)
    if escaped.count("`") % 2:
        escaped = escaped.replace("`", "\\`")  # an unpaired backtick would swallow the rest
    return "  \n".join(escaped.splitlines())


def render_gradescope(report: dict[str, Any], lang: Lang, audience: str) -> dict[str, Any]:
    """Gradescope's ``results.json``: the total, and one entry per test with its own score."""
    view = _clean_view(report, lang, audience)
    w = words(lang, audience)
    tests = []
    for exercise in view.exercises:
        for test in exercise.tests:
            tests.append({
                "name": f"{exercise.id} · {test.task} · {test.label}",
                "name_format": "text",
                "score": test.score,
                "max_score": test.max_score,
                "status": "passed" if test.passed else "failed",
                "output": test.message or ("" if test.passed else test.status_label),
                "output_format": "text",
                "visibility": "visible",  # what a student may read of hidden tests is already all it holds
                "tags": [exercise.id, test.task, test.kind],
            })
    summary = f"{w['total']}: {num(view.score)} / {num(view.max_score)}"
    if view.refusal:
        summary = f"{w['refused']}: {view.refusal}\n{summary}"
    return {
        "score": view.score,
        "execution_time": round(view.duration_s, 1),
        "output": summary,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"max_score": view.max_score, "complete": view.complete, "status": view.status},
        "tests": tests,
    }


FAILURE_STATUSES = ("failed", "not_implemented", "not_submitted")  # the answer was wrong or missing
SKIPPED_STATUSES = ("not_run",)  # the host could not run it


def render_junit(report: dict[str, Any], lang: Lang, audience: str) -> str:
    """JUnit XML: a test suite per exercise, a test case per test; a wrong answer is a ``failure``,
    a crash or timeout an ``error``, a test the host could not run ``skipped``."""
    view = _clean_view(report, lang, audience)
    root = ET.Element("testsuites", name=plain(view.student or "submission"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_total = 0.0
    for exercise in view.exercises:
        counts = {"tests": len(exercise.tests), "failures": 0, "errors": 0, "skipped": 0}
        suite = ET.SubElement(root, "testsuite", name=exercise.id)
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="score", value=num(exercise.score))
        ET.SubElement(properties, "property", name="max_score", value=num(exercise.max_score))
        suite_time = 0.0
        for test in exercise.tests:
            case = ET.SubElement(suite, "testcase", name=test.name, classname=f"{exercise.id}.{test.task}",
                                 time=f"{test.duration_s:.3f}")
            suite_time += test.duration_s
            text = plain(test.message or test.status_label)
            if test.passed:
                continue
            if test.status in SKIPPED_STATUSES:
                ET.SubElement(case, "skipped", message=text[:500])
                counts["skipped"] += 1
            elif test.status in FAILURE_STATUSES:
                ET.SubElement(case, "failure", message=text[:500], type=test.status).text = text
                counts["failures"] += 1
            else:
                ET.SubElement(case, "error", message=text[:500], type=test.status).text = text
                counts["errors"] += 1
        if exercise.output.strip():
            ET.SubElement(suite, "system-out").text = exercise.output
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{suite_time:.3f}")
        time_total += suite_time
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", f"{time_total:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def render_terminal(report: dict[str, Any], lang: Lang, audience: str) -> str:
    view = _clean_view(report, lang, audience)
    return _environment(False).get_template("report.txt.j2").render(v=view, w=words(lang, audience))


def render_json(report: dict[str, Any], lang: Lang, audience: str) -> str:
    """The report itself; for a student, without what only an instructor may read."""
    if audience == "instructor":
        return json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    shown = json.loads(json.dumps(report))
    for exercise in shown.get("exercises", []):
        for test in exercise.get("tests", []):
            if test.get("shows") != "all":
                test["detail"], test["evidence"] = None, []
                if test.get("shows") == "name":
                    test["message"] = None
    return json.dumps(shown, ensure_ascii=False, indent=2) + "\n"


RENDERERS: dict[str, Callable[[dict[str, Any], Lang, str], Any]] = {
    "terminal": render_terminal, "json": render_json, "html": render_html, "md": render_markdown,
    "gradescope": render_gradescope, "junit": render_junit,
}


def render(report: dict[str, Any], fmt_name: str, lang: Lang = "en", audience: str = "student") -> str:
    """One format as text (Gradescope's as JSON text)."""
    if fmt_name not in RENDERERS:
        raise ValueError(f"unknown format {fmt_name!r}: choose from {', '.join(FORMATS)}")
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}: choose from {', '.join(AUDIENCES)}")
    out = RENDERERS[fmt_name](report, lang, audience)
    return json.dumps(out, ensure_ascii=False, indent=2) + "\n" if isinstance(out, dict) else out


def write_formats(report: dict[str, Any], out_dir: Path, formats: list[str], lang: Lang,
                  audience: str) -> list[Path]:
    """Write each format next to ``report.json`` (which is never overwritten by its student view)."""
    written = []
    for name in formats:
        if name == "json":
            continue  # report.json is the grading's own record, written by the grading
        path = out_dir / FILE_NAMES[name]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(render(report, name, lang, audience), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
