"""练习 12：项目实战 / Exercise 12: projects."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


# -- T12.1 image classification, end to end -------------------------------------------------------------
class SmallCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def augment_batch(x, gen):
    padded = F.pad(x, (1, 1, 1, 1))
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
        out[i] = padded[i, :, dy:dy + 8, dx:dx + 8]
    return out


def run_image_classification(train_set: Dataset, val_set: Dataset, num_classes: int | None = None, epochs: int = 8,
                             batch_size: int = 64, lr: float = 3e-3, augment: bool = True, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if num_classes is None:
        num_classes = max(int(train_set[i][1]) for i in range(len(train_set))) + 1
    model = SmallCNN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 2), gamma=0.5)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(val_set, batch_size=128)
    history = {"train_loss": [], "val_acc": [], "lr": []}
    best_acc, best_state = -1.0, None
    for epoch in range(epochs):
        history["lr"].append(optimizer.param_groups[0]["lr"])
        model.train()
        total_loss, n = 0.0, 0
        for x, y in train_loader:
            if augment:
                x = augment_batch(x, gen)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * x.shape[0]
            n += x.shape[0]
        scheduler.step()
        history["train_loss"].append(total_loss / n)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        acc = correct / len(val_set)
        history["val_acc"].append(acc)
        if acc > best_acc:
            best_acc = acc
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"model": model, "best_acc": best_acc, "history": history}


# -- T12.2 sentiment classification --------------------------------------------------------------------
class SentimentClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int = 2,
                 dropout: float = 0.5, pad_idx: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_dim, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(tokens)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(self.dropout(torch.cat([h[-2], h[-1]], dim=1)))


def _encode(texts, vocab, max_len=None):
    seqs = []
    for t in texts:
        ids = [vocab.get(w, vocab["<unk>"]) for w in t.lower().split()]
        if max_len is not None:
            ids = ids[:max_len]
        seqs.append(ids)
    lengths = [len(s) for s in seqs]
    tokens = torch.full((len(seqs), max(lengths)), vocab["<pad>"], dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            tokens[i, :len(s)] = torch.tensor(s)
    return tokens, torch.tensor(lengths, dtype=torch.long)


def train_sentiment(texts: list[str], labels: list[int], epochs: int = 10, max_len: int = 20, seed: int = 0
                    ) -> tuple[SentimentClassifier, dict[str, int]]:
    torch.manual_seed(seed)
    vocab = {"<pad>": 0, "<unk>": 1}
    for t in texts:
        for w in t.lower().split():
            if w not in vocab:
                vocab[w] = len(vocab)
    model = SentimentClassifier(len(vocab), 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    y_all = torch.tensor(labels, dtype=torch.long)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(texts))
        for i in range(0, len(texts), 32):
            idx = perm[i:i + 32]
            tokens, lengths = _encode([texts[j] for j in idx], vocab, max_len)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(tokens, lengths), y_all[idx])
            loss.backward()
            optimizer.step()
    return model, vocab


def predict_sentiment(model: SentimentClassifier, vocab: dict[str, int], texts: list[str]) -> list[int]:
    if len(texts) == 0:
        return []
    model.eval()
    tokens, lengths = _encode(texts, vocab)
    with torch.no_grad():
        preds = model(tokens, lengths).argmax(dim=1)
    return [int(p) for p in preds]


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
    B = real.shape[0]
    z = torch.randn(B, latent_dim, generator=generator, dtype=real.dtype, device=real.device)
    fake = G(z)
    ones = torch.ones(B, 1, dtype=real.dtype, device=real.device)
    zeros = torch.zeros(B, 1, dtype=real.dtype, device=real.device)
    opt_D.zero_grad()
    d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + \
        F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
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
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area_a[:, None] + area_b[None, :] - inter
    safe = torch.where(union > 0, union, torch.ones_like(union))
    return inter / safe


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.argsort(scores, descending=True)
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(int(i))
        if len(order) == 1:
            break
        ious = box_iou(boxes[i].unsqueeze(0), boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def filter_detections(pred: dict[str, torch.Tensor], score_threshold: float) -> dict[str, torch.Tensor]:
    mask = pred["scores"] > score_threshold
    return {"boxes": pred["boxes"][mask], "labels": pred["labels"][mask], "scores": pred["scores"][mask]}
