"""A submitted notebook's code as the exercise module the grader grades.

Run on the instructor's host after nbgrader has sanitised the notebook (outputs cleared, locked
cells restored from the source), so what is graded is the restored version. Nothing here runs the
code: it is read as text, joined in notebook order (the order the cells appear, not the order a
student ran them), and graded in the sandbox.

Taken: the locked setup cell, every solution cell, and code cells the student added (helpers).
Left out: the graded test cells (they only call the public checks), markdown. A line that is a
shell escape or an IPython magic (``!pip install …``, ``%timeit``) is not Python: the notebook is
refused with a message that names the cell, rather than graded with the line silently dropped.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import nbformat

from grader.i18n import Msg

MAGIC_LINE = re.compile(r"^\s*[!%]")
FUTURE = re.compile(r"^from __future__ import [^\n]+$", re.MULTILINE)


class NotebookRefused(ValueError):
    def __init__(self, message: Msg) -> None:
        super().__init__(message.en)
        self.message = message


@dataclass(frozen=True)
class ExtractedModule:
    source: str
    cells: int  # how many code cells went in


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_test_cell(cell: nbformat.NotebookNode) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def extract_module(notebook: nbformat.NotebookNode) -> ExtractedModule:
    parts: list[str] = []
    futures: list[str] = []
    count = 0
    for index, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code" or is_test_cell(cell):
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        magic = next((line for line in source.splitlines() if MAGIC_LINE.match(line)), None)
        if magic is not None:
            shown = magic.strip()[:80]
            raise NotebookRefused(Msg(
                f"第 {index} 个单元格含有 shell 命令或 IPython 魔法命令（`{shown}`），它不是 Python 代码，"
                "评分时不能运行。请删除这一行（安装包不是作业的一部分）后重新提交。",
                f"cell {index} has a shell escape or IPython magic (`{shown}`), which is not Python and cannot "
                "run when grading. Remove the line (installing packages is not part of the assignment) and "
                "submit again."))
        futures += FUTURE.findall(source)
        body = FUTURE.sub("", source).strip("\n")
        grade_id = _nbgrader(cell).get("grade_id", "")
        parts.append(f"# -- notebook cell {index}{f' ({grade_id})' if grade_id else ''} --\n{body}\n")
        count += 1
    header = "\n".join(dict.fromkeys(futures))
    source = (header + "\n\n" if header else "") + "\n".join(parts)
    try:
        ast.parse(source)
    except SyntaxError:
        pass  # graded as it is: the student's syntax error is reported like any other
    return ExtractedModule(source, count)
