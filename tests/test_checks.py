"""The checks library fails wrong answers with messages that say what differed."""

from __future__ import annotations

import pytest
import torch

from grader import checks
from grader.i18n import Msg
from grader.verdicts import CheckFailed
from grader.worker import wire


def failure(fn, *args, **kwargs) -> Msg:
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return info.value.message


def test_all_zeros_cannot_pass_a_loose_atol() -> None:
    expected = torch.full((100,), 1e-3)
    message = failure(checks.assert_close, torch.zeros(100), expected, "f(x)", atol=1e-2)
    assert "relative L2 error 1" in message.en and "all zeros" in message.en
    assert "相对 L2 误差" in message.zh


def test_mismatch_message_names_worst_element() -> None:
    expected = torch.zeros(3, 4)
    got = expected.clone()
    got[2, 1] = 0.5
    message = failure(checks.assert_close, got, expected, "f(x)")
    assert "index (2, 1)" in message.en and "got 0.5" in message.en


def test_shape_is_exact_without_broadcasting() -> None:
    message = failure(checks.assert_close, torch.zeros(4, 1), torch.zeros(4), "f(x)")
    assert "expected shape (4,), got (4, 1)" in message.en


def test_dtype_and_device_use_worker_facts() -> None:
    assert "expected dtype torch.float32" in failure(checks.assert_dtype, torch.zeros(2, dtype=torch.float64),
                                                     torch.float32, "f").en
    meta = wire.roundtrip({"t": torch.empty(2, device="meta")})["t"]
    checks.assert_device(meta, "meta", "f")
    assert "expected device cpu, got meta" in failure(checks.assert_device, meta, "cpu", "f").en


def test_per_dtype_tolerance() -> None:
    x = torch.randn(50, dtype=torch.float64)
    checks.assert_close(x + 1e-10, x, "f")
    failure(checks.assert_close, x + 1e-5, x, "f")
    checks.assert_close((x + 1e-3).half(), x.half(), "f")


def test_known_mistake_is_named() -> None:
    x = torch.randn(20, 3)
    biased = x / x.std(0, correction=0)
    unbiased = x / x.std(0)
    hint = Msg("用总体方差", "use the population variance")
    message = failure(checks.assert_close, unbiased, biased, "f", mistakes={hint: unbiased})
    assert message.en.startswith("This looks like a common mistake: use the population variance")


def test_nan_is_reported_even_where_expected_is_finite() -> None:
    got = torch.tensor([1.0, float("nan")])
    message = failure(checks.assert_finite, got, "f")
    assert "NaN" in message.en and "(1,)" in message.en
    failure(checks.assert_close, got, torch.tensor([1.0, 2.0]), "f")


def test_gradient_checks() -> None:
    assert "No gradient reached w" in failure(checks.assert_grad, None, torch.ones(2), "w").en
    checks.assert_no_grad(None, "frozen")
    failure(checks.assert_no_grad, torch.ones(2), "frozen")
    detached = wire.roundtrip({"t": torch.ones(2, requires_grad=True).detach()})["t"]
    assert "detached" in failure(checks.assert_attached, detached, "f(x)").en


def test_number_check_wants_a_python_float() -> None:
    assert ".item()" in failure(checks.assert_number_close, torch.tensor(3.0), 3.0, "f", atol=1e-3).en
    checks.assert_number_close(3.0001, 3.0, "f", atol=1e-3)
