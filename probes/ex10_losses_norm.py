"""Probes for ex10_losses_norm: run the losses with gradients, drive DropConnect in train and eval
mode with a seeded generator, step the batch-norm function over several batches, and hand a model
of the grader's to ``weight_decay_param_groups`` and step AdamW with the groups it returns.

They hold no expected values: they return outputs, gradients, buffers and parameters, and the tests
judge them against ``F.cross_entropy``, ``F.linear``, ``F.batch_norm`` and the AdamW update rule,
computed in the grader.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..arena import arena
from . import probe
from .common import _Projections, observe_errors

# Taken at import, before any student module is imported (defence in depth: the verdicts do not
# rest on these, see each probe's "What it trusts").
_AUTOGRAD_GRAD = torch.autograd.grad
_ADAMW = torch.optim.AdamW
_NO_GRAD = torch.no_grad
_GENERATOR = torch.Generator
_MANUAL_SEED = torch.manual_seed
_RAND = torch.rand
_named_parameters = nn.Module.named_parameters


def _clone(t: Any) -> Any:
    return t.detach().clone() if isinstance(t, torch.Tensor) else t


# -- T10.1 / T10.2 the losses ----------------------------------------------------------------------------
@probe
def loss_run(impl: ModuleType, cls: str, kwargs: dict[str, Any], logits: torch.Tensor, target: torch.Tensor,
             grad_output: torch.Tensor | None = None, args: list[Any] | None = None) -> dict[str, Any]:
    """Build ``cls(*args, **kwargs)`` and return ``loss(logits, target)``; with ``grad_output``, also
    the gradient it back-propagates to ``logits``.

    What it trusts: nothing. Values and gradients are compared with ``F.cross_entropy`` and the
    focal formula run in the grader, and with finite differences of forward values it asks for.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        loss = getattr(impl, cls)(*(args or []), **kwargs)
        if grad_output is not None:
            logits = logits.detach().clone().requires_grad_(True)
        out = loss(logits, target)
        result["out"] = out
        if grad_output is not None:
            grad = None
            if isinstance(out, torch.Tensor) and out.requires_grad:
                (grad,) = _AUTOGRAD_GRAD(out, [logits], grad_output, allow_unused=True)
            result["grad"] = grad
    return result


# -- T10.3 DropConnectLinear ---------------------------------------------------------------------------------
def _build_dropconnect(impl: ModuleType, ctor: dict[str, Any], seed: int | None,
                       state: dict[str, torch.Tensor] | None) -> nn.Module:
    kwargs = dict(ctor)
    if seed is not None:
        kwargs["generator"] = _GENERATOR().manual_seed(seed)
    _MANUAL_SEED(0)
    module = impl.DropConnectLinear(**kwargs)
    if state is not None:
        module.load_state_dict(state)
    return module


@probe
def dropconnect_run(impl: ModuleType, ctor: dict[str, Any], state: dict[str, torch.Tensor] | None,
                    x: torch.Tensor, grad_output: torch.Tensor, seed: int, global_seed: int,
                    dtype: torch.dtype | None = None) -> dict[str, Any]:
    """``DropConnectLinear(**ctor, generator=Generator().manual_seed(seed))`` loads ``state`` and runs:

    * train mode, ``x`` requiring grad: the output, and the gradients of ``<out, grad_output>`` with
      respect to the weight, the bias and ``x`` (``train``);
    * a second train-mode forward with the same generator (``train_next``: a fresh mask);
    * a new module with a generator seeded ``seed`` again, one train forward (``train_again``);
    * eval mode (``eval``);
    * then ``torch.rand(8)``, drawn from the global generator seeded ``global_seed`` after the modules
      were built and before the forwards (``global_draw``): untouched by the forwards, it equals a
      fresh draw from that seed.

    What it trusts: nothing. The grader recovers the mask from the weight's gradient (it knows
    ``grad_output`` and ``x``) and checks the output against ``F.linear`` with that mask; the other
    values are compared with each other and with ``F.linear``.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        module = _build_dropconnect(impl, ctor, seed, state)
        again = _build_dropconnect(impl, ctor, seed, state)
        if dtype is not None:
            module, again = module.to(dtype), again.to(dtype)
        params = dict(_named_parameters(module))
        result["param_shapes"] = {name: list(p.shape) for name, p in params.items()}
        _MANUAL_SEED(global_seed)  # after building (initialisation draws from it): the forwards must not
        module.train()
        xg = x.detach().clone().requires_grad_(True)
        out = module(xg)
        result["train"] = out
        names = [n for n in ("weight", "bias") if n in params]
        grads: list[Any] = [None] * (len(names) + 1)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            grads = list(_AUTOGRAD_GRAD(out, [params[n] for n in names] + [xg], grad_output, allow_unused=True))
        result["grads"] = dict(zip(names, grads[:-1]))
        result["x_grad"] = grads[-1]
        with _NO_GRAD():
            result["train_next"] = _clone(module(x))
            result["train_again"] = _clone(again.train()(x))
            result["eval"] = _clone(module.eval()(x))
    result["global_draw"] = _RAND(8)
    return result


@probe
def dropconnect_init(impl: ModuleType, in_features: int, out_features: int, seed: int) -> dict[str, Any]:
    """The parameters of a freshly built ``DropConnectLinear(in_features, out_features)`` (global seed
    ``seed``). What it trusts: nothing; the grader checks their range and spread."""
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        _MANUAL_SEED(seed)
        module = impl.DropConnectLinear(in_features, out_features)
        result["params"] = {name: _clone(p) for name, p in _named_parameters(module)}
    return result


@probe
def dropconnect_mean(impl: ModuleType, ctor: dict[str, Any], state: dict[str, torch.Tensor], x: torch.Tensor,
                     draws: int, seed: int) -> dict[str, Any]:
    """The mean and the draws' count of ``draws`` train-mode outputs on ``x`` (no grad), each with a
    fresh mask from one generator seeded ``seed``.

    What it trusts: nothing. The grader compares the mean with the eval output it computes with
    ``F.linear`` and the spread it expects from the weights.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl), _NO_GRAD():
        module = _build_dropconnect(impl, ctor, seed, state).train()
        total = None
        for _ in range(draws):
            out = module(x)
            total = out.double() if total is None else total + out.double()
        result["mean"] = total / draws if total is not None else None
    return result


@probe
def dropconnect_meta(impl: ModuleType, ctor: dict[str, Any], x_shape: list[int]) -> dict[str, Any]:
    """Build the layer (no generator), move it to the meta device and run one train-mode forward on a
    meta input: a mask made on the CPU raises here. Returns the output (a meta tensor: only its shape,
    dtype and device travel) and the error, if any."""
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        module = _build_dropconnect(impl, ctor, None, None).to("meta").train()
        result["out"] = module(torch.empty(x_shape, device="meta"))
    return result


# -- T10.4 batch_norm_forward ----------------------------------------------------------------------------
@probe
def bn_steps(impl: ModuleType, steps: list[dict[str, Any]], weight: torch.Tensor, bias: torch.Tensor,
             running_mean: torch.Tensor, running_var: torch.Tensor, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call ``batch_norm_forward(x, weight, bias, running_mean, running_var, training, **kwargs)`` once
    per step (``{"x": ..., "training": ...}``) on the same two buffers; ``x`` requires grad.

    Returns per step the output and copies of both buffers after the call, and whether a buffer
    ended up on the autograd graph.

    What it trusts: nothing. The buffers are this probe's own tensors, read after each call, and the
    grader replays the same steps with ``F.batch_norm``.
    """
    result: dict[str, Any] = {"error": None, "steps": []}
    with observe_errors(result, "error", impl):
        for step in steps:
            x = step["x"].detach().clone().requires_grad_(True)
            out = impl.batch_norm_forward(x, weight, bias, running_mean, running_var, step["training"], **(kwargs or {}))
            result["steps"].append({"out": out, "running_mean": _clone(running_mean), "running_var": _clone(running_var),
                                    "buffers_on_graph": bool(running_mean.requires_grad or running_var.requires_grad)})
    return result


# -- T10.6 weight_decay_param_groups -------------------------------------------------------------------------
class _ScaledLayerNorm(nn.LayerNorm):
    """A norm layer of the course's own, a subclass of nn.LayerNorm: its parameters are not decayed."""


class _Gain(nn.Module):
    """A module with a custom 1-D parameter (not a bias, not a norm layer's): it is decayed."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))


class DecayNet(nn.Module):
    """Names that trip substring rules (``unbiased_proj``, ``normalizer``, ``ln_f``), a tied weight,
    several norm layers and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.unbiased_proj = nn.Linear(6, 6, bias=False)
        self.normalizer = nn.Linear(6, 6)
        self.ln_f = _ScaledLayerNorm(6)
        self.gn = nn.GroupNorm(2, 6)
        self.scale = _Gain(6)
        self.frozen = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10)
        self.head.weight = self.embed.weight  # tied: one parameter under two names


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)


MODELS = {"SmallNet": SmallNet, "DecayNet": DecayNet}


@probe
def groups_probe(impl: ModuleType, model: str, weight_decay: float, lr: float, frozen: list[str],
                 seed: int) -> dict[str, Any]:
    """Build the grader's ``model`` (``seed``), freeze the parameters under the prefixes ``frozen``, call
    ``weight_decay_param_groups(model, weight_decay)``, describe the groups by parameter name, then give
    every parameter a zero gradient and take one ``torch.optim.AdamW(groups, lr=lr)`` step.

    With zero gradients AdamW's step is its decoupled decay alone, ``p ← p·(1 − lr·wd)`` per group
    (``wd`` the group's ``weight_decay``, AdamW's default 0.01 where a group names none).

    What it trusts: nothing the submission says about its groups decides a verdict; the grader checks
    every parameter after the step against the decay it expects.
    """
    _MANUAL_SEED(seed)
    net = MODELS[model]()
    params = dict(_named_parameters(net))
    for name, p in params.items():
        if any(name == f or name.startswith(f + ".") for f in frozen):
            p.requires_grad_(False)
    result: dict[str, Any] = {"error": None, "before": {n: _clone(p) for n, p in params.items()}}
    with observe_errors(result, impl=impl):
        groups = impl.weight_decay_param_groups(net, weight_decay)
    if result["error"] is not None:
        return result
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        result["groups"] = f"<{type(groups).__name__}>"
        return result
    names_by_id = {id(p): n for n, p in params.items()}
    described = []
    for g in groups:
        members = g.get("params", [])
        members = [members] if isinstance(members, torch.Tensor) else list(members)
        wd = g.get("weight_decay")
        described.append({"names": [names_by_id.get(id(p), "<foreign>") for p in members],
                          "weight_decay": float(wd) if isinstance(wd, (int, float)) else None})
    result["groups"] = described
    for p in params.values():
        p.grad = torch.zeros_like(p)
    with observe_errors(result, key="adamw_error"):
        _ADAMW(groups, lr=lr).step()
    result["after"] = {n: _clone(p) for n, p in params.items()}
    return result


# -- speed ---------------------------------------------------------------------------------------------
@probe
def repeat_timed(impl: ModuleType, layout: list[list[Any]], project_seed: int, num_classes: int,
                 smoothing: float) -> dict[str, Any]:
    """``LabelSmoothingCE(num_classes, smoothing)`` (built once) on inputs the zygote made beforehand:
    each repetition's logits and a float tensor turned into class indices (``|x|·C/3``, clamped).

    Used by the speed test, which times the whole request from the grader, as ``repeat_generated``
    (``probes/common.py``): every repetition has inputs of its own, made while no student code ran,
    and its result is projected onto a random vector the grader compares with the reference's.
    """
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    loss = impl.LabelSmoothingCE(num_classes, smoothing)
    with _NO_GRAD():
        for entry in layout:
            logits, raw = inputs_of(entry)
            target = (raw.abs() * (num_classes / 3)).long().clamp(max=num_classes - 1)
            refused = projected.add(loss(logits, target))
            if refused is not None:
                return refused
    return projected.result()
