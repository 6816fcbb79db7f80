"""Answering das2 requests: cache blocks where there are some, the reader for
the rest, one reducer over both, one valid das2 stream out.

`Das2Service.answer(request, emit)` plans the request against the cache
(`cache.py`), then walks its segments in time order: runs of cached blocks
(trimmed to the request) and reader runs for the gaps. Everything goes
through one `Assembler`: the first stream header only, a packet header only
when it changes, the reader's own progress comments replaced by ours, and,
when a resolution was asked, one `Reducer` at exactly that resolution.
Missing blocks are queued for the background builder as the request is
answered; a cache that fails mid-request hands the rest of the interval to
the reader.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure

from nodes.das2.cache import Cache, CacheLevel, blocks_for, choose_level, level_us
from nodes.das2.dsdf import Dsdf
from nodes.das2.readers import (
    DEFAULT_LIMITS,
    ReaderError,
    ReaderFlow,
    ReaderLimits,
    ReaderPool,
    ReaderRequest,
    ReaderResult,
    StreamGate,
    reader_argv,
    run_reader_stream,
)
from nodes.das2.reduce import Reducer, plane_names
from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    Decoder,
    Encoder,
    Event,
    PacketHeader,
    Plane,
    StreamException,
    StreamHeader,
)
from nodes.das2.timefmt import TIME_UNITS, US_PER_S, seconds_per_unit, time_units

log = Logger()

Emit = Callable[[list[Event]], object]
PROGRESS_COMMENTS = ("taskSize", "taskProgress")
NO_DATA = "NoDataInInterval"
TOO_LARGE = "IllegalArgument"  # the das2 exception of a request refused for its size


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} bytes"


def _span(seconds: float) -> str:
    for unit, scale in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


class StopStream(Exception):
    """Raised by an `emit` that wants no more events (the answer ends there)."""


def x_seconds(plane: Plane, values: np.ndarray) -> np.ndarray | None:
    """An x plane's values as UNIX seconds; None when x is not a time."""
    if plane.type.kind != "time" and seconds_per_unit(plane.units) is None:
        return None
    epoch_us, us_per_unit = TIME_UNITS[time_units(plane.units)]
    v = np.asarray(values, dtype=np.float64)
    return v * (us_per_unit / US_PER_S) + epoch_us / US_PER_S


@dataclass(frozen=True)
class BlockTrim:
    """Which records of a block to use: those whose samples all lie in [lo, hi).

    A record of a reduced block stands for the samples of its level bin that lie
    in the block's period; it is used when that span is inside [lo, hi). The
    bounds are level-bin edges or the block's own, so every sample is used once
    and the partial bins at a request's edges are left to the reader."""

    lo_us: int
    hi_us: int
    block_lo_us: int
    block_hi_us: int
    width_us: int  # 0: raw records, kept when their time is in [lo, hi)

    def apply(self, data: Data) -> Data:
        t = x_seconds(data.header.planes[0], data.columns[0])
        if t is None:
            return data
        us = t * US_PER_S
        if self.width_us:
            k = np.floor(us / self.width_us)  # centres sit half a bin inside
            first = np.maximum(k * self.width_us, self.block_lo_us)
            last = np.minimum((k + 1) * self.width_us, self.block_hi_us)
            keep = (first >= self.lo_us) & (last <= self.hi_us)
        else:
            keep = (us >= self.lo_us) & (us < self.hi_us)
        if keep.all():
            return data
        return Data(data.header, tuple(c[keep] for c in data.columns))


class Assembler:
    """Joins the events of consecutive segments into one stream (see module doc)."""

    def __init__(
        self,
        emit: Emit,
        request: ReaderRequest,
        minmax: bool = False,
        progress: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self.start_s = request.start_us / US_PER_S
        self.end_s = request.end_us / US_PER_S
        self.reducer = Reducer(request.resolution, 0.0, minmax) if request.resolution else None
        self.progress = progress
        self.clock = clock
        self.started = False
        self.headers: dict[int, PacketHeader] = {}  # in force, as received
        self.sent_headers: dict[int, PacketHeader] = {}  # in force, as sent
        self.records = 0
        self.stopped = False  # an exception (or the consumer) ended the stream
        self.error: StreamException | None = None
        self._renamed: dict[int, PacketHeader] = {}
        self._shown = 0  # last taskProgress sent, in percent
        self._shown_at = 0.0

    def _send(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            self._emit(events)
        except StopStream:
            self.stopped = True
            raise

    def _through(self, events: list[Event]) -> list[Event]:
        if self.reducer is not None:
            out = self.reducer.feed(events)  # it names every plane of its output
        else:
            out = [self._named(ev) for ev in events]
        # Segments of other origins (raw reader output, reduced blocks) reduce to
        # the same layout: a header equal to the one in force is not repeated.
        kept = []
        for ev in out:
            if isinstance(ev, PacketHeader):
                if self.sent_headers.get(ev.packet_id) == ev:
                    continue
                self.sent_headers[ev.packet_id] = ev
            kept.append(ev)
        return kept

    def feed(self, events: Sequence[Event], trim: BlockTrim | None = None) -> None:
        """Events of one segment; `trim` keeps a block's records that lie in its part."""
        if self.stopped:
            raise StopStream()
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, StreamHeader):
                if not self.started:
                    self.started = True
                    out += self._through([ev])
                    if self.progress:
                        out.append(Comment("taskSize", "100", "obsmesh"))
            elif isinstance(ev, PacketHeader):
                if self.headers.get(ev.packet_id) != ev:
                    self.headers[ev.packet_id] = ev
                    out += self._through([ev])
            elif isinstance(ev, Data):
                if trim is not None:
                    ev = trim.apply(ev)
                if len(ev) == 0:
                    continue
                self.records += len(ev)
                out += self._through([ev])
                self._progress(ev, out)
            elif isinstance(ev, Comment):
                if ev.type not in PROGRESS_COMMENTS:
                    out.append(ev)
            elif isinstance(ev, StreamException):
                if ev.type == NO_DATA:
                    continue  # another segment may have data; said once at the end
                out += self._through([ev])
                self.error = ev
                self.stopped = True
                break
        self._send(out)
        if self.stopped:
            raise StopStream()

    def _named(self, ev: Event) -> Event:
        """Full resolution: every plane named (das2C's builder needs names), the
        data re-pointed at the named header."""
        if isinstance(ev, PacketHeader):
            named = plane_names(ev)
            self._renamed[ev.packet_id] = named
            return named
        if isinstance(ev, Data) and ev.packet_id in self._renamed:
            named = self._renamed[ev.packet_id]
            return ev if named is ev.header else Data(named, ev.columns)
        return ev

    def _progress(self, data: Data, out: list[Event]) -> None:
        if not self.progress:
            return
        t = x_seconds(data.header.planes[0], data.columns[0][-1:])
        span = self.end_s - self.start_s
        if t is None or span <= 0:
            return
        pct = int(max(0.0, min(99.0, (float(t[0]) - self.start_s) / span * 100)))
        now = self.clock()
        if pct > self._shown and now - self._shown_at >= 0.25:
            self._shown, self._shown_at = pct, now
            out.append(Comment("taskProgress", str(pct), "obsmesh"))

    def finish(self) -> None:
        """End of the last segment: close the bins; say so when there was no data."""
        if self.stopped:
            return
        out: list[Event] = []
        if not self.started:
            self.started = True
            out += self._through([StreamHeader()])
        if self.reducer is not None:
            out += self.reducer.flush()
        if self.records == 0:
            out.append(StreamException(NO_DATA, "no data in the interval"))
        if self.progress:
            out.append(Comment("taskProgress", "100", "obsmesh"))
        self.stopped = True
        try:
            self._send(out)
        except StopStream:
            pass

    def fail(self, kind: str, message: str) -> None:
        """End the stream with an exception (an internal failure)."""
        if self.stopped:
            return
        out: list[Event] = [] if self.started else [StreamHeader()]
        self.started = True
        if self.reducer is not None:
            out += self.reducer.flush()
        exc = StreamException(kind, message)
        out.append(exc)
        self.error = exc
        self.stopped = True
        try:
            self._send(out)
        except StopStream:
            pass


@dataclass
class Segment:
    """Part of a request: cached blocks (trimmed to [start, end)) or a reader run."""

    start_us: int
    end_us: int
    blocks: list | None = None  # BlockIds; None: run the reader
    width_us: int = 0  # the blocks' bin width (0: intrinsic, records as the reader wrote them)


@dataclass
class Outcome:
    """How an answer went: `error` is the stream's final exception, if any."""

    segments: int = 0
    blocks_used: int = 0
    reader_runs: int = 0
    error: StreamException | None = None


class Das2Service:
    """Answers validated requests from the cache and the readers."""

    def __init__(
        self,
        catalog: dict[str, Dsdf],
        pool: ReaderPool,
        limits: ReaderLimits = DEFAULT_LIMITS,
        build_pool: ReaderPool | None = None,
        count: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.time,
        max_block_bytes: int = 64 * 1024 * 1024,
        max_request_bytes: int = 1024**3,
    ) -> None:
        self.catalog = catalog
        self.pool = pool
        self.build_pool = build_pool or pool
        self.max_request_bytes = int(max_request_bytes)
        # bytes a second each dataset's reader writes (learned by the node's probe)
        self.rates: dict[str, float] = {}
        self.limits = limits
        self.cache: Cache | None = None
        self.clock = clock
        self.max_block_bytes = int(max_block_bytes)
        self._count = count or (lambda _name, _n=1: None)
        self.reader_log: collections.deque[tuple[str, int, int]] = collections.deque(maxlen=200)

    def count(self, name: str, n: int = 1) -> None:
        self._count(name, n)

    # -- planning ----------------------------------------------------------
    def level_for(self, dsdf: Dsdf, request: ReaderRequest) -> CacheLevel | None:
        if self.cache is None:
            return None
        return choose_level(dsdf.cache_levels, request.resolution)

    async def plan(self, dsdf: Dsdf, request: ReaderRequest) -> list[Segment]:
        """Segments in time order; misses are queued for building on the way."""
        segments, missing = await self._plan(dsdf, request)
        if missing:
            await self.cache.request(missing)
        return segments

    async def _plan(self, dsdf: Dsdf, request: ReaderRequest) -> tuple[list[Segment], list]:
        """Segments in time order, and the blocks missing from the cache.

        A block serves only the level bins that lie wholly inside the request:
        the partial bins at the request's edges come from the reader, so an
        answer made of blocks has exactly the samples a reader run would."""
        whole = [Segment(request.start_us, request.end_us)]
        level = self.level_for(dsdf, request)
        if level is None:
            return whole, []
        cache = self.cache
        blocks = blocks_for(
            dsdf, request.params, level, request.start_us, request.end_us, cache.max_blocks + 1
        )
        if len(blocks) > cache.max_blocks:
            self.count("cache_too_many_blocks")
            return whole, []
        now_us = int(self.clock() * US_PER_S)
        finished = [b for b in blocks if b.end_us <= now_us]  # a period still going may grow
        found = dict(zip([b.key for b in finished], await cache.present(finished), strict=True))
        missing = [b for b in finished if not found[b.key]]
        self.count("cache_hits", len(finished) - len(missing))
        self.count("cache_misses", len(missing))
        width = level_us(level) or 0
        inner_lo, inner_hi = request.start_us, request.end_us
        if width:
            inner_lo = -(-request.start_us // width) * width
            inner_hi = request.end_us // width * width
        pieces: list[tuple[int, int, Any]] = []
        for b in blocks:
            lo, hi = max(b.start_us, request.start_us), min(b.end_us, request.end_us)
            if not found.get(b.key, False):
                pieces.append((lo, hi, None))
                continue
            use_lo, use_hi = max(lo, inner_lo), min(hi, inner_hi)
            if use_hi <= use_lo:
                pieces.append((lo, hi, None))
                continue
            pieces += [(lo, use_lo, None), (use_lo, use_hi, b), (use_hi, hi, None)]
        segments: list[Segment] = []
        for lo, hi, b in pieces:
            if hi <= lo:
                continue
            last = segments[-1] if segments else None
            if last is not None and (last.blocks is not None) == (b is not None):
                last.end_us = hi
                if b is not None:
                    last.blocks.append(b)
            else:
                segments.append(Segment(lo, hi, [b] if b is not None else None, width))
        return segments, missing

    # -- answering ---------------------------------------------------------
    def answer(
        self,
        request: ReaderRequest,
        emit: Emit,
        progress: bool = False,
        flow: ReaderFlow | None = None,
        use_cache: bool = True,
        pool: ReaderPool | None = None,
    ) -> defer.Deferred[Outcome]:
        """Stream the answer to `emit` (lists of events); cancelling stops it
        (and kills a running reader). The interval is clipped to now: nothing
        past now exists yet. `pool` runs the readers (default: the requests')."""
        state: dict[str, Any] = {"pool": pool or self.pool}

        def cancel(_d: defer.Deferred) -> None:
            state["cancelled"] = True
            running = state.get("running")
            if running is not None:
                running.cancel()

        done: defer.Deferred[Outcome] = defer.Deferred(canceller=cancel)
        work = defer.ensureDeferred(self._answer(request, emit, progress, flow, use_cache, state))

        def finished(result: Any) -> None:
            if done.called:
                return
            if state.get("cancelled"):  # (the work may end during cancel() itself)
                done.errback(defer.CancelledError())
            elif isinstance(result, failure.Failure):
                done.errback(result)
            else:
                done.callback(result)

        work.addBoth(finished)
        return done

    def clip(self, request: ReaderRequest) -> ReaderRequest:
        """The request ended at now at the latest (an empty interval when it
        starts after now): a client asking up to 1e10 starts no reader for the
        future."""
        now_us = int(self.clock() * US_PER_S)
        if request.end_us <= now_us:
            return request
        return replace(request, end_us=max(now_us, request.start_us))

    def too_large(self, request: ReaderRequest, segments: Sequence[Segment]) -> str | None:
        """Why the readers this plan would run must not start, or None: their
        output, estimated from the span they read and the dataset's rate, is
        over `max_request_bytes`."""
        rate = self.rates.get(request.dataset)
        if not rate:
            return None
        span_s = sum(s.end_us - s.start_us for s in segments if s.blocks is None) / US_PER_S
        estimate = span_s * rate
        if estimate <= self.max_request_bytes:
            return None
        return (
            f"request too large: the reader would write about {_size(estimate)} "
            f"({_span(span_s)} at full resolution) and the limit (max_request_bytes) is "
            f"{_size(self.max_request_bytes)}; ask for a shorter interval, or a resolution "
            "the cache serves"
        )

    async def _answer(self, request, emit, progress, flow, use_cache, state) -> Outcome:
        dsdf = self.catalog[request.dataset]
        request = self.clip(request)
        asm = Assembler(emit, request, dsdf.minmax, progress)
        outcome = Outcome()
        try:
            if request.end_us <= request.start_us:
                asm.finish()  # all of it after now: no data yet
                outcome.error = asm.error
                return outcome
            segments, missing = (
                await self._plan(dsdf, request)
                if use_cache
                else ([Segment(request.start_us, request.end_us)], [])
            )
            problem = self.too_large(request, segments)
            if problem is not None:  # refused: no reader starts, no build is queued
                self.count("requests_refused_too_large")
                asm.fail(TOO_LARGE, problem)
                outcome.error = asm.error
                return outcome
            if missing:
                await self.cache.request(missing)
            outcome.segments = len(segments)
            for seg in segments:
                if state.get("cancelled") or asm.stopped:
                    break
                if seg.blocks is None:
                    await self._read(
                        dsdf, request, seg.start_us, seg.end_us, asm, flow, state, outcome
                    )
                    continue
                for block in seg.blocks:
                    if flow is not None:
                        await flow.wait()
                    if state.get("cancelled") or asm.stopped:
                        break
                    if not await self._from_block(block, seg, asm):
                        # the cache failed us: the reader gives the rest of this run
                        lo = max(block.start_us, seg.start_us)
                        await self._read(dsdf, request, lo, seg.end_us, asm, flow, state, outcome)
                        break
                    outcome.blocks_used += 1
                    self.count("blocks_served")
            if not state.get("cancelled"):
                asm.finish()
        except StopStream:
            pass
        except Exception as exc:  # a bug: the client still gets a well-formed stream
            log.failure("answering {dataset}", dataset=request.dataset)
            asm.fail("ServerError", f"internal error: {type(exc).__name__}")
        outcome.error = asm.error
        return outcome

    async def _from_block(self, block, seg: Segment, asm: Assembler) -> bool:
        """Feed one cached block's bins that fall in the segment; False when it
        could not be had (nothing fed)."""
        raw = await self.cache.fetch(block)
        if raw is None:
            return False
        try:
            dec = Decoder()
            events = dec.feed(raw)
            dec.finish()
        except Das2StreamError as exc:
            self.count("cache_corrupt")
            log.warn("das2 cache block {key} is corrupt: {exc}", key=block.key, exc=exc)
            return False
        lo, hi = max(block.start_us, seg.start_us), min(block.end_us, seg.end_us)
        asm.feed(events, trim=BlockTrim(lo, hi, block.start_us, block.end_us, seg.width_us))
        return True

    async def _read(self, dsdf, request, start_us, end_us, asm, flow, state, outcome) -> None:
        if end_us <= start_us:
            return
        part = ReaderRequest(dsdf.name, start_us, end_us, None, request.params)
        try:
            argv = reader_argv(dsdf, part)
        except ReaderError as exc:
            asm.fail("ServerError", "reader not available")
            log.error("{exc}", exc=exc)
            return
        outcome.reader_runs += 1
        self.count("reader_runs" if state["pool"] is self.pool else "live_reader_runs")
        self.reader_log.append((dsdf.name, start_us, end_us))
        gate = StreamGate(on_events=asm.feed)
        d = state["pool"].run(argv, gate.feed, self.limits, dsdf.directory, flow)
        state["running"] = d
        try:
            result: ReaderResult = await d
        except defer.CancelledError:
            return
        except ReaderError as exc:
            log.error("reader {dataset} could not start: {exc}", dataset=dsdf.name, exc=exc)
            result = ReaderResult(argv, reason="exit")
        finally:
            state.pop("running", None)
        if result.ok:
            try:
                gate.finish()
            except Das2StreamError as exc:
                result.reason, result.error = "refused", exc.message
        if not result.ok:
            self.count("reader_failures")
            if not asm.stopped:  # else the consumer stopped it: nothing to report
                log.warn(
                    "reader {dataset} failed: {why}; stderr: {err}",
                    dataset=dsdf.name,
                    why=result.describe(),
                    err=result.stderr[-500:],
                )
                try:
                    gate.fail("ServerError", result.describe())  # an [xx] exception ends the stream
                except StopStream:
                    pass
        if asm.stopped:
            raise StopStream()

    # -- building blocks ---------------------------------------------------
    async def build(self, dsdf: Dsdf, block) -> bytes | None:
        """One block's stream: the reader over its period, reduced to the level's
        resolution; None when the reader failed or the block is too large."""
        part = ReaderRequest(dsdf.name, block.start_us, block.end_us, None, block.params)
        argv = reader_argv(dsdf, part)
        # partial aggregates: what an exact coarser answer needs (reduce.py)
        reducer = (
            Reducer(block.resolution, 0.0, dsdf.minmax, partial=True) if block.resolution else None
        )
        encoder = Encoder()
        chunks: list[bytes] = []
        size = [0]

        def on_events(events: list[Event]) -> None:
            out = reducer.feed(events) if reducer is not None else events
            data = encoder.encode_all(out)
            size[0] += len(data)
            if size[0] > self.max_block_bytes:
                raise Das2StreamError("block larger than max_block_bytes")
            chunks.append(data)

        self.count("build_runs")
        self.reader_log.append((dsdf.name, block.start_us, block.end_us))
        gate = StreamGate(on_events=on_events)
        result = await run_reader_stream(self.build_pool, argv, gate, self.limits, dsdf.directory)
        if not result.ok:
            log.warn("building {key}: {why}", key=block.key, why=result.describe())
            return None
        if reducer is not None:
            chunks.append(encoder.encode_all(reducer.flush()))
        return b"".join(chunks)
