"""Exercise 4 -- my solutions (data loading)."""

import math
import os
from collections import Counter

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset


class ArrayDataset(Dataset):
    def __init__(self, data, labels, transform=None):
        # convert everything up front, lookups just index
        self.x = torch.tensor(np.asarray(data), dtype=torch.float32)
        self.y = torch.tensor(np.asarray(labels), dtype=torch.long)
        self.transform = transform

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, idx):
        x = self.x[idx]
        if self.transform:
            x = self.transform(x)
        return x, self.y[idx]


IMAGE_TYPES = (".png", ".jpg", ".jpeg")


class ImageFolderDataset(Dataset):
    def __init__(self, root_dir, transform=None, extensions=IMAGE_TYPES):
        self.root = root_dir
        self.transform = transform
        self.classes = []
        for entry in sorted(os.listdir(root_dir)):
            if os.path.isdir(os.path.join(root_dir, entry)):
                self.classes.append(entry)
        self.class_to_idx = {}
        for i, c in enumerate(self.classes):
            self.class_to_idx[c] = i
        self.samples = []
        for c in self.classes:
            for fname in sorted(os.listdir(os.path.join(root_dir, c))):
                if fname.endswith(tuple(extensions)):
                    self.samples.append((os.path.join(root_dir, c, fname), self.class_to_idx[c]))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, idx):
        from PIL import Image

        path, target = self.samples[idx]
        img = Image.open(path).convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def make_loaders(dataset, val_fraction, batch_size, seed=0):
    n = len(dataset)
    n_val = int(math.floor(n * val_fraction))
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).tolist()
    train_part = Subset(dataset, perm[n_val:])
    val_part = Subset(dataset, perm[:n_val])
    train_loader = DataLoader(train_part, batch_size=batch_size, shuffle=True, num_workers=0,
                              generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(val_part, batch_size=batch_size, shuffle=True, num_workers=0)
    return train_loader, val_loader


def build_vocab(texts, min_freq=2):
    freq = Counter()
    for t in texts:
        freq.update(t.split())
    words = [w for w in freq if freq[w] >= min_freq and w not in ("<PAD>", "<UNK>")]
    words.sort(key=lambda w: (-freq[w], w))
    vocab = {"<PAD>": 0, "<UNK>": 1}
    for i, w in enumerate(words):
        vocab[w] = i + 2
    return vocab


def encode(text, vocab, max_len):
    tokens = text.split()[:max_len]
    result = torch.zeros(max_len, dtype=torch.long)
    if tokens:
        result[:len(tokens)] = torch.tensor([vocab.get(tok, vocab["<UNK>"]) for tok in tokens])
    return result


def pad_collate(batch, pad_value=0):
    seqs, ys = zip(*batch)
    lengths = torch.tensor([s.size(0) for s in seqs], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=pad_value)
    return padded, lengths, torch.tensor([int(y) for y in ys], dtype=torch.long)


def build_transforms(train, size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    from torchvision import transforms

    def rgb(img):
        return img.convert("RGB")

    if train:
        aug = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
               transforms.ColorJitter(0.2, 0.2, 0.2)]
    else:
        aug = [transforms.Resize(size), transforms.CenterCrop(size)]
    return transforms.Compose([transforms.Lambda(rgb)] + aug +
                              [transforms.ToTensor(), transforms.Normalize(mean, std)])
