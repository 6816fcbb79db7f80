"""What the client does on the mesh, as coroutines running in the reactor
thread. `Mesh` (sync) and `AsyncMesh` (asyncio) are thin fronts over this.

Every call asks for progressive results, so no reply is ever refused for its
size: large answers arrive as chunks, decoded as they come. Columns come as
binary arrays (`encoding="array"`) from nodes whose hub entry advertises it
(`"encodings": [..., "array"]`, as every obsmesh node does), and as plain
lists from the others: sisock's nodes know no `encoding` argument. A node
that refuses the argument anyway is asked again without it, and remembered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from consumers.client.connection import Connection
from consumers.client.errors import (
    ClientError,
    Closed,
    NodeUnavailable,
    ProtocolError,
    UnknownField,
    UnknownNode,
    from_wamp,
)
from consumers.client.reactor import ReactorThread
from consumers.client.result import Assembler, Result
from consumers.client.settings import ClientSettings
from obsmesh import wire
from obsmesh.suggest import did_you_mean
from obsmesh.uris import Uris

Progress = Callable[[str, int], None]  # ("total" | "rows", n)


class Fields(dict):
    """field -> {"timeline", "type", "units", "description"}; `.timelines` maps
    timeline -> {"interval", "field"} (as `get_fields` answers)."""

    def __init__(self, fields: Mapping[str, Any], timelines: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.timelines = dict(timelines)


class _NoArrays(Exception):
    """The node refused `encoding=` (it knows no such argument)."""


class Core:
    def __init__(
        self, rt: ReactorThread, conf: ClientSettings, serializer: str, timeout: float
    ) -> None:
        self.rt = rt
        self.reactor = rt.reactor
        self.uris = Uris(conf.prefix)
        self.prefix = conf.prefix
        self.timeout = timeout
        self.conn = Connection(
            rt.reactor,
            conf.url,
            conf.realm,
            serializer,
            conf.credentials,
            conf.tls_ca,
            public_url=conf.public_url,
        )
        self.arrays: dict[str, bool] = {}  # node -> answers encoding="array"

    async def call(self, uri: str, *args: Any, node: str | None = None, **kwargs: Any) -> Any:
        try:
            return await self.conn.call(uri, *args, timeout=self.timeout, **kwargs)
        except ApplicationError as exc:
            if self.conn.closed:
                raise Closed("the client was closed during the call") from None
            if kwargs.get("encoding") is not None and wire.refuses_encoding(exc.args):
                raise _NoArrays() from None
            if exc.error == "wamp.error.no_such_procedure" and node is not None:
                raise await self._missing(node) from None
            if exc.error in (
                "wamp.error.invalid_argument",
                "wamp.error.runtime_error",
                "wamp.error.canceled",
            ):
                message = exc.args[0] if exc.args else exc.error
                raise NodeUnavailable(f"node {node!r}: {message}") from None
            raise from_wamp(exc.error, list(exc.args), self.prefix, node) from None

    async def _missing(self, node: str) -> ClientError:
        try:
            names = [n.get("name") for n in await self.nodes()]
        except ClientError:
            names = None
        if names is not None and node not in names:
            known = ", ".join(sorted(str(n) for n in names)) or "none"
            hint = did_you_mean(node, (str(n) for n in names))
            return UnknownNode(f"no data node named {node!r} on the mesh{hint} (nodes: {known})")
        return NodeUnavailable(f"node {node!r} is listed but does not answer (restarting?)")

    # -- the API ---------------------------------------------------------------
    async def nodes(self) -> list[dict]:
        listing = await self.call(self.uris.get_data_node)
        if not isinstance(listing, list) or not all(isinstance(n, dict) for n in listing):
            raise ProtocolError("the hub's node list is not a list of objects")
        self.arrays = {
            e["name"]: wire.advertises_arrays(e) for e in listing if isinstance(e.get("name"), str)
        }
        return listing

    async def _answers_arrays(self, node: str) -> bool:
        """From the node's hub entry (read once; refreshed for a node not seen yet)."""
        if node not in self.arrays:
            try:
                await self.nodes()
            except ClientError:
                return False
        return self.arrays.get(node, False)

    async def _get_data(self, node: str, *args: Any, arrays: bool, **kwargs: Any) -> Any:
        """get_data with binary columns when `arrays`; lists if the node refuses them."""
        if arrays and self.arrays.get(node, True):
            try:
                return await self.call(
                    self.uris.get_data(node), *args, node=node, encoding=wire.ARRAY, **kwargs
                )
            except _NoArrays:
                self.arrays[node] = False  # its entry said otherwise: believe the node
        return await self.call(self.uris.get_data(node), *args, node=node, **kwargs)

    async def fields(self, node: str, start: float, end: float) -> Fields:
        reply = await self.call(self.uris.get_fields(node), start, end, node=node)
        if (
            not isinstance(reply, list | tuple)
            or len(reply) != 2
            or not isinstance(reply[0], dict)
            or not isinstance(reply[1], dict)
        ):
            raise ProtocolError(f"node {node!r}: get_fields did not answer [fields, timelines]")
        return Fields(reply[0], reply[1])

    async def status(self, node: str) -> dict:
        reply = await self.call(self.uris.get_status(node), node=node)
        if not isinstance(reply, dict):
            raise ProtocolError(f"node {node!r}: get_status did not answer an object")
        return reply

    async def check_fields(self, node: str, fields: list[str] | None) -> None:
        """The node exists and has these fields (an empty query at t = 1 s)."""
        if fields is None:
            await self.call(self.uris.get_status(node), node=node)
            return
        await self._get_data(node, fields, 1.0, 1.0, arrays=await self._answers_arrays(node))

    async def get(
        self,
        node: str,
        fields: list[str] | None,
        start: float,
        end: float,
        min_stride: float | None = None,
        reduce: str | None = None,
        progress: Progress | None = None,
    ) -> Result:
        """History in [start, end) (absolute UNIX seconds). The node's field list
        sizes the query first; a large one is cut into time pieces fetched
        concurrently (each still progressive), which keeps every message small:
        many small messages cross the router far faster than a few 8 MB ones."""
        listing = await self.fields(node, start, end)
        if fields is None:
            fields = list(listing)
            if not fields:
                return Result(node, {})
        rows, values = _estimate(listing, fields, start, end, min_stride, reduce)
        if progress is not None:
            progress("total", rows)
        cuts = plan_pieces(start, end, values, min_stride)
        pieces = [Assembler(node, fields) for _ in range(len(cuts) - 1)]
        arrays = await self._answers_arrays(node)
        kwargs: dict[str, Any] = {}
        if min_stride is not None:
            kwargs["min_stride"] = min_stride
        if reduce is not None:
            kwargs["reduce"] = reduce

        async def fetch(i: int) -> None:
            assembler = pieces[i]

            def chunk(reply: Any) -> None:
                n = assembler.add(reply)
                if progress is not None:
                    progress("rows", n)

            def restart() -> None:
                if progress is not None:
                    progress("rows", -assembler.rows)
                assembler.reset()

            final = await self._get_data(
                node,
                fields,
                cuts[i],
                cuts[i + 1],
                arrays=arrays,
                on_progress=chunk,
                on_retry=restart,
                **kwargs,
            )
            chunk(final)

        await _run_all(fetch, len(pieces), IN_FLIGHT)
        whole = Assembler(node, fields)
        whole.chunks = [c for a in pieces for c in a.chunks]
        field_map = {
            f: info.get("timeline") for f, info in listing.items() if isinstance(info, dict)
        }
        return whole.result(field_map)


PIECE_VALUES = 1 << 17  # values per piece: 1 MiB of float64
MAX_PIECES = 256
IN_FLIGHT = 8  # pieces requested at once


def plan_pieces(start: float, end: float, values: int, stride: float | None) -> list[float]:
    """Cut points from start to end: equal time pieces of about PIECE_VALUES
    values each, cut on multiples of `stride` so no bin is split. A small
    query is one piece. Pure."""
    pieces = min(MAX_PIECES, -(-values // PIECE_VALUES))
    if pieces < 3:
        return [start, end]
    # Data end near now: never plan pieces far past it (backfill asks up to far in the future).
    stop = min(end, max(start, time.time() + 60.0))
    step = (stop - start) / pieces
    cuts = [start]
    for i in range(1, pieces):
        c = start + i * step
        if stride is not None:
            c = bin_edge(math.floor(c / stride), stride)
        if cuts[-1] < c < end:
            cuts.append(c)
    cuts.append(end)
    return cuts


def bin_edge(k: int, stride: float) -> float:
    """The least time the node puts in bin k (bin = floor(t / stride)), exact in
    float arithmetic, so pieces cut there never share a bin."""
    c = k * stride
    while math.floor(c / stride) < k:
        c = math.nextafter(c, math.inf)
    while math.floor(math.nextafter(c, -math.inf) / stride) >= k:
        c = math.nextafter(c, -math.inf)
    return c


async def _run_all(fetch: Callable[[int], Any], n: int, width: int) -> None:
    """fetch(0..n-1) with at most `width` running; the first failure stops
    new starts and is raised once the running ones have finished."""
    next_index = 0
    failure: list[BaseException] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < n and not failure:
            i = next_index
            next_index += 1
            try:
                await fetch(i)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failure.append(exc)

    workers = [defer.ensureDeferred(worker()) for _ in range(min(width, n))]
    try:
        await defer.gatherResults(workers, consumeErrors=True)
    except defer.CancelledError:
        for w in workers:
            w.cancel()
        raise
    if failure:
        raise failure[0]


def _estimate(
    listing: Fields,
    fields: list[str],
    start: float,
    end: float,
    stride: float | None,
    reduce: str | None,
) -> tuple[int, int]:
    """(rows, values) a query will bring, from get_fields: a timeline's sample
    count when the node gives one, else the requested span over its mean
    interval (an overestimate where data cover part of the span); capped by
    the stride's bins."""
    span = max(0.0, min(end, time.time() + 60.0) - start)
    per_timeline: dict[str, int] = {}
    for f in fields:
        info = listing.get(f)
        if isinstance(info, dict):
            tl = info.get("timeline")
            per_timeline[tl] = per_timeline.get(tl, 0) + 1
    rows_total = values_total = 0
    for tl, n_fields in per_timeline.items():
        info = listing.timelines.get(tl) or {}
        interval, count = info.get("interval"), info.get("count")
        rows = 1
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            rows = count  # exact, where the node says how many samples the interval holds
        elif isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            rows = int(span / interval) + 1
        if stride is not None:
            rows = min(rows, (int(span / stride) + 1) * (2 if reduce == "minmax" else 1))
        rows_total += rows
        values_total += rows * (1 + n_fields)
    return rows_total, values_total


__all__ = ["Core", "Fields", "UnknownField"]
