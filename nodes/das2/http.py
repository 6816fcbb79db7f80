"""The das2.2 HTTP interface, so das2 clients (Autoplot, das2py, ...) read the
mesh's das2 datasets directly.

    ?server=list                         text lines `dataset|description`
    ?server=dsdf&dataset=X               the dataset's description as a das2 stream header
    ?server=id                           the server's id
    ?server=dataset&dataset=X&start_time=T0&end_time=T1[&resolution=S][&params=P][&ascii=1]
                                         a das2 stream (binary, or text with ascii=1)

Streams go out as they are made (chunked transfer, never a whole response in
memory) with `taskProgress` comments; a slow client pauses the readers (TCP
back-pressure), one that reads nothing for `stall_timeout` seconds is cut off,
and a client that hangs up cancels its request. A request refused before any
data (too large, `Das2Service.too_large`) gets HTTP 400 and its exception. Datasets whose
DSDF restricts `readAccess` are not served here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python import failure
from twisted.web import resource, server
from zope.interface import implementer

from nodes.das2.dsdf import Dsdf
from nodes.das2.readers import ReaderFlow, validate_request
from nodes.das2.service import Das2Service, StopStream
from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    Encoder,
    Event,
    PacketHeader,
    Plane,
    StreamException,
    StreamHeader,
    encode,
    value_type,
)
from nodes.das2.timefmt import seconds_per_unit
from obsmesh.errors import InvalidArgument

log = Logger()

BINARY_MIME = b"application/vnd.das2.das2stream"
TEXT_MIME = b"text/vnd.das2.das2stream; charset=utf-8"
PLAIN = b"text/plain; charset=utf-8"
DATASET_ARGS = {"server", "dataset", "start_time", "end_time", "resolution", "params", "ascii"}
MAX_ARG_BYTES = 2048
HIDDEN_KEYS = {"reader", "readAccess"}  # how the server runs a reader is not the client's business


def public(dsdf: Dsdf) -> bool:
    """Served over HTTP: no readAccess, or one that includes the public group."""
    return not dsdf.read_access or any(a.lower() == "group:public" for a in dsdf.read_access)


# ---------------------------------------------------------------- ascii output

_TIME_TEXT = value_type("time27")  # microseconds
_ASCII = {4: value_type("ascii16"), 8: value_type("ascii24")}  # round-trip exact widths


def ascii_plane(plane: Plane) -> Plane:
    if plane.type.kind != "real":
        return plane
    if plane.kind == "x" and seconds_per_unit(plane.units) is not None:
        return replace(plane, type=_TIME_TEXT)
    return replace(plane, type=_ASCII[plane.type.size])


class AsciiEvents:
    """Rewrites events so every binary plane is written as text."""

    def __init__(self) -> None:
        self._headers: dict[int, tuple[PacketHeader, PacketHeader]] = {}

    def __call__(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, PacketHeader):
                text = PacketHeader(
                    ev.packet_id, tuple(ascii_plane(p) for p in ev.planes), ev.properties
                )
                self._headers[ev.packet_id] = (ev, text)
                out.append(text)
            elif isinstance(ev, Data):
                out.append(Data(self._headers[ev.packet_id][1], ev.columns))
            else:
                out.append(ev)
        return out


# ---------------------------------------------------------------- responses


@implementer(IPushProducer)
class _Producer:
    """TCP back-pressure to the readers; a dropped connection cancels. A client
    that stays paused (reads nothing) for `stall_timeout` seconds is cut off:
    `stalled` stops its answer (its reader is killed) and drops the connection."""

    def __init__(
        self,
        flow: ReaderFlow,
        stop: Callable[[], None],
        stalled: Callable[[], None],
        stall_timeout: float,
        reactor: Any,
    ) -> None:
        self.flow = flow
        self.stop = stop
        self.stalled = stalled
        self.stall_timeout = stall_timeout
        self.reactor = reactor
        self._timer: Any = None

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's names
        self.flow.pause()
        if self._timer is None and self.stall_timeout > 0:
            self._timer = self.reactor.callLater(self.stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self._timer = None
        self.stalled()

    def resumeProducing(self) -> None:  # noqa: N802
        self._disarm()
        self.flow.resume()

    def stopProducing(self) -> None:  # noqa: N802
        self._disarm()
        self.flow.resume()
        self.stop()


class _StreamWriter:
    """An `emit` writing encoded events to the response as they come."""

    def __init__(self, request: server.Request, text: bool) -> None:
        self.request = request
        self.encoder = Encoder()
        self.ascii = AsciiEvents() if text else None
        self.gone = False
        self.bytes = 0

    def __call__(self, events: list[Event]) -> None:
        if self.gone:
            raise StopStream()
        if self.bytes == 0 and _refused(events):
            self.request.setResponseCode(400)  # refused before any data: a client error
        if self.ascii is not None:
            events = self.ascii(events)
        data = self.encoder.encode_all(events)
        if data:
            self.bytes += len(data)
            self.request.write(data)


def _refused(events: list[Event]) -> bool:
    """A stream that is a header and an IllegalArgument exception, no data."""
    kinds = [e for e in events if not isinstance(e, StreamHeader | Comment)]
    return bool(kinds) and all(
        isinstance(e, StreamException) and e.type == "IllegalArgument" for e in kinds
    )


class Das2Resource(resource.Resource):
    isLeaf = True

    def __init__(
        self,
        service: Das2Service,
        server_id: str = "obsmesh-das2",
        count: Callable[[str, int], None] | None = None,
        stall_timeout: float = 60.0,
        reactor: Any = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.service = service
        self.server_id = server_id
        self.stall_timeout = float(stall_timeout)
        self.reactor = reactor
        self._count = count or (lambda _name, _n=1: None)
        self.active: set[defer.Deferred] = set()

    # -- plumbing ----------------------------------------------------------
    @staticmethod
    def _args(request: server.Request) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, values in (request.args or {}).items():
            try:
                name = key.decode("ascii")
                if len(values) != 1:
                    raise InvalidArgument(f"{name} is given more than once")
                if len(values[0]) > MAX_ARG_BYTES:
                    raise InvalidArgument(f"{name} is too long")
                out[name] = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument("query arguments must be UTF-8 text") from None
        return out

    @staticmethod
    def _text(request: server.Request, status: int, text: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", PLAIN)
        return text.encode("utf-8")

    @staticmethod
    def _exception(request: server.Request, status: int, kind: str, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", BINARY_MIME)
        return encode([StreamHeader(), StreamException(kind, message)])

    def _dataset(self, args: dict[str, str]) -> Dsdf | None:
        dsdf = self.service.catalog.get(args.get("dataset", ""))
        return dsdf if dsdf is not None and public(dsdf) else None

    # -- commands ----------------------------------------------------------
    def render_GET(self, request: server.Request) -> bytes | int:  # noqa: N802 - Twisted's name
        self._count("http_requests", 1)
        try:
            args = self._args(request)
        except InvalidArgument as exc:
            return self._text(request, 400, f"{exc.message}\n")
        command = args.get("server", "")
        if command == "list":
            lines = [
                f"{name}|{d.description}"
                for name, d in sorted(self.service.catalog.items())
                if public(d)
            ]
            return self._text(request, 200, "".join(f"{line}\n" for line in lines))
        if command == "id":
            return self._text(request, 200, f"{self.server_id}\n")
        if command == "dsdf":
            dsdf = self._dataset(args)
            if dsdf is None:
                return self._exception(request, 404, "IllegalArgument", "no such dataset")
            props = {k: ("String", v) for k, v in dsdf.keys.items() if k not in HIDDEN_KEYS}
            props["name"] = ("String", dsdf.name)
            try:
                body = encode([StreamHeader(props)])
            except Das2StreamError:  # a value XML cannot carry (a control character)
                return self._exception(request, 500, "ServerError", "the DSDF cannot be shown")
            request.setHeader(b"content-type", BINARY_MIME)
            return body
        if command == "dataset":
            return self._stream(request, args)
        if command == "":
            names = "list, dsdf&dataset=, dataset&dataset=&start_time=&end_time=, id"
            return self._text(request, 200, f"das2 server {self.server_id}: ?server={names}\n")
        return self._text(request, 400, "unknown server command\n")

    def _stream(self, request: server.Request, args: dict[str, str]) -> bytes | int:
        unknown = set(args) - DATASET_ARGS
        if unknown:
            return self._exception(
                request,
                400,
                "IllegalArgument",
                f"unknown argument(s): {', '.join(sorted(unknown))[:200]}",
            )
        dsdf = self._dataset(args)
        if dsdf is None:
            return self._exception(request, 404, "IllegalArgument", "no such dataset")
        for needed in ("start_time", "end_time"):
            if not args.get(needed):
                return self._exception(request, 400, "IllegalArgument", f"{needed} is required")
        text = args.get("ascii", "").lower() in ("1", "true", "yes")
        try:
            req = validate_request(
                dsdf,
                args["start_time"],
                args["end_time"],
                args.get("resolution"),
                args.get("params"),
            )
        except InvalidArgument as exc:
            return self._exception(request, 400, "IllegalArgument", exc.message)
        request.setHeader(b"content-type", TEXT_MIME if text else BINARY_MIME)
        writer = _StreamWriter(request, text)
        flow = ReaderFlow()
        holder: dict[str, Any] = {}

        def stop() -> None:
            writer.gone = True
            d = holder.get("d")
            if d is not None and not d.called:
                d.cancel()

        def stalled() -> None:
            self._count("http_stalled", 1)
            log.info("das2 HTTP: a client read nothing for {s} s: cut off", s=self.stall_timeout)
            stop()
            transport = request.channel.transport if request.channel else None
            if transport is not None:
                transport.abortConnection()

        producer = _Producer(flow, stop, stalled, self.stall_timeout, self.reactor)
        request.registerProducer(producer, True)
        request.notifyFinish().addErrback(lambda _f: stop())
        d = self.service.answer(req, writer, progress=True, flow=flow)
        holder["d"] = d
        self.active.add(d)

        def done(result: Any) -> None:
            self.active.discard(d)
            if isinstance(result, failure.Failure):
                if result.check(defer.CancelledError):
                    self._count("http_cancelled", 1)  # the client hung up: its reader was stopped
                else:
                    log.failure("das2 HTTP request", failure=result)
            if writer.gone:
                return
            request.unregisterProducer()
            request.finish()

        d.addBoth(done)
        return server.NOT_DONE_YET


class _Site(server.Site):
    """One access line per request, at debug level (OBSMESH_LOG_LEVEL=debug)."""

    access = Logger(namespace="nodes.das2.http.access")
    noisy = False

    def log(self, request) -> None:
        self.access.debug("{line}", line=self._logFormatter(self._logDateTime, request).rstrip())


def site(resource_: Das2Resource) -> server.Site:
    s = _Site(resource_)
    s.displayTracebacks = False
    return s
