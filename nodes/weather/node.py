"""The `weather` node: serves a directory of daily station files and follows
the newest file as rows are appended.

The directory is watched by a cheap stat poll (every `poll` seconds): it works
the same on local disks and on the network shares station files often live on,
where inotify sees nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import numpy as np
from twisted.internet import task, threads

from nodes.base import DataNode
from nodes.weather import files

TIMELINE = "station"
LIVE_SLACK = 10.0  # rows up to this many seconds older than the node's start are still news


class _Follower:
    """Reads what was appended to one file since the last read (whole lines only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.columns: list[str] | None = None
        self.line = 1
        self.last_time = float("-inf")

    def read_lines(self) -> list[str]:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: read again, skipping rows already taken
            self.offset, self.rest, self.columns, self.line = 0, b"", None, 1
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.rest + data
        complete, _, self.rest = data.rpartition(b"\n")
        if not complete and not data.endswith(b"\n"):
            return []
        return complete.decode("utf-8", errors="replace").split("\n")


class WeatherNode(DataNode):
    kind = "weather"
    history_from_own_files = True  # rebuilt from its files at start
    description = "weather station archive (one file a day) with the newest file followed live"
    plots = ("temperature", "pressure", "humidity", "wind_speed")

    def __init__(
        self, name: str, settings: dict[str, Any], options: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(name, settings, **kw)
        self.directory = options["dir"]
        self.options = options
        self.followers: dict[str, _Follower] = {}
        self._reading: set[str] = set()  # files with a read in flight
        self._scanning = False  # a directory listing in flight
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.reactor

    def setup(self) -> None:
        for column, (units, description) in files.KNOWN.items():
            self.declare(
                column,
                TIMELINE,
                units=units,
                description=description,
                precision=files.PRECISION.get(column),
            )

    def _scan(self, first: dt.date) -> list[tuple[str, int]]:
        """The day files from `first` on, with their sizes, oldest first (worker
        thread: a slow network share must not stall the reactor). Raises
        OSError when the directory cannot be listed."""
        out = []
        for name in os.listdir(self.directory):
            day = files.file_date(name)
            if day is None or day < first:
                continue
            path = os.path.join(self.directory, name)
            try:
                out.append((day, path, os.stat(path).st_size))
            except OSError:
                continue  # gone between the listing and the stat
        return [(path, size) for _day, path, size in sorted(out)]

    @staticmethod
    def parse(follower: _Follower, lines: list[str]) -> files.Rows | None:
        """Parse complete lines of one file (pure: safe in a worker thread)."""
        if follower.columns is None and lines:
            follower.columns = files.parse_header(lines[0])
            lines = lines[1:]
            follower.line += 1
        if follower.columns is None:
            return None
        rows = files.parse_rows(follower.columns, lines, follower.line)
        follower.line += len(lines)
        return rows

    def accept(self, follower: _Follower, rows: files.Rows | None) -> None:
        """Turn parsed rows into samples (reactor thread). Rows stamped before the
        node started are archive: stored, not published live."""
        name = os.path.basename(follower.path)
        for c in (follower.columns or [])[1:]:
            if c not in self.fields:
                self.declare(c, TIMELINE, description=f"column {c} of the station files")
        if rows is None:
            return
        for err in rows.errors:
            self.count("bad_rows")
            self.last_error = f"{name} {err}"
            self.log.warn("{file}: {err}", file=follower.path, err=err)
        keep = [i for i, t in enumerate(rows.t) if t > follower.last_time]
        if not keep:
            return
        t = np.array([rows.t[i] for i in keep])
        cols = {c: np.array([v[i] for i in keep]) for c, v in rows.values.items()}
        recent = t >= self.started - LIVE_SLACK
        if not recent.all():
            self.append(TIMELINE, t[~recent], {c: v[~recent] for c, v in cols.items()}, live=False)
        if recent.any():
            self.append(TIMELINE, t[recent], {c: v[recent] for c, v in cols.items()})
        follower.last_time = float(t.max())
        self.count("rows", len(t))
        self.source("station", connected=True, last_sample=follower.last_time, file=name)

    def _read(self, follower: _Follower) -> files.Rows | None:
        """Read and parse what a file gained (worker thread)."""
        return self.parse(follower, follower.read_lines())

    def poll(self) -> None:
        """Follow every day file in the window: files may appear, grow or be
        back-filled at any time (a station catching up after an outage)."""
        if self._scanning:
            return
        first = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date() - dt.timedelta(
            days=int(self.options["days"])
        )
        self._scanning = True
        d = threads.deferToThread(self._scan, first)
        d.addCallbacks(self._scanned, self._unlisted)
        d.addBoth(self._scan_done)

    def _scan_done(self, result: Any) -> Any:
        self._scanning = False
        return result

    def _unlisted(self, failure) -> None:
        failure.trap(OSError)
        error = failure.getErrorMessage()
        if self.sources.get("directory", {}).get("error") != error:
            self.log.warn("cannot list {dir}: {error}", dir=self.directory, error=error)
            self.source("directory", connected=False, error=error, path=self.directory)

    def _scanned(self, found: list[tuple[str, int]]) -> None:
        directory = self.sources.get("directory")
        if directory is None or directory.get("connected") is not True:
            # listed (again): whatever kept it from being read is over
            if directory is not None:
                self.log.info("{dir} can be listed again", dir=self.directory)
            self.source("directory", connected=True, error=None, path=self.directory)
        for path, size in found:
            follower = self.followers.get(path)
            if follower is None:
                follower = self.followers[path] = _Follower(path)
            if path in self._reading or size == follower.offset:
                continue
            # Reads run in a thread, one per file at a time: a week of rows must not stall the reactor.
            self._reading.add(path)
            d = threads.deferToThread(self._read, follower)
            d.addCallback(lambda rows, f=follower: self.accept(f, rows))
            d.addErrback(self._bad_file, follower)
            d.addBoth(lambda _, p=path: self._reading.discard(p))

    def _bad_file(self, failure, follower: _Follower) -> None:
        failure.trap(files.FormatError)
        self.count("bad_files")
        self.source(
            os.path.basename(follower.path), connected=False, error=failure.getErrorMessage()
        )

    async def start(self) -> None:
        self._loop.start(float(self.options["poll"]), now=True)

    async def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> WeatherNode:
    return WeatherNode(name, mesh, options)
