"""GPU discovery: what ``nvidia-smi`` lists (MIG slices as their own slots), else what torch sees.

A slot is what one job gets: a GPU index (``"0"``) or a MIG device's UUID (``"MIG-…"``), in the form
``CUDA_VISIBLE_DEVICES`` and Docker's device requests accept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (?P<uuid>MIG-[^)]+)\)")
GPU_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[^)]+)\)")


@dataclass(frozen=True)
class Device:
    slot: str  # what a job is given: an index, or a MIG UUID
    name: str
    uuid: str = ""
    mig: bool = False


def parse_nvidia_smi_list(text: str) -> list[Device]:
    """Slots from ``nvidia-smi -L``: a GPU split into MIG slices gives one slot per slice."""
    devices: list[Device] = []
    current: tuple[str, str, str] | None = None
    slices: list[Device] = []

    def flush() -> None:
        if current is not None:
            devices.extend(slices or [Device(current[0], current[1], current[2])])

    for line in text.splitlines():
        gpu = GPU_LINE.match(line)
        if gpu:
            flush()
            current, slices = (gpu["index"], gpu["name"], gpu["uuid"]), []
            continue
        mig = MIG_LINE.match(line)
        if mig and current is not None:
            slices.append(Device(mig["uuid"], f"{current[1]} ({line.strip().split('(UUID')[0].strip()})",
                                 mig["uuid"], True))
    flush()
    return devices


def gpu_slots(spec: str) -> list[str]:
    """The slots ``--gpus`` names: ``all`` (every slot of this host) or ids like ``0,1``; raises
    ValueError when ``all`` finds none."""
    if spec == "all":
        found = [device.slot for device in discover_gpus()]
        if not found:
            raise ValueError("--gpus all: no GPU found on this host (nvidia-smi and torch see none)")
        return found
    return [part.strip() for part in spec.split(",") if part.strip()]


def discover_gpus() -> list[Device]:
    """The GPU slots of this host; empty where there is none."""
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
            found = parse_nvidia_smi_list(listed.stdout)
            if found:
                return found
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        if torch.cuda.is_available():
            return [Device(str(i), torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken CUDA install means no usable GPU here
        pass
    return []
