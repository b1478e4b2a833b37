"""``grader report class DIR``: one page over a class's reports (a ``grader batch`` folder, or any
folder holding ``report.json`` files): score histograms per exercise, the tests most students
fail with their most common message, grading time per submission, failures by cause, and
``grades.csv``.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.batch.store import grades_csv, submission_status
from grader.i18n import Lang, Msg
from grader.render.formats import _environment
from grader.render.view import text
from grader.render.words import words
from grader.summary import STATUS
from grader.verdicts import Status

SUBMISSION_STATUS = {"graded": Msg("已评分", "graded"), "refused": Msg("拒收", "refused"),
                     "incomplete": Msg("不完整", "incomplete"), "pending": Msg("待评分", "pending")}
BINS = 10  # histogram bins over 0–100 % of an exercise's points
HARDEST_SHOWN = 12


@dataclass
class Histogram:
    exercise: str
    title: str
    counts: list[int]
    bars: list[dict[str, Any]]
    mean: float


def find_reports(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """(student id, report) for every ``report.json`` under ``folder``; unreadable ones are skipped
    with a note on stderr by the caller (they are not a class's reports)."""
    found = []
    for path in sorted(folder.rglob("report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or "exercises" not in report:
            continue
        student = str((report.get("submission") or {}).get("student") or path.parent.name)
        found.append((student, report))
    return found


def _histograms(reports: list[dict[str, Any]], lang: Lang) -> list[Histogram]:
    by_exercise: dict[str, list[float]] = {}
    titles: dict[str, str] = {}
    for report in reports:
        for exercise in report.get("exercises", []):
            total = float(exercise.get("max_score") or 0)
            if total <= 0:
                continue
            by_exercise.setdefault(exercise["id"], []).append(float(exercise.get("score", 0)) / total)
            titles[exercise["id"]] = text(exercise.get("title"), lang) or ""
    found = []
    for exercise, shares in sorted(by_exercise.items()):
        counts = [0] * BINS
        for share in shares:
            counts[min(int(share * BINS), BINS - 1)] += 1
        top = max(counts) or 1
        bars = [{"x": i * 24, "height": 80 * c / top, "count": c, "label": f"{i * 100 // BINS}–{(i + 1) * 100 // BINS}%"}
                for i, c in enumerate(counts)]
        found.append(Histogram(exercise, titles[exercise], counts, bars, 100 * statistics.mean(shares)))
    return found


def _hardest(reports: list[dict[str, Any]], lang: Lang) -> list[dict[str, Any]]:
    failing: Counter[tuple[str, str]] = Counter()
    messages: dict[tuple[str, str], Counter[str]] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for report in reports:
        for exercise in report.get("exercises", []):
            if not exercise.get("submitted", True):
                continue  # not an attempt: counted under failures by cause, not here
            for test in exercise.get("tests", []):
                key = (exercise["id"], test["name"])
                seen[key] += 1
                if test.get("status") != "passed":
                    failing[key] += 1
                    said = text(test.get("message"), lang)
                    if said:
                        messages.setdefault(key, Counter())[said.splitlines()[0][:300]] += 1
    rows = []
    for key, count in failing.most_common(HARDEST_SHOWN):
        common = messages.get(key, Counter()).most_common(1)
        rows.append({"exercise": key[0], "test": key[1].removeprefix("test_"), "failing": count, "of": seen[key],
                     "message": common[0][0] if common else "", "message_count": common[0][1] if common else 0})
    return rows


def _causes(reports: list[dict[str, Any]], lang: Lang) -> list[tuple[str, int]]:
    causes: Counter[str] = Counter()
    for report in reports:
        if report.get("status") == "refused":
            causes[words(lang)["refused"]] += 1
            continue
        for exercise in report.get("exercises", []):
            for test in exercise.get("tests", []):
                status = test.get("status")
                if status and status != "passed":
                    try:
                        causes[STATUS[Status(status)].render(lang)] += 1
                    except ValueError:
                        causes[status] += 1
    return causes.most_common()


def render_class(folder: Path, lang: Lang = "en") -> tuple[str, str, int]:
    """(class.html, grades.csv, number of reports) for the reports under ``folder``."""
    found = find_reports(folder)
    reports = [r for _, r in found]
    durations = sorted(float(r.get("duration_s") or 0) for r in reports)
    exercises = sorted({e["id"] for r in reports for e in r.get("exercises", [])})
    rows = [(student, str((r.get("submission") or {}).get("name") or ""), student, r) for student, r in found]
    csv_text = grades_csv(rows, exercises)
    totals = [(student, float(r.get("score") or 0), float(r.get("max_score") or 0), float(r.get("duration_s") or 0),
               SUBMISSION_STATUS[submission_status(r)].render(lang)) for student, r in found]
    html = _environment(True).get_template("class.html.j2").render(
        w=words(lang, "instructor"), lang=lang, count=len(reports), histograms=_histograms(reports, lang),
        hardest=_hardest(reports, lang), causes=_causes(reports, lang), totals=totals,
        median_s=statistics.median(durations) if durations else 0.0, max_s=durations[-1] if durations else 0.0,
    )
    return html, csv_text, len(reports)
