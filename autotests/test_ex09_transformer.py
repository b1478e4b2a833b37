"""Autotests for ex09_transformer: attention, multi-head attention, positional encoding, masks, an
encoder layer and a Transformer classifier.

Expected values come from PyTorch's own modules, run here: ``F.scaled_dot_product_attention`` (whose
bool mask also means "may attend"), ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
(whose masks mean "ignore": the tests invert the exercise's masks before handing them over), with
weights drawn here and copied into the student's modules through ``state_dict``\\ s. Modules are
driven through the probes in ``probes/ex09_transformer.py``. The order task's evaluation labels stay
here: the probe gets the training data and the evaluation tokens only.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_probe_speed

pytestmark = pytest.mark.exercise("ex09_transformer")

# -- feedback ----------------------------------------------------------------------------------------
SOFTMAX_DIM = Msg("注意力权重每行之和应为 1：`softmax` 应作用于最后一维（键所在的维，dim=-1）",
                  "Each row of the attention weights must sum to 1: softmax over the key dim (-1)")
SCALE = Msg("缩放因子应为 1/√d_k（d_k = q.size(-1)），不是 1/d_k", "Scale by 1/sqrt(d_k) (d_k = q.size(-1)), not 1/d_k")
NO_SCALE = Msg("缩放因子应为 1/√d_k（d_k = q.size(-1)），不能省略", "Scale by 1/sqrt(d_k) (d_k = q.size(-1)), do not leave it out")
POLARITY = Msg("掩码语义相反：本练习中 True 表示可以关注，False 表示屏蔽",
               "Inverted mask polarity: in this exercise True means 'may attend', False means blocked")
MASK_IGNORED = Msg("掩码没有生效：被屏蔽（False）的位置权重必须为 0",
                   "The mask was not applied: positions where the mask is False must get weight 0")
FULLY_MASKED = Msg("整行被屏蔽时权重和输出都应为 0，不能是 NaN 或均匀分布（可用 torch.finfo(dtype).min 再把这些行置 0）",
                   "A fully masked row must give zero weights and a zero output, not NaN or a uniform row "
                   "(mask with torch.finfo(dtype).min, then zero those rows)")
HALF = Msg("float16 下出错：屏蔽值请用 torch.finfo(dtype).min（或 `-inf`），不要写死 -1e9（超出 float16 的范围）",
           "It fails in float16: mask with torch.finfo(dtype).min (or -inf), not a hard-coded -1e9 (beyond float16's range)")
KEEP_DTYPE = Msg("float64 输入应得到 float64 输出：新建的张量请用 dtype=x.dtype、device=x.device，不要写死 float32 常数张量",
                 "A float64 input must give a float64 output: create new tensors with dtype=x.dtype and device=x.device")
META_DEVICE = Msg("在 'meta' 设备上出错：代码里新建的张量（torch.zeros/arange/ones…）没有放到输入所在的设备上（device=x.device）",
                  "It failed on the meta device: a tensor made inside the code (torch.zeros/arange/ones...) is not on the "
                  "input's device (device=x.device)")
VECTORISE = Msg("请一次性对所有批和头做矩阵乘法（q @ k.transpose(-2, -1)），不要在 Python 中循环",
                "Compute all batches and heads at once (q @ k.transpose(-2, -1)), without Python loops")

SPLIT_HEADS = Msg("分头方式错误：先 view(B, T, h, d_k) 再 transpose(1, 2)（与 nn.MultiheadAttention 一致），不要直接 view(B, h, T, d_k)",
                  "Split heads with view(B, T, h, d_k) then transpose(1, 2) (as nn.MultiheadAttention does), not "
                  "view(B, h, T, d_k)")
CONTIGUOUS = Msg("合并头时 `transpose` 之后的张量不连续：请先 `.contiguous()` 再 `view`，或直接使用 `reshape`",
                 "After transpose the tensor is not contiguous: call .contiguous() before view, or use reshape")
DIVISIBLE = Msg("d_model 不能被 num_heads 整除时应在 __init__ 中抛出 ValueError",
                "Raise ValueError in __init__ when d_model is not divisible by num_heads")
MHA_LAYERS = Msg("层的属性名或形状与规格不同：w_q、w_k、w_v、w_o 都是 nn.Linear(d_model, d_model)，没有其它带参数的层",
                 "Layer names or shapes differ from the spec: w_q, w_k, w_v, w_o, each nn.Linear(d_model, d_model), "
                 "and no other layer with parameters")
OUT_PROJ = Msg("输出应经过 w_o 投影；返回的权重应是每个头的 (B, h, Lq, Lk)",
               "The output goes through w_o; the weights returned are per head, (B, h, Lq, Lk)")
CAUSAL_LEAK = Msg("因果掩码下，改变最后一个位置不应影响之前位置的输出：掩码没有传到注意力里",
                  "With a causal mask, changing the last position must not change earlier outputs: the mask does not "
                  "reach the attention")
ATTN_DROPOUT = Msg("随机失活（`nn.Dropout`）应作用在注意力权重上，且只在训练模式下生效；返回的权重是随机失活之前的",
                   "Dropout acts on the attention weights, in train mode only; the weights returned are the ones before it")
UNUSED = Msg("输出在计算图上，这个参数却没有得到梯度：forward() 没有用到它所在的层",
             "The output is on the graph, yet this parameter got no gradient: forward does not use its layer")
DETACHED = Msg("输出脱离了计算图（detach() / .data / no_grad()），参数得不到梯度",
               "The output is detached from the graph (detach, .data, no_grad), so no parameter gets a gradient")

BUFFER = Msg("位置编码应 register_buffer(\"pe\", pe)：不参与训练（不在 parameters() 里），但在 state_dict 里并随 .to()/.double() 移动",
             "Use register_buffer(\"pe\", pe): not trained (not in parameters()), but in the state_dict and moved by "
             ".to()/.double()")
ODD_D = Msg("奇数 d_model 时余弦部分只需 d_model // 2 列：div_term 要截取，例如 pe[:, 1::2] = cos(position * div_term[: d_model // 2])",
            "For odd d_model the cosine part has only d_model // 2 columns: slice div_term, e.g. "
            "pe[:, 1::2] = cos(position * div_term[: d_model // 2])")
SEQ_LEN = Msg("应按序列长度 x.size(1) 截取位置编码（输入是 (B, T, d_model)），不是 x.size(0)",
              "Slice the encoding by the sequence length x.size(1) (inputs are (B, T, d_model)), not x.size(0)")
PE_FORMULA = Msg("位置编码公式：`pe[pos, 2i] = sin(pos / 10000^(2i/d))`，`pe[pos, 2i+1] = cos(pos / 10000^(2i/d))`",
                 "The encoding is pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(pos / 10000^(2i/d))")
TOO_LONG = Msg("序列长度超过 max_len 时应抛出 ValueError", "Raise ValueError when the sequence is longer than max_len")

CAUSAL_DIRECTION = Msg("因果掩码方向错误：位置 i 只能看到 j ≤ i（下三角，`torch.tril`），不是上三角",
                       "Wrong causal direction: position i sees only j <= i (lower triangle, tril), not the upper one")
BOOL_MASK = Msg("掩码应为布尔张量（`torch.bool`，True 表示可以关注），不是 0/1 浮点数", "Return a bool mask (True = may attend), not a float 0/1 mask")
MASK_DEVICE = Msg("掩码需要建在要求的设备上（causal_mask 的 `device` 参数、padding_mask 的 lengths.device）",
                  "Create the mask on the requested device (causal_mask's device argument, lengths.device for padding_mask)")
PADDING_VALUES = Msg("补齐掩码：mask[b, 0, 0, t] 为 True 当且仅当 t < lengths[b]，形状 (B, 1, 1, T)",
                     "Padding mask: mask[b, 0, 0, t] is True exactly when t < lengths[b], shape (B, 1, 1, T)")

POST_NORM = Msg("后归一化（`norm_first=False`）的顺序应为 `norm(x + dropout(sublayer(x)))`：先加残差，再做 LayerNorm",
                "Post-norm order: norm(x + dropout(sublayer(x))), add the residual first, then LayerNorm")
PRE_NORM = Msg("前归一化（`norm_first=True`）应为 `x + dropout(sublayer(norm(x)))`：残差加在归一化之前的 x 上",
               "Pre-norm: x + dropout(sublayer(norm(x))), the residual adds the un-normalised x")
TWO_NORMS = Msg("两个子层需要独立的 LayerNorm（norm1 和 norm2 各有自己的参数）",
                "Two separate LayerNorms: norm1 and norm2 each have parameters of their own")
MASK_NOT_APPLIED = Msg("补齐掩码未生效：被遮蔽的键改变了输出（`mask` 只应传给自注意力）",
                       "Mask not applied: masked keys changed the output (pass the mask to the self-attention)")
ENCODER_LAYERS = Msg("层的属性名或形状与规格不同：self_attn、linear1、linear2、norm1、norm2",
                     "Layer names or shapes differ from the spec: self_attn, linear1, linear2, norm1, norm2")
DETERMINISTIC = Msg("`dropout=0.0` 时，训练模式下同一输入的两次前向应得到相同的输出",
                   "With dropout=0.0, two forward passes on the same input in train mode must give the same output")
FFN = Msg("前馈网络应为 linear2(dropout(relu(linear1(x))))", "The feed-forward network is linear2(dropout(relu(linear1(x))))")
NOT_FINITE_ROWS = Msg("完全被屏蔽的行（长度为 0 的序列）输出也必须是有限值", "Fully masked rows (a sequence of length 0) must still give finite outputs")

POOL_PAD = Msg("池化包含了 PAD 位置：补齐改变了预测。请只对 `tokens != pad_idx` 的位置求平均",
               "Pooling includes PAD positions: padding changed the prediction. Average over tokens != pad_idx only")
NO_POSITION = Msg("模型无法区分顺序：缺少位置编码（x = pos(embedding(tokens) * √d_model)）",
                  "The model cannot tell the order: missing positional encoding (x = pos(embedding(tokens) * sqrt(d_model)))")
KEY_PADDING = Msg("PyTorch 的 src_key_padding_mask / nn.MultiheadAttention 的掩码中 True 表示“忽略”，与本练习相反；"
                  "传给编码器层的是 `keep = tokens != pad_idx`",
                  "PyTorch's src_key_padding_mask (and nn.MultiheadAttention's masks) use True = ignore, the opposite of "
                  "this exercise: the encoder layers get keep = tokens != pad_idx")
EMBED_SCALE = Msg("嵌入应乘以 √d_model 再加位置编码", "Multiply the embeddings by sqrt(d_model) before adding the positional encoding")
CLASSIFIER_LAYERS = Msg("层的属性名或形状与规格不同：`embedding`（`padding_idx=pad_idx`）、`pos`、`layers`、`classifier`",
                        "Layer names or shapes differ from the spec: embedding (padding_idx=pad_idx), pos, layers, classifier")
PAD_ROW = Msg("PAD 的嵌入行应为 0 且不得到梯度：nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)",
              "The PAD embedding row must be zero and get no gradient: nn.Embedding(vocab_size, d_model, padding_idx=pad_idx)")
ALL_PAD = Msg("整条序列都是 PAD 时池化结果应为 0 向量（分母至少为 1），不能是 NaN",
              "A sequence that is all PAD pools to the zero vector (the divisor is at least 1), not NaN")


# -- helpers -------------------------------------------------------------------------------------------

def _pair(out, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    checks.assert_true(isinstance(out, (tuple, list)) and len(out) == 2, Msg(
        f"{what}：应返回 `(output, weights)` 二元组，实际得到 {type(out).__name__}",
        f"{what}: expected an (output, weights) pair, got {type(out).__name__}"))
    return checks.assert_tensor(out[0], f"{what}[0]"), checks.assert_tensor(out[1], f"{what}[1]")


# -- the attention computed here, and the common mistakes ----------------------------------------------------------
def _attention_weights(q, k, mask=None, variant: str | None = None) -> torch.Tensor:
    """softmax over keys of the scaled scores, zero where the mask blocks (and on fully masked rows)."""
    scale = {"d_k": 1.0 / q.shape[-1], "no_scale": 1.0}.get(variant, q.shape[-1] ** -0.5)
    logits = torch.einsum("...qd,...kd->...qk", q, k) * scale
    if mask is not None and variant != "ignore_mask":
        allowed = ~mask if variant == "inverted" else mask
        logits = torch.where(allowed, logits, torch.tensor(-math.inf, dtype=logits.dtype))
    return torch.nan_to_num(logits.softmax(dim=-2 if variant == "dim_minus_2" else -1), nan=0.0)


def _attention_mistakes(q, k, v, mask) -> dict[Msg, torch.Tensor]:
    found = {}
    for variant, hint in (("dim_minus_2", SOFTMAX_DIM), ("d_k", SCALE), ("no_scale", NO_SCALE), ("inverted", POLARITY),
                          ("ignore_mask", MASK_IGNORED)):
        if variant in ("inverted", "ignore_mask") and mask is None:
            continue
        found[hint] = _attention_weights(q, k, mask, variant)
    return found


def _check_attention(out, q, k, v, mask, what: str) -> None:
    """Output equals F.scaled_dot_product_attention (bool mask: True = attend); weights equal the softmax."""
    output, weights = _pair(out, what)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    checks.assert_shape(weights, (*lead, q.shape[-2], k.shape[-2]), f"{what}[1]")
    checks.assert_shape(output, (*lead, q.shape[-2], v.shape[-1]), f"{what}[0]")
    expected_w = _attention_weights(q, k, mask)
    mistakes = _attention_mistakes(q, k, v, mask)
    checks.assert_close(weights, expected_w, f"{what}[1]", mistakes=mistakes)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    checks.assert_close(output, expected, f"{what}[0]",
                        mistakes={hint: w @ v for hint, w in mistakes.items()})


def _qkv(rng, lead: tuple[int, ...], lq: int, lk: int, dk: int, dv: int, dtype=torch.float32):
    return (torch.randn(*lead, lq, dk, generator=rng, dtype=dtype), torch.randn(*lead, lk, dk, generator=rng, dtype=dtype),
            torch.randn(*lead, lk, dv, generator=rng, dtype=dtype))


def _tril(n: int) -> torch.Tensor:
    """Lower triangle including the diagonal: query i may attend to keys j <= i."""
    return torch.ones(n, n).tril().bool()


def _keep_from_lengths(lengths: list[int], t: int) -> torch.Tensor:
    return torch.tensor([[j < n for j in range(t)] for n in lengths])  # (B, T)


# -- T9.1 scaled_dot_product_attention ------------------------------------------------------------------------
@graded(task="scaled_dot_product_attention", kind="shape", points=1, visibility="public")
def test_attention_shapes(student, rng):
    """3-D and 4-D inputs with Lq != Lk and d_v != d_k give output (..., Lq, d_v) and weights (..., Lq, Lk)."""
    for lead, lq, lk, dk, dv in (((3,), 4, 6, 8, 5), ((2, 3), 5, 7, 4, 6)):
        q, k, v = _qkv(rng, lead, lq, lk, dk, dv)
        what = f"scaled_dot_product_attention(q{list(q.shape)}, k{list(k.shape)}, v{list(v.shape)})"
        output, weights = _pair(student.scaled_dot_product_attention(q, k, v), what)
        checks.assert_shape(output, (*lead, lq, dv), f"{what}[0]")
        checks.assert_shape(weights, (*lead, lq, lk), f"{what}[1]", hint=SOFTMAX_DIM)
        checks.assert_dtype(output, torch.float32, f"{what}[0]")


@graded(task="scaled_dot_product_attention", kind="accuracy", points=2, visibility="public")
def test_attention_matches_pytorch(student, rng):
    """Without a mask and with a causal mask (Lq = Lk), the output equals F.scaled_dot_product_attention
    (bool attn_mask: True = attend) and the weights are the softmax over keys, each row summing to 1."""
    q, k, v = _qkv(rng, (2,), 5, 7, 8, 3)
    _check_attention(student.scaled_dot_product_attention(q, k, v), q, k, v, None,
                     "scaled_dot_product_attention(q[2,5,8], k[2,7,8], v[2,7,3])")
    q, k, v = _qkv(rng, (2, 2), 6, 6, 4, 4)
    mask = _tril(6)
    _check_attention(student.scaled_dot_product_attention(q, k, v, mask), q, k, v, mask,
                     "scaled_dot_product_attention(q[2,2,6,4], k, v, causal_mask(6))")


def _gradcheck_attention(student, q, k, v, mask, rng, what: str, eps: float = 1e-6) -> None:
    """Directional derivatives of <output, go> + <weights, gw> from backward against central differences."""
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    go = torch.randn(*lead, q.shape[-2], v.shape[-1], generator=rng, dtype=torch.float64)
    gw = torch.randn(*lead, q.shape[-2], k.shape[-2], generator=rng, dtype=torch.float64)
    res = student.probe("attention_vjp", q=q, k=k, v=v, mask=mask, grad_output=go, grad_weights=gw)
    checks.fail_on_probe_error(res, what)
    output, weights = _pair(res.get("result"), what)
    checks.assert_dtype(output, torch.float64, f"{what}[0]", hint=KEEP_DTYPE)
    checks.assert_attached(output, f"{what}[0]")
    grads = res["grads"]
    directions = []
    analytic = 0.0
    for name, t, g in zip("qkv", (q, k, v), grads):
        checks.assert_true(g is not None, Msg(f"{what}：{name} 没有得到梯度", f"{what}: no gradient reached {name}"))
        u = torch.randn(t.shape, generator=rng, dtype=torch.float64)
        u = u / torch.linalg.vector_norm(u)
        directions.append(u)
        analytic += float((g * u).sum())

    def objective(sign: float) -> float:
        args = [t + sign * eps * u for t, u in zip((q, k, v), directions)]
        o, w = _pair(student.scaled_dot_product_attention(*args, mask), what)
        return float((o * go).sum() + (w * gw).sum())

    numeric = (objective(1.0) - objective(-1.0)) / (2 * eps)
    checks.assert_true(abs(analytic - numeric) <= 1e-5 + 1e-3 * abs(numeric), Msg(
        f"{what}：反向传播的梯度与数值差分不一致（方向导数 {analytic:.6g} 对 {numeric:.6g}）",
        f"{what}: gradients disagree with finite differences (directional derivative {analytic:.6g} vs {numeric:.6g})"))


@graded(task="scaled_dot_product_attention", kind="gradient", points=2, visibility="public")
def test_attention_gradcheck(student, rng):
    """Gradients reaching q, k and v agree with finite differences (float64, with a causal mask)."""
    q, k, v = _qkv(rng, (2,), 4, 4, 3, 2, dtype=torch.float64)
    _gradcheck_attention(student, q, k, v, _tril(4), rng, "scaled_dot_product_attention(q, k, v, causal_mask(4))")


@graded(task="scaled_dot_product_attention", kind="accuracy", points=2, visibility="hidden")
def test_attention_padding_float64_and_polarity(student, rng):
    """A (B, 1, 1, Lk) padding mask in float64 with Lq != Lk, batch 1, and a mask given in PyTorch's
    nn.MultiheadAttention polarity (True = block) converted with ~: all equal F.scaled_dot_product_attention."""
    q, k, v = _qkv(rng, (3, 2), 4, 6, 5, 3, dtype=torch.float64)
    mask = _keep_from_lengths([6, 3, 1], 6)[:, None, None, :]
    _check_attention(student.scaled_dot_product_attention(q, k, v, mask), q, k, v, mask,
                     "scaled_dot_product_attention(q.double(), k, v, padding_mask([6, 3, 1]))")
    q, k, v = _qkv(rng, (1,), 3, 5, 4, 4)
    blocked = torch.rand(3, 5, generator=rng) < 0.4  # nn.MultiheadAttention's convention
    blocked[:, 0] = False
    _check_attention(student.scaled_dot_product_attention(q, k, v, ~blocked), q, k, v, ~blocked,
                     "scaled_dot_product_attention(q[1,3,4], k[1,5,4], v, ~blocked)")


@graded(task="scaled_dot_product_attention", kind="accuracy", points=1, visibility="hidden")
def test_attention_fully_masked_row(student, rng):
    """A query row with every key masked gets zero weights and a zero output, without NaN (as PyTorch's SDPA)."""
    q, k, v = _qkv(rng, (2,), 4, 5, 3, 3)
    mask = torch.rand(2, 4, 5, generator=rng) < 0.6
    mask[:, :, 0] = True
    mask[1, 2] = False  # query 2 of sample 1 may attend to nothing
    what = "scaled_dot_product_attention(q, k, v, mask)"
    empty_row = "(mask[1, 2] == False).all()"  # shown with the checks of that row
    output, weights = _pair(student.scaled_dot_product_attention(q, k, v, mask), what)
    for i, t in enumerate((output, weights)):
        checks.assert_finite(t, f"{what}[{i}]", hint=FULLY_MASKED)
    checks.assert_close(weights[1, 2], torch.zeros(5), f"{what}[1][1, 2], {empty_row}", hint=FULLY_MASKED)
    checks.assert_close(output[1, 2], torch.zeros(3), f"{what}[0][1, 2], {empty_row}", hint=FULLY_MASKED)
    _check_attention((output, weights), q, k, v, mask, what)
    half = "scaled_dot_product_attention(q.half(), k.half(), v.half(), mask)"
    output, weights = _pair(checks.call_or_fail(lambda: student.scaled_dot_product_attention(q.half(), k.half(), v.half(), mask),
                                          half, HALF), half)
    checks.assert_finite(output, f"{half}[0]", hint=HALF)
    checks.assert_close(output.float(), F.scaled_dot_product_attention(q, k, v, attn_mask=mask), f"{half}[0]",
                        atol=1e-2, rtol=1e-2, rel_l2=1e-2, hint=HALF)


@graded(task="scaled_dot_product_attention", kind="shape", points=1, visibility="hidden")
def test_attention_meta_device(student):
    """On the meta device, with a mask, the results stay on meta with the right shapes."""
    q, k, v = (torch.empty(2, 3, 4, 8, device="meta"), torch.empty(2, 3, 6, 8, device="meta"),
               torch.empty(2, 3, 6, 5, device="meta"))
    mask = torch.empty(2, 1, 1, 6, dtype=torch.bool, device="meta")
    what = "scaled_dot_product_attention(q.to('meta'), k, v, mask.to('meta'))"
    output, weights = _pair(checks.call_or_fail(lambda: student.scaled_dot_product_attention(q, k, v, mask), what,
                                          META_DEVICE), what)
    checks.assert_shape(output, (2, 3, 4, 5), f"{what}[0]")
    checks.assert_device(output, "meta", f"{what}[0]", hint=META_DEVICE)
    checks.assert_device(weights, "meta", f"{what}[1]", hint=META_DEVICE)


# -- speed: inputs made in the workers, the whole request timed ------------------------------------------------
def _compare_timed(student, reference, kind: str, args: list, rng, spec, ctor: list | None = None,
                   repeats: int | None = None):
    """``compare_probe_speed`` through this exercise's ``repeat_timed`` probe (which also times
    modules, tuple results and integer lengths)."""
    return compare_probe_speed(student, reference, "repeat_timed", args, rng, rounds=spec.param("speed_rounds"),
                               repeats=repeats or spec.param("speed_repeats"), factor=spec.param("speed_factor"),
                               kind=kind, ctor=ctor)


@graded(task="scaled_dot_product_attention", kind="speed", points=1, visibility="hidden")
def test_attention_speed(student, reference_worker, spec, rng):
    """Attention over (16, 16) batches and heads with a padding mask costs at most a few times the reference's."""
    p = spec.param("attention_speed")
    args = [{"randn": p["q"]}, {"randn": p["k"]}, {"randn": p["v"]}, {"rand_bool": p["mask"], "p": 0.9}]
    result = _compare_timed(student, reference_worker, "attention", args, rng, spec)
    assert_speed(result, spec.param("speed_factor"), "scaled_dot_product_attention", hint=VECTORISE)


# -- module states made here from PyTorch's own modules ----------------------------------------------------------
def _randomise(module: nn.Module, rng: torch.Generator) -> nn.Module:
    """Fresh values for every parameter (LayerNorm affine near (1, 0)), drawn from ``rng``."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape, generator=rng))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=rng))
            else:
                p.copy_(torch.randn(p.shape, generator=rng) / math.sqrt(p.shape[1]))
    return module


def _mha_state(attn: nn.MultiheadAttention, prefix: str = "") -> dict[str, torch.Tensor]:
    """nn.MultiheadAttention's packed projections as the exercise's w_q, w_k, w_v, w_o."""
    state = {}
    for name, weight, bias in zip(("w_q", "w_k", "w_v"), attn.in_proj_weight.detach().chunk(3),
                                  attn.in_proj_bias.detach().chunk(3)):
        state[f"{prefix}{name}.weight"], state[f"{prefix}{name}.bias"] = weight.clone(), bias.clone()
    state[f"{prefix}w_o.weight"] = attn.out_proj.weight.detach().clone()
    state[f"{prefix}w_o.bias"] = attn.out_proj.bias.detach().clone()
    return state


def _torch_mha(rng, d_model: int, heads: int, dtype=torch.float32) -> nn.MultiheadAttention:
    return _randomise(nn.MultiheadAttention(d_model, heads, batch_first=True, dtype=dtype), rng).eval()


def _blocking(keep: torch.Tensor | None, b: int, h: int, lq: int, lk: int) -> torch.Tensor | None:
    """The exercise's keep-mask (broadcastable to (B, h, Lq, Lk)) as nn.MultiheadAttention's (B·h, Lq, Lk) block-mask."""
    return None if keep is None else (~keep.expand(b, h, lq, lk)).reshape(b * h, lq, lk)


def _expected_mha(attn: nn.MultiheadAttention, q, k, v, keep, h: int):
    b, lq, lk = q.shape[0], q.shape[1], k.shape[1]
    out, weights = attn(q, k, v, attn_mask=_blocking(keep, b, h, lq, lk), need_weights=True,
                        average_attn_weights=False)
    return out.detach(), weights.detach()


def _wrong_split(attn: nn.MultiheadAttention, q, k, v, keep, h: int) -> torch.Tensor:
    """The output when heads are split with view(B, h, T, d_k) (and merged the same way)."""
    b, lq, d = q.shape
    s = _mha_state(attn)

    def heads(x, name):
        return F.linear(x, s[f"{name}.weight"], s[f"{name}.bias"]).reshape(b, h, x.shape[1], d // h)

    w = _attention_weights(heads(q, "w_q"), heads(k, "w_k"), keep)
    merged = (w @ heads(v, "w_v")).reshape(b, lq, d)
    return F.linear(merged, s["w_o.weight"], s["w_o.bias"])


def _check_structure(res: dict, shapes: dict[str, list[int]], what: str, hint: Msg) -> None:
    """The registered parameters are the spec's: names, shapes and their number."""
    checks.fail_on_probe_error(res, what, hint)
    got = res["param_shapes"]
    if got != shapes:
        missing = sorted(set(shapes) - set(got))
        extra = sorted(set(got) - set(shapes))
        wrong = sorted(f"{n} {got[n]} (expected {shapes[n]})" for n in set(got) & set(shapes) if got[n] != shapes[n])
        details = "; ".join(p for p in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
                                        f"shapes {wrong}" if wrong else "") if p)
        checks.fail(Msg(f"{what}：参数与规格不同（{details}）", f"{what}: the parameters differ from the spec ({details})"),
                    hint)


def _mha_shapes(d: int, prefix: str = "") -> dict[str, list[int]]:
    return {f"{prefix}{n}.{p}": ([d, d] if p == "weight" else [d]) for n in ("w_q", "w_k", "w_v", "w_o")
            for p in ("weight", "bias")}


def _run_mha(student, rng, d, h, q, k, v, keep, what, dtype=None, attn=None, **kwargs):
    attn = attn or _torch_mha(rng, d, h, q.dtype)
    res = student.probe("module_run", cls="MultiHeadAttention", args=[d, h], inputs=[q, k, v, keep],
                        state=_mha_state(attn), dtype=dtype, **kwargs)
    error = res.get("error") or ""
    checks.fail_on_probe_error(res, what, CONTIGUOUS if "contiguous" in error or "view size" in error else
                   MHA_LAYERS if res.get("load_error") else None)
    return res, attn


def _check_mha(student, rng, d, h, q, k, v, keep, what, dtype=None) -> None:
    res, attn = _run_mha(student, rng, d, h, q, k, v, keep, what, dtype=dtype)
    output, weights = _pair(res["outs"][0], what)
    expected, expected_w = _expected_mha(attn, q, k, v, keep, h)
    checks.assert_shape(weights, expected_w.shape, f"{what}[1]", hint=OUT_PROJ)
    checks.assert_close(output, expected, f"{what}[0]",
                        mistakes={SPLIT_HEADS: _wrong_split(attn, q, k, v, keep, h)})
    checks.assert_close(weights, expected_w, f"{what}[1]", hint=SPLIT_HEADS)


# -- T9.2 MultiHeadAttention --------------------------------------------------------------------------------------
@graded(task="MultiHeadAttention", kind="shape", points=1, visibility="public")
def test_mha_shapes_and_layers(student, rng):
    """MultiHeadAttention(12, 3) has w_q, w_k, w_v, w_o (12 → 12); cross-attention gives (B, Lq, 12) and
    weights (B, 3, Lq, Lk); 10 model dims over 3 heads raise ValueError."""
    q, kv = torch.randn(2, 4, 12, generator=rng), torch.randn(2, 7, 12, generator=rng)
    what = "MultiHeadAttention(12, 3)(q[2,4,12], kv[2,7,12], kv[2,7,12])"
    res = student.probe("module_run", cls="MultiHeadAttention", args=[12, 3], inputs=[q, kv, kv], seed=seed_from(rng))
    _check_structure(res, _mha_shapes(12), "MultiHeadAttention(12, 3)", MHA_LAYERS)
    checks.fail_on_probe_error(res, what, CONTIGUOUS if "contiguous" in (res.get("error") or "") else None)
    output, weights = _pair(res["outs"][0], what)
    checks.assert_shape(output, (2, 4, 12), f"{what}[0]", hint=OUT_PROJ)
    checks.assert_shape(weights, (2, 3, 4, 7), f"{what}[1]", hint=OUT_PROJ)
    raised = student.probe("raises", name="MultiHeadAttention", args=[10, 3])
    checks.assert_true(raised == "ValueError", Msg(f"MultiHeadAttention(10, 3) 应抛出 ValueError，实际得到 {raised}",
                                                   f"MultiHeadAttention(10, 3) should raise ValueError, got {raised}"),
                       DIVISIBLE)


@graded(task="MultiHeadAttention", kind="accuracy", points=2, visibility="public")
def test_mha_matches_torch_multihead_attention(student, rng):
    """With nn.MultiheadAttention's weights copied in, self-attention under a causal mask (B != T) equals
    mha(x, x, x, attn_mask=~causal), output and per-head weights."""
    x = torch.randn(3, 5, 16, generator=rng)
    _check_mha(student, rng, 16, 4, x, x, x, _tril(5), "MultiHeadAttention(16, 4)(x[3,5,16], x, x, causal_mask(5))")


@graded(task="MultiHeadAttention", kind="gradient", points=2, visibility="public")
def test_mha_gradients_and_causality(student, rng):
    """Every projection gets a gradient; under a causal mask, changing the last token leaves earlier outputs unchanged."""
    x = torch.randn(2, 6, 8, generator=rng)
    x_new = x.clone()  # x with another last token
    x_new[:, -1] = torch.randn(2, 8, generator=rng)
    what = "MultiHeadAttention(8, 2)(x, x, x, causal_mask(6))"
    res = student.probe("module_run", cls="MultiHeadAttention", args=[8, 2], inputs=[x, x, x, _tril(6)],
                        seed=seed_from(rng), modes=["train"], grad_output=torch.randn(2, 6, 8, generator=rng),
                        more=[[x_new, x_new, x_new, _tril(6)]])
    checks.fail_on_probe_error(res, what, CONTIGUOUS if "contiguous" in (res.get("error") or "") else None)
    output, _ = _pair(res["outs"][0], what)
    checks.assert_attached(output, what, hint=DETACHED)
    for name, grad in res["grads"].items():
        checks.assert_true(grad is not None and bool(grad.abs().sum() > 0), Msg(
            f"{what}：参数 {name} 没有得到（非零）梯度", f"{what}: parameter {name} received no (non-zero) gradient"), UNUSED)
    later, _ = _pair(res["more_outs"][0], what)
    checks.assert_close(later[:, :-1], output.detach()[:, :-1],
                        "MultiHeadAttention(8, 2)(x_new, x_new, x_new, causal_mask(6))[0][:, :5]", hint=CAUSAL_LEAK)


@graded(task="MultiHeadAttention", kind="accuracy", points=2, visibility="hidden")
def test_mha_cross_attention_padding_batch_one_float64(student, rng):
    """Cross-attention (Lq != Lk) with a (B, 1, 1, Lk) padding mask, batch 1, a non-contiguous query and float64."""
    q, kv = torch.randn(3, 4, 12, generator=rng), torch.randn(3, 6, 12, generator=rng)
    keep = _keep_from_lengths([6, 2, 4], 6)[:, None, None, :]
    _check_mha(student, rng, 12, 3, q, kv, kv, keep, "MultiHeadAttention(12, 3)(q[3,4,12], kv[3,6,12], kv, padding_mask)")
    x = torch.randn(1, 3, 8, generator=rng)
    _check_mha(student, rng, 8, 4, x, x, x, None, "MultiHeadAttention(8, 4)(x[1,3,8], x, x)")
    strided = torch.randn(2, 10, 5, generator=rng).transpose(1, 2)  # (2, 5, 10), not contiguous
    kv = torch.randn(2, 7, 10, generator=rng)
    _check_mha(student, rng, 10, 5, strided, kv, kv, None, "MultiHeadAttention(10, 5)(q[2,10,5].transpose(1, 2), kv, kv)")
    q64, kv64 = torch.randn(2, 3, 8, generator=rng, dtype=torch.float64), torch.randn(2, 5, 8, generator=rng,
                                                                                     dtype=torch.float64)
    _check_mha(student, rng, 8, 2, q64, kv64, kv64, None, "MultiHeadAttention(8, 2).double()(q, kv, kv)",
               dtype=torch.float64)


@graded(task="MultiHeadAttention", kind="accuracy", points=1, visibility="hidden")
def test_mha_dropout_on_weights_in_train_mode(student, rng):
    """With dropout=0.5: eval mode is the plain computation; train mode drops attention weights (outputs change) while
    the weights returned are still the ones before dropout; on the meta device the results stay on meta."""
    x = torch.randn(2, 6, 8, generator=rng)
    attn = _torch_mha(rng, 8, 2)
    what = "MultiHeadAttention(8, 2, dropout=0.5)"
    res = student.probe("module_run", cls="MultiHeadAttention", args=[8, 2, 0.5], inputs=[x, x, x],
                        state=_mha_state(attn), modes=["eval", "train"])
    checks.fail_on_probe_error(res, what)
    expected, expected_w = _expected_mha(attn, x, x, x, None, 2)
    out_eval, w_eval = _pair(res["outs"][0], f"{what}.eval()(x, x, x)")
    checks.assert_close(out_eval, expected, f"{what}.eval()(x, x, x)[0]", hint=ATTN_DROPOUT)
    out_train, w_train = _pair(res["outs"][1], f"{what}.train()(x, x, x)")
    checks.assert_close(w_train, expected_w, f"{what}.train()(x, x, x)[1]", hint=ATTN_DROPOUT)
    checks.assert_true(not torch.allclose(out_train, expected, atol=1e-4), Msg(
        f"{what}.train()：输出与 eval 模式相同，随机失活（`nn.Dropout`）没有作用在注意力权重上",
        f"{what}.train(): the output equals eval mode's, dropout did not act on the attention weights"), ATTN_DROPOUT)
    meta = torch.empty(2, 5, 8, device="meta")
    res = student.probe("module_run", cls="MultiHeadAttention", args=[8, 2], inputs=[meta, meta, meta],
                        device="meta")
    checks.fail_on_probe_error(res, "MultiHeadAttention(8, 2).to('meta')(x, x, x)", META_DEVICE)
    output, _ = _pair(res["outs"][0], "MultiHeadAttention(8, 2).to('meta')(x, x, x)")
    checks.assert_device(output, "meta", "MultiHeadAttention(8, 2).to('meta')(x, x, x)[0]", hint=META_DEVICE)


@graded(task="MultiHeadAttention", kind="speed", points=1, visibility="hidden")
def test_mha_speed(student, reference_worker, spec, rng):
    """Self-attention with 64 heads of 1 dim costs at most a few times the reference's (no loop over heads)."""
    p = spec.param("mha_speed")
    result = _compare_timed(student, reference_worker, "mha", [{"randn": p["x"]}], rng, spec,
                            ctor=[p["d_model"], p["num_heads"]], repeats=p["repeats"])
    assert_speed(result, spec.param("speed_factor"), "MultiHeadAttention", hint=VECTORISE)


# -- T9.3 PositionalEncoding --------------------------------------------------------------------------------------
def _sinusoids(max_len: int, d: int, dtype=torch.float64) -> torch.Tensor:
    """The table by its definition, column by column."""
    table = torch.empty(max_len, d, dtype=torch.float64)
    pos = torch.arange(max_len, dtype=torch.float64)
    for col in range(d):
        angle = pos / 10000.0 ** ((col - col % 2) / d)
        table[:, col] = torch.sin(angle) if col % 2 == 0 else torch.cos(angle)
    return table.to(dtype)


def _by_batch(x: torch.Tensor, table: torch.Tensor) -> dict[Msg, torch.Tensor]:
    """The output of slicing the table by x.size(0) (the batch) where that broadcasts at all."""
    rows = table[:x.shape[0]]
    return {SEQ_LEN: x + rows} if rows.shape[0] in (1, x.shape[1]) else {}


def _run_pe(student, d: int, max_len: int | None, x: torch.Tensor, what: str, **kwargs) -> dict:
    args = [d] if max_len is None else [d, max_len]
    res = student.probe("module_run", cls="PositionalEncoding", args=args, inputs=[x], **kwargs)
    error = res.get("error") or ""
    hint = ODD_D if d % 2 and "size" in error else SEQ_LEN if "must match the size" in error else None
    checks.fail_on_probe_error(res, what, hint)
    return res


@graded(task="PositionalEncoding", kind="shape", points=1, visibility="public")
def test_pe_is_a_buffer_and_keeps_shape(student, rng):
    """PositionalEncoding(16, 50): pe is a (50, 16) buffer in the state_dict, not a parameter; the output keeps (B, T, 16)."""
    x = torch.randn(3, 7, 16, generator=rng)
    res = _run_pe(student, 16, 50, x, "PositionalEncoding(16, 50)(x[3,7,16])", return_state=True)
    checks.assert_true(not res["param_shapes"], Msg(
        f"PositionalEncoding 不应有可训练参数，实际有 {sorted(res['param_shapes'])}",
        f"PositionalEncoding must have no trainable parameters, it has {sorted(res['param_shapes'])}"), BUFFER)
    checks.assert_true("pe" in res["buffer_keys"] and "pe" in res["state"], Msg(
        f"PositionalEncoding 应有名为 `pe` 的缓冲区（`register_buffer`），实际的缓冲区为 {res['buffer_keys']}",
        f"PositionalEncoding needs a buffer named pe, its buffers are {res['buffer_keys']}"), BUFFER)
    checks.assert_shape(res["state"]["pe"], (50, 16), "PositionalEncoding(16, 50).pe")
    checks.assert_shape(res["outs"][0], (3, 7, 16), "PositionalEncoding(16, 50)(x[3,7,16])")
    res = _run_pe(student, 4, None, torch.randn(2, 3, 4, generator=rng), "PositionalEncoding(4)(x[2,3,4])",
                  return_state=True)
    checks.assert_shape(res["state"].get("pe"), (5000, 4), "PositionalEncoding(4).pe")


@graded(task="PositionalEncoding", kind="accuracy", points=2, visibility="public")
def test_pe_values_even_and_odd(student, rng):
    """pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(...), for d = 16 and the odd d = 7; forward adds pe[:T]."""
    for d, batch, t in ((16, 3, 6), (7, 2, 9)):
        x = torch.randn(batch, t, d, generator=rng)
        what = f"PositionalEncoding({d}, 40)"
        res = _run_pe(student, d, 40, x, f"{what}(x[{batch},{t},{d}])", return_state=True)
        table = _sinusoids(40, d, torch.float32)
        checks.assert_close(res["state"].get("pe"), table, f"{what}.pe", atol=1e-5, rtol=1e-4,
                            hint=ODD_D if d % 2 else PE_FORMULA)
        checks.assert_close(res["outs"][0], x + table[:t], f"{what}(x[{batch},{t},{d}])", atol=1e-5, rtol=1e-4,
                            mistakes=_by_batch(x, table))


@graded(task="PositionalEncoding", kind="gradient", points=1, visibility="public")
def test_pe_input_gradient_is_identity(student, rng):
    """With the default dropout (0), in train mode, the gradient reaching the input equals the gradient of the output."""
    x = torch.randn(2, 5, 6, generator=rng)
    g = torch.randn(2, 5, 6, generator=rng)
    res = _run_pe(student, 6, 20, x, "PositionalEncoding(6, 20).train()(x)", input_grad=[0], grad_output=g,
                  modes=["train"])
    checks.assert_grad(res["input_grads"][0], g, "x, PositionalEncoding(6, 20).train()")


@graded(task="PositionalEncoding", kind="accuracy", points=1, visibility="hidden")
def test_pe_lengths_batch_one(student, rng):
    """Batch 1 (B != T), T == max_len, and T > max_len raising ValueError."""
    x = torch.randn(1, 5, 8, generator=rng)
    res = _run_pe(student, 8, 12, x, "PositionalEncoding(8, 12)(x[1,5,8])")
    table = _sinusoids(12, 8, torch.float32)
    checks.assert_close(res["outs"][0], x + table[:5], "PositionalEncoding(8, 12)(x[1,5,8])", atol=1e-5, rtol=1e-4,
                        mistakes=_by_batch(x, table))
    x = torch.randn(2, 12, 8, generator=rng)
    res = _run_pe(student, 8, 12, x, "PositionalEncoding(8, 12)(x[2,12,8]) (T == max_len)")
    checks.assert_close(res["outs"][0], x + table, "PositionalEncoding(8, 12)(x[2,12,8])", atol=1e-5, rtol=1e-4)
    res = student.probe("module_run", cls="PositionalEncoding", args=[8, 12], inputs=[torch.randn(2, 13, 8)])
    checks.assert_true(res.get("error_type") == "ValueError", Msg(
        f"PositionalEncoding(8, 12)(x[2,13,8]) 应抛出 ValueError，实际得到 {res.get('error_type') or '正常返回'}",
        f"PositionalEncoding(8, 12)(x[2,13,8]) should raise ValueError, got {res.get('error_type') or 'a result'}"),
        TOO_LONG)


@graded(task="PositionalEncoding", kind="shape", points=1, visibility="hidden")
def test_pe_follows_double_and_meta(student, rng):
    """.double() makes pe float64 (and the output float64); .to('meta') moves pe and the output to meta."""
    x = torch.randn(2, 4, 5, generator=rng, dtype=torch.float64)
    res = _run_pe(student, 5, 10, x, "PositionalEncoding(5, 10).double()(x)", dtype=torch.float64)
    checks.assert_true(res["buffer_dtypes"].get("pe") == "torch.float64", Msg(
        f"PositionalEncoding(5, 10).double()：`pe` 的 dtype 为 {res['buffer_dtypes'].get('pe')}",
        f"PositionalEncoding(5, 10).double(): pe has dtype {res['buffer_dtypes'].get('pe')}"), BUFFER)
    checks.assert_close(res["outs"][0], x + _sinusoids(10, 5)[:4], "PositionalEncoding(5, 10).double()(x)",
                        atol=1e-6, rtol=1e-5, hint=BUFFER)
    meta = torch.empty(2, 4, 5, device="meta")
    res = _run_pe(student, 5, 10, meta, "PositionalEncoding(5, 10).to('meta')(x)", device="meta")
    checks.assert_true(res["buffer_devices"].get("pe") == "meta", Msg(
        f"PositionalEncoding(5, 10).to('meta')：`pe` 在 {res['buffer_devices'].get('pe')} 上",
        f"PositionalEncoding(5, 10).to('meta'): pe is on {res['buffer_devices'].get('pe')}"), BUFFER)
    checks.assert_device(res["outs"][0], "meta", "PositionalEncoding(5, 10).to('meta')(x)", hint=BUFFER)


# -- T9.4 causal_mask / padding_mask --------------------------------------------------------------------------
def _check_mask(got, expected: torch.Tensor, what: str, hint: Msg | None = None, mistakes=None) -> None:
    t = checks.assert_tensor(got, what)
    checks.assert_dtype(t, torch.bool, what, hint=BOOL_MASK)
    checks.assert_shape(t, expected.shape, what, hint=hint)
    if not torch.equal(t, expected):
        diagnosis = next((m for m, wrong in (mistakes or {}).items() if torch.equal(t, wrong)), None)
        bad = tuple(int(i) for i in (t != expected).nonzero()[0])
        checks.fail(Msg(f"{what}：索引 {bad} 处为 {bool(t[bad])}，应为 {bool(expected[bad])}",
                        f"{what}: at index {bad} got {bool(t[bad])}, expected {bool(expected[bad])}"),
                    diagnosis or hint)


def _expected_padding(lengths: list[int], t: int) -> torch.Tensor:
    return _keep_from_lengths(lengths, t).reshape(len(lengths), 1, 1, t)


@graded(task="causal_mask", kind="shape", points=1, visibility="public")
def test_mask_shapes_dtypes_devices(student):
    """causal_mask(5) is (5, 5) bool; causal_mask(4, device='meta') is on meta; padding_mask of 3 lengths is (3, 1, 1, T) bool."""
    out = student.causal_mask(5)
    checks.assert_dtype(out, torch.bool, "causal_mask(5)", hint=BOOL_MASK)
    checks.assert_shape(out, (5, 5), "causal_mask(5)")
    what = "causal_mask(4, device='meta')"
    out = checks.call_or_fail(lambda: student.causal_mask(4, device="meta"), what, MASK_DEVICE)
    checks.assert_device(out, "meta", what, hint=MASK_DEVICE)
    out = student.padding_mask(torch.tensor([2, 5, 3]))
    checks.assert_dtype(out, torch.bool, "padding_mask(tensor([2, 5, 3]))", hint=BOOL_MASK)
    checks.assert_shape(out, (3, 1, 1, 5), "padding_mask(tensor([2, 5, 3]))", hint=PADDING_VALUES)


@graded(task="causal_mask", kind="accuracy", points=2, visibility="public")
def test_mask_values_and_combination(student):
    """causal_mask(6)[i, j] is j <= i; padding_mask([3, 6, 1]) is t < length; combined with & they give (B, 1, T, T)."""
    causal = student.causal_mask(6)
    _check_mask(causal, _tril(6), "causal_mask(6)", mistakes={CAUSAL_DIRECTION: _tril(6).T.contiguous(),
                                                              POLARITY: ~_tril(6)})
    padding = student.padding_mask(torch.tensor([3, 6, 1]))
    _check_mask(padding, _expected_padding([3, 6, 1], 6), "padding_mask(tensor([3, 6, 1]))", hint=PADDING_VALUES,
                mistakes={POLARITY: ~_expected_padding([3, 6, 1], 6)})
    both = padding & causal
    _check_mask(both, _expected_padding([3, 6, 1], 6) & _tril(6), "padding_mask(...) & causal_mask(6)",
                hint=PADDING_VALUES)


@graded(task="causal_mask", kind="accuracy", points=1, visibility="hidden")
def test_mask_edge_cases(student):
    """causal_mask(1); lengths containing 0; max_len larger than the longest sequence; a single sequence."""
    _check_mask(student.causal_mask(1), torch.ones(1, 1, dtype=torch.bool), "causal_mask(1)", hint=CAUSAL_DIRECTION)
    _check_mask(student.causal_mask(9), _tril(9), "causal_mask(9)", mistakes={CAUSAL_DIRECTION: _tril(9).T.contiguous()})
    for lengths, max_len in (([0, 4, 2], None), ([2, 3], 7), ([0, 0], 3), ([5], None)):
        t = max_len if max_len is not None else max(lengths)
        what = f"padding_mask(tensor({lengths}), max_len={max_len})"
        _check_mask(student.padding_mask(torch.tensor(lengths), max_len), _expected_padding(lengths, t), what,
                    hint=PADDING_VALUES)


@graded(task="causal_mask", kind="shape", points=1, visibility="hidden")
def test_mask_meta_device(student):
    """padding_mask of meta lengths (max_len given) is on meta, (B, 1, 1, T) bool."""
    what = "padding_mask(lengths.to('meta'), max_len=6)"
    out = checks.call_or_fail(lambda: student.padding_mask(torch.empty(4, dtype=torch.int64, device="meta"), 6), what,
                        MASK_DEVICE)
    checks.assert_device(out, "meta", what, hint=MASK_DEVICE)
    checks.assert_shape(out, (4, 1, 1, 6), what)
    checks.assert_dtype(out, torch.bool, what, hint=BOOL_MASK)


@graded(task="causal_mask", kind="speed", points=1, visibility="hidden")
def test_padding_mask_speed(student, reference_worker, spec, rng):
    """padding_mask for 4096 sequences costs at most a few times the reference's arange comparison."""
    p = spec.param("padding_speed")
    result = _compare_timed(student, reference_worker, "padding", [{"randn": [p["batch"]]}, p["max_len"]], rng, spec)
    assert_speed(result, spec.param("speed_factor"), "padding_mask", hint=Msg(
        "请用 `torch.arange` 比较一次生成整个掩码，不要循环遍历批", "Build the whole mask with one arange comparison, without a loop over the batch"))


# -- T9.5 EncoderLayer -----------------------------------------------------------------------------------------
def _torch_layer(rng, d, h, d_ff, norm_first: bool, dtype=torch.float32) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.1, activation="relu", batch_first=True,
                                       norm_first=norm_first, dtype=dtype)
    return _randomise(layer, rng).eval()


def _layer_state(layer: nn.TransformerEncoderLayer, prefix: str = "") -> dict[str, torch.Tensor]:
    state = _mha_state(layer.self_attn, f"{prefix}self_attn.")
    for name in ("linear1", "linear2", "norm1", "norm2"):
        for p in ("weight", "bias"):
            state[f"{prefix}{name}.{p}"] = getattr(getattr(layer, name), p).detach().clone()
    return state


def _layer_shapes(d: int, d_ff: int, prefix: str = "") -> dict[str, list[int]]:
    return {**_mha_shapes(d, f"{prefix}self_attn."), f"{prefix}linear1.weight": [d_ff, d], f"{prefix}linear1.bias": [d_ff],
            f"{prefix}linear2.weight": [d, d_ff], f"{prefix}linear2.bias": [d],
            **{f"{prefix}{n}.{p}": [d] for n in ("norm1", "norm2") for p in ("weight", "bias")}}


def _expected_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """PyTorch's layer in eval mode, with grad enabled (so its fused fast path, which zeroes padded rows, is not taken)."""
    with torch.enable_grad():
        return layer(x, src_key_padding_mask=None if keep is None else ~keep).detach()


def _layer_mistakes(layer: nn.TransformerEncoderLayer, x: torch.Tensor, keep: torch.Tensor | None) -> dict:
    """The outputs of the common mistakes, made from PyTorch's submodules."""
    with torch.no_grad():
        def attend(y, use_mask=True):
            mask = None if keep is None or not use_mask else ~keep
            return layer.self_attn(y, y, y, key_padding_mask=mask, need_weights=False)[0]

        def ffn(y):
            return layer.linear2(F.relu(layer.linear1(y)))

        if layer.norm_first:
            post = layer.norm1(x + attend(x))
            post = layer.norm2(post + ffn(post))
            return {POST_NORM: post}
        inside = x + layer.norm1(attend(x))
        inside = inside + layer.norm2(ffn(inside))
        found = {POST_NORM: inside}
        pre = x + attend(layer.norm1(x))
        found[PRE_NORM] = pre + ffn(layer.norm2(pre))
        if keep is not None:
            y = layer.norm1(x + attend(x, use_mask=False))
            found[MASK_NOT_APPLIED] = layer.norm2(y + ffn(y))
        return found


def _layer_hint(res: dict) -> Msg | None:
    keys = set(res.get("state_keys") or [])
    params = set(res.get("param_shapes") or {})
    if {"norm1.weight", "norm2.weight"} <= keys and not {"norm1.weight", "norm2.weight"} <= params:
        return TWO_NORMS
    return ENCODER_LAYERS if res.get("load_error") else None


def _check_layer(student, rng, d, h, d_ff, x, keep, norm_first: bool, what: str, dtype=None) -> dict:
    layer = _torch_layer(rng, d, h, d_ff, norm_first, x.dtype)
    mask = None if keep is None else keep[:, None, None, :]
    res = student.probe("module_run", cls="EncoderLayer", args=[d, h, d_ff], kwargs={"norm_first": True} if norm_first else {},
                        inputs=[x, mask], state=_layer_state(layer), dtype=dtype)
    checks.fail_on_probe_error(res, what, _layer_hint(res))
    hint = _layer_hint(res)
    if hint is not None:
        checks.fail(Msg(f"{what}：norm1 和 norm2 是同一个模块", f"{what}: norm1 and norm2 are the same module"), hint)
    checks.assert_close(res["outs"][0], _expected_layer(layer, x, keep), what, mistakes=_layer_mistakes(layer, x, keep))
    return res


@graded(task="EncoderLayer", kind="shape", points=1, visibility="public")
def test_encoder_layer_shape_and_layers(student, rng):
    """EncoderLayer(16, 4, 32) keeps (B, T, 16) and has self_attn, linear1, linear2 and two separate LayerNorms."""
    x = torch.randn(3, 5, 16, generator=rng)
    res = student.probe("module_run", cls="EncoderLayer", args=[16, 4, 32], inputs=[x], seed=seed_from(rng))
    _check_structure(res, _layer_shapes(16, 32), "EncoderLayer(16, 4, 32)", _layer_hint(res) or ENCODER_LAYERS)
    checks.assert_shape(res["outs"][0], (3, 5, 16), "EncoderLayer(16, 4, 32)(x[3,5,16])")


@graded(task="EncoderLayer", kind="accuracy", points=2, visibility="public")
def test_encoder_layer_matches_torch_post_norm(student, rng):
    """Post-norm, eval mode, with nn.TransformerEncoderLayer's weights copied in: equal outputs without a mask and
    with a padding mask (keep mask here, src_key_padding_mask = ~keep there)."""
    x = torch.randn(3, 5, 16, generator=rng)
    _check_layer(student, rng, 16, 4, 32, x, None, False, "EncoderLayer(16, 4, 32).eval()(x[3,5,16])")
    keep = _keep_from_lengths([5, 2, 4], 5)
    _check_layer(student, rng, 16, 4, 32, x, keep, False, "EncoderLayer(16, 4, 32).eval()(x, padding_mask([5, 2, 4]))")


@graded(task="EncoderLayer", kind="gradient", points=2, visibility="public")
def test_encoder_layer_gradients(student, rng):
    """Every parameter (both LayerNorms, the FFN, the four projections) gets a gradient; with dropout 0, train mode
    is deterministic."""
    x = torch.randn(2, 4, 8, generator=rng)
    what = "EncoderLayer(8, 2, 16, dropout=0.0)"
    res = student.probe("module_run", cls="EncoderLayer", args=[8, 2, 16, 0.0], inputs=[x], seed=seed_from(rng),
                        modes=["train", "train"], grad_output=torch.randn(2, 4, 8, generator=rng))
    checks.fail_on_probe_error(res, what, _layer_hint(res))
    checks.assert_attached(res["outs"][-1], what, hint=DETACHED)
    for name, grad in res["grads"].items():
        checks.assert_true(grad is not None and bool(grad.abs().sum() > 0), Msg(
            f"{what}：参数 {name} 没有得到（非零）梯度", f"{what}: parameter {name} received no (non-zero) gradient"), UNUSED)
    checks.assert_close(res["outs"][1], res["outs"][0].detach(), f"{what}.train()(x)", hint=DETERMINISTIC)


@graded(task="EncoderLayer", kind="accuracy", points=2, visibility="hidden")
def test_encoder_layer_pre_norm_batch_one_float64(student, rng):
    """norm_first=True with a padding mask, batch 1 (post-norm) and float64 match nn.TransformerEncoderLayer."""
    x = torch.randn(3, 6, 12, generator=rng)
    _check_layer(student, rng, 12, 3, 20, x, _keep_from_lengths([6, 3, 1], 6), True,
                 "EncoderLayer(12, 3, 20, norm_first=True).eval()(x, padding_mask([6, 3, 1]))")
    x = torch.randn(1, 4, 8, generator=rng)
    _check_layer(student, rng, 8, 2, 16, x, None, False, "EncoderLayer(8, 2, 16).eval()(x[1,4,8])")
    x = torch.randn(2, 5, 8, generator=rng, dtype=torch.float64)
    _check_layer(student, rng, 8, 4, 16, x, _keep_from_lengths([3, 5], 5), False,
                 "EncoderLayer(8, 4, 16).double().eval()(x, padding_mask([3, 5]))", dtype=torch.float64)


@graded(task="EncoderLayer", kind="accuracy", points=1, visibility="hidden")
def test_encoder_layer_fully_padded_and_meta(student, rng):
    """A sequence of length 0 (every key masked) gives finite outputs and leaves the other samples as PyTorch's;
    on the meta device the output stays on meta."""
    x = torch.randn(3, 4, 8, generator=rng)
    layer = _torch_layer(rng, 8, 2, 16, False)
    keep = _keep_from_lengths([4, 0, 2], 4)
    what = "EncoderLayer(8, 2, 16).eval()(x, padding_mask([4, 0, 2]))"
    res = student.probe("module_run", cls="EncoderLayer", args=[8, 2, 16], inputs=[x, keep[:, None, None, :]],
                        state=_layer_state(layer))
    checks.fail_on_probe_error(res, what, _layer_hint(res))
    checks.assert_finite(res["outs"][0], what, hint=NOT_FINITE_ROWS)
    rows = torch.tensor([0, 2])
    checks.assert_close(res["outs"][0][rows], _expected_layer(layer, x[rows], keep[rows]), f"{what}[[0, 2]]")
    meta = torch.empty(2, 4, 8, device="meta")
    mask = torch.empty(2, 1, 1, 4, dtype=torch.bool, device="meta")
    res = student.probe("module_run", cls="EncoderLayer", args=[8, 2, 16], inputs=[meta, mask], device="meta")
    checks.fail_on_probe_error(res, "EncoderLayer(8, 2, 16).to('meta')(x, mask)", META_DEVICE)
    checks.assert_device(res["outs"][0], "meta", "EncoderLayer(8, 2, 16).to('meta')(x, mask)", hint=META_DEVICE)


# -- T9.6 TransformerClassifier ----------------------------------------------------------------------------------
def _classifier_shapes(vocab, d, layers, d_ff, classes) -> dict[str, list[int]]:
    shapes = {"embedding.weight": [vocab, d]}
    for i in range(layers):
        shapes.update(_layer_shapes(d, d_ff, f"layers.{i}."))
    return {**shapes, "classifier.weight": [classes, d], "classifier.bias": [classes]}


def _classifier_state(rng, vocab, d, h, n_layers, d_ff, classes, max_len, pad):
    """A state_dict for the student's classifier, and PyTorch's modules holding the same values."""
    embedding = torch.randn(vocab, d, generator=rng) * 0.5
    embedding[pad] = 0.0
    torch_layers = [_torch_layer(rng, d, h, d_ff, False) for _ in range(n_layers)]
    head = _randomise(nn.Linear(d, classes), rng)
    state = {"embedding.weight": embedding, "pos.pe": _sinusoids(max_len, d, torch.float32),
             "classifier.weight": head.weight.detach().clone(), "classifier.bias": head.bias.detach().clone()}
    for i, layer in enumerate(torch_layers):
        state.update(_layer_state(layer, f"layers.{i}."))
    return state, (embedding, torch_layers, head)


def _expected_logits(modules, tokens: torch.Tensor, pad: int, variant: str | None = None) -> torch.Tensor:
    """PyTorch's layers on embedding·√d + sinusoids, masked mean over real tokens, linear head (or a mistake)."""
    embedding, torch_layers, head = modules
    d = embedding.shape[1]
    real = tokens != pad
    x = F.embedding(tokens, embedding) * (1.0 if variant == "no_scale" else math.sqrt(d))
    if variant != "no_position":
        x = x + _sinusoids(tokens.shape[1], d, torch.float32)
    with torch.enable_grad():
        for layer in torch_layers:
            # with the polarity flipped a sequence without PAD has no key left: PyTorch would give NaN there,
            # the exercise's attention zeros, so that mistake is computed with _attention_weights
            x = _manual_layer(layer, x, ~real) if variant == "polarity" else layer(x, src_key_padding_mask=~real)
    x = x.detach()
    weights = real.unsqueeze(-1).float() if variant != "pool_pad" else torch.ones_like(real).unsqueeze(-1).float()
    pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return head(pooled).detach()


def _manual_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """A post-norm layer from PyTorch's weights, keys allowed where ``allowed`` (B, T) is True, fully masked rows zero."""
    attn = layer.self_attn
    b, t, d = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
    mixed = _attention_weights(q, k, allowed[:, None, None, :]) @ v
    x = layer.norm1(x + attn.out_proj(mixed.permute(0, 2, 1, 3).reshape(b, t, d)))
    return layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))


def _classifier_mistakes(modules, tokens, pad) -> dict[Msg, torch.Tensor]:
    return {POOL_PAD: _expected_logits(modules, tokens, pad, "pool_pad"),
            NO_POSITION: _expected_logits(modules, tokens, pad, "no_position"),
            EMBED_SCALE: _expected_logits(modules, tokens, pad, "no_scale"),
            KEY_PADDING: _expected_logits(modules, tokens, pad, "polarity")}


def _tokens(rng, lengths: list[int], t: int, vocab: int, pad: int) -> torch.Tensor:
    tokens = torch.randint(0, vocab - 1, (len(lengths), t), generator=rng)
    tokens = tokens + (tokens >= pad).long()  # never pad inside a sequence
    return tokens.masked_fill(~_keep_from_lengths(lengths, t), pad)


def _classifier_hint(res: dict) -> Msg | None:
    return CLASSIFIER_LAYERS if res.get("load_error") else None


@graded(task="TransformerClassifier", kind="shape", points=1, visibility="public")
def test_classifier_shape_and_layers(student, rng):
    """TransformerClassifier(20, 16, 4, 2, 32, 3) has embedding, pos, two layers and classifier, and gives (B, 3)."""
    tokens = _tokens(rng, [7, 4, 2, 6], 7, 20, 0)
    what = "TransformerClassifier(20, 16, 4, 2, 32, 3)"
    res = student.probe("module_run", cls="TransformerClassifier", args=[20, 16, 4, 2, 32, 3], inputs=[tokens],
                        seed=seed_from(rng), return_state=True)
    _check_structure(res, _classifier_shapes(20, 16, 2, 32, 3), what, CLASSIFIER_LAYERS)
    checks.assert_true("pos.pe" in res["state_keys"], Msg(f"{what}.state_dict() 中没有 pos.pe",
                                                          f"{what}.state_dict() has no pos.pe"), CLASSIFIER_LAYERS)
    checks.assert_shape(res["outs"][0], (4, 3), f"{what}(tokens[4, 7])")
    checks.assert_shape(res["state"].get("pos.pe"), (128, 16), f"{what}.pos.pe")


@graded(task="TransformerClassifier", kind="gradient", points=2, visibility="public")
def test_classifier_gradients(student, rng):
    """Every parameter of every layer gets a gradient, except the PAD row of the embedding, which starts at zero and gets none."""
    tokens = _tokens(rng, [6, 3, 5], 6, 12, 0)
    what = "TransformerClassifier(12, 8, 2, 2, 16, 2, dropout=0.0)"
    res = student.probe("module_run", cls="TransformerClassifier", args=[12, 8, 2, 2, 16, 2],
                        kwargs={"dropout": 0.0}, inputs=[tokens], seed=seed_from(rng), modes=["train"],
                        grad_output=torch.randn(3, 2, generator=rng), return_state=True)
    checks.fail_on_probe_error(res, what)
    checks.assert_attached(res["outs"][0], what, hint=DETACHED)
    for name, grad in res["grads"].items():
        nonzero = grad is not None and bool((grad[1:] if name == "embedding.weight" else grad).abs().sum() > 0)
        checks.assert_true(nonzero, Msg(f"{what}：参数 {name} 没有得到（非零）梯度",
                                        f"{what}: parameter {name} received no (non-zero) gradient"), UNUSED)
    pad_row = res["state"].get("embedding.weight")
    checks.assert_true(pad_row is not None and bool((pad_row[0] == 0).all()), Msg(
        f"{what}：新建模型的 embedding.weight[0]（PAD）不是 0", f"{what}: a new model's embedding.weight[0] (PAD) is not zero"),
        PAD_ROW)
    pad_grad = res["grads"].get("embedding.weight")
    checks.assert_true(pad_grad is not None and bool((pad_grad[0] == 0).all()), Msg(
        f"{what}：embedding.weight[0]（PAD）得到了梯度", f"{what}: embedding.weight[0] (PAD) received a gradient"), PAD_ROW)


def _make_order(n: int, t: int, vocab: int, min_len: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens 4..vocab-1 with one 2 and one 3 at random real positions, PAD (0) after the end; label: 2 before 3."""
    lengths = torch.randint(min_len, t + 1, (n,), generator=g)
    tokens = torch.randint(4, vocab, (n, t), generator=g)
    real = torch.arange(t)[None, :] < lengths[:, None]
    tokens = tokens.masked_fill(~real, 0)
    spots = torch.rand(n, t, generator=g).masked_fill(~real, 2.0).argsort(1)[:, :2]  # two distinct real positions
    rows = torch.arange(n)
    tokens[rows, spots[:, 0]] = 2
    tokens[rows, spots[:, 1]] = 3
    return tokens, (spots[:, 0] < spots[:, 1]).long()


def _fit_order(student, spec, rng) -> tuple[dict, torch.Tensor]:
    task, fit = spec.param("order_task"), dict(spec.param("order_fit"))
    g = torch.Generator().manual_seed(seed_from(rng))
    x_train, y_train = _make_order(task["n_train"], task["max_len"], task["vocab"], task["min_len"], g)
    x_eval, y_eval = _make_order(task["n_eval"], task["max_len"], task["vocab"], task["min_len"], g)
    kwargs = {"vocab_size": task["vocab"], "d_model": fit["d_model"], "num_heads": fit["num_heads"],
              "num_layers": fit["num_layers"], "d_ff": fit["d_ff"], "num_classes": 2, "max_len": task["max_len"],
              "pad_idx": 0, "dropout": fit["dropout"]}
    res = student.probe("fit_order", kwargs=kwargs, x_train=x_train, y_train=y_train, x_eval=x_eval,
                        epochs=fit["epochs"], lr=fit["lr"], batch_size=fit["batch_size"], seed=seed_from(rng))
    return res, y_eval


@graded(task="TransformerClassifier", kind="accuracy", points=2, visibility="public")
def test_classifier_learns_order(student, spec, rng):
    """Trained on "does token 2 come before token 3" (lengths 4-8, PAD after), it classifies held-out sequences;
    without positional information it would stay at chance."""
    res, labels = _fit_order(student, spec, rng)
    checks.assert_true(res.get("n_params") != 0, Msg("TransformerClassifier 没有任何已注册的参数，无法训练",
                                                      "TransformerClassifier has no registered parameters"),
                       CLASSIFIER_LAYERS)
    logits = res["logits"]
    checks.assert_shape(logits, (len(labels), 2), "TransformerClassifier(...)(x_eval)")
    checks.assert_finite(logits, "TransformerClassifier(...)(x_eval)", hint=ALL_PAD)
    acc = float((logits.argmax(1) == labels).float().mean())
    threshold = spec.param("order_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"训练后在留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}（随机猜测为 0.5）",
        f"held-out accuracy after training is {acc:.3f}, at least {threshold:.2f} is required (chance is 0.5)"),
        curve=res.get("losses"), hint=NO_POSITION if acc < 0.6 else None)


@graded(task="TransformerClassifier", kind="accuracy", points=2, visibility="hidden")
def test_classifier_matches_torch_layers(student, rng):
    """With a given state_dict (pad_idx=3), eval logits equal PyTorch's embedding·√d + sinusoids, nn.TransformerEncoderLayer
    with src_key_padding_mask = PAD, and the mean over real tokens; batch 1 and T = max_len included."""
    vocab, d, h, n_layers, d_ff, classes, max_len, pad = 11, 8, 2, 2, 16, 3, 7, 3
    state, modules = _classifier_state(rng, vocab, d, h, n_layers, d_ff, classes, max_len, pad)
    what = f"TransformerClassifier({vocab}, {d}, {h}, {n_layers}, {d_ff}, {classes}, max_len={max_len}, pad_idx={pad})"
    for lengths, t in (([6, 2, 4, 1], 6), ([7], 7), ([7, 5], 7)):
        tokens = _tokens(rng, lengths, t, vocab, pad)
        res = student.probe("module_run", cls="TransformerClassifier", args=[vocab, d, h, n_layers, d_ff, classes],
                            kwargs={"max_len": max_len, "pad_idx": pad}, inputs=[tokens], state=state)
        checks.fail_on_probe_error(res, what, _classifier_hint(res))
        checks.assert_close(res["outs"][0], _expected_logits(modules, tokens, pad),
                            f"{what}.eval()(tokens), tokens.ne({pad}).sum(1) == tensor({lengths})",
                            mistakes=_classifier_mistakes(modules, tokens, pad))


@graded(task="TransformerClassifier", kind="accuracy", points=2, visibility="public")
def test_classifier_padding_invariance(student, rng):
    """In eval mode appending PAD tokens to every sequence changes no logit (PAD is neither attended to nor pooled)."""
    tokens = _tokens(rng, [5, 3, 1, 5], 5, 10, 0)
    longer = torch.cat([tokens, torch.zeros(4, 4, dtype=torch.long)], 1)
    what = "TransformerClassifier(10, 8, 2, 2, 16, 2, max_len=12)"
    res = student.probe("module_run", cls="TransformerClassifier", args=[10, 8, 2, 2, 16, 2],
                        kwargs={"max_len": 12}, inputs=[tokens], seed=seed_from(rng), modes=["train", "eval"],
                        more=[[longer]])
    checks.fail_on_probe_error(res, what)
    base = res["outs"][1]
    checks.assert_finite(base, f"{what}.eval()(tokens)", hint=ALL_PAD)
    checks.assert_close(res["more_outs"][0], base, f"{what}.eval()(F.pad(tokens, (0, 4)))", atol=1e-5, rtol=1e-4,
                        hint=POOL_PAD)


@graded(task="TransformerClassifier", kind="shape", points=1, visibility="hidden")
def test_classifier_all_pad_and_meta(student, rng):
    """A sequence of all PAD gives finite logits; on the meta device the logits stay on meta."""
    what = "TransformerClassifier(10, 8, 2, 2, 16, 2, max_len=12)"
    tokens = torch.cat([_tokens(rng, [4], 5, 10, 0), torch.zeros(1, 5, dtype=torch.long)])
    res = student.probe("module_run", cls="TransformerClassifier", args=[10, 8, 2, 2, 16, 2],
                        kwargs={"max_len": 12}, inputs=[tokens], seed=seed_from(rng))
    checks.fail_on_probe_error(res, what)
    checks.assert_shape(res["outs"][0], (2, 2), f"{what}.eval()(tokens), (tokens[1] == pad_idx).all()")
    checks.assert_finite(res["outs"][0], f"{what}.eval()(tokens), (tokens[1] == pad_idx).all()", hint=ALL_PAD)
    meta = torch.zeros(2, 5, dtype=torch.long, device="meta")
    res = student.probe("module_run", cls="TransformerClassifier", args=[10, 8, 2, 1, 16, 2], kwargs={"max_len": 12},
                        inputs=[meta], device="meta")
    checks.fail_on_probe_error(res, f"{what}.to('meta')(tokens)", META_DEVICE)
    checks.assert_device(res["outs"][0], "meta", f"{what}.to('meta')(tokens)", hint=META_DEVICE)
