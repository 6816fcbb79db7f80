"""The data-node base: everything a node kind shares.

A node kind declares its fields, starts its ingest and turns its input into
`self.append(timeline, t, {field: values})` calls. The base gives it a store,
registration with the hub (and re-announcement on `hub.online` and on every
rejoin), `get_fields` / `get_data` / `get_status` / `get_events`, batched live
publishing, reconnection forever, and a graceful shutdown (subtract, then leave).

Ingest never depends on the router: while the mesh is unreachable samples
still go to the store (history stays complete) and live batches are counted as
missed; consumers see a gap in the live stream, never silent loss of history.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from nodes.status_events import status_event
from obsmesh import config as mesh_config
from obsmesh import wire
from obsmesh.calls import SharedCall
from obsmesh.errors import InvalidArgument, MeshError, NoSuchField, TooManyPoints, to_wamp
from obsmesh.memtune import keep_freed_memory
from obsmesh.store import FIELD_TYPES, STRING, Store, StoreError, make_store
from obsmesh.store.dirlock import StoreLocked
from obsmesh.store.reduce import REDUCERS, max_points
from obsmesh.suggest import did_you_mean
from obsmesh.timerules import resolve_interval, resolve_stride
from obsmesh.uris import Uris, valid_node_name
from obsmesh.wamp import keep_alive, service_component

# Values in one live event or one progressive chunk. Messages stay around 1 MB:
# the router reassembles a rawsocket message at a cost that grows faster than
# its size, so several 1 MB messages pass far quicker than one 8 MB message.
MAX_EVENT_VALUES = 131_072
MAX_EVENTS_KEPT = 10_000
# Seconds a session holding this node's procedures has to answer before it is
# taken for a dead one of ours (see `_holder_answers`).
HOLDER_PROBE_TIMEOUT = 5
RETAIN = PublishOptions(retain=True)
STORE_RETRY = 2.0  # seconds between attempts to open a store another process holds


class DataNode:
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
        self.store = (
            store
            if store is not None
            else make_store(
                {**self.settings, "store": "memory"}
                if self.history_from_own_files and self.settings["store"] == "durable"
                else self.settings,
                f"{self.settings['prefix']}:{name}",
                node=name,
                reactor=reactor,
                clock=clock,
            )
        )
        self.store.on_problem = self._store_problem
        # field -> {description, timeline, type, units[, precision]}
        self.fields: dict[str, dict[str, Any]] = {}
        self.session = None
        self.started = clock()
        self.sources: dict[str, dict[str, Any]] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None
        self.events: collections.deque[dict] = collections.deque(maxlen=MAX_EVENTS_KEPT)
        self.last_sample: dict[str, float] = {}
        self._pending: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
        self._pending_values = 0
        # Live topics with subscribers (subscription id -> topic): encoding a batch
        # nobody reads would cost more than everything else a node does.
        self._live_subs: dict[int, str] = {}
        self._rpcs: dict[str, Callable] = {}
        self._announced = False
        self._joined = None
        self._stopping = False
        self._component = None
        self._flusher = task.LoopingCall(self.flush_live)
        self._flusher.clock = reactor
        self.declare_fields()

    # -- what a node kind overrides ---------------------------------------
    def declare_fields(self) -> None:
        """Declare the fields known at start (more may be declared later)."""

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
                self._fail_batch(f"field {f!r} is not declared on timeline {timeline!r}")
                return
        try:
            times, cols = self._as_batch(t, data)
        except StoreError as exc:
            self._fail_batch(str(exc))
            return
        if times.size == 0:
            return
        try:  # every store accepts at once (no coroutine, no Deferred per batch)
            self.store.append_now(timeline, times, cols)
        except Exception:  # logged and counted, never raised into ingest
            self._store_failed(Failure(), timeline)
            return
        self.counters["samples"] += int(times.size)
        self.last_sample[timeline] = max(
            self.last_sample.get(timeline, -math.inf), float(times[-1])
        )
        if live:
            self._pending.setdefault(timeline, []).append((times, cols))
            self._pending_values += int(times.size) * (1 + len(cols))
            if self._pending_values >= int(self.settings["live_batch_values"]):
                self.flush_live()  # a full batch goes at once: latency stays low at high rates

    def _as_batch(self, t, data):
        from obsmesh.store.base import as_batch

        return as_batch(t, data, self.store.types)

    def _fail_batch(self, message: str) -> None:
        self.counters["rejected_batches"] += 1
        self.last_error = message
        self.log.error("rejected a batch: {message}", message=message)

    def _store_failed(self, failure, timeline: str) -> None:
        self.counters["store_errors"] += 1
        self.last_error = f"store: {failure.getErrorMessage()}"
        self.log.failure("store append to {timeline} failed", failure=failure, timeline=timeline)

    def _store_problem(self, text: str | None) -> None:
        """The store's news: a problem (disk full, read-only, damage found), or None once over."""
        if text is None:
            self.event(self.clock(), "store: writing again", "", ["status", "store"])
            if self.last_error and self.last_error.startswith("store:"):
                self.last_error = None
            return
        self.counters["store_problems"] += 1
        self.last_error = f"store: {text}"
        self.event(self.clock(), "store problem", text, ["status", "store"])

    def publish(self, suffix: str, payload: Any, retain: bool = True) -> None:
        """Publish on an extra topic `P.consumer.<name>.<suffix>` (one event per batch)."""
        if self.session is None:
            self.counters["events_missed_offline"] += 1
            return
        self.session.publish(
            self.uris.node(self.name, suffix), payload, options=RETAIN if retain else None
        )

    def register_rpc(self, suffix: str, fn: Callable) -> None:
        """An extra procedure `P.consumer.<name>.<suffix>`, registered on every join."""
        self._rpcs[suffix] = fn
        if self.session is not None:
            self.session.register(self._guarded(fn), self.uris.node(self.name, suffix))

    def source(self, key: str, **state: Any) -> None:
        """Update the health of one input (shown by get_status). A change of
        `connected` or `stale` is published on `P.consumer.<name>.status` and
        kept as an event."""
        old = self.sources.get(key, {})
        new = {**old, **state, "updated": self.clock()}
        self.sources[key] = new
        if "error" in state and state["error"]:
            self.last_error = f"{key}: {state['error']}"
        elif "error" in state and (self.last_error or "").startswith(f"{key}: "):
            self.last_error = None  # that source recovered: its error is history (see the events)
        flips = [k for k in ("connected", "stale") if k in state and old.get(k) != state[k]]
        sentence = status_event(key, old, new)
        if sentence is not None:
            title, text, tags = sentence
            self.event(self.clock(), title, text, tags)
        if flips:
            self.publish("status", {"source": key, **new})

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] += n

    def event(self, when: float, title: str, text: str = "", tags: Sequence[str] = ()) -> None:
        """An annotation-worthy event (get_events; published on `.event`)."""
        ev = {
            "time": float(when),
            "title": str(title),
            "text": str(text),
            "tags": [str(t) for t in tags],
        }
        self.events.append(ev)
        self.publish("event", ev, retain=False)

    # -- live batches ------------------------------------------------------
    def flush_live(self) -> None:
        """Publish what accumulated since the last flush: per timeline, a few
        large events, never one per sample."""
        pending, self._pending, self._pending_values = self._pending, {}, 0
        if not pending:
            return
        if self.session is None:
            self.counters["live_batches_missed_offline"] += len(pending)
            return
        if not self._live_wanted:
            self.counters["live_batches_unsubscribed"] += len(pending)
            return
        for timeline, parts in pending.items():
            t = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            names = sorted({f for p in parts for f in p[1]})
            cols = {}
            for f in names:
                kind = self.fields[f]["type"]
                cols[f] = np.concatenate([p[1].get(f, _missing(kind, p[0].size)) for p in parts])
            rows_per_event = max(1, MAX_EVENT_VALUES // (1 + len(names)))
            for a in range(0, t.size, rows_per_event):
                b = a + rows_per_event
                self._publish_batch(timeline, t[a:b], {f: c[a:b] for f, c in cols.items()})

    def _publish_batch(self, timeline: str, t: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        for topic in self._live_wanted:
            encoding = wire.ARRAY if topic.endswith(".array") else wire.LIST
            payload = {
                "timeline": timeline,
                "t": wire.encode(t, encoding),
                "data": {f: wire.encode(self._typed(f, c), encoding) for f, c in cols.items()},
            }
            self.session.publish(topic, payload, options=RETAIN)
        self.counters["live_events"] += 1
        self.counters["live_samples"] += int(t.size)

    @property
    def _live_wanted(self) -> set[str]:
        return set(self._live_subs.values())

    async def _follow_subscriptions(self, session) -> None:
        """Track which live topics have subscribers, through the router's meta API."""
        topics = {self.uris.live(self.name), self.uris.live_array(self.name)}

        def created(_session_id, sub, *args, **kwargs):
            if sub.get("uri") in topics and sub.get("match", "exact") == "exact":
                self._live_subs[sub["id"]] = sub["uri"]

        def deleted(_session_id, sub_id, *args, **kwargs):
            self._live_subs.pop(sub_id, None)

        await session.subscribe(created, "wamp.subscription.on_create")
        await session.subscribe(deleted, "wamp.subscription.on_delete")
        self._live_subs = {}
        for topic in topics:
            sub_id = await session.call("wamp.subscription.lookup", topic)
            if sub_id is not None:
                self._live_subs[sub_id] = topic

    def _typed(self, field: str, col: np.ndarray) -> np.ndarray | list:
        if self.fields[field]["type"] == "bool":
            return [None if math.isnan(v) else bool(v) for v in col.tolist()]
        return col

    # -- the RPCs ----------------------------------------------------------
    def _guarded(self, fn: Callable) -> Callable:
        """Wrap an RPC so the mesh's errors become WAMP errors and anything
        unexpected is logged and reported without stopping the node."""

        async def call(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
                if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
                    result = await result
                return result
            except MeshError as exc:
                raise to_wamp(exc, self.uris.prefix) from None
            except ApplicationError:
                raise
            except StoreError as exc:  # e.g. Redis unreachable: the caller may retry
                self.counters["rpc_store_errors"] += 1
                raise ApplicationError(
                    self.uris.error("unavailable"), f"history store: {exc}"
                ) from None
            except Exception as exc:
                self.counters["rpc_errors"] += 1
                self.log.failure("RPC {fn} failed", fn=getattr(fn, "__name__", fn))
                raise ApplicationError(
                    self.uris.error("unavailable"), f"internal error: {exc}"
                ) from None

        def deferred(*args, **kwargs):
            return defer.ensureDeferred(call(*args, **kwargs))

        return deferred

    async def get_fields(self, start=-3600.0, end=0.0):
        """Every declared field, and per timeline the mean sample interval in
        `[start, end)` (None with fewer than two samples there), the number of
        samples there (`count`) and the first and newest stored sample times of
        the whole timeline (`span`, None when it is empty); `count` and `span`
        are obsmesh additions to sisock's shape."""
        t0, t1 = resolve_interval(start, end, self.clock)
        fields = {f: dict(meta) for f, meta in self.fields.items()}
        timelines: dict[str, dict] = {}
        for timeline, names in self._by_timeline(list(self.fields)).items():
            n = await self.store.count(timeline, t0, t1)
            span = await self.store.span(timeline)  # cheap: the first/last samples only
            interval = None
            if span is not None and n > 1:
                interval = (min(t1, span[1]) - max(t0, span[0])) / (n - 1)
            timelines[timeline] = {
                "interval": interval,
                "field": names,
                "count": n,
                "span": None if span is None else [span[0], span[1]],
            }
        return [fields, timelines]

    def _by_timeline(self, names: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in names:
            out.setdefault(self.fields[f]["timeline"], []).append(f)
        return out

    def _check_fields(self, field: Any) -> list[str]:
        names = [field] if isinstance(field, str) else field
        if (
            not isinstance(names, list | tuple)
            or not names
            or not all(isinstance(f, str) for f in names)
        ):
            raise InvalidArgument("field must be a field name or a non-empty list of field names")
        unknown = [f for f in names if f not in self.fields]
        if unknown:
            hint = did_you_mean(unknown[0], self.fields) if len(unknown) == 1 else ""
            raise NoSuchField(
                f"node {self.name!r} has no field {', '.join(map(repr, unknown))}{hint}"
            )
        return list(dict.fromkeys(names))

    def _query_args(self, field, start, end, min_stride, reduce, encoding):
        """get_data's arguments checked: (field names, start, end, stride)."""
        names = self._check_fields(field)
        t0, t1 = resolve_interval(start, end, self.clock)
        stride = resolve_stride(min_stride)
        if reduce not in REDUCERS:
            raise InvalidArgument(f"reduce must be one of {sorted(REDUCERS)}, got {reduce!r}")
        if encoding not in wire.ENCODINGS:
            raise InvalidArgument(
                f"encoding must be one of {list(wire.ENCODINGS)}, got {encoding!r}"
            )
        return names, t0, t1, stride

    async def get_data(
        self, field, start, end, min_stride=None, reduce="mean", encoding="list", details=None
    ):
        names, t0, t1, stride = self._query_args(field, start, end, min_stride, reduce, encoding)
        progress = getattr(details, "progress", None)
        budget = int(self.settings["point_budget"])
        groups = self._by_timeline(names)
        # Size the answer before building it: refuse early, cheaply.
        values = 0
        for timeline, fs in groups.items():
            n = await self.store.count(timeline, t0, t1)
            values += max_points(n, t0, t1, stride, reduce) * (1 + len(fs))
        if values > budget and progress is None:
            # With stride s a timeline gives about (t1 - t0) / s rows of (1 + fields) values.
            width = sum(1 + len(fs) for fs in groups.values())
            suggestion = _nice_stride((t1 - t0) * width / max(1, budget - width))
            raise TooManyPoints(
                f"{values} values exceed the budget of {budget} per reply: ask for min_stride >= "
                f"{suggestion:g} s, a shorter interval, or progressive results"
            )
        answers = []
        for timeline, fs in groups.items():
            t, cols = await self.store.query(timeline, fs, t0, t1)
            if stride is not None:
                t, cols = REDUCERS[reduce](t, cols, stride)
            answers.append((timeline, fs, t, cols))
        if values <= budget:
            return self._reply(answers, encoding, stride)
        # Progressive: chunks of whole rows of about 1 MB, the last one as the result.
        chunks = list(self._chunked(answers, min(budget, MAX_EVENT_VALUES)))
        for chunk in chunks[:-1]:
            progress(self._reply(chunk, encoding, stride))
        return self._reply(chunks[-1], encoding, stride)

    @staticmethod
    def _chunked(answers, budget):
        for timeline, fs, t, cols in answers:
            rows = max(1, budget // (1 + len(fs)))
            for a in range(0, max(t.size, 1), rows):
                yield [
                    (timeline, fs, t[a : a + rows], {f: c[a : a + rows] for f, c in cols.items()})
                ]

    def _reply(self, answers, encoding: str, stride: float | None) -> dict:
        data: dict[str, Any] = {}
        timeline: dict[str, Any] = {}
        for tl, fs, t, cols in answers:
            for f in fs:
                data[f] = wire.encode(self._typed(f, cols[f]), encoding)
            last = self.last_sample.get(tl)
            timeline[tl] = {
                "t": wire.encode(t, encoding),
                "finalized_until": last if last is not None else None,
            }
        return {"data": data, "timeline": timeline}

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

    def get_events(self, start=-86400.0, end=0.0) -> list[dict]:
        t0, t1 = resolve_interval(start, end, self.clock)
        return [e for e in self.events if t0 <= e["time"] < t1]

    # -- the WAMP session --------------------------------------------------
    def _procedures(self) -> dict[str, Callable]:
        return {
            "get_fields": self.get_fields,
            "get_data": self.get_data,
            "get_status": self.get_status,
            "get_events": self.get_events,
            **self._rpcs,
        }

    async def on_join(self, session, details) -> None:
        self.log.info(
            "{name} joined {realm} as session {sid}",
            name=self.name,
            realm=details.realm,
            sid=details.session,
        )
        self._joined = session
        await self._take_name(session)

    async def _take_name(self, session) -> None:
        """Register the node's procedures, then announce; while another live
        session holds the name, retry every few seconds in the same session."""
        if session is not self._joined or self._stopping:
            return
        try:
            await self._register_all(session)
        except ApplicationError as exc:
            if exc.error != "wamp.error.procedure_already_exists":
                raise
            if await self._holder_answers(session):
                self._name_conflict(session, "its procedures are registered by another session")
                return
            # Our own earlier session, left at the router by a dead network path:
            # take the procedures back; the hub then lists this session instead.
            self.log.warn(
                "{name}: taking over from a session that no longer answers", name=self.name
            )
            self.count("sessions_taken_over")
            await self._register_all(session, force=True)
        await self._follow_subscriptions(session)
        self.session = session
        await session.subscribe(lambda *a, **kw: self._announce(session), self.uris.hub_online)
        await self._announce(session)

    async def _register_all(self, session, force: bool = False) -> None:
        """Register every procedure; on failure none stays registered."""
        done = []
        try:
            for suffix, fn in self._procedures().items():
                opts = RegisterOptions(
                    details_arg="details" if suffix == "get_data" else None,
                    force_reregister=force or None,
                )
                uri = self.uris.node(self.name, suffix)
                done.append(await session.register(self._guarded(fn), uri, options=opts))
        except ApplicationError:
            for reg in done:
                await reg.unregister()
            raise

    async def _holder_answers(self, session) -> bool:
        """Whether the session holding our procedures answers. One that does not is
        our own earlier session, left behind at the router by a dead network path
        (only a session authenticated as this node may register under its name)."""
        # Neither cancelled nor timed out by the router (crossbar 26.10 then fails
        # to drop the stale session cleanly): the probe is left to finish on its
        # own, and we stop waiting for it after a while.
        probe = SharedCall(session.call(self.uris.get_fields(self.name), 1.0, 0.0), lambda: None)
        try:
            answer = await probe.wait(HOLDER_PROBE_TIMEOUT)
        except ApplicationError as exc:
            return exc.error not in ("wamp.error.no_such_procedure", "wamp.error.canceled")
        except Exception:  # our own session went away meanwhile: the next join retries
            return True
        return answer is not None  # None: no answer in time

    def _name_conflict(self, session, why: str) -> None:
        self.last_error = f"name {self.name!r} is taken: {why}; retrying"
        self.log.error(
            "node name {name} is taken ({why}); retrying in 5 s", name=self.name, why=why
        )
        self.count("name_conflicts")
        self.reactor.callLater(5.0, lambda: defer.ensureDeferred(self._take_name(session)))

    async def _announce(self, session) -> None:
        """Tell the hub we exist, retrying while the hub is not there yet."""
        delay = 0.1
        # Consumers read "encodings" to know this node answers encoding="array" (sisock's do not).
        announced = {"encodings": list(wire.ENCODINGS), **self.info()}
        while session is self.session and not self._stopping:
            try:
                ok = await session.call(
                    self.uris.add, self.name, self.description, session._session_id, **announced
                )
            except ApplicationError as exc:
                if exc.error not in ("wamp.error.no_such_procedure", "wamp.error.canceled"):
                    self.last_error = f"hub refused: {exc}"
                    self.log.error("hub refused {name}: {exc}", name=self.name, exc=exc)
                    return
                await task.deferLater(self.reactor, delay, lambda: None)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:  # the session went away meanwhile
                self.log.debug("announce interrupted: {exc}", exc=exc)
                return
            if ok is False:  # the hub lists the name for another live session
                self._announced = False
                self.last_error = f"name {self.name!r} is held by another live session"
                self.count("name_conflicts")
                self.reactor.callLater(5.0, lambda: defer.ensureDeferred(self._announce(session)))
            else:
                self._announced = True
            return

    def on_leave(self, session, details) -> None:
        if self._joined is session:
            self._joined = None
        if self.session is session:
            self.session = None
            self._announced = False
        self.log.info(
            "{name} left the router ({reason})",
            name=self.name,
            reason=getattr(details, "reason", details),
        )

    # -- running -----------------------------------------------------------
    def run_component(self):
        """Connect to the router (forever), authenticated as the node's name."""
        comp = service_component(self.settings, self.name)
        keep_alive(comp, float(self.settings.get("heartbeat", 0.0)), reactor=self.reactor)
        comp.on("join", lambda s, d: defer.ensureDeferred(self.on_join(s, d)))
        comp.on("leave", self.on_leave)
        self._component = comp
        return comp.start(self.reactor)

    async def launch(self) -> None:
        """Open the store (its history served at once), then start ingest, live
        flushing and the WAMP connection. A store that cannot open (its directory
        held by another process, say) fails the launch with its error."""
        await self._open_store()
        for timeline in {meta["timeline"] for meta in self.fields.values()}:
            span = await self.store.span(timeline)  # history from before a restart
            if span is not None:
                self.last_sample[timeline] = max(self.last_sample.get(timeline, -math.inf), span[1])
        self._flusher.start(float(self.settings["live_interval"]), now=False)
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
        try:
            await self.stop()
        except Exception:
            self.log.failure("stopping ingest failed")
        if self._flusher.running:
            self._flusher.stop()
        session = self.session
        if session is not None:
            self.flush_live()
            try:
                await _with_timeout(
                    self.reactor,
                    session.call(self.uris.subtract, self.name, session._session_id),
                    2.0,
                )
            except Exception as exc:
                self.log.warn("subtract failed: {exc}", exc=exc)
        if self._component is not None:
            try:
                await _with_timeout(self.reactor, self._component.stop(), 2.0)
            except Exception as exc:
                self.log.debug("leaving: {exc}", exc=exc)
        await self.store.close()  # flushes first: what was accepted is stored before exit


def _missing(kind: str, n: int) -> np.ndarray:
    return np.full(n, None, dtype=object) if kind == STRING else np.full(n, np.nan)


def _nice_stride(seconds: float) -> float:
    """A readable stride at least `seconds` long (1, 2, 5 × 10^k)."""
    if seconds <= 0:
        return 1.0
    exp = math.floor(math.log10(seconds))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= seconds:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))


async def _with_timeout(reactor, d, seconds: float):
    d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
    d.addTimeout(seconds, reactor)
    return await d


def run_node(node: DataNode) -> None:
    """Run one node as a process: ingest, WAMP, and on SIGTERM/SIGINT subtract then leave."""

    from twisted.internet import reactor

    from obsmesh import logs

    logs.begin()
    keep_freed_memory()  # queries allocate and free column-sized arrays: keep them warm
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(node.shutdown())
    )

    def begin():
        d = defer.ensureDeferred(node.launch())

        def failed(f):
            node.log.failure("node failed to start", failure=f)
            reactor.stop()

        d.addErrback(failed)

    reactor.callWhenRunning(begin)
    reactor.run()
