"""Live streams: batches from `P.consumer.<node>.live.array`, a bounded inbox
between the reactor thread and the reader, and gaps reported, never hidden.

A stream is interrupted when the connection to the router drops, when the node
leaves the mesh, or when the reader falls behind and the inbox fills. The
stream then remembers the last sample time it delivered per timeline, and when
data can flow again it puts a `Gap` in the inbox and (unless backfill is off)
fetches the missed samples from the node's history, delivered as batches with
`backfill=True`, before live batches resume. Samples are never delivered twice:
after a gap, a timeline only yields samples later than the last one delivered.

A backfill asks for history up to now, never past it: a node passes the end
of a query on to its readers, and an end in the far future made one (das2)
read years of archive. Samples stamped after now reach the stream live: the
subscription outlives the node's restart, and batches that arrive while the
backfill runs are held and delivered after it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from consumers.client.errors import (
    ClientError,
    MeshTimeout,
    NodeUnavailable,
    ProtocolError,
    UnknownNode,
)
from consumers.client.result import decode_column

if TYPE_CHECKING:
    from consumers.client.core import Core


@dataclass
class Batch:
    """Samples of one timeline: `t` (UNIX seconds) and `data[field]`, aligned."""

    node: str
    timeline: str
    t: np.ndarray
    data: dict[str, np.ndarray]
    backfill: bool = False  # recovered from history after a gap, not received live

    def __len__(self) -> int:
        return int(self.t.size)

    def frame(self) -> Any:
        from consumers.client.result import Timeline

        return Timeline(self.timeline, self.t, self.data).frame()


@dataclass
class Gap:
    """The live stream was interrupted between `start` and `end` (client clock,
    UNIX seconds). `last` holds, per timeline, the time of the last sample
    delivered before it. If `backfilled`, the samples missed (`recovered` of
    them) follow as `Batch(backfill=True)` items, so nothing was lost;
    otherwise samples after `last` up to the next batch may be missing."""

    node: str
    start: float
    end: float
    reason: str
    backfilled: bool
    recovered: int = 0
    last: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


class Inbox:
    """A bounded FIFO filled by the reactor thread and read by a thread or an
    asyncio task. `offer` refuses when full (the stream then reports a gap);
    `force` always appends (gap markers and recovered history)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._async: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.closed = False
        self.on_low: Callable[[], None] | None = None  # called once the reader drains to half

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Any) -> bool:
        with self._cond:
            if self.closed or len(self._items) >= self.maxsize:
                return False
            self._items.append(item)
            self._wake()
        return True

    def force(self, item: Any) -> None:
        with self._cond:
            if self.closed:
                return
            self._items.append(item)
            self._wake()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._wake()

    def _wake(self) -> None:
        self._cond.notify_all()
        waiters, self._async = self._async, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_done, fut)

    def _pop(self) -> tuple[bool, Any]:
        """(True, item), or (False, None) when empty. Caller holds the lock."""
        if not self._items:
            return False, None
        item = self._items.popleft()
        if self.on_low is not None and len(self._items) <= self.maxsize // 2:
            low, self.on_low = self.on_low, None
            low()
        return True, item

    def get(self, timeout: float | None = None) -> Any:
        """The next item; StopIteration once closed and empty; MeshTimeout after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                ok, item = self._pop()
                if ok:
                    return item
                if self.closed:
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise MeshTimeout(f"no live data within {timeout:g} s")
                self._cond.wait(remaining)

    async def aget(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                ok, item = self._pop()
                if ok:
                    return item
                if self.closed:
                    raise StopAsyncIteration
                fut = loop.create_future()
                self._async.append((loop, fut))
            await fut


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class _Pending:
    """An interruption not yet reported."""

    start: float
    reasons: list[str]
    overflow: bool = False


class StreamCore:
    """The reactor-thread side of one stream."""

    log = Logger()

    def __init__(
        self,
        core: Core,
        node: str,
        fields: list[str] | None,
        inbox: Inbox,
        backfill: bool = True,
        since: float | None = None,
        latest: bool = False,
    ) -> None:
        self.core = core
        self.node = node
        self.fields = fields
        self.inbox = inbox
        self.backfill = backfill
        self.since = since
        self.latest = latest
        self.last: dict[str, float] = {}
        self.pending: _Pending | None = None
        self.recovering = False
        self.buffer: list[Any] = []
        self.subscriptions: list[Any] = []
        self.closed = False
        self.opened = 0.0
        self.gaps = 0
        self.bad_events = 0
        self._session: Any = None
        self._floor: float | None = (
            None  # times before this are not the stream's (unseen timelines)
        )

    # -- opening and closing ----------------------------------------------
    async def open(self) -> None:
        """Check the node and fields, subscribe, and start listening for joins."""
        await self.core.check_fields(self.node, self.fields)
        self.opened = time.time()
        session = await self.core.conn.ready(self.core.timeout)
        self.core.conn.listeners.append(self)
        await self._subscribe(session, retained=self.latest)
        if self.since is not None:
            # History first: a pending interruption without a reason is not reported.
            self.pending = _Pending(self.opened, [])
            self._floor = self.since
            self._recover()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.core.conn.listeners:
            self.core.conn.listeners.remove(self)
        for sub in self.subscriptions:
            _quietly_unsubscribe(sub)
        self.subscriptions = []
        self.inbox.close()

    async def _subscribe(self, session: Any, retained: bool = False) -> None:
        uris = self.core.uris
        self._session = session
        opts = SubscribeOptions(get_retained=True) if retained else None
        subs = [
            await session.subscribe(self._on_live, uris.live_array(self.node), options=opts),
            await session.subscribe(self._on_node_left, uris.subtracted),
            await session.subscribe(self._on_node_added, uris.added),
        ]
        if self.closed or session is not self._session:
            for s in subs:
                _quietly_unsubscribe(s)
            return
        self.subscriptions = subs

    # -- connection events (Connection listener) ----------------------------
    def lost(self, when: float) -> None:
        self.subscriptions = []
        self._session = None
        self._interrupted("connection to the router lost", wall=time.time())

    def joined(self, session: Any) -> None:
        if self.closed:
            return
        d = defer.ensureDeferred(self._subscribe(session))
        d.addCallbacks(lambda _r: self._resume_if_possible(), self._subscribe_failed)

    def _subscribe_failed(self, failure: Any) -> None:
        # The session went away while subscribing: the next join retries.
        self.log.info(
            "resubscribing to {node} failed: {err}", node=self.node, err=failure.getErrorMessage()
        )

    def _resume_if_possible(self) -> None:
        if self.pending is not None and not self.recovering and not self.pending.overflow:
            self._recover()

    # -- interruptions -------------------------------------------------------
    def _interrupted(self, reason: str, wall: float, overflow: bool = False) -> None:
        if self.closed:
            return
        if self.pending is None:
            self.pending = _Pending(wall, [reason], overflow)
        else:
            if reason not in self.pending.reasons:
                self.pending.reasons.append(reason)
            self.pending.overflow = self.pending.overflow or overflow
        if overflow:
            self.inbox.on_low = lambda: self.core.rt.call(self._drained)

    def _drained(self) -> None:
        if self.pending is not None and self.pending.overflow:
            self.pending.overflow = False
            if not self.recovering:
                self._recover()

    def _on_node_left(self, info: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(info, dict) and info.get("name") == self.node:
            self._interrupted("the node left the mesh", wall=time.time())

    def _on_node_added(self, info: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(info, dict) and info.get("name") == self.node:
            self._resume_if_possible()

    # -- live events ----------------------------------------------------------
    def _on_live(self, payload: Any = None, *args: Any, **kwargs: Any) -> None:
        if self.closed:
            return
        if self.recovering:
            self.buffer.append(payload)
            return
        if self.pending is not None:
            if self.pending.overflow:
                return  # the reader is behind; these samples come back from history
            # The node publishes again, so it answers calls again: recover now.
            self.buffer.append(payload)
            self._recover()
            return
        self._deliver(payload)

    def _batch(self, payload: Any) -> Batch | None:
        if not isinstance(payload, dict) or not isinstance(payload.get("timeline"), str):
            raise ProtocolError("live event without a timeline")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProtocolError("live event without data")
        timeline = payload["timeline"]
        t = decode_column(payload.get("t"), "live times").astype(np.float64, copy=False)
        names = [f for f in data if self.fields is None or f in self.fields]
        if not names:
            return None
        cols = {f: decode_column(data[f], f"live field {f!r}", rows=True) for f in names}
        for f, c in cols.items():
            if len(c) != t.size:
                raise ProtocolError(f"live field {f!r}: {len(c)} values for {t.size} times")
        return Batch(self.node, timeline, t, cols)

    def _deliver(self, payload: Any) -> None:
        try:
            batch = self._batch(payload)
        except ProtocolError as exc:
            self.bad_events += 1
            self.log.warn(
                "ignored a malformed live event from {node}: {exc}", node=self.node, exc=exc
            )
            return
        if batch is None:
            return
        batch = _after(batch, self.last.get(batch.timeline))
        if batch is None:
            return
        if self.inbox.offer(batch):
            self.last[batch.timeline] = float(batch.t[-1])
        else:
            self._interrupted(
                "the reader fell behind (inbox full)", wall=time.time(), overflow=True
            )

    # -- recovery ---------------------------------------------------------------
    def _recover(self) -> None:
        if self.recovering or self.pending is None or self.closed:
            return
        self.recovering = True
        fetch = self.backfill or not self.pending.reasons  # `since` history is always fetched
        d = defer.ensureDeferred(self._fetch_missed() if fetch else _nothing())
        d.addBoth(self._recovered)

    async def _fetch_missed(self) -> list[Batch]:
        assert self.pending is not None
        floor = self._floor if self._floor is not None else self.opened
        start = min([*self.last.values(), floor]) if self.last else floor
        end = time.time()  # never past now (see the module docstring)
        if not start < end:
            return []
        result = await self.core.get(self.node, self.fields, start, end)  # None: every field
        batches = []
        for tl in result.timelines.values():
            batch = Batch(self.node, tl.name, tl.t, tl.data, backfill=True)
            batch = _after(batch, self.last.get(tl.name), floor)
            if batch is not None and batch.data:
                batches.append(batch)
        return batches

    def _recovered(self, outcome: Any) -> None:
        self.recovering = False
        pending = self.pending
        if self.closed or pending is None:
            return
        failure = outcome if isinstance(outcome, Failure) else None
        if failure is not None and _node_missing(failure.value):
            # Not back yet; the next live event, node announcement or join retries.
            self.log.info("{node}: not back yet, waiting to backfill", node=self.node)
            if self.core.conn.session is not None and not self.buffer:
                self.core.reactor.callLater(1.0, self._recover)
            return
        self.pending = None
        self._floor = None
        batches = [] if failure is not None else outcome
        if pending.reasons or failure is not None:
            self.gaps += 1
            gap = Gap(
                node=self.node,
                start=pending.start,
                end=time.time(),
                reason="; ".join(pending.reasons) or "history since the stream's start",
                backfilled=self.backfill and failure is None,
                recovered=sum(len(b) for b in batches),
                last=dict(self.last),
                error=None if failure is None else f"backfill failed: {failure.getErrorMessage()}",
            )
            self.inbox.force(gap)
        for batch in batches:
            self.inbox.force(batch)
            self.last[batch.timeline] = float(batch.t[-1])
        buffered, self.buffer = self.buffer, []
        for payload in buffered:
            self._deliver(payload)


def _quietly_unsubscribe(sub: Any) -> None:
    """Unsubscribe, ignoring a session that is already gone."""
    try:
        d = sub.unsubscribe()
    except Exception:
        return
    if isinstance(d, defer.Deferred):
        d.addErrback(lambda _f: None)


async def _nothing() -> list[Batch]:
    return []


def _after(batch: Batch, last: float | None, floor: float | None = None) -> Batch | None:
    """Only the samples after `last` (or, with no `last`, from `floor` on)."""
    if last is None and floor is None:
        return batch if len(batch) else None
    keep = batch.t > last if last is not None else batch.t >= floor
    if keep.all():
        return batch if len(batch) else None
    if not keep.any():
        return None
    return Batch(
        batch.node,
        batch.timeline,
        batch.t[keep],
        {f: c[keep] for f, c in batch.data.items()},
        batch.backfill,
    )


def _node_missing(exc: BaseException) -> bool:
    if isinstance(exc, UnknownNode | NodeUnavailable | MeshTimeout):
        return True
    from consumers.client.connection import is_connection_loss
    from consumers.client.errors import MeshUnavailable

    if isinstance(exc, MeshUnavailable) or is_connection_loss(exc):
        return True
    return isinstance(exc, ApplicationError) and exc.error == "wamp.error.no_such_procedure"


__all__ = ["Batch", "Gap", "Inbox", "StreamCore", "ClientError"]
