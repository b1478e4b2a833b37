"""Probes for ex03_modules: build the submission's modules, run them, report what they did.

Modules cannot cross the trust boundary, so every test of ``MLP``, ``build_sequential``,
``MultiHeadNet``, ``count_parameters`` and ``init_weights`` goes through one of these. They hold
no expected values: they return outputs, parameters, gradients, key names and the errors the
submission raised, and the tests judge them.
"""

from __future__ import annotations

import contextlib
import warnings
import zlib
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import probe
from .common import observe_errors


# -- a small trusted model builder (count_parameters, init_weights) -------------------------------
def _layer(spec: list[Any]) -> nn.Module:
    kind, *args = spec
    if kind == "linear":
        return nn.Linear(int(args[0]), int(args[1]), bias=bool(args[2]) if len(args) > 2 else True)
    if kind == "conv2d":
        return nn.Conv2d(int(args[0]), int(args[1]), int(args[2]), bias=bool(args[3]) if len(args) > 3 else True)
    if kind == "bn1d":
        return nn.BatchNorm1d(int(args[0]))
    if kind == "bn2d":
        return nn.BatchNorm2d(int(args[0]))
    if kind == "layernorm":
        return nn.LayerNorm(int(args[0]))
    if kind == "embedding":
        return nn.Embedding(int(args[0]), int(args[1]))
    if kind == "relu":
        return nn.ReLU()
    if kind == "flatten":
        return nn.Flatten()
    if kind == "seq":
        return nn.Sequential(*[_layer(s) for s in args[0]])
    raise ValueError(f"unknown layer kind {kind!r}")


def build_model(layers: list[list[Any]], frozen: list[int] = (), tie: list[list[int]] = (),
                seed: int = 0) -> nn.Sequential:
    """``nn.Sequential`` of ``layers``; ``frozen`` top-level layers get ``requires_grad=False``;
    each ``[src, dst]`` in ``tie`` makes layer ``dst`` use layer ``src``'s weight Parameter."""
    torch.manual_seed(seed)
    model = nn.Sequential(*[_layer(s) for s in layers])
    for i in frozen:
        model[i].requires_grad_(False)
    for src, dst in tie:
        model[dst].weight = model[src].weight
    return model


@probe
def count_params(impl: ModuleType, layers: list[list[Any]], frozen: list[int] = (), tie: list[list[int]] = (),
                 trainable_only: bool | None = None) -> Any:
    """What ``count_parameters`` returns for the described model (default argument if None).

    What it trusts: the returned count, which the grader compares with the count it makes by hand
    from the layer description (random sizes and frozen layers in the hidden tests); the model is
    built here, so the right number can only come from counting it.
    """
    model = build_model(layers, frozen, tie)
    if trainable_only is None:
        return impl.count_parameters(model)
    return impl.count_parameters(model, trainable_only=trainable_only)


@probe
def init_apply(impl: ModuleType, layers: list[list[Any]], seed: int = 0, prefill: float | None = None,
               x: torch.Tensor | None = None, grad_output: torch.Tensor | None = None) -> dict[str, Any]:
    """``model.apply(init_weights)`` on the described model; report parameters before/after.

    With ``prefill`` every parameter is first set to that constant, so untouched ones are visible.
    With ``x`` the initialised model is run and back-propagated (``grad_output``) afterwards.

    What it trusts: only values. ``params`` are the values of the parameter objects the model held
    before ``apply`` (those an optimizer made earlier would update); the grader checks their statistics
    and exact 0/1/prefill itself. With ``x``, ``grads`` are the gradients of the model's output with
    respect to those same objects, which the grader compares with the gradients it computes from
    ``params``: a parameter that was replaced (the model computes with another object), or one left not
    requiring grad, gets no gradient, a wrong value. ``replaced``, ``missing``, ``not_trainable_leaf``
    and the ``warnings`` are read next to student code and only choose the hint; the use of a
    deprecated ``nn.init`` function is judged by the grader from the submitted source.
    """
    model = build_model(layers, seed=seed)
    if prefill is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(prefill)
    before = dict(model.named_parameters())
    result: dict[str, Any] = {"error": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with observe_errors(result, impl=impl):
            model.apply(impl.init_weights)
    after = dict(model.named_parameters())
    result.update({
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "params": {name: p.detach().clone() for name, p in before.items()},
        "replaced": sorted(name for name, p in after.items() if before.get(name) is not p),
        "not_trainable_leaf": sorted(name for name, p in after.items()
                                     if not (isinstance(p, nn.Parameter) and p.is_leaf and p.requires_grad)),
        "missing": sorted(set(before) - set(after)),
    })
    if x is not None and result["error"] is None:
        out = model(x)
        trainable = [name for name, p in before.items() if p.requires_grad]
        grads: dict[str, Any] = dict.fromkeys(before)
        if isinstance(out, torch.Tensor) and out.requires_grad and trainable:
            got = torch.autograd.grad(out, [before[n] for n in trainable], grad_output, allow_unused=True)
            grads.update(zip(trainable, got))
        result["grads"] = grads
    return result


# -- MLP ------------------------------------------------------------------------------------------
def _mlp(impl: ModuleType, config: dict[str, Any], seed: int, dtype: torch.dtype | None = None,
         device: str | None = None) -> nn.Module:
    torch.manual_seed(seed)
    model = impl.MLP(**config)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model


def _mlp_layers(model: nn.Module) -> dict[str, Any]:
    """The registered Linear and BatchNorm1d layers (in ``modules()`` order), the names their weight
    and bias have in ``named_parameters()`` (None if not there), and the parameter list."""
    names = {id(p): name for name, p in model.named_parameters()}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    return {
        "linears": [[m.weight, m.bias] for m in linears],
        "norms": [[m.weight, m.bias, m.running_mean, m.running_var, m.eps] for m in norms],
        "linear_names": [[names.get(id(m.weight)), names.get(id(m.bias))] for m in linears],
        "norm_names": [[names.get(id(m.weight)), names.get(id(m.bias))] for m in norms],
        "param_shapes": [list(p.shape) for p in model.parameters()],
        "state_keys": list(model.state_dict().keys()),
    }


@probe
def mlp_forward(impl: ModuleType, config: dict[str, Any], x: torch.Tensor, modes: list[str] = ("eval",),
                seed: int = 0, dtype: torch.dtype | None = None, device: str | None = None,
                transpose: list[int] | None = None) -> dict[str, Any]:
    """Build ``MLP(**config)`` and run ``x`` through it once per entry of ``modes`` ("train"/"eval").

    Returns the outputs and the registered layers. ``transpose`` makes ``x`` a non-contiguous view
    first. An exception from the forward pass is returned as ``error`` (with the registered layers).

    What it trusts: only values. Each output is compared in the grader with the network it computes from
    the registered layers' own tensors (a transposed input included), or, in train mode with dropout,
    checked there for the structure dropout leaves: with more outputs than the last hidden width, an
    output lies in the column space of the last Linear's weight (anything after that layer leaves it),
    and the hidden activations recovered from it are each 0 or the eval-mode value scaled by 1/(1-p).
    """
    result: dict[str, Any] = {"error": None}
    model = _mlp(impl, config, seed, dtype, device)
    if transpose is not None:
        x = x.transpose(*transpose)
    outs = []
    with observe_errors(result, impl=impl):
        for mode in modes:
            model.train(mode == "train")
            outs.append(model(x))
    if result["error"] is not None:
        return {**result, **_mlp_layers(model)}
    return {**result, "outs": outs, **_mlp_layers(model)}


@probe
def mlp_grads(impl: ModuleType, config: dict[str, Any], x: torch.Tensor, grad_output: torch.Tensor,
              seed: int = 0, train: bool = False) -> dict[str, Any]:
    """Back-propagate ``grad_output`` through ``MLP(**config)(x)``; the gradient of every parameter.

    What it trusts: ``param_shapes`` is the module's own answer to ``parameters()``, the behaviour under
    test. The gradients come from autograd here, but the grader compares each with the gradient it
    computes itself from the returned layers' values (``linears``/``norms``, matched to ``grads`` by the
    names in ``linear_names``/``norm_names``) for the same input and ``grad_output``: a layer that forward
    never uses shows as a missing or wrong gradient, and patching ``torch.autograd.grad`` only gives
    values that fail unless they are the right ones.
    """
    model = _mlp(impl, config, seed)
    model.train(train)
    out = model(x)
    params = dict(model.named_parameters())
    trainable = [name for name, p in params.items() if p.requires_grad]
    grads: dict[str, Any] = dict.fromkeys(params)
    if isinstance(out, torch.Tensor) and out.requires_grad and trainable:
        got = torch.autograd.grad(out, [params[n] for n in trainable], grad_output, allow_unused=True)
        grads.update(zip(trainable, got))
    return {"out": out, "grads": grads, **_mlp_layers(model)}


@probe
def mlp_fit(impl: ModuleType, config: dict[str, Any], x_train: torch.Tensor, y_train: torch.Tensor,
            x_eval: torch.Tensor, steps: int, lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """Train ``MLP(**config)`` with Adam and cross-entropy on minibatches of the given data.

    Returns the eval-mode logits on ``x_eval`` and the trained model's registered layers, and the same
    for a second instance (another seed) that loaded the trained model's ``state_dict``. A model without
    parameters is reported, not trained.

    What it trusts: the held-out labels never enter the worker, and the logits come from parameters
    this probe trained, so accuracy cannot be forged without learning. Both sets of logits are compared
    in the grader with the eval-mode network it computes from the layers returned with them (BatchNorm
    running statistics included), and the twin's layers with the trained model's: a model that
    remembers outputs by input, or a ``state_dict`` that leaves a layer out, gives wrong values.
    """
    model = _mlp(impl, config, seed)
    if not list(model.parameters()):
        return {"n_params": 0}
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []  # for the report's training curve only: no verdict reads it
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (batch_size,), generator=g)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        logits = model(x_eval)
    twin = _mlp(impl, config, seed + 1)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    with torch.no_grad():
        twin_logits = twin(x_eval)
    return {"logits": logits, "twin_logits": twin_logits, "layers": _mlp_layers(model), "twin_layers": _mlp_layers(twin),
            "losses": losses}


# -- build_sequential ---------------------------------------------------------------------------------
@probe
def sequential_probe(impl: ModuleType, sizes: list[int], x: torch.Tensor, dropout: float | None = None,
                     seed: int = 0, state: dict[str, torch.Tensor] | None = None, train: bool = False,
                     grad_output: torch.Tensor | None = None, dtype: torch.dtype | None = None,
                     device: str | None = None) -> dict[str, Any]:
    """``build_sequential(sizes[, dropout])``: its children, state_dict, output on ``x`` and grads.

    With ``state`` the model first loads it (strict); a failure is returned as ``load_error``, and
    an exception from the forward pass as ``forward_error``.

    What it trusts: the output and gradients, compared with the network the grader computes from the
    state it sent (or with the reference's output for the reference's state). Children, type names,
    ``p`` and keys are the model's own answers about its structure and name the mistake; that the
    Dropout children drop is judged on values (a train-mode forward through identity layers, where
    the output shows which entries were zeroed and how the rest were scaled), so a class merely
    named ``Dropout`` fails it.
    """
    torch.manual_seed(seed)
    model = impl.build_sequential(list(sizes)) if dropout is None else impl.build_sequential(list(sizes), dropout)
    result: dict[str, Any] = {"type": type(model).__name__, "is_sequential": isinstance(model, nn.Sequential),
                              "load_error": None}
    if not isinstance(model, nn.Module):
        return result
    result["children"] = [[name, type(m).__name__, getattr(m, "p", None)] for name, m in model.named_children()]
    result["state_keys"] = list(model.state_dict().keys())
    if dtype is not None:
        model = model.to(dtype)
    if state is not None and not _load_state(model, state, result):
        return result
    if device is not None:
        model = model.to(device)
    model.train(train)
    result["forward_error"] = None
    with observe_errors(result, "forward_error", impl):
        out = model(x)
    if result["forward_error"] is not None:
        return result
    result["out"] = out
    result["state"] = dict(model.state_dict())
    if grad_output is not None:
        params = dict(model.named_parameters())
        grads: dict[str, Any] = dict.fromkeys(params)
        if isinstance(out, torch.Tensor) and out.requires_grad and params:
            got = torch.autograd.grad(out, list(params.values()), grad_output, allow_unused=True)
            grads.update(zip(params, got))
        result["grads"] = grads
    return result


# -- MultiHeadNet -------------------------------------------------------------------------------------
def _multihead(impl: ModuleType, in_dim: int, hidden: int, heads: dict[str, int], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return impl.MultiHeadNet(in_dim, hidden, dict(heads))


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], result: dict[str, Any]) -> bool:
    """Load ``state`` strictly; False, with ``result["load_error"]`` saying why, when the model refuses it."""
    with observe_errors(result, "load_error"):
        model.load_state_dict(state)
    return result["load_error"] is None


def _head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The heads the model holds in ``model.heads``, registered or not (a plain dict shows here too)."""
    heads = getattr(model, "heads", None)
    if heads is None or not hasattr(heads, "items"):
        return {}
    return {str(name): m for name, m in heads.items() if isinstance(m, nn.Module)}


def _all_params(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Registered parameters by name plus those of unregistered heads (as ``heads.<name>.<param>``)."""
    params = dict(model.named_parameters())
    registered = list(params)
    seen = {id(p) for p in params.values()}
    for name, head in _head_modules(model).items():
        for pname, p in head.named_parameters():
            if id(p) not in seen:
                params[f"heads.{name}.{pname}"] = p
    return params, registered


def _fill(model: nn.Module, seed: int) -> None:
    """Deterministic values for every state_dict entry, each from a generator seeded by its own key
    name: a key holds the same values whichever other heads the model has."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


_BUILT: dict[str, nn.Module] = {}  # models built by ``multihead_build`` for the timed requests that follow


@probe
def multihead_build(impl: ModuleType, in_dim: int, hidden: int, heads: dict[str, int], key: str, seed: int = 0,
                    fill_seed: int | None = None) -> dict[str, Any]:
    """Build (and fill) a ``MultiHeadNet`` and keep it in this process under ``key``, so a speed test
    times forward passes only, not building the model. Only the latest model is kept.

    What it trusts: nothing; it returns the state_dict keys, which the speed test does not judge.
    """
    _BUILT.clear()
    model = _multihead(impl, in_dim, hidden, heads, seed)
    if fill_seed is not None:
        _fill(model, fill_seed)
    _BUILT[key] = model
    return {"state_keys": sorted(model.state_dict().keys())}


@probe
def multihead_forward(impl: ModuleType, in_dim: int, hidden: int, heads: dict[str, int], x: torch.Tensor,
                      head: str, seed: int = 0, state: dict[str, torch.Tensor] | None = None,
                      fill_seed: int | None = None, repeats: int = 1, catch: bool = False,
                      built: str | None = None) -> dict[str, Any]:
    """``MultiHeadNet(in_dim, hidden, heads)(x, head)``, ``repeats`` times (no_grad when > 1).

    Repetition ``r`` runs on ``x + r / 1024`` and ``out_total`` sums every repetition's output, so
    a model that remembers results by input gains no time and one that skips work gets a wrong
    total (the grader compares it with the reference's).

    ``state`` is loaded first (strict; failure → ``load_error``); ``fill_seed`` instead sets every
    state_dict entry from a seeded generator; ``built`` uses the model ``multihead_build`` kept. ``head_calls`` counts how often each head module ran
    (counted on each head's own ``forward``).

    What it trusts: ``out`` and ``out_total`` are values the grader compares with the reference's,
    so they cannot be forged without computing them. ``head_calls`` is an observation made next to
    student code (the submission could reach and rewrite the counter): tests use it only to choose
    a hint. Whether other heads ran is judged from outside, by timing (cost must not grow with the
    number of heads).
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    model = _BUILT[built] if built is not None else _multihead(impl, in_dim, hidden, heads, seed)
    result["state_keys"] = sorted(model.state_dict().keys())
    if state is not None and not _load_state(model, state, result):
        return result
    if fill_seed is not None and built is None:
        _fill(model, fill_seed)
    head_modules = _head_modules(model)
    counts = dict.fromkeys(head_modules, 0)

    def counting(name: str, forward: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return forward(*args, **kwargs)
        return counted

    # Count on the head module itself, not through hooks: ``head.forward(x)`` called directly, or a
    # head class that overrides ``register_forward_hook`` or ``__call__``, would slip past a hook.
    # What it trusts: only computing a head with ``F.linear(x, head.weight)`` by hand goes uncounted.
    for name, module in head_modules.items():
        object.__setattr__(module, "forward", counting(name, module.forward))
    out = None
    with contextlib.ExitStack() as stack:
        if catch:
            stack.enter_context(observe_errors(result, impl=impl))
        if repeats > 1:
            stack.enter_context(torch.no_grad())
        total = None
        for repetition in range(repeats):
            out = model(x + repetition / 1024 if repetition else x, head)
            if repeats > 1 and isinstance(out, torch.Tensor):
                total = out.detach().clone() if total is None else total + out.detach()
    result.update({"out": out, "out_total": total, "head_calls": counts})
    return result


@probe
def multihead_grads(impl: ModuleType, in_dim: int, hidden: int, heads: dict[str, int], x: torch.Tensor,
                    head: str, grad_output: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """Back-propagate through one head; the gradient of every parameter, registered or not.

    What it trusts: ``registered`` and ``state_keys`` are the model's own answers to
    ``named_parameters()`` and ``state_dict()``, the behaviour under test. ``params`` are the values of
    the same parameters; the grader computes the output and the trunk's and selected head's gradients
    from them and compares them with ``out`` and ``grads``, so patching ``torch.autograd.grad`` (or
    a forward that skips a layer) gives wrong values. That the other heads get no gradient is read
    here; a forward that used them would also show in ``out``.
    """
    model = _multihead(impl, in_dim, hidden, heads, seed)
    params, registered = _all_params(model)
    out = model(x, head)
    trainable = [name for name, p in params.items() if p.requires_grad]
    grads: dict[str, Any] = dict.fromkeys(params)
    if isinstance(out, torch.Tensor) and out.requires_grad and trainable:
        got = torch.autograd.grad(out, [params[n] for n in trainable], grad_output, allow_unused=True)
        grads.update(zip(trainable, got))
    return {"out": out, "registered": registered, "grads": grads,
            "params": {name: p.detach().clone() for name, p in params.items()},
            "state_keys": sorted(model.state_dict().keys())}


@probe
def multihead_moved(impl: ModuleType, in_dim: int, hidden: int, heads: dict[str, int], batch: int,
                    seed: int = 0, device: str | None = None, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """``model.to(device/dtype)``, then every head on a matching input: parameter devices/dtypes and outputs.

    What it trusts: each head's output, whose device, dtype and shape are read on arrival; a head that
    ``.to()`` left behind fails there too (its CPU bias cannot join a meta input, its float32 weight a
    float64 one). ``devices`` are strings read next to student code: faking them (patching
    ``Tensor.device``) gains nothing, as the outputs fail the same way.
    """
    model = _multihead(impl, in_dim, hidden, heads, seed)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    params, _ = _all_params(model)
    outs: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name in heads:
        x = torch.randn(batch, in_dim, dtype=dtype or torch.float32, device=device or "cpu")
        sink: dict[str, Any] = {}
        with observe_errors(sink, impl=impl):
            outs[name] = model(x, name)
        if "error" in sink:
            errors[name] = sink["error"]
    return {"devices": {n: str(p.device) for n, p in params.items()},
            "dtypes": {n: p.dtype for n, p in params.items()}, "outs": outs, "errors": errors}
