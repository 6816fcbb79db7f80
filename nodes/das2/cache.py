"""The das2 block cache: reduced streams per (dataset, params, level, period).

A DSDF's `cacheLevel_NN = 'RESOLUTION | PERIOD'` lines define levels. A block
is the das2 stream of one period (an UTC hour, day or month) reduced to the
level's resolution with bins aligned to UNIX 0, as partial aggregates (sum,
count, min and max of each bin: `reduce.py`), or the reader's own output for
an `intrinsic` level. A request at resolution r is answered from the coarsest
level whose bins divide r (the caller then reduces to exactly r, and gets the
numbers a reduction of the raw stream gives); a request at full resolution
only from an intrinsic level.

Blocks live in Redis (shared by every replica of the node, with a TTL) or in
a local directory. Missing blocks are built in the background: a miss
enqueues a job, at most once per block while the job lives:

    N:blk:<block>   string   the block's das2 stream (EX ttl)
    N:job:<block>   string   "queued", then the id of the worker building it (EX job_ttl)
    N:queue         list     job descriptions (JSON), consumed with LPOP

Enqueueing is one Lua script (block absent, then `SET job NX`, then RPUSH), so
two replicas that miss the same block at once queue one job. A worker takes a
job with LPOP and claims it with a script that only succeeds while the job
key still says "queued": a job queued twice (after its key expired while it
waited) is still built once. The node gives job keys a lifetime longer than
the reader timeout, so a claimed job's key outlives its build. `<block>` starts with a fingerprint of the DSDF, so editing a
dataset's definition never serves blocks of the old one.

Redis failures never fail a request: a lookup that fails reads as a miss,
a fetch that fails makes the caller run the reader instead.
"""

from __future__ import annotations

import calendar
import collections
import datetime as dt
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.logger import Logger

from nodes.das2.dsdf import PERIODS, CacheLevel, Dsdf, check_name
from nodes.das2.timefmt import US_PER_S
from obsmesh.periodic import Periodic

log = Logger()

HOUR_US = 3600 * US_PER_S
DAY_US = 86400 * US_PER_S
MAX_JOB_BYTES = 4096


class CacheUnavailable(Exception):
    """The block store cannot be used right now (Redis away, disk error)."""


class BadJob(ValueError):
    """A job description that is not one of ours."""


# ---------------------------------------------------------------- pure parts


def level_us(level: CacheLevel) -> int | None:
    """A level's bin width in whole microseconds (0: intrinsic); None when it
    is not a whole number of microseconds (such a level is never used)."""
    us = level.resolution * US_PER_S
    return round(us) if abs(us - round(us)) < 1e-6 else None


def divides(resolution: float, level: CacheLevel) -> bool:
    """Bins of `resolution` seconds, aligned to UNIX 0, are whole runs of the
    level's bins: then its blocks re-reduce exactly (no level bin straddles two
    answer bins)."""
    width = level_us(level)
    if not width:
        return False
    ratio = resolution * US_PER_S / width
    return ratio >= 1 - 1e-12 and abs(ratio - round(ratio)) < 1e-9


def choose_level(levels: Sequence[CacheLevel], resolution: float | None) -> CacheLevel | None:
    """The coarsest level whose bins divide `resolution`, or an intrinsic level
    (raw streams reduce exactly to anything). None: full resolution, which only
    an intrinsic level can give."""
    if resolution is None:
        return next((lv for lv in levels if lv.resolution == 0.0), None)
    fit = [lv for lv in levels if lv.resolution == 0.0 or divides(resolution, lv)]
    return max(fit, key=lambda lv: lv.resolution) if fit else None


def period_start(t_us: int, period: str) -> int:
    """Start (us1970) of the UTC hour, day or month holding `t_us`."""
    if period == "hourly":
        return t_us - t_us % HOUR_US
    if period == "daily":
        return t_us - t_us % DAY_US
    if period == "monthly":
        day = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=t_us - t_us % DAY_US)
        return _month_us(day.year, day.month)
    raise ValueError(f"period must be one of {PERIODS}")


def period_end(start_us: int, period: str) -> int:
    if period == "hourly":
        return start_us + HOUR_US
    if period == "daily":
        return start_us + DAY_US
    day = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=start_us)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return _month_us(year, month)


def _month_us(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0)) * US_PER_S


def periods(start_us: int, end_us: int, period: str, limit: int = 100_000) -> list[tuple[int, int]]:
    """The periods overlapping [start, end), in order (at most `limit`)."""
    out: list[tuple[int, int]] = []
    a = period_start(start_us, period)
    while a < end_us and len(out) < limit:
        b = period_end(a, period)
        out.append((a, b))
        a = b
    return out


BLOCK_FORMAT = 2  # 2: partial aggregates (sum, count, min, max per bin)


def fingerprint(dsdf: Dsdf) -> str:
    """Changes whenever the dataset's definition (or the block format) changes."""
    text = json.dumps([BLOCK_FORMAT, dsdf.name, sorted(dsdf.keys.items())], ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _res_text(resolution: float) -> str:
    return repr(float(resolution))


@dataclass(frozen=True)
class BlockId:
    """One block: a dataset (at a fingerprint), sorted params, a level, a period."""

    dataset: str
    fingerprint: str
    params: tuple[str, ...]
    resolution: float  # seconds; 0 = intrinsic
    period: str
    start_us: int
    end_us: int

    @property
    def key(self) -> str:
        """A name safe as a Redis key part and as a relative file path."""
        params = quote(" ".join(self.params), safe="") or "-"
        return "/".join(
            (
                self.fingerprint,
                quote(self.dataset, safe=""),
                params,
                _res_text(self.resolution),
                self.period,
                str(self.start_us),
            )
        )

    def job(self, queued: float = 0.0) -> bytes:
        """The job description; `queued` (UNIX seconds) dates the request that
        asked for it, so a builder can leave what nobody asked for lately."""
        return json.dumps(
            {
                "dataset": self.dataset,
                "fp": self.fingerprint,
                "params": list(self.params),
                "resolution": self.resolution,
                "period": self.period,
                "start": self.start_us,
                "queued": queued,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_job(cls, raw: object) -> BlockId:
        """A job description back to a block; BadJob for anything not ours."""
        if not isinstance(raw, bytes | str) or len(raw) > MAX_JOB_BYTES:
            raise BadJob("not a job description")
        try:
            doc = json.loads(raw)
            dataset, fp, params = doc["dataset"], doc["fp"], doc["params"]
            resolution, period, start = doc["resolution"], doc["period"], doc["start"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadJob(f"not a job description: {exc}") from None
        ok = (
            isinstance(dataset, str)
            and isinstance(fp, str)
            and fp.isalnum()
            and isinstance(params, list)
            and all(isinstance(p, str) for p in params)
            and isinstance(resolution, int | float)
            and not isinstance(resolution, bool)
            and math.isfinite(resolution)
            and resolution >= 0
            and period in PERIODS
            and isinstance(start, int)
            and not isinstance(start, bool)
        )
        if not ok:
            raise BadJob("job description with wrong types")
        try:
            check_name(dataset)
            aligned = period_start(start, period) == start
        except (ValueError, OverflowError):
            raise BadJob("job for a bad dataset name or time") from None
        if not aligned:
            raise BadJob("job period not aligned")
        return cls(
            dataset, fp, tuple(params), float(resolution), period, start, period_end(start, period)
        )


def queued_at(raw: bytes) -> float:
    """When a (valid) job was queued; 0 when it does not say."""
    try:
        when = json.loads(raw).get("queued", 0.0)
    except (ValueError, AttributeError):
        return 0.0
    ok = isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when)
    return float(when) if ok else 0.0


def blocks_for(
    dsdf: Dsdf,
    params: Sequence[str],
    level: CacheLevel,
    start_us: int,
    end_us: int,
    limit: int = 100_000,
) -> list[BlockId]:
    fp = fingerprint(dsdf)
    ps = tuple(sorted(params))
    return [
        BlockId(dsdf.name, fp, ps, level.resolution, level.period, a, b)
        for a, b in periods(start_us, end_us, level.period, limit)
    ]


# ---------------------------------------------------------------- backends


class Backend(Protocol):
    name: str

    @property
    def queued(self) -> int | None:
        """Jobs waiting, where the backend counts them (None: it does not say)."""
        ...

    @property
    def connected(self) -> bool: ...

    async def present(self, blocks: Sequence[BlockId]) -> list[bool]: ...
    async def fetch(self, block: BlockId) -> bytes | None: ...
    async def enqueue(self, block: BlockId, queued: float) -> str: ...
    async def pop(self) -> bytes | None: ...
    async def claim(self, block: BlockId, worker: str) -> bool: ...
    async def put(self, block: BlockId, data: bytes, worker: str) -> None: ...
    async def release(self, block: BlockId, worker: str) -> None: ...
    async def close(self) -> None: ...


# KEYS: blk, job, queue ; ARGV: job description, job ttl, most jobs queued
# returns 1 queued, 0 built or already queued, 2 the queue is full
ENQUEUE_LUA = b"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('LLEN', KEYS[3]) >= tonumber(ARGV[3]) then return 2 end
redis.call('SET', KEYS[2], 'queued', 'EX', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1
"""
ENQUEUED = {0: "known", 1: "queued", 2: "full"}

# KEYS: blk, job ; ARGV: worker, job ttl
CLAIM_LUA = b"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('GET', KEYS[2]) ~= 'queued' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: blk, job ; ARGV: worker, data, ttl
PUT_LUA = b"""
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: job ; ARGV: worker
RELEASE_LUA = b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisBlocks:
    """Blocks and the shared work queue in Redis (one connection, obsmesh/redisconn.py)."""

    name = "redis"
    queued: int | None = None

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl: float,
        job_ttl: float,
        reply_timeout: float = 5.0,
        reactor: Any = None,
        queue_cap: int = 256,
    ) -> None:
        import txredisapi

        from obsmesh.redisconn import RedisConnection

        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._errors = (txredisapi.RedisError, defer.TimeoutError, defer.CancelledError)
        self.url = url
        self.namespace = namespace
        self.ttl = max(1, int(ttl))
        self.job_ttl = max(1, int(job_ttl))
        self.queue_cap = max(1, int(queue_cap))
        self.reply_timeout = reply_timeout
        self.redis = RedisConnection(
            url, reactor=reactor, reply_timeout=reply_timeout, retry_initial=0.1, retry_max=1.0
        )
        self._born = reactor.seconds()

    def _key(self, kind: str, block: BlockId | None = None) -> str:
        return f"{self.namespace}:{kind}" + (f":{block.key}" if block is not None else "")

    @property
    def connected(self) -> bool:
        return self.redis.connected

    async def _conn(self) -> Any:
        # just started: the first connection may still be on its way
        conn = await self.redis.wait(self._born + 2.0 - self._reactor.seconds())
        if conn is None:
            raise CacheUnavailable(f"redis at {self.url} is unreachable")
        return conn

    async def _run(self, make: Callable[[Any], defer.Deferred]) -> Any:
        conn = await self._conn()
        try:
            d = make(conn)
            d.addTimeout(self.reply_timeout + 1.0, self._reactor)  # a hung server, too
            return await d
        except self._errors as exc:
            raise CacheUnavailable(f"redis at {self.url}: {exc}") from None

    async def present(self, blocks: Sequence[BlockId]) -> list[bool]:
        async def one(b: BlockId) -> bool:
            return await self._run(lambda c: c.execute_command("EXISTS", self._key("blk", b)))

        found = []
        for i in range(0, len(blocks), 256):  # pipelined on the one connection
            part = blocks[i : i + 256]
            results = await defer.DeferredList(
                [defer.ensureDeferred(one(b)) for b in part], consumeErrors=True
            )
            for ok, value in results:
                if not ok:
                    raise CacheUnavailable(str(value.value))
                found.append(int(value) == 1)
        return found

    async def fetch(self, block: BlockId) -> bytes | None:
        value = await self._run(lambda c: c.execute_command("GET", self._key("blk", block)))
        return value if isinstance(value, bytes) else None

    async def enqueue(self, block: BlockId, queued: float) -> str:
        keys = [self._key("blk", block), self._key("job", block), self._key("queue")]
        args = [block.job(queued), self.job_ttl, self.queue_cap]
        done = await self._run(lambda c: c.eval(ENQUEUE_LUA, keys, args))
        return ENQUEUED.get(int(done), "known")

    async def pop(self) -> bytes | None:
        value = await self._run(lambda c: c.execute_command("LPOP", self._key("queue")))
        return value if isinstance(value, bytes) else None

    async def claim(self, block: BlockId, worker: str) -> bool:
        keys = [self._key("blk", block), self._key("job", block)]
        done = await self._run(lambda c: c.eval(CLAIM_LUA, keys, [worker, self.job_ttl]))
        return int(done) == 1

    async def put(self, block: BlockId, data: bytes, worker: str) -> None:
        keys = [self._key("blk", block), self._key("job", block)]
        await self._run(lambda c: c.eval(PUT_LUA, keys, [worker, data, self.ttl]))

    async def release(self, block: BlockId, worker: str) -> None:
        await self._run(lambda c: c.eval(RELEASE_LUA, [self._key("job", block)], [worker]))

    async def close(self) -> None:
        try:
            await self.redis.close()
        except Exception as exc:  # already gone: nothing to release
            log.debug("redis disconnect: {exc}", exc=exc)


class DiskBlocks:
    """Blocks as files under a directory; the work queue lives in this process
    (replicas on one directory share blocks, not jobs)."""

    name = "disk"
    connected = True  # a directory is always there

    def __init__(self, root: str, ttl: float, queue_cap: int = 256) -> None:
        self.root = os.path.abspath(root)
        self.ttl = float(ttl)
        self.queue_cap = max(1, int(queue_cap))
        self._queue: collections.deque[bytes] = collections.deque()
        self._jobs: set[str] = set()  # queued or being built

    def _path(self, block: BlockId) -> str:
        return os.path.join(self.root, *block.key.split("/")) + ".d2s"

    def _fresh(self, path: str) -> bool:
        try:
            return time.time() - os.stat(path).st_mtime < self.ttl
        except OSError:
            return False

    async def present(self, blocks: Sequence[BlockId]) -> list[bool]:
        paths = [self._path(b) for b in blocks]
        return await threads.deferToThread(lambda: [self._fresh(p) for p in paths])

    async def fetch(self, block: BlockId) -> bytes | None:
        path = self._path(block)

        def read() -> bytes | None:
            if not self._fresh(path):
                return None
            with open(path, "rb") as f:
                return f.read()

        try:
            return await threads.deferToThread(read)
        except OSError as exc:
            raise CacheUnavailable(f"cache file {path}: {exc}") from None

    async def enqueue(self, block: BlockId, queued: float) -> str:
        if block.key in self._jobs or (await self.present([block]))[0]:
            return "known"
        if len(self._queue) >= self.queue_cap:
            return "full"
        self._jobs.add(block.key)
        self._queue.append(block.job(queued))
        return "queued"

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def pop(self) -> bytes | None:
        return self._queue.popleft() if self._queue else None

    async def claim(self, block: BlockId, worker: str) -> bool:
        return block.key in self._jobs

    async def put(self, block: BlockId, data: bytes, worker: str) -> None:
        path = self._path(block)

        def write() -> None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # readers see the whole block or none
            except BaseException:
                os.unlink(tmp)
                raise

        try:
            await threads.deferToThread(write)
        except OSError as exc:
            raise CacheUnavailable(f"cache file {path}: {exc}") from None
        finally:
            self._jobs.discard(block.key)

    async def release(self, block: BlockId, worker: str) -> None:
        self._jobs.discard(block.key)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------- the cache


class Cache:
    """What a request and the builder need, with failures turned into misses.

    `build(dsdf, block)` (given by the service) runs the reader for one block
    and returns its stream, or None when it could not be built.
    """

    def __init__(
        self,
        backend: Backend,
        catalog: dict[str, Dsdf],
        build: Callable[[Dsdf, BlockId], Any],
        count: Callable[[str, int], None] | None = None,
        concurrency: int = 1,
        poll: float = 0.25,
        max_blocks: int = 2000,
        reactor: Any = None,
        per_request: int = 32,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.backend = backend
        self.catalog = catalog
        self.fingerprints = {name: fingerprint(d) for name, d in catalog.items()}
        self._build = build
        self._count = count or (lambda _name, _n=1: None)
        self.concurrency = max(1, int(concurrency))
        self.max_blocks = int(max_blocks)
        self.per_request = max(0, int(per_request))
        self.max_age = float(max_age)
        self.clock = clock
        self.worker = os.urandom(8).hex()
        self.active = 0
        self.built: list[str] = []  # keys of the blocks this process built (recent)
        self.last_error: str | None = None
        self._reactor = reactor
        self._loop = Periodic(reactor, float(poll), self._tick, name="das2 cache builder")
        self._ticking = False
        self._building: set[defer.Deferred] = set()

    # -- requests ----------------------------------------------------------
    def _failed(self, what: str, exc: Exception) -> None:
        self.last_error = f"{what}: {exc}"
        self._count("cache_errors", 1)
        log.warn("das2 cache {what} failed: {exc}", what=what, exc=exc)

    async def present(self, blocks: Sequence[BlockId]) -> list[bool]:
        """Which blocks are cached; all False when the store cannot say."""
        if not blocks:
            return []
        try:
            return await self.backend.present(blocks)
        except CacheUnavailable as exc:
            self._failed("lookup", exc)
            return [False] * len(blocks)

    async def fetch(self, block: BlockId) -> bytes | None:
        """A block's stream; None when missing or the store failed."""
        try:
            return await self.backend.fetch(block)
        except CacheUnavailable as exc:
            self._failed("fetch", exc)
            return None

    async def request(self, blocks: Sequence[BlockId]) -> int:
        """Queue builds for missing blocks: each at most once (deduplicated by
        its job key), at most `per_request` of one request (the first ones:
        where a client looks first), none while the queue is full; jobs queued."""
        queued = 0
        now = self.clock()
        for block in blocks[: self.per_request]:
            try:
                outcome = await self.backend.enqueue(block, now)
            except CacheUnavailable as exc:
                self._failed("enqueue", exc)
                break
            if outcome == "full":
                self._count("jobs_refused_queue_full", 1)
                break
            queued += outcome == "queued"
        if len(blocks) > self.per_request:
            self._count("jobs_not_queued_per_request", len(blocks) - self.per_request)
        if queued:
            self._count("jobs_queued", queued)
            self.kick()
        return queued

    # -- the builder -------------------------------------------------------
    def start(self) -> None:
        self._loop.start(now=True)

    def kick(self) -> None:
        """Look at the queue now (jobs this process just queued)."""
        if self._loop.running:
            self._reactor.callLater(0, self._tick)

    async def stop(self) -> None:
        self._loop.stop()
        for d in list(self._building):
            d.cancel()
        await self.backend.close()

    def _tick(self) -> None:
        if not self._ticking:
            d = defer.ensureDeferred(self._take_jobs())
            d.addErrback(lambda f: log.failure("das2 cache builder", failure=f))

    async def _take_jobs(self) -> None:
        self._ticking = True
        try:
            while self.active < self.concurrency:
                try:
                    raw = await self.backend.pop()
                except CacheUnavailable as exc:
                    self.last_error = f"queue: {exc}"
                    return
                if raw is None:
                    return
                block = self._accept(raw)
                if block is None:
                    continue
                if self.max_age and self.clock() - queued_at(raw) > self.max_age:
                    # Nobody asked for it lately: not worth a reader. Its job key goes,
                    # so a request that wants it again queues it again.
                    self._count("jobs_stale", 1)
                    try:
                        await self.backend.release(block, "queued")
                    except CacheUnavailable as exc:
                        self.last_error = f"release: {exc}"
                    continue
                if block.fingerprint != self.fingerprints.get(block.dataset):
                    # Queued by a replica with another definition of the dataset: not
                    # ours to build. Its job key expires and that replica queues again.
                    self._count("jobs_foreign", 1)
                    continue
                try:
                    mine = await self.backend.claim(block, self.worker)
                except CacheUnavailable as exc:
                    self.last_error = f"claim: {exc}"
                    return
                if not mine:
                    self._count("jobs_skipped", 1)
                    continue
                self.active += 1
                d = defer.ensureDeferred(self._build_one(block))
                self._building.add(d)
                d.addBoth(lambda _, d=d: self._building.discard(d))
        finally:
            self._ticking = False

    def _accept(self, raw: bytes) -> BlockId | None:
        try:
            return BlockId.from_job(raw)
        except BadJob as exc:
            self._count("jobs_bad", 1)
            log.warn("das2 cache: dropped a job: {exc}", exc=exc)
            return None

    async def _build_one(self, block: BlockId) -> None:
        dsdf = self.catalog[block.dataset]
        try:
            try:
                data = await self._build(dsdf, block)
            except defer.CancelledError:
                raise
            except Exception as exc:  # a bug must not leave the job claimed for good
                log.failure("das2 cache: building {key}", key=block.key)
                self.last_error = f"build: {exc}"
                data = None
            if data is None:
                self._count("blocks_failed", 1)
                await self.backend.release(block, self.worker)
                return
            await self.backend.put(block, data, self.worker)
            self._count("blocks_built", 1)
            self.built.append(block.key)
            del self.built[:-1000]
        except CacheUnavailable as exc:
            self._failed("store", exc)
        except defer.CancelledError:
            pass
        finally:
            self.active -= 1
            if self._loop.running:
                self.kick()
