"""Renderers of ``report.json``: HTML, Markdown, Gradescope ``results.json``, JUnit XML, and a class
dashboard over many reports.

Every renderer reads the JSON a grading wrote (never the grader's objects), so a report can be
rendered again later in another language or for another audience: ``grader report render``.
"""

from grader.render.formats import FORMATS, FILE_NAMES, render, write_formats

__all__ = ["FORMATS", "FILE_NAMES", "render", "write_formats"]
