"""Autotests for ex08_rnn: an LSTM cell from scratch, sine forecasting, the last valid step of padded
sequences, a packed bidirectional classifier and an encoder-decoder with teacher forcing.

The classes are driven through the probes in ``probes/ex08_rnn.py``, which load a state_dict made
here and return outputs and gradients; this file recomputes them with PyTorch's own ``nn.LSTMCell``,
``nn.LSTM`` and ``nn.GRU`` loaded with the same state. Training data are generated here with seeded
generators (no downloads); the probes get the training data and the evaluation inputs, the
evaluation targets stay here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_generated_speed

pytestmark = pytest.mark.exercise("ex08_rnn")

# -- feedback ----------------------------------------------------------------------------------------
GATE_ORDER = Msg("门顺序需与 PyTorch 一致：gates.chunk(4) 依次是 i, f, g, o（g 用 `tanh`），不是 i, f, o, g",
                 "Gate order is i, f, g, o as in PyTorch (g uses tanh): gates.chunk(4) gives i, f, g, o, not i, f, o, g")
CANDIDATE_TANH = Msg("候选记忆 g 使用 `tanh`，不是 `sigmoid`：`c' = f·c + i·tanh(g)`",
                     "Candidate uses tanh, not sigmoid: c' = f·c + i·tanh(g)")
CELL_TANH = Msg("`h' = o·tanh(c')`：输出前要对新的记忆 `c'` 取 `tanh`", "h' = o·tanh(c'): apply tanh to the new cell state")
INIT_STATE = Msg("初始状态需与输入同设备/同 dtype：`state` 为 None 时用 x.new_zeros(B, H)（或 torch.zeros(..., "
                 "device=x.device, dtype=x.dtype)）", "Init state on x.device and x.dtype: when state is None use "
                 "x.new_zeros(B, H) (or torch.zeros(..., device=x.device, dtype=x.dtype))")
CELL_PARAMS = Msg("参数应与 nn.LSTMCell 相同：weight_ih (4H, I)、weight_hh (4H, H)、bias_ih (4H,)、bias_hh (4H,)",
                  "The parameters must be nn.LSTMCell's: weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), "
                  "bias_hh (4H,)")
LOAD_FROM = Msg("load_from(cell) 要把 `cell` 的四个参数（weight_ih、weight_hh、bias_ih、bias_hh）的数值全部复制过来",
                "load_from(cell) must copy the values of all four of cell's parameters (weight_ih, weight_hh, "
                "bias_ih, bias_hh)")
INIT_UNIFORM = Msg("参数初始化为 U(−1/√H, 1/√H)：例如 nn.init.uniform_(p, -1 / math.sqrt(H), 1 / math.sqrt(H))",
                   "Initialise every parameter from U(−1/√H, 1/√H), e.g. nn.init.uniform_(p, -1 / math.sqrt(H), "
                   "1 / math.sqrt(H))")
BOTH_BIASES = Msg("两个偏置都要加：`gates = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh`",
                  "Add both biases: gates = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh")

BATCH_FIRST = Msg("输入被当作 (T, B, F)：请设置 batch_first=True（B≠T 时输出形状错误）",
                  "The input was read as (T, B, F): set batch_first=True (with B != T the output shape is wrong)")
LAST_STEP = Msg("应取最后一个时间步 out[:, -1]（不是第一个时间步 out[:, 0]，也不是最后一个样本 out[-1]）",
                "Use the last time step out[:, -1] (not the first step out[:, 0], nor the last sample out[-1])")
TOP_LAYER = Msg("多层时 h_n 形状为 (L, B, H)，取最顶层 h_n[-1]（h_n[0] 是第一层）",
                "With several layers h_n is (L, B, H): take h_n[-1], the top layer (h_n[0] is the first layer)")
FORECASTER_LAYERS = Msg("层的名字或形状与规格不同：self.rnn = nn.LSTM/nn.GRU(1, hidden_size, num_layers, "
                        "batch_first=True)，self.head = nn.Linear(hidden_size, 1)",
                        "Layer names or shapes differ from the spec: self.rnn = nn.LSTM/nn.GRU(1, hidden_size, "
                        "num_layers, batch_first=True), self.head = nn.Linear(hidden_size, 1)")
ROWS_ARE_STEPS = Msg("输出有 T 行而不是 B 行：应取最后一个时间步 out[:, -1]（out[-1] 是最后一个样本），并设置 batch_first=True",
                    "The output has T rows instead of B: use the last time step out[:, -1] (out[-1] is the last "
                    "sample), and set batch_first=True")
KEEP_BATCH = Msg("输出应为 (B, 1)：不要 squeeze()，B = 1 时也要保留批维",
                 "The output must be (B, 1): no squeeze(), keep the batch dimension for B = 1 too")

PER_SAMPLE = Msg("形状变成 (B,B,H)：需要逐样本索引 outputs[arange(B), lengths-1]",
                 "The shape became (B, B, H): index per sample, outputs[arange(B), lengths - 1]")
LENGTH_MINUS_ONE = Msg("索引越界/取到了补齐位置：最后有效位置是 `length−1`",
                       "Index out of range or a padded position: use length−1, the last valid position")
LENGTHS_DEVICE = Msg("`lengths` 可能与 `outputs` 不在同一设备上：先 lengths.to(outputs.device)，新建的索引也放到 "
                     "outputs.device 上", "lengths may be on another device than outputs: move them with "
                     "lengths.to(outputs.device), and make new index tensors on outputs.device")
VECTORISE = Msg("请用一次逐样本索引或 `gather` 完成，不要在 Python 中循环遍历样本",
                "Use one per-sample indexing or gather, without a Python loop over the samples")

BACKWARD_STATE = Msg("反向 LSTM 的最终状态在时间步 0，不在 -1；请用 h_n[-2], h_n[-1]",
                     "The backward final state is at t=0, not at -1: use h_n[-2] and h_n[-1]")
USE_PACKING = Msg("额外补齐改变了预测：请使用 pack_padded_sequence(emb, lengths.cpu(), batch_first=True, "
                  "enforce_sorted=False)", "Extra padding changed the predictions: use packing, "
                  "pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)")
BIDIR_SIZE = Msg("双向输出维度为 2×hidden_dim：self.fc = nn.Linear(2 * hidden_dim, num_classes)",
                 "Bidirectional doubles the size: self.fc = nn.Linear(2 * hidden_dim, num_classes)")
FORWARD_FIRST = Msg("拼接顺序为前向在前：torch.cat([h_n[-2], h_n[-1]], dim=1)",
                    "Concatenate the forward direction first: torch.cat([h_n[-2], h_n[-1]], dim=1)")
CLASSIFIER_LAYERS = Msg("层的名字或形状与规格不同：`embedding`、`lstm`（bidirectional=True, batch_first=True）、`fc`",
                        "Layer names or shapes differ from the spec: embedding, lstm (bidirectional=True, "
                        "batch_first=True), fc")
PADDING_IDX = Msg("嵌入层需要 padding_idx=pad_idx：该行初始化为 0 且得不到梯度",
                  "The embedding needs padding_idx=pad_idx: that row starts at zero and receives no gradient")
TOP_BIDIR = Msg("多层时 h_n 为 (num_layers·2, B, H)：最顶层的两个方向是 h_n[-2] 和 h_n[-1]",
                "With several layers h_n is (num_layers·2, B, H): the top layer's two directions are h_n[-2] and "
                "h_n[-1]")

OUTPUT_DEVICE = Msg("输出张量需与输入同设备：新建张量请用 device=src.device（测试在 `'meta'` 设备上运行）",
                    "Allocate outputs on src.device: create new tensors with device=src.device (a test runs on the "
                    "meta device)")
ALIGN_TGT = Msg("预测应与 tgt[:,1:] 对齐，不要包含 t=0 的空输出：返回 (B, T−1, V)",
                "Align predictions with tgt[:,1:], without an empty output for t=0: return (B, T−1, V)")
USE_GENERATOR = Msg("教师强制（`teacher_forcing_ratio`）的随机性不可复现：请使用传入的 `generator`（torch.rand((), generator=generator)），"
                    "不要动全局随机数", "Teacher forcing is not reproducible: use the provided generator "
                    "(torch.rand((), generator=generator)) and leave the global RNG alone")
TEACHER_FORCING = Msg("教师强制的约定：第 t 步之后抽一个 u，u < `teacher_forcing_ratio` 时下一步输入 tgt[:, t]，否则输入本步的 `argmax`",
                      "The teacher forcing convention: after step t draw one u; if u < ratio feed tgt[:, t] next, "
                      "otherwise this step's argmax")
SEQ2SEQ_LAYERS = Msg("层的名字或形状与规格不同：`encoder_embedding`、`encoder`、`decoder_embedding`、`decoder`（nn.LSTM, "
                     "batch_first=True）、`out`", "Layer names or shapes differ from the spec: encoder_embedding, "
                     "encoder, decoder_embedding, decoder (nn.LSTM, batch_first=True), out")
GREEDY = Msg("greedy_decode：第一步输入 sos_idx，之后输入上一步的 `argmax`；返回 (B, max_len) int64，不含 <SOS>",
             "greedy_decode: feed sos_idx first, then each step's argmax; return (B, max_len) int64 without <SOS>")
SEQ2SEQ_DEFAULTS = Msg("默认值为 embed_dim=32、hidden_dim=64：`Seq2Seq(vocab_size)` 各层的名字和形状应与 "
                       "`Seq2Seq(vocab_size, 32, 64)` 相同", "The defaults are embed_dim=32 and hidden_dim=64: "
                       "Seq2Seq(vocab_size) must have the layer names and shapes of Seq2Seq(vocab_size, 32, 64)")
DEFAULT_RATIO = Msg("`teacher_forcing_ratio` 默认为 0.5；教师强制的随机数要从传入的 `generator` 抽取"
                    "（torch.rand((), generator=generator)）", "teacher_forcing_ratio defaults to 0.5, and the teacher "
                    "forcing draws come from the provided generator (torch.rand((), generator=generator))")
ENCODER_STATE = Msg("解码器的初始状态应是编码器的最终 (h, c)：梯度要能经它传到编码器",
                    "The decoder's initial state is the encoder's final (h, c): gradients must reach the encoder "
                    "through it")

META_DEVICE = Msg("在 'meta' 设备上出错：`forward` 里新建的张量没有放到输入所在的设备上（device=x.device）",
                  "It failed on the meta device: a tensor made inside forward is not on the input's device "
                  "(device=x.device)")
DETACHED = Msg("输出脱离了计算图（detach() / .data / no_grad()），参数得不到梯度",
               "The output is detached from the graph (detach, .data, no_grad), so no parameter gets a gradient")
LOGITS = Msg("模型应输出原始 logits：最后一层后面不要 `softmax` 或激活", "The model must output raw logits: no softmax or "
             "activation after the last layer")


# -- helpers -------------------------------------------------------------------------------------------

def _check_structure(res: dict, shapes: dict[str, list[int]], what: str, hint: Msg,
                     special: dict[str, tuple[list[int], Msg]] | None = None) -> None:
    """The registered parameters are the spec's (names and shapes); ``special`` names a wrong shape with its hint."""
    got = res.get("param_shapes") or {}
    for name, (wrong, wrong_hint) in (special or {}).items():
        if got.get(name) == wrong and shapes[name] != wrong:
            checks.fail(Msg(f"{what}：{name} 的形状为 {wrong}，应为 {shapes[name]}",
                            f"{what}: {name} has shape {wrong}, expected {shapes[name]}"), wrong_hint)
    checks.fail_on_probe_error(res, what, hint)
    missing = sorted(set(shapes) - set(got))
    extra = sorted(set(got) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(got) if got[k] != shapes[k])
    if missing or extra or wrong:
        zh = "；".join(part for part in (
            f"缺少 {missing}" if missing else "", f"多出 {extra}" if extra else "",
            "形状 " + "、".join(f"{k} 为 {got[k]}（应为 {shapes[k]}）" for k in wrong) if wrong else "") if part)
        en = "; ".join(part for part in (
            f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
            "shapes " + ", ".join(f"{k} {got[k]} (expected {shapes[k]})" for k in wrong) if wrong else "") if part)
        checks.fail(Msg(f"{what}：参数与规格不同（{zh}）", f"{what}: the parameters differ from the spec ({en})"), hint)


def _random_state(rng: torch.Generator, shapes: dict[str, list[int]], scale: float = 0.4,
                  dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {name: (torch.rand(shape, generator=rng, dtype=dtype) * 2 - 1) * scale for name, shape in shapes.items()}


def _loaded(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    """``module`` holding the entries of ``state`` under ``prefix`` (cast to their dtype)."""
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    module = module.to(next(iter(own.values())).dtype)
    module.load_state_dict(own)
    return module


# -- T8.1 LSTMCellScratch --------------------------------------------------------------------------------
def _cell_shapes(i: int, h: int) -> dict[str, list[int]]:
    return {"weight_ih": [4 * h, i], "weight_hh": [4 * h, h], "bias_ih": [4 * h], "bias_hh": [4 * h]}


def _torch_cell_unroll(state: dict, xs: torch.Tensor, state0: list[torch.Tensor] | None,
                       grad_outputs: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list | None]:
    """``nn.LSTMCell`` with ``state`` unrolled over ``xs``; with ``grad_outputs`` also the gradients
    (parameters by name, then xs, h0, c0) the probe reports."""
    i, h = xs.shape[2], state["weight_hh"].shape[1]
    cell = _loaded(nn.LSTMCell(i, h), state, "")
    xs = xs.detach().clone().requires_grad_(grad_outputs is not None)
    start = [s.detach().clone().requires_grad_(grad_outputs is not None) for s in state0] if state0 else None
    hc = tuple(start) if start else None
    hs, cs = [], []
    for x in xs.unbind(0):
        hc = cell(x, hc)
        hs.append(hc[0])
        cs.append(hc[1])
    outs = [torch.stack(hs), torch.stack(cs)]
    if grad_outputs is None:
        return [o.detach() for o in outs], None
    names = [n for n, _ in cell.named_parameters()]
    wrt = [dict(cell.named_parameters())[n] for n in names] + [xs] + (start or [])
    grads = torch.autograd.grad(outs, wrt, grad_outputs)
    return [o.detach() for o in outs], [dict(zip(names, grads[:len(names)])), list(grads[len(names):])]


def _cell_variant(state: dict, xs: torch.Tensor, state0: list[torch.Tensor] | None, variant: str) -> list[torch.Tensor]:
    """A common mistake's unrolled outputs (for the diagnosis)."""
    n, hidden = xs.shape[1], state["weight_hh"].shape[1]
    h, c = state0 if state0 else (xs.new_zeros(n, hidden), xs.new_zeros(n, hidden))
    hs, cs = [], []
    for x in xs.unbind(0):
        pre = F.linear(x, state["weight_ih"], state["bias_ih"]) + F.linear(h, state["weight_hh"])
        if variant != "one_bias":
            pre = pre + state["bias_hh"]
        gate_i, gate_f, gate_g, gate_o = pre.chunk(4, 1)
        if variant == "ifog":
            gate_g, gate_o = gate_o, gate_g
        candidate = gate_g.sigmoid() if variant == "sigmoid_candidate" else gate_g.tanh()
        c = gate_f.sigmoid() * c + gate_i.sigmoid() * candidate
        h = gate_o.sigmoid() * (c if variant == "no_tanh_c" else c.tanh())
        hs.append(h)
        cs.append(c)
    return [torch.stack(hs), torch.stack(cs)]


CELL_MISTAKES = {"ifog": GATE_ORDER, "sigmoid_candidate": CANDIDATE_TANH, "no_tanh_c": CELL_TANH, "one_bias": BOTH_BIASES}


def _check_cell_outputs(res: dict, state: dict, xs: torch.Tensor, state0, what: str) -> None:
    checks.fail_on_probe_error(res, what, LOAD_FROM if res.get("load_error") else INIT_STATE if state0 is None else None)
    expected, _ = _torch_cell_unroll(state, xs, state0)
    variants = {name: _cell_variant(state, xs, state0, name) for name in CELL_MISTAKES}
    for k, label in enumerate(("h", "c")):
        mistakes = {hint: v[k] for name, v in variants.items() for hint in [CELL_MISTAKES[name]]}
        checks.assert_close(res["outs"][k], expected[k],
                            f"{what}: torch.stack([{label}_t for t in range({xs.shape[0]})])", mistakes=mistakes)


def _cell_case(rng: torch.Generator, steps: int, batch: int, i: int, h: int, dtype=torch.float32, with_state=True):
    state = _random_state(rng, _cell_shapes(i, h), 1.0 / math.sqrt(h) * 2, dtype)
    xs = torch.randn(steps, batch, i, generator=rng, dtype=dtype)
    state0 = [torch.randn(batch, h, generator=rng, dtype=dtype) * 0.5 for _ in range(2)] if with_state else None
    return state, xs, state0


@graded(task="LSTMCellScratch", kind="shape", points=1, visibility="public")
def test_cell_parameters_and_shapes(student, rng):
    """LSTMCellScratch(3, 5) has nn.LSTMCell's four parameters; one step on (4, 3) with state=None gives h and c of (4, 5), float32."""
    res = student.probe("cell_unroll", input_size=3, hidden_size=5, xs=torch.randn(1, 4, 3, generator=rng))
    _check_structure(res, _cell_shapes(3, 5), "LSTMCellScratch(3, 5)", CELL_PARAMS)
    bound = 1 / math.sqrt(5)
    for name, value in res["initial_state"].items():
        checks.assert_true(bool(torch.isfinite(value).all()) and float(value.abs().max()) <= bound
                           and float(value.std()) > bound / 10, Msg(
            f"LSTMCellScratch(3, 5)：新建的 {name} 不在 U(−1/√H, 1/√H) = U(−{bound:.3f}, {bound:.3f}) 中（或全相同）",
            f"LSTMCellScratch(3, 5): a new {name} is not drawn from U(−1/√H, 1/√H) = U(−{bound:.3f}, {bound:.3f}) "
            "(or all its values are equal)"), INIT_UNIFORM)
    checks.fail_on_probe_error(res, "LSTMCellScratch(3, 5)(x[4,3], None)", INIT_STATE)
    for k, label in enumerate(("h", "c")):
        checks.assert_dtype(res["outs"][k], torch.float32, f"LSTMCellScratch(3, 5)(x[4,3], None) → {label}")
        checks.assert_shape(res["outs"][k], (1, 4, 5), f"LSTMCellScratch(3, 5)(x[4,3], None) → torch.stack([{label}])")


@graded(task="LSTMCellScratch", kind="accuracy", points=2, visibility="public")
def test_cell_matches_lstmcell(student, rng):
    """After load_from(nn.LSTMCell(6, 4)), 10 unrolled steps on a batch of 3 equal nn.LSTMCell's h and c."""
    state, xs, state0 = _cell_case(rng, 10, 3, 6, 4)
    res = student.probe("cell_unroll", input_size=6, hidden_size=4, xs=xs, cell_state=state, state0=state0)
    what = "LSTMCellScratch(6, 4).load_from(nn.LSTMCell(6, 4)), x[10,3,6], state=(h0, c0)"
    checks.fail_on_probe_error(res, what, LOAD_FROM if res.get("load_error") else None)
    expected, _ = _torch_cell_unroll(state, xs, state0)
    if not all(isinstance(o, torch.Tensor) and o.shape == e.shape and torch.allclose(o, e, atol=1e-5)
               for o, e in zip(res["outs"], expected)):
        by_state_dict = student.probe("cell_unroll", input_size=6, hidden_size=4, xs=xs, cell_state=state,
                                      state0=state0, load="state_dict")
        if not by_state_dict.get("error") and not by_state_dict.get("load_error") and all(
                torch.allclose(o, e, atol=1e-5) for o, e in zip(by_state_dict["outs"], expected)):
            checks.fail(Msg(f"{what}：用 load_state_dict 载入时结果正确，用 load_from 时不正确",
                            f"{what}: the outputs are right after load_state_dict but wrong after load_from"), LOAD_FROM)
    _check_cell_outputs(res, state, xs, state0, what)


@graded(task="LSTMCellScratch", kind="gradient", points=2, visibility="public")
def test_cell_gradients_match_lstmcell(student, rng):
    """In float64 the gradients of 10 unrolled steps reach x, h0, c0 and the four parameters and equal nn.LSTMCell's."""
    state, xs, state0 = _cell_case(rng, 10, 3, 5, 4, dtype=torch.float64)
    gh, gc = torch.randn(10, 3, 4, generator=rng, dtype=torch.float64), torch.randn(10, 3, 4, generator=rng,
                                                                                    dtype=torch.float64)
    res = student.probe("cell_unroll", input_size=5, hidden_size=4, xs=xs, cell_state=state, state0=state0,
                        dtype=torch.float64, grad_outputs=[gh, gc])
    what = "LSTMCellScratch(5, 4), float64, x[10,3,5], state=(h0, c0)"
    _check_cell_outputs(res, state, xs, state0, what)
    _, (param_grads, input_grads) = _torch_cell_unroll(state, xs, state0, [gh, gc])
    for name, expected in param_grads.items():
        checks.assert_grad(res["grads"].get(name), expected, f"{what}: {name}", hint=DETACHED)
    for label, got, expected in zip(("x", "h0", "c0"), res["input_grads"], input_grads):
        checks.assert_grad(got, expected, f"{what}: {label}", hint=DETACHED)


@graded(task="LSTMCellScratch", kind="accuracy", points=1, visibility="hidden")
def test_cell_edge_cases(student, rng):
    """Batch 1 with input_size 7 > hidden_size 2, and hidden_size 6 > input_size 1, both in float64 from a zero
    state (state=None), weights loaded with load_state_dict."""
    for steps, batch, i, h in ((6, 1, 7, 2), (4, 5, 1, 6)):
        state, xs, _ = _cell_case(rng, steps, batch, i, h, dtype=torch.float64, with_state=False)
        res = student.probe("cell_unroll", input_size=i, hidden_size=h, xs=xs, cell_state=state, load="state_dict",
                            dtype=torch.float64)
        what = f"LSTMCellScratch({i}, {h}), float64, x[{steps},{batch},{i}], state=None"
        _check_cell_outputs(res, state, xs, None, what)
        checks.assert_dtype(res["outs"][0], torch.float64, what, hint=INIT_STATE)


@graded(task="LSTMCellScratch", kind="gradient", points=1, visibility="hidden")
def test_cell_finite_differences(student, rng):
    """Directional derivatives from backward agree with finite differences of forward (float64, 3 steps, batch 2)."""
    state, xs, state0 = _cell_case(rng, 3, 2, 3, 2, dtype=torch.float64)
    gh, gc = (torch.randn(3, 2, 2, generator=rng, dtype=torch.float64) for _ in range(2))
    common = {"input_size": 3, "hidden_size": 2, "cell_state": state, "state0": state0, "dtype": torch.float64}
    res = student.probe("cell_unroll", xs=xs, grad_outputs=[gh, gc], **common)
    what = "LSTMCellScratch(3, 2), float64"
    checks.fail_on_probe_error(res, what)
    u = torch.randn(xs.shape, generator=rng, dtype=torch.float64)
    u = u / u.norm()
    eps = 1e-6
    plus = student.probe("cell_unroll", xs=xs + eps * u, **common)
    minus = student.probe("cell_unroll", xs=xs - eps * u, **common)
    checks.fail_on_probe_error(plus, what)
    checks.fail_on_probe_error(minus, what)
    numeric = float(sum(((p - m) * g).sum() for p, m, g in zip(plus["outs"], minus["outs"], (gh, gc)))) / (2 * eps)
    checks.assert_tensor(res["input_grads"][0], f"{what}: x.grad")
    analytic = float((res["input_grads"][0] * u).sum())
    checks.assert_true(abs(analytic - numeric) <= 1e-5 + 1e-3 * abs(numeric), Msg(
        f"{what}：反向传播的方向导数 {analytic:.6g} 与数值差分 {numeric:.6g} 不一致",
        f"{what}: the directional derivative from backward, {analytic:.6g}, disagrees with finite differences, "
        f"{numeric:.6g}"), DETACHED)


@graded(task="LSTMCellScratch", kind="shape", points=1, visibility="hidden")
def test_cell_meta_device(student, rng):
    """On the meta device with state=None the outputs are (B, H) on meta: the zero state is made on x's device."""
    state, xs, _ = _cell_case(rng, 2, 3, 4, 5, with_state=False)
    what = "LSTMCellScratch(4, 5).to('meta')(x.to('meta'), None)"
    res = checks.call_or_fail(lambda: student.probe("cell_unroll", input_size=4, hidden_size=5, xs=xs, cell_state=state,
                                              device="meta"), what, INIT_STATE)
    checks.fail_on_probe_error(res, what, INIT_STATE)
    for k in range(2):
        checks.assert_shape(res["outs"][k], (2, 3, 5), what)
        checks.assert_device(res["outs"][k], "meta", what, hint=INIT_STATE)


# -- T8.2 SineForecaster -----------------------------------------------------------------------------------
def _rnn_shapes(prefix: str, kind: str, inputs: int, hidden: int, layers: int, bidirectional: bool = False
                ) -> dict[str, list[int]]:
    gates = 4 * hidden if kind == "lstm" else 3 * hidden
    shapes = {}
    for layer in range(layers):
        width = inputs if layer == 0 else hidden * (2 if bidirectional else 1)
        for suffix in ("", "_reverse") if bidirectional else ("",):
            shapes.update({f"{prefix}weight_ih_l{layer}{suffix}": [gates, width],
                           f"{prefix}weight_hh_l{layer}{suffix}": [gates, hidden],
                           f"{prefix}bias_ih_l{layer}{suffix}": [gates], f"{prefix}bias_hh_l{layer}{suffix}": [gates]})
    return shapes


def _forecaster_shapes(hidden: int, layers: int, cell: str) -> dict[str, list[int]]:
    return {**_rnn_shapes("rnn.", cell, 1, hidden, layers), "head.weight": [1, hidden], "head.bias": [1]}


def _forecast(state: dict, x: torch.Tensor, hidden: int, layers: int, cell: str, variant: str | None = None
              ) -> torch.Tensor:
    """The spec's forecast with PyTorch's own recurrent layer, or a common mistake's."""
    kind = nn.LSTM if cell == "lstm" else nn.GRU
    rnn = _loaded(kind(1, hidden, layers, batch_first=variant != "not_batch_first"), state, "rnn.")
    with torch.no_grad():
        out, h_n = rnn(x)
        h_n = h_n[0] if cell == "lstm" else h_n
        features = {"first_step": out[:, 0], "first_layer": h_n[0]}.get(variant, out[:, -1])
        return F.linear(features, state["head.weight"], state["head.bias"])


def _check_forecast(student, rng, batch: int, steps: int, hidden: int, layers: int, cell: str,
                    dtype=torch.float32) -> None:
    state = _random_state(rng, _forecaster_shapes(hidden, layers, cell), dtype=dtype)
    x = torch.randn(batch, steps, 1, generator=rng, dtype=dtype)
    kwargs = {"hidden_size": hidden, "num_layers": layers, "cell": cell}
    res = student.probe("module_run", cls="SineForecaster", args=[], kwargs=kwargs, inputs=[x], state=state,
                        dtype=dtype)
    what = f"SineForecaster({hidden}, num_layers={layers}, cell={cell!r})(x[{batch},{steps},1])"
    _check_structure(res, _forecaster_shapes(hidden, layers, cell), what, FORECASTER_LAYERS)
    checks.fail_on_probe_error(res, what)
    out = res["out"]
    mistakes = {LAST_STEP: _forecast(state, x, hidden, layers, cell, "first_step"),
                BATCH_FIRST: _forecast(state, x, hidden, layers, cell, "not_batch_first")}
    if layers > 1:
        mistakes[TOP_LAYER] = _forecast(state, x, hidden, layers, cell, "first_layer")
    checks.assert_close(out, _forecast(state, x, hidden, layers, cell), what, hint=_forecast_shape_hint(out, batch, steps),
                        mistakes=mistakes)


def _forecast_shape_hint(out, batch: int, steps: int) -> Msg | None:
    """The hint a wrong output shape points to."""
    shape = list(out.shape) if isinstance(out, torch.Tensor) else None
    if shape == [steps, 1] and batch != steps:
        return ROWS_ARE_STEPS
    if shape is not None and len(shape) == 3 and shape[1:] == [batch, 1]:
        return TOP_LAYER
    if shape in ([batch], [1], []):
        return KEEP_BATCH
    return None


@graded(task="SineForecaster", kind="shape", points=1, visibility="public")
def test_forecaster_shapes(student, rng):
    """The layers are rnn and head (defaults: 32 hidden units, one LSTM layer); (4, 1, 1) and (4, 50, 1) give (4, 1)
    for an LSTM and a GRU."""
    for cell in ("lstm", "gru"):
        for steps in (1, 50):
            x = torch.randn(4, steps, 1, generator=rng)
            kwargs = {"hidden_size": 8, "cell": cell} if cell == "gru" else {}
            res = student.probe("module_run", cls="SineForecaster", args=[], kwargs=kwargs, inputs=[x])
            what = f"SineForecaster({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})(x[4,{steps},1])"
            _check_structure(res, _forecaster_shapes(kwargs.get("hidden_size", 32), 1, cell), what, FORECASTER_LAYERS)
            checks.fail_on_probe_error(res, what)
            checks.assert_shape(res["out"], (4, 1), what, _forecast_shape_hint(res["out"], 4, steps))


@graded(task="SineForecaster", kind="accuracy", points=2, visibility="public")
def test_forecaster_matches_spec(student, rng):
    """With a state_dict made here the outputs equal nn.LSTM/nn.GRU(batch_first=True) → out[:, -1] → head (B=5, T=9)."""
    _check_forecast(student, rng, 5, 9, 6, 1, "lstm")
    _check_forecast(student, rng, 5, 9, 6, 1, "gru")


@graded(task="SineForecaster", kind="gradient", points=1, visibility="public")
def test_forecaster_gradients(student, rng):
    """In float64 every parameter's gradient, the recurrent weight_hh_l0 included, equals the spec's."""
    hidden = 5
    state = _random_state(rng, _forecaster_shapes(hidden, 1, "lstm"), dtype=torch.float64)
    x = torch.randn(3, 6, 1, generator=rng, dtype=torch.float64)
    g = torch.randn(3, 1, generator=rng, dtype=torch.float64)
    res = student.probe("module_run", cls="SineForecaster", args=[], kwargs={"hidden_size": hidden}, inputs=[x],
                        state=state, dtype=torch.float64, mode="train", grad_output=g)
    what = f"SineForecaster({hidden})(x[3,6,1]), float64"
    _check_structure(res, _forecaster_shapes(hidden, 1, "lstm"), what, FORECASTER_LAYERS)
    checks.fail_on_probe_error(res, what)
    checks.assert_attached(res["out"], what, hint=DETACHED)
    ref = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    rnn = nn.LSTM(1, hidden, batch_first=True).double()
    out, _ = torch.func.functional_call(rnn, {k[4:]: v for k, v in ref.items() if k.startswith("rnn.")}, (x,))
    expected = F.linear(out[:, -1], ref["head.weight"], ref["head.bias"])
    grads = torch.autograd.grad(expected, list(ref.values()), g)
    for (name, _), want in zip(ref.items(), grads):
        checks.assert_grad(res["grads"].get(name), want, f"{what}: {name}", hint=DETACHED)


@graded(task="SineForecaster", kind="accuracy", points=1, visibility="hidden")
def test_forecaster_edge_cases(student, rng):
    """B=3, T=7 (batch_first matters); B=1; two layers (the top layer's state); B = T with a GRU."""
    _check_forecast(student, rng, 3, 7, 4, 1, "lstm")
    _check_forecast(student, rng, 1, 5, 4, 1, "gru")
    _check_forecast(student, rng, 4, 6, 5, 2, "lstm")
    _check_forecast(student, rng, 3, 8, 5, 2, "gru")
    _check_forecast(student, rng, 6, 6, 4, 1, "lstm")


@graded(task="SineForecaster", kind="shape", points=1, visibility="hidden")
def test_forecaster_meta_device(student):
    """On the meta device a 2-layer GRU forecaster gives (B, 1) on meta."""
    x = torch.empty(3, 7, 1, device="meta")
    what = "SineForecaster(6, 2, 'gru').to('meta')(x[3,7,1].to('meta'))"
    res = checks.call_or_fail(lambda: student.probe("module_run", cls="SineForecaster", args=[], kwargs={
        "hidden_size": 6, "num_layers": 2, "cell": "gru"}, inputs=[x], device="meta"), what, META_DEVICE)
    checks.fail_on_probe_error(res, what, META_DEVICE)
    checks.assert_shape(res["out"], (3, 1), what)
    checks.assert_device(res["out"], "meta", what, hint=META_DEVICE)


def _make_sine(n: int, steps: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sine sequences with a random phase and frequency: ``(n, steps, 1)`` inputs and the next value ``(n, 1)``."""
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    freq = 0.15 + torch.rand(n, 1, generator=g) * 0.25
    wave = torch.sin(freq * torch.arange(steps + 1, dtype=torch.float32) + phase)
    return wave[:, :steps].unsqueeze(-1), wave[:, steps:]


def _fit_sine(student, p: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    g = torch.Generator().manual_seed(seed)
    x, y = _make_sine(p["train"] + p["eval"], p["steps"], g)
    n = p["train"]
    res = student.probe("fit_sine", kwargs={"hidden_size": p["hidden"], "cell": p["cell"]}, x_train=x[:n],
                        y_train=y[:n], x_eval=x[n:], epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"],
                        seed=seed)
    return res["pred"], y[n:], res.get("losses")


def _assert_mse(pred, target, threshold: float, what: str, curve: Any = None) -> None:
    checks.assert_shape(pred, target.shape, f"{what}: model(x_eval)", hint=BATCH_FIRST)
    checks.assert_finite(pred, f"{what}: model(x_eval)")
    mse = float(F.mse_loss(pred.double(), target.double()))
    checks.assert_at_most(mse, threshold, Msg(
        f"{what}：训练后在留出序列上的 MSE 为 {mse:.2e}，要求低于 {threshold:.0e}",
        f"{what}: the held-out MSE after training is {mse:.2e}, below {threshold:.0e} is required"),
        curve=curve, hint=LAST_STEP)


@graded(task="SineForecaster", kind="accuracy", points=2, visibility="public")
def test_forecaster_learns_sine(student, spec, rng):
    """An LSTM forecaster trained 15 epochs on 768 sequences of length 20 predicts 256 held-out next values well."""
    pred, target, losses = _fit_sine(student, spec.param("sine_fit_public"), seed_from(rng))
    _assert_mse(pred, target, spec.param("sine_mse_public"), "SineForecaster(cell='lstm')", losses)


@graded(task="SineForecaster", kind="accuracy", points=1, visibility="hidden")
def test_forecaster_learns_sine_gru(student, spec, rng):
    """The same with a GRU."""
    pred, target, losses = _fit_sine(student, spec.param("sine_fit_hidden"), seed_from(rng))
    _assert_mse(pred, target, spec.param("sine_mse_hidden"), "SineForecaster(cell='gru')", losses)


# -- T8.3 last_valid_step ------------------------------------------------------------------------------------
def _last_steps_by_loop(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.stack([outputs[b, int(lengths[b]) - 1] for b in range(outputs.shape[0])])


def _check_last_steps(student, outputs: torch.Tensor, lengths: torch.Tensor, what: str, edge: bool = False) -> None:
    out = checks.call_or_fail(lambda: student.last_valid_step(outputs, lengths), what, LENGTH_MINUS_ONE if edge else None)
    n, steps, hidden = outputs.shape
    hint = PER_SAMPLE if isinstance(out, torch.Tensor) and list(out.shape) == [n, n, hidden] else None
    mistakes = {}
    if bool((lengths < steps).all()):
        mistakes[LENGTH_MINUS_ONE] = _last_steps_by_loop(outputs, lengths + 1)
    checks.assert_close(out, _last_steps_by_loop(outputs, lengths), what, hint=hint, mistakes=mistakes)


@graded(task="last_valid_step", kind="shape", points=1, visibility="public")
def test_last_step_shape_and_dtype(student, rng):
    """(5, 7, 3) outputs give (5, 3); float64 stays float64."""
    for dtype in (torch.float32, torch.float64):
        outputs = torch.randn(5, 7, 3, generator=rng, dtype=dtype)
        lengths = torch.randint(1, 8, (5,), generator=rng)
        what = f"last_valid_step(outputs[5,7,3] {dtype}, lengths[5])"
        out = student.last_valid_step(outputs, lengths)
        hint = PER_SAMPLE if isinstance(out, torch.Tensor) and list(out.shape) == [5, 5, 3] else None
        checks.assert_shape(out, (5, 3), what, hint)
        checks.assert_dtype(out, dtype, what)


@graded(task="last_valid_step", kind="accuracy", points=2, visibility="public")
def test_last_step_values(student, rng):
    """Row b is outputs[b, lengths[b] - 1] for random lengths below T, and for lengths that include T."""
    outputs = torch.randn(9, 6, 4, generator=rng)
    _check_last_steps(student, outputs, torch.randint(1, 6, (9,), generator=rng), "last_valid_step(outputs[9,6,4], lengths < 6)")
    lengths = torch.randint(1, 7, (9,), generator=rng)
    lengths[0] = 6
    _check_last_steps(student, outputs, lengths, "last_valid_step(outputs[9,6,4], lengths <= 6)", edge=True)


@graded(task="last_valid_step", kind="gradient", points=1, visibility="public")
def test_last_step_gradient(student, rng):
    """The gradient with respect to outputs is grad_output at (b, lengths[b] - 1) and zero everywhere else."""
    outputs = torch.randn(6, 5, 3, generator=rng, dtype=torch.float64)
    lengths = torch.randint(1, 6, (6,), generator=rng)
    grad_output = torch.randn(6, 3, generator=rng, dtype=torch.float64)
    res = student.vjp("last_valid_step", (outputs, lengths), grad_output=grad_output, wrt=[0])
    what = "last_valid_step(outputs[6,5,3], lengths)"
    checks.assert_attached(res["output"], what, hint=DETACHED)
    expected = torch.zeros_like(outputs)
    expected[torch.arange(6), lengths - 1] = grad_output
    checks.assert_grad(res["grads"][0], expected, f"{what}: outputs[6,5,3]", hint=LENGTH_MINUS_ONE)


@graded(task="last_valid_step", kind="accuracy", points=1, visibility="hidden")
def test_last_step_edge_cases(student, rng):
    """Every length equal to T, every length 1, batch 1, and int32 lengths."""
    outputs = torch.randn(4, 5, 3, generator=rng)
    _check_last_steps(student, outputs, torch.full((4,), 5), "last_valid_step(outputs[4,5,3], lengths = 5)", edge=True)
    _check_last_steps(student, outputs, torch.ones(4, dtype=torch.long), "last_valid_step(outputs[4,5,3], lengths = 1)")
    _check_last_steps(student, outputs[:1], torch.tensor([3]), "last_valid_step(outputs[1,5,3], lengths = [3])")
    lengths = torch.randint(1, 6, (4,), generator=rng, dtype=torch.int32)
    _check_last_steps(student, outputs, lengths, "last_valid_step(outputs[4,5,3], lengths.int())", edge=True)


@graded(task="last_valid_step", kind="shape", points=1, visibility="hidden")
def test_last_step_meta_outputs_cpu_lengths(student, rng):
    """outputs on the meta device with lengths on the CPU give (B, H) on meta."""
    outputs = torch.empty(6, 5, 3, device="meta")
    lengths = torch.randint(1, 6, (6,), generator=rng)
    what = "last_valid_step(outputs[6,5,3].to('meta'), lengths[6].to('cpu'))"
    out = checks.call_or_fail(lambda: student.last_valid_step(outputs, lengths), what, LENGTHS_DEVICE)
    checks.assert_shape(out, (6, 3), what, hint=PER_SAMPLE)
    checks.assert_device(out, "meta", what, hint=LENGTHS_DEVICE)


@graded(task="last_valid_step", kind="speed", points=1, visibility="hidden")
def test_last_step_speed(student, reference_worker, spec, rng):
    """Gathering 4096 last steps costs at most a few times the reference's one indexing operation."""
    p = spec.param("last_step_speed")
    lengths = torch.randint(1, p["steps"] + 1, (p["batch"],), generator=rng)
    args = [{"randn": [p["batch"], p["steps"], p["hidden"]]}, lengths]
    result = compare_generated_speed(student, reference_worker, "last_valid_step", args, rng,
                                     rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                     factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "last_valid_step", hint=VECTORISE)


# -- T8.4 BiLSTMClassifier -------------------------------------------------------------------------------------
def _classifier_shapes(vocab: int, embed: int, hidden: int, classes: int, layers: int = 1) -> dict[str, list[int]]:
    return {"embedding.weight": [vocab, embed], **_rnn_shapes("lstm.", "lstm", embed, hidden, layers, True),
            "fc.weight": [classes, 2 * hidden], "fc.bias": [classes]}


def _classify(state: dict, tokens: torch.Tensor, lengths: torch.Tensor, hidden: int, layers: int = 1,
              variant: str | None = None, params: dict | None = None) -> torch.Tensor:
    """The spec's logits with PyTorch's own layers (differentiable in ``params`` when given), or a mistake's."""
    params = params if params is not None else state
    embed = params["embedding.weight"].shape[1]
    lstm = nn.LSTM(embed, hidden, layers, batch_first=True, bidirectional=True).to(params["embedding.weight"].dtype)
    weights = {k[len("lstm."):]: v for k, v in params.items() if k.startswith("lstm.")}
    emb = F.embedding(tokens, params["embedding.weight"])
    if variant == "unpacked":
        _, (h_n, _) = torch.func.functional_call(lstm, weights, (emb,))
    else:
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = torch.func.functional_call(lstm, weights, (packed,))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
    pieces = {"last_output": None, "backward_first": [h_n[-1], h_n[-2]], "first_layer": [h_n[0], h_n[1]]}
    if variant == "last_output":
        features = out[:, -1]
    else:
        features = torch.cat(pieces.get(variant) or [h_n[-2], h_n[-1]], dim=1)
    return F.linear(features, params["fc.weight"], params["fc.bias"])


def _sentences(rng: torch.Generator, batch: int, steps: int, vocab: int, pad: int = 0, full: int = 1
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths in [1, steps] (``full`` of them equal to ``steps``), never in decreasing order (nor all equal) unless
    ``full`` is the whole batch; tokens other than ``pad``, padded with it."""
    lengths = torch.randint(1, steps + 1, (batch,), generator=rng)
    lengths[torch.randperm(batch, generator=rng)[:full]] = steps
    if batch > 1 and bool((lengths[:-1] >= lengths[1:]).all()):
        lengths = lengths.flip(0)  # never sorted longest first by chance: enforce_sorted=True must fail
    if batch > full and steps > 1 and bool((lengths[:-1] >= lengths[1:]).all()):
        lengths[0] = 1  # all equal: sorted either way; one short row first makes the batch unsorted
    tokens = torch.randint(0, vocab - 1, (batch, steps), generator=rng)
    tokens = tokens + (tokens >= pad).long()  # every id but pad
    tokens[torch.arange(steps) >= lengths[:, None]] = pad
    return tokens, lengths


def _check_classifier(student, rng, batch: int, steps: int, layers: int = 1, pad: int = 0, dropout: float = 0.0,
                      extra_pad: int = 0, full: int = 1) -> None:
    vocab, embed, hidden, classes = 13, 5, 4, 3
    shapes = _classifier_shapes(vocab, embed, hidden, classes, layers)
    state = _random_state(rng, shapes, 0.5)
    tokens, lengths = _sentences(rng, batch, steps, vocab, pad, full)
    padded = torch.cat([tokens, torch.full((batch, extra_pad), pad)], dim=1)
    kwargs = {"num_layers": layers, "pad_idx": pad, "dropout": dropout}
    res = student.probe("module_run", cls="BiLSTMClassifier", args=[vocab, embed, hidden, classes], kwargs=kwargs,
                        inputs=[padded, lengths], state=state, more=[[tokens, lengths]] if extra_pad else None)
    what = (f"BiLSTMClassifier({vocab}, {embed}, {hidden}, {classes}, num_layers={layers}, pad_idx={pad}, "
            f"dropout={dropout})(tokens[{batch},{steps + extra_pad}], lengths)")
    _check_structure(res, shapes, what, CLASSIFIER_LAYERS, {"fc.weight": ([classes, hidden], BIDIR_SIZE)})
    checks.fail_on_probe_error(res, what)
    if extra_pad:  # the submission against itself first: the symptom is that padding matters at all
        unpadded = res["more_outs"][0]
        checks.assert_close(res["out"], unpadded, f"{what} == model(tokens[:, :-{extra_pad}], lengths)",
                            hint=USE_PACKING)
    with torch.no_grad():
        expected = _classify(state, tokens, lengths, hidden, layers)
        mistakes = {BACKWARD_STATE: _classify(state, padded, lengths, hidden, layers, "last_output"),
                    FORWARD_FIRST: _classify(state, tokens, lengths, hidden, layers, "backward_first"),
                    USE_PACKING: _classify(state, padded, lengths, hidden, layers, "unpacked")}
        if layers > 1:
            mistakes[TOP_BIDIR] = _classify(state, tokens, lengths, hidden, layers, "first_layer")
    checks.assert_close(res["out"], expected, what, mistakes=mistakes)


@graded(task="BiLSTMClassifier", kind="shape", points=1, visibility="public")
def test_classifier_shapes(student, rng):
    """BiLSTMClassifier(13, 6, 5, 3) has embedding (row 0, the default pad_idx, zero), lstm (both directions) and fc
    (2·5 → 3); unsorted lengths give (4, 3)."""
    tokens, lengths = _sentences(rng, 4, 7, 13)
    res = student.probe("module_run", cls="BiLSTMClassifier", args=[13, 6, 5, 3], inputs=[tokens, lengths])
    what = "BiLSTMClassifier(13, 6, 5, 3)(tokens[4,7], lengths)"
    shapes = _classifier_shapes(13, 6, 5, 3)
    _check_structure(res, shapes, what, CLASSIFIER_LAYERS, {"fc.weight": ([3, 5], BIDIR_SIZE)})
    checks.fail_on_probe_error(res, what)
    checks.assert_shape(res["out"], (4, 3), what)
    row = res["initial_state"]["embedding.weight"][0]
    checks.assert_true(bool((row == 0).all()), Msg(
        "BiLSTMClassifier(13, 6, 5, 3)：默认 pad_idx=0，新建模型的 embedding.weight[0] 应全为 0",
        "BiLSTMClassifier(13, 6, 5, 3): pad_idx is 0 by default, so a new model's embedding.weight[0] must be all "
        "zeros"), PADDING_IDX)


@graded(task="BiLSTMClassifier", kind="accuracy", points=2, visibility="public")
def test_classifier_matches_spec(student, rng):
    """With a state_dict made here, eval logits equal embedding → packed BiLSTM → cat(h_n[-2], h_n[-1]) → fc."""
    _check_classifier(student, rng, 6, 8)


@graded(task="BiLSTMClassifier", kind="accuracy", points=1, visibility="public")
def test_classifier_padding_invariance(student, rng):
    """Four extra PAD columns on the right do not change the eval logits."""
    _check_classifier(student, rng, 5, 6, extra_pad=4)


@graded(task="BiLSTMClassifier", kind="gradient", points=1, visibility="public")
def test_classifier_gradients(student, rng):
    """In float64 the gradients equal the spec's: both directions' weights get gradients, the pad_idx embedding row none
    (the sequences contain PAD tokens inside their length too), and that row starts at zero."""
    vocab, embed, hidden, classes, pad = 11, 4, 3, 2, 2
    shapes = _classifier_shapes(vocab, embed, hidden, classes)
    state = _random_state(rng, shapes, 0.5, dtype=torch.float64)
    tokens, lengths = _sentences(rng, 4, 6, vocab, pad, full=2)
    tokens[:, 0] = pad  # inside every sequence
    g = torch.randn(4, classes, generator=rng, dtype=torch.float64)
    res = student.probe("module_run", cls="BiLSTMClassifier", args=[vocab, embed, hidden, classes],
                        kwargs={"pad_idx": pad}, inputs=[tokens, lengths], state=state, dtype=torch.float64,
                        mode="train", grad_output=g)
    what = f"BiLSTMClassifier({vocab}, {embed}, {hidden}, {classes}, pad_idx={pad}), float64"
    _check_structure(res, shapes, what, CLASSIFIER_LAYERS, {"fc.weight": ([classes, hidden], BIDIR_SIZE)})
    checks.fail_on_probe_error(res, what)
    row = res["initial_state"].get("embedding.weight")
    checks.assert_true(isinstance(row, torch.Tensor) and bool((row[pad] == 0).all()), Msg(
        f"{what}：新建模型的 embedding.weight[{pad}] 不是全 0", f"{what}: a new model's embedding.weight[{pad}] is not "
        "all zeros"), PADDING_IDX)
    checks.assert_attached(res["out"], what, hint=DETACHED)
    params = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    logits = _classify(state, tokens, lengths, hidden, params=params)
    grads = dict(zip(params, torch.autograd.grad(logits, list(params.values()), g)))
    grads["embedding.weight"][pad] = 0  # padding_idx: that row gets no gradient
    got = res["grads"].get("embedding.weight")
    checks.assert_true(got is None or not bool(got[pad].abs().sum() > 0), Msg(
        f"{what}：embedding.weight[{pad}]（pad_idx 行）得到了梯度", f"{what}: embedding.weight[{pad}] (the pad_idx row) "
        "received a gradient"), PADDING_IDX)
    for name, want in grads.items():
        checks.assert_grad(res["grads"].get(name), want, f"{what}: {name}", hint=DETACHED)


@graded(task="BiLSTMClassifier", kind="accuracy", points=1, visibility="hidden")
def test_classifier_edge_cases(student, rng):
    """Batch 1; every length equal to T; a length-1 sequence; two layers with dropout 0.3 (eval) and pad_idx 3."""
    _check_classifier(student, rng, 1, 5)
    _check_classifier(student, rng, 4, 6, full=4)
    _check_classifier(student, rng, 4, 1)
    _check_classifier(student, rng, 5, 7, layers=2, pad=3, dropout=0.3, extra_pad=2)


@graded(task="BiLSTMClassifier", kind="shape", points=1, visibility="hidden")
def test_classifier_meta_device(student, rng):
    """With the model and tokens on the meta device and the lengths on the CPU, the logits are (B, C) on meta."""
    _, lengths = _sentences(rng, 4, 6, 13)
    tokens = torch.empty(4, 6, dtype=torch.long, device="meta")
    what = "BiLSTMClassifier(13, 5, 4, 3, num_layers=2).to('meta')(tokens[4,6].to('meta'), lengths[4].to('cpu'))"
    res = checks.call_or_fail(lambda: student.probe("module_run", cls="BiLSTMClassifier", args=[13, 5, 4, 3],
                                              kwargs={"num_layers": 2}, inputs=[tokens, lengths], device="meta"),
                        what, META_DEVICE)
    checks.fail_on_probe_error(res, what, META_DEVICE)
    checks.assert_shape(res["out"], (4, 3), what)
    checks.assert_device(res["out"], "meta", what, hint=META_DEVICE)


def _make_sentiment(n: int, p: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids 2-9 are positive, 10-17 negative, the rest of 2..vocab-1 neutral, 0 is PAD; label 1 when positives
    outnumber negatives. Ties are dropped, so a few less than ``n`` come back."""
    steps, vocab = p["steps"], p["vocab"]
    lengths = torch.randint(3, steps + 1, (n,), generator=g)
    tokens = torch.randint(2, vocab, (n, steps), generator=g) * (torch.arange(steps) < lengths[:, None])
    positive = ((tokens >= 2) & (tokens <= 9)).sum(1)
    negative = ((tokens >= 10) & (tokens <= 17)).sum(1)
    keep = positive != negative
    return tokens[keep], lengths[keep], (positive > negative)[keep].long()


@graded(task="BiLSTMClassifier", kind="accuracy", points=2, visibility="public")
def test_classifier_learns_sentiment(student, spec, rng):
    """Trained 6 epochs on ~900 synthetic sentences, it classifies held-out sentences by their positive/negative counts."""
    p = spec.param("sentiment_fit")
    seed = seed_from(rng)
    g = torch.Generator().manual_seed(seed)
    tokens, lengths, labels = _make_sentiment(p["train"] + p["eval"], p, g)
    n = p["train"] * len(labels) // (p["train"] + p["eval"])
    res = student.probe("fit_sentiment", kwargs={"vocab_size": p["vocab"], "embed_dim": p["embed"],
                        "hidden_dim": p["hidden"], "num_classes": 2}, tokens=tokens[:n], lengths=lengths[:n],
                        labels=labels[:n], eval_tokens=tokens[n:], eval_lengths=lengths[n:], epochs=p["epochs"],
                        lr=p["lr"], batch_size=p["batch_size"], seed=seed)
    what = f"fit_sentiment(BiLSTMClassifier({p['vocab']}, {p['embed']}, {p['hidden']}, 2))"
    logits = res["logits"]
    checks.assert_shape(logits, (len(labels) - n, 2), f"{what}: model(eval_tokens, eval_lengths)")
    checks.assert_finite(logits, f"{what}: model(eval_tokens, eval_lengths)")
    acc = float((logits.argmax(1) == labels[n:]).float().mean())
    threshold = spec.param("sentiment_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：训练后在留出句子上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy after training is {acc:.3f}, at least {threshold:.2f} is required"),
        curve=res.get("losses"), hint=BACKWARD_STATE)


# -- T8.5 Seq2Seq ----------------------------------------------------------------------------------------------
def _seq2seq_shapes(vocab: int, embed: int, hidden: int) -> dict[str, list[int]]:
    return {"encoder_embedding.weight": [vocab, embed], **_rnn_shapes("encoder.", "lstm", embed, hidden, 1),
            "decoder_embedding.weight": [vocab, embed], **_rnn_shapes("decoder.", "lstm", embed, hidden, 1),
            "out.weight": [vocab, hidden], "out.bias": [vocab]}


def _spec_decode(params: dict, src: torch.Tensor, tgt: torch.Tensor | None, ratio: float, seed: int | None,
                 steps: int | None = None, sos: int = 1) -> torch.Tensor:
    """The spec's decoding with PyTorch's nn.LSTM: logits ``(B, T-1, V)`` for ``tgt`` (teacher forcing drawn from a
    generator seeded ``seed``), or with ``tgt=None`` the greedy tokens of ``steps`` steps from ``sos``."""
    embed = params["encoder_embedding.weight"].shape[1]
    hidden = params["out.weight"].shape[1]
    lstm = nn.LSTM(embed, hidden, batch_first=True).to(params["out.weight"].dtype)

    def run(prefix: str, inputs: torch.Tensor, hc=None):
        weights = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        return torch.func.functional_call(lstm, weights, (inputs, hc) if hc is not None else (inputs,))

    _, hc = run("encoder.", F.embedding(src, params["encoder_embedding.weight"]))
    draws = torch.Generator().manual_seed(seed) if seed is not None else None
    token = tgt[:, 0] if tgt is not None else torch.full((src.shape[0],), sos, dtype=torch.long)
    total = tgt.shape[1] - 1 if tgt is not None else steps
    logits, tokens = [], []
    for t in range(1, total + 1):
        out, hc = run("decoder.", F.embedding(token, params["decoder_embedding.weight"])[:, None], hc)
        logits.append(F.linear(out[:, 0], params["out.weight"], params["out.bias"]))
        tokens.append(logits[-1].argmax(1))
        if tgt is None:
            token = tokens[-1]
        elif t < total:
            forced = float(torch.rand((), generator=draws)) < ratio if draws is not None else ratio >= 1
            token = tgt[:, t] if forced else tokens[-1]
    return torch.stack(logits, 1) if tgt is not None else torch.stack(tokens, 1)


def _seq2seq_case(rng: torch.Generator, batch: int, src_len: int, tgt_len: int, vocab: int = 9, embed: int = 5,
                  hidden: int = 6, dtype=torch.float32):
    state = _random_state(rng, _seq2seq_shapes(vocab, embed, hidden), 0.6, dtype)
    src = torch.randint(2, vocab, (batch, src_len), generator=rng)
    tgt = torch.randint(2, vocab, (batch, tgt_len), generator=rng)
    tgt[:, 0] = 1
    return state, src, tgt, [vocab, embed, hidden]


def _start_sensitive_case(rng: torch.Generator, batch: int, src_len: int, tgt_len: int):
    """A case whose greedy decoding changes when it starts from any token but <SOS>: a random decoder soon
    settles on a fixed argmax, so the embeddings and output weights are sharpened and cases are drawn until
    the start token shows (a few draws at most; measured: 5 % of sharpened cases do not show it)."""
    for _ in range(50):
        state, src, tgt, args = _seq2seq_case(rng, batch, src_len, tgt_len)
        state["decoder_embedding.weight"] *= 4
        state["out.weight"] *= 4
        state["out.bias"] *= 0.1
        with torch.no_grad():
            right = _spec_decode(state, src, None, 0.0, None, tgt_len - 1)
            if all(not torch.equal(right, _spec_decode(state, src, None, 0.0, None, tgt_len - 1, sos=token))
                   for token in range(args[0]) if token != 1):
                break
    return state, src, tgt, args


def _seq2seq_call(args, src, tgt, ratio=None, seed=None, device=None) -> str:
    """The label of a forward call: ``Seq2Seq(9, 5, 6)(src[3,4], tgt[3,6], 0.5)``, the ratio left out when the
    test relies on its default, with the generator when one seed matters, with ``.to(device)`` on model and inputs."""
    on = f".to({device!r})" if device is not None else ""
    parts = [f"src[{src.shape[0]},{src.shape[1]}]{on}", f"tgt[{tgt.shape[0]},{tgt.shape[1]}]{on}"]
    parts += [f"{ratio}"] if ratio is not None else []
    parts += [f"generator=torch.Generator().manual_seed({seed})"] if seed is not None else []
    return f"Seq2Seq{tuple(args)}{on}({', '.join(parts)})"


def _run_seq2seq(student, state, src, tgt, args, ratio, seeds, decode_len=None, global_seed=0, device=None):
    what = _seq2seq_call(args, src, tgt, ratio, device=device)
    res = checks.call_or_fail(lambda: student.probe(
        "seq2seq_run", args=args, kwargs={}, state=state, src=src, tgt=tgt, ratio=ratio, generator_seeds=seeds,
        decode_len=decode_len, global_seed=global_seed, device=device), what, OUTPUT_DEVICE if device else None)
    _check_structure(res, _seq2seq_shapes(*args), f"Seq2Seq{tuple(args)}", SEQ2SEQ_LAYERS)
    checks.fail_on_probe_error(res, what, OUTPUT_DEVICE if device == "meta" else None)
    return res, what


def _check_logits(out, expected: torch.Tensor, what: str, mistakes: dict | None = None, hint: Msg | None = None
                  ) -> None:
    b, steps, vocab = expected.shape
    if isinstance(out, torch.Tensor) and list(out.shape) == [b, steps + 1, vocab]:
        hint = ALIGN_TGT
    checks.assert_close(out, expected, what, hint=hint, mistakes=mistakes)


def _check_decoded(decoded, expected: torch.Tensor, what: str) -> None:
    checks.assert_dtype(decoded, torch.int64, what, GREEDY)
    checks.assert_shape(decoded, expected.shape, what, GREEDY)
    checks.assert_true(torch.equal(decoded, expected), Msg(
        f"{what}：解码出的词元与期望不同（{int((decoded != expected).sum())} 个位置）",
        f"{what}: the decoded tokens differ from the expected ones ({int((decoded != expected).sum())} positions)"),
        GREEDY)


@graded(task="Seq2Seq", kind="shape", points=1, visibility="public")
def test_seq2seq_shapes(student, rng):
    """Seq2Seq(9, 5, 6): forward(src[3,4], tgt[3,6], 1.0) is (3, 5, 9), aligned with tgt[:, 1:]; greedy_decode(src, 4)
    is (3, 4) int64; Seq2Seq(9) has embed_dim 32 and hidden_dim 64."""
    state, src, tgt, args = _seq2seq_case(rng, 3, 4, 6)
    res, what = _run_seq2seq(student, state, src, tgt, args, 1.0, [seed_from(rng)], decode_len=4)
    out = res["outs"][0]
    checks.assert_shape(out, (3, 5, 9), what, ALIGN_TGT if isinstance(out, torch.Tensor) and
                        list(out.shape) == [3, 6, 9] else None)
    checks.assert_dtype(res["decoded"], torch.int64, f"Seq2Seq{tuple(args)}.greedy_decode(src[3,4], 4)", GREEDY)
    checks.assert_shape(res["decoded"], (3, 4), f"Seq2Seq{tuple(args)}.greedy_decode(src[3,4], 4)", GREEDY)
    res = student.probe("module_run", cls="Seq2Seq", args=[9], inputs=[src, tgt], call_kwargs={
        "teacher_forcing_ratio": 1.0, "generator_seed": seed_from(rng)})
    _check_structure(res, _seq2seq_shapes(9, 32, 64), "Seq2Seq(9)", SEQ2SEQ_DEFAULTS)


@graded(task="Seq2Seq", kind="accuracy", points=2, visibility="public")
def test_seq2seq_matches_spec(student, rng):
    """With a state_dict made here: ratio 1.0 (always tgt) and 0.0 (always the argmax) give the spec's logits, and
    greedy_decode the spec's tokens (src length 5, tgt length 7)."""
    state, src, tgt, args = _start_sensitive_case(rng, 8, 5, 7)
    with torch.no_grad():
        for ratio in (1.0, 0.0):
            res, what = _run_seq2seq(student, state, src, tgt, args, ratio, [seed_from(rng)], decode_len=6)
            other = _spec_decode(state, src, tgt, 1.0 - ratio, 0)
            _check_logits(res["outs"][0], _spec_decode(state, src, tgt, ratio, 0), what, {TEACHER_FORCING: other})
        _check_decoded(res["decoded"], _spec_decode(state, src, None, 0.0, None, 6), f"Seq2Seq{tuple(args)}"
                       ".greedy_decode(src[8,5], 6)")


@graded(task="Seq2Seq", kind="accuracy", points=1, visibility="public")
def test_seq2seq_teacher_forcing_from_generator(student, rng):
    """With ratio 0.5 the choices come from the given generator, one draw after each step but the last:
    the logits equal the spec's for that seed."""
    state, src, tgt, args = _seq2seq_case(rng, 4, 4, 12)
    seed = seed_from(rng)
    res, what = _run_seq2seq(student, state, src, tgt, args, 0.5, [seed])
    with torch.no_grad():
        expected = _spec_decode(state, src, tgt, 0.5, seed)
    _check_logits(res["outs"][0], expected, _seq2seq_call(args, src, tgt, 0.5, seed), hint=USE_GENERATOR)
    res = student.probe("module_run", cls="Seq2Seq", args=args, inputs=[src, tgt], state=state,
                        call_kwargs={"generator_seed": seed})
    what = _seq2seq_call(args, src, tgt, seed=seed)
    checks.fail_on_probe_error(res, what)
    _check_logits(res["out"], expected, what, hint=DEFAULT_RATIO)


@graded(task="Seq2Seq", kind="gradient", points=1, visibility="public")
def test_seq2seq_gradients(student, rng):
    """In float64 with ratio 1.0 every parameter's gradient equals the spec's; the encoder's embedding gets one through
    the decoder's initial state."""
    state, src, tgt, args = _seq2seq_case(rng, 3, 4, 5, dtype=torch.float64)
    g = torch.randn(3, 4, args[0], generator=rng, dtype=torch.float64)
    res = student.probe("module_run", cls="Seq2Seq", args=args, inputs=[src, tgt], state=state, dtype=torch.float64,
                        mode="train", call_kwargs={"teacher_forcing_ratio": 1.0, "generator_seed": seed_from(rng)},
                        grad_output=g)
    what = f"{_seq2seq_call(args, src, tgt, 1.0)}, float64"
    _check_structure(res, _seq2seq_shapes(*args), what, SEQ2SEQ_LAYERS)
    checks.fail_on_probe_error(res, what)
    checks.assert_attached(res["out"], what, hint=DETACHED)
    got = res["grads"].get("encoder_embedding.weight")
    checks.assert_true(got is not None and bool(got.abs().sum() > 0), Msg(
        f"{what}：encoder_embedding.weight 没有得到梯度", f"{what}: encoder_embedding.weight received no gradient"),
        ENCODER_STATE)
    params = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    expected = _spec_decode(params, src, tgt, 1.0, None)
    _check_logits(res["out"], expected.detach(), what)
    grads = dict(zip(params, torch.autograd.grad(expected, list(params.values()), g)))
    for name, want in grads.items():
        checks.assert_grad(res["grads"].get(name), want, f"{what}: {name}", hint=DETACHED)


@graded(task="Seq2Seq", kind="accuracy", points=1, visibility="hidden")
def test_seq2seq_reproducible_and_global_rng(student, rng):
    """The same generator seed twice gives the same logits, another seed its own; the global RNG is untouched;
    batch 1 with tgt length 2 (no draw); ratio 0.0 equals greedy decoding."""
    state, src, tgt, args = _seq2seq_case(rng, 3, 6, 10)
    seeds = [seed_from(rng)] * 2 + [seed_from(rng)]
    global_seed = seed_from(rng)
    res, what = _run_seq2seq(student, state, src, tgt, args, 0.5, seeds, global_seed=global_seed)
    for out, seed in zip(res["outs"], seeds):
        with torch.no_grad():
            expected = _spec_decode(state, src, tgt, 0.5, seed)
        _check_logits(out, expected, _seq2seq_call(args, src, tgt, 0.5, seed), hint=USE_GENERATOR)
    for drawn, seed in zip(res["next_draws"], seeds):
        seeded = _seq2seq_call(args, src, tgt, 0.5, seed)
        generator = torch.Generator().manual_seed(seed)
        torch.rand(tgt.shape[1] - 2, generator=generator)  # one draw after each step but the last
        checks.assert_true(isinstance(drawn, torch.Tensor) and torch.equal(drawn, torch.rand(1, generator=generator)),
                           Msg(f"{seeded}：`forward` 从 `generator` 抽取的随机数个数不是 T−2 = {tgt.shape[1] - 2}",
                               f"{seeded}: forward did not draw T−2 = {tgt.shape[1] - 2} numbers from the generator"),
                           TEACHER_FORCING)
    untouched = torch.Generator().manual_seed(global_seed)
    checks.assert_true(torch.equal(res["after_draws"], torch.rand(4, generator=untouched)), Msg(
        f"{what}：`forward` 之后全局随机数状态变了", f"{what}: the global RNG state changed during forward"), USE_GENERATOR)
    state, src, tgt, args = _seq2seq_case(rng, 1, 3, 2)
    res, what = _run_seq2seq(student, state, src, tgt, args, 0.5, [seed_from(rng)], decode_len=1)
    with torch.no_grad():
        _check_logits(res["outs"][0], _spec_decode(state, src, tgt, 0.5, 0), what)
        greedy = f"Seq2Seq{tuple(args)}.greedy_decode(src[1,3], 1)"
        _check_decoded(res["decoded"], _spec_decode(state, src, None, 0.0, None, 1), greedy)
        _check_decoded(res["outs"][0].argmax(-1), res["decoded"], f"{what}.argmax(-1) == {greedy}")


@graded(task="Seq2Seq", kind="shape", points=1, visibility="hidden")
def test_seq2seq_meta_device(student, rng):
    """On the meta device forward (ratio 0.5) gives (B, T-1, V) and greedy_decode (B, max_len) int64, both on meta."""
    state, src, tgt, args = _seq2seq_case(rng, 3, 4, 6)
    res, what = _run_seq2seq(student, state, src, tgt, args, 0.5, [seed_from(rng)], decode_len=3, device="meta")
    checks.assert_shape(res["outs"][0], (3, 5, 9), what, ALIGN_TGT)
    checks.assert_device(res["outs"][0], "meta", what, hint=OUTPUT_DEVICE)
    greedy = f"Seq2Seq{tuple(args)}.to('meta').greedy_decode(src[3,4].to('meta'), 3)"
    checks.assert_shape(res["decoded"], (3, 3), greedy, GREEDY)
    checks.assert_device(res["decoded"], "meta", greedy, hint=OUTPUT_DEVICE)


def _make_reverse(n: int, length: int, vocab: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of ``length`` tokens from 2..vocab-1; targets <SOS>=1 followed by the source reversed."""
    src = torch.randint(2, vocab, (n, length), generator=g)
    return src, torch.cat([torch.ones(n, 1, dtype=torch.long), src.flip(1)], dim=1)


@graded(task="Seq2Seq", kind="accuracy", points=2, visibility="public")
def test_seq2seq_learns_reversal(student, spec, rng):
    """Trained with teacher forcing on 150 batches of 64, greedy decoding reverses held-out 5-token sequences."""
    p = spec.param("reverse_fit")
    seed = seed_from(rng)
    g = torch.Generator().manual_seed(seed)
    src, tgt = _make_reverse(p["steps"] * p["batch_size"], p["length"], p["vocab"], g)
    eval_src, eval_tgt = _make_reverse(p["eval"], p["length"], p["vocab"], g)
    shape = (p["steps"], p["batch_size"])
    res = student.probe("fit_reverse", kwargs={"vocab_size": p["vocab"], "embed_dim": p["embed"],
                        "hidden_dim": p["hidden"]}, src=src.view(*shape, -1), tgt=tgt.view(*shape, -1),
                        eval_src=eval_src, decode_len=p["length"], lr=p["lr"], seed=seed)
    what = f"fit_reverse(Seq2Seq({p['vocab']}, {p['embed']}, {p['hidden']}))"
    decoded = res["decoded"]
    checks.assert_shape(decoded, (p["eval"], p["length"]), f"{what}: greedy_decode(eval_src, {p['length']})", GREEDY)
    acc = float((decoded == eval_tgt[:, 1:]).float().mean())
    threshold = spec.param("reverse_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：训练后贪心解码的词元准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: greedy token accuracy after training is {acc:.3f}, at least {threshold:.2f} is required"),
        curve=res.get("losses"), hint=TEACHER_FORCING)
