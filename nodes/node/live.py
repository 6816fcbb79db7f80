"""Live batching: samples go out in a few large events per timeline, never one
per sample, and only on the live topics someone subscribes to.

The batcher keeps what `append` queued since the last flush, flushes every
`live_interval` seconds (and at once when a batch is full, so latency stays low
at high rates), and tracks which of the node's live topics have subscribers
through the router's meta API: encoding a batch nobody reads would cost more
than everything else a node does.

The meta events alone are not trusted with that: a node that misses one
on_create would stay silent for a subscriber for as long as it lives. Router
links (crossbar rlinks) subscribe and unsubscribe on behalf of other sites, and
a subscription an rlink still holds when a local consumer joins it fires no
on_create at all. So every `RESYNC_SECONDS` the batcher also asks the router
which of its live topics have a subscription (two lookups): a missed event
costs at most that long, and is counted (`live_subscriptions_resynced`).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from autobahn.wamp.types import PublishOptions
from twisted.logger import Logger

from nodes.node.query import MAX_MESSAGE_VALUES, Columns
from obsmesh import wire
from obsmesh.periodic import Periodic
from obsmesh.store import STRING
from obsmesh.uris import Uris

RETAIN = PublishOptions(retain=True)
RESYNC_SECONDS = 5.0  # how long a missed subscription meta event can keep a topic silent
log = Logger()


class LiveBatcher:
    """Pending live batches of one node and their publishing."""

    def __init__(
        self,
        name: str,
        uris: Uris,
        fields: Mapping[str, Mapping[str, Any]],
        counters: collections.Counter[str],
        session: Callable[[], Any],
        batch_values: int,
        reactor: Any,
    ) -> None:
        self.name = name
        self.uris = uris
        self.fields = fields
        self.counters = counters
        self.session = session  # the joined session, or None
        self.batch_values = int(batch_values)
        self._pending: dict[str, list[tuple[np.ndarray, Columns]]] = {}
        self._pending_values = 0
        # Live topics with subscribers (subscription id -> topic).
        self._subs: dict[int, str] = {}
        self.reactor = reactor
        self._flusher: Periodic | None = None
        self._resync = Periodic(reactor, RESYNC_SECONDS, self.resync, name=f"{name} live resync")

    def start(self, interval: float) -> None:
        """Flush every `interval` seconds from now on."""
        if self._flusher is None:
            self._flusher = Periodic(self.reactor, interval, self.flush, name=f"{self.name} live")
        self._flusher.start(now=False)

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.stop()
        self._resync.stop()

    @property
    def wanted(self) -> set[str]:
        """The live topics someone subscribes to."""
        return set(self._subs.values())

    def add(self, timeline: str, times: np.ndarray, cols: Columns) -> None:
        """Queue a stored batch for the next flush; a full batch goes at once."""
        self._pending.setdefault(timeline, []).append((times, cols))
        self._pending_values += int(times.size) * (1 + len(cols))
        if self._pending_values >= self.batch_values:
            self.flush()

    def flush(self) -> None:
        """Publish what accumulated since the last flush: per timeline, a few
        large events, never one per sample."""
        pending, self._pending, self._pending_values = self._pending, {}, 0
        if not pending:
            return
        session = self.session()
        if session is None:
            self.counters["live_batches_missed_offline"] += len(pending)
            return
        if not self._subs:
            self.counters["live_batches_unsubscribed"] += len(pending)
            return
        for timeline, parts in pending.items():
            t = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            names = sorted({f for p in parts for f in p[1]})
            cols = {}
            for f in names:
                kind = self.fields[f]["type"]
                cols[f] = np.concatenate([p[1].get(f, _missing(kind, p[0].size)) for p in parts])
            rows_per_event = max(1, MAX_MESSAGE_VALUES // (1 + len(names)))
            for a in range(0, t.size, rows_per_event):
                b = a + rows_per_event
                self._publish(session, timeline, t[a:b], {f: c[a:b] for f, c in cols.items()})

    def _publish(self, session: Any, timeline: str, t: np.ndarray, cols: Columns) -> None:
        for topic in self.wanted:
            encoding = wire.ARRAY if topic.endswith(".array") else wire.LIST
            payload = {
                "timeline": timeline,
                "t": wire.encode(t, encoding),
                "data": {f: wire.encode(self._typed(f, c), encoding) for f, c in cols.items()},
            }
            session.publish(topic, payload, options=RETAIN)
        self.counters["live_events"] += 1
        self.counters["live_samples"] += int(t.size)

    def _typed(self, field: str, col: np.ndarray) -> np.ndarray | list:
        if self.fields[field]["type"] == "bool":
            return [None if math.isnan(v) else bool(v) for v in col.tolist()]
        return col

    def _topics(self) -> tuple[str, str]:
        return self.uris.live(self.name), self.uris.live_array(self.name)

    async def _lookup(self, session: Any) -> dict[int, str]:
        """The live topics with a subscription at the router now (id -> topic)."""
        found: dict[int, str] = {}
        for topic in self._topics():
            sub_id = await session.call("wamp.subscription.lookup", topic)
            if sub_id is not None:
                found[sub_id] = topic
        return found

    async def resync(self) -> None:
        """Re-read the subscriptions from the router (see the module's doc).

        A meta event that arrives while the lookups are under way may be
        overruled by them; the next resync puts that right."""
        session = self.session()
        if session is None:
            return
        try:
            found = await self._lookup(session)
        except Exception as exc:  # the session went away meanwhile: the next join follows again
            log.debug("{name}: live subscription lookup failed: {exc}", name=self.name, exc=exc)
            return
        if session is not self.session() or found == self._subs:
            return
        self.counters["live_subscriptions_resynced"] += 1
        log.info(
            "{name}: live subscriptions re-read from the router: {old} -> {new}",
            name=self.name,
            old=sorted(self._subs.values()),
            new=sorted(found.values()),
        )
        self._subs = found

    async def follow(self, session: Any) -> None:
        """Track which live topics have subscribers, through the router's meta API."""
        topics = set(self._topics())

        def created(_session_id: Any, sub: dict, *args: Any, **kwargs: Any) -> None:
            if sub.get("uri") in topics and sub.get("match", "exact") == "exact":
                self._subs[sub["id"]] = sub["uri"]

        def deleted(_session_id: Any, sub_id: int, *args: Any, **kwargs: Any) -> None:
            self._subs.pop(sub_id, None)

        await session.subscribe(created, "wamp.subscription.on_create")
        await session.subscribe(deleted, "wamp.subscription.on_delete")
        self._subs = {}  # events from here on land in it, beside what the lookups find
        self._subs.update(await self._lookup(session))
        self._resync.start(now=False)


def _missing(kind: str, n: int) -> np.ndarray:
    return np.full(n, None, dtype=object) if kind == STRING else np.full(n, np.nan)
