"""Autotests are graded through the grader's pytest plugin (markers, fixtures, scores)."""

pytest_plugins = ["grader.plugin"]
