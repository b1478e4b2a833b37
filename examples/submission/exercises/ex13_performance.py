"""练习 13：性能优化 / Exercise 13: performance.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex13`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex13`` (one task: ``grader check ex13 -k prune``).

评分程序在它自己的代码里创建模型、输入和优化器，交给你的函数，然后从外部检查效果：输出与梯度（float64
下与它自己算出的结果比较）、被替换成计数层的 Linear 被调用的顺序、剪枝后的权重与 ``state_dict`` 的键、
导出的程序保存成字节再加载后在新输入上的输出、训练一步后的参数。请严格按下面写明的约定实现。
本题使用 torch 2.14：``torch.jit.script``/``torch.jit.trace`` 已弃用（torch 建议改用 ``torch.export``），
``torch.cuda.amp`` 已由 ``torch.amp`` 取代。
The grader builds the models, inputs and optimizers in its own code, hands them to your functions and
checks the effect from outside: outputs and gradients (compared in float64 with its own computation),
the order in which Linear layers it swapped for counting ones were called, the weights and
``state_dict`` keys after pruning, the outputs of an exported program saved to bytes and loaded back,
the parameters after a training step. Follow the conventions below exactly. This exercise uses torch
2.14: ``torch.jit.script``/``torch.jit.trace`` are deprecated (torch recommends ``torch.export``), and
``torch.cuda.amp`` has been replaced by ``torch.amp``.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.checkpoint import checkpoint


class CheckpointedMLP(nn.Module):
    def __init__(self, dims: Sequence[int], use_checkpoint: bool = True, segments: int = 2) -> None:
        super().__init__()
        n = len(dims) - 1
        if n < 1 or segments < 1 or segments > n:
            raise ValueError(f"segments must be in [1, {n}]")
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.use_checkpoint = use_checkpoint
        # same rule as numpy.array_split: the first n % segments segments get one extra layer
        self.groups = []
        start = 0
        for s in range(segments):
            size = n // segments + (1 if s < n % segments else 0)
            self.groups.append(list(range(start, start + size)))
            start += size

    def _run_group(self, x: torch.Tensor, group: list) -> torch.Tensor:
        for i in group:
            x = self.layers[i](x)
            if i != len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_ckpt = self.use_checkpoint and self.training and torch.is_grad_enabled()
        for group in self.groups:
            if use_ckpt:
                x = checkpoint(self._run_group, x, group, use_reentrant=False)
            else:
                x = self._run_group(x, group)
        return x


def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    model_copy = copy.deepcopy(model)
    model_copy.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(model_copy, {nn.Linear}, dtype=torch.qint8)
    return q


def state_dict_nbytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def global_prune(model: nn.Module, amount: float,
                 module_types: tuple[type, ...] = (nn.Linear, nn.Conv2d)) -> float:
    params = [(m, "weight") for m in model.modules() if isinstance(m, module_types)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    n_zero, n_total = 0, 0
    for m, _ in params:
        n_zero += (m.weight == 0).sum().item()
        n_total += m.weight.numel()
    return float(n_zero) / n_total


def finalize_pruning(model: nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "weight_mask"):
            prune.remove(m, "weight")


def export_program(model: nn.Module, example: torch.Tensor,
                   dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    model.eval()
    if not dynamic_batch:
        return torch.export.export(model, (example,))
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:])
    batch = torch.export.Dim("batch")
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


class SignBranch(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.pos = nn.Linear(dim_in, dim_out)
        self.neg = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def pos_fn(t):
            return self.pos(t)

        def neg_fn(t):
            return -self.neg(t)

        return torch.cond(x.sum() > 0, pos_fn, neg_fn, (x,))


def autocast_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
                        optimizer: torch.optim.Optimizer, device_type: str = "cpu",
                        dtype: torch.dtype = torch.bfloat16,
                        scaler: "torch.amp.GradScaler | None" = None) -> float:
    model.train()
    optimizer.zero_grad()
    with torch.amp.autocast(device_type=device_type, dtype=dtype):
        out = model(x)
        loss = criterion(out, y)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
    return loss.item()


def gradient_report(model: nn.Module) -> dict[str, float | None]:
    report = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        report[name] = None if p.grad is None else p.grad.norm().item()
    return report


def dead_parameters(model: nn.Module, loss: torch.Tensor) -> list[str]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return names
