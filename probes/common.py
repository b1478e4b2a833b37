"""Probes every exercise can use: calls that need something done inside the worker."""

from __future__ import annotations

import contextlib
import os
import tempfile
import traceback

from types import ModuleType
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..arena import arena
from . import probe

# Taken at import, before any student module is imported (defence in depth: the verdicts do not
# rest on these, see each probe's "What it trusts").
_dot = torch.dot
_ADAM = torch.optim.Adam
_CROSS_ENTROPY = F.cross_entropy
_RANDPERM = torch.randperm
_NO_GRAD = torch.no_grad
_mkdtemp, _open, _stat, _isfile = tempfile.mkdtemp, open, os.stat, os.path.isfile
_frombuffer, _UINT8 = torch.frombuffer, torch.uint8


_TENSOR = torch.Tensor


def plain(value: Any) -> Any:
    """A value student code returned, as data: numbers, bools, None, strings and tensors as they are,
    lists of them, anything else by its type name (an object is never sent back as it is)."""
    if value is None or isinstance(value, (bool, int, float, str, _TENSOR)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return f"<{type(value).__name__}>"


def scratch_dir(prefix: str) -> str:
    """A fresh private folder in the sandbox's temp space (mode 0700) for files a task writes."""
    return _mkdtemp(prefix=prefix)


def read_scratch_bytes(path: str, cap: int) -> dict[str, Any]:
    """A file student code wrote, as data for the grader: ``{"bytes": uint8 tensor, "size": n}``;
    ``{"missing": True}`` when there is no file, ``{"too_large": True, "size": n}`` over ``cap``
    bytes (nothing is read then). The grader checks the cap again (``grader/artifacts.py``): this
    runs next to student code, so the cap here only keeps a huge file off the wire."""
    if not _isfile(path):
        return {"missing": True}
    size = _stat(path).st_size
    if size > cap:
        return {"too_large": True, "size": int(size)}
    with _open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        return {"too_large": True, "size": len(data)}
    return {"bytes": _frombuffer(bytearray(data), dtype=_UINT8) if data else torch.zeros(0, dtype=_UINT8),
            "size": len(data)}


def write_scratch_bytes(path: str, data: torch.Tensor) -> str:
    """Write bytes the grader made (a uint8 tensor) to ``path`` in a scratch folder; returns ``path``."""
    with _open(path, "wb") as f:
        f.write(data.numpy().tobytes())
    return path


def describe_error(exc: BaseException, impl: ModuleType | None = None) -> str:
    """``Type: message`` plus the last lines of the traceback that are in the submission's file."""
    text = f"{type(exc).__name__}: {exc}"[:600]
    path = getattr(impl, "__file__", None)
    if path:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path][-3:]
        text += "".join(f"\n  line {f.lineno}, in {f.name}: {(f.line or '').strip()}" for f in frames)
    return text


@contextlib.contextmanager
def observe_errors(sink: dict[str, Any], key: str = "error", impl: ModuleType | None = None) -> Iterator[None]:
    """Record an exception the submission raised under ``sink[key]`` (and its type under
    ``sink[key + "_type"]``); NotImplementedError passes, so an unfinished stub reads as one."""
    try:
        yield
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        sink[key] = describe_error(exc, impl)
        sink[key + "_type"] = type(exc).__name__


def structure(model: nn.Module, buffers: bool = False) -> dict[str, Any]:
    """Parameter names and shapes, their count and the state_dict's keys (and buffer names): what
    a test needs to pick a comparison or a hint, never a verdict."""
    params = dict(model.named_parameters())
    found: dict[str, Any] = {"param_shapes": {name: list(p.shape) for name, p in params.items()},
                             "n_params": sum(p.numel() for p in params.values()),
                             "state_keys": list(model.state_dict().keys())}
    if buffers:
        found["buffer_keys"] = [name for name, _ in model.named_buffers()]
    return found


def prepare_module(model: nn.Module, result: dict[str, Any], impl: ModuleType, dtype: torch.dtype | None = None,
                   state: dict[str, torch.Tensor] | None = None, device: str | None = None) -> nn.Module | None:
    """Cast ``model`` to ``dtype``, load ``state`` strictly (a refusal is ``result["load_error"]``,
    and then None is returned), move it to ``device``: the order every module probe follows."""
    if dtype is not None:
        model = model.to(dtype)
    if state is not None:
        with observe_errors(result, "load_error", impl):
            model.load_state_dict(state)
        if result.get("load_error") is not None:
            return None
    if device is not None:
        model = model.to(device)
    return model


def train_classifier(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                     epochs: int, lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """The trusted training loop of the accuracy tests: Adam with cross-entropy, ``epochs`` passes
    over a seeded shuffle in full minibatches, then ``model.eval()`` and one no-grad forward pass
    over ``x_eval``. Returns the eval logits (the labels of ``x_eval`` never come here) and the
    training loss per step, which only the report's training curve reads."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return {"n_params": 0}
    optimizer = _ADAM(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(x_train)
    model.train()
    losses = []
    for _ in range(epochs):
        order = _RANDPERM(n, generator=g)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            loss = _CROSS_ENTROPY(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    with _NO_GRAD():
        logits = model(x_eval)
    return {"logits": logits, "n_params": sum(p.numel() for p in params), "losses": losses}


@probe
def raises(impl: ModuleType, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str | None:
    """Call ``name`` and return the exception type it raised, or None.

    ``NotImplementedError`` is re-raised so an unfinished stub reads as "not implemented".

    What it trusts: the type name is an observation made next to student code, but it is the behaviour
    under test: to read ``ValueError`` the call must raise one on the grader's bad input, which means
    detecting that input. Only a submission that rewrites this probe (the open gap in the README's
    threat model) could report a raise that did not happen; the name is compared, not the class.
    """
    try:
        getattr(impl, name)(*args, **(kwargs or {}))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the type is the observation
        return type(exc).__name__
    return None


@probe
def call_transposed(impl: ModuleType, name: str, args: list[Any], transpose: dict[str, list[int]],
                    kwargs: dict[str, Any] | None = None) -> Any:
    """Call ``name`` with some tensor arguments made non-contiguous by ``transpose(d0, d1)``.

    The grader sends each such argument already transposed; transposing again here gives a view
    with the intended values and a non-contiguous layout.

    What it trusts: the returned value, which the grader compares with the reference's or its own
    result on the contiguous input, so forging it means computing it. That the argument really was
    non-contiguous is this probe's doing: a submission that rewrites probe code could undo it (the
    README's open gap), but would still have to return the right values.
    """
    args = list(args)
    for position, (d0, d1) in transpose.items():
        args[int(position)] = args[int(position)].transpose(d0, d1)
    return getattr(impl, name)(*args, **(kwargs or {}))


@probe
def repeat_generated(impl: ModuleType, name: str, layout: list[list[Any]], project_seed: int,
                     kwargs: dict[str, Any] | None = None, device: str | None = None) -> dict[str, Any]:
    """Run ``name`` once per repetition on inputs the zygote made beforehand; return one projection
    of each repetition's output.

    Used by speed tests, which time this whole request from the grader. What it trusts: nothing it
    reports is taken at its word. The inputs were made outside this process while it was stopped
    (``grader/worker/arena.py``), so making them costs nothing here and no student code ran while
    they were made; every repetition has inputs of its own, so remembering results by identity or
    by content saves no work; every repetition's output is projected onto a random ``w``
    (``<out, w>``) and the grader compares each projection with the reference's, so skipping work
    on any call is a wrong answer. The norms it reports are used only from the reference's run.

    With ``device`` (a GPU run) each repetition's inputs are copied to the device, the L2 cache is
    flushed and the device synchronised before the call, and synchronised after it; one warm-up call
    runs first. The grader still times the whole request from the zygote (wall time, since the work
    is the device's): the CUDA event times returned here come from the student's process and are
    reported, never believed.
    """
    if device is not None and device.startswith("cuda"):
        return _repeat_on_gpu(impl, name, layout, project_seed, kwargs or {}, device)
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    for entry in layout:
        refused = projected.add(getattr(impl, name)(*inputs_of(entry), **(kwargs or {})))
        if refused is not None:
            return refused
    return projected.result()


class _Projections:
    """One projection ``<out, w>`` per repetition's output, onto one random ``w`` per request.

    Two dot products in float32: cheap next to the timed work. The norm is the spread of the
    projection (<out, w> ~ N(0, |out|^2) over w), so the grader scales its tolerance by the
    reference's norm; a projection that happens to land near zero then gets no tighter gate.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.projections: list[float] = []
        self.norms: list[float] = []
        self.shape: list[int] | None = None
        self.w: torch.Tensor | None = None

    def add(self, out: Any) -> dict[str, Any] | None:
        """Project ``out``; a reply that ends the request if it is not a tensor of the first shape."""
        if not isinstance(out, torch.Tensor):
            return {"projections": None, "type": type(out).__name__}
        if self.shape is None:
            self.shape = list(out.shape)
            self.w = torch.randn(out.numel(), generator=torch.Generator().manual_seed(self.seed))
        if list(out.shape) != self.shape:
            return {"projections": None, "shape": list(out.shape), "type": "Tensor"}
        assert self.w is not None
        flat = out.detach().reshape(-1).to("cpu", torch.float32)  # from a GPU, the copy waits for the work
        self.projections.append(float(_dot(flat, self.w)) if self.w.numel() else 0.0)
        self.norms.append(float(_dot(flat, flat)) ** 0.5 if self.w.numel() else 0.0)
        return None

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"projections": self.projections, "norms": self.norms, "shape": self.shape, "type": "Tensor", **extra}


def _repeat_on_gpu(impl: ModuleType, name: str, layout: list[list[Any]], project_seed: int,
                   kwargs: dict[str, Any], device: str) -> dict[str, Any]:
    """``repeat_generated`` on a GPU: warm-up, then per repetition flush, sync, call, sync."""
    inputs_of = arena().inputs

    def on_device(entry: list[Any]) -> list[Any]:
        return [v.to(device) if isinstance(v, torch.Tensor) else v for v in inputs_of(entry)]

    fn = getattr(impl, name)
    if layout:
        fn(*on_device(layout[0]), **kwargs)  # warm-up: kernels loaded, allocator primed
    l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 64 * 2**20)
    flush = torch.empty(2 * l2, dtype=torch.uint8, device=device)
    projected = _Projections(project_seed)
    event_ms: list[float] = []
    for entry in layout:
        args = on_device(entry)
        flush.zero_()  # the previous repetition's data leaves the L2 cache
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn(*args, **kwargs)
        end.record()
        torch.cuda.synchronize(device)
        event_ms.append(float(start.elapsed_time(end)))
        refused = projected.add(out)
        if refused is not None:
            return refused
    return projected.result(event_ms=event_ms)
