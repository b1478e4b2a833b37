"""Reference solution for ex05_training (hidden from students)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.utils.data import DataLoader


def train_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                optimizer: torch.optim.Optimizer, device: str | torch.device = "cpu") -> tuple[float, float]:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        batch = targets.size(0)
        total_loss += loss.item() * batch
        correct += (outputs.argmax(dim=1) == targets).sum().item()
        seen += batch
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
             device: str | torch.device = "cpu") -> tuple[float, float]:
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        batch = targets.size(0)
        total_loss += criterion(outputs, targets).item() * batch
        correct += (outputs.argmax(dim=1) == targets).sum().item()
        seen += batch
    return total_loss / seen, correct / seen


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int,
        lr: float = 1e-2, device: str = "cpu") -> dict:
    model.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict = {"train_loss": [], "val_loss": [], "val_acc": [], "best_acc": -1.0, "best_state": None}
    for _ in range(epochs):
        train_loss, _ = train_epoch(model, train_loader, criterion, optimizer, device)
        val_loss, val_acc = evaluate(model, val_loader, criterion, device)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        if val_acc > history["best_acc"]:
            history["best_acc"] = val_acc
            history["best_state"] = copy.deepcopy(model.state_dict())
    if history["best_state"] is not None:
        model.load_state_dict(history["best_state"])
    return history


class EarlyStopping:
    def __init__(self, patience: int = 7, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss: float | None = None
        self.counter = 0
        self.early_stop = False
        self.best_state: dict | None = None

    def __call__(self, val_loss: float, model: nn.Module) -> bool:
        improved = not math.isnan(val_loss) and (self.best_loss is None
                                                 or val_loss < self.best_loss - self.min_delta)
        if improved:
            self.best_loss = val_loss
            self.counter = 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.counter += 1
            if self.counter >= self.patience:
                self.early_stop = True
        return self.early_stop


def make_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if step >= total_steps:
            return min_lr_ratio
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clipped_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                 max_norm: float) -> float:
    optimizer.zero_grad()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return float(norm)
