"""`/hapi` on the bridge's HTTP front door: the five HAPI 3.3 endpoints, a landing
page and `x_status`.

Every answer is either the endpoint's document or a HAPI error: an HTTP status
consistent with the HAPI code, a status line naming it, and a JSON body with
the HAPI status object, for every endpoint and format. Anything unexpected is
logged and answered 1500; no traceback ever reaches a client.

Bounds (settings `[hapi]`): at most `max_requests` HAPI requests in progress
(more get HTTP 503, HAPI 1500, with Retry-After), at most `max_streams` data
responses streaming at once and `max_waiting` waiting for a turn. Basic auth
and CORS follow the bridge's settings; without basic auth the data are public
and every origin may read them (the specification's advice for HAPI servers).
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from consumers.hapi import encode, query
from consumers.hapi.datasets import TIME_NAME, Dataset
from consumers.hapi.source import Source
from consumers.hapi.status import HAPI_VERSION, HapiError, document, status, status_line
from consumers.hapi.stream import DataStream, Plan

JSON = b"application/json"
CONTENT_TYPES = {
    "csv": b"text/csv; charset=utf-8",
    "binary": b"application/octet-stream",
    "json": JSON,
}
ENDPOINTS = ("", "about", "capabilities", "catalog", "info", "data", "x_status")


class HapiResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, source: Source, settings: dict[str, Any], guard: Any = None) -> None:
        super().__init__()
        self.source = source
        self.settings = settings
        self.guard = guard  # the bridge's resource: its basic auth and CORS
        self.streams = defer.DeferredSemaphore(int(settings["max_streams"]))
        self.counters = {
            "requests": 0,
            "in_progress": 0,
            "refused": 0,
            "errors": 0,
            "failures": 0,
            "streams": 0,
            "peak_streams": 0,
            "waiting": 0,
            "paused": 0,  # streams waiting for their client to read (back-pressure)
            "rows": 0,
        }

    def render(self, request):
        defer.ensureDeferred(self._handle(request))
        return NOT_DONE_YET

    # -- dispatch ------------------------------------------------------------------
    async def _handle(self, request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))
        c = self.counters
        c["requests"] += 1
        c["in_progress"] += 1
        try:
            self._headers(request)
            if request.method == b"OPTIONS":
                self._write(request, gone, 204, b"", None)
                return
            if c["in_progress"] > int(self.settings["max_requests"]):
                c["refused"] += 1
                request.setHeader(b"retry-after", b"1")
                raise HapiError(1500, "too many requests in progress; retry shortly", http=503)
            self._authorize(request)
            if request.method not in (b"GET", b"HEAD"):
                request.setHeader(b"allow", b"GET, HEAD, OPTIONS")
                raise HapiError(1400, "HAPI endpoints take GET and HEAD only", http=405)
            endpoint = self._endpoint(request)
            if endpoint is None:
                return self._write(request, gone, 301, b"", None)
            q = request.uri.partition(b"?")[2]
            if endpoint == "data":
                await self._data(request, gone, query.data(q))
                return
            value = await self._document(request, endpoint, q)
            if isinstance(value, bytes):  # the landing page
                self._write(request, gone, 200, value, b"text/html; charset=utf-8")
            else:
                self._json(request, gone, 200, value)
        except HapiError as exc:
            c["errors"] += 1
            self._error(request, gone, exc)
        except encode.BadColumns:  # a node's answer that does not hold what was asked
            c["errors"] += 1
            self._error(request, gone, HapiError(1501, "a node sent a malformed answer", http=502))
        except Exception:
            c["failures"] += 1
            self.log.failure("HAPI {uri} failed", uri=request.uri[:200])
            self._error(request, gone, HapiError(1500, "logged by the server"))
        finally:
            c["in_progress"] -= 1

    def _endpoint(self, request) -> str | None:
        """The endpoint named by the path after /hapi; None after setting a 301
        (a trailing slash: the specification's advice)."""
        rest = list(request.postpath)
        if rest and rest[-1] == b"" and (len(rest) > 1 or request.path.endswith(b"/")):
            target = request.path.rstrip(b"/") or b"/hapi"
            q = request.uri.partition(b"?")[2]
            request.setHeader(b"location", target + (b"?" + q if q else b""))
            return None
        try:
            name = b"/".join(rest).decode("ascii")
        except UnicodeDecodeError:
            name = "?"
        if name not in ENDPOINTS:
            raise HapiError(1400, "no such endpoint; see /hapi", http=404)
        return name

    async def _document(self, request, endpoint: str, q: bytes) -> Any:
        if endpoint == "":
            query.no_arguments("about", q)
            return await self._landing()
        if endpoint in ("about", "capabilities", "x_status"):
            query.no_arguments("about", q)
            return (
                self._about()
                if endpoint == "about"
                else (self._capabilities() if endpoint == "capabilities" else self._status())
            )
        if endpoint == "catalog":
            return await self._catalog(query.catalog(q))
        return await self._info(query.info(q))

    # -- the metadata endpoints ------------------------------------------------------
    def _about(self) -> dict:
        s = self.settings
        return {
            "HAPI": HAPI_VERSION,
            "status": status(1200),
            "id": s["server_id"],
            "title": s["title"],
            "contact": s["contact"],
            "description": s["description"],
            "x_extensions": "x_stride and x_reduce on /data; x_node, x_timeline, x_kind in /info",
        }

    @staticmethod
    def _capabilities() -> dict:
        return {
            "HAPI": HAPI_VERSION,
            "status": status(1200),
            "outputFormats": list(query.FORMATS),
            "catalogDepthOptions": ["dataset", "all"],
        }

    def _status(self) -> dict:
        return {"HAPI": HAPI_VERSION, "status": status(1200), "x_counters": dict(self.counters)}

    async def _catalog(self, req: query.CatalogRequest) -> dict:
        datasets = await self.source.all_datasets()
        entries = []
        now = self.source.now
        for ds in datasets.values():
            entry: dict[str, Any] = {"id": ds.id, "title": ds.title()}
            if req.depth == "all":
                await self.source.string_lengths(ds)
                info = ds.info(ds.names, now)
                entry["info"] = {k: v for k, v in info.items() if k not in ("HAPI", "status")}
            entries.append(entry)
        return {"HAPI": HAPI_VERSION, "status": status(1200), "catalog": entries}

    async def _info(self, req: query.InfoRequest) -> dict:
        ds = await self.source.dataset(req.dataset)
        names = query.select(ds.names, req.parameters)
        await self.source.string_lengths(ds)
        return ds.info(names, self.source.now)

    async def _landing(self) -> bytes:
        rows = "".join(
            f'<li><a href="hapi/info?dataset={html.escape(i, quote=True)}">{html.escape(i)}</a></li>'
            for i in (await self.source.all_datasets())
        )
        s = self.settings
        return (
            (
                "<!doctype html><meta charset=utf-8><title>HAPI: {t}</title>"
                "<h1>{t}</h1><p>A HAPI {v} server: <a href=hapi/about>about</a>, "
                "<a href=hapi/capabilities>capabilities</a>, <a href=hapi/catalog>catalog</a>, "
                "<code>info?dataset=ID</code>, <code>data?dataset=ID&amp;start=T&amp;stop=T</code>."
                "</p><ul>{rows}</ul>"
            )
            .format(t=html.escape(s["title"]), v=HAPI_VERSION, rows=rows)
            .encode("utf-8")
        )

    # -- /data ---------------------------------------------------------------------
    async def _data(self, request, gone: list, req: query.DataRequest) -> None:
        ds = await self.source.dataset(req.dataset)
        names = query.select(ds.names, req.parameters)
        params = [ds.parameter(n) for n in names if n != TIME_NAME]
        lengths = (
            await self.source.string_lengths(ds) if any(p.kind == "string" for p in params) else {}
        )
        start, stop = self._clipped(ds, req.start, req.stop)
        budget = int(self.settings["window_values"]) or int(self.source.bridge.mesh["point_budget"])
        plan = Plan(ds, params, start, stop, req.stride, req.reduce, req.format, lengths, budget)
        plan.stall = float(self.settings["stall_timeout"])
        self._check_size(plan)
        extras = {"x_stride": req.stride, "x_reduce": req.reduce} if req.stride else {}
        if request.method == b"HEAD":
            request.setHeader(b"content-type", CONTENT_TYPES[req.format])
            return self._write(request, gone, 200, b"", None)
        c = self.counters
        if c["waiting"] >= int(self.settings["max_waiting"]):
            c["refused"] += 1
            request.setHeader(b"retry-after", b"1")
            raise HapiError(1500, "too many data requests waiting; retry shortly", http=503)
        c["waiting"] += 1
        try:
            await self.streams.acquire()
        finally:
            c["waiting"] -= 1
        c["streams"] += 1
        c["peak_streams"] = max(c["peak_streams"], c["streams"])
        try:
            if gone:
                return
            stream = DataStream(request, self.source, plan, c)
            window = await stream.next_window() if start < stop else _empty(params)
            empty = window[0].shape[0] == 0 and not stream.more()
            code = 1201 if empty else 1200
            head, tail = b"", b""
            if req.format == "json" or req.header:
                doc = ds.info(names, self.source.now, req.format, extras)
                doc["status"] = status(code)
                head = encode.json_head(doc) if req.format == "json" else encode.header_lines(doc)
                tail = encode.JSON_TAIL if req.format == "json" else b""
            if gone:
                return
            request.setResponseCode(200, status_line(200, code))
            request.setHeader(b"content-type", CONTENT_TYPES[req.format])
            request.setHeader(b"cache-control", b"no-store")
            await stream.run(head, window, tail)
            c["rows"] += stream.rows
        finally:
            c["streams"] -= 1
            self.streams.release()

    def _clipped(self, ds: Dataset, start: float, stop: float) -> tuple[float, float]:
        """The request's interval within what the node holds now (and its valid times)."""
        first, last = ds.dates(self.source.now)
        if ds.first is not None and ds.last is not None:
            start = max(start, first)
            stop = min(stop, _after(last))
        return start, max(start, stop)

    def _check_size(self, plan: Plan) -> None:
        span = plan.stop - plan.start
        cadence = plan.ds.cadence
        if plan.stride:
            cadence = max(cadence or 0.0, plan.stride / (2 if plan.reduce == "minmax" else 1))
        if cadence and span / cadence > int(self.settings["max_rows"]):
            raise HapiError(
                1408,
                f"about {span / cadence:.3g} records; this server streams at most "
                f"{int(self.settings['max_rows']):,} per request: ask for less time or x_stride",
            )

    # -- plumbing --------------------------------------------------------------------
    def _headers(self, request) -> None:
        guard = self.guard
        public = guard is None or not getattr(guard, "user", "")
        if guard is not None and getattr(guard, "origins", None):
            guard._cors(request)
        elif public:
            request.setHeader(b"access-control-allow-origin", b"*")
            request.setHeader(b"access-control-allow-methods", b"GET, HEAD, OPTIONS")
            request.setHeader(b"access-control-allow-headers", b"Content-Type")

    def _authorize(self, request) -> None:
        if self.guard is None or not getattr(self.guard, "user", ""):
            return
        try:
            self.guard._authorize(request)
        except Exception:
            raise HapiError(1400, "authentication required", http=401) from None

    def _error(self, request, gone: list, exc: HapiError) -> None:
        body = document(exc.code, exc.detail)
        if request.startedWriting:  # headers went out: only cutting the stream says it failed
            if request.channel is not None and request.channel.transport is not None:
                request.channel.transport.abortConnection()
            return
        self._json(request, gone, exc.http, body, exc.code)

    def _json(self, request, gone: list, http: int, value: dict, code: int = 1200) -> None:
        self._write(
            request, gone, http, encode.orjson.dumps(value) + b"\n", JSON, status_line(http, code)
        )

    @staticmethod
    def _write(request, gone, http: int, data: bytes, kind: bytes | None, line=None) -> None:
        if gone:
            return
        request.setResponseCode(http, line)
        request.setHeader(b"cache-control", b"no-store")
        if kind is not None:
            request.setHeader(b"content-type", kind)
        request.setHeader(b"content-length", str(len(data)).encode())
        if data and request.method != b"HEAD":
            request.write(data)
        request.finish()


def _after(t: float) -> float:
    """The smallest time after `t` (stop is exclusive; the newest sample is included)."""
    return math.nextafter(t, math.inf)


def _empty(params: list) -> tuple[np.ndarray, list[np.ndarray]]:
    return np.zeros(0), [np.zeros(0) for _ in params]


class FrontDoor(Resource):
    """The bridge's HTTP root: `/hapi...` to HAPI, everything else to the bridge."""

    def __init__(self, bridge_resource: Resource, hapi: Resource) -> None:
        super().__init__()
        self.bridge_resource = bridge_resource
        self.hapi = hapi

    def getChild(self, path: bytes, request):
        return self.hapi if path == b"hapi" else self.bridge_resource

    def render(self, request):
        return self.bridge_resource.render(request)


def front_door(bridge_resource: Resource, bridge: Any, settings: dict[str, Any]) -> Resource:
    """The bridge's root resource with `/hapi` mounted (unless `[hapi] enabled = false`)."""
    from consumers.hapi.settings import load

    hapi_settings = settings.get("hapi") or load()
    if not hapi_settings["enabled"]:
        return bridge_resource
    return FrontDoor(bridge_resource, HapiResource(Source(bridge), hapi_settings, bridge_resource))
