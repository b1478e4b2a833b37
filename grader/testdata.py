"""Data the autotests draw or load: seeds taken from a test's generator, and the course's vendored
digits, checked by hash before any test trains on them."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch


def seed_from(rng: torch.Generator) -> int:
    """A seed for a probe or a model, drawn from the test's own generator (so a test replays exactly)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=rng))


@functools.lru_cache(maxsize=2)
def digits(path: Path, expected_sha256: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8×8 digits in ``path`` as (N, 1, 8, 8) floats in [0, 1] and int64 labels, after checking the
    arrays' SHA-256. Shared and cached: callers index or copy, never change them in place.

    A missing file or a wrong hash is the grading host's problem, not the student's: it raises
    RuntimeError, which the grader reports as an internal error.
    """
    try:
        with np.load(path) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise RuntimeError(f"grading host: cannot read {path}: {exc}") from None
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != expected_sha256:
        raise RuntimeError(f"grading host: {path} has arrays sha256 {digest}, expected {expected_sha256} "
                           "(see data/README.md)")
    return torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(labels.astype(np.int64))
