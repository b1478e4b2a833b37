"""The wire format carries data only and refuses anything malformed."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch

from grader.worker import wire


def test_round_trip_keeps_values_and_facts() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    y = x * 2
    message = {
        "tensors": [x, y.detach(), torch.arange(5), torch.ones(2, dtype=torch.bool)],
        "meta": torch.empty(7, 2, device="meta"),
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "numbers": (1, 2.5, float("nan"), float("-inf"), None, True, "text"),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "y": y,
    }
    out = wire.roundtrip(message)
    assert torch.equal(out["tensors"][0], x.detach())
    assert wire.tensor_facts(out["tensors"][0]).requires_grad
    assert wire.tensor_facts(out["y"]).has_grad_fn and not wire.tensor_facts(out["y"]).is_leaf
    assert not wire.tensor_facts(out["tensors"][1]).requires_grad
    assert out["meta"].device.type == "meta" and out["meta"].shape == (7, 2)
    assert wire.tensor_facts(out["meta"]).device == "meta"
    assert isinstance(out["array"], np.ndarray) and out["array"].dtype == np.int32
    assert out["numbers"][0:2] == (1, 2.5) and np.isnan(out["numbers"][2]) and out["numbers"][3] == float("-inf")
    assert out["numbers"][4:] == (None, True, "text")
    assert out["dtype"] is torch.float16 and out["device"] == torch.device("cpu")


@pytest.mark.parametrize("value", [lambda: 0, torch.nn.Linear(2, 2), object(), {1: 2}, np.array([object()])])
def test_code_and_objects_do_not_cross(value: object) -> None:
    with pytest.raises(wire.UnsupportedValue):
        wire.encode_frame({"value": value})


def _frame(header: bytes, blob: bytes = b"") -> io.BytesIO:
    return io.BytesIO(struct.pack("<I", len(header)) + header + struct.pack("<Q", len(blob)) + blob)


@pytest.mark.parametrize("header,blob", [
    (b"not json", b""),
    (json.dumps([1, 2]).encode(), b""),
    (json.dumps({"v": {"__tensor__": "t0", "dtype": "float32", "shape": [2], "facts": ["cpu", 0, 0, 1]}}).encode(), b""),
    (json.dumps({"v": {"__tensor__": "t0", "dtype": "object", "shape": [2], "facts": ["cpu", 0, 0, 1]}}).encode(), b""),
    (json.dumps({"v": {"__pickle__": "gASV"}}).encode(), b""),
    (json.dumps({"v": {"__float__": "1e999"}}).encode(), b""),
    (json.dumps({"ok": True}).encode(), b"garbage that is not safetensors"),
])
def test_malformed_frames_are_refused(header: bytes, blob: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.read_frame(_frame(header, blob))


def test_oversized_and_truncated_frames() -> None:
    with pytest.raises(wire.WireError):
        wire.read_frame(io.BytesIO(struct.pack("<I", wire.MAX_HEADER_BYTES + 1)))
    with pytest.raises(wire.ChannelClosed):
        wire.read_frame(io.BytesIO(b"\x05\x00"))


def test_tensor_subclasses_are_refused() -> None:
    """A subclass answers questions about itself (``__torch_function__``): it cannot cross."""
    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
            return super().__torch_function__(func, types, args, kwargs or {})

    liar = torch.zeros(3).as_subclass(Liar)
    with pytest.raises(wire.UnsupportedValue, match="subclass"):
        wire.encode_frame({"value": liar})
    wire.encode_frame({"value": torch.nn.Parameter(torch.zeros(2))})  # parameters are plain tensors


def test_facts_come_from_the_tensor_not_from_patched_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    detached = torch.zeros(3)
    monkeypatch.setattr(torch.Tensor, "requires_grad", property(lambda self: True))
    monkeypatch.setattr(torch.Tensor, "clone", lambda self, *a, **k: torch.ones(3))
    decoded = wire.roundtrip({"value": detached})["value"]
    assert wire.tensor_facts(decoded).requires_grad is False
    assert torch.equal(decoded, torch.zeros(3))


def test_a_result_without_values_fails_the_value_check() -> None:
    from grader import checks
    from grader.verdicts import CheckFailed

    meta = wire.roundtrip({"value": torch.empty(2, 3, device="meta")})["value"]
    with pytest.raises(CheckFailed, match="meta device"):
        checks.assert_close(meta, torch.zeros(2, 3), "f(x)")
    checks.assert_close(meta, torch.empty(2, 3, device="meta"), "f(x, device='meta')")  # asked for: shape only
