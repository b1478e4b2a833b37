"""Autotests for ex03_modules: building, registering, initialising and running nn.Modules.

Modules never leave the worker: every test drives the submission through a probe in
``probes/ex03_modules.py`` that builds the module, runs it and reports outputs,
parameters, gradients and key names. The expectations are computed here, from those parameters
or from the layer sizes, never by the probe.
"""

from __future__ import annotations

import ast
import math
from typing import Any

import pytest
import torch

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded, grading_run
from grader.timing import assert_speed, compare_speed

pytestmark = pytest.mark.exercise("ex03_modules")

# -- feedback ----------------------------------------------------------------------------------------
REGISTER = Msg("子层没有注册，模型的参数偏少或为 0：请把层放进 nn.ModuleList 或 nn.Sequential，不要放在普通 Python 列表里",
               "Layers are not registered, so the model has too few (or no) parameters: keep them in nn.ModuleList "
               "or nn.Sequential, not in a plain Python list")
FLATTEN = Msg("批大小被改变了：请用 x.flatten(1)（或 x.reshape(x.size(0), -1)）从第 1 维展平，不要用 x.view(-1, in_dim)",
              "The batch size changed: flatten from dimension 1 with x.flatten(1) (or x.reshape(x.size(0), -1)), "
              "not x.view(-1, in_dim)")
NON_CONTIGUOUS = Msg("不连续的输入（转置后的视图）上出错：view() 需要连续内存，请用 x.flatten(1) 或 reshape()",
                     "A non-contiguous input (a transposed view) failed: view needs contiguous memory, use x.flatten(1) "
                     "or reshape")
ACT_AFTER_LAST = Msg("输出层后不应有激活或 Dropout：CrossEntropyLoss 需要原始 logits",
                     "No activation or Dropout after the output layer: CrossEntropyLoss needs raw logits")
BN_ORDER = Msg("BatchNorm 应在 Linear 之后、ReLU 之前：Linear → BatchNorm1d → ReLU → Dropout",
               "BatchNorm goes after the Linear and before the ReLU: Linear → BatchNorm1d → ReLU → Dropout")
BN_MISSING = Msg("batch_norm=True 时每个隐藏层都需要一个 nn.BatchNorm1d",
                 "batch_norm=True needs an nn.BatchNorm1d in every hidden block")
DROPOUT_EVAL = Msg("eval 模式下输出应是确定的：请用 nn.Dropout（它跟随 model.eval()），不要用总是生效的 F.dropout(x, p)",
                   "In eval mode the output must be deterministic: use nn.Dropout (it follows model.eval()), not "
                   "F.dropout(x, p), which is always on")
DROPOUT_TRAIN = Msg("train 模式下 `dropout > 0` 应生效：每个隐藏层后加 nn.Dropout(dropout)",
                    "In train mode dropout > 0 must be active: add nn.Dropout(dropout) after each hidden ReLU")
DETACHED = Msg("输出脱离了计算图（detach() / .data / no_grad()），参数得不到梯度",
               "The output is detached from the graph (detach, .data, no_grad), so no parameter gets a gradient")
UNUSED = Msg("输出在计算图上，这个参数却没有得到梯度：forward() 没有用到它所在的层（或它的梯度恰好全为 0）",
             "The output is on the graph, yet this parameter got no gradient: forward does not use its layer (or its "
             "gradient is exactly zero)")

BUFFERS = Msg("把缓冲区（BN 的 running_mean/running_var/num_batches_tracked）也算进参数了：请遍历 model.parameters()，"
              "不要用 state_dict()", "Buffers (BatchNorm's running_mean/running_var/num_batches_tracked) were counted as "
              "parameters: iterate over model.parameters(), not state_dict()")
TIED = Msg("共享（绑定）的权重被重复计数：model.parameters() 会去重，按模块逐个累加则不会",
           "Tied (shared) weights were counted twice: model.parameters() removes duplicates, summing module by module "
           "does not")
TRAINABLE = Msg("trainable_only 没有生效：为 True 时只统计 requires_grad=True 的参数，为 False 时统计全部",
                "trainable_only is not honoured: with True count only parameters with requires_grad=True, with False "
                "count them all")
NUMEL = Msg("统计的是参数张量的个数而不是元素个数：请对 p.numel() 求和",
            "That is the number of parameter tensors, not of elements: sum p.numel()")
INT_RESULT = Msg("请返回 Python int（对 p.numel() 求和得到的就是 int）", "Return a Python int (a sum of p.numel() is one)")

DEFAULT_INIT = Msg("权重看起来仍是 PyTorch 的默认初始化：init_weights 没有初始化这一层（检查 isinstance() 判断）",
                   "The weights still look like PyTorch's default initialisation: init_weights did not initialise this "
                   "layer (check the isinstance test)")
UNIFORM_BOUND = Msg("有权重超出 Xavier 均匀分布的边界 ±sqrt(6/(fan_in+fan_out))：请用 nn.init.xavier_uniform_（均匀分布），"
                    "不是 xavier_normal_", "Some weights exceed the Xavier-uniform bound ±sqrt(6/(fan_in+fan_out)): use "
                    "nn.init.xavier_uniform_ (uniform), not xavier_normal_")
FAN_OUT = Msg("Conv2d 权重的标准差符合 mode='fan_in'：请用 mode='fan_out'",
              "The Conv2d weights' std matches mode='fan_in': use mode='fan_out'")
KAIMING_NORMAL = Msg("Conv2d 权重看起来是均匀分布：请用 nn.init.kaiming_normal_（正态分布）",
                     "The Conv2d weights look uniform: use nn.init.kaiming_normal_ (a normal distribution)")
ZERO_BIAS = Msg("偏置应精确为 0（nn.init.zeros_）", "Biases must be exactly 0 (nn.init.zeros_)")
BIAS_NONE = Msg("bias=False 的层 m.bias 为 None：初始化偏置前请先判断 `m.bias is not None`",
                "A layer built with bias=False has m.bias None: check m.bias is not None before initialising it")
IN_PLACE = Msg("参数被替换成了新对象：请用原地的 nn.init.xxx_() 初始化，不要给 m.weight 赋新的 nn.Parameter"
               "（之前创建的优化器还拿着旧参数）", "Parameters were replaced by new objects: initialise in place with "
               "nn.init.*_() instead of assigning a new nn.Parameter (an optimizer made earlier still holds the old one)")
DEPRECATED = Msg("请使用带下划线的原地版本（如 nn.init.xavier_uniform_），不带下划线的版本已弃用",
                 "Use the in-place functions with the trailing underscore (e.g. nn.init.xavier_uniform_); the ones "
                 "without it are deprecated")
BN_INIT = Msg("BatchNorm 的权重应为 1、偏置应为 0", "BatchNorm weights must be 1 and biases 0")
UNTOUCHED = Msg("只初始化 Linear、Conv2d 和 BatchNorm：LayerNorm、Embedding 等其它层应保持不变",
                "Initialise only Linear, Conv2d and BatchNorm: LayerNorm, Embedding and the rest stay untouched")

SEQ_TYPE = Msg("build_sequential 应返回 nn.Sequential", "build_sequential must return an nn.Sequential")
SEQ_NAMES = Msg("子模块/state_dict 键名与规格不符：应为 fc1, relu1, dropout1, fc2, …（从 1 开始），例如 fc1.weight",
                "Children / state_dict key names do not match the spec: fc1, relu1, dropout1, fc2, … numbered from 1, "
                "e.g. fc1.weight")
OVERWRITTEN = Msg("层数少于预期：OrderedDict 中的键被覆盖了，每一层都需要自己的名字",
                  "Fewer layers than expected: keys in the OrderedDict were overwritten; every layer needs its own name")
DROPOUT_ZERO = Msg("dropout=0 时应省略所有 Dropout 层", "With dropout=0 leave every Dropout layer out")
DROPOUT_P = Msg("Dropout 层应使用 `p=dropout`", "The Dropout layers must use p=dropout")

HEADS_REGISTER = Msg("输出头没有注册：请用 nn.ModuleDict，普通 dict 里的头不会出现在 parameters()、state_dict() 中，"
                     "也不会被 .to() 移动", "The heads are not registered: keep them in an nn.ModuleDict; heads in a plain "
                     "dict are missing from parameters() and state_dict() and are not moved by .to()")
HEAD_KEYS = Msg("state_dict 键名应为 trunk.0.weight, trunk.0.bias, heads.<名字>.weight, heads.<名字>.bias",
                "The state_dict keys must be trunk.0.weight, trunk.0.bias, heads.<name>.weight, heads.<name>.bias")
HEAD_SIZE = Msg("每个头的输入是主干的输出：应为 nn.Linear(hidden, 输出维度)，不是 nn.Linear(in_dim, …)",
                "Each head takes the trunk's output: nn.Linear(hidden, size), not nn.Linear(in_dim, size)")
ONLY_SELECTED = Msg("只应计算被选中的头：先算出所有头再挑一个，代价会随头的数量增长",
                    "Compute only the selected head: running every head and picking one costs time that grows with the "
                    "number of heads")
UNKNOWN_HEAD = Msg("未知的头名应抛出 KeyError（直接索引 ModuleDict 即可）",
                   "An unknown head name must raise KeyError (indexing the ModuleDict does)")
ACT_AFTER_HEAD = Msg("输出头后不应有激活", "No activation after the head")


# -- helpers -------------------------------------------------------------------------------------------

def _distinct_dims(rng: torch.Generator, n: int, low: int = 3, high: int = 24) -> list[int]:
    return [int(v) + low for v in torch.randperm(high - low, generator=rng)[:n]]


def _blobs(rng: torch.Generator, n: int, dim: int, classes: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-variance Gaussian clusters around orthogonal centres at distance ``spread`` from 0."""
    basis, _ = torch.linalg.qr(torch.randn(dim, classes, generator=rng))
    centres = basis.T * spread
    labels = torch.randperm(n, generator=rng) % classes
    return centres[labels] + torch.randn(n, dim, generator=rng), labels


def _mlp_chain(res: dict, dims: list[int], what: str) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The registered Linear layers put in the order of ``dims`` (distinct sizes make it unambiguous)."""
    linears = res["linears"]
    shapes = [tuple(w.shape) for w, _ in linears]
    expected = len(dims) - 1
    if len(linears) < expected:
        checks.fail(Msg(f"{what}：只找到 {len(linears)} 个已注册的 nn.Linear，应为 {expected} 个",
                        f"{what}: found {len(linears)} registered nn.Linear layers, expected {expected}"), REGISTER)
    chain = []
    for d_in, d_out in zip(dims, dims[1:]):
        match = [pair for pair in linears if tuple(pair[0].shape) == (d_out, d_in)]
        if not match:
            checks.fail(Msg(f"{what}：缺少 nn.Linear({d_in}, {d_out})；找到的权重形状为 {shapes}",
                            f"{what}: no nn.Linear({d_in}, {d_out}) found; the weights have shapes {shapes}"))
        chain.append(match[0])
    if len(linears) != expected:
        checks.fail(Msg(f"{what}：有 {len(linears)} 个 nn.Linear，应为 {expected} 个（权重形状 {shapes}）",
                        f"{what}: {len(linears)} nn.Linear layers, expected {expected} (weight shapes {shapes})"))
    return chain


def _mlp_norms(res: dict, widths: list[int], what: str) -> dict[int, list]:
    norms = {int(n[0].shape[0]): n for n in res["norms"] if n[0] is not None}
    missing = [w for w in widths if w not in norms]
    if missing or len(res["norms"]) != len(widths):
        checks.fail(Msg(f"{what}：BatchNorm1d 层的宽度应为 {widths}，实际为 {sorted(norms)}",
                        f"{what}: expected BatchNorm1d layers of widths {widths}, found {sorted(norms)}"), BN_MISSING)
    return norms


def _batch_norm(h: torch.Tensor, stats: list, train: bool) -> torch.Tensor:
    weight, bias, mean, var, eps = stats
    if train:
        mean, var = h.mean(0), h.var(0, correction=0)
    return (h - mean) / torch.sqrt(var + eps) * weight + bias


def _mlp_expected(x: torch.Tensor, chain: list, norms: dict | None = None, train: bool = False,
                  relu_last: bool = False, bn_after_relu: bool = False) -> torch.Tensor:
    """The MLP of the spec computed from its own layers: Linear → [BN] → ReLU per block, Linear last."""
    h = x.flatten(1)
    for i, (w, b) in enumerate(chain):
        h = h @ w.T + (b if b is not None else 0)
        if i == len(chain) - 1:
            return torch.relu(h) if relu_last else h
        if norms and not bn_after_relu:
            h = _batch_norm(h, norms[w.shape[0]], train)
        h = torch.relu(h)
        if norms and bn_after_relu:
            h = _batch_norm(h, norms[w.shape[0]], train)
    return h


def _mlp_expected_grads(res: dict, x: torch.Tensor, g: torch.Tensor, dims: list[int], widths: list[int],
                        what: str) -> list[tuple[str, torch.Tensor]]:
    """(parameter name, gradient the grader computes) for every Linear and BatchNorm1d weight and bias of the
    MLP in eval mode, from the values the probe returned (names as in ``named_parameters()``)."""
    chain = _mlp_chain(res, dims, what)
    norms = _mlp_norms(res, widths, what) if widths else {}
    shapes = [tuple(w.shape) for w, _ in res["linears"]]
    chain_names = [res["linear_names"][shapes.index((d_out, d_in))] for d_in, d_out in zip(dims, dims[1:])]
    norm_index = {int(n[0].shape[0]): i for i, n in enumerate(res["norms"]) if n[0] is not None}
    leaf = lambda t: None if t is None else t.detach().clone().requires_grad_(True)  # noqa: E731
    chain_p = [(leaf(w), leaf(b)) for w, b in chain]
    norms_p = {width: [leaf(n[0]), leaf(n[1]), *n[2:]] for width, n in norms.items()}
    out = _mlp_expected(x, chain_p, norms_p)
    named = [(n, t) for names, ts in zip(chain_names, chain_p) for n, t in zip(names, ts) if t is not None]
    named += [(n, t) for width in widths for n, t in zip(res["norm_names"][norm_index[width]], norms_p[width][:2])]
    grads = torch.autograd.grad(out, [t for _, t in named], g)
    return [(str(n), want) for (n, _), want in zip(named, grads)]


def _run_mlp(student, **kwargs) -> dict:
    """The mlp_forward probe; an exception from the submission fails the test with its message."""
    res = student.probe("mlp_forward", **kwargs)
    if res["error"]:
        what = "MLP(" + ", ".join(f"{k}={v!r}" for k, v in kwargs["config"].items()) + ")"
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {res['error']}", f"{what}: your code raised {res['error']}"),
                    REGISTER if not res["linears"] else None)
    return res


def _batch_changed(out: object, batch: int) -> bool:
    """``out`` is a tensor whose first dimension is not the batch: the observation behind FLATTEN."""
    return isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] != batch


def _no_error(res: dict, what: str, hint: Msg | None = None) -> None:
    if res.get("error"):
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {res['error']}", f"{what}: your code raised {res['error']}"), hint)


# -- T3.1 MLP ------------------------------------------------------------------------------------------
MLP_PUBLIC = {"in_dim": 12, "hidden_dims": [10, 7], "out_dim": 5}


@graded(task="MLP", kind="shape", points=1, visibility="public")
def test_mlp_output_shape(student, rng):
    """MLP(12, [10, 7], 5) maps (6, 12) and (6, 3, 2, 2) inputs to (6, 5) logits."""
    for x in (torch.randn(6, 12, generator=rng), torch.randn(6, 3, 2, 2, generator=rng)):
        res = _run_mlp(student, config=MLP_PUBLIC, x=x, seed=seed_from(rng))
        out, what = res["outs"][0], f"MLP(12, [10, 7], 5)(x{list(x.shape)})"
        checks.assert_dtype(out, torch.float32, what)
        checks.assert_shape(out, (6, 5), what, hint=FLATTEN if _batch_changed(out, 6) else None)


@graded(task="MLP", kind="accuracy", points=2, visibility="public")
def test_mlp_forward_values(student, rng):
    """In float64 the output equals Linear → ReLU → Linear → ReLU → Linear computed from the model's own layers."""
    x = torch.randn(9, 3, 4, dtype=torch.float64, generator=rng)
    res = _run_mlp(student, config=MLP_PUBLIC, x=x, seed=seed_from(rng), dtype=torch.float64)
    chain = _mlp_chain(res, [12, 10, 7, 5], "MLP(12, [10, 7], 5)")
    expected = _mlp_expected(x, chain)
    checks.assert_close(res["outs"][0], expected, "MLP(12, [10, 7], 5).eval()(x)",
                        mistakes={ACT_AFTER_LAST: _mlp_expected(x, chain, relu_last=True)})


@graded(task="MLP", kind="gradient", points=2, visibility="public")
def test_mlp_parameters_registered(student, rng):
    """With batch_norm=True all 10 parameter tensors are registered and each gets a non-zero gradient."""
    config = {**MLP_PUBLIC, "batch_norm": True}
    x = torch.randn(8, 12, generator=rng)
    g = torch.randn(8, 5, generator=rng)
    res = student.probe("mlp_grads", config=config, x=x, grad_output=g, seed=seed_from(rng))
    shapes = sorted(res["param_shapes"])
    expected = sorted([[10, 12], [10], [10], [10], [7, 10], [7], [7], [7], [5, 7], [5]])
    checks.assert_true(len(shapes) >= len(expected), Msg(
        f"len(list(model.parameters())) = {len(shapes)}，应为 {len(expected)}（3 个 Linear 的权重和偏置，2 个 BatchNorm1d 的权重和偏置）",
        f"len(list(model.parameters())) = {len(shapes)}, expected {len(expected)} (weight and bias of 3 Linear and "
        "2 BatchNorm1d layers)"), REGISTER)
    checks.assert_equal(shapes, expected, "sorted(list(p.shape) for p in model.parameters())")
    checks.assert_attached(res["out"], "MLP(x)", hint=DETACHED)
    # Every registered Linear/BatchNorm1d parameter gets the gradient the grader computes from the layers'
    # own values (eval mode); the output is attached, so a missing or zero gradient is an unused layer.
    for name, want in _mlp_expected_grads(res, x, g, [12, 10, 7, 5], [10, 7], "MLP(12, [10, 7], 5, batch_norm=True)"):
        grad = res["grads"].get(name)
        used = grad is not None and bool(grad.abs().sum() > 0)
        checks.assert_grad(grad, want, f"{name}, MLP(x).backward(g)", hint=None if used else UNUSED)


def _fit(student, spec, rng, blobs: str, fit: str, config: dict) -> tuple[dict, torch.Tensor]:
    b = spec.param(blobs)
    x, y = _blobs(rng, b["n_train"] + b["n_eval"], b["dim"], b["classes"], b["spread"])
    n = b["n_train"]
    res = student.probe("mlp_fit", config={"in_dim": b["dim"], "out_dim": b["classes"], **config},
                        x_train=x[:n], y_train=y[:n], x_eval=x[n:], seed=seed_from(rng), **spec.param(fit))
    checks.assert_true(res.get("n_params") != 0, Msg("MLP 没有任何已注册的参数，无法训练",
                                                     "The MLP has no registered parameters, so it cannot be trained"),
                       REGISTER)
    checks.assert_shape(res["logits"], (b["n_eval"], b["classes"]), "model(x_eval)")
    # The logits are the eval-mode network of the trained layers, computed here from their values.
    dims = [b["dim"], *config["hidden_dims"], b["classes"]]
    widths = list(config["hidden_dims"]) if config.get("batch_norm") else []
    layers = res["layers"]
    chain = _mlp_chain(layers, dims, "model.eval()")
    norms = _mlp_norms(layers, widths, "model.eval()") if widths else None
    checks.assert_close(res["logits"], _mlp_expected(x[n:], chain, norms), "model.eval()(x_eval)",
                        atol=1e-4, rtol=1e-4, rel_l2=1e-4)
    res.update(expected_layers=(chain, norms), dims=dims, x_eval=x[n:])
    return res, y[n:]  # the held-out labels stay here


def _assert_accuracy(logits: torch.Tensor, labels: torch.Tensor, threshold: float, what: str,
                     curve: Any = None) -> None:
    checks.assert_finite(logits, what)
    acc = float((logits.argmax(1) == labels).float().mean())
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：训练后在留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy after training is {acc:.3f}, at least {threshold:.2f} is required"), curve=curve)


@graded(task="MLP", kind="accuracy", points=2, visibility="public")
def test_mlp_learns_blobs(student, spec, rng):
    """MLP(d, [32], k) trained briefly with Adam separates Gaussian blobs on held-out points."""
    res, labels = _fit(student, spec, rng, "blobs_public", "fit_public", {"hidden_dims": [32]})
    _assert_accuracy(res["logits"], labels, spec.param("accuracy_public"), "MLP(d, [32], k)", res.get("losses"))


@graded(task="MLP", kind="shape", points=1, visibility="hidden")
def test_mlp_edge_shapes(student, rng):
    """No hidden layer, batch 1 in eval mode with BN, float64, meta, image-shaped and non-contiguous inputs."""
    x = torch.randn(4, 6, generator=rng)
    res = _run_mlp(student, config={"in_dim": 6, "hidden_dims": [], "out_dim": 3}, x=x, seed=seed_from(rng))
    (w, b), = _mlp_chain(res, [6, 3], "MLP(6, [], 3)")
    checks.assert_close(res["outs"][0], x @ w.T + b, "MLP(6, [], 3)(x)")

    config = {"in_dim": 10, "hidden_dims": [8, 5], "out_dim": 4, "dropout": 0.3, "batch_norm": True}
    res = _run_mlp(student, config=config, x=torch.randn(1, 10, generator=rng), seed=seed_from(rng))
    checks.assert_shape(res["outs"][0], (1, 4), "MLP(10, [8, 5], 4, dropout=0.3, batch_norm=True).eval()(x[1, 10])")

    x64 = torch.randn(3, 10, dtype=torch.float64, generator=rng)
    res = _run_mlp(student, config=config, x=x64, seed=seed_from(rng), dtype=torch.float64)
    checks.assert_dtype(res["outs"][0], torch.float64, "MLP(...).double()(x)")

    res = _run_mlp(student, config=config, x=torch.empty(5, 10, device="meta"), seed=0, device="meta")
    checks.assert_shape(res["outs"][0], (5, 4), "MLP(...).to('meta')(x)")
    checks.assert_device(res["outs"][0], "meta", "MLP(...).to('meta')(x)")

    images = torch.randn(3, 1, 28, 28, generator=rng)
    res = _run_mlp(student, config={"in_dim": 784, "hidden_dims": [16], "out_dim": 10}, x=images,
                        seed=seed_from(rng))
    checks.assert_shape(res["outs"][0], (3, 10), "MLP(784, [16], 10)(x[3, 1, 28, 28])",
                        hint=FLATTEN if _batch_changed(res["outs"][0], 3) else None)

    x = torch.randn(5, 4, 3, generator=rng)
    res = student.probe("mlp_forward", config=MLP_PUBLIC, x=x.transpose(1, 2).contiguous(), seed=seed_from(rng),
                        transpose=[1, 2])
    what = "MLP(12, [10, 7], 5)(x.transpose(1, 2).contiguous().transpose(1, 2))"
    _no_error(res, what, NON_CONTIGUOUS)
    checks.assert_close(res["outs"][0], _mlp_expected(x, _mlp_chain(res, [12, 10, 7, 5], what)), what)


@graded(task="MLP", kind="shape", points=1, visibility="hidden")
def test_mlp_keeps_batch_dimension(student, rng):
    """Inputs whose feature count is not in_dim raise instead of being folded into a different batch size."""
    for shape in ((6, 8), (4, 2, 6)):  # 48 values: view(-1, 16) would silently make 3 rows
        x = torch.randn(*shape, generator=rng)
        res = student.probe("mlp_forward", config={"in_dim": 16, "hidden_dims": [9], "out_dim": 2}, x=x,
                            seed=seed_from(rng))
        if res["error"] is None:
            out = res["outs"][0]
            rows = list(out.shape)[0] if isinstance(out, torch.Tensor) and out.dim() else None
            checks.fail(Msg(f"MLP(16, [9], 2) 对形状 {list(shape)} 的输入（每个样本 {48 // shape[0]} 个特征）应报错，"
                            f"却返回了 {rows} 行（批大小为 {shape[0]}）",
                            f"MLP(16, [9], 2) should raise for an input of shape {list(shape)} "
                            f"({48 // shape[0]} features per sample) but returned {rows} rows for a batch of {shape[0]}"),
                        FLATTEN)


def _last_layer_preimage(out: torch.Tensor, last: tuple, what: str) -> torch.Tensor:
    """The hidden activations h with ``out = h W_lastᵀ + b_last`` (the last Linear has more outputs than
    inputs, so h is unique); fails when ``out`` is not of that form: something follows the last Linear."""
    out = checks.assert_tensor(out, what).double()
    w, b = last[0].double(), last[1]
    r = (out - (b.double() if b is not None else 0)).T
    z = torch.linalg.lstsq(w, r).solution
    residual = float((w @ z - r).norm() / (r.norm() + 1e-12))
    checks.assert_true(residual <= 1e-8, Msg(
        f"{what}：输出不在最后一个 nn.Linear 的值域内（相对残差 {residual:.2g}）：它后面还有别的层",
        f"{what}: the output is not W_last·h + b_last for any h (relative residual {residual:.2g}): something "
        "follows the last nn.Linear"), ACT_AFTER_LAST)
    return z.T


@graded(task="MLP", kind="accuracy", points=2, visibility="hidden")
def test_mlp_train_eval_modes(student, rng):
    """BN uses batch statistics in train mode; dropout acts only in train mode, as inverted dropout after each
    hidden ReLU; nothing follows the last Linear (the output width is the largest, so this shows in the values)."""
    d0, d1, d2 = _distinct_dims(rng, 3, 3, 16)
    d3 = int(torch.randint(20, 28, (1,), generator=rng))  # more outputs than any hidden width
    dims = [d0, d1, d2, d3]
    x = torch.randn(16, d0, dtype=torch.float64, generator=rng)
    bn = {"in_dim": d0, "hidden_dims": [d1, d2], "out_dim": d3, "batch_norm": True}
    res = _run_mlp(student, config=bn, x=x, modes=["train"], seed=seed_from(rng), dtype=torch.float64)
    chain = _mlp_chain(res, dims, "MLP(batch_norm=True)")
    norms = _mlp_norms(res, [d1, d2], "MLP(batch_norm=True)")
    checks.assert_close(res["outs"][0], _mlp_expected(x, chain, norms, train=True), "MLP(batch_norm=True).train()(x)",
                        mistakes={BN_ORDER: _mlp_expected(x, chain, norms, train=True, bn_after_relu=True),
                                  BN_MISSING: _mlp_expected(x, chain)})

    drop = {"in_dim": d0, "hidden_dims": [d1, d2], "out_dim": d3, "dropout": 0.5}
    res = _run_mlp(student, config=drop, x=x, modes=["eval", "eval", "train"], seed=seed_from(rng),
                   dtype=torch.float64)
    chain = _mlp_chain(res, dims, "MLP(dropout=0.5)")
    eval1, eval2, train = res["outs"]
    expected = _mlp_expected(x, chain)
    # Two eval outputs that differ from each other only choose the hint: the verdict is each one's value.
    random_eval = isinstance(eval2, torch.Tensor) and eval2.shape == eval1.shape and not torch.equal(eval1, eval2)
    checks.assert_close(eval1, expected, "MLP(dropout=0.5).eval()(x)", hint=DROPOUT_EVAL if random_eval else None,
                        mistakes={ACT_AFTER_LAST: _mlp_expected(x, chain, relu_last=True)})
    checks.assert_close(eval2, expected, "MLP(dropout=0.5).eval()(x) #2", hint=DROPOUT_EVAL)
    _last_layer_preimage(train, chain[-1], "MLP(dropout=0.5).train()(x)")

    # One hidden layer: the activations before the last Linear are known here, so each must be
    # dropped (0) or kept and scaled by 1 / (1 - p) = 2, and some must be dropped.
    one = {"in_dim": d0, "hidden_dims": [d1], "out_dim": d3, "dropout": 0.5}
    x = torch.randn(64, d0, dtype=torch.float64, generator=rng)
    res = _run_mlp(student, config=one, x=x, modes=["train"], seed=seed_from(rng), dtype=torch.float64)
    chain = _mlp_chain(res, [d0, d1, d3], "MLP(dropout=0.5)")
    what = f"MLP({d0}, [{d1}], {d3}, dropout=0.5).train()(x)"
    z = _last_layer_preimage(res["outs"][0], chain[-1], what)
    w1, b1 = chain[0]
    kept = 2 * torch.relu(x @ w1.T + b1)
    tol = 1e-6 * (1 + kept)
    dropped, doubled = z.abs() <= tol, (z - kept).abs() <= tol
    checks.assert_true(bool((dropped | doubled).all()) and bool((dropped & (kept > tol)).any()), Msg(
        f"{what}：隐藏层激活应为 0（被丢弃）或 ReLU 输出的 2 倍（保留并除以 1-p），且应有一部分被丢弃；"
        f"实际有 {int((~(dropped | doubled)).sum())} 个值两者都不是，{int((dropped & (kept > tol)).sum())} 个被丢弃",
        f"{what}: each hidden activation must be 0 (dropped) or twice the ReLU output (kept and divided by 1-p), and "
        f"some must be dropped; {int((~(dropped | doubled)).sum())} are neither, "
        f"{int((dropped & (kept > tol)).sum())} were dropped"), DROPOUT_TRAIN)

    plain = {"in_dim": d0, "hidden_dims": [d1, d2], "out_dim": d3}
    x = x[:16]
    res = _run_mlp(student, config=plain, x=x, modes=["train", "eval"], seed=seed_from(rng), dtype=torch.float64)
    chain = _mlp_chain(res, dims, "MLP(dropout=0)")
    for out, mode in zip(res["outs"], ("train", "eval")):
        checks.assert_close(out, _mlp_expected(x, chain), f"MLP(dropout=0).{mode}()(x)",
                            hint=Msg("dropout=0 且没有 BN 时 train 与 eval 的输出应相同",
                                     "With dropout=0 and no BN, train and eval outputs must agree"))


@graded(task="MLP", kind="accuracy", points=1, visibility="hidden")
def test_mlp_learns_blobs_with_bn_and_dropout(student, spec, rng):
    """MLP(d, [32, 16], k, dropout=0.2, batch_norm=True) learns harder blobs; its state_dict restores it exactly."""
    config = {"hidden_dims": [32, 16], "dropout": 0.2, "batch_norm": True}
    res, labels = _fit(student, spec, rng, "blobs_hidden", "fit_hidden", config)
    _assert_accuracy(res["logits"], labels, spec.param("accuracy_hidden"), "MLP(d, [32, 16], k, BN, dropout)",
                     res.get("losses"))
    # The twin that loaded the state_dict holds the trained values, and its logits are its own network's.
    hint = Msg("state_dict 应包含所有层（含 BN 的运行统计量）：请注册所有子层",
               "The state_dict must hold every layer (BN running statistics included): register every sub-layer")
    chain, norms = res["expected_layers"]
    what = "twin.load_state_dict(model.state_dict())"
    twin_chain = _mlp_chain(res["twin_layers"], res["dims"], what)
    twin_norms = _mlp_norms(res["twin_layers"], [32, 16], what)
    for i, ((w, b), (tw, tb)) in enumerate(zip(chain, twin_chain)):
        checks.assert_close(tw, w, f"twin.linears[{i}].weight", hint=hint)
        checks.assert_close(tb, b, f"twin.linears[{i}].bias", hint=hint)
    for width, stats in norms.items():
        for j, label in enumerate(("weight", "bias", "running_mean", "running_var")):
            checks.assert_close(twin_norms[width][j], stats[j], f"twin.BatchNorm1d({width}).{label}", hint=hint)
    checks.assert_close(res["twin_logits"], _mlp_expected(res["x_eval"], twin_chain, twin_norms),
                        f"{what}; twin.eval()(x_eval)", atol=1e-4, rtol=1e-4, rel_l2=1e-4, hint=hint)


# -- T3.2 count_parameters ---------------------------------------------------------------------------------
def _layer_params(spec: list) -> int:
    """Parameter elements of one layer description (the builder's format), counted by hand."""
    kind, *a = spec
    if kind == "linear":
        return a[0] * a[1] + (a[1] if len(a) < 3 or a[2] else 0)
    if kind == "conv2d":
        return a[1] * a[0] * a[2] * a[2] + (a[1] if len(a) < 4 or a[3] else 0)
    if kind in ("bn1d", "bn2d", "layernorm"):
        return 2 * a[0]
    if kind == "embedding":
        return a[0] * a[1]
    if kind == "seq":
        return sum(_layer_params(s) for s in a[0])
    return 0


def _layer_buffers(spec: list) -> int:
    kind, *a = spec
    if kind in ("bn1d", "bn2d"):
        return 2 * a[0] + 1
    if kind == "seq":
        return sum(_layer_buffers(s) for s in a[0])
    return 0


def _count(student, layers, what: str, **kwargs):
    got = student.probe("count_params", layers=layers, **kwargs)
    checks.assert_true(isinstance(got, int) and not isinstance(got, bool), Msg(
        f"{what}：应返回 int，实际得到 {type(got).__name__}（{got!r}）",
        f"{what}: expected an int, got {type(got).__name__} ({got!r})"), INT_RESULT)
    return got


@graded(task="count_parameters", kind="shape", points=1, visibility="public")
def test_count_parameters_single_linear(student):
    """nn.Linear(784, 128) has 784·128 + 128 = 100480 parameters, returned as a Python int."""
    got = _count(student, [["linear", 784, 128]], "count_parameters(nn.Linear(784, 128))")
    checks.assert_equal(got, 100480, "count_parameters(nn.Linear(784, 128))",
                        hint=NUMEL if got == 2 else None)


@graded(task="count_parameters", kind="accuracy", points=1, visibility="public")
def test_count_parameters_frozen_layer(student):
    """With the first Linear(20, 30) frozen: 310 trainable parameters by default, 940 with trainable_only=False."""
    layers = [["linear", 20, 30], ["relu"], ["linear", 30, 10]]
    model = "nn.Sequential(nn.Linear(20, 30).requires_grad_(False), nn.ReLU(), nn.Linear(30, 10))"
    # Each count names the mistake it equals: the other mode's count, or the number of tensors.
    for kwargs, expected, other, tensors in (({}, 310, 940, 2), ({"trainable_only": False}, 940, 310, 4)):
        call = f"count_parameters({model}" + "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
        got = _count(student, layers, call, frozen=[0], **kwargs)
        checks.assert_equal(got, expected, call,
                            hint=TRAINABLE if got == other else NUMEL if got == tensors else None)


@graded(task="count_parameters", kind="accuracy", points=1, visibility="public")
def test_count_parameters_tied_weights(student):
    """An Embedding(50, 16) and a Linear(16, 50) sharing one weight: 50·16 + 50 = 850 parameters."""
    layers = [["embedding", 50, 16], ["linear", 16, 50]]
    for trainable_only in (None, False):
        call = f"count_parameters(model, trainable_only={trainable_only}), model[1].weight = model[0].weight"
        got = _count(student, layers, call, tie=[[0, 1]], trainable_only=trainable_only)
        checks.assert_equal(got, 850, call, hint=TIED if got == 1650 else None)


@graded(task="count_parameters", kind="accuracy", points=1, visibility="hidden")
def test_count_parameters_ignores_buffers(student, rng):
    """BatchNorm buffers are not parameters; modules without parameters give 0."""
    a, b, c = _distinct_dims(rng, 3)
    layers = [["linear", a, b], ["bn1d", b], ["relu"], ["linear", b, c]]
    params = sum(_layer_params(s) for s in layers)
    with_buffers = params + sum(_layer_buffers(s) for s in layers)
    model = f"nn.Sequential(nn.Linear({a}, {b}), nn.BatchNorm1d({b}), nn.ReLU(), nn.Linear({b}, {c}))"
    for trainable_only in (True, False):
        call = f"count_parameters({model}, trainable_only={trainable_only})"
        got = _count(student, layers, call, trainable_only=trainable_only)
        checks.assert_equal(got, params, call, hint=BUFFERS if got == with_buffers else None)
    for layers, call in (([], "count_parameters(nn.Sequential())"),
                         ([["relu"], ["flatten"]], "count_parameters(nn.Sequential(nn.ReLU(), nn.Flatten()))")):
        got = _count(student, layers, call)
        checks.assert_equal(got, 0, call)


@graded(task="count_parameters", kind="accuracy", points=1, visibility="hidden")
def test_count_parameters_random_nested_models(student, rng):
    """Random nested models with convolutions, norms, bias-free layers and frozen parts count exactly."""
    for _ in range(3):
        c1, c2, c3, w, f1, f2, f3 = _distinct_dims(rng, 7, 2, 40)
        k = int(torch.randint(1, 4, (1,), generator=rng))
        layers = [
            ["conv2d", c1, c2, k, bool(torch.rand(1, generator=rng) < 0.5)],
            ["bn2d", c2],
            ["seq", [["conv2d", c2, c3, 1, False], ["relu"], ["seq", [["layernorm", w]]]]],
            ["flatten"],
            ["linear", f1, f2],
            ["bn1d", f2],
            ["linear", f2, f3, False],
        ]
        frozen = [i for i in range(len(layers)) if bool(torch.rand(1, generator=rng) < 0.4)]
        trainable = sum(_layer_params(s) for i, s in enumerate(layers) if i not in frozen)
        total = sum(_layer_params(s) for s in layers)
        call = f"count_parameters(nested_model(frozen={frozen}))"
        got = _count(student, layers, call, frozen=frozen)
        checks.assert_equal(got, trainable, call, hint=TRAINABLE if got == total else None)
        call = f"count_parameters(nested_model(frozen={frozen}), trainable_only=False)"
        got = _count(student, layers, call, frozen=frozen, trainable_only=False)
        checks.assert_equal(got, total, call,
                            hint=BUFFERS if got == total + sum(_layer_buffers(s) for s in layers) else None)


# -- T3.3 init_weights -----------------------------------------------------------------------------------
def _init(student, layers, what: str, **kwargs) -> dict:
    res = student.probe("init_apply", layers=layers, **kwargs)
    hint = BIAS_NONE if res["error"] and "NoneType" in res["error"] else None
    _no_error(res, what, hint)
    return res


def _check_std(w: torch.Tensor, target: float, rtol: float, what: str, mistakes: dict[Msg, float]) -> None:
    std = float(w.double().std())
    if abs(std / target - 1) <= rtol:
        return
    hint = next((msg for msg, wrong in mistakes.items() if abs(std / wrong - 1) <= rtol), None)
    checks.fail(Msg(f"{what}：权重标准差为 {std:.4g}，应为 {target:.4g}（允许相对误差 {rtol:g}）",
                    f"{what}: the weights' std is {std:.4g}, expected {target:.4g} (relative tolerance {rtol:g})"), hint)


def _check_zero(t: torch.Tensor, what: str) -> None:
    checks.assert_close(t, torch.zeros_like(t), what, atol=0, rtol=0, rel_l2=0, hint=ZERO_BIAS)


def _check_xavier(w: torch.Tensor, rtol: float, what: str) -> None:
    fan_out, fan_in = w.shape
    bound = math.sqrt(6 / (fan_in + fan_out))
    _check_std(w, bound / math.sqrt(3), rtol, what, {DEFAULT_INIT: 1 / math.sqrt(3 * fan_in)})
    top = float(w.abs().max())
    checks.assert_true(top <= bound * (1 + 1e-6), Msg(
        f"{what}：最大的 |w| = {top:.4g}，超过 Xavier 边界 {bound:.4g}",
        f"{what}: max|w| = {top:.4g} exceeds the Xavier bound {bound:.4g}"),
        UNIFORM_BOUND)


def _check_kaiming_fan_out(w: torch.Tensor, rtol: float, tail: float, what: str) -> None:
    out_c, in_c, kh, kw = w.shape
    fan_out, fan_in = out_c * kh * kw, in_c * kh * kw
    _check_std(w, math.sqrt(2 / fan_out), rtol, what,
               {FAN_OUT: math.sqrt(2 / fan_in), DEFAULT_INIT: 1 / math.sqrt(3 * fan_in)})
    ratio = float(w.abs().max() / w.double().std())
    checks.assert_true(ratio > tail, Msg(
        f"{what}：最大的 |w| 与标准差之比为 {ratio:.2f}，这么多正态分布样本的这个比值应远大于 {tail:g}",
        f"{what}: max|w|/std = {ratio:.2f}; a normal sample this size goes well beyond {tail:g}"), KAIMING_NORMAL)


@graded(task="init_weights", kind="accuracy", points=2, visibility="public")
def test_init_linear_xavier_uniform(student, spec, rng):
    """Linear(1000, 1000): |w| ≤ √(6/2000), std ≈ √(2/2000) within 5%, bias exactly 0."""
    res = _init(student, [["linear", 1000, 1000]], "nn.Linear(1000, 1000).apply(init_weights)", seed=seed_from(rng))
    _check_xavier(res["params"]["0.weight"], spec.param("init_std_rtol"), "Linear(1000, 1000).weight")
    _check_zero(res["params"]["0.bias"], "Linear(1000, 1000).bias")


@graded(task="init_weights", kind="accuracy", points=1, visibility="public")
def test_init_conv_kaiming_fan_out(student, spec, rng):
    """Conv2d(64, 256, 3): normal weights with std ≈ √(2/(256·9)) within 5% (fan_out), bias exactly 0."""
    res = _init(student, [["conv2d", 64, 256, 3]], "nn.Conv2d(64, 256, 3).apply(init_weights)", seed=seed_from(rng))
    _check_kaiming_fan_out(res["params"]["0.weight"], spec.param("init_std_rtol"), spec.param("normal_tail_ratio"),
                           "Conv2d(64, 256, 3).weight")
    _check_zero(res["params"]["0.bias"], "Conv2d(64, 256, 3).bias")


@graded(task="init_weights", kind="accuracy", points=1, visibility="public")
def test_init_batchnorm(student, rng):
    """BatchNorm1d and BatchNorm2d (parameters first set to 0.5) end with weight 1 and bias 0."""
    res = _init(student, [["bn1d", 6], ["bn2d", 4]], "nn.Sequential(nn.BatchNorm1d(6), nn.BatchNorm2d(4)).apply(init_weights)",
                prefill=0.5, seed=seed_from(rng))
    for name, value in (("0.weight", 1.0), ("0.bias", 0.0), ("1.weight", 1.0), ("1.bias", 0.0)):
        t = res["params"][name]
        checks.assert_close(t, torch.full_like(t, value), f"BatchNorm {name}", atol=0, rtol=0, rel_l2=0, hint=BN_INIT)


@graded(task="init_weights", kind="accuracy", points=1, visibility="hidden")
def test_init_layers_without_bias(student, spec, rng):
    """Linear and Conv2d built with bias=False are initialised without an error."""
    res = _init(student, [["linear", 300, 200, False], ["conv2d", 16, 32, 3, False]],
                "nn.Sequential(nn.Linear(300, 200, bias=False), nn.Conv2d(16, 32, 3, bias=False)).apply(init_weights)",
                seed=seed_from(rng))
    rtol = spec.param("init_std_rtol")
    _check_xavier(res["params"]["0.weight"], rtol, "Linear(300, 200, bias=False).weight")
    _check_kaiming_fan_out(res["params"]["1.weight"], rtol, spec.param("normal_tail_ratio"),
                           "Conv2d(16, 32, 3, bias=False).weight")


# ``nn.init`` functions without the trailing underscore: deprecated aliases of the in-place ones.
DEPRECATED_INIT = {"uniform", "normal", "constant", "eye", "dirac", "xavier_uniform", "xavier_normal",
                   "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"}


def _deprecated_init_calls(source: str) -> list[str]:
    """Names of deprecated ``nn.init`` functions the source uses (``init.x``, ``nn.init.x``, imports)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in DEPRECATED_INIT and (
                (isinstance(node.value, ast.Name) and node.value.id == "init")
                or (isinstance(node.value, ast.Attribute) and node.value.attr == "init")):
            found.add(f"init.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("nn.init"):
            found.update(f"init.{a.name}" for a in node.names if a.name in DEPRECATED_INIT)
    return sorted(found)


@graded(task="init_weights", kind="gradient", points=1, visibility="hidden")
def test_init_in_place_and_trainable(student, spec, request, rng):
    """Gradients reach the parameter objects the model held before init (as an optimizer made earlier
    holds them), so they stay the same trainable leaves; no deprecated nn.init function is used."""
    x = torch.randn(4, 6, generator=rng)
    g = torch.randn(4, 3, generator=rng)
    layers = [["linear", 6, 5], ["relu"], ["linear", 5, 3]]
    res = _init(student, layers, "model.apply(init_weights)", seed=seed_from(rng), x=x, grad_output=g)
    # What the probe saw next to student code only chooses the hint; the verdict is the gradients' values.
    hint = IN_PLACE if res["replaced"] or res["missing"] or res["not_trainable_leaf"] else None
    p = {name: t.detach().clone().requires_grad_(True) for name, t in res["params"].items()}
    out = torch.relu(x @ p["0.weight"].T + p["0.bias"]) @ p["2.weight"].T + p["2.bias"]
    expected = torch.autograd.grad(out, list(p.values()), g)
    for (name, _), want in zip(p.items(), expected):
        got = res["grads"][name]
        checks.assert_grad(got, want, f"params_before_init[{name!r}]", hint=IN_PLACE if got is None else hint)
    # Read by the grader from the submitted file, not from the warnings the probe caught next to student code.
    source_file = grading_run(request.config).modules_dir / f"{spec.id}.py"
    deprecated = _deprecated_init_calls(source_file.read_text(encoding="utf-8", errors="replace"))
    checks.assert_true(not deprecated, Msg(f"代码中使用了已弃用的初始化函数：{deprecated}",
                                           f"The code uses deprecated init functions: {deprecated}"), DEPRECATED)


@graded(task="init_weights", kind="accuracy", points=1, visibility="hidden")
def test_init_nested_model(student, rng):
    """In nested Sequentials every Linear/Conv2d/BatchNorm is initialised; LayerNorm and Embedding stay untouched."""
    layers = [
        ["seq", [["conv2d", 3, 8, 3, False], ["bn2d", 8], ["relu"],
                 ["seq", [["conv2d", 8, 16, 3], ["linear", 40, 30], ["layernorm", 30]]]]],
        ["embedding", 10, 4],
        ["linear", 30, 20],
    ]
    res = _init(student, layers, "nested_model.apply(init_weights)", prefill=0.5, seed=seed_from(rng))
    params = res["params"]
    for name in ("0.0.weight", "0.3.0.weight", "0.3.1.weight", "2.weight"):
        checks.assert_true(not bool((params[name] == 0.5).all()), Msg(
            f"嵌套模型中的 {name} 没有被初始化", f"{name} in the nested model was not initialised"),
            Msg("model.apply 会访问所有子模块：init_weights 只需处理传给它的那一个模块 m",
                "model.apply visits every sub-module: init_weights only handles the module m it is given"))
    for name in ("0.3.1.weight", "2.weight"):
        fan_out, fan_in = params[name].shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        checks.assert_true(float(params[name].abs().max()) <= bound * (1 + 1e-6), Msg(
            f"{name} 超出 Xavier 边界 {bound:.4g}", f"{name} exceeds the Xavier bound {bound:.4g}"), UNIFORM_BOUND)
    for name in ("0.3.0.bias", "0.3.1.bias", "2.bias", "0.1.bias"):
        _check_zero(params[name], name)
    checks.assert_close(params["0.1.weight"], torch.ones(8), "0.1.weight (BatchNorm2d)", atol=0, rtol=0, rel_l2=0,
                        hint=BN_INIT)
    for name in ("0.3.2.weight", "0.3.2.bias", "1.weight"):
        checks.assert_close(params[name], torch.full_like(params[name], 0.5), f"{name} (LayerNorm / Embedding)",
                            atol=0, rtol=0, rel_l2=0, hint=UNTOUCHED)


# -- T3.4 build_sequential --------------------------------------------------------------------------------
def _seq_children(sizes: list[int], dropout: float) -> list[list]:
    n = len(sizes) - 1
    children: list[list] = []
    for i in range(1, n + 1):
        children.append([f"fc{i}", "Linear", None])
        if i < n:
            children.append([f"relu{i}", "ReLU", None])
            if dropout > 0:
                children.append([f"dropout{i}", "Dropout", dropout])
    return children


def _seq_state(rng: torch.Generator, sizes: list[int], dtype=torch.float32) -> dict[str, torch.Tensor]:
    state = {}
    for i in range(1, len(sizes)):
        state[f"fc{i}.weight"] = torch.randn(sizes[i], sizes[i - 1], dtype=dtype, generator=rng) / math.sqrt(sizes[i - 1])
        state[f"fc{i}.bias"] = torch.randn(sizes[i], dtype=dtype, generator=rng) * 0.1
    return state


def _seq_expected(x: torch.Tensor, state: dict, n: int, relu_last: bool = False) -> torch.Tensor:
    h = x
    for i in range(1, n + 1):
        h = h @ state[f"fc{i}.weight"].T + state[f"fc{i}.bias"]
        if i < n or relu_last:
            h = torch.relu(h)
    return h


def _seq_out(res: dict, what: str) -> torch.Tensor:
    """The output of a sequential_probe run, or a failure naming what went wrong before it."""
    if res.get("load_error"):
        checks.fail(Msg(f"{what}：load_state_dict 失败：{res['load_error']}", f"{what}: load_state_dict failed: "
                        f"{res['load_error']}"), SEQ_NAMES)
    checks.assert_true(res["is_sequential"], Msg(f"{what}：返回了 {res['type']}", f"{what}: returned {res['type']}"),
                       SEQ_TYPE)
    if res.get("forward_error"):
        checks.fail(Msg(f"{what}：前向传播抛出了异常 {res['forward_error']}",
                        f"{what}: the forward pass raised {res['forward_error']}"))
    return res["out"]


def _check_seq_structure(res: dict, sizes: list[int], dropout: float, what: str) -> None:
    checks.assert_true(res["is_sequential"], Msg(f"{what}：返回了 {res['type']}", f"{what}: returned {res['type']}"),
                       SEQ_TYPE)
    expected = _seq_children(sizes, dropout)
    got = [list(c) for c in res["children"]]
    n_linear = sum(c[1] == "Linear" for c in got)
    checks.assert_true(n_linear >= len(sizes) - 1, Msg(
        f"{what}：只有 {n_linear} 个 Linear 子模块，应为 {len(sizes) - 1} 个（子模块：{[c[0] for c in got]}）",
        f"{what}: {n_linear} Linear children, expected {len(sizes) - 1} (children: {[c[0] for c in got]})"), OVERWRITTEN)
    if got and got[-1][1] != "Linear":
        checks.fail(Msg(f"{what}：最后一个子模块是 {got[-1][0]}（{got[-1][1]}）",
                        f"{what}: the last child is {got[-1][0]} ({got[-1][1]})"), ACT_AFTER_LAST)
    if dropout == 0 and any(c[1] == "Dropout" for c in got):
        checks.fail(Msg(f"{what}：子模块中有 Dropout", f"{what}: there are Dropout children"), DROPOUT_ZERO)
    ps = sorted({c[2] for c in got if c[1] == "Dropout"})
    if dropout > 0 and ps and ps != [dropout]:
        checks.fail(Msg(f"{what}：Dropout 的 p 为 {ps}，应为 {dropout}", f"{what}: Dropout p is {ps}, expected {dropout}"),
                    DROPOUT_P)
    checks.assert_equal([c[:2] for c in got], [c[:2] for c in expected],
                        f"list([name, type(m).__name__] for name, m in {what}.named_children())", hint=SEQ_NAMES)
    keys = [k for i in range(1, len(sizes)) for k in (f"fc{i}.weight", f"fc{i}.bias")]
    checks.assert_equal(res["state_keys"], keys, f"{what}.state_dict().keys()", hint=SEQ_NAMES)


def _check_dropout_effect(student, rng: torch.Generator, p: float) -> None:
    """The Dropout children drop: in train mode, with fc1 and fc2 set to identities (and a bias that
    keeps every ReLU input positive), the output is x + 10 with a fraction ``p`` of entries zeroed
    and the rest scaled by 1 / (1 - p). Judged on the values, so a module merely named Dropout fails."""
    d, b = 64, 32
    eye = torch.eye(d)
    state = {"fc1.weight": eye, "fc1.bias": torch.full((d,), 10.0), "fc2.weight": eye, "fc2.bias": torch.zeros(d)}
    x = torch.rand(b, d, generator=rng)
    what = f"build_sequential([{d}, {d}, {d}], dropout={p}).train()(x)"
    res = student.probe("sequential_probe", sizes=[d, d, d], dropout=p, state=state, x=x, train=True,
                        seed=seed_from(rng))
    out = _seq_out(res, what)
    checks.assert_shape(out, (b, d), what)
    kept = (x + 10) / (1 - p)
    zero = out.abs() < 1e-6
    scaled = (out - kept).abs() <= 1e-4 * kept
    dropped = float(zero.double().mean())
    ok = bool((zero | scaled).all()) and abs(dropped - p) <= 6 * (p * (1 - p) / out.numel()) ** 0.5
    checks.assert_true(ok, Msg(f"{what}：训练模式下应有约 {p:.0%} 的元素被置零、其余乘以 1/(1-p)，实际置零比例 {dropped:.1%}",
                               f"{what}: in train mode about {p:.0%} of the entries should be zeroed and the rest "
                               f"scaled by 1/(1-p); {dropped:.1%} were zeroed"), DROPOUT_P)


@graded(task="build_sequential", kind="shape", points=1, visibility="public")
def test_build_sequential_names(student, rng):
    """build_sequential([8, 16, 12, 4]) has children fc1, relu1, dropout1, …, fc3 and keys fc1.weight … fc3.bias."""
    sizes = [8, 16, 12, 4]
    res = student.probe("sequential_probe", sizes=sizes, x=torch.randn(5, 8, generator=rng))
    _check_seq_structure(res, sizes, 0.5, "build_sequential([8, 16, 12, 4])")
    checks.assert_shape(_seq_out(res, "build_sequential([8, 16, 12, 4])(x[5, 8])"), (5, 4),
                        "build_sequential([8, 16, 12, 4])(x[5, 8])")


@graded(task="build_sequential", kind="accuracy", points=1, visibility="public")
def test_build_sequential_forward(student, rng):
    """After loading a state_dict with the spec's key names, eval mode computes fc1 → ReLU → fc2 → ReLU → fc3."""
    sizes = [8, 16, 12, 4]
    state = _seq_state(rng, sizes)
    x = torch.randn(7, 8, generator=rng)
    res = student.probe("sequential_probe", sizes=sizes, x=x, state=state)
    out = _seq_out(res, "build_sequential([8, 16, 12, 4])")
    checks.assert_close(out, _seq_expected(x, state, 3), "build_sequential([8, 16, 12, 4]).eval()(x)",
                        mistakes={ACT_AFTER_LAST: _seq_expected(x, state, 3, relu_last=True)})


@graded(task="build_sequential", kind="gradient", points=1, visibility="public")
def test_build_sequential_gradient(student, rng):
    """Gradients reach fc1.weight and every other layer, equal to those of the same network computed here."""
    sizes = [6, 9, 4]
    state = _seq_state(rng, sizes, torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64, generator=rng)
    g = torch.randn(5, 4, dtype=torch.float64, generator=rng)
    res = student.probe("sequential_probe", sizes=sizes, x=x, state=state, grad_output=g, dropout=0.3,
                        dtype=torch.float64)
    checks.assert_attached(_seq_out(res, "build_sequential([6, 9, 4])"), "build_sequential([6, 9, 4])(x)", hint=DETACHED)
    p = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    expected = torch.autograd.grad(_seq_expected(x, p, 2), list(p.values()), g)
    for (name, _), want in zip(p.items(), expected):
        checks.assert_grad(res["grads"].get(name), want, name)


@graded(task="build_sequential", kind="shape", points=1, visibility="hidden")
def test_build_sequential_edge_cases(student, rng):
    """Two sizes give just fc1; dropout=0 leaves Dropout out; p follows the argument; float64 and meta work."""
    res = student.probe("sequential_probe", sizes=[5, 3], x=torch.randn(2, 5, generator=rng))
    _check_seq_structure(res, [5, 3], 0.5, "build_sequential([5, 3])")
    sizes = _distinct_dims(rng, 5)
    res = student.probe("sequential_probe", sizes=sizes, dropout=0.0, x=torch.randn(3, sizes[0], generator=rng))
    _check_seq_structure(res, sizes, 0.0, f"build_sequential({sizes}, dropout=0)")
    res = student.probe("sequential_probe", sizes=sizes, dropout=0.25, x=torch.randn(3, sizes[0], generator=rng))
    _check_seq_structure(res, sizes, 0.25, f"build_sequential({sizes}, dropout=0.25)")
    _check_dropout_effect(student, rng, 0.25)
    res = student.probe("sequential_probe", sizes=sizes, x=torch.randn(3, sizes[0], dtype=torch.float64, generator=rng),
                        dtype=torch.float64)
    checks.assert_dtype(_seq_out(res, "build_sequential(...).double()"), torch.float64,
                        "build_sequential(...).double()(x)")
    res = student.probe("sequential_probe", sizes=sizes, x=torch.empty(4, sizes[0], device="meta"), device="meta")
    checks.assert_shape(_seq_out(res, "build_sequential(...).to('meta')"), (4, sizes[-1]),
                        "build_sequential(...).to('meta')(x)")
    checks.assert_device(res["out"], "meta", "build_sequential(...).to('meta')(x)")


@graded(task="build_sequential", kind="accuracy", points=1, visibility="hidden")
def test_build_sequential_loads_reference_state(student, reference, rng):
    """A state_dict saved from the reference model loads (strictly) and gives the reference's eval output."""
    sizes = _distinct_dims(rng, 4)
    x = torch.randn(6, sizes[0], generator=rng)
    ref = reference.probe("sequential_probe", sizes=sizes, x=x, dropout=0.3, seed=seed_from(rng))
    res = student.probe("sequential_probe", sizes=sizes, x=x, dropout=0.3, state=ref["state"], seed=seed_from(rng))
    what = f"build_sequential({sizes}, dropout=0.3), load_state_dict(reference.state_dict())"
    checks.assert_close(_seq_out(res, what), ref["out"], what)


# -- T3.5 MultiHeadNet --------------------------------------------------------------------------------------
HEADS = {"cls": 4, "reg": 1, "aux": 7}


def _head_keys(heads: dict[str, int]) -> list[str]:
    return sorted(["trunk.0.weight", "trunk.0.bias"] + [f"heads.{n}.{p}" for n in heads for p in ("weight", "bias")])


@graded(task="MultiHeadNet", kind="shape", points=1, visibility="public")
def test_multihead_output_shapes(student, rng):
    """MultiHeadNet(6, 9, {cls: 4, reg: 1, aux: 7}) gives (B, size) per head; an unknown head raises KeyError."""
    x = torch.randn(5, 6, generator=rng)
    seed = seed_from(rng)
    for head, size in HEADS.items():
        res = student.probe("multihead_forward", in_dim=6, hidden=9, heads=HEADS, x=x, head=head, seed=seed, catch=True)
        mismatch = "cannot be multiplied" in (res.get("error") or "")  # a head that expects in_dim features
        _no_error(res, f"MultiHeadNet(6, 9, heads)(x, {head!r})", HEAD_SIZE if mismatch else None)
        checks.assert_shape(res["out"], (5, size), f"MultiHeadNet(6, 9, heads)(x[5, 6], {head!r})")
    res = student.probe("multihead_forward", in_dim=6, hidden=9, heads=HEADS, x=x, head="nope", seed=seed, catch=True)
    raised = res.get("error_type")
    if raised != "KeyError":
        zh, en = (f"抛出了 {raised}", f"raised {raised}") if raised else ("正常返回了", "returned normally")
        checks.fail(Msg(f"MultiHeadNet(6, 9, heads)(x, 'nope') 应抛出 KeyError，实际{zh}",
                        f"MultiHeadNet(6, 9, heads)(x, 'nope') should raise KeyError, but {en}"), UNKNOWN_HEAD)


@graded(task="MultiHeadNet", kind="accuracy", points=1, visibility="public")
def test_multihead_values(student, rng):
    """With given weights each head computes head(ReLU(trunk_linear(x)))."""
    in_dim, hidden = 6, 9
    state = {"trunk.0.weight": torch.randn(hidden, in_dim, generator=rng) * 0.5,
             "trunk.0.bias": torch.randn(hidden, generator=rng) * 0.5}
    for name, size in HEADS.items():
        state[f"heads.{name}.weight"] = torch.randn(size, hidden, generator=rng) * 0.5
        state[f"heads.{name}.bias"] = torch.randn(size, generator=rng) * 0.5
    x = torch.randn(8, in_dim, generator=rng)
    features = torch.relu(x @ state["trunk.0.weight"].T + state["trunk.0.bias"])
    for name in HEADS:
        res = student.probe("multihead_forward", in_dim=in_dim, hidden=hidden, heads=HEADS, x=x, head=name, state=state)
        if res["load_error"]:
            checks.fail(Msg(f"load_state_dict 失败，你的键为 {res['state_keys']}",
                            f"load_state_dict failed; your keys are {res['state_keys']}"),
                        HEADS_REGISTER if not any(k.startswith("heads.") for k in res["state_keys"]) else HEAD_KEYS)
        expected = features @ state[f"heads.{name}.weight"].T + state[f"heads.{name}.bias"]
        checks.assert_close(res["out"], expected, f"MultiHeadNet(x, {name!r})",
                            mistakes={ACT_AFTER_HEAD: torch.relu(expected)})


@graded(task="MultiHeadNet", kind="gradient", points=2, visibility="public")
def test_multihead_heads_registered(student, rng):
    """Every head is registered; backward through 'reg' reaches the trunk and 'reg' only."""
    x = torch.randn(5, 6, generator=rng)
    g = torch.randn(5, 1, generator=rng)
    res = student.probe("multihead_grads", in_dim=6, hidden=9, heads=HEADS, x=x, head="reg", grad_output=g,
                        seed=seed_from(rng))
    head_keys = [k for k in _head_keys(HEADS) if k.startswith("heads.")]
    unregistered = [k for k in head_keys if k not in res["registered"]]
    checks.assert_true(not unregistered, Msg(f"这些输出头参数不在 model.parameters() 中：{unregistered}",
                                             f"These head parameters are missing from model.parameters(): {unregistered}"),
                       HEADS_REGISTER)
    checks.assert_equal(res["state_keys"], _head_keys(HEADS), "sorted(model.state_dict().keys())", hint=HEAD_KEYS)
    checks.assert_attached(res["out"], "MultiHeadNet(x, 'reg')", hint=DETACHED)
    # The output and the gradients, computed here from the parameters' values.
    names = ("trunk.0.weight", "trunk.0.bias", "heads.reg.weight", "heads.reg.bias")
    p = {name: res["params"][name].detach().clone().requires_grad_(True) for name in names}
    out = torch.relu(x @ p["trunk.0.weight"].T + p["trunk.0.bias"]) @ p["heads.reg.weight"].T + p["heads.reg.bias"]
    checks.assert_close(res["out"], out.detach(), "MultiHeadNet(x, 'reg')", mistakes={ACT_AFTER_HEAD: torch.relu(out.detach())})
    for name, want in zip(names, torch.autograd.grad(out, list(p.values()), g)):
        grad = res["grads"][name]
        used = grad is not None and bool(grad.abs().sum() > 0)
        checks.assert_grad(grad, want, f"{name}, MultiHeadNet(x, 'reg').backward(g)", hint=None if used else UNUSED)
    for name in ("heads.cls.weight", "heads.cls.bias", "heads.aux.weight", "heads.aux.bias"):
        checks.assert_no_grad(res["grads"][name], f"{name}, MultiHeadNet(x, 'reg').backward()", hint=ONLY_SELECTED)


@graded(task="MultiHeadNet", kind="shape", points=1, visibility="hidden")
def test_multihead_devices_and_names(student, rng):
    """.to('meta') moves every head and each head then runs on meta; .double() works; dotted head names are refused."""
    heads = {"a": 3, "b": 5, "c": 2}
    res = student.probe("multihead_moved", in_dim=7, hidden=11, heads=heads, batch=4, device="meta")
    stray = sorted(n for n, d in res["devices"].items() if not d.startswith("meta"))
    checks.assert_true(not stray, Msg(f".to('meta') 之后这些参数仍不在 'meta' 设备上：{stray}",
                                      f"After .to('meta') these parameters are not on meta: {stray}"), HEADS_REGISTER)
    for name, size in heads.items():  # every head moved (checked above): an error here is not about registering
        if name in res["errors"]:
            checks.fail(Msg(f"'meta' 设备上的头 {name!r} 出错：{res['errors'][name]}",
                            f"Head {name!r} on the meta device raised {res['errors'][name]}"))
        checks.assert_shape(res["outs"][name], (4, size), f"MultiHeadNet(...).to('meta')(x, {name!r})")
        checks.assert_device(res["outs"][name], "meta", f"MultiHeadNet(...).to('meta')(x, {name!r})")
    res = student.probe("multihead_moved", in_dim=7, hidden=11, heads=heads, batch=4, seed=seed_from(rng),
                        dtype=torch.float64)
    for name in heads:
        if name in res["errors"]:
            checks.fail(Msg(f"float64 的头 {name!r} 出错：{res['errors'][name]}",
                            f"Head {name!r} in float64 raised {res['errors'][name]}"))
        checks.assert_dtype(res["outs"][name], torch.float64, f"MultiHeadNet(...).double()(x, {name!r})")
    raised = student.probe("raises", name="MultiHeadNet", args=[4, 8, {"task.one": 2}])
    checks.assert_true(raised in ("KeyError", "ValueError"), Msg(
        f"MultiHeadNet(4, 8, {{'task.one': 2}}) 应抛出 KeyError，实际 {raised or '没有抛出异常'}",
        f"MultiHeadNet(4, 8, {{'task.one': 2}}) should raise KeyError, got {raised or 'no exception'}"),
        Msg("头的名字不能含 '.'：nn.ModuleDict 会拒绝它（普通 dict 不会）",
            "Head names cannot contain '.': nn.ModuleDict refuses them (a plain dict does not)"))


@graded(task="MultiHeadNet", kind="speed", points=1, visibility="hidden")
def test_multihead_runs_only_selected_head(student, reference_worker, spec, rng):
    """With many large heads and a small trunk, a forward pass costs no more than a few times the
    reference's, which computes the selected head only.

    Judged from outside: the grader times both workers and checks every output against the
    reference's. Not against the student's own one-head model: a submission could slow that one
    down on purpose. The probe's count of head calls is not used (it is an observation made next
    to student code).
    """
    p = spec.param("selected_head_cost")
    fill_seed = seed_from(rng)
    heads = {f"task{i}": p["head_out"] for i in range(p["heads"])}

    key = f"selected-{fill_seed}"

    def run(impl):
        impl.probe("multihead_build", in_dim=p["in_dim"], hidden=p["hidden"], heads=heads, key=key,
                   fill_seed=fill_seed)  # untimed: only forward passes are timed
        return lambda x: impl.probe("multihead_forward", in_dim=p["in_dim"], hidden=p["hidden"], heads=heads,
                                    x=x, head="task0", repeats=p["repeats"], built=key)

    def check(got: dict, want: dict) -> None:
        checks.assert_close(got["out"], want["out"], "MultiHeadNet(x, 'task0')", atol=1e-4)
        checks.assert_close(got["out_total"], want["out_total"], "sum(MultiHeadNet(x + r / 1024, 'task0'))",
                            atol=1e-3)

    result = compare_speed(run(student), run(reference_worker),
                           lambda i: torch.randn(p["batch"], p["in_dim"], generator=rng), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    # With a small trunk the heads are nearly all of the cost: a slow forward here is the heads.
    assert_speed(result, spec.param("speed_factor"), "MultiHeadNet.forward", hint=ONLY_SELECTED)


@graded(task="MultiHeadNet", kind="speed", points=1, visibility="hidden")
def test_multihead_speed(student, reference_worker, spec, rng):
    """With 10 large heads a forward pass costs no more than a few times the reference's."""
    p = spec.param("multihead_speed")
    heads = {f"task{i}": p["head_out"] for i in range(p["heads"])}
    fill_seed = seed_from(rng)

    key = f"speed-{fill_seed}"

    def run(impl):
        impl.probe("multihead_build", in_dim=p["in_dim"], hidden=p["hidden"], heads=heads, key=key,
                   fill_seed=fill_seed)  # untimed: only forward passes are timed
        return lambda x: impl.probe("multihead_forward", in_dim=p["in_dim"], hidden=p["hidden"], heads=heads, x=x,
                                    head="task3", repeats=p["repeats"], built=key)

    others_ran: list[bool] = []

    def check(got: dict, want: dict) -> None:
        checks.assert_close(got["out"], want["out"], "MultiHeadNet(x, 'task3')", atol=1e-4)
        # every repetition ran on an input of its own: their sum shows work skipped or remembered
        checks.assert_close(got["out_total"], want["out_total"], "sum(MultiHeadNet(x + r / 1024, 'task3'))",
                            atol=1e-3)
        others_ran.append(any(n for name, n in got["head_calls"].items() if name != "task3"))

    result = compare_speed(run(student), run(reference_worker),
                           lambda i: torch.randn(p["batch"], p["in_dim"], generator=rng), check,
                           rounds=spec.param("speed_rounds"), student_impl=student, reference_impl=reference_worker,
                           factor=spec.param("speed_factor"))
    # "compute only the selected head" only when the other heads were seen running
    assert_speed(result, spec.param("speed_factor"), "MultiHeadNet.forward",
                 hint=ONLY_SELECTED if any(others_ran) else None)
