"""Readings files (`readings-NNNN.tsv`) of the units, parsed row by row, pure.

No header; one row per measurement, tab separated:

    hardware id, nickname, UTC date, UTC time, temperature (C), flash count,
    ten CO2 readings (ppm)                                   -> 16 columns
    ... and (newer firmware) five more raw sensor fields     -> 21 columns

A value the firmware could not read is written as `None` (a missing sensor
value, kept as NaN). Rows dated 1970 come from a unit whose clock was reset:
they are flagged (`clock_error`), never given a time. Every other malformed
line is a `LineError` naming its byte offset and why; a bad line never stops
the lines after it.

`ReadingsParser` is incremental: feed it the bytes appended to a file, get the
rows of the complete lines; a partial last line waits for the next feed.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from dataclasses import dataclass, field

BASE_COLUMNS = 16
EXTENDED_COLUMNS = 21
N_CO2 = 10
N_EXTRA = EXTENDED_COLUMNS - BASE_COLUMNS
MAX_LINE = 1024  # a 21-column row is about 150 bytes
CLOCK_ERROR_YEAR = 1970

_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,12})?([eE][-+]?[0-9]{1,3})?", re.ASCII)
_INTEGER = re.compile(r"-?[0-9]{1,9}", re.ASCII)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})", re.ASCII)
_MISSING = "None"


class ReadingError(ValueError):
    """A line that is not a readings row; the message says why."""


@dataclass(frozen=True)
class Reading:
    unit_id: str
    nickname: str
    t: float  # UNIX s (UTC); NaN when clock_error
    temperature: float  # deg C; NaN when the sensor gave nothing
    flash_count: int | None
    co2: tuple[float, ...]  # ten readings, ppm; NaN for a failed reading
    co2_mean: float  # mean of the finite readings; NaN when there are none
    extra: tuple[float, ...]  # the five extra raw fields, or () for the old layout
    clock_error: bool = False  # dated 1970: the unit's clock had been reset
    offset: int = -1  # byte offset of the line in its file


@dataclass(frozen=True)
class LineError:
    offset: int  # byte offset of the line in its file
    reason: str
    preview: str  # the start of the line, escaped, for logs


@dataclass
class Batch:
    """What one `feed` produced."""

    rows: list[Reading] = field(default_factory=list)  # good rows, in file order
    clock_errors: list[Reading] = field(default_factory=list)  # rows dated 1970
    errors: list[LineError] = field(default_factory=list)
    complete_until: int = 0  # file offset just past the last complete line

    def extend(self, later: Batch) -> None:
        """Append what a later feed of the same parser produced."""
        self.rows += later.rows
        self.clock_errors += later.clock_errors
        self.errors += later.errors
        self.complete_until = later.complete_until


def _number(text: str, name: str) -> float:
    if text == _MISSING:
        return math.nan
    if not _NUMBER.fullmatch(text):
        raise ReadingError(f"{name} is not a number: {text[:20]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ReadingError(f"{name} out of range")
    return value


def _timestamp(date: str, time: str) -> tuple[float, bool]:
    dm, tm = _DATE.fullmatch(date), _TIME.fullmatch(time)
    if not dm:
        raise ReadingError(f"date is not YYYY-MM-DD: {date[:20]!r}")
    if not tm:
        raise ReadingError(f"time is not HH:MM:SS: {time[:20]!r}")
    try:
        stamp = dt.datetime(*map(int, dm.groups()), *map(int, tm.groups()), tzinfo=dt.UTC)
    except ValueError as exc:
        raise ReadingError(f"no such date or time: {date} {time} ({exc})") from None
    if stamp.year == CLOCK_ERROR_YEAR:
        return math.nan, True
    return stamp.timestamp(), False


# One expression for a well-formed row: most rows take this path. It accepts a
# subset of what `_parse_checked` accepts (exponents of at most two digits, so
# every value is finite) and gives the same result; anything else goes through
# `_parse_checked`, which is the definition and says what is wrong.
_N = r"(?:-?[0-9]{1,9}(?:\.[0-9]{1,12})?(?:[eE][-+]?[0-9]{1,2})?|None)"
_ROW = re.compile(
    r"([^\t]+)\t([^\t]*)\t([0-9]{4}-[0-9]{2}-[0-9]{2})\t([0-9]{2}):([0-9]{2}):([0-9]{2})"
    rf"\t({_N})\t(-?[0-9]{{1,9}}|None)((?:\t{_N}){{10}})((?:\t{_N}){{5}})?",
    re.ASCII,
)


def _value(text: str) -> float:
    return math.nan if text == _MISSING else float(text)


@functools.lru_cache(maxsize=4096)
def _midnight(date: str) -> float | None:
    """UNIX time of a date's midnight (UTC); None if there is no such date."""
    try:
        return dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _parse_fast(text: str, unit_id: str | None, offset: int) -> Reading | None:
    m = _ROW.fullmatch(text)
    if m is None or not text.replace("\t", " ").isprintable():
        return None
    hw_id, nickname, date, hh, mm, ss, temp, flashes, co2s, extras = m.groups()
    if unit_id is not None and hw_id != unit_id:
        return None
    midnight = _midnight(date)
    h, mi, sec = int(hh), int(mm), int(ss)
    if midnight is None or h > 23 or mi > 59 or sec > 59:
        return None
    clock_error = date.startswith(f"{CLOCK_ERROR_YEAR}-")
    co2 = tuple(map(_value, co2s[1:].split("\t")))
    finite = [v for v in co2 if not math.isnan(v)]
    return Reading(
        unit_id=hw_id,
        nickname=nickname,
        t=math.nan if clock_error else midnight + h * 3600 + mi * 60 + sec,
        temperature=_value(temp),
        flash_count=None if flashes == _MISSING else int(flashes),
        co2=co2,
        co2_mean=math.fsum(finite) / len(finite) if finite else math.nan,
        extra=tuple(map(_value, extras[1:].split("\t"))) if extras else (),
        clock_error=clock_error,
        offset=offset,
    )


def parse_line(line: bytes, unit_id: str | None = None, offset: int = -1) -> Reading:
    """Parse one line (without its newline; a trailing CR is allowed).

    `unit_id`, when given, must equal the row's hardware id: a unit's files
    hold its own rows only. Raises ReadingError saying what is wrong.
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise ReadingError(f"line longer than {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadingError("line is not UTF-8 text") from None
    return _parse_fast(text, unit_id, offset) or _parse_checked(text, unit_id, offset)


def _parse_checked(text: str, unit_id: str | None, offset: int) -> Reading:
    cols = text.split("\t")
    if len(cols) not in (BASE_COLUMNS, EXTENDED_COLUMNS):
        raise ReadingError(f"{len(cols)} columns, expected {BASE_COLUMNS} or {EXTENDED_COLUMNS}")
    if not all(c.isprintable() for c in cols):
        raise ReadingError("control characters in line")
    hw_id, nickname, date, time, temp, flashes = cols[:6]
    if not hw_id:
        raise ReadingError("empty hardware id")
    if unit_id is not None and hw_id != unit_id:
        raise ReadingError(f"row of another unit: {hw_id[:40]!r}")
    t, clock_error = _timestamp(date, time)
    if flashes == _MISSING:
        flash_count = None
    elif _INTEGER.fullmatch(flashes):
        flash_count = int(flashes)
    else:
        raise ReadingError(f"flash count is not an integer: {flashes[:20]!r}")
    co2 = tuple(_number(c, f"co2 reading {i + 1}") for i, c in enumerate(cols[6:16]))
    finite = [v for v in co2 if not math.isnan(v)]
    extra = tuple(_number(c, f"extra field {i + 1}") for i, c in enumerate(cols[16:]))
    return Reading(
        unit_id=hw_id,
        nickname=nickname,
        t=t,
        temperature=_number(temp, "temperature"),
        flash_count=flash_count,
        co2=co2,
        co2_mean=math.fsum(finite) / len(finite) if finite else math.nan,
        extra=extra,
        clock_error=clock_error,
        offset=offset,
    )


def _preview(line: bytes) -> str:
    return line[:60].decode("ascii", "backslashreplace").encode("unicode_escape").decode("ascii")


class ReadingsParser:
    """Incremental parser of one readings file.

    `offset` is the file offset of the first byte that will be fed. After each
    `feed`, `complete_until` is the offset just past the last complete line:
    everything before it has been turned into rows or errors.
    """

    def __init__(self, unit_id: str | None = None, offset: int = 0) -> None:
        self.unit_id = unit_id
        self.complete_until = offset
        self._partial = bytearray()
        self._discarding = False  # inside an over-long line, skipping to its end

    @property
    def pending(self) -> int:
        """Bytes of an incomplete last line held back."""
        return len(self._partial)

    def feed(self, data: bytes) -> Batch:
        batch = Batch()
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            self._finish_line(bytes(self._partial) + data[start:nl], batch)
            self.complete_until += len(self._partial) + (nl - start) + 1
            self._partial.clear()
            start = nl + 1
        rest = data[start:]
        if self._discarding:
            self.complete_until += len(rest)  # bytes of a line already reported
        else:
            self._partial += rest
            if len(self._partial) > MAX_LINE:
                batch.errors.append(
                    LineError(
                        self.complete_until,
                        f"line longer than {MAX_LINE} bytes",
                        _preview(bytes(self._partial)),
                    )
                )
                self.complete_until += len(self._partial)
                self._partial.clear()
                self._discarding = True
        batch.complete_until = self.complete_until
        return batch

    def _finish_line(self, line: bytes, batch: Batch) -> None:
        offset = self.complete_until
        if self._discarding:  # the end of an over-long line, already reported
            self._discarding = False
            return
        if not line.strip(b" \r"):
            return  # blank lines carry nothing and are not errors
        try:
            row = parse_line(line, self.unit_id, offset)
        except ReadingError as exc:
            batch.errors.append(LineError(offset, str(exc), _preview(line)))
            return
        (batch.clock_errors if row.clock_error else batch.rows).append(row)
