"""The `weather` node: serves a directory of daily station files and follows
the newest file as rows are appended.

The directory is followed by `obsmesh.follow` (inotify, every read and listing
in a thread). Station files often live on a network share, where inotify sees
nothing other hosts write: the directory is also rescanned every `RESCAN`
seconds, and looked at every `poll` seconds where there is no inotify at all.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import numpy as np
from twisted.python.failure import Failure

from nodes.base import DataNode
from nodes.weather import files
from obsmesh.follow import Followed, Follower

TIMELINE = "station"
LIVE_SLACK = 10.0  # rows up to this many seconds older than the node's start are still news
RESCAN = 2.0  # seconds between full looks at the directory besides inotify (network shares)


class _File:
    """Where the parse of one file stands (touched by one thread at a time: the
    follower reads and parses a file in one thread, then hands it to the reactor)."""

    def __init__(self) -> None:
        self.columns: list[str] | None = None
        self.line = 1  # the number of the next line
        self.last_time = float("-inf")


Parsed = list[tuple[list[str], files.Rows]]  # (columns, rows) for each header's stretch


def parse(state: _File, data: bytes) -> Parsed:
    """Parse complete lines (worker thread). A header line starts the file again
    (it was replaced, rotated or truncated and is read from its start)."""
    text = data.decode("utf-8", errors="replace")
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    out: Parsed = []
    run: list[str] = []
    first = state.line

    def flush() -> None:
        if run and state.columns is not None:
            out.append((state.columns, files.parse_rows(state.columns, run, first)))

    for line in lines if text else []:
        if state.columns is None or line.split(",", 1)[0].strip() == "time":
            flush()
            state.columns = files.parse_header(line)
            state.line, run = 1, []
            first = 2
        else:
            run.append(line)
        state.line += 1
    flush()
    return out


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
        self.states: dict[str, _File] = {}
        self.follower = self._follower()

    def setup(self) -> None:
        for column, (units, description) in files.KNOWN.items():
            self.declare(
                column,
                TIMELINE,
                units=units,
                description=description,
                precision=files.PRECISION.get(column),
            )

    def _follower(self) -> Follower:
        follower = Follower(
            self.reactor, self.accept, transform=self._parse, on_failure=self._bad_file
        )
        follower.watch(
            [self.directory],
            accept=self._in_window,
            on_root=self._listed,
            poll_interval=float(self.options["poll"]),
            rescan_every=max(RESCAN, float(self.options["poll"])),
        )
        return follower

    def _in_window(self, path: str) -> bool:
        """A day file of the window (the last `days` days); files may appear, grow
        or be back-filled at any time (a station catching up after an outage)."""
        if os.path.dirname(path) != os.path.abspath(self.directory):
            return False
        day = files.file_date(os.path.basename(path))
        first = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date() - dt.timedelta(
            days=int(self.options["days"])
        )
        if day is None or day < first:
            return False
        self.states.setdefault(path, _File())
        return True

    def _parse(self, path: str, data: bytes) -> Parsed:
        return parse(self.states[path], data)

    def accept(self, followed: Followed, parsed: Parsed) -> None:
        """Turn parsed rows into samples (reactor thread)."""
        for columns, rows in parsed:
            self._accept(followed.path, columns, rows)

    def _accept(self, path: str, columns: list[str], rows: files.Rows) -> None:
        """Rows stamped before the node started are archive: stored, not published live."""
        name = os.path.basename(path)
        state = self.states[path]
        for c in columns[1:]:
            if c not in self.fields:
                self.declare(c, TIMELINE, description=f"column {c} of the station files")
        for err in rows.errors:
            self.count("bad_rows")
            self.last_error = f"{name} {err}"
            self.log.warn("{file}: {err}", file=path, err=err)
        keep = [i for i, t in enumerate(rows.t) if t > state.last_time]
        if not keep:
            return
        t = np.array([rows.t[i] for i in keep])
        cols = {c: np.array([v[i] for i in keep]) for c, v in rows.values.items()}
        recent = t >= self.started - LIVE_SLACK
        if not recent.all():
            self.append(TIMELINE, t[~recent], {c: v[~recent] for c, v in cols.items()}, live=False)
        if recent.any():
            self.append(TIMELINE, t[recent], {c: v[recent] for c, v in cols.items()})
        state.last_time = float(t.max())
        self.count("rows", len(t))
        self.source("station", connected=True, last_sample=state.last_time, file=name)

    def _listed(self, _root: str, error: str | None) -> None:
        if error is not None:
            self.log.warn("cannot list {dir}: {error}", dir=self.directory, error=error)
            self.source("directory", connected=False, error=error, path=self.directory)
            return
        if "directory" in self.sources:
            # listed again: whatever kept it from being read is over
            self.log.info("{dir} can be listed again", dir=self.directory)
        self.source("directory", connected=True, error=None, path=self.directory)

    def _bad_file(self, followed: Followed, failure: Failure) -> None:
        failure.trap(files.FormatError)
        self.count("bad_files")
        self.source(
            os.path.basename(followed.path), connected=False, error=failure.getErrorMessage()
        )

    async def start(self) -> None:
        self.follower.start()

    async def stop(self) -> None:
        self.follower.stop()


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> WeatherNode:
    return WeatherNode(name, mesh, options)
