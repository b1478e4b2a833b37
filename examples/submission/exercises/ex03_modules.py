"""HW3 nn.Module — 李明 (student id 20241137)"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        dims = [in_dim, *hidden_dims, out_dim]
        layers = []
        n_linear = len(dims) - 1
        for i in range(n_linear):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            is_last = i == n_linear - 1
            if batch_norm and not is_last:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(nn.ReLU())
            if dropout > 0 and not is_last:
                layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    total = 0
    for p in model.parameters():   # parameters() 已经去重了（共享权重只出现一次）
        if trainable_only and not p.requires_grad:
            continue
        total += p.numel()
    return int(total)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        # affine=False 的时候 weight/bias 是 None
        if m.weight is not None:
            nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_sequential(sizes: Sequence[int], dropout: float = 0.5) -> nn.Sequential:
    layers = OrderedDict()
    n = len(sizes) - 1
    for i in range(1, n + 1):
        layers[f"fc{i}"] = nn.Linear(sizes[i - 1], sizes[i])
        if i < n:
            layers[f"relu{i}"] = nn.ReLU()
            if dropout > 0:
                layers[f"dropout{i}"] = nn.Dropout(dropout)
    return nn.Sequential(layers)


class MultiHeadNet(nn.Module):

    def __init__(self, in_dim: int, hidden: int, heads: dict[str, int]) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in heads.items()})

    def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:
        feat = self.trunk(x)
        return self.heads[head](feat)  # 名字不存在时 ModuleDict 自己会抛 KeyError
