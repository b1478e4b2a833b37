"""The grader's side of the worker channel: requests with deadlines, crash recovery, output capture.

One :class:`WorkerSession` serves one submission (or the reference). It starts a worker through a
sandbox backend on first use and reuses it across tests, because importing torch costs seconds.
A worker that hangs, dies, floods its output or answers garbage is killed; the request that was
running fails with a :class:`~grader.verdicts.SubmissionProblem` that says which of these
happened, and the next request starts a fresh worker.
"""

from __future__ import annotations

import itertools
import queue
import signal
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from grader.i18n import Msg
from grader.sandbox import ExitInfo, RunningWorker, Sandbox, WorkerLaunch
from grader.deadlines import wall_exceeded
from grader.verdicts import CallTimedOut, CpuLimitExceeded, HostFault, Status, SubmissionProblem, WorkerDied
from grader.worker import wire

STARTUP_TIMEOUT_S = 120.0
IMPORT_TIMEOUT_S = 120.0  # wall backstop; the import's work is capped by IMPORT_CPU_S
IMPORT_CPU_S = 30.0
ABORT_TIMEOUT_S = 5.0

# What the worker was doing when something went wrong, in both languages: messages put it in a
# sentence ("超时：调用超过 20 秒" / "no result after 20 s during the call").
STARTUP = Msg("启动", "startup")
IMPORT = Msg("导入模块", "import")
CALL = Msg("调用", "the call")


@dataclass
class OutputCapture:
    """Student output, attributed to the exercise being run, kept up to ``keep_bytes`` each."""

    keep_bytes: int = 16 * 1024
    flood_bytes: int = 16 * 1024 * 1024
    total: int = 0
    flooded: bool = False
    current: str = "(startup)"
    by_exercise: dict[str, bytearray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, chunk: bytes) -> None:
        with self.lock:
            self.total += len(chunk)
            if self.total > self.flood_bytes:
                self.flooded = True
            buf = self.by_exercise.setdefault(self.current, bytearray())
            room = self.keep_bytes - len(buf)
            if room > 0:
                buf += chunk[:room]

    def reset_flood_budget(self) -> None:
        with self.lock:
            self.total = 0
            self.flooded = False

    def text(self, exercise: str) -> str:
        with self.lock:
            buf = bytes(self.by_exercise.get(exercise, b""))
        return buf.decode("utf-8", errors="replace")

    def truncated(self, exercise: str) -> bool:
        """More was printed than kept (the report says so in the reader's language)."""
        with self.lock:
            return len(self.by_exercise.get(exercise, b"")) >= self.keep_bytes


class _Channel:
    """A started worker plus the threads that read its replies and drain its output."""

    def __init__(self, worker: RunningWorker, capture: OutputCapture) -> None:
        self.worker = worker
        self.replies: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self.loaded: set[str] = set()
        self.facts: dict[str, Any] = {}
        self.cap_hits_before: int | None = None  # the sandbox's memory-cap count when the current call was sent
        threading.Thread(target=self._read_replies, daemon=True).start()
        threading.Thread(target=self._drain, args=(worker.output, capture), daemon=True).start()
        self._capture = capture

    def _read_replies(self) -> None:
        while True:
            try:
                self.replies.put(wire.read_frame(self.worker.replies))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                self.replies.put(exc)
                return

    def _drain(self, stream: BinaryIO, capture: OutputCapture) -> None:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            capture.feed(chunk)
            if capture.flooded:
                self.worker.kill()
                return

    def settle_output(self, timeout: float = 1.0) -> None:
        """Wait until the drain thread has read what the worker wrote so far.

        Output is attributed to the exercise running when it is read; what a module printed
        before its last reply is already in the pipe, so switching exercises waits for it.
        """
        try:
            import fcntl
            import termios
        except ImportError:  # Windows: no way to ask a pipe how much it holds; give the drain a moment
            time.sleep(0.05)
            return
        try:
            fd = self.worker.output.fileno()
        except (AttributeError, OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pending = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                return
            if pending == 0:
                time.sleep(0.01)  # let the drain thread file the last chunk it took
                return
            time.sleep(0.005)

    def send(self, frame: bytes, timeout: float) -> bool:
        """Write a request; False if the worker did not take it in time (it is not reading)."""
        done = threading.Event()

        def write() -> None:
            try:
                self.worker.requests.write(frame)
                self.worker.requests.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            done.set()

        threading.Thread(target=write, daemon=True).start()
        return done.wait(timeout)


class WorkerSession:
    """Runs requests for one set of exercise modules in a sandboxed worker."""

    def __init__(self, sandbox: Sandbox, launch: WorkerLaunch, capture: OutputCapture | None = None) -> None:
        self.sandbox = sandbox
        self.launch = launch
        self.capture = capture or OutputCapture()
        self.facts: dict[str, Any] = {}
        self.restarts = 0
        self._channel: _Channel | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._import_failures: dict[str, SubmissionProblem] = {}
        # What the last request cost the worker, as the worker says (cpu_s, wall_s): believed only
        # for the reference's worker, which runs no student code.
        self.last_cost: dict[str, float] | None = None
        self.cpu_used_s = 0.0  # CPU time of every request so far, as the zygote measured it

    # -- lifecycle -------------------------------------------------------------------------
    def _start(self) -> _Channel:
        self.capture.reset_flood_budget()
        worker = self.sandbox.start(self.launch)
        channel = _Channel(worker, self.capture)
        self._await(channel, None, STARTUP_TIMEOUT_S, during=STARTUP)
        channel.facts = self._exchange(channel, {"op": "facts"}, STARTUP_TIMEOUT_S, during=STARTUP)
        self.facts = channel.facts
        return channel

    def start(self) -> None:
        """Start the worker now (it is otherwise started by the first request)."""
        with self._lock:
            if self._channel is None:
                self._channel = self._start()

    def _discard(self, channel: _Channel) -> None:
        """Kill a worker that misbehaved; the next request starts a fresh one."""
        channel.worker.kill()
        if self._channel is channel:
            self._channel = None
            self.restarts += 1

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                try:
                    self._channel.send(wire.encode_frame({"op": "shutdown"}), 2.0)
                    self._channel.worker.wait(2.0)
                finally:
                    self._channel.worker.kill()
                    self._channel = None

    # -- requests --------------------------------------------------------------------------
    def _await(self, channel: _Channel, request_id: int | None, timeout: float, during: Msg) -> dict[str, Any]:
        """The next reply; on a deadline the call is aborted (the worker survives if it can)."""
        try:
            reply = channel.replies.get(timeout=max(0.0, timeout))
        except queue.Empty:
            if self.capture.flooded:
                self._discard(channel)
                raise _flood_problem() from None
            observed = self._abort(channel, request_id) if request_id is not None and channel.worker.abortable \
                else None
            if observed is None:
                self._discard(channel)
                observed = {}
            if during is not CALL:
                raise CallTimedOut(Msg(f"超时：{during.zh}超过 {timeout:.0f} 秒仍未完成",
                                       f"Timed out: {during.en} did not finish in {timeout:.0f} s")) from None
            short = _short_of_memory(observed, self.launch.limits.memory_bytes, during, _hit_memory_cap(channel))
            if short is not None:
                raise short from None
            cpu, waited = observed.get("cpu_s"), observed.get("waited_s")
            verdict = wall_exceeded(timeout, cpu if isinstance(cpu, (int, float)) else None,
                                    waited if isinstance(waited, (int, float)) else None)
            problem = CallTimedOut(verdict.message, None, verdict.message)
            problem.load_independent = verdict.load_independent
            raise problem from None
        if isinstance(reply, BaseException):
            exit_info = channel.worker.wait(5.0)
            self._discard(channel)
            if not getattr(channel.worker, "host_alive", lambda: True)():
                raise HostFault("the sandbox's engine stopped while a worker ran (not the submission's "
                                "doing); start it again and grade this submission again")
            if self.capture.flooded:
                raise _flood_problem()
            if isinstance(reply, wire.ChannelClosed):
                raise _death_problem(exit_info, during)
            raise SubmissionProblem(Msg(
                "工作进程发送了无法识别的数据，已终止（提交代码是否写入了通信通道？）",
                "The worker sent unreadable data and was stopped (did the submission write to the grading channel?)",
            ), Status.CRASHED)
        if request_id is not None and reply.get("id") != request_id:
            self._discard(channel)
            raise SubmissionProblem(Msg(
                "工作进程的回复与请求不符，已终止", "The worker's reply did not match the request and it was stopped",
            ), Status.CRASHED)
        return reply

    def _abort(self, channel: _Channel, request_id: int) -> dict[str, Any] | None:
        """Ask the zygote to kill the child running ``request_id``.

        Returns what the zygote observed of the stopped request (``cpu_s``, ``wall_s``, ``waited_s``;
        empty if it finished just then), or None when the worker is not usable after.
        """
        abort_id = next(self._ids)
        if not channel.send(wire.encode_frame({"op": "abort", "id": abort_id}), ABORT_TIMEOUT_S):
            return None
        deadline = time.monotonic() + ABORT_TIMEOUT_S
        seen: set[Any] = set()
        observed: dict[str, Any] = {}
        while seen != {request_id, abort_id}:
            try:
                reply = channel.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if isinstance(reply, BaseException) or reply.get("id") not in (request_id, abort_id):
                return None
            if reply.get("id") == request_id and isinstance(reply.get("error"), dict):
                observed = reply["error"]
            seen.add(reply.get("id"))
        channel.loaded.clear()  # the child was killed: the next call imports the module afresh
        return observed

    def request(self, message: dict[str, Any], timeout: float) -> Any:
        """Send ``message`` and return the reply's value; raises SubmissionProblem otherwise."""
        exercise = str(message.get("exercise", ""))
        with self._lock:
            if exercise in self._import_failures:
                # A fresh traceback each time: re-raising the stored exception would chain every
                # earlier test's frames onto it, and formatting them grows with each test.
                raise self._import_failures[exercise].with_traceback(None)
            if self._channel is None:
                self._channel = self._start()
            channel = self._channel
            if self.capture.current != exercise:
                channel.settle_output()
            self.capture.current = exercise
            if exercise and exercise not in channel.loaded:
                self._load(channel, exercise)
            return self._exchange(channel, message, timeout, during=CALL)

    def _load(self, channel: _Channel, exercise: str) -> None:
        try:
            self._exchange(channel, {"op": "load", "exercise": exercise, "cpu_limit_s": IMPORT_CPU_S},
                           IMPORT_TIMEOUT_S, during=IMPORT)
        except SubmissionProblem as problem:
            if problem.status in (Status.NOT_SUBMITTED, Status.IMPORT_ERROR, Status.TIMED_OUT, Status.CRASHED,
                                  Status.OUT_OF_MEMORY, Status.OUTPUT_LIMIT):
                # Importing is deterministic: do not pay a fresh worker per test to fail the same way.
                self._import_failures[exercise] = _as_import_problem(problem)
                raise self._import_failures[exercise] from None
            raise
        channel.loaded.add(exercise)

    def _exchange(self, channel: _Channel, message: dict[str, Any], timeout: float, during: Msg) -> Any:
        request_id = next(self._ids)
        frame = wire.encode_frame({**message, "id": request_id})
        channel.cap_hits_before = _memory_cap_hits(channel.worker)
        if not channel.send(frame, timeout):
            self._discard(channel)
            raise CallTimedOut(Msg("工作进程不再接收请求，已终止", "The worker stopped accepting requests and was stopped"))
        reply = self._await(channel, request_id, timeout, during)
        cost = reply.get("cost")
        self.last_cost = cost if isinstance(cost, dict) else None
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        for spent in ((cost or {}).get("cpu_s"), error.get("cpu_s")):
            if isinstance(spent, (int, float)):
                self.cpu_used_s += float(spent)
        if reply.get("ok"):
            return reply.get("value")
        error = reply.get("error") or {}
        if error.get("kind") == "grader":  # the worker's own part failed (e.g. a timed test's inputs do not fit)
            raise RuntimeError(f"the worker could not {error.get('phase', 'serve')} the request: {error.get('message')}")
        if error.get("kind") == "cpu_limit":
            channel.loaded.clear()  # the zygote ended the child: the next call imports the module afresh
            short = _short_of_memory(error, self.launch.limits.memory_bytes, during, _hit_memory_cap(channel))
            if short is not None:
                raise short
        if error.get("kind") == "died":
            channel.loaded.clear()  # the zygote forks a fresh child (and import) for the next call
            oom = error.get("signal") == 9 and bool(getattr(channel.worker, "oom_killed", False))
            info = ExitInfo(code=error.get("exit_code"), signal=error.get("signal"), oom_killed=oom)
            raise _death_problem(info, during)
        raise problem_from_error(error)


def _as_import_problem(problem: SubmissionProblem) -> SubmissionProblem:
    if problem.status in (Status.NOT_SUBMITTED, Status.IMPORT_ERROR):
        return problem
    return SubmissionProblem(
        Msg("导入模块时出错：", "Importing your module failed: ") + problem.message, Status.IMPORT_ERROR
    )


def _flood_problem() -> SubmissionProblem:
    return SubmissionProblem(Msg(
        "输出过多：提交代码打印的内容超过上限，工作进程已终止。请删除调试用的 print()。",
        "Too much output: the submission printed more than allowed and was stopped. Remove debugging prints.",
    ), Status.OUTPUT_LIMIT)


def _exit_description(exit_info: ExitInfo | None) -> Msg:
    """How the worker ended: a signal's name (SIGSEGV) reads the same in both languages, an exit code does not."""
    if exit_info is None:
        return Msg("原因不明", "cause unknown")
    if exit_info.signal is not None:
        try:
            name = signal.Signals(exit_info.signal).name
        except ValueError:
            return Msg(f"信号 {exit_info.signal}", f"signal {exit_info.signal}")
        return Msg(name, name)
    return Msg(f"退出码 {exit_info.code}", f"exit code {exit_info.code}")


MEMORY_NEAR_CAP = 0.8  # a stopped call that held this share of the memory cap was short of memory


def _memory_cap_hits(worker: object) -> int | None:
    """The sandbox's count of times its memory usage reached the cap, where the backend can read it."""
    read = getattr(worker, "memory_cap_hits", None)
    try:
        return read() if callable(read) else None
    except OSError:
        return None


def _hit_memory_cap(channel: _Channel) -> bool:
    """Whether the sandbox's memory usage reached its cap since the current call was sent."""
    before, now = channel.cap_hits_before, _memory_cap_hits(channel.worker)
    return before is not None and now is not None and now > before


def _short_of_memory(observed: dict[str, Any], memory_bytes: int, during: Msg,
                     hit_cap: bool = False) -> SubmissionProblem | None:
    """An out-of-memory verdict for a call stopped at a deadline while it held nearly all the memory
    cap, or while the sandbox's cgroup kept reaching that cap: near the cap the kernel evicts and
    re-reads pages, the work crawls, and the CPU or wall limit ends it before the memory cap does.
    Saying "too slow" would name the wrong cause."""
    peak = observed.get("peak_rss_bytes")
    near = isinstance(peak, int) and peak >= MEMORY_NEAR_CAP * memory_bytes
    if not near and not hit_cap:
        return None
    cap = memory_bytes / 1024**3
    if not near:
        return SubmissionProblem(Msg(
            f"内存不足：{during.zh}在时间上限处被终止，此前沙箱的内存已达到上限（{cap:.1f} GiB）；"
            "接近上限时运算会慢到几乎停滞。请减小张量或批大小（也检查是否有死循环）。",
            f"Out of memory: {during.en} was stopped at its time limit after the sandbox's memory reached its "
            f"{cap:.1f} GiB limit; near that limit the work slows to a crawl. Use smaller tensors or batches "
            "(and check for an endless loop).",
        ), Status.OUT_OF_MEMORY)
    held = peak / 1024**3  # type: ignore[operator]
    return SubmissionProblem(Msg(
        f"内存不足：{during.zh}在时间上限处被终止，当时工作进程占用了 {held:.1f} GiB 内存（上限 {cap:.1f} GiB）；"
        "接近上限时运算会慢到几乎停滞。请减小张量或批大小（也检查是否有死循环）。",
        f"Out of memory: {during.en} was stopped at its time limit while the worker held {held:.1f} GiB of its "
        f"{cap:.1f} GiB memory limit; near that limit the work slows to a crawl. Use smaller tensors or batches "
        "(and check for an endless loop).",
    ), Status.OUT_OF_MEMORY)


def _death_problem(exit_info: ExitInfo | None, during: Msg) -> SubmissionProblem:
    how = _exit_description(exit_info)
    if exit_info is not None and exit_info.oom_killed:
        return SubmissionProblem(Msg(
            f"内存不足：{during.zh}期间超出内存上限，进程被终止。请减小张量或批大小。",
            f"Out of memory: the worker exceeded its memory limit during {during.en} and was killed. "
            "Use smaller tensors or batches.",
        ), Status.OUT_OF_MEMORY)
    if exit_info is not None and exit_info.signal is None:
        return WorkerDied(Msg(
            f"提交代码在{during.zh}期间结束了进程（{how.zh}）：不要调用 os._exit / sys.exit。",
            f"The submission ended the process during {during.en} ({how.en}): do not call os._exit or exit.",
        ))
    if exit_info is not None and exit_info.signal == 24:  # SIGXCPU
        return SubmissionProblem(Msg("CPU 时间超出上限。", "CPU time limit exceeded."), Status.TIMED_OUT)
    if exit_info is not None and exit_info.signal == 25:  # SIGXFSZ
        return WorkerDied(Msg("写入的文件超过大小上限。", "A file written by the submission exceeded the size limit."))
    if exit_info is not None and exit_info.signal == 9:
        return WorkerDied(Msg(
            f"进程在{during.zh}期间被强制终止（SIGKILL），通常是内存不足或进程数超限。",
            f"The process was killed (SIGKILL) during {during.en}: usually out of memory or too many processes.",
        ))
    return WorkerDied(Msg(
        f"工作进程在{during.zh}期间崩溃（{how.zh}）。",
        f"The worker crashed during {during.en} ({how.en}).",
    ))


def problem_from_error(error: dict[str, Any]) -> SubmissionProblem:
    """Turn the worker's description of an exception into a problem with a student-facing message."""
    kind = error.get("kind")
    etype = str(error.get("type", "Exception"))
    text = str(error.get("message", ""))
    where = str(error.get("traceback", "")).strip()
    detail = f"{etype}: {text}" + (f"\n{where}" if where else "")
    phase = error.get("phase")
    if kind == "cpu_limit":
        used, limit = error.get("cpu_s"), error.get("cpu_limit_s")
        return CpuLimitExceeded(float(used) if isinstance(used, (int, float)) else 0.0,
                                float(limit) if isinstance(limit, (int, float)) else 0.0)
    if kind == "fork_failed":
        return WorkerDied(Msg(f"无法启动进程（进程数超限？）：{text}", f"Could not start a process (too many processes?): {text}"))
    if kind == "missing":
        return SubmissionProblem(Msg("未提交该练习文件", "This exercise was not submitted"), Status.NOT_SUBMITTED)
    if kind == "not_implemented":
        return SubmissionProblem(Msg("尚未实现（NotImplementedError）", "Not implemented yet (NotImplementedError)"),
                                 Status.NOT_IMPLEMENTED)
    if kind == "out_of_memory":
        return SubmissionProblem(Msg(f"内存不足：{detail}", f"Out of memory: {detail}"), Status.OUT_OF_MEMORY)
    if kind == "exit":
        return SubmissionProblem(Msg(
            f"提交代码调用了 exit()/sys.exit()（{text or 0}），这在评分时不允许。",
            f"The submission called exit()/sys.exit() ({text or 0}); that is not allowed while grading.",
        ), Status.IMPORT_ERROR if phase == "import" else Status.ERROR)
    if kind == "unsupported_value":
        return SubmissionProblem(Msg(f"返回值类型无法评分：{text}", f"The returned value cannot be graded: {text}"))
    if phase == "import":
        return SubmissionProblem(Msg(f"导入模块失败：{detail}", f"Importing your module failed: {detail}"),
                                 Status.IMPORT_ERROR)
    return SubmissionProblem(Msg(f"你的代码抛出了异常：{detail}", f"Your code raised an exception: {detail}"))
