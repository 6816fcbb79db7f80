"""Incremental parser of SuperDARN data-flow summary logs. Pure: no I/O, no clock.

A summary log holds one block per script run, appended line by line while the
run goes on (the scripts `tee --append` each line):

    ################################################################################
    <blank>
    Executing /home/radar/data_flow/borealis/rsync_to_nas on sasbore206 for sas
    20240101 00:00:05 UTC
    data_flow: On branch main, last commit: \t\t3f2a9c1 2023-12-12 14:03:22 -0600
    Transferring from: /data/borealis_data
    Transferring to NAS: /borealis_nfs/borealis_data
    Successfully transferred: /data/borealis_data/20231231.2200.00.sas.0.rawacf.h5
    Transfer failed: /data/borealis_data/20231231.2200.00.sas.1.rawacf.h5
    Finished rsync_to_nas. End time: 20240101 00:00:31 UTC

`SummaryParser` is fed the bytes of one log file as they arrive, in chunks of
any size. It emits `RunStart` when a block's header is complete, one
`FileLine` per file status line, and one `Run` when a block ends: with its
`Finished` line, or as died when the same script starts again for the same
radar (the scripts are singletons per radar), or when `expire` is called with
a clock and the block has been open longer than the limit.

A header seen again with the same host and start time is the same run read a
second time (its log was rewritten and is being read from its start): the
open block is replaced by the one being re-read, never ended as died. So the
old block's end is decided at the new header's time line.

Strict but tolerant: the known line forms are parsed exactly; anything else is
an unknown line, kept (bounded) and counted, never an exception. Lines from
blocks of different radars may interleave (several runs appending to one
file); file lines are attributed by the radar code in the file name.

Records are immutable: `RunStart` and `FileLine` (one per file line, so many)
are named tuples, which are several times cheaper to make than frozen
dataclasses; `Run` is a frozen dataclass.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from nodes.dataflow.names import (
    DataName,
    clock_seconds,
    day_start,
    is_radar_code,
    parse_data_name,
    stage_of,
)

OK = "ok"
FAILED = "failed"
INFO = "info"

# The text before ": <path>" on a per-file line, and what it means.
FILE_STATUSES: dict[str, str] = {
    # rsync_to_nas, rsync_to_campus
    "Successfully transferred": OK,
    "Transfer failed": FAILED,
    "check_timestamp failed": FAILED,
    "unknown file type": FAILED,
    # plot_antennas_iq, convert_on_campus (and the older convert_and_restructure)
    "Successfully converted": OK,
    "Failed to generate iq plot from": FAILED,
    "File failed to convert": FAILED,
    "File failed to convert to dmap": FAILED,
    "Resizing file": INFO,
    "Not converting": INFO,
    # distribute_borealis_data
    "File distribution successful": OK,
    "File distribution failed": FAILED,
    "DMAP file failed bzip2 test": FAILED,
    "DMAP integrity test failed": FAILED,
    "Array file failed h5stat test": FAILED,
    # archive_iq_plots
    "Successfully archived": OK,
    "Failed to archive": FAILED,
}

# Context lines "<label>: <value>" and which run attribute they fill.
CONTEXT_LABELS: dict[str, str] = {
    "Transferring from": "source",
    "Distributing from": "source",
    "Conversion directory": "source",
    "Archiving from": "source",
    "Transferring to": "destination",
    "Transferring to NAS": "destination",
    "Transferring to Site-Linux": "destination",
    "Distributing to": "destination",
    "IQ plot directory": "destination",
    "Archiving to": "destination",
    "NAS": "destination",
    "Mirror": "destination",
    "Institutions": "destination",
    "Placing following files in": "destination",
}

# Exact "nothing to do" lines of the scripts; a looser pattern catches variants.
NOTHING_LINES = frozenset(
    {
        "No files to be transferred.",
        "No antenna iq files found to plot.",
        "No dmap files found to be transferred.",
        "No array files found to be transferred.",
        "Not transferring any dmap files",
        "No files to be converted.",
        "No dmap files found to be distributed.",
        "No array files found to be distributed.",
        "No plots to archive.",
    }
)
_NOTHING_RE = re.compile(
    r"^(?:No|Not) [\w .-]*\b(?:files?|plots?)\b[\w .-]*\.?$|^Not converting files for \w+\.?$"
)

# Lines from ssh/rsync when the far side cannot be reached.
_CONNECTION_RE = re.compile(
    r"Connection (?:timed out|refused|reset|closed)|connection unexpectedly closed"
    r"|Could not resolve hostname|No route to host|Network is unreachable"
    r"|Host key verification failed|Permission denied \(publickey|Broken pipe"
    r"|rsync error: (?:error in socket IO|unexplained error|timeout)",
    re.IGNORECASE,
)

_EXECUTING_RE = re.compile(r"^Executing (\S+) on (\S*) for ?(\S*)$")
_FINISHED_RE = re.compile(r"^Finished (\S+?)\.? End time: (\d{8}) (\d\d):(\d\d):(\d\d) UTC$")
_GIT_RE = re.compile(
    r"^([\w][\w.-]*): (?:On branch (\S+))?, last commit:\s*(?:([0-9a-fA-F]{4,40})\b\s*(.*))?$"
)

SEPARATOR_MIN = 20  # a line of only '#' at least this long separates blocks (the scripts print 80)
MAX_LINE = 64 * 1024  # longer lines are cut here and counted; the rest up to the newline is dropped


def parse_utc_line(line: str) -> float | None:
    """`YYYYMMDD HH:MM:SS UTC` (date --utc "+%Y%m%d %H:%M:%S UTC") to UNIX seconds."""
    if (
        len(line) != 21
        or line[8] != " "
        or line[11] != ":"
        or line[14] != ":"
        or line[17:] != " UTC"
    ):
        return None
    day = day_start(line[:8])
    sec = clock_seconds(line[9:11], line[12:14], line[15:17])
    if day is None or sec is None:
        return None
    return day + sec


class GitInfo(NamedTuple):
    """One `<repo>: On branch <b>, last commit: <hash> <date>` line."""

    repo: str
    branch: str | None
    commit: str | None
    date: str | None


class RunStart(NamedTuple):
    """A block's header is complete: a run has started (it may still be going)."""

    source: str  # the log the parser was given (its path)
    script: str  # stage name (basename of the script, without .sh)
    host: str
    radar: str
    start: float | None
    line: int  # line number of the Executing line in this parser's input


class FileLine(NamedTuple):
    """One per-file status line of a run."""

    source: str
    script: str | None  # None for a file line outside any block
    radar: str | None  # the run's radar
    run_start: float | None
    status: str  # the text before the colon, as written
    outcome: str  # OK, FAILED or INFO
    path: str  # may be empty: distribute_borealis_data prints an empty one on integrity failure
    name: DataName | None  # what the file name says, if it is a data-file name
    line: int

    @property
    def basename(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Run:
    """A run of one script for one radar, finished or not."""

    source: str
    script: str
    host: str
    radar: str
    start: float | None
    end: float | None  # from the Finished line; None unless state == "finished"
    state: str  # "finished", "died" (no Finished line) or "running" (a snapshot)
    reason: str  # why a run is considered died: "superseded", "expired", "closed"
    files: tuple[FileLine, ...]
    files_ok: int
    files_failed: int
    files_info: int
    nothing: tuple[str, ...]  # the "nothing to do" lines
    connection_errors: tuple[str, ...]
    git: tuple[GitInfo, ...]
    context: tuple[tuple[str, str], ...]  # (label, value) in order
    unknown: tuple[str, ...]  # kept unknown lines (bounded)
    unknown_count: int
    first_line: int
    last_line: int
    seen_at: float | None  # clock value when the header was fed, if the caller gave one

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def nothing_to_do(self) -> bool:
        return not self.files and bool(self.nothing)

    @property
    def source_dir(self) -> str | None:
        return _first(self.context, "source")

    @property
    def destination(self) -> str | None:
        return _first(self.context, "destination")


def _first(context: tuple[tuple[str, str], ...], role: str) -> str | None:
    for label, value in context:
        if CONTEXT_LABELS.get(label) == role and value:
            return value
    return None


Record = RunStart | FileLine | Run


@dataclass
class ParserStats:
    """Counters of what the parser has seen (all monotonically increasing)."""

    bytes: int = 0
    lines: int = 0
    blank: int = 0
    blocks: int = 0
    reread: int = 0  # headers of a run still open, read again (a rewritten log)
    reread_file_lines: int = 0  # file lines of the replaced blocks (read again after them)
    finished: int = 0
    died: int = 0
    file_lines: int = 0
    unknown: int = 0  # lines of no known form (inside or outside blocks)
    orphan: int = 0  # known lines that belong to no open block
    malformed: int = 0  # lines that look like a known form but do not parse
    too_long: int = 0
    nul: int = 0  # lines that carried NUL bytes (holes left by a truncating writer)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Block:
    script: str
    host: str
    radar: str
    first_line: int
    seen_at: float | None
    start: float | None = None
    last_line: int = 0
    files: list[FileLine] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    info: int = 0
    nothing: list[str] = field(default_factory=list)
    connection: list[str] = field(default_factory=list)
    git: list[GitInfo] = field(default_factory=list)
    context: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unknown_count: int = 0


class SummaryParser:
    """Parser state for one summary-log file, fed incrementally.

    `source` is stamped on every record (normally the log's path). `keep_unknown`
    bounds the unknown lines kept per run and outside runs; all are counted.
    """

    def __init__(
        self, source: str = "", *, keep_unknown: int = 100, max_line: int = MAX_LINE
    ) -> None:
        self.source = source
        self.stats = ParserStats()
        self.orphans: deque[str] = deque(maxlen=keep_unknown)  # unknown lines outside blocks
        self._keep = keep_unknown
        self._max_line = max_line
        self._partial = b""
        self._skip_to_newline = False
        self._line_no = 0
        self._open: dict[tuple[str, str], _Block] = {}
        # an open block whose header came again: died, or the same run re-read?
        # Decided by the new header's time line (see _time).
        self._superseded: dict[tuple[str, str], _Block] = {}
        self._current: _Block | None = None
        self._between = True  # after a separator and before the next Executing line
        self._now: float | None = None
        self._out: list[Record] = []

    # ---- feeding ---------------------------------------------------------

    def feed(self, data: bytes, now: float | None = None) -> list[Record]:
        """Feed the next bytes of the file; returns the records they complete.

        A trailing partial line is held until its newline arrives (or `flush`).
        `now` (UNIX seconds) is remembered as `seen_at` of blocks started here.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("feed() takes bytes")
        data = bytes(data)
        self.stats.bytes += len(data)
        self._now = now
        out: list[Record] = []
        self._out = out
        try:
            if self._partial:
                data = self._partial + data
                self._partial = b""
            if self._skip_to_newline:
                # the tail of an over-long line already counted: drop it up to its newline
                nl = data.find(b"\n")
                if nl < 0:
                    return out
                data = data[nl + 1 :]
                self._skip_to_newline = False
            cut = data.rfind(b"\n")
            if cut >= 0:
                # decode whole lines only, so a multi-byte character is never split
                lines = data[: cut + 1].decode("utf-8", "replace").split("\n")
                lines.pop()  # the empty string after the final newline
                handle = self._line
                for line in lines:
                    handle(line)
                data = data[cut + 1 :]
            if len(data) > self._max_line:
                # a line longer than any real one: keep its head as one line, drop the rest
                self.stats.too_long += 1
                self._skip_to_newline = True
                self._line(data[: self._max_line].decode("utf-8", "replace"))
            else:
                self._partial = data
        finally:
            self._out = []
        return out

    def flush(self, now: float | None = None) -> list[Record]:
        """The file ended without a final newline: parse the held partial line."""
        partial, self._partial = self._partial, b""
        self._skip_to_newline = False
        if not partial:
            return []
        return self.feed_lines([partial.decode("utf-8", "replace")], now)

    def feed_lines(self, lines: Iterable[str], now: float | None = None) -> list[Record]:
        """Feed complete lines (without their newlines); returns the records they complete."""
        self._now = now
        self._out = out = []
        handle = self._line
        for line in lines:
            handle(line)
        self._out = []
        return out

    # ---- per line ----------------------------------------------------------

    def _line(self, raw: str) -> None:
        self._line_no += 1
        stats = self.stats
        stats.lines += 1
        if len(raw) > self._max_line:
            stats.too_long += 1
            raw = raw[: self._max_line]
        if "\x00" in raw:
            stats.nul += 1
            raw = raw.replace("\x00", "")
        line = raw.strip()
        if not line:
            stats.blank += 1
            return
        first = line[0]
        if first == "#":
            if len(line) >= SEPARATOR_MIN and line.count("#") == len(line):
                self._between = True
                return
            self._unknown(line)
            return
        head, sep, rest = line.partition(": ")
        if not sep and line[-1] == ":":
            head, sep, rest = line[:-1], ":", ""  # "<status>:" with an empty path
        if sep:
            outcome = FILE_STATUSES.get(head)
            if outcome is not None:
                self._file_line(head, outcome, rest.strip())
                return
            role = CONTEXT_LABELS.get(head)
            if role is not None:
                self._context(head, rest.strip())
                return
            if first == "F" and head.startswith("Finished "):
                self._finished(line)
                return
            if ", last commit:" in line:
                self._git(line)
                return
        if first == "E" and line.startswith("Executing "):
            self._executing(line)
            return
        if first.isdigit() and len(line) == 21:
            t = parse_utc_line(line)
            if t is not None:
                self._time(t, line)
                return
        if line in NOTHING_LINES or (first == "N" and _NOTHING_RE.match(line)):
            block = self._target()
            if block is None:
                self._orphan(line)
            else:
                block.nothing.append(line)
                block.last_line = self._line_no
            return
        if _CONNECTION_RE.search(line):
            block = self._target()
            if block is None:
                self._orphan(line)
            elif len(block.connection) < self._keep:
                block.connection.append(line)
                block.last_line = self._line_no
            return
        self._unknown(line)

    def _target(self) -> _Block | None:
        """The block a line without other evidence belongs to."""
        return None if self._between else self._current

    def _unknown(self, line: str) -> None:
        self.stats.unknown += 1
        block = self._target()
        if block is None:
            self.orphans.append(line)
            return
        block.unknown_count += 1
        block.last_line = self._line_no
        if len(block.unknown) < self._keep:
            block.unknown.append(line)

    def _orphan(self, line: str) -> None:
        self.stats.orphan += 1
        self.orphans.append(line)

    def _executing(self, line: str) -> None:
        m = _EXECUTING_RE.match(line)
        if m is None:
            self.stats.malformed += 1
            self._unknown(line)
            return
        script = stage_of(m.group(1))
        host = m.group(2)
        radar = m.group(3).lower()
        if not is_radar_code(radar):
            # RADAR_ID unset or garbled: keep the run, under an explicit name
            radar = "unknown"
        key = (script, radar)
        self._end_superseded(key)  # a third header before the second's time line
        old = self._open.pop(key, None)
        if old is not None:
            # the scripts run one at a time per radar: a new start means the old run
            # died, unless the new header turns out to be the same run read again
            self._superseded[key] = old
            if self._current is old:
                self._current = None
        block = _Block(script, host, radar, self._line_no, self._now, last_line=self._line_no)
        self._open[key] = block
        self._current = block
        self._between = False
        self.stats.blocks += 1

    def _time(self, t: float, line: str) -> None:
        block = self._current
        if block is None or block.start is not None:
            # interleaved runs: the newest open block still waiting for its time line
            block = next((b for b in reversed(self._open.values()) if b.start is None), None)
        if block is None:
            self._unknown(line)
            return
        block.start = t
        block.last_line = self._line_no
        old = self._superseded.pop((block.script, block.radar), None)
        if old is not None:
            if old.host == block.host and (old.start == t or (old.start is None and not old.files)):
                # the same run read again from its header: the new block replaces it
                self.stats.reread += 1
                self.stats.reread_file_lines += len(old.files)
                if old.start is not None:
                    return  # its RunStart was emitted already
            else:
                self._emit_run(old, "died", "superseded", None)
        self._out.append(
            RunStart(self.source, block.script, block.host, block.radar, t, block.first_line)
        )

    def _git(self, line: str) -> None:
        m = _GIT_RE.match(line)
        if m is None:
            self.stats.malformed += 1
            self._unknown(line)
            return
        block = self._target()
        if block is None:
            self._orphan(line)
            return
        date = (m.group(4) or "").strip() or None
        block.git.append(GitInfo(m.group(1), m.group(2), m.group(3), date))
        block.last_line = self._line_no

    def _context(self, label: str, value: str) -> None:
        block = self._target()
        if block is None:
            self._orphan(f"{label}: {value}")
            return
        if len(block.context) < self._keep:
            block.context.append((label, value))
        block.last_line = self._line_no

    def _file_line(self, status: str, outcome: str, path: str) -> None:
        self.stats.file_lines += 1
        base = path.rsplit("/", 1)[-1]
        name = parse_data_name(base) if base else None
        block = None
        if name is not None:
            current = self._current
            if current is not None and current.radar == name.radar:
                block = current
            else:
                # interleaved runs: the file name's radar tells whose line it is
                for b in reversed(self._open.values()):
                    if b.radar == name.radar:
                        block = b
                        break
        if block is None:
            block = self._target()
        if block is None:
            self.stats.orphan += 1
            self._out.append(
                FileLine(self.source, None, None, None, status, outcome, path, name, self._line_no)
            )
            return
        rec = FileLine(
            self.source,
            block.script,
            block.radar,
            block.start,
            status,
            outcome,
            path,
            name,
            self._line_no,
        )
        block.files.append(rec)
        if outcome == OK:
            block.ok += 1
        elif outcome == FAILED:
            block.failed += 1
        else:
            block.info += 1
        block.last_line = self._line_no
        self._touch(block)
        self._out.append(rec)

    def _finished(self, line: str) -> None:
        m = _FINISHED_RE.match(line)
        end: float | None = None
        if m is not None:
            day = day_start(m.group(2))
            sec = clock_seconds(m.group(3), m.group(4), m.group(5))
            end = None if day is None or sec is None else day + sec
        if m is None or end is None:
            self.stats.malformed += 1
            self._unknown(line)
            return
        script = stage_of(m.group(1))
        block = (
            self._current if self._current is not None and self._current.script == script else None
        )
        if block is None:
            candidates = [b for b in self._open.values() if b.script == script]
            if candidates:
                block = max(candidates, key=lambda b: b.last_line)
        if block is None:
            self._orphan(line)
            return
        del self._open[(block.script, block.radar)]
        self._end_superseded((block.script, block.radar))
        block.last_line = self._line_no
        self._emit_run(block, "finished", "", end)

    def _touch(self, block: _Block) -> None:
        if self._current is not block and not self._between:
            self._current = block

    # ---- ending runs ---------------------------------------------------------

    def _end_superseded(self, key: tuple[str, str]) -> None:
        old = self._superseded.pop(key, None)
        if old is not None:
            self._emit_run(old, "died", "superseded", None)

    def _emit_run(self, block: _Block, state: str, reason: str, end: float | None) -> None:
        if state == "finished":
            self.stats.finished += 1
        else:
            self.stats.died += 1
        if self._current is block:
            rest = list(self._open.values())
            self._current = max(rest, key=lambda b: b.last_line) if rest else None
            if self._current is None:
                self._between = True
        self._out.append(_run_of(self.source, block, state, reason, end))

    def expire(self, now: float, limit: float) -> list[Run]:
        """Runs open for longer than `limit` seconds at clock `now`, ended as died.

        A block's age counts from its start time, or from the clock value given
        to `feed` when its header arrived if it has no time line yet.
        """
        out: list[Record] = []
        self._out = out
        for key, block in list(self._open.items()):
            since = block.start if block.start is not None else block.seen_at
            if since is not None and now - since > limit:
                del self._open[key]
                self._end_superseded(key)
                self._emit_run(block, "died", "expired", None)
        self._out = []
        return [r for r in out if isinstance(r, Run)]

    def close_all(self) -> list[Run]:
        """End every open block as died (the log will not be read any further)."""
        out: list[Record] = []
        self._out = out
        for key in list(self._superseded):
            self._end_superseded(key)
        for key in list(self._open):
            self._emit_run(self._open.pop(key), "died", "closed", None)
        self._out = []
        return [r for r in out if isinstance(r, Run)]

    def running(self) -> list[Run]:
        """Snapshots of the open blocks (state "running"), oldest first."""
        return [_run_of(self.source, b, "running", "", None) for b in self._open.values()]

    @property
    def open_count(self) -> int:
        return len(self._open)


def _run_of(source: str, b: _Block, state: str, reason: str, end: float | None) -> Run:
    return Run(
        source=source,
        script=b.script,
        host=b.host,
        radar=b.radar,
        start=b.start,
        end=end,
        state=state,
        reason=reason,
        files=tuple(b.files),
        files_ok=b.ok,
        files_failed=b.failed,
        files_info=b.info,
        nothing=tuple(b.nothing),
        connection_errors=tuple(b.connection),
        git=tuple(b.git),
        context=tuple(b.context),
        unknown=tuple(b.unknown),
        unknown_count=b.unknown_count,
        first_line=b.first_line,
        last_line=b.last_line,
        seen_at=b.seen_at,
    )


def parse_text(text: str, source: str = "") -> tuple[list[Record], SummaryParser]:
    """Parse a whole log at once (tests, tools). Open blocks stay open in the parser."""
    parser = SummaryParser(source)
    records = parser.feed(text.encode("utf-8"))
    records += parser.flush()
    return records, parser
