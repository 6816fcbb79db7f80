"""A per-connection bound on what the router queues for a peer that does not read.

Hosted by the router worker as a component (`.crossbar/config.json`, id
`outbound`); it imports nothing but autobahn, twisted and the standard
library, as everything the router hosts must.

Why a component: crossbar 26.10 offers no bound on a connection's outgoing
bytes. Its WebSocket options are a closed list (crossbar/common/checkconfig.py
`check_websocket_options`: allowed_origins, max_frame_size, max_message_size,
auto_ping_*, compression, ...; an unknown key is refused) and
`crossbar/router/protocol.py set_websocket_options` hands them to autobahn's
`setProtocolOptions`, whose parameters bound only what is *received*
(maxFramePayloadSize, maxMessagePayloadSize) or detect a dead peer
(autoPingInterval/Timeout). Outgoing data goes to `transport.write`, which
Twisted buffers without bound; RawSocket has no options of the kind at all.
The auto-ping drops a consumer that stops reading only 10-20 s later, by which
time megabytes a second have been queued for it.

The bound uses Twisted's own flow control: each connection gets a streaming
producer and its TCP transport a `bufferSize` of `max_queued_bytes`. Twisted
calls `pauseProducing` as soon as more than that is queued for the peer; the
producer then drops the connection at once (`abortConnection` frees what was
queued). A consumer that reads gets everything; one that does not costs the
router at most `max_queued_bytes` plus one message. The bound must exceed the
largest single message the router sends (replies stay under the node point
budget, well under the 32 MiB default).
"""

from __future__ import annotations

import os
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

DEFAULT_MAX_QUEUED_BYTES = 32 << 20
ENV = "OBSMESH_MAX_QUEUED_BYTES"
COLLECT_AFTER = 1.0  # seconds after a drop before the cycle collector runs

log = Logger(namespace="obsmesh.router")
dropped = {"connections": 0}


def _tcp(transport: Any) -> Any:
    """The TCP transport under `transport` (TLS wraps it), or None."""
    seen = 0
    while transport is not None and seen < 4:
        if hasattr(transport, "bufferSize") and hasattr(transport, "abortConnection"):
            return transport
        transport = getattr(transport, "transport", None)
        seen += 1
    return None


@implementer(IPushProducer)
class QueueBound:
    """The producer of one connection: paused means over the bound, so it drops."""

    def __init__(self, protocol: Any, tcp: Any, limit: int) -> None:
        self.protocol = protocol
        self.tcp = tcp
        self.limit = limit

    def pauseProducing(self) -> None:
        if getattr(self.tcp, "disconnected", False) or getattr(self.tcp, "_aborting", False):
            return
        dropped["connections"] += 1
        peer = getattr(self.protocol, "peer", None) or str(self.tcp.getPeer())
        log.warn(
            "dropped {peer}: more than {limit} bytes queued for it (it does not read); "
            "max_queued_bytes, {n} dropped so far",
            peer=peer,
            limit=self.limit,
            n=dropped["connections"],
        )
        self.tcp.abortConnection()
        _collect_soon()

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def bound(protocol: Any, limit: int) -> bool:
    """Give one open connection its bound; False if its transport is not a known kind."""
    transport = protocol.transport
    tcp = _tcp(transport)
    if tcp is None or not hasattr(transport, "registerProducer"):
        return False
    tcp.bufferSize = limit
    if getattr(tcp, "producer", None) is not None:
        # After a WebSocket upgrade the HTTP channel is still registered: it no longer
        # speaks on this connection.
        transport.unregisterProducer()
    transport.registerProducer(QueueBound(protocol, tcp, limit), True)
    return True


_collecting: list[Any] = []


def _collect_soon() -> None:
    """A dropped connection's queue is held by reference cycles (protocol, session,
    transport) that Python's collector may leave for many seconds: collect once,
    shortly after a burst of drops, so the memory goes back at once."""
    import gc

    from twisted.internet import reactor

    if _collecting and _collecting[0].active():
        return
    _collecting[:] = [reactor.callLater(COLLECT_AFTER, gc.collect)]


_installed: dict[str, int] = {}


def install(limit: int) -> None:
    """Bound every WAMP connection the router accepts from now on (idempotent)."""
    from crossbar.router import protocol as cb

    _installed["limit"] = limit
    if _installed.get("done"):
        return
    _installed["done"] = 1
    ws, rs = cb.WampWebSocketServerProtocol, cb.WampRawSocketServerProtocol
    ws_open, rs_made = ws.onOpen, rs.connectionMade

    def ws_on_open(self: Any) -> Any:
        bound(self, _installed["limit"])
        return ws_open(self)

    def rs_connection_made(self: Any) -> Any:
        out = rs_made(self)
        bound(self, _installed["limit"])
        return out

    ws.onOpen = ws_on_open
    rs.connectionMade = rs_connection_made


def limit_from(extra: dict[str, Any] | None) -> int:
    raw = os.environ.get(ENV) or (extra or {}).get("max_queued_bytes") or DEFAULT_MAX_QUEUED_BYTES
    value = int(raw)
    if value < 1 << 16:
        raise ValueError(f"max_queued_bytes must be at least 65536, got {value}")
    return value


class OutboundGuard(ApplicationSession):
    """Installs the bound when the router starts it; then only stays joined."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.limit = limit_from(getattr(config, "extra", None))
        install(self.limit)

    def onJoin(self, details: Any) -> None:
        log.info(
            "outbound bound on: a peer is dropped once more than {limit} bytes are queued for it",
            limit=self.limit,
        )
