"""The data-node base: everything a node kind shares.

A node kind declares its fields, starts its ingest and turns its input into
`self.append(timeline, t, {field: values})` calls. The base gives it a store,
registration with the hub (and re-announcement on `hub.online` and on every
rejoin), `get_fields` / `get_data` / `get_status` / `get_events`, batched live
publishing, reconnection forever, and a graceful shutdown (subtract, then leave).

Ingest never depends on the router: while the mesh is unreachable samples
still go to the store (history stays complete) and live batches are counted as
missed; consumers see a gap in the live stream, never silent loss of history.

`DataNode` composes the parts in `nodes/node/` (the session, the live batcher,
the query engine) and keeps what is the node's own: its fields, the health of
its inputs, its events and its store. A kind calls `super().__init__(...)`
first, then sets its own state; `setup()` runs once construction finished.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from twisted.internet import task
from twisted.logger import Logger
from twisted.python.failure import Failure

from nodes.node.health import NodeHealth
from nodes.node.live import RETAIN, LiveBatcher
from nodes.node.query import QueryEngine, Source, StoreSource
from nodes.node.runner import run_node
from nodes.node.session import NodeSession
from nodes.node.setup import SetUpAfterInit
from obsmesh import config as mesh_config
from obsmesh.store import FIELD_TYPES, Store, StoreError, make_store
from obsmesh.store.base import as_batch
from obsmesh.store.dirlock import StoreLocked
from obsmesh.uris import Uris, valid_node_name

__all__ = ["DataNode", "run_node"]

STORE_RETRY = 2.0  # seconds between attempts to open a store another process holds


class DataNode(metaclass=SetUpAfterInit):
    kind = "node"
    description = "a data node"
    # True for a kind whose history is rebuilt at start from files of its own
    # (weather, co2, dataflow): a durable store would hold it twice, so such a
    # kind keeps it in memory unless told otherwise (store = "redis").
    history_from_own_files = False
    # The fields a dashboard plots first, in this order: names, or patterns in
    # which `*` stands for one part of a name (a radar, a unit), such as
    # "*.velocity". Announced in the hub entry (`info()["plots"]`).
    plots: tuple[str, ...] = ()

    log = Logger()

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any] | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        reactor: Any = None,
    ) -> None:
        if not valid_node_name(name):
            raise ValueError(
                f"node name {name!r} must match [a-z0-9][a-z0-9_-]* (at most 63 characters)"
            )
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.name = name
        self.settings = dict(settings) if settings is not None else mesh_config.mesh()
        self.uris = Uris(self.settings["prefix"])
        self.clock = clock
        self.store = store if store is not None else self._make_store()
        # field -> {description, timeline, type, units[, precision]}
        self.fields: dict[str, dict[str, Any]] = {}
        self.started = clock()
        # The parts (nodes/node/), under names no kind takes for its own state.
        self.node_health = NodeHealth(
            clock, lambda suffix, payload, retain: self.publish(suffix, payload, retain)
        )
        self.store.on_problem = self.node_health.store_problem
        # (the health's own containers, under the names kinds and tests use)
        self.sources = self.node_health.sources
        self.counters = self.node_health.counters
        self.events = self.node_health.events
        self.last_sample: dict[str, float] = {}
        self._rpcs: dict[str, Callable[..., Any]] = {}
        self._stopping = False
        self.mesh_session = NodeSession(self, self._procedures, self._on_ready)
        self.live_batcher = LiveBatcher(
            name,
            self.uris,
            self.fields,
            self.counters,
            lambda: self.mesh_session.session,
            int(self.settings["live_batch_values"]),
            reactor,
        )
        self.query_engine = QueryEngine(
            name,
            self.fields,
            StoreSource(self.store, self.last_sample),
            int(self.settings["point_budget"]),
            clock,
        )

    def _make_store(self) -> Store:
        settings = self.settings
        if self.history_from_own_files and settings["store"] == "durable":
            settings = {**settings, "store": "memory"}
        return make_store(
            settings,
            f"{self.settings['prefix']}:{self.name}",
            node=self.name,
            reactor=self.reactor,
            clock=self.clock,
        )

    # -- what a node kind overrides ---------------------------------------
    def setup(self) -> None:
        """Runs once the whole `__init__` (the kind's too) returned: declare the
        fields known at start here. The default calls `declare_fields()`."""
        self.declare_fields()

    def declare_fields(self) -> None:
        """Declare the fields known at start (more may be declared later);
        kept for kinds written before `setup()`."""

    async def start(self) -> None:
        """Start ingest; runs whether or not the router is reachable."""

    async def stop(self) -> None:
        """Stop ingest."""

    def info(self) -> dict[str, Any]:
        """Extra keys announced to the hub with the name and description: the kind,
        the dashboard view its declaration names (obsmesh/kinds.py), if any, and
        the fields a dashboard plots first (`plots`), if the kind says."""
        from obsmesh.kinds import registry

        view = registry().view_of(self.kind)
        out: dict[str, Any] = {"kind": self.kind, **({"view": view} if view else {})}
        if self.plots:
            out["plots"] = list(self.plots)
        return out

    # -- what a node kind calls -------------------------------------------
    def serve_queries_from(self, source: Source) -> None:
        """Answer get_data from `source` instead of the store (a kind that reads
        its samples on demand, such as das2)."""
        self.query_engine.source = source

    def declare(
        self,
        field: str,
        timeline: str,
        type: str = "number",
        units: str = "",
        description: str = "",
        precision: int | None = None,
    ) -> None:
        """A field; `precision` (decimal places the instrument resolves) tells
        consumers how to show its values (the data itself is never rounded)."""
        if not isinstance(field, str) or not field or len(field) > 200:
            raise ValueError(f"bad field name {field!r}")
        if type not in FIELD_TYPES:
            raise ValueError(f"field type must be one of {FIELD_TYPES}")
        if precision is not None and not (isinstance(precision, int) and 0 <= precision <= 12):
            raise ValueError(f"precision must be 0..12 decimal places, got {precision!r}")
        known = self.fields.get(field)
        if known is not None and known["timeline"] != timeline:
            raise ValueError(f"field {field!r} already belongs to timeline {known['timeline']!r}")
        self.fields[field] = {
            "description": description,
            "timeline": timeline,
            "type": type,
            "units": units,
        }
        if precision is not None:
            self.fields[field]["precision"] = precision
        self.store.declare(field, type)

    def append(
        self,
        timeline: str,
        t: Sequence[float] | np.ndarray,
        data: Mapping[str, Sequence | np.ndarray],
        live: bool = True,
    ) -> None:
        """Store samples and queue them for the next live batch (`live=False`
        for history loaded from an archive, which subscribers never asked for).

        A batch the store refuses is logged and counted; nothing of it is kept
        and nothing stored before is touched.
        """
        for f in data:
            meta = self.fields.get(f)
            if meta is None or meta["timeline"] != timeline:
                self.node_health.rejected_batch(
                    f"field {f!r} is not declared on timeline {timeline!r}"
                )
                return
        try:
            times, cols = as_batch(t, data, self.store.types)
        except StoreError as exc:
            self.node_health.rejected_batch(str(exc))
            return
        if times.size == 0:
            return
        try:  # every store accepts at once (no coroutine, no Deferred per batch)
            self.store.append_now(timeline, times, cols)
        except Exception:  # logged and counted, never raised into ingest
            self.node_health.store_failed(Failure(), timeline)
            return
        self.counters["samples"] += int(times.size)
        self.last_sample[timeline] = max(
            self.last_sample.get(timeline, -math.inf), float(times[-1])
        )
        if live:
            self.live_batcher.add(timeline, times, cols)

    def publish(self, suffix: str, payload: Any, retain: bool = True) -> None:
        """Publish on an extra topic `P.consumer.<name>.<suffix>` (one event per batch)."""
        session = self.mesh_session.session
        if session is None:
            self.counters["events_missed_offline"] += 1
            return
        session.publish(
            self.uris.node(self.name, suffix), payload, options=RETAIN if retain else None
        )

    def register_rpc(self, suffix: str, fn: Callable[..., Any]) -> None:
        """An extra procedure `P.consumer.<name>.<suffix>`, registered on every join."""
        self._rpcs[suffix] = fn
        self.mesh_session.register(suffix, fn)

    def source(self, key: str, **state: Any) -> None:
        """Update the health of one input (shown by get_status). A change of
        `connected` or `stale` is published on `P.consumer.<name>.status` and
        kept as an event."""
        self.node_health.source(key, **state)

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] += n

    def event(self, when: float, title: str, text: str = "", tags: Sequence[str] = ()) -> None:
        """An annotation-worthy event (get_events; published on `.event`)."""
        self.node_health.event(when, title, text, tags)

    @property
    def last_error(self) -> str | None:
        """The newest problem still on (shown by get_status)."""
        return self.node_health.last_error

    @last_error.setter
    def last_error(self, text: str | None) -> None:
        self.node_health.last_error = text

    # -- live batches ------------------------------------------------------
    def flush_live(self) -> None:
        """Publish what accumulated since the last flush (see nodes/node/live.py)."""
        self.live_batcher.flush()

    @property
    def _live_wanted(self) -> set[str]:
        return self.live_batcher.wanted

    # -- the RPCs ----------------------------------------------------------
    async def get_fields(self, start: Any = -3600.0, end: Any = 0.0) -> list[dict[str, Any]]:
        """Every declared field and, per timeline, its interval, count and span
        (see `QueryEngine.get_fields`)."""
        return await self.query_engine.get_fields(start, end)

    async def get_data(
        self,
        field: Any,
        start: Any,
        end: Any,
        min_stride: Any = None,
        reduce: Any = "mean",
        encoding: Any = "list",
        details: Any = None,
    ) -> dict[str, Any]:
        """Samples of `field` (a name or a list) in `[start, end)` (see `QueryEngine.get_data`)."""
        return await self.query_engine.get_data(
            field, start, end, min_stride, reduce, encoding, details
        )

    def get_status(self) -> dict:
        now = self.clock()
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "connected": self.session is not None,
            "announced": self._announced,
            "started": self.started,
            "uptime": now - self.started,
            "sources": {k: dict(v) for k, v in self.sources.items()},
            "counters": dict(self.counters),
            "last_sample": dict(self.last_sample),
            "last_error": self.last_error,
            "store": self.store.status(),
        }

    def get_events(self, start: Any = -86400.0, end: Any = 0.0) -> list[dict]:
        return self.node_health.events_between(start, end)

    # -- the WAMP session (nodes/node/session.py) ----------------------------
    @property
    def session(self) -> Any:
        """The joined WAMP session once the node holds its name, else None."""
        return self.mesh_session.session

    @property
    def _announced(self) -> bool:
        return self.mesh_session.announced

    def _procedures(self) -> dict[str, Callable[..., Any]]:
        return {
            "get_fields": self.get_fields,
            "get_data": self.get_data,
            "get_status": self.get_status,
            "get_events": self.get_events,
            **self._rpcs,
        }

    async def _on_ready(self, session: Any) -> None:
        await self.live_batcher.follow(session)

    async def on_join(self, session: Any, details: Any) -> None:
        await self.mesh_session.on_join(session, details)

    def on_leave(self, session: Any, details: Any) -> None:
        self.mesh_session.on_leave(session, details)

    # -- running -----------------------------------------------------------
    def run_component(self) -> Any:
        """Connect to the router (forever), authenticated as the node's name."""
        return self.mesh_session.connect()

    async def launch(self) -> None:
        """Open the store (its history served at once), then start ingest, live
        flushing and the WAMP connection. A store that cannot open (its directory
        held by another process, say) fails the launch with its error."""
        await self._open_store()
        for timeline in {meta["timeline"] for meta in self.fields.values()}:
            span = await self.store.span(timeline)  # history from before a restart
            if span is not None:
                self.last_sample[timeline] = max(self.last_sample.get(timeline, -math.inf), span[1])
        self.live_batcher.start(float(self.settings["live_interval"]))
        await self.start()
        self._run = self.run_component()
        self._run.addErrback(lambda f: self.log.failure("WAMP component ended", failure=f))

    async def _open_store(self) -> None:
        """Open the store; while another process holds its directory (a standby
        of this node on the same host), say so and try again every few seconds."""
        while True:
            try:
                await self.store.open()
                return
            except StoreLocked as exc:
                if self.last_error != f"store: {exc}":
                    self.last_error = f"store: {exc}"
                    self.log.error("{exc}; retrying every {s:g} s", exc=exc, s=STORE_RETRY)
                await task.deferLater(self.reactor, STORE_RETRY, lambda: None)
                if self._stopping:
                    raise

    async def shutdown(self) -> None:
        """Graceful stop: stop ingest, flush, subtract from the hub, leave."""
        if self._stopping:
            return
        self._stopping = True
        self.mesh_session.stopping = True
        try:
            await self.stop()
        except Exception:
            self.log.failure("stopping ingest failed")
        self.live_batcher.stop()
        await self.mesh_session.leave(before_leaving=self.flush_live)
        await self.store.close()  # flushes first: what was accepted is stored before exit
