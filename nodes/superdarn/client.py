"""Twisted client for one radar's realtime feed (TCP, Connex framing, DMAP).

`RadarClient` connects, decodes every frame into a record dict and hands it to
`on_record`; it reconnects forever with capped exponential backoff and jitter
(also when the very first connect fails), and reports its state through
`on_status` whenever the connection comes or goes, an attempt fails, or the
radar goes stale (nothing received for `stale_after` seconds) or comes back.

The backoff restarts from its first step only once a connection has delivered
a frame, so a server that accepts and at once closes (fitacfserver has 16
client slots) is not hammered. A connection silent for
`reconnect_after_silence` seconds is dropped and made again: the feed has no
keep-alive, so a half-open TCP connection would otherwise look like a quiet
radar forever (TCP keep-alive is switched on too).

Everything time-related goes through the injected `reactor` (connectTCP and
callLater), so tests drive it with `twisted.internet.testing.MemoryReactorClock`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from nodes.radar import dmap
from obsmesh.backoff import Backoff

from .framing import DEFAULT_MAX_PAYLOAD, FrameDecoder

_DMAP_CODE = dmap.HEADER.pack(dmap.RECORD_CODE, 0, 0, 0)[:4]

# States reported in the status.
IDLE, CONNECTING, CONNECTED, WAITING, STOPPED = (
    "idle",
    "connecting",
    "connected",
    "waiting",
    "stopped",
)


# 1 s, 2 s, 4 s ... a minute at most between attempts on one radar
DEFAULT_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.25)


class _FeedProtocol(Protocol):
    def __init__(self, client: RadarClient) -> None:
        self.client = client
        self.decoder = FrameDecoder(client.max_payload, payload_prefix=_DMAP_CODE)

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpKeepAlive(1)
        except (AttributeError, OSError):
            pass  # not a TCP transport (tests) or not supported
        self.client._connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.client._data(self, data)


class _Factory(ClientFactory):
    noisy = False  # no "Starting factory" line per connection attempt: the client logs what matters

    def __init__(self, client: RadarClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> _FeedProtocol:
        return _FeedProtocol(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client._ended(reason, was_connected=False)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.client._ended(reason, was_connected=True)


class RadarClient:
    """One radar connection. `on_record(record)` gets each decoded record;
    `on_status(status)` gets `status()` whenever it changes meaningfully."""

    log = Logger()

    def __init__(
        self,
        host: str,
        port: int,
        on_record: Callable[[dict[str, Any]], None],
        on_status: Callable[[dict[str, Any]], None] | None = None,
        *,
        name: str = "",
        reactor: Any = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        stale_after: float = 120.0,
        reconnect_after_silence: float | None = 600.0,
        connect_timeout: float = 10.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.host = host
        self.port = port
        self.name = name or f"{host}:{port}"
        self.on_record = on_record
        self.on_status = on_status
        self.reactor = reactor
        self.backoff = backoff
        self.stale_after = stale_after
        self.reconnect_after_silence = reconnect_after_silence
        self.connect_timeout = connect_timeout
        self.max_payload = max_payload
        self.rand = rand
        self.state = IDLE
        self.stale = False
        self.attempts = 0  # consecutive attempts without a frame received
        self.connections = 0
        self.records = 0
        self.bad_records = 0
        self.replaced_strings = 0  # string values with bytes that are not UTF-8, kept mended
        self.last_record: float | None = None  # reactor time of the last record
        self.last_error: str | None = None
        self.next_attempt: float | None = None
        self._factory = _Factory(self)
        self._connector: Any = None
        self._protocol: _FeedProtocol | None = None
        self._retry: IDelayedCall | None = None
        self._stale_timer: IDelayedCall | None = None
        self._silence_timer: IDelayedCall | None = None
        self._stopped: defer.Deferred | None = None
        self._got_frame = False
        self._framing_totals = {"oversize": 0, "resyncs": 0, "skipped": 0, "empty": 0}

    # ---------------------------------------------------------- control

    def start(self) -> None:
        if self.state != IDLE:
            return
        self._arm_stale()
        self._connect()

    def stop(self) -> defer.Deferred:
        """Stop for good; the Deferred fires once the connection is closed."""
        if self.state == STOPPED:
            return self._stopped or defer.succeed(None)
        previous, self.state = self.state, STOPPED
        self.next_attempt = None
        for timer in (self._retry, self._stale_timer, self._silence_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._stale_timer = self._silence_timer = None
        self._stopped = defer.Deferred()
        if previous == CONNECTED and self._protocol is not None:
            self._protocol.transport.loseConnection()
        elif previous == CONNECTING and self._connector is not None:
            self._connector.stopConnecting()
        else:
            self._stopped.callback(None)
        self._report()
        return self._stopped

    def status(self) -> dict[str, Any]:
        totals = dict(self._framing_totals)
        if self._protocol is not None:
            d = self._protocol.decoder
            for key in totals:
                totals[key] += getattr(d, key)
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "state": self.state,
            "connected": self.state == CONNECTED,
            "stale": self.stale,
            "last_record": self.last_record,
            "records": self.records,
            "bad_records": self.bad_records,
            "replaced_strings": self.replaced_strings,
            "connections": self.connections,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "error": self.last_error,
            **{f"frames_{k}": v for k, v in totals.items()},
        }

    # ---------------------------------------------------------- internals

    def _connect(self) -> None:
        self._retry = None
        self.next_attempt = None
        self.state = CONNECTING
        self.attempts += 1
        self._got_frame = False
        self._connector = self.reactor.connectTCP(
            self.host, self.port, self._factory, timeout=self.connect_timeout
        )

    def _connected(self, protocol: _FeedProtocol) -> None:
        if self.state == STOPPED:
            protocol.transport.loseConnection()
            return
        self._protocol = protocol
        self.state = CONNECTED
        self.connections += 1
        self._arm_silence()
        self.log.info("radar {name}: connected", name=self.name)
        self._report()

    def _data(self, protocol: _FeedProtocol, data: bytes) -> None:
        if protocol is not self._protocol or self.state != CONNECTED:
            return
        self._arm_silence()
        for payload in protocol.decoder.feed(data):
            if not self._got_frame:
                self._got_frame = True
                self.attempts = 0  # a working connection: backoff starts over
            try:
                record = dmap.decode_record(payload, lazy=True)
            except dmap.DmapError as exc:
                self.bad_records += 1
                self.last_error = f"bad record: {exc}"
                continue
            self.records += 1
            self.replaced_strings += dmap.replaced_strings(record)
            self.last_record = self.reactor.seconds()
            self._arm_stale()
            if self.stale:
                self.stale = False
                self._report()
            try:
                self.on_record(record)
            except Exception:  # a consumer bug must not cut the radar off
                self.log.failure("radar {name}: record handler failed", name=self.name)

    def _ended(self, reason: Failure, was_connected: bool) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            for key in self._framing_totals:
                self._framing_totals[key] += getattr(protocol.decoder, key)
        if self._silence_timer is not None and self._silence_timer.active():
            self._silence_timer.cancel()
        self._silence_timer = None
        self._connector = None
        if self.state == STOPPED:
            if self._stopped is not None and not self._stopped.called:
                self._stopped.callback(None)
            return
        message = reason.getErrorMessage()
        error = ("connection lost: " if was_connected else "connect failed: ") + message
        # the first failure is news; the same failure on every retry is not (debug)
        emit = self.log.info if error != self.last_error else self.log.debug
        self.last_error = error
        emit("radar {name}: {error}", name=self.name, error=error)
        delay = self.backoff.delay(max(self.attempts - 1, 0), self.rand)
        self.state = WAITING
        self.next_attempt = self.reactor.seconds() + delay
        self._retry = self.reactor.callLater(delay, self._connect)
        self._report()

    def _arm_stale(self) -> None:
        if self._stale_timer is not None and self._stale_timer.active():
            self._stale_timer.reset(self.stale_after)
        else:
            self._stale_timer = self.reactor.callLater(self.stale_after, self._went_stale)

    def _went_stale(self) -> None:
        self._stale_timer = None
        if self.state == STOPPED or self.stale:
            return
        self.stale = True
        self.log.info("radar {name}: stale (nothing for {s} s)", name=self.name, s=self.stale_after)
        self._report()

    def _arm_silence(self) -> None:
        if self.reconnect_after_silence is None:
            return
        if self._silence_timer is not None and self._silence_timer.active():
            self._silence_timer.reset(self.reconnect_after_silence)
        else:
            self._silence_timer = self.reactor.callLater(
                self.reconnect_after_silence, self._silent_too_long
            )

    def _silent_too_long(self) -> None:
        self._silence_timer = None
        if self.state == CONNECTED and self._protocol is not None:
            self.last_error = "silent connection dropped"
            self._protocol.transport.abortConnection()

    def _report(self) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(self.status())
        except Exception:
            self.log.failure("radar {name}: status handler failed", name=self.name)
