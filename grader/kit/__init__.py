"""Exports of a course: the student kit (what students get) and the autograder (what a grading host gets)."""

from grader.kit.autograder import export_autograder_course
from grader.kit.common import ExportError, ExportResult
from grader.kit.student import export_student_kit

__all__ = ["ExportError", "ExportResult", "export_autograder_course", "export_student_kit"]
