"""Reference solution for ex14_deploy (hidden from students)."""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STATE_KEYS = ("model_state_dict", "optimizer_state_dict", "scheduler_state_dict")
CONTAINER_KEYS = ("model_state_dict", "state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    scheduler: Any = None, **extra: Any) -> None:
    checkpoint: dict[str, Any] = {"model_state_dict": model.state_dict(),
                                  "optimizer_state_dict": optimizer.state_dict(), "epoch": int(epoch)}
    if scheduler is not None:
        checkpoint["scheduler_state_dict"] = scheduler.state_dict()
    for key, value in extra.items():
        if torch.is_tensor(value):
            value = value.item()  # a loss tensor would carry its graph and reload with requires_grad=True
        checkpoint[key] = value
    torch.save(checkpoint, path)


def load_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, map_location: str = "cpu") -> dict[str, Any]:
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    if optimizer is not None:
        if "optimizer_state_dict" not in checkpoint:
            raise KeyError(f"{path} holds no 'optimizer_state_dict'")
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    if scheduler is not None:
        if "scheduler_state_dict" not in checkpoint:
            raise KeyError(f"{path} holds no 'scheduler_state_dict'")
        scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
    return {k: v for k, v in checkpoint.items() if k not in STATE_KEYS}


def clean_state_dict(obj: dict) -> "OrderedDict[str, torch.Tensor]":
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    cleaned: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in obj.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    stripped = True
        cleaned[key] = value
    return cleaned


def load_weights(model: nn.Module, path: str, strict: bool = True) -> tuple[list[str], list[str]]:
    state = clean_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    result = model.load_state_dict(state, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic_batch: bool = True,
                opset: int = 18) -> str:
    model.eval()
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    # The TorchScript exporter: 0.04 s against 3-4 s for the dynamo exporter, which is the default in torch 2.14.
    torch.onnx.export(model, (example,), path, input_names=["input"], output_names=["output"],
                      dynamic_axes=axes, opset_version=opset, dynamo=False)
    return path


def onnx_predict(path: str, x: np.ndarray) -> np.ndarray:
    from onnxruntime import InferenceSession

    session = InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class Predictor:
    def __init__(self, model: nn.Module, class_names: list[str], mean: Sequence[float], std: Sequence[float],
                 size: int = 32) -> None:
        self.model = model.eval()
        self.class_names = list(class_names)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.size = size

    def predict(self, images: torch.Tensor) -> list[tuple[str, float]]:
        x = images.to(torch.float32)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        self.model.eval()
        with torch.no_grad():
            probs = torch.softmax(self.model(x), dim=1)
        conf, idx = probs.max(dim=1)
        return [(self.class_names[i], c) for i, c in zip(idx.tolist(), conf.tolist())]

    def predict_bytes(self, data: bytes) -> tuple[str, float]:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"not an image: {exc}") from exc
        image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return self.predict(x.unsqueeze(0))[0]


def log_epoch(writer: Any, epoch: int, metrics: dict[str, float], model: nn.Module | None = None,
              optimizer: torch.optim.Optimizer | None = None) -> None:
    for key, value in metrics.items():
        split, _, name = key.partition("_")
        tag = f"{name.capitalize()}/{split}" if name else key
        writer.add_scalar(tag, float(value), epoch)
    if optimizer is not None:
        groups = optimizer.param_groups
        for i, group in enumerate(groups):
            writer.add_scalar("LearningRate" if len(groups) == 1 else f"LearningRate/group{i}",
                              float(group["lr"]), epoch)
    if model is not None:
        for name, param in model.named_parameters():
            writer.add_histogram(name, param.detach().cpu(), epoch)
