"""The Redis store: history shared by a node's replicas that outlives the node.

Layout under the namespace N (e.g. ``obsmesh:weather``; timeline names %-quoted):

    N:types               hash  field -> "number" | "string" | "bool"
    N:seq                 int   write order of segments, across all writers
    N:tl:<tl>:idx         zset  one member per segment, score = its last time,
                                member = b"uid|order|first|last|rows"
    N:tl:<tl>:seg:<uid>   hash  b"t" -> times, b"n:<field>" -> numbers (both raw
                                little-endian float64), b"s:<field>" -> msgpack
                                list of str/None
    N:tl:<tl>:w:<writer>  str   uid of that writer's last segment, so that a retry
                                of a write whose reply was lost changes nothing

Rows are ordered by time, ties by write order (the segment's order, then the
row's place in it): the in-memory store's order (append order at equal times).
Segments may overlap in time (out-of-order batches); a read splits the
segments into *clusters* (runs that overlap, disjoint from each other) and
stable-sorts a cluster only when it holds more than one segment.

Eviction is a pure function of the rows: the first max(rows - max_samples,
rows older than newest - max_age) rows in order are gone. Reads apply it to
what they see (Redis plus this process's unwritten rows); maintenance applies
it to Redis for good, and merges runs of small segments (compaction). Both
rewrite through a Lua script that first checks that every segment it replaces
is still there, so replicas maintaining at once cannot lose or double rows.

Writes: per timeline one write in flight; batches appended meanwhile wait in
`open` and become the next segment. A Redis outage keeps them pending (at most
`max_pending` rows per timeline, the oldest dropped past it and counted in
`dropped`) and retries with capped backoff. All commands go over one
connection, so Redis runs them in the order they were sent: a read that
snapshots the unwritten rows when it sends its index read can tell which of
them that read already sees.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgpack
import numpy as np
import txredisapi
from twisted.internet import defer, task
from twisted.logger import Logger

from obsmesh import redisconn
from obsmesh.store.base import (
    FIELD_TYPES,
    NUMERIC,
    STRING,
    Store,
    StoreError,
    as_batch,
    as_kind,
    missing_column,
)

log = Logger()

LOCAL_ORDER = 1 << 62  # rows not yet in Redis come after everything in it
READ_ATTEMPTS = 8  # a read restarts when maintenance replaced what it was reading
WRITER_KEY_TTL = 7 * 86400
MAINTAIN_EVERY = 16  # writes of a timeline between two maintenance passes
DELETE_CHUNK = 256  # segments deleted per script call
MERGE_MAX_SEGMENTS = 16  # overlapping segments are merged up to this many segments' rows

# KEYS: idx, seg, seq, writer ; ARGV: uid, first, last, rows, ttl, key1, value1, ...
WRITE_LUA = b"""
if redis.call('GET', KEYS[4]) == ARGV[1] then return 0 end
local order = redis.call('INCR', KEYS[3])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[1], ARGV[3],
  ARGV[1] .. '|' .. string.format('%d', order) .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[5])
return order
"""

# KEYS: idx, old seg keys (n), new seg keys (m)
# ARGV: n, m, old members (n), then per new segment: member, score, pairs, k1, v1, ...
REPLACE_LUA = b"""
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, n do
  if not redis.call('ZSCORE', KEYS[1], ARGV[2 + i]) then return 0 end
end
for i = 1, n do
  redis.call('ZREM', KEYS[1], ARGV[2 + i])
  redis.call('DEL', KEYS[1 + i])
end
local p = 3 + n
for j = 1, m do
  local key, pairs = KEYS[1 + n + j], tonumber(ARGV[p + 2])
  for i = p + 3, p + 2 + 2 * pairs, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
  redis.call('ZADD', KEYS[1], ARGV[p + 1], ARGV[p])
  p = p + 3 + 2 * pairs
end
return 1
"""


class StoreUnavailable(StoreError):
    """Redis cannot be reached or refused the command (the node answers `unavailable`)."""


class _Changed(Exception):
    """A segment a read was about to fetch has been replaced meanwhile: read again."""


Columns = dict[str, np.ndarray]


@dataclass(slots=True)
class _Seg:
    uid: str
    order: int
    first: float
    last: float
    rows: int
    raw: bytes = b""  # the index member (segments in Redis)
    t: np.ndarray | None = None  # the data (rows not yet in Redis)
    cols: Columns | None = None


# -- pure helpers -----------------------------------------------------------


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def member(seg: _Seg) -> bytes:
    return f"{seg.uid}|{seg.order}|{seg.first!r}|{seg.last!r}|{seg.rows}".encode("ascii")


def parse_member(raw: bytes) -> _Seg | None:
    """An index member, or None when it is not one of ours (never trusted blindly)."""
    try:
        uid, order, first, last, rows = raw.split(b"|")
        seg = _Seg(uid.decode("ascii"), int(order), float(first), float(last), int(rows), raw)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    ok = seg.uid.isalnum() and np.isfinite(seg.first) and np.isfinite(seg.last)
    return seg if ok and seg.first <= seg.last and seg.rows > 0 else None


def encode_segment(t: np.ndarray, cols: Mapping[str, np.ndarray]) -> list[bytes]:
    """Flat hash field/value pairs of one segment."""
    out = [b"t", np.ascontiguousarray(t, dtype="<f8").tobytes()]
    for name, col in cols.items():
        if col.dtype == object:
            packed = msgpack.packb(col.tolist(), unicode_errors="surrogatepass")
            out += [b"s:" + _name_bytes(name), packed]
        else:
            out += [b"n:" + _name_bytes(name), np.ascontiguousarray(col, dtype="<f8").tobytes()]
    return out


def decode_times(raw: object, rows: int) -> np.ndarray:
    if not isinstance(raw, bytes) or len(raw) != 8 * rows:
        raise StoreError(f"a stored segment is corrupt: times of {rows} rows expected")
    t = np.frombuffer(raw, dtype="<f8")
    if not np.isfinite(t).all() or (rows > 1 and (np.diff(t) < 0).any()):
        raise StoreError("a stored segment is corrupt: times not finite or not sorted")
    return t


def decode_column(raw_n: object, raw_s: object, rows: int, kind: str | None) -> np.ndarray:
    """A stored column; a missing or corrupt one reads as missing values."""
    col = None
    if isinstance(raw_n, bytes) and len(raw_n) == 8 * rows:
        col = np.frombuffer(raw_n, dtype="<f8")
    elif isinstance(raw_s, bytes):
        try:
            values = msgpack.unpackb(raw_s, unicode_errors="surrogatepass")
        except Exception:  # corrupt bytes from outside: read as missing
            values = None
        if (
            isinstance(values, list)
            and len(values) == rows
            and all(v is None or isinstance(v, str) for v in values)
        ):
            col = np.empty(rows, dtype=object)
            col[:] = values
    if kind is None:
        kind = STRING if col is not None and col.dtype == object else NUMERIC
    return missing_column(kind, rows) if col is None else as_kind(col, kind)


def merge_parts(
    parts: Sequence[tuple[np.ndarray, Columns]], kinds: Mapping[str, str]
) -> tuple[np.ndarray, Columns]:
    """Pieces in write order -> one piece in time order, ties kept in write order."""
    if len(parts) == 1 and all(
        k in parts[0][1] and (parts[0][1][k].dtype == object) == (kind == STRING)
        for k, kind in kinds.items()
    ):
        return parts[0]
    names: dict[str, str] = dict(kinds)
    for _, cols in parts:
        for name, col in cols.items():
            if name not in names or (col.dtype == object and name not in kinds):
                names[name] = STRING if col.dtype == object else NUMERIC
    t = np.concatenate([p[0] for p in parts])
    cols = {
        name: np.concatenate(
            [
                as_kind(c[name], kind) if name in c else missing_column(kind, pt.shape[0])
                for pt, c in parts
            ]
        )
        for name, kind in names.items()
    }
    if t.size > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        t = t[order]
        cols = {k: v[order] for k, v in cols.items()}
    return t, cols


@dataclass
class _View:
    """A timeline's segments as clusters: disjoint in time, in time order, each in write order."""

    clusters: list[list[_Seg]]
    first: list[float]
    last: list[float]
    rows: np.ndarray
    start_row: np.ndarray  # rows before each cluster

    @property
    def size(self) -> int:
        return int(self.rows.sum())


def build_view(segs: Sequence[_Seg]) -> _View:
    clusters: list[list[_Seg]] = []
    first: list[float] = []
    last: list[float] = []
    for seg in sorted(segs, key=lambda s: (s.first, s.order)):
        if clusters and seg.first <= last[-1]:  # touching counts: ties need write order
            clusters[-1].append(seg)
            last[-1] = max(last[-1], seg.last)
        else:
            clusters.append([seg])
            first.append(seg.first)
            last.append(seg.last)
    for c in clusters:
        c.sort(key=lambda s: s.order)
    rows = np.array([sum(s.rows for s in c) for c in clusters], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64) if len(rows) else rows
    return _View(clusters, first, last, rows, start)


def eviction_cut(view: _View, too_old: int, max_samples: int) -> tuple[int, int]:
    """(cluster, offset) of the first kept row, given how many rows are too old."""
    size = view.size
    drop = max(size - max_samples, too_old, 0)
    if drop >= size:
        return len(view.clusters), 0
    i = int(np.searchsorted(view.start_row + view.rows, drop, side="right"))
    return i, drop - int(view.start_row[i])


def plan_runs(view: _View, small_rows: int, segment_rows: int, max_rows: int) -> list[list[int]]:
    """Runs of adjacent clusters worth rewriting: small segments, and segments that
    overlap (an out-of-order batch inside a big segment), up to max_rows rows."""
    runs: list[list[int]] = []
    run: list[int] = []
    rows = 0
    for i, c in enumerate(view.clusters):
        n = int(view.rows[i])
        if run and (
            rows + n > segment_rows or not (n <= max_rows and (len(c) > 1 or n < small_rows))
        ):
            if sum(len(view.clusters[k]) for k in run) > 1:
                runs.append(run)
            run, rows = [], 0
        if n <= max_rows and (len(c) > 1 or n < small_rows):
            run.append(i)
            rows += n
    if sum(len(view.clusters[k]) for k in run) > 1:
        runs.append(run)
    return runs


def split_points(t: np.ndarray, size: int) -> list[int]:
    """Where to cut sorted times into pieces of about `size` rows: only between two
    different times, so the pieces never touch and no tie changes order."""
    cuts: list[int] = []
    pos = size
    while pos < t.shape[0]:
        k = int(np.searchsorted(t, t[pos - 1], side="right"))
        if k >= t.shape[0]:
            break
        cuts.append(k)
        pos = k + size
    return cuts


def parse_url(url: str) -> dict:
    """Connection arguments from redis://[:password@]host[:port][/db]; a StoreError
    when unusable."""
    try:
        return redisconn.parse_url(url)
    except redisconn.BadRedisUrl as exc:
        raise StoreError(str(exc)) from None


# -- the store ----------------------------------------------------------------


@dataclass
class _Timeline:
    name: str
    key: str
    open: deque = field(default_factory=deque)  # (times, cols) batches not yet cut
    inflight: _Seg | None = None  # the segment being written (kept until Redis has it)
    sending: bool = False
    writing: bool = False
    pending_rows: int = 0
    writes: int = 0
    idle_waiters: list = field(default_factory=list)


class RedisStore(Store):
    """The Store protocol over Redis. Beyond it: `maintain(timeline)`,
    `segment_count`/`stored_rows` (for tests and benchmarks), the counters
    `dropped` and `rereads`. The connection (obsmesh/redisconn.py) and every
    timer run on the injected reactor (txredisapi's own timers excepted)."""

    kind = "redis"

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        max_age: float = 7 * 86400.0,
        max_samples: int = 10_000_000,
        *,
        max_pending: int = 1_000_000,
        retry_max_delay: float = 1.0,
        connect_wait: float = 2.0,
        reply_timeout: float = 20.0,
        segment_rows: int = 1 << 16,
        small_rows: int = 1 << 14,
        max_small: int = 32,
        reactor: Any = None,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        # Both default to the reactor's time (wall time on a real reactor, a
        # test's own on a task.Clock).
        super().__init__(reactor, clock or reactor.seconds)
        self.monotonic = monotonic or reactor.seconds
        if not isinstance(namespace, str) or not namespace:
            raise StoreError("the redis namespace must be a non-empty string")
        if not float(max_age) > 0 or int(max_samples) < 1 or int(max_pending) < 1:
            raise StoreError("max_age must be > 0, max_samples and max_pending >= 1")
        self.url = redis_url
        self.namespace = namespace
        self.max_age = float(max_age)
        self.max_samples = int(max_samples)
        self.max_pending = int(max_pending)
        self.retry_max_delay = float(retry_max_delay)
        self.connect_wait = float(connect_wait)
        self.segment_rows = int(segment_rows)
        self.small_rows = int(small_rows)
        self.max_small = int(max_small)
        self.dropped = 0  # pending rows given up on (cap reached during an outage)
        self.rereads = 0  # reads restarted because maintenance replaced their segments
        self.writer_id = os.urandom(6).hex()
        self._timelines: dict[str, _Timeline] = {}
        self._closed = False  # no more appends
        self._stopped = False  # writers stop retrying
        self._sleeps: set[defer.Deferred] = set()
        self._synced: object = None  # the connection the types were exchanged on
        self._outage: str | None = None
        self._born = self.monotonic()
        parse_url(redis_url)  # a bad URL is a StoreError before anything connects
        self.redis = redisconn.RedisConnection(
            redis_url,
            reactor=self.reactor,
            reply_timeout=reply_timeout,
            retry_initial=min(0.1, self.retry_max_delay),  # reconnect backoff, capped
            retry_max=max(self.retry_max_delay, 0.1),
        )

    # -- keys --------------------------------------------------------------
    def _key(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise StoreError("a timeline name must be a non-empty string")
        return f"{self.namespace}:tl:{quote(_name_bytes(name), safe='')}"

    def _tl(self, name: str) -> _Timeline:
        tl = self._timelines.get(name)
        if tl is None:
            tl = self._timelines[name] = _Timeline(name, self._key(name))
        return tl

    # -- connection ----------------------------------------------------------
    def _live(self):
        return self.redis.live

    async def _connection(self):
        """The live connection, types exchanged; StoreUnavailable when there is none."""
        conn = self._live()
        if conn is None and self._synced is None and not self._stopped:
            # just started: give the first connection a moment to come
            conn = await self.redis.wait(self._born + self.connect_wait - self.monotonic())
        if conn is None or self._stopped:
            raise StoreUnavailable(f"redis at {self.url} is unreachable")
        if conn is not self._synced:
            await self._sync_types(conn)
        return conn

    async def _call(self, d):
        try:
            return await d
        except txredisapi.RedisError as exc:
            raise StoreUnavailable(f"redis at {self.url}: {exc}") from exc
        except defer.FirstError as exc:
            inner = exc.subFailure.value
            if isinstance(inner, txredisapi.RedisError):
                raise StoreUnavailable(f"redis at {self.url}: {inner}") from inner
            raise inner from None

    def _send(self, conn, *args):
        """One command; a connection that died under us is an outage too."""
        try:
            return conn.execute_command(*args)
        except txredisapi.RedisError as exc:
            return defer.fail(exc)

    def _eval(self, conn, script: bytes, keys: list, args: list):
        try:
            return conn.eval(script, keys, args)
        except txredisapi.RedisError as exc:
            return defer.fail(exc)

    async def _sync_types(self, conn) -> None:
        """Learn the types other runs declared; publish ours (ours win)."""
        key = f"{self.namespace}:types"
        raw = await self._call(self._send(conn, "HGETALL", key))
        if isinstance(raw, list):
            for k, v in zip(raw[::2], raw[1::2], strict=False):
                try:
                    name, kind = k.decode("utf-8", "surrogatepass"), v.decode("ascii")
                except (AttributeError, UnicodeDecodeError):
                    continue
                if kind in FIELD_TYPES and name not in self.types:
                    self.types[name] = kind
        pairs = [x for name, kind in self.types.items() for x in (_name_bytes(name), kind)]
        d = self._send(conn, "HSET", key, *pairs) if pairs else None
        self._synced = conn  # from here on declare() writes through
        if d is not None:
            await self._call(d)

    def declare(self, field: str, kind: str) -> None:
        super().declare(field, kind)
        conn = self._live()
        if conn is not None and conn is self._synced:  # else the next sync sends it
            d = self._send(conn, "HSET", f"{self.namespace}:types", _name_bytes(field), kind)
            d.addErrback(lambda _: None)

    def _note_outage(self, exc: Exception) -> None:
        if self._outage is None:
            log.warn("redis store {ns}: {err}; keeping appends pending", ns=self.namespace, err=exc)
            self._outage = str(exc)
            self._problem(f"redis unreachable ({exc}); appends kept pending")
        self._outage = str(exc)

    def _note_recovery(self) -> None:
        if self._outage is not None:
            log.info("redis store {ns}: redis is back, writing pending rows", ns=self.namespace)
            self._outage = None
            self._problem(None)

    def status(self) -> dict:
        return {
            "kind": self.kind,
            "url": self.url,
            "namespace": self.namespace,
            "pending_rows": self.pending_rows(),
            "dropped_rows": self.dropped,
            "error": self._outage,
        }

    # -- writing -------------------------------------------------------------
    def append_now(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        if self._closed:
            raise StoreError("the store is closed")
        times, cols = as_batch(t, columns, self.types)
        if times.size == 0:
            return 0
        tl = self._tl(timeline)
        tl.open.append((times, cols))
        tl.pending_rows += int(times.size)
        self._cap(tl)
        self._kick(tl)
        return int(times.size)

    def pending_rows(self, timeline: str | None = None) -> int:
        """Rows accepted but not yet known to be in Redis."""
        tls = self._timelines.values() if timeline is None else [self._timelines.get(timeline)]
        return sum(tl.pending_rows for tl in tls if tl is not None)

    def _cap(self, tl: _Timeline) -> None:
        """Past max_pending rows, drop the oldest pending ones (never a segment being sent)."""
        excess = tl.pending_rows - self.max_pending
        if excess <= 0:
            return
        dropped = 0
        seg = tl.inflight
        if seg is not None and not tl.sending:
            k = min(excess, seg.rows)
            if k == seg.rows:
                tl.inflight = None
            else:  # same uid: if an earlier attempt did land, the retry stays a no-op
                assert seg.t is not None and seg.cols is not None  # unsent: in memory
                seg.t = seg.t[k:]
                seg.cols = {n: c[k:] for n, c in seg.cols.items()}
                seg.rows -= k
                seg.first = float(seg.t[0])
            dropped += k
        while dropped < excess and tl.open:
            t, cols = tl.open[0]
            k = min(excess - dropped, t.shape[0])
            if k == t.shape[0]:
                tl.open.popleft()
            else:
                tl.open[0] = (t[k:], {n: c[k:] for n, c in cols.items()})
            dropped += k
        tl.pending_rows -= dropped
        if dropped and self.dropped == 0:
            log.warn(
                "redis store {ns}: pending rows over {cap}, dropping the oldest",
                ns=self.namespace,
                cap=self.max_pending,
            )
        self.dropped += dropped

    def _cut(self, tl: _Timeline) -> _Seg:
        """The next segment: the oldest open batches, at most segment_rows rows."""
        parts = []
        room = self.segment_rows
        while tl.open and room > 0:
            t, cols = tl.open[0]
            if t.shape[0] <= room:
                parts.append(tl.open.popleft())
                room -= t.shape[0]
            elif not parts:  # a batch bigger than a segment: its oldest rows first
                parts.append((t[:room], {n: c[:room] for n, c in cols.items()}))
                tl.open[0] = (t[room:], {n: c[room:] for n, c in cols.items()})
                room = 0
            else:
                break
        t, cols = merge_parts(parts, {})
        return _Seg(
            os.urandom(8).hex(),
            LOCAL_ORDER,
            float(t[0]),
            float(t[-1]),
            int(t.shape[0]),
            t=t,
            cols=cols,
        )

    def _kick(self, tl: _Timeline) -> None:
        if not tl.writing and not self._stopped:
            d = defer.ensureDeferred(self._write_loop(tl))
            d.addErrback(lambda f: log.failure("redis writer of {tl} stopped", f, tl=tl.name))

    async def _write_loop(self, tl: _Timeline) -> None:
        tl.writing = True
        delay = 0.0
        try:
            while not self._stopped and (tl.inflight is not None or tl.open):
                if tl.inflight is None:
                    tl.inflight = self._cut(tl)
                seg = tl.inflight
                try:
                    conn = await self._connection()
                    if tl.inflight is not seg:  # trimmed away by the pending cap meanwhile
                        continue
                    tl.sending = True
                    try:
                        await self._write(conn, tl, seg)
                    finally:
                        tl.sending = False
                except StoreUnavailable as exc:
                    self._note_outage(exc)
                    delay = min(max(2 * delay, 0.02), self.retry_max_delay)
                    await self._sleep(delay)
                    continue
                tl.inflight = None
                tl.pending_rows -= seg.rows
                delay = 0.0
                self._note_recovery()
                tl.writes += 1
                if tl.writes >= MAINTAIN_EVERY:
                    tl.writes = 0
                    await self._maintain_quietly(tl.name)
        except defer.CancelledError:
            pass
        finally:
            tl.writing = False
            if tl.pending_rows == 0:
                waiters, tl.idle_waiters = tl.idle_waiters, []
                for d in waiters:
                    if not d.called:
                        d.callback(True)

    async def _write(self, conn, tl: _Timeline, seg: _Seg) -> None:
        assert seg.t is not None and seg.cols is not None  # unsent: in memory
        keys = [
            f"{tl.key}:idx",
            f"{tl.key}:seg:{seg.uid}",
            f"{self.namespace}:seq",
            f"{tl.key}:w:{self.writer_id}",
        ]
        args = [
            seg.uid,
            repr(seg.first),
            repr(seg.last),
            seg.rows,
            WRITER_KEY_TTL,
            *encode_segment(seg.t, seg.cols),
        ]
        await self._call(self._eval(conn, WRITE_LUA, keys, args))

    async def _sleep(self, seconds: float) -> None:
        if self._stopped:
            raise defer.CancelledError()
        d = task.deferLater(self.reactor, seconds, lambda: None)
        self._sleeps.add(d)
        try:
            await d
        finally:
            self._sleeps.discard(d)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted row is in Redis; False if `timeout` passed first."""
        waits = []
        for tl in self._timelines.values():
            if tl.pending_rows:
                d: defer.Deferred = defer.Deferred()
                tl.idle_waiters.append(d)
                waits.append(d)
                self._kick(tl)
        if not waits:
            return True
        done = defer.gatherResults(waits, consumeErrors=True)
        if timeout is not None:
            done.addTimeout(timeout, self.reactor)
        try:
            await done
        except defer.TimeoutError:
            for tl in self._timelines.values():
                tl.idle_waiters = [d for d in tl.idle_waiters if not d.called]
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is pending (for at most `timeout` s), then disconnect."""
        if self._closed:
            return
        self._closed = True
        if not await self.flush(timeout):
            log.warn(
                "redis store {ns}: closing with {n} rows not written",
                ns=self.namespace,
                n=self.pending_rows(),
            )
        self._stopped = True
        for d in list(self._sleeps):
            d.cancel()
        await self.redis.close(5.0)

    # -- reading -------------------------------------------------------------
    def _local(self, tl: _Timeline | None) -> list[_Seg]:
        """This process's unwritten rows as segments after everything in Redis."""
        if tl is None:
            return []
        segs = [] if tl.inflight is None else [tl.inflight]
        for k, (t, cols) in enumerate(tl.open, start=1):
            segs.append(
                _Seg(
                    f"local-{k}",
                    LOCAL_ORDER + k,
                    float(t[0]),
                    float(t[-1]),
                    int(t.shape[0]),
                    t=t,
                    cols=cols,
                )
            )
        return segs

    async def _view(self, conn, name: str, local: bool = True) -> _View:
        mine = self._local(self._timelines.get(name)) if local else []  # before the index read
        key = f"{self._key(name)}:idx"
        raw = await self._call(self._send(conn, "ZRANGE", key, 0, -1))
        segs = [s for s in map(parse_member, raw if isinstance(raw, list) else []) if s is not None]
        stored = {s.uid for s in segs}
        segs += [s for s in mine if s.uid not in stored]  # a write that landed is read from Redis
        return build_view(segs)

    async def _fetch(self, conn, name: str, segs: Sequence[_Seg], fields: Sequence[str] | None):
        """uid -> (times, columns) of segments; fields None means every stored column."""
        key = self._key(name)
        remote = [s for s in segs if s.t is None]
        if fields is None:
            ds = [self._send(conn, "HGETALL", f"{key}:seg:{s.uid}") for s in remote]
        else:
            keys = [b"t"] + [p + _name_bytes(f) for f in fields for p in (b"n:", b"s:")]
            ds = [self._send(conn, "HMGET", f"{key}:seg:{s.uid}", *keys) for s in remote]
        replies = await self._call(defer.gatherResults(ds, consumeErrors=True)) if ds else []
        out: dict[str, tuple[np.ndarray, Columns]] = {}
        for seg, reply in zip(remote, replies, strict=True):
            if fields is None:
                stored = (
                    dict(zip(reply[::2], reply[1::2], strict=False))
                    if isinstance(reply, list)
                    else {}
                )
                if b"t" not in stored:
                    raise _Changed
                names = {k[2:] for k in stored if isinstance(k, bytes) and k[:2] in (b"n:", b"s:")}
                cols = {}
                for raw_name in names:
                    fname = raw_name.decode("utf-8", "surrogatepass")
                    cols[fname] = decode_column(
                        stored.get(b"n:" + raw_name),
                        stored.get(b"s:" + raw_name),
                        seg.rows,
                        self.types.get(fname),
                    )
                out[seg.uid] = (decode_times(stored[b"t"], seg.rows), cols)
            else:
                if (
                    not isinstance(reply, list)
                    or len(reply) != 1 + 2 * len(fields)
                    or reply[0] is None
                ):
                    raise _Changed
                cols = {
                    f: decode_column(
                        reply[1 + 2 * i], reply[2 + 2 * i], seg.rows, self.types.get(f, NUMERIC)
                    )
                    for i, f in enumerate(fields)
                }
                out[seg.uid] = (decode_times(reply[0], seg.rows), cols)
        for seg in segs:
            if seg.t is not None and seg.cols is not None:  # not yet in Redis
                cols = (
                    seg.cols
                    if fields is None
                    else {f: seg.cols[f] for f in fields if f in seg.cols}
                )
                out[seg.uid] = (seg.t, cols)
        return out

    async def _load(self, conn, name: str, view: _View, idxs: Sequence[int], fields, cache: dict):
        """Clusters -> (times, columns) in row order; fetched in one pipelined round."""
        want = [i for i in idxs if i not in cache or (fields and not set(fields) <= cache[i][2])]
        if want:
            got = await self._fetch(conn, name, [s for i in want for s in view.clusters[i]], fields)
            kinds = {f: self.types.get(f, NUMERIC) for f in fields}
            for i in want:
                t, cols = merge_parts([got[s.uid] for s in view.clusters[i]], kinds)
                cache[i] = (t, cols, set(fields))
        return {i: cache[i] for i in idxs}

    async def _cut_of(self, conn, name: str, view: _View, cache: dict) -> tuple[int, int]:
        if view.size == 0:
            return 0, 0
        limit = view.last[-1] - self.max_age
        i = bisect.bisect_left(view.last, limit)  # clusters before i are all too old
        too_old = int(view.start_row[i]) if i < len(view.clusters) else view.size
        if i < len(view.clusters) and view.first[i] < limit:
            t = (await self._load(conn, name, view, [i], [], cache))[i][0]
            too_old += int(np.searchsorted(t, limit, side="left"))
        return eviction_cut(view, too_old, self.max_samples)

    async def _read(self, how, timeline: str, *args):
        for _ in range(READ_ATTEMPTS):
            conn = await self._connection()
            try:
                view = await self._view(conn, timeline)
                cache: dict = {}
                cut = await self._cut_of(conn, timeline, view, cache)
                return await how(conn, timeline, view, cut, cache, *args)
            except _Changed:
                self.rereads += 1
                continue
        raise StoreUnavailable(
            f"timeline {timeline!r} changed under {READ_ATTEMPTS} reads in a row"
        )

    async def query(
        self, timeline: str, fields: Sequence[str], start: float, end: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return await self._read(self._query, timeline, list(dict.fromkeys(fields)), start, end)

    async def _query(self, conn, name, view, cut, cache, fields, start, end):
        ci, off = cut
        sel = [
            i
            for i in range(ci, len(view.clusters))
            if view.last[i] >= start and view.first[i] < end
        ]
        data = await self._load(conn, name, view, sel, fields, cache)
        ts: list[np.ndarray] = []
        cs: dict[str, list[np.ndarray]] = {f: [] for f in fields}
        for i in sel:
            t, cols, _ = data[i]
            a = max(off if i == ci else 0, int(np.searchsorted(t, start, side="left")))
            b = int(np.searchsorted(t, end, side="left"))
            if b > a:
                ts.append(t[a:b])
                for f in fields:
                    cs[f].append(cols[f][a:b])
        if not ts:
            return np.zeros(0), {f: missing_column(self.types.get(f, NUMERIC), 0) for f in fields}
        return np.concatenate(ts), {f: np.concatenate(parts) for f, parts in cs.items()}

    async def count(self, timeline: str, start: float, end: float) -> int:
        return await self._read(self._count, timeline, start, end)

    async def _count(self, conn, name, view, cut, cache, start, end):
        ci, off = cut
        total = 0
        need = []
        for i in range(ci, len(view.clusters)):
            if view.last[i] < start or view.first[i] >= end:
                continue
            if start <= view.first[i] and view.last[i] < end:  # whole cluster: no data needed
                total += int(view.rows[i]) - (off if i == ci else 0)
            else:
                need.append(i)
        data = await self._load(conn, name, view, need, [], cache)
        for i in need:
            t = data[i][0]
            a = max(off if i == ci else 0, int(np.searchsorted(t, start, side="left")))
            total += max(0, int(np.searchsorted(t, end, side="left")) - a)
        return total

    async def span(self, timeline: str) -> tuple[float, float] | None:
        return await self._read(self._span, timeline)

    async def _span(self, conn, name, view, cut, cache):
        ci, off = cut
        if ci >= len(view.clusters):
            return None
        first = (
            view.first[ci]
            if off == 0
            else (await self._load(conn, name, view, [ci], [], cache))[ci][0][off]
        )
        return float(first), float(view.last[-1])

    # -- maintenance ---------------------------------------------------------
    async def segment_count(self, timeline: str) -> int:
        """Segments of a timeline in Redis (for tests and benchmarks)."""
        conn = await self._connection()
        return sum(len(c) for c in (await self._view(conn, timeline, local=False)).clusters)

    async def stored_rows(self, timeline: str) -> int:
        """Rows of a timeline physically in Redis, evicted or not."""
        conn = await self._connection()
        return (await self._view(conn, timeline, local=False)).size

    async def maintain(self, timeline: str | None = None) -> None:
        """Evict and compact in Redis now (writers also do it every MAINTAIN_EVERY writes)."""
        for name in [timeline] if timeline is not None else list(self._timelines):
            conn = await self._connection()
            try:
                await self._evict(conn, name)
                await self._compact(conn, name)
            except _Changed:  # someone else maintained meanwhile: next time
                pass

    async def _maintain_quietly(self, name: str) -> None:
        try:
            await self.maintain(name)
        except StoreError as exc:
            log.warn(
                "redis store {ns}: maintenance of {tl} failed: {err}",
                ns=self.namespace,
                tl=name,
                err=exc,
            )

    async def _replace(
        self, conn, name: str, old: Sequence[_Seg], new: tuple | None = None
    ) -> bool:
        """Atomically swap segments for the rows `new` = (times, columns, order), cut
        into segments of about segment_rows; False when one of `old` is gone."""
        key = self._key(name)
        keys = [f"{key}:idx", *(f"{key}:seg:{s.uid}" for s in old)]
        news: list = []
        if new is not None and new[0].shape[0]:
            t, cols, order = new
            bounds = [0, *split_points(t, self.segment_rows), t.shape[0]]
            for a, b in zip(bounds, bounds[1:], strict=False):
                seg = _Seg(os.urandom(8).hex(), order, float(t[a]), float(t[b - 1]), b - a)
                pairs = encode_segment(t[a:b], {k: v[a:b] for k, v in cols.items()})
                keys.append(f"{key}:seg:{seg.uid}")
                news += [member(seg), repr(seg.last), len(pairs) // 2, *pairs]
        args = [len(old), len(keys) - 1 - len(old), *(s.raw for s in old), *news]
        return bool(await self._call(self._eval(conn, REPLACE_LUA, keys, args)))

    async def _evict(self, conn, name: str) -> None:
        view = await self._view(conn, name, local=False)
        ci, off = await self._cut_of(conn, name, view, {})
        gone = [s for c in view.clusters[:ci] for s in c]
        for k in range(0, len(gone), DELETE_CHUNK):
            if not await self._replace(conn, name, gone[k : k + DELETE_CHUNK]):
                return
        if off and ci < len(view.clusters):
            segs = view.clusters[ci]
            got = await self._fetch(conn, name, segs, None)
            t, cols = merge_parts([got[s.uid] for s in segs], {})
            trimmed = (t[off:], {k: v[off:] for k, v in cols.items()}, max(s.order for s in segs))
            await self._replace(conn, name, segs, trimmed)

    async def _compact(self, conn, name: str) -> None:
        view = await self._view(conn, name, local=False)
        small = sum(1 for c in view.clusters for s in c if s.rows < self.small_rows)
        if small <= self.max_small:
            return
        for run in plan_runs(
            view, self.small_rows, self.segment_rows, MERGE_MAX_SEGMENTS * self.segment_rows
        ):
            segs = [s for i in run for s in view.clusters[i]]
            got = await self._fetch(conn, name, segs, None)
            pieces = [merge_parts([got[s.uid] for s in view.clusters[i]], {}) for i in run]
            t, cols = merge_parts(pieces, {})  # clusters are disjoint: already in order
            if not await self._replace(conn, name, segs, (t, cols, max(s.order for s in segs))):
                return
