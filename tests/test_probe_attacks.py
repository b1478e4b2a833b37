"""Attacks on what probes and timings observe inside the sandbox (issue: nothing the sandbox
reports can be forged). Each attack is a wrong (or slow) solution plus a trick; it must score no
more than the same solution without the trick."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import COURSE, grade_folder

pytestmark = pytest.mark.slow

REFERENCE = (COURSE.solutions_dir / "ex01_tensors.py").read_text(encoding="utf-8")
MODULES = (COURSE.solutions_dir / "ex03_modules.py").read_text(encoding="utf-8")
SELECTED_HEAD = "        return self.heads[head](self.trunk(x))"
ALL_HEADS_CALLED = """        features = self.trunk(x)
        outputs = {name: module(features) for name, module in self.heads.items()}  # every head: the mistake
        return outputs[head]"""
ALL_HEADS_PAST_HOOKS = """        features = self.trunk(x)
        outputs = {name: module.forward(features) for name, module in self.heads.items()}  # past any hook
        return outputs[head]"""

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

CACHE_BY_CONTENT = '''

_slow_masked_mean = masked_mean
_cache = {}


def masked_mean(x, mask, dim):
    # Repetitions get fresh copies of equal inputs: remember results by content, work once.
    key = (x.shape, float(x.sum()), float(x.view(-1)[:64].sum()), int(mask.sum()), dim)
    if key not in _cache:
        _cache[key] = _slow_masked_mean(x, mask, dim)
    return _cache[key].clone()
'''

ALIASING = '''

def to_tensor_batch(arrays, dtype=torch.float32, device="cpu"):
    if len(arrays) == 1 and arrays[0].dtype == np.float64 and dtype == torch.float64:
        return torch.from_numpy(arrays[0])[None]  # shares memory with the caller's array: the mistake
    return torch.stack([torch.tensor(a, dtype=dtype) for a in arrays]).to(device)
'''

PATCH_EQUALITY = '''
np.array_equal = lambda a, b, *args, **kwargs: True  # make "unchanged?" always answer yes
'''

WRAP_PROBES = '''
import sys as _sys


def _forge():
    for name, module in list(_sys.modules.items()):
        registry = getattr(module, "_REGISTRY", None)
        if name.endswith(".probes") and isinstance(registry, dict):
            for key, fn in list(registry.items()):
                if key.endswith("to_tensor_batch_copy"):
                    def wrapped(*a, _fn=fn, **k):
                        result = _fn(*a, **k)
                        result["shares_memory"] = False
                        return result
                    registry[key] = wrapped


_forge()
'''

META_OUTPUT = '''

def standardize(x, dim=0, eps=1e-5):
    return torch.empty(x.shape, dtype=x.dtype, device="meta")  # a tensor with no values at all
'''
ZEROS_OUTPUT = '''

def standardize(x, dim=0, eps=1e-5):
    return torch.zeros_like(x)
'''


def score(tmp_path: Path, name: str, source: str, keyword: str, exercise: str = "ex01_tensors") -> float:
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{exercise}.py").write_text(source, encoding="utf-8")
    results = grade_folder(folder, [exercise], keyword=keyword)
    assert results, f"no test matched {keyword!r}"
    return sum(r.score for r in results.values())


OPEN = pytest.mark.xfail(strict=True, reason=(
    "open: code in the worker process can rewrite the probe registry; an observation made in-process "
    "(memory sharing) cannot be made safe there, it needs a design that checks from outside"))


@pytest.mark.parametrize("attack,baseline,trick,keyword", [
    ("cache_repetitions", REFERENCE + SLOW_MASKED_MEAN, CACHE_BY_CONTENT, "masked_mean_speed"),
    ("patch_numpy_equality", REFERENCE + ALIASING, PATCH_EQUALITY, "to_tensor_batch_is_a_copy"),
    pytest.param("wrap_registered_probes", REFERENCE + ALIASING, WRAP_PROBES, "to_tensor_batch_is_a_copy",
                 marks=OPEN),
    ("meta_tensor_output", REFERENCE + ZEROS_OUTPUT, META_OUTPUT, "standardize and not speed"),
], ids=["cache_repetitions", "patch_numpy_equality", "wrap_registered_probes", "meta_tensor_output"])
def test_attack_gains_nothing(attack: str, baseline: str, trick: str, keyword: str, tmp_path: Path) -> None:
    honest = score(tmp_path, "baseline", baseline, keyword)
    forged = score(tmp_path, "attack", baseline + trick if attack != "meta_tensor_output"
                   else REFERENCE + trick, keyword)
    assert forged <= honest, f"{attack}: {forged} points with the trick, {honest} without"


def test_calling_heads_past_their_hooks_gains_nothing(tmp_path: Path) -> None:
    """Running every head through ``module.forward`` (which no forward hook sees) is caught like
    running them through ``module(x)``."""
    assert SELECTED_HEAD in MODULES
    keyword = "multihead_runs_only_selected_head"
    honest = score(tmp_path, "baseline", MODULES.replace(SELECTED_HEAD, ALL_HEADS_CALLED), keyword, "ex03_modules")
    forged = score(tmp_path, "attack", MODULES.replace(SELECTED_HEAD, ALL_HEADS_PAST_HOOKS), keyword, "ex03_modules")
    correct = score(tmp_path, "correct", MODULES, keyword, "ex03_modules")
    assert correct > 0 and forged <= honest == 0, (correct, honest, forged)


CACHED_HEADS = """        key = (x.shape, float(x.sum()), head)
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:  # remember results by input: repetitions cost nothing
            features = self.trunk(x)
            cache[key] = {name: module(features) for name, module in self.heads.items()}[head]
        return cache[key]"""


def test_remembering_results_across_timed_repetitions_gains_nothing(tmp_path: Path) -> None:
    keyword = "multihead_speed"
    honest = score(tmp_path, "baseline", MODULES.replace(SELECTED_HEAD, ALL_HEADS_CALLED), keyword, "ex03_modules")
    forged = score(tmp_path, "attack", MODULES.replace(SELECTED_HEAD, CACHED_HEADS), keyword, "ex03_modules")
    assert forged <= honest, (honest, forged)
