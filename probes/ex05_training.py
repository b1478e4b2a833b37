"""Probes for ex05_training: hand the submission's training code a trusted model, loader, loss and
optimizer, let it run, and report what happened to them.

These tasks *are* the loop, so nothing the loop says about itself decides a verdict: the probes
return the parameters after every epoch (or step), the BatchNorm statistics, the outputs the
trusted model produced and the learning rates the optimizer holds, and the tests recompute from
the data they sent what those must be. Records of the modes and grad mode the model saw (``seen``)
only choose a hint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from . import probe
from .common import describe_error, plain

# Taken at import, before any student module: defence in depth only (see "What it trusts").
_grad_enabled = torch.is_grad_enabled
_cross_entropy = F.cross_entropy
_mse_loss = F.mse_loss
_Tensor = torch.Tensor
_as_subclass = torch.Tensor.as_subclass
_lambda_lr = torch.optim.lr_scheduler.LambdaLR
_listdir, _chdir, _getcwd = os.listdir, os.chdir, os.getcwd


# -- trusted building blocks ------------------------------------------------------------------------
class _HostTensor(torch.Tensor):
    """A batch tensor that has not been moved with ``.to(device)`` yet: the host side of a pretend device.

    ``.to(...)`` returns a plain tensor; every other operation keeps the subclass, so a model or loss
    that receives one knows its input skipped ``.to(device)``.
    """

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return _as_subclass(super().to(*args, **kwargs), _Tensor)


def _unmoved(t: Any) -> bool:
    return isinstance(t, _HostTensor)


class NotOnDevice(RuntimeError):
    """Raised by the trusted model or loss when a batch tensor reached it without ``.to(device)``."""


class _Gate(nn.Module):
    """A deterministic stand-in for dropout: multiplies by ``scale`` in train mode, identity in eval.

    It records, per call, the mode and grad mode it ran in (hints only) and refuses inputs that were
    not moved to the device.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.seen: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append([bool(self.training), bool(_grad_enabled())])
        if _unmoved(x):
            raise NotOnDevice("the model received inputs that were not moved with .to(device)")
        return x * self.scale if self.training else x


class _Criterion(nn.Module):
    """Cross-entropy (mean) that refuses targets not moved to the device."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if _unmoved(targets):
            raise NotOnDevice("the loss received targets that were not moved with .to(device)")
        return _cross_entropy(outputs, targets)


def _host_collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    xs = torch.stack([x for x, _ in items])
    ys = torch.stack([y for _, y in items])
    return _as_subclass(xs, _HostTensor), _as_subclass(ys, _HostTensor)


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, host_tensors: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False, num_workers=0,
                      collate_fn=_host_collate if host_tensors else None)


class _Net(nn.Sequential):
    """A Sequential that keeps its last output: the tensor it made, with the autograd facts of its forward pass."""

    last_output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        self.last_output = out
        return out


def _gated_linear(weight: torch.Tensor, bias: torch.Tensor, scale: float,
                  bn: dict[str, torch.Tensor] | None = None) -> nn.Sequential:
    """``Gate(scale) → [BatchNorm1d] → Linear`` in the dtype of ``weight``, with the given values."""
    k, d = weight.shape
    layers: list[nn.Module] = [_Gate(scale)]
    if bn is not None:
        layers.append(nn.BatchNorm1d(d))
    layers.append(nn.Linear(d, k))
    model = _Net(*layers).to(weight.dtype)
    with torch.no_grad():
        model[-1].weight.copy_(weight)
        model[-1].bias.copy_(bias)
        if bn is not None:
            for name, value in bn.items():
                getattr(model[1], name).copy_(value)
    return model


def _linear_params(model: nn.Sequential) -> list[torch.Tensor]:
    return [model[-1].weight.detach().clone(), model[-1].bias.detach().clone()]


def _bn_stats(model: nn.Sequential) -> dict[str, torch.Tensor] | None:
    if not isinstance(model[1], nn.BatchNorm1d):
        return None
    bn = model[1]
    return {"running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone(),
            "num_batches_tracked": bn.num_batches_tracked.clone()}


# -- T5.1 train_epoch ---------------------------------------------------------------------------------
@probe
def run_train_epoch(impl: ModuleType, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int, epochs: int, lr: float, momentum: float = 0.0, scale: float = 1.0,
                    start_eval: bool = True, host_tensors: bool = False) -> dict[str, Any]:
    """Train ``Gate(scale) → Linear`` (values ``weight``, ``bias``) with SGD for ``epochs`` calls of
    ``train_epoch`` on an unshuffled loader of ``(x, y)``.

    The model starts in eval mode when ``start_eval`` (as after an evaluation). With
    ``host_tensors`` the loader yields tensors that the model and loss refuse until ``.to(device)``
    was called on them. Returns what each call returned, the Linear's weight and bias after each
    call, the modes seen (hint) and an exception, if any, as text.

    What it trusts: the verdict rests on the parameters after each epoch, which the test recomputes
    from the data it sent; only honest SGD steps in the stated order produce them. The returned
    numbers are compared with values the test computes, never believed. ``seen`` (modes, grad mode)
    is what the model observed next to student code and only picks a hint.
    """
    model = _gated_linear(weight, bias, scale)
    if start_eval:
        model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loader = _loader(x, y, batch_size, host_tensors)
    result: dict[str, Any] = {"returned": [], "params": [], "error": None, "not_on_device": False}
    try:
        for _ in range(epochs):
            result["returned"].append(plain(impl.train_epoch(model, loader, _Criterion(), optimizer, "cpu")))
            result["params"].append(_linear_params(model))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result["error"] = describe_error(exc, impl)
        result["not_on_device"] = isinstance(exc, NotOnDevice)
    result["seen"] = model[0].seen
    return result


@probe
def train_and_predict(impl: ModuleType, x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                      hidden: int, epochs: int, lr: float, batch_size: int, seed: int,
                      momentum: float = 0.9, dropout: float = 0.2) -> dict[str, Any]:
    """Train a small MLP (with dropout) for ``epochs`` calls of ``train_epoch``; eval-mode logits on ``x_eval``.

    The training data is shuffled by a seeded generator, the prediction is made here with the
    model in eval mode under no_grad.

    What it trusts: the held-out labels never leave the grader; the logits come from the trained
    parameters, computed by this probe after the student's code returned.
    """
    torch.manual_seed(seed)
    d, k = x_train.shape[1], int(y_train.max()) + 1
    model = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, k))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        impl.train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, "cpu")
    model.eval()
    with torch.no_grad():
        logits = model(x_eval)
    return {"logits": logits}


# -- T5.2 evaluate --------------------------------------------------------------------------------------
@probe
def run_evaluate(impl: ModuleType, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, scale: float = 0.5, bn: dict[str, torch.Tensor] | None = None,
                 repeats: int = 2, host_tensors: bool = False) -> dict[str, Any]:
    """Call ``evaluate`` ``repeats`` times on ``Gate(scale) → [BatchNorm1d] → Linear``, left in train mode.

    Returns each call's result, the BatchNorm statistics before and after, the last output the
    model produced (its autograd facts travel with it), which parameters got a ``.grad``, and the
    modes seen (hint).

    What it trusts: the verdict rests on data the student's code cannot fake without doing the right
    thing: the gate and BatchNorm change the values unless the model is in eval mode (the test
    computes the eval-mode loss and accuracy itself), the statistics are read from the BatchNorm
    buffers after the call, and the last output is the logits tensor the trusted model made, so it
    requires grad exactly when the forward pass ran with grad enabled.
    """
    model = _gated_linear(weight, bias, scale, bn)
    model.train()
    result: dict[str, Any] = {"returned": [], "error": None, "not_on_device": False, "bn_before": _bn_stats(model)}
    loader = _loader(x, y, batch_size, host_tensors)
    try:
        for _ in range(repeats):
            result["returned"].append(plain(impl.evaluate(model, loader, _Criterion(), "cpu")))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result["error"] = describe_error(exc, impl)
        result["not_on_device"] = isinstance(exc, NotOnDevice)
    result.update({
        "bn_after": _bn_stats(model),
        "last_output": model.last_output,
        "grads_set": sorted(n for n, p in model.named_parameters() if p.grad is not None),
        "params": _linear_params(model),
        "seen": model[0].seen,
    })
    return result


# -- T5.3 fit -----------------------------------------------------------------------------------------------
class _SnapshotLoader(DataLoader):
    """A loader that records the watched model's parameters each time an iteration over it starts."""

    def watch(self, model: nn.Module) -> "_SnapshotLoader":
        self.watched = model
        self.snapshots: list[dict[str, torch.Tensor]] = []
        return self

    def __iter__(self):  # type: ignore[override]
        self.snapshots.append({n: p.detach().clone() for n, p in self.watched.named_parameters()})
        return super().__iter__()


def _state(value: Any) -> Any:
    """A returned state dict as data: tensors cloned now (so later changes to the model cannot reach them)."""
    if isinstance(value, dict):
        return {str(k): (v.detach().clone() if isinstance(v, _Tensor) else plain(v)) for k, v in value.items()}
    return plain(value)


@probe
def run_fit(impl: ModuleType, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
            y_val: torch.Tensor, epochs: int, lr: float, batch_size: int, weight: torch.Tensor | None = None,
            bias: torch.Tensor | None = None, hidden: int | None = None, seed: int = 0,
            x_test: torch.Tensor | None = None) -> dict[str, Any]:
    """``fit(model, train_loader, val_loader, epochs, lr)`` on a trusted model; what it did to the model.

    The model is ``Linear`` with the given ``weight``/``bias``, or (``hidden``) a seeded MLP. Loaders
    are unshuffled. Returns the parameters at the start of every pass over the validation loader
    (that is, after each epoch's training), the final parameters, the returned history, and
    ``best_state`` read twice: right after ``fit`` returned and again after this probe changed the
    model's parameters (a copy does not follow). With ``x_test``, eval-mode logits of the final model.

    What it trusts: snapshots and final parameters are read from the model by this probe; the test
    recomputes the validation accuracy of each snapshot itself and decides which epoch was best.
    The returned history is only compared with those recomputed values.
    """
    torch.manual_seed(seed)
    if hidden is None:
        model: nn.Module = nn.Linear(weight.shape[1], weight.shape[0]).to(weight.dtype)
        with torch.no_grad():
            model.weight.copy_(weight)
            model.bias.copy_(bias)
    else:
        d, k = x_train.shape[1], int(y_train.max()) + 1
        model = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k))
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=False, num_workers=0)
    val_loader = _SnapshotLoader(TensorDataset(x_val, y_val), batch_size=batch_size, shuffle=False,
                                 num_workers=0).watch(model)
    history = impl.fit(model, train_loader, val_loader, epochs, lr, "cpu")
    result: dict[str, Any] = {"type": type(history).__name__, "snapshots": val_loader.snapshots,
                              "final": {n: p.detach().clone() for n, p in model.named_parameters()},
                              "state_keys": list(model.state_dict().keys())}
    if isinstance(history, dict):
        result["history"] = {str(k): _state(v) if k == "best_state" else plain(v) for k, v in history.items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        result["best_state_later"] = _state(history.get("best_state"))
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(1.0)
    if x_test is not None:
        model.eval()
        with torch.no_grad():
            result["test_logits"] = model(x_test)
    return result


# -- T5.4 EarlyStopping ---------------------------------------------------------------------------------------
@probe
def run_early_stopping(impl: ModuleType, losses: list[float], patience: int | None = None,
                       min_delta: float | None = None) -> dict[str, Any]:
    """Feed ``losses`` to one ``EarlyStopping`` until it returns True; its state after every call.

    Before call ``i`` the probe sets the model's weight to ``i`` and its bias to ``-i``, so a saved
    state names the call it came from; after the run the model is changed again (a copy does not
    follow). Runs in a fresh empty folder and reports the files left in it.

    What it trusts: the task is pure logic, so what the object returns and holds is the answer
    itself; the test computes the expected sequence from the rule. The state dict is read after the
    model changed, so only a real copy shows the weights of the best call.
    """
    kwargs: dict[str, Any] = {}
    if patience is not None:
        kwargs["patience"] = patience
    if min_delta is not None:
        kwargs["min_delta"] = min_delta
    model = nn.Linear(2, 1).double()
    folder = tempfile.mkdtemp(prefix="ex05_")
    home = _getcwd()
    result: dict[str, Any] = {"calls": [], "error": None}
    try:
        _chdir(folder)
        stopper = impl.EarlyStopping(**kwargs)
        result["initial"] = [plain(getattr(stopper, a, "<missing>")) for a in
                             ("best_loss", "counter", "early_stop", "best_state")]
        for i, loss in enumerate(losses):
            with torch.no_grad():
                model.weight.fill_(float(i))
                model.bias.fill_(-float(i))
            stop = stopper(loss, model)
            result["calls"].append({"returned": plain(stop), "counter": plain(getattr(stopper, "counter", None)),
                                    "best_loss": plain(getattr(stopper, "best_loss", None)),
                                    "early_stop": plain(getattr(stopper, "early_stop", None))})
            if stop is True:
                break
        with torch.no_grad():
            model.weight.fill_(1e3)
            model.bias.fill_(1e3)
        result["best_state"] = _state(getattr(stopper, "best_state", None))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result["error"] = describe_error(exc, impl)
    finally:
        _chdir(home)
        result["files"] = sorted(_listdir(folder))
        shutil.rmtree(folder, ignore_errors=True)
    return result


# -- T5.5 make_warmup_cosine ---------------------------------------------------------------------------------
def _groups(base_lrs: list[float]) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(2))], "lr": lr} for lr in base_lrs], lr=1.0)


@probe
def run_warmup_cosine(impl: ModuleType, base_lrs: list[float], warmup_steps: int, total_steps: int, steps: int,
                      min_lr_ratio: float | None = None, resume_at: int | None = None) -> dict[str, Any]:
    """The learning rate of every parameter group before each of ``steps`` optimizer steps.

    One parameter group per entry of ``base_lrs``. With ``resume_at``, after that many steps a new
    optimizer and a new scheduler (from ``make_warmup_cosine``) load the old ones' ``state_dict()``
    and carry on.

    What it trusts: the learning rates are read from the optimizer's parameter groups, which is
    what an optimizer step would use; the test compares them with the formula.
    """
    args: list[Any] = [warmup_steps, total_steps] + ([] if min_lr_ratio is None else [min_lr_ratio])
    optimizer = _groups(base_lrs)
    scheduler = impl.make_warmup_cosine(optimizer, *args)
    result: dict[str, Any] = {"type": type(scheduler).__name__, "is_lambda_lr": isinstance(scheduler, _lambda_lr)}
    lrs: list[list[float]] = []
    for step in range(steps):
        if resume_at is not None and step == resume_at:
            fresh = _groups(base_lrs)
            again = impl.make_warmup_cosine(fresh, *args)
            fresh.load_state_dict(optimizer.state_dict())
            again.load_state_dict(scheduler.state_dict())
            optimizer, scheduler = fresh, again
        lrs.append([float(g["lr"]) for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    result["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    return result


# -- T5.6 clipped_step ------------------------------------------------------------------------------------------
@probe
def run_clipped_step(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     max_norm: float, lr: float, frozen: list[str] = (), stale: float | None = 0.5) -> dict[str, Any]:
    """One ``clipped_step`` on ``Linear → Tanh → Linear`` (values from ``state``) with plain SGD.

    ``frozen`` parameters get ``requires_grad=False``; with ``stale`` every trainable parameter's
    ``.grad`` holds that constant before the call (left over from an earlier step). The loss is the
    mean squared error of ``model(x)`` against ``y``, computed here. Returns what the call returned,
    the parameters and gradients after it.

    What it trusts: parameters and gradients are read from the model after the call; the test
    computes the gradient, its norm and the clipped step itself from ``state``, ``x`` and ``y``.
    """
    d, h = state["0.weight"].shape[1], state["0.weight"].shape[0]
    k = state["2.weight"].shape[0]
    model = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, k)).to(x.dtype)
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
        elif stale is not None:
            p.grad = torch.full_like(p, stale)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss = _mse_loss(model(x), y)
    returned = impl.clipped_step(model, loss, optimizer, max_norm)
    return {"returned": plain(returned),
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "grads": {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()}}
