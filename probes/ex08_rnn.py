"""Probes for ex08_rnn: build the recurrent modules, unroll the cell, run, back-propagate and train.

Modules cannot cross the trust boundary, so every test of the classes goes through one of these.
They hold no expected values and no evaluation labels: they return outputs, gradients, structures
and predictions, and the tests judge them against values computed in the grader from the
state_dicts the grader sent.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import probe
from .common import observe_errors, prepare_module, structure

# Taken at import, before any student module is imported (defence in depth: the verdicts do not
# rest on these, see each probe's "What it trusts").
_ADAM = torch.optim.Adam
_MSE = F.mse_loss
_CROSS_ENTROPY = F.cross_entropy
_RANDPERM = torch.randperm
_RAND = torch.rand
_NO_GRAD = torch.no_grad
_AUTOGRAD_GRAD = torch.autograd.grad
_GENERATOR = torch.Generator
_LSTM_CELL = nn.LSTMCell
_MANUAL_SEED = torch.manual_seed


def _build(impl: ModuleType, cls: str, args: list[Any], kwargs: dict[str, Any], seed: int,
           result: dict[str, Any]) -> nn.Module | None:
    _MANUAL_SEED(seed)
    with observe_errors(result, "error", impl):
        model = getattr(impl, cls)(*args, **kwargs)
        result.update(structure(model))
        result["initial_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model
    return None


def _tensors(value: Any) -> list[torch.Tensor] | None:
    """A tensor, or a tuple/list of tensors, as a list (None for anything else)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    return None


def _grads(result: dict[str, Any], impl: ModuleType, model: nn.Module, outs: Any, grad_outputs: list[torch.Tensor],
           inputs: list[torch.Tensor]) -> None:
    """Back-propagate ``grad_outputs`` from ``outs`` to every parameter and to ``inputs``; store them."""
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if p.requires_grad]
    wrt = [params[n] for n in names] + inputs
    got = _tensors(outs)
    grads: list[Any] = [None] * len(wrt)
    if got is not None and len(got) == len(grad_outputs):
        pairs = [(o, g) for o, g in zip(got, grad_outputs) if o.requires_grad and list(o.shape) == list(g.shape)]
        if pairs and wrt:
            with observe_errors(result, "error", impl):
                grads = list(_AUTOGRAD_GRAD([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True))
    result["grads"] = {**dict.fromkeys(params), **dict(zip(names, grads[:len(names)]))}
    result["input_grads"] = grads[len(names):]


# -- T8.1 LSTMCellScratch -------------------------------------------------------------------------------
@probe
def cell_unroll(impl: ModuleType, input_size: int, hidden_size: int, xs: torch.Tensor,
                cell_state: dict[str, torch.Tensor] | None = None, load: str = "load_from",
                state0: list[torch.Tensor] | None = None, dtype: torch.dtype | None = None,
                device: str | None = None, grad_outputs: list[torch.Tensor] | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Build ``LSTMCellScratch(input_size, hidden_size)`` and unroll it over ``xs`` (``(T, B, I)``).

    With ``cell_state`` the weights come from an ``nn.LSTMCell`` holding that state, through the
    student's ``load_from`` (``load="load_from"``) or ``load_state_dict`` (``load="state_dict"``).
    The cell is cast to ``dtype`` before it loads and moved to ``device`` after; step 0 gets
    ``state0`` (or None), each later step the previous ``(h, c)``. Returns the stacked ``hs`` and
    ``cs`` (``(T, B, H)``) and, with ``grad_outputs = [gh, gc]``, the gradients of ``<hs, gh> + <cs, gc>`` with respect
    to the parameters, ``xs`` and ``state0``.

    What it trusts: nothing it reports is a verdict. The grader computes the outputs and gradients
    of ``nn.LSTMCell`` with the state it sent and compares; the structure only selects hints.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    model = _build(impl, "LSTMCellScratch", [input_size, hidden_size], {}, seed, result)
    if model is None:
        return result
    if dtype is not None:
        model = model.to(dtype)
    if cell_state is not None:
        with observe_errors(result, "load_error", impl):
            if load == "load_from":
                source = _LSTM_CELL(input_size, hidden_size).to(dtype or next(iter(cell_state.values())).dtype)
                source.load_state_dict(cell_state)
                model.load_from(source)
            else:
                model.load_state_dict(cell_state)
        if result["load_error"] is not None:
            return result
    if device is not None:
        model = model.to(device)
        xs = xs.to(device)
        state0 = [s.to(device) for s in state0] if state0 is not None else None
    inputs = [xs]
    if grad_outputs is not None:
        xs.requires_grad_(True)
        for s in state0 or []:
            s.requires_grad_(True)
        inputs += list(state0 or [])
    hs, cs = [], []
    with observe_errors(result, "error", impl):
        state = tuple(state0) if state0 is not None else None
        for x in xs.unbind(0):
            out = model(x, state)
            if _tensors(out) is None or len(out) != 2:
                result["error"] = f"forward returned {type(out).__name__}, expected a tuple (h, c)"
                return result
            hs.append(out[0])
            cs.append(out[1])
            state = (out[0], out[1])
        result["outs"] = [torch.stack(hs), torch.stack(cs)]
    if result["error"] is not None:
        return result
    if grad_outputs is not None:
        _grads(result, impl, model, result["outs"], grad_outputs, inputs)
    return result


# -- T8.2, T8.4, T8.5 modules --------------------------------------------------------------------------
@probe
def module_run(impl: ModuleType, cls: str, args: list[Any], inputs: list[Any], kwargs: dict[str, Any] | None = None,
               seed: int = 0, state: dict[str, torch.Tensor] | None = None, mode: str = "eval",
               dtype: torch.dtype | None = None, device: str | None = None, call_kwargs: dict[str, Any] | None = None,
               grad_output: torch.Tensor | None = None, more: list[list[Any]] | None = None) -> dict[str, Any]:
    """Build ``cls(*args, **kwargs)``, load ``state`` strictly, and call ``model(*inputs, **call_kwargs)``.

    In order: built (``seed``), cast to ``dtype``, ``state`` loaded (a refusal is ``load_error``),
    moved to ``device`` (the inputs come as the grader made them, e.g. already on ``meta``), put in
    ``mode``. ``grad_output`` is back-propagated to every parameter. ``more`` are further input
    lists run in the same mode without grad. A ``generator_seed`` in ``call_kwargs`` becomes
    ``generator=torch.Generator().manual_seed(seed)``.

    What it trusts: nothing it reports is a verdict. Outputs and gradients are compared with what the
    grader computes from the state it sent; the structure (names, shapes) only selects hints.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    model = _build(impl, cls, list(args), dict(kwargs or {}), seed, result)
    if model is None:
        return result
    model = prepare_module(model, result, impl, dtype, state, device)
    if model is None:
        return result
    model.train(mode == "train")

    def call(values: list[Any]) -> Any:
        extra = dict(call_kwargs or {})
        if "generator_seed" in extra:
            extra["generator"] = _GENERATOR().manual_seed(int(extra.pop("generator_seed")))
        return model(*values, **extra)

    with observe_errors(result, "error", impl):
        result["out"] = call(inputs)
    if result["error"] is not None:
        return result
    if grad_output is not None:
        _grads(result, impl, model, result["out"], [grad_output], [])
    if more:
        with _NO_GRAD(), observe_errors(result, "error", impl):
            result["more_outs"] = [call(values) for values in more]
    return result


@probe
def seq2seq_run(impl: ModuleType, args: list[Any], kwargs: dict[str, Any], state: dict[str, torch.Tensor],
                src: torch.Tensor, tgt: torch.Tensor, ratio: float, generator_seeds: list[int | None],
                decode_len: int | None = None, global_seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """``Seq2Seq.forward(src, tgt, ratio, generator)`` once per entry of ``generator_seeds`` (None: no
    generator), then ``greedy_decode(src, decode_len)``; all in eval mode, without grad.

    Before the calls the global RNG is seeded with ``global_seed``; after them four numbers are drawn
    from it (``after_draws``): the grader compares them with what that seed gives untouched. After
    each forward call one number is drawn from its generator (``next_draws``), which shows how many
    draws forward took.

    What it trusts: the outputs are compared with the grader's own decoding of the state it sent,
    with the same generator seeds; ``after_draws`` and ``next_draws`` are observations made next to
    student code (a submission that rewrote this probe could forge them) and only check the draw
    convention, which the outputs already pin down up to draws that change nothing.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    model = _build(impl, "Seq2Seq", list(args), dict(kwargs), 0, result)
    if model is None:
        return result
    with observe_errors(result, "load_error", impl):
        model.load_state_dict(state)
    if result["load_error"] is not None:
        return result
    if device is not None:
        model, src, tgt = model.to(device), src.to(device), tgt.to(device)
    model.eval()
    outs, next_draws = [], []
    _MANUAL_SEED(global_seed)
    with _NO_GRAD(), observe_errors(result, "error", impl):
        for seed in generator_seeds:
            generator = _GENERATOR().manual_seed(seed) if seed is not None else None
            outs.append(model(src, tgt, ratio, generator))
            next_draws.append(_RAND(1, generator=generator) if generator is not None else None)
    result["after_draws"] = _RAND(4)
    result["outs"] = outs
    result["next_draws"] = next_draws
    if result["error"] is not None or decode_len is None:
        return result
    with observe_errors(result, "error", impl):
        result["decoded"] = model.greedy_decode(src, decode_len)
    return result


# -- training ----------------------------------------------------------------------------------------------
def _fit(model: nn.Module, batches: Any, loss_of: Any, lr: float) -> list[float]:
    """Train; the loss per step, for the report's training curve only (no verdict reads it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _ADAM(params, lr=lr)
    model.train()
    losses = []
    for batch in batches:
        loss = loss_of(*batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _shuffled(n: int, batch_size: int, epochs: int, generator: torch.Generator) -> Any:
    for _ in range(epochs):
        order = _RANDPERM(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


@probe
def fit_sine(impl: ModuleType, kwargs: dict[str, Any], x_train: torch.Tensor, y_train: torch.Tensor,
             x_eval: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """Train ``SineForecaster(**kwargs)`` with a fixed loop (Adam, MSE, seeded shuffles); return
    eval-mode predictions on ``x_eval``. The evaluation targets stay in the grader.

    What it trusts: only that the student's module computes its outputs from its inputs; the loop
    is this code's and the error is measured in the grader on targets this process never sees.
    """
    _MANUAL_SEED(seed)
    model = impl.SineForecaster(**kwargs)
    g = _GENERATOR().manual_seed(seed)
    batches = ((x_train[idx], y_train[idx]) for idx in _shuffled(len(x_train), batch_size, epochs, g))
    losses = _fit(model, batches, lambda x, y: _MSE(model(x), y), lr)
    with _NO_GRAD():
        return {"pred": model(x_eval), "losses": losses}


@probe
def fit_sentiment(impl: ModuleType, kwargs: dict[str, Any], tokens: torch.Tensor, lengths: torch.Tensor,
                  labels: torch.Tensor, eval_tokens: torch.Tensor, eval_lengths: torch.Tensor, epochs: int,
                  lr: float, batch_size: int, seed: int) -> dict[str, Any]:
    """Train ``BiLSTMClassifier(**kwargs)`` with a fixed loop (Adam, cross-entropy, seeded shuffles);
    return eval-mode logits on the evaluation tokens. The evaluation labels stay in the grader.

    What it trusts: as ``fit_sine``.
    """
    _MANUAL_SEED(seed)
    model = impl.BiLSTMClassifier(**kwargs)
    g = _GENERATOR().manual_seed(seed)
    batches = ((tokens[idx], lengths[idx], labels[idx]) for idx in _shuffled(len(tokens), batch_size, epochs, g))
    losses = _fit(model, batches, lambda t, n, y: _CROSS_ENTROPY(model(t, n), y), lr)
    with _NO_GRAD():
        return {"logits": model(eval_tokens, eval_lengths), "losses": losses}


@probe
def fit_reverse(impl: ModuleType, kwargs: dict[str, Any], src: torch.Tensor, tgt: torch.Tensor,
                eval_src: torch.Tensor, decode_len: int, lr: float, seed: int) -> dict[str, Any]:
    """Train ``Seq2Seq(**kwargs)`` on the batches ``src[k], tgt[k]`` in order (Adam, cross-entropy of
    ``forward(src, tgt, 1.0, generator)`` against ``tgt[:, 1:]``); return ``greedy_decode`` of
    ``eval_src``. The evaluation targets stay in the grader.

    What it trusts: as ``fit_sine``.
    """
    _MANUAL_SEED(seed)
    model = impl.Seq2Seq(**kwargs)
    g = _GENERATOR().manual_seed(seed)
    vocab = kwargs["vocab_size"]

    def loss_of(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = model(s, t, 1.0, g)
        return _CROSS_ENTROPY(logits.reshape(-1, vocab), t[:, 1:].reshape(-1))

    losses = _fit(model, zip(src.unbind(0), tgt.unbind(0)), loss_of, lr)
    return {"decoded": model.greedy_decode(eval_src, decode_len), "losses": losses}
