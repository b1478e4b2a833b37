"""Autotests for ex12_projects: digits classification end to end, sentiment on a synthetic corpus, a
1-D GAN, and detection post-processing.

The data is made here (the vendored digits, split per run; the corpus from word lists; the GAN's
noise and replay states; random boxes). Labels of held-out images and sentences never leave this
process: the probes in ``probes/ex12_projects.py`` return logits, predictions and samples, and the
accuracies, distribution statistics and expected values are computed here. What a submission reports
about itself (``best_acc``, its ``history``) is only cross-checked against what is computed here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader.testdata import digits, seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed

pytestmark = pytest.mark.exercise("ex12_projects")

DIGITS = Path(__file__).resolve().parents[1] / "data" / "public" / "digits8x8.npz"  # shipped: public tests train on it

# -- feedback ----------------------------------------------------------------------------------------
CLS_RETURN = Msg("应返回字典 `{\"model\": ..., \"best_acc\": float, \"history\": {\"train_loss\": [...], "
                 "\"val_acc\": [...], \"lr\": [...]}}`，三个列表的长度都等于 `epochs`",
                 "Return {\"model\": ..., \"best_acc\": float, \"history\": {\"train_loss\": [...], \"val_acc\": [...], "
                 "\"lr\": [...]}}, all three lists of length epochs")
CLS_EVAL = Msg("返回前调用 `model.eval()`：返回的模型应处于 eval 模式", "Call model.eval() before returning: the model "
               "you return must be in eval mode")
CLS_BEST = Msg("返回的不是最佳模型：记下验证准确率最高的那一轮的 `state_dict()`（`copy.deepcopy`），训练结束后载回",
               "The model returned is not the best one: keep a copy (copy.deepcopy) of the state_dict() of the epoch with "
               "the best validation accuracy and load it back at the end")
CLS_VAL_AUG = Msg("验证集不应做随机增强：验证时直接用原图，在 `model.eval()` 与 `torch.no_grad()` 下计算准确率",
                  "No augmentation on validation: validate on the images as they are, under model.eval() and "
                  "torch.no_grad()")
CLS_SCHEDULER = Msg("`StepLR` 应每轮调用一次：`scheduler.step()` 放在批次循环之外（每轮训练结束时）",
                    "Step the scheduler per epoch: scheduler.step() goes outside the batch loop (at the end of each "
                    "epoch)")
CLS_VAL_ONCE = Msg("每轮只完整读取验证集一次（验证时），其他时候不要读取它",
                   "Read the validation set in full exactly once per epoch (to validate) and at no other time")
CLS_SEED = Msg("开头调用 `torch.manual_seed(seed)`，打乱与增强的随机数都由 `seed` 决定（例如 "
               "`torch.Generator().manual_seed(seed)`），不要用未设种子的随机数",
               "Call torch.manual_seed(seed) first and draw the shuffles and augmentations from seed (e.g. "
               "torch.Generator().manual_seed(seed)); no unseeded randomness")
CLS_AUGMENT = Msg("`augment=True` 时每个训练批次都要随机平移：水平和竖直方向各在 {-1, 0, +1} 像素中随机选，用 0 填充",
                  "With augment=True every training batch is shifted at random: one of {-1, 0, +1} pixels horizontally "
                  "and vertically, zero-padded")
CLS_CLASSES = Msg("`num_classes=None` 时类别数取训练集标签的最大值 + 1，模型输出这么多个 logits",
                  "With num_classes=None the number of classes is the largest training label + 1, and the model outputs "
                  "that many logits")

SENT_PAD = Msg("结果受填充影响：用 `pack_padded_sequence(..., lengths.cpu(), batch_first=True, enforce_sorted=False)` "
               "打包，取 `h_n` 的最后一层正向与反向状态 `torch.cat([h[-2], h[-1]], dim=1)`，不要取输出的最后一个时间步",
               "Padding changes the result: pack with pack_padded_sequence(..., lengths.cpu(), batch_first=True, "
               "enforce_sorted=False) and use h_n's last-layer forward and backward states torch.cat([h[-2], h[-1]], "
               "dim=1), not the output's last time step")
SENT_LAYERS = Msg("需要 `nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)`、双向 `nn.LSTM` 与 "
                  "`nn.Linear(2 * hidden_dim, num_classes)`，梯度要传到每一个参数",
                  "It needs nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx), a bidirectional nn.LSTM and "
                  "nn.Linear(2 * hidden_dim, num_classes), and the gradient must reach every parameter")
SENT_VOCAB = Msg("预测时必须复用训练词表：同一个句子单独预测与和别的句子一起预测，结果应相同（不要根据 `texts` "
                 "重新建词表）", "Reuse the training vocab: a sentence must get the same prediction alone as together "
                 "with other sentences (never build a vocabulary from texts)")
SENT_EVAL = Msg("预测前 `model.eval()`：两次预测同样的句子得到了不同结果（`Dropout` 仍在起作用）",
                "Call eval() before predicting: predicting the same sentences twice gave different results (dropout "
                "was still active)")
SENT_EMPTY = Msg("空文本长度至少为 1（或全部为 PAD 时单独处理）：`pack_padded_sequence` 不接受长度 0",
                 "Clamp lengths >= 1 (an empty text is one PAD): pack_padded_sequence refuses a length of 0")
SENT_LIST = Msg("`predict_sentiment` 应返回与 `texts` 等长的 Python `int` 列表（0 或 1），`texts` 为空时返回 `[]`",
                "predict_sentiment returns a list of Python int (0 or 1) as long as texts, and [] for empty texts")
SENT_NEGATION = Msg("双向 LSTM 应能学会否定（\"not good\" 是负面）：检查词表、编码、打包与训练循环",
                    "A bidirectional LSTM learns negation (\"not good\" is negative): check the vocabulary, the encoding, "
                    "the packing and the training loop")

GAN_SHAPES = Msg("`Generator` 把 `(B, latent_dim)` 映射到 `(B, out_dim)`，`Discriminator` 把 `(B, in_dim)` 映射到 "
                 "`(B, 1)`；批大小为 1 时在 train 模式下也要能运行（不要用 `BatchNorm1d`）",
                 "Generator maps (B, latent_dim) to (B, out_dim), Discriminator maps (B, in_dim) to (B, 1); both run on a "
                 "batch of 1 in train mode (no BatchNorm1d)")
GAN_LOGITS = Msg("判别器输出 `logits`，不要再接 `Sigmoid`：`F.binary_cross_entropy_with_logits` 自己会做 `sigmoid`",
                 "Output logits: no Sigmoid at the end of the discriminator, F.binary_cross_entropy_with_logits applies "
                 "the sigmoid itself")
GAN_DETACH = Msg("判别器步骤把梯度传到了生成器：假样本需 `detach()`（`D(fake.detach())`）",
                 "The D step sent gradients into the generator: detach fakes for the D step (D(fake.detach()))")
GAN_D_STEP = Msg("生成器步骤不应更新判别器：生成器步骤只调用 `opt_G.step()`，不要在 `g_loss` 之后 `opt_D.step()`",
                 "Don't step D on G's loss: the generator step calls opt_G.step() only, never opt_D.step() after g_loss")
GAN_ZERO_GRAD = Msg("每步前需 `zero_grad`：判别器步骤开头先 `opt_D.zero_grad()`，否则上一步生成器步骤留在判别器上的梯度"
                    "会混进这次更新", "Zero the gradients first: opt_D.zero_grad() at the start of the D step, or the "
                    "gradients the previous G step left on D leak into this update")
GAN_ORDER = Msg("按约定的顺序：只抽一次 `z = torch.randn(B, latent_dim, generator=generator, dtype=real.dtype)`，"
                "`fake = G(z)`；判别器步 `opt_D.zero_grad()`、`d_loss = BCE(D(real), 1) + BCE(D(fake.detach()), 0)`、"
                "`backward`、`opt_D.step()`；生成器步 `opt_G.zero_grad()`、`g_loss = BCE(D(fake), 1)`、`backward`、"
                "`opt_G.step()`（`BCE` 即 `F.binary_cross_entropy_with_logits`）",
                "Follow the order: draw z = torch.randn(B, latent_dim, generator=generator, dtype=real.dtype) once, "
                "fake = G(z); D step opt_D.zero_grad(), d_loss = BCE(D(real), 1) + BCE(D(fake.detach()), 0), backward, "
                "opt_D.step(); G step opt_G.zero_grad(), g_loss = BCE(D(fake), 1), backward, opt_G.step() (BCE is "
                "F.binary_cross_entropy_with_logits)")
GAN_LOSSES = Msg("返回 `(d_loss.item(), g_loss.item())`：两个 Python `float`，判别器损失在前",
                 "Return (d_loss.item(), g_loss.item()): two Python floats, the discriminator's first")

IOU_CLAMP = Msg("不相交的框得到正的交集面积：宽高需 `clamp(min=0)`", "Disjoint boxes got a positive intersection: "
                "clamp the intersection's width and height (clamp(min=0))")
IOU_FORMULA = Msg("IoU = 交集面积 / (面积 a + 面积 b − 交集面积)，交集的左上角取两框左上角的较大值、右下角取较小值",
                  "IoU = intersection / (area a + area b - intersection); the intersection's top-left corner is the "
                  "larger of the two top-left corners, its bottom-right the smaller")
IOU_ZERO_UNION = Msg("并集面积为 0 时（两个面积为 0 的框）IoU 应为 0，不能是 NaN", "Where the union is 0 (two boxes "
                     "of area 0) the IoU is 0, not NaN")
IOU_VECTORISE = Msg("用广播一次算出整个 (N, M) 矩阵（`a[:, None, :2]` 与 `b[None, :, :2]`），不要用 Python 循环",
                    "Compute the whole (N, M) matrix at once by broadcasting (a[:, None, :2] against b[None, :, :2]); no "
                    "Python loop")
NMS_SORT = Msg("NMS 需按分数降序处理：先 `scores.argsort(descending=True)`，按这个顺序保留与抑制",
               "Sort by score first: scores.argsort(descending=True), then keep and suppress in that order")
NMS_RULE = Msg("保留当前框，只抑制与它 IoU 大于 `iou_threshold`（严格大于）的框；返回 `int64` 下标",
               "Keep the current box and suppress only boxes whose IoU with it is greater than iou_threshold (strictly); "
               "return int64 indices")
FILTER_MASK = Msg("三个字段需用同一掩码过滤：`keep = pred[\"scores\"] > score_threshold`，再对 `boxes`、`labels`、"
                  "`scores` 都取 `[keep]`", "Filter all fields with one mask: keep = pred[\"scores\"] > score_threshold, "
                  "then index boxes, labels and scores with [keep]")


# -- helpers -------------------------------------------------------------------------------------------



def _split(spec, rng: torch.Generator, sizes: list[int], classes: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Disjoint random train/val/test parts of the digits of classes 0..classes-1."""
    x, y = digits(DIGITS, spec.param("digits_sha256"))
    keep = (y < classes).nonzero().flatten()
    order = keep[torch.randperm(len(keep), generator=rng)]
    parts, start = [], 0
    for n in sizes:
        idx = order[start:start + n]
        parts.append((x[idx], y[idx]))
        start += n
    return parts


def _classify(student, spec, rng, fit: str, *, classes: int = 10, **extra: Any) -> tuple[dict, list, torch.Tensor,
                                                                                        torch.Tensor]:
    p = dict(spec.param(fit))
    sizes = [p.pop("n_train"), p.pop("n_val"), p.pop("n_test")]
    (xt, yt), (xv, yv), (xs, ys) = _split(spec, rng, sizes, classes)
    p.update(extra)
    p.setdefault("num_classes", classes)
    res = student.probe("run_classification", x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs,
                        seed=seed_from(rng), **p)
    hint = CLS_CLASSES if p["num_classes"] is None and "out of bounds" in str(res.get("error")) else None
    checks.fail_on_probe_error(res, "run_image_classification", hint)
    return res, res["runs"], yv, ys


def _check_run(run: dict, epochs: int, n_val: int, n_test: int, classes: int, what: str) -> None:
    """The returned dict's form: keys, history lists, best_acc, an eval-mode model with logits of the
    right shape."""
    checks.assert_true("keys" in run, Msg(f"{what}：应返回字典，实际得到 {run.get('type')}",
                                          f"{what}: expected a dict, got {run.get('type')}"), CLS_RETURN)
    checks.assert_true({"model", "best_acc", "history"} <= set(run["keys"]), Msg(
        f"{what}：返回的字典的键为 {run['keys']}", f"{what}: the dict returned has keys {run['keys']}"), CLS_RETURN)
    history = run.get("history")
    ok = isinstance(history, dict) and all(
        isinstance(history.get(k), list) and len(history[k]) == epochs
        and all(isinstance(v, float) and math.isfinite(v) for v in history[k]) for k in ("train_loss", "val_acc", "lr"))
    checks.assert_true(ok, Msg(f"{what}：`history` 应含三个长度为 {epochs} 的数字列表，实际为 {history!r:.200}",
                               f"{what}: history must hold three lists of {epochs} numbers, got {history!r:.200}"),
                       CLS_RETURN)
    checks.assert_true(all(v > 0 for v in history["train_loss"]), Msg(
        f"{what}：`history[\"train_loss\"]` 中有不为正的值 {history['train_loss']}（交叉熵的平均总是正数）",
        f"{what}: history[\"train_loss\"] holds values that are not positive, {history['train_loss']} (a mean "
        "cross-entropy is always positive)"), CLS_RETURN)
    best = run.get("best_acc")
    checks.assert_true(isinstance(best, (int, float)) and not isinstance(best, bool) and 0 <= best <= 1, Msg(
        f"{what}：`best_acc` 应为 0 到 1 之间的 Python 数字，实际为 {best!r}",
        f"{what}: best_acc must be a Python number between 0 and 1, got {best!r}"), CLS_RETURN)
    checks.assert_true("model_type" not in run, Msg(f"{what}：`model` 应是 `nn.Module`，实际为 {run.get('model_type')}",
                                                    f"{what}: model must be an nn.Module, got {run.get('model_type')}"),
                       CLS_RETURN)
    checks.assert_true(run["training"] is False, Msg(f"{what}：返回的模型处于 train 模式", f"{what}: the model "
                                                     "returned is in train mode"), CLS_EVAL)
    checks.assert_shape(run["val_logits"], (n_val, classes), f"{what}: model(x_val)", CLS_CLASSES)
    checks.assert_shape(run["test_logits"], (n_test, classes), f"{what}: model(x_test)", CLS_CLASSES)
    checks.assert_finite(run["test_logits"], f"{what}: model(x_test)")


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


def _check_best(run: dict, y_val: torch.Tensor, what: str, hint: Msg | None = None) -> None:
    """The model returned is the one the reported best accuracy belongs to: its accuracy on the
    validation images, computed here, equals ``best_acc`` and the best of ``history["val_acc"]`` (to
    one image: batches of another size may flip an argmax that sits on a tie)."""
    history, best = run["history"]["val_acc"], float(run["best_acc"])
    n = len(y_val)
    checks.assert_true(abs(best - max(history)) <= 1e-9, Msg(
        f"{what}：`best_acc` = {best:.4f}，但 `max(history[\"val_acc\"])` = {max(history):.4f}",
        f"{what}: best_acc = {best:.4f} but max(history[\"val_acc\"]) = {max(history):.4f}"), CLS_BEST)
    measured = _accuracy(run["val_logits"], y_val)
    if abs(measured - best) <= 1.0 / n + 1e-9:
        return
    if hint is None:
        hint = CLS_BEST if abs(measured - history[-1]) <= 1.0 / n + 1e-9 else CLS_VAL_AUG
    checks.fail(Msg(f"{what}：返回的模型在验证图像上的准确率（评分程序计算）为 {measured:.4f}，而报告的 `best_acc` 为 "
                    f"{best:.4f}（各轮：{[round(v, 4) for v in history]}）",
                    f"{what}: the model returned scores {measured:.4f} on the validation images (computed by the grader), "
                    f"but best_acc is reported as {best:.4f} (per epoch: {[round(v, 4) for v in history]})"), hint)


def _fit_hint(run: dict, lr: float) -> Msg | None:
    """A hint from the reported learning rates: a rate that fell by more than half within the first
    epochs points at a scheduler stepped per batch (self-reported, so a hint only)."""
    rates = (run.get("history") or {}).get("lr") if isinstance(run.get("history"), dict) else None
    if isinstance(rates, list) and len(rates) > 1 and all(isinstance(v, float) for v in rates) and rates[1] < 0.3 * lr:
        return CLS_SCHEDULER
    return None


# -- T12.1 image classification ---------------------------------------------------------------------------
@graded(task="run_image_classification", kind="shape", points=1, visibility="public")
def test_classification_returns_history_and_eval_model(student, spec, rng):
    """The result is {"model", "best_acc", "history"}; the history has one entry per epoch (8 with the
    default arguments); the model is in eval mode and outputs (B, num_classes) logits."""
    p = spec.param("cls_defaults")
    _, runs, _, _ = _classify(student, spec, rng, "cls_defaults", defaults=True)
    _check_run(runs[0], 8, p["n_val"], p["n_test"], 10, "run_image_classification(train_set, val_set, 10)")


@graded(task="run_image_classification", kind="accuracy", points=2, visibility="public")
def test_classification_returns_the_best_model(student, spec, rng):
    """The model returned is the best epoch's: its validation accuracy, computed here from labels the
    grader keeps, is the best accuracy reported, and validation sees the images un-augmented."""
    p = spec.param("cls_small")
    _, runs, y_val, _ = _classify(student, spec, rng, "cls_small")
    _check_run(runs[0], p["epochs"], p["n_val"], p["n_test"], 10, "run_image_classification")
    _check_best(runs[0], y_val, "run_image_classification")


@graded(task="run_image_classification", kind="accuracy", points=3, visibility="public")
def test_classification_learns_digits(student, spec, rng):
    """Trained with augmentation and a per-epoch schedule, the best model classifies held-out digits
    (labels kept here) above the threshold."""
    p = spec.param("cls_fit")
    _, runs, _, y_test = _classify(student, spec, rng, "cls_fit")
    run = runs[0]
    _check_run(run, p["epochs"], p["n_val"], p["n_test"], 10, "run_image_classification")
    acc = _accuracy(run["test_logits"], y_test)
    threshold = spec.param("cls_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"run_image_classification：在留出测试图像上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"run_image_classification: held-out test accuracy is {acc:.3f}, at least {threshold:.2f} is required"),
        curve=run["history"]["train_loss"], hint=_fit_hint(run, p["lr"]))


@graded(task="run_image_classification", kind="accuracy", points=1, visibility="public")
def test_classification_is_reproducible(student, spec, rng):
    """Two calls with the same seed give the same history and the same model outputs; a third with
    augment=False (same data and seed) trains differently, so the training batches were augmented."""
    p = spec.param("cls_small")
    _, runs, _, _ = _classify(student, spec, rng, "cls_small", runs=3, last_without_augment=True)
    for run in runs:
        _check_run(run, p["epochs"], p["n_val"], p["n_test"], 10, "run_image_classification")
    same = runs[0]["history"] == runs[1]["history"] and torch.equal(runs[0]["test_logits"], runs[1]["test_logits"])
    checks.assert_true(same, Msg("run_image_classification：同一个 `seed` 调用两次，`history` 或模型的输出不同",
                                 "run_image_classification: two calls with the same seed gave a different history or "
                                 "different model outputs"), CLS_SEED)
    checks.assert_true(not torch.equal(runs[0]["test_logits"], runs[2]["test_logits"]), Msg(
        "run_image_classification：`augment=True` 与 `augment=False`（同样的数据和 `seed`）训练出的模型完全相同",
        "run_image_classification: augment=True and augment=False (same data and seed) trained exactly the same model"),
        CLS_AUGMENT)


@graded(task="run_image_classification", kind="accuracy", points=2, visibility="hidden")
def test_classification_keeps_the_best_epoch(student, spec, rng):
    """A validation set whose labels turn wrong after its first pass: the best epoch is the first, and
    the model returned must be that epoch's, not the last."""
    p = spec.param("cls_rotate")
    _, runs, y_val, _ = _classify(student, spec, rng, "cls_rotate", rotate_val=True)
    run = runs[0]
    _check_run(run, p["epochs"], p["n_val"], p["n_test"], 10, "run_image_classification")
    checks.assert_true(run["val_reads"] == p["epochs"] * p["n_val"], Msg(
        f"run_image_classification：验证集被读取了 {run['val_reads']} 次，期望 {p['epochs']} × {p['n_val']}",
        f"run_image_classification: the validation set was read {run['val_reads']} times, expected "
        f"{p['epochs']} x {p['n_val']}"), CLS_VAL_ONCE)
    # The first epoch is the best (its accuracy on the true labels is far above any later epoch's on the
    # rotated ones), so the model returned must score best_acc on the true labels, computed here.
    _check_best(run, y_val, "run_image_classification(val_set=labels_rotated_after_first_pass)", CLS_BEST)


@graded(task="run_image_classification", kind="accuracy", points=2, visibility="hidden")
def test_classification_subset_no_augmentation_inferred_classes(student, spec, rng):
    """augment=False, a Subset as validation set and num_classes=None on digits 0-6: seven logits, the
    best model, and held-out accuracy above the threshold."""
    p = spec.param("cls_subset")
    classes = 7
    _, runs, y_val, y_test = _classify(student, spec, rng, "cls_subset", classes=classes, num_classes=None,
                                       val_subset=True, augment=False)
    run = runs[0]
    _check_run(run, p["epochs"], p["n_val"], p["n_test"], classes, "run_image_classification(num_classes=None)")
    _check_best(run, y_val, "run_image_classification(augment=False, val_set=Subset)")
    acc = _accuracy(run["test_logits"], y_test)
    threshold = spec.param("cls_subset_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"run_image_classification(augment=False)：在留出测试图像上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"run_image_classification(augment=False): held-out test accuracy is {acc:.3f}, at least {threshold:.2f} is "
        "required"), curve=run["history"]["train_loss"], hint=_fit_hint(run, p["lr"]))


# -- T12.2 sentiment -----------------------------------------------------------------------------------------
POSITIVE = ["good", "great", "excellent", "wonderful", "amazing", "lovely", "fantastic", "enjoyable", "brilliant",
            "superb", "delightful", "pleasant", "charming", "moving"]
NEGATIVE = ["bad", "terrible", "awful", "boring", "horrible", "poor", "dreadful", "disappointing", "mediocre",
            "annoying", "dull", "weak", "clumsy", "tedious"]
FILLERS = ["the", "movie", "film", "story", "acting", "plot", "was", "is", "really", "quite", "this", "a", "it",
           "i", "thought", "found", "overall", "ending", "music", "cast", "and", "very", "so", "script", "scenes",
           "my", "friends", "we", "saw", "last", "night", "director", "of", "show"]


def _corpus(rng: torch.Generator, n: int, negation: float) -> tuple[list[str], list[int]]:
    """Sentences of 3-8 neutral words around one opinion word; in a ``negation`` share of them the
    word is of the other polarity and preceded by "not". Label 1 is positive."""
    texts, labels = [], []
    for _ in range(n):
        label = int(torch.randint(0, 2, (1,), generator=rng))
        negated = float(torch.rand(1, generator=rng)) < negation
        words = POSITIVE if (label == 1) != negated else NEGATIVE
        phrase = [words[int(torch.randint(0, len(words), (1,), generator=rng))]]
        if negated:
            phrase = ["not"] + phrase
        k = int(torch.randint(3, 9, (1,), generator=rng))
        fill = [FILLERS[int(i)] for i in torch.randint(0, len(FILLERS), (k,), generator=rng)]
        at = int(torch.randint(0, k + 1, (1,), generator=rng))
        words_out = fill[:at] + phrase + fill[at:]
        if float(torch.rand(1, generator=rng)) < 0.5:  # mixed case: the tokeniser lower-cases
            words_out[0] = words_out[0].capitalize()
        texts.append(" ".join(words_out))
        labels.append(label)
    return texts, labels


def _predictions(got: Any, n: int, what: str) -> list[int]:
    ok = isinstance(got, list) and len(got) == n and all(isinstance(v, int) and not isinstance(v, bool)
                                                         and v in (0, 1) for v in got)
    checks.assert_true(ok, Msg(f"{what}：应返回长度为 {n} 的 0/1 整数列表，实际为 {got!r:.120}",
                               f"{what}: expected a list of {n} ints (0 or 1), got {got!r:.120}"), SENT_LIST)
    return got


def _sentiment_layout(rng: torch.Generator, vocab: int, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(1, t + 1, (b,), generator=rng)
    lengths[0] = t
    lengths[-1] = 1
    tokens = torch.randint(1, vocab, (b, t), generator=rng)
    tokens[torch.arange(t)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


@graded(task="train_sentiment", kind="shape", points=1, visibility="public")
def test_sentiment_classifier_shapes_and_padding(student, rng):
    """(B, num_classes) float32 logits that do not depend on padding: extra PAD columns, or a row on
    its own, give the same eval-mode logits."""
    tokens, lengths = _sentiment_layout(rng, 40, 6, 7)
    res = student.probe("sentiment_forward", vocab_size=40, embed_dim=8, hidden_dim=6, num_classes=3, tokens=tokens,
                        lengths=lengths, extra_pad=3, seed=seed_from(rng))
    what = "SentimentClassifier(40, 8, 6, num_classes=3)(tokens[6, 7], lengths)"
    checks.fail_on_probe_error(res, what, SENT_PAD)
    checks.assert_shape(res["logits"], (6, 3), what)
    checks.assert_dtype(res["logits"], torch.float32, what)
    checks.assert_finite(res["logits"], what)
    checks.assert_close(res["logits_padded"], res["logits"], f"{what}.eval()(tokens_with_3_more_pad, lengths)", hint=SENT_PAD,
                        atol=1e-5, rtol=1e-4)
    rows = torch.cat([checks.assert_tensor(r, what) for r in res["logits_rows"]])
    checks.assert_close(rows, res["logits"], f"{what}.eval()(tokens[b:b+1], lengths[b:b+1])", hint=SENT_PAD, atol=1e-5, rtol=1e-4)


@graded(task="train_sentiment", kind="gradient", points=1, visibility="public")
def test_sentiment_classifier_gradients(student, rng):
    """Built with its defaults (two classes, dropout 0.5, PAD 0), in train mode the gradient of the
    logits reaches every parameter, and the PAD row of the embedding gets none (padding_idx)."""
    tokens, lengths = _sentiment_layout(rng, 30, 5, 6)
    res = student.probe("sentiment_forward", vocab_size=30, embed_dim=5, hidden_dim=4, num_classes=None, tokens=tokens,
                        lengths=lengths, extra_pad=1, seed=seed_from(rng))
    what = "SentimentClassifier(30, 5, 4)"
    checks.fail_on_probe_error(res, what, SENT_LAYERS)
    grads = res["grads"]
    checks.assert_true(len(grads) > 0, Msg(f"{what}：没有任何参数", f"{what}: it has no parameters"), SENT_LAYERS)
    for name, g in grads.items():
        checks.assert_true(g is not None and bool(torch.isfinite(g).all()) and bool((g != 0).any()), Msg(
            f"{what}：参数 `{name}` 没有得到（有限且非零的）梯度", f"{what}: parameter {name} got no (finite, non-zero) "
            "gradient"), SENT_LAYERS)
    for name in res["embedding_pad_rows"]:
        checks.assert_true(bool((grads[name][0] == 0).all()), Msg(
            f"{what}：词嵌入 `{name}` 的 PAD 行（下标 0）得到了梯度", f"{what}: the PAD row (index 0) of the embedding "
            f"{name} got a gradient"), SENT_LAYERS)


@graded(task="train_sentiment", kind="accuracy", points=3, visibility="public")
def test_sentiment_learns_negation(student, spec, rng):
    """Trained on a synthetic corpus (20% of sentences negated), the classifier labels held-out
    sentences (labels kept here) above the threshold; the model is handed to predict in train mode."""
    p = spec.param("sentiment_fit")
    texts, labels = _corpus(rng, p["n_train"], p["negation"])
    eval_texts, eval_labels = _corpus(rng, p["n_eval"], p["negation"])
    res = student.probe("sentiment_fit", texts=texts, labels=labels, eval_texts=eval_texts, epochs=p["epochs"],
                        seed=seed_from(rng), singles=p["singles"])
    checks.fail_on_probe_error(res, "train_sentiment / predict_sentiment")
    got = _predictions(res["predictions"], len(eval_texts), "predict_sentiment")
    checks.assert_true(res["predictions_again"] == got, Msg(
        "predict_sentiment：同样的句子预测两次，结果不同", "predict_sentiment: the same sentences predicted twice gave "
        "different labels"), SENT_EVAL)
    alone = [s[0] if isinstance(s, list) and len(s) == 1 else None for s in res["singles"]]
    acc = sum(int(a == b) for a, b in zip(got, eval_labels)) / len(eval_labels)
    negated = [i for i, t in enumerate(eval_texts) if "not" in t.lower().split()]
    neg_acc = sum(int(got[i] == eval_labels[i]) for i in negated) / max(len(negated), 1)
    hint = SENT_VOCAB if alone != got[:len(alone)] else SENT_NEGATION
    threshold = spec.param("sentiment_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"情感分类：留出句子上的准确率为 {acc:.3f}（含否定的句子 {neg_acc:.3f}），要求至少 {threshold:.2f}",
        f"sentiment: held-out accuracy is {acc:.3f} ({neg_acc:.3f} on negated sentences), at least {threshold:.2f} is "
        "required"), hint=hint)


@graded(task="train_sentiment", kind="accuracy", points=2, visibility="hidden")
def test_sentiment_predictions_are_stable(student, spec, rng):
    """Predictions are deterministic (eval mode), do not depend on the other sentences of the call
    (the training vocabulary, packing), and an empty text, a blank one and one of unknown words get a
    label too."""
    p = spec.param("sentiment_small")
    texts, labels = _corpus(rng, p["n_train"], 0.2)
    eval_texts, _ = _corpus(rng, p["n_eval"], 0.2)
    special = ["", "   ", "zorblax quintessa vrmm", "NOT"]
    res = student.probe("sentiment_fit", texts=texts, labels=labels, eval_texts=eval_texts, epochs=p["epochs"],
                        seed=seed_from(rng), singles=p["n_eval"], special_texts=special)
    checks.fail_on_probe_error(res, "train_sentiment / predict_sentiment")
    got = _predictions(res["predictions"], len(eval_texts), "predict_sentiment")
    checks.assert_true(res["predictions_again"] == got, Msg(
        "predict_sentiment：同样的句子预测两次，结果不同", "predict_sentiment: the same sentences predicted twice gave "
        "different labels"), SENT_EVAL)
    singles = [s[0] if isinstance(s, list) and len(s) == 1 else None for s in res["singles"]]
    differ = sum(int(a != b) for a, b in zip(singles, got))
    checks.assert_true(differ == 0, Msg(
        f"predict_sentiment：{differ} 个句子单独预测与一起预测的结果不同", f"predict_sentiment: {differ} sentences got "
        "another label alone than together with the others"), SENT_VOCAB)
    if res.get("special_error"):
        checks.fail(Msg(f"predict_sentiment({special!r})：你的代码抛出了异常 {res['special_error']}",
                        f"predict_sentiment({special!r}): your code raised {res['special_error']}"), SENT_EMPTY)
    _predictions(res["special"], len(special), f"predict_sentiment({special!r})")
    checks.assert_true(res["empty_list"] == [], Msg(f"predict_sentiment([])：应返回 []，实际为 {res['empty_list']!r}",
                                                    f"predict_sentiment([]): expected [], got {res['empty_list']!r}"),
                       SENT_LIST)


# -- T12.3 GAN -----------------------------------------------------------------------------------------------
def _mlp_state(rng: torch.Generator, d_in: int, hidden: int, d_out: int) -> dict[str, torch.Tensor]:
    return {"fc1.weight": torch.randn(hidden, d_in, generator=rng, dtype=torch.float64) * 0.7,
            "fc1.bias": torch.randn(hidden, generator=rng, dtype=torch.float64) * 0.3,
            "fc2.weight": torch.randn(d_out, hidden, generator=rng, dtype=torch.float64) * 0.7,
            "fc2.bias": torch.randn(d_out, generator=rng, dtype=torch.float64) * 0.3}


def _mlp(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return F.linear(torch.tanh(F.linear(x, state["fc1.weight"], state["fc1.bias"])), state["fc2.weight"],
                    state["fc2.bias"])


def _gan_replay(g_state, d_state, reals, lr_g, lr_d, seed, latent):
    """The contract's steps in float64 with plain SGD: losses and both states after every step."""
    gen = torch.Generator().manual_seed(seed)
    G = {k: v.clone().requires_grad_(True) for k, v in g_state.items()}
    D = {k: v.clone().requires_grad_(True) for k, v in d_state.items()}
    out = {"losses": [], "g_states": [], "d_states": []}
    bce = F.binary_cross_entropy_with_logits
    for real in reals:
        z = torch.randn(real.shape[0], latent, generator=gen, dtype=torch.float64)
        fake = _mlp(G, z)
        ones, zeros = torch.ones(len(real), 1, dtype=torch.float64), torch.zeros(len(real), 1, dtype=torch.float64)
        d_loss = bce(_mlp(D, real), ones) + bce(_mlp(D, fake.detach()), zeros)
        grads = torch.autograd.grad(d_loss, list(D.values()))
        with torch.no_grad():
            D = {k: (v - lr_d * g).requires_grad_(True) for (k, v), g in zip(D.items(), grads)}
        g_loss = bce(_mlp(D, fake), ones)
        grads = torch.autograd.grad(g_loss, list(G.values()))
        with torch.no_grad():
            G = {k: (v - lr_g * g).requires_grad_(True) for (k, v), g in zip(G.items(), grads)}
        out["losses"].append([float(d_loss.detach()), float(g_loss.detach())])
        out["g_states"].append({k: v.detach() for k, v in G.items()})
        out["d_states"].append({k: v.detach() for k, v in D.items()})
    return out


def _check_gan_replay(student, rng, batch: int, steps: int, use_generator: bool) -> None:
    latent, hidden, dim = 3, 6, 1
    g_state, d_state = _mlp_state(rng, latent, hidden, dim), _mlp_state(rng, dim, hidden, 1)
    reals = [4 + 1.25 * torch.randn(batch, dim, generator=rng, dtype=torch.float64) for _ in range(steps)]
    seed, lr_g, lr_d = seed_from(rng), 0.2, 0.1
    res = student.probe("gan_replay", g_state=g_state, d_state=d_state, latent_dim=latent, hidden=hidden, reals=reals,
                        lr_g=lr_g, lr_d=lr_d, seed=seed, use_generator=use_generator)
    what = f"gan_step(real[{batch}, 1], generator={'torch.Generator' if use_generator else 'None'})"
    detached = all(entry["other_grad"] == 0 for entry in res["d_log"])
    if res.get("error"):
        checks.fail_on_probe_error(res, what, GAN_DETACH if not detached or "second time" in res["error"] else GAN_ORDER)
    checks.assert_true(detached, Msg(f"{what}：调用 `opt_D.step()` 时生成器的参数上有梯度",
                                     f"{what}: the generator's parameters held gradients when opt_D.step() was called"),
                       GAN_DETACH)
    d_steps = len(res["d_log"])
    checks.assert_true(d_steps == steps, Msg(f"{what}：{steps} 步中 `opt_D.step()` 被调用了 {d_steps} 次",
                                             f"{what}: opt_D.step() was called {d_steps} times in {steps} steps"),
                       GAN_D_STEP)
    want = _gan_replay(g_state, d_state, reals, lr_g, lr_d, seed, latent)
    for k in range(steps):
        step = f"{what}, step {k + 1}"
        hint = GAN_ZERO_GRAD if k > 0 else GAN_ORDER
        for name, value in want["d_states"][k].items():
            checks.assert_close(res["d_states"][k][name], value, f"{step}: D.{name}", hint=hint, atol=1e-9, rtol=1e-7)
        for name, value in want["g_states"][k].items():
            checks.assert_close(res["g_states"][k][name], value, f"{step}: G.{name}", hint=hint, atol=1e-9, rtol=1e-7)
        losses = res["losses"][k]
        checks.assert_true(isinstance(losses, list) and len(losses) == 2, Msg(
            f"{step}：应返回两个数 `(d_loss, g_loss)`，实际为 {losses!r:.80}", f"{step}: expected two numbers (d_loss, "
            f"g_loss), got {losses!r:.80}"), GAN_LOSSES)
        checks.assert_number_close(losses[0], want["losses"][k][0], f"{step}: d_loss", atol=1e-8, hint=GAN_LOSSES)
        checks.assert_number_close(losses[1], want["losses"][k][1], f"{step}: g_loss", atol=1e-8, hint=GAN_LOSSES)


@graded(task="gan_step", kind="shape", points=1, visibility="public")
def test_gan_module_shapes(student, rng):
    """Generator: (B, latent_dim) -> (B, out_dim); Discriminator: (B, in_dim) -> (B, 1) logits (not
    confined to (0, 1)); both run on a batch of 1 in train mode."""
    z, x = torch.randn(9, 3, generator=rng), torch.randn(9, 2, generator=rng)
    far = torch.cat([torch.linspace(-1000, 1000, 41)[:, None].repeat(1, 2), 50 * torch.randn(40, 2, generator=rng)])
    res = student.probe("gan_modules", latent_dim=3, hidden=16, out_dim=2, z=z, x=x, far=far, seed=seed_from(rng))
    what = "Generator(latent_dim=3, hidden=16, out_dim=2) / Discriminator(in_dim=2, hidden=16)"
    checks.fail_on_probe_error(res, what, GAN_SHAPES)
    checks.assert_shape(res["g_out"], (9, 2), "G(z[9, 3])", GAN_SHAPES)
    checks.assert_shape(res["d_out"], (9, 1), "D(x[9, 2])", GAN_SHAPES)
    checks.assert_shape(res["g_one"], (1, 2), "G.train()(z[1, 3])", GAN_SHAPES)
    checks.assert_shape(res["d_one"], (1, 1), "D.train()(x[1, 2])", GAN_SHAPES)
    checks.assert_finite(res["g_out"], "G(z)")
    checks.assert_finite(res["d_far"], "D(x)")
    d_far = res["d_far"]
    checks.assert_true(not bool(((d_far >= 0) & (d_far <= 1)).all()), Msg(
        "D(x)：对相距很远的输入（-1000 到 1000），输出始终在 [0, 1] 之内，像是概率而不是 logits",
        "D(x): for inputs far apart (-1000 to 1000) every output stays within [0, 1]: probabilities, not logits"),
        GAN_LOGITS)


@graded(task="gan_step", kind="gradient", points=3, visibility="public")
def test_gan_step_updates(student, rng):
    """Two steps of gan_step with the grader's float64 modules and SGD equal a float64 replay of the
    contract: the D step on detached fakes, then the G step through the updated D, D untouched by it."""
    _check_gan_replay(student, rng, batch=16, steps=2, use_generator=True)


@graded(task="gan_step", kind="gradient", points=1, visibility="hidden")
def test_gan_step_batch_one_global_generator(student, rng):
    """A batch of one sample and generator=None (the global generator, seeded by the probe) still
    follow the replay."""
    _check_gan_replay(student, rng, batch=1, steps=2, use_generator=False)


@graded(task="gan_step", kind="accuracy", points=3, visibility="public")
def test_gan_learns_the_target(student, spec, rng):
    """After a short training run the generator's samples (on noise drawn here) have the target's mean
    and a spread of the right size."""
    p = spec.param("gan_fit")
    z = torch.randn(p["samples"], 4, generator=rng)
    res = student.probe("gan_fit", steps=p["steps"], batch=p["batch"], lr=p["lr"], final_lr_factor=p["final_lr_factor"],
                        mean=p["mean"], std=p["std"], seed=seed_from(rng), z=z)
    checks.fail_on_probe_error(res, "gan_step")
    samples = res["samples"]
    checks.assert_shape(samples, (p["samples"], 1), "G(z)", GAN_SHAPES)
    checks.assert_finite(samples, "G(z)")
    mean, std = float(samples.double().mean()), float(samples.double().std())
    lo, hi = spec.param("gan_std_range")
    err = spec.param("gan_mean_error")
    checks.assert_at_most(abs(mean - p["mean"]), err, Msg(
        f"GAN：生成样本的均值为 {mean:.3f}，与目标均值 {p['mean']} 相差应小于 {err}",
        f"GAN: the samples' mean is {mean:.3f}; it must be within {err} of the target mean {p['mean']}"),
        metric="mean error", hint=GAN_ORDER)
    checks.assert_true(lo <= std <= hi, Msg(
        f"GAN：生成样本的标准差为 {std:.3f}，应在 [{lo}, {hi}] 之内（目标为 {p['std']}）",
        f"GAN: the samples' standard deviation is {std:.3f}; it must lie in [{lo}, {hi}] (target {p['std']})"),
        GAN_ORDER)


# -- T12.4 detection ---------------------------------------------------------------------------------------------
def _boxes(rng: torch.Generator, n: int, dtype=torch.float32, spread: float = 10.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=rng, dtype=torch.float64) * spread
    wh = 0.5 + torch.rand(n, 2, generator=rng, dtype=torch.float64) * spread / 3
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU here in the inputs' dtype (float64 in the tests), 0 where the union is 0."""
    sides_a, sides_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    overlap = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    common = overlap.prod(dim=-1)
    total = sides_a.prod(dim=-1)[:, None] + sides_b.prod(dim=-1)[None, :] - common
    return torch.where(total > 0, common / total.where(total > 0, torch.ones_like(total)), torch.zeros_like(total))


def _positive_when_apart(got: Any, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``got`` is positive for a pair of boxes apart in both x and y (the unclamped
    intersection's symptom: two negative sides multiply to a positive area)."""
    apart = ((torch.minimum(a[:, None, 2], b[None, :, 2]) < torch.maximum(a[:, None, 0], b[None, :, 0]))
             & (torch.minimum(a[:, None, 3], b[None, :, 3]) < torch.maximum(a[:, None, 1], b[None, :, 1])))
    return isinstance(got, torch.Tensor) and got.shape == apart.shape and bool(apart.any()) and \
        bool((got[apart].abs() > 1e-6).any())


def _nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, order: torch.Tensor | None = None) -> list[int]:
    """NMS here, in float64, in the given processing order (by score unless told)."""
    iou = _iou(boxes.double(), boxes.double())
    order = scores.argsort(descending=True) if order is None else order
    removed, keep = set(), []
    for i in order.tolist():
        if i in removed:
            continue
        keep.append(i)
        removed |= set((iou[i] > threshold).nonzero().flatten().tolist())
    return keep


def _torchvision_ops():
    try:
        from torchvision import ops
    except ImportError:  # the course runs without torchvision too: the float64 code above is the reference then
        return None
    return ops


@graded(task="nms", kind="shape", points=1, visibility="public")
def test_detection_shapes_and_dtypes(student, rng):
    """box_iou gives (N, M) in the inputs' dtype; nms gives int64 indices; filter_detections keeps the
    three keys with equal lengths and dtypes."""
    a, b = _boxes(rng, 5), _boxes(rng, 3)
    out = checks.call_or_fail(lambda: student.box_iou(a, b), "box_iou(a[5, 4], b[3, 4])")
    checks.assert_shape(out, (5, 3), "box_iou(a[5, 4], b[3, 4])")
    checks.assert_dtype(out, torch.float32, "box_iou(a[5, 4], b[3, 4])")
    out64 = checks.call_or_fail(lambda: student.box_iou(a.double(), b.double()), "box_iou(float64)")
    checks.assert_dtype(out64, torch.float64, "box_iou(float64)")
    scores = (torch.randperm(5, generator=rng).float() + torch.rand(5, generator=rng)) / 5  # two under 0.4, three over
    kept = checks.call_or_fail(lambda: student.nms(a, scores, 0.5), "nms(boxes[5, 4], scores[5], 0.5)")
    checks.assert_tensor(kept, "nms(boxes[5, 4], scores[5], 0.5)")
    checks.assert_dtype(kept, torch.int64, "nms(boxes[5, 4], scores[5], 0.5)", NMS_RULE)
    checks.assert_true(kept.dim() == 1, Msg(f"`nms`：应返回一维下标张量，实际形状为 {list(kept.shape)}",
                                            f"nms: expected a 1-D tensor of indices, got shape {list(kept.shape)}"),
                       NMS_RULE)
    pred = {"boxes": a, "labels": torch.randint(1, 5, (5,), generator=rng), "scores": scores}
    got = checks.call_or_fail(lambda: student.filter_detections(pred, 0.4), "filter_detections(pred, 0.4)")
    keep = scores > 0.4
    checks.assert_true(isinstance(got, dict) and set(got) == {"boxes", "labels", "scores"}, Msg(
        "filter_detections：应返回键为 \"boxes\"、\"labels\"、\"scores\" 的字典",
        "filter_detections: expected a dict with the keys \"boxes\", \"labels\" and \"scores\""), FILTER_MASK)
    n = int(keep.sum())
    checks.assert_shape(got["boxes"], (n, 4), "filter_detections(pred, 0.4)[\"boxes\"]", FILTER_MASK)
    checks.assert_shape(got["labels"], (n,), "filter_detections(pred, 0.4)[\"labels\"]", FILTER_MASK)
    checks.assert_shape(got["scores"], (n,), "filter_detections(pred, 0.4)[\"scores\"]", FILTER_MASK)
    checks.assert_dtype(got["labels"], torch.int64, "filter_detections(pred, 0.4)[\"labels\"]", FILTER_MASK)


@graded(task="nms", kind="accuracy", points=2, visibility="public")
def test_box_iou_matches_torchvision(student, rng):
    """box_iou equals torchvision.ops.box_iou (or a float64 computation here) on random boxes, many
    of them disjoint in both directions."""
    ops = _torchvision_ops()
    for dtype, (n, m) in ((torch.float32, (12, 9)), (torch.float64, (7, 15))):
        a, b = _boxes(rng, n, dtype, spread=20.0), _boxes(rng, m, dtype, spread=20.0)
        want = ops.box_iou(a, b) if ops is not None else _iou(a.double(), b.double()).to(dtype)
        what = f"box_iou(a[{n}, 4], b[{m}, 4], {str(dtype).removeprefix('torch.')})"
        got = checks.call_or_fail(lambda: student.box_iou(a, b), what)
        hint = IOU_CLAMP if _positive_when_apart(got, a, b) else IOU_FORMULA
        checks.assert_close(got, want, what, hint=hint)


@graded(task="nms", kind="gradient", points=1, visibility="public")
def test_box_iou_gradcheck(student, rng):
    """box_iou is differentiable in both inputs (float64 gradcheck on overlapping, non-degenerate boxes)."""
    a = _boxes(rng, 4, torch.float64, spread=3.0)
    b = _boxes(rng, 3, torch.float64, spread=3.0)
    checks.assert_gradcheck(student, "box_iou", (a, b), wrt=(0, 1), generator=rng, hint=IOU_FORMULA)


@graded(task="nms", kind="accuracy", points=2, visibility="public")
def test_nms_and_filter_match(student, rng):
    """nms keeps the same boxes, in the same order, as torchvision.ops.nms (distinct scores; three
    thresholds); filter_detections keeps the detections scoring above the threshold, in all fields."""
    ops = _torchvision_ops()
    boxes = _boxes(rng, 40, spread=12.0)
    scores = torch.randperm(40, generator=rng).float() / 40 + torch.rand(40, generator=rng) / 100
    for threshold in (0.3, 0.5, 0.7):
        want = ops.nms(boxes, scores, threshold).tolist() if ops is not None else _nms(boxes, scores, threshold)
        what = f"nms(boxes[40, 4], scores[40], {threshold})"
        got = checks.call_or_fail(lambda: student.nms(boxes, scores, threshold), what)
        checks.assert_tensor(got, what)
        got_list = got.tolist()
        if got_list != want:
            unsorted = _nms(boxes, scores, threshold, order=torch.arange(40))
            in_order = all(scores[i] >= scores[j] for i, j in zip(got_list, got_list[1:]))
            hint = NMS_SORT if got_list == unsorted or not in_order else NMS_RULE
            checks.fail(Msg(f"{what}：保留了 {got_list}，期望 {want}", f"{what}: kept {got_list}, expected {want}"), hint)
    labels = torch.randint(1, 9, (40,), generator=rng)
    pred = {"boxes": boxes, "labels": labels, "scores": scores}
    got = checks.call_or_fail(lambda: student.filter_detections(pred, 0.55), "filter_detections(pred, 0.55)")
    keep = scores > 0.55
    checks.assert_true(isinstance(got, dict) and set(got) == {"boxes", "labels", "scores"}, Msg(
        "filter_detections：应返回键为 \"boxes\"、\"labels\"、\"scores\" 的字典",
        "filter_detections: expected a dict with the keys \"boxes\", \"labels\" and \"scores\""), FILTER_MASK)
    for key in ("boxes", "labels", "scores"):
        checks.assert_close(got[key], pred[key][keep], f"filter_detections(pred, 0.55)[\"{key}\"]", hint=FILTER_MASK)


@graded(task="nms", kind="accuracy", points=2, visibility="hidden")
def test_detection_edge_cases(student, rng):
    """Zero-area boxes give IoU 0 (no NaN), identical boxes 1; threshold 1.0 keeps every box in score
    order; no boxes give empty results of the right dtype and shape."""
    pts = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 5.0], [0.0, 0.0, 3.0, 3.0], [0.0, 0.0, 3.0, 3.0]])
    got = checks.call_or_fail(lambda: student.box_iou(pts, pts), "box_iou(zero_area_and_identical, zero_area_and_identical)")
    checks.assert_finite(got, "box_iou(zero_area_and_identical, zero_area_and_identical)", IOU_ZERO_UNION)
    hint = IOU_CLAMP if _positive_when_apart(got, pts, pts) else IOU_ZERO_UNION
    checks.assert_close(got, _iou(pts.double(), pts.double()).float(), "box_iou(zero_area_and_identical, zero_area_and_identical)",
                        hint=hint)
    far = torch.tensor([[10.0, 10.0, 11.0, 11.0]])
    near = torch.tensor([[0.0, 0.0, 1.0, 2.0]])
    got = checks.call_or_fail(lambda: student.box_iou(far, near), "box_iou(far, near)")
    checks.assert_close(got, torch.zeros(1, 1), "box_iou(far, near)", hint=IOU_CLAMP)
    empty = torch.zeros(0, 4)
    got = checks.call_or_fail(lambda: student.box_iou(empty, pts), "box_iou(a[0, 4], b[4, 4])")
    checks.assert_shape(got, (0, 4), "box_iou(a[0, 4], b[4, 4])")
    boxes = _boxes(rng, 12, spread=4.0)
    boxes[5] = boxes[2]
    scores = torch.randperm(12, generator=rng).float() + 0.5
    got = checks.call_or_fail(lambda: student.nms(boxes, scores, 1.0), "nms(boxes, scores, 1.0)")
    got_list, by_score = checks.assert_tensor(got, "nms(boxes, scores, 1.0)").tolist(), scores.argsort(descending=True)
    in_order = all(scores[i] >= scores[j] for i, j in zip(got_list, got_list[1:]))
    checks.assert_equal(got_list, by_score.tolist(), "nms(boxes, scores, 1.0)", NMS_RULE if in_order else NMS_SORT)
    got = checks.call_or_fail(lambda: student.nms(empty, torch.zeros(0), 0.5), "nms(boxes[0, 4], scores[0], 0.5)")
    checks.assert_shape(got, (0,), "nms(boxes[0, 4], scores[0], 0.5)", NMS_RULE)
    checks.assert_dtype(got, torch.int64, "nms(boxes[0, 4], scores[0], 0.5)", NMS_RULE)
    for n, threshold in ((0, 0.5), (6, 2.0)):
        pred = {"boxes": _boxes(rng, n), "labels": torch.ones(n, dtype=torch.int64), "scores": torch.rand(n, generator=rng)}
        what = f"filter_detections(N={n}, score_threshold={threshold})"
        got = checks.call_or_fail(lambda: student.filter_detections(pred, threshold), what)
        checks.assert_true(isinstance(got, dict) and set(got) == {"boxes", "labels", "scores"}, Msg(
            f"{what}：应返回键为 \"boxes\"、\"labels\"、\"scores\" 的字典",
            f"{what}: expected a dict with the keys \"boxes\", \"labels\" and \"scores\""), FILTER_MASK)
        checks.assert_shape(got["boxes"], (0, 4), f"{what}[\"boxes\"]", FILTER_MASK)
        checks.assert_shape(got["labels"], (0,), f"{what}[\"labels\"]", FILTER_MASK)
        checks.assert_dtype(got["labels"], torch.int64, f"{what}[\"labels\"]", FILTER_MASK)
        checks.assert_shape(got["scores"], (0,), f"{what}[\"scores\"]", FILTER_MASK)


@graded(task="nms", kind="speed", points=1, visibility="hidden")
def test_box_iou_speed(student, reference_worker, spec, rng):
    """box_iou of 150 x 150 boxes costs at most a few times the reference's broadcast computation."""
    n, m = spec.param("iou_speed_sizes")
    factor = spec.param("iou_speed_factor")
    result = compare_probe_speed(student, reference_worker, "repeat_box_iou", [{"randn": [n, 4]}, {"randn": [m, 4]}],
                                 rng, rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                 factor=factor)
    assert_speed(result, factor, "box_iou", hint=IOU_VECTORISE)
