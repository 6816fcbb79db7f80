"""The in-memory store: per timeline, a list of chunks of numpy columns.

Chunks grow geometrically up to CHUNK_ROWS rows, so a small timeline costs
little and a big one wastes at most part of its last chunk. The oldest
chunks are dropped (and the first one trimmed) to stay within `max_samples`
and within `max_age` seconds of the timeline's newest sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from obsmesh.store.base import STRING, Store, as_batch, missing_column

CHUNK_ROWS = 1 << 16
FIRST_ROWS = 256


class _Chunk:
    __slots__ = ("t", "cols", "lo", "n")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity)
        self.cols: dict[str, np.ndarray] = {}
        self.lo = 0  # rows before lo were evicted
        self.n = 0  # rows filled

    @property
    def capacity(self) -> int:
        return self.t.shape[0]

    def times(self) -> np.ndarray:
        return self.t[self.lo : self.n]

    def column(self, name: str, kind: str) -> np.ndarray:
        col = self.cols.get(name)
        if col is None:
            return missing_column(kind, self.n - self.lo)
        return col[self.lo : self.n]

    def grow(self, capacity: int) -> None:
        t = np.empty(capacity)
        t[: self.n] = self.t[: self.n]
        self.t = t
        for name, col in self.cols.items():
            new = np.empty(capacity, dtype=col.dtype)
            new[: self.n] = col[: self.n]
            self.cols[name] = new

    def put(self, t: np.ndarray, cols: Mapping[str, np.ndarray], types: Mapping[str, str]) -> None:
        """Copy rows in; the caller made sure they fit."""
        a, b = self.n, self.n + t.shape[0]
        self.t[a:b] = t
        for name, values in cols.items():
            col = self.cols.get(name)
            if col is None:  # a field new to this chunk: earlier rows are missing
                col = missing_column(types[name], self.capacity)
                self.cols[name] = col
            col[a:b] = values
        for name, col in self.cols.items():
            if name not in cols:
                col[a:b] = None if col.dtype == object else np.nan
        self.n = b


def _last(chunk: _Chunk) -> float:
    return float(chunk.t[chunk.n - 1]) if chunk.n > chunk.lo else -np.inf


class _Timeline:
    def __init__(self) -> None:
        self.chunks: list[_Chunk] = []
        self.size = 0

    def last_time(self) -> float | None:
        for chunk in reversed(self.chunks):
            if chunk.n > chunk.lo:
                return float(chunk.t[chunk.n - 1])
        return None


class MemoryStore(Store):
    """History in this process only: gone when the process ends (`store = "memory"`);
    also the durable store's hot tier."""

    kind = "memory"

    def __init__(
        self,
        max_age: float = 7 * 86400.0,
        max_samples: int = 10_000_000,
        *,
        reactor: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(reactor, clock)
        self.max_age = float(max_age)
        self.max_samples = int(max_samples)
        self._timelines: dict[str, _Timeline] = {}

    # -- writing ---------------------------------------------------------
    def append_now(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        times, cols = as_batch(t, columns, self.types)
        return self.put(timeline, times, cols)

    def put(
        self,
        timeline: str,
        times: np.ndarray,
        cols: Mapping[str, np.ndarray],
        views: list | None = None,
    ) -> int:
        """Append a batch already validated by `as_batch` (sorted numpy columns).
        `views`, if given, receives (times, columns) views of the stored copy, in
        order, when the batch went in at the end (rows once written in a chunk are
        never changed, so the views stay valid); it stays empty for a batch
        that reached back in time."""
        if times.size == 0:
            return 0
        tl = self._timelines.setdefault(timeline, _Timeline())
        last = tl.last_time()
        if last is not None and times[0] < last:
            self._merge(tl, times, cols)
        else:
            self._extend(tl, times, cols, views)
        self._evict(tl)
        return int(times.size)

    def _extend(
        self,
        tl: _Timeline,
        times: np.ndarray,
        cols: Mapping[str, np.ndarray],
        views: list | None = None,
    ) -> None:
        done = 0
        total = times.shape[0]
        while done < total:
            if not tl.chunks or tl.chunks[-1].n == CHUNK_ROWS:
                tl.chunks.append(_Chunk(min(CHUNK_ROWS, max(FIRST_ROWS, total - done))))
            chunk = tl.chunks[-1]
            if chunk.n + (total - done) > chunk.capacity and chunk.capacity < CHUNK_ROWS:
                need = chunk.n + total - done
                chunk.grow(min(CHUNK_ROWS, max(need, 2 * chunk.capacity)))
            take = min(total - done, chunk.capacity - chunk.n)
            a = chunk.n
            chunk.put(
                times[done : done + take],
                {k: v[done : done + take] for k, v in cols.items()},
                self.types,
            )
            if views is not None:
                views.append(
                    (chunk.t[a : a + take], {k: chunk.cols[k][a : a + take] for k in cols})
                )
            done += take
        tl.size += total

    def _merge(self, tl: _Timeline, times: np.ndarray, cols: Mapping[str, np.ndarray]) -> None:
        """Rare path: a batch reaching back in time. Rebuild the chunks it overlaps."""
        first = len(tl.chunks)
        while first > 0 and _last(tl.chunks[first - 1]) > times[0]:
            first -= 1
        tail = tl.chunks[first:]
        names = set(cols)
        for c in tail:
            names.update(c.cols)
        old_t = [c.times() for c in tail]
        merged_t = np.concatenate([*old_t, times])
        order = np.argsort(merged_t, kind="stable")
        merged = {
            name: np.concatenate(
                [
                    *(c.column(name, self.types[name]) for c in tail),
                    cols[name] if name in cols else missing_column(self.types[name], times.size),
                ]
            )[order]
            for name in names
        }
        del tl.chunks[first:]
        tl.size -= sum(c.n - c.lo for c in tail)
        self._extend(tl, merged_t[order], merged)

    def _evict(self, tl: _Timeline) -> None:
        newest = tl.last_time()
        if newest is None:
            return
        limit = newest - self.max_age
        while len(tl.chunks) > 1:  # whole chunks first
            first = tl.chunks[0]
            rows = first.n - first.lo
            if rows == 0 or tl.size - rows >= self.max_samples or first.t[first.n - 1] < limit:
                tl.chunks.pop(0)
                tl.size -= rows
            else:
                break
        first = tl.chunks[0]  # then trim inside the oldest chunk
        too_old = int(np.searchsorted(first.times(), limit, side="left"))
        drop = min(max(tl.size - self.max_samples, too_old), first.n - first.lo)
        if drop > 0:
            first.lo += drop
            tl.size -= drop

    # -- reading ---------------------------------------------------------
    def _slices(self, timeline: str, start: float, end: float):
        tl = self._timelines.get(timeline)
        if tl is None:
            return
        for chunk in tl.chunks:
            t = chunk.times()
            if t.size == 0 or t[-1] < start or t[0] >= end:
                continue
            a = int(np.searchsorted(t, start, side="left"))
            b = int(np.searchsorted(t, end, side="left"))
            if b > a:
                yield chunk, a, b

    async def count(self, timeline: str, start: float, end: float) -> int:
        return sum(b - a for _, a, b in self._slices(timeline, start, end))

    async def query(
        self, timeline: str, fields: Sequence[str], start: float, end: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.query_now(timeline, fields, start, end)

    def query_now(self, timeline: str, fields: Sequence[str], start: float, end: float):
        parts = list(self._slices(timeline, start, end))
        if not parts:
            return np.zeros(0), {f: missing_column(self.types.get(f, "number"), 0) for f in fields}
        t = np.concatenate([c.times()[a:b] for c, a, b in parts])
        cols = {}
        for f in fields:
            kind = self.types.get(f, "number")
            cols[f] = np.concatenate([c.column(f, kind)[a:b] for c, a, b in parts])
            if kind != STRING and cols[f].dtype == object:
                cols[f] = cols[f].astype(np.float64)
        return t, cols

    async def span(self, timeline: str) -> tuple[float, float] | None:
        tl = self._timelines.get(timeline)
        if tl is None or tl.size == 0:
            return None
        first = next(c for c in tl.chunks if c.n > c.lo)
        last = tl.last_time()
        assert last is not None  # the timeline holds rows
        return float(first.t[first.lo]), float(last)

    def nbytes(self) -> int:
        """Bytes held by the column arrays (for the memory benchmark)."""
        total = 0
        for tl in self._timelines.values():
            for c in tl.chunks:
                total += c.t.nbytes + sum(col.nbytes for col in c.cols.values())
        return total

    def size(self, timeline: str) -> int:
        tl = self._timelines.get(timeline)
        return tl.size if tl else 0
