"""练习 14：部署——保存与加载、ONNX、推理封装、日志 / Exercise 14: deployment — checkpoints, ONNX, inference, logging.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex14`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex14`` (one task: ``grader check ex14 -k checkpoint``).

评分程序把模型、优化器、文件和一个假的 ``writer`` 交给你的函数。你的代码写出的文件（检查点、ONNX 模型）
由评分程序自己打开：检查点只用 ``torch.load(..., weights_only=True)`` 加载，ONNX 模型由评分程序自己的
onnxruntime 运行，所以文件本身必须符合下面的约定。只写到给定的 ``path``，不要在当前工作目录里写文件。
本练习需要 ``onnx``、``onnxruntime``、``onnxscript`` 和 ``Pillow``。
The grader hands your functions models, optimizers, files and a fake ``writer``. Files your code writes
(checkpoints, ONNX models) are opened by the grader itself: a checkpoint only with
``torch.load(..., weights_only=True)``, an ONNX model in the grader's own onnxruntime; so the files
themselves must follow the conventions below. Write only to the given ``path``, never into the current
working directory. This exercise needs ``onnx``, ``onnxruntime``, ``onnxscript`` and ``Pillow``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def save_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    scheduler: Any = None, **extra: Any) -> None:
    """把完整的训练状态保存到 ``path``（只写这一个文件）。

    - 用 ``torch.save`` 保存一个字典，键为：``"model_state_dict"``（``model.state_dict()``）、
      ``"optimizer_state_dict"``（``optimizer.state_dict()``）、``"epoch"``（``int``），
      有 ``scheduler`` 时还有 ``"scheduler_state_dict"``（``scheduler.state_dict()``）；
      ``extra`` 里的每个关键字参数原样作为一个键（例如 ``loss=...``、``best_acc=...``）。
    - 文件必须能用 ``torch.load(path, weights_only=True)`` 加载（PyTorch 2.6 起的默认）：只能含张量、
      字典、列表、数字和字符串。**不要** ``torch.save(model)``（整个模型会被 pickle 成类，无法加载）。
    - ``extra`` 中的张量（例如带计算图的 ``loss``）要存成 Python 数字：``value.item()``。
    - 只写入 ``path``：不要在当前工作目录里另存文件。

    Save the full training state to ``path`` (that one file only).

    - ``torch.save`` a dict with the keys ``"model_state_dict"`` (``model.state_dict()``),
      ``"optimizer_state_dict"`` (``optimizer.state_dict()``), ``"epoch"`` (an ``int``) and, when a
      ``scheduler`` is given, ``"scheduler_state_dict"`` (``scheduler.state_dict()``); each keyword argument
      in ``extra`` becomes a key of its own (``loss=...``, ``best_acc=...``).
    - The file must load with ``torch.load(path, weights_only=True)`` (the default since PyTorch 2.6):
      tensors, dicts, lists, numbers and strings only. Do **not** ``torch.save(model)`` (a whole model is
      pickled as a class and does not load).
    - A tensor in ``extra`` (such as a ``loss`` with its graph) is stored as a Python number: ``value.item()``.
    - Write only to ``path``: no other file in the current working directory.
    """
    raise NotImplementedError("TODO: save_checkpoint")


def load_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, map_location: str = "cpu") -> dict[str, Any]:
    """从 ``save_checkpoint`` 写的文件恢复训练状态，返回其余的元数据。

    - 用 ``torch.load(path, map_location=map_location, weights_only=True)`` 加载。
    - ``model.load_state_dict(checkpoint["model_state_dict"])``；给了 ``optimizer`` 时加载
      ``"optimizer_state_dict"``，给了 ``scheduler`` 时加载 ``"scheduler_state_dict"``。给了 ``optimizer``
      （或 ``scheduler``）而文件里没有对应的键时，抛出 ``KeyError``，并说明缺少哪个键。
    - 返回去掉这三个 ``*_state_dict`` 键之后的字典（``"epoch"``、``"loss"`` 和其他额外的键）。
    - 恢复后继续训练，应与不中断地训练得到完全相同的参数和学习率。

    Restore the training state from a file ``save_checkpoint`` wrote; return the remaining metadata.

    - Load with ``torch.load(path, map_location=map_location, weights_only=True)``.
    - ``model.load_state_dict(checkpoint["model_state_dict"])``; with an ``optimizer``, load
      ``"optimizer_state_dict"``; with a ``scheduler``, ``"scheduler_state_dict"``. When an ``optimizer``
      (or ``scheduler``) is given and the file lacks its key, raise ``KeyError`` naming the key.
    - Return the dict without the three ``*_state_dict`` keys (``"epoch"``, ``"loss"`` and the other extras).
    - Training on after a resume must give exactly the parameters and learning rate of the uninterrupted run.
    """
    raise NotImplementedError("TODO: load_checkpoint")


def clean_state_dict(obj: dict) -> "OrderedDict[str, torch.Tensor]":
    """把各种保存格式统一成模型自己的 ``state_dict``。

    - 容器：若 ``obj`` 中依次有 ``"model_state_dict"``、``"state_dict"``、``"model"``、``"net"`` 之一且它的值
      是字典，就用第一个找到的那个字典；否则 ``obj`` 本身就是 ``state_dict``。
    - 前缀：只去掉键**开头**的 ``"module."``（``nn.DataParallel``）和 ``"_orig_mod."``（``torch.compile``），
      两者可能叠在一起（``"module._orig_mod."``、``"_orig_mod.module."``），都要去掉。键中间的
      ``"module."``（例如 ``"encoder.module.weight"``）必须保留：不要用 ``replace``，也不要对每个键 ``k[7:]``。
    - 返回 ``OrderedDict``，顺序与输入相同，值是原来的张量；空字典返回空的 ``OrderedDict``。

    Normalise saved formats into the model's own ``state_dict``.

    - Containers: if ``obj`` holds one of ``"model_state_dict"``, ``"state_dict"``, ``"model"``, ``"net"``
      (looked for in this order) whose value is a dict, use the first found; otherwise ``obj`` is the
      ``state_dict`` itself.
    - Prefixes: strip only a **leading** ``"module."`` (``nn.DataParallel``) and ``"_orig_mod."``
      (``torch.compile``); they can be stacked (``"module._orig_mod."``, ``"_orig_mod.module."``): strip
      them all. A ``"module."`` inside a key (``"encoder.module.weight"``) stays: don't use ``replace``,
      and don't ``k[7:]`` every key.
    - Return an ``OrderedDict`` in the input's order, with the same tensors; an empty dict gives an empty
      ``OrderedDict``.
    """
    raise NotImplementedError("TODO: clean_state_dict")


def load_weights(model: nn.Module, path: str, strict: bool = True) -> tuple[list[str], list[str]]:
    """从任意一种格式的文件加载权重。

    ``torch.load(path, map_location="cpu", weights_only=True)``，经 ``clean_state_dict`` 整理后
    ``model.load_state_dict(state, strict=strict)``；返回它报告的 ``(missing_keys, unexpected_keys)``，
    两个 ``list``（``strict=False`` 时用来查看缺了哪些键）。

    Load weights from a file in any of these formats.

    ``torch.load(path, map_location="cpu", weights_only=True)``, then ``clean_state_dict``, then
    ``model.load_state_dict(state, strict=strict)``; return the ``(missing_keys, unexpected_keys)`` it
    reports as two ``list``s (with ``strict=False`` they show what was missing).
    """
    raise NotImplementedError("TODO: load_weights")


def export_onnx(model: nn.Module, example: torch.Tensor, path: str, dynamic_batch: bool = True,
                opset: int = 18) -> str:
    """把模型导出为 ONNX 文件 ``path`` 并返回 ``path``。

    - 先 ``model.eval()``：导出 eval 模式的行为（Dropout 不丢弃，BatchNorm 用运行统计量）。
    - ``torch.onnx.export(model, (example,), path, input_names=["input"], output_names=["output"],
      opset_version=opset, ...)``；``example`` 是 ``float32`` 的 ``(B, D)``。
    - ``dynamic_batch=True`` 时第 0 维（批）必须是动态的，任意批大小都能运行：``dynamo=False`` 时用
      ``dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}``，``dynamo=True``（torch 2.14 的默认，
      需要 ``onnxscript``）时用 ``dynamic_shapes``（或同样的 ``dynamic_axes``）。``dynamic_batch=False`` 时
      批大小固定为 ``example`` 的批大小。
    - 权重保存在这一个文件里（不用外部数据文件：``dynamo=True`` 时要传 ``external_data=False``，否则权重会写到
      旁边的 ``.data`` 文件里），只用标准 ONNX 算子。

    Export the model to the ONNX file ``path`` and return ``path``.

    - ``model.eval()`` first: export the eval-mode behaviour (no dropout, BatchNorm's running statistics).
    - ``torch.onnx.export(model, (example,), path, input_names=["input"], output_names=["output"],
      opset_version=opset, ...)``; ``example`` is a ``float32`` ``(B, D)``.
    - With ``dynamic_batch=True`` dimension 0 (the batch) must be dynamic so any batch size runs: with
      ``dynamo=False`` use ``dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}``; with
      ``dynamo=True`` (torch 2.14's default, needs ``onnxscript``) use ``dynamic_shapes`` (or the same
      ``dynamic_axes``). With ``dynamic_batch=False`` the batch size is fixed to ``example``'s.
    - The weights stay inside this one file (no external data: with ``dynamo=True`` pass
      ``external_data=False``, or the weights go to a ``.data`` file beside it), standard ONNX operators only.
    """
    raise NotImplementedError("TODO: export_onnx")


def onnx_predict(path: str, x: np.ndarray) -> np.ndarray:
    """用 onnxruntime 运行 ONNX 文件 ``path``，返回第一个输出。

    - ``onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])``，输入名从
      ``session.get_inputs()[0].name`` 读取。
    - ``x`` 可能是 ``float64``：ONNX 模型期望 ``float32``，请先 ``x.astype(np.float32)``，否则 onnxruntime
      报 ``INVALID_ARGUMENT``。
    - 返回 ``float32`` 的 ``np.ndarray``，形状 ``(B, K)``。

    Run the ONNX file ``path`` with onnxruntime and return its first output.

    - ``onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])``; read the input name from
      ``session.get_inputs()[0].name``.
    - ``x`` may be ``float64``: the model expects ``float32``, so cast first (``x.astype(np.float32)``), or
      onnxruntime reports ``INVALID_ARGUMENT``.
    - Return a ``float32`` ``np.ndarray`` of shape ``(B, K)``.
    """
    raise NotImplementedError("TODO: onnx_predict")


class Predictor:
    """推理封装（服务端的处理逻辑，不含 Web 框架）。

    ``__init__``：保存 ``model`` 并调用 ``model.eval()``（传入的模型可能处于 train 模式）；``class_names[i]``
    是第 ``i`` 类的名字；``mean``、``std`` 是 3 个通道的归一化参数；``size`` 是模型输入的边长。

    An inference wrapper (the server's handler logic, without a web framework).

    ``__init__``: keep ``model`` and call ``model.eval()`` (the model may come in train mode);
    ``class_names[i]`` names class ``i``; ``mean`` and ``std`` normalise the 3 channels; ``size`` is the
    side of the model's input.
    """

    def __init__(self, model: nn.Module, class_names: list[str], mean: Sequence[float], std: Sequence[float],
                 size: int = 32) -> None:
        raise NotImplementedError("TODO: Predictor.__init__")

    def predict(self, images: torch.Tensor) -> list[tuple[str, float]]:
        """预测一批图片，每张返回一个 ``(类别名, 置信度)``。

        - ``images`` 是 ``(B, 3, H, W)``、取值在 ``[0, 1]`` 的浮点张量（``B`` 可以是 1）。
        - 预处理：转为 ``float32``；若 ``(H, W) != (size, size)``，用
          ``F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)`` 缩放；再按通道
          ``(x - mean) / std``。
        - 在 eval 模式、``torch.no_grad()``（或 ``torch.inference_mode()``）中**整批一次**前向（不要逐张循环），
          ``probs = softmax(logits, dim=1)``，**逐样本** ``conf, idx = probs.max(dim=1)``。
        - 返回长度为 ``B`` 的列表，每个元素是元组 ``(class_names[idx], conf)``，``conf`` 是 Python ``float``。
          不要 ``squeeze()``。

        Predict a batch of images: one ``(class name, confidence)`` per image.

        - ``images`` is a ``(B, 3, H, W)`` float tensor with values in ``[0, 1]`` (``B`` may be 1).
        - Preprocess: to ``float32``; if ``(H, W) != (size, size)``, resize with
          ``F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)``; then
          ``(x - mean) / std`` per channel.
        - **One** forward for the whole batch (no loop over images) in eval mode under ``torch.no_grad()``
          (or ``torch.inference_mode()``), ``probs = softmax(logits, dim=1)``, **per sample**
          ``conf, idx = probs.max(dim=1)``.
        - Return a list of ``B`` tuples ``(class_names[idx], conf)`` with ``conf`` a Python ``float``. Don't
          ``squeeze()``.
        """
        raise NotImplementedError("TODO: Predictor.predict")

    def predict_bytes(self, data: bytes) -> tuple[str, float]:
        """从图像文件的字节预测（PNG/JPEG），返回一个 ``(类别名, 置信度)``。

        用 PIL ``Image.open(io.BytesIO(data))``，``convert("RGB")``（灰度图和 RGBA 图都要转换），
        ``resize((size, size), Image.Resampling.BILINEAR)``，转成 ``(3, size, size)``、除以 255 的 ``float32``
        张量，加上批维（``unsqueeze(0)``）后交给 ``predict``，返回那一个元组。无法解码的字节抛出
        ``ValueError``。

        Predict from the bytes of an image file (PNG/JPEG): one ``(class name, confidence)``.

        PIL ``Image.open(io.BytesIO(data))``, ``convert("RGB")`` (grayscale and RGBA images too),
        ``resize((size, size), Image.Resampling.BILINEAR)``, to a ``(3, size, size)`` ``float32`` tensor
        divided by 255, add the batch dim (``unsqueeze(0)``), pass it to ``predict`` and return its one tuple.
        Bytes that do not decode raise ``ValueError``.
        """
        raise NotImplementedError("TODO: Predictor.predict_bytes")


def log_epoch(writer: Any, epoch: int, metrics: dict[str, float], model: nn.Module | None = None,
              optimizer: torch.optim.Optimizer | None = None) -> None:
    """把一个 epoch 的指标、学习率和参数直方图写入 TensorBoard 风格的 ``writer``（``SummaryWriter`` 的接口；
    测试时注入一个假的 ``writer``，所以只调用下面这些方法，不要自己创建 ``SummaryWriter`` 或写文件）。

    - ``metrics`` 的每个键 ``"{split}_{name}"``（在第一个 ``_`` 处分开）：
      ``writer.add_scalar(f"{name.capitalize()}/{split}", float(value), epoch)``，例如 ``"train_loss"`` →
      ``"Loss/train"``、``"val_acc"`` → ``"Acc/val"``；没有 ``_`` 的键原样作为标签。值可能是 0 维张量（可能带
      计算图）：一律记录 Python ``float``。
    - 给了 ``optimizer`` 时记录每个参数组的 ``lr``：只有一组时标签为 ``"LearningRate"``，多组时为
      ``"LearningRate/group0"``、``"LearningRate/group1"``……
    - 给了 ``model`` 时，对 ``model.named_parameters()`` 中的每个参数
      ``writer.add_histogram(name, param.detach().cpu(), epoch)``。
    - 每次调用都传 ``global_step=epoch``（第三个参数）。

    Log one epoch's metrics, learning rates and parameter histograms to a TensorBoard-style ``writer``
    (the ``SummaryWriter`` interface; tests inject a fake one, so call only these methods, never create a
    ``SummaryWriter`` or write files yourself).

    - For each key ``"{split}_{name}"`` of ``metrics`` (split at the first ``_``):
      ``writer.add_scalar(f"{name.capitalize()}/{split}", float(value), epoch)``, e.g. ``"train_loss"`` ->
      ``"Loss/train"``, ``"val_acc"`` -> ``"Acc/val"``; a key without ``_`` is the tag as it is. A value may
      be a 0-dim tensor (maybe with a graph): always log a Python ``float``.
    - With an ``optimizer``, log each parameter group's ``lr``: the tag is ``"LearningRate"`` with one group,
      ``"LearningRate/group0"``, ``"LearningRate/group1"``, ... with several.
    - With a ``model``, ``writer.add_histogram(name, param.detach().cpu(), epoch)`` for each parameter of
      ``model.named_parameters()``.
    - Every call passes ``global_step=epoch`` (the third argument).
    """
    raise NotImplementedError("TODO: log_epoch")
