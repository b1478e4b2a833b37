"""Reference solution for ex12_projects (hidden from students)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


# -- T12.1 image classification, end to end -------------------------------------------------------------
class _DigitsCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def _random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (b,), generator=generator)
    dx = torch.randint(0, 3, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(b, x.shape[1], h, w + 2)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, x.shape[1], h, w)
    return shifted.gather(3, cols)


def _accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


def run_image_classification(train_set: Dataset, val_set: Dataset, num_classes: int | None = None, epochs: int = 8,
                             batch_size: int = 64, lr: float = 3e-3, augment: bool = True, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if num_classes is None:
        num_classes = int(max(int(train_set[i][1]) for i in range(len(train_set)))) + 1
    model = _DigitsCNN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 2), gamma=0.5)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    val_loader = DataLoader(val_set, batch_size=256, shuffle=False)
    history: dict[str, list[float]] = {"train_loss": [], "val_acc": [], "lr": []}
    best_acc, best_state = -1.0, None
    for _ in range(epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        model.train()
        total, seen = 0.0, 0
        for x, y in train_loader:
            if augment:
                x = _random_shift(x, generator)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
        scheduler.step()
        history["train_loss"].append(total / seen)
        acc = _accuracy(model, val_loader)
        history["val_acc"].append(acc)
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"model": model, "best_acc": best_acc, "history": history}


# -- T12.2 sentiment classification --------------------------------------------------------------------
PAD, UNK = "<pad>", "<unk>"


def _tokenize(text: str) -> list[str]:
    return text.lower().split()


class SentimentClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int = 2,
                 dropout: float = 0.5, pad_idx: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_dim, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(tokens)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        features = torch.cat([h[-2], h[-1]], dim=1)
        return self.fc(self.dropout(features))


def _encode_batch(vocab: dict[str, int], texts: list[str], max_len: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [[vocab.get(w, vocab[UNK]) for w in _tokenize(t)][:max_len] for t in texts]
    lengths = torch.tensor([max(len(s), 1) for s in ids], dtype=torch.long)
    tokens = torch.full((len(ids), int(lengths.max()) if ids else 1), vocab[PAD], dtype=torch.long)
    for i, s in enumerate(ids):
        if s:
            tokens[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, lengths


def train_sentiment(texts: list[str], labels: list[int], epochs: int = 10, max_len: int = 20, seed: int = 0
                    ) -> tuple[SentimentClassifier, dict[str, int]]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    vocab = {PAD: 0, UNK: 1}
    for text in texts:
        for word in _tokenize(text):
            vocab.setdefault(word, len(vocab))
    model = SentimentClassifier(len(vocab), 32, 32, num_classes=2, dropout=0.5, pad_idx=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    y = torch.tensor(labels, dtype=torch.long)
    batch_size = 32
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(texts), generator=generator)
        for start in range(0, len(texts), batch_size):
            chosen = order[start:start + batch_size]
            tokens, lengths = _encode_batch(vocab, [texts[i] for i in chosen], max_len)
            loss = F.cross_entropy(model(tokens, lengths), y[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model, vocab


def predict_sentiment(model: SentimentClassifier, vocab: dict[str, int], texts: list[str]) -> list[int]:
    if not texts:
        return []
    model.eval()
    tokens, lengths = _encode_batch(vocab, texts)
    with torch.no_grad():
        return model(tokens, lengths).argmax(dim=1).tolist()


# -- T12.3 a GAN on one dimension -----------------------------------------------------------------------
class Generator(nn.Module):
    def __init__(self, latent_dim: int = 4, hidden: int = 32, out_dim: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, in_dim: int = 1, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gan_step(G: Generator, D: Discriminator, real: torch.Tensor, opt_G: torch.optim.Optimizer,
             opt_D: torch.optim.Optimizer, latent_dim: int, generator: torch.Generator | None = None
             ) -> tuple[float, float]:
    z = torch.randn(real.shape[0], latent_dim, generator=generator, dtype=real.dtype, device=real.device)
    fake = G(z)
    ones = torch.ones(real.shape[0], 1, dtype=real.dtype, device=real.device)
    zeros = torch.zeros(real.shape[0], 1, dtype=real.dtype, device=real.device)
    opt_D.zero_grad()
    d_loss = (F.binary_cross_entropy_with_logits(D(real), ones)
              + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
    d_loss.backward()
    opt_D.step()
    opt_G.zero_grad()
    g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


# -- T12.4 detection post-processing -------------------------------------------------------------------
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = scores.argsort(descending=True)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= box_iou(boxes[i:i + 1], boxes)[0] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def filter_detections(pred: dict[str, torch.Tensor], score_threshold: float) -> dict[str, torch.Tensor]:
    keep = pred["scores"] > score_threshold
    return {"boxes": pred["boxes"][keep], "labels": pred["labels"][keep], "scores": pred["scores"][keep]}
