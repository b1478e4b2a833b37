"""练习 11：训练技巧 —— 我的解答 / Exercise 11: training tricks, my solution."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def noam_lambda(step: int, d_model: int, warmup_steps: int) -> float:
    """Noam factor; step 0 counts as step 1 so LambdaLR can be built."""
    s = step if step > 0 else 1
    warm = s / math.pow(warmup_steps, 1.5)
    decay = 1.0 / math.sqrt(s)
    return min(warm, decay) / math.sqrt(d_model)


def make_noam_scheduler(optimizer: torch.optim.Optimizer, d_model: int,
                        warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR following noam_lambda."""

    def factor(step: int) -> float:
        return noam_lambda(step, d_model, warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def train_epoch_accumulate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                           optimizer: torch.optim.Optimizer, accumulation_steps: int) -> float:
    """Accumulate the gradients of several micro-batches before each update."""
    model.train()
    optimizer.zero_grad()
    loss_total = 0.0
    n_samples = 0
    for idx, (xb, yb) in enumerate(loader):
        out = model(xb)
        loss = criterion(out, yb)
        scaled = loss / accumulation_steps
        scaled.backward()
        loss_total += loss.item() * len(yb)
        n_samples += len(yb)
        if (idx + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    return loss_total / n_samples


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 3.0, alpha: float = 0.5) -> torch.Tensor:
    """alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE."""
    t = temperature
    teacher_probs = torch.softmax(teacher_logits.detach() / t, dim=-1)
    student_log_probs = torch.log_softmax(student_logits / t, dim=-1)
    kd = F.kl_div(student_log_probs, teacher_probs, reduction="batchmean") * (t * t)
    ce = F.cross_entropy(student_logits, labels)
    return alpha * kd + (1 - alpha) * ce


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer, temperature: float = 3.0, alpha: float = 0.5) -> float:
    """One step that trains the student against the frozen teacher."""
    teacher.eval()
    with torch.no_grad():
        soft = teacher(x)
    student.train()
    optimizer.zero_grad()
    loss = distillation_loss(student(x), soft, y, temperature=temperature, alpha=alpha)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                clamp: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """x + eps * sign(grad of the loss w.r.t. x), attacked in eval mode."""
    mode = model.training
    model.eval()
    inp = x.clone().detach().requires_grad_(True)
    loss = F.cross_entropy(model(inp), y)
    (g,) = torch.autograd.grad(loss, [inp])
    model.train(mode)
    adv = x.detach() + epsilon * torch.sign(g)
    if clamp is not None:
        low, high = clamp
        adv = torch.clamp(adv, low, high)
    return adv.detach()


def adversarial_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                     epsilon: float, adv_weight: float = 0.5) -> float:
    """Train on the clean batch and its FGSM copy."""
    x_adv = fgsm_attack(model, x, y, epsilon)
    model.train()
    optimizer.zero_grad()
    loss_clean = F.cross_entropy(model(x), y)
    loss_adv = F.cross_entropy(model(x_adv), y)
    loss = (1 - adv_weight) * loss_clean + adv_weight * loss_adv
    loss.backward()
    optimizer.step()
    return loss.item()


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup with every random draw taken from ``generator``."""
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    lam = 1.0
    if alpha > 0:
        conc = torch.tensor([alpha, alpha], dtype=torch.float64)
        g = torch._standard_gamma(conc, generator=generator)
        lam = (g[0] / (g[0] + g[1])).item()
    index = torch.randperm(x.shape[0], generator=generator).to(x.device)
    mixed_x = lam * x + (1 - lam) * x[index]
    return mixed_x, y, y[index], lam


def mixup_loss(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor,
               y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """lam-weighted sum of the losses against both label sets."""
    return lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)


class Ensemble(nn.Module):
    """Average probabilities, average logits, or count votes."""

    def __init__(self, models: Sequence[nn.Module], combine: str = "prob") -> None:
        super().__init__()
        if combine not in ("prob", "logit", "vote"):
            raise ValueError(f"unknown combine mode: {combine}")
        if len(models) < 1:
            raise ValueError("need at least one model")
        self.models = nn.ModuleList(list(models))
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [m(x) for m in self.models]
        if self.combine == "logit":
            return sum(logits) / len(logits)
        if self.combine == "prob":
            return sum(F.softmax(z, dim=-1) for z in logits) / len(logits)
        n_classes = logits[0].shape[-1]
        votes = torch.zeros_like(logits[0])
        for z in logits:
            votes = votes + F.one_hot(z.argmax(dim=-1), n_classes).to(votes.dtype)
        return votes
