"""HAPI times: the restricted ISO 8601 a client sends, and the one the server writes.

Incoming (`start`, `stop`, `time.min`, `time.max`): `yyyy-mm-ddThh:mm:ss.sssZ` or
`yyyy-dddThh:mm:ss.sssZ`, truncated anywhere (`1999Z`, `1999-01Z`,
`2017-01-15T23Z`), the trailing `Z` optional (UTC either way), up to nine
fraction digits, hour 24 only as `24:00:00` (the next midnight) and second 60 (a
leap second, which UNIX time folds onto the next second).

Outgoing: every time of every dataset as `yyyy-mm-ddThh:mm:ss.ffffffZ` (27
characters). Microseconds are the precision the mesh's times have: they are
float64 UNIX seconds, whose resolution in this era is about 0.24 µs, so a
seventh digit would be noise and a coarser one would round real stamps. The
formatter is vectorised integer arithmetic (calendar from days, then digits),
several times faster than `numpy.datetime_as_string`.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re

import numpy as np

TIME_LENGTH = 27  # len("2026-01-01T00:00:00.000000Z")
US = 1_000_000
MIN_YEAR, MAX_YEAR = 1, 9999
# UNIX seconds of 0001-01-01 and of 10000-01-01: the four-digit years HAPI can write.
EARLIEST = -62135596800.0
LATEST = 253402300800.0

_TIME = re.compile(
    r"(?P<y>\d{4})"
    r"(?:-(?:(?P<doy>\d{3})|(?P<m>\d{2})(?:-(?P<d>\d{2}))?))?"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?)?"
    r"Z?",
    re.ASCII,  # \d is 0-9 only: no other script's digits
)


class BadTime(ValueError):
    """Text that is not a HAPI time (the message says why, without echoing it)."""


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(text: str) -> float:
    """One HAPI time to UNIX seconds; BadTime for anything else."""
    if not isinstance(text, str) or len(text) > 40:
        raise BadTime("not a time")
    m = _TIME.fullmatch(text)
    if m is None:
        raise BadTime("not a restricted ISO 8601 time (yyyy-mm-ddThh:mm:ss.sssZ or yyyy-ddd...)")
    g = m.groupdict()
    year = int(g["y"])
    if year < MIN_YEAR:
        raise BadTime("year out of range")
    if g["H"] is not None and g["d"] is None and g["doy"] is None:
        raise BadTime("a time of day needs a full date")
    if g["doy"] is not None:
        doy = int(g["doy"])
        if not 1 <= doy <= (366 if _leap(year) else 365):
            raise BadTime("day of year out of range")
        days = days_from_civil(year, 1, 1) + doy - 1
    else:
        month = int(g["m"] or 1)
        day = int(g["d"] or 1)
        if not 1 <= month <= 12:
            raise BadTime("month out of range")
        last = [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        if not 1 <= day <= last:
            raise BadTime("day out of range")
        days = days_from_civil(year, month, day)
    hour, minute, second = int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0)
    frac = g["f"] or ""
    if hour > 24 or minute > 59 or second > 60:
        raise BadTime("time of day out of range")
    if hour == 24 and (minute or second or frac.strip("0")):
        raise BadTime("hour 24 is only 24:00:00")
    ns = int(frac.ljust(9, "0")) if frac else 0
    whole = days * 86400 + hour * 3600 + minute * 60 + second
    return whole + ns / 1e9


def format_times(t: np.ndarray) -> np.ndarray:
    """UNIX seconds (float64) to an (n,) array of 27-byte `yyyy-mm-ddThh:mm:ss.ffffffZ`.

    Times are rounded to the microsecond; years outside 0001..9999 are clipped
    to its ends (the server never asks a node for times outside them). Every
    part is looked up in a table of its texts (dates of the days the block spans,
    the 86,400 times of day, the thousand milli- and microsecond digits) and
    written into one field of a record per time: a few array lookups per row,
    no per-digit arithmetic."""
    t = np.asarray(t, dtype=np.float64)
    out = np.empty(t.shape[0], dtype=_RECORD)
    if t.shape[0] == 0:
        return out.view(f"S{TIME_LENGTH}")
    us = np.rint(np.clip(t, EARLIEST, LATEST - 1e-3) * US).astype(np.int64)
    days = us // (86400 * US)
    rest = us - days * (86400 * US)
    secs = rest // US
    micro = rest - secs * US
    milli = micro // 1000
    first, last = int(days.min()), int(days.max())
    if last - first < 4 * t.shape[0] + 1000:  # the usual block: a table of its days
        out["date"] = _dates(np.arange(first, last + 1))[days - first]
    else:  # times scattered over the centuries: each row's own date
        out["date"] = _dates(days)
    out["T"] = b"T"
    out["clock"] = _clock()[secs]
    out["dot"] = b"."
    out["milli"] = _THOUSAND[milli]
    out["micro"] = _THOUSAND[micro - milli * 1000]
    out["Z"] = b"Z"
    return out.view(f"S{TIME_LENGTH}")


_RECORD = np.dtype(
    [
        ("date", "S10"),
        ("T", "S1"),
        ("clock", "S8"),
        ("dot", "S1"),
        ("milli", "S3"),
        ("micro", "S3"),
        ("Z", "S1"),
    ]
)


def _dates(days: np.ndarray) -> np.ndarray:
    """`yyyy-mm-dd` (S10) of days since 1970 (Hinnant's civil_from_days, vectorised)."""
    z = days.astype(np.int64) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    out = np.empty((days.shape[0], 10), dtype=np.uint8)
    centuries = year // 100
    out[:, 0:2] = _HUNDRED[centuries]
    out[:, 2:4] = _HUNDRED[year - centuries * 100]
    out[:, 4] = out[:, 7] = ord("-")
    out[:, 5:7] = _HUNDRED[month]
    out[:, 8:10] = _HUNDRED[day]
    return out.view("S10").ravel()


# "00".."99" as (100, 2) bytes, "000".."999" as S3; `hh:mm:ss` (S8) of every second of a day.
_HUNDRED = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)
_THOUSAND = np.array([f"{i:03d}".encode() for i in range(1000)], dtype="S3")
_CLOCK: list[np.ndarray] = []


def _clock() -> np.ndarray:
    if not _CLOCK:
        _CLOCK.append(
            np.array(
                [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}".encode() for s in range(86400)],
                dtype="S8",
            )
        )
    return _CLOCK[0]


def iso(t: float) -> str:
    """One time, as the data stream writes it."""
    return format_times(np.array([t]))[0].decode("ascii")


def duration(seconds: float) -> str:
    """An ISO 8601 duration (`PT1S`, `PT0.2S`, `PT600S`) for a cadence in seconds."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration is a positive number of seconds")
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"PT{text if text != '0' else '0.000001'}S"


_DURATION = re.compile(
    r"P(?:(?P<D>\d+(?:\.\d+)?)D)?(?:T(?:(?P<H>\d+(?:\.\d+)?)H)?(?:(?P<M>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<S>\d+(?:\.\d+)?)S)?)?",
    re.ASCII,
)


def parse_seconds(text: str) -> float:
    """A positive number of seconds or an ISO 8601 duration without years or months
    (`60`, `0.5`, `PT1M`, `P1D`); ValueError otherwise."""
    if not isinstance(text, str) or not text or len(text) > 40:
        raise ValueError("not a duration")
    m = _DURATION.fullmatch(text)
    if m is not None and text not in ("P", "PT") and not text.endswith("T"):
        g = m.groupdict()
        value = (
            float(g["D"] or 0) * 86400
            + float(g["H"] or 0) * 3600
            + float(g["M"] or 0) * 60
            + float(g["S"] or 0)
        )
    else:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds or an ISO 8601 duration") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value
