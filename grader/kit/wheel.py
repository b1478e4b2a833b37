"""A wheel of the installed ``grader`` tool, for kits and exports that ship the tool with them.

Built from the package files this process imports and the installed distribution's metadata, so
it works for an editable checkout and for a wheel install alike, offline. The result is
reproducible (fixed timestamps, sorted entries): the same tool gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import grader

DISTRIBUTION = "torch-grader"
WHEEL_TAG = "py3-none-any"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(version: str) -> str:
    """Core metadata: name, version, requirements; no long description (the course README stays home)."""
    installed = importlib.metadata.metadata(DISTRIBUTION)
    lines = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}",
             f"Summary: {installed.get('Summary', '')}"]
    if installed.get("Requires-Python"):
        lines.append(f"Requires-Python: {installed['Requires-Python']}")
    lines += [f"Provides-Extra: {extra}" for extra in installed.get_all("Provides-Extra") or []]
    lines += [f"Requires-Dist: {req}" for req in installed.get_all("Requires-Dist") or []]
    return "\n".join(lines) + "\n"


def build_tool_wheel(out_dir: Path) -> Path:
    """Write ``torch_grader-<version>-py3-none-any.whl`` into ``out_dir`` and return its path."""
    version = grader.__version__
    package = Path(grader.__file__).resolve().parent
    dist_info = f"torch_grader-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (f"grader/{path.relative_to(package).as_posix()}", path.read_bytes())
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    ]
    entry_points = importlib.metadata.distribution(DISTRIBUTION).read_text("entry_points.txt") or ""
    entries += [
        (f"{dist_info}/METADATA", _metadata(version).encode()),
        (f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: torch-grader\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n".encode()),
        (f"{dist_info}/entry_points.txt", entry_points.encode()),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries) + f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"torch_grader-{version}-{WHEEL_TAG}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return path
