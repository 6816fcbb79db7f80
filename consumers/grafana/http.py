"""The bridge's HTTP server (twisted.web): routing, basic auth, CORS, JSON errors,
and the streamed `/export` download.

Every answer is JSON (except downloads and the OpenAPI document). Errors are
`{"error": message}` with 400 (malformed), 401, 404, 405, 413 or 503 (router
unreachable); a 500 only ever means a bug in the bridge, and it is logged.

The whole front door (every path served on this port) sits behind
obsmesh.httpguard: caps on connections and on the time to send a request head
and body, credentials and a declared body length judged from the head before
any body byte is read (413 at once, nothing spooled), chunked bodies counted
as they stream. Large answers are encoded off the reactor thread, so one big
query does not hold up the others.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import pathlib
import re
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from consumers.grafana import endpoints, export, protocol, replies
from consumers.grafana.bridge import Bridge
from consumers.grafana.errors import RequestError
from consumers.grafana.jsonout import dumps
from obsmesh.httpguard import GuardedChannel, GuardedSite, HttpLimits, Refusal

OPENAPI = pathlib.Path(__file__).with_name("openapi.yaml")
JSON_TYPE = b"application/json"
THREAD_ENCODE_VALUES = 200_000  # answers with more values than this are encoded off the reactor
_HEADER_LIST = re.compile(rb"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


def _normal_path(raw: bytes) -> str:
    """`//query/` → `/query` (Grafana joins its URL and the path as it finds them)."""
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the path is not UTF-8", 404) from None
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


class BridgeResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, bridge: Bridge, settings: dict[str, Any]) -> None:
        super().__init__()
        self.bridge = bridge
        self.max_body = int(settings["max_body"])
        self.user = settings.get("user") or ""
        self.password = _password(settings)
        self.origins = [str(o) for o in settings.get("cors_origins") or []]
        self.served = 0
        self.failures = 0

    def render(self, request):
        defer.ensureDeferred(self._handle(request))
        return NOT_DONE_YET

    async def _handle(self, request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))
        try:
            self._cors(request)
            if request.method == b"OPTIONS":  # a CORS preflight: no credentials are sent with it
                self._send(request, gone, 204, None)
                return
            self._authorize(request)
            path = _normal_path(request.path)
            route = endpoints.ROUTES.get(path)
            if route is None:
                raise RequestError(f"no endpoint {path}", 404)
            methods, handler = route
            if request.method not in methods:
                request.setHeader(b"allow", b", ".join((*methods, b"OPTIONS")))
                raise RequestError(f"{path} takes {' or '.join(m.decode() for m in methods)}", 405)
            if path == "/export":
                await self._export(request, gone)
                return
            if path == "/openapi.yaml":
                try:
                    document = OPENAPI.read_bytes()
                except OSError:
                    raise RequestError(
                        "the OpenAPI document is not installed with this bridge", 404
                    ) from None
                request.setHeader(b"content-type", b"application/yaml")
                self._write(request, gone, 200, document)
                return
            body = self._body(request)
            value = await handler(
                self.bridge, protocol.parse_json(body) if request.method == b"POST" else {}
            )
            if _values(value) > THREAD_ENCODE_VALUES:  # CPU work: off the reactor thread
                data = await threads.deferToThread(dumps, value)
                request.setHeader(b"content-type", JSON_TYPE)
                self._write(request, gone, 200, data)
                return
            self._send(request, gone, 200, value)
        except RequestError as exc:
            self._send(request, gone, exc.status, {"error": exc.message})
        except Exception:
            self.failures += 1
            self.log.failure(
                "request {method} {path} failed", method=request.method, path=request.path
            )
            self._send(request, gone, 500, {"error": "internal error in the bridge (logged)"})

    # -- plumbing ---------------------------------------------------------------
    def _body(self, request) -> bytes:
        content = request.content
        if content is None:
            return b""
        content.seek(0, 2)
        size = content.tell()
        if size > self.max_body:
            raise RequestError(f"the body is larger than {self.max_body} bytes", 413)
        content.seek(0)
        return content.read()

    def check_head(self, request, method: bytes, path: bytes, length: int | None) -> int:
        """The door's head check: credentials before any body byte is read (a CORS
        preflight carries none); returns the body cap."""
        if method != b"OPTIONS":
            try:
                self._authorize(request)
            except RequestError as exc:
                raise Refusal(
                    401,
                    "unauthorized",
                    exc.message,
                    {b"WWW-Authenticate": b'Basic realm="obsmesh", charset="UTF-8"'},
                ) from None
        return self.max_body

    def _authorize(self, request) -> None:
        if not self.user:
            return
        header = request.getHeader(b"authorization") or b""
        scheme, _, encoded = header.partition(b" ")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            user, sep, password = b"", b"", b""
        ok = scheme.lower() == b"basic" and sep == b":"
        # Both comparisons always run: the time taken says nothing about which one failed.
        ok = hmac.compare_digest(user, self.user.encode()) & ok
        ok = hmac.compare_digest(password, self.password.encode()) & ok
        if not ok:
            request.setHeader(b"www-authenticate", b'Basic realm="obsmesh", charset="UTF-8"')
            raise RequestError("authentication required", 401)

    def _cors(self, request) -> None:
        origin = request.getHeader(b"origin")
        if not origin or not self.origins:
            return
        origin_text = origin.decode("latin-1")
        if "*" in self.origins and not self.user:
            request.setHeader(b"access-control-allow-origin", b"*")
        elif origin_text in self.origins or "*" in self.origins:
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"vary", b"Origin")
            if self.user:
                request.setHeader(b"access-control-allow-credentials", b"true")
        else:
            return
        request.setHeader(b"access-control-allow-methods", b"GET, POST, OPTIONS")
        # Grafana's browser mode sends its own X-Grafana-* headers: allow what the preflight
        # asks for, as long as it is a plain list of header names.
        asked = request.getHeader(b"access-control-request-headers") or b""
        allowed = b"Content-Type, Authorization"
        if asked and len(asked) <= 1000 and _HEADER_LIST.match(asked):
            allowed = asked
        request.setHeader(b"access-control-allow-headers", allowed)
        request.setHeader(b"access-control-max-age", b"600")

    def _send(self, request, gone: list, status: int, value: Any) -> None:
        if value is None:
            self._write(request, gone, status, b"")
            return
        request.setHeader(b"content-type", JSON_TYPE)
        self._write(request, gone, status, dumps(value))

    def _write(self, request, gone: list, status: int, data: bytes) -> None:
        if gone:  # the client went away; nothing to answer
            return
        request.setResponseCode(status)
        request.setHeader(b"cache-control", b"no-store")
        if data:
            request.setHeader(b"content-length", str(len(data)).encode())
            request.write(data)
        request.finish()
        self.served += 1

    # -- /export ------------------------------------------------------------------
    async def _export(self, request, gone: list) -> None:
        """Stream a download: CSV chunk by chunk as the node's progressive results arrive."""
        query = request.uri.partition(b"?")[2]
        req = export.parse_args(query)
        metas = await self.bridge.export_fields(req.node, list(req.fields))
        timelines = sorted({m["timeline"] for m in metas.values()})
        if req.format == "csv" and len(timelines) > 1:
            raise RequestError(
                f"CSV holds one timeline; these fields span {', '.join(timelines)} (ask for format=json)"
            )
        started: list[bool] = []
        pending: defer.Deferred = defer.succeed(None)

        def begin() -> None:
            if started or gone:
                return
            started.append(True)
            kind = b"text/csv; charset=utf-8" if req.format == "csv" else JSON_TYPE
            request.setHeader(b"content-type", kind)
            request.setHeader(
                b"content-disposition", f'attachment; filename="{req.filename()}"'.encode()
            )
            request.setHeader(b"cache-control", b"no-store")
            if req.format == "csv":
                request.write(writer.header())

        def write(data: bytes) -> None:
            begin()
            if data and not gone:
                request.write(data)

        if req.format == "csv":
            writer = export.CsvExport(
                req.fields, {f: m["type"] for f, m in metas.items()}, timelines[0], req.node
            )

            def on_chunk(reply, *args, **kwargs) -> None:
                nonlocal pending
                # Formatting is CPU work: a thread does it, in order, off the reactor.
                pending = pending.addCallback(
                    lambda _: threads.deferToThread(writer.rows, reply)
                ).addCallback(write)
        else:
            doc = export.JsonExport(req, metas)

            def on_chunk(reply, *args, **kwargs) -> None:
                doc.add(reply)

        try:
            final = await self.bridge.export(
                req.node, list(req.fields), req.start, req.end, req.min_stride, req.reduce, on_chunk
            )
            on_chunk(final)
            if req.format == "json":
                pending = pending.addCallback(
                    lambda _: threads.deferToThread(doc.finish)
                ).addCallback(write)
            await pending
        except replies.BadReply as exc:
            if not started:
                raise RequestError(f"{req.node} sent a malformed answer: {exc}", 502) from None
            self._abort(request, gone)
            return
        except RequestError:
            if not started:
                raise
            self._abort(
                request, gone
            )  # headers went out: a cut transfer tells the client it failed
            return
        except Exception:
            if not started:
                raise
            self.log.failure("export of {node} failed midway", node=req.node)
            self._abort(request, gone)
            return
        begin()
        if not gone:
            request.finish()
            self.served += 1

    @staticmethod
    def _abort(request, gone: list) -> None:
        if not gone and request.channel is not None and request.channel.transport is not None:
            request.channel.transport.abortConnection()


def _password(settings: dict[str, Any]) -> str:
    path = settings.get("password_file") or ""
    if path:
        try:
            return pathlib.Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"grafana password_file {path}: {exc}") from exc
    return settings.get("password") or ""


def _values(value: Any) -> int:
    """About how many numbers an answer holds (its arrays' sizes), to decide where to encode it."""
    if isinstance(value, list):
        return sum(_values(v) for v in value) if len(value) < 100_000 else len(value)
    if isinstance(value, dict):
        points = value.get("datapoints", value.get("rows"))
        return getattr(points, "size", None) or (len(points) if isinstance(points, list) else 1)
    return 1


class RoomyChannel(GuardedChannel):
    """A download's URL may name many fields: allow request lines and headers up to 256 KiB
    (Twisted's 16 KiB default would drop such a request without an answer)."""

    MAX_LENGTH = 256 * 1024
    totalHeadersSize = 256 * 1024


class QuietSite(GuardedSite):
    """No access log line per request: at hundreds of requests a second it would cost more than the answer."""

    displayTracebacks = False
    protocol = RoomyChannel

    def log(self, request) -> None:
        pass


def limits(settings: dict[str, Any]) -> HttpLimits:
    return HttpLimits(
        max_connections=int(settings["max_connections"]),
        max_per_client=int(settings["max_connections_per_client"]),
        header_timeout=float(settings["header_timeout"]),
        body_timeout=float(settings["body_timeout"]),
        max_body_bytes=int(settings["max_body"]),
        drain_bytes=max(int(settings["max_body"]), 1 << 20),  # so a client sees its 413
    )


def _error_body(status: int, reason: str, message: str) -> tuple[bytes, bytes]:
    return JSON_TYPE, dumps({"error": message})


def site(bridge: Bridge, settings: dict[str, Any], resource: Resource | None = None) -> QuietSite:
    """The bridge's front door; `resource` (default: the bridge's own) is what it serves."""
    bridge_resource = BridgeResource(bridge, settings)
    # Bodies are JSON: Twisted need not parse form submissions (it would parse every
    # POST's Content-Type with the email package, and multipart bodies whole).
    from consumers.hapi.resource import front_door  # /hapi on the same port, same door

    root = resource or front_door(bridge_resource, bridge, settings)
    return QuietSite(
        root,
        limits(settings),
        name="grafana bridge",
        head_check=bridge_resource.check_head,
        error_body=_error_body,
        parsePOSTFormSubmission=False,
    )
