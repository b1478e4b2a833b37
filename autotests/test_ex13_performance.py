"""Autotests for ex13_performance: gradient checkpointing, dynamic quantization, pruning, torch.export,
autocast and gradient diagnostics.

The probes in ``probes/ex13_performance.py`` build the models, hand them to the submission and return
data: outputs, gradients, masked weights, state_dict keys, the calls that spy modules made by the probe
recorded, a saved program as bytes. Expected values are recomputed here in float64 from the weights the
test sent (or, for quantization, taken from the reference's own worker on the same inputs); the digits
models are trained here and their held-out labels never leave this process. Timing is measured around
worker calls (``grader.timing.compare_probe_speed``).

torch 2.14 deprecates ``torch.jit.script`` and ``torch.jit.trace`` ("Please switch to torch.compile or
torch.export"), so the card's ``script_model`` (TorchScript for data-dependent control flow) became
``SignBranch``: the branch is written with ``torch.cond`` so that ``torch.export`` keeps both sides.
"""

from __future__ import annotations

import io
import math
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testdata import digits, seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed

pytestmark = pytest.mark.exercise("ex13_performance")

DIGITS = Path(__file__).resolve().parents[1] / "data" / "public" / "digits8x8.npz"
EXPORT_CAP = 1 << 20  # the probe refuses larger programs; checked again here

# -- feedback ----------------------------------------------------------------------------------------
CK_REENTRANT = Msg("请显式传入 `use_reentrant=False`：默认的重入式检查点在输入不需要梯度时不会给参数梯度，"
                   "并会发出 `use_reentrant` 警告",
                   "Pass use_reentrant=False explicitly: the default reentrant checkpoint gives the parameters no "
                   "gradient when the input does not require grad, and warns about use_reentrant")
CK_SEGMENTS = Msg("`forward` 计数与分段数不符：每一段要单独 `checkpoint`，反向时按段从后往前各重算一次",
                  "Segment count mismatch: checkpoint each segment on its own; backward recomputes the segments one "
                  "by one, last first")
CK_INFERENCE = Msg("推理时不应使用 `checkpoint`：只在 `self.training` 且 `torch.is_grad_enabled()` 时重算",
                   "Skip checkpointing in inference: recompute only when self.training and torch.is_grad_enabled()")
CK_LAYOUT = Msg("层的结构：`self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) ...)`，"
                "层与层之间是 ReLU，最后一层之后没有激活",
                "The layout: self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) ...), ReLU between layers, "
                "no activation after the last")
CK_RNG = Msg("重算必须得到与前向相同的 `Dropout` 掩码：保留 `checkpoint` 默认的 `preserve_rng_state=True`",
             "The recomputation must draw the same dropout mask as the forward pass: keep checkpoint's default "
             "preserve_rng_state=True")
CK_SPLIT = Msg("分段方式：L 层分成 `segments` 段，前 `L % segments` 段各多一层（与 `numpy.array_split` 相同）",
               "The split: L layers into `segments` segments, the first L % segments of them one layer longer "
               "(as numpy.array_split)")

Q_INPLACE = Msg("不要修改原模型：请先 `copy.deepcopy(model)` 再量化（原模型的 Linear 必须仍是浮点层）",
                "Don't modify the original: copy.deepcopy(model) first, then quantize (its Linear layers must stay float)")
Q_STATIC = Msg("本题要求动态量化 `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`："
               "静态量化（`prepare`/`convert`）没有 `QuantStub` 时，量化层收到的是浮点输入",
               "Use dynamic quantization, torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, "
               "dtype=torch.qint8): static quantization (prepare/convert) without QuantStub feeds float inputs to "
               "quantized layers")
Q_EVAL = Msg("量化前先 `model.eval()`：返回的模型要处在 eval 模式（Dropout 不再随机）",
             "Call eval() before quantizing: the returned model must be in eval mode (no random Dropout)")
Q_NOT_QUANTIZED = Msg("输出与浮点模型完全相同：Linear 层没有被量化", "The outputs equal the float model's exactly: the "
                      "Linear layers were not quantized")
Q_SIZE = Msg("`state_dict_nbytes` 是 `torch.save(model.state_dict(), buffer)` 写入 `io.BytesIO` 的字节数",
             "state_dict_nbytes is the number of bytes torch.save(model.state_dict(), buffer) writes into an io.BytesIO")
Q_BATCH = Msg("量化后的模型要整批推理：不要逐个样本调用", "Run the quantized model on the whole batch: no per-sample loop")

P_GLOBAL = Msg("应为全局剪枝：各层稀疏度可以不同，但总体等于 `amount`（`prune.global_unstructured` 与 `prune.L1Unstructured`）",
               "Prune globally: layers may differ in sparsity but the total equals amount (prune.global_unstructured "
               "with prune.L1Unstructured)")
P_SPARSITY = Msg("稀疏度应基于剪枝后的 `weight`（= `weight_orig * weight_mask`），不是 `weight_orig`",
                 "Measure on the masked weight (weight_orig * weight_mask), not weight_orig")
P_REMOVE = Msg("`prune.remove` 未调用，state_dict 仍含 `weight_mask`：对每个被剪枝的层调用 `prune.remove(module, \"weight\")`",
               "Call prune.remove: the state_dict still holds weight_mask; call prune.remove(module, \"weight\") on "
               "every pruned layer")
P_TYPES = Msg("只剪枝 `module_types` 中的层，所有这类层的 `weight` 都参加（冻结的层也剪），偏置不剪",
              "Prune only layers of module_types, and every such layer's weight (frozen ones too); biases stay")
P_NOOP = Msg("`finalize_pruning` 跳过从未剪枝过的层（没有 `weight_mask` 的层），对从未剪枝的模型什么都不做",
             "finalize_pruning skips layers that were never pruned (no weight_mask) and does nothing on a model "
             "never pruned")

E_DYNAMIC = Msg("导出图固定了批大小：请声明 `dynamic_shapes=({0: torch.export.Dim(\"batch\")},)`",
                "The exported graph fixed the batch size: declare a dynamic batch dim, "
                "dynamic_shapes=({0: torch.export.Dim(\"batch\")},)")
E_EVAL = Msg("导出前 `model.eval()`：训练模式下 Dropout 会被导出进图里", "Export in eval mode: call model.eval() "
             "first, or Dropout is exported into the graph")
E_BATCH_ONE = Msg("批大小为 1 的示例会把批维度特化为常数：导出前把示例扩展到批大小 2（`example.expand(2, ...)`）",
                  "An example of batch 1 specialises the batch dim: expand it to batch 2 before exporting "
                  "(example.expand(2, ...))")
E_TRACE = Msg("`torch.jit.trace` 已弃用，而且只记录示例输入走过的分支：请用 `torch.export.export` 返回 `ExportedProgram`",
              "torch.jit.trace is deprecated and bakes the branch the example took: use torch.export.export and "
              "return an ExportedProgram")
E_COND = Msg("数据相关的 Python `if` 无法导出（或被固定成一个分支）：请用 `torch.cond(x.sum() > 0, 正分支, 负分支, (x,))`",
             "A data-dependent Python if cannot be exported (or is baked into one branch): use "
             "torch.cond(x.sum() > 0, pos_fn, neg_fn, (x,))")
E_SIGN = Msg("`SignBranch`：`x.sum() > 0` 时输出 `self.pos(x)`，否则输出 `-self.neg(x)`",
             "SignBranch returns self.pos(x) when x.sum() > 0, else -self.neg(x)")

A_AUTOCAST = Msg("请使用 `torch.amp.autocast(device_type, dtype=dtype)`：`torch.cuda.amp.autocast` 已弃用且只对 CUDA 有效，"
                 "在 CPU 上等于没有混合精度", "Use torch.amp.autocast(device_type, dtype=dtype): torch.cuda.amp.autocast "
                 "is deprecated and CUDA-only, so on the CPU nothing ran in low precision")
A_CAST = Msg("`autocast` 只改变运算精度，不要把参数转成半精度（`.half()`/`.to(dtype)`）：参数必须仍是 float32",
             "autocast changes the precision of operations only; don't cast params (.half() or .to(dtype)): they must "
             "stay float32")
A_SCALER = Msg("有 `scaler` 时需 `scaler.scale(loss).backward()`、`scaler.step(optimizer)`、`scaler.update()`，"
               "且 `backward` 在 `autocast` 块之外", "With a scaler use scaler.scale(loss).backward(), "
               "scaler.step(optimizer), scaler.update(), with backward outside the autocast block")
A_TRAIN = Msg("开头要调用 `model.train()`：模型可能还处在 eval 模式", "Call model.train() at the start: the model may "
              "still be in eval mode")
A_STEP = Msg("一步：`model.train()`，`optimizer.zero_grad()`，在 `autocast` 中前向并计算损失，之后 `backward`、`step`，"
             "返回 `loss.item()`", "One step: model.train(), optimizer.zero_grad(), forward and loss inside autocast, "
             "then backward and step outside it; return loss.item()")

G_NONE_ZERO = Msg("None（未参与计算）与 0（梯度恰为零）含义不同：只有 `p.grad is None` 的参数算作没有梯度",
                  "None is not zero: only params whose p.grad is None got no gradient (a zero gradient is a gradient)")
G_STALE = Msg("请先清空梯度再 `backward`：`model.zero_grad(set_to_none=True)`，否则上一步留下的梯度会被当成这一次的",
              "Clear grads first with model.zero_grad(set_to_none=True): otherwise grads left from an earlier step "
              "count as this one's")
G_FROZEN = Msg("冻结参数不在报告范围内：只看 `requires_grad=True` 的参数", "Report trainable params only "
               "(requires_grad=True)")
G_CLEANUP = Msg("函数结束前再 `model.zero_grad(set_to_none=True)`：不要留下梯度", "Call "
                "model.zero_grad(set_to_none=True) again before returning: leave no grads behind")
G_NORM = Msg("每个可训练参数的梯度 L2 范数（`p.grad.norm().item()`，Python float），没有梯度的为 None；"
             "键是 `named_parameters()` 中可训练参数的名字", "The L2 norm of each trainable param's grad "
             "(p.grad.norm().item(), a Python float), None without a grad; keys are the trainable names of "
             "named_parameters()")


# -- helpers -------------------------------------------------------------------------------------------
def _randn(rng: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=rng, dtype=dtype)


def _linear_state(rng: torch.Generator, dims: list[int], prefix: str, dtype: torch.dtype = torch.float64,
                  names: list[str] | None = None) -> dict[str, torch.Tensor]:
    state = {}
    for i in range(len(dims) - 1):
        name = names[i] if names else f"{prefix}{i}"
        state[f"{name}.weight"] = _randn(rng, dims[i + 1], dims[i], dtype=dtype) / math.sqrt(dims[i])
        state[f"{name}.bias"] = 0.1 * _randn(rng, dims[i + 1], dtype=dtype)
    return state


def _error(res: dict[str, Any], what: str, hint: Msg | None = None, keys: tuple[str, ...] = ()) -> None:
    checks.fail_on_probe_error(res, what, hint)
    for key in keys:
        if res.get(key):
            checks.fail(Msg(f"{what}：{res[key]}", f"{what}: {res[key]}"), hint)


# -- T13.1 CheckpointedMLP -------------------------------------------------------------------------------
def _ck_problem(rng: torch.Generator, dims: list[int], n: int = 16):
    state = _linear_state(rng, dims, "layers.")
    # The first output's bias well below zero: even where every hidden unit is dead (which narrow random
    # layers sometimes are), that output is negative, so a stray ReLU after the last layer always shows.
    state[f"layers.{len(dims) - 2}.bias"][0] = -1.0
    return state, _randn(rng, n, dims[0]), _randn(rng, n, dims[-1])


CK_DROPOUT = 0.5  # the rate at which the probe's spies drop their outputs in the dropout test


def _ck_expected(state: dict[str, torch.Tensor], x: torch.Tensor, cot: torch.Tensor, n_layers: int,
                 dropout_seed: int | None = None):
    """The plain MLP's output and gradients; with ``dropout_seed``, each layer's output goes through
    dropout with masks drawn in layer order from that seed, as the probe's spies draw them."""
    params = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    x = x.clone().requires_grad_(True)
    h = x
    with torch.random.fork_rng(devices=[]):
        if dropout_seed is not None:
            torch.manual_seed(dropout_seed)
        for i in range(n_layers):
            h = F.linear(h, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
            if dropout_seed is not None:
                h = F.dropout(h, CK_DROPOUT, training=True)
            if i < n_layers - 1:
                h = torch.relu(h)
    h.backward(cot)
    return h.detach(), x.grad, {k: p.grad for k, p in params.items()}


def _ck_log(n_layers: int, segments: int | None) -> list[int]:
    """The spies' calls: the forward pass, then each segment recomputed during backward, last first."""
    forward = list(range(n_layers))
    if segments is None:
        return forward
    bounds = [b.tolist() for b in np.array_split(np.arange(n_layers), segments)]
    return forward + [i for seg in reversed(bounds) for i in seg]


def _segments_seen(log: list[int], n_layers: int) -> int:
    """How many runs of consecutive layers the recomputation after the forward pass made."""
    rec = log[n_layers:]
    return 1 + sum(b != a + 1 for a, b in zip(rec, rec[1:])) if rec else 0


def _ck_run(student, dims, segments, rng, what, **kwargs):
    state, x, cot = _ck_problem(rng, dims)
    res = student.probe("run_checkpointed", dims=dims, segments=segments, state=state, x=x, cotangent=cot,
                        **{"use_checkpoint": True, **kwargs})
    _error(res, what, CK_REENTRANT if res.get("warnings") else CK_LAYOUT if res.get("load_error") else None)
    return res, state, x, cot


def _ck_check_grads(res, state, x, cot, n_layers, what, input_grad=True, dropout_seed=None):
    out, x_grad, grads = _ck_expected(state, x, cot, n_layers, dropout_seed)
    checks.assert_close(res["out"], out, f"{what}(x)", atol=1e-10, rtol=1e-10, hint=CK_LAYOUT)
    hint = CK_REENTRANT if any(res["grads"].get(n) is None for n in grads) else \
        CK_RNG if dropout_seed is not None else None
    if input_grad:
        checks.assert_grad(res["x_grad"], x_grad, "x", hint=hint)
    for name, g in grads.items():
        checks.assert_grad(res["grads"].get(name), g, name, hint=hint, atol=1e-10, rtol=1e-10)


def _ck_check_warnings(res, what):
    if res["warnings"]:
        checks.fail(Msg(f"{what}：出现了警告 {res['warnings'][0]!r}", f"{what}: it warned {res['warnings'][0]!r}"),
                    CK_REENTRANT)


@graded(task="CheckpointedMLP", kind="shape", points=1, visibility="public")
def test_checkpointed_forward_values(student, rng):
    """CheckpointedMLP([5, 7, 6, 4, 3], segments=2) in float64: output (16, 3) equal to the plain MLP."""
    dims = [5, 7, 6, 4, 3]
    what = "CheckpointedMLP([5, 7, 6, 4, 3], segments=2)"
    res, state, x, cot = _ck_run(student, dims, 2, rng, what, backward=False)
    out, _, _ = _ck_expected(state, x, cot, len(dims) - 1)
    checks.assert_close(res["out"], out, f"{what}(x)", atol=1e-10, rtol=1e-10, hint=CK_LAYOUT)


@graded(task="CheckpointedMLP", kind="gradient", points=2, visibility="public")
def test_checkpointed_gradients_equal_plain(student, rng):
    """In train mode, float64 gradients w.r.t. the input and every parameter equal the plain MLP's,
    and no use_reentrant warning is raised."""
    dims = [5, 7, 6, 4, 3]
    what = "CheckpointedMLP([5, 7, 6, 4, 3], segments=2)"
    res, state, x, cot = _ck_run(student, dims, 2, rng, what)
    _ck_check_warnings(res, what)
    _ck_check_grads(res, state, x, cot, len(dims) - 1, what)


@graded(task="CheckpointedMLP", kind="gradient", points=2, visibility="public")
def test_checkpointed_recomputes_each_segment(student, rng):
    """Spies in place of the Linear layers see the forward pass, then each segment once more during
    backward, last segment first (5 layers in 2 and in 3 segments)."""
    dims = [4, 6, 5, 6, 5, 3]
    for segments in (None, 2, 3):
        what = f"CheckpointedMLP({dims})" if segments is None else f"CheckpointedMLP({dims}, segments={segments})"
        res, _, _, _ = _ck_run(student, dims, segments, rng, what)
        expected = _ck_log(5, segments or 2)  # the default is 2 segments
        log = res["log"]
        same_count = _segments_seen(log, 5) == (segments or 2)
        hint = CK_SPLIT if sorted(log) == sorted(expected) and same_count else CK_SEGMENTS
        checks.assert_equal(log, expected, f"{what}: spy_log", hint=hint)


@graded(task="CheckpointedMLP", kind="gradient", points=2, visibility="hidden")
def test_checkpointed_dropout_recomputes_the_same_mask(student, rng):
    """With dropout inside every segment (the spies drop half their outputs in training mode), float64
    gradients still equal the plain MLP's with the same masks: the recomputation replays the RNG."""
    dims = [5, 7, 6, 4, 3]
    for segments in (2, 4):
        what = f"CheckpointedMLP({dims}, segments={segments}) + Dropout({CK_DROPOUT})"
        seed = seed_from(rng)
        res, state, x, cot = _ck_run(student, dims, segments, rng, what, dropout=CK_DROPOUT, dropout_seed=seed)
        _ck_check_grads(res, state, x, cot, len(dims) - 1, what, dropout_seed=seed)


@graded(task="CheckpointedMLP", kind="gradient", points=2, visibility="hidden")
def test_checkpointed_input_without_grad_and_inference(student, rng):
    """An input without requires_grad still gives every parameter its gradient (non-reentrant); segments=1
    recomputes everything once; in eval mode and with use_checkpoint=False nothing is recomputed."""
    dims = [5, 6, 4, 3]
    what = "CheckpointedMLP([5, 6, 4, 3], segments=2)"
    res, state, x, cot = _ck_run(student, dims, 2, rng, what, input_grad=False)
    _ck_check_grads(res, state, x, cot, 3, what + ", x.requires_grad=False", input_grad=False)
    _ck_check_warnings(res, what)
    what = "CheckpointedMLP([5, 6, 4, 3], segments=1)"
    res, state, x, cot = _ck_run(student, dims, 1, rng, what)
    _ck_check_grads(res, state, x, cot, 3, what)
    checks.assert_equal(res["log"], _ck_log(3, 1), f"{what}: spy_log", hint=CK_SEGMENTS)
    what = "CheckpointedMLP([5, 3], segments=1)"
    res, state, x, cot = _ck_run(student, [5, 3], 1, rng, what)
    _ck_check_grads(res, state, x, cot, 1, what)
    what = "CheckpointedMLP([5, 6, 4, 3], segments=2).eval()"
    res, state, x, cot = _ck_run(student, dims, 2, rng, what, train=False)
    _ck_check_grads(res, state, x, cot, 3, what)
    checks.assert_equal(res["log"], _ck_log(3, None), f"{what}: spy_log",
                        hint=CK_INFERENCE)
    what = "CheckpointedMLP([5, 6, 4, 3], use_checkpoint=False, segments=2)"
    res, state, x, cot = _ck_run(student, dims, 2, rng, what, use_checkpoint=False)
    _ck_check_grads(res, state, x, cot, 3, what)
    checks.assert_equal(res["log"], _ck_log(3, None), f"{what}: spy_log",
                        hint=CK_INFERENCE)


# -- digits ------------------------------------------------------------------------------------------
def _digits_model(spec, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, nn.Module]:
    """A 64-128-10 MLP trained here (full-batch Adam) on a split chosen by ``seed``; its state_dict
    (keys 0.* and 3.*, as Linear, ReLU, Dropout, Linear), the held-out inputs and labels, the model."""
    x, y = digits(DIGITS, spec.param("digits_sha256"))
    x = x.flatten(1)  # (N, 64): the MLP's input
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    train, held_out = order[:spec.param("digits_train")], order[spec.param("digits_train"):]
    p = spec.param("digits_mlp")
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, p["hidden"]), nn.ReLU(), nn.Dropout(0.0), nn.Linear(p["hidden"], 10))
    torch.random.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"])
    for _ in range(p["steps"]):
        optimizer.zero_grad()
        F.cross_entropy(model(x[train]), y[train]).backward()
        optimizer.step()
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, x[held_out], y[held_out], model


def _accuracy(logits: Any, labels: torch.Tensor, what: str) -> float:
    checks.assert_shape(logits, (len(labels), 10), what)
    return float((logits.argmax(dim=1) == labels).double().mean())


# -- T13.2 dynamic quantization ----------------------------------------------------------------------------
def _q_problem(rng: torch.Generator, n: int = 16) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    state = _linear_state(rng, [64, 32, 10], "", dtype=torch.float32, names=["0", "3"])
    return state, _randn(rng, n, 64, dtype=torch.float32)


def _float_out(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items()}
    h = torch.relu(F.linear(x.double(), s["0.weight"], s["0.bias"]))
    return F.linear(h, s["3.weight"], s["3.bias"])


def _q_expected(state: dict[str, torch.Tensor], x: torch.Tensor, with_conv: bool = False) -> torch.Tensor:
    """The int8 dynamic quantization of the float model, computed here with this process's torch on
    the weights the test made (no reference involved)."""
    model = nn.Sequential(nn.Linear(64, state["0.weight"].shape[0]), nn.ReLU(), nn.Dropout(0.0),
                          nn.Linear(state["0.weight"].shape[0], 10))
    model.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        return quantized(x)


def _quantize(student, what: str, **kwargs) -> dict:
    res = student.probe("run_quantize", **kwargs)
    _error(res, what, Q_STATIC if "quantized" in str(res.get("error")) else None)
    return res


def _q_check_outputs(res: dict, state, x, what: str, hint: Msg | None = None) -> None:
    """The quantized outputs equal the int8 dynamic quantization's and differ from the float model's."""
    float_out = _float_out(state, x).float()
    checks.assert_close(res["q_out"], _q_expected(state, x), f"{what}(x)", atol=1e-4, rtol=1e-4, hint=hint,
                        mistakes={Q_NOT_QUANTIZED: float_out})
    checks.assert_true(bool((res["q_out"] - float_out).abs().max() > 1e-5),
                       Msg(f"{what}(x) 与浮点模型的输出相同", f"{what}(x) equals the float model's output"), Q_NOT_QUANTIZED)


@graded(task="quantize_dynamic_linear", kind="shape", points=1, visibility="public")
def test_quantize_leaves_the_original_float(student, rng):
    """After quantize_dynamic_linear(model), the caller's model still computes its float outputs."""
    state, x = _q_problem(rng)
    what = "quantize_dynamic_linear(model)"
    res = _quantize(student, what, state=state, x=x)
    checks.assert_close(res["original_out"], _float_out(state, x).float(), "original_model(x)",
                        atol=1e-5, rtol=1e-5, hint=Q_INPLACE)


@graded(task="quantize_dynamic_linear", kind="accuracy", points=2, visibility="public")
def test_quantize_outputs_int8(student, rng):
    """The returned model's outputs are the int8 dynamic quantization's (recomputed here on the same
    weights and inputs), not the float model's."""
    state, x = _q_problem(rng)
    what = "quantize_dynamic_linear(model)"
    res = _quantize(student, what, state=state, x=x)
    _q_check_outputs(res, state, x, what)


@graded(task="quantize_dynamic_linear", kind="accuracy", points=1, visibility="hidden")
def test_quantize_train_mode_and_conv(student, rng):
    """A model in train mode with Dropout(0.5) comes back in eval mode (two calls agree, and equal the
    int8 model's outputs); a Conv1d(1, 1, 1) in front (weight 1, bias 0) stays a float identity."""
    state, x = _q_problem(rng)
    what = "quantize_dynamic_linear(model.train())"
    res = _quantize(student, what, state=state, x=x, dropout=0.5, train=True)
    checks.assert_equal(res["original_training"], True, "original_model.training", Q_INPLACE)
    checks.assert_close(res["q_out2"], res["q_out"], f"{what}(x)  # 2", atol=1e-6, rtol=1e-6, hint=Q_EVAL)
    _q_check_outputs(res, state, x, what, Q_EVAL)
    what = "quantize_dynamic_linear(Sequential(Conv1d, Flatten, mlp))"
    res = _quantize(student, what, state=state, x=x, with_conv=True)
    _q_check_outputs(res, state, x, what, Q_INPLACE)


@graded(task="quantize_dynamic_linear", kind="accuracy", points=2, visibility="public")
def test_quantized_digits_accuracy_and_size(student, spec, rng):
    """A digits MLP (64-128-10) trained here keeps its held-out accuracy after int8 quantization, and its
    state_dict shrinks by at least the factor in the exercise data; state_dict_nbytes reports the sizes."""
    state, x_eval, y_eval, model = _digits_model(spec, seed_from(rng))
    what = "quantize_dynamic_linear(digits_mlp)"
    res = student.probe("run_quantize", state=state, x=x_eval)
    _error(res, what, Q_STATIC if "quantized" in str(res.get("error")) else None, ("size_error",))
    with torch.no_grad():
        fp32 = _accuracy(model(x_eval), y_eval, "digits_mlp(x_eval)")
    int8 = _accuracy(res["q_out"], y_eval, f"{what}(x_eval)")
    p = spec.param("quantize_accuracy")
    checks.assert_at_least(int8, max(p["min"], fp32 - p["max_drop"]),
                           Msg(f"int8 模型的准确率 {int8:.3f}，浮点模型 {fp32:.3f}：下降超过 {p['max_drop']}",
                               f"int8 accuracy {int8:.3f} against float {fp32:.3f}: it dropped more than "
                               f"{p['max_drop']}"), hint=Q_STATIC)
    ratio = res["nbytes_fp32"] / res["nbytes_q"]
    checks.assert_true(ratio >= spec.param("quantize_size_ratio"),
                       Msg(f"量化后的 state_dict 只小了 {ratio:.2f} 倍（{res['nbytes_fp32']} → {res['nbytes_q']} 字节）",
                           f"The quantized state_dict is only {ratio:.2f}x smaller ({res['nbytes_fp32']} -> "
                           f"{res['nbytes_q']} bytes)"), Q_NOT_QUANTIZED)
    _error(res, "state_dict_nbytes(model)", Q_SIZE, ("report_error",))
    checks.assert_equal(res["reported_fp32"], res["nbytes_fp32"], "state_dict_nbytes(digits_mlp)", Q_SIZE)
    checks.assert_equal(res["reported_q"], res["nbytes_q"], "state_dict_nbytes(quantized)", Q_SIZE)


@graded(task="quantize_dynamic_linear", kind="speed", points=1, visibility="hidden")
def test_quantized_inference_speed(student, reference_worker, spec, rng):
    """The quantized 64-128-10 MLP on a batch of 4096 costs at most a few times the reference's."""
    p = spec.param("quantize_speed")
    factor = spec.param("speed_factor")
    result = compare_probe_speed(student, reference_worker, "repeat_quantized", [{"randn": [p["batch"], p["dims"][0]]}],
                                 rng, rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                 factor=factor, rel_tol=1e-3, dims=p["dims"], model_seed=seed_from(rng))
    assert_speed(result, factor, "quantized(x)", hint=Q_BATCH)


# -- T13.3 pruning -------------------------------------------------------------------------------------------
LAYERS = ("conv", "fc1", "fc2")


def _p_problem(rng: torch.Generator, n: int = 4):
    state = {"conv.weight": _randn(rng, 4, 1, 3, 3) / 3, "conv.bias": 0.1 * _randn(rng, 4),
             **_linear_state(rng, [64, 16, 5], "", names=["fc1", "fc2"])}
    return state, _randn(rng, n, 1, 6, 6), _randn(rng, n, 5)


def _p_masks(state, amount: float, layers=LAYERS, per_layer: bool = False) -> dict[str, torch.Tensor]:
    """Keep-masks of global (or per-layer) L1 pruning: the round(amount * n) smallest |w| are cut."""
    weights = [state[f"{n}.weight"] for n in layers]
    if per_layer:
        masks = {}
        for n, w in zip(layers, weights):
            k = round(amount * w.numel())
            m = torch.ones(w.numel(), dtype=torch.bool)
            m[w.abs().flatten().argsort()[:k]] = False
            masks[n] = m.reshape(w.shape)
        return masks
    flat = torch.cat([w.abs().flatten() for w in weights])
    k = round(amount * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.argsort()[:k]] = False
    masks, start = {}, 0
    for n, w in zip(layers, weights):
        masks[n] = keep[start:start + w.numel()].reshape(w.shape)
        start += w.numel()
    return masks


def _p_forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(F.conv2d(x, params["conv.weight"], params["conv.bias"])).flatten(1)
    return F.linear(torch.relu(F.linear(h, params["fc1.weight"], params["fc1.bias"])), params["fc2.weight"],
                    params["fc2.bias"])


def _prune(student, state, amount, x, cot, what, **kwargs) -> dict:
    res = student.probe("run_prune", state=state, amount=amount, x=x, cotangent=cot, **kwargs)
    _error(res, what)
    _error(res, "finalize_pruning(model)", P_NOOP, ("finalize_error",))
    return res


def _p_check_weights(res, state, masks, amount, what, layers=LAYERS):
    mistakes = _p_masks(state, amount, layers, per_layer=True)
    for n in LAYERS:
        w = state[f"{n}.weight"]
        expected = w * masks[n] if n in masks else w
        wrong = {P_GLOBAL: w * mistakes[n]} if n in mistakes else {}
        checks.assert_close(res["weights"][n], expected, f"{what}: model.{n}.weight", atol=0, rtol=0, rel_l2=0,
                            hint=P_TYPES, mistakes=wrong)
        checks.assert_close(res["biases"][n], state[f"{n}.bias"], f"{what}: model.{n}.bias", atol=0, rtol=0, rel_l2=0,
                            hint=P_TYPES)
    total = sum(masks[n].numel() for n in masks)
    sparsity = sum(int((~masks[n]).sum()) for n in masks) / total
    got = res["returned"]
    hint = P_SPARSITY if got == 0.0 and sparsity > 0 else None
    checks.assert_number_close(got, sparsity, f"returned_sparsity = {what}", atol=1e-9, hint=hint)


@graded(task="global_prune", kind="accuracy", points=2, visibility="public")
def test_global_prune_masks_and_sparsity(student, rng):
    """global_prune(model, 0.3) cuts the 30 % smallest |w| over conv, fc1 and fc2 together (not 30 % of
    each), leaves the biases, keeps weight_orig/weight_mask in the state_dict and returns the sparsity."""
    state, x, cot = _p_problem(rng)
    what = "global_prune(model, 0.3)"
    res = _prune(student, state, 0.3, x, cot, what)
    _p_check_weights(res, state, _p_masks(state, 0.3), 0.3, what)
    for n in LAYERS:
        for key in (f"{n}.weight_orig", f"{n}.weight_mask"):
            checks.assert_true(key in res["keys_pruned"], Msg(f"{what}：`state_dict()` 中没有 {key}",
                                                            f"{what}: the state_dict has no {key}"), P_GLOBAL)


@graded(task="global_prune", kind="gradient", points=1, visibility="public")
def test_pruned_weights_get_zero_gradients(student, rng):
    """Before finalising, backward gives weight_orig the gradient of the masked network, zero where masked."""
    state, x, cot = _p_problem(rng)
    what = "global_prune(model, 0.5)"
    res = _prune(student, state, 0.5, x, cot, what)
    masks = _p_masks(state, 0.5)
    params = {k: (v * masks[k.split(".")[0]] if k.endswith("weight") else v).clone().requires_grad_(True)
              for k, v in state.items()}
    out = _p_forward(params, x)
    checks.assert_close(res["out"], out.detach(), f"{what}: model(x)", atol=1e-10, rtol=1e-10, hint=P_GLOBAL)
    out.backward(cot)
    for n in LAYERS:
        checks.assert_grad(res["grads"][n], params[f"{n}.weight"].grad * masks[n], f"model.{n}.weight_orig",
                           atol=1e-10, rtol=1e-10, hint=P_GLOBAL)


@graded(task="global_prune", kind="shape", points=1, visibility="public")
def test_finalize_pruning_makes_it_permanent(student, rng):
    """After finalize_pruning the state_dict holds only weight and bias per layer, the weights keep their
    zeros, the outputs are unchanged and no pruning hook is left."""
    state, x, cot = _p_problem(rng)
    res = _prune(student, state, 0.4, x, cot, "global_prune(model, 0.4)")
    what = "finalize_pruning(model)"
    checks.assert_equal(sorted(res["keys_final"]), sorted(state), f"{what}: sorted(model.state_dict())", P_REMOVE)
    masks = _p_masks(state, 0.4)
    for n in LAYERS:
        checks.assert_close(res["weights_final"][n], state[f"{n}.weight"] * masks[n], f"{what}: model.{n}.weight",
                            atol=0, rtol=0, rel_l2=0, hint=P_REMOVE)
    checks.assert_equal(res["pre_hooks"], 0, f"{what}: len(_forward_pre_hooks)", P_REMOVE)
    checks.assert_equal(res["is_parameter"], [True] * 3, f"{what}: isinstance(weight, nn.Parameter)", P_REMOVE)
    checks.assert_close(res["out_final"], res["out"], f"{what}: model(x)", atol=1e-12, rtol=1e-12, hint=P_REMOVE)


@graded(task="global_prune", kind="accuracy", points=2, visibility="hidden")
def test_prune_amounts_frozen_types_and_noop(student, rng):
    """amount 0 and 0.9; a frozen fc1 is pruned too; module_types=(nn.Linear,) leaves the conv alone;
    finalize_pruning on a model never pruned changes nothing."""
    state, x, cot = _p_problem(rng)
    for amount in (0.0, 0.9):
        what = f"global_prune(model, {amount})"
        res = _prune(student, state, amount, x, cot, what)
        _p_check_weights(res, state, _p_masks(state, amount), amount, what)
    what = "global_prune(model_fc1_frozen, 0.6)"
    res = _prune(student, state, 0.6, x, cot, what, frozen="fc1")
    _p_check_weights(res, state, _p_masks(state, 0.6), 0.6, what)
    what = "global_prune(model, 0.5, module_types=(nn.Linear,))"
    res = _prune(student, state, 0.5, x, cot, what, linear_only=True)
    _p_check_weights(res, state, _p_masks(state, 0.5, ("fc1", "fc2")), 0.5, what, ("fc1", "fc2"))
    res = student.probe("run_finalize_unpruned", state=state)
    _error(res, "finalize_pruning(unpruned_model)", P_NOOP)
    checks.assert_equal(sorted(res["state"]), sorted(state), "finalize_pruning(unpruned_model)", P_NOOP)
    for k, v in state.items():
        checks.assert_close(res["state"][k], v, f"finalize_pruning(unpruned_model): {k}", atol=0, rtol=0, rel_l2=0,
                            hint=P_NOOP)


@graded(task="global_prune", kind="accuracy", points=1, visibility="public")
def test_pruned_digits_accuracy(student, spec, rng):
    """A digits MLP trained here, pruned globally by half without fine-tuning, still classifies held-out
    digits."""
    state, x_eval, y_eval, _ = _digits_model(spec, seed_from(rng))
    amount = spec.param("prune_amount")
    what = f"global_prune(digits_mlp, {amount})"
    res = student.probe("run_prune", state=state, amount=amount, x=x_eval, cotangent=x_eval[:, :10], digits=True)
    _error(res, what)
    acc = _accuracy(res["out"], y_eval, f"{what}: model(x_eval)")
    threshold = spec.param("prune_accuracy")
    checks.assert_at_least(acc, threshold, Msg(f"剪枝后的准确率 {acc:.3f} 低于 {threshold}",
                                               f"Accuracy after pruning {acc:.3f} is below {threshold}"), hint=P_GLOBAL)


# -- T13.4 torch.export ----------------------------------------------------------------------------------------
def _e_state(rng, d=6, h=12, k=3):
    return _linear_state(rng, [d, h, k], "", dtype=torch.float32, names=["0", "3"])


def _check_saved(res: dict, what: str) -> None:
    """The saved program came back as bytes: within the cap, and a zip archive. They are never loaded
    here: torch.export.load unpickles (see probes/ex13_performance.py)."""
    saved = res.get("saved")
    checks.assert_true(isinstance(saved, torch.Tensor) and saved.dtype == torch.uint8 and saved.dim() == 1
                       and 0 < saved.numel() <= EXPORT_CAP and saved.numel() == res.get("nbytes"),
                       Msg(f"{what}：保存的程序不是不超过 {EXPORT_CAP} 字节的字节串",
                           f"{what}: the saved program is not a byte string of at most {EXPORT_CAP} bytes"), E_TRACE)
    with zipfile.ZipFile(io.BytesIO(saved.numpy().tobytes())) as archive:  # reads the directory only
        checks.assert_true(len(archive.namelist()) > 0, Msg(f"{what}：保存的程序是空的",
                                                            f"{what}: the saved program is empty"), E_TRACE)


def _export(student, what: str, hint: Msg | None = None, res: dict | None = None, **kwargs) -> dict:
    res = res or student.probe("run_export", **kwargs)
    if "jit" in str(res.get("export_error")) or "jit" in str(res.get("program_type")).lower():
        hint = E_TRACE
    _error(res, what, hint, ("export_error",))
    for key in ("save_error", "load_error"):
        if res.get(key):
            checks.fail(Msg(f"{what} 返回了 {res.get('program_type')}，无法用 `torch.export.save`/`load` 往返："
                            f"{res[key]}", f"{what} returned a {res.get('program_type')} that does not round-trip "
                            f"through torch.export.save/load: {res[key]}"), E_TRACE)
    _check_saved(res, what)
    if res.get("run_error"):
        checks.fail(Msg(f"导出的程序在新的批大小上运行失败：{res['run_error']}",
                        f"The exported program failed on another batch size: {res['run_error']}"), E_DYNAMIC)
    return res


def _mlp_eval(state, x):
    return _float_out(state, x).float()


@graded(task="export_program", kind="shape", points=2, visibility="public")
def test_export_dynamic_batch(student, rng):
    """export_program(model, example of batch 4) round-trips through torch.export.save/load and runs on
    batches of 1, 7 and 64 with the eager model's outputs."""
    state = _e_state(rng)
    inputs = [_randn(rng, b, 6, dtype=torch.float32) for b in (1, 7, 64)]
    what = "export_program(model, torch.randn(4, 6))"
    res = _export(student, what, kind="mlp", state=state, example=_randn(rng, 4, 6, dtype=torch.float32),
                  inputs=inputs)
    for x, out in zip(inputs, res["outs"]):
        checks.assert_close(out, _mlp_eval(state, x), f"program.module()(x[{len(x)}])", atol=1e-5, rtol=1e-5,
                            hint=E_EVAL)


@graded(task="export_program", kind="accuracy", points=2, visibility="public")
def test_sign_branch_exports_both_branches(student, rng):
    """SignBranch gives pos(x) for x.sum() > 0 and -neg(x) otherwise, eagerly and after export_program
    with a positive example: the exported program takes the negative branch on a negative input."""
    state = _linear_state(rng, [5, 4], "", dtype=torch.float32, names=["pos"])
    state.update(_linear_state(rng, [5, 4], "", dtype=torch.float32, names=["neg"]))
    example = _randn(rng, 3, 5, dtype=torch.float32).abs() + 0.1
    mixed = -_randn(rng, 4, 5, dtype=torch.float32).abs() - 0.5  # its first row positive, its sum negative
    mixed[0] = 0.1 + 0.1 * _randn(rng, 5, dtype=torch.float32).abs()
    small = _randn(rng, 3, 5, dtype=torch.float32)
    small -= (small.sum() - 0.5) / small.numel()  # a positive sum below 1
    inputs = [_randn(rng, 6, 5, dtype=torch.float32).abs() + 0.1, -_randn(rng, 6, 5, dtype=torch.float32).abs() - 0.1,
              -_randn(rng, 2, 5, dtype=torch.float32).abs() - 0.1, mixed, small]
    s = {k: v.double() for k, v in state.items()}
    expected = [(F.linear(x.double(), s["pos.weight"], s["pos.bias"]) if x.sum() > 0
                 else -F.linear(x.double(), s["neg.weight"], s["neg.bias"])).float() for x in inputs]
    res = student.probe("run_export", kind="sign", state=state, example=example, inputs=inputs)
    _error(res, "SignBranch(5, 4)", E_SIGN)
    for x, got, want in zip(inputs, res["eager"], expected):
        checks.assert_close(got, want, f"SignBranch(5, 4)(x), x.sum() = {float(x.sum()):.2f}", atol=1e-5, rtol=1e-5,
                            hint=E_SIGN)
    what = "export_program(SignBranch(5, 4), example)  # example.sum() > 0"
    res = _export(student, what, E_COND, res)
    for x, got, want in zip(inputs, res["outs"], expected):
        checks.assert_close(got, want, f"program.module()(x), x.sum() = {float(x.sum()):.2f}", atol=1e-5, rtol=1e-5,
                            hint=E_COND)


@graded(task="export_program", kind="accuracy", points=1, visibility="hidden")
def test_export_train_mode_batch_one(student, rng):
    """A model left in train mode with Dropout(0.5) and an example of batch 1: the program is the eval-mode
    model and runs on batches of 1 and 5."""
    state = _e_state(rng)
    inputs = [_randn(rng, b, 6, dtype=torch.float32) for b in (1, 5)]
    what = "export_program(model.train(), torch.randn(1, 6))"
    res = _export(student, what, E_BATCH_ONE, kind="mlp", state=state, example=_randn(rng, 1, 6, dtype=torch.float32),
                  inputs=inputs, train=True)
    for x, out in zip(inputs, res["outs"]):
        checks.assert_close(out, _mlp_eval(state, x), f"program.module()(x[{len(x)}])", atol=1e-5, rtol=1e-5,
                            hint=E_EVAL)


# -- T13.5 autocast --------------------------------------------------------------------------------------
def _a_problem(rng, n=32, d=8, h=16, k=3):
    state = _linear_state(rng, [d, h, k], "", dtype=torch.float32, names=["0", "2"])
    # an offset of 8 on every feature: bf16 keeps ~3 significant digits, so low precision shows in the loss
    x = (8.0 + _randn(rng, n, d)).float()
    return state, x, torch.randint(0, k, (n,), generator=rng)


def _a_replay(state, x, y, lr, autocast: bool, steps: int = 1, train: bool = True):
    """The reference step replayed here: float32 model, SGD, bf16 autocast (or none); the probe's model
    halves its input in train mode."""
    x = x * 0.5 if train else x
    model = nn.Sequential(nn.Linear(x.shape[1], state["0.weight"].shape[0]), nn.ReLU(),
                          nn.Linear(state["0.weight"].shape[0], state["2.weight"].shape[0]))
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.amp.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), target=y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return ({n: p.detach().clone() for n, p in model.named_parameters()},
            {n: p.grad.clone() for n, p in model.named_parameters()}, losses)


def _a_check(res, state, x, y, lr, what, hint=None, steps=1):
    _error(res, what, hint)
    params, grads, losses = _a_replay(state, x, y, lr, True, steps)
    params32, _, losses32 = _a_replay(state, x, y, lr, False, steps)
    params_eval, _, _ = _a_replay(state, x, y, lr, True, steps, train=False)
    for name, p in res["params"].items():
        checks.assert_dtype(p, torch.float32, f"model.{name}", A_CAST)
        checks.assert_dtype(res["grads"][name], torch.float32, f"model.{name}.grad", A_CAST)
    tol = 1e-4
    _, _, losses_eval = _a_replay(state, x, y, lr, True, steps, train=False)
    for i, got in enumerate(res["returned"]):
        near = {A_AUTOCAST: losses32[i], A_TRAIN: losses_eval[i]}
        wrong = min(near, key=lambda m: abs(got - near[m])) if isinstance(got, float) and \
            min(abs(got - v) for v in near.values()) < abs(got - losses[i]) else hint
        checks.assert_number_close(got, losses[i], f"loss_{i + 1} = {what}",
                                   atol=tol * max(1.0, abs(losses[i])), hint=wrong)
    for name, p in params.items():
        checks.assert_close(res["params"][name], p, f"model.{name}", atol=1e-5, rtol=1e-5, rel_l2=1e-5,
                            hint=hint or A_STEP, mistakes={A_AUTOCAST: params32[name], A_TRAIN: params_eval[name]})
        g, want = res["grads"][name].double().flatten(), grads[name].double().flatten()
        cos = float(torch.dot(g, want) / (g.norm() * want.norm())) if want.norm() > 0 else float(g.norm() == 0)
        checks.assert_true(cos > 0.99, Msg(f"model.{name}.grad 与期望梯度的余弦相似度只有 {cos:.3f}",
                                           f"model.{name}.grad has cosine similarity {cos:.3f} with the expected one"),
                           hint or A_STEP)


@graded(task="autocast_train_step", kind="accuracy", points=2, visibility="public")
def test_autocast_step_in_bfloat16(student, rng):
    """One step (SGD lr 0.05) on a model left in eval mode: the loss is the bf16 autocast loss, parameters
    and gradients stay float32 and equal the bf16 step's replayed here; three steps in a row too."""
    state, x, y = _a_problem(rng)
    what = "autocast_train_step(model, x, y, criterion, optimizer)"
    res = student.probe("run_autocast", state=state, x=x, y=y, lr=0.05)
    _a_check(res, state, x, y, 0.05, what)
    res = student.probe("run_autocast", state=state, x=x, y=y, lr=0.05, steps=3)
    _a_check(res, state, x, y, 0.05, what + " x3", steps=3)


@graded(task="autocast_train_step", kind="gradient", points=2, visibility="public")
def test_autocast_step_with_scaler(student, rng):
    """With GradScaler('cpu', init_scale=1024, growth_interval=1) the update is the unscaled one and the
    scale grows to 2048 after one step; with GradScaler('cpu', enabled=False) it is a plain step."""
    state, x, y = _a_problem(rng)
    what = "autocast_train_step(..., scaler=GradScaler('cpu', init_scale=1024))"
    res = student.probe("run_autocast", state=state, x=x, y=y, lr=0.05, scaler="on")
    _a_check(res, state, x, y, 0.05, what, A_SCALER)
    checks.assert_equal(res["scale"], 2048.0, f"{what}: scaler.get_scale()", A_SCALER)
    what = "autocast_train_step(..., scaler=GradScaler('cpu', enabled=False))"
    res = student.probe("run_autocast", state=state, x=x, y=y, lr=0.05, scaler="off")
    _a_check(res, state, x, y, 0.05, what, A_SCALER)


@graded(task="autocast_train_step", kind="gradient", points=1, visibility="hidden")
def test_autocast_disabled_scaler_two_steps(student, rng):
    """GradScaler('cpu', enabled=False) over two steps with a larger learning rate is the plain bf16 step."""
    state, x, y = _a_problem(rng, n=48)
    what = "autocast_train_step(..., scaler=GradScaler('cpu', enabled=False)) x2"
    res = student.probe("run_autocast", state=state, x=x, y=y, lr=0.1, scaler="off", steps=2)
    _a_check(res, state, x, y, 0.1, what, A_SCALER, steps=2)


@graded(task="autocast_train_step", kind="accuracy", points=1, visibility="public")
def test_autocast_training_learns_blobs(student, spec, rng):
    """50 bf16 steps (SGD, momentum 0.9, batches of 32) on Gaussian blobs classify held-out points."""
    p = spec.param("autocast_fit")
    k, d = p["classes"], p["dim"]
    centres = torch.linalg.qr(_randn(rng, d, k))[0].T * p["spread"]
    labels = torch.randperm(p["n_train"] + p["n_eval"], generator=rng) % k
    xs = (centres[labels] + _randn(rng, len(labels), d)).float()
    state = _linear_state(rng, [d, p["hidden"], k], "", dtype=torch.float32, names=["0", "2"])
    res = student.probe("fit_autocast", state=state, x_train=xs[:p["n_train"]], y_train=labels[:p["n_train"]],
                        x_eval=xs[p["n_train"]:], steps=p["steps"], lr=p["lr"], batch_size=p["batch_size"],
                        seed=seed_from(rng))
    _error(res, "autocast_train_step")
    y_eval = labels[p["n_train"]:]
    checks.assert_shape(res["logits"], (len(y_eval), k), "model(x_eval)")
    acc = float((res["logits"].argmax(dim=1) == y_eval).double().mean())
    checks.assert_at_least(acc, p["accuracy"], Msg(f"训练 {p['steps']} 步后的准确率 {acc:.3f} 低于 {p['accuracy']}",
                                                   f"Accuracy after {p['steps']} steps {acc:.3f} is below "
                                                   f"{p['accuracy']}"), curve=res.get("losses"), hint=A_STEP)


# -- T13.6 gradient diagnostics -------------------------------------------------------------------------------
DIAG = {"fc_in": [4, 6], "frozen": [6, 6], "fc_mid": [6, 6], "head": [6, 3], "zeroed": [6, 3], "unused": [6, 3]}
TRAINABLE = [f"{m}.{p}" for m in DIAG if m != "frozen" for p in ("weight", "bias")]
DEAD = ["fc_in.weight", "fc_in.bias", "fc_mid.weight", "fc_mid.bias", "unused.weight", "unused.bias"]


def _g_state(rng):
    state = {}
    for name, dims in DIAG.items():
        state.update(_linear_state(rng, dims, "", names=[name]))
    state.update({"tied.weight": state["head.weight"], "tied.bias": state["head.bias"]})  # one module, two names
    return state


def _dead(student, rng, stale: bool) -> list:
    state = _g_state(rng)
    what = "dead_parameters(model, loss)"
    res = student.probe("run_dead_parameters", state=state, x=_randn(rng, 5, 4), stale=stale)
    _error(res, what)
    got = res["returned"]
    hint = None
    if isinstance(got, list):
        if any(str(n).startswith("zeroed.") for n in got):
            hint = G_NONE_ZERO
        elif any(str(n).startswith("frozen.") for n in got):
            hint = G_FROZEN
        elif stale and set(got) < set(DEAD):
            hint = G_STALE
    checks.assert_equal(got, DEAD, what, hint)
    left = [n for n, g in res["left"].items() if g is not None]
    checks.assert_equal(left, [], "params_with_grad", G_CLEANUP)
    return got


@graded(task="gradient_report", kind="gradient", points=2, visibility="public")
def test_dead_parameters_lists_exactly(student, rng):
    """On a model with an unused branch, a frozen layer, a detach() inside forward, a branch multiplied by 0
    and stale gradients (ones) on every parameter, dead_parameters lists exactly the unused branch and the
    layers before the detach, in named_parameters() order, and leaves no gradients behind."""
    _dead(student, rng, stale=True)


@graded(task="gradient_report", kind="gradient", points=1, visibility="hidden")
def test_dead_parameters_without_stale_grads(student, rng):
    """The same model with no gradients before the call gives the same list."""
    _dead(student, rng, stale=False)


@graded(task="gradient_report", kind="accuracy", points=2, visibility="public")
def test_gradient_report_norms(student, rng):
    """gradient_report gives each trainable parameter's gradient L2 norm as a float, 0.0 for a zero
    gradient and None without one; frozen parameters are left out and the tied head is listed once."""
    state = _g_state(rng)
    grads = {"fc_in.weight": _randn(rng, 6, 4), "head.weight": _randn(rng, 3, 6) * 3, "head.bias": _randn(rng, 3),
             "zeroed.weight": torch.zeros(3, 6, dtype=torch.float64), "zeroed.bias": torch.zeros(3, dtype=torch.float64)}
    res = student.probe("run_gradient_report", state=state, grads=grads)
    what = "gradient_report(model)"
    _error(res, what)
    checks.assert_true("pairs" in res, Msg(f"{what} 返回了 {res.get('returned_type')}，应返回 dict",
                                          f"{what} returned a {res.get('returned_type')}, expected a dict"), G_NORM)
    got = dict(res["pairs"])
    checks.assert_equal([k for k, _ in res["pairs"]], TRAINABLE, f"list({what})",
                        G_FROZEN if any(k.startswith("frozen.") for k in got) else G_NORM)
    for name in TRAINABLE:
        value = got[name]
        if name in grads:
            hint = G_NONE_ZERO if value is None else G_NORM
            checks.assert_number_close(value, float(grads[name].norm()), f"{what}[{name!r}]", atol=1e-9, hint=hint)
        else:
            checks.assert_equal(value, None, f"{what}[{name!r}]", G_NORM)
