"""Reference solution for ex13_performance (hidden from students)."""

from __future__ import annotations

import copy
import io
import warnings
from typing import Sequence

import torch
import torch.nn.utils.prune as prune
from torch import nn
from torch.utils.checkpoint import checkpoint


# -- T13.1 gradient checkpointing ---------------------------------------------------------------------
class CheckpointedMLP(nn.Module):
    def __init__(self, dims: Sequence[int], use_checkpoint: bool = True, segments: int = 2) -> None:
        super().__init__()
        n_layers = len(dims) - 1
        if n_layers < 1 or not 1 <= segments <= n_layers:
            raise ValueError("need len(dims) >= 2 and 1 <= segments <= len(dims) - 1")
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(n_layers))
        self.use_checkpoint = use_checkpoint
        self.segments = segments
        base, extra = divmod(n_layers, segments)
        sizes = [base + (1 if s < extra else 0) for s in range(segments)]
        self.bounds = [(sum(sizes[:s]), sum(sizes[:s + 1])) for s in range(segments)]

    def _segment(self, start: int, stop: int, x: torch.Tensor) -> torch.Tensor:
        for i in range(start, stop):
            x = self.layers[i](x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recompute = self.use_checkpoint and self.training and torch.is_grad_enabled()
        for start, stop in self.bounds:
            if recompute:
                x = checkpoint(self._segment, start, stop, x, use_reentrant=False)
            else:
                x = self._segment(start, stop, x)
        return x


# -- T13.2 dynamic quantization -----------------------------------------------------------------------
def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    copied = copy.deepcopy(model)
    copied.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization and quantized tensors warn that they are deprecated
        return torch.ao.quantization.quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8)


def state_dict_nbytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


# -- T13.3 pruning ---------------------------------------------------------------------------------------
def global_prune(model: nn.Module, amount: float,
                 module_types: tuple[type, ...] = (nn.Linear, nn.Conv2d)) -> float:
    targets = [(m, "weight") for m in model.modules() if isinstance(m, module_types)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    return zeros / total


def finalize_pruning(model: nn.Module) -> None:
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")


# -- T13.4 torch.export ----------------------------------------------------------------------------------
def export_program(model: nn.Module, example: torch.Tensor,
                   dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    model.eval()
    if dynamic_batch and example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()  # sizes 0 and 1 are specialised
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)


class SignBranch(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.pos = nn.Linear(dim_in, dim_out)
        self.neg = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: self.pos(t), lambda t: -self.neg(t), (x,))


# -- T13.5 mixed precision --------------------------------------------------------------------------------
def autocast_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
                        optimizer: torch.optim.Optimizer, device_type: str = "cpu",
                        dtype: torch.dtype = torch.bfloat16,
                        scaler: "torch.amp.GradScaler | None" = None) -> float:
    model.train()
    optimizer.zero_grad()
    with torch.amp.autocast(device_type=device_type, dtype=dtype):
        loss = criterion(model(x), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.item()


# -- T13.6 gradient diagnostics ---------------------------------------------------------------------------
def gradient_report(model: nn.Module) -> dict[str, float | None]:
    return {name: (None if p.grad is None else p.grad.detach().norm().item())
            for name, p in model.named_parameters() if p.requires_grad}


def dead_parameters(model: nn.Module, loss: torch.Tensor) -> list[str]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    dead = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return dead
