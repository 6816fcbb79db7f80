"""One ZeroMQ SUB socket, watched by the Twisted reactor without ever blocking it.

Why the reactor watches the socket (and not a thread): decoding is Python work
that holds the GIL, so a receiving thread would not make it faster, and it
would take the GIL from the reactor at unpredictable moments (the interpreter
switches threads only every few milliseconds). Watching the socket's
`ZMQ_FD` keeps everything on the reactor thread and lets the feed choose how
long it may hold it: messages are taken in bounded batches (at most
`batch_messages`, and no longer than `batch_seconds`), one batch per feed per
reactor turn, and when a batch ends with messages still queued the next batch
is a `callLater(0)`, so timers, other sockets and the WAMP session get their
turn in between. (A node with several feeds gives each its share of its
per-turn budget.)

`ZMQ_FD` is not a data socket: it signals, edge-triggered, that the socket's
*events* may have changed. After it fires, the socket must be drained with
NOBLOCK until nothing is left (ZMQ_EVENTS without POLLIN); any recv, and even
reading ZMQ_EVENTS, may consume the edge, so the feed re-checks ZMQ_EVENTS
after every batch and never waits on the FD while POLLIN is set.

A socket silent for `silence` seconds is closed and made again (the reference
consumer does the same: a half-open TCP connection or a publisher that lost
its subscriptions would otherwise look like a quiet radar forever). ZeroMQ
reconnects by itself to a publisher that restarts; the re-creation covers the
cases where it cannot tell.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import zmq
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from obsmesh.periodic import Periodic

# Frames kept per message: three already means "none of the known shapes".
MAX_FRAMES = 3
_NOBLOCK = int(zmq.NOBLOCK)
DEFAULT_BATCH_MESSAGES = 2000
DEFAULT_BATCH_SECONDS = 0.004

# Feed states (get_status).
WAITING, RECEIVING, SILENT, STOPPED = "waiting", "receiving", "silent", "stopped"


@implementer(IReadDescriptor)
class ZmqFeed:
    """A SUB socket connected to `endpoint` (`tcp://host:port`), subscribed to
    everything. Each message's frames go to `on_message(feed, frames)` on the
    reactor thread; `on_state(feed)` is called when `state` changes.

    - `silence`: seconds without a message before the socket is re-created.
    - `max_frame`: ZMQ_MAXMSGSIZE, bytes of one frame (a peer sending more is
      disconnected by ZeroMQ itself, before anything is buffered).
    - `rcvhwm`: messages ZeroMQ queues for this socket (more are dropped by
      the publisher: a slow node loses the excess, never its memory).
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        endpoint: str,
        on_message: Callable[[ZmqFeed, list[bytes]], None],
        on_state: Callable[[ZmqFeed], None] | None = None,
        *,
        reactor: Any,
        context: zmq.Context,
        silence: float = 10.0,
        max_frame: int = 1 << 20,
        rcvhwm: int = 1000,
        batch_messages: int = DEFAULT_BATCH_MESSAGES,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        code: str | None = None,
    ) -> None:
        if not silence > 0:
            raise ValueError("silence must be a positive number of seconds")
        if batch_messages < 1 or not batch_seconds > 0:
            raise ValueError("batch_messages and batch_seconds must be positive")
        self.name = name
        self.endpoint = endpoint
        self.code = code  # the radar a Borealis site's socket carries (None: aggregator)
        self.on_message = on_message
        self.on_state = on_state
        self.reactor = reactor
        self.context = context
        self.silence = float(silence)
        self.max_frame = int(max_frame)
        self.rcvhwm = int(rcvhwm)
        self.batch_messages = int(batch_messages)
        self.batch_seconds = float(batch_seconds)
        self.state = STOPPED
        self.socket: zmq.Socket | None = None
        self.messages = 0
        self.batches = 0
        self.recreated = 0
        self.last_message: float | None = None  # wall-clock time of the newest message
        self.last_error: str | None = None
        self.longest_batch = 0.0  # seconds the longest batch held the reactor (get_status)
        # (wall, CPU) seconds of the recent batches: a long wall time with little
        # CPU is the process waiting for a core, not the feed holding the reactor.
        self.recent_batches: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        self._last_seen = 0.0  # reactor time of the newest message (or of the socket's creation)
        self._drain_call: Any = None
        self._running = False
        self._watchdog = Periodic(reactor, min(1.0, self.silence / 4), self._check_silence)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._running = True
        self._open()
        self._watchdog.start(now=False)

    def stop(self) -> None:
        self._running = False
        self._watchdog.stop()
        self._close()
        self._set_state(STOPPED)

    def _open(self, state: str = WAITING) -> None:
        sock = self.context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)  # back off from a publisher that stays away
        if "[" in self.endpoint:
            sock.setsockopt(zmq.IPV6, 1)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            sock.connect(self.endpoint)  # returns at once: ZeroMQ connects in its own thread
        except zmq.ZMQError:
            sock.close(0)
            raise
        self.socket = sock
        self._last_seen = self.reactor.seconds()
        self.reactor.addReader(self)
        self._set_state(state)
        self._schedule_drain()  # the FD only signals changes: look once now

    def _close(self) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self.socket is not None:
            self.reactor.removeReader(self)  # while fileno() is still valid
            self.socket.close(0)
            self.socket = None

    def _check_silence(self) -> None:
        if self.socket is None:
            return
        quiet = self.reactor.seconds() - self._last_seen
        if quiet >= self.silence:
            self.recreated += 1
            self.last_error = f"nothing received for {quiet:.1f} s; socket re-created"
            self.log.info("{name}: {why}", name=self.name, why=self.last_error)
            self._close()
            self._set_state(SILENT)
            self._open_after_silence()

    def _open_after_silence(self) -> None:
        if not self._running or self.socket is not None:
            return
        try:
            self._open(SILENT)  # still silent until a message arrives
        except zmq.ZMQError as exc:  # e.g. out of file descriptors: try again later
            self.last_error = f"cannot re-create the socket: {exc}"
            self.log.error("{name}: {why}", name=self.name, why=self.last_error)
            self.reactor.callLater(self.silence, self._open_after_silence)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(self)

    # ------------------------------------------------------------ reading

    def fileno(self) -> int:
        return self.socket.getsockopt(zmq.FD) if self.socket is not None else -1

    def logPrefix(self) -> str:
        return f"ZmqFeed({self.name})"

    def connectionLost(self, reason: Any) -> None:
        # The reactor calls this if the FD breaks (never for a ZeroMQ signaller
        # in practice); a fresh socket is the remedy.
        if self.socket is not None:
            self.log.warn(
                "{name}: socket lost ({reason}); re-creating", name=self.name, reason=reason
            )
            self.socket.close(0)
            self.socket = None
            self.reactor.callLater(0, self._open_after_silence)

    def doRead(self) -> None:
        # Never drain here: the drain runs among the reactor's timed calls, so
        # each feed takes at most one batch per reactor turn (a readiness
        # event and a pending drain in the same turn would otherwise be two).
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._drain_call is None or not self._drain_call.active():
            self._drain_call = self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        """One bounded batch; if messages remain, another batch on the next turn."""
        sock = self.socket
        if sock is None:
            return
        began, began_cpu = time.perf_counter(), time.thread_time()
        deadline = began + self.batch_seconds
        taken = 0
        recv, getsockopt = sock.recv, sock.getsockopt
        handle = self.on_message
        while taken < self.batch_messages:
            try:
                # A Frame knows whether more parts follow (no getsockopt call).
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:  # the context terminated under us
                self.last_error = f"receive failed: {exc}"
                return
            frames = [frame.bytes]
            # A message's frames arrive together: the rest never block.
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                if len(frames) < MAX_FRAMES:
                    frames.append(frame.bytes)
            taken += 1
            try:
                handle(self, frames)
            except Exception:  # a bug in a handler must not stop the feed
                self.log.failure("{name}: message handler failed", name=self.name)
            if self.socket is not sock:  # the handler stopped the feed
                return
            if time.perf_counter() >= deadline:
                break
        if taken:
            held = time.perf_counter() - began
            self.recent_batches.append((held, time.thread_time() - began_cpu))
            if held > self.longest_batch:
                self.longest_batch = held
            self.messages += taken
            self.batches += 1
            self._last_seen = self.reactor.seconds()
            self.last_message = time.time()
            if self.state != RECEIVING:
                self._set_state(RECEIVING)
        # Re-arm: after any recv the FD may not fire again while messages wait.
        if getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._schedule_drain()

    def batch_p99(self, cpu: bool = False) -> float | None:
        """99th percentile of the recent batches' wall (or CPU) seconds, if any."""
        if not self.recent_batches:
            return None
        ordered = sorted(b[1 if cpu else 0] for b in self.recent_batches)
        return ordered[int(0.99 * (len(ordered) - 1))]

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "code": self.code,
            "state": self.state,
            "messages": self.messages,
            "batches": self.batches,
            "recreated": self.recreated,
            "last_message": self.last_message,
            "silence": self.silence,
            "longest_batch": self.longest_batch,
            "batch_p99": self.batch_p99(),
            "batch_cpu_p99": self.batch_p99(cpu=True),
            "last_error": self.last_error,
        }
