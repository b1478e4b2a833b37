"""Probes for ex04_data: build the submission's datasets, loaders and transforms, report what comes out.

Datasets, loaders and transforms cannot cross the trust boundary, so the tests drive them through
these probes. The probes hold no expected values: they return samples, labels, index orders,
random-number states, padded batches and the errors the submission raised; the tests judge them.
Image files are written here, inside the worker, into a fresh temporary folder (the sandbox's
private /tmp) from a description the grader sends: pixel arrays, modes and file names.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import probe
from .common import observe_errors

try:  # Pillow is optional on a student's machine; every sandbox has it
    from PIL import Image as _Image
except ImportError:  # pragma: no cover - the image tests are skipped where Pillow is missing
    _Image = None

# Taken when the worker starts, before any student module is imported (the worker preloads the
# probes): defence in depth only; no verdict rests on them (see each probe's "What it trusts").
# The global generator's own bound C methods: rebinding ``torch.random.default_generator`` or
# replacing ``torch.manual_seed`` later does not redirect them.
_get_rng_state, _manual_seed = torch.default_generator.get_state, torch.default_generator.manual_seed
_mkdtemp, _rmtree, _makedirs, _relpath = tempfile.mkdtemp, shutil.rmtree, os.makedirs, os.path.relpath
_from_numpy, _asarray, _ascontiguous = torch.from_numpy, np.asarray, np.ascontiguousarray
_clone, _as_subclass = torch._C.TensorBase.clone, torch._C.TensorBase.as_subclass
_fromarray = _Image.fromarray if _Image is not None else None


def _plain(value: Any) -> Any:
    """A value that can cross the boundary: data as it is, anything else as its type's name."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value if not isinstance(value, torch.Tensor) or type(value) is torch.Tensor else {"type": type(value).__name__}
    if isinstance(value, (np.integer, np.floating)):
        return {"type": type(value).__name__, "value": value.item()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # keys of any type, in the dict's order
        return {"pairs": [[_plain(k), _plain(v)] for k, v in value.items()]}
    return {"type": type(value).__name__}


# -- T4.1 ArrayDataset -------------------------------------------------------------------------
_ARRAY_TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "double": lambda x: x * 2,
    "add_ten": lambda x: x + 10,
}


@probe
def array_dataset(impl: ModuleType, data: np.ndarray, labels: np.ndarray, indices: list[int] = (),
                  transform: str | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """``ArrayDataset(data, labels[, transform])``: its ``len``, the items at ``indices`` and, with
    ``batch_size``, every batch of ``DataLoader(ds, batch_size, shuffle=False)``.

    ``transform`` names a trusted transform of this module ("double", "add_ten").

    What it trusts: nothing it reports is a judgement. It returns what the dataset gave back (the
    samples and labels as they are); the grader compares them with the arrays it sent.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, impl=impl):
        if transform is None:
            ds = impl.ArrayDataset(data, labels)
        else:
            ds = impl.ArrayDataset(data, labels, _ARRAY_TRANSFORMS[transform])
        result["len"] = _plain(len(ds))
        items = []
        for i in indices:
            item = ds[i]
            items.append(_plain(list(item)) if isinstance(item, (tuple, list)) else _plain(item))
        result["items"] = items
        if batch_size is not None:
            result["batches"] = [_plain(list(batch)) for batch in DataLoader(ds, batch_size=batch_size, shuffle=False)]
    return result


@probe
def array_lookups(impl: ModuleType, n: int, shape: list[int], lookups: int, seed: int) -> dict[str, Any]:
    """Build ``ArrayDataset`` on float64 data made here from ``seed`` (``n`` rows, each one of 256
    random rows), then look up ``lookups``
    random (also negative) indices; return the sum of the samples and of the labels.

    Used by the speed test: the grader times this whole call. What it trusts: nothing it reports
    is taken at its word. Each call has data of its own (the seed differs per round) and the sums
    cover every lookup, so skipping or remembering lookups gives a wrong total, which the grader
    compares with the reference's.
    """
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn([256, *shape], generator=g, dtype=torch.float64)  # n rows drawn from 256: cheap to make
    data = rows[torch.randint(0, 256, (n,), generator=g)].numpy()
    labels = torch.randint(0, 10, (n,), generator=g).numpy()
    order = torch.randint(-n, n, (lookups,), generator=g).tolist()
    ds = impl.ArrayDataset(data, labels)
    total = torch.zeros(shape, dtype=torch.float64)
    label_total = 0
    for i in order:
        sample, label = ds[i]
        total += sample
        label_total += int(label)
    return {"sample_sum": total, "label_sum": label_total}


# -- T4.2 ImageFolderDataset ---------------------------------------------------------------------
def _write(root: str, entry: dict[str, Any]) -> None:
    path = os.path.join(root, *str(entry["path"]).split("/"))
    _makedirs(os.path.dirname(path), exist_ok=True)
    if "pixels" in entry:  # always PNG-encoded (lossless), whatever the file's extension says
        pixels = _ascontiguous(entry["pixels"].numpy())
        _fromarray(pixels).save(path, format="PNG")  # (H, W) gives mode L, (H, W, 3) mode RGB
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(entry.get("text", "")))


def _to_tensor(image: Any) -> torch.Tensor:
    """A trusted stand-in for ToTensor: a PIL image as float32 ``(C, H, W)`` in [0, 1]."""
    pixels = _from_numpy(_ascontiguous(_asarray(image))).to(torch.float32) / 255
    return pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)


def _image_record(image: Any) -> dict[str, Any]:
    if _Image is not None and isinstance(image, _Image.Image):
        return {"kind": "pil", "mode": image.mode, "size": list(image.size),
                "pixels": _from_numpy(_ascontiguous(_asarray(image)).copy())}
    if type(image) is torch.Tensor:
        return {"kind": "tensor", "tensor": image}
    return {"kind": type(image).__name__}


@probe
def image_folder(impl: ModuleType, dirs: list[str], files: list[dict[str, Any]],
                 files_after: list[dict[str, Any]] = (), extensions: list[str] | None = None,
                 to_tensor: bool = False, read: bool = True) -> dict[str, Any]:
    """Write ``dirs`` (in this order) and ``files`` under a fresh temporary root, build
    ``ImageFolderDataset(root[, transform][, extensions])``, then write ``files_after`` and read
    every item.

    A file entry is ``{"path": "b/x.png", "pixels": uint8 (H, W) (mode L) or (H, W, 3) (RGB)}``
    (saved as PNG whatever the extension) or ``{"path": "notes.txt", "text": "..."}``. With
    ``to_tensor`` a trusted PIL-to-tensor transform is passed. Returns ``classes``,
    ``class_to_idx``, ``samples`` (paths relative to the root, ``/``-separated), ``len`` and the
    items (PIL images as mode, size and pixels).

    What it trusts: nothing it reports is a judgement. The grader knows what it asked to be
    written and computes the right classes, sample list and pixels itself; the probe only returns
    what the dataset gave back. Files written after construction show whether the list was built
    once and the pixels are read at access time.
    """
    if _Image is None:
        raise RuntimeError("Pillow is not installed in this environment")
    root = _mkdtemp(prefix="ex04_images_")
    result: dict[str, Any] = {"error": None}
    try:
        for d in dirs:
            _makedirs(os.path.join(root, *d.split("/")), exist_ok=True)
        for entry in files:
            _write(root, entry)
        kwargs: dict[str, Any] = {}
        if to_tensor:
            kwargs["transform"] = _to_tensor
        if extensions is not None:
            kwargs["extensions"] = tuple(extensions)
        with observe_errors(result, impl=impl):
            ds = impl.ImageFolderDataset(root, **kwargs)
        if result["error"] is not None:
            return result
        for entry in files_after:
            _write(root, entry)
        result["classes"] = _plain(getattr(ds, "classes", None))
        result["class_to_idx"] = _plain(getattr(ds, "class_to_idx", None))
        samples = getattr(ds, "samples", None)
        if isinstance(samples, (list, tuple)):
            result["samples"] = [[_relpath(str(s[0]), root).replace(os.sep, "/"), _plain(s[1])]
                                 if isinstance(s, (list, tuple)) and len(s) == 2 else _plain(s) for s in samples]
        else:
            result["samples"] = _plain(samples)
        with observe_errors(result, impl=impl):
            result["len"] = _plain(len(ds))
            if read:
                items = []
                for i in range(len(ds)):
                    image, label = ds[i]
                    items.append({"image": _image_record(image), "label": _plain(label)})
                result["items"] = items
        return result
    finally:
        _rmtree(root, ignore_errors=True)


# -- T4.3 make_loaders ---------------------------------------------------------------------------
class _IndexDataset(Dataset):
    """Item ``i`` is ``tensor(i)``: a batch shows exactly which samples it holds, in what order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self.n <= int(i) < self.n:
            raise IndexError(i)
        return torch.tensor(int(i) % self.n)


def _epoch(loader: Any) -> list[Any]:
    return [_plain(batch) for batch in loader]


@probe
def loaders(impl: ModuleType, n: int, val_fraction: float, batch_size: int, seed: int | None,
            global_seeds: list[int] = (11, 12)) -> dict[str, Any]:
    """``make_loaders(index_dataset(n), val_fraction, batch_size, seed=seed)`` (no ``seed`` argument
    when it is None); then one epoch of each loader per entry of ``global_seeds``, the global RNG
    seeded with it first.

    Returns the loaders' types and ``num_workers``, the global RNG state just before and just after
    ``make_loaders``, and the batches of every epoch (tensors of dataset indices).

    What it trusts: nothing it reports is a judgement. The split, the orders and the two RNG
    states are raw observations the grader compares: with another call of this probe (same seed,
    other global seeds) for reproducibility, and between themselves for the global state. Student
    code could forge an RNG state only by restoring it, which is what leaving it untouched means.
    """
    dataset = _IndexDataset(n)
    before = _clone(_get_rng_state())
    if seed is None:
        train, val = impl.make_loaders(dataset, val_fraction, batch_size)
    else:
        train, val = impl.make_loaders(dataset, val_fraction, batch_size, seed=seed)
    after = _clone(_get_rng_state())
    epochs = []
    for global_seed in global_seeds:
        _manual_seed(global_seed)
        epochs.append({"train": _epoch(train), "val": _epoch(val)})
    return {"types": [type(train).__name__, type(val).__name__], "rng_before": before, "rng_after": after,
            "num_workers": [_plain(getattr(train, "num_workers", None)), _plain(getattr(val, "num_workers", None))],
            "epochs": epochs}


# -- T4.4 build_vocab -----------------------------------------------------------------------------
@probe
def vocab_generated(impl: ModuleType, n_texts: int, distinct: int, max_words: int, seed: int,
                    min_freq: int = 2) -> dict[str, Any]:
    """``build_vocab`` on ``n_texts`` texts made here from ``seed`` (Zipf-like word frequencies).

    Used by the speed test: the grader times this whole call. What it trusts: the vocabulary is
    returned whole and the grader compares it with the reference's for the same seed, so a fast
    wrong answer earns nothing.
    """
    g = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, distinct + 1, dtype=torch.float64)
    lengths = torch.randint(1, max_words + 1, (n_texts,), generator=g).tolist()
    words = torch.multinomial(weights, sum(lengths), replacement=True, generator=g).tolist()
    names = [f"w{k}" for k in range(distinct)]
    texts, at = [], 0
    for length in lengths:
        texts.append(" ".join(names[k] for k in words[at:at + length]))
        at += length
    return {"vocab": impl.build_vocab(texts, min_freq)}


# -- T4.5 pad_collate -----------------------------------------------------------------------------
@probe
def pad_collate_grads(impl: ModuleType, seqs: list[torch.Tensor], labels: list[int], grad_output: torch.Tensor,
                      pad_value: float = 0) -> dict[str, Any]:
    """``pad_collate`` on float sequences that require grad; back-propagate ``grad_output``.

    Returns the padded output (with its autograd facts) and the gradient of every sequence (None
    where no gradient reached it). What it trusts: nothing; the grader computes the gradients a
    padding must give (``grad_output[i, :L_i]``) and compares.
    """
    leaves = [s.detach().clone().requires_grad_(True) for s in seqs]
    padded, lengths, out_labels = impl.pad_collate(list(zip(leaves, labels)), pad_value)
    grads: list[Any] = [None] * len(leaves)
    if isinstance(padded, torch.Tensor) and padded.requires_grad:
        grads = list(torch.autograd.grad(padded, leaves, grad_output, allow_unused=True))
    return {"padded": padded, "lengths": lengths, "labels": out_labels, "grads": grads}


class _ListDataset(Dataset):
    def __init__(self, items: list[tuple[torch.Tensor, int]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.items[i]


@probe
def pad_collate_loader(impl: ModuleType, seqs: list[torch.Tensor], labels: list[int], batch_size: int,
                       pad_value: int | None = None) -> list[Any]:
    """Every batch of ``DataLoader(dataset, batch_size, collate_fn=pad_collate)`` over ``(seq, label)``
    pairs, in order. What it trusts: nothing; the grader pads the same sequences itself."""
    collate = impl.pad_collate if pad_value is None else (lambda batch: impl.pad_collate(batch, pad_value))
    loader = DataLoader(_ListDataset(list(zip(seqs, labels))), batch_size=batch_size, shuffle=False,
                        collate_fn=collate, num_workers=0)
    return [_plain(batch) for batch in loader]


@probe
def pad_collate_repeated(impl: ModuleType, batch_size: int, max_len: int, repeats: int, seed: int,
                         project_seed: int) -> dict[str, Any]:
    """Run ``pad_collate`` ``repeats`` times, each on a batch of token sequences made here
    (``seed + repetition``); return one projection of every output.

    Used by the speed test: the grader times this whole call. What it trusts: nothing it reports
    is taken at its word. Every repetition has inputs of its own, and each repetition's padded
    batch is projected onto a random ``w`` (and its lengths and labels summed); the grader
    compares every number with the reference's, so skipped or remembered work is a wrong answer.
    """
    w = torch.randn(batch_size, max_len, generator=torch.Generator().manual_seed(project_seed), dtype=torch.float64)
    projections, shapes = [], []
    for repetition in range(repeats):
        g = torch.Generator().manual_seed(seed + repetition)
        lengths = torch.randint(1, max_len + 1, (batch_size,), generator=g)
        lengths[0] = max_len  # every batch pads to max_len: one projection shape for all
        tokens = torch.randint(1, 5000, (int(lengths.sum()),), generator=g)
        seqs = list(torch.split(tokens, lengths.tolist()))
        labels = torch.randint(0, 5, (batch_size,), generator=g).tolist()
        padded, out_lengths, out_labels = impl.pad_collate(list(zip(seqs, labels)), -1)
        shapes.append(list(padded.shape))
        if list(padded.shape) != [batch_size, max_len]:
            return {"projections": None, "shapes": shapes}
        projections.append([float((padded.double() * w).sum()), int(out_lengths.sum()), int(out_labels.sum())])
    return {"projections": projections, "shapes": shapes}


# -- T4.6 build_transforms -----------------------------------------------------------------------
def _pil(image: dict[str, Any]) -> Any:
    return _fromarray(_ascontiguous(image["pixels"].numpy()))  # (H, W) gives mode L, (H, W, 3) mode RGB


def _transformed(value: Any) -> Any:
    """A transform's output as data: a ``tv_tensors.Image`` (what ``transforms.v2`` returns) as a
    plain tensor of the same values; anything else as ``_plain`` sends it. The grader judges the
    values only, so reading them through the subclass trusts nothing."""
    if type(value) is not torch.Tensor and isinstance(value, torch.Tensor):
        from torchvision import tv_tensors

        if type(value) is tv_tensors.Image:
            return _plain(_as_subclass(value, torch.Tensor))
    return _plain(value)


@probe
def transform_outputs(impl: ModuleType, train: bool, images: list[dict[str, Any]], seeds: list[int],
                      kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``tf = build_transforms(train, **kwargs)``; for every image and every seed,
    ``torch.manual_seed(seed)`` then ``tf(image)`` on a fresh PIL image (``{"pixels": uint8 (H, W) or (H, W, 3)}``).

    Returns ``outs[image][seed]`` (or the first error). What it trusts: nothing it reports is a
    judgement; the grader computes the deterministic outputs itself (torchvision in its own
    process) and compares, and judges randomness from the outputs under different seeds.
    """
    if _Image is None:
        raise RuntimeError("Pillow is not installed in this environment")
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, impl=impl):
        tf = impl.build_transforms(train, **(kwargs or {}))
        outs = []
        for image in images:
            row = []
            for seed in seeds:
                _manual_seed(seed)
                row.append(_transformed(tf(_pil(image))))
            outs.append(row)
        result["outs"] = outs
    return result


@probe
def transform_fakedata(impl: ModuleType, train: bool, n: int, image_size: list[int], batch_size: int,
                       kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``torchvision.datasets.FakeData(n, image_size, transform=build_transforms(train, **kwargs))``
    through a ``DataLoader``: every batch. What it trusts: nothing; the grader checks shapes and
    dtypes of the batches."""
    from torchvision.datasets import FakeData

    result: dict[str, Any] = {"error": None}
    with observe_errors(result, impl=impl):
        tf = impl.build_transforms(train, **(kwargs or {}))
        dataset = FakeData(size=n, image_size=tuple(image_size), transform=tf, random_offset=0)
        _manual_seed(0)
        result["batches"] = [[_transformed(x), _plain(y)]
                             for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=0)]
    return result
