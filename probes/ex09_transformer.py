"""Probes for ex09_transformer: run attention with gradients, build and run the modules, train the
classifier, and time attention and masks on inputs made outside the student's process.

They hold no expected values and no evaluation labels: they return outputs, weights, gradients,
structures and predictions, and the tests judge them against values computed in the grader with
PyTorch's own ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import torch

from ..arena import arena
from . import probe
from .common import _Projections, observe_errors, prepare_module, structure, train_classifier

# Taken at import, before any student module is imported (defence in depth: the verdicts do not
# rest on these, see each probe's "What it trusts").
_NO_GRAD = torch.no_grad
_AUTOGRAD_GRAD = torch.autograd.grad
_CAT = torch.cat


def _primary(out: Any) -> Any:
    """The tensor a gradient flows back from: the output itself, or the first item of a tuple."""
    return out[0] if isinstance(out, (tuple, list)) and out else out


@probe
def attention_vjp(impl: ModuleType, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  grad_output: torch.Tensor, grad_weights: torch.Tensor | None = None) -> dict[str, Any]:
    """``scaled_dot_product_attention(q, k, v, mask)`` with q, k, v requiring grad; back-propagate
    ``grad_output`` from the output (and ``grad_weights`` from the weights) to q, k and v.

    What it trusts: nothing. The grader compares the outputs with PyTorch's and the gradients with
    finite differences of forward values it asks for separately.
    """
    result: dict[str, Any] = {"error": None}
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    with observe_errors(result, "error", impl):
        out = impl.scaled_dot_product_attention(q, k, v, mask)
        result["result"] = out
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return result
        output, weights = out
        wrt = [q, k, v]
        grads: list[Any] = [None, None, None]
        tensors, cotangents = [], []
        for t, g in ((output, grad_output), (weights, grad_weights)):
            if g is not None and isinstance(t, torch.Tensor) and t.requires_grad:
                tensors.append(t)
                cotangents.append(g)
        if tensors:
            grads = list(_AUTOGRAD_GRAD(tensors, wrt, cotangents, allow_unused=True))
        result["grads"] = grads
    return result


@probe
def module_run(impl: ModuleType, cls: str, args: list[Any], inputs: list[Any], kwargs: dict[str, Any] | None = None,
               seed: int = 0, state: dict[str, torch.Tensor] | None = None, modes: Sequence[str] = ("eval",),
               dtype: torch.dtype | None = None, device: str | None = None, grad_output: torch.Tensor | None = None,
               input_grad: Sequence[int] = (), more: list[list[Any]] | None = None,
               return_state: bool = False) -> dict[str, Any]:
    """Build ``cls(*args, **kwargs)`` and call it on ``inputs`` once per entry of ``modes`` ("train"/"eval").

    In order: the model is built (``seed``), cast to ``dtype``, loads ``state`` strictly (a refusal
    is ``load_error``), moves to ``device``. The inputs at the positions in ``input_grad`` require
    grad. ``grad_output`` is back-propagated from the last output (its first item for a tuple) to
    every parameter and those inputs. ``more`` are further input lists run in the last mode (no
    grad); ``return_state`` returns the state_dict after the runs.

    What it trusts: nothing it reports is a verdict. Outputs and gradients are compared with what
    the grader computes from the state it sent; the structure only selects a comparison or a hint.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    with observe_errors(result, "error", impl):
        torch.manual_seed(seed)
        model = getattr(impl, cls)(*args, **(kwargs or {}))
    if result["error"] is not None:
        return result
    result.update(structure(model, buffers=True))
    model = prepare_module(model, result, impl, dtype, state, device)
    if model is None:
        return result
    if device is not None:
        result["buffer_devices"] = {name: str(b.device) for name, b in model.named_buffers()}
    if dtype is not None:
        result["buffer_dtypes"] = {name: str(b.dtype) for name, b in model.named_buffers()}
    inputs = list(inputs)
    for i in input_grad:
        inputs[i] = inputs[i].detach().clone().requires_grad_(True)
    outs: list[Any] = []
    with observe_errors(result, "error", impl):
        for mode in modes:
            model.train(mode == "train")
            outs.append(model(*inputs))
    result["outs"] = outs
    if result["error"] is not None:
        return result
    if grad_output is not None:
        params = dict(model.named_parameters())
        names = [n for n, p in params.items() if p.requires_grad]
        wrt = [params[n] for n in names] + [inputs[i] for i in input_grad]
        grads: list[Any] = [None] * len(wrt)
        out = _primary(outs[-1])
        if isinstance(out, torch.Tensor) and out.requires_grad and wrt:
            with observe_errors(result, "error", impl):
                grads = list(_AUTOGRAD_GRAD(out, wrt, grad_output, allow_unused=True))
        result["grads"] = {**dict.fromkeys(params), **dict(zip(names, grads[:len(names)]))}
        result["input_grads"] = grads[len(names):]
    if more:
        with _NO_GRAD(), observe_errors(result, "error", impl):
            result["more_outs"] = [model(*extra) for extra in more]
    if return_state:
        result["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return result


@probe
def fit_order(impl: ModuleType, kwargs: dict[str, Any], x_train: torch.Tensor, y_train: torch.Tensor,
              x_eval: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """Train ``TransformerClassifier(**kwargs)`` with a fixed, seeded loop; return eval-mode logits.

    Adam with cross-entropy, ``epochs`` passes over a seeded shuffle in full minibatches, then
    ``model.eval()`` and one no-grad forward pass over ``x_eval``. The evaluation labels are not
    sent here; the grader scores the logits.

    What it trusts: only that the student's module computes its outputs from its inputs; the loop is
    this code's and accuracy is measured in the grader on labels this process never sees.
    """
    torch.manual_seed(seed)
    model = impl.TransformerClassifier(**kwargs)
    return train_classifier(model, x_train, y_train, x_eval, epochs, lr, batch_size, seed)


def _flat(out: Any) -> Any:
    """A tensor, or the output and the weights of an attention call in one flat tensor."""
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return _CAT([out[0].detach().reshape(-1).float(), out[1].detach().reshape(-1).float()])
    return out


@probe
def repeat_timed(impl: ModuleType, kind: str, layout: list[list[Any]], project_seed: int,
                 ctor: list[Any] | None = None) -> dict[str, Any]:
    """Run one call per repetition on inputs the zygote made beforehand; project each result.

    ``kind`` says what is called: ``"attention"`` is ``scaled_dot_product_attention(q, k, v, mask)``,
    ``"mha"`` is self-attention through ``MultiHeadAttention(*ctor)`` (built once, seed 0, eval mode,
    no grad), ``"padding"`` is ``padding_mask(lengths, max_len)`` with integer lengths read from a
    generated float tensor (``|x|·max_len/3``, clamped), ``"causal"`` is ``causal_mask(size)``.

    Used by the speed tests, which time the whole request from the grader, as ``repeat_generated``
    (``probes/common.py``): every repetition has inputs of its own, made while no student code ran,
    and its result is projected onto a random vector the grader compares with the reference's, so
    skipping work is a wrong answer. Nothing reported here is taken at its word.
    """
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    if kind == "mha":
        torch.manual_seed(0)
        module = impl.MultiHeadAttention(*(ctor or [])).eval()
        with _NO_GRAD():
            for entry in layout:
                x = inputs_of(entry)[0]
                refused = projected.add(_flat(module(x, x, x)))
                if refused is not None:
                    return refused
        return projected.result()
    for entry in layout:
        args = inputs_of(entry)
        if kind == "padding":
            x, max_len = args
            out = impl.padding_mask((x.abs() * (max_len / 3)).long().clamp(max=max_len), max_len)
        elif kind == "causal":
            out = impl.causal_mask(*args)
        else:
            out = _flat(impl.scaled_dot_product_attention(*args))
        refused = projected.add(out)
        if refused is not None:
            return refused
    return projected.result()
