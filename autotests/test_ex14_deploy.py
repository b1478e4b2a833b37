"""Autotests for ex14_deploy: checkpoints, state-dict formats, ONNX export, an inference wrapper and logging.

Files the submission writes come back as bytes (capped) and are opened here only in ways that run no
code: a checkpoint with ``torch.load(weights_only=True)``, an ONNX model after structural checks, in
onnxruntime in a child process of the grader (``grader/artifacts.py``), never through the student's
own ``onnx_predict``. Files the submission reads (checkpoints, ONNX models, PNG images) are made here.
Every expected value is recomputed here: the straight training run in float64, the eval forward of
the exported model, the predictions from the images the test made, the writer calls from the metrics
it sent.
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testdata import seed_from
from grader import checks
from grader.artifacts import (ArtifactRefused, artifact_bytes, check_onnx_bytes, load_checkpoint_bytes,
                              run_onnx)
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed
from grader.worker.wire import tensor_facts

pytestmark = pytest.mark.exercise("ex14_deploy")

# -- feedback ----------------------------------------------------------------------------------------
CKPT_PICKLE = Msg("PyTorch 2.6 起 `torch.load` 默认 `weights_only=True`，整模型 `pickle`（`torch.save(model)`）无法加载："
                  "请保存 `model.state_dict()`、`optimizer.state_dict()` 等字典",
                  "Since PyTorch 2.6 torch.load defaults to weights_only=True and a pickled model (torch.save(model)) "
                  "cannot be loaded: save state_dicts (model.state_dict(), optimizer.state_dict())")
CKPT_OPTIMIZER = Msg("恢复训练结果不同：需保存并加载 `optimizer.state_dict()`（Adam 的动量和步数）",
                     "The resumed run differs from the straight run: save and load optimizer.state_dict() (Adam's "
                     "moments and step counts)")
CKPT_SCHEDULER = Msg("恢复后学习率不对：需保存并加载 `scheduler.state_dict()`",
                     "The learning rate after resuming is wrong: save and load scheduler.state_dict()")
CKPT_MODEL = Msg("加载后的模型参数不对：`model.load_state_dict(checkpoint['model_state_dict'])`",
                 "The model's parameters after loading are wrong: model.load_state_dict(checkpoint['model_state_dict'])")
CKPT_LOSS = Msg("请保存 `loss.item()`：张量形式的 `loss` 带着计算图，加载后 `requires_grad=True`；额外的张量值要存成 Python 数字",
                "Store loss as a float (loss.item()): a loss tensor carries its graph and reloads with "
                "requires_grad=True; extra tensor values are stored as Python numbers")
CKPT_KEYS = Msg("检查点是一个字典，键为 `'model_state_dict'`、`'optimizer_state_dict'`、`'scheduler_state_dict'`（有调度器时）、"
                "`'epoch'` 以及额外的关键字参数", "The checkpoint is a dict with the keys 'model_state_dict', "
                "'optimizer_state_dict', 'scheduler_state_dict' (with a scheduler), 'epoch' and the extra keyword arguments")
CKPT_CWD = Msg("只写入给定的 `path`：不要在当前工作目录里另存文件（例如固定的 `'checkpoint.pt'`）",
               "Write under the given path only: no other file in the working directory (such as a fixed "
               "'checkpoint.pt')")
CKPT_RETURN = Msg("`load_checkpoint` 返回其余的元数据：去掉三个 `*_state_dict` 键后的字典（`epoch`、`loss` 等）",
                  "load_checkpoint returns the remaining metadata: the dict without the three *_state_dict keys "
                  "(epoch, loss and the like)")
CKPT_KEYERROR = Msg("检查点里没有 `'optimizer_state_dict'` 却传入了 `optimizer` 时，应抛出 `KeyError`（说明缺少哪个键）",
                    "Raise KeyError (naming the key) when an optimizer is given but the checkpoint holds no "
                    "'optimizer_state_dict'")
CKPT_WEIGHTS_ONLY = Msg("请用 `torch.load(path, map_location=map_location, weights_only=True)` 加载",
                        "Load with torch.load(path, map_location=map_location, weights_only=True)")

SD_PREFIX = Msg("只去掉开头的 `'module.'`/`'_orig_mod.'` 前缀（`key.startswith(...)`），不要对每个键都 `k[7:]`",
                "Strip only a leading 'module.' / '_orig_mod.' prefix (key.startswith(...)), not k[7:] on every key")
SD_REPLACE = Msg("`replace` 会误伤中间的 `'module.'`（例如 `'encoder.module.weight'`）：只去掉开头的前缀",
                 "Don't use replace: it also removes an inner 'module.' (as in 'encoder.module.weight'); strip only a "
                 "leading prefix")
SD_CONTAINER = Msg("容器键可能不同，或者文件直接就是 `state_dict`：依次检查 `'model_state_dict'`、`'state_dict'`、"
                   "`'model'`、`'net'`", "Detect the container: the key differs between files, or the file is the "
                   "state_dict itself; look for 'model_state_dict', 'state_dict', 'model', 'net' in this order")
SD_COMPILED = Msg("`torch.compile` 保存的键带 `'_orig_mod.'` 前缀，也要去掉（两种前缀可能叠在一起）",
                  "Keys saved from torch.compile carry an '_orig_mod.' prefix: strip it too (the two prefixes can be "
                  "stacked)")
SD_DEFAULT = Msg("`strict` 默认为 `True`：缺少键时 `load_state_dict` 应抛出 `RuntimeError`",
                 "strict defaults to True: with keys missing, load_state_dict raises RuntimeError")
SD_STRICT = Msg("`load_weights` 返回 `load_state_dict(..., strict=strict)` 报告的 `(missing_keys, unexpected_keys)` 两个列表",
                "load_weights returns the two lists (missing_keys, unexpected_keys) that "
                "load_state_dict(..., strict=strict) reports")

ONNX_DYNAMIC = Msg("ONNX 模型的批大小被固定了：请声明动态批维度（`dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}`"
                   " 或 `dynamic_shapes`）", "The ONNX model's batch size is fixed: declare a dynamic batch "
                   "(dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}, or dynamic_shapes)")
ONNX_OPSET = Msg("默认 `opset=18`：`torch.onnx.export(..., opset_version=opset)`",
                 "The default is opset=18: torch.onnx.export(..., opset_version=opset)")
ONNX_STATIC = Msg("`dynamic_batch=False` 时批维度应固定为示例输入的批大小", "With dynamic_batch=False the batch "
                  "dimension is fixed to the example's batch size")
ONNX_NAMES = Msg("导出时请指定 `input_names=['input']`、`output_names=['output']`",
                 "Export with input_names=['input'] and output_names=['output']")
ONNX_EVAL = Msg("导出前 `model.eval()`，并按 eval 模式导出，否则 `Dropout`/`BatchNorm` 行为不同",
                "Export in eval mode (model.eval() first), or Dropout/BatchNorm behave differently")
ONNX_FLOAT32 = Msg("`onnxruntime` 报 `INVALID_ARGUMENT`：模型期望 `float32` 输入，请先 `x.astype(np.float32)`",
                   "onnxruntime reports INVALID_ARGUMENT: the model expects float32 input; cast to float32 first "
                   "(x.astype(np.float32))")
ONNX_RETURN = Msg("`onnx_predict` 返回第一个输出，`float32` 的 `np.ndarray`，形状为 `(B, K)`",
                  "onnx_predict returns the first output, a float32 np.ndarray of shape (B, K)")
ONNX_PATH = Msg("`export_onnx` 写到给定的 `path` 并返回这个 `path`", "export_onnx writes to the given path and "
                "returns that path")

PRED_PER_SAMPLE = Msg("置信度应逐样本取 `probs.max(dim=1)`，不是整批的 `torch.max`",
                      "Take the confidence per sample (probs.max(dim=1)), not torch.max over the whole batch")
PRED_SOFTMAX = Msg("置信度是 `softmax(logits, dim=1)` 中最大的概率（每行和为 1）",
                   "The confidence is the largest probability of softmax(logits, dim=1) (each row sums to 1)")
PRED_NORMALIZE = Msg("预处理：必要时缩放到 `size`，再按通道 `(x - mean) / std`", "Preprocess: resize to size when "
                     "needed, then (x - mean) / std per channel")
PRED_EVAL = Msg("推理前 `model.eval()`：模型可能处于 train 模式（Dropout 让结果每次不同）",
                "Call model.eval() before inference: the model may be in train mode (Dropout makes every call differ)")
PRED_NO_GRAD = Msg("推理时请在 `torch.no_grad()`（或 `torch.inference_mode()`）中前向：不需要计算图",
                   "Run the forward under torch.no_grad() (or torch.inference_mode()): inference needs no graph")
PRED_RGB = Msg("请 `convert('RGB')`：灰度图只有 1 个通道，RGBA 图有 4 个通道", "Convert to RGB (convert('RGB')): a "
               "grayscale image has 1 channel and an RGBA image 4")
PRED_BATCH_DIM = Msg("单张图片需添加批维：`x.unsqueeze(0)` 得到 `(1, 3, size, size)`",
                     "Add the batch dim for a single image: x.unsqueeze(0) gives (1, 3, size, size)")
PRED_SQUEEZE = Msg("批大小为 1 时也要返回一个元组的列表：不要 `squeeze()` 掉批维",
                   "With a batch of 1, return a list of one tuple too: do not squeeze() the batch dim away")
PRED_BAD_BYTES = Msg("无法解码的字节应抛出 `ValueError`（捕获 `PIL.UnidentifiedImageError`/`OSError` 后转换）",
                     "Bytes that do not decode raise ValueError (catch PIL.UnidentifiedImageError / OSError and convert)")
PRED_BYTES_PIPELINE = Msg("`predict_bytes`：`Image.open` → `convert('RGB')` → `resize((size, size), BILINEAR)` → "
                          "除以 255 的 `(3, size, size)` 张量 → `predict`", "predict_bytes: Image.open -> convert('RGB') "
                          "-> resize((size, size), BILINEAR) -> a (3, size, size) tensor divided by 255 -> predict")
PRED_VECTORISE = Msg("整批一次前向：不要逐张图片调用模型", "One forward pass for the whole batch: do not call the model "
                     "once per image")

LOG_STEP = Msg("`add_scalar` 需传 `global_step=epoch`，否则所有点都画在第 0 步",
               "Pass the step: add_scalar(tag, value, global_step=epoch), or every point lands at step 0")
LOG_TAG = Msg("标签由键 `'{split}_{name}'` 变成 `'{Name}/{split}'`（`'train_loss'` → `'Loss/train'`）",
              "The tag of a key '{split}_{name}' is '{Name}/{split}' ('train_loss' -> 'Loss/train')")
LOG_FLOAT = Msg("请记录 `float(value)`（或 `.item()`）：0 维张量和带计算图的张量要先变成 Python `float`",
                "Log float(value) (or .item()): 0-dim tensors and tensors with a graph must become Python floats")
LOG_DETACH = Msg("直方图请记录 `param.detach().cpu()`：不要把带梯度的参数交给 `writer`",
                 "Log detached values for the histograms (param.detach().cpu()): do not hand parameters that require "
                 "grad to the writer")
LOG_GROUPS = Msg("多参数组需分别记录：`'LearningRate/group0'`、`'LearningRate/group1'`……；只有一组时用 `'LearningRate'`",
                 "Log every group: 'LearningRate/group0', 'LearningRate/group1', ...; with one group, 'LearningRate'")
LOG_HIST = Msg("每个参数记录一次 `add_histogram(name, param.detach().cpu(), epoch)`，`name` 来自 `named_parameters()`",
               "One add_histogram(name, param.detach().cpu(), epoch) per parameter, name from named_parameters()")


# -- helpers -----------------------------------------------------------------------------------------

def _error(res: dict[str, Any], key: str, what: str, hint: Msg | None = None) -> None:
    if res.get(key):
        checks.fail(Msg(f"{what}：你的代码抛出了异常：{res[key]}", f"{what}: your code raised an exception: {res[key]}"),
                    hint)


def _bytes_or_fail(found: Any, cap: int, what: str, hint: Msg | None = None) -> bytes:
    try:
        return artifact_bytes(found, cap, what)
    except ArtifactRefused as refused:
        checks.fail(refused.message, hint)
    raise AssertionError("unreachable")


def _blob(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def _saved(obj: Any) -> torch.Tensor:
    """``torch.save(obj)`` made here, as the bytes the probe writes to a file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return _blob(buffer.getvalue())


def _mlp_state(rng: torch.Generator, d: int, h: int, k: int) -> dict[str, torch.Tensor]:
    return {"fc1.weight": torch.randn(h, d, generator=rng, dtype=torch.float64) / math.sqrt(d),
            "fc1.bias": 0.1 * torch.randn(h, generator=rng, dtype=torch.float64),
            "fc2.weight": torch.randn(k, h, generator=rng, dtype=torch.float64) / math.sqrt(h),
            "fc2.bias": 0.1 * torch.randn(k, generator=rng, dtype=torch.float64)}


def _mlp(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The probes' ``fc1 → Tanh → fc2`` (built here from the grader's own values)."""
    h, d = state["fc1.weight"].shape
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(d, h), act=nn.Tanh(), fc2=nn.Linear(h, state["fc2.weight"].shape[0])))
    model = model.to(state["fc1.weight"].dtype)
    model.load_state_dict(state)
    return model


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- T14.1 checkpoints -------------------------------------------------------------------------------
def _replay(state, x, y, p, epochs: int, resume_at: int | None = None, fresh_optimizer: bool = False,
            fresh_scheduler: bool = False) -> tuple[dict[str, torch.Tensor], float, float]:
    """The probe's training in float64: Adam + StepLR over unshuffled batches. With ``resume_at`` the run
    moves to a new model, optimizer and scheduler there, loading the model's state and the optimizer's
    and the scheduler's unless ``fresh_*`` (a checkpoint that lost them). Parameters, the last loss and
    the learning rate at the end."""
    def build(values):
        model = _mlp(values)
        optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"])
        return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=p["step_size"], gamma=p["gamma"])

    model, optimizer, scheduler = build(state)
    loss = torch.zeros(())
    for epoch in range(epochs):
        if epoch == resume_at:
            new_model, new_optimizer, new_scheduler = build(_params(model))
            if not fresh_optimizer:
                new_optimizer.load_state_dict(optimizer.state_dict())
            if not fresh_scheduler:
                new_scheduler.load_state_dict(scheduler.state_dict())
            model, optimizer, scheduler = new_model, new_optimizer, new_scheduler
        for start in range(0, len(y), p["batch_size"]):
            loss = F.cross_entropy(model(x[start:start + p["batch_size"]]), y[start:start + p["batch_size"]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return _params(model), float(loss.detach()), float(optimizer.param_groups[0]["lr"])


def _resume(student, rng, spec) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any, Any, dict[str, Any]]:
    p = spec.param("resume")
    state, fresh = _mlp_state(rng, p["d"], p["h"], p["k"]), _mlp_state(rng, p["d"], p["h"], p["k"])
    x = torch.randn(p["n"], p["d"], generator=rng, dtype=torch.float64)
    y = torch.randint(0, p["k"], (p["n"],), generator=rng)
    extra = {"best_acc": round(float(torch.rand((), generator=rng)), 4)}
    res = student.probe("resume_training", state=state, fresh=fresh, x=x, y=y, lr=p["lr"], step_size=p["step_size"],
                        gamma=p["gamma"], batch_size=p["batch_size"], epochs_before=p["before"],
                        epochs_after=p["after"], extra=extra)
    return res, state, x, y, {**p, "extra": extra}


WHAT_SAVE = "save_checkpoint(path, model, optimizer, 2, scheduler, loss=loss, best_acc=...)"
WHAT_LOAD = "load_checkpoint(path, model, optimizer, scheduler, map_location='cpu')"


@graded(task="save_checkpoint", kind="shape", points=2, visibility="public")
def test_checkpoint_loads_with_weights_only(student, rng, spec):
    """The file loads with torch.load(weights_only=True) here: a dict with the model, optimizer and scheduler
    state_dicts, epoch = 2 and the loss as a Python float; nothing else is written in the working folder."""
    res, state, x, y, p = _resume(student, rng, spec)
    _error(res, "save_error", WHAT_SAVE)
    data = _bytes_or_fail(res["file"], spec.param("file_cap"), WHAT_SAVE)
    try:
        ckpt = load_checkpoint_bytes(data, spec.param("file_cap"), WHAT_SAVE)
    except ArtifactRefused as refused:
        checks.fail(refused.message, CKPT_PICKLE)
    checks.assert_true(isinstance(ckpt, dict), Msg(f"{WHAT_SAVE}：文件里是 {type(ckpt).__name__}，不是字典",
                                                   f"{WHAT_SAVE}: the file holds a {type(ckpt).__name__}, not a dict"),
                       CKPT_KEYS)
    missing = [k for k in ("model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "epoch", "loss",
                           "best_acc") if k not in ckpt]
    checks.assert_true(not missing, Msg(f"{WHAT_SAVE}：检查点缺少键 {missing}", f"{WHAT_SAVE}: the checkpoint lacks "
                                        f"the keys {missing}"), CKPT_KEYS)
    want, last_loss, _ = _replay(state, x, y, p, p["before"])
    for name, value in want.items():
        checks.assert_close(ckpt["model_state_dict"].get(name), value, f"checkpoint['model_state_dict'][{name!r}]",
                            atol=1e-10, rtol=1e-10, rel_l2=1e-10, hint=CKPT_KEYS)
    checks.assert_equal(ckpt["epoch"], p["before"], "checkpoint['epoch']")
    loss = ckpt["loss"]
    checks.assert_true(isinstance(loss, float), Msg(f"checkpoint['loss'] 是 {type(loss).__name__}，应为 Python float",
                                                    f"checkpoint['loss'] is a {type(loss).__name__}, not a Python float"),
                       CKPT_LOSS)
    checks.assert_number_close(loss, last_loss, "checkpoint['loss']", atol=1e-9)
    checks.assert_true(res["cwd_files"] == [], Msg(f"{WHAT_SAVE} 在当前工作目录里写了 {res['cwd_files'][:5]}",
                                                   f"{WHAT_SAVE} wrote {res['cwd_files'][:5]} into the working directory"),
                       CKPT_CWD)


@graded(task="save_checkpoint", kind="accuracy", points=3, visibility="public")
def test_resume_equals_straight_run(student, rng, spec):
    """2 epochs, save, load into a fresh model, Adam and StepLR, 2 more epochs: the same parameters and
    learning rate as 4 straight epochs (float64, 1e-10); load_checkpoint returns epoch, loss and the extras."""
    res, state, x, y, p = _resume(student, rng, spec)
    _error(res, "save_error", WHAT_SAVE)
    if "bytes" not in res["file"]:
        _bytes_or_fail(res["file"], spec.param("file_cap"), WHAT_SAVE)
    pickled = any(word in str(res.get("load_error")) for word in ("weights_only", "Unpickl", "GLOBAL"))
    _error(res, "load_error", WHAT_LOAD, CKPT_PICKLE if pickled else CKPT_WEIGHTS_ONLY)
    total = p["before"] + p["after"]
    want, _, lr = _replay(state, x, y, p, total)
    loaded, last_loss, _ = _replay(state, x, y, p, p["before"])
    for name, value in loaded.items():
        checks.assert_close(res["loaded"].get(name), value, f"{WHAT_LOAD}: model[{name!r}]", atol=1e-10, rtol=1e-10,
                            rel_l2=1e-10, hint=CKPT_MODEL)
    mistakes = {CKPT_OPTIMIZER: _replay(state, x, y, p, total, p["before"], fresh_optimizer=True)[0],
                CKPT_SCHEDULER: _replay(state, x, y, p, total, p["before"], fresh_scheduler=True)[0]}
    for name, value in want.items():
        checks.assert_close(res["params"].get(name), value, f"model[{name!r}]", atol=1e-9, rtol=1e-9, rel_l2=1e-9,
                            mistakes={m: v[name] for m, v in mistakes.items()}, hint=CKPT_OPTIMIZER)
    checks.assert_number_close(res["lr"], lr, "optimizer.param_groups[0]['lr']", atol=1e-12, hint=CKPT_SCHEDULER)
    returned = res["returned"]
    checks.assert_true(isinstance(returned, dict), Msg(f"{WHAT_LOAD} 返回了 {type(returned).__name__}，应返回字典",
                                                       f"{WHAT_LOAD} returned {type(returned).__name__}, not a dict"),
                       CKPT_RETURN)
    checks.assert_equal(sorted(returned), sorted(["epoch", "loss", *p["extra"]]), f"sorted({WHAT_LOAD})", CKPT_RETURN)
    checks.assert_equal(returned["epoch"], p["before"], f"{WHAT_LOAD}['epoch']", CKPT_RETURN)


@graded(task="save_checkpoint", kind="accuracy", points=1, visibility="hidden")
def test_load_given_checkpoint(student, rng, spec):
    """A checkpoint made here: the model gets its values, Adam its state, the metadata comes back; without
    an 'optimizer_state_dict' and an optimizer given, KeyError."""
    p = spec.param("resume")
    state, fresh = _mlp_state(rng, p["d"], p["h"], p["k"]), _mlp_state(rng, p["d"], p["h"], p["k"])
    model = _mlp(state)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, p["d"], generator=rng, dtype=torch.float64)).square().mean().backward()
        optimizer.step()
    ckpt = {"model_state_dict": _params(model), "optimizer_state_dict": optimizer.state_dict(), "epoch": 7,
            "loss": 0.25, "note": "given"}
    what = "load_checkpoint(path, model, optimizer)"
    res = student.probe("load_given_checkpoint", blob=_saved(ckpt), fresh=fresh, lr=0.01, with_optimizer=True)
    _error(res, "error", what, CKPT_WEIGHTS_ONLY)
    for name, value in ckpt["model_state_dict"].items():
        checks.assert_close(res["params"].get(name), value, f"{what}: model[{name!r}]", atol=0, rtol=0, rel_l2=0,
                            hint=CKPT_MODEL)
    checks.assert_equal(res["adam_steps"], [3.0] * len(ckpt["model_state_dict"]), f"{what}: optimizer.state[p]['step']",
                        CKPT_OPTIMIZER)
    checks.assert_equal(res["returned"], {"epoch": 7, "loss": 0.25, "note": "given"}, what, CKPT_RETURN)
    bare = {"model_state_dict": _params(model), "epoch": 1}
    res = student.probe("load_given_checkpoint", blob=_saved(bare), fresh=fresh, lr=0.01, with_optimizer=True)
    checks.assert_equal(res.get("error_type"), "KeyError", "load_checkpoint(path_without_optimizer_state, model, optimizer)",
                        CKPT_KEYERROR)
    res = student.probe("load_given_checkpoint", blob=_saved(bare), fresh=fresh, lr=0.01, with_optimizer=False)
    _error(res, "error", "load_checkpoint(path, model)")
    checks.assert_equal(res["returned"], {"epoch": 1}, "load_checkpoint(path, model)", CKPT_RETURN)


# -- T14.2 state-dict formats ------------------------------------------------------------------------
def _encoded_state(rng: torch.Generator, d: int, h: int, k: int) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict([("encoder.module.weight", torch.randn(h, d, generator=rng, dtype=torch.float64)),
                        ("encoder.module.bias", torch.randn(h, generator=rng, dtype=torch.float64)),
                        ("head.weight", torch.randn(k, h, generator=rng, dtype=torch.float64)),
                        ("head.bias", torch.randn(k, generator=rng, dtype=torch.float64))])


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((prefix + k, v) for k, v in state.items())


def _forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(F.linear(x, state["encoder.module.weight"], state["encoder.module.bias"]))
    return F.linear(hidden, state["head.weight"], state["head.bias"])


def _formats(state: dict[str, torch.Tensor], hidden: bool = False) -> dict[str, Any]:
    """The saved forms of one state_dict: bare, in containers, with DataParallel / compile prefixes."""
    if hidden:
        return {"{'net': ...}": {"net": state, "acc": 0.9},
                "{'model': '_orig_mod.module.' + key}": {"model": _prefixed(state, "_orig_mod.module.")},
                "{'state_dict': 'module._orig_mod.' + key, 'epoch': 3}": {"state_dict": _prefixed(state, "module._orig_mod."),
                                                                         "epoch": 3}}
    return {"state_dict": OrderedDict(state),
            "{'model_state_dict': ..., 'epoch': 5}": {"model_state_dict": state, "epoch": 5, "optimizer_state_dict": {}},
            "'module.' + key": _prefixed(state, "module."),
            "'_orig_mod.' + key": _prefixed(state, "_orig_mod."),
            "{'state_dict': 'module.' + key}": {"state_dict": _prefixed(state, "module.")}}


def _wrong_clean(obj: dict, variant: str) -> dict:
    for key in ("model_state_dict", "state_dict", "model", "net"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if variant == "slice":
        return {k[7:]: v for k, v in obj.items()}
    return {k.replace("module.", "").replace("_orig_mod.", ""): v for k, v in obj.items()}


def _check_keys(got: Any, state: dict[str, torch.Tensor], obj: dict, what: str) -> None:
    checks.assert_true(isinstance(got, dict), Msg(f"{what} 返回了 {type(got).__name__}，应返回 `OrderedDict`",
                                                  f"{what} returned {type(got).__name__}, not an OrderedDict"))
    keys = list(got)
    if keys != list(state):
        hint = SD_CONTAINER
        if keys == list(_wrong_clean(obj, "slice")):
            hint = SD_PREFIX
        elif keys == list(_wrong_clean(obj, "replace")):
            hint = SD_REPLACE
        elif any(k.startswith(("module.", "_orig_mod.")) for k in keys):
            hint = SD_COMPILED
        checks.assert_equal(keys, list(state), f"list({what})", hint)
    for name, value in state.items():
        checks.assert_close(got[name], value, f"{what}[{name!r}]", atol=0, rtol=0, rel_l2=0)


def _load_hint(error: str) -> Msg:
    """The likely mistake behind a refused load, from the key names in the error."""
    if "'encoder.weight'" in error or '"encoder.weight"' in error:
        return SD_REPLACE
    if "'.module.weight'" in error or '".module.weight"' in error:  # 'encoder.module.weight'[7:]
        return SD_PREFIX
    if "_orig_mod." in error or "'module.encoder" in error or '"module.encoder' in error:
        return SD_COMPILED
    return SD_CONTAINER


@graded(task="clean_state_dict", kind="shape", points=1, visibility="public")
def test_clean_state_dict_keys(student, rng):
    """Five saved forms (bare, containers, 'module.' and '_orig_mod.' prefixes) give the model's own keys, in
    order, with the same tensors; 'encoder.module.weight' keeps its inner 'module.'."""
    state = _encoded_state(rng, 3, 4, 2)
    for label, obj in _formats(state).items():
        what = f"clean_state_dict({label})"
        got = checks.call_or_fail(lambda: student.clean_state_dict(obj), what, SD_CONTAINER)
        _check_keys(got, state, obj, what)


@graded(task="clean_state_dict", kind="accuracy", points=2, visibility="public")
def test_load_weights_formats(student, rng):
    """load_weights from files in each of the five forms: the model's outputs equal those of the saved
    weights, and it returns two empty lists (nothing missing, nothing unexpected)."""
    d, h, k = 5, 6, 3
    state = _encoded_state(rng, d, h, k)
    x = torch.randn(4, d, generator=rng, dtype=torch.float64)
    for label, obj in _formats(state).items():
        what = f"load_weights(model, path)  # {label}"
        res = student.probe("load_weights_file", blob=_saved(obj), d=d, h=h, k=k, x=x, seed=seed_from(rng))
        _error(res, "error", what, _load_hint(str(res.get("error"))))
        checks.assert_close(res["out"], _forward(state, x), what, atol=1e-12, rtol=1e-12, rel_l2=1e-12, hint=SD_CONTAINER)
        checks.assert_equal(res["returned"], [[], []], what, SD_STRICT)


@graded(task="clean_state_dict", kind="accuracy", points=1, visibility="hidden")
def test_clean_state_dict_hidden_forms(student, rng):
    """A 'net' container, stacked prefixes in both orders, an empty dict; strict=False reports the missing keys."""
    d, h, k = 3, 4, 2
    state = _encoded_state(rng, d, h, k)
    for label, obj in _formats(state, hidden=True).items():
        what = f"clean_state_dict({label})"
        got = checks.call_or_fail(lambda: student.clean_state_dict(obj), what, SD_CONTAINER)
        _check_keys(got, state, obj, what)
    got = checks.call_or_fail(lambda: student.clean_state_dict({}), "clean_state_dict({})", SD_CONTAINER)
    checks.assert_equal(got, {}, "clean_state_dict({})")
    partial = OrderedDict((key, v) for key, v in _prefixed(state, "module.").items() if "head" not in key)
    x = torch.randn(2, d, generator=rng, dtype=torch.float64)
    what = "load_weights(model, path, strict=False)"
    res = student.probe("load_weights_file", blob=_saved(partial), d=d, h=h, k=k, x=x, strict=False, seed=seed_from(rng))
    _error(res, "error", what, SD_STRICT)
    checks.assert_equal(res["returned"], [["head.weight", "head.bias"], []], what, SD_STRICT)
    for name in ("encoder.module.weight", "encoder.module.bias"):
        checks.assert_close(res["params"][name], state[name], f"{what}: model[{name!r}]", atol=0, rtol=0, rel_l2=0)
    res = student.probe("load_weights_file", blob=_saved(partial), d=d, h=h, k=k, x=x, strict=None, seed=seed_from(rng))
    checks.assert_equal(res.get("error_type"), "RuntimeError", "load_weights(model, path_missing_head)", SD_DEFAULT)


# -- T14.3 ONNX ----------------------------------------------------------------------------------------
def _deploy_state(rng: torch.Generator, d: int, h: int, k: int) -> dict[str, torch.Tensor]:
    return {"fc1.weight": torch.randn(h, d, generator=rng) / math.sqrt(d), "fc1.bias": 0.1 * torch.randn(h, generator=rng),
            "bn.weight": 1.0 + 0.2 * torch.randn(h, generator=rng), "bn.bias": 0.2 * torch.randn(h, generator=rng),
            "bn.running_mean": 0.3 * torch.randn(h, generator=rng), "bn.running_var": 0.5 + torch.rand(h, generator=rng),
            "bn.num_batches_tracked": torch.tensor(7),
            "fc2.weight": torch.randn(k, h, generator=rng) / math.sqrt(h), "fc2.bias": 0.1 * torch.randn(k, generator=rng)}


def _deploy_forward(state: dict[str, torch.Tensor], x: torch.Tensor, train: bool = False, gate: float = 1.0) -> torch.Tensor:
    """The probe's ``fc1 → bn → ReLU → Dropout(p=0 here) → gate → fc2`` in eval (or train) mode, float32."""
    z = F.linear(x, state["fc1.weight"], state["fc1.bias"])
    z = F.batch_norm(z, state["bn.running_mean"].clone(), state["bn.running_var"].clone(), state["bn.weight"],
                     state["bn.bias"], training=train)
    z = F.relu(z) * (gate if train else 1.0)
    return F.linear(z, state["fc2.weight"], state["fc2.bias"])


def _need_onnx() -> None:
    """Skip (with what to install) where the deploy extra is missing: a student's machine may lack it."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name, reason=f"{name} is not installed: pip install 'torch-grader[deploy]' "
                                         f"（未安装 {name}：请运行 pip install 'torch-grader[deploy]'）")


def _export(student, rng, spec, what: str, **kwargs: Any) -> tuple[bytes, dict[str, torch.Tensor], dict[str, Any]]:
    p = spec.param("onnx")
    state = _deploy_state(rng, p["d"], p["h"], p["k"])
    example = torch.randn(p["example_batch"], p["d"], generator=rng)
    res = student.probe("export_model", state=state, example=example, **kwargs)
    _error(res, "error", what)
    data = _bytes_or_fail(res["file"], spec.param("file_cap"), what, ONNX_PATH)
    checks.assert_equal(res["returned"], "<same>", what, ONNX_PATH)
    return data, state, p


def _ort(data: bytes, inputs: list[np.ndarray], what: str) -> Any:
    try:
        return run_onnx(data, inputs, what)
    except ArtifactRefused as refused:
        checks.fail(refused.message)


@graded(task="export_onnx", kind="shape", points=2, visibility="public")
def test_export_onnx_dynamic_batch(student, rng, spec):
    """The exported file passes onnx.checker; in onnxruntime (run by the grader) its input 'input' has a
    symbolic batch dimension and batches of 1 and 7 give outputs 'output' of shape (1, K) and (7, K)."""
    _need_onnx()
    what = "export_onnx(model, example, path)"
    data, state, p = _export(student, rng, spec, what)
    xs = [torch.randn(b, p["d"], generator=rng).numpy() for b in (1, 7)]
    run = _ort(data, xs, what)
    checks.assert_equal([i["name"] for i in run.inputs], ["input"], f"{what}: input_names", ONNX_NAMES)
    checks.assert_equal([o["name"] for o in run.outputs], ["output"], f"{what}: output_names", ONNX_NAMES)
    opsets = {o.domain: o.version for o in check_onnx_bytes(data, spec.param("file_cap"), what).opset_import}
    checks.assert_equal(opsets.get("", opsets.get("ai.onnx")), 18, "model.opset_import[''].version", ONNX_OPSET)
    batch = run.inputs[0]["shape"][0]
    checks.assert_true(isinstance(batch, str), Msg(f"{what}：输入的批维度是固定的 {batch}", f"{what}: the input's batch "
                                                   f"dimension is fixed at {batch}"), ONNX_DYNAMIC)
    for x, out, error in zip(xs, run.results, run.errors):
        checks.assert_true(error is None, Msg(f"{what}：`onnxruntime` 无法运行批大小 {len(x)}：{error}",
                                              f"{what}: onnxruntime cannot run a batch of {len(x)}: {error}"), ONNX_DYNAMIC)
        checks.assert_shape(torch.from_numpy(out), (len(x), p["k"]), f"{what}: output[batch={len(x)}]", ONNX_DYNAMIC)


@graded(task="export_onnx", kind="accuracy", points=2, visibility="public")
def test_export_onnx_matches_torch(student, rng, spec):
    """onnxruntime's outputs for batches of 3 and 5 equal the eval-mode PyTorch forward (max abs error 1e-4)."""
    _need_onnx()
    what = "export_onnx(model, example, path)"
    data, state, p = _export(student, rng, spec, what)
    xs = [torch.randn(b, p["d"], generator=rng) for b in (3, p["example_batch"])]
    run = _ort(data, [x.numpy() for x in xs], what)
    for x, out, error in zip(xs, run.results, run.errors):
        checks.assert_true(error is None, Msg(f"{what}：`onnxruntime` 无法运行批大小 {len(x)}：{error}",
                                              f"{what}: onnxruntime cannot run a batch of {len(x)}: {error}"), ONNX_DYNAMIC)
        checks.assert_close(torch.from_numpy(out), _deploy_forward(state, x), f"onnxruntime({what})[batch={len(x)}]",
                            atol=spec.param("onnx_atol"), rtol=0, rel_l2=1e-4, hint=ONNX_EVAL,
                            mistakes={ONNX_EVAL: _deploy_forward(state, x, train=True)})


@graded(task="export_onnx", kind="accuracy", points=1, visibility="hidden")
def test_export_onnx_train_mode_and_static(student, rng, spec):
    """A model handed over in train mode (Dropout p=0.5, a layer that triples its input in train mode) exports
    eval behaviour; with dynamic_batch=False the batch dimension is fixed to the example's."""
    _need_onnx()
    what = "export_onnx(model.train(), example, path)"
    data, state, p = _export(student, rng, spec, what, train_mode=True, gate=3.0, dropout=0.5)
    x = torch.randn(6, p["d"], generator=rng)
    run = _ort(data, [x.numpy()], what)
    checks.assert_true(run.errors[0] is None, Msg(f"{what}：`onnxruntime` 报错：{run.errors[0]}",
                                                  f"{what}: onnxruntime failed: {run.errors[0]}"), ONNX_DYNAMIC)
    checks.assert_close(torch.from_numpy(run.results[0]), _deploy_forward(state, x), f"onnxruntime({what})",
                        atol=spec.param("onnx_atol"), rtol=0, rel_l2=1e-4, hint=ONNX_EVAL)
    what = "export_onnx(model, example, path, dynamic_batch=False)"
    data, state, p = _export(student, rng, spec, what, dynamic_batch=False)
    run = _ort(data, [np.zeros((p["example_batch"], p["d"]), np.float32)], what)
    checks.assert_equal(run.inputs[0]["shape"][0], p["example_batch"], "session.get_inputs()[0].shape[0]", ONNX_STATIC)


def _grader_onnx(state: dict[str, torch.Tensor]) -> bytes:
    """The grader's own export of the probe's model (TorchScript exporter, dynamic batch)."""
    import warnings

    h, d = state["fc1.weight"].shape
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(d, h), bn=nn.BatchNorm1d(h), act=nn.ReLU(), drop=nn.Dropout(0.0),
                                      gate=nn.Identity(), fc2=nn.Linear(h, state["fc2.weight"].shape[0])))
    model.load_state_dict(state)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, d),), buffer, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=18, dynamo=False)
    data = buffer.getvalue()
    check_onnx_bytes(data)
    return data


@graded(task="export_onnx", kind="accuracy", points=2, visibility="public")
def test_onnx_predict_float64_input(student, rng, spec):
    """onnx_predict on a model exported here, with float64 inputs of batch 5 and 1: a float32 array equal to
    the PyTorch forward (the input must be cast to float32 first)."""
    _need_onnx()
    p = spec.param("onnx")
    state = _deploy_state(rng, p["d"], p["h"], p["k"])
    blob = _blob(_grader_onnx(state))
    for batch in (5, 1):
        x = torch.randn(batch, p["d"], generator=rng, dtype=torch.float64)
        what = f"onnx_predict(path, x[{batch}, {p['d']}].astype(np.float64))"
        res = student.probe("predict_with_onnx", blob=blob, x=x)
        _error(res, "error", what, ONNX_FLOAT32 if "INVALID_ARGUMENT" in str(res.get("error")) else None)
        checks.assert_true(res.get("dtype") == "float32", Msg(
            f"{what} 返回了 {res.get('type')}（{res.get('dtype')}）", f"{what} returned a {res.get('type')} "
            f"({res.get('dtype')})"), ONNX_RETURN)
        checks.assert_close(res["out"], _deploy_forward(state, x.float()).double(), what, atol=spec.param("onnx_atol"),
                            rtol=0, rel_l2=1e-4, hint=ONNX_RETURN)


# -- T14.4 Predictor ----------------------------------------------------------------------------------
def _classifier_state(rng: torch.Generator, size: int, h: int, k: int) -> dict[str, torch.Tensor]:
    d = 3 * size * size
    return {"fc1.weight": torch.randn(h, d, generator=rng) * (3.0 / math.sqrt(d)), "fc1.bias": 0.1 * torch.randn(h, generator=rng),
            "fc2.weight": torch.randn(k, h, generator=rng) * (2.0 / math.sqrt(h)), "fc2.bias": 0.3 * torch.randn(k, generator=rng)}


def _expected_predictions(state, images: torch.Tensor, mean, std, size: int, variant: str | None = None,
                          gate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidences and class indices computed here: resize, normalise, the eval forward, softmax over the
    classes. ``variant`` replays a mistake: ``train`` (the gate scales), ``softmax0`` (softmax over the
    batch), ``raw`` (no normalisation)."""
    x = images.float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if variant != "raw":
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    hidden = F.relu(F.linear(x.flatten(1), state["fc1.weight"], state["fc1.bias"]))
    logits = F.linear(hidden * (gate if variant == "train" else 1.0), state["fc2.weight"], state["fc2.bias"])
    conf, idx = torch.softmax(logits, dim=0 if variant == "softmax0" else 1).max(dim=1)
    return conf, idx


PRED_VARIANTS = {PRED_EVAL: "train", PRED_SOFTMAX: "softmax0", PRED_NORMALIZE: "raw"}


def _check_predictions(got: Any, state, images, names, mean, std, size, what: str, gate: float = 1.0) -> None:
    conf, idx = _expected_predictions(state, images, mean, std, size)
    ok = isinstance(got, list) and all(isinstance(t, list) and len(t) == 2 for t in got)
    checks.assert_true(ok, Msg(f"{what} 应返回 `(类别名, 置信度)` 元组的列表", f"{what} must return a list of "
                               "(class name, confidence) tuples"), PRED_SQUEEZE if len(images) == 1 else None)
    checks.assert_equal(len(got), len(images), f"len({what})", PRED_SQUEEZE)
    checks.assert_true(all(isinstance(c, float) and isinstance(n, str) for n, c in got), Msg(
        f"{what}：每个元组应为 `(str, float)`", f"{what}: each tuple must be (str, float)"), PRED_SQUEEZE)
    got_conf = torch.tensor([c for _, c in got], dtype=torch.float64)
    hint = None
    for mistake, variant in PRED_VARIANTS.items():
        if variant == "train" and gate == 1.0:
            continue
        wrong_conf, wrong_idx = _expected_predictions(state, images, mean, std, size, variant, gate)
        if [n for n, _ in got] == [names[i] for i in wrong_idx.tolist()] and \
                torch.allclose(got_conf, wrong_conf.double(), atol=1e-5, rtol=1e-4):
            hint = Msg(f"看起来像常见错误：{mistake.zh}", f"This looks like a common mistake: {mistake.en}")
            break
    checks.assert_equal([n for n, _ in got], [names[i] for i in idx.tolist()], f"names({what})",
                        hint or PRED_NORMALIZE)
    whole = torch.full_like(got_conf, float(conf.max()))
    checks.assert_close(got_conf, conf.double(), f"confidences({what})", atol=1e-5, rtol=1e-4, rel_l2=1e-5,
                        hint=hint or PRED_SOFTMAX, mistakes={PRED_PER_SAMPLE: whole} if len(images) > 1 else None)


def _predictor_setup(rng, spec) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    p = spec.param("predictor")
    state = _classifier_state(rng, p["size"], p["h"], p["k"])
    mean = [round(0.3 + 0.4 * float(torch.rand((), generator=rng)), 3) for _ in range(3)]
    std = [round(0.15 + 0.2 * float(torch.rand((), generator=rng)), 3) for _ in range(3)]
    names = [f"class_{i}" for i in range(p["k"])]
    return {"class_names": names, "mean": mean, "std": std, "size": p["size"]}, state


@graded(task="Predictor", kind="shape", points=1, visibility="public")
def test_predictor_returns_one_tuple_per_image(student, rng, spec):
    """predict on batches of 4 and of 1: one (class name, confidence) tuple per image, confidences in [0, 1]."""
    kw, state = _predictor_setup(rng, spec)
    s = kw["size"]
    batches = [torch.rand(4, 3, s, s, generator=rng), torch.rand(1, 3, s, s, generator=rng)]
    res = student.probe("run_predictor", state=state, batches=batches, **kw)
    _error(res, "error", "Predictor(model, class_names, mean, std, size)")
    for images, entry in zip(batches, res["predict"]):
        what = f"predictor.predict(images[{len(images)}, 3, {s}, {s}])"
        _error(entry, "error", what, PRED_SQUEEZE if len(images) == 1 else None)
        got = entry["out"]
        ok = isinstance(got, list) and len(got) == len(images) and all(isinstance(t, list) and len(t) == 2 for t in got)
        checks.assert_true(ok, Msg(f"{what} 应返回 {len(images)} 个 `(类别名, 置信度)` 元组的列表",
                                   f"{what} must return a list of {len(images)} (class name, confidence) tuples"),
                           PRED_SQUEEZE if len(images) == 1 else None)
        for name, conf in got:
            checks.assert_true(isinstance(name, str) and name in kw["class_names"] and isinstance(conf, float)
                               and 0.0 <= conf <= 1.0, Msg(f"{what}：元组 ({name!r}, {conf!r}) 应为类别名和 [0, 1] 中的 float",
                                                           f"{what}: the tuple ({name!r}, {conf!r}) must be a class name "
                                                           "and a float in [0, 1]"), PRED_SOFTMAX)


@graded(task="Predictor", kind="accuracy", points=2, visibility="public")
def test_predictor_values_eval_mode(student, rng, spec):
    """A model handed over in train mode (a layer that scales in train mode): predictions equal preprocessing
    plus the eval forward computed here, per sample, the same on a repeated call; 40x40 images are resized."""
    kw, state = _predictor_setup(rng, spec)
    s = kw["size"]
    images = torch.rand(6, 3, s, s, generator=rng)
    big = torch.rand(3, 3, s + 8, s + 8, generator=rng)
    res = student.probe("run_predictor", state=state, batches=[images, images, big], train_mode=True, gate=2.5, **kw)
    _error(res, "error", "Predictor(model.train(), class_names, mean, std, size)", PRED_EVAL)
    for i, (x, entry) in enumerate(zip([images, images, big], res["predict"])):
        what = f"predictor.predict(images[{len(x)}, 3, {x.shape[-1]}, {x.shape[-1]}])#{i + 1}"
        _error(entry, "error", what)
        _check_predictions(entry["out"], state, x, kw["class_names"], kw["mean"], kw["std"], s, what, gate=2.5)
    # Train mode would scale the hidden layer: caught above as wrong confidences; the spy names it.
    checks.assert_true(not any(mode for mode, _ in res["seen"]), Msg("模型在 train 模式下做了前向",
                                                                   "the model ran its forward in train mode"), PRED_EVAL)


@graded(task="Predictor", kind="gradient", points=1, visibility="public")
def test_predictor_no_grad(student, rng, spec):
    """predict builds no graph: the forward runs with grad mode off and no parameter receives a .grad."""
    kw, state = _predictor_setup(rng, spec)
    s = kw["size"]
    res = student.probe("run_predictor", state=state, batches=[torch.rand(3, 3, s, s, generator=rng)], **kw)
    _error(res, "error", "Predictor(model, class_names, mean, std, size)")
    _error(res["predict"][0], "error", "predictor.predict(images)")
    checks.assert_true(bool(res["seen"]) and not any(grad for _, grad in res["seen"]),
                       Msg("`predict` 的前向在启用梯度的状态下运行", "predict ran the forward with grad mode on"),
                       PRED_NO_GRAD)
    checks.assert_equal(res["grads"], [], "parameters_with_grad(model)",
                        PRED_NO_GRAD)


def _png(array: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(data: bytes, size: int) -> torch.Tensor:
    """The contract's decoding, done here on the grader's own PNG: RGB, bilinear resize, [0, 1]."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def _images(rng: torch.Generator, size: int) -> dict[str, bytes]:
    pytest.importorskip("PIL", reason="Pillow is not installed: pip install pillow（未安装 Pillow：请运行 pip install pillow）")

    def pixels(*shape: int) -> np.ndarray:
        return torch.randint(0, 256, shape, generator=rng, dtype=torch.uint8).numpy()

    alpha = pixels(size, size, 4)
    alpha[..., 3] = 255 - alpha[..., 3] // 3  # mostly opaque: convert('RGB') drops alpha
    return {"RGB": _png(pixels(size, size, 3), "RGB"), "L": _png(pixels(size, size), "L"), "RGBA": _png(alpha, "RGBA"),
            "RGB 40x40": _png(pixels(size + 8, size + 8, 3), "RGB")}


@graded(task="Predictor", kind="accuracy", points=2, visibility="public")
def test_predict_bytes_png_modes(student, rng, spec):
    """predict_bytes on RGB, grayscale (L) and RGBA PNGs and a larger RGB one: the same tuple as decoding here
    (convert('RGB'), bilinear resize, / 255) followed by the eval forward."""
    kw, state = _predictor_setup(rng, spec)
    pngs = _images(rng, kw["size"])
    res = student.probe("run_predictor", state=state, batches=[], blobs=[_blob(b) for b in pngs.values()], **kw)
    _error(res, "error", "Predictor(model, class_names, mean, std, size)")
    for (mode, data), entry in zip(pngs.items(), res["bytes"]):
        what = f"predictor.predict_bytes(png_bytes)  # {mode}"
        hint = PRED_RGB if mode in ("L", "RGBA") else PRED_BATCH_DIM
        _error(entry, "error", what, hint)
        got = entry["out"]
        checks.assert_true(isinstance(got, list) and len(got) == 2, Msg(f"{what} 应返回一个 `(类别名, 置信度)` 元组",
                                                                         f"{what} must return one (class name, "
                                                                         "confidence) tuple"), PRED_BATCH_DIM)
        _check_predictions([got], state, _decode(data, kw["size"]), kw["class_names"], kw["mean"], kw["std"],
                           kw["size"], what)


@graded(task="Predictor", kind="accuracy", points=1, visibility="hidden")
def test_predict_bytes_corrupt(student, rng, spec):
    """Bytes that are not an image (random bytes, a truncated PNG) raise ValueError."""
    kw, state = _predictor_setup(rng, spec)
    png = _images(rng, kw["size"])["RGB"]
    junk = torch.randint(0, 256, (200,), generator=rng, dtype=torch.uint8).numpy().tobytes()
    res = student.probe("run_predictor", state=state, batches=[], blobs=[_blob(junk), _blob(png[:len(png) // 2])], **kw)
    _error(res, "error", "Predictor(model, class_names, mean, std, size)")
    for label, entry in zip(("random bytes", "png[:len(png) // 2]"), res["bytes"]):
        checks.assert_equal(entry.get("error_type"), "ValueError", f"predictor.predict_bytes({label})", PRED_BAD_BYTES)


@graded(task="Predictor", kind="speed", points=1, visibility="hidden")
def test_predictor_batch_speed(student, reference_worker, spec, rng):
    """predict on a batch of 64 costs at most a few times the reference's one vectorised forward pass."""
    p = spec.param("predict_speed")
    factor = spec.param("speed_factor")
    result = compare_probe_speed(student, reference_worker, "repeat_predict",
                                 [{"randn": [p["batch"], 3, p["size"], p["size"]]}], rng,
                                 rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"), factor=factor,
                                 h=p["h"], k=p["k"], size=p["size"], model_seed=seed_from(rng))
    assert_speed(result, factor, "Predictor.predict", hint=PRED_VECTORISE)


# -- T14.5 log_epoch -----------------------------------------------------------------------------------
def _tag(key: str) -> str:
    if "_" not in key:
        return key
    head, tail = key.split("_", 1)
    return tail.capitalize() + "/" + head


def _calls(res: dict[str, Any], method: str) -> dict[Any, dict[str, Any]]:
    return {c["tag"]: c for c in res["calls"] if c["method"] == method}


def _check_scalars(res: dict[str, Any], expected: dict[str, float], epoch: int, what: str) -> None:
    got = _calls(res, "add_scalar")
    for tag, value in expected.items():
        call = got.get(tag)
        if call is None:
            hint = LOG_GROUPS if tag.startswith("LearningRate") else LOG_TAG
            checks.fail(Msg(f"{what}：没有记录标签 {tag!r}（记录的标签：{sorted(map(str, got))[:8]}）",
                            f"{what}: nothing was logged under the tag {tag!r} (logged tags: {sorted(map(str, got))[:8]})"),
                        hint)
        checks.assert_equal(call["step"], epoch, f"{what}: add_scalar({tag!r}, ..., global_step)", LOG_STEP)
        checks.assert_true(call["value_type"] == "float", Msg(f"{what}：标签 {tag!r} 的值是 {call['value_type']}",
                                                              f"{what}: the value of {tag!r} is a {call['value_type']}"),
                           LOG_FLOAT)
        checks.assert_number_close(call["value"], value, f"{what}: add_scalar({tag!r}, value)", atol=1e-12)


@graded(task="log_epoch", kind="shape", points=1, visibility="public")
def test_log_epoch_scalars(student, rng):
    """Metrics logged as add_scalar('{Name}/{split}', float, epoch): 'train_loss' -> 'Loss/train'."""
    epoch = int(torch.randint(1, 50, (1,), generator=rng))
    metrics = {"train_loss": float(torch.rand((), generator=rng)), "val_loss": float(torch.rand((), generator=rng)),
               "val_acc": float(torch.rand((), generator=rng))}
    what = f"log_epoch(writer, {epoch}, metrics)"
    res = student.probe("run_log_epoch", epoch=epoch, metrics=metrics)
    _error(res, "error", what)
    _check_scalars(res, {_tag(k): v for k, v in metrics.items()}, epoch, what)
    checks.assert_equal(len(res["calls"]), len(metrics), "len(writer.calls)", LOG_TAG)


@graded(task="log_epoch", kind="accuracy", points=2, visibility="public")
def test_log_epoch_lr_and_histograms(student, rng):
    """With one parameter group: 'LearningRate' = its lr at the epoch; one histogram per parameter, named
    as in named_parameters(), with its values, detached (requires_grad False) and on the CPU."""
    epoch = int(torch.randint(1, 50, (1,), generator=rng))
    state = _mlp_state(rng, 3, 4, 2)
    lr = round(float(torch.rand((), generator=rng)) * 0.1, 5)
    metrics = {"train_loss": float(torch.rand((), generator=rng))}
    what = f"log_epoch(writer, {epoch}, metrics, model, optimizer)"
    res = student.probe("run_log_epoch", epoch=epoch, metrics=metrics, state=state, lrs=[lr])
    _error(res, "error", what)
    _check_scalars(res, {"Loss/train": metrics["train_loss"], "LearningRate": lr}, epoch, what)
    hists = _calls(res, "add_histogram")
    checks.assert_equal(sorted(map(str, hists)), sorted(state), "sorted(histogram_tags)", LOG_HIST)
    for name, value in state.items():
        call = hists[name]
        checks.assert_equal(call["step"], epoch, f"{what}: add_histogram({name!r}, ..., global_step)", LOG_STEP)
        got = call["value"]
        checks.assert_true(isinstance(got, torch.Tensor), Msg(f"{what}：直方图 {name!r} 的值是 {call['value_type']}",
                                                              f"{what}: the histogram {name!r} got a {call['value_type']}"),
                           LOG_DETACH)
        facts = tensor_facts(got)
        checks.assert_true(not facts.requires_grad, Msg(f"{what}：直方图 {name!r} 的张量 `requires_grad=True`",
                                                        f"{what}: the histogram {name!r} got a tensor with "
                                                        "requires_grad=True"), LOG_DETACH)
        checks.assert_equal(facts.device, "cpu", f"{what}: add_histogram({name!r}, values).device", LOG_DETACH)
        checks.assert_close(got, value, f"{what}: add_histogram({name!r}, values)", atol=0, rtol=0, rel_l2=0, hint=LOG_HIST)


@graded(task="log_epoch", kind="accuracy", points=1, visibility="hidden")
def test_log_epoch_tensor_metrics_and_groups(student, rng):
    """Metrics given as 0-dim tensors (one with a graph) are logged as floats; three parameter groups are
    logged as 'LearningRate/group0' to 'LearningRate/group2'."""
    epoch = int(torch.randint(1, 50, (1,), generator=rng))
    state = _mlp_state(rng, 3, 4, 2)
    lrs = [0.1, 0.01, 0.001]
    values = {"train_loss": float(torch.rand((), generator=rng)), "val_acc": float(torch.rand((), generator=rng))}
    metrics = {"train_loss": torch.tensor(values["train_loss"], dtype=torch.float64),
               "val_acc": torch.tensor(values["val_acc"], dtype=torch.float64)}
    what = f"log_epoch(writer, {epoch}, {{'train_loss': tensor(...), 'val_acc': tensor(...)}}, model, optimizer)"
    res = student.probe("run_log_epoch", epoch=epoch, metrics=metrics, grad_metrics=["train_loss"], state=state, lrs=lrs)
    _error(res, "error", what, LOG_FLOAT)
    expected = {_tag(k): v for k, v in values.items()}
    expected.update({f"LearningRate/group{i}": lr for i, lr in enumerate(lrs)})
    _check_scalars(res, expected, epoch, what)
