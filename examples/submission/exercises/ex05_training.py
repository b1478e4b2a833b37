"""HW5 训练循环 — 李明 (student id 20241137)"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.data import DataLoader


def _to(batch, device):
    x, y = batch
    return x.to(device), y.to(device)


def train_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                optimizer: torch.optim.Optimizer, device: str | torch.device = "cpu") -> tuple[float, float]:
    model.train()
    running_loss = 0.0
    n_correct = 0
    n_total = 0
    for batch in loader:
        x, y = _to(batch, device)
        optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()          # 每个 batch 的平均损失
        pred = logits.argmax(dim=1)
        n_correct += int((pred == y).sum())
        n_total += y.numel()
    return running_loss / len(loader), n_correct / n_total


def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module,
             device: str | torch.device = "cpu") -> tuple[float, float]:
    model.eval()
    loss_sum, hit, count = 0.0, 0, 0
    with torch.no_grad():
        for batch in loader:
            x, y = _to(batch, device)
            logits = model(x)
            b = y.shape[0]
            loss_sum += float(criterion(logits, y)) * b
            hit += (logits.argmax(1) == y).sum().item()
            count += b
    return loss_sum / count, hit / count


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int,
        lr: float = 1e-2, device: str = "cpu") -> dict:
    model = model.to(device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train_losses, val_losses, val_accs = [], [], []
    best_acc, best_state = None, None
    for epoch in range(epochs):
        tl, _ = train_epoch(model, train_loader, loss_fn, opt, device)
        vl, va = evaluate(model, val_loader, loss_fn, device)
        train_losses.append(tl)
        val_losses.append(vl)
        val_accs.append(va)
        if best_acc is None or va > best_acc:
            best_acc = va
            best_state = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    model.load_state_dict(best_state)
    return {"train_loss": train_losses, "val_loss": val_losses, "val_acc": val_accs,
            "best_acc": best_acc, "best_state": best_state}


class EarlyStopping:

    def __init__(self, patience: int = 7, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = None
        self.counter = 0
        self.early_stop = False
        self.best_state = None

    def __call__(self, val_loss: float, model: nn.Module) -> bool:
        if math.isnan(val_loss):
            better = False
        elif self.best_loss is None:
            better = True
        else:
            better = val_loss < self.best_loss - self.min_delta
        if better:
            self.best_loss = val_loss
            self.counter = 0
            self.best_state = {name: t.clone() for name, t in model.state_dict().items()}
            return self.early_stop
        self.counter += 1
        if self.counter >= self.patience:
            self.early_stop = True
        return self.early_stop


def make_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    decay_steps = total_steps - warmup_steps

    def lr_lambda(s: int) -> float:
        if s < warmup_steps:
            return float(s + 1) / float(warmup_steps)
        t = min(s - warmup_steps, decay_steps)
        cos = 0.5 * (1 + math.cos(math.pi * t / decay_steps)) if decay_steps > 0 else 0.0
        return min_lr_ratio + (1 - min_lr_ratio) * cos

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_lambda)


def clipped_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                 max_norm: float) -> float:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    # 裁剪梯度，防止梯度爆炸
    total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    return total_norm.item()
