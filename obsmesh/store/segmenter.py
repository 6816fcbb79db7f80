"""The durable store's second thread: fsynced log batches into Parquet segments.

The log thread hands over a *roll*: the batches of one or more closed log
files. This thread writes them as one segment per timeline, then deletes
those log files, then applies retention (age, rows, bytes) and merges small
segments (obsmesh/store/compaction.py). Each step is a whole new file or a
delete, never a rewrite in place. A roll that fails (disk full) stays at the
head of the queue, the timelines already written taken off it, and is tried
again every `retry_delay` seconds; its batches are safe in the log meanwhile.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from twisted.logger import Logger

from obsmesh.store import compaction, segments, wal

log = Logger()


@dataclass
class Roll:
    batches: dict[str, list]  # timeline -> [engine.Batch], in write order
    wal_files: list[int]  # log files whose batches are all here (or already in segments)
    damaged: set[int] = field(default_factory=set)  # of those, files kept for inspection


class Segmenter:
    def __init__(
        self,
        options,
        wal_dir: str,
        seg_root: str,
        report: Callable[[str | None], None],
        figures,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.o = options
        self.wal_dir = wal_dir
        self.seg_root = seg_root
        self.report = report  # (problem text | None), from this thread
        self.figures = figures
        self.monotonic = monotonic
        self.segs: dict[str, list[segments.Segment]] = {}
        self.newest: dict[str, float] = {}
        self.next_seq = 1
        self._rolls: deque[Roll] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._main, name="obsmesh-store-seg", daemon=True)

    def adopt(self, segs: list[segments.Segment]) -> None:
        """Segments found at open (before the thread starts)."""
        for s in segs:
            self.segs.setdefault(s.timeline, []).append(s)
            self.next_seq = max(self.next_seq, s.seq + 1)
            self.newest[s.timeline] = max(self.newest.get(s.timeline, -np.inf), s.last)
        self._count()

    def start(self) -> None:
        self._thread.start()

    def submit(self, roll: Roll) -> None:
        with self._cond:
            self._rolls.append(roll)
            self._cond.notify()

    def backlog(self) -> int:
        with self._cond:
            return len(self._rolls)

    def stop_and_join(self, timeout: float | None = None) -> None:
        """Finish the queued rolls (one more try each on failure), then end."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------
    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._rolls and not self._stopping:
                    self._cond.wait()
                if not self._rolls:
                    return
                roll = self._rolls[0]
                stopping = self._stopping
            try:
                self._do(roll)
            except OSError as exc:
                from obsmesh.store.engine import describe_os_error

                self.error = describe_os_error(exc, f"writing segments in {self.o.directory}")
                self.report(self.error)
                if stopping:
                    log.error("store: {n} rolls left in the log at close", n=len(self._rolls))
                    return
                with self._cond:
                    self._cond.wait(self.o.retry_delay)
                continue
            with self._cond:
                self._rolls.popleft()
            if self.error is not None:
                self.error = None
                self.report(None)

    def _do(self, roll: Roll) -> None:
        for timeline in list(roll.batches):
            self._segment(timeline, roll.batches[timeline])
            del roll.batches[timeline]  # written: a retry starts after it
        for number in roll.wal_files:
            path = wal.file_name(self.wal_dir, number)
            if number in roll.damaged:  # kept for inspection, never read again
                _rename(path, path + ".damaged")
            else:
                _unlink(path)
        roll.wal_files = []
        self._maintain()
        self.figures.rolls += 1  # (tests wait on it: counted once retention has run)

    def _segment(self, timeline: str, batches: list) -> None:
        types: dict[str, str] = {}
        for b in batches:
            types.update(b.types)
        parts = [(b.t, b.cols) for b in batches if b.t.size]
        if not parts:
            return
        if any(parts[i][0][0] < parts[i - 1][0][-1] for i in range(1, len(parts))):
            parts = [compaction.concat(parts, types)]  # batches reaching back: sort them
        seg = segments.write(
            self.seg_root, timeline, self.next_seq, 0, parts, types, max(b.lsn for b in batches)
        )
        self.next_seq += 1
        self.segs.setdefault(timeline, []).append(seg)
        self.newest[timeline] = max(self.newest.get(timeline, -np.inf), seg.last)
        self._count()

    def _maintain(self) -> None:
        """Retention (age, rows, bytes), then merges."""
        o = self.o
        for timeline, segs in self.segs.items():
            newest = self.newest.get(timeline)
            if newest is not None:
                for s in compaction.expired(segs, newest, o.max_age, o.max_samples):
                    self._remove(s)
        if o.max_bytes > 0:
            every = [s for segs in self.segs.values() for s in segs]
            for s in compaction.over_budget(every, o.max_bytes):
                self._remove(s)
        for timeline, segs in list(self.segs.items()):
            for run in compaction.merge_runs(segs, o.max_segment_rows, o.max_age * o.span_fraction):
                self._merge(timeline, run)
        self._count()

    def _remove(self, seg: segments.Segment) -> None:
        os.unlink(seg.path)
        self.segs[seg.timeline].remove(seg)
        self.figures.removed_segments += 1

    def _merge(self, timeline: str, run: list[segments.Segment]) -> None:
        parts = []
        types: dict[str, str] = {}
        for s in run:
            loaded = segments.read(s)
            if loaded.damage:  # never fold damage into a new file: leave the run as it is
                return
            parts.append((loaded.t, loaded.cols))
            types.update(s.types)
        last = max(run, key=lambda s: s.order)
        merged = segments.write(
            self.seg_root,
            timeline,
            last.seq,
            last.gen + 1,
            [compaction.concat(parts, types)],
            types,
            max(s.lsn for s in run),
            [s.order for s in run],
        )
        for s in run:  # a crash before these deletes is undone at open (`replaces`)
            os.unlink(s.path)
            self.segs[timeline].remove(s)
        self.segs[timeline].append(merged)
        self.figures.merges += 1

    def _count(self) -> None:
        every = [s for segs in self.segs.values() for s in segs]
        self.figures.segments = len(every)
        self.figures.segment_bytes = sum(s.nbytes for s in every)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # read-only: the file stays; its batches are in segments anyway
        log.warn("store: cannot remove {path}: {exc}", path=path, exc=exc)


def _rename(a: str, b: str) -> None:
    try:
        os.rename(a, b)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warn("store: cannot rename {path}: {exc}", path=a, exc=exc)
