"""Reference solution for ex07_transfer (hidden from students)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_all_but(model: nn.Module, trainable_prefixes: Sequence[str]) -> list[str]:
    trainable = []
    for name, param in model.named_parameters():
        keep = any(_matches(name, prefix) for prefix in trainable_prefixes)
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return sorted(trainable)


def replace_classifier(model: nn.Module, num_classes: int, attr: str = "fc") -> nn.Module:
    *path, last = attr.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part)
    old = getattr(parent, last)
    old_linear = next(m for m in old.modules() if isinstance(m, nn.Linear))
    new = nn.Linear(old_linear.in_features, num_classes,
                    device=old_linear.weight.device, dtype=old_linear.weight.dtype)
    setattr(parent, last, new)
    return model


def discriminative_param_groups(model: nn.Module, lr_map: dict[str, float],
                                default_lr: float | None = None) -> list[dict]:
    groups: dict[str | None, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        covering = [p for p in lr_map if _matches(name, p)]
        prefix = max(covering, key=len) if covering else None
        if prefix is None and default_lr is None:
            raise ValueError(f"parameter {name!r} matches no prefix in lr_map and default_lr is None")
        groups.setdefault(prefix, []).append(param)
    return [{"params": params, "lr": float(lr_map[prefix] if prefix is not None else default_lr)}
            for prefix, params in groups.items()]


def train_with_frozen_bn(model: nn.Module) -> nn.Module:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
    return model


def finetune_few_shot(backbone: nn.Module, feat_dim: int, x: torch.Tensor, y: torch.Tensor,
                      num_classes: int, epochs: int = 200, lr: float = 1e-2) -> nn.Module:
    backbone.requires_grad_(False)
    head = nn.Linear(feat_dim, num_classes)
    model = nn.Sequential(backbone, head)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    backbone.eval()
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def build_resnet18_transfer(num_classes: int, in_channels: int = 3, freeze_backbone: bool = True) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    if freeze_backbone:
        model.requires_grad_(False)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    in_features = model.fc.in_features
    model.fc = nn.Linear(in_features, num_classes)
    return model
