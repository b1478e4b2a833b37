"""Reference solution for ex04_data (hidden from students)."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, random_split

PAD, UNK = "<PAD>", "<UNK>"


class ArrayDataset(Dataset):
    def __init__(self, data: np.ndarray, labels: np.ndarray, transform: Callable | None = None) -> None:
        if len(data) != len(labels):
            raise ValueError(f"{len(data)} samples but {len(labels)} labels")
        self.data = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.data[idx]
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, self.labels[idx]


class ImageFolderDataset(Dataset):
    def __init__(self, root_dir: str, transform: Callable | None = None,
                 extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg")) -> None:
        self.root_dir = root_dir
        self.transform = transform
        wanted = tuple(e.lower() for e in extensions)
        self.classes = sorted(entry.name for entry in os.scandir(root_dir) if entry.is_dir())
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for name in self.classes:
            folder = os.path.join(root_dir, name)
            for file in sorted(os.listdir(folder)):
                path = os.path.join(folder, file)
                if file.lower().endswith(wanted) and os.path.isfile(path):
                    self.samples.append((path, self.class_to_idx[name]))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        from PIL import Image

        path, label = self.samples[idx]
        with Image.open(path) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def make_loaders(dataset: Dataset, val_fraction: float, batch_size: int, seed: int = 0
                 ) -> tuple[DataLoader, DataLoader]:
    n_val = math.floor(len(dataset) * val_fraction)
    split_rng = torch.Generator().manual_seed(seed)
    train_set, val_set = random_split(dataset, [len(dataset) - n_val, n_val], generator=split_rng)
    order_rng = torch.Generator().manual_seed(seed)  # the loader's own: the global RNG is never drawn
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=0, generator=order_rng)
    val = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=0)
    return train, val


def build_vocab(texts: list[str], min_freq: int = 2) -> dict[str, int]:
    counts = Counter(token for text in texts for token in text.split())
    kept = sorted((token for token, n in counts.items() if n >= min_freq and token not in (PAD, UNK)),
                  key=lambda token: (-counts[token], token))
    vocab = {PAD: 0, UNK: 1}
    for token in kept:
        vocab[token] = len(vocab)
    return vocab


def encode(text: str, vocab: dict[str, int], max_len: int) -> torch.Tensor:
    ids = [vocab.get(token, 1) for token in text.split()[:max_len]]
    return torch.tensor(ids + [0] * (max_len - len(ids)), dtype=torch.int64)


def pad_collate(batch: list[tuple[torch.Tensor, int]], pad_value: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sequences = [seq for seq, _ in batch]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=pad_value)
    lengths = torch.tensor([seq.shape[0] for seq in sequences], dtype=torch.int64)
    labels = torch.tensor([int(label) for _, label in batch], dtype=torch.int64)
    return padded, lengths, labels


def build_transforms(train: bool, size: int = 32,
                     mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225)) -> Callable:
    from torchvision import transforms as T

    to_rgb = T.Lambda(lambda img: img.convert("RGB"))
    if train:
        steps = [to_rgb, T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                 T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)]
    else:
        steps = [to_rgb, T.Resize(size), T.CenterCrop(size)]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(list(mean), list(std))])
