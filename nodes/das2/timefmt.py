"""das2 time text and time units, pure functions.

Times are carried internally as integer microseconds since 1970-01-01 UTC
("us1970", leap seconds ignored as das2 does). das2 time units are floats
relative to an epoch: `us2000`, `t2000`, `t1970`, `mj1958`.
"""

from __future__ import annotations

import datetime as _dt
import re

import numpy as np

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
EPOCH_2000_US = 946_684_800 * US_PER_S
EPOCH_1958_US = -378_691_200 * US_PER_S

# unit name -> (epoch in us1970, microseconds per unit)
TIME_UNITS: dict[str, tuple[int, int]] = {
    "us2000": (EPOCH_2000_US, 1),
    "t2000": (EPOCH_2000_US, US_PER_S),
    "t1970": (0, US_PER_S),
    "mj1958": (EPOCH_1958_US, US_PER_DAY),
}
DEFAULT_TIME_UNITS = "us2000"

# Years that the text forms and datetime64[us] both carry without surprises.
MIN_YEAR, MAX_YEAR = 1000, 9999


class TimeTextError(ValueError):
    """A time text that is not a das2 time."""


_TIME_RE = re.compile(
    r"(?P<y>\d{4})-(?:(?P<mo>\d{2})-(?P<d>\d{2})|(?P<doy>\d{3}))"
    r"(?:[T ](?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?)?"
    r"(?:Z| UTC)?"
)


def parse_time_text(text: str) -> int:
    """One time text (`YYYY-MM-DD[THH[:MM[:SS[.f]]]][Z]` or `YYYY-DOY[...]`) to us1970.

    Fractions finer than a microsecond are truncated, as das2 readers do.
    """
    m = _TIME_RE.fullmatch(text.strip())
    if m is None:
        raise TimeTextError(f"not a time: {text[:40]!r}")
    year = int(m["y"])
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise TimeTextError(f"year out of range: {text[:40]!r}")
    try:
        if m["doy"] is not None:
            doy = int(m["doy"])
            if not 1 <= doy <= (366 if _is_leap(year) else 365):
                raise ValueError("day of year out of range")
            day = _dt.date(year, 1, 1).toordinal() + doy - 1
        else:
            day = _dt.date(year, int(m["mo"]), int(m["d"])).toordinal()
    except ValueError as exc:
        raise TimeTextError(f"not a calendar date: {text[:40]!r}") from exc
    hour, minute, second = (int(m[k]) if m[k] else 0 for k in ("h", "mi", "s"))
    # second 60 is a leap second; das2 ignores leap seconds, so it rolls over
    if hour > 23 or minute > 59 or second > 60:
        raise TimeTextError(f"time of day out of range: {text[:40]!r}")
    frac = int((m["f"] or "").ljust(6, "0")[:6])
    days_since_1970 = day - _ORDINAL_1970
    return days_since_1970 * US_PER_DAY + (hour * 3600 + minute * 60 + second) * US_PER_S + frac


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_ORDINAL_1970 = _dt.date(1970, 1, 1).toordinal()

# Characters numpy's datetime64 parser may see; anything else (time zone
# offsets, letters) goes to the strict per-value parser.
_FAST_CHARS = np.zeros(256, dtype=bool)
_FAST_CHARS[list(b"0123456789-:.T ")] = True


def parse_time_array(texts: np.ndarray) -> np.ndarray:
    """Fixed-width byte strings (dtype `S`) to int64 us1970; TimeTextError if any is bad."""
    stripped = np.char.strip(texts)
    stripped = np.char.rstrip(stripped, b"Z")
    raw = np.frombuffer(stripped.tobytes(), dtype=np.uint8)
    # NUL bytes are the padding of fixed-width `S` arrays, not content
    fast = stripped.size > 0 and bool(_FAST_CHARS[raw[raw != 0]].all())
    if fast:
        try:
            values = stripped.astype("U").astype("datetime64[us]")
        except ValueError:
            fast = False
        else:
            ints = values.astype(np.int64)
            if (ints == np.iinfo(np.int64).min).any():  # NaT: an empty text
                raise TimeTextError("empty time text")
            lo, hi = _YEAR_BOUNDS
            if ints.size and (ints.min() < lo or ints.max() >= hi):
                raise TimeTextError("year out of range")
            return ints
    out = np.empty(texts.shape, dtype=np.int64)
    flat_in = texts.reshape(-1)
    flat_out = out.reshape(-1)
    for i, t in enumerate(flat_in):
        try:
            flat_out[i] = parse_time_text(t.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise TimeTextError("time text is not ASCII") from exc
    return out


_YEAR_BOUNDS = (
    (_dt.date(MIN_YEAR, 1, 1).toordinal() - _ORDINAL_1970) * US_PER_DAY,
    (_dt.date(MAX_YEAR, 12, 31).toordinal() + 1 - _ORDINAL_1970) * US_PER_DAY,
)


def time_units(units: str) -> str:
    """The units a time plane's values are given in: its own if a time unit, else us2000."""
    return units if units in TIME_UNITS else DEFAULT_TIME_UNITS


def us1970_to_units(us: np.ndarray, units: str) -> np.ndarray:
    """int64 us1970 to float64 values in a time unit."""
    epoch, scale = TIME_UNITS[units]
    shifted = us - epoch
    return shifted.astype(np.float64) if scale == 1 else shifted / float(scale)


def units_to_us1970(values: np.ndarray, units: str) -> np.ndarray:
    """float values in a time unit to int64 us1970 (nearest microsecond)."""
    epoch, scale = TIME_UNITS[units]
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        raise TimeTextError("a time value is not finite")
    us = np.rint(v * scale) + epoch
    lo, hi = _YEAR_BOUNDS
    if us.size and (us.min() < lo or us.max() >= hi):
        raise TimeTextError("a time value is outside the years 1000-9999")
    return us.astype(np.int64)


def seconds_per_unit(units: str) -> float | None:
    """Seconds in one unit of a time unit; None for units that are not times."""
    if units not in TIME_UNITS:
        return None
    return TIME_UNITS[units][1] / US_PER_S


def unix_to_units(t: float, units: str) -> float:
    """UNIX seconds to a value in a time unit (for bin origins)."""
    epoch, scale = TIME_UNITS[units]
    return (t * US_PER_S - epoch) / scale


def format_time_array(us: np.ndarray, width: int) -> np.ndarray:
    """int64 us1970 to ISO text of at most `width` characters (dtype `U`), rounded to
    the finest precision that fits: microseconds down to whole days."""
    if width >= 20:
        digits = min(6, max(0, width - 20))
        keep = 20 + digits if digits else 19
        step = 10 ** (6 - digits)
    elif width >= 19:
        keep, step = 19, US_PER_S
    elif width >= 16:
        keep, step = 16, 60 * US_PER_S
    elif width >= 13:
        keep, step = 13, 3600 * US_PER_S
    elif width >= 10:
        keep, step = 10, US_PER_DAY
    else:
        raise TimeTextError(f"a time field of {width} characters cannot hold a date")
    rounded = ((us + step // 2) // step) * step
    text = np.datetime_as_string(rounded.astype("datetime64[us]"), unit="us")
    return text.astype(f"U{keep}")


def format_time(us: int) -> str:
    """One us1970 as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (the form readers receive)."""
    text = format_time_array(np.array([us], dtype=np.int64), 26)[0]
    return f"{text}Z"
