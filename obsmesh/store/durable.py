"""The durable store (the default): history on disk that survives any restart.

Reads are served from a hot tier, an in-memory store holding the retained
window (the same bounds, max_age and max_samples, as the memory store), so a
query costs what it costs in memory. Every accepted batch also goes to the
disk engine's thread (obsmesh/store/engine.py): a checksummed write-ahead
log, fsynced by group commit every `sync_interval` seconds, rolled into
Parquet segments (obsmesh/store/segments.py) that are compacted and trimmed
by retention. On open the engine reads the segments and the short log tail
and hands them to the hot tier: a node serves its earlier history at once.

Rows are "stored" (`durable_rows`, `durable_last` in status) once fsynced.
The durability window, what a power cut can lose, is `sync_interval` plus
one fsync; a killed process loses only batches the engine had not yet
written, normally less than one write round. No disk I/O runs on the reactor
thread: the engine's thread does all of it and reports back through
`reactor.callFromThread`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.logger import Logger

from obsmesh.store.base import Store, StoreError, as_batch, as_kind
from obsmesh.store.dirlock import StoreLocked
from obsmesh.store.engine import Batch, Engine, Options
from obsmesh.store.memory import MemoryStore

log = Logger()


class DurableStore(Store):
    kind = "durable"

    def __init__(
        self,
        directory: str,
        max_age: float = 7 * 86400.0,
        max_samples: int = 10_000_000,
        *,
        max_bytes: int = 0,
        sync_interval: float = 0.05,
        roll_bytes: int = 64 << 20,
        roll_seconds: float = 60.0,
        max_pending: int = 5_000_000,
        retry_delay: float = 1.0,
        reactor: Any = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(reactor, clock)
        if not float(max_age) > 0 or int(max_samples) < 1:
            raise StoreError("max_age must be > 0 and max_samples >= 1")
        if not 0 <= float(sync_interval) <= 60:
            raise StoreError("the store's sync interval must be between 0 and 60 s")
        if int(max_bytes) < 0:
            raise StoreError("store_max_bytes must be >= 0 (0 = no limit)")
        self.directory = os.path.abspath(directory)
        self.sync_interval = float(sync_interval)
        self.hot = MemoryStore(max_age, max_samples, reactor=self.reactor, clock=clock)
        self.hot.types = self.types  # one dict: a declaration reaches both
        self._options = Options(
            self.directory,
            max_age=float(max_age),
            max_samples=int(max_samples),
            max_bytes=int(max_bytes),
            sync_interval=self.sync_interval,
            roll_bytes=int(roll_bytes),
            roll_seconds=float(roll_seconds),
            max_pending=int(max_pending),
            retry_delay=float(retry_delay),
        )
        self._monotonic = monotonic
        self.engine = Engine(self._options, self, self.reactor.callFromThread, monotonic)
        self._state = "new"  # new -> opening -> open | failed; -> closing -> closed
        self._open_waiters: list[defer.Deferred] = []
        self._open_error: StoreError | None = None
        self._flush_waiters: list[defer.Deferred] = []
        self._stopped: defer.Deferred = defer.Deferred()
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self.durable_rows: dict[str, int] = {}
        self.durable_last: dict[str, float] = {}
        self.loaded_rows = 0
        self.dropped_rows = 0
        self.error: str | None = None
        self.damage: list[str] = []

    # -- opening ---------------------------------------------------------------
    def _start(self) -> None:
        if self._state == "new":
            self._state = "opening"
            self.engine.start()

    async def open(self) -> None:
        """Lock the directory and load its history (on the engine's thread);
        StoreLocked if another process has it (open may be called again later),
        StoreError if it cannot be read."""
        self._open_error = None
        self._start()
        if self._state == "opening":
            d: defer.Deferred = defer.Deferred()
            self._open_waiters.append(d)
            await d
        if self._open_error is not None:
            raise self._open_error
        self.error = None

    def loaded(self, history: dict, types: dict[str, str], problems: list[str]) -> None:
        for name, kind in types.items():
            self.types.setdefault(name, kind)
        for timeline, (t, cols) in history.items():
            cols = {n: as_kind(c, self.types[n]) for n, c in cols.items()}
            self.loaded_rows += self.hot.put(timeline, t, cols)
            if t.size:
                self.durable_last[timeline] = max(
                    self.durable_last.get(timeline, -np.inf), float(t[-1])
                )
        self.damage = list(problems)
        if self._state == "opening":
            self._state = "open"
        log.info(
            "store {dir}: {rows} rows of {n} timelines loaded",
            dir=self.directory,
            rows=self.loaded_rows,
            n=len(history),
        )
        if problems:
            text = f"damaged data skipped at open ({len(problems)}): " + "; ".join(problems[:3])
            log.error("store {dir}: {text}", dir=self.directory, text=text)
            self._problem(text)
        self._release_open_waiters()

    def open_failed(self, error: Exception) -> None:
        self._open_error = error if isinstance(error, StoreError) else StoreError(str(error))
        self.error = str(self._open_error)
        if isinstance(error, StoreLocked):  # may be tried again once the holder is gone
            self._state = "new"
            self.engine = Engine(self._options, self, self.reactor.callFromThread, self._monotonic)
        else:
            self._state = "failed"
            self._stopped.callback(None)
        self._release_open_waiters()

    def _release_open_waiters(self) -> None:
        waiting, self._open_waiters = self._open_waiters, []
        for d in waiting:
            d.callback(None)

    # -- writing ---------------------------------------------------------------
    def append_now(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        if self._state in ("failed", "closing", "closed"):
            raise StoreError(
                f"the store is {self._state}" + (f": {self.error}" if self.error else "")
            )
        if not isinstance(timeline, str) or not timeline:
            raise StoreError("a timeline name must be a non-empty string")
        times, cols = as_batch(t, columns, self.types)
        if times.size == 0:
            return 0
        self._start()
        # The engine reads the batch later, on its thread: it gets the hot tier's
        # copy (never changed once written), or its own copy, never the caller's arrays.
        views: list = []
        self.hot.put(timeline, times, cols, views)
        if not views:
            views = [(times.copy(), {n: c.copy() for n, c in cols.items()})]
        kinds = {n: self.types[n] for n in cols}
        for vt, vcols in views:
            self.engine.submit(Batch(timeline, vt, vcols, kinds))
        n = int(times.size)
        self._pending[timeline] = self._pending.get(timeline, 0) + n
        self._pending_total += n
        return n

    def pending_rows(self, timeline: str | None = None) -> int:
        if timeline is None:
            return self._pending_total
        return self._pending.get(timeline, 0)

    def committed(self, rows: dict[str, int], last: dict[str, float]) -> None:
        for timeline, n in rows.items():
            self._settle(timeline, n)
            self.durable_rows[timeline] = self.durable_rows.get(timeline, 0) + n
        for timeline, t in last.items():
            self.durable_last[timeline] = max(self.durable_last.get(timeline, -np.inf), t)
        self._wake_flushers()

    def dropped(self, rows: dict[str, int]) -> None:
        for timeline, n in rows.items():
            self._settle(timeline, n)
            self.dropped_rows += n
        log.error(
            "store {dir}: {n} pending rows dropped (disk unavailable too long)",
            dir=self.directory,
            n=sum(rows.values()),
        )
        self._wake_flushers()

    def _settle(self, timeline: str, n: int) -> None:
        self._pending[timeline] = self._pending.get(timeline, 0) - n
        self._pending_total -= n

    def _wake_flushers(self) -> None:
        if self._pending_total <= 0:
            waiting, self._flush_waiters = self._flush_waiters, []
            for d in waiting:
                if not d.called:
                    d.callback(True)

    def problem(self, text: str | None) -> None:
        self.error = text
        self._problem(text)

    def stopped(self) -> None:
        if not self._stopped.called:
            self._stopped.callback(None)

    async def flush(self, timeout: float | None = None) -> bool:
        if self._pending_total <= 0:
            return True
        if self._state in ("new", "failed", "closed"):
            return False
        self.engine.sync_soon()
        d: defer.Deferred = defer.Deferred()
        self._flush_waiters.append(d)
        if timeout is not None:
            call = self.reactor.callLater(timeout, lambda: None if d.called else d.callback(False))
            d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return await d

    async def close(self, timeout: float = 10.0) -> None:
        """Flush (for at most `timeout` s), roll the log into segments, release the lock."""
        if self._state in ("closed", "closing"):
            return
        if self._state in ("new", "failed"):
            self._state = "closed"
            return
        if self._state == "opening":
            await self.open()
        if not await self.flush(timeout):
            log.error(
                "store {dir}: closing with {n} rows not on disk",
                dir=self.directory,
                n=self._pending_total,
            )
        self._state = "closing"
        self.engine.stop()
        stopped: defer.Deferred = defer.Deferred()
        self._stopped.addBoth(lambda r: None if stopped.called else stopped.callback(None))
        call = self.reactor.callLater(
            timeout, lambda: None if stopped.called else stopped.callback(None)
        )
        await stopped
        if call.active():
            call.cancel()
        self._state = "closed"

    # -- reading (the hot tier) ------------------------------------------------
    async def count(self, timeline: str, start: float, end: float) -> int:
        return await self.hot.count(timeline, start, end)

    async def query(
        self, timeline: str, fields: Sequence[str], start: float, end: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.hot.query_now(timeline, fields, start, end)

    def query_now(
        self, timeline: str, fields: Sequence[str], start: float, end: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Synchronous query (reads never wait: they are served from memory)."""
        return self.hot.query_now(timeline, fields, start, end)

    def size(self, timeline: str) -> int:
        return self.hot.size(timeline)

    async def span(self, timeline: str) -> tuple[float, float] | None:
        return await self.hot.span(timeline)

    def status(self) -> dict[str, Any]:
        f = self.engine.figures
        return {
            "kind": self.kind,
            "state": self._state,
            "directory": self.directory,
            "error": self.error,
            "damage": list(self.damage),
            "sync_interval": self.sync_interval,
            "pending_rows": self._pending_total,
            "durable_rows": dict(self.durable_rows),
            "durable_last": dict(self.durable_last),
            "loaded_rows": self.loaded_rows,
            "dropped_rows": self.dropped_rows,
            "segments": f.segments,
            "segment_bytes": f.segment_bytes,
            "wal_bytes": f.wal_bytes,
            "fsyncs": f.fsyncs,
            "rolls": f.rolls,
            "merges": f.merges,
        }
