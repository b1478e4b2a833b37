"""Autotests for ex06_cnn: convolution arithmetic, im2col, LeNet, residual blocks and a small ResNet.

Sizes are compared with real layers run here on the ``meta`` device; convolutions with
``F.conv2d``; networks are driven through the probes in ``probes/ex06_cnn.py``, which load a
state_dict made here and return outputs, gradients and states that this file recomputes with
``torch.nn.functional``. Training runs on the vendored 8×8 digits: the probe gets the training
images and labels and the evaluation images; the evaluation labels stay here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from grader.testdata import digits, seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_generated_speed
from grader.verdicts import Status, SubmissionProblem

pytestmark = pytest.mark.exercise("ex06_cnn")

DIGITS = Path(__file__).resolve().parents[1] / "data" / "public" / "digits8x8.npz"  # shipped: public tests train on it

# -- feedback ----------------------------------------------------------------------------------------
NO_FLOOR = Msg("步长大于 1 时要向下取整：floor((W + 2P − D(K − 1) − 1) / S) + 1，并返回 int（用 `//`）",
               "With a stride above 1 round down: floor((W + 2P - D(K - 1) - 1) / S) + 1, and return an int (use `//`)")
DILATION = Msg("`dilation` ≠ 1 时有效核大小为 D(K − 1) + 1：公式里不能忽略 `dilation`",
               "With dilation != 1 the effective kernel size is D(K - 1) + 1: account for dilation in the formula")
INT_RESULT = Msg("请返回 Python int（整数除法 `//` 的结果就是 int）", "Return a Python int (integer division `//` gives one)")
TOO_SMALL = Msg("核（膨胀后）比补零后的输入还大时，没有输出位置，应抛出 ValueError",
                "When the (dilated) kernel is larger than the padded input there is no output position: raise ValueError")
EVERY_POOL = Msg("每个卷积层和池化层之后都要重新计算尺寸（28×28 经 conv3-pool2-conv3-pool2 后为 5×5，展平为 1600，不是 9216）",
                 "Recompute the size after every conv and pooling layer (28×28 through conv3-pool2-conv3-pool2 is 5×5, "
                 "1600 features, not 9216)")
POOL_STRIDE = Msg("池化层省略 `stride` 时默认等于 `kernel`（与 nn.MaxPool2d 相同），卷积层默认 1",
                  "A pooling layer without a stride uses stride = kernel (as nn.MaxPool2d does); a convolution uses 1")
HEIGHT_WIDTH = Msg("高和宽要分别计算：非正方形输入时 H_out ≠ W_out", "Follow height and width separately: for non-square "
                   "inputs H_out != W_out")

ROW_MAJOR = Msg("输出空间位置错位：`unfold` 的 L 维按行优先排列，应 `reshape` 成 (N, O, H_out, W_out)",
                "Output positions are misplaced: unfold's L dimension is row-major, reshape to (N, O, H_out, W_out)")
BIAS_AXIS = Msg("`bias` 应按输出通道广播：bias.view(1, -1, 1, 1)（或在 (N, O, L) 上用 bias.view(1, -1, 1)）",
                "Broadcast bias per output channel: bias.view(1, -1, 1, 1) (or bias.view(1, -1, 1) on (N, O, L))")
UNFOLD = Msg("请用 F.unfold 加一次矩阵乘法，不要在 Python 中循环遍历输出位置或通道",
             "Vectorise with F.unfold and one matrix product, without Python loops over output positions or channels")
KEEP_DTYPE = Msg("float64 输入应得到 float64 输出：新建的张量请用 dtype=x.dtype、device=x.device",
                 "A float64 input must give a float64 output: create new tensors with dtype=x.dtype and device=x.device")
META_DEVICE = Msg("在 'meta' 设备上出错：`forward` 或函数里新建的张量没有放到输入所在的设备上（device=x.device）",
                  "It failed on the meta device: a tensor made inside the code is not on the input's device (device=x.device)")
NON_CONTIGUOUS = Msg("不连续的输入上出错：view() 需要连续内存，请用 reshape() 或 flatten()",
                     "A non-contiguous input failed: view needs contiguous memory, use reshape or flatten")

FLATTEN_SIZE = Msg("fc1 的输入维度与特征图不符：请根据 input_size 计算（28×28 输入为 16·4·4 = 256，32×32 为 400），不要写死 16*5*5",
                   "fc1's input size does not match the feature map: compute it from input_size (256 = 16·4·4 for 28×28, "
                   "400 for 32×32), do not hard-code 16*5*5")
BATCH_ROWS = Msg("输出行数 ≠ 批大小：请用 x.flatten(1) 展平，不要用 x.view(-1, N)",
                 "Output rows != batch size: flatten with x.flatten(1), not x.view(-1, N)")
SQUEEZE = Msg("批大小为 1 时 squeeze() 删掉了批维：输出应保持 (B, num_classes)",
              "squeeze() drops the batch dimension when B = 1: the output must stay (B, num_classes)")
LAYER_NAMES = Msg("层的属性名、形状或个数与规格不同：请完全按照文档字符串中的名字和层来构建（state_dict 的键名会被检查）",
                  "Layer names, shapes or count differ from the spec: build exactly the layers and names the docstring "
                  "gives (the state_dict keys are checked)")
LOGITS = Msg("模型应输出原始 logits：最后一层后面不要 `softmax` 或激活（CrossEntropyLoss 内含 log_softmax）",
             "The model must output raw logits: no softmax or activation after the last layer (CrossEntropyLoss "
             "applies log_softmax itself)")
MAX_POOL = Msg("请用 2×2 最大池化（F.max_pool2d / nn.MaxPool2d(2)），不是平均池化",
               "Use 2×2 max pooling (F.max_pool2d / nn.MaxPool2d(2)), not average pooling")
LENET_ORDER = Msg("层的顺序应为 `conv` → ReLU → 池化（两次），然后 fc1 → ReLU → fc2 → ReLU → fc3",
                  "The order is conv → ReLU → pool (twice), then fc1 → ReLU → fc2 → ReLU → fc3")
INDEPENDENT = Msg("eval 模式下每个样本的输出应只取决于它自己：批中其它样本（或它们的顺序）不应影响结果",
                  "In eval mode each sample's output must depend on that sample only: the other samples in the batch "
                  "(or their order) must not change it")
DETACHED = Msg("输出脱离了计算图（detach() / .data / no_grad()），参数得不到梯度",
               "The output is detached from the graph (detach, .data, no_grad), so no parameter gets a gradient")
UNUSED = Msg("输出在计算图上，这个参数却没有得到梯度：forward() 没有用到它所在的层",
             "The output is on the graph, yet this parameter got no gradient: forward does not use its layer")

SHORTCUT = Msg("步长或通道数变化时，捷径也需要 1×1 卷积投影（带 `stride`）加 BN：`shortcut = nn.Sequential(nn.Conv2d(in, out, 1, "
               "stride=stride, bias=False), nn.BatchNorm2d(out))`", "When the stride or the channels change the shortcut "
               "needs a 1×1 projection (with the stride) and BN: shortcut = nn.Sequential(nn.Conv2d(in, out, 1, "
               "stride=stride, bias=False), nn.BatchNorm2d(out))")
NO_PROJECTION = Msg("输入输出形状相同（stride=1 且通道数不变）时捷径是恒等映射 nn.Identity()，没有参数",
                    "With the same shape in and out (stride=1, same channels) the shortcut is nn.Identity(), without "
                    "parameters")
BLOCK_ORDER = Msg("结构与规格不同：应为 relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))，先相加、最后 ReLU，BN 在相加之前",
                  "Order mismatch: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), add first and apply the final "
                  "ReLU last, with BN before the addition")
NO_FINAL_RELU = Msg("相加之后少了最后的 ReLU：应为 relu(bn2(conv2(…)) + shortcut(x))",
                    "Order mismatch: the final ReLU after the addition is missing, relu(bn2(conv2(...)) + shortcut(x))")
RELU_BEFORE_ADD = Msg("ReLU 放在了相加之前：应先加上 shortcut(x)，再做最后的 ReLU",
                      "Order mismatch: the ReLU comes before the addition; add shortcut(x) first, then apply the final ReLU")
BN_AFTER_ADD = Msg("BN 放在了相加之后：bn2 应作用在 conv2 的输出上，在加上 shortcut(x) 之前",
                   "Order mismatch: BN comes after the addition; bn2 acts on conv2's output, before shortcut(x) is added")
IN_PLACE = Msg("不要原地修改输入 x（例如恒等捷径上的 `+=`）：请写 `out = out + shortcut(x)`",
               "Don't modify the input in place (e.g. `+=` on the identity shortcut): write out = out + shortcut(x)")
BN_MODES = Msg("train 模式下 BN 应使用当前批次的统计量并更新运行统计量，eval 模式下使用运行统计量：请使用 nn.BatchNorm2d",
               "In train mode BN must use the batch's statistics and update its running statistics, in eval mode "
               "use the running statistics: use nn.BatchNorm2d")

ADAPTIVE = Msg("小尺寸输入请用 nn.AdaptiveAvgPool2d(1)，不要用固定大小的 nn.AvgPool2d(7)",
               "Use nn.AdaptiveAvgPool2d(1) for small inputs, not a fixed nn.AvgPool2d(7)")
EVAL_STATS = Msg("eval 模式下 BN 应使用运行统计量：不要设 track_running_stats=False，也不要在 `forward` 里强制 train 模式",
                 "In eval mode BN must use its running statistics: do not set track_running_stats=False or force "
                 "train mode in forward")
STAGES = Msg("各阶段的结构与规格不同：layers[0] = ResidualBlock(widths[0], widths[0], 1)，其后每个宽度一个 "
             "ResidualBlock(前一宽度, 宽度, 2)", "The stages differ from the spec: layers[0] = ResidualBlock(widths[0], "
             "widths[0], 1), then one ResidualBlock(previous width, width, 2) per width")


# -- helpers -------------------------------------------------------------------------------------------

def _randint(rng: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


# -- T6.1 conv_output_size / flatten_dim ---------------------------------------------------------------
def _layer_size(size: int, kernel: int, stride: int, padding: int, dilation: int, pool: bool = False) -> int | None:
    """The size a real layer gives (run on the meta device), or None where the layer refuses the input."""
    x = torch.empty(1, 1, size, 1, device="meta")
    try:
        if pool:
            out = F.max_pool2d(x, (kernel, 1), (stride, 1), (padding, 0), (dilation, 1))
        else:
            out = F.conv2d(x, torch.empty(1, 1, kernel, 1, device="meta"), None, (stride, 1), (padding, 0), (dilation, 1))
    except RuntimeError:
        return None
    return int(out.shape[2])


def _no_floor(size: int, kernel: int, stride: int, padding: int, dilation: int) -> float:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1


def _no_dilation(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_sizes(got: list[dict], cases: list[list[int]], expected: list[int | None], call: str) -> None:
    """Every case returns the layer's size as an int, or raises ValueError where the layer has none."""
    for outcome, case, want in zip(got, cases, expected):
        what = f"{call}({', '.join(map(str, case))})"
        if want is None:
            if outcome["error"] != "ValueError":
                raised = outcome["error"] or outcome["value"]
                checks.fail(Msg(f"{what} 应抛出 ValueError，实际得到 {raised!r}",
                                f"{what} should raise ValueError, got {raised!r}"), TOO_SMALL)
            continue
        if outcome["error"]:
            checks.fail(Msg(f"{what}：你的代码抛出了 {outcome['error']}", f"{what}: your code raised {outcome['error']}"))
        value = outcome["value"]
        hint = None
        if value is not None and value != want:  # a value can fit both mistakes: then both hints
            fits = [msg for msg, fit in ((NO_FLOOR, value in (_no_floor(*case), math.ceil(_no_floor(*case)))),
                                         (DILATION, value == _no_dilation(*case))) if fit]
            hint = fits[0] + fits[1] if len(fits) == 2 else fits[0] if fits else None
        checks.assert_true(value == want, Msg(f"{what}：得到 {value!r}（{outcome['type']}），应为 {want}",
                                              f"{what}: got {value!r} ({outcome['type']}), expected {want}"), hint)
    for outcome, case in zip(got, cases):  # right values (checked above), now the type
        what = f"{call}({', '.join(map(str, case))})"
        checks.assert_true(outcome["error"] is not None or outcome["type"] == "int", Msg(
            f"{what}：返回了 {outcome['type']}，应返回 int", f"{what}: returned a {outcome['type']}, expected an int"),
            INT_RESULT)


def _random_size_cases(rng: torch.Generator, n: int) -> list[list[int]]:
    cases = []
    for _ in range(n):
        kernel, stride, dilation = _randint(rng, 1, 7), _randint(rng, 1, 4), _randint(rng, 1, 3)
        padding = _randint(rng, 0, (kernel - 1) // 2)  # F.conv2d accepts any padding, but keep pools legal
        size = _randint(rng, 1, 40)
        cases.append([size, kernel, stride, padding, dilation])
    return cases


CONV3 = {"kind": "conv", "kernel": 3}
POOL2 = {"kind": "pool", "kernel": 2}


def _chain_size(hw: tuple[int, int], layers: list[dict], channels: int) -> int | None:
    """The flattened size real layers give on the meta device; None when some layer has no output."""
    h, w = hw
    for layer in layers:
        pool = layer["kind"] == "pool"
        args = (layer["kernel"], layer.get("stride", layer["kernel"] if pool else 1), layer.get("padding", 0),
                layer.get("dilation", 1))
        h, w = _layer_size(h, *args, pool=pool), _layer_size(w, *args, pool=pool)
        if h is None or w is None or h < 1 or w < 1:
            return None
    return channels * h * w


def _chain_mistakes(hw: tuple[int, int], layers: list[dict], channels: int) -> dict[Msg, int | None]:
    """The flattened sizes that common mistakes give for a chain."""
    return {
        EVERY_POOL: _chain_size(hw, [layer for layer in layers if layer["kind"] != "pool"], channels),
        POOL_STRIDE: _chain_size(hw, [{"stride": 1, **layer} for layer in layers], channels),
        HEIGHT_WIDTH: _chain_size((hw[0], hw[0]), layers, channels),
    }


def _check_chains(student, cases: list[dict]) -> None:
    got = student.probe("flatten_dims", cases=cases)
    for outcome, case in zip(got, cases):
        hw, layers, channels = tuple(case["input_hw"]), case["layers"], case["channels"]
        want = _chain_size(hw, layers, channels)
        what = f"flatten_dim({hw}, {layers}, {channels})"
        if want is None:
            checks.assert_true(outcome["error"] == "ValueError", Msg(
                f"{what} 应抛出 ValueError，实际得到 {outcome['error'] or outcome['value']!r}",
                f"{what} should raise ValueError, got {outcome['error'] or outcome['value']!r}"), TOO_SMALL)
            continue
        if outcome["error"]:
            checks.fail(Msg(f"{what}：你的代码抛出了 {outcome['error']}", f"{what}: your code raised {outcome['error']}"))
        value = outcome["value"]
        hint = next((msg for msg, wrong in _chain_mistakes(hw, layers, channels).items()
                     if value is not None and wrong == value != want), None)
        checks.assert_true(value == want, Msg(f"{what}：得到 {value!r}，应为 {want}", f"{what}: got {value!r}, expected {want}"),
                           hint)
        checks.assert_true(outcome["type"] == "int", Msg(f"{what}：返回了 {outcome['type']}，应返回 int",
                                                         f"{what}: returned a {outcome['type']}, expected an int"),
                           INT_RESULT)


@graded(task="conv_output_size", kind="shape", points=1, visibility="public")
def test_conv_output_size_known_values(student):
    """Textbook cases: 28 with a 5×5 kernel gives 24; padding 1 keeps 32; stride 2 rounds 7 down to 3; a dilated 3×3 on 9 gives 5."""
    cases = [[28, 5, 1, 0, 1], [32, 3, 1, 1, 1], [7, 3, 2, 0, 1], [28, 2, 2, 0, 1], [9, 3, 1, 0, 2], [224, 7, 2, 3, 1]]
    got = student.probe("conv_sizes", cases=cases)
    _check_sizes(got, cases, [24, 32, 3, 14, 5, 112], "conv_output_size")


@graded(task="conv_output_size", kind="accuracy", points=2, visibility="public")
def test_conv_output_size_matches_layers(student, spec, rng):
    """On random sizes, kernels, strides, paddings and dilations the result equals what F.conv2d and F.max_pool2d produce."""
    cases = [c for c in _random_size_cases(rng, spec.param("size_cases_public")) if _layer_size(*c) is not None]
    got = student.probe("conv_sizes", cases=cases)
    _check_sizes(got, cases, [_layer_size(*c) for c in cases], "conv_output_size")


@graded(task="conv_output_size", kind="accuracy", points=1, visibility="public")
def test_flatten_dim_lenet_chains(student):
    """conv3-pool2-conv3-pool2 with 64 channels flattens 28×28 to 1600; LeNet's conv5-pool2 chain flattens 32×32 to 400."""
    lenet = [{"kind": "conv", "kernel": 5}, POOL2] * 2
    _check_chains(student, [
        {"input_hw": [28, 28], "layers": [CONV3, POOL2, CONV3, POOL2], "channels": 64},
        {"input_hw": [32, 32], "layers": lenet, "channels": 16},
        {"input_hw": [28, 28], "layers": lenet, "channels": 16},
    ])


@graded(task="conv_output_size", kind="accuracy", points=1, visibility="hidden")
def test_conv_output_size_edge_cases(student, spec, rng):
    """Odd sizes with stride 2, dilation 2 and 3, and kernels larger than the padded input (ValueError)."""
    cases = [[size, 3, 2, p, 1] for size in (5, 7, 9, 11) for p in (0, 1)]
    cases += [[size, k, 1, 0, 2] for size in (9, 10) for k in (3, 5)] + [[17, 3, 2, 1, 3]]
    cases += [[4, 5, 1, 0, 1], [5, 3, 1, 0, 3], [2, 7, 2, 2, 1], [3, 4, 2, 0, 1]]
    cases += [c for c in _random_size_cases(rng, spec.param("size_cases_hidden"))]
    expected = [_layer_size(*c) for c in cases]
    got = student.probe("conv_sizes", cases=cases)
    _check_sizes(got, cases, expected, "conv_output_size")


@graded(task="conv_output_size", kind="accuracy", points=1, visibility="hidden")
def test_flatten_dim_random_chains(student, rng):
    """Random chains on non-square inputs with default pool strides, paddings and dilations match real layers."""
    cases = []
    for _ in range(40):
        layers = []
        for _ in range(_randint(rng, 1, 5)):
            kind = "pool" if bool(torch.rand(1, generator=rng) < 0.4) else "conv"
            layer = {"kind": kind, "kernel": _randint(rng, 1, 5)}
            if bool(torch.rand(1, generator=rng) < 0.5):
                layer["stride"] = _randint(rng, 1, 3)
            if bool(torch.rand(1, generator=rng) < 0.4):
                layer["padding"] = _randint(rng, 0, (layer["kernel"] - 1) // 2)
            if kind == "conv" and bool(torch.rand(1, generator=rng) < 0.3):
                layer["dilation"] = 2
            layers.append(layer)
        cases.append({"input_hw": [_randint(rng, 6, 40), _randint(rng, 6, 40)], "layers": layers,
                      "channels": _randint(rng, 1, 64)})
    cases.append({"input_hw": [10, 12], "layers": [{"kind": "conv", "kernel": 5}, POOL2, {"kind": "conv", "kernel": 5}],
                  "channels": 8})  # 10 → 6 → 3 → nothing: ValueError
    _check_chains(student, cases)


# -- T6.2 conv2d_im2col ----------------------------------------------------------------------------------
def _hw_swapped(x, weight, bias, stride, padding, dilation=1) -> torch.Tensor:
    """The output read as (W_out, H_out) row-major, then transposed: the L-ordering mistake."""
    right = F.conv2d(x, weight, bias, stride, padding, dilation)
    n, o, h, w = right.shape
    return right.reshape(n, o, h * w).reshape(n, o, w, h).transpose(2, 3)


def _bias_last_axis(x, weight, bias, stride, padding, dilation=1) -> torch.Tensor | None:
    """Bias broadcast along the width instead of the channels (only possible when O == W_out)."""
    plain = F.conv2d(x, weight, None, stride, padding, dilation)
    return plain + bias if bias is not None and plain.shape[3] == bias.shape[0] else None


def _conv_case(rng, n, c, h, w, o, kh, kw, bias=True, dtype=torch.float32):
    x = torch.randn(n, c, h, w, generator=rng, dtype=dtype)
    weight = torch.randn(o, c, kh, kw, generator=rng, dtype=dtype) / math.sqrt(c * kh * kw)
    b = torch.randn(o, generator=rng, dtype=dtype) if bias else None
    return x, weight, b


def _check_conv(student, x, weight, bias, stride, padding, dilation=1, out=None) -> None:
    call = (f"conv2d_im2col(x{list(x.shape)}, weight{list(weight.shape)}, "
            f"{'bias' if bias is not None else 'None'}, stride={stride}, padding={padding}, dilation={dilation})")
    if out is None:
        out = student.conv2d_im2col(x, weight, bias, stride, padding, dilation)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation)
    mistakes = {ROW_MAJOR: _hw_swapped(x, weight, bias, stride, padding, dilation)}
    wrong_bias = _bias_last_axis(x, weight, bias, stride, padding, dilation)
    if wrong_bias is not None:
        mistakes[BIAS_AXIS] = wrong_bias
    swapped = isinstance(out, torch.Tensor) and list(out.shape) == [*expected.shape[:2], *expected.shape[:1:-1]] \
        and expected.shape[2] != expected.shape[3]
    checks.assert_close(out, expected, call, hint=ROW_MAJOR if swapped else None, mistakes=mistakes)


@graded(task="conv2d_im2col", kind="shape", points=1, visibility="public")
def test_im2col_shape_and_dtype(student, rng):
    """(2, 3, 9, 7) with a (4, 3, 3, 2) kernel, padding 1 gives (2, 4, 9, 8); float64 stays float64."""
    x, weight, bias = _conv_case(rng, 2, 3, 9, 7, 4, 3, 2)
    out = student.conv2d_im2col(x, weight, bias, 1, 1)
    checks.assert_dtype(out, torch.float32, "conv2d_im2col(x[2,3,9,7], weight[4,3,3,2], bias, 1, 1)")
    checks.assert_shape(out, (2, 4, 9, 8), "conv2d_im2col(x[2,3,9,7], weight[4,3,3,2], bias, 1, 1)")
    x, weight, bias = _conv_case(rng, 2, 3, 8, 8, 5, 3, 3, dtype=torch.float64)
    out = student.conv2d_im2col(x, weight, bias, 2, 0)
    checks.assert_dtype(out, torch.float64, "conv2d_im2col(x.double(), weight.double(), bias.double(), 2, 0)",
                        hint=KEEP_DTYPE)
    checks.assert_shape(out, (2, 5, 3, 3), "conv2d_im2col(x[2,3,8,8], weight[5,3,3,3], bias, 2, 0)")


@graded(task="conv2d_im2col", kind="accuracy", points=2, visibility="public")
def test_im2col_matches_conv2d(student, rng):
    """Values equal F.conv2d for non-square inputs, stride 1 and 2, padding 0 and 1, with and without bias."""
    for (n, c, h, w, o, kh, kw), stride, padding, bias in (
            ((2, 3, 10, 7, 5, 3, 3), 1, 0, True),    # W_out = 5 = O: a bias on the wrong axis still runs
            ((3, 4, 9, 12, 6, 3, 2), 2, 1, True),
            ((2, 2, 8, 11, 3, 1, 3), 1, 1, False)):
        x, weight, b = _conv_case(rng, n, c, h, w, o, kh, kw, bias)
        _check_conv(student, x, weight, b, stride, padding)


@graded(task="conv2d_im2col", kind="gradient", points=2, visibility="public")
def test_im2col_gradcheck(student, rng):
    """Gradients with respect to x, weight and bias agree with finite differences (float64, stride 2, padding 1)."""
    x, weight, bias = _conv_case(rng, 2, 2, 6, 5, 3, 3, 3, dtype=torch.float64)
    checks.assert_gradcheck(student, "conv2d_im2col", (x, weight, bias, 2, 1), wrt=(0, 1, 2), generator=rng,
                            hint=KEEP_DTYPE)


@graded(task="conv2d_im2col", kind="accuracy", points=2, visibility="hidden")
def test_im2col_edge_cases(student, rng):
    """Batch 1, one input channel, odd sizes with stride 2 and padding 1, dilation 2, and an NHWC (non-contiguous) input."""
    for (n, c, h, w, o, kh, kw), stride, padding, dilation in (
            ((1, 3, 7, 9, 4, 3, 3), 1, 0, 1),
            ((2, 1, 11, 8, 5, 3, 3), 2, 1, 1),
            ((2, 3, 13, 10, 4, 3, 2), 1, 2, 2),
            ((3, 2, 9, 9, 2, 5, 5), 2, 2, 2)):
        x, weight, b = _conv_case(rng, n, c, h, w, o, kh, kw)
        out = student.conv2d_im2col(x, weight, b, stride, padding, dilation)
        _check_conv(student, x, weight, b, stride, padding, dilation, out=out)
    x, weight, b = _conv_case(rng, 2, 3, 9, 6, 4, 3, 3)
    nhwc = x.permute(0, 3, 2, 1).contiguous()  # (N, W, H, C); transposing dims 1 and 3 gives x back, strided
    res = student.probe("call_transposed", name="conv2d_im2col", args=[nhwc, weight, b, 1, 1], transpose={"0": [1, 3]})
    _check_conv(student, x, weight, b, 1, 1, out=res)


@graded(task="conv2d_im2col", kind="gradient", points=1, visibility="hidden")
def test_im2col_gradcheck_dilation_no_bias(student, rng):
    """Gradcheck with dilation 2, padding 2 and no bias, on a non-square kernel."""
    x, weight, _ = _conv_case(rng, 1, 2, 7, 6, 2, 2, 3, bias=False, dtype=torch.float64)
    checks.assert_gradcheck(student, "conv2d_im2col", (x, weight, None, 1, 2, 2), wrt=(0, 1), generator=rng)


@graded(task="conv2d_im2col", kind="shape", points=1, visibility="hidden")
def test_im2col_meta_device(student):
    """On the meta device the result is on meta with the right shape (no tensor made on the CPU)."""
    x = torch.empty(2, 3, 10, 9, device="meta")
    out = student.conv2d_im2col(x, torch.empty(6, 3, 3, 3, device="meta"), torch.empty(6, device="meta"), 2, 1)
    what = "conv2d_im2col(x.to('meta'), weight.to('meta'), bias.to('meta'), 2, 1)"
    checks.assert_shape(out, (2, 6, 5, 5), what)
    checks.assert_device(out, "meta", what, hint=META_DEVICE)
    what = "conv2d_im2col(x.to('meta'), weight.to('meta'), None, 1, 0, 2)"
    try:
        out = student.conv2d_im2col(x, torch.empty(6, 3, 3, 3, device="meta"), None, 1, 0, 2)
    except SubmissionProblem as problem:
        if problem.status != Status.ERROR:  # not implemented, timed out, crashed: reported as such
            raise
        checks.fail(Msg(f"{what}：{problem.message.zh}", f"{what}: {problem.message.en}"), META_DEVICE)
    checks.assert_shape(out, (2, 6, 6, 5), what)
    checks.assert_device(out, "meta", what, hint=META_DEVICE)


@graded(task="conv2d_im2col", kind="speed", points=1, visibility="hidden")
def test_im2col_speed(student, reference_worker, spec, rng):
    """A convolution of a (2, 4, 24, 24) batch (576 output positions) costs at most a few times the reference's unfold + matmul."""
    p = spec.param("im2col_speed")
    args = [{"randn": p["x"]}, {"randn": p["weight"], "scale": 0.1}, {"randn": [p["weight"][0]]}, p["stride"],
            p["padding"]]
    result = compare_generated_speed(student, reference_worker, "conv2d_im2col", args, rng,
                                     rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                     factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "conv2d_im2col", hint=UNFOLD)


# -- digits --------------------------------------------------------------------------------------------


def _fit_digits(student, spec, rng, cls: str, fit: str, kwargs: dict) -> tuple[dict, torch.Tensor]:
    """Train through the fit_digits probe on a split made here; the held-out labels stay here."""
    x, y = digits(DIGITS, spec.param("digits_sha256"))
    order = torch.randperm(len(y), generator=rng)
    train, held_out = order[:spec.param("digits_train")], order[spec.param("digits_train"):]
    p = dict(spec.param(fit))
    p.pop("widths", None)
    res = student.probe("fit_digits", cls=cls, kwargs=kwargs, x_train=x[train], y_train=y[train], x_eval=x[held_out],
                        seed=seed_from(rng), **p)
    checks.assert_true(res.get("n_params") != 0, Msg(f"{cls} 没有任何已注册的参数，无法训练",
                                                      f"{cls} has no registered parameters, so it cannot be trained"),
                       LAYER_NAMES)
    return res, y[held_out]


def _assert_accuracy(res: dict, labels: torch.Tensor, threshold: float, what: str, hint: Msg | None = None) -> None:
    logits = res["logits"]
    checks.assert_shape(logits, (len(labels), 10), f"{what}: model(x_eval)")
    checks.assert_finite(logits, f"{what}: model(x_eval)")
    # Every row non-negative and summing to 1: probabilities, which trained logits never are.
    probabilities = bool((logits >= 0).all()) and bool(torch.allclose(logits.double().sum(1),
                                                                      torch.ones(len(labels), dtype=torch.float64),
                                                                      atol=1e-3))
    checks.assert_true(not probabilities, Msg(f"{what}：输出的每一行都非负且和为 1，是概率而不是 logits",
                                              f"{what}: every output row is non-negative and sums to 1: probabilities, "
                                              "not logits"), LOGITS)
    acc = float((logits.argmax(1) == labels).float().mean())
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：训练后在留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy after training is {acc:.3f}, at least {threshold:.2f} is required"),
        curve=res.get("losses"), hint=hint)


# -- state dicts made here, and the forward passes of the spec --------------------------------------------
def _bn_shapes(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c], f"{prefix}.running_var": [c],
            f"{prefix}.num_batches_tracked": []}


def _block_shapes(cin: int, cout: int, stride: int, prefix: str = "") -> dict[str, list[int]]:
    shapes = {f"{prefix}conv1.weight": [cout, cin, 3, 3], **_bn_shapes(f"{prefix}bn1", cout),
              f"{prefix}conv2.weight": [cout, cout, 3, 3], **_bn_shapes(f"{prefix}bn2", cout)}
    if stride != 1 or cin != cout:
        shapes.update({f"{prefix}shortcut.0.weight": [cout, cin, 1, 1], **_bn_shapes(f"{prefix}shortcut.1", cout)})
    return shapes


def _lenet_shapes(cin: int, classes: int, size: int) -> dict[str, list[int]]:
    side = ((size - 4) // 2 - 4) // 2
    return {"conv1.weight": [6, cin, 5, 5], "conv1.bias": [6], "conv2.weight": [16, 6, 5, 5], "conv2.bias": [16],
            "fc1.weight": [120, 16 * side * side], "fc1.bias": [120], "fc2.weight": [84, 120], "fc2.bias": [84],
            "fc3.weight": [classes, 84], "fc3.bias": [classes]}


def _resnet_shapes(cin: int, classes: int, widths: list[int]) -> dict[str, list[int]]:
    shapes = {"stem.0.weight": [widths[0], cin, 3, 3], **_bn_shapes("stem.1", widths[0])}
    previous = widths[0]
    for i, width in enumerate(widths):
        shapes.update(_block_shapes(previous, width, 1 if i == 0 else 2, f"layers.{i}."))
        previous = width
    return {**shapes, "fc.weight": [classes, widths[-1]], "fc.bias": [classes]}


def _is_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def _params_of(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: v for k, v in shapes.items() if not _is_buffer(k)}


def _make_state(rng: torch.Generator, shapes: dict[str, list[int]], dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Values for every entry: scaled weights, BN affine near (1, 0), positive running variances."""
    state = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            state[name] = torch.tensor(3)
        elif leaf == "running_var":
            state[name] = torch.rand(shape, generator=rng, dtype=dtype) + 0.5
        elif leaf == "running_mean":
            state[name] = torch.randn(shape, generator=rng, dtype=dtype) * 0.3
        elif len(shape) == 1 and ("bn" in name or name.startswith("stem.1") or "shortcut.1" in name):
            base = 1.0 if leaf == "weight" else 0.0
            state[name] = base + torch.randn(shape, generator=rng, dtype=dtype) * 0.2
        elif len(shape) == 1:
            state[name] = torch.randn(shape, generator=rng, dtype=dtype) * 0.1
        else:
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape, generator=rng, dtype=dtype) * math.sqrt(2.0 / fan_in)
    return state


def _bn(x: torch.Tensor, s: dict, prefix: str, train: bool) -> torch.Tensor:
    """BatchNorm2d by the book; in train mode it updates ``s``'s running statistics like nn.BatchNorm2d."""
    return F.batch_norm(x, s[f"{prefix}.running_mean"], s[f"{prefix}.running_var"], s[f"{prefix}.weight"],
                        s[f"{prefix}.bias"], training=train, momentum=0.1, eps=1e-5)


def _block_forward(x: torch.Tensor, s: dict, stride: int, train: bool, prefix: str = "",
                   variant: str | None = None) -> torch.Tensor:
    """The spec's block, or a common mistake (``variant``) for the diagnosis."""
    out = F.relu(_bn(F.conv2d(x, s[f"{prefix}conv1.weight"], None, stride, 1), s, f"{prefix}bn1", train))
    out = F.conv2d(out, s[f"{prefix}conv2.weight"], None, 1, 1)
    if f"{prefix}shortcut.0.weight" in s:
        shortcut = _bn(F.conv2d(x, s[f"{prefix}shortcut.0.weight"], None, stride), s, f"{prefix}shortcut.1", train)
    else:
        shortcut = x
    if variant == "bn_after_add":
        return F.relu(_bn(out + shortcut, s, f"{prefix}bn2", train))
    out = _bn(out, s, f"{prefix}bn2", train)
    if variant == "no_final_relu":
        return out + shortcut
    if variant == "relu_before_add":
        return F.relu(out) + shortcut
    return F.relu(out + shortcut)


def _lenet_forward(x: torch.Tensor, s: dict, variant: str | None = None) -> torch.Tensor:
    pool = F.avg_pool2d if variant == "avg_pool" else F.max_pool2d
    if variant == "pool_before_relu":
        h = F.relu(pool(F.conv2d(x, s["conv1.weight"], s["conv1.bias"]), 2))
        h = F.relu(pool(F.conv2d(h, s["conv2.weight"], s["conv2.bias"]), 2))
    else:
        h = pool(F.relu(F.conv2d(x, s["conv1.weight"], s["conv1.bias"])), 2)
        h = pool(F.relu(F.conv2d(h, s["conv2.weight"], s["conv2.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), s["fc1.weight"], s["fc1.bias"]))
    h = F.relu(F.linear(h, s["fc2.weight"], s["fc2.bias"]))
    out = F.linear(h, s["fc3.weight"], s["fc3.bias"])
    if variant == "softmax":
        return out.softmax(1)
    return F.relu(out) if variant == "relu_last" else out


def _resnet_forward(x: torch.Tensor, s: dict, widths: list[int], train: bool, softmax: bool = False) -> torch.Tensor:
    h = F.relu(_bn(F.conv2d(x, s["stem.0.weight"], None, 1, 1), s, "stem.1", train))
    for i in range(len(widths)):
        h = _block_forward(h, s, 1 if i == 0 else 2, train, f"layers.{i}.")
    out = F.linear(h.mean((2, 3)), s["fc.weight"], s["fc.bias"])
    return out.softmax(1) if softmax else out


def _check_structure(res: dict, shapes: dict[str, list[int]], what: str, hint: Msg | None = None) -> None:
    """The registered parameters and the state_dict keys are the spec's."""
    checks.fail_on_probe_error(res, what, hint)
    params = _params_of(shapes)
    got = res["param_shapes"]
    missing = sorted(set(params) - set(got))
    extra = sorted(set(got) - set(params))
    wrong = sorted(k for k in set(params) & set(got) if got[k] != params[k])
    if missing or extra or wrong:
        details = "; ".join(part for part in (
            f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
            "shapes " + ", ".join(f"{k} {got[k]} (expected {params[k]})" for k in wrong) if wrong else "") if part)
        checks.fail(Msg(f"{what}：参数与规格不同（{details}）", f"{what}: the parameters differ from the spec ({details})"),
                    hint or LAYER_NAMES)
    n_expected = sum(math.prod(v) for v in params.values())
    checks.assert_equal(res["n_params"], n_expected, f"sum(p.numel() for p in {what}.parameters())", hint=hint or LAYER_NAMES)
    checks.assert_equal(sorted(res["state_keys"]), sorted(shapes), f"sorted({what}.state_dict().keys())",
                        hint=hint or LAYER_NAMES)


def _check_grads(res: dict, what: str) -> None:
    out = res["outs"][-1]
    checks.assert_attached(out, what, hint=DETACHED)
    checks.fail_on_probe_error(res, what)
    for name, grad in res["grads"].items():
        checks.assert_true(grad is not None and bool(grad.abs().sum() > 0), Msg(
            f"{what}：参数 {name} 没有得到（非零）梯度", f"{what}: parameter {name} received no (non-zero) gradient"), UNUSED)


def _shape_hint(out: object, batch: int, classes: int, error: str | None) -> Msg | None:
    if error and ("cannot be multiplied" in error or "shape" in error):
        return FLATTEN_SIZE
    if isinstance(out, torch.Tensor) and list(out.shape) == [classes]:
        return SQUEEZE
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] != batch:
        return BATCH_ROWS
    return None


def _run_shape(student, cls: str, what: str, x: torch.Tensor, classes: int, **kwargs) -> dict:
    """module_run in eval mode; an error or a wrong output shape fails with the hint it points to."""
    res = student.probe("module_run", cls=cls, x=x, **kwargs)
    out = (res.get("outs") or [None])[0]
    hint = _shape_hint(out, x.shape[0], classes, res.get("error"))
    checks.fail_on_probe_error(res, what, hint)
    checks.assert_shape(out, (x.shape[0], classes), what, hint=hint)
    return res


# -- T6.3 LeNet -----------------------------------------------------------------------------------------
@graded(task="LeNet", kind="shape", points=2, visibility="public")
def test_lenet_output_shapes(student, rng):
    """LeNet(input_size=28) and LeNet(input_size=32) give (B, 10) for batches 1, 50 and 64."""
    for size, batch in ((28, 50), (28, 1), (32, 64), (32, 1)):  # 50·256 = 32·400: view(-1, 400) runs silently
        x = torch.randn(batch, 1, size, size, generator=rng)
        _run_shape(student, "LeNet", f"LeNet(input_size={size})(x[{batch}, 1, {size}, {size}])", x, 10,
                   args=[], kwargs={"input_size": size}, seed=seed_from(rng))


@graded(task="LeNet", kind="gradient", points=2, visibility="public")
def test_lenet_parameters_and_gradients(student, rng):
    """LeNet(1, 10, 28) has exactly conv1, conv2, fc1 (256 → 120), fc2, fc3, and every parameter gets a gradient."""
    x = torch.randn(6, 1, 28, 28, generator=rng)
    res = student.probe("module_run", cls="LeNet", args=[1, 10, 28], x=x, modes=["train"], seed=seed_from(rng),
                        grad_output=torch.randn(6, 10, generator=rng))
    _check_structure(res, _lenet_shapes(1, 10, 28), "LeNet(1, 10, 28)",
                     hint=FLATTEN_SIZE if res.get("param_shapes", {}).get("fc1.weight") == [120, 400] else None)
    _check_grads(res, "LeNet(1, 10, 28)(x)")


@graded(task="LeNet", kind="accuracy", points=2, visibility="public")
def test_lenet_learns_digits(student, spec, rng):
    """Trained for 8 epochs on digits resized to 28×28, LeNet classifies held-out digits."""
    res, labels = _fit_digits(student, spec, rng, "LeNet", "lenet_fit_public", {"input_size": 28})
    _assert_accuracy(res, labels, spec.param("lenet_accuracy_public"), "LeNet(input_size=28)")


@graded(task="LeNet", kind="accuracy", points=2, visibility="hidden")
def test_lenet_forward_values(student, rng):
    """With a given state_dict the eval output equals conv-ReLU-maxpool ×2, fc-ReLU ×2, fc; samples are independent."""
    for cin, classes, size, batch in ((1, 10, 28, 5), (3, 7, 30, 4)):
        state = _make_state(rng, _lenet_shapes(cin, classes, size))
        x = torch.rand(batch, cin, size, size, generator=rng, dtype=torch.float64)
        perm = torch.randperm(batch, generator=rng)
        what = f"LeNet({cin}, {classes}, {size}).double().eval()(x)"
        res = student.probe("module_run", cls="LeNet", args=[cin, classes, size], x=x, state=state,
                            dtype=torch.float64, more=[x[perm], x[:1]])
        checks.fail_on_probe_error(res, what, LAYER_NAMES if res.get("load_error") else None)
        expected = _lenet_forward(x, state)
        checks.assert_close(res["outs"][0], expected, what, mistakes={
            LOGITS: _lenet_forward(x, state, "softmax"), MAX_POOL: _lenet_forward(x, state, "avg_pool"),
            Msg("fc3 后面不要 ReLU", "No ReLU after fc3") + LOGITS: _lenet_forward(x, state, "relu_last")})
        checks.assert_close(res["more_outs"][0], expected[perm], f"{what[:-3]}(x[perm])", hint=INDEPENDENT)
        checks.assert_close(res["more_outs"][1], expected[:1], f"{what[:-3]}(x[:1])",
                            hint=SQUEEZE if list(res["more_outs"][1].shape) == [classes] else INDEPENDENT)


@graded(task="LeNet", kind="shape", points=1, visibility="hidden")
def test_lenet_sizes_channels_devices(student, rng):
    """Three channels, input sizes 30 and 36, batch 288, float64 and the meta device."""
    for cin, classes, size, batch in ((3, 10, 30, 2), (3, 5, 36, 3), (1, 10, 28, 288)):
        x = torch.randn(batch, cin, size, size, generator=rng)
        _run_shape(student, "LeNet", f"LeNet({cin}, {classes}, {size})(x[{batch}, {cin}, {size}, {size}])", x, classes,
                   args=[cin, classes, size], seed=seed_from(rng))
    x64 = torch.randn(2, 1, 32, 32, generator=rng, dtype=torch.float64)
    res = _run_shape(student, "LeNet", "LeNet(input_size=32).double()(x)", x64, 10, args=[], kwargs={"input_size": 32},
                     dtype=torch.float64)
    checks.assert_dtype(res["outs"][0], torch.float64, "LeNet(input_size=32).double()(x)", hint=KEEP_DTYPE)
    meta = torch.empty(4, 1, 28, 28, device="meta")
    res = student.probe("module_run", cls="LeNet", args=[], x=meta, device="meta")
    checks.fail_on_probe_error(res, "LeNet().to('meta')(x)", META_DEVICE)
    checks.assert_shape(res["outs"][0], (4, 10), "LeNet().to('meta')(x)")
    checks.assert_device(res["outs"][0], "meta", "LeNet().to('meta')(x)", hint=META_DEVICE)


@graded(task="LeNet", kind="accuracy", points=1, visibility="hidden")
def test_lenet_learns_digits_three_channels(student, spec, rng):
    """LeNet(3, 10, 32) learns digits resized to 32×32 and repeated over three channels."""
    res, labels = _fit_digits(student, spec, rng, "LeNet", "lenet_fit_hidden",
                              {"in_channels": 3, "num_classes": 10, "input_size": 32})
    _assert_accuracy(res, labels, spec.param("lenet_accuracy_hidden"), "LeNet(3, 10, 32)")


# -- T6.4 ResidualBlock --------------------------------------------------------------------------------------
def _block_structure_hint(res: dict, cin: int, cout: int, stride: int) -> Msg | None:
    has_projection = any(k.startswith("shortcut.") for k in res.get("param_shapes", {}))
    needs_projection = stride != 1 or cin != cout
    if needs_projection and not has_projection:
        return SHORTCUT
    if has_projection and not needs_projection:
        return NO_PROJECTION
    return None


@graded(task="ResidualBlock", kind="shape", points=2, visibility="public")
def test_block_output_shapes_and_parameters(student, rng):
    """Odd, non-square inputs give (B, out, ⌈H/s⌉, ⌈W/s⌉); the parameters are the spec's (a projection only when needed)."""
    for cin, cout, stride, h, w in ((8, 8, 1, 9, 7), (4, 8, 2, 9, 7), (6, 10, 1, 5, 6)):
        what = f"ResidualBlock({cin}, {cout}, stride={stride})"
        x = torch.randn(2, cin, h, w, generator=rng)
        res = student.probe("module_run", cls="ResidualBlock", args=[cin, cout, stride], x=x, modes=["train"],
                            seed=seed_from(rng))
        hint = _block_structure_hint(res, cin, cout, stride)
        checks.fail_on_probe_error(res, f"{what}(x[2, {cin}, {h}, {w}])", hint)
        checks.assert_shape(res["outs"][0], (2, cout, -(-h // stride), -(-w // stride)), f"{what}(x[2, {cin}, {h}, {w}])",
                            hint=hint)
        _check_structure(res, _block_shapes(cin, cout, stride), what, hint=hint)


@graded(task="ResidualBlock", kind="gradient", points=2, visibility="public")
def test_block_identity_path_and_gradients(student, rng):
    """With conv weights zeroed, in eval mode, the block is relu(x) and the gradient reaches x through the shortcut;
    in train mode every parameter of a projecting block gets a gradient."""
    x = torch.randn(3, 6, 5, 5, generator=rng)
    g = torch.randn(3, 6, 5, 5, generator=rng)
    what = "ResidualBlock(6, 6, zero_convs=True).eval()"
    res = student.probe("module_run", cls="ResidualBlock", args=[6, 6, 1], x=x, zero_convs=True, grad_output=g,
                        input_grad=True, seed=seed_from(rng))
    checks.fail_on_probe_error(res, what, IN_PLACE if "in-place" in (res.get("error") or "") else None)
    checks.assert_close(res["outs"][0], F.relu(x), f"{what}(x)", hint=BLOCK_ORDER)
    checks.assert_grad(res["x_grad"], g * (x > 0), f"x, {what}", hint=Msg(
        "梯度应经过捷径传到输入：输出应为 relu(… + shortcut(x))", "The gradient must reach the input through the shortcut: "
        "the output is relu(... + shortcut(x))"))
    x = torch.randn(4, 4, 6, 6, generator=rng)
    res = student.probe("module_run", cls="ResidualBlock", args=[4, 8, 2], x=x, modes=["train"], seed=seed_from(rng),
                        grad_output=torch.randn(4, 8, 3, 3, generator=rng))
    checks.fail_on_probe_error(res, "ResidualBlock(4, 8, stride=2)", _block_structure_hint(res, 4, 8, 2))
    _check_grads(res, "ResidualBlock(4, 8, stride=2)(x)")


def _check_block_values(student, rng, cin: int, cout: int, stride: int, batch: int = 4) -> None:
    """train-mode output, updated running statistics, then eval-mode output, against the spec computed here."""
    shapes = _block_shapes(cin, cout, stride)
    state = _make_state(rng, shapes)
    x = torch.randn(batch, cin, 7, 6, generator=rng, dtype=torch.float64)
    what = f"ResidualBlock({cin}, {cout}, stride={stride}).double()"
    res = student.probe("module_run", cls="ResidualBlock", args=[cin, cout, stride], x=x, state=state,
                        dtype=torch.float64, modes=["train", "eval"], return_state=True)
    hint = _block_structure_hint(res, cin, cout, stride)
    checks.fail_on_probe_error(res, what, hint or (LAYER_NAMES if res.get("load_error") else None))
    s = {k: v.clone() for k, v in state.items()}
    variants = {}
    for variant in ("no_final_relu", "relu_before_add", "bn_after_add"):
        copy = {k: v.clone() for k, v in state.items()}
        variants[variant] = _block_forward(x, copy, stride, True, variant=variant)
    expected_train = _block_forward(x, s, stride, True)  # updates s's running statistics
    checks.assert_close(res["outs"][0], expected_train, f"{what}.train()(x)", hint=hint, mistakes={
        NO_FINAL_RELU: variants["no_final_relu"], RELU_BEFORE_ADD: variants["relu_before_add"],
        BN_AFTER_ADD: variants["bn_after_add"],
        BN_MODES: _block_forward(x, {k: v.clone() for k, v in state.items()}, stride, False)})
    for key in [k for k in s if k.endswith("running_mean") or k.endswith("running_var")]:
        checks.assert_close(res["state"][key], s[key], f"{what}.train()(x); state_dict()['{key}']",
                            hint=BN_MODES)
    checks.assert_close(res["outs"][1], _block_forward(x, s, stride, False), f"{what}.train()(x); {what}.eval()(x)",
                        hint=BN_MODES)


@graded(task="ResidualBlock", kind="accuracy", points=2, visibility="public")
def test_block_forward_values_train_and_eval(student, rng):
    """With a given state_dict, train mode (batch statistics, running stats updated) and eval mode match the spec."""
    _check_block_values(student, rng, 5, 5, 1)
    _check_block_values(student, rng, 3, 6, 2)


@graded(task="ResidualBlock", kind="accuracy", points=1, visibility="hidden")
def test_block_stride_two_same_channels(student, rng):
    """stride=2 with in == out still needs the projection shortcut, in values too."""
    _check_block_values(student, rng, 4, 4, 2)
    _check_block_values(student, rng, 6, 3, 1, batch=3)


@graded(task="ResidualBlock", kind="shape", points=1, visibility="hidden")
def test_block_batch_one_float64_meta(student, rng):
    """Batch 1 in eval mode, float64 and the meta device."""
    x = torch.randn(1, 4, 7, 7, generator=rng, dtype=torch.float64)
    res = student.probe("module_run", cls="ResidualBlock", args=[4, 6, 2], x=x, dtype=torch.float64, seed=seed_from(rng))
    checks.fail_on_probe_error(res, "ResidualBlock(4, 6, 2).double().eval()(x[1, 4, 7, 7])", _block_structure_hint(res, 4, 6, 2))
    checks.assert_shape(res["outs"][0], (1, 6, 4, 4), "ResidualBlock(4, 6, 2).double().eval()(x[1, 4, 7, 7])")
    checks.assert_dtype(res["outs"][0], torch.float64, "ResidualBlock(4, 6, 2).double()(x)", hint=KEEP_DTYPE)
    meta = torch.empty(2, 4, 8, 8, device="meta")
    for cin, cout, stride, shape in ((4, 4, 1, (2, 4, 8, 8)), (4, 8, 2, (2, 8, 4, 4))):
        what = f"ResidualBlock({cin}, {cout}, {stride}).to('meta')(x)"
        res = student.probe("module_run", cls="ResidualBlock", args=[cin, cout, stride], x=meta, device="meta",
                            modes=["train"])
        checks.fail_on_probe_error(res, what, _block_structure_hint(res, cin, cout, stride) or META_DEVICE)
        checks.assert_shape(res["outs"][0], shape, what)
        checks.assert_device(res["outs"][0], "meta", what, hint=META_DEVICE)


@graded(task="ResidualBlock", kind="accuracy", points=1, visibility="hidden")
def test_block_leaves_input_unchanged(student, rng):
    """The caller's x is unchanged after a forward pass, with an identity and with a projection shortcut."""
    for cin, cout, stride in ((5, 5, 1), (5, 7, 1)):
        for mode in ("eval", "train"):
            x = torch.randn(2, cin, 6, 6, generator=rng)
            res = student.probe("module_run", cls="ResidualBlock", args=[cin, cout, stride], x=x, modes=[mode],
                                seed=seed_from(rng))
            checks.fail_on_probe_error(res, f"ResidualBlock({cin}, {cout}).{mode}()(x)")
            checks.assert_close(res["x_after"], x, f"ResidualBlock({cin}, {cout}).{mode}()(x); x", atol=0, rtol=0,
                                rel_l2=0, hint=IN_PLACE)


# -- T6.5 SmallResNet ------------------------------------------------------------------------------------------
def _resnet_hint(error: str | None) -> Msg | None:
    if error and ("too small" in error or "cannot be multiplied" in error or "size" in error):
        return ADAPTIVE
    return None


@graded(task="SmallResNet", kind="shape", points=2, visibility="public")
def test_resnet_input_sizes(student, rng):
    """SmallResNet() gives (B, 10) for 8×8, 12×12, 16×16 and 7×9 inputs."""
    for h, w in ((8, 8), (12, 12), (16, 16), (7, 9)):
        x = torch.randn(3, 1, h, w, generator=rng)
        what = f"SmallResNet()(x[3, 1, {h}, {w}])"
        res = student.probe("module_run", cls="SmallResNet", args=[], x=x, seed=seed_from(rng))
        checks.fail_on_probe_error(res, what, _resnet_hint(res.get("error")))
        checks.assert_shape(res["outs"][0], (3, 10), what, hint=ADAPTIVE)


@graded(task="SmallResNet", kind="gradient", points=2, visibility="public")
def test_resnet_every_stage_gets_gradient(student, rng):
    """SmallResNet(1, 10, (8, 16)) has the spec's parameters, and every one, in every stage, gets a gradient."""
    x = torch.randn(4, 1, 8, 8, generator=rng)
    res = student.probe("module_run", cls="SmallResNet", args=[1, 10, [8, 16]], x=x, modes=["train"], seed=seed_from(rng),
                        grad_output=torch.randn(4, 10, generator=rng))
    _check_structure(res, _resnet_shapes(1, 10, [8, 16]), "SmallResNet(1, 10, (8, 16))", hint=STAGES)
    _check_grads(res, "SmallResNet(1, 10, (8, 16))(x)")


@graded(task="SmallResNet", kind="accuracy", points=2, visibility="public")
def test_resnet_learns_digits(student, spec, rng):
    """Trained for 6 epochs on the 8×8 digits, SmallResNet() classifies held-out digits."""
    p = spec.param("resnet_fit_public")
    res, labels = _fit_digits(student, spec, rng, "SmallResNet", "resnet_fit_public", {"widths": p["widths"]})
    _assert_accuracy(res, labels, spec.param("resnet_accuracy_public"), "SmallResNet()")


@graded(task="SmallResNet", kind="accuracy", points=2, visibility="hidden")
def test_resnet_forward_values(student, rng):
    """With a given state_dict the eval output is the spec's network: stem, blocks, global average, fc."""
    for cin, classes, widths, size in ((1, 10, [4, 6], 8), (2, 3, [5], 7), (1, 4, [3, 4, 5], 12)):
        shapes = _resnet_shapes(cin, classes, widths)
        state = _make_state(rng, shapes)
        x = torch.randn(3, cin, size, size, generator=rng, dtype=torch.float64)
        what = f"SmallResNet({cin}, {classes}, {tuple(widths)}).double().eval()(x)"
        res = student.probe("module_run", cls="SmallResNet", args=[cin, classes, widths], x=x, state=state,
                            dtype=torch.float64)
        checks.fail_on_probe_error(res, what, STAGES if res.get("load_error") else _resnet_hint(res.get("error")))
        checks.assert_close(res["outs"][0], _resnet_forward(x, state, widths, False), what,
                            mistakes={LOGITS: _resnet_forward(x, state, widths, False, softmax=True)})


@graded(task="SmallResNet", kind="accuracy", points=1, visibility="hidden")
def test_resnet_eval_mode_per_sample(student, rng):
    """After a few train-mode passes, eval mode is deterministic and each sample's output ignores the rest of the batch."""
    x = torch.randn(8, 1, 8, 8, generator=rng)
    res = student.probe("module_run", cls="SmallResNet", args=[], x=x, modes=["train", "train", "eval"],
                        seed=seed_from(rng), more=[x, x[:1], x.flip(0)])
    checks.fail_on_probe_error(res, "SmallResNet()")
    out = res["outs"][2]
    checks.assert_close(res["more_outs"][0], out, "SmallResNet().eval()(x) #2", hint=EVAL_STATS)
    checks.assert_close(res["more_outs"][1], out[:1], "SmallResNet().eval()(x[:1])", atol=1e-4, rtol=1e-3,
                        hint=EVAL_STATS)
    checks.assert_close(res["more_outs"][2], out.flip(0), "SmallResNet().eval()(x.flip(0))", atol=1e-4, rtol=1e-3,
                        hint=EVAL_STATS)


@graded(task="SmallResNet", kind="shape", points=1, visibility="hidden")
def test_resnet_widths_dtypes_devices(student, rng):
    """Widths of length 1 and 3, three input channels, float64 and the meta device."""
    for cin, classes, widths in ((1, 10, [8]), (3, 5, [4, 8, 16])):
        x = torch.randn(2, cin, 12, 12, generator=rng)
        what = f"SmallResNet({cin}, {classes}, {tuple(widths)})"
        res = student.probe("module_run", cls="SmallResNet", args=[cin, classes, widths], x=x, seed=seed_from(rng))
        _check_structure(res, _resnet_shapes(cin, classes, widths), what, hint=STAGES)
        checks.assert_shape(res["outs"][0], (2, classes), f"{what}(x[2, {cin}, 12, 12])")
    x64 = torch.randn(2, 1, 8, 8, generator=rng, dtype=torch.float64)
    res = student.probe("module_run", cls="SmallResNet", args=[], x=x64, dtype=torch.float64)
    checks.fail_on_probe_error(res, "SmallResNet().double()(x)")
    checks.assert_dtype(res["outs"][0], torch.float64, "SmallResNet().double()(x)", hint=KEEP_DTYPE)
    res = student.probe("module_run", cls="SmallResNet", args=[], x=torch.empty(2, 1, 8, 8, device="meta"),
                        device="meta")
    checks.fail_on_probe_error(res, "SmallResNet().to('meta')(x)", META_DEVICE)
    checks.assert_shape(res["outs"][0], (2, 10), "SmallResNet().to('meta')(x)")
    checks.assert_device(res["outs"][0], "meta", "SmallResNet().to('meta')(x)", hint=META_DEVICE)


@graded(task="SmallResNet", kind="accuracy", points=1, visibility="hidden")
def test_resnet_learns_digits_12x12(student, spec, rng):
    """SmallResNet(widths=(8, 16, 32)) learns digits resized to 12×12."""
    p = spec.param("resnet_fit_hidden")
    res, labels = _fit_digits(student, spec, rng, "SmallResNet", "resnet_fit_hidden", {"widths": p["widths"]})
    _assert_accuracy(res, labels, spec.param("resnet_accuracy_hidden"), "SmallResNet(widths=(8, 16, 32))")
