"""Probes for ex02_autograd.

Functions and models cannot cross the wire, so the probes build them here: scalar functions are
picked by name from :data:`FUNCTIONS`, models are rebuilt from the state dicts the tests send.
Each probe runs the student's code and reports what it saw (values, errors, warnings, flags such
as "the parameters got a .grad"); the tests decide what is right.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from . import probe

MAX_TEXT = 500
MAX_WARNINGS = 10

# Element-wise functions a test may name (x is a tensor, the result has x's shape).
FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quadratic": lambda x: (x - 3) ** 2,
    "quartic": lambda x: x**4 - 3 * x,
    "cube": lambda x: x**3,
    "sin": torch.sin,
    "linear": lambda x: 3 * x - 1,
    # The first derivative (2.5) still requires grad, through the constant, but no longer uses x.
    "scaled": lambda x: x * torch.tensor(2.5, dtype=x.dtype, requires_grad=True),
}


def _observe(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call``; report its value, or the exception it raised, and the warnings it issued.

    ``NotImplementedError`` (an unfinished stub) and ``MemoryError`` propagate so the worker
    reports them with their own status.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value, error = call(), None
        except (NotImplementedError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - the exception is the observation
            value, error = None, f"{type(exc).__name__}: {exc}"[:MAX_TEXT]
    return {"value": value, "error": error,
            "warnings": [str(w.message)[:MAX_TEXT] for w in caught[:MAX_WARNINGS]]}


# -- T2.1 minimize_scalar ---------------------------------------------------------------------------
@probe
def run_minimize(impl: ModuleType, f: str, x0: float, steps: list[int | None],
                 lr: float | None = None) -> dict[str, Any]:
    """Call ``minimize_scalar(FUNCTIONS[f], x0, ...)`` once per entry of ``steps`` (None: default).

    The function handed over records, for every evaluation, whether its argument was a leaf and
    whether it required grad.

    What it trusts: the values (or the exception), which the grader compares with gradient descent it
    computes itself (float64, step by step), so forging them means computing them. The counts and
    warnings are made next to student code (the counter sits in the closure of the function the
    submission is handed) and only choose the hint: a run whose values are right passes however x was
    updated, and one that loses the leaf fails on its error or its values.
    """
    fn = FUNCTIONS[f]
    seen = {"calls": 0, "nonleaf_calls": 0, "no_grad_calls": 0}

    def watched(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            seen["calls"] += 1
            seen["nonleaf_calls"] += int(not x.is_leaf)
            seen["no_grad_calls"] += int(torch.is_grad_enabled() and not x.requires_grad)
        return fn(x)

    values: list[Any] = []
    error = None
    caught: list[str] = []
    for k in steps:
        kwargs: dict[str, Any] = {}
        if k is not None:
            kwargs["steps"] = k
        if lr is not None:
            kwargs["lr"] = lr
        res = _observe(lambda: impl.minimize_scalar(watched, x0, **kwargs))
        caught += res["warnings"]
        if res["error"] is not None:
            error = res["error"]
            break
        values.append(res["value"])
    return {"values": values, "error": error, "warnings": caught[:MAX_WARNINGS], **seen}


# -- T2.2 fit_line ------------------------------------------------------------------------------------
@probe
def run_fit_line(impl: ModuleType, x: torch.Tensor, y: torch.Tensor,
                 kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call ``fit_line(x, y, **kwargs)``; report the result, an exception and warnings.

    What it trusts: the returned ``(w, b)``, which the grader compares with gradient descent it
    computes itself from the data it sent, so forging it means computing it. The non-leaf warning
    (made next to student code) fails a run early with a hint; a non-leaf w or b has no ``.grad``,
    so silencing the warning still leaves an error or a wrong value to be judged.
    """
    return _observe(lambda: impl.fit_line(x, y, **(kwargs or {})))


@probe
def time_fit_line(impl: ModuleType, n: int, steps: int, seed: int, repeats: int = 1) -> dict[str, Any]:
    """For speed tests: fit a line to ``n`` points generated here (``steps`` steps), ``repeats`` times.

    Used by the speed test, which times this whole call from the grader. What it trusts: the last
    ``(w, b)``, compared with the reference's for the same seed (a new one each round), so a fast wrong
    answer earns nothing. Repeats refit the same data, which a cache could skip: the test sends 1.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g) * 2 - 1
    y = 2 * x + 1 + 0.05 * torch.randn(n, generator=g)
    out = None
    for _ in range(repeats):
        out = impl.fit_line(x.clone(), y.clone(), steps=steps)
    return {"value": out}


# -- T2.3 SwishFn / swish -----------------------------------------------------------------------------
# Taken when the worker starts, before any student module is imported (the worker preloads the
# probes): autograd's own ``Function.apply`` in C, which runs a Function's ``forward`` and records
# its ``backward`` whatever the submission assigns to ``SwishFn.apply``.
_c_apply = torch._C._FunctionBase.__dict__["apply"]
_default_vjp = torch.autograd.Function.vjp
_grad = torch.autograd.grad


def _forward_backward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor,
                      grad_output: torch.Tensor) -> dict[str, Any]:
    xg = x.detach().clone().requires_grad_(True)
    out = fn(xg)
    grad = None
    if isinstance(out, torch.Tensor) and out.requires_grad:
        (grad,) = _grad(out, xg, grad_output, allow_unused=True)
    return {"output": out, "grad": grad}


def _marked_gradient(impl: ModuleType, x: torch.Tensor, beta: float, grad_output: torch.Tensor,
                     marker: torch.Tensor) -> dict[str, Any]:
    """The gradient of ``swish(x, beta)`` while ``SwishFn``'s backward is replaced by one that returns
    ``grad_output * marker`` (``marker`` is the grader's): only a swish that goes through SwishFn's
    graph node shows it."""
    cls = impl.SwishFn
    attr = "vjp" if getattr(cls, "vjp", _default_vjp) is not _default_vjp else "backward"
    own = attr in cls.__dict__
    saved = cls.__dict__.get(attr)

    def marked(ctx: Any, *grads: Any) -> Any:
        n_inputs = len(getattr(ctx, "needs_input_grad", (True, False)))
        return (grads[0] * marker.to(grads[0].dtype),) + (None,) * (n_inputs - 1)

    setattr(cls, attr, staticmethod(marked))
    try:
        return _forward_backward(lambda t: impl.swish(t, beta), x, grad_output)
    finally:
        if own:
            setattr(cls, attr, saved)
        else:
            delattr(cls, attr)


@probe
def run_swish_fn(impl: ModuleType, x: torch.Tensor, beta: float, grad_output: torch.Tensor,
                 marker: torch.Tensor | None = None) -> dict[str, Any]:
    """Forward and backward through ``SwishFn`` (called through autograd's own C ``apply``, so an
    assignment to ``SwishFn.apply`` is bypassed and the hand-written backward runs) and through
    ``swish(x, beta)``; with ``marker``, also the gradient of ``swish`` while SwishFn's backward is
    swapped for ``grad_output * marker`` (``marked``).

    For each: the output (with its autograd facts), the gradient that reached ``x`` for
    ``grad_output``, or the exception raised on the way.

    What it trusts: only values. The outputs and gradients are compared with x·σ(βx) and its
    derivative computed in the grader; the SwishFn ones come from the student's forward and backward
    themselves (autograd's C ``apply``, taken at preload). "swish goes through SwishFn" is the value
    ``marked``, which the grader compares with ``grad_output * marker``: a swish of plain tensor
    operations, or one that calls a replaced ``SwishFn.apply``, gives the true derivative instead.
    Faking it means finding the marker in this probe's frame and using it (rewriting the experiment,
    the README's open gap).
    """
    report = {}
    runs = {"apply": lambda t: _c_apply.__get__(None, impl.SwishFn)(t, beta), "swish": lambda t: impl.swish(t, beta)}
    for label, fn in runs.items():
        res = _observe(lambda: _forward_backward(fn, x, grad_output))
        value = res.pop("value") or {}
        report[label] = {**res, "output": value.get("output"), "grad": value.get("grad")}
    if marker is not None:
        res = _observe(lambda: _marked_gradient(impl, x, beta, grad_output, marker))
        report["marked"] = (res["value"] or {}).get("grad")
        report["marked_error"] = res["error"]
    return report


@probe
def time_swish(impl: ModuleType, shape: list[int], beta: float, seed: int, repeats: int,
               project_seed: int) -> dict[str, Any]:
    """For speed tests: ``repeats`` forward+backward passes of ``swish`` on inputs made here.

    Returns projections of the output and of the input gradient onto random directions, so
    the grader can compare them with the reference's without shipping the tensors. Repetition
    ``r`` runs on ``x + r / 1024`` and the projections are of the sums over all repetitions: no
    repetition can be remembered or skipped without changing them.

    What it trusts: nothing it reports is taken at its word; the grader times the whole call and
    compares the projections with the reference's for the same seeds. Inputs and directions are drawn
    here, next to student code, but patching the generator only makes the numbers differ from the
    reference's, so a fast wrong answer earns nothing.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    grad_output = torch.randn(shape, generator=g)
    totals: dict[str, Any] = {"output": None, "grad": None}
    for repetition in range(repeats):
        res = _forward_backward(lambda t: impl.swish(t, beta), x + repetition / 1024, grad_output)
        for key in totals:
            totals[key] = _accumulate(totals[key], res.get(key))
    return _projections(project_seed, **totals)


def _accumulate(total: Any, value: Any) -> Any:
    """The running sum of one output over timed repetitions (a non-tensor makes it that value)."""
    if not isinstance(value, torch.Tensor):
        return value
    if not isinstance(total, torch.Tensor) or total.shape != value.shape:
        return value.detach().clone()
    return total + value.detach()


def _projections(seed: int, **tensors: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    report: dict[str, Any] = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            report[name] = None
            continue
        w = torch.randn(t.shape, generator=g, dtype=torch.float64)
        report[name] = float((t.detach().double() * w).sum())
        report[f"{name}_norm"] = float(t.detach().double().norm())  # the grader reads the reference's only
        report[f"{name}_shape"] = list(t.shape)
    return report


# -- T2.4 nth_derivative ------------------------------------------------------------------------------
@probe
def run_nth_derivative(impl: ModuleType, f: str, x: torch.Tensor, n: int,
                       x_requires_grad: bool = False) -> dict[str, Any]:
    """Call ``nth_derivative(FUNCTIONS[f], x, n)`` and report what happened to the caller's ``x``.

    What it trusts: nothing it decides itself. The derivative is compared with closed forms the
    grader computes (zeros once it no longer depends on x); warnings only choose a hint. The caller's
    ``x`` after the call travels as data (see ``_caller_x``): the grader compares its values with the
    ``x`` it sent and reads ``requires_grad`` and ``.grad`` as the wire took them from the C base class.
    """
    x = x.detach().clone()
    if x_requires_grad:
        x.requires_grad_(True)
    res = _observe(lambda: impl.nth_derivative(FUNCTIONS[f], x, n))
    res.update(_caller_x(x))
    return res


# Read through torch's C base class and ``object``, immutable types: patching ``torch.Tensor`` or
# ``nn.Module`` does not change what these return. Taken before any student module is imported.
_tensor_grad = torch._C.TensorBase.grad.__get__
_module_dict = object.__getattribute__
_module_modules = nn.Module.modules
_module_parameters = nn.Module.parameters


def _caller_x(x: torch.Tensor) -> dict[str, Any]:
    """The caller's ``x`` after the call, as data: the tensor itself (its values, and
    ``requires_grad`` as the wire reads it from the C base class) and its ``.grad``. The grader
    compares the values with the ``x`` it sent."""
    return {"caller_x": x, "caller_x_grad": _tensor_grad(x)}


# -- T2.5 input_saliency ------------------------------------------------------------------------------
def build_model(state: dict[str, torch.Tensor], dropout: float = 0.0) -> nn.Module:
    """``nn.Linear`` from ``{"weight", "bias"}``, or an MLP from a state dict with keys ``0.*`` and ``3.*``:
    ``Linear(D, H) → Tanh → Dropout(dropout) → Linear(H, C)``. The dtype is the weights'."""
    if "weight" in state:
        out_dim, in_dim = state["weight"].shape
        model: nn.Module = nn.Linear(in_dim, out_dim)
    else:
        hidden, in_dim = state["0.weight"].shape
        out_dim = state["3.weight"].shape[0]
        model = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
    dtype = next(iter(state.values())).dtype
    model.to(dtype)
    model.load_state_dict(state)
    return model


@probe
def run_saliency(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                 train: bool = False, dropout: float = 0.0, x_requires_grad: bool = False) -> dict[str, Any]:
    """Build the model, put it in train or eval mode, call ``input_saliency(model, x, target)``.

    Reports the result and what the call left behind: parameter ``.grad``s, the modules'
    ``training`` flags, and the caller's ``x`` (its values, ``requires_grad`` and ``.grad``).

    What it trusts: nothing it decides itself. The saliency is compared with |∂logit_target/∂x|
    computed in the grader from the state it sent (train mode with dropout gives random values unless
    the call switches to eval). What the call left behind travels as data, read through immutable
    types (``TensorBase``, ``object``) with functions taken before student code was imported: each
    parameter's ``.grad`` (the grader checks there are as many as the state has, all None), each
    module's own ``training`` entry (the mode is that flag: setting it back is restoring the mode),
    and the caller's ``x`` (compared with the ``x`` the grader sent).
    """
    model = build_model(state, dropout)
    model.train(train)
    modules, params = list(_module_modules(model)), list(_module_parameters(model))  # before the call
    x = x.detach().clone()
    if x_requires_grad:
        x.requires_grad_(True)
    res = _observe(lambda: impl.input_saliency(model, x, target))
    res.update(
        param_grads=[_tensor_grad(p) for p in params],
        training=[_module_dict(m, "__dict__").get("training") for m in modules],
        **_caller_x(x),
    )
    return res


@probe
def time_saliency(impl: ModuleType, sizes: list[int], seed: int, repeats: int, project_seed: int) -> dict[str, Any]:
    """For speed tests: ``repeats`` saliency calls on an MLP and a batch made here (B, D, H, C = sizes),
    each on ``x + r / 1024``; the projection is of the sum of all results.

    ``model_calls`` counts the model's forward passes over all calls (one per call when batched).

    What it trusts: the projection, which the grader compares with the reference's (every repetition
    has an input of its own, and the sum covers them all), and its own timing of the whole call.
    ``model_calls`` is counted by a forward hook next to student code and only chooses a hint.
    """
    b, d, h, c = sizes
    g = torch.Generator().manual_seed(seed)
    state = {"0.weight": torch.randn(h, d, generator=g) / d**0.5, "0.bias": torch.randn(h, generator=g) * 0.1,
             "3.weight": torch.randn(c, h, generator=g) / h**0.5, "3.bias": torch.randn(c, generator=g) * 0.1}
    model = build_model(state)
    model.eval()
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    x = torch.randn(b, d, generator=g)
    target = torch.randint(0, c, (b,), generator=g)
    total = None
    for repetition in range(repeats):  # an input of its own each time, and the sum of all results
        total = _accumulate(total, impl.input_saliency(model, x + repetition / 1024, target.clone()))
    return {**_projections(project_seed, output=total), "model_calls": calls[0]}
