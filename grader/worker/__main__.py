"""Worker entry point: serve call and probe requests against modules in one directory.

Started by a sandbox backend as ``python -I -c "<bootstrap>" --modules DIR`` with the channel
on stdin/stdout; see :func:`take_channel_from_stdio` for how student output is kept off it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import sys
import time
import traceback
from types import ModuleType, TracebackType
from typing import Any

import torch

from . import wire
from .arena import generate_reply
from .calls import dispatch

MODULE_NAME = re.compile(r"^ex\d\d_[a-z0-9_]+$")
MAX_MESSAGE_CHARS = 2000


class ModuleMissing(Exception):
    """The exercise file is not in the submission."""


def _student_frames(tb: Any, root: str) -> str:
    """The traceback lines that point into files under ``root`` (the submission), newest last."""
    frames = [f for f in traceback.extract_tb(tb) if f.filename.startswith(root)]
    return "".join(traceback.format_list(frames[-5:]))


def _unfinished(exc: BaseException, root: str) -> bool:
    """A ``raise NotImplementedError`` written in the submission (an unfinished stub). PyTorch raises
    NotImplementedError too, for an operation it lacks (copying out of a meta tensor): that one is
    an ordinary exception, and saying "not implemented yet" would name the wrong cause."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(root) and "NotImplementedError" in (frames[-1].line or "")


def _error_kind(exc: BaseException, root: str) -> str:
    if isinstance(exc, NotImplementedError) and _unfinished(exc, root):
        return "not_implemented"
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    ):
        return "out_of_memory"
    if isinstance(exc, SystemExit):
        return "exit"
    if isinstance(exc, ModuleMissing):
        return "missing"
    if isinstance(exc, wire.UnsupportedValue):
        return "unsupported_value"
    return "exception"


def describe_error(exc: BaseException, phase: str, root: str) -> dict[str, Any]:
    message = str(exc)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " …"
    return {
        "type": type(exc).__name__,
        "kind": _error_kind(exc, root),
        "phase": phase,
        "message": message,
        "traceback": _student_frames(exc.__traceback__, root),
    }


class ModuleHost:
    """Imports exercise modules from one directory on first use and remembers the outcome."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        # The student's helper modules (my_utils.py) beside the exercises: importable, but after
        # every library, so a helper can never shadow torch or the worker itself.
        if self.directory not in sys.path:
            sys.path.append(self.directory)
        self._modules: dict[str, ModuleType] = {}
        self._failures: dict[str, tuple[BaseException, TracebackType | None]] = {}

    def get(self, name: str) -> ModuleType:
        if not MODULE_NAME.match(name):
            raise ModuleMissing(f"invalid exercise name {name!r}")
        if name in self._failures:  # raised again with the import's own frames, not piled on each time
            failure, frames = self._failures[name]
            raise failure.with_traceback(frames)
        if name not in self._modules:
            path = os.path.join(self.directory, f"{name}.py")
            if not os.path.isfile(path):
                raise ModuleMissing(f"{name}.py was not submitted")
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException as exc:  # noqa: BLE001 - anything the import does is the student's
                exc.__dict__["grader_phase"] = "import"
                self._failures[name] = (exc, exc.__traceback__)
                raise
            self._modules[name] = module
        return self._modules[name]


def base_facts() -> dict[str, Any]:
    """What the zygote may report: nothing here touches CUDA, which must not start before a fork."""
    return {"python": platform.python_version(), "torch": torch.__version__, "pid_namespace_init": os.getpid() == 1}


def environment_facts() -> dict[str, Any]:
    """Versions and devices, gathered in a child (CUDA initialises there, never in the zygote)."""
    facts: dict[str, Any] = {**base_facts(), "cuda_available": torch.cuda.is_available(), "devices": []}
    if torch.cuda.is_available():
        facts["cuda"] = torch.version.cuda
        facts["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        try:
            import subprocess

            facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            facts["driver"] = "unknown"
    return facts


def handle(request: dict[str, Any], host: ModuleHost) -> dict[str, Any]:
    op = request.get("op")
    if op == "facts":
        return {"ok": True, "value": environment_facts()}
    if op == "generate":  # without a zygote (the portable local sandbox) the inputs are made here
        return generate_reply(request)
    exercise = str(request.get("exercise", ""))
    phase = "import"
    try:
        module = host.get(exercise)
        phase = "call"
        value = None if op == "load" else dispatch(module, exercise, request)
        return {"ok": True, "value": value}
    except BaseException as exc:  # noqa: BLE001 - report everything, including SystemExit
        phase = exc.__dict__.get("grader_phase", phase) if hasattr(exc, "__dict__") else phase
        return {"ok": False, "error": describe_error(exc, phase, host.directory)}


def serve(modules: str, requests_fd: int, replies_fd: int, hello: bool = True) -> None:
    """Answer requests for the modules in ``modules`` on one channel (a zygote's child does this)."""
    host = ModuleHost(modules)
    requests = os.fdopen(requests_fd, "rb")
    replies = os.fdopen(replies_fd, "wb")
    if hello:
        wire.write_frame(replies, {"ok": True, "value": base_facts()})
    while True:
        try:
            request = wire.read_frame(requests)
        except wire.ChannelClosed:
            return
        if request.get("op") == "shutdown":
            return
        cpu, wall = time.process_time(), time.perf_counter()
        reply = {**handle(request, host), "id": request.get("id")}
        # What this request cost, as this process measures it. In a zygote's child the zygote
        # replaces it with its own measurement; without a zygote (``--direct``, a student's own
        # machine) it is only advice.
        reply["cost"] = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
        try:
            frame = wire.encode_frame(reply)
        except (wire.UnsupportedValue, ValueError) as exc:
            frame = wire.encode_frame({"ok": False, "id": reply["id"],
                                       "error": describe_error(exc, "call", host.directory)})
        replies.write(frame)
        replies.flush()


def take_channel_from_stdio() -> tuple[int, int]:
    """Move the request/reply channel off fds 0 and 1 before any student code runs.

    The backend connects the channel to the worker's stdin and stdout (that is what every
    backend, a container included, can offer). Once moved, fd 0 reads nothing and fd 1 writes
    into the output stream (fd 2), so a student's ``print`` can never look like a reply.
    """
    requests_fd, replies_fd = os.dup(0), os.dup(1)
    if sys.platform == "win32":  # the channel carries bytes: no newline translation
        import msvcrt

        for fd in (requests_fd, replies_fd):
            msvcrt.setmode(fd, os.O_BINARY)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    return requests_fd, replies_fd


def warm_library() -> None:
    """Load now, once, what torch imports lazily on first use: building an optimizer pulls in
    ``torch._dynamo`` and sympy (about a second). Children forked per exercise inherit it instead of
    each paying it again."""
    weight = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    (weight * 2.0).sum().backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(prog="grader_worker")
    parser.add_argument("--modules", required=True)
    parser.add_argument("--sweep-all", action="store_true",
                        help="the sandbox has its own PID namespace: kill every stray process in it")
    parser.add_argument("--direct", action="store_true",
                        help="no zygote: serve every request in this process (platforms without fork)")
    args = parser.parse_args()
    requests_fd, replies_fd = take_channel_from_stdio()
    torch.set_num_threads(1)
    from .probes import preload

    preload()  # before any student module: the probes' references to library code are taken now
    warm_library()
    if args.direct:
        serve(args.modules, requests_fd, replies_fd)
    else:
        from .zygote import Zygote

        Zygote(args.modules, requests_fd, replies_fd, args.sweep_all).serve({"ok": True, "value": base_facts()})
    os._exit(0)  # skip interpreter teardown: student atexit hooks have nothing to say to the grader


if __name__ == "__main__":
    main()
