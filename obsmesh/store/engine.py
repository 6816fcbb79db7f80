"""The durable store's disk side: one thread that owns the store directory.

    <dir>/LOCK                       flock: one process per directory
    <dir>/wal/<number>.log           the write-ahead log (obsmesh/store/wal.py)
    <dir>/segments/<timeline>/*.parquet   the history (obsmesh/store/segments.py)

Batches come from the reactor thread through `submit` and are written to the
log at once (so a killed process loses only what it had not yet handed over);
the log is fsynced at most every `sync_interval` seconds, all batches written
meanwhile together (group commit), and only then are they reported stored.
So a power cut loses at most the batches of the last `sync_interval` plus the
fsync under way. When the log passes `roll_bytes`, or holds batches older
than `roll_seconds`, it is rolled: a new log file is started and the
batches of the old ones go to the segment thread (obsmesh/store/segmenter.py),
which writes them as Parquet segments, deletes those log files, merges and
applies retention, while this thread goes on logging.

A failed write or fsync (disk full, read-only, I/O error) truncates the log
back to its last fsynced record, keeps every unsynced batch in memory (at
most `max_pending` rows, the oldest dropped past that and counted), reports
the problem and retries every `retry_delay` seconds: ingest resumes by itself
when the disk does. Nothing already stored is rewritten in place: a segment
is replaced only by a new file holding all its rows.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from twisted.logger import Logger

from obsmesh.store import compaction, segments, wal
from obsmesh.store.base import StoreError
from obsmesh.store.dirlock import DirLock
from obsmesh.store.segmenter import Roll, Segmenter, _unlink

log = Logger()

ERRNO_TEXT = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
}


@dataclass(slots=True)
class Batch:
    timeline: str
    t: np.ndarray
    cols: dict[str, np.ndarray]
    types: dict[str, str]  # the kinds of its columns when it was accepted
    lsn: int = 0  # given when first written to the log


@dataclass
class Options:
    directory: str
    max_age: float = 7 * 86400.0
    max_samples: int = 10_000_000
    max_bytes: int = 0  # segment bytes on disk (0 = no limit)
    sync_interval: float = 0.05
    roll_bytes: int = 64 << 20
    roll_seconds: float = 60.0
    max_pending: int = 5_000_000
    retry_delay: float = 1.0
    max_segment_rows: int = 1 << 20
    span_fraction: float = 1 / 16  # a merged segment spans at most this much of max_age


class Sink(Protocol):
    """What the engine reports, each call made on the reactor thread."""

    def loaded(self, history: dict, types: dict[str, str], problems: list[str]) -> None: ...
    def open_failed(self, error: Exception) -> None: ...
    def committed(self, rows: dict[str, int], last: dict[str, float]) -> None: ...
    def dropped(self, rows: dict[str, int]) -> None: ...
    def problem(self, text: str | None) -> None: ...
    def stopped(self) -> None: ...


def describe_os_error(exc: OSError, doing: str) -> str:
    what = ERRNO_TEXT.get(exc.errno or 0, "error")
    return f"{what} {doing}: {exc.strerror or exc}"


@dataclass
class DiskFigures:
    """Read by the reactor thread for status (plain ints: no lock needed)."""

    segments: int = 0
    segment_bytes: int = 0
    wal_bytes: int = 0
    synced_rows: int = 0
    fsyncs: int = 0
    rolls: int = 0
    merges: int = 0
    removed_segments: int = 0
    damage: list[str] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        options: Options,
        sink: Sink,
        call_in_reactor: Callable[..., Any],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.o = options
        self.sink = sink
        self.call = call_in_reactor
        self.monotonic = monotonic
        self.wal_dir = os.path.join(options.directory, "wal")
        self.seg_root = os.path.join(options.directory, "segments")
        self.lock = DirLock(options.directory)
        self.figures = DiskFigures()
        self._cond = threading.Condition()
        self._queue: deque[Batch] = deque()
        self._stopping = False
        self._sync_now = False
        self._thread = threading.Thread(target=self._main, name="obsmesh-store", daemon=True)
        # Thread-owned state.
        self.unsynced: list[Batch] = []
        self.written = 0  # how many of `unsynced` are in the log file
        self.buffer: dict[str, list[Batch]] = {}  # fsynced, not yet in segments
        self.buffer_rows = 0
        self.buffer_since: float | None = None
        self.closed_wals: list[
            int
        ] = []  # log files whose batches are all in the buffer or segments
        self.damaged_wals: set[int] = set()
        self.next_lsn = 1
        self.wal_number = 0
        self.fd: int | None = None
        self.offset = 0
        self.synced_offset = 0
        self.last_sync = -1e18
        self.error: str | None = None
        self.retry_at = 0.0
        self._roll_now = False
        self._problem_shown: str | None = None
        self._show_lock = threading.Lock()
        self.seg = Segmenter(
            options, self.wal_dir, self.seg_root, self._seg_problem, self.figures, monotonic
        )

    # -- the reactor side (thread-safe) ---------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        with self._cond:
            self._queue.append(batch)
            self._cond.notify()

    def sync_soon(self) -> None:
        with self._cond:
            self._sync_now = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    # -- the thread -------------------------------------------------------------
    def _main(self) -> None:
        try:
            history, types, problems = self._open()
        except Exception as exc:
            self.lock.release()
            self.call(self.sink.open_failed, exc)
            return
        self.call(self.sink.loaded, history, types, problems)
        self.seg.start()
        try:
            self._loop()
        except Exception as exc:  # a bug, not a disk: say so loudly, keep the lock released
            log.failure("store engine stopped on an unexpected error")
            self.call(self.sink.problem, f"store engine failed: {exc!r}")
        finally:
            self._close_fd()
            self.seg.stop_and_join()
            self.lock.release()
            self.call(self.sink.stopped)

    def _open(self) -> tuple[dict, dict[str, str], list[str]]:
        d = self.o.directory
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            if not os.path.isdir(d):
                raise StoreError(
                    f"store directory {d}: {describe_os_error(exc, 'creating it')}"
                ) from None
        try:
            self.lock.acquire()
        except OSError as exc:
            raise StoreError(
                f"store directory {d}: {describe_os_error(exc, 'locking it')}"
            ) from None
        segs, leftovers, problems = segments.scan(self.seg_root)
        for path in leftovers:  # a segment write cut short: its rows are still in the log
            _unlink(path)
        stale = segments.superseded(segs)
        for s in stale:  # a merge finished but its inputs not yet deleted
            _unlink(s.path)
        stale_ids = {id(s) for s in stale}
        segs = [s for s in segs if id(s) not in stale_ids]
        types: dict[str, str] = {}
        parts: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
        covered: dict[str, int] = {}
        for s in sorted(segs, key=lambda s: s.order):
            loaded = segments.read(s)
            problems.extend(loaded.damage)
            types.update(s.types)
            covered[s.timeline] = max(covered.get(s.timeline, 0), s.lsn)
            self.next_lsn = max(self.next_lsn, s.lsn + 1)
            if loaded.t.size:
                parts.setdefault(s.timeline, []).append((loaded.t, loaded.cols))
        self.seg.adopt(segs)
        seen: set[int] = set()
        for number, path in wal.iter_files(self.wal_dir):
            scan = wal.read(path)
            problems.extend(scan.damage)
            if scan.damage:
                self.damaged_wals.add(number)
            self.closed_wals.append(number)
            self.wal_number = max(self.wal_number, number)
            for rec in scan.records:
                self.next_lsn = max(self.next_lsn, rec.lsn + 1)
                if rec.lsn <= covered.get(rec.timeline, 0) or rec.lsn in seen:
                    continue  # already in a segment, or written twice around a failure
                seen.add(rec.lsn)
                types.update(rec.types)
                self._buffer(Batch(rec.timeline, rec.t, rec.cols, rec.types, rec.lsn))
                parts.setdefault(rec.timeline, []).append((rec.t, rec.cols))
        history = {tl: compaction.concat(p, types) for tl, p in parts.items()}
        self._roll_now = bool(self.closed_wals)  # the last run's log: into segments at once
        self.figures.damage = list(problems)
        return history, types, problems

    def _buffer(self, b: Batch) -> None:
        self.buffer.setdefault(b.timeline, []).append(b)
        self.buffer_rows += int(b.t.shape[0])
        if self.buffer_since is None:
            self.buffer_since = self.monotonic()

    def _deadline(self) -> float | None:
        if self.error is not None:
            return self.retry_at
        due = []
        if self.unsynced:
            due.append(self.last_sync + self.o.sync_interval)
        if self.buffer_since is not None:
            due.append(self.buffer_since + self.o.roll_seconds)
        if self._roll_now:
            due.append(self.monotonic())
        return min(due) if due else None

    def _loop(self) -> None:
        stopping = False
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._sync_now:
                    deadline = self._deadline()
                    if deadline is None:
                        self._cond.wait()
                        continue
                    wait = deadline - self.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                taken = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
                sync_now, self._sync_now = self._sync_now, False
            self.unsynced.extend(taken)
            self._cap_pending()
            now = self.monotonic()
            if self.error is not None and now < self.retry_at and not stopping:
                continue
            ok = True
            if self.unsynced:
                due = now - self.last_sync >= self.o.sync_interval
                ok = self._commit(sync_now or stopping or due or self.error is not None)
            if ok and not self.unsynced:
                if self.error is not None:
                    self._recovered()
                self._maybe_roll(stopping)
            if stopping:
                with self._cond:
                    if self._queue:
                        continue
                if self.unsynced:
                    log.error(
                        "store {dir}: closing with {n} rows not on disk ({err})",
                        dir=self.o.directory,
                        n=sum(int(b.t.shape[0]) for b in self.unsynced),
                        err=self.error,
                    )
                return

    # -- the log ----------------------------------------------------------------
    def _commit(self, sync: bool) -> bool:
        try:
            self._write_unsynced()
            if sync:
                self._sync()
        except OSError as exc:
            self._failed(exc, "writing the log")
            return False
        return True

    def _ensure_wal(self) -> int:
        if self.fd is None:
            os.makedirs(self.wal_dir, exist_ok=True)
            number = self.wal_number + 1
            fd = os.open(wal.file_name(self.wal_dir, number), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, 0)  # a file of this number left by a failed attempt
                segments.fsync_dir(self.wal_dir)
            except OSError:
                os.close(fd)
                raise
            self.fd, self.wal_number = fd, number
            self.offset = self.synced_offset = 0
        return self.fd

    def _write_unsynced(self) -> None:
        while self.written < len(self.unsynced):
            fd = self._ensure_wal()
            b = self.unsynced[self.written]
            if b.lsn == 0:
                b.lsn = self.next_lsn
                self.next_lsn += 1
            bufs = wal.encode(b.lsn, b.timeline, b.t, b.cols, b.types)
            _pwrite_all(fd, bufs, self.offset)
            self.offset += wal.record_size(bufs)
            self.written += 1
        self.figures.wal_bytes = self.offset

    def _sync(self) -> None:
        if self.fd is None or self.written == 0:
            return
        os.fdatasync(self.fd)
        self.figures.fsyncs += 1
        self.last_sync = self.monotonic()
        self.synced_offset = self.offset
        done, self.unsynced = self.unsynced[: self.written], self.unsynced[self.written :]
        self.written = 0
        rows: dict[str, int] = {}
        last: dict[str, float] = {}
        for b in done:
            self._buffer(b)
            n = int(b.t.shape[0])
            rows[b.timeline] = rows.get(b.timeline, 0) + n
            if n:
                last[b.timeline] = max(last.get(b.timeline, -np.inf), float(b.t[-1]))
            self.figures.synced_rows += n
        self.call(self.sink.committed, rows, last)

    def _failed(self, exc: OSError, doing: str) -> None:
        """Back to the last fsynced record; every unsynced batch is written again later."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, self.synced_offset)
                self.offset = self.synced_offset
            except OSError:
                self._close_fd()  # the next attempt starts a new log file
        self.written = 0
        self.figures.wal_bytes = self.offset
        self._set_error(
            f"{describe_os_error(exc, doing + ' in ' + self.o.directory)}; "
            f"accepted rows kept in memory, retrying every {self.o.retry_delay:g} s"
        )

    def _set_error(self, text: str) -> None:
        first = self.error is None
        self.error = text
        self.retry_at = self.monotonic() + self.o.retry_delay
        if first:
            log.error("store: {text}", text=text)
        self._show()

    def _recovered(self) -> None:
        log.info("store {dir}: writing again", dir=self.o.directory)
        self.error = None
        self._show()

    def _seg_problem(self, text: str | None) -> None:
        if text is not None:
            log.error("store: {text}", text=text)
        self._show()

    def _show(self) -> None:
        """Tell the reactor side the problem now (the log's first), once per change."""
        with self._show_lock:
            text = self.error or self.seg.error
            if text != self._problem_shown:
                self._problem_shown = text
                self.call(self.sink.problem, text)

    def _close_fd(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def _cap_pending(self) -> None:
        """During an outage keep at most max_pending rows; the oldest go first."""
        if self.error is None:
            return
        total = sum(int(b.t.shape[0]) for b in self.unsynced)
        dropped: dict[str, int] = {}
        while total > self.o.max_pending and len(self.unsynced) > 1:
            b = self.unsynced.pop(0)
            n = int(b.t.shape[0])
            total -= n
            dropped[b.timeline] = dropped.get(b.timeline, 0) + n
        if dropped:
            self.call(self.sink.dropped, dropped)

    # -- rolling ----------------------------------------------------------------
    def _maybe_roll(self, stopping: bool) -> None:
        """Hand the fsynced batches to the segment thread when due (log file closed first)."""
        due = self.buffer_rows and (
            stopping
            or self._roll_now
            or self.offset >= self.o.roll_bytes
            or self.monotonic() - (self.buffer_since or 0) >= self.o.roll_seconds
        )
        if not due and not (self.closed_wals and not self.buffer):
            self._roll_now = False
            return
        if self.fd is not None:  # later batches go to a new log file
            self.closed_wals.append(self.wal_number)
            self._close_fd()
            self.figures.wal_bytes = 0
        self.seg.submit(Roll(self.buffer, self.closed_wals, self.damaged_wals))
        self.buffer, self.buffer_rows, self.buffer_since = {}, 0, None
        self.closed_wals, self.damaged_wals = [], set()
        self._roll_now = False


def _pwrite_all(fd: int, bufs: list, offset: int) -> None:
    """os.pwritev until every byte is written (a short write continues where it stopped)."""
    views = [memoryview(b).cast("B") for b in bufs]
    while views:
        n = os.pwritev(fd, views[:1024], offset)
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]
