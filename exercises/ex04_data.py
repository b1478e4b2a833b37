"""练习 4：Dataset、DataLoader 与数据增强 / Exercise 4: Dataset, DataLoader and augmentation.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex04`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex04`` (one task: ``grader check ex04 -k pad_collate``).

评分程序会在它自己的代码里创建你的数据集和加载器（例如 ``ArrayDataset(x, y)``、
``make_loaders(ds, 0.2, 8, seed=3)``），遍历它们并检查取出的样本。图像文件夹由评分程序在临时目录里写好。
``build_transforms`` 需要 torchvision：请在函数**内部**导入它（``from torchvision import transforms``），
这样没有安装 torchvision 时其它任务仍能评分。
The grader builds your datasets and loaders in its own code (e.g. ``ArrayDataset(x, y)``,
``make_loaders(ds, 0.2, 8, seed=3)``), iterates over them and inspects what comes out. The image
folders are written by the grader into a temporary directory. ``build_transforms`` needs
torchvision: import it **inside** the function (``from torchvision import transforms``) so the
other tasks can still be graded where torchvision is not installed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class ArrayDataset(Dataset):
    """把 NumPy 特征和标签包装成 ``Dataset``。

    - ``ArrayDataset(data, labels, transform=None)``：``data`` 形状 ``(N, *)``，任意数值 dtype
      （例如 float64 或 uint8）；``labels`` 形状 ``(N,)``，整数。
    - 在 ``__init__`` 中**只转换一次**：特征转为 float32 张量，标签转为 int64 张量。不要在
      ``__getitem__`` 里每次都转换或复制整个数组（一次取样的代价应与 N 无关，有速度测试）。
    - ``len(ds)`` 返回 N。
    - ``ds[i]`` 返回 ``(sample, label)``：``sample`` 是 float32 张量，形状 ``data.shape[1:]``；
      ``label`` 是 0 维 int64 张量（``torch.tensor(3)``，不是 ``torch.tensor([3])``），所以
      ``DataLoader(ds, batch_size=B)`` 给出形状 ``(B, *)`` 和 ``(B,)`` 的批次（``CrossEntropyLoss`` 需要）。
    - 支持负索引：``ds[-1]`` 是最后一个样本。
    - 若给了 ``transform``，对每个样本调用 ``transform(sample)``（传入 float32 张量），返回它的结果；
      标签不经过 ``transform``。

    Wrap NumPy features and labels as a ``Dataset``.

    - ``ArrayDataset(data, labels, transform=None)``: ``data`` has shape ``(N, *)`` and any numeric
      dtype (float64 or uint8, say); ``labels`` has shape ``(N,)`` and holds integers.
    - Convert **once**, in ``__init__``: the features to a float32 tensor, the labels to an int64
      tensor. Do not convert or copy the whole array again in ``__getitem__`` (one lookup must not
      cost time proportional to N; there is a speed test).
    - ``len(ds)`` is N.
    - ``ds[i]`` returns ``(sample, label)``: ``sample`` a float32 tensor of shape ``data.shape[1:]``;
      ``label`` a 0-dim int64 tensor (``torch.tensor(3)``, not ``torch.tensor([3])``), so
      ``DataLoader(ds, batch_size=B)`` gives batches of shape ``(B, *)`` and ``(B,)`` (what
      ``CrossEntropyLoss`` expects).
    - Negative indices work: ``ds[-1]`` is the last sample.
    - With a ``transform``, return ``transform(sample)`` (called with the float32 tensor) as the
      sample; the label does not go through the transform.
    """

    def __init__(self, data: np.ndarray, labels: np.ndarray, transform: Callable | None = None) -> None:
        raise NotImplementedError("TODO: ArrayDataset.__init__")

    def __len__(self) -> int:
        raise NotImplementedError("TODO: ArrayDataset.__len__")

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("TODO: ArrayDataset.__getitem__")


class ImageFolderDataset(Dataset):
    """读取 ``root_dir/类名/图像文件`` 结构的图像分类数据集（类似 torchvision 的 ``ImageFolder``）。

    - ``ImageFolderDataset(root_dir, transform=None, extensions=(".png", ".jpg", ".jpeg"))``。
    - ``self.classes``：``root_dir`` 下**所有子目录**的名字，按字母顺序排序（``sorted``；
      ``os.listdir`` 的顺序取决于文件系统，不能直接用）。根目录下的普通文件（``readme.md``、
      ``.DS_Store``……）不是类别。空的子目录也是一个类别（只是没有样本）。
    - ``self.class_to_idx``：``{类名: 它在 classes 中的下标}``。
    - ``self.samples``：``(图像路径, 类别下标)`` 的列表，路径为 ``os.path.join(root_dir, 类名, 文件名)``；
      先按类别下标、类内再按文件名排序。只收录类目录中**直接**包含的、扩展名属于 ``extensions`` 的
      文件；扩展名比较**不区分大小写**（``cat.PNG`` 也算）。其它文件（``notes.txt``、``.DS_Store``）
      跳过。文件列表在 ``__init__`` 中建好一次。
    - ``len(ds)`` 为样本数；``ds[i]`` 返回 ``(image, label)``：``image`` 是用 PIL 打开并
      ``.convert("RGB")`` 的图像（灰度 PNG 也要转成 3 通道），若给了 ``transform`` 则返回
      ``transform(image)``；``label`` 是 Python ``int``。
    - 图像在 ``__getitem__`` 中读取（不要在 ``__init__`` 里把所有图像读进内存）。

    An image classification dataset laid out as ``root_dir/<class>/<image file>`` (like
    torchvision's ``ImageFolder``).

    - ``ImageFolderDataset(root_dir, transform=None, extensions=(".png", ".jpg", ".jpeg"))``.
    - ``self.classes``: the names of **all sub-directories** of ``root_dir``, sorted alphabetically
      (``sorted``; the order of ``os.listdir`` depends on the file system). Plain files at the root
      (``readme.md``, ``.DS_Store``, …) are not classes. An empty sub-directory is still a class
      (with no samples).
    - ``self.class_to_idx``: ``{class name: its index in classes}``.
    - ``self.samples``: a list of ``(image path, class index)`` with the path
      ``os.path.join(root_dir, class_name, file_name)``, ordered by class index and, within a class,
      by file name. Only files **directly** inside a class directory whose extension is one of
      ``extensions`` are taken; the extension test **ignores case** (``cat.PNG`` counts). Other
      files (``notes.txt``, ``.DS_Store``) are skipped. Build the list once, in ``__init__``.
    - ``len(ds)`` is the number of samples; ``ds[i]`` returns ``(image, label)``: ``image`` is the
      file opened with PIL and ``.convert("RGB")``-ed (a grayscale PNG becomes 3 channels too), or
      ``transform(image)`` when a transform is given; ``label`` is a Python ``int``.
    - Read the image in ``__getitem__`` (do not load every image into memory in ``__init__``).
    """

    classes: list[str]
    class_to_idx: dict[str, int]
    samples: list[tuple[str, int]]

    def __init__(self, root_dir: str, transform: Callable | None = None,
                 extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg")) -> None:
        raise NotImplementedError("TODO: ImageFolderDataset.__init__")

    def __len__(self) -> int:
        raise NotImplementedError("TODO: ImageFolderDataset.__len__")

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        raise NotImplementedError("TODO: ImageFolderDataset.__getitem__")


def make_loaders(dataset: Dataset, val_fraction: float, batch_size: int, seed: int = 0
                 ) -> tuple[DataLoader, DataLoader]:
    """用固定种子把数据集随机划分为训练集和验证集，返回 ``(train_loader, val_loader)``。

    - 验证集大小 ``n_val = floor(len(dataset) * val_fraction)``（``math.floor``），训练集为其余
      ``len(dataset) - n_val`` 个样本。两部分不重叠，合起来正好是整个数据集。``val_fraction`` 可以为 0
      （验证加载器为空）。
    - 划分是随机的，且只由 ``seed`` 决定：请用 ``torch.Generator().manual_seed(seed)``（例如
      ``random_split(..., generator=...)``）。**不要**使用或改变全局随机状态（``torch.manual_seed``、
      不带 generator 的 ``random_split``/``randperm``、``np.random``）。
    - 训练加载器：``shuffle=True``，并传入自己的 ``generator=torch.Generator().manual_seed(seed)``，
      这样同一个 ``seed`` 的第一轮顺序总是相同，且不受全局随机状态影响。
    - 验证加载器：``shuffle=False``（每一轮顺序相同）。
    - 两者都用 ``batch_size``、``num_workers=0``，并保留最后一个不完整的批次（``drop_last=False``）。
    - 相同的 ``seed`` 给出相同的划分和顺序；不同的 ``seed`` 给出不同的划分。

    Split a dataset at random, with a fixed seed, into training and validation parts; return
    ``(train_loader, val_loader)``.

    - The validation part has ``n_val = floor(len(dataset) * val_fraction)`` samples
      (``math.floor``), the training part the other ``len(dataset) - n_val``. They do not overlap
      and together hold the whole dataset. ``val_fraction`` may be 0 (an empty validation loader).
    - The split is random and decided by ``seed`` alone: use ``torch.Generator().manual_seed(seed)``
      (e.g. ``random_split(..., generator=...)``). Do **not** use or change the global random state
      (``torch.manual_seed``, ``random_split``/``randperm`` without a generator, ``np.random``).
    - Training loader: ``shuffle=True`` with a generator of its own,
      ``generator=torch.Generator().manual_seed(seed)``, so one ``seed`` always gives the same first
      epoch order, whatever the global random state.
    - Validation loader: ``shuffle=False`` (the same order every epoch).
    - Both use ``batch_size`` and ``num_workers=0`` and keep the last, partial batch
      (``drop_last=False``).
    - The same ``seed`` gives the same split and order; different seeds give different splits.
    """
    raise NotImplementedError("TODO: make_loaders")


def build_vocab(texts: list[str], min_freq: int = 2) -> dict[str, int]:
    """由文本构建词表 ``{词: 下标}``。

    - 分词就是 ``text.split()``（按空白切分，不改大小写，不处理标点）。
    - 特殊词固定：``"<PAD>"`` 为 0，``"<UNK>"`` 为 1。
    - 在所有文本中出现次数 ``>= min_freq`` 的词（恰好等于 ``min_freq`` 的也收录）从 2 开始连续编号，
      顺序为出现次数**降序**，次数相同时按词的字典序（``sorted(..., key=lambda w: (-count[w], w))``）。
      ``Counter.most_common()`` 在次数相同时保持首次出现的顺序，不符合要求。
    - 文本里恰好写作 ``"<PAD>"`` 或 ``"<UNK>"`` 的词不再另外编号：它们保留 0 和 1。
    - 空语料返回 ``{"<PAD>": 0, "<UNK>": 1}``。
    - 要处理约 20 000 条文本：用 ``collections.Counter`` 一次计数，不要对每个词调用 ``list.count``。

    Build a vocabulary ``{token: index}`` from texts.

    - Tokens are ``text.split()`` (split on whitespace; no lower-casing, no punctuation handling).
    - The specials are fixed: ``"<PAD>"`` is 0, ``"<UNK>"`` is 1.
    - Tokens that occur ``>= min_freq`` times over all texts (exactly ``min_freq`` included) get
      consecutive indices from 2, ordered by count **descending** and, for equal counts, by the
      token's alphabetical order (``sorted(..., key=lambda w: (-count[w], w))``).
      ``Counter.most_common()`` keeps first-seen order among equal counts: not what is asked.
    - A text token written exactly ``"<PAD>"`` or ``"<UNK>"`` gets no new index: it keeps 0 or 1.
    - An empty corpus gives ``{"<PAD>": 0, "<UNK>": 1}``.
    - It must handle some 20 000 texts: count once with ``collections.Counter``, not with
      ``list.count`` per token.
    """
    raise NotImplementedError("TODO: build_vocab")


def encode(text: str, vocab: dict[str, int], max_len: int) -> torch.Tensor:
    """把文本编码成定长的下标张量：int64，形状 ``(max_len,)``。

    - 分词与 ``build_vocab`` 相同（``text.split()``）；每个词查 ``vocab``，不在词表中的词为 1（``<UNK>``）。
    - 超过 ``max_len`` 个词时保留**前** ``max_len`` 个；不足时在**右侧**用 0（``<PAD>``）补齐。
    - 空文本得到全 0。

    Encode a text as a fixed-length tensor of indices: int64, shape ``(max_len,)``.

    - Tokens as in ``build_vocab`` (``text.split()``); each token is looked up in ``vocab``, a token
      missing from it gives 1 (``<UNK>``).
    - With more than ``max_len`` tokens keep the **first** ``max_len``; with fewer, pad on the
      **right** with 0 (``<PAD>``).
    - An empty text gives all zeros.
    """
    raise NotImplementedError("TODO: encode")


def pad_collate(batch: list[tuple[torch.Tensor, int]], pad_value: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``DataLoader`` 的 ``collate_fn``：把变长序列补齐成一个批次。

    - ``batch`` 是 ``[(seq, label), ...]``：``seq`` 形状 ``(L_i, *)``（通常是 int64 词下标 ``(L_i,)``，
      也可以是每步带特征的 ``(L_i, D)``），同一批次中尾部维度和 dtype 相同；``label`` 是 ``int``
      或 0 维整数张量。每个 ``L_i >= 1``。
    - 返回 ``(padded, lengths, labels)``：
      ``padded`` 形状 ``(B, T, *)``，``T = max(L_i)``，dtype 和设备与序列相同，``padded[i, :L_i]``
      等于第 i 个序列，其余位置为 ``pad_value``（**批次在第 0 维**：``pad_sequence`` 默认
      ``batch_first=False``）；``lengths`` 是补齐**前**的真实长度，int64，形状 ``(B,)``，
      **总在 CPU 上**（``pack_padded_sequence`` 要求）；``labels`` 为 int64，形状 ``(B,)``。
    - 要快：用 ``torch.nn.utils.rnn.pad_sequence``，不要逐个元素用 Python 循环赋值（有速度测试）。
    - 浮点序列若 ``requires_grad``，结果要保留计算图（梯度能传回每个序列的有效位置），因此也可以用它
      来补齐模型的变长输出。不要用 ``.tolist()``/``.item()``/``torch.tensor(seq)`` 重新构造数据。

    A ``collate_fn`` for ``DataLoader``: pad variable-length sequences into one batch.

    - ``batch`` is ``[(seq, label), ...]``: ``seq`` has shape ``(L_i, *)`` (usually int64 token
      indices ``(L_i,)``, possibly per-step features ``(L_i, D)``), with the same trailing dims and
      dtype across the batch; ``label`` is an ``int`` or a 0-dim integer tensor. Every ``L_i >= 1``.
    - Return ``(padded, lengths, labels)``: ``padded`` of shape ``(B, T, *)`` with
      ``T = max(L_i)``, the sequences' dtype and device, ``padded[i, :L_i]`` equal to sequence i
      and ``pad_value`` everywhere else (**batch first**: ``pad_sequence`` defaults to
      ``batch_first=False``); ``lengths`` the true lengths **before** padding, int64 of shape
      ``(B,)``, **always on the CPU** (``pack_padded_sequence`` requires it); ``labels`` int64 of
      shape ``(B,)``.
    - Be fast: use ``torch.nn.utils.rnn.pad_sequence``, not a Python loop over elements (there is a
      speed test).
    - Float sequences that require grad stay on the autograd graph (gradients reach the valid
      positions of every sequence), so this also pads a model's variable-length outputs. Do not
      rebuild the data with ``.tolist()``, ``.item()`` or ``torch.tensor(seq)``.
    """
    raise NotImplementedError("TODO: pad_collate")


def build_transforms(train: bool, size: int = 32,
                     mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225)) -> Callable:
    """返回作用于一张 PIL 图像（任意大小、任意模式，例如灰度 ``"L"``）的变换，输出 float32 张量 ``(3, size, size)``。

    请在函数内部导入 torchvision（``torchvision.transforms`` 或 ``transforms.v2`` 均可），按顺序组合：

    - 先转为 RGB（例如 ``transforms.Lambda(lambda img: img.convert("RGB"))``），这样灰度图也得到 3 个通道。
    - ``train=True``（训练，随机增强）：``RandomResizedCrop(size)`` → ``RandomHorizontalFlip()`` →
      ``ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)``。
    - ``train=False``（测试/验证，**确定性**，不能有任何随机操作）：``Resize(size)``（短边缩放到
      ``size``）→ ``CenterCrop(size)``（只有 ``Resize`` 时非方形图像得到的不是方形）。缩放作用在
      PIL 图像上（在 ``ToTensor`` 之前）。
    - 最后都是 ``ToTensor()``（像素缩放到 [0, 1]）→ ``Normalize(mean, std)``。``Normalize`` 作用于
      张量，必须放在 ``ToTensor`` 之后。
    - ``transforms.v2`` 返回的 ``tv_tensors.Image``（``torch.Tensor`` 的子类）也可以。
    - 随机操作使用 PyTorch 的全局随机数（torchvision 默认如此），因此 ``torch.manual_seed`` 之后
      训练变换的结果可以复现。

    Return a transform of one PIL image (any size, any mode such as grayscale ``"L"``) into a float32
    tensor ``(3, size, size)``.

    Import torchvision inside the function (``torchvision.transforms`` or ``transforms.v2``) and
    compose, in this order:

    - First convert to RGB (e.g. ``transforms.Lambda(lambda img: img.convert("RGB"))``), so a
      grayscale image also gets 3 channels.
    - ``train=True`` (training, random augmentation): ``RandomResizedCrop(size)`` →
      ``RandomHorizontalFlip()`` → ``ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)``.
    - ``train=False`` (test/validation, **deterministic**, no random step at all): ``Resize(size)``
      (the short side to ``size``) → ``CenterCrop(size)`` (``Resize`` alone leaves a non-square
      image non-square). Resize the PIL image (before ``ToTensor``).
    - Both end with ``ToTensor()`` (pixels scaled to [0, 1]) → ``Normalize(mean, std)``.
      ``Normalize`` works on tensors, so it comes after ``ToTensor``.
    - A ``tv_tensors.Image`` (the ``torch.Tensor`` subclass ``transforms.v2`` returns) is fine too.
    - The random steps draw from PyTorch's global random state (torchvision's default), so after
      ``torch.manual_seed`` the training transform's output is reproducible.
    """
    raise NotImplementedError("TODO: build_transforms")
