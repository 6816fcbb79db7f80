"""The bridge's WAMP side: one backend session, the catalog kept fresh, and the
calls to nodes, fanned out concurrently.

The catalog follows the hub: the full listing on every join, then
`data_node_added` / `data_node_subtracted`. A node's fields are fetched when
it appears and again whenever a target names a field the catalog does not
know (a field declared after start-up is queryable at once, never answered
with empty data). Concurrent refreshes of one node share one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from consumers.grafana import answers, frames, protocol, replies
from consumers.grafana.catalog import Catalog, Resolution, Series
from consumers.grafana.errors import RequestError, unavailable
from obsmesh import wire
from obsmesh.uris import Uris
from obsmesh.wamp import service_component

FAR_FUTURE = 366 * 86400.0  # get_fields asks up to a year ahead, so clock skew hides nothing
EXPORT_TIMEOUT_FACTOR = 10  # a download may take ten times a panel's query timeout
HUB_SETTLE = 2.0  # seconds after hub.online before the listing is read again
EARLIEST = 1e-3  # the mesh reads times <= 0 as "before now"; Grafana's 1970 is absolute
SLICE = 0.02  # seconds of CPU one request takes before it gives the reactor back


def _runtime(exc: ApplicationError) -> bool:
    """An exception the node raised itself (autobahn's URI for those), not a router refusal."""
    return exc.error in ("wamp.error.runtime_error", "wamp.error.invalid_argument")


class Bridge:
    log = Logger()

    def __init__(
        self,
        mesh: dict[str, Any],
        settings: dict[str, Any],
        reactor: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.mesh = mesh
        self.settings = settings
        self.uris = Uris(mesh["prefix"])
        self.clock = clock
        self.catalog = Catalog()
        self.session = None
        self.timeout = float(settings["query_timeout"])
        self._inflight: dict[str, dict] = {}
        self._component = None
        self.last_leave = ""
        self.stats = {"queries": 0, "series": 0, "refreshes": 0, "node_errors": 0}

    # -- the session -------------------------------------------------------
    def start(self) -> defer.Deferred:
        """Connect to the router and stay connected (retrying forever)."""
        # WAMP-CRA as the principal `authid` (a consumer), with the mesh's credentials.
        comp = service_component(self.mesh, self.settings.get("authid") or "grafana")
        comp.on("join", lambda s, d: defer.ensureDeferred(self._on_join(s, d)))
        comp.on("leave", self._on_leave)
        self._component = comp
        done = comp.start(self.reactor)
        done.addErrback(lambda f: self.log.failure("WAMP component ended", failure=f))
        return done

    async def stop(self) -> None:
        if self._component is not None:
            d = self._component.stop()
            if isinstance(d, defer.Deferred):
                d.addTimeout(2.0, self.reactor)
                try:
                    await d
                except Exception as exc:
                    self.log.debug("leaving: {exc}", exc=exc)

    async def _on_join(self, session, details) -> None:
        u = self.uris
        await session.subscribe(self._on_added, u.added)
        await session.subscribe(self._on_subtracted, u.subtracted)
        await session.subscribe(self._on_hub_online, u.hub_online)
        self.session = session
        self._inflight.clear()
        self.log.info(
            "grafana bridge joined {realm} (session {sid})",
            realm=details.realm,
            sid=details.session,
        )
        await self._reload()

    def _on_leave(self, session, details) -> None:
        if self.session is session:
            self.session = None
            self._inflight.clear()
        self.last_leave = str(getattr(details, "reason", "") or "")
        self.log.info(
            "grafana bridge left the router ({reason})", reason=getattr(details, "reason", details)
        )

    @property
    def connected(self) -> bool:
        return self.session is not None

    def _require(self):
        if self.session is None:
            why = f" (last refusal or leave: {self.last_leave})" if self.last_leave else ""
            raise unavailable(f"the WAMP router is unreachable{why}; retrying")
        return self.session

    # -- keeping the catalog fresh ---------------------------------------
    async def _reload(self) -> None:
        try:
            await self.refresh_directory()
        except Exception as exc:  # the hub is not up yet: its hub.online will bring us back
            self.log.info("directory not available yet: {exc}", exc=exc)
            return
        await defer.DeferredList(
            [defer.ensureDeferred(self.refresh_fields(n)) for n in list(self.catalog.nodes)],
            consumeErrors=True,
        )

    def _on_hub_online(self, *args, **kwargs) -> None:
        """A (re)started hub: the nodes re-announce themselves (added events follow); the
        listing is read again a little later to drop nodes that died while it was away."""

        def reload():
            if self.session is not None:
                defer.ensureDeferred(self._reload()).addErrback(
                    lambda f: self.log.failure("reload", failure=f)
                )

        self.reactor.callLater(HUB_SETTLE, reload)

    def _on_added(self, announcement=None, *args, **kwargs) -> None:
        name = self.catalog.added(announcement)
        if name is not None:
            d = defer.ensureDeferred(self.refresh_fields(name))
            d.addErrback(
                lambda f: self.log.info("fields of {n}: {e}", n=name, e=f.getErrorMessage())
            )

    def _on_subtracted(self, announcement=None, *args, **kwargs) -> None:
        self.catalog.subtracted(announcement)

    def _shared(self, key: str, make: Callable[[], Any]) -> defer.Deferred:
        """Coalesced refreshes: one call per key at a time, and a caller never gets the
        answer of a call that started before it asked (that answer may predate what made
        it ask, such as a field declared a moment ago). Callers arriving while a call
        runs share one follow-up call, started when the running one ends."""
        mine: defer.Deferred = defer.Deferred()
        slot = self._inflight.get(key)
        if slot is None:
            slot = {"next": None}
            self._inflight[key] = slot
            self._run_shared(key, slot, [mine], make)
        else:
            if slot["next"] is None:
                slot["next"] = []
            slot["next"].append(mine)
        return mine

    def _run_shared(
        self, key: str, slot: dict, waiters: list[defer.Deferred], make: Callable[[], Any]
    ) -> None:
        def done(result):
            follow_up, slot["next"] = slot["next"], None
            if follow_up:
                self._run_shared(key, slot, follow_up, make)
            elif self._inflight.get(key) is slot:
                del self._inflight[key]
            for w in waiters:
                w.errback(result) if isinstance(result, Failure) else w.callback(result)

        defer.ensureDeferred(make()).addBoth(done)

    async def _call(self, uri: str, *args, timeout: float | None = None, **kwargs) -> Any:
        session = self._require()
        d = session.call(uri, *args, **kwargs)
        d.addTimeout(timeout or self.timeout, self.reactor)
        return await d

    async def refresh_directory(self) -> None:
        async def fetch():
            listing = await self._call(self.uris.get_data_node)
            self.catalog.set_directory(listing)

        self.stats["refreshes"] += 1
        await self._shared("directory", fetch)

    async def refresh_fields(self, node: str) -> None:
        async def fetch():
            now = self.clock()
            answer = await self._call(self.uris.get_fields(node), EARLIEST, now + FAR_FUTURE)
            if not self.catalog.set_fields(node, answer):
                self.log.warn("node {node} sent malformed fields", node=node)

        self.stats["refreshes"] += 1
        await self._shared(f"fields:{node}", fetch)

    async def _expand(self, targets: list[protocol.Target], filters, deadline: float) -> Resolution:
        """catalog.resolve in slices of SLICE seconds that give the reactor back in
        between, so other requests go on; past `deadline` (monotonic) a clear 400."""
        steps = self.catalog.resolve_steps(targets, filters, int(self.settings["max_series"]))
        while True:
            slice_end = time.monotonic() + SLICE
            try:
                while time.monotonic() < slice_end:
                    next(steps)
            except StopIteration as done:
                return done.value
            if time.monotonic() > deadline:
                steps.close()
                raise RequestError(
                    f"expanding the targets took more than {self.settings['expand_seconds']:g} s "
                    "(expand_seconds): name fewer nodes or fields, or narrow the filters"
                )
            await task.deferLater(self.reactor, 0, lambda: None)

    async def resolve(self, targets: Iterable[protocol.Target], filters=()) -> Resolution:
        """Targets to series; whatever the catalog misses is refreshed once, then looked up again."""
        targets = list(targets)
        deadline = time.monotonic() + float(self.settings["expand_seconds"])
        res = await self._expand(targets, filters, deadline)
        stale = set(res.stale_nodes) | self._wildcard_nodes(targets)
        if not res.unknown_nodes and not stale:
            return res
        if res.unknown_nodes:
            try:
                await self.refresh_directory()
            except Exception as exc:
                self.log.info("directory refresh failed: {exc}", exc=exc)
            stale |= {n for n in res.unknown_nodes if n in self.catalog.nodes}
        await defer.DeferredList(
            [
                defer.ensureDeferred(self.refresh_fields(n))
                for n in sorted(stale)
                if n in self.catalog.nodes
            ],
            consumeErrors=True,
        )
        return await self._expand(targets, filters, deadline)

    def _within_values(self, q: protocol.Query, n_series: int) -> protocol.Query:
        """Many series share the answer's `max_values`: each gets fewer points."""
        budget = int(self.settings["max_values"])
        if n_series and n_series * q.max_points > budget:
            points = max(2, budget // n_series)
            self.log.debug(
                "{n} series at {p} points exceed max_values {b}: {each} points each",
                n=n_series,
                p=q.max_points,
                b=budget,
                each=points,
            )
            return replace(q, max_points=points)
        return q

    def _wildcard_nodes(self, targets: list[protocol.Target]) -> set[str]:
        """Nodes whose whole field list a target asks for: that list is fetched anew, so a
        field declared a moment ago is drawn too."""
        out: set[str] = set()
        for t in targets:
            for node, field in t.pairs:
                if field == protocol.WILDCARD:
                    out |= set(self.catalog.nodes) if node == protocol.WILDCARD else {node}
        return out

    # -- /query ------------------------------------------------------------
    async def query(self, q: protocol.Query) -> list[dict[str, Any]]:
        """Every target of one request; one get_data per (node, reduction), all
        concurrently. A target that fails gets its error (`answers`), never the others'."""
        self._require()
        self.stats["queries"] += 1
        res = await self.resolve(q.targets, q.filters)
        q = self._within_values(q, sum(len(series) for series in res.series))
        groups: dict[tuple[str, str], list[Series]] = {}
        for target, series in zip(q.targets, res.series, strict=True):
            for s in series:
                members = groups.setdefault((s.node, target.reduce), [])
                if s not in members:
                    members.append(s)
        keys = list(groups)
        events_asked = defer.ensureDeferred(self._events_for_targets(q))  # alongside the data
        fetched = await defer.DeferredList(
            [
                defer.ensureDeferred(self._fetch(node, reduce, groups[(node, reduce)], q))
                for node, reduce in keys
            ],
            consumeErrors=True,
        )
        results: dict[tuple[str, str], answers.NodeResult] = {}
        for key, (ok, value) in zip(keys, fetched, strict=True):
            if ok:
                results[key] = answers.NodeResult(columns=value)
                continue
            self.stats["node_errors"] += 1
            why = self._failure_text(key[0], value)
            self.log.info("{node}: {why}", node=key[0], why=why)
            results[key] = answers.NodeResult(failure=why)
        events = await events_asked
        out: list[dict[str, Any]] = []
        turn = time.monotonic() + SLICE
        for target, series, problems in zip(q.targets, res.series, res.problems, strict=True):
            if time.monotonic() > turn:  # many targets: give other requests their turn
                await task.deferLater(self.reactor, 0, lambda: None)
                turn = time.monotonic() + SLICE
            try:
                out.extend(answers.target_frames(target, series, problems, results, events))
            except Exception:  # a bug answering one target must not take the panel with it
                self.log.failure("answering target {t!r}", t=target.text)
                out.append(
                    frames.error_frame(
                        target.text,
                        f"{target.text}: internal error in the bridge (logged)",
                        target.ref_id,
                        target.table,
                    )
                )
            self.stats["series"] += len(series)
        return out

    def _failure_text(self, node: str, failure: Failure) -> str:
        """Why a node's call failed, in words for the Grafana user."""
        exc = failure.value
        if isinstance(exc, RequestError):
            return exc.message
        if isinstance(exc, defer.TimeoutError | defer.CancelledError):
            return f"node {node!r} did not answer within {self.timeout:g} s"
        if isinstance(exc, replies.BadReply):
            return f"node {node!r} sent a malformed answer: {exc}"
        if isinstance(exc, ApplicationError):
            if exc.error == "wamp.error.no_such_procedure":
                return f"node {node!r} does not answer get_data (it left the mesh?)"
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc.error
            return f"node {node!r}: {message}"
        self.log.failure("asking {node}", failure=failure, node=node)
        return f"node {node!r}: {type(exc).__name__}: {exc}"

    async def _fetch(
        self, node: str, reduce: str, series: list[Series], q: protocol.Query
    ) -> replies.Columns:
        """One node's columns. A field the node no longer has is an error for that
        field; when the node refuses the whole call, each field is asked alone, so
        the ones it can answer are still drawn and the failing one says why."""
        wanted = [(s.field, s.timeline) for s in series]
        start = max(q.start, EARLIEST)
        if q.end <= EARLIEST:
            return replies.Columns()
        stride = protocol.min_stride(start, q.end, q.max_points, reduce, q.interval)
        try:
            return await self._columns(node, wanted, start, q.end, stride, reduce)
        except ApplicationError as exc:
            if exc.error == self.uris.error("no_such_field"):
                return await self._without_gone_fields(node, wanted, start, q.end, stride, reduce)
            if len(wanted) < 2 or (exc.error.startswith("wamp.error.") and not _runtime(exc)):
                raise  # one field only, or the router's refusal (no such procedure, cancelled)
        return await self._field_by_field(node, wanted, start, q.end, stride, reduce)

    async def _without_gone_fields(
        self, node, wanted, start, end, stride, reduce
    ) -> replies.Columns:
        await self.refresh_fields(node)
        entry = self.catalog.nodes.get(node)
        known = [(f, tl) for f, tl in wanted if entry is not None and f in entry.fields]
        cols = (
            await self._columns(node, known, start, end, stride, reduce)
            if known
            else replies.Columns()
        )
        for f, _ in wanted:
            if entry is None or f not in entry.fields:
                cols.errors[f] = f"node {node!r} has no field {f!r} (any more)"
        return cols

    async def _field_by_field(self, node, wanted, start, end, stride, reduce) -> replies.Columns:
        each = await defer.DeferredList(
            [
                defer.ensureDeferred(self._columns(node, [w], start, end, stride, reduce))
                for w in wanted
            ],
            consumeErrors=True,
        )
        out = replies.Columns()
        for (name, _), (ok, value) in zip(wanted, each, strict=True):
            if ok:
                out.series.update(value.series)
                out.errors.update(value.errors)
            else:
                out.errors[name] = self._failure_text(node, value)
        return out

    async def _columns(
        self,
        node: str,
        wanted: list[tuple[str, str]],
        start: float,
        end: float,
        stride: float,
        reduce: str,
    ) -> replies.Columns:
        """Asked with progressive results, so that many fields at a high maxDataPoints come
        in chunks under the node's point budget instead of failing; the chunks are joined."""
        chunks: list[Any] = []
        entry = self.catalog.nodes.get(node)
        options = (
            CallOptions(on_progress=lambda reply, *a, **kw: chunks.append(reply))
            if (entry is None or entry.obsmesh)
            else None
        )
        chunks.append(
            await self._get_data(node, [f for f, _ in wanted], start, end, stride, reduce, options)
        )
        return replies.joined([replies.columns(c, wanted, node) for c in chunks], node)

    async def _get_data(
        self,
        node: str,
        fields: list[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str = "mean",
        options: CallOptions | None = None,
        timeout: float | None = None,
    ) -> Any:
        entry = self.catalog.nodes.get(node)
        if entry is not None and not entry.obsmesh:
            # sisock's nodes know neither reduce= nor encoding=: plain lists, mean bins.
            return await self._call(
                self.uris.get_data(node), fields, start, end, stride, timeout=timeout
            )
        kwargs: dict[str, Any] = {"min_stride": stride, "reduce": reduce}
        if options is not None:
            kwargs["options"] = options
        if entry is None or entry.arrays:
            try:
                return await self._call(
                    self.uris.get_data(node),
                    fields,
                    start,
                    end,
                    timeout=timeout,
                    encoding=wire.ARRAY,
                    **kwargs,
                )
            except ApplicationError as exc:
                if not wire.refuses_encoding(exc.args):
                    raise
                if entry is not None:
                    entry.refuses_arrays = True  # its hub entry said otherwise: believe the node
        return await self._call(
            self.uris.get_data(node), fields, start, end, timeout=timeout, **kwargs
        )

    # -- annotations ---------------------------------------------------------
    async def events(self, nodes: Iterable[str], start: float, end: float) -> dict[str, list[dict]]:
        """Each node's annotation events in `[start, end)`; a node that fails gives none."""
        self._require()
        nodes = sorted(set(nodes))
        start, end = max(start, EARLIEST), max(end, EARLIEST)
        answers = await defer.DeferredList(
            [defer.ensureDeferred(self._call(self.uris.get_events(n), start, end)) for n in nodes],
            consumeErrors=True,
        )
        out: dict[str, list[dict]] = {}
        for node, (ok, value) in zip(nodes, answers, strict=True):
            if not ok:
                self.log.info("events of {node}: {err}", node=node, err=value.getErrorMessage())
                out[node] = []
                continue
            raw = value if isinstance(value, list) else []
            cleaned = (frames.clean_event(e, node) for e in raw[:100_000])
            out[node] = [e for e in cleaned if e is not None and start <= e["time"] < end]
        return out

    async def _events_for_targets(self, q: protocol.Query) -> dict[str, list[dict]]:
        nodes = set()
        for t in q.targets:
            for node, field in t.pairs:
                if field == protocol.EVENTS:
                    nodes |= set(self.catalog.nodes) if node == protocol.WILDCARD else {node}
        return await self.events(nodes, q.start, q.end) if nodes else {}

    def annotation_nodes(self, query: str) -> list[str]:
        """The nodes an annotation query names: `*` or empty for all, else names split by , or space."""
        names = [n for n in query.replace(",", " ").split() if n]
        if not names or protocol.WILDCARD in names:
            return sorted(self.catalog.nodes)
        out = []
        for n in names:
            for a in protocol.alternatives(n):
                out.append(a)
        return out

    # -- /export -------------------------------------------------------------
    async def export_fields(self, node: str, fields: list[str]) -> dict[str, dict]:
        """The metadata of the fields a download asks for (refreshed if unknown); 404 otherwise."""
        self._require()
        if node not in self.catalog.nodes:
            await self.refresh_directory()
        if node not in self.catalog.nodes:
            raise RequestError(f"no node {node!r} in the mesh", 404)
        if any(f not in self.catalog.nodes[node].fields for f in fields):
            await self.refresh_fields(node)
        entry = self.catalog.nodes.get(node)
        known = entry.fields if entry is not None else {}
        missing = [f for f in fields if f not in known]
        if missing:
            raise RequestError(f"node {node!r} has no field {', '.join(map(repr, missing))}", 404)
        return {f: dict(known[f]) for f in fields}

    async def export(
        self,
        node: str,
        fields: list[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str,
        on_chunk: Callable[..., None],
    ) -> Any:
        """A node's data as progressive chunks (so no reply nears the message size): every chunk
        but the last goes to `on_chunk`, the last is returned."""
        entry = self.catalog.nodes.get(node)
        options = CallOptions(on_progress=on_chunk) if entry is None or entry.obsmesh else None
        try:
            return await self._get_data(
                node,
                fields,
                start,
                end,
                stride,
                reduce,
                options,
                timeout=EXPORT_TIMEOUT_FACTOR * self.timeout,
            )
        except ApplicationError as exc:
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc.error
            if exc.error.startswith(self.uris.prefix + ".error."):
                raise RequestError(f"{node}: {message}") from None
            raise RequestError(f"{node} is unavailable: {message}", 503) from None
        except defer.TimeoutError:
            raise RequestError(
                f"{node} did not answer within {EXPORT_TIMEOUT_FACTOR * self.timeout:g} s", 503
            ) from None
