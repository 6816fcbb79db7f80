"""`/hapi/data` as a stream: time windows of the node's data, encoded and written
as the HTTP client reads them.

The request's interval is cut into windows of about one point budget of values
each (from the dataset's cadence, then adapted to what each window held), and
each window is one `get_data` call with progressive results: no reply nears
the router's message size, no node ever holds more than a window, and a
request of any length is served, never refused for its size alone. The next
window is fetched while the current one is encoded (in a thread: formatting is
CPU work) and written.

Back-pressure: the stream is a Twisted push producer on the HTTP connection.
When the client reads slower than the data comes, the transport pauses it and
no further window is written (and at most one is fetched ahead) until the
client has read; so a year of 1 Hz data streams in constant memory, however
slow the reader. A client that hangs up stops the stream.

With `x_stride` the windows are cut at multiples of the stride, so no bin is
ever split across two calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from twisted.internet import defer, threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from consumers.hapi import encode
from consumers.hapi.datasets import Dataset, Parameter
from consumers.hapi.source import Source, TooManyPoints

MIN_WINDOW = 1e-3  # seconds: the smallest window a refusal may shrink to
MAX_SHRINKS = 40


@dataclass
class Plan:
    """What one data request streams: which columns, over which interval, how."""

    ds: Dataset
    params: list[Parameter]  # selected, Time excluded
    start: float  # clipped to what is stored
    stop: float
    stride: float | None
    reduce: str
    format: str
    lengths: dict[str, int]
    budget: int  # values per window
    stall: float = 300.0  # seconds a paused stream waits for its client before it is dropped


class Stalled(Exception):
    """The client stopped reading for too long."""


def windows_start(plan: Plan) -> float:
    """The first window's length in seconds."""
    width = 1 + sum(p.width for p in plan.params)
    rows = max(1, plan.budget // width)
    cadence = plan.ds.cadence
    if plan.stride is not None:
        cadence = max(cadence or 0.0, plan.stride / (2 if plan.reduce == "minmax" else 1))
    if not cadence:
        return plan.stop - plan.start
    return max(MIN_WINDOW, rows * cadence)


def window_end(start: float, length: float, stop: float, stride: float | None) -> float:
    """The end of a window starting at `start`: at a stride multiple when binning."""
    end = start + length
    if stride is not None:
        end = max(math.ceil(end / stride), math.floor(start / stride) + 1) * stride
    return min(stop, end) if end > start else stop


def next_length(length: float, rows: int, target: int) -> float:
    """Adapt the window to what the last one held (at most 4x either way)."""
    if rows <= 0:
        return length * 4
    return length * min(4.0, max(0.25, target / rows))


@implementer(IPushProducer)
class DataStream:
    """Writes one data response: `first` is the first window, already fetched."""

    log = Logger()

    def __init__(
        self, request: Any, source: Source, plan: Plan, counters: dict | None = None
    ) -> None:
        self.request = request
        self.counters = counters if counters is not None else {"paused": 0}
        self.source = source
        self.plan = plan
        self.paused = False
        self.stopped = False
        self._resume: defer.Deferred | None = None
        self.rows = 0
        width = 1 + sum(p.width for p in plan.params)
        self.target = max(1, plan.budget // width)
        self.length = windows_start(plan)
        self.position = plan.start

    # -- IPushProducer -------------------------------------------------------------
    def pauseProducing(self) -> None:
        if not self.paused:
            self.counters["paused"] += 1  # streams waiting for their client to read
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.counters["paused"] -= 1
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:
        if self.paused:
            self.counters["paused"] -= 1
            self.paused = False
        self.stopped = True
        self._wake()

    def _wake(self) -> None:
        d, self._resume = self._resume, None
        if d is not None:
            d.callback(None)

    async def _writable(self) -> None:
        """Wait while the client is not reading; one that stalls past `stall` seconds
        is dropped, so slow clients cannot hold every stream slot for ever."""
        while self.paused and not self.stopped:
            self._resume = defer.Deferred()
            self._resume.addTimeout(self.plan.stall, self.source.bridge.reactor)
            try:
                await self._resume
            except defer.TimeoutError:
                raise Stalled(f"the client read nothing for {self.plan.stall:g} s") from None

    # -- windows -------------------------------------------------------------------
    def more(self) -> bool:
        return self.position < self.plan.stop

    async def next_window(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Fetch the next window's rows (shrinking it if the node refuses its size)."""
        p = self.plan
        for _ in range(MAX_SHRINKS):
            start = self.position
            end = window_end(start, self.length, p.stop, p.stride)
            chunks: list[Any] = []
            try:
                final = await self.source.get_data(
                    p.ds,
                    p.ds.fields([x.name for x in p.params]),
                    start,
                    end,
                    p.stride,
                    p.reduce,
                    chunks.append,
                )
            except TooManyPoints:
                if end - start <= MIN_WINDOW:
                    raise
                self.length = max(MIN_WINDOW, (end - start) / 4)
                continue
            chunks.append(final)
            self.position = end
            t, cols = self._joined(chunks)
            self.length = next_length(end - start, t.shape[0], self.target)
            return t, cols
        raise TooManyPoints("the node refused every window size")

    def _joined(self, chunks: list[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        parts = [encode.columns(c, self.plan.ds.timeline, self.plan.params) for c in chunks]
        parts = [x for x in parts if x[0].shape[0]] or parts[-1:]
        if len(parts) == 1:
            return parts[0]
        t = np.concatenate([x[0] for x in parts])
        cols = [np.concatenate([x[1][i] for x in parts]) for i in range(len(self.plan.params))]
        return t, cols

    def encoded(self, t: np.ndarray, cols: list[np.ndarray], first: bool) -> bytes:
        p = self.plan
        if p.format == "binary":
            return encode.binary(t, cols, p.params, p.lengths)
        if p.format == "csv":
            return encode.csv(t, cols, p.params)
        rows = encode.json_rows(t, cols, p.params)
        return rows if first or not rows else b",\n" + rows

    # -- the response ----------------------------------------------------------------
    async def run(self, head: bytes, window: tuple[np.ndarray, list[np.ndarray]], tail: bytes):
        """Write `head`, the rows of `window` and of every later window, then `tail`."""
        request = self.request
        request.registerProducer(self, True)
        fetching = None
        try:
            if head:
                request.write(head)
            first = True
            while not self.stopped:
                fetching = defer.ensureDeferred(self.next_window()) if self.more() else None
                t, cols = window
                if t.shape[0]:
                    data = await threads.deferToThread(self.encoded, t, cols, first)
                    first = False
                    self.rows += t.shape[0]
                    await self._writable()
                    if self.stopped:
                        break
                    request.write(data)
                if fetching is None:
                    break
                window = await fetching
            if self.stopped:
                if fetching is not None:
                    fetching.addErrback(lambda f: None)  # nobody reads it any more
                return
            if tail:
                request.write(tail)
            request.unregisterProducer()
            request.finish()
        except Exception:
            failure = Failure()
            if fetching is not None:
                fetching.addErrback(lambda f: None)  # nobody reads it any more
            if not self.stopped:
                self.log.info(
                    "HAPI stream of {ds} ended early: {why}",
                    ds=self.plan.ds.id,
                    why=failure.getErrorMessage(),
                )
            self.abort()
        finally:
            if self.paused:  # the transport may pause us after the last write: not waiting now
                self.counters["paused"] -= 1
                self.paused = False

    def abort(self) -> None:
        """An error after data went out: the stream is cut (specification §3.7.5)."""
        self.stopProducing()
        channel = self.request.channel
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()
