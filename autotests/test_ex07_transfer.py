"""Autotests for ex07_transfer: freezing, new heads, per-layer learning rates, frozen BatchNorm,
few-shot fine-tuning on a "pretrained" backbone and an offline resnet18.

Models never leave the worker: each test drives the submission through a probe in
``probes/ex07_transfer.py`` that builds a course model, hands it over and reports parameters,
buffers, flags, gradients and outputs. The expectations are computed here: gradients and steps
from the reported parameters, BatchNorm outputs from their statistics, accuracy from labels that
never leave the grader.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader.testdata import seed_from
from grader import checks
from grader.i18n import Msg
from grader.plugin import graded, grading_run

pytestmark = pytest.mark.exercise("ex07_transfer")

# -- feedback ----------------------------------------------------------------------------------------
EVAL_NOT_FREEZE = Msg("eval() 不会冻结参数：请对参数设置 requires_grad=False（eval() 只切换 Dropout/BN 的行为）",
                      "eval() does not freeze: set requires_grad=False on the parameters (eval() only switches "
                      "Dropout/BatchNorm behaviour)")
TOO_BROAD = Msg("前缀匹配过宽：前缀 p 只匹配名字 p 本身或以 p + '.' 开头的名字（'fc' 不匹配 'fc_extra.weight'）",
                "Prefix matched too broadly: a prefix p matches the name p itself or names starting with p + '.' "
                "('fc' does not match 'fc_extra.weight')")
VIA_REQUIRES_GRAD = Msg("请用 requires_grad 控制冻结，而不是用 no_grad 包住前向：那样参数仍标记为可训练，之后也无法解冻",
                        "Freeze via requires_grad, not by running forward under no_grad: the parameters still say "
                        "they are trainable, and unfreezing them later does not work")
UNFREEZE = Msg("匹配前缀的参数要设为 requires_grad=True（即使之前被冻结），其余设为 False",
               "Parameters that match a prefix get requires_grad=True (even if frozen before), all others False")
SORTED_NAMES = Msg("返回可训练参数名（named_parameters() 中的全名）的排序列表",
                   "Return the sorted list of the trainable parameters' full names (as in named_parameters())")

IN_FEATURES = Msg("in_features 应从旧层读取（old.in_features），不要写死 512 之类的数",
                  "Read in_features from the old layer (old.in_features); do not hard-code a number such as 512")
MATCH_DTYPE = Msg("新层 dtype/设备需与模型一致：nn.Linear(..., device=old.weight.device, dtype=old.weight.dtype)",
                  "Match dtype and device: nn.Linear(..., device=old.weight.device, dtype=old.weight.dtype)")
DOTTED = Msg("点号路径需要逐级 `getattr` 后再对父模块 `setattr`：`setattr(model, 'classifier.3', …)` 只会造出一个无用的属性",
             "Resolve dotted paths: getattr down to the parent, then setattr on it; setattr(model, 'classifier.3', …) "
             "only creates a bogus attribute")
HEAD_TRAINABLE = Msg("新的分类头必须可训练（requires_grad=True），其余参数保持原来的设置",
                     "The new head must be trainable (requires_grad=True); every other parameter keeps its setting")
IN_PLACE_HEAD = Msg("请在原模型上替换并返回同一个模型对象", "Replace the head in the model itself and return that same model")
REST_UNCHANGED = Msg("只替换分类头：模型其余部分的参数应保持不变", "Replace only the head: the rest of the model keeps its parameters")

DUPLICATE = Msg("参数同时出现在多个参数组中：重叠前缀时只按最长前缀分配一次",
                "A parameter is in more than one group: with overlapping prefixes assign it once, by the longest prefix")
UNASSIGNED = Msg("有可训练参数未分配学习率（没有进入任何参数组，永远不会被训练）",
                 "Unassigned trainable parameters: they are in no group, so they are never trained")
EXCLUDE_FROZEN = Msg("冻结参数（requires_grad=False）不应加入优化器：残留的 .grad 仍会让它们被更新",
                     "Exclude frozen params (requires_grad=False) from the optimizer: a stale .grad still moves them")
LONGEST = Msg("重叠前缀时最长的前缀优先（'blocks.2' 优先于 'blocks'）",
              "With overlapping prefixes the longest one wins ('blocks.2' over 'blocks')")
NEED_DEFAULT = Msg("有参数不被任何前缀覆盖且 default_lr 为 None 时应抛出 ValueError",
                   "A parameter no prefix covers, with default_lr None, must raise ValueError")
GROUP_FORMAT = Msg("返回 list[dict]，每个 dict 有 'params'（参数列表）和 'lr'（float）",
                   "Return a list of dicts, each with 'params' (a list of parameters) and 'lr' (a float)")

ALL_BN_TYPES = Msg("请用 nn.modules.batchnorm._BatchNorm 基类覆盖 BatchNorm1d/2d/3d 及其子类",
                   "Cover all BN types: test isinstance(m, nn.modules.batchnorm._BatchNorm) (1d, 2d, 3d and subclasses)")
BN_ORDER = Msg("顺序很重要：先 model.train()，再把 BN 设为 eval；反过来 model.train() 会把 BN 又切回训练模式",
               "Order matters: model.train() first, then put the BN layers in eval; the other way round model.train() "
               "switches them back to training")
TRACK_STATS = Msg("不要修改 track_running_stats：它会让 BN 在训练模式下改用批统计量；请用 bn.eval()",
                  "Don't change track_running_stats: BN then normalises with batch statistics in train mode; use bn.eval()")
BN_AFFINE = Msg("BN 的仿射参数（weight/bias）要冻结：requires_grad=False", "Freeze BN's affine params: requires_grad=False")
KEEP_OTHERS = Msg("非 BN 层的 requires_grad 应保持原样（不要解冻或冻结它们）",
                  "Non-BN layers keep their previous requires_grad (do not freeze or unfreeze them)")
DROPOUT_TRAIN = Msg("除 BN 外其余层应处于训练模式（Dropout 要生效）：先调用 model.train()",
                    "Everything but BN is in train mode (Dropout active): call model.train() first")
RETURN_MODEL = Msg("请返回传入的模型本身", "Return the model you were given")

BACKBONE_CHANGED = Msg("主干参数在训练后发生变化：请先冻结主干（requires_grad_(False)）",
                       "Backbone weights changed during training: freeze the backbone first (requires_grad_(False))")
HEAD_ONLY = Msg("只把头部参数传给优化器：主干的残留 .grad（或权重衰减 `weight_decay`）仍会更新冻结的参数",
                "Optimise head params only: the backbone's stale .grad (or weight decay) still moves frozen parameters")
BACKBONE_BN = Msg("主干中的 BN 需保持 eval：训练前调用 backbone.eval()，之后不要对整个模型调用 train()",
                  "Keep backbone BN in eval: call backbone.eval() before training and never model.train() afterwards")
FEW_SHOT_FORMAT = Msg("返回 `nn.Sequential(backbone, head)`，其中 `head = nn.Linear(feat_dim, num_classes)`",
                      "Return nn.Sequential(backbone, head) with head = nn.Linear(feat_dim, num_classes)")

NO_DOWNLOADS = Msg("离线环境无法下载权重：请使用 weights=None（不要用 pretrained=True 或 weights=\"DEFAULT\"）",
                   "No downloads: weights=None (not pretrained=True or weights=\"DEFAULT\"); the grader is offline")
NEW_LAYER_TRAINABLE = Msg("替换的层在冻结之后创建，或恢复其 requires_grad：新的 `conv1` 和 `fc` 必须可训练",
                          "New layers must stay trainable: create conv1 and fc after freezing (or set requires_grad=True)")
IN_FEATURES_FIRST = Msg("先读取 in_features 再替换 `fc`：替换后的模块可能没有 in_features",
                        "Read in_features first, then replace fc: the new module may have no in_features")
TORCHVISION_RESNET = Msg("请返回 torchvision.models.resnet18(weights=None) 构建的模型（保留 `conv1`、`layer1`…`layer4`、`fc` 这些名字）",
                         "Return the model built by torchvision.models.resnet18(weights=None) (keep the names conv1, "
                         "layer1…layer4, fc)")


# -- helpers -----------------------------------------------------------------------------------------

def _raised(res: dict, what: str, hint: Msg | None = None, key: str = "error") -> None:
    if res.get(key):
        checks.fail(Msg(f"{what}：你的代码抛出了异常 {res[key]}", f"{what}: your code raised {res[key]}"), hint)


def _matches(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return list(a.shape) == list(b.shape) and a.dtype == b.dtype and torch.equal(a, b)


# -- T7.1 freeze_all_but -----------------------------------------------------------------------------
PREFIX_NET = ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
              "fc.weight", "fc.bias", "fc_extra.weight", "fc_extra.bias"]


def _prefix_net(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """PrefixNet's forward from its parameters."""
    h = torch.relu(x @ p["features.0.weight"].T + p["features.0.bias"])
    h = torch.relu(h @ p["features.2.weight"].T + p["features.2.bias"])
    h = torch.relu(h @ p["fc.weight"].T + p["fc.bias"])
    return h @ p["fc_extra.weight"].T + p["fc_extra.bias"]


def _freeze(student, rng, calls: list[list[str]]) -> tuple[dict, torch.Tensor, torch.Tensor]:
    x = torch.randn(6, 5, dtype=torch.float64, generator=rng)
    g = torch.randn(6, 3, dtype=torch.float64, generator=rng)
    res = student.probe("freeze_probe", calls=calls, x=x, grad_output=g, lr=0.1, seed=seed_from(rng))
    _raised(res, "freeze_all_but(model, prefixes)")
    return res, x, g


def _check_flags(res: dict, call: int, prefixes: list[str], what: str) -> None:
    flags = res["flags"][call]
    want = {n: _matches(n, prefixes) for n in PREFIX_NET}
    wrong_on = sorted(n for n in PREFIX_NET if flags.get(n) and not want[n])
    wrong_off = sorted(n for n in PREFIX_NET if want[n] and not flags.get(n))
    if not wrong_on and not wrong_off:
        return
    hint = None
    if wrong_on and all(flags.values()) and not res.get("training", True):
        hint = EVAL_NOT_FREEZE
    elif wrong_on and all(any(n.startswith(p) for p in prefixes) for n in wrong_on):
        hint = TOO_BROAD
    elif wrong_off and call > 0:
        hint = UNFREEZE
    checks.fail(Msg(f"{what} 之后 requires_grad 不对：应冻结却仍可训练 {wrong_on}，应可训练却被冻结 {wrong_off}",
                    f"After {what} requires_grad is wrong: still trainable but should be frozen {wrong_on}; frozen "
                    f"but should be trainable {wrong_off}"), hint)


def _check_returned(res: dict, call: int, prefixes: list[str], what: str) -> None:
    want = sorted(n for n in PREFIX_NET if _matches(n, prefixes))
    checks.assert_equal(res["returned"][call], want, what, hint=SORTED_NAMES)


@graded(task="freeze_all_but", kind="shape", points=1, visibility="public")
def test_freeze_returns_trainable_names(student, rng):
    """freeze_all_but(model, ['fc']) leaves exactly fc.weight and fc.bias trainable and returns them sorted."""
    res, _, _ = _freeze(student, rng, [["fc"]])
    _check_flags(res, 0, ["fc"], "freeze_all_but(model, ['fc'])")
    _check_returned(res, 0, ["fc"], "freeze_all_but(model, ['fc'])")


@graded(task="freeze_all_but", kind="gradient", points=2, visibility="public")
def test_freeze_gradients_and_step(student, rng):
    """After freezing all but ['features.2', 'fc_extra'], only those get gradients and only they move in an SGD step."""
    prefixes = ["features.2", "fc_extra"]
    res, x, g = _freeze(student, rng, [prefixes])
    what = "freeze_all_but(model, ['features.2', 'fc_extra'])"
    _check_flags(res, 0, prefixes, what)
    before = res["params_before"]
    p = {n: t.clone().requires_grad_(_matches(n, prefixes)) for n, t in before.items()}
    wanted = [n for n in PREFIX_NET if _matches(n, prefixes)]
    expected = dict(zip(wanted, torch.autograd.grad(_prefix_net(p, x), [p[n] for n in wanted], g)))
    for name in PREFIX_NET:
        if name in expected:
            checks.assert_grad(res["grads"][name], expected[name], name, hint=VIA_REQUIRES_GRAD)
            checks.assert_close(res["params_after"][name], before[name] - 0.1 * expected[name],
                                f"sgd_step({name}, lr=0.1)")
        else:
            checks.assert_no_grad(res["grads"][name], name)
            checks.assert_close(res["params_after"][name], before[name], f"sgd_step({name}, lr=0.1)",
                                atol=0, rtol=0, rel_l2=0)


@graded(task="freeze_all_but", kind="shape", points=1, visibility="hidden")
def test_freeze_prefix_rules(student, rng):
    """Exact names match, 'fc' does not match 'fc_extra', an empty list freezes everything, repeating is idempotent."""
    for calls in ([["fc.weight", "features"]], [[]], [["fc"], ["fc"]], [["features.0", "fc_extra", "nothing"]]):
        res, _, _ = _freeze(student, rng, calls)
        for i, prefixes in enumerate(calls):
            what = "; ".join(f"freeze_all_but(model, {c})" for c in calls[:i + 1])
            _check_flags(res, i, prefixes, what)
            _check_returned(res, i, prefixes, what)


@graded(task="freeze_all_but", kind="gradient", points=1, visibility="hidden")
def test_freeze_can_unfreeze_later(student, rng):
    """Calling again with other prefixes unfreezes them: after ['fc'] then ['features'] gradients reach features only."""
    calls = [["fc"], ["features"]]
    res, x, g = _freeze(student, rng, calls)
    _check_flags(res, 1, ["features"], "freeze_all_but(model, ['fc']); freeze_all_but(model, ['features'])")
    p = {n: t.clone().requires_grad_(n.startswith("features.")) for n, t in res["params_before"].items()}
    wanted = [n for n in PREFIX_NET if n.startswith("features.")]
    expected = dict(zip(wanted, torch.autograd.grad(_prefix_net(p, x), [p[n] for n in wanted], g)))
    for name in PREFIX_NET:
        if name in expected:
            checks.assert_grad(res["grads"][name], expected[name], name, hint=VIA_REQUIRES_GRAD)
        else:
            checks.assert_no_grad(res["grads"][name], name)


# -- T7.2 replace_classifier -------------------------------------------------------------------------
HEADS = {"body_fc": "fc", "vgg_like": "classifier.3", "dropout_head": "head"}


def _body_features(arch: str, s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The input of the head (eval mode) from the model's state."""
    if arch == "vgg_like":
        h = torch.relu(x @ s["features.0.weight"].T + s["features.0.bias"])
        return torch.relu(h @ s["classifier.0.weight"].T + s["classifier.0.bias"])
    return torch.relu(x @ s["body.0.weight"].T + s["body.0.bias"])


def _replace(student, rng, arch: str, num_classes: int, default_attr: bool = False, **kwargs) -> tuple[dict, str]:
    attr = HEADS[arch]
    x = kwargs.pop("x", None)
    if x is None:
        x = torch.randn(4, 8, generator=rng, dtype=kwargs.get("dtype") or torch.float32)
    call = f"replace_classifier({arch}_model, {num_classes}" + ("" if default_attr else f", {attr!r}") + ")"
    res = student.probe("replace_probe", arch=arch, num_classes=num_classes, attr=None if default_attr else attr,
                        x=x, seed=seed_from(rng), **kwargs)
    error = res.get("error") or ""
    _raised(res, call, IN_FEATURES if "in_features" in error or "shape" in error else None)
    res["x"] = x
    return res, call


def _head_of(res: dict, arch: str, num_classes: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    attr = HEADS[arch]
    old_out = 10
    out = res.get("out")
    if res["head_type"] != "Linear":
        dotted_hint = DOTTED if "." in attr else None
        checks.fail(Msg(f"{what}：model.{attr} 是 {res['head_type']}，应为新的 nn.Linear",
                        f"{what}: model.{attr} is a {res['head_type']}, expected a new nn.Linear"), dotted_hint)
    forward_error = res.get("forward_error") or ""
    _raised(res, what, MATCH_DTYPE if "dtype" in forward_error or "device" in forward_error else IN_FEATURES,
            "forward_error")
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == old_out != num_classes:
        checks.fail(Msg(f"{what}：输出仍有 {old_out} 列：前向传播仍在用旧的分类头",
                        f"{what}: the output still has {old_out} columns: forward still uses the old head"),
                    DOTTED if "." in attr else None)
    head = res["head"]
    checks.assert_shape(head["weight"], (num_classes, head["weight"].shape[1]), f"model.{attr}.weight")
    return head["weight"], head["bias"]


def _check_rest_unchanged(res: dict, arch: str) -> None:
    attr = HEADS[arch] + "."
    before, after = res["state_before"], res["state_after"]
    for name, value in before.items():
        if name.startswith(attr):
            continue
        checks.assert_true(name in after and _same(after[name], value), Msg(
            f"替换分类头后 {name} 改变或消失了", f"{name} changed or disappeared when the head was replaced"),
            REST_UNCHANGED)


@graded(task="replace_classifier", kind="shape", points=1, visibility="public")
def test_replace_classifier_output_shape(student, rng):
    """replace_classifier(model, 5) swaps model.fc for nn.Linear(12, 5): the output is (4, 5) and the model is returned."""
    res, call = _replace(student, rng, "body_fc", 5, default_attr=True)
    checks.assert_true(res["same_object"], Msg(f"{call} 没有返回传入的模型", f"{call} did not return the model it was given"),
                       IN_PLACE_HEAD)
    weight, _ = _head_of(res, "body_fc", 5, call)
    checks.assert_shape(weight, (5, 12), "model.fc.weight", hint=IN_FEATURES)
    checks.assert_shape(res["out"], (4, 5), f"{call}(x[4, 8])")


@graded(task="replace_classifier", kind="accuracy", points=1, visibility="public")
def test_replace_classifier_values(student, rng):
    """The new model computes new_fc(body(x)) with the body's parameters untouched."""
    res, call = _replace(student, rng, "body_fc", 3)
    weight, bias = _head_of(res, "body_fc", 3, call)
    _check_rest_unchanged(res, "body_fc")
    expected = _body_features("body_fc", res["state_before"], res["x"]) @ weight.T + bias
    checks.assert_close(res["out"], expected, f"{call}(x)")


@graded(task="replace_classifier", kind="gradient", points=1, visibility="public")
def test_replace_classifier_head_trainable(student, rng):
    """On a fully frozen model the new head is trainable and the only parameter that receives gradients."""
    g = torch.randn(4, 6, generator=rng)
    res, call = _replace(student, rng, "body_fc", 6, freeze_first=True, grad_output=g)
    weight, bias = _head_of(res, "body_fc", 6, call)
    for name, flag in res["flags"].items():
        want = name.startswith("fc.")
        checks.assert_true(flag == want, Msg(f"{call} 之后 {name}.requires_grad = {flag}，应为 {want}",
                                             f"After {call}, {name}.requires_grad = {flag}, expected {want}"),
                           HEAD_TRAINABLE)
    features = _body_features("body_fc", res["state_before"], res["x"])
    checks.assert_grad(res["grads"]["fc.weight"], g.T @ features, "fc.weight")
    checks.assert_grad(res["grads"]["fc.bias"], g.sum(0), "fc.bias")
    for name in ("body.0.weight", "body.0.bias"):
        checks.assert_no_grad(res["grads"][name], name)


@graded(task="replace_classifier", kind="shape", points=1, visibility="hidden")
def test_replace_classifier_dtype_and_device(student, rng):
    """On a float64 model the new head is float64; on a meta model it is on meta and the forward runs there."""
    res, call = _replace(student, rng, "body_fc", 4, dtype=torch.float64)
    weight, _ = _head_of(res, "body_fc", 4, call)
    checks.assert_dtype(weight, torch.float64, "model.fc.weight (model.double())", hint=MATCH_DTYPE)
    checks.assert_dtype(res["out"], torch.float64, f"{call}(x)", hint=MATCH_DTYPE)
    res, call = _replace(student, rng, "vgg_like", 4, device="meta", x=torch.empty(3, 8, device="meta"))
    checks.assert_true(res.get("head", {}).get("device") == "meta" or res["head_type"] != "Linear", Msg(
        f"{call}：模型在 'meta' 设备上，新的分类头却在 {res.get('head', {}).get('device')} 上",
        f"{call}: the model is on meta but the new head is on {res.get('head', {}).get('device')}"), MATCH_DTYPE)
    _head_of(res, "vgg_like", 4, call)
    checks.assert_shape(res["out"], (3, 4), f"{call}(x)")
    checks.assert_device(res["out"], "meta", f"{call}(x)", hint=MATCH_DTYPE)


@graded(task="replace_classifier", kind="accuracy", points=1, visibility="hidden")
def test_replace_classifier_nested_heads(student, rng):
    """A dotted path ('classifier.3' in a VGG-like Sequential) and a head that is a Sequential(Dropout, Linear)."""
    for arch, n in (("vgg_like", 6), ("dropout_head", 2)):
        res, call = _replace(student, rng, arch, n)
        weight, bias = _head_of(res, arch, n, call)
        _check_rest_unchanged(res, arch)
        expected = _body_features(arch, res["state_before"], res["x"]) @ weight.T + bias
        checks.assert_close(res["out"], expected, f"{call}(x)", hint=DOTTED if arch == "vgg_like" else None)


# -- T7.3 discriminative_param_groups ----------------------------------------------------------------
STAGED = ["stem.weight", "stem.bias"] + [f"blocks.{i}.{k}" for i in range(3) for k in ("weight", "bias")] + \
         ["norm.weight", "norm.bias", "fc.weight", "fc.bias"]


def _groups(student, rng, lr_map: dict[str, float], default_lr: float | None, frozen: list[str] = ()) -> dict:
    shapes = {"stem.weight": (5, 4), "stem.bias": (5,), "fc.weight": (3, 5), "fc.bias": (3,),
              "norm.weight": (5,), "norm.bias": (5,)}
    shapes.update({f"blocks.{i}.weight": (5, 5) for i in range(3)})
    shapes.update({f"blocks.{i}.bias": (5,) for i in range(3)})
    grads = {n: torch.randn(shapes[n], generator=rng) for n in STAGED}
    res = student.probe("groups_probe", lr_map=lr_map, default_lr=default_lr, frozen=list(frozen), grads=grads,
                        seed=seed_from(rng))
    res["grads_sent"] = grads
    return res


def _expected_lr(name: str, lr_map: dict[str, float], default_lr: float | None) -> float | None:
    covering = [p for p in lr_map if name == p or name.startswith(p + ".")]
    return lr_map[max(covering, key=len)] if covering else default_lr


def _check_groups(res: dict, lr_map: dict[str, float], default_lr: float | None, frozen: list[str], what: str) -> None:
    _raised(res, what)
    groups = res["groups"]
    if not isinstance(groups, list):
        checks.fail(Msg(f"{what} 返回了 {groups}", f"{what} returned {groups}"), GROUP_FORMAT)
    listed = [n for g in groups for n in g["names"]]
    trainable = [n for n in STAGED if not _matches(n, frozen)]
    duplicated = sorted({n for n in listed if listed.count(n) > 1})
    checks.assert_true(not duplicated, Msg(f"{what}：这些参数出现在多个组中：{duplicated}",
                                           f"{what}: these parameters are in more than one group: {duplicated}"), DUPLICATE)
    checks.assert_true(res.get("adam_error") is None, Msg(
        f"{what}：torch.optim.Adam 拒绝了这些参数组：{res.get('adam_error')}",
        f"{what}: torch.optim.Adam refused these groups: {res.get('adam_error')}"), GROUP_FORMAT)
    missing = sorted(set(trainable) - set(listed))
    checks.assert_true(not missing, Msg(f"{what}：这些可训练参数不在任何组中：{missing}",
                                        f"{what}: these trainable parameters are in no group: {missing}"), UNASSIGNED)
    included = sorted(n for n in listed if n not in trainable)
    checks.assert_true(not included, Msg(f"{what}：这些参数被冻结或不属于模型，却在参数组中：{included}",
                                         f"{what}: these are frozen or not the model's, yet in a group: {included}"),
                       EXCLUDE_FROZEN)
    _raised(res, f"torch.optim.SGD({what}).step()", GROUP_FORMAT, "sgd_error")
    # The step decides: every parameter moves by exactly lr × grad, frozen ones not at all.
    for name in STAGED:
        before, grad = res["params_before"][name], res["grads_sent"][name]
        if name in trainable:
            lr = _expected_lr(name, lr_map, default_lr)
            got_lr = next((g["lr"] for g in groups if name in g["names"]), None)
            hint = LONGEST if got_lr is not None and got_lr != lr and any(
                got_lr == lr_map[p] for p in lr_map if _matches(name, [p])) else None
            checks.assert_close(res["params_after"][name], before - lr * grad,
                                f"sgd_step({name}, lr={lr:g})", hint=hint)
        else:
            checks.assert_close(res["params_after"][name], before, f"sgd_step({name})",
                                atol=0, rtol=0, rel_l2=0, hint=EXCLUDE_FROZEN)


@graded(task="discriminative_param_groups", kind="shape", points=1, visibility="public")
def test_param_groups_cover_each_parameter_once(student, rng):
    """{'stem': 1e-4, 'blocks': 1e-3} with default 1e-2: every parameter in exactly one group that Adam accepts."""
    lr_map = {"stem": 1e-4, "blocks": 1e-3}
    res = _groups(student, rng, lr_map, 1e-2)
    _check_groups(res, lr_map, 1e-2, [], "discriminative_param_groups(model, {'stem': 1e-4, 'blocks': 1e-3}, 1e-2)")


@graded(task="discriminative_param_groups", kind="gradient", points=1, visibility="public")
def test_param_groups_exclude_frozen(student, rng):
    """With stem and norm frozen (holding stale gradients) they are in no group and do not move in a step."""
    lr_map = {"blocks": 0.01, "fc": 0.1}
    res = _groups(student, rng, lr_map, 0.001, frozen=["stem", "norm"])
    _check_groups(res, lr_map, 0.001, ["stem", "norm"], "discriminative_param_groups(model_with_frozen_stem, …)")


@graded(task="discriminative_param_groups", kind="accuracy", points=1, visibility="public")
def test_param_groups_learning_rates(student, rng):
    """One SGD step moves each parameter by its own lr × grad (prefix lr, else the default)."""
    lr_map = {"stem": 0.001, "blocks.1": 0.05, "fc": 0.5}
    res = _groups(student, rng, lr_map, 0.01)
    _check_groups(res, lr_map, 0.01, [], "discriminative_param_groups(model, {'stem': 0.001, 'blocks.1': 0.05, 'fc': 0.5}, 0.01)")


@graded(task="discriminative_param_groups", kind="accuracy", points=1, visibility="hidden")
def test_param_groups_overlapping_prefixes(student, rng):
    """'blocks' and 'blocks.2' overlap: the longest wins; 'block' matches nothing; frozen params stay out."""
    for lr_map, frozen in (({"blocks": 1e-3, "blocks.2": 0.1, "fc": 1.0}, []),
                           ({"blocks.2": 0.1, "blocks": 1e-3, "block": 7.0}, ["fc"])):
        res = _groups(student, rng, lr_map, 0.02, frozen=frozen)
        _check_groups(res, lr_map, 0.02, frozen, f"discriminative_param_groups(model, {lr_map}, 0.02)")


@graded(task="discriminative_param_groups", kind="shape", points=1, visibility="hidden")
def test_param_groups_need_default(student, rng):
    """With default_lr=None a parameter no prefix covers raises ValueError; full coverage needs no default."""
    res = _groups(student, rng, {"stem": 0.1, "blocks": 0.2}, None)
    checks.assert_true(res.get("error_type") == "ValueError", Msg(
        f"norm/fc 不被任何前缀覆盖且 default_lr=None：应抛出 ValueError，实际 {res.get('error_type') or '没有抛出异常'}",
        f"norm/fc are covered by no prefix and default_lr=None: expected ValueError, got "
        f"{res.get('error_type') or 'no exception'}"), NEED_DEFAULT)
    lr_map = {"stem": 0.1, "blocks": 0.2, "fc": 0.3}
    res = _groups(student, rng, lr_map, None, frozen=["norm"])
    _check_groups(res, lr_map, None, ["norm"], f"discriminative_param_groups(model, {lr_map}, None)")


# -- T7.4 train_with_frozen_bn -----------------------------------------------------------------------
BN_LAYERS = ("bn1", "bn2", "sync_bn", "bn3")
BN_KIND = {"bn1": "BatchNorm1d", "bn2": "BatchNorm2d", "sync_bn": "SyncLikeBatchNorm(_BatchNorm)", "bn3": "BatchNorm3d"}


def _frozen_bn(student, rng) -> dict:
    res = student.probe("frozen_bn_probe", x1=torch.randn(8, 6, generator=rng, dtype=torch.float64),
                        x2=torch.randn(4, 2, 3, 3, generator=rng, dtype=torch.float64),
                        x3=torch.randn(3, 2, 2, 2, 2, generator=rng, dtype=torch.float64), seed=seed_from(rng))
    _raised(res, "train_with_frozen_bn(model)")
    return res


def _bn_hint(res: dict, moved: list[str]) -> Msg | None:
    if any(not res["track_running_stats"][n] for n in BN_LAYERS):
        return TRACK_STATS
    if moved and "bn2" not in moved:
        return ALL_BN_TYPES
    if moved and set(moved) == set(BN_LAYERS):
        return BN_ORDER
    return None


@graded(task="train_with_frozen_bn", kind="accuracy", points=2, visibility="public")
def test_frozen_bn_statistics_unchanged(student, rng):
    """After the helper and 3 training forward passes per epoch, no BatchNorm's running statistics changed."""
    res = _frozen_bn(student, rng)
    checks.assert_true(res["same_object"], Msg("`train_with_frozen_bn(model)` 没有返回 `model`",
                                                "train_with_frozen_bn(model) did not return model"), RETURN_MODEL)
    before, after = res["state_before"], res["state_after"]
    moved = [n for n in BN_LAYERS if not all(_same(after[f"{n}.{b}"], before[f"{n}.{b}"])
                                             for b in ("running_mean", "running_var", "num_batches_tracked"))]
    checks.assert_true(not moved, Msg(
        f"训练模式的前向传播改变了这些 BN 层的运行统计量：{[f'{n} ({BN_KIND[n]})' for n in moved]}",
        f"Training forward passes changed the running statistics of these BN layers: "
        f"{[f'{n} ({BN_KIND[n]})' for n in moved]}"), _bn_hint(res, moved))


@graded(task="train_with_frozen_bn", kind="gradient", points=1, visibility="public")
def test_frozen_bn_affine_frozen_others_kept(student, rng):
    """BN weight/bias are frozen and get no gradient; lin/conv stay trainable and get gradients; frozen_lin stays frozen."""
    res = _frozen_bn(student, rng)
    for name, was in res["flags_before"].items():
        layer = name.split(".")[0]
        want = False if layer in BN_LAYERS else was
        hint = BN_AFFINE if layer in BN_LAYERS else KEEP_OTHERS
        if layer in BN_LAYERS and res["flags"][name] and layer != "bn2" and not res["flags"][f"bn2.{name.split('.')[1]}"]:
            hint = ALL_BN_TYPES
        checks.assert_true(res["flags"][name] == want, Msg(
            f"{name}.requires_grad = {res['flags'][name]}，应为 {want}", f"{name}.requires_grad = {res['flags'][name]}, "
            f"expected {want}"), hint)
        if want:
            grad = res["grads"][name]
            checks.assert_true(grad is not None and bool(grad.abs().sum() > 0), Msg(
                f"{name} 没有得到梯度", f"{name} received no gradient"), KEEP_OTHERS)
        else:
            checks.assert_no_grad(res["grads"][name], name, hint=hint)


def _bn_eval(x: torch.Tensor, s: dict[str, torch.Tensor], name: str, eps: float = 1e-5) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean, var = s[f"{name}.running_mean"].view(shape), s[f"{name}.running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + eps) * s[f"{name}.weight"].view(shape) + s[f"{name}.bias"].view(shape)


@graded(task="train_with_frozen_bn", kind="accuracy", points=2, visibility="hidden")
def test_frozen_bn_normalises_with_running_stats(student, rng):
    """In train mode every BN output equals the running-statistics formula; Dropout is active; other layers compute as usual."""
    x1 = torch.randn(8, 6, generator=rng, dtype=torch.float64)
    x2 = torch.randn(4, 2, 3, 3, generator=rng, dtype=torch.float64)
    x3 = torch.randn(3, 2, 2, 2, 2, generator=rng, dtype=torch.float64)
    res = student.probe("frozen_bn_probe", x1=x1, x2=x2, x3=x3, seed=seed_from(rng))
    _raised(res, "train_with_frozen_bn(model)")
    s, outs = res["state_before"], res["outs"]
    conv2 = F.conv2d(x2, s["conv.weight"], s["conv.bias"])
    expected = {"bn1": _bn_eval(x1 @ s["lin.weight"].T + s["lin.bias"], s, "bn1"),
                "bn2": _bn_eval(conv2, s, "bn2"),
                "bn3": _bn_eval(F.conv3d(x3, s["conv3.weight"], s["conv3.bias"]), s, "bn3")}
    expected["sync_bn"] = _bn_eval(expected["bn2"], s, "sync_bn")
    in_training = [n for n in BN_LAYERS if res["bn_training"][n]]  # observed flags: they only pick the hint
    for name in ("bn1", "bn2", "bn3", "sync_bn"):
        hint = None
        if not res["track_running_stats"][name]:
            hint = TRACK_STATS
        elif name in in_training:
            hint = _bn_hint(res, in_training) or ALL_BN_TYPES
        checks.assert_close(outs[name], expected[name], f"model.{name}(x)",
                            hint=hint)
    checks.assert_close(outs["frozen_lin"], x1 @ s["frozen_lin.weight"].T + s["frozen_lin.bias"], "frozen_lin(x)")
    drop = outs["drop"]
    zeros = float((drop == 0).double().mean())
    checks.assert_true(0.2 < zeros < 0.8, Msg(
        f"Dropout(0.5) 的输出中 0 的比例为 {zeros:.2f}：Dropout 没有处于训练模式",
        f"{zeros:.2f} of Dropout(0.5)'s output is 0: Dropout is not in train mode"), DROPOUT_TRAIN)


# -- T7.5 finetune_few_shot --------------------------------------------------------------------------
def _data_dir(request) -> Path:
    return grading_run(request.config).course.data_dir


def _backbone(request, spec) -> dict[str, torch.Tensor]:
    """The course's pretrained backbone, checked against the pinned hash."""
    from safetensors.torch import load

    path = _data_dir(request) / spec.param("backbone_file")
    if not path.is_file():
        pytest.skip(f"{path.name} is not on this host (it stays on the grading host)")
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != spec.param("backbone_sha256"):
        raise RuntimeError(f"{path} has sha256 {digest}, not the pinned {spec.param('backbone_sha256')}: "
                           "rebuild it with scripts/make_backbone.py")
    return load(blob)


def _digits(request, classes: range) -> tuple[torch.Tensor, torch.Tensor]:
    path = _data_dir(request) / "public" / "digits8x8.npz"
    if not path.is_file():
        pytest.skip("data/public/digits8x8.npz is missing from this course folder")
    with np.load(path) as data:
        images, labels = data["images"], data["labels"]
    keep = np.isin(labels, list(classes))
    return (torch.from_numpy(images[keep].astype(np.float32) / 16.0).unsqueeze(1),
            torch.from_numpy(labels[keep].astype(np.int64)))


def _few_shot_split(x: torch.Tensor, y: torch.Tensor, shots: int, rng: torch.Generator):
    picks = [torch.nonzero(y == c).flatten() for c in y.unique()]
    train = torch.cat([p[torch.randperm(len(p), generator=rng)[:shots]] for p in picks])
    held = torch.ones(len(y), dtype=torch.bool)
    held[train] = False
    return x[train], y[train], x[held], y[held]


BACKBONE_SHAPES = {"features.0.weight": (16, 1, 3, 3), "features.0.bias": (16,), "features.1": (16,),
                   "features.4.weight": (32, 16, 3, 3), "features.4.bias": (32,), "features.5": (32,)}


def _made_up_backbone(rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Tensors for the course's backbone made here: He-scaled convolutions and BatchNorm layers with
    statistics far from 0 and 1, so that a backbone left in train mode visibly moves them."""
    state: dict[str, torch.Tensor] = {}
    for key, shape in BACKBONE_SHAPES.items():
        if key in ("features.1", "features.5"):
            state[f"{key}.weight"] = 1 + 0.1 * torch.randn(shape, generator=rng)
            state[f"{key}.bias"] = 0.1 * torch.randn(shape, generator=rng)
            state[f"{key}.running_mean"] = 0.2 * torch.randn(shape, generator=rng)
            state[f"{key}.running_var"] = torch.rand(shape, generator=rng) + 0.5
            state[f"{key}.num_batches_tracked"] = torch.tensor(100)
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=rng) * math.sqrt(2 / (shape[1] * 9))
        else:
            state[key] = 0.1 * torch.randn(shape, generator=rng)
    return state


def _template_images(rng: torch.Generator, classes: int, per_class: int, noise: float,
                     templates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return (templates[labels] + noise * torch.randn(len(labels), 1, 8, 8, generator=rng)).clamp(0, 1), labels


def _few_shot_public(student, spec, rng, epochs: int | None = None) -> tuple[dict, torch.Tensor, str]:
    """Public runs need no course data: a backbone made here, 8x8 images of random binary
    templates plus noise (the student kit has neither the digits nor the pretrained file)."""
    p = spec.param("few_shot_public")
    templates = (torch.rand(p["classes"], 1, 8, 8, generator=rng) < p["density"]).float()
    x_tr, y_tr = _template_images(rng, p["classes"], p["shots"], p["noise"], templates)
    x_ev, y_ev = _template_images(rng, p["classes"], p["eval_per_class"], p["noise"], templates)
    state = _made_up_backbone(rng)
    what = f"finetune_few_shot(backbone, 128, x[{len(x_tr)}], y, {p['classes']})"
    res = student.probe("few_shot_probe", backbone_state=state, x_train=x_tr, y_train=y_tr, x_eval=x_ev,
                        num_classes=p["classes"], seed=seed_from(rng), epochs=epochs or p["epochs"], lr=p["lr"])
    _raised(res, what)
    res["sent"] = state
    return res, y_ev, what


def _few_shot(student, request, spec, rng, *, num_classes: int = 5, remap: bool = True) -> tuple[dict, torch.Tensor, str]:
    """The course's pretrained digits backbone on 10 images per digit 5-9; the rest held out."""
    fs = spec.param("few_shot")
    x, y = _digits(request, range(5, 10))
    x_tr, y_tr, x_ev, y_ev = _few_shot_split(x, y, fs["shots"], rng)
    if remap:
        y_tr, y_ev = y_tr - 5, y_ev - 5
    state = _backbone(request, spec)
    what = f"finetune_few_shot(backbone, 128, x[{len(x_tr)}], y, {num_classes})"
    res = student.probe("few_shot_probe", backbone_state=state, x_train=x_tr, y_train=y_tr, x_eval=x_ev,
                        num_classes=num_classes, seed=seed_from(rng), epochs=fs["epochs"], lr=fs["lr"])
    _raised(res, what)
    res["sent"] = state
    return res, y_ev, what


def _head(res: dict, num_classes: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if "model_state" not in res:
        checks.fail(Msg(f"{what} 返回了 {res.get('model_type')}", f"{what} returned a {res.get('model_type')}"),
                    FEW_SHOT_FORMAT)
    state = res["model_state"]
    want = {f"0.{k}" for k in res["sent"]} | {"1.weight", "1.bias"}
    checks.assert_true(set(state) == want, Msg(
        f"{what}：返回模型的 state_dict 键为 {sorted(set(state) - {f'0.{k}' for k in res['sent']})} 等，"
        "应为 0.<主干的键> 和 1.weight、1.bias",
        f"{what}: the returned model's state_dict has keys such as {sorted(set(state) - {f'0.{k}' for k in res['sent']})}; "
        "expected 0.<backbone keys>, 1.weight and 1.bias"), FEW_SHOT_FORMAT)
    checks.assert_shape(state["1.weight"], (num_classes, 128), "model[1].weight", hint=FEW_SHOT_FORMAT)
    return state["1.weight"], state["1.bias"]


def _check_backbone_unchanged(res: dict) -> None:
    sent, after, model = res["sent"], res["backbone_after"], res.get("model_state", {})
    changed = sorted(k for k, v in sent.items() if not _same(after[k], v))
    changed_params = [k for k in changed if res["backbone_flags"].get(k) is not None]
    if changed_params:
        frozen = not any(res["backbone_flags"][k] for k in changed_params)
        checks.fail(Msg(f"训练后这些主干参数变了：{changed_params[:4]}", f"These backbone parameters changed in "
                        f"training: {changed_params[:4]}"), HEAD_ONLY if frozen else BACKBONE_CHANGED)
    if changed:
        checks.fail(Msg(f"训练后主干 BN 的运行统计量变了：{changed[:4]}",
                        f"The backbone's BatchNorm running statistics changed in training: {changed[:4]}"), BACKBONE_BN)
    in_model = sorted(k for k, v in sent.items() if f"0.{k}" in model and not _same(model[f"0.{k}"], v))
    checks.assert_true(not in_model, Msg(f"返回模型中的主干（model[0]）与给定主干不同：{in_model[:4]}",
                                         f"The backbone in the returned model (model[0]) differs from the one given: "
                                         f"{in_model[:4]}"), FEW_SHOT_FORMAT)


def _few_shot_accuracy(res: dict, labels: torch.Tensor, num_classes: int, threshold: float, what: str) -> None:
    weight, bias = _head(res, num_classes, what)
    _raised(res, f"{what}(x_eval)", key="forward_error")
    logits = res["features"] @ weight.T + bias
    checks.assert_close(res["logits"], logits, f"{what}.eval()(x_eval)", atol=1e-4,
                        rtol=1e-3, rel_l2=1e-4, hint=FEW_SHOT_FORMAT)
    checks.assert_finite(logits, "model[1](backbone(x_eval))")
    acc = float((logits.argmax(1) == labels).float().mean())
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：留出数据上的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy is {acc:.3f}, at least {threshold:.2f} is required"))


@graded(task="finetune_few_shot", kind="shape", points=1, visibility="public")
def test_few_shot_returns_backbone_and_head(student, spec, rng):
    """The result is nn.Sequential(backbone, nn.Linear(128, 5)) whose eval logits on held-out images are (N, 5)."""
    res, labels, what = _few_shot_public(student, spec, rng, epochs=3)
    _head(res, 5, what)
    _raised(res, f"{what}(x_eval)", key="forward_error")
    checks.assert_shape(res["logits"], (len(labels), 5), f"{what}.eval()(x_eval)")


@graded(task="finetune_few_shot", kind="gradient", points=2, visibility="public")
def test_few_shot_backbone_frozen(student, spec, rng):
    """Bit for bit, the backbone's parameters and BatchNorm statistics are what they were before training."""
    res, _, what = _few_shot_public(student, spec, rng)
    _head(res, 5, what)
    _check_backbone_unchanged(res)


@graded(task="finetune_few_shot", kind="accuracy", points=2, visibility="public")
def test_few_shot_accuracy(student, spec, rng):
    """10 noisy images per class: a head trained on the frozen backbone's features classifies held-out images."""
    res, labels, what = _few_shot_public(student, spec, rng)
    _few_shot_accuracy(res, labels, 5, spec.param("few_shot_accuracy_public"), what)


@graded(task="finetune_few_shot", kind="accuracy", points=2, visibility="hidden")
def test_few_shot_pretrained_backbone_frozen_and_accurate(student, request, spec, rng):
    """With the course's pretrained backbone on digits 5-9 (labels 0-4): untouched backbone, held-out accuracy."""
    res, labels, what = _few_shot(student, request, spec, rng)
    _check_backbone_unchanged(res)
    _few_shot_accuracy(res, labels, 5, spec.param("few_shot_accuracy_hidden"), what)


@graded(task="finetune_few_shot", kind="accuracy", points=1, visibility="hidden")
def test_few_shot_unmapped_labels(student, request, spec, rng):
    """num_classes=10 with the unmapped labels 5-9: the head has 10 outputs and still classifies held-out digits."""
    res, labels, what = _few_shot(student, request, spec, rng, num_classes=10, remap=False)
    _check_backbone_unchanged(res)
    _few_shot_accuracy(res, labels, 10, spec.param("few_shot_accuracy_unmapped"), what)


# -- T7.6 build_resnet18_transfer --------------------------------------------------------------------
def _fake_images(n: int, channels: int, seed: int) -> torch.Tensor:
    """``n`` images from torchvision's FakeData (deterministic per index) as one (n, C, 32, 32) batch."""
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    fake = datasets.FakeData(size=n, image_size=(channels, 32, 32), num_classes=10,
                             transform=transforms.ToTensor(), random_offset=seed % 100000)
    return torch.stack([fake[i][0] for i in range(n)])


def _resnet(student, rng, num_classes: int, **kwargs) -> tuple[dict, str]:
    args = ", ".join([str(num_classes)] + [f"{k}={v}" for k, v in kwargs.items() if k in ("in_channels", "freeze_backbone")])
    what = f"build_resnet18_transfer({args})"
    res = student.probe("resnet_probe", num_classes=num_classes, seed=seed_from(rng), **kwargs)
    if res.get("error"):
        network = any(sign in res["error"] for sign in ("URLError", "urlopen", "HTTPError", "Network is unreachable"))
        hint = NO_DOWNLOADS if res.get("download_attempted") or network else \
            IN_FEATURES_FIRST if "in_features" in res["error"] else None
        _raised(res, what, hint)
    checks.assert_true(res["model_type"] == "ResNet" and "layer4.1.conv2.weight" in res["shapes"], Msg(
        f"{what} 返回了 {res['model_type']}", f"{what} returned a {res['model_type']}"), TORCHVISION_RESNET)
    return res, what


def _check_resnet_flags(res: dict, what: str, trainable: tuple[str, ...] | None) -> None:
    for name, flag in res["flags"].items():
        want = True if trainable is None else name.split(".")[0] in trainable
        checks.assert_true(flag == want, Msg(f"{what}：{name}.requires_grad = {flag}，应为 {want}",
                                             f"{what}: {name}.requires_grad = {flag}, expected {want}"),
                           NEW_LAYER_TRAINABLE if want else None)


@graded(task="build_resnet18_transfer", kind="shape", points=1, visibility="public")
def test_resnet_output_shapes(student, rng):
    """FakeData 3x32x32 images give (2, 7) logits, also for a single image in eval mode; in_channels=1 takes 1x32x32."""
    res, what = _resnet(student, rng, 7, x=_fake_images(2, 3, seed_from(rng)))
    checks.assert_equal(res["shapes"]["fc.weight"], [7, 512], "list(model.fc.weight.shape)")
    _raised(res, f"{what}(x)", key="forward_error")
    checks.assert_shape(res["out"], (2, 7), f"{what}(x[2, 3, 32, 32])")
    res, what = _resnet(student, rng, 7, x=_fake_images(1, 3, seed_from(rng)))
    checks.assert_shape(res["out"], (1, 7), f"{what}.eval()(x[1, 3, 32, 32])")
    res, what = _resnet(student, rng, 3, in_channels=1, x=_fake_images(2, 1, seed_from(rng)))
    checks.assert_equal(res["shapes"]["conv1.weight"], [64, 1, 7, 7], "list(model.conv1.weight.shape) (in_channels=1)")
    _raised(res, f"{what}(x)", key="forward_error")
    checks.assert_shape(res["out"], (2, 3), f"{what}(x[2, 1, 32, 32])")


@graded(task="build_resnet18_transfer", kind="gradient", points=2, visibility="public")
def test_resnet_only_head_trainable(student, rng):
    """freeze_backbone=True: only fc (and a new conv1) are trainable and receive gradients; False: everything is."""
    for kwargs, trainable in (({}, ("fc",)), ({"in_channels": 1}, ("fc", "conv1")),
                              ({"freeze_backbone": False}, None)):
        channels = kwargs.get("in_channels", 3)
        res, what = _resnet(student, rng, 4, x=_fake_images(2, channels, seed_from(rng)), **kwargs)
        _check_resnet_flags(res, what, trainable)
        _raised(res, f"{what}(x)", key="forward_error")
        for name, norm in res["grad_norms"].items():
            reach = trainable is None or name.split(".")[0] in trainable
            if reach and name.startswith(("fc.", "conv1.")):
                checks.assert_true(norm is not None and norm > 0, Msg(
                    f"{what}：{name} 没有得到梯度", f"{what}: {name} received no gradient"), NEW_LAYER_TRAINABLE)
            elif not reach:
                checks.assert_true(norm is None or norm == 0, Msg(
                    f"{what}：冻结的 {name} 得到了梯度", f"{what}: the frozen {name} received a gradient"))


def _colour_images(rng: torch.Generator, colours: torch.Tensor, per_class: int, noise: float):
    labels = torch.arange(len(colours)).repeat_interleave(per_class)
    images = colours[labels][:, :, None, None] + noise * torch.randn(len(labels), 3, 32, 32, generator=rng)
    return images, labels


@graded(task="build_resnet18_transfer", kind="accuracy", points=2, visibility="hidden")
def test_resnet_head_learns_colours(student, spec, rng):
    """Training only the trainable parameters (fc) on colour-coded 32x32 images separates held-out images."""
    p = spec.param("resnet_fit")
    corners = torch.tensor([[a, b, c] for a in (-1.0, 1.0) for b in (-1.0, 1.0) for c in (-1.0, 1.0)])
    colours = corners[torch.randperm(8, generator=rng)[:p["classes"]]]  # distinct corners of the RGB cube
    x_tr, y_tr = _colour_images(rng, colours, p["train_per_class"], p["noise"])
    x_ev, y_ev = _colour_images(rng, colours, p["eval_per_class"], p["noise"])
    res, what = _resnet(student, rng, p["classes"], x=x_ev, x_train=x_tr, y_train=y_tr, steps=p["steps"], lr=p["lr"])
    _check_resnet_flags(res, what, ("fc",))
    _raised(res, f"train_fc({what})", key="train_error")
    _raised(res, f"{what}(x)", key="forward_error")
    checks.assert_shape(res["out"], (len(y_ev), p["classes"]), f"{what}(x_eval)")
    acc = float((res["out"].argmax(1) == y_ev).float().mean())
    threshold = spec.param("resnet_accuracy")
    checks.assert_at_least(acc, threshold, Msg(
        f"{what}：只训练 `fc` 后留出图像的准确率为 {acc:.3f}，要求至少 {threshold:.2f}",
        f"{what}: held-out accuracy after training fc only is {acc:.3f}, at least {threshold:.2f} is required"))


@graded(task="build_resnet18_transfer", kind="shape", points=1, visibility="hidden")
def test_resnet_builds_offline(student, rng):
    """Built with every download blocked, for 10 classes and for 2; fc reads in_features 512; nothing frozen by mistake."""
    for n in (10, 2):
        res, what = _resnet(student, rng, n)
        checks.assert_equal(res["shapes"]["fc.weight"], [n, 512], f"{what}: list(model.fc.weight.shape)")
        checks.assert_equal(res["shapes"]["conv1.weight"], [64, 3, 7, 7], f"{what}: list(model.conv1.weight.shape)")
        _check_resnet_flags(res, what, ("fc",))
