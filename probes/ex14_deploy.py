"""Probes for ex14_deploy: hand the submission trusted models, optimizers, files and a fake writer,
let its code run, and report what it left behind.

Files the student's code writes (checkpoints, exported ONNX models) go to a scratch folder made
here and come back as bytes (``read_scratch_bytes``, capped); the grader opens them itself, a
checkpoint only with ``torch.load(weights_only=True)`` and an ONNX model only in its own child
process (``grader/artifacts.py``). Files the grader made (checkpoints, ONNX models, PNG images)
arrive as bytes and are written here before the call. Nothing the submission says about a file
is believed: the bytes are judged. Records of the modes and grad mode a module saw, and the names
of files left in the working folder, are observations made next to student code (see each probe).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from types import ModuleType
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..arena import arena
from . import probe
from .common import _Projections, describe_error, plain, read_scratch_bytes, scratch_dir, write_scratch_bytes

# Taken at import, before any student module: defence in depth only (see each probe's "What it trusts").
_grad_enabled = torch.is_grad_enabled
_adam = torch.optim.Adam
_step_lr = torch.optim.lr_scheduler.StepLR
_cross_entropy = F.cross_entropy
_no_grad = torch.no_grad
_getcwd, _chdir, _listdir, _join = os.getcwd, os.chdir, os.listdir, os.path.join

FILE_CAP = 16 * 1024 * 1024


def _run(result: dict[str, Any], impl: ModuleType, fn: Any, key: str = "error") -> Any:
    """Call ``fn``; an exception other than NotImplementedError becomes ``result[key]`` (and its type)."""
    try:
        return fn()
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result[key] = describe_error(exc, impl)
        result[key + "_type"] = type(exc).__name__
        return None


def _meta(value: Any) -> Any:
    """Metadata a submission returned, as data: a dict's values through ``plain``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return plain(value)


class _Spy(nn.Module):
    """Identity that records the mode and grad mode of every call (hints and the no-grad check)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append([bool(self.training), bool(_grad_enabled())])
        return x


def _mlp(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """``fc1 → act (Tanh) → fc2`` with the dtype and values of ``state``."""
    h, d = state["fc1.weight"].shape
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(d, h), act=nn.Tanh(), fc2=nn.Linear(h, state["fc2.weight"].shape[0])))
    model = model.to(state["fc1.weight"].dtype)
    model.load_state_dict(state)
    return model


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- T14.1 checkpoints -------------------------------------------------------------------------------------
def _train(model: nn.Module, optimizer: Any, scheduler: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int,
           epochs: int) -> torch.Tensor:
    """The trusted loop: unshuffled batches, cross-entropy, one scheduler step per epoch; the last loss."""
    loss = torch.zeros(())
    model.train()
    for _ in range(epochs):
        for start in range(0, len(y), batch_size):
            loss = _cross_entropy(model(x[start:start + batch_size]), y[start:start + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return loss


@probe
def resume_training(impl: ModuleType, state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                    x: torch.Tensor, y: torch.Tensor, lr: float, step_size: int, gamma: float, batch_size: int,
                    epochs_before: int, epochs_after: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Train ``state`` for ``epochs_before`` epochs (Adam + StepLR), ``save_checkpoint`` into a scratch
    folder (with the last loss, a tensor with its graph, as ``loss``, and ``extra``) while the working
    folder is another empty scratch folder; then a fresh model (values ``fresh``), optimizer and
    scheduler, ``load_checkpoint``, and ``epochs_after`` more epochs.

    Returns the checkpoint's bytes, the names of files that appeared in the working folder, what
    ``load_checkpoint`` returned, and the parameters and learning rate after the resumed run.

    What it trusts: the grader opens the bytes itself (``weights_only=True``) and replays the straight
    run in float64, so the parameters and the file are data it checks. The file names in the working
    folder are an observation next to student code; a submission could only hide them by not writing
    there, or by rewriting this probe (the README's open gap).
    """
    result: dict[str, Any] = {}
    model = _mlp(state)
    optimizer = _adam(model.parameters(), lr=lr)
    scheduler = _step_lr(optimizer, step_size=step_size, gamma=gamma)
    loss = _train(model, optimizer, scheduler, x, y, batch_size, epochs_before)
    folder, work = scratch_dir("ex14_ckpt_"), scratch_dir("ex14_cwd_")
    path = _join(folder, "checkpoint.pt")
    before = _getcwd()
    _chdir(work)
    try:
        _run(result, impl, lambda: impl.save_checkpoint(path, model, optimizer, epochs_before, scheduler,
                                                        loss=loss, **extra), "save_error")
    finally:
        _chdir(before)
    result["cwd_files"] = sorted(_listdir(work))
    result["file"] = read_scratch_bytes(path, FILE_CAP)
    if result.get("save_error") or "bytes" not in result["file"]:
        return result
    model2 = _mlp(fresh)
    optimizer2 = _adam(model2.parameters(), lr=lr)
    scheduler2 = _step_lr(optimizer2, step_size=step_size, gamma=gamma)
    meta = _run(result, impl, lambda: impl.load_checkpoint(path, model2, optimizer2, scheduler2, map_location="cpu"),
                "load_error")
    if result.get("load_error"):
        return result
    result["returned"] = _meta(meta)
    result["loaded"] = _params(model2)
    _train(model2, optimizer2, scheduler2, x, y, batch_size, epochs_after)
    result["params"] = _params(model2)
    result["lr"] = float(optimizer2.param_groups[0]["lr"])
    return result


@probe
def load_given_checkpoint(impl: ModuleType, blob: torch.Tensor, fresh: dict[str, torch.Tensor], lr: float,
                          with_optimizer: bool, with_scheduler: bool = False) -> dict[str, Any]:
    """Write a checkpoint the grader made (bytes) and ``load_checkpoint`` it into a model with the
    values ``fresh`` (and a fresh Adam / StepLR when asked). Returns what it returned or raised, the
    model's parameters and the optimizer's state and the scheduler's epoch afterwards.

    What it trusts: the parameters and states are compared with the file's content, which the grader
    made; the exception type is the behaviour under test (see ``common.raises``)."""
    result: dict[str, Any] = {}
    path = write_scratch_bytes(_join(scratch_dir("ex14_given_"), "given.pt"), blob)
    model = _mlp(fresh)
    optimizer = _adam(model.parameters(), lr=lr) if with_optimizer else None
    scheduler = _step_lr(optimizer, step_size=1, gamma=0.5) if with_scheduler and optimizer is not None else None
    meta = _run(result, impl, lambda: impl.load_checkpoint(path, model, optimizer, scheduler))
    if result.get("error"):
        return result
    result["returned"] = _meta(meta)
    result["params"] = _params(model)
    if optimizer is not None:
        result["adam_steps"] = [float(s["step"]) for s in optimizer.state.values()]
    if scheduler is not None:
        result["last_epoch"] = int(scheduler.last_epoch)
    return result


# -- T14.2 state dicts in every format ---------------------------------------------------------------------
class _Encoded(nn.Module):
    """``encoder.module`` (a Linear inside a container named ``module``) → Tanh → ``head``: a
    key with ``module.`` in the middle that must survive."""

    def __init__(self, d: int, h: int, k: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(OrderedDict(module=nn.Linear(d, h)))
        self.head = nn.Linear(h, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.encoder(x)))


@probe
def load_weights_file(impl: ModuleType, blob: torch.Tensor, d: int, h: int, k: int, x: torch.Tensor,
                      strict: bool | None = True, seed: int = 0) -> dict[str, Any]:
    """Write a file the grader made (bytes), build ``_Encoded(d, h, k)`` (seeded, float64) and
    ``load_weights`` it (``strict=None``: the argument left to its default); return the outputs on
    ``x`` (eval, no grad), the parameters and what it returned or raised. What it trusts: the outputs
    and parameters, which the grader computes from its file; the exception type as ``common.raises``."""
    result: dict[str, Any] = {}
    path = write_scratch_bytes(_join(scratch_dir("ex14_weights_"), "weights.pt"), blob)
    torch.manual_seed(seed)
    model = _Encoded(d, h, k).double()
    kwargs = {} if strict is None else {"strict": strict}
    returned = _run(result, impl, lambda: impl.load_weights(model, path, **kwargs))
    if result.get("error"):
        return result
    result["returned"] = plain(returned)
    result["params"] = _params(model)
    with _no_grad():
        result["out"] = model.eval()(x)
    return result


# -- T14.3 ONNX ------------------------------------------------------------------------------------------
class _Gate(nn.Module):
    """Scales by ``scale`` in train mode (a deterministic dropout), identity in eval."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale if self.training else x


def _deploy_net(state: dict[str, torch.Tensor], gate: float = 1.0, dropout: float = 0.0) -> nn.Sequential:
    """``fc1 → bn (BatchNorm1d) → act (ReLU) → drop (Dropout) → gate → fc2`` (float32), values from ``state``."""
    h, d = state["fc1.weight"].shape
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(d, h), bn=nn.BatchNorm1d(h), act=nn.ReLU(), drop=nn.Dropout(dropout),
                                      gate=_Gate(gate), fc2=nn.Linear(h, state["fc2.weight"].shape[0])))
    model.load_state_dict(state)
    return model


@probe
def export_model(impl: ModuleType, state: dict[str, torch.Tensor], example: torch.Tensor, train_mode: bool = False,
                 dynamic_batch: bool | None = None, gate: float = 1.0, dropout: float = 0.0) -> dict[str, Any]:
    """``export_onnx`` a ``_deploy_net`` (in train mode when asked) into a scratch folder; return the
    file's bytes and what it returned (a path is reported as ``"<same>"`` when it is the given one).

    What it trusts: nothing the submission says: the grader checks the bytes and runs them in
    onnxruntime in a process of its own (``grader/artifacts.py``)."""
    result: dict[str, Any] = {}
    model = _deploy_net(state, gate, dropout).train(train_mode)
    path = _join(scratch_dir("ex14_onnx_"), "model.onnx")
    kwargs = {} if dynamic_batch is None else {"dynamic_batch": dynamic_batch}
    returned = _run(result, impl, lambda: impl.export_onnx(model, example, path, **kwargs))
    if result.get("error"):
        return result
    result["returned"] = "<same>" if isinstance(returned, str) and returned == path else plain(returned)
    result["file"] = read_scratch_bytes(path, FILE_CAP)
    return result


@probe
def predict_with_onnx(impl: ModuleType, blob: torch.Tensor, x: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Write an ONNX file the grader exported (bytes) and call ``onnx_predict(path, x)`` with ``x`` as a
    NumPy array in the dtype the grader sent; return the result as data (an array's dtype name, shape
    and values). What it trusts: the values, compared with the grader's own PyTorch forward."""
    result: dict[str, Any] = {}
    path = write_scratch_bytes(_join(scratch_dir("ex14_ort_"), "model.onnx"), blob)
    array = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    out = _run(result, impl, lambda: impl.onnx_predict(path, array))
    if result.get("error"):
        return result
    result["type"] = type(out).__name__
    if isinstance(out, np.ndarray) and out.dtype != object:
        result["dtype"] = str(out.dtype)
        result["out"] = torch.from_numpy(np.ascontiguousarray(out).astype(np.float64))
    return result


# -- T14.4 Predictor ---------------------------------------------------------------------------------------
def _classifier(state: dict[str, torch.Tensor], size: int, gate: float) -> tuple[nn.Sequential, _Spy]:
    """``spy → flat → fc1 → act (ReLU) → gate → fc2`` on (B, 3, size, size) float32."""
    spy = _Spy()
    h = state["fc1.weight"].shape[0]
    model = nn.Sequential(OrderedDict(spy=spy, flat=nn.Flatten(), fc1=nn.Linear(3 * size * size, h), act=nn.ReLU(),
                                      gate=_Gate(gate), fc2=nn.Linear(h, state["fc2.weight"].shape[0])))
    model.load_state_dict(state)
    return model, spy


def _predictions(out: Any) -> Any:
    if isinstance(out, (list, tuple)):
        return [plain(v) for v in out]
    return plain(out)


@probe
def run_predictor(impl: ModuleType, state: dict[str, torch.Tensor], class_names: list[str], mean: list[float],
                  std: list[float], size: int, batches: list[torch.Tensor], gate: float = 1.0,
                  train_mode: bool = False, blobs: Sequence[torch.Tensor] = ()) -> dict[str, Any]:
    """Build a ``Predictor`` around a classifier (given in train mode when asked, with a gate that scales in
    train mode), call ``predict`` on each of ``batches`` and ``predict_bytes`` on each of ``blobs``
    (bytes the grader made). Returns every result (or the exception type per call), the modes and grad
    modes the model saw, and whether any parameter got a ``.grad``.

    What it trusts: the predictions, which the grader recomputes from the images it made (eval mode,
    so a forgotten ``eval()`` shows as wrong confidences). The modes and grad modes the spy recorded are
    observations next to student code: to show grad mode off in them the forward must really run under
    ``no_grad``/``inference_mode`` unless this probe is rewritten (the README's open gap)."""
    result: dict[str, Any] = {"predict": [], "bytes": []}
    model, spy = _classifier(state, size, gate)
    model.train(train_mode)
    predictor = _run(result, impl, lambda: impl.Predictor(model, list(class_names), list(mean), list(std), size=size))
    if result.get("error"):
        return result
    for images in batches:
        entry: dict[str, Any] = {}
        out = _run(entry, impl, lambda: predictor.predict(images))
        entry["out"] = _predictions(out)
        result["predict"].append(entry)
    for blob in blobs:
        entry = {}
        out = _run(entry, impl, lambda: predictor.predict_bytes(blob.numpy().tobytes()))
        entry["out"] = _predictions(out)
        result["bytes"].append(entry)
    result["seen"] = spy.seen
    result["grads"] = [n for n, p in model.named_parameters() if p.grad is not None]
    return result


@probe
def repeat_predict(impl: ModuleType, layout: list[list[Any]], project_seed: int, h: int, k: int, size: int,
                   model_seed: int) -> dict[str, Any]:
    """``Predictor.predict`` on a batch the zygote made, once per repetition (the speed test); each
    result's confidences and class indices projected like ``repeat_generated``."""
    torch.manual_seed(model_seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, h), nn.ReLU(), nn.Linear(h, k))
    names = [f"c{i}" for i in range(k)]
    predictor = impl.Predictor(model, names, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], size=size)
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    for entry in layout:
        images = inputs_of(entry)[0].sigmoid_()
        out = predictor.predict(images)
        try:
            values = torch.tensor([[float(conf), float(names.index(name))] for name, conf in out], dtype=torch.float64)
        except (TypeError, ValueError):
            return {"projections": None, "type": type(out).__name__}
        refused = projected.add(values)
        if refused is not None:
            return refused
    return projected.result()


# -- T14.5 log_epoch ---------------------------------------------------------------------------------------
class _FakeWriter:
    """A ``SummaryWriter`` stand-in that records each call as data."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def _record(self, method: str, tag: Any, value: Any, global_step: Any) -> None:
        self.calls.append({"method": method, "tag": plain(tag), "value_type": type(value).__name__,
                           "value": plain(value), "step": plain(global_step)})

    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None, walltime: Any = None,
                   new_style: bool = False, double_precision: bool = False) -> None:
        self._record("add_scalar", tag, scalar_value, global_step)

    def add_histogram(self, tag: str, values: Any, global_step: Any = None, bins: str = "tensorflow",
                      walltime: Any = None, max_bins: Any = None) -> None:
        self._record("add_histogram", tag, values, global_step)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Any, global_step: Any = None, walltime: Any = None) -> None:
        self._record("add_scalars", main_tag, tag_scalar_dict if isinstance(tag_scalar_dict, dict) else None,
                     global_step)

    def flush(self) -> None:
        pass


@probe
def run_log_epoch(impl: ModuleType, epoch: int, metrics: dict[str, Any], grad_metrics: Sequence[str] = (),
                  state: dict[str, torch.Tensor] | None = None, lrs: Sequence[float] = ()) -> dict[str, Any]:
    """``log_epoch`` with a fake writer: ``metrics`` as given (those named in ``grad_metrics`` made
    tensors that require grad, like a loss with its graph), a model with the values ``state`` (after
    one backward, so its parameters hold ``.grad``) and an SGD optimizer with one parameter group per
    entry of ``lrs``. Returns the recorded calls (values as data: a tensor travels with its facts).

    What it trusts: the calls are compared with what the grader computes from what it sent; a tensor's
    ``requires_grad`` is read by the wire through torch's C base class."""
    result: dict[str, Any] = {}
    writer = _FakeWriter()
    values = {k: (torch.tensor(float(v), dtype=torch.float64, requires_grad=True) * 1.0 if k in grad_metrics else v)
              for k, v in metrics.items()}
    model = None
    optimizer = None
    if state is not None:
        model = _mlp(state)
        model(torch.ones(1, state["fc1.weight"].shape[1], dtype=state["fc1.weight"].dtype)).sum().backward()
        params = list(model.parameters())
        if lrs:
            per = max(1, len(params) // len(lrs))
            groups = [{"params": params[i * per:(i + 1) * per if i < len(lrs) - 1 else None], "lr": lr}
                      for i, lr in enumerate(lrs)]
            optimizer = torch.optim.SGD(groups, lr=1.0)
    _run(result, impl, lambda: impl.log_epoch(writer, epoch, values, model=model, optimizer=optimizer))
    result["calls"] = writer.calls
    return result
