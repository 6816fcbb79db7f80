"""twisted.web plumbing of the CO2 endpoint: a request whose body is capped
while it streams in, an access log without query strings (a unit may send its
token there), and the one resource that hands every request to the server.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

log = Logger(namespace="obsmesh.co2")


def peer(request: Request) -> str:
    addr = request.getClientAddress()
    return getattr(addr, "host", str(addr))


class Co2Request(Request):
    """A request whose body is capped while it streams in.

    Over the cap (by Content-Length, or counted for chunked bodies) the client
    gets 413 at once, the write side is closed and the rest of the body is read
    and dropped (up to `drain_bytes` / `drain_seconds`, then the connection is
    cut): nothing beyond the cap is ever held in memory.
    """

    _refused = False
    _seen = 0
    _dropped = 0

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()
        if length is not None and length > self.channel.site.config.max_body_bytes:
            self._refuse_too_large()

    def handleContentChunk(self, data: bytes) -> None:
        config = self.channel.site.config
        if self._refused:
            self._dropped += len(data)
            if self._dropped > config.drain_bytes:
                self.channel.transport.abortConnection()
            return
        self._seen += len(data)
        if self._seen > config.max_body_bytes:
            self.content = io.BytesIO()
            self._refuse_too_large()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:  # answered already; the whole body has been drained
            self.channel.transport.loseConnection()
            return
        super().requestReceived(command, path, version)

    def _refuse_too_large(self) -> None:
        site = self.channel.site
        self._refused = True
        site.counters["rejected_body_too_large"] += 1
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after a 413
        body = json.dumps(
            {
                "error": "body_too_large",
                "message": f"request body over {site.config.max_body_bytes} bytes",
            }
        ).encode()
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        half_close = getattr(transport, "loseWriteConnection", None)
        if half_close is None:
            transport.loseConnection()
        else:
            half_close()
        call = site.reactor.callLater(site.config.drain_seconds, transport.abortConnection)
        self.notifyFinish().addBoth(lambda _: call.cancel() if call.active() else None)
        log.warn(
            "413 body over {cap} bytes from {peer}", cap=site.config.max_body_bytes, peer=peer(self)
        )


def _access_line(timestamp: str, request: Request) -> str:
    """Access log line without the query string: a unit may send its token there."""
    path = request.path[:300].decode("ascii", "backslashreplace")
    method = request.method[:16].decode("ascii", "backslashreplace")
    return (
        f'"{peer(request)}" - - {timestamp} "{method} {path}" '
        f"{request.code} {request.sentLength or '-'}"
    )


class Co2Site(Site):
    """`config` (a Co2Config) gives the body limits; `counters` counts refusals."""

    noisy = False

    def __init__(
        self,
        handler: Callable[[Request], Awaitable[None]],
        config: Any,
        counters: Any,
        reactor: Any,
    ) -> None:
        super().__init__(
            Co2Resource(handler),
            requestFactory=Co2Request,
            parsePOSTFormSubmission=False,
            reactor=reactor,
            logFormatter=_access_line,
        )
        self.config = config
        self.counters = counters
        self.reactor = reactor


class Co2Resource(Resource):
    """The whole URL space: routing is done by `routes.route`, so every answer,
    404 included, is the same JSON shape."""

    isLeaf = True

    def __init__(self, handler: Callable[[Request], Awaitable[None]]) -> None:
        super().__init__()
        self.handler = handler

    def render(self, request: Request) -> Any:
        ensureDeferred(self.handler(request))
        return NOT_DONE_YET
