"""Build ``data/digits04_backbone.safetensors``: the course's "pretrained" backbone for ex07_transfer.

A small CNN (``DigitsBackbone`` below; ``probes/ex07_transfer.py`` defines the same class) is
trained on the 8x8 digits 0–4 with a temporary linear head, deterministically: seeded, CPU, one
thread, full batch. Only the backbone's ``state_dict`` (BatchNorm buffers included) is saved, with
safetensors (no pickle). The grader pins the file's sha256 (``autotests/ex07_transfer.toml``) and
sends these tensors to the worker as data; nothing downloads.

    python scripts/make_backbone.py            # rebuild the file and print its sha256
    python scripts/make_backbone.py --check    # rebuild in memory and compare with the file
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "data" / "public" / "digits8x8.npz"
TARGET = ROOT / "data" / "digits04_backbone.safetensors"
SEED = 4
STEPS = 150
LR = 1e-2
FEAT_DIM = 128


class DigitsBackbone(nn.Module):
    """(B, 1, 8, 8) images in [0, 1] → (B, 128) features. Keep identical to the probe's copy.

    It keeps the 2x2 spatial layout (no global pooling): measured on digits 5–9 with 10 images
    per class, a frozen copy pooled to 1x1 gave worse few-shot accuracy than random weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def digits(classes: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) scaled to [0, 1] and int64 labels of the digits in ``classes``."""
    with np.load(DIGITS) as data:
        images, labels = data["images"], data["labels"]
    keep = np.isin(labels, list(classes))
    x = torch.from_numpy(images[keep].astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(labels[keep].astype(np.int64))


def train() -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    x, y = digits(range(5))
    backbone = DigitsBackbone()
    head = nn.Linear(FEAT_DIM, 5)
    optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=LR)
    backbone.train()
    for _ in range(STEPS):
        loss = nn.functional.cross_entropy(head(backbone(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    backbone.eval()
    with torch.no_grad():
        accuracy = float((head(backbone(x)).argmax(1) == y).float().mean())
    print(f"train accuracy on digits 0-4 (eval mode): {accuracy:.3f}")
    return {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed file")
    args = parser.parse_args()
    state = train()
    blob = save(state, metadata={"arch": "DigitsBackbone", "feat_dim": str(FEAT_DIM), "seed": str(SEED)})
    if args.check:
        # Float summation order can differ between CPUs, so the check allows rounding noise.
        stored = load_file(TARGET)
        worst = max(float((stored[k].double() - v.double()).abs().max()) for k, v in state.items())
        same = stored.keys() == state.keys() and worst < 1e-3
        print(f"{TARGET}: {'matches' if same else 'DIFFERS'} (max abs difference {worst:.2g})")
        raise SystemExit(0 if same else 1)
    TARGET.write_bytes(blob)
    print(f"{TARGET}: {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}")


if __name__ == "__main__":
    main()
