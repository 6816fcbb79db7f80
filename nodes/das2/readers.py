"""Running das2 readers: request validation, argument lists, guarded processes.

A reader is any executable run as `reader [fixed args] START END [params]`
writing a das2 stream to stdout and errors to stderr. It is started with
`reactor.spawnProcess` from an argument list (never a shell) in a new session
(so a kill reaches everything it started), with a minimal environment, a
timeout, a cap on its output and a limit on how many run at once. Every value
a client sends is validated first: times parsed to UTC, the resolution a
positive number, each parameter token matched against the DSDF's options.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet import abstract, defer, error, main, protocol
from twisted.python import failure

from nodes.das2.dsdf import Dsdf
from nodes.das2.stream import (
    Das2StreamError,
    Decoder,
    Encoder,
    Event,
    StreamException,
    StreamHeader,
    encode_exception,
)
from nodes.das2.timefmt import US_PER_S, TimeTextError, format_time, parse_time_text
from obsmesh.errors import InvalidArgument
from obsmesh.periodic import Periodic

MIN_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_PARAMS_TEXT = 1024
MAX_PARAM_TOKENS = 32
# Runs the reader in a session of its own, so that killing the process group
# also kills whatever the reader started, under a memory limit (argv[1], bytes
# of address space and of data, 0: none) that it and its children inherit, and
# asks the kernel for SIGKILL when the node dies (prctl PR_SET_PDEATHSIG), so
# no reader outlives its node whatever kills it. Only argv reaches exec: no shell.
_NEW_SESSION_EXEC = (
    "import ctypes,os,sys,resource\n"
    "os.setsid()\n"
    "ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)\n"
    "m=int(sys.argv[1])\n"
    "if m>0:\n"
    " resource.setrlimit(resource.RLIMIT_AS,(m,m))\n"
    " resource.setrlimit(resource.RLIMIT_DATA,(m,m))\n"
    "os.execv(sys.argv[2], sys.argv[2:])"
)
READ_SIZE = 1 << 20  # stdout is read in large pieces: decoding cost is per piece
_F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MiB pipe lets the reader run ahead of us
_YEAR_1000_US = -30_610_224_000 * US_PER_S
_YEAR_10000_US = 253_402_300_800 * US_PER_S


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class ReaderRequest:
    """A validated request: times in us1970, resolution in seconds (None: full)."""

    dataset: str
    start_us: int
    end_us: int
    resolution: float | None = None
    params: tuple[str, ...] = ()

    @property
    def start_text(self) -> str:
        return format_time(self.start_us)

    @property
    def end_text(self) -> str:
        return format_time(self.end_us)


def parse_request_time(value: object, name: str) -> int:
    """A time from a client: das2 text (`2013-01-01T00:00Z`, `2013-001`) or UNIX
    seconds as a number; us1970."""
    if isinstance(value, str):
        if len(value) > 64:
            raise InvalidArgument(f"{name} is too long")
        try:
            us = parse_time_text(value)
        except TimeTextError as exc:
            raise InvalidArgument(f"{name}: {exc}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and abs(value) < 1e12):
            raise InvalidArgument(f"{name} must be a finite number of UNIX seconds")
        us = round(value * US_PER_S)
    else:
        raise InvalidArgument(f"{name} must be a time text or UNIX seconds")
    if not _YEAR_1000_US <= us < _YEAR_10000_US:
        raise InvalidArgument(f"{name} is outside the years 1000-9999")
    return us


def parse_resolution(value: object) -> float | None:
    """Seconds per bin: a positive number; None, '', 0 mean full resolution."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if len(value) > 32:
            raise InvalidArgument("resolution is too long")
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgument("resolution must be a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument("resolution must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument("resolution must be a positive number of seconds")
    return float(value) or None


def parse_params(dsdf: Dsdf, params: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parameter tokens, each matching one of the DSDF's declared options."""
    if params is None:
        return ()
    if isinstance(params, str):
        if len(params) > MAX_PARAMS_TEXT:
            raise InvalidArgument("params are too long")
        if any(not (c == " " or c.isprintable()) or ord(c) > 126 for c in params):
            raise InvalidArgument("params may hold printable ASCII and spaces only")
        tokens = params.split(" ")
    elif isinstance(params, list | tuple) and all(isinstance(t, str) for t in params):
        tokens = list(params)
    else:
        raise InvalidArgument("params must be a text or a list of texts")
    tokens = [t for t in tokens if t != ""]
    if len(tokens) > MAX_PARAM_TOKENS:
        raise InvalidArgument("too many params")
    used: set[int] = set()
    for token in tokens:
        option = next((i for i, o in enumerate(dsdf.params) if o.matches(token)), None)
        if option is None:
            allowed = ", ".join(o.template for o in dsdf.params) or "none"
            raise InvalidArgument(f"param {token[:40]!r} is not one of this dataset's ({allowed})")
        if option in used:
            raise InvalidArgument(f"param {dsdf.params[option].template!r} is given twice")
        used.add(option)
    return tuple(tokens)


def validate_request(
    dsdf: Dsdf,
    start: object,
    end: object,
    resolution: object = None,
    params: str | Sequence[str] | None = None,
) -> ReaderRequest:
    """Everything a client sent, checked; InvalidArgument naming what is wrong."""
    start_us = parse_request_time(start, "start_time")
    end_us = parse_request_time(end, "end_time")
    if end_us <= start_us:
        raise InvalidArgument("end_time must be after start_time")
    res = parse_resolution(resolution)
    if res is not None and not dsdf.reducible:
        res = None  # the reader's own resolution is all there is
    return ReaderRequest(dsdf.name, start_us, end_us, res, parse_params(dsdf, params))


def reader_argv(dsdf: Dsdf, request: ReaderRequest, python: str = sys.executable) -> list[str]:
    """The reader's argument list: the DSDF's template, START, END, params."""
    argv = [
        t.replace("{python}", python).replace("{dsdf_dir}", dsdf.directory) for t in dsdf.reader
    ]
    exe = argv[0]
    if "/" in exe:
        path = exe if os.path.isabs(exe) else os.path.join(dsdf.directory, exe)
    else:
        path = shutil.which(exe, path=MIN_PATH) or ""
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ReaderError(f"reader {exe!r} of {dsdf.name} is not an executable file")
    return [os.path.abspath(path), *argv[1:], request.start_text, request.end_text, *request.params]


# ---------------------------------------------------------------- processes


class ReaderError(Exception):
    """A reader that could not be started."""


@dataclass(frozen=True)
class ReaderLimits:
    timeout: float = 600.0  # seconds from start to kill
    output_cap: int = 2 * 1024**3  # stdout bytes; the reader is killed past this
    stderr_cap: int = 64 * 1024  # the last bytes of stderr are kept
    memory: int = 1024**3  # RLIMIT_AS and RLIMIT_DATA of the reader process (0: none)


DEFAULT_LIMITS = ReaderLimits()


@dataclass
class ReaderResult:
    """How a reader ended. `reason`: ok, exit (non-zero), signal, timeout,
    output_cap, refused (its output was refused), cancelled."""

    argv: list[str]
    reason: str = "ok"
    exit_code: int | None = None
    signal: int | None = None
    bytes_out: int = 0
    stderr: bytes = b""
    error: str = ""  # why its output was refused

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    def describe(self) -> str:
        """A short message fit for a client (no paths, no stderr)."""
        return {
            "ok": "reader finished",
            "exit": f"reader failed (exit status {self.exit_code})",
            "signal": f"reader died (signal {self.signal})",
            "timeout": "reader ran out of time and was stopped",
            "output_cap": "reader output exceeded its limit and was cut",
            "refused": f"reader output refused: {self.error}",
            "cancelled": "request cancelled",
        }[self.reason]


def minimal_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": MIN_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    env.update(extra or {})
    return env


class _StdoutReader(abstract.FileDescriptor):
    """The reader's stdout, read by us in 1 MiB pieces (Twisted's own process
    pipes read 8 KiB at a time, which caps a reader at a few tens of MB/s)."""

    def __init__(self, reactor, fd: int, on_data, on_closed) -> None:
        super().__init__(reactor)
        os.set_blocking(fd, False)
        self.fd = fd
        self._on_data = on_data
        self._on_closed = on_closed
        self.startReading()

    def fileno(self) -> int:
        return self.fd

    def doRead(self):  # noqa: N802 - Twisted's name
        try:
            data = os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        self._on_data(data)
        return None

    def connectionLost(self, reason) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.stopReading()
            os.close(self.fd)
            self.fd = -1
            self._on_closed()


class ReaderFlow:
    """Back-pressure from a slow consumer: while paused, the readers attached to
    it are not read, so they block on a full pipe instead of filling our memory
    (their timeout still runs). A reader's pool may lend its slot meanwhile
    (`ReaderPool`): a client that does not read holds a process, not a slot."""

    def __init__(self) -> None:
        self.paused = False
        self._readers: set = set()  # handles with pause() and resume()
        self._waiting: list[defer.Deferred] = []

    def attach(self, reader) -> None:
        self._readers.add(reader)
        if self.paused:
            reader.pause()

    def detach(self, reader) -> None:
        self._readers.discard(reader)

    def pause(self) -> None:
        self.paused = True
        for r in list(self._readers):
            r.pause()

    def resume(self) -> None:
        self.paused = False
        for r in list(self._readers):
            r.resume()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def wait(self) -> defer.Deferred:
        """Fires when not paused (at once if not paused now)."""
        if not self.paused:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d


class _Running:
    """A running reader as its pool sees it: whether it holds a slot, and its
    stdout, read only while it holds one and its flow is not paused."""

    def __init__(self, pool: ReaderPool, stdout: _StdoutReader) -> None:
        self.pool = pool
        self.stdout = stdout
        self.holds_slot = True
        self.paused = False
        self._acquiring: defer.Deferred | None = None
        self.ended = False

    def pause(self) -> None:
        if self.ended or self.paused:
            return
        self.paused = True
        if self.stdout.fd >= 0:
            self.stdout.stopReading()
        if self._acquiring is not None:
            self._acquiring.cancel()
        elif self.holds_slot:  # lend the slot while the client does not read
            self.holds_slot = False
            self.pool.lent += 1
            self.pool._slots.release()

    def resume(self) -> None:
        if self.ended or not self.paused:
            return
        self.paused = False
        if self.holds_slot:
            if self.stdout.fd >= 0:
                self.stdout.startReading()
            return
        d = self._acquiring = self.pool._slots.acquire()

        def got(_: object) -> None:
            self._acquiring = None
            self.pool.lent -= 1
            self.holds_slot = True
            if self.ended:  # ended while waiting: give it back at once
                self.pool._slots.release()
            elif self.paused:  # paused again meanwhile
                self.holds_slot = False
                self.pool.lent += 1
                self.pool._slots.release()
            elif self.stdout.fd >= 0:
                self.stdout.startReading()

        def dropped(f: failure.Failure) -> None:
            f.trap(defer.CancelledError)
            self._acquiring = None

        d.addCallbacks(got, dropped)

    def end(self) -> None:
        """The process is gone: its slot (if held) goes back to the pool."""
        if self.ended:
            return
        self.ended = True
        if self._acquiring is not None:
            self._acquiring.cancel()
        if self.holds_slot:
            self.holds_slot = False
            self.pool._slots.release()
        else:
            self.pool.lent -= 1


class _ReaderProtocol(protocol.ProcessProtocol):
    def __init__(
        self,
        result: ReaderResult,
        on_output: Callable[[bytes], object],
        limits: ReaderLimits,
        clock,
    ) -> None:
        self.result = result
        self.on_output = on_output
        self.limits = limits
        self.clock = clock
        self.ended: defer.Deferred[ReaderResult] = defer.Deferred()
        self.stdout: _StdoutReader | None = None
        self.stopping: str | None = None
        self._exited = False
        self._stdout_open = True
        self._timer = None
        self._reaper: Periodic | None = None
        self._stderr = bytearray()

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.transport.closeStdin()
        self._timer = self.clock.callLater(self.limits.timeout, self.kill, "timeout")

    def stdout_data(self, data: bytes) -> None:
        if self.stopping:
            return  # output after a kill decision is dropped
        room = self.limits.output_cap - self.result.bytes_out
        over = len(data) > room
        if over:
            data = data[:room]
        self.result.bytes_out += len(data)
        if data:
            try:
                self.on_output(data)
            except Exception as exc:  # the consumer refuses this output: stop the reader
                self.result.error = str(exc)[:200]
                self.kill("refused")
                return
        if over:
            self.kill("output_cap")

    def stdout_closed(self) -> None:
        self._stdout_open = False
        self._maybe_end()
        if not self._exited and self._reaper is None:
            # Twisted learns of the exit from SIGCHLD, which a reactor run without
            # signal handlers never gets: look for the exit ourselves meanwhile.
            self._reaper = Periodic(self.clock, 0.05, self._reap, name="das2 reader reaper")
            self._reaper.start(now=False)

    def _reap(self) -> None:
        if not self._exited and self.transport.pid is not None:
            self.transport.reapProcess()

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self._stderr += data
        if len(self._stderr) > self.limits.stderr_cap:
            del self._stderr[: len(self._stderr) - self.limits.stderr_cap]

    def kill(self, reason: str) -> None:
        if self.stopping or self.ended.called:
            return
        self.stopping = reason
        pid = self.transport.pid
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)  # the reader and all it started
            except OSError:  # not (yet) a session leader of its own
                try:
                    self.transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
        # stop reading, so a descendant that escaped the kill cannot hold us open
        self.transport.loseConnection()
        if self.stdout is not None:
            self.stdout.close()

    def processEnded(self, reason: failure.Failure) -> None:  # noqa: N802
        status = reason.value
        self.result.exit_code = getattr(status, "exitCode", None)
        self.result.signal = getattr(status, "signal", None)
        self._exited = True
        self._maybe_end()

    def _maybe_end(self) -> None:
        """Done when the process has exited and all its output has been read."""
        if not self._exited or self._stdout_open or self.ended.called:
            return  # (the timeout stays armed: a descendant may still hold stdout)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._reaper is not None:
            self._reaper.stop()
        self.result.stderr = bytes(self._stderr)
        if self.stopping:
            self.result.reason = self.stopping
        elif self.result.exit_code == 0:
            self.result.reason = "ok"
        else:
            self.result.reason = "signal" if self.result.signal else "exit"
        self.ended.callback(self.result)


class ReaderPool:
    """Runs readers: at most `max_concurrent` read at a time (slots), at most
    `max_processes` exist at a time; the rest wait their turn. A reader whose
    client does not read (its flow paused) lends its slot until the client
    reads again, so such clients cannot starve the others; the process limit
    bounds how many of them there can be."""

    def __init__(
        self,
        max_concurrent: int = 4,
        env: dict[str, str] | None = None,
        reactor=None,
        max_processes: int | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        processes = max_processes if max_processes is not None else max_concurrent
        self._processes = defer.DeferredSemaphore(max(processes, max_concurrent))
        self._slots = defer.DeferredSemaphore(max_concurrent)
        self._env = minimal_env(env)
        self.active = 0  # reader processes running
        self.lent = 0  # of those, paused ones that lent their slot
        self.most_active = 0  # the most that ever ran at once

    @property
    def waiting(self) -> int:
        return len(self._processes.waiting) + len(self._slots.waiting)

    def run(
        self,
        argv: Sequence[str],
        on_output: Callable[[bytes], object],
        limits: ReaderLimits = DEFAULT_LIMITS,
        cwd: str | None = None,
        flow: ReaderFlow | None = None,
    ) -> defer.Deferred[ReaderResult]:
        """Start a reader when a slot is free; fires with its `ReaderResult`.
        `on_output` gets stdout chunks; if it raises, the reader is killed.
        Cancelling the Deferred kills the reader (or drops it from the queue).
        A `flow` pauses and resumes reading its output."""
        if not argv or not all(isinstance(a, str) and "\x00" not in a for a in argv):
            return defer.fail(ReaderError("argv must be non-empty texts without NUL"))
        if not os.path.isabs(argv[0]):
            return defer.fail(ReaderError("the reader must be given by an absolute path"))
        result = ReaderResult(list(argv))
        state: dict[str, object] = {}

        def cancel(_d: defer.Deferred) -> None:
            proto = state.get("proto")
            if isinstance(proto, _ReaderProtocol):
                proto.kill("cancelled")  # the slot is freed when it has ended
            else:
                state["cancelled"] = True
                acquiring = state.get("acquiring")
                if isinstance(acquiring, defer.Deferred):
                    acquiring.cancel()

        done: defer.Deferred[ReaderResult] = defer.Deferred(canceller=cancel)

        async def acquire() -> bool:
            """A process place, then a slot; False when cancelled meanwhile."""
            for i, sem in enumerate((self._processes, self._slots)):
                d = state["acquiring"] = sem.acquire()
                try:
                    await d
                except defer.CancelledError:
                    if i:
                        self._processes.release()
                    return False
            state.pop("acquiring", None)
            if state.get("cancelled"):
                self._slots.release()
                self._processes.release()
                return False
            return True

        def start(ok: bool) -> None:
            if not ok:
                return
            proto = _ReaderProtocol(result, on_output, limits, self._reactor)
            state["proto"] = proto
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            proto.ended.addBoth(finish)
            read_end, write_end = os.pipe()
            try:
                fcntl.fcntl(write_end, _F_SETPIPE_SZ, READ_SIZE)
            except OSError:  # not Linux, or above the system's limit: a smaller pipe works too
                pass
            exec_argv = [sys.executable, "-I", "-S", "-c", _NEW_SESSION_EXEC]
            try:
                self._reactor.spawnProcess(
                    proto,
                    sys.executable,
                    [*exec_argv, str(int(limits.memory)), *argv],
                    env=self._env,
                    path=cwd,
                    childFDs={0: "w", 1: write_end, 2: "r"},
                )
            except OSError as exc:
                os.close(read_end)
                proto.ended.errback(ReaderError(f"cannot start reader: {exc}"))
                return
            finally:
                os.close(write_end)  # the child holds its own copy
            proto.stdout = _StdoutReader(
                self._reactor, read_end, proto.stdout_data, proto.stdout_closed
            )
            running = state["running"] = _Running(self, proto.stdout)
            if flow is not None:
                flow.attach(running)
                proto.ended.addBoth(lambda r: (flow.detach(running), r)[1])

        def finish(outcome: object) -> None:
            self.active -= 1
            running = state.get("running")
            if isinstance(running, _Running):
                running.end()
            else:  # it never started: the slot is still held
                self._slots.release()
            self._processes.release()
            if not done.called:
                if isinstance(outcome, failure.Failure):
                    done.errback(outcome)
                else:
                    done.callback(outcome)

        defer.ensureDeferred(acquire()).addCallback(start)
        return done


# ---------------------------------------------------------------- stream guard


class StreamGate:
    """Passes on a reader's output only as complete, valid das2 packets.

    A reader is hostile input too: its bytes are decoded as they come, and only
    the bytes of complete packets go on (`on_bytes`), with the decoded events
    (`on_events`). When the reader fails, `fail` closes the stream properly: an
    `[xx]` exception after what was sent (never a second `[00]`), or, if nothing
    was sent, a stream header followed by the exception.
    """

    def __init__(
        self,
        on_bytes: Callable[[bytes], object] | None = None,
        on_events: Callable[[list[Event]], object] | None = None,
    ) -> None:
        self._decoder = Decoder()
        self._pending = b""
        self._on_bytes = on_bytes
        self._on_events = on_events
        self.sent = 0  # bytes passed on
        self.closed = False

    def feed(self, chunk: bytes) -> None:
        """Raises Das2StreamError when the output is not a das2 stream (what was
        valid before the fault has been passed on)."""
        before = self._decoder.consumed
        try:
            events = self._decoder.feed(chunk)
        except Das2StreamError as exc:
            self._pass(exc.offset - before if exc.offset is not None else 0, chunk, exc.events)
            raise
        self._pass(self._decoder.consumed - before, chunk, events)

    def _pass(self, complete: int, chunk: bytes, events: list[Event]) -> None:
        if self._on_bytes is not None:
            data = memoryview(self._pending + bytes(chunk) if self._pending else chunk)
            self._pending = bytes(data[complete:])  # an unfinished packet: small
            if complete:
                self._on_bytes(bytes(data[:complete]))
        self.sent += complete
        if events and self._on_events is not None:
            self._on_events(events)

    def finish(self) -> None:
        """The reader ended well; Das2StreamError if its stream was cut short."""
        self._decoder.finish()
        self.closed = True

    def fail(self, kind: str, message: str) -> None:
        """End the stream with an exception packet (idempotent)."""
        if self.closed:
            return
        self.closed = True
        exc = StreamException(kind, message)
        if self.sent:
            packet = encode_exception(exc)
            events: list[Event] = [exc]
        else:
            header = StreamHeader()
            packet = Encoder().encode_all([header, exc])
            events = [header, exc]
        if self._on_bytes is not None:
            self._on_bytes(packet)
        self.sent += len(packet)
        if self._on_events is not None:
            self._on_events(events)


def run_reader_stream(
    pool: ReaderPool,
    argv: Sequence[str],
    gate: StreamGate,
    limits: ReaderLimits = DEFAULT_LIMITS,
    cwd: str | None = None,
    flow: ReaderFlow | None = None,
) -> defer.Deferred[ReaderResult]:
    """Run a reader through a `StreamGate`: the gate's output is always a valid
    das2 stream, ending in a `ServerError` exception when the reader failed.
    Fires with the `ReaderResult` (check `.ok` before caching anything)."""

    def ended(result: ReaderResult) -> ReaderResult:
        if result.ok:
            try:
                gate.finish()
            except Das2StreamError as exc:
                result.reason, result.error = "refused", exc.message
        if not result.ok:
            gate.fail("ServerError", result.describe())
        return result

    def not_started(f: failure.Failure) -> failure.Failure:
        if not f.check(defer.CancelledError):
            gate.fail("ServerError", "reader could not be started")
        return f

    return pool.run(argv, gate.feed, limits, cwd, flow).addCallbacks(ended, not_started)


__all__ = [
    "ReaderError",
    "ReaderFlow",
    "ReaderLimits",
    "ReaderPool",
    "ReaderRequest",
    "ReaderResult",
    "StreamGate",
    "minimal_env",
    "parse_params",
    "parse_request_time",
    "parse_resolution",
    "reader_argv",
    "run_reader_stream",
    "validate_request",
]
