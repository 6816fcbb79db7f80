"""The `das2` node: das2 readers as mesh datasets, cached, over WAMP and HTTP.

Each DSDF in the catalog (default: the example readers in `examples/`) is a
timeline named after the dataset; each plane of its stream is a field
(`columns.py`). The fields are learned at start by running each reader over a
short stretch of its first example range ("probing").

Data are not kept in the node's store: the base's query engine
(nodes/node/query.py) answers `get_data` from `Das2Source` (source.py), which
runs the request through `Das2Service` (cache blocks where present, the reader
for the rest); the engine gives the reply shape, errors, point budget and
progressive results. `min_stride` is the das2 resolution: bins aligned to
multiples of it, one record per non-empty bin at the bin's centre (das2's
reducer). `reduce="minmax"` is computed from full resolution by the mesh's
own min/max reduction.

Datasets marked `live = 1` are read for the newest interval every
`live_poll` seconds; new records go out through `self.append` (the base's
batched live topic). Only single-valued planes travel live.

The das2.2 HTTP interface (`http.py`) listens on 127.0.0.1:8091 by default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from twisted.internet import defer

from nodes.base import DataNode
from nodes.das2.cache import Cache, DiskBlocks, RedisBlocks
from nodes.das2.columns import (
    Collector,
    field_name,
    plane_meta,
    value_planes,
)
from nodes.das2.dsdf import Dsdf, load_catalog
from nodes.das2.http import Das2Resource, public, site
from nodes.das2.kind import Settings
from nodes.das2.readers import ReaderLimits, ReaderPool, ReaderRequest, validate_request
from nodes.das2.service import Das2Service, StopStream, x_seconds
from nodes.das2.source import Das2Source
from nodes.das2.stream import Data, PacketHeader
from nodes.das2.timefmt import US_PER_S
from obsmesh import config
from obsmesh.errors import MeshError
from obsmesh.periodic import Periodic
from obsmesh.store import MemoryStore
from obsmesh.timerules import resolve_interval

EXAMPLES = Path(__file__).resolve().parent / "examples"
PROBE_RECORDS = 2000  # records a probe reads before it stops the reader
PROBE_TIMEOUT = 30.0

DEFAULTS: dict[str, Any] = Settings.defaults()


def probe_windows(dsdf: Dsdf, now_us: int, seconds: float) -> list[tuple[int, int]]:
    """Where to look for a dataset's planes: the example ranges, then the end
    of its valid range (or the last minutes before now)."""
    span = max(1, int(seconds * US_PER_S))
    out = [(ex.start_us, min(ex.end_us, ex.start_us + span)) for ex in dsdf.examples[:2]]
    if dsdf.valid_range is not None:
        lo, hi = dsdf.valid_range
        hi = min(hi if hi is not None else now_us, now_us)
        if hi > lo:
            out.append((max(lo, hi - span), hi))
    elif not out:
        out.append((now_us - span, now_us))
    return out


class Das2Node(DataNode):
    kind = "das2"
    description = "das2 datasets: readers run on demand, cached, served over WAMP and das2 HTTP"

    def __init__(
        self, name: str, settings: dict[str, Any], options: dict[str, Any], **kw: Any
    ) -> None:
        root = Path(options["catalog"] or EXAMPLES)
        if not root.is_dir():
            raise ValueError(f"das2 catalog {root} is not a directory")
        catalog, catalog_errors = load_catalog(root)
        Settings.check(options)
        # The store only buffers what goes out live; history comes from the readers.
        kw.setdefault("store", MemoryStore(3600.0, 1_000_000))
        super().__init__(name, settings, **kw)
        self.options = options
        self.catalog, self.catalog_errors = catalog, catalog_errors
        port = int(options["port"])
        self.http_address = (options["host"], port) if port >= 0 else None
        self.cadence: dict[str, float] = {}
        self.http_url: str | None = None
        self._port: Any = None
        self._live_from: dict[str, int] = {}
        self._live_running: set[str] = set()
        limits = ReaderLimits(
            float(options["reader_timeout"]),
            int(options["reader_output_cap"]),
            memory=int(options["reader_memory"]),
        )
        self.pool = ReaderPool(
            int(options["readers"]),
            reactor=self.reactor,
            max_processes=int(options["reader_processes"]),
        )
        self.build_pool = ReaderPool(int(options["build_concurrency"]), reactor=self.reactor)
        # live reads have slots of their own: clients cannot take them away
        self.live_pool = ReaderPool(int(options["live_readers"]), reactor=self.reactor)
        self.service = Das2Service(
            self.catalog,
            self.pool,
            limits,
            self.build_pool,
            count=self.count,
            clock=self.clock,
            max_block_bytes=int(options["max_block_bytes"]),
            max_request_bytes=int(options["max_request_bytes"]),
        )
        backend = self._backend()
        if backend is not None:
            self.service.cache = Cache(
                backend,
                self.catalog,
                self.service.build,
                count=self.count,
                concurrency=int(options["build_concurrency"]),
                reactor=self.reactor,
                per_request=int(options["build_per_request"]),
                max_age=float(options["build_max_age"]),
                clock=self.clock,
            )
        self.resource = Das2Resource(
            self.service,
            options["server_id"],
            self.count,
            stall_timeout=float(options["stall_timeout"]),
            reactor=self.reactor,
        )
        self.serve_queries_from(Das2Source(self.service, self.clock, int(options["max_values"])))
        self.register_rpc("get_datasets", self.get_datasets)
        self._live_loop = Periodic(self.reactor, float(options["live_poll"]), self._live_tick)

    def _backend(self):
        mode = self.options["cache"]
        if mode == "auto":
            mode = "redis" if self.settings.get("store") == "redis" else "disk"
        ttl = float(self.options["cache_ttl"])
        if mode == "redis":
            namespace = self.options["cache_namespace"] or f"{self.settings['prefix']}:das2cache"
            url = self.options["redis_url"] or self.settings["redis_url"]
            job_ttl = float(self.options["reader_timeout"]) + 60.0
            return RedisBlocks(
                url,
                namespace,
                ttl,
                job_ttl,
                reactor=self.reactor,
                queue_cap=int(self.options["build_queue"]),
            )
        if mode == "disk":
            where = self.options["cache_dir"] or os.path.join(
                self.settings["state_dir"], "das2-cache"
            )
            return DiskBlocks(where, ttl, queue_cap=int(self.options["build_queue"]))
        if mode == "off":
            return None
        raise ValueError(f"cache must be auto, redis, disk or off, got {mode!r}")

    # -- start and stop ----------------------------------------------------
    async def start(self) -> None:
        self.source(
            "catalog", connected=True, datasets=sorted(self.catalog), errors=self.catalog_errors
        )
        for problem in self.catalog_errors:
            self.log.warn("das2 catalog: {problem}", problem=problem)
        cache = self.service.cache
        if cache is not None:
            cache.start()
        if self.http_address is not None:
            host, port = self.http_address
            self._port = self.reactor.listenTCP(port, site(self.resource), interface=host)
            real = self._port.getHost().port
            shown = f"[{host}]" if ":" in host else host
            self.http_url = f"http://{shown}:{real}/"
            self.source("http", connected=True, url=self.http_url)
        await defer.DeferredList(
            [defer.ensureDeferred(self._probe(d)) for d in self.catalog.values()],
            consumeErrors=True,
        )
        if any(d.live for d in self.catalog.values()):
            self._live_loop.start(now=True)

    async def stop(self) -> None:
        self._live_loop.stop()
        if self._port is not None:
            await self._port.stopListening()
        for d in list(self.resource.active):
            d.cancel()
        if self.service.cache is not None:
            await self.service.cache.stop()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "http": self.http_url, "datasets": sorted(self.catalog)}

    # -- fields ------------------------------------------------------------
    async def _probe(self, dsdf: Dsdf) -> None:
        """Learn a dataset's planes (fields) and cadence from a short read."""
        key = f"dataset:{dsdf.name}"
        now_us = int(self.clock() * US_PER_S)
        for a, b in probe_windows(dsdf, now_us, float(self.options["probe_seconds"])):
            headers: list[PacketHeader] = []
            times: list[np.ndarray] = []
            seen = [0]

            def look(events, headers=headers, times=times, seen=seen) -> None:
                for ev in events:
                    if isinstance(ev, PacketHeader):
                        headers.append(ev)
                    elif isinstance(ev, Data) and len(ev):
                        times.append(np.asarray(ev.columns[0], dtype=np.float64))
                        seen[0] += len(ev)
                if seen[0] >= PROBE_RECORDS:
                    raise StopStream()

            try:
                request = validate_request(dsdf, a / US_PER_S, b / US_PER_S)
            except MeshError:
                continue
            await self.service.answer(request, look, use_cache=False)
            if seen[0]:
                self._declare(dsdf, headers, np.concatenate(times))
                self.source(key, connected=True, error=None, fields=len(self._fields_of(dsdf.name)))
                return
        self.source(key, connected=False, error="no data found where the probe looked")

    def _declare(self, dsdf: Dsdf, headers: list[PacketHeader], x: np.ndarray) -> None:
        for header in headers:
            for plane in value_planes(header):
                meta = plane_meta(dsdf.name, dsdf.description, plane)
                name = field_name(dsdf.name, plane)
                self.declare(name, dsdf.name, "number", meta["units"], meta["description"])
                self.fields[name].update(
                    {k: v for k, v in meta.items() if k not in ("units", "description")}
                )
        t = x_seconds(headers[0].planes[0], x) if headers else None
        if t is not None and t.size > 1:
            steps = np.diff(np.sort(t))
            steps = steps[steps > 0]
            if steps.size:
                self.cadence[dsdf.name] = float(np.median(steps))
                # what its reader writes a second: the request size limit's estimate
                record = max(h.record_size for h in headers) + 4
                self.service.rates[dsdf.name] = record / self.cadence[dsdf.name]

    def _fields_of(self, dataset: str) -> list[str]:
        return [f for f, m in self.fields.items() if m["timeline"] == dataset]

    async def get_fields(self, start=-3600.0, end=0.0):
        t0, t1 = resolve_interval(start, end, self.clock)
        fields: dict[str, dict] = {}
        timelines: dict[str, dict] = {}
        for name, dsdf in self.catalog.items():
            names = self._fields_of(name)
            if not names or not _overlaps(dsdf, t0, t1, self.clock()):
                continue
            timelines[name] = {
                "interval": self.cadence.get(name),
                "field": names,
                "span": _span(dsdf, self.clock()),  # what a reader may answer for
                "sample": _sample(dsdf),
            }
            for f in names:
                fields[f] = dict(self.fields[f])
        return [fields, timelines]

    def get_datasets(self) -> list[dict]:
        """The catalog (extra RPC `get_datasets`)."""
        out = []
        for name, d in sorted(self.catalog.items()):
            out.append(
                {
                    "name": name,
                    "description": d.description,
                    "live": d.live,
                    "reducible": d.reducible,
                    "params": [[p.template, p.description] for p in d.params],
                    "examples": [
                        [e.start_us / US_PER_S, e.end_us / US_PER_S, e.label, list(e.params)]
                        for e in d.examples
                    ],
                    "cache_levels": [[lv.resolution, lv.period] for lv in d.cache_levels],
                    "fields": self._fields_of(name),
                    "http": public(d) and self.http_url is not None,
                }
            )
        return out

    # -- data --------------------------------------------------------------
    async def get_data(
        self,
        field: Any,
        start: Any,
        end: Any,
        min_stride: Any = None,
        reduce: Any = "mean",
        encoding: Any = "list",
        details: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        """The base's get_data with das2's `params` (a text, a list of texts, or
        {dataset: params}), answered by the readers (`Das2Source`)."""
        return await self.query_engine.get_data(
            field, start, end, min_stride, reduce, encoding, details, params
        )

    # -- live --------------------------------------------------------------
    def _live_tick(self) -> None:
        for name, dsdf in self.catalog.items():
            if dsdf.live and name not in self._live_running and self._fields_of(name):
                self._live_running.add(name)
                d = defer.ensureDeferred(self._live_read(dsdf))
                d.addErrback(lambda f, n=name: self.log.failure("live read of {n}", failure=f, n=n))
                d.addBoth(lambda _, n=name: self._live_running.discard(n))

    async def _live_read(self, dsdf: Dsdf) -> None:
        name = dsdf.name
        now_us = int(self.clock() * US_PER_S)
        start_us = self._live_from.get(
            name, now_us - int(float(self.options["live_window"]) * US_PER_S)
        )
        if now_us <= start_us:
            return
        fields = [f for f in self._fields_of(name) if self.fields[f].get("das2_kind") != "yscan"]
        collector = Collector(name, fields, int(self.options["max_values"]))
        request = ReaderRequest(name, start_us, now_us)
        await self.service.answer(request, collector, use_cache=False, pool=self.live_pool)
        try:
            t, cols = collector.result()
        except MeshError as exc:
            self.source(f"live:{name}", connected=False, error=exc.message)
            return
        self._live_from[name] = now_us  # readers answer [start, end): nothing read twice
        if t.size:
            self.append(name, t, cols)
            self.count("live_records", int(t.size))
        self.source(
            f"live:{name}",
            connected=True,
            error=None,
            last_sample=float(t[-1]) if t.size else self.last_sample.get(name),
        )

    # -- health ------------------------------------------------------------
    def get_status(self) -> dict:
        status = super().get_status()
        cache = self.service.cache
        status["das2"] = {
            "datasets": sorted(self.catalog),
            "catalog_errors": list(self.catalog_errors),
            "http": self.http_url,
            "readers": {
                "active": self.pool.active,
                "paused": self.pool.lent,
                "waiting": self.pool.waiting,
                "most_active": self.pool.most_active,
                "live_active": self.live_pool.active,
                "building": self.build_pool.active,
            },
            "cache": None
            if cache is None
            else {
                "backend": cache.backend.name,
                "building": cache.active,
                "queued": cache.backend.queued,
                "connected": cache.backend.connected,
                "last_error": cache.last_error,
            },
        }
        return status


def _span(dsdf: Dsdf, now: float) -> list[float] | None:
    """The dataset's valid range in UNIX seconds, its open end at now."""
    if dsdf.valid_range is None:
        return None
    lo, hi = dsdf.valid_range
    return [lo / US_PER_S, min(now, hi / US_PER_S) if hi is not None else now]


def _sample(dsdf: Dsdf) -> list[float] | None:
    """The first example range (a short stretch with data, as its DSDF promises)."""
    if not dsdf.examples:
        return None
    ex = dsdf.examples[0]
    return [ex.start_us / US_PER_S, ex.end_us / US_PER_S]


def _overlaps(dsdf: Dsdf, t0: float, t1: float, now: float) -> bool:
    if dsdf.valid_range is None:
        return True
    lo, hi = dsdf.valid_range
    hi_s = now if hi is None else hi / US_PER_S
    return t0 < hi_s and t1 > lo / US_PER_S


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> Das2Node:
    try:
        return Das2Node(name, mesh, options)
    except (ValueError, OSError) as exc:
        raise config.ConfigError(f"das2 node: {exc}") from None
