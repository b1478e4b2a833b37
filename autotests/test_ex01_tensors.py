"""Autotests for ex01_tensors: shapes, values, gradients and speed of basic tensor code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader import checks
from grader.i18n import Msg
from grader.plugin import graded
from grader.timing import assert_speed, compare_generated_speed

pytestmark = pytest.mark.exercise("ex01_tensors")

SHARES_MEMORY = Msg("输出张量与输入数组共享内存：修改结果会改动原数组，请使用 torch.tensor / .clone() 复制",
                    "The returned tensor shares memory with the NumPy input: copy it (torch.tensor / .clone())")
FLOAT64_DEFAULT = Msg("dtype 应为要求的类型：NumPy 默认 float64，需要显式转换",
                      "Use the requested dtype: NumPy defaults to float64, convert explicitly")
DTYPE_ARGUMENT = Msg("结果的 dtype 不是 dtype 参数要求的：请把它传给 torch.tensor() 或 .to()",
                     "The result's dtype is not the one the dtype argument asks for: pass it to torch.tensor() or .to()")
DEVICE_IGNORED = Msg("结果不在要求的设备上（测试使用 'meta' 设备）：请把结果放到 `device` 参数指定的设备上",
                     "The result is not on the requested device (the test uses 'meta'): honour the device argument")
UNBIASED = Msg("请使用总体方差（unbiased=False / correction=0），不是样本方差",
               "Use the population variance (correction=0), not the sample variance")
EPS_IN_SQRT = Msg("常数列方差为 0：`eps` 应加在 torch.sqrt() 里面", "Constant columns have zero variance: add eps inside the sqrt")
FLOAT32_BUFFER = Msg("float64 输入得到了 float32 输出：新建的张量（torch.zeros()、torch.empty()、torch.tensor()）默认是 "
                     "float32，请传入 dtype=x.dtype 或使用 torch.zeros_like(x)",
                     "A float64 input gave a float32 output: new tensors (torch.zeros, torch.empty, torch.tensor) default "
                     "to float32; pass dtype=x.dtype or use torch.zeros_like(x)")
NEGATIVE_DISTANCES = Msg("出现负的平方距离：浮点抵消造成，请 clamp_min(0)",
                         "Negative squared distances from cancellation: clamp them at 0")
TRANSPOSED_PRODUCT = Msg("结果的形状是 (M, N)：矩阵乘法应为 a @ b.T，而不是 b @ a.T",
                         "The result has shape (M, N): the matrix product should be a @ b.T, not b @ a.T")
RESHAPE_NOT_PERMUTE = Msg("形状对了但像素顺序错了：reshape() 不能代替 permute()（与 F.unfold 对比）",
                          "Right shape, wrong pixel order: reshape is not permute (compare with F.unfold)")
UNPATCHIFY_RESHAPE = Msg("形状对了但像素顺序错了：reshape() 不能代替 permute()（与 F.fold 对比）",
                         "Right shape, wrong pixel order: reshape is not permute (compare with F.fold)")
HW_SWAPPED = Msg("结果与把 H 和 W 对调后得到的一样：检查 H/W 的顺序（只有非方形图像才看得出来）",
                 "The result is what swapping H and W gives: check the H/W order (only non-square images show it)")
FLATTENS_BATCH = Msg("布尔索引 x[mask] 会展平批次维：请用乘以掩码再求和",
                     "Boolean indexing x[mask] flattens the batch: multiply by the mask and sum instead")
NAN_EMPTY_ROW = Msg("全部被遮蔽的行得到 NaN：请用 clamp_min(1) 让计数至少为 1",
                    "A fully masked row gives NaN: clamp the count to at least 1")


def _dtype_hint(out: object) -> Msg:
    """NumPy's float64 leaking through, or any other dtype: the dtype argument was not used."""
    return FLOAT64_DEFAULT if isinstance(out, torch.Tensor) and out.dtype == torch.float64 else DTYPE_ARGUMENT


def _nonfinite_only_at(out: object, where: torch.Tensor) -> bool:
    """``out`` has NaN/Inf, and only at the positions ``where`` marks (so they explain it)."""
    if not isinstance(out, torch.Tensor) or out.shape != where.shape or not out.is_floating_point():
        return False
    bad = ~torch.isfinite(out)
    return bool(bad.any()) and bool(where[bad].all())


def _assert_raises(raised: str | None, expected: str, call: str, hint: Msg) -> None:
    """``raised``: the exception type the ``raises`` probe saw, None if the call returned."""
    if raised != expected:
        zh, en = (f"抛出了 {raised}", f"raised {raised}") if raised else ("正常返回了", "returned normally")
        checks.fail(Msg(f"{call} 应抛出 {expected}，实际{zh}", f"{call} should raise {expected}, but {en}"), hint)


# -- T1.1 to_tensor_batch --------------------------------------------------------------------------
def _arrays(rng: torch.Generator, n: int = 3, shape: tuple[int, ...] = (4, 6)) -> list[np.ndarray]:
    return [torch.randn(shape, dtype=torch.float64, generator=rng).numpy() for _ in range(n)]


@graded(task="to_tensor_batch", kind="shape", points=1, visibility="public")
def test_to_tensor_batch_shape_and_dtype(student, rng):
    """Three float64 arrays stack into a float32 (3, 4, 6) tensor on the CPU."""
    out = student.to_tensor_batch(_arrays(rng))
    checks.assert_dtype(out, torch.float32, "to_tensor_batch(arrays)", hint=_dtype_hint(out))
    checks.assert_shape(out, (3, 4, 6), "to_tensor_batch(arrays)")
    checks.assert_device(out, "cpu", "to_tensor_batch(arrays)")


@graded(task="to_tensor_batch", kind="accuracy", points=1, visibility="public")
def test_to_tensor_batch_values(student, rng):
    """The batch holds the arrays' values in order."""
    arrays = _arrays(rng)
    out = student.to_tensor_batch(arrays, dtype=torch.float64)
    checks.assert_close(out, torch.tensor(np.stack(arrays)), "to_tensor_batch(arrays, dtype=float64)")


@graded(task="to_tensor_batch", kind="accuracy", points=1, visibility="hidden")
def test_to_tensor_batch_is_a_copy(student, rng):
    """The result is a copy: changing the input arrays afterwards leaves it as it was (one array or
    several, any dtype). The probe changes the arrays after the call and returns the result; a
    result that shares their memory shows the change."""
    for n, dtype in ((1, torch.float64), (2, torch.float64), (1, torch.float32)):
        arrays = _arrays(rng, n=n)
        res = student.probe("to_tensor_batch_copy", arrays=arrays, kwargs={"dtype": dtype})
        expected = torch.tensor(np.stack(arrays), dtype=dtype)
        out = res["out"]
        if isinstance(out, torch.Tensor) and out.shape == expected.shape and out.dtype == dtype and out.numel():
            shift = out.double() - expected.double()  # the same whole number everywhere: the arrays' change
            checks.assert_true(not (bool((shift == shift.flatten()[0]).all()) and float(shift.flatten()[0]) >= 1),
                               SHARES_MEMORY)
        checks.assert_close(out, expected, f"to_tensor_batch(arrays, dtype={dtype}), len(arrays) = {n}")


@graded(task="to_tensor_batch", kind="accuracy", points=1, visibility="hidden")
def test_to_tensor_batch_non_contiguous_inputs(student, rng):
    """Transposed and strided array views stack to their values, not their memory layout."""
    arrays = _arrays(rng, n=2, shape=(5, 6))
    for view, expected, views in (("T", [a.T for a in arrays], "[a.T for a in arrays]"),
                                  ("stride", [a[:, ::2] for a in arrays], "[a[:, ::2] for a in arrays]")):
        res = student.probe("to_tensor_batch_copy", arrays=arrays, view=view)
        checks.assert_close(res["out"], torch.tensor(np.stack(expected), dtype=torch.float32),
                            f"to_tensor_batch({views})")


@graded(task="to_tensor_batch", kind="shape", points=1, visibility="hidden")
def test_to_tensor_batch_dtypes_devices_and_errors(student, rng):
    """Requested dtypes and the meta device are honoured; one array works; bad shapes raise."""
    arrays = _arrays(rng, n=1, shape=(2, 3))
    for dtype in (torch.float64, torch.int64, torch.float16):
        out = student.to_tensor_batch(arrays, dtype=dtype)
        checks.assert_dtype(out, dtype, f"to_tensor_batch(arrays, dtype={dtype})", hint=_dtype_hint(out))
    out = student.to_tensor_batch(arrays, device="meta")
    checks.assert_shape(out, (1, 2, 3), "to_tensor_batch(arrays, device='meta')")
    checks.assert_device(out, "meta", "to_tensor_batch(arrays, device='meta')", hint=DEVICE_IGNORED)
    bad = [np.zeros((2, 3)), np.zeros((3, 2))]
    raised = student.probe("raises", name="to_tensor_batch", args=[bad])
    _assert_raises(raised, "ValueError", "to_tensor_batch([np.zeros((2, 3)), np.zeros((3, 2))])",
                   Msg("形状不一致的数组应抛出 ValueError", "Arrays of different shapes should raise ValueError"))


# -- T1.2 standardize ------------------------------------------------------------------------------
def _unbiased(x: torch.Tensor, dim, eps: float = 1e-5) -> torch.Tensor:
    return (x - x.mean(dim, keepdim=True)) / torch.sqrt(x.var(dim, keepdim=True) + eps)


@graded(task="standardize", kind="accuracy", points=2, visibility="public")
def test_standardize_zero_mean_unit_variance(student, rng):
    """Along dim 0 every column ends with mean 0 and population variance 1 (up to eps)."""
    x = torch.randn(64, 5, generator=rng) * 3 + 7
    out = student.standardize(x)
    checks.assert_dtype(out, x.dtype, "standardize(x)")
    checks.assert_shape(out, x.shape, "standardize(x)")
    var = x.var(0, correction=0)
    expected = (x - x.mean(0)) / torch.sqrt(var + 1e-5)
    checks.assert_close(out, expected, "standardize(x)", mistakes={UNBIASED: _unbiased(x, 0)})


@graded(task="standardize", kind="gradient", points=1, visibility="public")
def test_standardize_gradcheck(student, rng):
    """Gradients through standardize agree with finite differences (float64, kept as the output's dtype)."""
    x = torch.randn(6, 3, dtype=torch.float64, generator=rng)
    checks.assert_dtype(student.standardize(x, dim=0), torch.float64, "standardize(x, dim=0)", hint=FLOAT32_BUFFER)
    checks.assert_gradcheck(student, "standardize", (x,), kwargs={"dim": 0}, generator=rng)


@graded(task="standardize", kind="accuracy", points=2, visibility="hidden")
def test_standardize_dims_and_dtypes(student, reference, rng):
    """Negative dims, tuple dims over NCHW, float64 and a constant column match the reference."""
    constant = torch.randn(10, 3, generator=rng)
    constant[:, 1] = 2.5
    cases = [
        (constant, 0),
        (torch.randn(16, 7, generator=rng), -1),
        (torch.randn(4, 3, 5, 5, generator=rng), (0, 2, 3)),
        (torch.randn(9, 4, dtype=torch.float64, generator=rng), 0),
    ]
    for x, dim in cases:
        out = student.standardize(x, dim=dim)
        what = f"standardize(x{list(x.shape)}, dim={dim})"
        constant = (x.var(dim, keepdim=True, correction=0) == 0).expand_as(x)
        checks.assert_finite(out, what, hint=EPS_IN_SQRT if _nonfinite_only_at(out, constant) else None)
        checks.assert_close(out, reference.standardize(x, dim=dim), what, mistakes={UNBIASED: _unbiased(x, dim)})


@graded(task="standardize", kind="accuracy", points=1, visibility="hidden")
def test_standardize_non_contiguous(student, reference, rng):
    """A transposed (non-contiguous) input gives the same result as its contiguous copy."""
    x = torch.randn(12, 20, generator=rng)
    out = student.probe("call_transposed", name="standardize", args=[x.T.contiguous(), 0],
                        transpose={"0": [0, 1]})
    checks.assert_close(out, reference.standardize(x, dim=0), "standardize(x.T.T, dim=0)")


@graded(task="standardize", kind="speed", points=1, visibility="hidden")
def test_standardize_speed(student, reference_worker, spec, rng):
    """standardize on a large input is no more than a few times slower than the reference."""
    result = compare_generated_speed(student, reference_worker, "standardize",
                                     [{"randn": spec.param("standardize_speed_shape")}, 0], rng,
                                     rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                     factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "standardize()")


# -- T1.3 pairwise_sq_dists ------------------------------------------------------------------------
def _brute_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


@graded(task="pairwise_sq_dists", kind="shape", points=1, visibility="public")
def test_pairwise_shape(student, rng):
    """(N, D) and (M, D) give (N, M) with N ≠ M."""
    a, b = torch.randn(5, 3, generator=rng), torch.randn(7, 3, generator=rng)
    out = student.pairwise_sq_dists(a, b)
    checks.assert_dtype(out, torch.float32, "pairwise_sq_dists(a[5,3], b[7,3])")
    transposed = isinstance(out, torch.Tensor) and tuple(out.shape) == (7, 5)
    checks.assert_shape(out, (5, 7), "pairwise_sq_dists(a[5,3], b[7,3])", hint=TRANSPOSED_PRODUCT if transposed else None)


@graded(task="pairwise_sq_dists", kind="accuracy", points=2, visibility="public")
def test_pairwise_values(student, rng):
    """Entries equal ||a_i - b_j||² and none is negative."""
    a, b = torch.randn(20, 8, generator=rng), torch.randn(11, 8, generator=rng)
    out = student.pairwise_sq_dists(a, b)
    checks.assert_close(out, _brute_sq_dists(a, b), "pairwise_sq_dists(a, b)", atol=1e-4,
                        mistakes={Msg("忘了平方或多开了根号", "Distances are not squared (a sqrt too many?)"):
                                  _brute_sq_dists(a, b).sqrt()})


@graded(task="pairwise_sq_dists", kind="gradient", points=1, visibility="hidden")
def test_pairwise_gradcheck(student, rng):
    """Gradients with respect to both inputs agree with finite differences (float64, kept as the output's dtype)."""
    a = torch.randn(4, 3, dtype=torch.float64, generator=rng)
    b = torch.randn(5, 3, dtype=torch.float64, generator=rng)
    checks.assert_dtype(student.pairwise_sq_dists(a, b), torch.float64, "pairwise_sq_dists(a, b)", hint=FLOAT32_BUFFER)
    checks.assert_gradcheck(student, "pairwise_sq_dists", (a, b), wrt=(0, 1), generator=rng)


@graded(task="pairwise_sq_dists", kind="accuracy", points=1, visibility="hidden")
def test_pairwise_self_and_large_values(student, rng):
    """With a == b near 1e3 (float32 cancellation) nothing is negative; float64 and N=1 work."""
    a = torch.randn(30, 16, generator=rng) * 30 + 1e3
    out = student.pairwise_sq_dists(a, a)
    what = "pairwise_sq_dists(a, a), a = 1e3 + 30 * randn(30, 16)"
    checks.assert_tensor(out, what)
    lowest = float(out.min()) if out.numel() else 0.0
    checks.assert_true(lowest >= 0, Msg(f"{what}：出现负值（最小为 {lowest:.3g}）", f"{what}: negative entries (the lowest is "
                                        f"{lowest:.3g})"), NEGATIVE_DISTANCES)
    scale = float((a * a).sum(1).max())  # cancellation error grows with |a|², not with the distance
    checks.assert_close(out, _brute_sq_dists(a, a), what, atol=1e-5 * scale, rtol=1e-3, rel_l2=1e-2)
    a64, b64 = torch.randn(1, 2, dtype=torch.float64, generator=rng), torch.randn(6, 2, dtype=torch.float64, generator=rng)
    checks.assert_close(student.pairwise_sq_dists(a64, b64), _brute_sq_dists(a64, b64), "pairwise_sq_dists(a[1,2], b[6,2])")


@graded(task="pairwise_sq_dists", kind="speed", points=1, visibility="hidden")
def test_pairwise_speed(student, reference_worker, spec, rng):
    """Vectorised distances: no more than a few times slower than the reference."""
    n, m, d = spec.param("pairwise_speed_sizes")
    result = compare_generated_speed(student, reference_worker, "pairwise_sq_dists",
                                     [{"randn": [n, d]}, {"randn": [m, d]}], rng,
                                     rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                     factor=spec.param("speed_factor"),
                                     rel_tol=1e-3)
    assert_speed(result, spec.param("speed_factor"), "pairwise_sq_dists")


# -- T1.4 patchify / unpatchify ---------------------------------------------------------------------
def _unfold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.unfold(x, p, stride=p).transpose(1, 2)


def _unpatchify_hw_swapped(patches: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """unpatchify that reads the patch grid as (W/p, H/p) rows and columns: the H/W mix-up."""
    b = patches.shape[0]
    return patches.reshape(b, w // p, h // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@graded(task="patchify", kind="shape", points=1, visibility="public")
def test_patchify_shape(student, rng):
    """(2, 3, 8, 12) images in 4×4 patches give (2, 6, 48)."""
    out = student.patchify(torch.randn(2, 3, 8, 12, generator=rng), 4)
    checks.assert_shape(out, (2, 6, 48), "patchify(x[2,3,8,12], 4)")


@graded(task="patchify", kind="accuracy", points=2, visibility="public")
def test_patchify_matches_unfold(student, rng):
    """Patch order and layout match F.unfold: row-major patches, each flattened as (C, p, p)."""
    x = torch.randn(2, 3, 8, 12, generator=rng)
    out = student.patchify(x, 4)
    checks.assert_close(out, _unfold_patches(x, 4), "patchify(x, 4)",
                        mistakes={RESHAPE_NOT_PERMUTE: x.reshape(2, 6, 48)}, hint=None)


@graded(task="patchify", kind="accuracy", points=1, visibility="public")
def test_unpatchify_round_trip(student, rng):
    """unpatchify(patchify(x)) gives x back exactly, for non-square images too."""
    x = torch.randn(2, 3, 8, 12, generator=rng)
    patches = _unfold_patches(x, 4)
    out = student.unpatchify(patches, 4, 3, 8, 12)
    what = "unpatchify(patches, 4, 3, 8, 12)"
    checks.assert_dtype(out, x.dtype, what)
    hw_swapped = isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 3, 12, 8)
    checks.assert_shape(out, x.shape, what, hint=HW_SWAPPED if hw_swapped else None)
    checks.assert_close(out, x, what, atol=0, rtol=0, rel_l2=0,
                        mistakes={HW_SWAPPED: _unpatchify_hw_swapped(patches, 4, 3, 8, 12),
                                  UNPATCHIFY_RESHAPE: patches.reshape(2, 3, 8, 12)})


@graded(task="patchify", kind="accuracy", points=1, visibility="hidden")
def test_patchify_edge_cases(student, rng):
    """Non-contiguous input, one channel, one patch per image, and indivisible sizes raising ValueError."""
    x = torch.randn(2, 3, 12, 8, generator=rng)
    out = student.probe("call_transposed", name="patchify", args=[x.transpose(2, 3).contiguous(), 4],
                        transpose={"0": [2, 3]})
    checks.assert_close(out, _unfold_patches(x, 4), "patchify(x.transpose(2, 3).contiguous().transpose(2, 3), 4)")
    one = torch.randn(3, 1, 6, 6, generator=rng)
    checks.assert_close(student.patchify(one, 6), _unfold_patches(one, 6), "patchify(x[3,1,6,6], 6)")
    raised = student.probe("raises", name="patchify", args=[torch.zeros(1, 1, 6, 7), 3])
    _assert_raises(raised, "ValueError", "patchify(torch.zeros(1, 1, 6, 7), 3)",
                   Msg("H 或 W 不能被 `patch` 整除时应抛出 ValueError",
                       "H or W not divisible by patch should raise ValueError"))
    meta = student.patchify(torch.empty(2, 3, 8, 8, device="meta"), 4)
    checks.assert_shape(meta, (2, 4, 48), "patchify(torch.empty(2, 3, 8, 8, device='meta'), 4)")
    checks.assert_device(meta, "meta", "patchify(torch.empty(2, 3, 8, 8, device='meta'), 4)")


@graded(task="patchify", kind="gradient", points=1, visibility="hidden")
def test_patchify_gradient_is_a_permutation(student, rng):
    """The backward of patchify routes each patch gradient to its own pixels (unpatchify of it)."""
    x = torch.randn(1, 2, 4, 6, dtype=torch.float64, generator=rng)
    g = torch.randn(1, 6, 8, dtype=torch.float64, generator=rng)
    res = student.vjp("patchify", (x, 2), grad_output=g)
    checks.assert_attached(res["output"], "patchify(x, 2)")
    expected = F.fold(g.transpose(1, 2), (4, 6), 2, stride=2)
    checks.assert_grad(res["grads"][0], expected, "x")


# -- T1.5 masked_mean ---------------------------------------------------------------------------------
def _loop_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for b in range(x.shape[0]):
        keep = x[b][mask[b].bool()]
        rows.append(keep.mean(0) if len(keep) else torch.zeros(x.shape[2:], dtype=x.dtype))
    return torch.stack(rows)


def _lengths_mask(rng: torch.Generator, b: int, t: int) -> torch.Tensor:
    lengths = torch.randint(1, t + 1, (b,), generator=rng)
    return torch.arange(t)[None, :] < lengths[:, None]


@graded(task="masked_mean", kind="shape", points=1, visibility="public")
def test_masked_mean_shape(student, rng):
    """x (B, T, H) with mask (B, T) over dim 1 gives (B, H) in x's dtype."""
    x = torch.randn(4, 6, 3, generator=rng)
    out = student.masked_mean(x, _lengths_mask(rng, 4, 6), 1)
    checks.assert_dtype(out, torch.float32, "masked_mean(x[4,6,3], mask[4,6], dim=1)")
    flattened = isinstance(out, torch.Tensor) and tuple(out.shape) == (3,)
    checks.assert_shape(out, (4, 3), "masked_mean(x[4,6,3], mask[4,6], dim=1)",
                        hint=FLATTENS_BATCH if flattened else None)


@graded(task="masked_mean", kind="accuracy", points=2, visibility="public")
def test_masked_mean_values_and_empty_rows(student, rng):
    """Only unmasked steps count, and a row with no unmasked step gives 0."""
    x = torch.randn(5, 7, 3, generator=rng)
    mask = _lengths_mask(rng, 5, 7)
    mask[0] = torch.arange(7) < 3  # one row shorter than T: dividing by T instead of the count shows
    mask[2] = False
    out = student.masked_mean(x, mask, 1)
    empty_rows = (~mask).all(1, keepdim=True).expand(5, 3)
    checks.assert_finite(out, "masked_mean(x, mask, 1), mask[2] = False",
                         hint=NAN_EMPTY_ROW if _nonfinite_only_at(out, empty_rows) else None)
    checks.assert_close(out, _loop_masked_mean(x, mask), "masked_mean(x, mask, 1)",
                        mistakes={Msg("分母用了总长度 T 而不是有效个数", "Divided by T instead of the number of unmasked steps"):
                                  (x * mask[..., None]).sum(1) / 7})


@graded(task="masked_mean", kind="gradient", points=1, visibility="hidden")
def test_masked_mean_gradient(student, rng):
    """The gradient is 1/count at unmasked positions and 0 at masked ones."""
    x = torch.randn(3, 5, 2, dtype=torch.float64, generator=rng)
    mask = _lengths_mask(rng, 3, 5)
    res = student.vjp("masked_mean", (x, mask, 1), grad_output=torch.ones(3, 2, dtype=torch.float64))
    checks.assert_attached(res["output"], "masked_mean(x, mask, 1)")
    count = mask.sum(1, keepdim=True).clamp_min(1).double()
    expected = (mask.double() / count)[..., None].expand_as(x)
    checks.assert_grad(res["grads"][0], expected, "x")


@graded(task="masked_mean", kind="accuracy", points=1, visibility="hidden")
def test_masked_mean_mask_types_and_devices(student, reference, rng):
    """Integer and 0/1 float masks (a float64 mask keeps a float32 result), batch 1, 2-D input, a
    ``dim`` past the mask's dimensions, and the meta device."""
    x = torch.randn(3, 6, 4, generator=rng)
    mask = _lengths_mask(rng, 3, 6)
    for m in (mask.long(), mask.float(), mask.double()):
        checks.assert_close(student.masked_mean(x, m, 1), _loop_masked_mean(x, mask),
                            f"masked_mean(x, mask.to({m.dtype}), 1)")
    # dim 2 lies past the mask (B, T): every feature of an unmasked step counts, a masked step gives 0
    checks.assert_close(student.masked_mean(x, mask, 2), reference.masked_mean(x, mask, 2), "masked_mean(x, mask, 2)")
    x2 = torch.randn(1, 9, generator=rng)
    m2 = _lengths_mask(rng, 1, 9)
    checks.assert_close(student.masked_mean(x2, m2, 1), reference.masked_mean(x2, m2, 1), "masked_mean(x[1,9], mask, 1)")
    meta = student.masked_mean(torch.empty(2, 5, 3, device="meta"), torch.ones(2, 5, dtype=torch.bool, device="meta"), 1)
    checks.assert_shape(meta, (2, 3), "masked_mean(x.to('meta'), mask.to('meta'), 1)")
    checks.assert_device(meta, "meta", "masked_mean(x.to('meta'), mask.to('meta'), 1)")


@graded(task="masked_mean", kind="speed", points=1, visibility="hidden")
def test_masked_mean_speed(student, reference_worker, spec, rng):
    """A vectorised masked mean: no more than a few times slower than the reference."""
    b, t, h = spec.param("masked_mean_speed_shape")
    result = compare_generated_speed(student, reference_worker, "masked_mean",
                                     [{"randn": [b, t, h]}, {"rand_bool": [b, t], "p": 0.7}, 1], rng,
                                     rounds=spec.param("speed_rounds"), repeats=spec.param("speed_repeats"),
                                     factor=spec.param("speed_factor"))
    assert_speed(result, spec.param("speed_factor"), "masked_mean")
