"""Probes for ex11_training_tricks: hand the submission trusted models, loaders, optimizers and
generators, let its code run, and report what happened to them.

Most of these tasks change things rather than compute a value (a scheduler's learning rates, an
update of the parameters, a model's mode, BatchNorm statistics, gradients left on parameters, the
global random state), so the probes return the parameters after the call, the learning rates the
optimizer holds, the gradients and statistics read from the modules, and the tensors the
submission returned. The tests recompute what those must be from the data they sent (float64
replays, PyTorch's own losses); a number the submission reports about itself is only compared.
Records of the modes and grad mode a module saw (``seen``) and step counts only choose hints.
"""

from __future__ import annotations

from collections import OrderedDict
from types import ModuleType
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..arena import arena
from . import probe
from .common import _Projections, describe_error, plain

# Taken at import, before any student module: defence in depth only (see each probe's "What it trusts").
_lambda_lr = torch.optim.lr_scheduler.LambdaLR
_grad_enabled = torch.is_grad_enabled
_autograd_grad = torch.autograd.grad
_get_rng_state = torch.get_rng_state
_manual_seed = torch.manual_seed
_randperm = torch.randperm
_cross_entropy = F.cross_entropy
_NO_GRAD = torch.no_grad
_Tensor = torch.Tensor


def _run(result: dict[str, Any], impl: ModuleType, fn: Any) -> Any:
    """Call ``fn``; an exception other than NotImplementedError becomes ``result["error"]``."""
    try:
        return fn()
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the error is the observation
        result["error"] = describe_error(exc, impl)
        result["error_type"] = type(exc).__name__
        return None


class _Gate(nn.Module):
    """A deterministic stand-in for dropout: multiplies by ``scale`` in train mode, identity in eval.

    It records the mode and grad mode of every call (hints only)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.seen: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append([bool(self.training), bool(_grad_enabled())])
        return x * self.scale if self.training else x


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _grads(model: nn.Module) -> dict[str, Any]:
    return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()}


def _bn_stats(bn: nn.BatchNorm1d) -> dict[str, torch.Tensor]:
    return {"running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone(),
            "num_batches_tracked": bn.num_batches_tracked.clone()}


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """``model`` in the dtype of ``state`` with its values (strict)."""
    dtype = next(iter(state.values())).dtype
    model = model.to(dtype)
    model.load_state_dict(state)
    return model


def _mlp(state: dict[str, torch.Tensor], gate: float | None = None, bn: bool = False) -> nn.Sequential:
    """``[Gate] → [BatchNorm1d] → Linear → Tanh → Linear`` named ``gate``, ``bn``, ``fc1``, ``act``, ``fc2``;
    with no ``fc1`` in ``state``, ``[Gate] → [BatchNorm1d] → Linear`` named ``fc``."""
    layers: dict[str, nn.Module] = {}
    if gate is not None:
        layers["gate"] = _Gate(gate)
    if bn:
        layers["bn"] = nn.BatchNorm1d(state["bn.weight"].shape[0])
    if "fc1.weight" in state:
        h, d = state["fc1.weight"].shape
        layers["fc1"] = nn.Linear(d, h)
        layers["act"] = nn.Tanh()
        layers["fc2"] = nn.Linear(h, state["fc2.weight"].shape[0])
    else:
        k, d = state["fc.weight"].shape
        layers["fc"] = nn.Linear(d, k)
    return _load(nn.Sequential(OrderedDict(layers)), state)


class _CountingSGD(torch.optim.SGD):
    """SGD that counts its steps (a hint only: the parameters decide)."""

    steps = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.steps += 1
        return super().step(closure)


# -- T11.1 Noam schedule ---------------------------------------------------------------------------------
def _groups(base_lrs: Sequence[float]) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(2))], "lr": lr} for lr in base_lrs], lr=1.0)


@probe
def run_noam_scheduler(impl: ModuleType, base_lrs: list[float], d_model: int, warmup_steps: int, steps: int,
                       resume_at: int | None = None) -> dict[str, Any]:
    """The learning rate of every parameter group before each of ``steps`` optimizer steps, with the
    scheduler from ``make_noam_scheduler``; with ``resume_at``, a new optimizer and scheduler load the
    old ones' ``state_dict()`` after that many steps and carry on.

    What it trusts: the learning rates are read from the optimizer's parameter groups, which is what
    a step would use; the test compares them with the formula it computes itself.
    """
    result: dict[str, Any] = {"error": None}
    optimizer = _groups(base_lrs)
    scheduler = _run(result, impl, lambda: impl.make_noam_scheduler(optimizer, d_model, warmup_steps))
    if result["error"] is not None:
        return result
    result["type"] = type(scheduler).__name__
    result["is_lambda_lr"] = isinstance(scheduler, _lambda_lr)
    lrs: list[list[float]] = []

    def go() -> None:
        nonlocal optimizer, scheduler
        for step in range(steps):
            if resume_at is not None and step == resume_at:
                fresh = _groups(base_lrs)
                again = impl.make_noam_scheduler(fresh, d_model, warmup_steps)
                fresh.load_state_dict(optimizer.state_dict())
                again.load_state_dict(scheduler.state_dict())
                optimizer, scheduler = fresh, again
            lrs.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
            scheduler.step()

    _run(result, impl, go)
    result["lrs"] = torch.tensor(lrs, dtype=torch.float64) if lrs else None
    return result


# -- T11.2 train_epoch_accumulate --------------------------------------------------------------------------
@probe
def run_accumulate(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   batch_size: int, accumulation_steps: int, lr: float, momentum: float = 0.0, epochs: int = 1,
                   scale: float = 1.0, start_eval: bool = False, stale: float | None = None) -> dict[str, Any]:
    """``epochs`` calls of ``train_epoch_accumulate`` on ``Gate(scale) → model(state)`` with SGD and an
    unshuffled loader of ``(x, y)`` (micro-batches of ``batch_size``).

    The model starts in eval mode when ``start_eval``; with ``stale`` every parameter's ``.grad``
    holds that constant before the first call. Returns what each call returned, the parameters after
    each call, the optimizer's step count and the modes seen (hints).

    What it trusts: the parameters, read from the model after each call; the test replays the
    updates in float64 from the data it sent. The returned numbers are compared with the replay.
    """
    model = _mlp(state, gate=scale)
    if start_eval:
        model.eval()
    if stale is not None:
        for p in model.parameters():
            p.grad = torch.full_like(p, stale)
    optimizer = _CountingSGD(model.parameters(), lr=lr, momentum=momentum)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False, num_workers=0)
    result: dict[str, Any] = {"returned": [], "params": [], "error": None}

    def go() -> None:
        for _ in range(epochs):
            result["returned"].append(plain(impl.train_epoch_accumulate(model, loader, nn.CrossEntropyLoss(),
                                                                         optimizer, accumulation_steps)))
            result["params"].append(_params(model))

    _run(result, impl, go)
    result["steps"] = optimizer.steps
    result["seen"] = model.gate.seen
    return result


# -- T11.3 distillation ------------------------------------------------------------------------------------
@probe
def run_distill_step(impl: ModuleType, student_state: dict[str, torch.Tensor], teacher_state: dict[str, torch.Tensor],
                     x: torch.Tensor, y: torch.Tensor, lr: float, temperature: float | None, alpha: float | None,
                     scale: float = 0.5, stale: float | None = 0.5) -> dict[str, Any]:
    """One ``distill_step`` with a student ``Gate(scale) → model`` left in eval mode (with ``stale`` in
    every ``.grad``) and a teacher ``BatchNorm1d → model`` left in train mode; plain SGD over the
    student's parameters. ``temperature`` or ``alpha`` None: left to the function's default.

    Returns what the call returned, the student's parameters after it, the teacher's parameters,
    gradients, BatchNorm statistics and mode after it, and the modes the student's gate saw (hint).

    What it trusts: parameters, gradients, statistics and the mode flag are read from the modules
    after the call; the test recomputes the student's update and compares the rest with the values
    it sent.
    """
    student = _mlp(student_state, gate=scale).eval()
    teacher = _mlp(teacher_state, bn=True).train()
    if stale is not None:
        for p in student.parameters():
            p.grad = torch.full_like(p, stale)
    optimizer = torch.optim.SGD(student.parameters(), lr=lr)
    result: dict[str, Any] = {"error": None}
    kwargs = {k: v for k, v in (("temperature", temperature), ("alpha", alpha)) if v is not None}
    returned = _run(result, impl, lambda: impl.distill_step(student, teacher, x, y, optimizer, **kwargs))
    result.update({"returned": plain(returned), "student": _params(student), "teacher": _params(teacher),
                   "teacher_grads": _grads(teacher), "teacher_bn": _bn_stats(teacher.bn),
                   "teacher_training": bool(teacher.training), "seen": student.gate.seen})
    return result


@probe
def distill_fit(impl: ModuleType, teacher_state: dict[str, torch.Tensor], x_train: torch.Tensor,
                y_given: torch.Tensor, x_eval: torch.Tensor, hidden: int, epochs: int, lr: float, batch_size: int,
                seed: int, temperature: float, alpha: float) -> dict[str, Any]:
    """Distil the teacher ``model(teacher_state)`` into a seeded ``Linear → ReLU → Linear`` student with
    ``distill_step`` (Adam over the student's parameters, seeded shuffles); eval-mode student logits on
    ``x_eval``.

    The labels given to ``distill_step`` are the grader's (with ``alpha = 1`` they carry no
    information); the evaluation labels never leave the grader.

    What it trusts: only that the submission's step updates the student it is given; the logits are
    computed here after training, and accuracy is measured in the grader.
    """
    torch.manual_seed(seed)
    teacher = _mlp(teacher_state)
    d, k = x_train.shape[1], teacher_state["fc.weight"].shape[0]
    student = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k))
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(x_train)
    for _ in range(epochs):
        order = _randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            impl.distill_step(student, teacher, x_train[idx], y_given[idx], optimizer, temperature, alpha)
    student.eval()
    with _NO_GRAD():
        logits = student(x_eval)
    return {"logits": logits}


# -- T11.4 FGSM ----------------------------------------------------------------------------------------------
@probe
def run_fgsm(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, epsilon: float,
             clamp: Any = "default", train_mode: bool = False, stale: float | None = None) -> dict[str, Any]:
    """``fgsm_attack`` on ``[BatchNorm1d] → model(state)`` (BatchNorm when ``state`` has one), in train or
    eval mode, with every parameter's ``.grad`` set to ``stale`` (or None) before the call.

    Returns the adversarial batch, the caller's ``x`` after the call (values and ``requires_grad``),
    the parameters' gradients, the BatchNorm statistics before and after, and the mode after.

    What it trusts: the batch is compared with the attack the test computes itself; the rest is read
    from the tensors and modules after the call.
    """
    model = _mlp(state, bn="bn.weight" in state).train(train_mode)
    for p in model.parameters():
        p.grad = None if stale is None else torch.full_like(p, stale)
    x = x.clone()
    bn_before = _bn_stats(model.bn) if "bn.weight" in state else None
    result: dict[str, Any] = {"error": None}
    args = (model, x, y, epsilon) if clamp == "default" else (model, x, y, epsilon, clamp)
    result["x_adv"] = _run(result, impl, lambda: impl.fgsm_attack(*args))
    result.update({"x_after": x.detach().clone(), "x_requires_grad": bool(x.requires_grad), "grads": _grads(model),
                   "bn_before": bn_before, "bn_after": _bn_stats(model.bn) if bn_before is not None else None,
                   "training_after": bool(model.training)})
    return result


@probe
def fgsm_meta(impl: ModuleType, d: int, k: int, batch: int) -> Any:
    """``fgsm_attack`` with a model and inputs on the meta device; the result (shape and device travel)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k)).to("meta")
    x = torch.empty(batch, d, device="meta")
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    return impl.fgsm_attack(model, x, y, 0.1)


@probe
def run_adversarial_step(impl: ModuleType, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                         lr: float, epsilon: float, adv_weight: float | None = None, scale: float = 0.5,
                         stale: float | None = 0.5) -> dict[str, Any]:
    """One ``adversarial_step`` on ``Gate(scale) → model(state)`` left in eval mode, plain SGD, stale
    gradients of ``stale`` on every parameter. Returns what it returned, the parameters after it and
    the modes the gate saw (hint).

    What it trusts: the parameters, read after the call; the test recomputes the attack and the update.
    """
    model = _mlp(state, gate=scale).eval()
    if stale is not None:
        for p in model.parameters():
            p.grad = torch.full_like(p, stale)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    kwargs = {} if adv_weight is None else {"adv_weight": adv_weight}
    result: dict[str, Any] = {"error": None}
    returned = _run(result, impl, lambda: impl.adversarial_step(model, x, y, optimizer, epsilon, **kwargs))
    result.update({"returned": plain(returned), "params": _params(model), "seen": model.gate.seen})
    return result


@probe
def repeat_fgsm(impl: ModuleType, layout: list[list[Any]], project_seed: int, d: int, hidden: int, k: int,
                model_seed: int) -> dict[str, Any]:
    """``fgsm_attack`` (no clamp) on a seeded ``Linear → Tanh → Linear`` once per repetition, on inputs
    the zygote made beforehand; labels are each row's argmax over its first ``k`` columns.

    Used by the speed test, which times the whole request from the grader, as ``repeat_generated``
    (``probes/common.py``): inputs made while no student code ran, one set per repetition, each
    result projected onto a random vector the grader compares with the reference's.
    """
    torch.manual_seed(model_seed)
    model = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, k)).eval()
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    for entry in layout:
        x = inputs_of(entry)[0]
        refused = projected.add(impl.fgsm_attack(model, x, x[:, :k].argmax(dim=1), 0.05, None))
        if refused is not None:
            return refused
    return projected.result()


# -- T11.5 Mixup ---------------------------------------------------------------------------------------------
def _mixup_out(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return [plain(v) for v in out]
    return plain(out)


@probe
def run_mixup(impl: ModuleType, x: torch.Tensor, y: torch.Tensor, alpha: float | None, seed: int,
              global_seeds: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """``mixup_batch`` once per entry of ``global_seeds``, each time with a fresh generator seeded
    ``seed`` after ``torch.manual_seed(global_seed)``; whether the global random state was the same
    after each call as before it.

    What it trusts: the outputs are compared with each other and checked against ``x`` and ``y`` by
    the test (same seed, same output whatever the global seed). The state comparison is an observation
    made next to student code and only adds a message.
    """
    result: dict[str, Any] = {"error": None, "outs": [], "global_untouched": []}
    for global_seed in global_seeds:
        _manual_seed(global_seed)
        before = _get_rng_state()
        g = torch.Generator().manual_seed(seed)
        kwargs = {"generator": g} if alpha is None else {"alpha": alpha, "generator": g}
        out = _run(result, impl, lambda: impl.mixup_batch(x.clone(), y.clone(), **kwargs))
        if result["error"] is not None:
            break
        result["outs"].append(_mixup_out(out))
        result["global_untouched"].append(bool(torch.equal(before, _get_rng_state())))
    return result


@probe
def mixup_lambdas(impl: ModuleType, alpha: float | None, seed: int, draws: int) -> dict[str, Any]:
    """``lam`` of ``draws`` calls of ``mixup_batch`` on a batch of two, all with one generator seeded
    ``seed`` (``alpha`` None: the default). What it trusts: the values are the observation; the test
    checks their distribution."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    result: dict[str, Any] = {"error": None, "lams": []}

    def go() -> None:
        for _ in range(draws):
            out = impl.mixup_batch(x, y, generator=g) if alpha is None else impl.mixup_batch(x, y, alpha, generator=g)
            result["lams"].append(plain(out[3]) if isinstance(out, (tuple, list)) and len(out) == 4 else plain(out))

    _run(result, impl, go)
    return result


@probe
def run_mixup_loss(impl: ModuleType, pred: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                   lam: float) -> dict[str, Any]:
    """``mixup_loss(nn.CrossEntropyLoss(), pred, y_a, y_b, lam)`` with ``pred`` requiring grad; the loss
    and the gradient it sends to ``pred``. What it trusts: nothing; the test computes both itself."""
    pred = pred.detach().clone().requires_grad_(True)
    result: dict[str, Any] = {"error": None, "grad": None}
    loss = _run(result, impl, lambda: impl.mixup_loss(nn.CrossEntropyLoss(), pred, y_a, y_b, lam))
    result["loss"] = plain(loss)
    if isinstance(loss, _Tensor) and loss.requires_grad and loss.numel() == 1:
        result["grad"] = _autograd_grad(loss.sum(), [pred], allow_unused=True)[0]
    return result


# -- T11.6 Ensemble ------------------------------------------------------------------------------------------
@probe
def run_ensemble(impl: ModuleType, states: list[dict[str, torch.Tensor]], x: torch.Tensor, combine: str | None = None,
                 scale: float | None = None, call_eval: bool = True, to_double: bool = False,
                 grad_output: torch.Tensor | None = None, device: str | None = None) -> dict[str, Any]:
    """Build ``Ensemble`` of ``[Gate(scale)] → model(state)`` members (created in train mode), call
    ``ensemble.eval()`` when ``call_eval``, cast with ``.double()`` when ``to_double``, move it to
    ``device``, and run it on ``x``. With ``grad_output``, back-propagate it to every parameter of every
    member (read from the members this probe built, not from the ensemble).

    What it trusts: the output is compared with what the test computes from the states; the member
    modes, dtypes and gradients are read from the member modules this probe holds.
    """
    members = [_mlp(state, gate=scale) for state in states]
    result: dict[str, Any] = {"error": None}
    kwargs = {} if combine is None else {"combine": combine}
    ensemble = _run(result, impl, lambda: impl.Ensemble(members, **kwargs))
    if result["error"] is not None:
        return result
    result["param_names"] = [n for n, _ in ensemble.named_parameters()]
    if call_eval:
        ensemble.eval()
    if to_double:
        ensemble.double()
    if device is not None:
        ensemble.to(device)
    result["member_training"] = [bool(m.training) for m in members]
    result["member_dtypes"] = [str(next(m.parameters()).dtype) for m in members]
    out = _run(result, impl, lambda: ensemble(x))
    result["out"] = plain(out)
    if grad_output is not None and isinstance(out, _Tensor) and out.requires_grad:
        params = [p for m in members for p in m.parameters()]
        grads = _autograd_grad(out, params, grad_output, allow_unused=True)
        names = [f"{i}.{n}" for i, m in enumerate(members) for n, _ in m.named_parameters()]
        result["grads"] = dict(zip(names, grads))
    elif grad_output is not None:
        result["grads"] = None
    return result


@probe
def ensemble_meta(impl: ModuleType, d: int, k: int, members: int, batch: int, combine: str) -> Any:
    """``Ensemble`` of seeded ``Linear`` members moved to the meta device, run on a meta batch."""
    torch.manual_seed(0)
    ensemble = impl.Ensemble([nn.Linear(d, k) for _ in range(members)], combine=combine).to("meta")
    return ensemble(torch.empty(batch, d, device="meta"))


@probe
def ensemble_rejects(impl: ModuleType, combine: str, members: int = 2) -> str | None:
    """The exception type ``Ensemble(models, combine)`` raises, or None. What it trusts: the type name
    is the behaviour under test (see ``common.raises``)."""
    try:
        impl.Ensemble([nn.Linear(2, 2) for _ in range(members)], combine=combine)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the type is the observation
        return type(exc).__name__
    return None
