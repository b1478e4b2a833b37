"""Attacks on what probes and timings observe inside the sandbox (issue: nothing the sandbox
reports can be forged). Each attack is a wrong (or slow) solution plus a trick; graded on every
backend, it must score no more than the same solution without the trick (graded once, on the
``process`` backend: a wrong solution scores the same everywhere), and leave nothing running."""

from __future__ import annotations

import functools
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import COURSE, grade_folder, require_backend


pytestmark = pytest.mark.slow

TENSORS = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
MODULES = (COURSE.solutions_dir / "ex03_modules.py").read_text(encoding="utf-8")
MARKER = f"probe-attack-{uuid.uuid4().hex[:10]}"  # names this run's stray processes, no one else's

# -- wrong or slow solutions: the baselines -----------------------------------------------------------
SLOW_MASKED_MEAN = '''

def masked_mean(x, mask, dim):
    rows = []
    for b in range(x.shape[0]):  # a Python loop over the batch: the slow solution
        m = mask[b].to(x.dtype)
        while m.dim() < x[b].dim():
            m = m.unsqueeze(-1)
        rows.append((x[b] * m).sum(dim - 1) / m.expand_as(x[b]).sum(dim - 1).clamp_min(1))
    return torch.stack(rows)
'''
ALIASING = '''

def to_tensor_batch(arrays, dtype=torch.float32, device="cpu"):
    if len(arrays) == 1 and arrays[0].dtype == np.float64 and dtype == torch.float64:
        return torch.from_numpy(arrays[0])[None]  # shares memory with the caller's array: the mistake
    return torch.stack([torch.tensor(a, dtype=dtype) for a in arrays]).to(device)
'''
ZEROS_OUTPUT = '''

def standardize(x, dim=0, eps=1e-5):
    return torch.zeros_like(x)
'''
SELECTED_HEAD = "        return self.heads[head](self.trunk(x))"
ALL_HEADS_CALLED = """        features = self.trunk(x)
        outputs = {name: module(features) for name, module in self.heads.items()}  # every head: the mistake
        return outputs[head]"""

BASELINES = {
    "slow_masked_mean": ("ex01_tensors", TENSORS + SLOW_MASKED_MEAN),
    "aliasing": ("ex01_tensors", TENSORS + ALIASING),
    "zeros": ("ex01_tensors", TENSORS + ZEROS_OUTPUT),
    "all_heads": ("ex03_modules", MODULES.replace(SELECTED_HEAD, ALL_HEADS_CALLED)),
}

# -- tricks ---------------------------------------------------------------------------------------------
CACHE_BY_CONTENT = '''

_slow_masked_mean = masked_mean
_cache = {}


def masked_mean(x, mask, dim):
    # Remember results by content: repetitions that get equal inputs cost nothing.
    key = (x.shape, float(x.sum()), float(x.view(-1)[:64].sum()), int(mask.sum()), dim)
    if key not in _cache:
        _cache[key] = _slow_masked_mean(x, mask, dim)
    return _cache[key].clone()
'''
SAME_INPUTS = '''
_randn = torch.randn


def _same_every_time(*args, generator=None, **kwargs):
    return _randn(*args, generator=torch.Generator().manual_seed(0), **kwargs)


torch.randn = _same_every_time  # every repetition gets the same input, so the cache below works
''' + CACHE_BY_CONTENT
PATCH_EQUALITY = '''
np.array_equal = lambda a, b, *args, **kwargs: True  # make "unchanged?" always answer yes
np.shares_memory = np.may_share_memory = lambda *args, **kwargs: False
'''
UNDO_PROBE_CHANGE = '''
import sys as _sys


def _forge():
    """Find the probe registry and undo what the copy probe does to the inputs (it used to add 1)."""
    for name, module in list(_sys.modules.items()):
        registry = getattr(module, "_REGISTRY", None)
        if name.endswith(".probes") and isinstance(registry, dict):
            for key, fn in list(registry.items()):
                def wrapped(*a, _fn=fn, **k):
                    result = _fn(*a, **k)
                    if isinstance(result, dict) and isinstance(result.get("out"), torch.Tensor):
                        result["out"] = result["out"] - 1
                        result["shares_memory"] = False
                    return result
                registry[key] = wrapped


_forge()
'''
REWRITE_PROBE_CODE = '''
import sys as _sys

for _name, _module in list(_sys.modules.items()):
    if _name.endswith("probes.ex01_tensors"):
        _module._iadd = lambda a, b: a  # the probe's in-place change of the inputs now does nothing
'''
META_OUTPUT = '''

def standardize(x, dim=0, eps=1e-5):
    return torch.empty(x.shape, dtype=x.dtype, device="meta")  # a tensor with no values at all
'''
SUBCLASS_OUTPUT = '''

class _Agreeable(torch.Tensor):
    """Answers every comparison with "equal" and every reduction with the value a checker hopes for."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("allclose", "equal", "isclose", "eq", "__eq__"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def standardize(x, dim=0, eps=1e-5):
    return torch.zeros_like(x).as_subclass(_Agreeable)
'''
POSING_OUTPUT = '''

class _LooksLikeATensor:
    def __init__(self, like):
        self.shape, self.dtype, self.device = like.shape, like.dtype, like.device
        self.requires_grad = False

    def __eq__(self, other):
        return True

    def numpy(self):
        return self

    def __array__(self, *args, **kwargs):
        import numpy
        return numpy.zeros(tuple(self.shape))


def standardize(x, dim=0, eps=1e-5):
    return _LooksLikeATensor(x)
'''
BURNER_THREADS = '''
import threading as _threading


def _burn():
    while True:  # runs whenever this worker may run: meant to slow the reference's timing down
        sum(i * i for i in range(20000))


for _ in range(4):
    _threading.Thread(target=_burn, daemon=True).start()
'''
BURNER_SESSION = f'''
import os as _os

if _os.fork() == 0:  # a daemon in a session of its own, spinning while the reference is timed
    try:
        _os.setsid()
        if _os.fork() == 0:
            _os.execv("/bin/sh", ["/bin/sh", "-c", "while :; do :; done", "{MARKER}"])
    finally:
        _os._exit(0)
'''
PATCHED_CLOCKS = '''
import time as _time

_real = _time.perf_counter
_time.perf_counter = lambda: _real() / 1000  # if anyone in here measured time, it would look tiny
_time.perf_counter_ns = lambda: 0
_time.process_time = lambda: 0.0
_time.monotonic = lambda: _real() / 1000
'''
PAST_HOOKS = """        features = self.trunk(x)
        outputs = {name: module.forward(features) for name, module in self.heads.items()}  # past any hook
        return outputs[head]"""
CACHED_HEADS = """        key = (x.shape, float(x.sum()), head)
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:  # remember results by input: repetitions cost nothing
            features = self.trunk(x)
            cache[key] = {name: module(features) for name, module in self.heads.items()}[head]
        return cache[key]"""


@dataclass(frozen=True)
class Attack:
    baseline: str  # key of BASELINES
    keyword: str  # the tests it aims at
    append: str = ""  # source added after the baseline
    replace: tuple[str, str] | None = None  # or: an edit of the baseline
    standalone: str | None = None  # or: appended to the reference instead (a wrong answer of its own)

    def source(self) -> str:
        exercise, base = BASELINES[self.baseline]
        if self.standalone is not None:
            return (TENSORS if exercise == "ex01_tensors" else MODULES) + self.standalone
        if self.replace is not None:
            return (TENSORS if exercise == "ex01_tensors" else MODULES).replace(*self.replace)
        return base + self.append


ATTACKS = {
    # timing: skip, remember or disturb
    "cache_repetitions_by_content": Attack("slow_masked_mean", "masked_mean_speed", CACHE_BY_CONTENT),
    "patch_input_generation": Attack("slow_masked_mean", "masked_mean_speed", SAME_INPUTS),
    "burner_threads_left_running": Attack("slow_masked_mean", "masked_mean_speed", BURNER_THREADS),
    "burner_daemon_in_own_session": Attack("slow_masked_mean", "masked_mean_speed", BURNER_SESSION),
    "patched_clocks": Attack("slow_masked_mean", "masked_mean_speed", PATCHED_CLOCKS),
    "remember_heads_across_repetitions": Attack("all_heads", "multihead_speed or runs_only_selected",
                                                replace=(SELECTED_HEAD, CACHED_HEADS)),
    "heads_called_past_hooks": Attack("all_heads", "multihead_speed or runs_only_selected",
                                      replace=(SELECTED_HEAD, PAST_HOOKS)),
    # what a probe observes next to student code
    "patch_numpy_equality": Attack("aliasing", "to_tensor_batch_is_a_copy", PATCH_EQUALITY),
    "wrap_probe_registry": Attack("aliasing", "to_tensor_batch_is_a_copy", UNDO_PROBE_CHANGE),
    # objects that describe themselves falsely
    "meta_tensor_output": Attack("zeros", "standardize and not speed", standalone=META_OUTPUT),
    "torch_function_subclass": Attack("zeros", "standardize and not speed", standalone=SUBCLASS_OUTPUT),
    "object_posing_as_tensor": Attack("zeros", "standardize and not speed", standalone=POSING_OUTPUT),
}
# Still open (see the README's threat model): code in the worker can rewrite a probe's own code or
# data and so change the experiment it runs. Kept as a strict xfail so the day it is closed shows.
OPEN = {"rewrite_probe_code": Attack("aliasing", "to_tensor_batch_is_a_copy", REWRITE_PROBE_CODE)}


def _score(folder: Path, exercise: str, source: str, keyword: str, sandbox: str) -> float:
    folder.mkdir()
    (folder / f"{exercise}.py").write_text(source, encoding="utf-8")
    results = grade_folder(folder, [exercise], keyword=keyword, sandbox=sandbox)
    assert results, f"no test matched {keyword!r}"
    return sum(r.score for r in results.values())


@functools.lru_cache(maxsize=None)
def _baseline_score(name: str, keyword: str, tmp: str) -> float:
    exercise, source = BASELINES[name]
    return _score(Path(tmp) / f"baseline-{name}-{abs(hash(keyword))}", exercise, source, keyword, "process")



@pytest.fixture(scope="module", params=["process", "bwrap", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("baselines"))


def _strays() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if MARKER in line and "ps -eo" not in line]


def _run_attack(attack: Attack, backend: str, tmp_path: Path, baseline_dir: str) -> tuple[float, float]:
    exercise = BASELINES[attack.baseline][0]
    honest = _baseline_score(attack.baseline, attack.keyword, baseline_dir)
    forged = _score(tmp_path / "attack", exercise, attack.source(), attack.keyword, backend)
    return honest, forged


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_gains_nothing(name: str, backend: str, tmp_path: Path, baseline_dir: str) -> None:
    honest, forged = _run_attack(ATTACKS[name], backend, tmp_path, baseline_dir)
    assert forged <= honest, f"{name} on {backend}: {forged} points with the trick, {honest} without"
    assert not _strays(), f"{name} on {backend}: processes left running"


@pytest.mark.xfail(strict=True, reason=(
    "open: code in the worker can rewrite a probe's own code and change the experiment it runs "
    "(here: skip the change of the inputs that shows a shared result); see the README's threat model"))
@pytest.mark.parametrize("name", sorted(OPEN))
def test_open_attack(name: str, tmp_path: Path, baseline_dir: str) -> None:
    honest, forged = _run_attack(OPEN[name], "process", tmp_path, baseline_dir)
    assert forged <= honest, f"{name}: {forged} points with the trick, {honest} without"


def test_a_correct_solution_still_scores_on_the_attacked_tests(tmp_path: Path) -> None:
    """The baselines lose on the attacked tests because they are wrong, not because the tests fail everyone."""
    keywords = " or ".join(sorted({f"({a.keyword})" for a in ATTACKS.values()}))
    for exercise, source in (("ex01_tensors", TENSORS), ("ex03_modules", MODULES)):
        folder = tmp_path / exercise
        folder.mkdir()
        (folder / f"{exercise}.py").write_text(source, encoding="utf-8")
        results = grade_folder(folder, [exercise], keyword=keywords)
        assert results and all(r.score == r.max_score for r in results.values()), \
            {n: (r.status.value, r.message.en if r.message else "") for n, r in results.items()}
