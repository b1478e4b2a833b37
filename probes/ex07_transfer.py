"""Probes for ex07_transfer: freezing, new heads, parameter groups, frozen BatchNorm, few-shot
fine-tuning and an offline resnet18.

Modules cannot cross the trust boundary, so each probe builds a small course model (or the
"pretrained" digits backbone from tensors the grader sends), hands it to the submission, and
returns raw data: parameters and buffers before and after, ``requires_grad`` flags, gradients,
outputs and predictions. The tests decide from those values; flags the probes observe
(``model.training``, "a download was attempted") only choose the hint text.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, Iterator

import torch
import torch.hub
from torch import nn

from . import probe
from .common import observe_errors

# References taken when the worker imports the probes, before any student module (defence in
# depth only: the verdicts rest on values the grader checks).
_BASE = torch._C.TensorBase
_requires_grad = _BASE.requires_grad.__get__
_detach, _clone = _BASE.detach, _BASE.clone
_named_parameters, _named_buffers = nn.Module.named_parameters, nn.Module.named_buffers
_state_dict, _load_state_dict = nn.Module.state_dict, nn.Module.load_state_dict
_module_train = nn.Module.train
_autograd_grad = torch.autograd.grad
_hub_load_state_dict_from_url = torch.hub.load_state_dict_from_url
_hub_download_url_to_file = torch.hub.download_url_to_file

NO_DOWNLOADS = "GRADER-NO-DOWNLOADS: weights were requested; the grader is offline (use weights=None)"


class DownloadBlocked(RuntimeError):
    """Raised in place of every weight download while the student's builder runs."""


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: _clone(_detach(p)) for name, p in _named_parameters(model)}


def _flags(model: nn.Module) -> dict[str, bool]:
    return {name: bool(_requires_grad(p)) for name, p in _named_parameters(model)}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: _clone(_detach(t)) for name, t in _state_dict(model).items()}


def _grads(out: Any, model: nn.Module, grad_output: torch.Tensor | None = None) -> dict[str, Any]:
    """The gradient of ``<out, grad_output>`` for every parameter (None: frozen or not reached)."""
    params = dict(_named_parameters(model))
    grads: dict[str, Any] = dict.fromkeys(params)
    wanted = [n for n, p in params.items() if _requires_grad(p)]
    if isinstance(out, torch.Tensor) and _requires_grad(out) and wanted:
        got = _autograd_grad(out, [params[n] for n in wanted],
                             grad_output if grad_output is not None else torch.ones_like(out), allow_unused=True)
        grads.update(zip(wanted, got))
    return grads


# -- T7.1 freeze_all_but -----------------------------------------------------------------------------
class PrefixNet(nn.Module):
    """Names that tempt a too-broad prefix match: ``fc`` next to ``fc_extra``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6))
        self.fc = nn.Linear(6, 4)
        self.fc_extra = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_extra(torch.relu(self.fc(torch.relu(self.features(x)))))


@probe
def freeze_probe(impl: ModuleType, calls: list[list[str]], x: torch.Tensor, grad_output: torch.Tensor,
                 lr: float, seed: int) -> dict[str, Any]:
    """Call ``freeze_all_but(model, prefixes)`` once per entry of ``calls`` on one float64 PrefixNet
    (every parameter starts trainable), then back-propagate ``<model(x), grad_output>`` and take one
    SGD step over the parameters that require grad.

    Returns what each call returned, the flags after each call, the parameters before, the
    gradients and the parameters after the step.

    What it trusts: the returned names, flags, gradients and parameters are read from the model
    with references taken before student code ran; the grader recomputes the gradients and the
    step from the parameters itself, so a changed model or forward shows as a wrong value.
    ``model.training`` is reported only to pick a hint (eval() is not freezing).
    """
    torch.manual_seed(seed)
    model = PrefixNet().double()
    result: dict[str, Any] = {"error": None, "returned": [], "flags": [], "params_before": _params(model)}
    with observe_errors(result, impl=impl):
        for prefixes in calls:
            got = impl.freeze_all_but(model, list(prefixes))
            ok = isinstance(got, list) and all(isinstance(n, str) for n in got)
            result["returned"].append(list(got) if ok else f"<{type(got).__name__}>")
            result["flags"].append(_flags(model))
    if result["error"] is not None:
        return result
    result["training"] = bool(model.training)
    out = model(x)
    result["out"] = out
    result["grads"] = _grads(out, model, grad_output)
    params = dict(_named_parameters(model))
    trainable = [p for n, p in params.items() if _requires_grad(p)]
    for name, p in params.items():
        p.grad = result["grads"][name]
    if trainable:
        torch.optim.SGD(trainable, lr=lr).step()
    result["params_after"] = _params(model)
    return result


# -- T7.2 replace_classifier -------------------------------------------------------------------------
class BodyFc(nn.Module):
    """A resnet-like layout: a body, then ``fc``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, 12), nn.ReLU())
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class VggLike(nn.Module):
    """A VGG-like layout: the head is ``classifier.3`` inside a Sequential."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(in_dim, 9), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(9, 7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DropoutHead(nn.Module):
    """The head is a container: ``head = nn.Sequential(nn.Dropout, nn.Linear)``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, 11), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(11, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


ARCHS = {"body_fc": BodyFc, "vgg_like": VggLike, "dropout_head": DropoutHead}


def _resolve(model: nn.Module, path: str) -> Any:
    target: Any = model
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


@probe
def replace_probe(impl: ModuleType, arch: str, num_classes: int, attr: str | None, x: torch.Tensor, seed: int,
                  dtype: torch.dtype | None = None, device: str | None = None, freeze_first: bool = False,
                  grad_output: torch.Tensor | None = None) -> dict[str, Any]:
    """Build the course model ``arch`` (moved to ``dtype``/``device``, every parameter frozen first
    with ``freeze_first``), call ``replace_classifier`` (``attr`` None: the default), then run the
    returned model in eval mode on ``x``.

    Returns the state before and after, the flags, the output, the module now at ``attr``
    (type name, weight, bias, device, dtype) and, with ``grad_output``, the parameter gradients.

    What it trusts: the forward pass is the course model's own; the grader recomputes the output
    from the returned state, so a head that is not used, not registered or of the wrong size
    shows in the values. Whether the same object came back only picks a hint.
    """
    torch.manual_seed(seed)
    model = ARCHS[arch](int(x.shape[1]))
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    if freeze_first:
        model.requires_grad_(requires_grad=False)
    result: dict[str, Any] = {"error": None, "state_before": _state(model)}
    with observe_errors(result, impl=impl):
        returned = impl.replace_classifier(model, num_classes) if attr is None \
            else impl.replace_classifier(model, num_classes, attr)
    if result["error"] is not None:
        return result
    result["same_object"] = returned is model
    target = returned if isinstance(returned, nn.Module) else model
    head = _resolve(target, attr or "fc")
    result["head_type"] = type(head).__name__
    if isinstance(head, nn.Linear):
        result["head"] = {"weight": _clone(_detach(head.weight)),
                          "bias": None if head.bias is None else _clone(_detach(head.bias)),
                          "device": str(head.weight.device), "dtype": head.weight.dtype}
    result["state_after"] = _state(target)
    result["flags"] = _flags(target)
    _module_train(target, False)
    with observe_errors(result, "forward_error", impl):
        out = target(x)
        result["out"] = out
        if grad_output is not None:
            result["grads"] = _grads(out, target, grad_output)
    return result


# -- T7.3 discriminative_param_groups ----------------------------------------------------------------
class StagedNet(nn.Module):
    """Stages with nested names, for overlapping prefixes (``blocks`` and ``blocks.2``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 5)
        self.blocks = nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 5))
        self.norm = nn.LayerNorm(5)
        self.fc = nn.Linear(5, 3)


@probe
def groups_probe(impl: ModuleType, lr_map: dict[str, float], default_lr: float | None, frozen: list[str],
                 grads: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
    """Freeze the parameters under the prefixes ``frozen``, call ``discriminative_param_groups``,
    then give **every** parameter (frozen ones too, as stale gradients) the gradient ``grads[name]``
    and take one ``torch.optim.SGD(groups, lr=1000.0)`` step.

    Returns the groups (each parameter named by identity; foreign objects counted), whether
    ``torch.optim.Adam`` accepts them, and the parameters before and after the step.

    What it trusts: nothing the submission says about its groups decides a verdict; the grader
    checks each parameter's step against ``lr × grad`` it expects, so a missing, duplicated or
    frozen parameter and a wrong learning rate all show as a wrong value.
    """
    torch.manual_seed(seed)
    model = StagedNet()
    params = dict(_named_parameters(model))
    for name, p in params.items():
        if any(name == f or name.startswith(f + ".") for f in frozen):
            p.requires_grad_(False)
    result: dict[str, Any] = {"error": None, "params_before": _params(model), "flags": _flags(model)}
    with observe_errors(result, impl=impl):
        groups = impl.discriminative_param_groups(model, dict(lr_map), default_lr)
    if result["error"] is not None:
        return result
    names_by_id = {id(p): n for n, p in params.items()}
    described: list[dict[str, Any]] = []
    ok = isinstance(groups, (list, tuple)) and all(isinstance(g, dict) for g in groups)
    if not ok:
        result["groups"] = f"<{type(groups).__name__}>"
        return result
    for g in groups:
        members = g.get("params", [])
        members = [members] if isinstance(members, torch.Tensor) else list(members)
        lr = g.get("lr")
        described.append({"names": [names_by_id.get(id(p), "<foreign>") for p in members],
                          "lr": float(lr) if isinstance(lr, (int, float)) else None})
    result["groups"] = described
    with observe_errors(result, key="adam_error"):
        torch.optim.Adam(groups, lr=1e-3)
    for name, p in params.items():
        p.grad = grads[name].to(p.dtype).clone()
    with observe_errors(result, key="sgd_error"):
        torch.optim.SGD(groups, lr=1000.0).step()
    result["params_after"] = _params(model)
    return result


# -- T7.4 train_with_frozen_bn -----------------------------------------------------------------------
class SyncLikeBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm that is not one of BatchNorm1d/2d/3d (like SyncBatchNorm), for 4-D inputs."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class BnZoo(nn.Module):
    """Every kind of BatchNorm, a Dropout, a trainable and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.bn1 = nn.BatchNorm1d(6)
        self.frozen_lin = nn.Linear(6, 6)
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn2 = nn.BatchNorm2d(3)
        self.sync_bn = SyncLikeBatchNorm(3)
        self.conv3 = nn.Conv3d(2, 2, 1)
        self.bn3 = nn.BatchNorm3d(2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> dict[str, torch.Tensor]:
        h2 = self.bn2(self.conv(x2))
        return {"bn1": self.bn1(self.lin(x1)), "frozen_lin": self.frozen_lin(x1), "bn2": h2,
                "sync_bn": self.sync_bn(h2), "bn3": self.bn3(self.conv3(x3)),
                "drop": self.drop(torch.ones_like(x1))}


BN_LAYERS = ("bn1", "bn2", "sync_bn", "bn3")


@probe
def frozen_bn_probe(impl: ModuleType, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, seed: int,
                    epochs: int = 2, passes: int = 3) -> dict[str, Any]:
    """A float64 BnZoo (``frozen_lin`` frozen, BatchNorm statistics and affine parameters set to
    seeded non-trivial values, the whole model in eval mode), then per epoch: the helper, ``passes``
    training forward passes, ``model.eval()`` and one eval pass. The last training pass is
    back-propagated (sum of the BatchNorm and linear outputs).

    Returns the state before and after, the flags, the outputs of the last training pass (each
    BatchNorm's own output, computed by the course model) and the gradients.

    What it trusts: BatchNorm's mode is judged by its values (statistics unchanged, outputs equal to
    the running-statistics formula the grader computes), Dropout's by zeros in its output; the
    flags read with references taken before student code. Which object came back picks a hint.
    """
    torch.manual_seed(seed)
    model = BnZoo().double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in BN_LAYERS:
            bn = getattr(model, name)
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g, dtype=torch.float64))
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g, dtype=torch.float64) * 2 + 0.5)
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g, dtype=torch.float64) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g, dtype=torch.float64))
            bn.num_batches_tracked.fill_(7)
    model.frozen_lin.requires_grad_(False)
    _module_train(model, False)
    result: dict[str, Any] = {"error": None, "state_before": _state(model), "flags_before": _flags(model)}
    outs: dict[str, torch.Tensor] = {}
    with observe_errors(result, impl=impl):
        for _ in range(epochs):
            returned = impl.train_with_frozen_bn(model)
            result["same_object"] = returned is model
            for _ in range(passes):
                outs = model(x1, x2, x3)
            _module_train(model, False)
            with torch.no_grad():
                model(x1, x2, x3)
        impl.train_with_frozen_bn(model)
        outs = model(x1, x2, x3)
    if result["error"] is not None:
        return result
    result["bn_training"] = {name: bool(getattr(model, name).training) for name in BN_LAYERS}
    result["track_running_stats"] = {name: bool(getattr(model, name).track_running_stats) for name in BN_LAYERS}
    result["outs"] = {k: _clone(_detach(v)) for k, v in outs.items()}
    result["state_after"] = _state(model)
    result["flags"] = _flags(model)
    total = sum(v.sum() for k, v in outs.items() if k != "drop")
    result["grads"] = _grads(total, model)
    return result


# -- T7.5 finetune_few_shot --------------------------------------------------------------------------
class DigitsBackbone(nn.Module):
    """(B, 1, 8, 8) images in [0, 1] → (B, 128) features. Identical to scripts/make_backbone.py."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


FEAT_DIM = 128


@probe
def few_shot_probe(impl: ModuleType, backbone_state: dict[str, torch.Tensor] | None, x_train: torch.Tensor,
                   y_train: torch.Tensor, x_eval: torch.Tensor, num_classes: int, seed: int,
                   epochs: int | None = None, lr: float | None = None) -> dict[str, Any]:
    """Hand a DigitsBackbone (the grader's pretrained tensors, or seeded random weights when
    ``backbone_state`` is None) to ``finetune_few_shot`` the way pretraining leaves it: in train
    mode, every parameter trainable and holding a stale ``.grad``.

    The features of ``x_eval`` are computed first, by a separate course copy of the backbone in
    eval mode, before any submission code runs in this call. Returns those features, the
    backbone's state before and after, the returned model's state, and its eval-mode logits.

    What it trusts: nothing the submission computes decides a verdict alone. The grader checks the
    backbone's state bit for bit against what it sent, checks the logits against ``features @ W.T +
    b`` from the returned head, and scores predictions against labels that never enter the
    sandbox. Flags (``requires_grad``, ``training``) only pick hints.
    """
    torch.manual_seed(seed)
    backbone = DigitsBackbone()
    if backbone_state is not None:
        _load_state_dict(backbone, backbone_state)
    trusted = DigitsBackbone()
    _load_state_dict(trusted, _state(backbone))
    _module_train(trusted, False)
    with torch.no_grad():
        features = trusted(x_eval)
    g = torch.Generator().manual_seed(seed)
    for p in backbone.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 0.01  # as a pretraining run leaves them
    _module_train(backbone, True)
    result: dict[str, Any] = {"error": None, "features": features, "backbone_before": _state(backbone)}
    kwargs = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
    with observe_errors(result, impl=impl):
        model = impl.finetune_few_shot(backbone, FEAT_DIM, x_train, y_train, num_classes, **kwargs)
    if result["error"] is not None:
        return result
    result["backbone_after"] = _state(backbone)
    result["backbone_flags"] = _flags(backbone)
    result["backbone_training"] = bool(backbone.training)
    if not isinstance(model, nn.Module):
        result["model_type"] = type(model).__name__
        return result
    result["model_state"] = _state(model)
    _module_train(model, False)
    with observe_errors(result, "forward_error", impl), torch.no_grad():
        result["logits"] = model(x_eval)
    return result


# -- T7.6 build_resnet18_transfer --------------------------------------------------------------------
def _blocked(*args: Any, **kwargs: Any) -> Any:
    raise DownloadBlocked(NO_DOWNLOADS)


@contextlib.contextmanager
def _downloads_blocked() -> Iterator[None]:
    """Every weight-download entry point raises DownloadBlocked while the builder runs."""
    import torchvision.models._api as tv_api  # heavy: imported here, not in every worker at start

    targets = [(torch.hub, "load_state_dict_from_url", _hub_load_state_dict_from_url),
               (torch.hub, "download_url_to_file", _hub_download_url_to_file),
               (tv_api, "load_state_dict_from_url", tv_api.load_state_dict_from_url)]
    for owner, name, _ in targets:
        setattr(owner, name, _blocked)
    try:
        yield
    finally:
        for owner, name, original in targets:
            setattr(owner, name, original)


@probe
def resnet_probe(impl: ModuleType, num_classes: int, seed: int, in_channels: int | None = None,
                 freeze_backbone: bool | None = None, x: torch.Tensor | None = None,
                 x_train: torch.Tensor | None = None, y_train: torch.Tensor | None = None,
                 steps: int = 0, lr: float = 1e-2) -> dict[str, Any]:
    """Call ``build_resnet18_transfer`` with every weight download replaced by an error, then report
    its parameter names, shapes and flags; the eval-mode output on ``x`` and the gradient norm each
    parameter gets from ``output.sum()``; with ``steps``, train the parameters that require grad
    (Adam, full batch, eval mode) on ``x_train, y_train`` and return the logits on ``x`` after.

    What it trusts: a submission that asks for weights fails to build (blocked here, and the
    sandbox has no network besides); the grader decides from shapes, flags, gradient norms and
    predictions scored against labels it kept. ``download_attempted`` only picks the hint.
    """
    kwargs = {k: v for k, v in (("in_channels", in_channels), ("freeze_backbone", freeze_backbone)) if v is not None}
    result: dict[str, Any] = {"error": None, "download_attempted": False}
    torch.manual_seed(seed)
    with _downloads_blocked(), observe_errors(result, impl=impl):
        try:
            model = impl.build_resnet18_transfer(num_classes, **kwargs)
        except DownloadBlocked:
            result["download_attempted"] = True
            raise
    if result["error"] is not None:
        if NO_DOWNLOADS in result["error"]:
            result["download_attempted"] = True
        return result
    if not isinstance(model, nn.Module):
        result["model_type"] = type(model).__name__
        return result
    result["model_type"] = type(model).__name__
    result["shapes"] = {n: list(p.shape) for n, p in _named_parameters(model)}
    result["flags"] = _flags(model)
    if x is None:
        return result
    if steps:
        trainable = [p for _, p in _named_parameters(model) if _requires_grad(p)]
        _module_train(model, False)
        with observe_errors(result, "train_error", impl):
            optimizer = torch.optim.Adam(trainable, lr=lr)
            for _ in range(steps):
                loss = nn.functional.cross_entropy(model(x_train), y_train)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    _module_train(model, False)
    with observe_errors(result, "forward_error", impl):
        out = model(x)
        result["out"] = _clone(_detach(out))
        if not steps:
            grads = _grads(out, model)
            result["grad_norms"] = {n: None if g is None else float(g.abs().sum()) for n, g in grads.items()}
    return result
