"""Probes for ex06_cnn: call the size helpers in bulk, build and run the networks, train them.

Modules cannot cross the trust boundary, so every test of ``LeNet``, ``ResidualBlock`` and
``SmallResNet`` goes through one of these. They hold no expected values and no evaluation
labels: they return sizes, outputs, parameters, gradients, state_dicts and predictions, and the
tests judge them against values computed in the grader.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import probe
from .common import observe_errors, prepare_module, structure, train_classifier

# Taken at import, before any student module is imported (defence in depth: the verdicts do not
# rest on these, see each probe's "What it trusts").
_INTERPOLATE = F.interpolate
_NO_GRAD = torch.no_grad
_AUTOGRAD_GRAD = torch.autograd.grad


def _outcome(fn: Any, *args: Any) -> dict[str, Any]:
    """What one call gave: the value if it is a plain number, its type, or the exception's type."""
    try:
        value = fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the type is the observation
        return {"value": None, "type": None, "error": type(exc).__name__}
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return {"value": number, "type": type(value).__name__, "error": None}


# -- T6.1 sizes -----------------------------------------------------------------------------------
@probe
def conv_sizes(impl: ModuleType, cases: list[list[int]]) -> list[dict[str, Any]]:
    """``conv_output_size(size, kernel, stride, padding, dilation)`` for every case.

    What it trusts: nothing; it returns each value (plain numbers only) or the exception's type,
    and the grader compares them with sizes it gets from real layers.
    """
    return [_outcome(impl.conv_output_size, *case) for case in cases]


@probe
def flatten_dims(impl: ModuleType, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``flatten_dim(input_hw, layers, channels)`` for every case (fresh copies of the layer dicts).

    What it trusts: nothing; as ``conv_sizes``.
    """
    return [_outcome(impl.flatten_dim, tuple(c["input_hw"]), [dict(layer) for layer in c["layers"]], c["channels"])
            for c in cases]


# -- T6.3–T6.5 networks ---------------------------------------------------------------------------------
def _build(impl: ModuleType, cls: str, args: list[Any], kwargs: dict[str, Any], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return getattr(impl, cls)(*args, **kwargs)


@probe
def module_run(impl: ModuleType, cls: str, args: list[Any], x: torch.Tensor, kwargs: dict[str, Any] | None = None,
               seed: int = 0, state: dict[str, torch.Tensor] | None = None, modes: list[str] = ("eval",),
               dtype: torch.dtype | None = None, device: str | None = None, zero_convs: bool = False,
               grad_output: torch.Tensor | None = None, input_grad: bool = False,
               more: list[torch.Tensor] | None = None, return_state: bool = False) -> dict[str, Any]:
    """Build ``cls(*args, **kwargs)`` and run ``x`` through it once per entry of ``modes`` ("train"/"eval").

    In order: the model is built (``seed``), cast to ``dtype``, loads ``state`` strictly (a refusal
    is ``load_error``), moves to ``device``; with ``zero_convs`` every ``nn.Conv2d`` weight is set
    to 0. With ``input_grad`` the tensor ``x`` itself requires grad. ``grad_output`` is
    back-propagated from the last output to every parameter (and ``x``). ``more`` are further
    inputs run in the last mode (no grad), ``return_state`` returns the state_dict after the runs,
    and ``x_after`` is ``x`` itself after them (an in-place change shows there).

    What it trusts: nothing it reports is a verdict. Outputs, gradients and states are compared
    with what the grader computes from the state it sent (or from the parameters returned); the
    structure (names, shapes) only selects which comparison and which hint applies.
    """
    result: dict[str, Any] = {"error": None, "load_error": None}
    with observe_errors(result, "error", impl):
        model = _build(impl, cls, list(args), dict(kwargs or {}), seed)
    if result["error"] is not None:
        return result
    result.update(structure(model))
    model = prepare_module(model, result, impl, dtype, state, device)
    if model is None:
        return result
    if zero_convs:
        with _NO_GRAD():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.zero_()
    if input_grad:
        x.requires_grad_(True)
    outs: list[Any] = []
    with observe_errors(result, "error", impl):
        for mode in modes:
            model.train(mode == "train")
            outs.append(model(x))
    result["outs"] = outs
    if result["error"] is not None:
        return result
    if grad_output is not None:
        params = dict(model.named_parameters())
        names = [n for n, p in params.items() if p.requires_grad]
        wrt = [params[n] for n in names] + ([x] if input_grad else [])
        grads: list[Any] = [None] * len(wrt)
        out = outs[-1]
        if isinstance(out, torch.Tensor) and out.requires_grad and wrt:
            with observe_errors(result, "error", impl):
                grads = list(_AUTOGRAD_GRAD(out, wrt, grad_output, allow_unused=True))
        result["grads"] = {**dict.fromkeys(params), **dict(zip(names, grads))}
        result["x_grad"] = grads[-1] if input_grad else None
    if more:
        with _NO_GRAD(), observe_errors(result, "error", impl):
            result["more_outs"] = [model(extra) for extra in more]
    if return_state:
        result["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result["x_after"] = x.detach() if x.device.type != "meta" else None
    return result


@probe
def fit_digits(impl: ModuleType, cls: str, kwargs: dict[str, Any], x_train: torch.Tensor, y_train: torch.Tensor,
               x_eval: torch.Tensor, size: int, channels: int, epochs: int, lr: float, batch_size: int,
               seed: int) -> dict[str, Any]:
    """Train ``cls(**kwargs)`` on digit images with a fixed, seeded loop; return eval-mode logits.

    The 8×8 images are resized to ``size``×``size`` (bilinear) and repeated over ``channels``.
    Adam with cross-entropy, ``epochs`` passes over a seeded shuffle in full minibatches, then
    ``model.eval()`` and one no-grad forward pass over ``x_eval``. The evaluation labels are not
    sent here; the grader scores the logits.

    What it trusts: only that the student's module computes its outputs from its inputs; the
    training loop is this code's, and accuracy is measured in the grader on labels this process
    never sees, so no value reported here can raise the score except real predictions.
    """
    def prepare(images: torch.Tensor) -> torch.Tensor:
        if size != images.shape[-1]:
            images = _INTERPOLATE(images, size=(size, size), mode="bilinear", align_corners=False)
        return images.repeat(1, channels, 1, 1) if channels != 1 else images

    x_train, x_eval = prepare(x_train), prepare(x_eval)
    model = _build(impl, cls, [], dict(kwargs), seed)
    return train_classifier(model, x_train, y_train, x_eval, epochs, lr, batch_size, seed)
