"""The batch's progress display: done / failed / remaining and the ETA, on one live line (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from grader.batch.runner import Progress as Callbacks
from grader.batch.store import BatchSummary

FAILED = ("grader error", "host fault", "incomplete")


class BatchProgress:
    def __init__(self, console: Console) -> None:
        self.counts = {"graded": 0, "refused": 0, "failed": 0, "reused": 0}
        self.remaining = 0
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.task: Any = None

    def __enter__(self) -> "BatchProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def _detail(self) -> str:
        c = self.counts
        return (f"graded {c['graded']} · refused {c['refused']} · failed {c['failed']} · "
                f"remaining {self.remaining}" + (f" · already graded {c['reused']}" if c["reused"] else ""))

    def callbacks(self) -> Callbacks:
        def on_plan(total: int, reused: int) -> None:
            self.remaining, self.counts["reused"] = total, reused
            self.task = self.progress.add_task("grading", total=total, detail=self._detail())

        def on_done(job: Any, status: str, seconds: float) -> None:
            self.remaining -= 1
            key = "failed" if status in FAILED else status
            self.counts[key] = self.counts.get(key, 0) + 1
            self.progress.update(self.task, advance=1, detail=self._detail())

        return Callbacks(on_plan, on_done)

    def final_line(self, summary: BatchSummary) -> str:
        rate = f", {3600 * summary.graded_now / summary.wall_s:.0f} submissions/hour" \
            if summary.graded_now and summary.wall_s else ""
        return f"done in {summary.wall_s:.0f} s: {self._detail()}{rate}"
