"""Reference solution for ex02_autograd (hidden from students)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def minimize_scalar(f: Callable[[torch.Tensor], torch.Tensor], x0: float, lr: float = 0.1,
                    steps: int = 100) -> float:
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        value = f(x)
        value.backward()
        with torch.no_grad():
            x -= lr * x.grad
        x.grad.zero_()
    return x.item()


def fit_line(x: torch.Tensor, y: torch.Tensor, lr: float = 0.05, steps: int = 500) -> tuple[float, float]:
    x = x.reshape(-1)
    y = y.reshape(-1)
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        loss = ((w * x + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        w.grad = None
        b.grad = None
    return w.item(), b.item()


class SwishFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        s = torch.sigmoid(beta * x)
        ctx.save_for_backward(x, s)
        ctx.beta = beta
        return x * s

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, s = ctx.saved_tensors
        local = s + ctx.beta * x * s * (1 - s)
        return grad_output * local, None


def swish(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return SwishFn.apply(x, beta)


def nth_derivative(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    if n < 0:
        raise ValueError("n must be >= 0")
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    for _ in range(n):
        grad = None
        if y.requires_grad:
            (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True)
        if grad is None:  # the derivative no longer depends on x
            return torch.zeros_like(x).detach()
        y = grad
    return y.detach()


def input_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        xi = x.detach().clone().requires_grad_(True)
        logits = model(xi)
        picked = logits.gather(1, target.reshape(-1, 1).long()).sum()
        (grad,) = torch.autograd.grad(picked, xi)
    finally:
        model.train(was_training)
    return grad.abs()
