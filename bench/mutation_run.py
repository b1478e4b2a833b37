"""Mutation run over the reference solutions: how many small breakages do the autotests catch?

The exercise bar asks that the autotests kill at least 90 % of the non-equivalent mutants of each
exercise. This tool makes the mutants and grades them, in two steps:

* **generate** — parse ``solutions/exNN_*.py`` with :mod:`ast` and make one mutant per site and
  operator (table ``OPERATORS``): arithmetic operators swapped, comparisons flipped, ``and``/``or``
  swapped, ``not`` dropped, numeric and boolean constants changed, keyword-argument constants
  changed, method calls dropped or swapped for a sibling, statements replaced by ``pass``,
  ``return expr`` made ``return None``. Docstrings, annotations, imports, decorators, string
  constants (error messages) and ``raise NotImplementedError`` are left alone. A mutant whose
  tree equals the reference's, or another mutant's, is discarded as trivially equivalent; one
  that does not compile is discarded too. Each mutant has a stable id:
  ``exercise:line:col:operator:description``.
* **grade** — write the mutated module into a temporary folder and grade it with
  ``tests/support.py``'s ``grade_folder`` (the default process sandbox). A mutant is *killed* when
  its score is below the reference's score on the same tests (an import failure scores 0).

Why tests are scoped to a task by default: a mutant changes one top-level function, so only that
task's tests can see it. Grading just those (``--scope task``) cuts the time per mutant to a few
seconds; it can only miss kills (a test of another task that happens to call the function), never
invent one. A mutant outside any task's function, or in a helper no task function names, is graded
on the whole exercise. ``--scope exercise`` grades every mutant on the whole exercise.

Kills that rest only on speed tests are flagged (``speed_only``): on a busy machine a timing test
can fail for the reference too, so such a kill deserves a second look.

Usage::

    .venv/bin/python bench/mutation_run.py --exercise ex01_tensors --sample 40 \\
        --out bench/results/mutation-ex01.json
    .venv/bin/python bench/mutation_run.py --list --exercise ex02_autograd   # mutants only, no grading
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

Path_ = tuple[tuple[str, int | None], ...]  # (field, index in a list field or None) from the root


@dataclass(frozen=True)
class Site:
    """A node that operators may rewrite, with where it sits."""

    node: ast.AST
    path: Path_
    parent: ast.AST | None
    scope: str  # the top-level def or class it lies in ("" at module level)
    in_function: bool


@dataclass
class Mutant:
    id: str
    exercise: str
    scope: str
    line: int
    operator: str
    description: str
    original: str  # the reference line
    mutated: str  # that line after the mutation
    source: str = field(repr=False, default="")


# An operator looks at one site and yields (description, replacement node) pairs.
Rewrite = Iterator[tuple[str, ast.AST]]

BINOP_SWAPS: dict[type[ast.operator], list[type[ast.operator]]] = {
    ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div, ast.Mult], ast.Pow: [ast.Mult], ast.MatMult: [ast.Mult],
    ast.Mod: [ast.FloorDiv],
}
BINOP_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                 ast.Pow: "**", ast.MatMult: "@", ast.Mod: "%"}
COMPARE_FLIPS: dict[type[ast.cmpop], list[type[ast.cmpop]]] = {
    ast.Lt: [ast.LtE, ast.GtE], ast.LtE: [ast.Lt, ast.Gt], ast.Gt: [ast.GtE, ast.LtE],
    ast.GtE: [ast.Gt, ast.Lt], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot], ast.IsNot: [ast.Is], ast.In: [ast.NotIn], ast.NotIn: [ast.In],
}
COMPARE_SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
                   ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
# Methods whose call can be dropped and leave a well-formed expression: `x.clamp(0)` → `x`.
DROPPABLE_METHODS = frozenset({
    "clamp", "clamp_min", "clamp_max", "detach", "contiguous", "clone", "abs", "item", "float",
    "double", "long", "to", "flatten", "reshape", "view", "unsqueeze", "squeeze", "requires_grad_",
    "expand_as", "cpu", "t",
})
# Calls swapped for a sibling with the same signature: the realistic "wrong function" mistake.
SWAPPED_CALLS = {
    "sum": "mean", "mean": "sum", "max": "min", "min": "max", "clamp_min": "clamp_max",
    "clamp_max": "clamp_min", "zeros_like": "ones_like", "ones_like": "zeros_like", "zeros": "ones",
    "ones": "zeros", "zeros_": "ones_", "ones_": "zeros_", "sigmoid": "tanh", "tanh": "sigmoid",
    "exp": "log", "log": "exp", "argmax": "argmin", "argmin": "argmax", "eval": "train",
    "softmax": "log_softmax", "log_softmax": "softmax", "xavier_uniform_": "xavier_normal_",
    "kaiming_normal_": "kaiming_uniform_", "ReLU": "Tanh", "BatchNorm1d": "LayerNorm",
}


def _with(node: ast.AST, **changes: object) -> ast.AST:
    new = copy.deepcopy(node)
    for name, value in changes.items():
        setattr(new, name, value)
    return new


def binary_operator(site: Site) -> Rewrite:
    """`a + b` → `a - b` and the like; augmented assignments (`x -= g`) too."""
    node = site.node
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        old = type(node.op)
        for new in BINOP_SWAPS.get(old, []):
            yield f"{BINOP_SYMBOLS[old]}→{BINOP_SYMBOLS[new]}", _with(node, op=new())


def comparison(site: Site) -> Rewrite:
    """`<` → `<=` or `>=`, `==` ↔ `!=`, `is` ↔ `is not`, `in` ↔ `not in`; each operator of a chain."""
    node = site.node
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in COMPARE_FLIPS.get(type(op), []):
                ops = list(node.ops)
                ops[i] = new()
                yield f"{COMPARE_SYMBOLS[type(op)]}→{COMPARE_SYMBOLS[new]}", _with(node, ops=ops)


def boolean_operator(site: Site) -> Rewrite:
    node = site.node
    if isinstance(node, ast.BoolOp):
        new, text = (ast.Or, "and→or") if isinstance(node.op, ast.And) else (ast.And, "or→and")
        yield text, _with(node, op=new())


def drop_not(site: Site) -> Rewrite:
    node = site.node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "drop not", copy.deepcopy(node.operand)


def _is_number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _number_changes(value: int | float) -> list[int | float]:
    if isinstance(value, float):
        return [1.0] if value == 0.0 else [value * 2]
    if value == 0:
        return [1]
    if value == 1:
        return [0, 2]
    return [value + 1]


def constant(site: Site) -> Rewrite:
    """Numbers: 0→1, 1→0 and 2, n→n+1, floats ×2; booleans flipped. Keyword values: see `keyword_constant`."""
    node = site.node
    if isinstance(site.parent, ast.keyword):
        return
    if _is_number(node):
        for new in _number_changes(node.value):
            yield f"{node.value!r}→{new!r}", ast.Constant(value=new)
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"{node.value}→{not node.value}", ast.Constant(value=not node.value)


def keyword_constant(site: Site) -> Rewrite:
    """`keepdim=True` → `False`, `dim=d` → `d±1` on integer literals, `eps=1e-5` → ×2."""
    node = site.node
    if not (isinstance(node, ast.keyword) and node.arg and isinstance(node.value, ast.Constant)):
        return
    value = node.value.value
    if isinstance(value, bool):
        changes: list[object] = [not value]
    elif isinstance(value, int):
        changes = [value - 1, value + 1]
    elif isinstance(value, float):
        changes = _number_changes(value)
    else:
        return  # strings (mode="fan_out") are names, not magnitudes
    for new in changes:
        yield f"{node.arg}={value!r}→{new!r}", _with(node, value=ast.Constant(value=new))


def drop_method_call(site: Site) -> Rewrite:
    """`x.clamp_min(0)` → `x`: a forgotten clamp, detach, clone, reshape…"""
    node = site.node
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in DROPPABLE_METHODS and not isinstance(site.parent, ast.Expr)):
        yield f"drop .{node.func.attr}()", copy.deepcopy(node.func.value)


def swap_call(site: Site) -> Rewrite:
    """`x.sum(1)` → `x.mean(1)`, `torch.zeros_like` → `torch.ones_like`, `nn.ReLU` → `nn.Tanh`…"""
    node = site.node
    if not isinstance(node, ast.Call):
        return
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in SWAPPED_CALLS:
        new = SWAPPED_CALLS[func.attr]
        yield f".{func.attr}→.{new}", _with(node, func=_with(func, attr=new))
    elif isinstance(func, ast.Name) and func.id in SWAPPED_CALLS and func.id not in {"sum", "max", "min"}:
        new = SWAPPED_CALLS[func.id]
        yield f"{func.id}→{new}", _with(node, func=_with(func, id=new))


def delete_statement(site: Site) -> Rewrite:
    """Each statement in a function body becomes `pass` (compound statements as a whole)."""
    node = site.node
    if site.in_function and isinstance(node, ast.stmt) and not isinstance(node, ast.Pass):
        yield "stmt→pass", ast.Pass()


def return_none(site: Site) -> Rewrite:
    node = site.node
    if (isinstance(node, ast.Return) and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)):
        yield "return→return None", ast.Return(value=ast.Constant(value=None))


OPERATORS: dict[str, Callable[[Site], Rewrite]] = {
    "binop": binary_operator,
    "compare": comparison,
    "boolop": boolean_operator,
    "not": drop_not,
    "constant": constant,
    "keyword": keyword_constant,
    "drop_call": drop_method_call,
    "swap_call": swap_call,
    "delete": delete_statement,
    "return": return_none,
}

SKIPPED_FIELDS = frozenset({"annotation", "returns", "decorator_list", "type_comment", "type_params"})


def _is_docstring(node: ast.AST, index: int | None, parent: ast.AST | None) -> bool:
    return (index == 0 and isinstance(parent, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _raises_not_implemented(node: ast.AST) -> bool:
    if not isinstance(node, ast.Raise) or node.exc is None:
        return False
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def iter_sites(tree: ast.Module) -> Iterator[Site]:
    """Every node an operator may touch, in a fixed order (so ids and samples are stable)."""

    def walk(node: ast.AST, path: Path_, parent: ast.AST | None, scope: str, in_function: bool) -> Iterator[Site]:
        yield Site(node, path, parent, scope, in_function)
        if isinstance(node, ast.Raise):
            return  # its arguments are error messages; the statement itself may still be deleted
        for name, value in ast.iter_fields(node):
            if name in SKIPPED_FIELDS:
                continue
            children = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for index, child in children:
                if not isinstance(child, ast.AST) or isinstance(child, (ast.Import, ast.ImportFrom)):
                    continue
                if _is_docstring(child, index, node) or _raises_not_implemented(child):
                    continue
                child_scope = scope
                if not scope and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    child_scope = child.name
                # Statements count as "in a function" only inside a def's body, not its defaults.
                inside = in_function or (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name == "body")
                yield from walk(child, (*path, (name, index)), node, child_scope, inside)

    yield from walk(tree, (), None, "", False)


def _replace(tree: ast.Module, path: Path_, new: ast.AST) -> ast.Module:
    tree = copy.deepcopy(tree)
    holder: ast.AST = tree
    for name, index in path[:-1]:
        holder = getattr(holder, name) if index is None else getattr(holder, name)[index]
    name, index = path[-1]
    if index is None:
        setattr(holder, name, new)
    else:
        getattr(holder, name)[index] = new
    return ast.fix_missing_locations(tree)


def _line_after(source_lines: list[bytes], node: ast.AST, new: ast.AST) -> tuple[str, str]:
    """The reference line and the same line with the node rewritten (offsets are in bytes)."""
    line = source_lines[node.lineno - 1]
    original = line.decode().strip()
    if node.end_lineno != node.lineno:
        return original, f"{ast.unparse(new)}  # was: {original} …"
    mutated = line[:node.col_offset] + ast.unparse(new).encode() + line[node.end_col_offset:]
    return original, mutated.decode().strip()


def generate_mutants(source: str, exercise: str) -> tuple[list[Mutant], dict[str, int]]:
    """All mutants of ``source`` that compile and differ from it and from each other.

    The counts say what was made and what was discarded (``generated`` ≥ ``compiled``).
    """
    tree = ast.parse(source)
    original_dump = ast.dump(tree)
    lines = source.encode().splitlines()
    seen: set[str] = {original_dump}
    counts = {"generated": 0, "equivalent": 0, "duplicate": 0, "not_compiling": 0, "compiled": 0}
    mutants: list[Mutant] = []
    ids: dict[str, int] = {}
    for site in iter_sites(tree):
        if not hasattr(site.node, "lineno"):
            continue
        for operator, rewrite in OPERATORS.items():
            for description, new in rewrite(site):
                counts["generated"] += 1
                ast.copy_location(new, site.node)
                mutated_tree = _replace(tree, site.path, new)
                dump = ast.dump(mutated_tree)
                if dump in seen:
                    counts["equivalent" if dump == original_dump else "duplicate"] += 1
                    continue
                seen.add(dump)
                try:
                    mutated_source = ast.unparse(mutated_tree)
                    compile(mutated_source, f"{exercise}.py", "exec")
                except (SyntaxError, ValueError):
                    counts["not_compiling"] += 1
                    continue
                counts["compiled"] += 1
                base = f"{exercise}:{site.node.lineno}:{site.node.col_offset}:{operator}:{description}"
                ids[base] = ids.get(base, 0) + 1
                mutant_id = base if ids[base] == 1 else f"{base}#{ids[base]}"
                original, mutated = _line_after(lines, site.node, new)
                mutants.append(Mutant(mutant_id, exercise, site.scope, site.node.lineno, operator,
                                      description, original, mutated, mutated_source))
    return mutants, counts


def stable_sample(mutants: list[Mutant], size: int | None, seed: int) -> list[Mutant]:
    """A seeded sample that depends only on the mutant ids, in source order."""
    if size is None or size >= len(mutants):
        return list(mutants)
    chosen = set(random.Random(seed).sample(sorted(m.id for m in mutants), size))
    return [m for m in mutants if m.id in chosen]


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------


@dataclass
class TestOutcome:
    task: str
    kind: str
    max_score: float
    score: float


@dataclass
class Verdict:
    id: str
    scope: str
    line: int
    operator: str
    description: str
    original: str
    mutated: str
    status: str  # killed | survived | error
    score: float = 0.0
    max_score: float = 0.0
    tests_graded: str = ""  # "task:<name>" or "exercise"
    failed_tests: list[str] = field(default_factory=list)
    speed_only: bool = False
    seconds: float = 0.0
    note: str = ""


def _grade(folder: Path, exercise: str, keyword: str = "") -> dict[str, TestOutcome]:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from support import grade_folder  # the project's own way to grade a folder

    results = grade_folder(folder, [exercise], keyword=keyword)
    return {name: TestOutcome(r.task, r.kind, r.max_score, r.score) for name, r in results.items()}


def grade_reference(exercise: str) -> dict[str, TestOutcome]:
    """The reference on the whole exercise: every test's task and full score."""
    with tempfile.TemporaryDirectory(prefix="mutation-ref-") as tmp:
        folder = Path(tmp)
        (folder / f"{exercise}.py").write_text((ROOT / "solutions" / f"{exercise}.py").read_text(encoding="utf-8"),
                                               encoding="utf-8")
        return _grade(folder, exercise)


def tests_for(mutant: Mutant, reference: dict[str, TestOutcome], source: str, scope: str) -> tuple[str, list[str]]:
    """Which tests can see ``mutant``: its task's, or the whole exercise's."""
    if scope == "exercise":
        return "exercise", sorted(reference)
    tasks = {t.task for t in reference.values()}
    task = mutant.scope if mutant.scope in tasks else None
    if task is None and mutant.scope:
        # A helper (SwishFn) belongs to the one task whose function names it.
        tree = ast.parse(source)
        users = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in tasks
                 and any(isinstance(x, ast.Name) and x.id == mutant.scope for x in ast.walk(n))]
        task = users[0] if len(users) == 1 else None
    if task is None:
        return "exercise", sorted(reference)
    return f"task:{task}", sorted(name for name, t in reference.items() if t.task == task)


def grade_mutant(mutant: Mutant, reference: dict[str, TestOutcome], reference_source: str,
                 scope: str = "task") -> Verdict:
    graded, names = tests_for(mutant, reference, reference_source, scope)
    full = sum(reference[n].score for n in names)
    verdict = Verdict(mutant.id, mutant.scope, mutant.line, mutant.operator, mutant.description,
                      mutant.original, mutant.mutated, "error", max_score=full, tests_graded=graded)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        folder = Path(tmp)
        (folder / f"{mutant.exercise}.py").write_text(mutant.source, encoding="utf-8")
        try:
            keyword = "" if graded == "exercise" else " or ".join(names)
            results = _grade(folder, mutant.exercise, keyword)
        except Exception as exc:  # noqa: BLE001 - a crash of the grading run is recorded, not fatal
            verdict.note = f"grading raised {type(exc).__name__}: {exc}"
            verdict.seconds = round(time.perf_counter() - started, 2)
            return verdict
    verdict.seconds = round(time.perf_counter() - started, 2)
    results = {n: r for n, r in results.items() if n in names}
    verdict.score = sum(r.score for r in results.values())
    # A test the reference passed but that did not run here counts as lost.
    verdict.failed_tests = sorted(n for n in names if n not in results or results[n].score < reference[n].score)
    verdict.status = "killed" if verdict.failed_tests or verdict.score < full else "survived"
    verdict.speed_only = bool(verdict.failed_tests) and all(reference[n].kind == "speed" for n in verdict.failed_tests)
    return verdict


# --------------------------------------------------------------------------------------------
# The run and its report
# --------------------------------------------------------------------------------------------


@dataclass
class ExerciseSummary:
    exercise: str
    generated: int
    compiled: int
    discarded_equivalent: int
    discarded_duplicate: int
    discarded_not_compiling: int
    sampled: int = 0
    killed: int = 0
    survived: int = 0
    errors: int = 0
    speed_only_kills: int = 0
    kill_rate: float | None = None
    reference_score: float = 0.0
    reference_max_score: float = 0.0
    seconds: float = 0.0
    mutants: list[Verdict] = field(default_factory=list)

    def tally(self) -> None:
        self.killed = sum(v.status == "killed" for v in self.mutants)
        self.survived = sum(v.status == "survived" for v in self.mutants)
        self.errors = sum(v.status == "error" for v in self.mutants)
        self.speed_only_kills = sum(v.status == "killed" and v.speed_only for v in self.mutants)
        decided = self.killed + self.survived
        self.kill_rate = round(self.killed / decided, 4) if decided else None


def discover_exercises() -> list[str]:
    return sorted(p.stem for p in (ROOT / "solutions").glob("ex[0-9][0-9]_*.py"))


def write_report(path: Path, summaries: list[ExerciseSummary], args: argparse.Namespace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": "bench/mutation_run.py",
        "seed": args.seed, "sample": args.sample, "scope": args.scope, "jobs": args.jobs,
        "kill_rule": "killed when the mutant scores below the reference on the graded tests",
        "exercises": {s.exercise: asdict(s) for s in summaries},
    }
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def print_table(summaries: list[ExerciseSummary]) -> None:
    header = f"{'exercise':<16}{'generated':>10}{'compiled':>10}{'sampled':>9}{'killed':>8}{'survived':>10}{'errors':>8}{'kill rate':>11}"
    print(header)
    print("-" * len(header))
    for s in summaries:
        rate = "-" if s.kill_rate is None else f"{s.kill_rate:.1%}"
        print(f"{s.exercise:<16}{s.generated:>10}{s.compiled:>10}{s.sampled:>9}{s.killed:>8}{s.survived:>10}"
              f"{s.errors:>8}{rate:>11}")
    for s in summaries:
        flagged = [v for v in s.mutants if v.status != "killed" or v.speed_only]
        if not flagged:
            continue
        print(f"\n{s.exercise}: survivors (classify each as equivalent or a gap in the tests)")
        for v in flagged:
            tag = {"survived": "SURVIVED", "error": "ERROR", "killed": "KILLED (speed only)"}[v.status]
            print(f"  {tag:<20} {v.id}")
            print(f"  {'':<20}   - {v.original}")
            print(f"  {'':<20}   + {v.mutated}")
            if v.note:
                print(f"  {'':<20}   ! {v.note}")


def _grade_job(job: tuple[Mutant, dict[str, TestOutcome], str, str]) -> Verdict:
    return grade_mutant(*job)


def run_exercise(exercise: str, args: argparse.Namespace, done: dict[str, Verdict],
                 on_verdict: Callable[[Verdict, ExerciseSummary], None]) -> ExerciseSummary:
    source = (ROOT / "solutions" / f"{exercise}.py").read_text(encoding="utf-8")
    mutants, counts = generate_mutants(source, exercise)
    sample = stable_sample(mutants, args.sample, args.seed)
    summary = ExerciseSummary(exercise, counts["generated"], counts["compiled"], counts["equivalent"],
                              counts["duplicate"], counts["not_compiling"], sampled=len(sample))
    if args.list:
        for m in sample:
            print(f"{m.id}\n    - {m.original}\n    + {m.mutated}")
        return summary
    started = time.perf_counter()
    reference = grade_reference(exercise)
    summary.reference_score = sum(t.score for t in reference.values())
    summary.reference_max_score = sum(t.max_score for t in reference.values())
    if summary.reference_score < summary.reference_max_score:
        lost = [n for n, t in reference.items() if t.score < t.max_score]
        print(f"warning: the reference of {exercise} lost points on {lost}; mutants are compared with "
              f"what it scored", file=sys.stderr)
    todo = [m for m in sample if m.id not in done]
    summary.mutants = [done[m.id] for m in sample if m.id in done]
    jobs = [(m, reference, source, args.scope) for m in todo]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            verdicts = pool.map(_grade_job, jobs)
            for verdict in verdicts:
                summary.mutants.append(verdict)
                on_verdict(verdict, summary)
    else:
        for job in jobs:
            verdict = _grade_job(job)
            summary.mutants.append(verdict)
            on_verdict(verdict, summary)
    order = {m.id: i for i, m in enumerate(sample)}
    summary.mutants.sort(key=lambda v: order[v.id])
    summary.seconds = round(time.perf_counter() - started, 1)
    summary.tally()
    return summary


def load_done(path: Path | None) -> dict[str, Verdict]:
    """Verdicts of an earlier run written to ``path`` (for --resume)."""
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {v["id"]: Verdict(**v) for ex in data.get("exercises", {}).values() for v in ex.get("mutants", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", action="append", help="exercise id (repeatable); default: all")
    parser.add_argument("--sample", type=int, default=None, help="grade a seeded sample of N mutants per exercise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="mutants graded at once (each starts a worker)")
    parser.add_argument("--scope", choices=["task", "exercise"], default="task",
                        help="grade a mutant on its task's tests (default) or the whole exercise's")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--resume", action="store_true", help="reuse the verdicts already in --out")
    parser.add_argument("--list", action="store_true", help="list the (sampled) mutants, grade nothing")
    args = parser.parse_args(argv)

    exercises = args.exercise or discover_exercises()
    unknown = set(exercises) - set(discover_exercises())
    if unknown:
        parser.error(f"no reference solution for {sorted(unknown)} in solutions/")
    done = load_done(args.out) if args.resume else {}
    summaries: list[ExerciseSummary] = []

    def progress(verdict: Verdict, current: ExerciseSummary) -> None:
        mark = {"killed": "killed", "survived": "SURVIVED", "error": "ERROR"}[verdict.status]
        print(f"  {mark:<9} {verdict.seconds:6.1f}s  {verdict.id}", flush=True)
        if args.out:  # partial results survive an interrupted run (use --resume)
            current.tally()
            write_report(args.out, [*summaries, current], args)

    for exercise in exercises:
        print(f"{exercise}:", flush=True)
        summary = run_exercise(exercise, args, done, progress)
        summaries.append(summary)
        if args.out and not args.list:
            write_report(args.out, summaries, args)
    print()
    print_table(summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
