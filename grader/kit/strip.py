"""Cut hidden tests, and everything only they use, out of a test module's source.

The course keeps a task's public and hidden tests side by side in one file (they share helpers
and messages). A student kit must keep the public ones and lose every trace of the hidden ones:
their names, their input generators, their expected values and the probes and parameters only
they use. This is done on the syntax tree: the roots are the public tests (and module-level
statements that are not definitions); every top-level definition they reach by name is kept,
everything else is cut from the source text, with the comment block directly above it, so the
kept code keeps its formatting and comments.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


@dataclass
class StrippedModule:
    source: str
    removed: list[str] = field(default_factory=list)  # top-level names cut out
    kept: set[str] = field(default_factory=set)  # top-level names still defined
    strings: set[str] = field(default_factory=set)  # string constants of the kept code (param names…)
    probes: set[str] = field(default_factory=set)  # probe names the kept code calls (``x.probe("name", …)``)


def _defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _used_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def test_visibility(node: ast.stmt) -> str | None:
    """``public``/``hidden`` for a test function or class, None for anything else.

    A test is public only if it says so (``graded(..., visibility="public")`` or
    ``@pytest.mark.public``); anything else is treated as hidden, like ``graded``'s default.
    """
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return None
    if not node.name.startswith(("test_", "Test")):
        return None
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "visibility" and isinstance(keyword.value, ast.Constant):
                    return "public" if keyword.value.value == "public" else "hidden"
        if isinstance(decorator, ast.Attribute) and decorator.attr == "public":
            return "public"
    return "hidden"


def _span(node: ast.stmt, lines: list[str]) -> tuple[int, int]:
    """0-based [start, end) of a statement with its decorators and the comment block right above."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start, node.end_lineno or node.lineno


def _cut(source: str, spans: list[tuple[int, int]]) -> str:
    lines = source.splitlines(keepends=True)
    drop = {i for start, end in spans for i in range(start, end)}
    kept = "".join(line for i, line in enumerate(lines) if i not in drop)
    return re.sub(r"\n{4,}", "\n\n\n", kept).rstrip() + "\n"


def _keep(tree: ast.Module, roots: list[ast.stmt]) -> list[ast.stmt]:
    """The top-level statements reachable by name from ``roots``, in source order."""
    by_name: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            for name in _defined_names(node):
                by_name.setdefault(name, []).append(node)
    kept: list[ast.stmt] = []
    todo = list(roots)
    while todo:
        node = todo.pop()
        if any(node is k for k in kept):
            continue
        kept.append(node)
        for name in _used_names(node):
            todo.extend(by_name.get(name, []))
    return [n for n in tree.body if any(n is k for k in kept)]


def probe_calls(nodes: list[ast.stmt] | ast.AST) -> set[str]:
    """Probe names called as ``<impl>.probe("name", …)`` in ``nodes``."""
    found = set()
    for node in nodes if isinstance(nodes, list) else [nodes]:
        for sub in ast.walk(node):
            if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "probe"
                    and sub.args and isinstance(sub.args[0], ast.Constant) and isinstance(sub.args[0].value, str)):
                found.add(sub.args[0].value)
    return found


def _facts(kept: list[ast.stmt], result: StrippedModule) -> StrippedModule:
    result.strings = {sub.value for node in kept for sub in ast.walk(node)
                      if isinstance(sub, ast.Constant) and isinstance(sub.value, str)}
    result.probes = probe_calls(kept)
    return result


def _reduce(source: str, tree: ast.Module, roots: list[ast.stmt]) -> StrippedModule:
    kept = _keep(tree, roots)
    cut = [n for n in tree.body if not any(n is k for k in kept)]
    lines = source.splitlines(keepends=True)
    result = StrippedModule(_cut(source, [_span(n, lines) for n in cut]),
                            removed=sorted(name for n in cut for name in _defined_names(n)),
                            kept={name for n in kept for name in _defined_names(n)})
    return _facts(kept, result)


def public_tests_only(source: str) -> StrippedModule:
    """A test module without its hidden tests and without what only they used."""
    tree = ast.parse(source)
    roots = [n for n in tree.body
             if test_visibility(n) == "public" or (test_visibility(n) is None and not isinstance(n, DEFINITIONS))
             or "pytestmark" in _defined_names(n)]
    return _reduce(source, tree, roots)


def hidden_test_names(source: str) -> list[str]:
    return [n.name for n in ast.parse(source).body if test_visibility(n) == "hidden"]  # type: ignore[attr-defined]


def probes_only(source: str, names: set[str]) -> StrippedModule:
    """A probe module with only the probes in ``names`` (and what they use)."""
    tree = ast.parse(source)
    roots = [n for n in tree.body
             if (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in names)
             or not isinstance(n, DEFINITIONS)]
    return _reduce(source, tree, roots)


def probe_names(source: str) -> list[str]:
    """Functions registered with ``@probe`` in a probe module."""
    return [n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(isinstance(d, ast.Name) and d.id == "probe" for d in n.decorator_list)]


def sibling_imports(source: str) -> set[str]:
    """Names a probe module imports from another probe module (``from .common import x``)."""
    return {alias.name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
            for alias in node.names}
