"""HW2 自动微分 — 李明 (student id 20241137)"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def minimize_scalar(f: Callable[[torch.Tensor], torch.Tensor], x0: float, lr: float = 0.1,
                    steps: int = 100) -> float:
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        loss = f(x)
        loss.backward()
        with torch.no_grad():
            x -= lr * x.grad
        x.grad.zero_()
    return x.item()


def fit_line(x: torch.Tensor, y: torch.Tensor, lr: float = 0.05, steps: int = 500) -> tuple[float, float]:
    # 先展平，不然 (N,1) - (N,) 会广播成 (N,N)
    x = x.reshape(-1)
    y = y.reshape(-1)
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for step in range(steps):
        pred = w * x + b
        loss = ((pred - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        # if step % 100 == 0: print(step, loss.item())
    return w.item(), b.item()


class SwishFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return x * torch.sigmoid(beta * x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        beta = ctx.beta
        sig = torch.sigmoid(beta * x)
        # d/dx [x * sig(bx)] = sig + x * b * sig * (1 - sig)
        dx = sig + beta * x * sig * (1 - sig)
        return grad_output * dx, None


def swish(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return SwishFn.apply(x, beta)


def nth_derivative(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    xx = x.detach().clone().requires_grad_()
    y = f(xx)
    for _ in range(n):
        if not y.requires_grad:
            # 导数已经是常数了，再求就是 0
            return torch.zeros_like(x)
        (g,) = torch.autograd.grad(y.sum(), xx, create_graph=True, allow_unused=True)
        if g is None:
            return torch.zeros_like(x)
        y = g
    return y.detach()


def input_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    model.eval()  # 关掉 dropout
    inp = x.detach().clone().requires_grad_()
    logits = model(inp)                                   # (B, C)
    picked = logits.gather(1, target.view(-1, 1)).sum()   # 每个样本自己类别的 logit
    (grad,) = torch.autograd.grad(picked, inp)
    return grad.abs().detach()
