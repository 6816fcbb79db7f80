"""Thin I/O around the parser: watched trees -> followers -> parsers -> callbacks.

`SummaryLogs` follows every summary log (obsmesh.follow: reads in threads)
with one `SummaryParser` each, and turns watcher events into parsed records. `DataFiles` turns finished
files in data directories into `Arrival`s, `FlagFiles` the pipeline's inotify
flags into `FlagEvent`s. `DataflowIngest` wires the three to `TreeWatcher`s.
All callbacks run on the reactor thread; file reads and stats run in threads.

A run read twice (a log rewritten in a way the follower must re-read from its
start) is recognised by its identity (script, radar, host, start) and not
delivered again.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet import threads
from twisted.logger import Logger

from nodes.dataflow.names import DataName, parse_data_name, parse_flag_name, parse_log_name
from nodes.dataflow.products import DEFAULT_PERIOD
from nodes.dataflow.summary import FileLine, Record, Run, RunStart, SummaryParser
from obsmesh.follow import Followed, Follower
from obsmesh.watch import ARRIVED, CHANGED, CREATED, EXISTS, GONE, RESCAN, TreeWatcher

log = Logger()

DEFAULT_BACKLOG = 2 * 86400.0  # at start, logs modified this recently are read from their start
DEFAULT_IDLE_CLOSE = 600.0  # close the descriptor of a log idle this long (state is kept)


def is_summary_log(path: str) -> bool:
    name = os.path.basename(path)
    return parse_log_name(name) is not None or name.endswith("_summary.log")


class _Seen:
    """A bounded set (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._d: OrderedDict[object, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def add(self, key: object) -> None:
        self._d[key] = None
        self._d.move_to_end(key)
        if len(self._d) > self._size:
            self._d.popitem(last=False)

    def discard(self, key: object) -> None:
        self._d.pop(key, None)


class _Log:
    __slots__ = ("follower", "parser", "last_data", "done", "replay")

    def __init__(self, follower: Followed, parser: SummaryParser) -> None:
        self.follower = follower
        self.parser = parser
        self.last_data = 0.0
        self.done = _Seen(4096)  # (script, radar, host, start) of runs delivered finished
        self.replay = _Seen(64)  # (script, radar, start) of runs being read a second time


class SummaryLogs:
    """Summary logs being followed; `file_event` is a `TreeWatcher` callback."""

    def __init__(
        self,
        on_records: Callable[[list[Record]], None],
        *,
        reactor=None,
        clock: Callable[[], float] = time.time,
        backlog: float = DEFAULT_BACKLOG,
        unfinished_after: float = DEFAULT_PERIOD,
        idle_close: float = DEFAULT_IDLE_CLOSE,
        max_chunk: int = 1 << 18,
        accept: Callable[[str], bool] = is_summary_log,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.on_records = on_records
        self.reactor = reactor
        self.clock = clock
        self.backlog = backlog
        self.unfinished_after = unfinished_after
        self.idle_close = idle_close
        self.accept = accept
        # reads run in threads, one per log at a time (obsmesh.follow)
        self.follower = Follower(reactor, self._got, max_chunk=max_chunk)
        self.logs: dict[str, _Log] = {}
        self.counters = {"reads": 0, "records": 0, "duplicates": 0, "read_errors": 0}
        # True while `on_records` is given what a log held when the watch began (history
        # a node stores without publishing it live); False for everything written since.
        self.replaying = False

    def file_event(self, path: str, kind: str) -> None:
        if not self.accept(path):
            return
        if path not in self.logs:
            if kind == GONE:
                return
            # found by a scan rather than seen being written: replay only recent logs
            scanned = kind in (EXISTS, RESCAN)
            followed = self.follower.follow(
                path,
                old_before=self.clock() - self.backlog if scanned else None,
                found=kind == EXISTS,
            )
            self.logs[path] = _Log(followed, SummaryParser(path))
        self.follower.changed(path)

    def _got(self, followed: Followed, data: bytes) -> None:
        entry = self.logs[followed.path]
        self.counters["reads"] += 1
        if followed.tail.error:
            self.counters["read_errors"] += 1
        now = self.clock()
        if data:
            entry.last_data = now
            self.replaying = followed.found
            try:
                self._deliver(entry, entry.parser.feed(data, now))
            finally:
                self.replaying = False

    def _deliver(self, entry: _Log, records: list[Record]) -> None:
        out: list[Record] = []
        done, replay = entry.done, entry.replay
        for r in records:
            if isinstance(r, Run):
                key = (r.script, r.radar, r.host, r.start)
                replay.discard((r.script, r.radar, r.start))
                if key in done:
                    self.counters["duplicates"] += 1
                    continue
                if r.state == "finished" and r.start is not None:
                    done.add(key)
            elif isinstance(r, RunStart):
                if (r.script, r.radar, r.host, r.start) in done:
                    # a run already delivered is being read again: mute it until its end
                    replay.add((r.script, r.radar, r.start))
                    self.counters["duplicates"] += 1
                    continue
            elif isinstance(r, FileLine) and (r.script, r.radar, r.run_start) in replay:
                self.counters["duplicates"] += 1
                continue
            out.append(r)
        if out:
            self.counters["records"] += len(out)
            self.on_records(out)

    def tick(self, now: float | None = None) -> list[Run]:
        """Expire runs open too long (delivered as died) and close idle descriptors."""
        now = self.clock() if now is None else now
        died: list[Run] = []
        for entry in self.logs.values():
            runs = entry.parser.expire(now, self.unfinished_after)
            if runs:
                died.extend(runs)
                self._deliver(entry, list(runs))
        self.follower.close_idle(lambda f: now - self.logs[f.path].last_data > self.idle_close)
        return died

    def running(self) -> list[Run]:
        return [r for entry in self.logs.values() for r in entry.parser.running()]

    @property
    def catching_up(self) -> bool:
        """Some log found at start is not read to its end yet (history still coming)."""
        return any(entry.follower.found for entry in self.logs.values())

    def status(self) -> dict[str, object]:
        totals: dict[str, int] = {}
        follow: dict[str, int] = {}
        for e in self.logs.values():
            for sums, stats in ((totals, e.parser.stats), (follow, e.follower.tail.stats)):
                for k, v in stats.as_dict().items():
                    sums[k] = sums.get(k, 0) + v
        errors = {p: e.follower.tail.error for p, e in self.logs.items() if e.follower.tail.error}
        return {
            "logs": len(self.logs),
            "parser": totals,
            "follower": follow,
            **self.counters,
            "errors": errors,
        }


@dataclass(frozen=True, slots=True)
class Arrival:
    """A finished file that appeared in a watched data directory."""

    path: str
    size: int
    mtime: float
    name: DataName | None  # what its name says (radar, kind, start time), if a data name

    @property
    def basename(self) -> str:
        return os.path.basename(self.path)


class DataFiles:
    """Arrivals of finished files in data directories (`file_event` is a watcher callback).

    The files are stat'ed in a thread, a batch of events at a time and in the
    order they came (a data tree holds hundreds of thousands of files, all
    reported by the first scan)."""

    def __init__(
        self,
        on_arrival: Callable[[Arrival], None],
        *,
        reactor=None,
        remember: int = 200_000,
        batch: int = 1000,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.on_arrival = on_arrival
        self.reactor = reactor
        self.batch = batch
        self._known = _Seen(remember)  # (path, inode, size, mtime_ns) already reported or found
        self._queue: deque[tuple[str, str]] = deque()
        self._stating = False
        self.counters = {"arrivals": 0, "ignored": 0}

    def file_event(self, path: str, kind: str) -> None:
        name = os.path.basename(path)
        if name.startswith("."):
            self.counters["ignored"] += (
                1  # rsync's temporary files; the final name arrives by rename
            )
            return
        if kind not in (EXISTS, RESCAN, ARRIVED):
            return
        self._queue.append((path, kind))
        self._stat_next()

    def _stat_next(self) -> None:
        if self._stating or not self._queue:
            return
        self._stating = True
        events = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _stat_all, events)
        d.addCallback(self._stated)
        d.addErrback(lambda f: log.failure("stat of data files failed", f))
        d.addBoth(self._stat_done)

    def _stat_done(self, _: object) -> None:
        self._stating = False
        self._stat_next()

    def _stated(self, found: list[tuple[str, str, os.stat_result]]) -> None:
        for path, kind, st in found:
            key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
            if key in self._known:
                continue
            self._known.add(key)
            if kind == EXISTS:
                continue  # the inventory at start is not news
            self.counters["arrivals"] += 1
            name = os.path.basename(path)
            self.on_arrival(Arrival(path, st.st_size, st.st_mtime, parse_data_name(name)))


def _stat_all(events: list[tuple[str, str]]) -> list[tuple[str, str, os.stat_result]]:
    """(path, kind, stat) of the files still there (worker thread)."""
    out = []
    for path, kind in events:
        try:
            out.append((path, kind, os.stat(path)))
        except OSError:
            continue
    return out


@dataclass(frozen=True, slots=True)
class FlagEvent:
    """A pipeline flag raised (moved in) or cleared (removed)."""

    path: str
    stage: str  # the stage whose end the flag announces
    radar: str | None
    raised: bool
    time: float  # clock time it was seen
    initial: bool  # found by the first scan rather than seen arriving


class FlagFiles:
    """Pipeline flags in the daemons' flag directories."""

    def __init__(
        self, on_flag: Callable[[FlagEvent], None], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.on_flag = on_flag
        self.clock = clock
        self.raised: dict[str, FlagEvent] = {}
        self.counters = {"flags": 0, "ignored": 0}

    def file_event(self, path: str, kind: str) -> None:
        parsed = parse_flag_name(os.path.basename(path))
        if parsed is None:
            self.counters["ignored"] += 1
            return
        if kind in (ARRIVED, EXISTS, RESCAN, CREATED):
            if path in self.raised:
                return
            ev = FlagEvent(path, parsed.stage, parsed.radar, True, self.clock(), kind == EXISTS)
            self.raised[path] = ev
        elif kind == GONE:
            if self.raised.pop(path, None) is None:
                return
            ev = FlagEvent(path, parsed.stage, parsed.radar, False, self.clock(), False)
        else:
            return
        self.counters["flags"] += 1
        self.on_flag(ev)


class DataflowIngest:
    """Watch summary-log roots, and optionally data and flag directories.

    The node built on this gives `on_records` (lists of RunStart / FileLine /
    Run), `on_arrival` and `on_flag`, and calls `tick()` every few seconds.
    """

    def __init__(
        self,
        *,
        summary_roots: Iterable[str],
        on_records: Callable[[list[Record]], None],
        data_dirs: Iterable[str] = (),
        flag_dirs: Iterable[str] = (),
        on_arrival: Callable[[Arrival], None] | None = None,
        on_flag: Callable[[FlagEvent], None] | None = None,
        reactor=None,
        clock: Callable[[], float] = time.time,
        mode: str = "auto",
        poll_interval: float = 1.0,
        backlog: float = DEFAULT_BACKLOG,
        unfinished_after: float = DEFAULT_PERIOD,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.logs = SummaryLogs(
            on_records,
            reactor=reactor,
            clock=clock,
            backlog=backlog,
            unfinished_after=unfinished_after,
        )
        self.watchers = [
            TreeWatcher(
                summary_roots,
                self.logs.file_event,
                reactor=reactor,
                mode=mode,
                poll_interval=poll_interval,
            )
        ]
        self.data: DataFiles | None = None
        self.flags: FlagFiles | None = None
        data_dirs, flag_dirs = list(data_dirs), list(flag_dirs)
        if data_dirs:
            self.data = DataFiles(on_arrival or (lambda a: None), reactor=reactor)
            self.watchers.append(
                TreeWatcher(
                    data_dirs,
                    self.data.file_event,
                    reactor=reactor,
                    mode=mode,
                    modify=False,
                    poll_interval=poll_interval,
                )
            )
        if flag_dirs:
            self.flags = FlagFiles(on_flag or (lambda f: None), clock=clock)
            self.watchers.append(
                TreeWatcher(
                    flag_dirs,
                    self.flags.file_event,
                    reactor=reactor,
                    mode=mode,
                    modify=False,
                    poll_interval=poll_interval,
                )
            )

    def start(self) -> None:
        for w in self.watchers:
            w.start()

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()
        self.logs.follower.stop()

    def tick(self, now: float | None = None) -> list[Run]:
        return self.logs.tick(now)

    def status(self) -> dict[str, object]:
        return {
            "mode": [w.mode for w in self.watchers],
            "watch": [w.counters for w in self.watchers],
            "logs": self.logs.status(),
            "data": None if self.data is None else self.data.counters,
            "flags": None if self.flags is None else self.flags.counters,
        }


__all__ = [
    "ARRIVED",
    "CHANGED",
    "Arrival",
    "DataFiles",
    "DataflowIngest",
    "FlagEvent",
    "FlagFiles",
    "SummaryLogs",
    "is_summary_log",
]
