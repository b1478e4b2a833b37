"""Reference solution for ex11_training_tricks (hidden from students)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def noam_lambda(step: int, d_model: int, warmup_steps: int) -> float:
    step = max(step, 1)  # LambdaLR calls the lambda with step 0 at construction: step 0 uses step 1
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def make_noam_scheduler(optimizer: torch.optim.Optimizer, d_model: int,
                        warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: noam_lambda(step, d_model, warmup_steps))


def train_epoch_accumulate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                           optimizer: torch.optim.Optimizer, accumulation_steps: int) -> float:
    model.train()
    optimizer.zero_grad()
    n_batches = len(loader)
    total, seen = 0.0, 0
    for i, (inputs, targets) in enumerate(loader):
        group_start = i - i % accumulation_steps
        group_size = min(accumulation_steps, n_batches - group_start)  # the last group may be shorter
        loss = criterion(model(inputs), targets)
        (loss / group_size).backward()
        total += loss.item() * targets.size(0)
        seen += targets.size(0)
        if i + 1 == group_start + group_size:
            optimizer.step()
            optimizer.zero_grad()
    return total / seen


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 3.0, alpha: float = 0.5) -> torch.Tensor:
    soft_targets = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft = F.kl_div(log_student, soft_targets, reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer, temperature: float = 3.0, alpha: float = 0.5) -> float:
    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(x)
    student.train()
    optimizer.zero_grad()
    loss = distillation_loss(student(x), teacher_logits, y, temperature, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    was_training = model.training
    model.eval()
    x_adv = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    grad, = torch.autograd.grad(loss, x_adv)  # only the input: the parameters' .grad stay as they were
    model.train(was_training)
    x_adv = x.detach() + epsilon * grad.sign()
    if clamp is not None:
        x_adv = x_adv.clamp(clamp[0], clamp[1])
    return x_adv.detach()


def adversarial_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                     epsilon: float, adv_weight: float = 0.5) -> float:
    x_adv = fgsm_attack(model, x, y, epsilon)
    model.train()
    optimizer.zero_grad()
    clean = F.cross_entropy(model(x), y)
    attacked = F.cross_entropy(model(x_adv), y)
    loss = (1.0 - adv_weight) * clean + adv_weight * attacked
    loss.backward()
    optimizer.step()
    return loss.item()


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    if not x.is_floating_point():
        x = x.float()
    if alpha > 0:
        gammas = torch._standard_gamma(torch.full((2,), float(alpha), dtype=torch.float64), generator=generator)
        lam = float(gammas[0] / gammas.sum())
    else:
        lam = 1.0
    perm = torch.randperm(x.size(0), generator=generator).to(x.device)
    mixed = lam * x + (1.0 - lam) * x[perm]
    return mixed, y, y[perm], lam


def mixup_loss(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor,
               y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * criterion(pred, y_a) + (1.0 - lam) * criterion(pred, y_b)


class Ensemble(nn.Module):
    COMBINES = ("prob", "logit", "vote")

    def __init__(self, models: Sequence[nn.Module], combine: str = "prob") -> None:
        super().__init__()
        if combine not in self.COMBINES:
            raise ValueError(f"combine must be one of {self.COMBINES}, got {combine!r}")
        if len(models) == 0:
            raise ValueError("an ensemble needs at least one model")
        self.models = nn.ModuleList(models)
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([m(x) for m in self.models])  # (M, B, C)
        if self.combine == "prob":
            return outputs.softmax(dim=-1).mean(dim=0)
        if self.combine == "logit":
            return outputs.mean(dim=0)
        votes = F.one_hot(outputs.argmax(dim=-1), outputs.size(-1))  # (M, B, C)
        return votes.sum(dim=0).to(outputs.dtype)
