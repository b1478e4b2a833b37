"""GPU hosts: device discovery and assignment, sandboxes that see only their GPU, no address-space
limit where CUDA needs the room. The tests marked ``gpu`` run the real paths and are skipped on a
machine without one (``python -m gpu_runner.selftest`` runs them all on a lent GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_runner.devices import discover_gpus
from grader.remote import WorkerSession
from grader.sandbox import Limits, WorkerLaunch
from grader.sandbox import bwrap
from grader.sandbox.process import ProcessSandbox

GPUS = discover_gpus()
def needs_gpu(fn):  # noqa: ANN001, ANN201 - a decorator
    return pytest.mark.gpu(pytest.mark.skipif(not GPUS, reason="no GPU on this machine")(fn))


def test_bwrap_binds_only_the_assigned_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm",
             "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    monkeypatch.setattr(bwrap.glob, "glob", lambda pattern: [n for n in nodes if n.startswith(pattern.rstrip("*"))]
                        if pattern == "/dev/nvidia*" else [])
    control = ["/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl"]
    assert bwrap.gpu_device_nodes("1") == sorted(control + ["/dev/nvidia1"])
    assert bwrap.gpu_device_nodes("0,2") == sorted(control + ["/dev/nvidia0", "/dev/nvidia2"])
    assert bwrap.gpu_device_nodes("all") == sorted(nodes)
    assert bwrap.gpu_device_nodes("MIG-1234") == sorted(nodes)  # a slice: CUDA_VISIBLE_DEVICES narrows it


def test_a_gpu_worker_has_no_address_space_limit(tmp_path: Path) -> None:
    """CUDA reserves far more virtual memory than any RLIMIT_AS would allow: with a GPU the memory
    cap is the cgroup's, and without one the address-space limit stays."""
    (tmp_path / "ex01_probe.py").write_text("import resource\ndef limit():\n"
                                            "    return resource.getrlimit(resource.RLIMIT_AS)[0]\n")
    limits = Limits()
    seen = {}
    for gpus in (None, "0"):
        session = WorkerSession(ProcessSandbox(), WorkerLaunch(tmp_path, limits, gpus))
        try:
            seen[gpus] = session.request({"op": "call", "exercise": "ex01_probe", "name": "limit", "args": []}, 60)
        finally:
            session.close()
    assert seen[None] == limits.memory_bytes and seen["0"] == -1


@needs_gpu
@pytest.mark.slow
def test_gpu_paths_on_this_machine() -> None:
    from gpu_runner.selftest import main

    assert main() == 0
