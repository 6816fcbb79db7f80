"""twisted.web plumbing of the CO2 endpoint, behind obsmesh.httpguard's door.

The door caps connections (in all and per address) and the time to send a
request head and body. The server judges each request head (route, token,
offset) before any body byte is read (`Co2Server.check_head`). A push body is
then streamed to a nameless spool file by the file threads (`BodySpool`): at
most `SPOOL_WINDOW` bytes of it are in memory, and the client is paused while
the disk catches up. Bodies of other requests are counted and dropped. The
access log (one line per request, without query strings: a unit may send its
token there) is at debug level.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from nodes.co2.storage import BLOCK, Storage, Workers
from obsmesh.httpguard import GuardedRequest, GuardedSite

if TYPE_CHECKING:
    from nodes.co2.routes import Route

log = Logger(namespace="obsmesh.co2")

SPOOL_WINDOW = 4 * BLOCK  # body bytes in memory before the client is paused


def peer(request: Request) -> str:
    addr = request.getClientAddress()
    return getattr(addr, "host", str(addr))


class BodySpool:
    """A request body on its way to a spool file, written in order by the file
    threads; `finish()` gives (descriptor, size) once all of it is on disk."""

    def __init__(self, storage: Storage, workers: Workers, transport: Any) -> None:
        self.storage = storage
        self.workers = workers
        self.transport = transport
        self.size = 0
        self.fd: int | None = None
        self.failure: Any = None
        self._buf = bytearray()
        self._queued = 0  # bytes handed to the threads and not yet written
        self._paused = False
        self._chain: Deferred = succeed(None)

    def _opened(self, fd: int) -> None:
        self.fd = fd

    def _failed(self, failure: Any) -> None:
        if self.failure is None:
            self.failure = failure
            log.failure("spooling a request body failed", failure)

    def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)
        if len(self._buf) >= BLOCK:
            self._hand_over()
        if not self._paused and self._queued + len(self._buf) > SPOOL_WINDOW:
            self._paused = True
            self.transport.pauseProducing()

    def _hand_over(self) -> None:
        data, self._buf = bytes(self._buf), bytearray()
        at = self.size - len(data)
        self._queued += len(data)

        def write(_: Any) -> Any:
            if self.failure is not None:
                return None
            d = self.workers.in_files(self.storage.spool_write, self.fd, data, at)
            return d.addCallback(self._opened)

        def written(_: Any) -> None:
            self._queued -= len(data)
            if self._paused and self._queued <= SPOOL_WINDOW // 2:
                self._paused = False
                self.transport.resumeProducing()

        self._chain.addCallback(write).addErrback(self._failed).addCallback(written)

    async def finish(self) -> tuple[int | None, int]:
        """(descriptor, size) once the whole body is on disk; the caller owns the
        descriptor from then on (and closes it)."""
        if self._buf:
            self._hand_over()
        await self._chain
        if self.failure is not None:
            raise OSError("the request body could not be spooled to disk")
        fd, self.fd = self.fd, None
        return fd, self.size

    def close(self) -> None:
        def close(_: Any) -> None:
            fd, self.fd = self.fd, None
            if fd is not None:
                self.workers.in_files(os.close, fd).addErrback(self._failed)

        self._chain.addBoth(close)


class Co2Request(GuardedRequest):
    """A request whose head the server has judged: `route` and `query` are set
    before the body arrives; a push body goes to `spool`."""

    route: Route | None = None
    query: dict[str, str] | None = None
    spool: BodySpool | None = None

    def open_body(self, length: int | None) -> None:
        server = self.channel.site.server
        if self.route is not None and self.route.kind == "push" and length != 0:
            self.spool = BodySpool(server.storage, server.workers, self.channel.transport)

    def body_chunk(self, data: bytes) -> None:
        if self.spool is not None:
            self.spool.write(data)
        # the bodies of other requests are counted against their cap and dropped

    handed_on = False  # the whole body is in: the server owns the spool from now on

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.handed_on = True
        super().requestReceived(command, path, version)

    def release(self) -> None:
        spool, self.spool = self.spool, None
        if spool is not None:
            spool.close()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if not self.handed_on:  # cut mid-body: nothing of it is used
            self.release()


def _access_line(timestamp: str, request: Request) -> str:
    """Access log line without the query string: a unit may send its token there."""
    path = request.path[:300].decode("ascii", "backslashreplace")
    method = request.method[:16].decode("ascii", "backslashreplace")
    return (
        f'"{peer(request)}" - - {timestamp} "{method} {path}" '
        f"{request.code} {request.sentLength or '-'}"
    )


class Co2Site(GuardedSite):
    """The endpoint's door; `server` is the Co2Server (head check, storage, counters)."""

    noisy = False

    def __init__(self, server: Any) -> None:
        super().__init__(
            Co2Resource(server.respond),
            server.config.limits(),
            name="co2 unit endpoint",
            counters=server.counters,
            head_check=server.check_head,
            on_refusal=server.refused,
            requestFactory=Co2Request,
            reactor=server.reactor,
            parsePOSTFormSubmission=False,
        )
        self.server = server

    def log(self, request: Request) -> None:
        log.debug("{line}", line=_access_line(self._logDateTime, request))


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
