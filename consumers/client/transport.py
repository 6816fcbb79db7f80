"""Client transports on an explicit reactor: rawsocket (msgpack by default) and
WebSocket (JSON or msgpack), for `rs://`, `rss://`, `tcp://`, `ws://`, `wss://`.

Two things autobahn does not do for a client on a private reactor, done here:
- its WebSocket factory schedules timeouts through txaio's global loop (the
  global reactor); the factory's timer is rebound to our reactor;
- rawsocket framing (Twisted's Int32StringReceiver) copies the whole partial
  message on every 64 KiB read, quadratic in the message size; large replies
  (16 MiB) are framed here in linear time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.rawsocket import WampRawSocketClientFactory, WampRawSocketClientProtocol
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory

from consumers.client.errors import InvalidArgument
from obsmesh.wamp import send_at_once

SERIALIZERS = {"msgpack": MsgPackSerializer, "json": JsonSerializer}
MAX_MESSAGE = 16 * 1024 * 1024  # the router's max_message_size


@dataclass(frozen=True)
class Address:
    kind: str  # "rawsocket" | "websocket"
    host: str
    port: int
    secure: bool
    url: str


def parse_url(url: str) -> Address:
    if not isinstance(url, str) or not url:
        raise InvalidArgument(f"router URL must be a non-empty string, got {url!r}")
    try:
        parsed = urlparse(url)
        port = parsed.port
    except ValueError as exc:
        raise InvalidArgument(f"bad router URL {url!r}: {exc}") from None
    host = parsed.hostname
    if parsed.scheme in ("rs", "rss", "tcp"):
        kind, secure, default_port = "rawsocket", parsed.scheme == "rss", 8081
    elif parsed.scheme in ("ws", "wss"):
        kind, secure, default_port = (
            "websocket",
            parsed.scheme == "wss",
            443 if parsed.scheme == "wss" else 80,
        )
    else:
        raise InvalidArgument(
            f"router URL must start with rs://, tcp://, ws:// or wss://, got {url!r}"
        )
    if not host:
        raise InvalidArgument(f"router URL {url!r} has no host")
    return Address(kind, host, port or default_port, secure, url)


class FastRawSocketClientProtocol(WampRawSocketClientProtocol):
    """Rawsocket client with linear-time framing of large messages."""

    def connectionMade(self) -> None:
        send_at_once(
            self.transport
        )  # calls are latency-bound: Nagle must not hold one for a delayed ACK
        super().connectionMade()
        self._parts: list[bytes] = []
        self._have = 0
        self._need: int | None = None  # total frame size (header + body) once known

    def dataReceived(self, data: bytes) -> None:
        if not self._handshake_complete:
            super().dataReceived(data)  # calls back here with any bytes past the handshake
            return
        self._parts.append(data)
        self._have += len(data)
        while not self.paused and self.transport is not None:
            if self._need is None:
                if self._have < 4:
                    return
                head = self._peek(4)
                (length,) = struct.unpack("!I", head)
                if length > self.MAX_LENGTH:
                    self.lengthLimitExceeded(length)
                    return
                self._need = 4 + length
            if self._have < self._need:
                return
            body = self._take(self._need)
            self._need = None
            self.stringReceived(body)

    def _peek(self, n: int) -> bytes:
        if len(self._parts[0]) < n:
            self._parts = [b"".join(self._parts)]
        return self._parts[0][:n]

    def _take(self, n: int) -> bytes:
        """The body of the frame of n bytes at the front; one join per frame,
        never one per read."""
        joined = b"".join(self._parts) if len(self._parts) > 1 else self._parts[0]
        rest = joined[n:]
        self._parts = [rest] if rest else []
        self._have = len(rest)
        return bytes(memoryview(joined)[4:n])


class _FastRawSocketClientFactory(WampRawSocketClientFactory):
    protocol = FastRawSocketClientProtocol


def _rebind_timer(factory: Any, reactor: Any) -> None:
    """Point the WebSocket factory's batched timer at our reactor."""
    try:
        from txaio.tx import _BatchedTimer
    except ImportError:  # pragma: no cover - txaio internals moved; keep autobahn's timer
        return
    factory._batched_timer = _BatchedTimer(
        200.0,
        1000,
        seconds_provider=reactor.seconds,
        delayed_call_creator=reactor.callLater,
    )


def make_factory(address: Address, serializer: str, session_factory: Any, reactor: Any) -> Any:
    if serializer not in SERIALIZERS:
        raise InvalidArgument(
            f"serializer must be one of {sorted(SERIALIZERS)}, got {serializer!r}"
        )
    ser = SERIALIZERS[serializer]()
    if address.kind == "rawsocket":
        factory = _FastRawSocketClientFactory(session_factory, serializer=ser)
        factory.setProtocolOptions(maxMessagePayloadSize=MAX_MESSAGE)
        return factory
    factory = WampWebSocketClientFactory(
        session_factory, url=address.url, serializers=[ser], reactor=reactor
    )
    _rebind_timer(factory, reactor)
    factory.setProtocolOptions(
        maxFramePayloadSize=0,
        maxMessagePayloadSize=0,
        # The close handshake's drop timeout runs on txaio's global loop: rely
        # on the server closing the TCP connection instead.
        serverConnectionDropTimeout=0,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=2,
    )
    return factory


def endpoint(address: Address, reactor: Any, tls_ca: str | None = None) -> Any:
    """A TCP endpoint, wrapped in TLS for rss:// and wss:// (trusting `tls_ca`,
    a PEM file, besides the system's roots when given)."""
    ep = HostnameEndpoint(reactor, address.host, address.port, timeout=10)
    if address.secure:
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        trust = None
        if tls_ca:
            with open(tls_ca, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        ep = _TLSEndpoint(ep, optionsForClientTLS(address.host, trustRoot=trust), reactor)
    return ep


class _TLSEndpoint:
    """TLS over another endpoint, timed by our reactor. Twisted's wrapClientTLS
    flushes small writes on the global reactor, which never runs in a plain
    script (the client's reactor is private): the WebSocket handshake would
    wait forever."""

    def __init__(self, inner: Any, creator: Any, reactor: Any) -> None:
        self.inner, self.creator, self.reactor = inner, creator, reactor

    def connect(self, factory: Any) -> Any:
        tls = TLSMemoryBIOFactory(self.creator, True, factory, clock=self.reactor)
        return self.inner.connect(tls).addCallback(lambda proto: proto.wrappedProtocol)
