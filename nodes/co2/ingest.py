"""Readings files parsed as they grow, rows handed to `on_rows` in file order.

One `ReadingsParser` per readings file, positioned at the stored size. The
server calls `appended` after each durable append, while it still holds that
file's lock, so rows of one file are delivered in order and exactly once per
process. How far each file has been delivered is saved in SQLite (batched,
once a second), and `catch_up` at start parses whatever was stored but not yet
delivered (for instance when the process was killed between the fsync and the
delivery): rows are delivered at least once across restarts. Before that, an
optional `history` callback gets the rows an earlier run delivered, so a node
whose store did not survive can rebuild it (the node skips what it has).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger

from nodes.co2.pinglog import PingLog
from nodes.co2.readings import Batch, Reading, ReadingsParser
from nodes.co2.storage import BLOCK, PushResult, Storage, Workers
from obsmesh.periodic import Periodic

OnRows = Callable[[str, list[Reading]], object]
FileKey = tuple[str, str]  # (unit id, "data/readings/readings-0000.tsv")

log = Logger()


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class ReadingsIngest:
    def __init__(
        self,
        storage: Storage,
        pings: PingLog,
        workers: Workers,
        on_rows: OnRows | None,
        counters: Counter,
        flush_interval: float = 1.0,
        reactor: Any = None,
    ) -> None:
        self.storage = storage
        self.pings = pings
        self.workers = workers
        self.on_rows = on_rows
        self.counters = counters
        self._parsers: dict[FileKey, ReadingsParser] = {}
        self._progress: dict[FileKey, int] = {}
        self._dirty: dict[FileKey, int] = {}
        self._units: dict[str, dict[str, object]] = {}
        if reactor is None:
            from twisted.internet import reactor
        self._flusher = Periodic(reactor, flush_interval, self._flush_soon)

    # -- life cycle -------------------------------------------------------------

    def start(self, history: OnRows | None = None, since: float = -math.inf) -> Deferred:
        """Load progress and deliver rows stored but not yet delivered.

        With `history`, first hand it the rows delivered by an earlier run
        (the bytes of each file before its saved progress) of the files
        written since `since` (mtime): a node whose store did not survive the
        restart gets its history back, and `on_rows` then continues exactly
        where that history ends.
        """
        return ensureDeferred(self._start(history, since))

    async def _start(self, history: OnRows | None, since: float) -> None:
        self._progress = await self.workers.in_db(self.pings.progress)
        files = await self.workers.in_files(self.storage.readings_files)
        for unit_id, names, size, mtime in files:
            key = (unit_id, "/".join(names))
            start = min(self._progress.get(key, 0), size)
            if history is not None and start > 0 and mtime >= since:
                await self._history(history, unit_id, names, start)
            await self._resync(unit_id, names, start, size)
        self._flusher.start(now=False)

    async def _history(
        self, history: OnRows, unit_id: str, names: tuple[str, ...], end: int
    ) -> None:
        parser = ReadingsParser(unit_id, 0)
        rows = (await self.workers.in_files(self._feed, parser, unit_id, names, 0, end)).rows
        if rows:
            try:
                history(unit_id, rows)
            except Exception:
                log.failure("history callback failed for {unit}", unit=unit_id)

    def stop(self) -> Deferred:
        self._flusher.stop()
        return self.flush()

    def flush(self) -> Deferred:
        """Save delivery progress now."""
        entries, self._dirty = self._dirty, {}
        if not entries:
            return succeed(None)
        return self.workers.in_db(self.pings.save_progress, entries)

    def _flush_soon(self) -> None:
        d = self.flush()
        d.addErrback(lambda f: log.failure("saving readings progress failed", f))

    # -- growth of a file ----------------------------------------------------------

    def parse_appended(self, unit_id: str, names: tuple[str, ...], result: PushResult) -> Batch:
        """Parse what a durable append added. Blocking: the server runs it in the
        push's own file thread, with the file's lock held; `deliver` the batch
        on the reactor thread afterwards."""
        key = (unit_id, "/".join(names))
        parser = self._parsers.get(key)
        begin = result.size_before
        if parser is None and result.size_before == 0 and key not in self._progress:
            parser = ReadingsParser(unit_id, 0)
        if parser is None or parser.complete_until + parser.pending != result.size_before:
            # State unknown (a file that was not seen growing): re-read from what
            # was delivered last.
            start = parser.complete_until if parser else self._progress.get(key, 0)
            begin = min(start, result.size_after)
            parser = ReadingsParser(unit_id, begin)
        batch = self._feed(parser, unit_id, names, begin, result.size_after)
        self._parsers[key] = parser
        return batch

    def deliver(self, unit_id: str, names: tuple[str, ...], batch: Batch) -> None:
        """Hand a parsed batch on (reactor thread)."""
        self._deliver(unit_id, (unit_id, "/".join(names)), batch)

    def _feed(
        self, parser: ReadingsParser, unit_id: str, names: tuple[str, ...], start: int, end: int
    ) -> Batch:
        """Feed bytes [start, end) of a stored file to `parser`, a block at a time
        (blocking: runs in a file thread)."""
        batch = Batch(complete_until=parser.complete_until)
        while start < end:
            data = self.storage.read(unit_id, names, start, min(BLOCK, end - start))
            if not data:
                break
            batch.extend(parser.feed(data))
            start += len(data)
        return batch

    async def _resync(self, unit_id: str, names: tuple[str, ...], start: int, end: int) -> None:
        parser = ReadingsParser(unit_id, start)
        batch = await self.workers.in_files(self._feed, parser, unit_id, names, start, end)
        key = (unit_id, "/".join(names))
        self._parsers[key] = parser
        self._deliver(unit_id, key, batch)

    def _deliver(self, unit_id: str, key: FileKey, batch: Batch) -> None:
        unit = self._units.setdefault(
            unit_id, {"rows": 0, "clock_errors": 0, "malformed": 0, "last": None, "files": {}}
        )
        unit["files"][key[1]] = batch.complete_until
        if batch.clock_errors:
            self.counters["rows_clock_error"] += len(batch.clock_errors)
            unit["clock_errors"] += len(batch.clock_errors)
            log.warn(
                "{unit} {path}: {n} rows dated 1970 (unit clock reset) skipped",
                unit=unit_id,
                path=key[1],
                n=len(batch.clock_errors),
            )
        for err in batch.errors:  # each at debug; one line a batch at the default level
            self.counters["rows_malformed"] += 1
            unit["malformed"] += 1
            log.debug(
                "{unit} {path} at byte {offset}: malformed row: {reason} [{preview}]",
                unit=unit_id,
                path=key[1],
                offset=err.offset,
                reason=err.reason,
                preview=err.preview,
            )
        if batch.errors:
            first = batch.errors[0]
            log.warn(
                "{unit} {path}: {n} malformed rows skipped, the first at byte {offset}: "
                "{reason} [{preview}]",
                unit=unit_id,
                path=key[1],
                n=len(batch.errors),
                offset=first.offset,
                reason=first.reason,
                preview=first.preview,
            )
        if batch.complete_until != self._progress.get(key):
            self._progress[key] = self._dirty[key] = batch.complete_until
        if not batch.rows:
            return
        self.counters["rows"] += len(batch.rows)
        unit["rows"] += len(batch.rows)
        last = batch.rows[-1]
        unit["last"] = {
            "t": last.t,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last.t)),
            "nickname": last.nickname,
            "temperature": _finite(last.temperature),
            "co2_mean": _finite(last.co2_mean),
            "flash_count": last.flash_count,
        }
        if self.on_rows is not None:
            try:
                self.on_rows(unit_id, batch.rows)
            except Exception:
                log.failure("on_rows callback failed for {unit}", unit=unit_id)

    # -- status -----------------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, object]]:
        return {u: {**s, "files": dict(s["files"])} for u, s in sorted(self._units.items())}
