"""Autotests for ex04_data: datasets, loaders, vocabularies, padding and image transforms.

Datasets, loaders and transforms never leave the worker: the tests drive them through the probes
in ``probes/ex04_data.py`` (which write the image folders, iterate the loaders and call the
transforms) and compute every expectation here: the classes and pixels of the files they asked
for, the index sets of a split, the padded batch of the sequences they sent.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_speed

pytestmark = pytest.mark.exercise("ex04_data")

# -- feedback ----------------------------------------------------------------------------------------
LABEL_INT64 = Msg("标签应为 int64：CrossEntropyLoss 需要 int64 类别下标（torch.long）",
                  "Labels must be int64: CrossEntropyLoss needs int64 class indices (torch.long)")
FEATURES_FLOAT32 = Msg("样本应为 float32：在 __init__ 中用 torch.as_tensor(data, dtype=torch.float32) 转换一次",
                       "Samples must be float32: convert once in __init__ with torch.as_tensor(data, dtype=torch.float32)")
LABEL_SCALAR = Msg("标签应为 0 维标量张量，批次后形状为 (B,)；`torch.tensor([y])` 会得到 (B, 1)",
                   "Labels should be 0-dim scalars that batch to (B,); `torch.tensor([y])` gives (B, 1)")
CONVERT_ONCE = Msg("在 __init__ 中转换一次，不要每次取样都转换或复制整个数组",
                   "Convert once in __init__; do not convert or copy the whole array on every lookup")
TRANSFORM = Msg("`transform` 应作用于每个样本（只作用于样本，不作用于标签）",
                "Apply `transform` to every sample (to the sample only, not the label)")

SORTED_CLASSES = Msg("类别编号依赖文件系统顺序：请用 sorted(...) 对子目录名排序",
                     "Class indices must not depend on the file system's order: sort the sub-directory names with sorted()")
SKIP_FILES = Msg("根目录下的普通文件不是类别，请用 os.path.isdir 过滤",
                 "Plain files at the root are not classes: skip non-directories (os.path.isdir)")
FILTER_EXT = Msg("请按扩展名过滤非图像文件（notes.txt、.DS_Store 不是图像）",
                 "Filter by extension: notes.txt and .DS_Store are not images")
EXT_CASE = Msg("扩展名比较应不区分大小写：cat.PNG 也是图像（先 `name.lower()` 再比较）",
               "The extension test must ignore case: cat.PNG is an image too (compare `name.lower()`)")
EXT_ARGUMENT = Msg("只收录扩展名属于 `extensions` 参数的文件", "Take only files whose extension is in the `extensions` argument")
TO_RGB = Msg("图像应 convert('RGB')，否则灰度图只有 1 个通道，批次中的通道数不一致",
             "Images must be convert('RGB')-ed; otherwise a grayscale image has 1 channel and batches mix channel counts")
SAMPLE_ORDER = Msg("`samples` 应先按类别下标、类内按文件名排序，路径为 os.path.join(root_dir, 类名, 文件名)",
                   "samples must be ordered by class index, then file name, with paths os.path.join(root_dir, class, file)")
EMPTY_CLASS = Msg("空的子目录也是一个类别（只是没有样本）", "An empty sub-directory is still a class (with no samples)")
BUILD_ONCE = Msg("文件列表应在 __init__ 中建好一次，之后新增的文件不应改变数据集",
                 "Build the file list once in __init__: files added later must not change the dataset")
READ_LAZILY = Msg("请在 __getitem__ 中读取图像文件，不要在 __init__ 中把所有图像读进内存",
                  "Read the image file in __getitem__; do not load every image into memory in __init__")
LABEL_PY_INT = Msg("标签应为 Python int（类别下标）", "The label must be a Python int (the class index)")

NO_VAL_SHUFFLE = Msg("验证集不应打乱：验证加载器用 shuffle=False", "Do not shuffle validation data: use shuffle=False for the val loader")
TRAIN_SHUFFLE = Msg("训练加载器应打乱（shuffle=True）", "The training loader must shuffle (shuffle=True)")
GENERATOR = Msg("划分或顺序不可复现/依赖全局随机状态：请传入 generator=torch.Generator().manual_seed(seed)",
                "The split or order is not reproducible or depends on the global random state: pass "
                "generator=torch.Generator().manual_seed(seed)")
GLOBAL_RNG = Msg("make_loaders 改变了全局随机状态：不要调用 torch.manual_seed，也不要使用不带 `generator` 的 random_split/randperm",
                 "make_loaders changed the global random state: do not call torch.manual_seed or use random_split/randperm "
                 "without a generator")
OVERLAP = Msg("训练集与验证集有重叠样本，或有样本被漏掉", "Train/val overlap, or some samples are in neither part")
VAL_SIZE = Msg("验证集大小应为 floor(len(dataset) * val_fraction)", "The validation part must hold floor(len(dataset) * val_fraction) samples")
KEEP_LAST = Msg("应保留最后一个不完整的批次（drop_last=False），并使用 batch_size",
                "Keep the last, partial batch (drop_last=False) and use batch_size")
NUM_WORKERS = Msg("两个加载器都应使用 num_workers=0（不启动子进程，结果可复现）",
                  "Both loaders use num_workers=0 (no worker processes, reproducible results)")
DEFAULT_SEED = Msg("`seed` 的默认值应为 0：不传 `seed` 时结果应与 seed=0 相同",
                   "The default seed is 0: without a seed argument the result equals that of seed=0")
SEED_IGNORED = Msg("不同的 `seed` 应给出不同的划分", "Different seeds must give different splits")

VOCAB_ORDER = Msg("词表顺序需按频率降序、同频按字典序：sorted(key=lambda w: (-count[w], w))",
                  "Sort by count descending, then alphabetically: sorted(key=lambda w: (-count[w], w))")
MIN_FREQ = Msg("频率恰好等于 min_freq 的词应被收录（>=，不是 >）", "Include tokens whose count equals min_freq (>=, not >)")
SPECIALS = Msg("<PAD> 应为 0，<UNK> 应为 1，其余词从 2 开始连续编号", "<PAD> is 0, <UNK> is 1, the other tokens are numbered from 2 on")
SPECIAL_TOKEN = Msg("文本中的 '<UNK>'/'<PAD>' 不应再次编号：它们保留 1 和 0",
                    "A '<UNK>' or '<PAD>' token in the text gets no new index: it keeps 1 or 0")
SPLIT_TOKENS = Msg("分词请用 text.split()（按空白切分，不改大小写）", "Tokenise with text.split() (split on whitespace, keep the case)")
USE_COUNTER = Msg("请用 collections.Counter 一次计数，不要对每个词调用 list.count",
                  "Count once with collections.Counter, not with list.count per token")

RIGHT_PAD = Msg("应在右侧用 0 填充到 max_len", "Right-pad with 0 up to max_len")
KEEP_FIRST = Msg("超长时保留前 max_len 个词", "Keep the first max_len tokens when the text is longer")
OOV_UNK = Msg("不在词表中的词应编码为 1（<UNK>）", "Tokens missing from the vocabulary map to 1 (<UNK>)")
ENCODE_INT64 = Msg("`encode` 应返回 int64 张量（nn.Embedding 需要整数下标）",
                   "encode must return an int64 tensor (nn.Embedding needs integer indices)")

BATCH_FIRST = Msg("形状应为 (B, T)：pad_sequence 默认 batch_first=False，请传入 batch_first=True",
                  "The shape must be (B, T): pad_sequence defaults to batch_first=False; pass batch_first=True")
TRUE_LENGTHS = Msg("`lengths` 应为补齐前的真实长度", "lengths must be the true lengths before padding")
PAD_VALUE = Msg("补齐的位置应等于 pad_value", "Padded positions must equal pad_value")
LENGTHS_CPU = Msg("`lengths` 应总在 CPU 上（pack_padded_sequence 要求），例如 torch.tensor([len(s) for s in seqs])",
                  "lengths must always be on the CPU (pack_padded_sequence requires it), e.g. torch.tensor([len(s) for s in seqs])")
PAD_DEVICE = Msg("`padded` 应与序列在同一设备上：新建张量时请传入 device=seqs[0].device（或用 pad_sequence）",
                 "padded must be on the sequences' device: pass device=seqs[0].device when creating it (or use pad_sequence)")
PAD_GRAPH = Msg("补齐后的结果脱离了计算图：不要用 .tolist()/.item()/torch.tensor(seq) 重建数据，请用 pad_sequence",
                "The padded result left the autograd graph: do not rebuild the data with .tolist(), .item() or "
                "torch.tensor(seq); use pad_sequence")
USE_PAD_SEQUENCE = Msg("pad_collate 太慢：请使用 torch.nn.utils.rnn.pad_sequence，不要逐元素循环",
                       "pad_collate is too slow: use torch.nn.utils.rnn.pad_sequence, not an element-wise loop")

EVAL_DETERMINISTIC = Msg("测试变换必须是确定性的（不要随机翻转/裁剪/颜色抖动）",
                         "The test transform must be deterministic (no random flip, crop or colour jitter)")
NORMALIZE_AFTER = Msg("Normalize 作用于张量，需放在 ToTensor 之后", "Normalize works on tensors: put it after ToTensor")
CENTER_CROP = Msg("Resize(int) 只缩放短边，请再 CenterCrop(size)", "Resize(int) scales the short side only: add CenterCrop(size)")
NORMALIZE = Msg("输出应经过 Normalize(mean, std)：黑色像素应得到 -mean/std", "The output must go through Normalize(mean, std): "
                "a black pixel gives -mean/std")
TRAIN_RANDOM = Msg("训练变换应包含随机增强（RandomResizedCrop、RandomHorizontalFlip、ColorJitter）",
                   "The training transform must augment at random (RandomResizedCrop, RandomHorizontalFlip, ColorJitter)")
GLOBAL_SEED = Msg("训练变换在相同的 torch.manual_seed 下应得到相同结果：请使用 `torchvision` 的随机变换（它们使用 PyTorch 的全局随机数）",
                  "Under the same torch.manual_seed the training transform must give the same result: use torchvision's "
                  "random transforms (they draw from PyTorch's global random state)")
JITTER = Msg("训练变换的颜色抖动应为 ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)",
             "The training transform's colour jitter is ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)")
RESIZE_THEN_CROP = Msg("测试变换应为 Resize(size) → CenterCrop(size) → ToTensor() → Normalize(mean, std)，缩放作用在 PIL 图像上",
                       "The test transform is Resize(size) → CenterCrop(size) → ToTensor() → Normalize(mean, std), resizing "
                       "the PIL image")


# -- helpers -------------------------------------------------------------------------------------------

def _error(res: dict, what: str, hint: Msg | None = None) -> None:
    if res.get("error"):
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {res['error']}", f"{what}: your code raised {res['error']}"), hint)


def _pairs(value: object) -> dict | None:
    """A dict the probe sent as ``{"pairs": [[k, v], ...]}``; None if it was no dict."""
    if isinstance(value, dict) and "pairs" in value:
        return {(k if isinstance(k, str) else repr(k)): v for k, v in value["pairs"]}
    return None


# -- T4.1 ArrayDataset ------------------------------------------------------------------------------
def _arrays(rng: torch.Generator, n: int, shape: tuple[int, ...], classes: int = 5,
            dtype: torch.dtype = torch.float64) -> tuple[np.ndarray, np.ndarray]:
    data = torch.randn(n, *shape, generator=rng, dtype=torch.float64)
    if dtype == torch.uint8:
        data = torch.randint(0, 256, (n, *shape), generator=rng, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=rng)
    return data.numpy(), labels.numpy()


def _array_probe(student, what: str, **kwargs) -> dict:
    res = student.probe("array_dataset", **kwargs)
    _error(res, what)
    return res


def _check_item(item: object, data: np.ndarray, labels: np.ndarray, i: int, what: str, scale: float = 1.0,
                shift: float = 0.0) -> None:
    checks.assert_true(isinstance(item, list) and len(item) == 2, Msg(
        f"{what}：应返回 `(sample, label)` 二元组，实际得到 {item!r:.80}", f"{what}: expected a (sample, label) pair, got {item!r:.80}"))
    sample, label = item
    checks.assert_dtype(sample, torch.float32, f"{what}[0]", hint=FEATURES_FLOAT32)
    checks.assert_shape(sample, data.shape[1:], f"{what}[0]")
    expected = torch.from_numpy(data[i]).to(torch.float32) * scale + shift
    checks.assert_close(sample, expected, f"{what}[0]", hint=TRANSFORM if scale != 1.0 or shift else None)
    checks.assert_dtype(label, torch.int64, f"{what}[1]", hint=LABEL_INT64)
    checks.assert_shape(label, (), f"{what}[1]", hint=LABEL_SCALAR)
    checks.assert_close(label, torch.tensor(int(labels[i])), f"{what}[1]",
                        hint=TRANSFORM if scale != 1.0 or shift else None)


@graded(task="ArrayDataset", kind="shape", points=1, visibility="public")
def test_array_dataset_items(student, rng):
    """ds[i] is a float32 sample of shape data.shape[1:] and a 0-dim int64 label; len(ds) is N."""
    data, labels = _arrays(rng, 10, (3, 4))
    res = _array_probe(student, "ArrayDataset(data[10, 3, 4], labels[10])", data=data, labels=labels, indices=[0, 7])
    checks.assert_equal(res["len"], 10, "len(ArrayDataset(data[10, 3, 4], labels[10]))")
    for item, i in zip(res["items"], (0, 7)):
        _check_item(item, data, labels, i, f"ds[{i}]")


@graded(task="ArrayDataset", kind="shape", points=1, visibility="public")
def test_array_dataset_batches(student, rng):
    """DataLoader(ds, batch_size=4) over 10 samples gives (4, 3, 4)/(4,) batches and a last one of 2."""
    data, labels = _arrays(rng, 10, (3, 4))
    res = _array_probe(student, "DataLoader(ArrayDataset(data[10, 3, 4], labels[10]), batch_size=4)", data=data,
                       labels=labels, batch_size=4)
    sizes = [4, 4, 2]
    checks.assert_equal(len(res["batches"]), 3, "len(list(DataLoader(ds, batch_size=4)))")
    start = 0
    for k, ((x, y), b) in enumerate(zip(res["batches"], sizes)):
        checks.assert_shape(x, (b, 3, 4), f"batches[{k}][0]")
        checks.assert_shape(y, (b,), f"batches[{k}][1]", hint=LABEL_SCALAR)
        checks.assert_dtype(y, torch.int64, f"batches[{k}][1]", hint=LABEL_INT64)
        checks.assert_close(x, torch.from_numpy(data[start:start + b]).float(), f"batches[{k}][0]")
        checks.assert_close(y, torch.from_numpy(labels[start:start + b]).long(), f"batches[{k}][1]")
        start += b


@graded(task="ArrayDataset", kind="accuracy", points=1, visibility="public")
def test_array_dataset_transform(student, rng):
    """A transform that doubles the sample is applied to every sample, and to the sample only."""
    data, labels = _arrays(rng, 6, (5,), classes=3)
    res = _array_probe(student, "ArrayDataset(data, labels, transform=lambda x: x * 2)", data=data, labels=labels,
                       indices=[0, 3, 5], transform="double")
    for item, i in zip(res["items"], (0, 3, 5)):
        _check_item(item, data, labels, i, f"ArrayDataset(data, labels, transform=lambda x: x * 2)[{i}]", scale=2.0)


@graded(task="ArrayDataset", kind="accuracy", points=1, visibility="hidden")
def test_array_dataset_edge_cases(student, rng):
    """Negative indices, uint8 images and int32 labels converted, a shifting transform, a 1-sample dataset."""
    data, labels = _arrays(rng, 9, (2, 3, 3), dtype=torch.uint8)
    labels = labels.astype(np.int32)
    res = _array_probe(student, "ArrayDataset(data_uint8, labels_int32)", data=data, labels=labels, indices=[-1, -9, 4])
    checks.assert_equal(res["len"], 9, "len(ArrayDataset(data[9, 2, 3, 3], labels[9]))")
    for item, i in zip(res["items"], (-1, -9, 4)):
        _check_item(item, data, labels, i % 9, f"ds[{i}]")
    data, labels = _arrays(rng, 7, (4,))
    res = _array_probe(student, "ArrayDataset(data, labels, transform=lambda x: x + 10)", data=data, labels=labels,
                       indices=[2, -2], transform="add_ten", batch_size=3)
    for item, i in zip(res["items"], (2, -2)):
        _check_item(item, data, labels, i % 7, f"ArrayDataset(..., transform=lambda x: x + 10)[{i}]", shift=10.0)
    checks.assert_equal([list(y.shape) for _, y in res["batches"]], [[3], [3], [1]],
                        "label_shapes(DataLoader(ds, batch_size=3))", hint=LABEL_SCALAR)
    data, labels = _arrays(rng, 1, (3,))
    res = _array_probe(student, "ArrayDataset(data[1, 3], labels[1])", data=data, labels=labels, indices=[0],
                       batch_size=4)
    checks.assert_equal(res["len"], 1, "len(ArrayDataset(data[1, 3], labels[1]))")
    _check_item(res["items"][0], data, labels, 0, "ds[0]")


@graded(task="ArrayDataset", kind="speed", points=1, visibility="hidden")
def test_array_dataset_lookup_speed(student, reference_worker, spec, rng):
    """Random lookups cost no more than a few times the reference's: __getitem__ does not convert the whole array."""
    p = spec.param("array_speed")

    def run(impl):
        return lambda seed: impl.probe("array_lookups", n=p["n"], shape=p["shape"], lookups=p["lookups"], seed=seed)

    def check(got: dict, want: dict) -> None:
        checks.assert_close(got["sample_sum"], want["sample_sum"], "sum(ds[i][0] for i in lookups)", atol=1e-3)
        checks.assert_equal(got["label_sum"], want["label_sum"], "sum(ds[i][1] for i in lookups)")

    result = compare_speed(run(student), run(reference_worker), lambda i: seed_from(rng), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "ArrayDataset.__getitem__", hint=CONVERT_ONCE)


# -- T4.2 ImageFolderDataset ---------------------------------------------------------------------------
def _image(rng: torch.Generator, gray: bool = False) -> torch.Tensor:
    h, w = (int(v) for v in torch.randint(3, 9, (2,), generator=rng))
    return torch.randint(0, 256, (h, w) if gray else (h, w, 3), generator=rng, dtype=torch.uint8)


def _rgb(pixels: torch.Tensor) -> torch.Tensor:
    """What convert('RGB') makes of the pixels: a grayscale image repeats its channel."""
    return pixels.unsqueeze(-1).expand(*pixels.shape, 3).contiguous() if pixels.dim() == 2 else pixels


def _folder_expectation(dirs: list[str], images: dict[str, torch.Tensor], extensions: tuple[str, ...]
                        ) -> tuple[list[str], list[list]]:
    """Classes and samples the spec asks for: every top-level directory, sorted; image files per class."""
    classes = sorted({d.split("/")[0] for d in dirs} | {p.split("/")[0] for p in images if "/" in p})
    samples = []
    for idx, name in enumerate(classes):
        files = sorted(p.split("/", 1)[1] for p in images if p.startswith(name + "/") and p.count("/") == 1
                       and p.lower().endswith(extensions))
        samples += [[f"{name}/{f}", idx] for f in files]
    return classes, samples


def _folder_probe(student, what: str, **kwargs) -> dict:
    pytest.importorskip("PIL")
    res = student.probe("image_folder", **kwargs)
    if res.get("error"):
        error = res["error"]
        hint = (SKIP_FILES if res.get("error_type") == "NotADirectoryError" else
                FILTER_EXT if "UnidentifiedImageError" in error or "cannot identify" in error else None)
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {error}", f"{what}: your code raised {error}"), hint)
    return res


def _check_index(res: dict, classes: list[str], samples: list[list], what: str, stray_files: list[str] = (),
                 empty: list[str] = (), case_files: list[str] = ()) -> None:
    got_classes = res["classes"]
    if isinstance(got_classes, list) and sorted(map(str, got_classes)) == classes and got_classes != classes:
        checks.fail(Msg(f"{what}.classes = {got_classes}，应为 {classes}", f"{what}.classes = {got_classes}, expected {classes}"),
                    SORTED_CLASSES)
    extra = [c for c in got_classes or [] if c in stray_files] if isinstance(got_classes, list) else []
    missing_empty = [c for c in empty if isinstance(got_classes, list) and c not in got_classes]
    checks.assert_equal(got_classes, classes, f"{what}.classes",
                        hint=SKIP_FILES if extra else EMPTY_CLASS if missing_empty else None)
    checks.assert_equal(_pairs(res["class_to_idx"]), {c: i for i, c in enumerate(classes)}, f"{what}.class_to_idx")
    got = res["samples"]
    if isinstance(got, list) and all(isinstance(s, list) for s in got):
        paths = {s[0] for s in got}
        want = {s[0] for s in samples}
        extra = paths - want
        hint = (FILTER_EXT if extra and any(p.rsplit("/", 1)[-1] in stray_files for p in extra) else
                EXT_ARGUMENT if extra and all("." in p.rsplit("/", 1)[-1] for p in extra) else
                EXT_CASE if want - paths and all(p in case_files for p in want - paths) else
                SAMPLE_ORDER if paths == want else None)
    else:
        hint = None
    checks.assert_equal(got, samples, f"{what}.samples",
                        hint=hint)
    checks.assert_equal(res["len"], len(samples), f"len({what})")


def _check_items(res: dict, samples: list[list], images: dict[str, torch.Tensor], what: str,
                 tensors: bool = False) -> None:
    for i, ((path, label), item) in enumerate(zip(samples, res["items"])):
        image = item["image"]
        checks.assert_equal(item["label"], label, f"{what}[{i}][1]", hint=LABEL_PY_INT)
        expected = _rgb(images[path])
        if tensors:
            checks.assert_equal(image["kind"], "tensor", f"kind({what}[{i}][0])",
                                hint=Msg("给了 `transform` 时应返回 transform(image)", "With a transform, return transform(image)"))
            want = expected.permute(2, 0, 1).float() / 255
            checks.assert_close(image["tensor"], want, f"{what}[{i}][0]",
                                hint=TO_RGB if image["tensor"].shape[0] == 1 else None)
            continue
        checks.assert_equal(image["kind"], "pil", f"kind({what}[{i}][0])",
                            hint=Msg("不给 `transform` 时应返回 PIL 图像", "Without a transform, return the PIL image"))
        checks.assert_equal(image["mode"], "RGB", f"{what}[{i}][0].mode", hint=TO_RGB)
        checks.assert_equal(image["size"], [expected.shape[1], expected.shape[0]], f"{what}[{i}][0].size")
        checks.assert_close(image["pixels"], expected, f"np.asarray({what}[{i}][0])")


def _class_names(rng: torch.Generator, k: int) -> list[str]:
    """``k`` class names in an order that is neither sorted nor reverse-sorted (the creation order)."""
    pool = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak"]
    names = [pool[int(i)] for i in torch.randperm(len(pool), generator=rng)[:k]]
    while names in (sorted(names), sorted(names, reverse=True)):
        names = names[1:] + names[:1]
    return names


@graded(task="ImageFolderDataset", kind="shape", points=1, visibility="public")
def test_image_folder_index(student, rng):
    """Ten class folders created out of order: classes sorted, class_to_idx, samples and len follow the spec
    (ten, so that a directory listing's own order is sorted only by a 1-in-3.6-million chance)."""
    names = _class_names(rng, 10)
    images = {f"{c}/img_{k}.png": _image(rng) for c in names for k in range(int(torch.randint(1, 3, (1,), generator=rng)))}
    classes, samples = _folder_expectation(names, images, (".png", ".jpg", ".jpeg"))
    res = _folder_probe(student, "ImageFolderDataset(root)", dirs=names,
                        files=[{"path": p, "pixels": px} for p, px in images.items()], read=False)
    _check_index(res, classes, samples, "ImageFolderDataset(root)")


@graded(task="ImageFolderDataset", kind="accuracy", points=1, visibility="public")
def test_image_folder_items(student, rng):
    """ds[i] is the RGB PIL image with the file's pixels and its class index; a transform receives it."""
    names = _class_names(rng, 4)
    images = {f"{c}/{k}.png": _image(rng) for c in names for k in ("a", "b")}
    classes, samples = _folder_expectation(names, images, (".png", ".jpg", ".jpeg"))
    files = [{"path": p, "pixels": px} for p, px in images.items()]
    res = _folder_probe(student, "ImageFolderDataset(root)", dirs=names, files=files)
    _check_index(res, classes, samples, "ImageFolderDataset(root)")
    _check_items(res, samples, images, "ImageFolderDataset(root)")
    res = _folder_probe(student, "ImageFolderDataset(root, transform=to_tensor)", dirs=names, files=files,
                        to_tensor=True)
    _check_items(res, samples, images, "ImageFolderDataset(root, transform=to_tensor)", tensors=True)


def _hostile_layout(rng: torch.Generator) -> tuple[list[str], dict[str, torch.Tensor], list[dict], list[str]]:
    names = _class_names(rng, 5)
    images: dict[str, torch.Tensor] = {}
    for c in names[:-1]:  # the last class folder stays empty
        images[f"{c}/photo_1.png"] = _image(rng)
        images[f"{c}/photo_2.png"] = _image(rng, gray=True)
    texts = [{"path": f"{names[0]}/notes.txt", "text": "labelled by hand"},
             {"path": f"{names[1]}/.DS_Store", "text": "\x00\x01"},
             {"path": "readme.md", "text": "# dataset"},
             {"path": ".DS_Store", "text": "\x00\x01"}]
    return names, images, texts, ["notes.txt", ".DS_Store", "readme.md"]


@graded(task="ImageFolderDataset", kind="shape", points=1, visibility="hidden")
def test_image_folder_stray_files(student, rng):
    """Stray files at the root and in class folders are skipped; an empty class folder is still a class."""
    names, images, texts, stray = _hostile_layout(rng)
    classes, samples = _folder_expectation(names, images, (".png", ".jpg", ".jpeg"))
    res = _folder_probe(student, "ImageFolderDataset(root)", dirs=names,
                        files=texts + [{"path": p, "pixels": px} for p, px in images.items()], read=False)
    _check_index(res, classes, samples, "ImageFolderDataset(root)", stray_files=stray, empty=[names[-1]])


@graded(task="ImageFolderDataset", kind="accuracy", points=1, visibility="hidden")
def test_image_folder_grayscale_and_case(student, rng):
    """Grayscale PNGs come back as RGB; upper-case extensions count; `extensions` is honoured."""
    names = _class_names(rng, 3)
    images = {}
    for c in names:
        images[f"{c}/shot.PNG"] = _image(rng, gray=True)
        images[f"{c}/Shot2.Jpeg"] = _image(rng)
        images[f"{c}/z.png"] = _image(rng)
    case_files = [p for p in images if not p.endswith((".png", ".jpg", ".jpeg"))]
    files = [{"path": p, "pixels": px} for p, px in images.items()]
    classes, samples = _folder_expectation(names, images, (".png", ".jpg", ".jpeg"))
    res = _folder_probe(student, "ImageFolderDataset(root)", dirs=names, files=files)
    _check_index(res, classes, samples, "ImageFolderDataset(root)", case_files=case_files)
    _check_items(res, samples, images, "ImageFolderDataset(root)")
    classes, samples = _folder_expectation(names, images, (".png",))
    res = _folder_probe(student, "ImageFolderDataset(root, extensions=('.png',))", dirs=names, files=files,
                        extensions=[".png"], read=False)
    _check_index(res, classes, samples, "ImageFolderDataset(root, extensions=('.png',))", case_files=case_files)


@graded(task="ImageFolderDataset", kind="accuracy", points=1, visibility="hidden")
def test_image_folder_reads_lazily(student, rng):
    """The file list is built once in __init__; pixels are read in __getitem__ (files changed afterwards)."""
    names = _class_names(rng, 3)
    images = {f"{c}/{k}.png": _image(rng) for c in names for k in ("p", "q")}
    classes, samples = _folder_expectation(names, images, (".png", ".jpg", ".jpeg"))
    changed = {p: _image(rng) for p in list(images)[::2]}
    added = [{"path": f"{names[0]}/new.png", "pixels": _image(rng)}]
    res = _folder_probe(student, "ImageFolderDataset(root)", dirs=names,
                        files=[{"path": p, "pixels": px} for p, px in images.items()],
                        files_after=[{"path": p, "pixels": px} for p, px in changed.items()] + added)
    checks.assert_equal(res["samples"], samples, "ImageFolderDataset(root).samples", hint=BUILD_ONCE)
    checks.assert_equal(res["len"], len(samples), "len(ImageFolderDataset(root))", hint=BUILD_ONCE)
    final = {**images, **changed}
    for (path, _), item in zip(samples, res["items"]):
        pixels = item["image"].get("pixels")
        if path in changed and isinstance(pixels, torch.Tensor) and pixels.shape == images[path].shape \
                and torch.equal(pixels, images[path]):
            checks.fail(Msg(f"{path} 在创建数据集后被改写，ds[i] 却返回了旧的像素",
                            f"{path} was rewritten after the dataset was built, but ds[i] returned the old pixels"),
                        READ_LAZILY)
    _check_items(res, samples, final, "ImageFolderDataset(root)")


# -- T4.3 make_loaders ---------------------------------------------------------------------------------
def _loaders(student, n: int, val_fraction: float, batch_size: int, seed: int | None, global_seeds=(11, 12)) -> dict:
    res = student.probe("loaders", n=n, val_fraction=val_fraction, batch_size=batch_size, seed=seed,
                        global_seeds=list(global_seeds))
    checks.assert_equal(res["types"], ["DataLoader", "DataLoader"], "[type(train).__name__, type(val).__name__]")
    return res


def _indices(batches: list, what: str) -> list[int]:
    out = []
    for k, b in enumerate(batches):
        checks.assert_true(isinstance(b, torch.Tensor) and b.dim() == 1, Msg(
            f"{what}：第 {k} 个批次应为一维下标张量，实际为 {b!r:.60}", f"{what}: batch {k} should be a 1-D tensor of indices, "
            f"got {b!r:.60}"))
        out += [int(v) for v in b]
    return out


def _check_batch_sizes(batches: list, total: int, batch_size: int, what: str, loader: str) -> None:
    sizes = [len(b) for b in batches]
    full, rest = divmod(total, batch_size)
    checks.assert_equal(sizes, [batch_size] * full + ([rest] if rest else []), f"{what}: list(map(len, {loader}))", hint=KEEP_LAST)


def _check_split(res: dict, n: int, val_fraction: float, batch_size: int, what: str) -> tuple[list[int], list[int]]:
    epoch = res["epochs"][0]
    train, val = _indices(epoch["train"], f"{what}: train_loader"), _indices(epoch["val"], f"{what}: val_loader")
    n_val = math.floor(n * val_fraction)
    overlap = sorted(set(train) & set(val))
    missing = n - len(set(train) | set(val))
    # samples missing but no overlap, fewer than a batch, every training batch full: the partial batch was dropped
    dropped = not overlap and 0 < missing < batch_size and all(len(b) == batch_size for b in epoch["train"])
    checks.assert_true(not overlap and sorted(train + val) == list(range(n)), Msg(
        f"{what}：训练集与验证集的下标并集应恰好为 0..{n - 1}（重叠 {overlap[:5]}，共 {len(train)} + {len(val)} 个）",
        f"{what}: the train and val indices together must be exactly 0..{n - 1} (overlap {overlap[:5]}, "
        f"{len(train)} + {len(val)} indices)"), KEEP_LAST if dropped else OVERLAP)
    checks.assert_equal(len(val), n_val, f"{what}: len(val_indices)", hint=VAL_SIZE)
    _check_batch_sizes(epoch["train"], n - n_val, batch_size, what, "train_loader")
    _check_batch_sizes(epoch["val"], n_val, batch_size, what, "val_loader")
    return train, val


@graded(task="make_loaders", kind="shape", points=1, visibility="public")
def test_make_loaders_split_sizes(student, rng):
    """23 samples, val_fraction=0.3, batch_size=5: 17 train in batches 5,5,5,2; 6 val in 5,1; no overlap."""
    res = _loaders(student, 23, 0.3, 5, seed_from(rng))
    _check_split(res, 23, 0.3, 5, "make_loaders(ds[23], 0.3, 5)")


@graded(task="make_loaders", kind="accuracy", points=2, visibility="public")
def test_make_loaders_reproducible(student, rng):
    """The same seed gives the same split and first-epoch order whatever the global RNG; other seeds differ;
    val keeps its order, train reshuffles every epoch."""
    seed = seed_from(rng)
    what = f"make_loaders(ds[40], 0.25, 8, seed={seed})"
    first = _loaders(student, 40, 0.25, 8, seed, global_seeds=(1, 2))
    second = _loaders(student, 40, 0.25, 8, seed, global_seeds=(3, 4))
    train1, val1 = _check_split(first, 40, 0.25, 8, what)
    train2, val2 = _check_split(second, 40, 0.25, 8, what)
    checks.assert_equal(sorted(val2), sorted(val1), f"{what}: sorted(val_indices) #2", hint=GENERATOR)
    checks.assert_equal(train2, train1, f"{what}: train_order(epoch=1) #2", hint=GENERATOR)
    val_again = _indices(first["epochs"][1]["val"], what)
    checks.assert_equal(val_again, val1, f"{what}: val_order(epoch=2)", hint=NO_VAL_SHUFFLE)
    train_again = _indices(first["epochs"][1]["train"], what)
    checks.assert_true(train_again != train1 and train1 != sorted(train1), Msg(
        f"{what}：训练加载器的顺序没有打乱（或每轮相同）", f"{what}: the training loader does not shuffle (or repeats its order)"),
        TRAIN_SHUFFLE)
    other = _loaders(student, 40, 0.25, 8, seed + 1)
    _, val3 = _check_split(other, 40, 0.25, 8, f"make_loaders(ds[40], 0.25, 8, seed={seed + 1})")
    checks.assert_true(sorted(val3) != sorted(val1), Msg(
        f"seed={seed} 与 seed={seed + 1} 给出了相同的验证集", f"seed={seed} and seed={seed + 1} gave the same validation set"),
        SEED_IGNORED)


@graded(task="make_loaders", kind="shape", points=1, visibility="hidden")
def test_make_loaders_edge_cases(student, rng):
    """val_fraction=0 gives an empty val loader, 0.5 of 9 gives 4, a 1-sample dataset trains on it;
    num_workers is 0; the default seed is 0."""
    for n, frac, bs in ((12, 0.0, 5), (9, 0.5, 4), (1, 0.5, 3), (10, 0.99, 4)):
        res = _loaders(student, n, frac, bs, seed_from(rng))
        _check_split(res, n, frac, bs, f"make_loaders(ds[{n}], {frac}, {bs})")
        checks.assert_equal(res["num_workers"], [0, 0], "[train_loader.num_workers, val_loader.num_workers]",
                            hint=NUM_WORKERS)
    default, zero = _loaders(student, 20, 0.25, 4, None), _loaders(student, 20, 0.25, 4, 0)
    for part in ("train", "val"):
        checks.assert_equal(_indices(default["epochs"][0][part], f"make_loaders(ds[20], 0.25, 4): {part}_loader"),
                            _indices(zero["epochs"][0][part], f"make_loaders(ds[20], 0.25, 4, seed=0): {part}_loader"),
                            f"make_loaders(ds[20], 0.25, 4): {part}_order(epoch=1)", hint=DEFAULT_SEED)


@graded(task="make_loaders", kind="accuracy", points=1, visibility="hidden")
def test_make_loaders_global_rng_untouched(student, rng):
    """make_loaders leaves torch's global random state exactly as it found it."""
    res = _loaders(student, 30, 0.2, 4, seed_from(rng))
    checks.assert_true(torch.equal(res["rng_before"], res["rng_after"]), Msg(
        "torch.random.get_rng_state() 在调用 make_loaders 前后不同", "torch.random.get_rng_state() differs before and after "
        "make_loaders"), GLOBAL_RNG)


# -- T4.4 build_vocab ------------------------------------------------------------------------------------
def _vocab(texts: list[str], min_freq: int) -> dict[str, int]:
    counts = Counter(t for text in texts for t in text.split())
    kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in ("<PAD>", "<UNK>")),
                  key=lambda t: (-counts[t], t))
    return {"<PAD>": 0, "<UNK>": 1, **{t: i + 2 for i, t in enumerate(kept)}}


def _vocab_hint(got: object, texts: list[str], min_freq: int) -> Msg | None:
    if not isinstance(got, dict):
        return None
    want = _vocab(texts, min_freq)
    if got.get("<PAD>") != 0 or got.get("<UNK>") != 1:
        return SPECIALS
    if set(got) == set(want) and got != want:
        return VOCAB_ORDER
    if set(got) < set(want) and all(Counter(t for x in texts for t in x.split())[w] == min_freq
                                    for w in set(want) - set(got)):
        return MIN_FREQ
    if sorted(got.values()) != list(range(len(got))):
        return SPECIALS
    return None


def _check_vocab(student, texts: list[str], min_freq: int | None, what: str) -> None:
    got = student.build_vocab(texts) if min_freq is None else student.build_vocab(texts, min_freq)
    checks.assert_true(isinstance(got, dict), Msg(f"{what}：应返回 dict，实际得到 {type(got).__name__}",
                                                  f"{what}: expected a dict, got {type(got).__name__}"))
    mf = 2 if min_freq is None else min_freq
    checks.assert_equal(got, _vocab(texts, mf), what, hint=_vocab_hint(got, texts, mf))


TOY_CORPUS = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "zebra on mat", "the end"]


@graded(task="build_vocab", kind="shape", points=1, visibility="public")
def test_build_vocab_specials(student):
    """<PAD> is 0, <UNK> is 1 and the indices are 0..len-1 without gaps."""
    got = student.build_vocab(TOY_CORPUS)
    checks.assert_true(isinstance(got, dict), Msg(f"build_vocab(texts)：应返回 dict，实际得到 {type(got).__name__}",
                                                  f"build_vocab(texts): expected a dict, got {type(got).__name__}"))
    checks.assert_equal([got.get("<PAD>"), got.get("<UNK>")], [0, 1], "[vocab['<PAD>'], vocab['<UNK>']]", hint=SPECIALS)
    checks.assert_equal(sorted(got.values()), list(range(len(got))), "sorted(vocab.values())", hint=SPECIALS)


@graded(task="build_vocab", kind="accuracy", points=2, visibility="public")
def test_build_vocab_toy_corpus(student):
    """The exact vocabulary of a toy corpus: min_freq=2, count descending, ties alphabetical."""
    _check_vocab(student, TOY_CORPUS, None, "build_vocab(toy_corpus)")
    _check_vocab(student, ["b a c", "c b a", "a b", "d d c"], 2, "build_vocab(['b a c', 'c b a', 'a b', 'd d c'], 2)")


@graded(task="build_vocab", kind="accuracy", points=1, visibility="hidden")
def test_build_vocab_edge_cases(student, rng):
    """min_freq=1 and 3, an empty corpus, '<UNK>' written in a text, tabs and repeated spaces, a random corpus."""
    _check_vocab(student, TOY_CORPUS, 1, "build_vocab(toy_corpus, 1)")
    _check_vocab(student, TOY_CORPUS, 3, "build_vocab(toy_corpus, 3)")
    _check_vocab(student, [], 2, "build_vocab([], 2)")
    _check_vocab(student, ["", "   "], 1, "build_vocab(['', '   '], 1)")
    texts = ["I saw <UNK> twice", "<UNK> again and <PAD>", "saw it", "It  saw\tit"]
    got = student.build_vocab(texts, 1)
    hint = SPECIAL_TOKEN if isinstance(got, dict) and (got.get("<UNK>") != 1 or got.get("<PAD>") != 0) else \
        SPLIT_TOKENS if isinstance(got, dict) and "It" not in got else None
    checks.assert_equal(got, _vocab(texts, 1), "build_vocab(texts_with_specials, 1)",
                        hint=hint or _vocab_hint(got, texts, 1))
    words = [f"w{int(k)}" for k in torch.randint(0, 40, (300,), generator=rng)]
    texts = [" ".join(words[i:i + 6]) for i in range(0, 300, 6)]
    _check_vocab(student, texts, 2, "build_vocab(random_corpus, 2)")


@graded(task="build_vocab", kind="speed", points=1, visibility="hidden")
def test_build_vocab_speed(student, reference_worker, spec, rng):
    """build_vocab on 20 000 texts costs no more than a few times the reference's (Counter, not list.count)."""
    p = spec.param("vocab_speed")

    def run(impl):
        return lambda seed: impl.probe("vocab_generated", n_texts=p["n_texts"], distinct=p["distinct"],
                                       max_words=p["max_words"], seed=seed)

    def check(got: dict, want: dict) -> None:
        checks.assert_equal(got["vocab"], want["vocab"], "build_vocab(generated_texts)")

    result = compare_speed(run(student), run(reference_worker), lambda i: seed_from(rng), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "build_vocab", hint=USE_COUNTER)


# -- T4.4 encode -------------------------------------------------------------------------------------
VOCAB = {"<PAD>": 0, "<UNK>": 1, "the": 2, "cat": 3, "sat": 4, "on": 5, "mat": 6}


def _encode(text: str, vocab: dict[str, int], max_len: int) -> torch.Tensor:
    """Right-padded with 0, the first max_len tokens kept, unknown tokens 1."""
    out = torch.zeros(max_len, dtype=torch.int64)
    ids = [vocab.get(t, 1) for t in text.split()][:max_len]
    out[:len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


def _check_encode(student, text: str, vocab: dict[str, int], max_len: int) -> None:
    what = f"encode({text!r}, vocab, {max_len})"
    got = student.encode(text, vocab, max_len)
    checks.assert_dtype(got, torch.int64, what, hint=ENCODE_INT64)
    ids = [vocab.get(t, 1) for t in text.split()]
    n = min(len(ids), max_len)
    mistakes = {
        RIGHT_PAD: torch.tensor([0] * (max_len - n) + ids[:n], dtype=torch.int64),
        KEEP_FIRST: torch.tensor(ids[-max_len:] + [0] * (max_len - n), dtype=torch.int64),
        OOV_UNK: torch.tensor([vocab.get(t, 0) for t in text.split()][:max_len] + [0] * (max_len - n), dtype=torch.int64),
    }
    hint = RIGHT_PAD if isinstance(got, torch.Tensor) and got.dim() == 1 and got.shape[0] == len(ids) < max_len else None
    checks.assert_shape(got, (max_len,), what, hint=hint)
    want = _encode(text, vocab, max_len)
    checks.assert_close(got, want, what, mistakes={m: t for m, t in mistakes.items() if not torch.equal(t, want)})


@graded(task="encode", kind="shape", points=1, visibility="public")
def test_encode_shape_dtype(student):
    """encode returns an int64 tensor of shape (max_len,), for short and long texts."""
    for text, max_len in (("the cat sat", 6), ("the cat sat on the mat on the mat", 4)):
        what = f"encode({text!r}, vocab, {max_len})"
        got = student.encode(text, VOCAB, max_len)
        checks.assert_dtype(got, torch.int64, what, hint=ENCODE_INT64)
        checks.assert_shape(got, (max_len,), what, hint=RIGHT_PAD if isinstance(got, torch.Tensor) and got.dim() == 1
                            and got.shape[0] < max_len else None)


@graded(task="encode", kind="accuracy", points=2, visibility="public")
def test_encode_values(student):
    """Known tokens map through the vocab, unknown ones to 1; long texts keep their first tokens; short ones are right-padded."""
    _check_encode(student, "the dog sat on a mat", VOCAB, 8)
    _check_encode(student, "the cat sat on the mat and the dog", VOCAB, 5)


@graded(task="encode", kind="accuracy", points=1, visibility="hidden")
def test_encode_edge_cases(student, rng):
    """Empty text, exact length, max_len 1, a literal '<UNK>', whitespace runs, and a random vocabulary."""
    for text, max_len in (("", 4), ("cat sat on", 3), ("mat the", 1), ("<UNK> cat <PAD>", 5), ("  the\tcat  ", 3)):
        _check_encode(student, text, VOCAB, max_len)
    words = [f"t{i}" for i in range(30)]
    vocab = {"<PAD>": 0, "<UNK>": 1, **{w: i + 2 for i, w in enumerate(words[:20])}}
    picks = torch.randint(0, 30, (25,), generator=rng).tolist()
    _check_encode(student, " ".join(words[k] for k in picks), vocab, 16)
    _check_encode(student, " ".join(words[k] for k in picks[:7]), vocab, 16)


# -- T4.5 pad_collate ------------------------------------------------------------------------------------
def _padded(seqs: list[torch.Tensor], pad_value: float) -> torch.Tensor:
    t = max(s.shape[0] for s in seqs)
    out = torch.full((len(seqs), t, *seqs[0].shape[1:]), pad_value, dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
    return out


def _tokens(rng: torch.Generator, lengths: list[int]) -> list[torch.Tensor]:
    return [torch.randint(1, 100, (n,), generator=rng) for n in lengths]


def _check_collated(out: object, seqs: list[torch.Tensor], labels: list[int], pad_value: float, what: str) -> None:
    checks.assert_true(isinstance(out, (list, tuple)) and len(out) == 3, Msg(
        f"{what}：应返回 `(padded, lengths, labels)` 三元组", f"{what}: expected a (padded, lengths, labels) triple"))
    padded, lengths, out_labels = out
    want = _padded(seqs, pad_value)
    b, t = want.shape[:2]
    transposed = isinstance(padded, torch.Tensor) and padded.dim() >= 2 and tuple(padded.shape[:2]) == (t, b) and b != t
    checks.assert_shape(padded, want.shape, f"{what}[0]", hint=BATCH_FIRST if transposed else None)
    true_lengths = torch.tensor([s.shape[0] for s in seqs])
    mistakes = {PAD_VALUE: _padded(seqs, 0)} if pad_value != 0 else {}
    checks.assert_close(padded, want, f"{what}[0]", mistakes=mistakes)
    checks.assert_dtype(lengths, torch.int64, f"{what}[1]")
    checks.assert_shape(lengths, (b,), f"{what}[1]")
    checks.assert_close(lengths, true_lengths, f"{what}[1]",
                        mistakes={TRUE_LENGTHS: torch.full((b,), t)} if bool((true_lengths != t).any()) else None)
    checks.assert_dtype(out_labels, torch.int64, f"{what}[2]", hint=LABEL_INT64)
    checks.assert_close(out_labels, torch.tensor(labels, dtype=torch.int64), f"{what}[2]")


@graded(task="pad_collate", kind="shape", points=1, visibility="public")
def test_pad_collate_shapes(student, rng):
    """Three sequences of lengths 4, 2, 5 give padded (3, 5), lengths (3,) and labels (3,), all int64."""
    seqs = _tokens(rng, [4, 2, 5])
    out = student.pad_collate(list(zip(seqs, [1, 0, 2])))
    checks.assert_true(isinstance(out, (list, tuple)) and len(out) == 3, Msg(
        "pad_collate(batch)：应返回 `(padded, lengths, labels)` 三元组", "pad_collate(batch): expected a (padded, lengths, labels) triple"))
    transposed = isinstance(out[0], torch.Tensor) and tuple(out[0].shape) == (5, 3)
    checks.assert_shape(out[0], (3, 5), "pad_collate(batch)[0]", hint=BATCH_FIRST if transposed else None)
    checks.assert_dtype(out[0], torch.int64, "pad_collate(batch)[0]")
    for k, name in ((1, "lengths"), (2, "labels")):
        checks.assert_shape(out[k], (3,), f"pad_collate(batch)[{k}]")
        checks.assert_dtype(out[k], torch.int64, f"pad_collate(batch)[{k}]", hint=LABEL_INT64 if name == "labels" else None)


@graded(task="pad_collate", kind="accuracy", points=2, visibility="public")
def test_pad_collate_values(student, rng):
    """padded[i, :L_i] is sequence i, the rest is pad_value (0 and -1); lengths are the true lengths."""
    seqs = _tokens(rng, [3, 7, 1, 5])
    labels = [3, 1, 4, 1]
    _check_collated(student.pad_collate(list(zip(seqs, labels))), seqs, labels, 0, "pad_collate(batch)")
    _check_collated(student.pad_collate(list(zip(seqs, labels)), -1), seqs, labels, -1, "pad_collate(batch, -1)")


@graded(task="pad_collate", kind="gradient", points=1, visibility="public")
def test_pad_collate_gradient(student, rng):
    """Float64 feature sequences that require grad: the output stays on the graph and each sequence gets
    exactly grad_output[i, :L_i]."""
    lengths = [3, 5, 2]
    seqs = [torch.randn(n, 4, dtype=torch.float64, generator=rng) for n in lengths]
    g = torch.randn(3, 5, 4, dtype=torch.float64, generator=rng)
    res = student.probe("pad_collate_grads", seqs=seqs, labels=[0, 1, 0], grad_output=g, pad_value=0.0)
    checks.assert_close(res["padded"], _padded(seqs, 0.0), "pad_collate(float_batch)[0]")
    checks.assert_attached(res["padded"], "pad_collate(float_batch)[0]", hint=PAD_GRAPH)
    for i, n in enumerate(lengths):
        checks.assert_grad(res["grads"][i], g[i, :n], f"seqs[{i}]", hint=PAD_GRAPH)


@graded(task="pad_collate", kind="shape", points=1, visibility="hidden")
def test_pad_collate_edge_cases(student, rng):
    """The meta device (lengths stay on the CPU), B=1, equal lengths, a length-1 sequence, (L, D) features, 0-dim tensor labels."""
    meta = [torch.empty(n, dtype=torch.int64, device="meta") for n in (3, 6, 2)]
    out = student.pad_collate(list(zip(meta, [0, 1, 1])))
    checks.assert_shape(out[0], (3, 6), "pad_collate(meta_batch)[0]")
    checks.assert_device(out[0], "meta", "pad_collate(meta_batch)[0]", hint=PAD_DEVICE)
    checks.assert_device(out[1], "cpu", "pad_collate(meta_batch)[1]", hint=LENGTHS_CPU)
    checks.assert_close(out[1], torch.tensor([3, 6, 2]), "pad_collate(meta_batch)[1]")
    for lengths in ([6], [4, 4, 4], [1, 3]):
        seqs = _tokens(rng, lengths)
        labels = list(range(len(lengths)))
        _check_collated(student.pad_collate(list(zip(seqs, labels))), seqs, labels, 0, f"pad_collate(lengths={lengths})")
    seqs = [torch.randn(n, 3, generator=rng) for n in (2, 4)]
    _check_collated(student.pad_collate([(seqs[0], torch.tensor(1)), (seqs[1], torch.tensor(0))], 0),
                    seqs, [1, 0], 0, "pad_collate(feature_batch)")


@graded(task="pad_collate", kind="accuracy", points=1, visibility="hidden")
def test_pad_collate_in_dataloader(student, rng):
    """As collate_fn of a DataLoader (batch_size=3) over 7 sequences: every batch padded to its own longest."""
    lengths = torch.randint(1, 9, (7,), generator=rng).tolist()
    seqs = _tokens(rng, lengths)
    labels = torch.randint(0, 3, (7,), generator=rng).tolist()
    batches = student.probe("pad_collate_loader", seqs=seqs, labels=labels, batch_size=3)
    checks.assert_equal(len(batches), 3, "len(list(DataLoader(ds, batch_size=3, collate_fn=pad_collate)))")
    for k, batch in enumerate(batches):
        part = slice(3 * k, 3 * k + 3)
        _check_collated(batch, seqs[part], labels[part], 0, f"list(DataLoader(..., collate_fn=pad_collate))[{k}]")


@graded(task="pad_collate", kind="speed", points=1, visibility="hidden")
def test_pad_collate_speed(student, reference_worker, spec, rng):
    """Padding 64 sequences costs no more than a few times the reference's (pad_sequence)."""
    p = spec.param("pad_speed")

    def run(impl):
        return lambda seeds: impl.probe("pad_collate_repeated", batch_size=p["batch_size"], max_len=p["max_len"],
                                        repeats=p["repeats"], seed=seeds[0], project_seed=seeds[1])

    def check(got: dict, want: dict) -> None:
        checks.assert_equal(got["shapes"], want["shapes"], "padded.shape", hint=BATCH_FIRST)
        checks.assert_true(isinstance(got["projections"], list) and len(got["projections"]) == len(want["projections"]),
                           Msg("计时测试中 pad_collate 的输出不完整", "During the timing runs pad_collate's output was incomplete"))
        for mine, theirs in zip(got["projections"], want["projections"]):
            checks.assert_true(abs(mine[0] - theirs[0]) <= 1e-6 * (abs(theirs[0]) + 1) and mine[1:] == theirs[1:], Msg(
                "计时测试中 pad_collate 的输出与参考结果不一致，未计算速度",
                "During the timing runs pad_collate's output differed from the reference, so speed was not judged"))

    result = compare_speed(run(student), run(reference_worker), lambda i: (seed_from(rng), seed_from(rng)), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "pad_collate", hint=USE_PAD_SEQUENCE)


# -- T4.6 build_transforms ----------------------------------------------------------------------------------
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _smooth_image(rng: torch.Generator, h: int, w: int, gray: bool = False) -> torch.Tensor:
    """A photo-like uint8 image: a coarse random grid upsampled bilinearly, (H, W) or (H, W, 3)."""
    channels = 1 if gray else 3
    coarse = torch.rand(1, channels, 4, 5, generator=rng)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    pixels = (img * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return pixels[..., 0].contiguous() if gray else pixels.contiguous()


def _expected_eval(pixels: torch.Tensor, size: int, mean=MEAN, std=STD) -> torch.Tensor:
    """The test transform of the spec, computed here with torchvision on the PIL image."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    image = TF.center_crop(TF.resize(Image.fromarray(pixels.numpy()).convert("RGB"), size), size)
    return TF.normalize(TF.to_tensor(image), list(mean), list(std))


def _transform_probe(student, train: bool, images: list[torch.Tensor], seeds: list[int], what: str,
                     **kwargs) -> list[list]:
    pytest.importorskip("torchvision")
    pytest.importorskip("PIL")
    res = student.probe("transform_outputs", train=train, images=[{"pixels": p} for p in images], seeds=seeds,
                        kwargs=kwargs)
    if res.get("error"):
        error = res["error"]
        hint = (NORMALIZE_AFTER if "Tensor" in error and ("expected" in error or "Image" in error) else
                TO_RGB if "doesn't match the broadcast shape" in error else None)
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {error}", f"{what}: your code raised {error}"), hint)
    return res["outs"]


def _black(h: int, w: int) -> torch.Tensor:
    return torch.zeros(h, w, 3, dtype=torch.uint8)


def _black_expected(size: int, mean=MEAN, std=STD) -> torch.Tensor:
    return ((0 - torch.tensor(mean)) / torch.tensor(std)).view(3, 1, 1).expand(3, size, size).float()


@graded(task="build_transforms", kind="shape", points=1, visibility="public")
def test_transforms_output_shape(student, rng):
    """Both transforms map 40×30 and 300×500 RGB images to float32 (3, size, size), size 32 and 24."""
    images = [_smooth_image(rng, 30, 40), _smooth_image(rng, 500, 300)]
    for train in (False, True):
        for kwargs in ({}, {"size": 24}):
            size = kwargs.get("size", 32)
            call = f"build_transforms(train={train}" + "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
            outs = _transform_probe(student, train, images, [0], call, **kwargs)
            for pixels, row in zip(images, outs):
                what = f"{call}(image[{pixels.shape[0]}x{pixels.shape[1]}])"
                out = row[0]
                checks.assert_dtype(out, torch.float32, what)
                not_square = isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[1] != out.shape[2]
                checks.assert_shape(out, (3, size, size), what, hint=CENTER_CROP if not_square and not train else None)


@graded(task="build_transforms", kind="accuracy", points=2, visibility="public")
def test_eval_transform_values(student, spec, rng):
    """The test transform is deterministic and equals Resize → CenterCrop → ToTensor → Normalize; black gives -mean/std."""
    images = [_smooth_image(rng, 30, 40), _smooth_image(rng, 64, 48), _black(20, 20)]
    outs = _transform_probe(student, False, images, [1, 2, 3, 4], "build_transforms(train=False)")
    for pixels, (first, *again) in zip(images, outs):  # one call per torch.manual_seed(1..4)
        what = f"build_transforms(train=False)(image[{pixels.shape[0]}x{pixels.shape[1]}])"
        checks.assert_shape(first, (3, 32, 32), what)
        for k, other in enumerate(again):
            checks.assert_close(other, first, f"{what} #{k + 2}", hint=EVAL_DETERMINISTIC)
    checks.assert_close(outs[2][0], _black_expected(32), "build_transforms(train=False)(black_image)", atol=1e-4,
                        hint=NORMALIZE)
    for pixels, row in zip(images[:2], outs[:2]):
        checks.assert_close(row[0], _expected_eval(pixels, 32), f"build_transforms(train=False)(image[{pixels.shape[0]}x"
                            f"{pixels.shape[1]}])", atol=spec.param("eval_atol"), rtol=0,
                            rel_l2=spec.param("eval_rel_l2"), hint=RESIZE_THEN_CROP)


@graded(task="build_transforms", kind="accuracy", points=1, visibility="public")
def test_train_transform_random(student, rng):
    """The training transform differs across seeds, repeats under the same torch.manual_seed, and normalises."""
    image = _smooth_image(rng, 48, 64)
    outs = _transform_probe(student, True, [image, _black(40, 30)], [5, 6, 7, 5], "build_transforms(train=True)")
    a, b, c, a_again = outs[0]
    for out in (a, b, c):
        checks.assert_shape(out, (3, 32, 32), "build_transforms(train=True)(image)")
    checks.assert_true(not (torch.allclose(a, b) and torch.allclose(a, c)), Msg(
        "build_transforms(train=True) 在三个不同的随机种子下输出相同", "build_transforms(train=True) gave the same output under "
        "three different seeds"), TRAIN_RANDOM)
    checks.assert_close(a_again, a, "build_transforms(train=True)(image) #2", hint=GLOBAL_SEED)
    for out in outs[1]:
        checks.assert_close(out, _black_expected(32), "build_transforms(train=True)(black_image)", atol=1e-4, hint=NORMALIZE)


def _jitter_factors(outs: list, pixels: tuple[int, int, int]) -> tuple[list[float], list[float]]:
    """Brightness factor b and contrast × saturation factor cs behind each output of a constant image.

    On an image of one colour v, cropping and flipping change nothing; brightness scales by b,
    contrast and saturation both pull every channel towards the luma L by their factors, so a channel
    becomes b·(L + cs·(v − L)) and the luma b·L.
    """
    luma = torch.tensor([0.299, 0.587, 0.114])
    v = torch.tensor(pixels, dtype=torch.float32) / 255
    level = float((v * luma).sum())
    bs, css = [], []
    for out in outs:
        u = (out * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)).mean((1, 2))
        b = float((u * luma).sum()) / level
        bs.append(b)
        far = [c for c in range(3) if abs(float(v[c]) - level) > 0.1]
        css.append(sum(float((u[c] / b - level) / (v[c] - level)) for c in far) / len(far) if far else 1.0)
    return bs, css


@graded(task="build_transforms", kind="accuracy", points=1, visibility="hidden")
def test_train_transform_color_jitter(student, spec):
    """ColorJitter(0.2, 0.2, 0.2): on constant images over many seeds, brightness factors stay in
    [0.8, 1.2] and vary; contrast × saturation stays in [0.64, 1.44] and leaves [0.8, 1.2] at times."""
    p = spec.param("jitter")
    colour = tuple(p["colour"])
    images = [torch.full((12, 10, 3), p["gray"], dtype=torch.uint8), torch.tensor(colour, dtype=torch.uint8).expand(12, 10, 3)]
    outs = _transform_probe(student, True, images, list(range(100, 100 + p["seeds"])), "build_transforms(train=True)")
    for row in outs:
        for out in row:
            checks.assert_shape(out, (3, 32, 32), "build_transforms(train=True)(constant_image)")
    bs, _ = _jitter_factors(outs[0], (p["gray"],) * 3)
    low, high = p["brightness_range"]
    checks.assert_true(low <= min(bs) and max(bs) <= high, Msg(
        f"亮度因子在 {min(bs):.3f} 到 {max(bs):.3f} 之间，应在 [0.8, 1.2] 内", f"Brightness factors range over "
        f"{min(bs):.3f}..{max(bs):.3f}; they must stay in [0.8, 1.2]"), JITTER)
    checks.assert_true(max(bs) - min(bs) >= p["brightness_spread"], Msg(
        f"{p['seeds']} 个随机种子下亮度因子只在 {min(bs):.3f} 到 {max(bs):.3f} 之间变化：没有亮度抖动",
        f"Over {p['seeds']} seeds the brightness factor only ranges over {min(bs):.3f}..{max(bs):.3f}: no brightness "
        "jitter"), JITTER)
    _, css = _jitter_factors(outs[1], colour)
    low, high = p["contrast_saturation_range"]
    checks.assert_true(low <= min(css) and max(css) <= high, Msg(
        f"对比度 × 饱和度因子在 {min(css):.3f} 到 {max(css):.3f} 之间，应在 [0.64, 1.44] 内",
        f"Contrast × saturation factors range over {min(css):.3f}..{max(css):.3f}; they must stay in [0.64, 1.44]"),
        JITTER)
    wide = sum(c < 0.75 or c > 1.25 for c in css)
    checks.assert_true(wide >= 1, Msg(
        f"{p['seeds']} 个随机种子下对比度 × 饱和度因子从未超出 [0.75, 1.25]：对比度或饱和度抖动缺失",
        f"Over {p['seeds']} seeds contrast × saturation never left [0.75, 1.25]: contrast or saturation jitter is "
        "missing"), JITTER)


@graded(task="build_transforms", kind="shape", points=1, visibility="hidden")
def test_transforms_grayscale_and_fakedata(student, rng):
    """A grayscale PIL image gives 3 channels in both modes; FakeData(40×30) through a DataLoader batches to (4, 3, 32, 32)."""
    gray = _smooth_image(rng, 36, 50, gray=True)
    for train in (False, True):
        outs = _transform_probe(student, train, [gray], [3], f"build_transforms(train={train})(grayscale_image)")
        checks.assert_shape(outs[0][0], (3, 32, 32), f"build_transforms(train={train})(grayscale_image)", hint=TO_RGB)
    res = student.probe("transform_fakedata", train=True, n=8, image_size=[3, 40, 30], batch_size=4)
    _error(res, "DataLoader(FakeData(8, (3, 40, 30), transform=build_transforms(True)), batch_size=4)")
    checks.assert_equal(len(res["batches"]), 2, "len(list(DataLoader(FakeData(8, ...), batch_size=4)))")
    for x, y in res["batches"]:
        checks.assert_shape(x, (4, 3, 32, 32), "next(iter(DataLoader(FakeData(...))))[0]")
        checks.assert_dtype(x, torch.float32, "next(iter(DataLoader(FakeData(...))))[0]")


@graded(task="build_transforms", kind="accuracy", points=1, visibility="hidden")
def test_eval_transform_custom_stats(student, spec, rng):
    """size, mean and std are honoured: a grayscale and a tall image with mean=(0.5,)*3, std=(0.25, 0.5, 1.0), size 20."""
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)
    images = [_smooth_image(rng, 45, 33, gray=True), _smooth_image(rng, 90, 21), _black(25, 25)]
    outs = _transform_probe(student, False, images, [0], "build_transforms(False, 20, mean, std)",
                            size=20, mean=list(mean), std=list(std))
    checks.assert_close(outs[2][0], _black_expected(20, mean, std), "build_transforms(False, 20, mean, std)(black_image)",
                        atol=1e-4, hint=NORMALIZE)
    for pixels, row in zip(images[:2], outs[:2]):
        checks.assert_close(row[0], _expected_eval(pixels, 20, mean, std), "build_transforms(False, 20, mean, std)(image)",
                            atol=spec.param("eval_atol"), rtol=0, rel_l2=spec.param("eval_rel_l2"),
                            hint=RESIZE_THEN_CROP)
