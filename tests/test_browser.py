"""The HTML reports and the class dashboard in a real headless Chromium (Debian's): no console
errors, no network request, the key elements there, nothing hidden shown to a student. Screenshots
go to ``$GRADER_SCREENSHOTS`` when it is set (for looking at them), else to the test's tmp folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from reports_support import REQUIRE_BROWSER, load

from grader.render import render
from grader.render.dashboard import render_class

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("GRADER_REQUIRE_BROWSER=1 but chromium is not installed (GRADER_BROWSER=1 bash scripts/setup.sh)")
        pytest.skip("chromium is not installed: GRADER_BROWSER=1 bash scripts/setup.sh")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def reports(graded_report_folders: dict[str, Path]) -> dict[str, Path]:
    return graded_report_folders


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("GRADER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, page_file: Path, shot: Path):
    """Load a page; return (page, console errors, requests other than the page itself)."""
    page = browser.new_page(viewport={"width": 1000, "height": 1400})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if r.url != page_file.as_uri() else None)
    page.goto(page_file.as_uri(), wait_until="load")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")  # everything, for a look
    page.screenshot(path=str(shot), full_page=True)
    return page, errors, requests


def _hidden_only_lines(report: dict, lang: str) -> list[str]:
    """Lines of hidden tests' details that hold numbers (inputs, expected values) and that no test a
    student may see in full says too."""
    tests = [t for e in report["exercises"] for t in e["tests"]]
    shown = " ".join((t["detail"] or t["message"] or {}).get(lang, "") for t in tests if t["shows"] == "all")
    shown = " ".join(shown.split())
    lines = []
    for test in tests:
        if test["visibility"] == "hidden" and test["shows"] != "all" and test["detail"]:
            hint = " ".join((test["message"] or {}).get(lang, "").split())  # the symptom and hint: a student's
            for line in test["detail"][lang].splitlines():
                line = " ".join(line.split())
                if any(c.isdigit() for c in line) and line not in shown + hint and line not in lines:
                    lines.append(line)
    return lines


@pytest.mark.parametrize("name", ["passing", "failing", "hostile"])
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("audience", ["student", "instructor"])
def test_report_page(browser, reports, shots, tmp_path: Path, name: str, lang: str, audience: str) -> None:
    report = load(reports[name])
    page_file = tmp_path / f"{name}-{lang}-{audience}.html"
    page_file.write_text(render(report, "html", lang, audience), encoding="utf-8")
    page, errors, requests = _open(browser, page_file, shots / f"report-{name}-{lang}-{audience}.png")
    try:
        assert not errors, errors
        assert not requests, requests
        total = page.locator("#total").inner_text()
        assert total.startswith(f"{report['score']:g} / {report['max_score']:g}")
        for exercise in report["exercises"]:
            section = page.locator(f"section#{exercise['id']}")
            assert section.count() == 1
            failed = [t for t in exercise["tests"] if t["status"] != "passed"] if exercise["submitted"] else []
            assert section.locator(".test.failed").count() == len(failed)  # a missing exercise: said once
        body = " ".join(page.locator("body").inner_text().split())
        if audience == "student":
            for line in _hidden_only_lines(report, lang):
                assert line not in body, line
        if name == "failing":
            assert _hidden_only_lines(report, lang), "the failing report has hidden details to keep from students"
            charts = page.locator("svg.chart")
            assert charts.count() > 0
            if audience == "instructor":
                assert page.locator("svg.chart.heat").count() > 0 and page.locator("svg.chart.speed").count() > 0
        if lang == "zh" and name == "failing":  # a message's `code` is shown as code, not with backticks
            assert page.locator(".message code").count() > 0
            assert "`" not in "".join(page.locator(".message").all_inner_texts())
        if name == "hostile":
            assert page.locator("pre.output").count() == 1
            assert '<script>alert("owned")</script>' in page.locator("pre.output").inner_text()
            assert page.locator("main script, main img").count() == 0  # shown as text, never as markup
        heading = page.locator("h1").inner_text()
        assert ("练习评分报告" in heading) if lang == "zh" else ("grading report" in heading)
    finally:
        page.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_class_dashboard_page(browser, reports, shots, tmp_path: Path, lang: str) -> None:
    html, _, count = render_class(reports["passing"].parent, lang)
    page_file = tmp_path / "class.html"
    page_file.write_text(html, encoding="utf-8")
    page, errors, requests = _open(browser, page_file, shots / f"class-{lang}.png")
    try:
        assert not errors and not requests, (errors, requests)
        assert page.locator("#count").inner_text().startswith(str(count))
        assert page.locator("#histograms figure").count() >= 4
        assert page.locator("#hardest tr").count() >= 2
        assert page.locator("#students tr").count() == count + 1
    finally:
        page.close()
