"""Wire format between the grader and its worker: length-prefixed frames of JSON plus safetensors.

Only data crosses: numbers, strings, lists, dicts, dtypes and tensors. Nothing is pickled,
so a hostile worker can at worst send values that fail the checks, never code.

A frame is ``<u32 header length><header JSON><u64 blob length><safetensors blob>``. The header
holds the message with every tensor replaced by a reference into the blob. Tensors that have no
data to send (``meta`` device) travel as shape and dtype only. Each tensor also carries the facts
the checks need about it in the worker (device, ``requires_grad``, whether it has a ``grad_fn``).

This module runs on both sides of the trust boundary, so it imports only the standard library,
NumPy, torch and safetensors, and uses relative imports only.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 1024 * 1024 * 1024

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64,
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    )
}


class WireError(Exception):
    """The peer sent something that is not a valid frame or value."""


class ChannelClosed(WireError):
    """The peer closed its end of the channel (usually: the process ended)."""


@dataclass(frozen=True)
class TensorFacts:
    """What the worker knew about a tensor that the decoded copy can no longer show."""

    device: str
    requires_grad: bool
    has_grad_fn: bool
    is_leaf: bool


_FACTS_ATTR = "_grader_facts"

# Read a tensor through the C base class, whose attributes student code cannot replace (it can
# replace ``torch.Tensor.requires_grad`` or ``torch.Tensor.clone``). Taken when the worker starts,
# before any student module is imported: defence in depth, since code in the same process can
# still reach this module; verdicts rest on data the grader checks, not on these facts.
_BASE = torch._C.TensorBase
_device, _requires_grad = _BASE.device.__get__, _BASE.requires_grad.__get__
_grad_fn, _is_leaf = _BASE.grad_fn.__get__, _BASE.is_leaf.__get__
_detach, _to, _contiguous, _clone = _BASE.detach, _BASE.to, _BASE.contiguous, _BASE.clone
PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def tensor_facts(t: torch.Tensor) -> TensorFacts:
    """Facts of a tensor as it was where it was made (the worker for decoded tensors)."""
    facts = getattr(t, _FACTS_ATTR, None)
    if facts is not None:
        return facts
    return TensorFacts(str(_device(t)), bool(_requires_grad(t)), _grad_fn(t) is not None, bool(_is_leaf(t)))


class UnsupportedValue(TypeError):
    """A value of a type that cannot cross the boundary (e.g. a student returned a module)."""


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, torch.Tensor):
        if type(value) not in PLAIN_TENSOR_TYPES:
            # A subclass can answer every question about itself (``__torch_function__``): only the
            # plain type's data is taken at its word.
            raise UnsupportedValue(f"a {type(value).__name__} (a subclass of torch.Tensor) cannot be graded: "
                                   "return a plain torch.Tensor")
        facts = tensor_facts(value)
        key = f"t{len(tensors)}"
        entry = {
            "__tensor__": key,
            "dtype": str(value.dtype).removeprefix("torch."),
            "shape": list(value.shape),
            "facts": [facts.device, facts.requires_grad, facts.has_grad_fn, facts.is_leaf],
        }
        if entry["dtype"] not in _DTYPES:
            raise UnsupportedValue(f"tensor dtype {value.dtype} is not supported")
        if _device(value).type == "meta":
            entry["__tensor__"] = None
        else:
            tensors[key] = _clone(_contiguous(_to(_detach(value), "cpu")))
        return entry
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise UnsupportedValue("NumPy arrays of Python objects are not supported")
        return {"__ndarray__": _encode(torch.from_numpy(np.ascontiguousarray(value)), tensors)}
    if isinstance(value, np.generic):
        return _encode(value.item(), tensors)
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UnsupportedValue("only dicts with string keys are supported")
        return {"__dict__": {k: _encode(v, tensors) for k, v in value.items()}}
    raise UnsupportedValue(f"values of type {type(value).__name__} cannot be graded")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError("malformed value in frame")
    if "__tensor__" in node:
        dtype = _DTYPES.get(node.get("dtype"))
        shape = node.get("shape")
        facts = node.get("facts")
        if dtype is None or not isinstance(shape, list) or not isinstance(facts, list) or len(facts) != 4:
            raise WireError("malformed tensor in frame")
        key = node["__tensor__"]
        if key is None:
            t = torch.empty([int(s) for s in shape], dtype=dtype, device="meta")
        else:
            t = tensors.get(key)
            if t is None or t.dtype != dtype or list(t.shape) != shape:
                raise WireError("tensor data does not match its description")
        setattr(t, _FACTS_ATTR, TensorFacts(str(facts[0]), bool(facts[1]), bool(facts[2]), bool(facts[3])))
        return t
    if "__ndarray__" in node:
        t = _decode(node["__ndarray__"], tensors)
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            raise WireError("malformed array in frame")
        return t.numpy()
    if "__float__" in node:
        text = node["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise WireError("malformed float in frame")
        return float(text)
    if "__dtype__" in node:
        dtype = _DTYPES.get(node["__dtype__"])
        if dtype is None:
            raise WireError("unknown dtype in frame")
        return dtype
    if "__device__" in node:
        return torch.device(str(node["__device__"]))
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    if "__dict__" in node and isinstance(node["__dict__"], dict):
        return {str(k): _decode(v, tensors) for k, v in node["__dict__"].items()}
    raise WireError("malformed value in frame")


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise one message (a dict whose values may hold tensors) into a frame."""
    tensors: dict[str, torch.Tensor] = {}
    header = json.dumps(_encode(message, tensors), allow_nan=False).encode()
    blob = _st_save(tensors) if tensors else b""
    return struct.pack("<I", len(header)) + header + struct.pack("<Q", len(blob)) + blob


def decode_frame(header: bytes, blob: bytes) -> dict[str, Any]:
    """Parse a frame's two parts back into a message; raises WireError on anything malformed."""
    try:
        tree = json.loads(header)
        tensors = _st_load(blob) if blob else {}
    except Exception as exc:  # any parse failure is the peer's fault, never ours
        raise WireError(f"unreadable frame: {type(exc).__name__}") from None
    message = _decode(tree, tensors)
    if not isinstance(message, dict):
        raise WireError("a frame must hold a message object")
    return message


def roundtrip(message: dict[str, Any]) -> dict[str, Any]:
    """Encode and decode a message: gives local values the exact form of values from a worker."""
    return read_frame(io.BytesIO(encode_frame(message)))


def _read_parts(read: Callable[[int], bytes]) -> tuple[bytes, bytes]:
    """A frame's header and blob, from ``read(n)`` (which may return fewer bytes; empty at EOF)."""
    def exact(n: int) -> bytes:
        chunks = []
        while n:
            chunk = read(min(n, 1 << 20))
            if not chunk:
                raise ChannelClosed("channel closed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    (header_len,) = struct.unpack("<I", exact(4))
    if header_len > MAX_HEADER_BYTES:
        raise WireError("frame header too large")
    header = exact(header_len)
    (blob_len,) = struct.unpack("<Q", exact(8))
    if blob_len > MAX_BLOB_BYTES:
        raise WireError("frame data too large")
    return header, exact(blob_len)


def read_frame(stream: BinaryIO) -> dict[str, Any]:
    """Read one frame from a blocking binary stream."""
    return decode_frame(*_read_parts(stream.read))


def read_raw_frame(fd: int) -> tuple[bytes, dict[str, Any]]:
    """Read one whole frame from a file descriptor: its bytes, and its header's plain top-level fields.

    Lets a relay route a frame by its ``op``, ``id`` and ``exercise`` without decoding tensors.
    """
    header, blob = _read_parts(lambda n: os.read(fd, n))
    try:
        tree = json.loads(header)
        fields = tree["__dict__"] if isinstance(tree, dict) and isinstance(tree.get("__dict__"), dict) else {}
    except ValueError:
        raise WireError("unreadable frame header") from None
    plain = {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool)) or v is None}
    raw = struct.pack("<I", len(header)) + header + struct.pack("<Q", len(blob)) + blob
    return raw, plain


def with_fields(raw: bytes, **fields: Any) -> bytes:
    """A frame read by :func:`read_raw_frame` with top-level ``fields`` set (plain values only).

    Lets the zygote stamp what it measured onto a child's reply without decoding its tensors.
    """
    (length,) = struct.unpack_from("<I", raw)
    tree = json.loads(raw[4:4 + length])
    if not isinstance(tree, dict) or not isinstance(tree.get("__dict__"), dict):
        raise WireError("a frame must hold a message object")
    tree["__dict__"].update({k: _encode(v, {}) for k, v in fields.items()})
    header = json.dumps(tree, allow_nan=False).encode()
    return struct.pack("<I", len(header)) + header + raw[4 + length:]


def decode_raw_frame(raw: bytes) -> dict[str, Any]:
    """Decode a frame read by :func:`read_raw_frame`, tensors included."""
    view = memoryview(raw)
    return read_frame(io.BytesIO(view))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    stream.write(encode_frame(message))
    stream.flush()
