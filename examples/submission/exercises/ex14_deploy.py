"""练习 14：部署 —— 我的解答 / Exercise 14: deployment, my solution."""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def save_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    scheduler: Any = None, **extra: Any) -> None:
    """Everything needed to resume, as plain state_dicts (loads with weights_only=True)."""
    ckpt = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "epoch": int(epoch),
    }
    if scheduler is not None:
        ckpt["scheduler_state_dict"] = scheduler.state_dict()
    for name, value in extra.items():
        ckpt[name] = value.item() if torch.is_tensor(value) else value
    torch.save(ckpt, path)


def load_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, map_location: str = "cpu") -> dict[str, Any]:
    """Restore model / optimizer / scheduler; return the rest of the checkpoint."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(ckpt["model_state_dict"])
    if optimizer is not None:
        if "optimizer_state_dict" not in ckpt:
            raise KeyError("optimizer_state_dict missing from checkpoint")
        optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    if scheduler is not None:
        if "scheduler_state_dict" not in ckpt:
            raise KeyError("scheduler_state_dict missing from checkpoint")
        scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    skip = {"model_state_dict", "optimizer_state_dict", "scheduler_state_dict"}
    return {k: v for k, v in ckpt.items() if k not in skip}


def clean_state_dict(obj: dict) -> "OrderedDict[str, torch.Tensor]":
    """Unwrap a container and strip leading DataParallel / compile prefixes."""
    sd = obj
    for wrapper in ("model_state_dict", "state_dict", "model", "net"):
        if wrapper in obj and isinstance(obj[wrapper], dict):
            sd = obj[wrapper]
            break
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, tensor in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
        out[key] = tensor
    return out


def load_weights(model: nn.Module, path: str, strict: bool = True) -> tuple[list[str], list[str]]:
    """Load weights saved in any of the usual formats."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(clean_state_dict(raw), strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic_batch: bool = True,
                opset: int = 18) -> str:
    """ONNX export in eval mode, batch dimension dynamic unless asked otherwise."""
    model.eval()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    torch.onnx.export(model, (example,), path, input_names=["input"], output_names=["output"],
                      opset_version=opset, dynamic_axes=dynamic_axes, dynamo=False)
    return path


def onnx_predict(path: str, x: np.ndarray) -> np.ndarray:
    """Run the model with onnxruntime on float32 input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    outputs = sess.run(None, {input_name: x.astype(np.float32)})
    return outputs[0]


class Predictor:
    """Wraps a classifier for inference."""

    def __init__(self, model: nn.Module, class_names: list[str], mean: Sequence[float], std: Sequence[float],
                 size: int = 32) -> None:
        self.model = model
        self.model.eval()
        self.class_names = list(class_names)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
        self.size = size

    def predict(self, images: torch.Tensor) -> list[tuple[str, float]]:
        x = images.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        with torch.no_grad():
            probs = torch.softmax(self.model(x), dim=1)
        preds = probs.argmax(dim=1)
        confidence = torch.max(probs).item()
        return [(self.class_names[int(p)], confidence) for p in preds]

    def predict_bytes(self, data: bytes) -> tuple[str, float]:
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as err:
            raise ValueError(f"could not decode image: {err}") from err
        img = img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
        return self.predict(x)[0]


def log_epoch(writer: Any, epoch: int, metrics: dict[str, float], model: nn.Module | None = None,
              optimizer: torch.optim.Optimizer | None = None) -> None:
    """Scalars, learning rates and histograms for one epoch."""
    for key, value in metrics.items():
        if "_" in key:
            split, name = key.split("_", 1)
            tag = f"{name.capitalize()}/{split}"
        else:
            tag = key
        writer.add_scalar(tag, float(value), epoch)
    if optimizer is not None:
        groups = optimizer.param_groups
        if len(groups) == 1:
            writer.add_scalar("LearningRate", float(groups[0]["lr"]), epoch)
        else:
            for i, group in enumerate(groups):
                writer.add_scalar(f"LearningRate/group{i}", float(group["lr"]), epoch)
    if model is not None:
        for name, param in model.named_parameters():
            writer.add_histogram(name, param.detach().cpu(), epoch)
