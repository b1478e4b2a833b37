"""Probes for ex13_performance: build trusted models, hand them to the submission, and report what
came out as data.

- Checkpointing: the probe swaps every ``nn.Linear`` of the student's ``CheckpointedMLP`` for a
  probe-made ``_SpyLinear`` (same weights) that records its index each time it runs. The sequence
  of calls (forward, then each segment's recomputation during backward) is what the probe itself
  saw on modules it built; values and gradients come back as tensors and are recomputed in the
  grader in float64.
- Quantization and pruning: outputs on grader inputs, the masked weights, gradients and state_dict
  keys; sizes are measured here with ``torch.save`` taken at import (the number the student's
  ``state_dict_nbytes`` returns is only compared with it).
- Export: the program the student returns is serialised here with ``torch.export.save`` into
  bytes (at most ``EXPORT_CAP`` bytes, refused above), loaded back *here* with
  ``torch.export.load`` and run on the grader's inputs. ``torch.export.load`` unpickles (its
  docstring: "uses pickle under the hood ... Never load data from an untrusted source"), so the
  grader never loads these bytes: it only checks their size and that they are a zip archive, and
  judges the outputs of the round-tripped program, which it recomputes itself.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import OrderedDict
from types import ModuleType
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..arena import arena
from . import probe
from .common import _Projections, describe_error, plain

# Taken at import, before any student module: defence in depth only (see each probe's "What it trusts").
_save = torch.save
_export_save = torch.export.save
_export_load = torch.export.load
_no_grad = torch.no_grad
_grad_enabled = torch.is_grad_enabled
_cross_entropy = F.cross_entropy
_dropout = F.dropout
_manual_seed = torch.manual_seed
_frombuffer = torch.frombuffer
_GradScaler = torch.amp.GradScaler
_SGD = torch.optim.SGD
_Parameter = nn.Parameter

EXPORT_CAP = 1 << 20  # bytes: a saved program of these small models is ~50 kB


def _run(result: dict[str, Any], impl: ModuleType, fn: Any, key: str = "error") -> Any:
    """Call ``fn``; an exception other than NotImplementedError becomes ``result[key]``."""
    try:
        return fn()
    except NotImplementedError as exc:
        if not str(exc).startswith("Could not run"):  # a stub's TODO; torch's missing kernels are observations
            raise
        result[key] = describe_error(exc, impl)
        result[key + "_type"] = type(exc).__name__
        return None
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result[key] = describe_error(exc, impl)
        result[key + "_type"] = type(exc).__name__
        return None


def _tensor(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else plain(value)


# -- T13.1 CheckpointedMLP ---------------------------------------------------------------------------
class _SpyLinear(nn.Linear):
    """A Linear that appends its index to a shared log each time its forward starts; with ``dropout``,
    its output goes through dropout in training mode (a recomputation must draw the same mask)."""

    def __init__(self, source: nn.Linear, index: int, log: list[int], dropout: float = 0.0) -> None:
        super().__init__(source.in_features, source.out_features, dtype=source.weight.dtype)
        with _no_grad():
            self.weight.copy_(source.weight)
            self.bias.copy_(source.bias)
        self.index, self.log, self.dropout = index, log, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.index)
        out = super().forward(x)
        return _dropout(out, self.dropout, self.training) if self.dropout else out


@probe
def run_checkpointed(impl: ModuleType, dims: list[int], segments: int | None, use_checkpoint: bool,
                     state: dict[str, torch.Tensor], x: torch.Tensor, cotangent: torch.Tensor,
                     input_grad: bool = True, train: bool = True, backward: bool = True,
                     dropout: float = 0.0, dropout_seed: int | None = None) -> dict[str, Any]:
    """Build ``CheckpointedMLP(dims, use_checkpoint, segments)`` in float64, load ``state``, swap its
    ``layers[i]`` for spies, run forward (train or eval mode) and, with ``backward``, ``backward(cotangent)``.
    With ``dropout``, every spy applies dropout at that rate to its output in training mode; with
    ``dropout_seed``, the forward pass starts from ``torch.manual_seed(dropout_seed)``, so the grader can
    draw the same masks in the same order.

    Returns the output, the input's and every parameter's gradient, the spies' call log, and the
    warnings raised that mention ``use_reentrant``.

    What it trusts: output and gradients are values the grader recomputes. The call log is written
    by modules this probe made and put in place after the constructor ran; code that rewrites the
    probe's objects could change it (the README's open gap), but a missing or extra recomputation
    is what it records.
    """
    result: dict[str, Any] = {"error": None, "load_error": None, "log": [], "warnings": []}
    kwargs = {} if segments is None else {"segments": segments}  # None: the default number of segments
    model = _run(result, impl, lambda: impl.CheckpointedMLP(dims, use_checkpoint=use_checkpoint, **kwargs))
    if model is None:
        return result
    model = model.to(torch.float64)
    _run(result, impl, lambda: model.load_state_dict(state), "load_error")
    if result["load_error"]:
        return result
    log: list[int] = []
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) != len(dims) - 1:
        result["error"] = "CheckpointedMLP.layers is not an nn.ModuleList of len(dims) - 1 Linear layers"
        return result
    for i in range(len(layers)):
        layers[i] = _SpyLinear(layers[i], i, log, dropout)
    model.train(train)
    x = x.clone().requires_grad_(input_grad)
    if dropout_seed is not None:
        _manual_seed(dropout_seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _run(result, impl, lambda: model(x))
        if out is not None and backward:
            _run(result, impl, lambda: out.backward(cotangent))
    result["warnings"] = [str(w.message)[:300] for w in caught if "use_reentrant" in str(w.message)]
    result["log"] = list(log)
    result["out"] = _tensor(out)
    result["x_grad"] = None if x.grad is None else x.grad.clone()
    result["grads"] = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    return result


# -- T13.2 dynamic quantization --------------------------------------------------------------------------
def _digits_mlp(state: dict[str, torch.Tensor], dropout: float) -> nn.Sequential:
    d, h, k = state["0.weight"].shape[1], state["0.weight"].shape[0], state["3.weight"].shape[0]
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, k))
    model.load_state_dict(state)
    return model


def _nbytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    _save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@probe
def run_quantize(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, dropout: float = 0.0,
                 train: bool = False, with_conv: bool = False) -> dict[str, Any]:
    """``quantize_dynamic_linear`` on a float32 ``Linear → ReLU → Dropout → Linear`` (in train mode with
    ``train``); the quantized model's outputs on ``x`` (twice, as returned: no ``eval()`` here), the
    original's outputs after the call (eval, no grad), sizes of both state_dicts measured here and as
    ``state_dict_nbytes`` reports them, and the module type names (hints). With ``with_conv`` a
    ``Conv1d(1, 1, 1)`` in front must keep its float output.

    What it trusts: the outputs are compared in the grader with the reference's on the same inputs and
    with the float model's; the sizes measured here are of the returned model's own state_dict.
    """
    result: dict[str, Any] = {"error": None}
    model = _digits_mlp(state, dropout)
    if with_conv:
        conv = nn.Conv1d(1, 1, 1)
        with _no_grad():
            conv.weight.fill_(1.0)
            conv.bias.fill_(0.0)
        model = nn.Sequential(OrderedDict([("conv", conv), ("flat", nn.Flatten()), ("mlp", model)]))
        x = x.unsqueeze(1)
    model.train(train)
    quantized = _run(result, impl, lambda: impl.quantize_dynamic_linear(model))
    if quantized is None:
        return result
    result["types"] = sorted({type(m).__module__ + "." + type(m).__name__ for m in quantized.modules()})
    with _no_grad():
        result["q_out"] = _tensor(_run(result, impl, lambda: quantized(x)))
        result["q_out2"] = _tensor(_run(result, impl, lambda: quantized(x)))
        result["original_training"] = bool(nn.Module.__getattribute__(model, "training"))
        model.eval()
        result["original_out"] = model(x).detach().clone()
    result["nbytes_fp32"] = _nbytes(model)
    result["nbytes_q"] = _run(result, impl, lambda: _nbytes(quantized), "size_error")
    result["reported_fp32"] = plain(_run(result, impl, lambda: impl.state_dict_nbytes(model), "report_error"))
    result["reported_q"] = plain(_run(result, impl, lambda: impl.state_dict_nbytes(quantized), "report_error"))
    return result


@probe
def repeat_quantized(impl: ModuleType, layout: list[list[Any]], project_seed: int, dims: list[int],
                     model_seed: int) -> dict[str, Any]:
    """Quantize a seeded ``Linear → ReLU → Linear`` once, then run it on each repetition's input (made by
    the zygote beforehand), as ``repeat_generated`` (``probes/common.py``): the grader times the whole
    request and checks every output through a random projection."""
    _manual_seed(model_seed)
    model = nn.Sequential(nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], dims[2])).eval()
    quantized = impl.quantize_dynamic_linear(model)
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    with _no_grad():
        for entry in layout:
            refused = projected.add(quantized(inputs_of(entry)[0]))
            if refused is not None:
                return refused
    return projected.result()


# -- T13.3 pruning ---------------------------------------------------------------------------------------
class _PruneNet(nn.Module):
    """``conv(1→4, 3×3) → ReLU → flatten → fc1(64→16) → ReLU → fc2(16→5)`` on (N, 1, 6, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def _weights(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {n: getattr(model, n).weight.detach().clone() for n in names}


@probe
def run_prune(impl: ModuleType, state: dict[str, torch.Tensor], amount: float, x: torch.Tensor,
              cotangent: torch.Tensor, linear_only: bool = False, frozen: str | None = None,
              digits: bool = False) -> dict[str, Any]:
    """``global_prune`` on a float64 ``_PruneNet`` (or, with ``digits``, the float32 digits MLP), then one
    forward and ``backward(cotangent)``, then ``finalize_pruning`` and another forward.

    Returns the sparsity returned, the state_dict keys after each call, each layer's ``weight`` (the
    masked one) and bias after pruning, the gradients of ``weight_orig`` (or ``weight``), the outputs,
    and after finalising each ``weight``, whether it is a Parameter and how many forward pre-hooks
    are left (observations; the keys and values decide).
    """
    result: dict[str, Any] = {"error": None}
    if digits:
        model = _digits_mlp(state, 0.0).eval()
        names = ["0", "3"]
    else:
        model = _PruneNet().to(torch.float64)
        model.load_state_dict(state)
        names = ["conv", "fc1", "fc2"]
    if frozen:
        getattr(model, frozen).weight.requires_grad_(False)
    kwargs = {"module_types": (nn.Linear,)} if linear_only else {}
    result["returned"] = plain(_run(result, impl, lambda: impl.global_prune(model, amount, **kwargs)))
    if result["error"]:
        return result
    result["keys_pruned"] = list(model.state_dict().keys())
    result["weights"] = _weights(model, names)
    result["biases"] = {n: getattr(model, n).bias.detach().clone() for n in names}
    out = model(x)
    result["out"] = out.detach().clone()
    if not digits:
        out.backward(cotangent)
        result["grads"] = {}
        for n in names:
            layer = getattr(model, n)
            p = layer._parameters.get("weight_orig", layer._parameters.get("weight"))
            result["grads"][n] = None if p is None or p.grad is None else p.grad.clone()
        _run(result, impl, lambda: impl.finalize_pruning(model), "finalize_error")
        result["keys_final"] = list(model.state_dict().keys())
        result["weights_final"] = _weights(model, names)
        result["is_parameter"] = [isinstance(getattr(model, n)._parameters.get("weight"), _Parameter) for n in names]
        result["pre_hooks"] = sum(len(getattr(model, n)._forward_pre_hooks) for n in names)
        with _no_grad():
            result["out_final"] = model(x).clone()
    return result


@probe
def run_finalize_unpruned(impl: ModuleType, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``finalize_pruning`` on a model that was never pruned: keys and weights after the call."""
    result: dict[str, Any] = {"error": None}
    model = _PruneNet().to(torch.float64)
    model.load_state_dict(state)
    _run(result, impl, lambda: impl.finalize_pruning(model))
    result["state"] = {k: v.clone() for k, v in model.state_dict().items()}
    return result


# -- T13.4 torch.export -----------------------------------------------------------------------------------
def _round_trip(result: dict[str, Any], impl: ModuleType, program: Any, inputs: list[torch.Tensor]) -> None:
    """Save ``program`` to bytes (at most EXPORT_CAP), load it back here, run it on each input."""
    result["program_type"] = type(program).__name__
    buffer = io.BytesIO()
    _run(result, impl, lambda: _export_save(program, buffer), "save_error")
    if result.get("save_error"):
        return
    data = buffer.getvalue()
    result["nbytes"] = len(data)
    if len(data) > EXPORT_CAP:
        result["save_error"] = f"the saved program has {len(data)} bytes, more than {EXPORT_CAP}"
        return
    result["saved"] = _frombuffer(bytearray(data), dtype=torch.uint8).clone()
    serde_log = logging.getLogger("torch._export.serde.serialize")
    level = serde_log.level
    serde_log.setLevel(logging.CRITICAL)  # it logs the failed weights_only=True attempt before unpickling
    try:
        loaded = _run(result, impl, lambda: _export_load(io.BytesIO(data)), "load_error")
    finally:
        serde_log.setLevel(level)
    if loaded is None:
        return
    module = loaded.module()
    outs = []
    with _no_grad():
        for x in inputs:
            out = _run(result, impl, lambda: module(x), "run_error")
            outs.append(_tensor(out))
            if result.get("run_error"):
                break
    result["outs"] = outs


@probe
def run_export(impl: ModuleType, kind: str, state: dict[str, torch.Tensor], example: torch.Tensor,
               inputs: list[torch.Tensor], train: bool = False, dynamic_batch: bool = True) -> dict[str, Any]:
    """``export_program(model, example, dynamic_batch)`` on a float32 ``Linear → ReLU → Dropout(0.5) → Linear``
    (``kind="mlp"``, in train mode with ``train``) or on the student's ``SignBranch`` (``kind="sign"``);
    the program round-trips through bytes here (``_round_trip``) and runs on ``inputs``. For
    ``"sign"`` the eager outputs too. The saved bytes come back as a uint8 tensor (at most EXPORT_CAP).

    What it trusts: the outputs, which the grader recomputes; the bytes are checked for size and form
    only and never loaded in the grader.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    if kind == "mlp":
        d, h, k = state["0.weight"].shape[1], state["0.weight"].shape[0], state["3.weight"].shape[0]
        model: Any = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(0.5), nn.Linear(h, k))
        model.load_state_dict(state)
    else:
        d, k = state["pos.weight"].shape[1], state["pos.weight"].shape[0]
        model = _run(result, impl, lambda: impl.SignBranch(d, k))
        if model is None:
            return result
        _run(result, impl, lambda: model.load_state_dict(state), "load_error")
        if result["load_error"]:
            return result
        with _no_grad():
            result["eager"] = [_tensor(_run(result, impl, lambda: model(x))) for x in inputs]
        if result["error"]:
            return result
    model.train(train)
    program = _run(result, impl, lambda: impl.export_program(model, example, dynamic_batch), "export_error")
    if program is None:
        return result
    _round_trip(result, impl, program, inputs)
    return result


# -- T13.5 autocast ------------------------------------------------------------------------------------------
def _amp_model(state: dict[str, torch.Tensor], seen: list[str], gate: bool = False) -> nn.Sequential:
    """``Linear → ReLU → Linear``; with ``gate`` the first layer's input is halved in train mode only (a
    deterministic stand-in for a mode-dependent layer: a step that skips ``model.train()`` shows in the values)."""
    h, d = state["0.weight"].shape
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, state["2.weight"].shape[0]))
    model.load_state_dict(state)
    if gate:
        model[0].register_forward_pre_hook(lambda m, args: (args[0] * 0.5,) if m.training else None)
    for layer in (model[0], model[2]):
        layer.register_forward_hook(lambda m, i, o: seen.append(str(o.dtype).removeprefix("torch.")))
    return model


@probe
def run_autocast(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, lr: float,
                 scaler: str | None = None, init_scale: float = 1024.0, steps: int = 1,
                 dtype: str = "bfloat16") -> dict[str, Any]:
    """``steps`` calls of ``autocast_train_step`` on a float32 ``Linear → ReLU → Linear`` (input halved in train
    mode) left in eval mode,
    with SGD(lr) and ``nn.CrossEntropyLoss()``; ``scaler`` is None, ``"on"`` (init_scale, growth every
    step) or ``"off"`` (``enabled=False``). Returns what each call returned, the parameters and their
    gradients after the last call, the scaler's scale, and the output dtypes the Linear layers' hooks
    saw (hints only)."""
    result: dict[str, Any] = {"error": None, "returned": []}
    seen: list[str] = []
    model = _amp_model(state, seen, gate=True).eval()
    optimizer = _SGD(model.parameters(), lr=lr)
    grad_scaler = None
    if scaler == "on":
        grad_scaler = _GradScaler("cpu", init_scale=init_scale, growth_interval=1)
    elif scaler == "off":
        grad_scaler = _GradScaler("cpu", enabled=False)
    criterion = nn.CrossEntropyLoss(reduction="mean")
    for _ in range(steps):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            got = _run(result, impl, lambda: impl.autocast_train_step(model, x, y, criterion, optimizer, "cpu",
                                                                    getattr(torch, dtype), grad_scaler))
        if result["error"]:
            return result
        result["returned"].append(plain(got))
    result["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    result["grads"] = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    result["scale"] = float(grad_scaler.get_scale()) if grad_scaler is not None and scaler == "on" else None
    result["seen"] = sorted(set(seen))
    return result


@probe
def fit_autocast(impl: ModuleType, state: dict[str, torch.Tensor], x_train: torch.Tensor, y_train: torch.Tensor,
                 x_eval: torch.Tensor, steps: int, lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """``steps`` calls of ``autocast_train_step`` (bf16, SGD with momentum 0.9) on seeded minibatches; the
    eval logits of ``x_eval`` (its labels never come here) and the returned losses."""
    result: dict[str, Any] = {"error": None}
    model = _amp_model(state, [])
    optimizer = _SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    criterion = nn.CrossEntropyLoss(reduction="mean")
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(y_train), (batch_size,), generator=g)
        got = _run(result, impl, lambda: impl.autocast_train_step(model, x_train[idx], y_train[idx], criterion,
                                                                optimizer))
        if result["error"]:
            return result
        losses.append(plain(got))
    model.eval()
    with _no_grad():
        result["logits"] = model(x_eval).float().clone()
    result["losses"] = losses
    return result


# -- T13.6 gradient diagnostics -------------------------------------------------------------------------------
class _Diag(nn.Module):
    """``fc_in → ReLU → frozen (requires_grad False) → fc_mid → detach → head``, plus ``zeroed`` (its output
    times 0: zero gradients, not None), ``unused`` (never called) and ``tied`` (the same module as
    ``head``: its parameters are listed once)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_in = nn.Linear(4, 6)
        self.frozen = nn.Linear(6, 6)
        self.fc_mid = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.zeroed = nn.Linear(6, 3)
        self.unused = nn.Linear(6, 3)
        self.tied = self.head
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc_mid(self.frozen(torch.relu(self.fc_in(x)))).detach()
        return self.tied(torch.tanh(h)) + 0.0 * self.zeroed(h)


@probe
def run_dead_parameters(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor,
                        stale: bool = True) -> dict[str, Any]:
    """``dead_parameters(model, loss)`` on a float64 ``_Diag`` whose parameters hold stale gradients (ones)
    when ``stale``; ``loss = (model(x) ** 2).sum()`` is made here. Returns the list and the gradients
    left on the parameters afterwards."""
    result: dict[str, Any] = {"error": None}
    model = _Diag().to(torch.float64)
    model.load_state_dict(state)
    if stale:
        for p in model.parameters():
            p.grad = torch.ones_like(p)
    loss = (model(x) ** 2).sum()
    result["returned"] = plain(_run(result, impl, lambda: impl.dead_parameters(model, loss)))
    result["left"] = {n: (None if p.grad is None else p.grad.clone())
                      for n, p in model.named_parameters(remove_duplicate=False)}
    return result


@probe
def run_gradient_report(impl: ModuleType, state: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``gradient_report`` on a float64 ``_Diag`` whose parameters hold ``grads`` (the others None).
    The returned dict comes back as a list of ``[name, value]`` pairs in its order (values as data)."""
    result: dict[str, Any] = {"error": None}
    model = _Diag().to(torch.float64)
    model.load_state_dict(state)
    params = dict(model.named_parameters())
    for name, g in grads.items():
        params[name].grad = g.clone()
    got = _run(result, impl, lambda: impl.gradient_report(model))
    if isinstance(got, dict):
        result["pairs"] = [[str(k), plain(v)] for k, v in got.items()]
    else:
        result["returned_type"] = type(got).__name__
    result["grads_after"] = {n: (None if p.grad is None else p.grad.clone()) for n, p in params.items()}
    return result
