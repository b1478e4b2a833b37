"""Files a submission wrote (checkpoints, exported models), judged in the grader from their bytes.

A probe reads a file the student's code wrote into the sandbox's scratch folder and sends it back
as a uint8 tensor, refusing anything over a cap (``probes/common.py``, ``read_scratch_bytes``).
This module is the grader's side: the cap is checked again here (the probe runs next to student
code), and the bytes are opened only in ways that cannot run code:

* a checkpoint only with ``torch.load(..., weights_only=True)``: tensors, dicts, lists, numbers and
  strings; a pickled class is refused, never imported;
* an ONNX model is size-capped, parsed with ``onnx.load_from_string``, refused if it points to
  external data or uses an operator domain other than the standard ones (before anything else
  looks at it), checked with ``onnx.checker.check_model``, and only then run by onnxruntime.

Where onnxruntime runs, and why. ORT is a large native runtime that parses and executes a model
graph; a model written by student code is untrusted input to it. Run in the grader process, a
memory-safety bug (or just an allocation the graph asks for) could crash or corrupt the process
that scores every test. Run in the sandbox, next to student code, it could be patched (an
``InferenceSession`` that returns the PyTorch output), so its answers prove nothing. So it runs in
a separate, short-lived child of the grader that holds no student code: ``python -I`` (no
``PYTHONPATH``, no user site, not the current folder), limits on address space, CPU time and file
size, one thread, a private temporary folder (mode 0700) holding the model file and the inputs
as ``.npy``; the outputs come back as ``.npy`` read with ``allow_pickle=False``. A crash, a
timeout or an error there is a failed check with a message, never a grader crash.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .i18n import Msg

CHECKPOINT_CAP = 16 * 1024 * 1024
ONNX_CAP = 16 * 1024 * 1024
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ORT_MEMORY_BYTES = 3 * 1024**3
ORT_CPU_S = 30
ORT_WALL_S = 60.0


class ArtifactRefused(Exception):
    """Bytes a submission produced that the grader will not open (or could not): ``message`` says why."""

    def __init__(self, message: Msg) -> None:
        super().__init__(message.en)
        self.message = message


def artifact_bytes(found: Any, cap: int, what: str) -> bytes:
    """The bytes a probe sent for ``what`` (a 1-D uint8 tensor), refused when missing, malformed or
    larger than ``cap``; a reply the probe marked as too large or missing says so."""
    if isinstance(found, dict):
        if found.get("missing"):
            raise ArtifactRefused(Msg(f"{what}：没有找到写出的文件（应写到给定的 `path`）",
                                      f"{what}: no file was written (write it to the given path)"))
        if found.get("too_large"):
            raise ArtifactRefused(Msg(f"{what}：文件有 {found.get('size')} 字节，超过上限 {cap} 字节",
                                      f"{what}: the file has {found.get('size')} bytes, over the limit of {cap}"))
        found = found.get("bytes")
    if not isinstance(found, torch.Tensor) or found.dtype != torch.uint8 or found.dim() != 1:
        raise ArtifactRefused(Msg(f"{what}：没有收到文件内容", f"{what}: the file's content did not arrive"))
    if found.numel() > cap:
        raise ArtifactRefused(Msg(f"{what}：文件有 {found.numel()} 字节，超过上限 {cap} 字节",
                                  f"{what}: the file has {found.numel()} bytes, over the limit of {cap}"))
    return found.numpy().tobytes()


def load_checkpoint_bytes(data: bytes, cap: int = CHECKPOINT_CAP, what: str = "checkpoint") -> Any:
    """The object ``torch.save`` wrote, loaded with ``weights_only=True`` onto the CPU; a file that
    needs anything else (a pickled model class) is refused with the replacement named."""
    if len(data) > cap:
        raise ArtifactRefused(Msg(f"{what}：文件有 {len(data)} 字节，超过上限 {cap} 字节",
                                  f"{what}: the file has {len(data)} bytes, over the limit of {cap}"))
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        raise ArtifactRefused(Msg(
            f"{what}：无法用 `torch.load(path, weights_only=True)` 加载（{detail}）。PyTorch 2.6 起默认 "
            "`weights_only=True`，用 `torch.save(model)` 保存的整个模型（`pickle` 的类）无法加载：请保存 "
            "`model.state_dict()` 等只含张量和数字的字典",
            f"{what}: it does not load with torch.load(path, weights_only=True) ({detail}). Since PyTorch 2.6 "
            "weights_only=True is the default and a whole model saved with torch.save(model) (a pickled class) "
            "cannot be loaded: save state_dicts (model.state_dict() and the like: tensors and numbers only)")) from None


def _graphs(graph: Any) -> Any:
    """``graph`` and every subgraph in its nodes' attributes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(graph: Any) -> Any:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def check_onnx_bytes(data: bytes, cap: int = ONNX_CAP, what: str = "ONNX") -> Any:
    """The parsed ``onnx.ModelProto``, after the size cap, the refusal of external data and of
    non-standard operator domains, and ``onnx.checker.check_model``."""
    import onnx

    if len(data) > cap:
        raise ArtifactRefused(Msg(f"{what}：文件有 {len(data)} 字节，超过上限 {cap} 字节",
                                  f"{what}: the file has {len(data)} bytes, over the limit of {cap}"))
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - a file that does not parse is the finding
        raise ArtifactRefused(Msg(f"{what}：不是有效的 ONNX 文件（{type(exc).__name__}）",
                                  f"{what}: not a valid ONNX file ({type(exc).__name__})")) from None
    if len(model.graph.node) == 0 and len(model.graph.output) == 0:
        raise ArtifactRefused(Msg(f"{what}：不是有效的 ONNX 文件（图是空的）",
                                  f"{what}: not a valid ONNX file (the graph is empty)"))
    for graph in _graphs(model.graph):
        for tensor in _tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0:
                raise ArtifactRefused(Msg(f"{what}：模型引用了外部数据文件：权重必须保存在同一个 `.onnx` 文件里"
                                          "（`torch.onnx.export(..., dynamo=True)` 需要 `external_data=False`）",
                                          f"{what}: the model refers to external data files: keep the weights "
                                          "inside the one .onnx file (torch.onnx.export(..., dynamo=True) needs "
                                          "external_data=False)"))
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                raise ArtifactRefused(Msg(f"{what}：模型使用了非标准的算子域 `{node.domain[:60]}`"
                                          f"（算子 `{node.op_type[:60]}`）：只允许标准 ONNX 算子",
                                          f"{what}: the model uses the non-standard operator domain "
                                          f"{node.domain[:60]!r} (operator {node.op_type[:60]!r}): standard ONNX "
                                          "operators only"))
    for opset in model.opset_import:
        if opset.domain not in STANDARD_DOMAINS:
            raise ArtifactRefused(Msg(f"{what}：模型导入了非标准的算子域 `{opset.domain[:60]}`：只允许标准 ONNX 算子",
                                      f"{what}: the model imports the non-standard operator domain "
                                      f"{opset.domain[:60]!r}: standard ONNX operators only"))
    if len(model.functions) > 0:
        raise ArtifactRefused(Msg(f"{what}：模型含有自定义函数（`functions`）：只允许标准 ONNX 算子",
                                  f"{what}: the model defines custom functions: standard ONNX operators only"))
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - the checker's finding is the message
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ArtifactRefused(Msg(f"{what}：`onnx.checker.check_model` 未通过：{detail}",
                                  f"{what}: onnx.checker.check_model failed: {detail}")) from None
    return model


# The child's whole program: it imports nothing from the grader or the course.
_RUNNER = r"""
import json, os, sys
import numpy as np
folder = sys.argv[1]
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
report = {"inputs": [], "outputs": [], "runs": []}
try:
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"])
except Exception as exc:
    report["session_error"] = (type(exc).__name__ + ": " + str(exc))[:500]
else:
    report["inputs"] = [{"name": i.name, "shape": [d if isinstance(d, (int, str)) else None for d in i.shape],
                         "type": i.type} for i in session.get_inputs()]
    report["outputs"] = [{"name": o.name, "shape": [d if isinstance(d, (int, str)) else None for d in o.shape]}
                         for o in session.get_outputs()]
    n = int(open(os.path.join(folder, "count")).read())
    for i in range(n):
        x = np.load(os.path.join(folder, "in_%d.npy" % i), allow_pickle=False)
        try:
            out = session.run(None, {session.get_inputs()[0].name: x})[0]
            np.save(os.path.join(folder, "out_%d.npy" % i), np.asarray(out), allow_pickle=False)
            report["runs"].append(None)
        except Exception as exc:
            report["runs"].append((type(exc).__name__ + ": " + str(exc))[:500])
with open(os.path.join(folder, "report.json"), "w") as f:
    json.dump(report, f)
"""


@dataclass
class OnnxRun:
    """What onnxruntime made of a model: its inputs and outputs as the session sees them (a batch
    dimension is a string when symbolic), and per input array the output or the error."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    results: list[np.ndarray | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)


def _limit_child() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import resource  # POSIX only: students on Windows import this module too (`grader check`)
    except ImportError:  # a Python without it: only the wall-clock timeout applies
        return

    resource.setrlimit(resource.RLIMIT_AS, (ORT_MEMORY_BYTES, ORT_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (ORT_CPU_S, ORT_CPU_S))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024**2, 256 * 1024**2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_onnx(data: bytes, inputs: Sequence[np.ndarray], what: str = "ONNX", cap: int = ONNX_CAP) -> OnnxRun:
    """Check ``data`` (:func:`check_onnx_bytes`), then run it in onnxruntime in a child process
    (see the module's docstring) once per array of ``inputs`` (fed to the model's first input)."""
    check_onnx_bytes(data, cap, what)
    folder = tempfile.mkdtemp(prefix="grader-onnx-")  # mode 0700
    try:
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(data)
        for i, x in enumerate(inputs):
            np.save(os.path.join(folder, f"in_{i}.npy"), np.ascontiguousarray(x), allow_pickle=False)
        with open(os.path.join(folder, "count"), "w") as f:
            f.write(str(len(inputs)))
        env = {"OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder}
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _RUNNER, folder], cwd=folder, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=ORT_WALL_S,
                                  preexec_fn=_limit_child if os.name == "posix" else None)
        except subprocess.TimeoutExpired:
            raise ArtifactRefused(Msg(f"{what}：`onnxruntime` 在 {ORT_WALL_S:g} 秒内没有完成",
                                      f"{what}: onnxruntime did not finish within {ORT_WALL_S:g} s")) from None
        report_path = os.path.join(folder, "report.json")
        if done.returncode != 0 or not os.path.exists(report_path):
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise ArtifactRefused(Msg(f"{what}：`onnxruntime` 运行这个模型时崩溃了（{tail[0][:300]}）",
                                      f"{what}: onnxruntime crashed running this model ({tail[0][:300]})"))
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        if report.get("session_error"):
            raise ArtifactRefused(Msg(f"{what}：`onnxruntime` 无法加载这个模型：{report['session_error']}",
                                      f"{what}: onnxruntime cannot load this model: {report['session_error']}"))
        run = OnnxRun(inputs=report["inputs"], outputs=report["outputs"], errors=list(report["runs"]))
        for i, error in enumerate(run.errors):
            run.results.append(None if error else np.load(os.path.join(folder, f"out_{i}.npy"), allow_pickle=False))
        return run
    finally:
        shutil.rmtree(folder, ignore_errors=True)
