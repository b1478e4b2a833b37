"""grader/artifacts.py: files a submission wrote are opened only in ways that run no code.

A checkpoint loads only with ``weights_only=True``; an ONNX model is capped, parsed, refused when it
points to external data or uses a non-standard operator domain, checked, and run by onnxruntime in
a child process, where a crash is a refusal with a message, never a grader crash.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the course's `deploy` extra (onnx, onnxruntime, onnxscript)
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from grader import artifacts
from grader.artifacts import ArtifactRefused, artifact_bytes, check_onnx_bytes, load_checkpoint_bytes, run_onnx


def _add_bias_model(domain: str = "", external: bool = False) -> bytes:
    """y = x + b for x of shape (batch, 3), b an initializer; optionally a custom-domain node or
    external data for b."""
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    if external:
        bias = TensorProto(name="b", data_type=TensorProto.FLOAT, dims=[3])
        bias.data_location = TensorProto.EXTERNAL
        entry = bias.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
    node = helper.make_node("Add", ["x", "b"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [bias])
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_oversize_bytes_are_refused_everywhere() -> None:
    with pytest.raises(ArtifactRefused, match="over the limit"):
        artifact_bytes(torch.zeros(11, dtype=torch.uint8), 10, "f")
    with pytest.raises(ArtifactRefused, match="over the limit"):
        artifact_bytes({"too_large": True, "size": 10**9}, 10, "f")
    with pytest.raises(ArtifactRefused, match="over the limit"):
        load_checkpoint_bytes(b"x" * 11, cap=10)
    with pytest.raises(ArtifactRefused, match="over the limit"):
        check_onnx_bytes(_add_bias_model(), cap=10)


def test_artifact_bytes_accepts_only_a_flat_uint8_tensor() -> None:
    assert artifact_bytes({"bytes": torch.tensor([104, 105], dtype=torch.uint8), "size": 2}, 10, "f") == b"hi"
    for bad in (torch.zeros(2, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.uint8), "hi", None):
        with pytest.raises(ArtifactRefused, match="did not arrive"):
            artifact_bytes(bad, 10, "f")
    with pytest.raises(ArtifactRefused, match="no file was written"):
        artifact_bytes({"missing": True}, 10, "f")


def test_checkpoint_of_state_dicts_loads_and_a_pickled_module_is_refused() -> None:
    buffer = io.BytesIO()
    torch.save({"model_state_dict": torch.nn.Linear(2, 1).state_dict(), "epoch": 3, "loss": 0.5}, buffer)
    loaded = load_checkpoint_bytes(buffer.getvalue())
    assert loaded["epoch"] == 3 and set(loaded["model_state_dict"]) == {"weight", "bias"}
    buffer = io.BytesIO()
    torch.save({"model": torch.nn.Linear(2, 1)}, buffer)
    with pytest.raises(ArtifactRefused, match="save state_dicts") as refused:
        load_checkpoint_bytes(buffer.getvalue())
    assert "weights_only" in refused.value.message.zh
    with pytest.raises(ArtifactRefused, match="does not load"):
        load_checkpoint_bytes(b"\x00garbage")


def test_external_data_is_refused_before_anything_reads_it() -> None:
    with pytest.raises(ArtifactRefused, match="external data"):
        check_onnx_bytes(_add_bias_model(external=True))


def test_a_custom_domain_operator_is_refused() -> None:
    with pytest.raises(ArtifactRefused, match="non-standard operator domain 'com.evil'"):
        check_onnx_bytes(_add_bias_model(domain="com.evil"))


def test_garbage_gives_a_clear_message() -> None:
    for junk in (b"", b"\xff" * 64, b"not an onnx model at all"):
        with pytest.raises(ArtifactRefused, match="not a valid ONNX file"):
            check_onnx_bytes(junk)


def test_a_model_the_checker_refuses_is_refused() -> None:
    node = helper.make_node("Add", ["x", "missing"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ArtifactRefused, match="check_model failed"):
        check_onnx_bytes(model.SerializeToString())


def test_a_valid_model_runs_in_the_child_on_several_batch_sizes() -> None:
    xs = [np.arange(3 * b, dtype=np.float32).reshape(b, 3) for b in (1, 4)]
    run = run_onnx(_add_bias_model(), xs + [np.zeros((2, 3), np.float64)])
    assert [i["name"] for i in run.inputs] == ["x"] and run.inputs[0]["shape"][0] == "batch"
    for x, out in zip(xs, run.results):
        np.testing.assert_array_equal(out, x + np.array([1.0, 2.0, 3.0], np.float32))
    assert run.results[2] is None and "INVALID_ARGUMENT" in run.errors[2]


def test_a_crash_in_the_child_is_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "_RUNNER", "import os; os.abort()")
    with pytest.raises(ArtifactRefused, match="crashed"):
        run_onnx(_add_bias_model(), [np.zeros((1, 3), np.float32)])


def test_the_child_runs_isolated_and_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -I`` (no PYTHONPATH, no user site) with an address-space limit: a graph's allocation
    past it fails there."""
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-should-not-matter")
    monkeypatch.setattr(artifacts, "_RUNNER", "import sys, resource, json, os\n"
                        "limit = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
                        "assert sys.flags.isolated and limit == %d, (sys.flags.isolated, limit)\n"
                        "json.dump({'inputs': [], 'outputs': [], 'runs': []}, open(os.path.join(sys.argv[1], "
                        "'report.json'), 'w'))\n" % artifacts.ORT_MEMORY_BYTES)
    assert run_onnx(_add_bias_model(), []).results == []
