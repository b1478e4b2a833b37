"""Reference solution for ex10_losses_norm (hidden from students)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The normalisation layers whose parameters are never decayed (subclasses included).
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


class FocalLoss(nn.Module):
    def __init__(self, alpha: float | torch.Tensor | None = None, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        pt = log_pt.exp()
        loss = -((1 - pt) ** self.gamma) * log_pt
        if isinstance(self.alpha, torch.Tensor):
            loss = loss * self.alpha.to(device=logits.device, dtype=logits.dtype)[target]
        elif self.alpha is not None:
            loss = loss * self.alpha
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class LabelSmoothingCE(nn.Module):
    def __init__(self, num_classes: int, smoothing: float = 0.1, ignore_index: int = -100) -> None:
        super().__init__()
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
        self.num_classes = num_classes
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.size(1) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes on dim 1, got {logits.size(1)}")
        log_p = logits.log_softmax(dim=1)
        keep = target != self.ignore_index
        safe = target.masked_fill(~keep, 0)
        nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
        uniform = -log_p.mean(dim=1)  # the eps/C mass spread over every class, the target included
        loss = (1.0 - self.smoothing) * nll + self.smoothing * uniform
        return (loss * keep).sum() / keep.sum().clamp(min=1)


class DropConnectLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        keep = torch.rand(self.weight.shape, generator=self.generator, device=self.weight.device,
                          dtype=self.weight.dtype) >= self.p
        return F.linear(x, self.weight * keep / (1 - self.p), self.bias)


def batch_norm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                       running_var: torch.Tensor, training: bool, momentum: float = 0.1,
                       eps: float = 1e-5) -> torch.Tensor:
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        n = x.numel() // x.size(1)
        if n <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got input of shape {tuple(x.shape)}")
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * (n / (n - 1)))
    else:
        mean, var = running_mean, running_var
    x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)
    return x_hat * weight.view(shape) + bias.view(shape)


def layer_norm(x: torch.Tensor, normalized_shape: tuple[int, ...] | int, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    k = len(normalized_shape)
    if tuple(x.shape[x.dim() - k:]) != tuple(normalized_shape):
        raise ValueError(f"the last dims of {tuple(x.shape)} are not {tuple(normalized_shape)}")
    dims = tuple(range(-k, 0))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def weight_decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, NORM_LAYERS) or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
