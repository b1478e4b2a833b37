"""Exercise 6 — my solutions (convolutional networks)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a conv/pool layer along one axis."""
    padded = size + 2 * padding
    reach = (kernel - 1) * dilation + 1  # how far the dilated kernel spans
    if reach > padded:
        raise ValueError("kernel does not fit into the input")
    return (padded - reach) // stride + 1


def flatten_dim(input_hw: tuple[int, int], layers: Sequence[dict], channels: int) -> int:
    """Feature count after the given conv/pool stack."""
    sizes = list(input_hw)
    for spec in layers:
        k = spec["kernel"]
        s = spec.get("stride")
        if s is None:
            s = k if spec["kind"] == "pool" else 1
        p = spec.get("padding", 0)
        d = spec.get("dilation", 1)
        sizes = [conv_output_size(v, k, s, p, d) for v in sizes]
    return channels * sizes[0] * sizes[1]


def conv2d_im2col(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int = 1, padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """Convolution = unfold + matmul."""
    batch = x.shape[0]
    o, c, kh, kw = weight.shape
    rows = conv_output_size(x.shape[2], kh, stride, padding, dilation)
    cols = conv_output_size(x.shape[3], kw, stride, padding, dilation)
    patches = F.unfold(x, kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)
    patches = patches.transpose(1, 2)                     # (B, L, C*kh*kw)
    result = patches.matmul(weight.view(o, -1).t())       # (B, L, O)
    if bias is not None:
        result = result + bias
    return result.transpose(1, 2).reshape(batch, o, rows, cols)


class LeNet(nn.Module):
    """Classic LeNet-5 for MNIST-like digits."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)   # 28 -> 24 -> 12 -> 8 -> 4
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2):
            x = F.max_pool2d(torch.relu(conv(x)), kernel_size=2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn + shortcut, relu."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class SmallResNet(nn.Module):
    """Tiny ResNet for small images."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        first = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(first), nn.ReLU())
        stages = [ResidualBlock(first, first)]
        for prev, width in zip(widths, widths[1:]):
            stages.append(ResidualBlock(prev, width, stride=2))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.layers(self.stem(x)))
        return self.fc(features.view(features.size(0), -1))
