"""练习 12：项目实战 / Exercise 12: projects.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex12`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex12`` (one task: ``grader check ex12 -k box_iou``).

四个小项目：8×8 手写数字的端到端分类、合成语料上的情感分析、一维分布上的 GAN、目标检测的后处理。
评分程序只把训练数据和验证数据（以及没有标签的测试图像或句子）交给你的代码；测试集的标签留在评分程序里，
准确率由评分程序根据你的模型输出自己计算。你的函数自己报告的数字（例如 ``best_acc``）只用来与评分程序
算出的结果核对。一切都在 CPU 上、用 ``float32`` 运行（另有说明的除外）。
Four small projects: end-to-end classification of 8x8 digits, sentiment analysis on a synthetic
corpus, a GAN on a 1-D distribution, and detection post-processing. The grader hands your code the
training and validation data (and unlabelled test images or sentences); the test labels stay in the
grader, which computes accuracies itself from your model's outputs. Numbers your functions report
about themselves (such as ``best_acc``) are only checked against what the grader computes. Everything
runs on the CPU in ``float32`` unless stated otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


# -- T12.1 image classification, end to end -------------------------------------------------------------
def run_image_classification(train_set: Dataset, val_set: Dataset, num_classes: int | None = None, epochs: int = 8,
                             batch_size: int = 64, lr: float = 3e-3, augment: bool = True, seed: int = 0) -> dict:
    """端到端的图像分类：建模型、带数据增强地训练、每个 epoch 验证一次、按 epoch 调整学习率、保留最佳模型。

    - 数据：``train_set[i]`` 与 ``val_set[i]`` 都是 ``(image, label)``，``image`` 是 ``float32`` 张量，
      形状 ``(1, 8, 8)``、取值在 [0, 1]；``label`` 是 ``int64`` 标量张量。只通过 ``len()`` 和下标
      （或 ``DataLoader``）读取数据集；``val_set`` 可能是 ``torch.utils.data.Subset``。
      **``val_set`` 每个 epoch 只完整读取一次**（用于验证），其他时候不要读它。
    - ``num_classes``：给定时模型输出 ``num_classes`` 个 logits；为 ``None`` 时取训练集标签的最大值 + 1
      （只看 ``train_set``）。
    - 模型自选（例如两层卷积的小 CNN）：输入 ``(B, 1, 8, 8)``，输出 ``(B, num_classes)`` 的 logits。
    - 训练：``torch.optim.Adam(model.parameters(), lr=lr)``，交叉熵，每个 epoch 按 ``batch_size``
      打乱训练集。学习率调度器按 epoch 调整，**每个 epoch 结束时调用一次 ``scheduler.step()``**（例如
      ``StepLR(optimizer, step_size=max(1, epochs // 2), gamma=0.5)`` 或 ``CosineAnnealingLR(optimizer, T_max=epochs)``），
      不要每个批次调用。
    - 数据增强（``augment=True`` 时，只用于训练批次）：每张图像随机平移，水平和竖直方向各在 {-1, 0, +1}
      像素中随机选（先用 0 填充一圈再裁回 8×8），用 torch 完成。不要翻转（翻转后的数字不再是同一个数字）。
      **验证数据不做任何增强。** ``augment=False`` 时不做增强。
    - 验证：每个 epoch 训练之后，``model.eval()``、在 ``torch.no_grad()`` 中计算验证集准确率（预测正确的比例）。
    - 最佳模型：记下验证准确率最高的那个 epoch 的参数（``copy.deepcopy(model.state_dict())``；并列时取较早的），
      训练结束后把它载回模型。
    - 可复现：开头调用 ``torch.manual_seed(seed)``，打乱和增强用的随机数来自这个种子（例如
      ``torch.Generator().manual_seed(seed)``）：同样的参数、同样的 ``seed`` 两次调用给出完全相同的 ``history``
      和模型。
    - 返回字典 ``{"model": 模型, "best_acc": float, "history": {"train_loss": [...], "val_acc": [...], "lr": [...]}}``：
      三个列表长度都是 ``epochs``，元素是 Python ``float``；``train_loss[e]`` 是第 e 个 epoch 训练损失的
      （按样本）平均，``val_acc[e]`` 是该 epoch 之后的验证准确率，``lr[e]`` 是该 epoch 训练时使用的学习率；
      ``best_acc == max(history["val_acc"])``。返回的模型是最佳的那个，处于 eval 模式。

    End-to-end image classification: build a model, train it with augmentation, validate once per
    epoch, schedule the learning rate per epoch, keep the best model.

    - Data: ``train_set[i]`` and ``val_set[i]`` are ``(image, label)``; ``image`` is a ``float32``
      tensor of shape ``(1, 8, 8)`` with values in [0, 1], ``label`` an ``int64`` scalar tensor. Read
      the datasets only through ``len()`` and indexing (or a ``DataLoader``); ``val_set`` may be a
      ``torch.utils.data.Subset``. **Read ``val_set`` in full exactly once per epoch** (for
      validation) and at no other time.
    - ``num_classes``: when given, the model outputs ``num_classes`` logits; when ``None``, use the
      largest label of the training set + 1 (look at ``train_set`` only).
    - The model is yours to choose (e.g. a small CNN with two convolutions): input ``(B, 1, 8, 8)``,
      output ``(B, num_classes)`` logits.
    - Training: ``torch.optim.Adam(model.parameters(), lr=lr)``, cross-entropy, the training set
      shuffled every epoch in batches of ``batch_size``. A learning-rate scheduler changes the rate per
      epoch: **call ``scheduler.step()`` once at the end of every epoch** (e.g.
      ``StepLR(optimizer, step_size=max(1, epochs // 2), gamma=0.5)`` or
      ``CosineAnnealingLR(optimizer, T_max=epochs)``), not after every batch.
    - Augmentation (when ``augment=True``, training batches only): shift every image at random by
      one of {-1, 0, +1} pixels horizontally and one of {-1, 0, +1} vertically (pad a border of
      zeros, then crop back to 8x8), done in torch. No flips (a flipped digit is not the same digit).
      **Never augment the validation data.** With ``augment=False`` there is no augmentation.
    - Validation: after each epoch's training, ``model.eval()`` and, under ``torch.no_grad()``, the
      accuracy (fraction right) on the validation set.
    - Best model: keep the parameters of the epoch with the highest validation accuracy
      (``copy.deepcopy(model.state_dict())``; the earlier epoch on ties) and load them back into the
      model at the end.
    - Reproducible: call ``torch.manual_seed(seed)`` first and draw the shuffles and augmentations from
      that seed (e.g. ``torch.Generator().manual_seed(seed)``): two calls with the same arguments and
      ``seed`` give exactly the same ``history`` and model.
    - Return ``{"model": model, "best_acc": float, "history": {"train_loss": [...], "val_acc": [...],
      "lr": [...]}}``: all three lists have length ``epochs`` and hold Python ``float`` values;
      ``train_loss[e]`` is epoch e's mean training loss (per sample), ``val_acc[e]`` the validation
      accuracy after epoch e, ``lr[e]`` the learning rate epoch e trained with;
      ``best_acc == max(history["val_acc"])``. The model returned is the best one, in eval mode.
    """
    raise NotImplementedError("TODO: run_image_classification")


# -- T12.2 sentiment classification --------------------------------------------------------------------
class SentimentClassifier(nn.Module):
    """双向 LSTM 情感分类器。

    - ``__init__``：``nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)``、一个单层
      **双向** ``nn.LSTM(embed_dim, hidden_dim, batch_first=True, bidirectional=True)``、
      ``nn.Dropout(dropout)`` 和 ``nn.Linear(2 * hidden_dim, num_classes)``。
    - ``forward(tokens, lengths)``：``tokens`` 为 ``(B, T)`` 的 ``int64`` 词下标，每行前 ``lengths[b]`` 个是
      真实词，其余是 ``pad_idx``；``lengths`` 为 ``(B,)`` 的 ``int64``（CPU 上），每个都 ``>= 1``。
      用 ``nn.utils.rnn.pack_padded_sequence(..., lengths.cpu(), batch_first=True, enforce_sorted=False)``
      打包，取最后一层正向与反向的最终隐藏状态拼接（``torch.cat([h[-2], h[-1]], dim=1)``），经过 dropout
      和线性层，返回 ``(B, num_classes)`` 的 ``float32`` logits。
    - 因为打包了序列，结果不受填充影响：在 eval 模式下，多补几列 PAD、或者单独计算一行，logits 都不变。

    A bidirectional LSTM sentiment classifier.

    - ``__init__``: ``nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)``, one **bidirectional**
      layer ``nn.LSTM(embed_dim, hidden_dim, batch_first=True, bidirectional=True)``,
      ``nn.Dropout(dropout)`` and ``nn.Linear(2 * hidden_dim, num_classes)``.
    - ``forward(tokens, lengths)``: ``tokens`` is ``(B, T)`` ``int64`` word indices, the first
      ``lengths[b]`` of row b real words and the rest ``pad_idx``; ``lengths`` is ``(B,)`` ``int64``
      (on the CPU), each ``>= 1``. Pack with ``nn.utils.rnn.pack_padded_sequence(..., lengths.cpu(),
      batch_first=True, enforce_sorted=False)``, concatenate the last layer's final forward and backward
      hidden states (``torch.cat([h[-2], h[-1]], dim=1)``), apply dropout and the linear layer, and
      return ``(B, num_classes)`` ``float32`` logits.
    - Because the sequences are packed, padding changes nothing: in eval mode, extra PAD columns or a
      row computed on its own give the same logits.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int = 2,
                 dropout: float = 0.5, pad_idx: int = 0) -> None:
        super().__init__()
        raise NotImplementedError("TODO: SentimentClassifier.__init__")

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: SentimentClassifier.forward")


def train_sentiment(texts: list[str], labels: list[int], epochs: int = 10, max_len: int = 20, seed: int = 0
                    ) -> tuple[SentimentClassifier, dict[str, int]]:
    """从原始文本训练情感分类器，返回 ``(model, vocab)``。

    - 分词：``text.lower().split()``（按空白切分）。
    - 词表：``vocab = {"<pad>": 0, "<unk>": 1}``，再按训练文本中**首次出现的顺序**加入每个新词。
      编码时不在词表中的词用 ``vocab["<unk>"]``。
    - 编码：每个句子截断到前 ``max_len`` 个词；一个批次内用 ``vocab["<pad>"]`` 填充到最长句子的长度；
      长度为 0 的句子（空文本）按长度 1 处理（只有一个 PAD）。
    - 模型：``SentimentClassifier(len(vocab), embed_dim, hidden_dim, num_classes=2, dropout=0.5, pad_idx=0)``，
      ``embed_dim``、``hidden_dim`` 自选（例如 32）；Adam（例如 ``lr=1e-2``）、交叉熵、小批量（例如 32），
      训练 ``epochs`` 轮。
    - ``labels[i]`` 是 0（负面）或 1（正面）。开头调用 ``torch.manual_seed(seed)``，打乱用由 ``seed``
      决定的随机数。
    - 返回训练好的模型和词表（``dict[str, int]``）。

    Train a sentiment classifier from raw text; return ``(model, vocab)``.

    - Tokens: ``text.lower().split()`` (split on whitespace).
    - Vocabulary: ``vocab = {"<pad>": 0, "<unk>": 1}``, then every new word in the **order of first
      appearance** in the training texts. Words missing from the vocabulary encode as ``vocab["<unk>"]``.
    - Encoding: every sentence truncated to its first ``max_len`` words; a batch padded with
      ``vocab["<pad>"]`` to its longest sentence; a sentence of 0 words (an empty text) counts as length
      1 (a single PAD).
    - Model: ``SentimentClassifier(len(vocab), embed_dim, hidden_dim, num_classes=2, dropout=0.5,
      pad_idx=0)`` with ``embed_dim`` and ``hidden_dim`` of your choice (e.g. 32); Adam (e.g.
      ``lr=1e-2``), cross-entropy, minibatches (e.g. 32), ``epochs`` passes.
    - ``labels[i]`` is 0 (negative) or 1 (positive). Call ``torch.manual_seed(seed)`` first and shuffle
      with random numbers that ``seed`` determines.
    - Return the trained model and the vocabulary (``dict[str, int]``).
    """
    raise NotImplementedError("TODO: train_sentiment")


def predict_sentiment(model: SentimentClassifier, vocab: dict[str, int], texts: list[str]) -> list[int]:
    """用训练时的 ``vocab`` 编码 ``texts`` 并预测，返回与 ``texts`` 等长的 Python ``int`` 列表（0 或 1）。

    - **复用训练时的词表**，不要根据 ``texts`` 重新建词表；分词与 ``train_sentiment`` 相同；未登录词用
      ``"<unk>"``；预测时不截断。
    - 空文本（``""``）或只含空白的文本也要能预测：长度按 1 处理（只有一个 PAD，``pack_padded_sequence``
      不接受长度 0）。
    - 先调用 ``model.eval()``（调用时模型可能处于 train 模式；dropout 会让预测随机），在
      ``torch.no_grad()`` 中计算；同一个句子无论和哪些句子一起预测，结果都相同。``texts`` 为空时返回 ``[]``。

    Encode ``texts`` with the training ``vocab`` and predict; return a list of Python ``int`` (0 or 1)
    as long as ``texts``.

    - **Reuse the training vocabulary**; never build one from ``texts``. Tokenise as in
      ``train_sentiment``; unknown words become ``"<unk>"``; no truncation at prediction time.
    - An empty text (``""``) or one of only whitespace must be predicted too: its length counts as 1 (a
      single PAD; ``pack_padded_sequence`` refuses length 0).
    - Call ``model.eval()`` first (the model may be in train mode when you get it; dropout would make the
      predictions random) and compute under ``torch.no_grad()``; a sentence gets the same prediction
      whatever other sentences it is predicted with. An empty ``texts`` gives ``[]``.
    """
    raise NotImplementedError("TODO: predict_sentiment")


# -- T12.3 a GAN on one dimension -----------------------------------------------------------------------
class Generator(nn.Module):
    """生成器：``forward(z)`` 把 ``(B, latent_dim)`` 的噪声映射为 ``(B, out_dim)`` 的样本。

    一个小 MLP（例如 ``Linear(latent_dim, hidden) → ReLU → Linear(hidden, hidden) → ReLU →
    Linear(hidden, out_dim)``）。不要用 ``BatchNorm1d``：批大小为 1 时在 train 模式下也必须能运行。
    输出层不加激活（目标分布的均值是 4）。

    The generator: ``forward(z)`` maps ``(B, latent_dim)`` noise to ``(B, out_dim)`` samples. A small
    MLP (e.g. ``Linear(latent_dim, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU ->
    Linear(hidden, out_dim)``). No ``BatchNorm1d``: it must run on a batch of 1 in train mode. No
    activation on the output layer (the target distribution's mean is 4).
    """

    def __init__(self, latent_dim: int = 4, hidden: int = 32, out_dim: int = 1) -> None:
        super().__init__()
        raise NotImplementedError("TODO: Generator.__init__")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: Generator.forward")


class Discriminator(nn.Module):
    """判别器：``forward(x)`` 把 ``(B, in_dim)`` 的样本映射为 ``(B, 1)`` 的 **logits**（真实样本的对数几率）。

    一个小 MLP（例如 ``Linear(in_dim, hidden) → LeakyReLU(0.2) → Linear(hidden, hidden) →
    LeakyReLU(0.2) → Linear(hidden, 1)``），最后一层**不接 ``Sigmoid``**：损失用
    ``F.binary_cross_entropy_with_logits``，它自己做 sigmoid。不要用 ``BatchNorm1d``（批大小可能为 1）。

    The discriminator: ``forward(x)`` maps ``(B, in_dim)`` samples to ``(B, 1)`` **logits** (the log-odds
    of being real). A small MLP (e.g. ``Linear(in_dim, hidden) -> LeakyReLU(0.2) -> Linear(hidden,
    hidden) -> LeakyReLU(0.2) -> Linear(hidden, 1)``) with **no ``Sigmoid``** at the end: the loss is
    ``F.binary_cross_entropy_with_logits``, which applies the sigmoid itself. No ``BatchNorm1d`` (the
    batch may hold one sample).
    """

    def __init__(self, in_dim: int = 1, hidden: int = 32) -> None:
        super().__init__()
        raise NotImplementedError("TODO: Discriminator.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: Discriminator.forward")


def gan_step(G: Generator, D: Discriminator, real: torch.Tensor, opt_G: torch.optim.Optimizer,
             opt_D: torch.optim.Optimizer, latent_dim: int, generator: torch.Generator | None = None
             ) -> tuple[float, float]:
    """GAN 的一步训练：先更新判别器，再更新生成器；返回 ``(d_loss.item(), g_loss.item())``。

    ``G``、``D`` 可以是任何满足上面形状约定的模块（评分程序会传入它自己的模块和优化器，并逐步复算）。
    按下面的顺序，``B = real.shape[0]``，新张量与 ``real`` 的 dtype 和设备相同：

    1. 噪声只抽一次：``z = torch.randn(B, latent_dim, generator=generator, dtype=real.dtype, device=real.device)``
       （``generator=None`` 时用全局随机数），``fake = G(z)``。
    2. 判别器步：``opt_D.zero_grad()``；
       ``d_loss = BCEWithLogits(D(real), 1) + BCEWithLogits(D(fake.detach()), 0)``（两项之和，每项对批次取平均，
       目标是全 1 / 全 0 的 ``(B, 1)`` 张量）；``d_loss.backward()``；``opt_D.step()``。
       **假样本要 ``detach()``**：判别器步不能把梯度传到生成器。
    3. 生成器步：``opt_G.zero_grad()``；``g_loss = BCEWithLogits(D(fake), 1)``（用第 1 步的同一个 ``fake``，
       经过刚更新过的判别器）；``g_loss.backward()``；``opt_G.step()``。**只调用 ``opt_G.step()``**：
       这一步不能改变判别器的参数（它留在判别器上的梯度会在下一步开头被 ``opt_D.zero_grad()`` 清掉）。

    One GAN training step: the discriminator first, then the generator; return
    ``(d_loss.item(), g_loss.item())``.

    ``G`` and ``D`` may be any modules that keep the shape contracts above (the grader passes its own
    modules and optimizers and replays every step). In this order, with ``B = real.shape[0]`` and new
    tensors of ``real``'s dtype and device:

    1. Draw the noise once: ``z = torch.randn(B, latent_dim, generator=generator, dtype=real.dtype,
       device=real.device)`` (the global generator when ``generator=None``), ``fake = G(z)``.
    2. Discriminator step: ``opt_D.zero_grad()``;
       ``d_loss = BCEWithLogits(D(real), 1) + BCEWithLogits(D(fake.detach()), 0)`` (the sum of the two,
       each averaged over the batch, against all-ones / all-zeros ``(B, 1)`` targets);
       ``d_loss.backward()``; ``opt_D.step()``. **Detach the fakes**: the discriminator step must not send
       gradients into the generator.
    3. Generator step: ``opt_G.zero_grad()``; ``g_loss = BCEWithLogits(D(fake), 1)`` (the same ``fake``
       as in step 1, through the discriminator just updated); ``g_loss.backward()``; ``opt_G.step()``.
       **Call only ``opt_G.step()``**: this step must not change the discriminator (the gradients it
       leaves on the discriminator are cleared by ``opt_D.zero_grad()`` at the start of the next step).
    """
    raise NotImplementedError("TODO: gan_step")


# -- T12.4 detection post-processing -------------------------------------------------------------------
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """两组框两两之间的交并比（IoU），与 ``torchvision.ops.box_iou`` 相同。

    - ``a``：``(N, 4)``，``b``：``(M, 4)``，格式 ``(x1, y1, x2, y2)``，``x1 <= x2``、``y1 <= y2``；
      浮点 dtype（``float32`` 或 ``float64``），在同一设备上。
    - 返回 ``(N, M)``，dtype 与输入相同，``out[i, j] = 交集面积 / 并集面积``。交集的宽和高要
      ``clamp(min=0)``（不相交的框交集为 0）。并集面积为 0 时（两个面积为 0 的框）结果为 0，不能是 NaN。
    - ``N = 0`` 或 ``M = 0`` 时返回形状 ``(N, M)`` 的空张量。
    - 向量化（广播），不要用 Python 循环；结果对输入可导（评分程序在 ``float64`` 下做 gradcheck）。

    The intersection over union of every pair of boxes, as ``torchvision.ops.box_iou``.

    - ``a``: ``(N, 4)``, ``b``: ``(M, 4)``, as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``;
      a floating dtype (``float32`` or ``float64``), on one device.
    - Return ``(N, M)`` of the inputs' dtype, ``out[i, j] = intersection area / union area``. Clamp the
      intersection's width and height with ``clamp(min=0)`` (disjoint boxes intersect in 0). Where the
      union is 0 (two boxes of area 0) the result is 0, never NaN.
    - ``N = 0`` or ``M = 0`` gives an empty ``(N, M)`` tensor.
    - Vectorised (broadcasting), no Python loop; differentiable in its inputs (the grader runs a
      gradcheck in ``float64``).
    """
    raise NotImplementedError("TODO: box_iou")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """非极大值抑制，与 ``torchvision.ops.nms`` 相同。

    - ``boxes``：``(N, 4)`` xyxy，``scores``：``(N,)``。
    - **先按分数从高到低排序**，依次处理：保留当前框，抑制所有与它 IoU **大于** ``iou_threshold`` 的剩余框
      （用 ``box_iou`` 一次算出当前框与其余框的一整行 IoU）。
    - 返回保留的框在原输入中的下标，``int64``，按分数从高到低排列。``iou_threshold = 1.0`` 时保留所有框；
      ``N = 0`` 时返回空的 ``int64`` 张量。

    Non-maximum suppression, as ``torchvision.ops.nms``.

    - ``boxes``: ``(N, 4)`` xyxy, ``scores``: ``(N,)``.
    - **Sort by score, highest first**, then go through the boxes: keep the current one and suppress
      every remaining box whose IoU with it is **greater than** ``iou_threshold`` (one ``box_iou`` row
      between the current box and the others).
    - Return the kept boxes' indices in the input, ``int64``, in descending order of score.
      ``iou_threshold = 1.0`` keeps every box; ``N = 0`` gives an empty ``int64`` tensor.
    """
    raise NotImplementedError("TODO: nms")


def filter_detections(pred: dict[str, torch.Tensor], score_threshold: float) -> dict[str, torch.Tensor]:
    """按分数过滤一张图像的检测结果（Faster R-CNN 输出字典的格式）。

    - ``pred``：``{"boxes": (N, 4) 浮点, "labels": (N,) int64, "scores": (N,) 浮点}``。
    - 返回同样三个键的新字典，只保留 ``scores > score_threshold``（严格大于）的检测，**三个字段用同一个掩码**，
      保持原来的顺序和 dtype；``N = 0`` 或没有检测通过时，返回的张量长度为 0（``boxes`` 形状为 ``(0, 4)``）。

    Filter one image's detections by score (the format of a Faster R-CNN output dict).

    - ``pred``: ``{"boxes": (N, 4) float, "labels": (N,) int64, "scores": (N,) float}``.
    - Return a new dict with the same three keys holding only the detections with
      ``scores > score_threshold`` (strictly greater), **one mask for all three fields**, in their
      original order and dtypes; with ``N = 0`` or no detection passing, the tensors have length 0
      (``boxes`` of shape ``(0, 4)``).
    """
    raise NotImplementedError("TODO: filter_detections")
