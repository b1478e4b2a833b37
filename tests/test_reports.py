"""Every rendering of report.json: each format in both languages and both audiences, from real
reports of a passing, a failing and a hostile submission; the formats' own schemas; what a student
must not see; the class dashboard. (The browser half is tests/test_browser.py.)"""

from __future__ import annotations

import html.parser
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from reports_support import JUNIT_XSD, REQUIRE_BROWSER, load
from support import ROOT

from grader.render import FORMATS, render
from grader.render.dashboard import render_class

pytestmark = pytest.mark.slow
GRADESCOPE_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "gradescope-results.schema.json").read_text())


@pytest.fixture(scope="module")
def reports(graded_report_folders: dict[str, Path]) -> dict[str, Path]:
    return graded_report_folders


def _hidden_details(report: dict) -> list[str]:
    """Detail texts (inputs, expected values) of hidden tests that do not show everything."""
    return [t["detail"][lang] for e in report["exercises"] for t in e["tests"]
            if t["visibility"] == "hidden" and t["shows"] != "all" and t["detail"] for lang in ("en", "zh")]


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.scripts += tag == "script" or any(name.startswith("on") for name, _ in attrs)


def test_the_three_reports_are_what_they_claim(reports: dict[str, Path]) -> None:
    passing, failing, hostile = (load(reports[n]) for n in ("passing", "failing", "hostile"))
    assert passing["score"] == passing["max_score"] > 0
    assert 0 < failing["score"] < failing["max_score"]
    kinds = {ev["kind"] for e in failing["exercises"] for t in e["tests"] for ev in t["evidence"]}
    assert {"mismatch", "speed", "threshold"} <= kinds, kinds
    curves = [ev for e in passing["exercises"] for t in e["tests"] for ev in t["evidence"] if ev["kind"] == "threshold"]
    assert curves and all(len(ev["losses"]) > 10 for ev in curves)  # the probes' training curves
    maps = [ev for e in failing["exercises"] for t in e["tests"] for ev in t["evidence"] if ev.get("error_map")]
    assert maps and all(len(m["error_map"]) <= 16 for m in maps)
    ex01 = next(e for e in hostile["exercises"] if e["id"] == "ex01_tensors")
    assert "<script>" in ex01["output"] and "\x1b[31m" in ex01["output"]


@pytest.mark.parametrize("name", ["passing", "failing", "hostile"])
def test_every_format_renders_in_both_languages_and_audiences(reports: dict[str, Path], name: str) -> None:
    report = load(reports[name])
    for lang in ("en", "zh"):
        for audience in ("student", "instructor"):
            for fmt in FORMATS:
                out = render(report, fmt, lang, audience)
                assert out.strip(), (fmt, lang, audience)
            page = render(report, "html", lang, audience)
            parser = _Parser()
            parser.feed(page)
            assert parser.scripts == 0
            assert "svg" in parser.tags or name == "hostile"  # charts: error maps, curves, speed ratios
            assert "\x1b" not in page and "<script>" not in page
            if lang == "zh":
                assert "练习评分报告" in page and ("未通过的测试" in page or name != "failing")
            gradescope = json.loads(render(report, "gradescope", lang, audience))
            jsonschema.validate(gradescope, GRADESCOPE_SCHEMA)
            assert gradescope["score"] == report["score"]
            assert sum(t["score"] for t in gradescope["tests"]) == report["score"]
            assert sum(t["max_score"] for t in gradescope["tests"]) == report["max_score"]
            junit = ET.fromstring(render(report, "junit", lang, audience).encode())
            assert int(junit.get("tests")) == sum(len(e["tests"]) for e in report["exercises"])
            not_passed = sum(t["status"] != "passed" for e in report["exercises"] for t in e["tests"])
            assert int(junit.get("failures")) + int(junit.get("errors")) + sum(
                int(s.get("skipped")) for s in junit) == not_passed


def test_junit_follows_the_junit_schema(reports: dict[str, Path]) -> None:
    if not JUNIT_XSD.exists():
        if REQUIRE_BROWSER:
            pytest.fail(f"GRADER_REQUIRE_BROWSER=1 but {JUNIT_XSD} is missing (GRADER_BROWSER=1 bash scripts/setup.sh)")
        pytest.skip(f"{JUNIT_XSD} is missing: GRADER_BROWSER=1 bash scripts/setup.sh fetches it")
    import xmlschema

    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    for name in reports:
        for lang in ("en", "zh"):
            schema.validate(render(load(reports[name]), "junit", lang, "instructor"))
        schema.validate((reports[name] / "junit.xml").read_text(encoding="utf-8"))


def test_students_see_nothing_hidden_in_any_format(reports: dict[str, Path]) -> None:
    report = load(reports["failing"])
    details = _hidden_details(report)
    assert len(details) >= 4
    for fmt in FORMATS:
        for lang in ("en", "zh"):
            student = render(report, fmt, lang, "student")
            student = student if fmt != "gradescope" else json.dumps(json.loads(student), ensure_ascii=False)
            escaped = {d for d in details} | {html_escape(d) for d in details}
            leaked = [d for d in escaped if d in student]
            assert not leaked, (fmt, lang, leaked[:2])
    instructor = render(report, "html", "en", "instructor")
    assert any(html_escape(d) in instructor for d in details)
    hidden_evidence = [t for e in report["exercises"] for t in e["tests"]
                       if t["visibility"] == "hidden" and t["shows"] != "all" and t["evidence"]]
    assert hidden_evidence
    student_json = json.loads(render(report, "json", "en", "student"))
    assert not any(t["evidence"] or t["detail"] for e in student_json["exercises"] for t in e["tests"]
                   if t["visibility"] == "hidden" and t["shows"] != "all")


def html_escape(text: str) -> str:
    import html as html_module

    return html_module.escape(text, quote=False)


def test_hostile_output_is_shown_as_text_and_capped(reports: dict[str, Path]) -> None:
    report = load(reports["hostile"])
    ex01 = next(e for e in report["exercises"] if e["id"] == "ex01_tensors")
    ex01["output"] = ex01["output"] + "flood " * (10 * 1024 * 1024 // 6)  # 10 MB more than the report keeps
    for lang in ("en", "zh"):
        page = render(report, "html", lang, "student")
        assert len(page) < 1_000_000
        assert "&lt;script&gt;alert" in page and "<script>" not in page and "onerror=alert" not in page.replace(
            "&lt;img src=x onerror=alert(1)&gt;", "")
        assert "\x1b" not in page and "\x07" not in page and "[31mred" not in page
        md = render(report, "md", lang, "student")
        assert "<script>" not in md and "\x1b" not in md
        ET.fromstring(render(report, "junit", lang, "student").encode())  # control characters removed


def test_report_render_command(reports: dict[str, Path], tmp_path: Path) -> None:
    source = reports["failing"] / "report.json"
    before = source.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "grader", "report", "render", str(source), "--format",
                           "html,md,gradescope,junit,json", "--lang", "zh", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"report.html", "report.md", "results.json", "junit.xml",
                                                    "report.json"}
    assert source.read_bytes() == before
    assert 'lang="zh-CN"' in (tmp_path / "report.html").read_text(encoding="utf-8")
    printed = subprocess.run([sys.executable, "-m", "grader", "report", "render", str(source), "--format", "md",
                              "--out", "-"], capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0 and printed.stdout.startswith("## ")
    bad = subprocess.run([sys.executable, "-m", "grader", "report", "render", str(source), "--format", "pdf"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown pdf" in bad.stdout + bad.stderr


def test_class_dashboard(reports: dict[str, Path], tmp_path: Path) -> None:
    page, grades, count = render_class(reports["passing"].parent, "en")
    assert count == 3
    assert grades.splitlines()[0].startswith("student,name,status,score,max_score,ex01_tensors")
    assert {line.split(",")[0] for line in grades.splitlines()[1:]} == {
        "passing-student", "failing-student", "hostile-student"}
    assert 'id="histograms"' in page and page.count("<figure data-exercise=") >= 4
    assert re.search(r"standardize\w*</code></td><td>[12] / 3", page)
    assert "fit_line_recovers_line</code></td><td>1 / 2" in page  # the hostile one did not submit ex02
    assert "<script>" not in page
    proc = subprocess.run([sys.executable, "-m", "grader", "report", "class", str(reports["passing"].parent),
                           "--out", str(tmp_path), "--lang", "zh"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "class.html").exists() and (tmp_path / "grades.csv").exists()
    assert "全班评分概览" in (tmp_path / "class.html").read_text(encoding="utf-8")
