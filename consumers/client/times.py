"""Times and durations as people write them, turned into the contract's numbers.

Pure functions, no I/O. Accepted time forms:

- numbers: UNIX seconds; `<= 0` means that many seconds before now (the
  contract's rule, kept relative so the node resolves it with its own clock);
- `datetime` (naive ones are UTC), `numpy.datetime64`, `pandas.Timestamp`;
- strings: `"now"`, a number (`"1700000000"`, `"-3600"`), a duration meaning
  "that long ago" (`"1h"`, `"-1h"`, `"1h30m"`, `"500ms"`, `"2d"`), or an ISO 8601
  date/time (`"2024-05-01"`, `"2024-05-01T12:00:00Z"`; naive ones are UTC).
"""

from __future__ import annotations

import datetime as _dt
import math
import re

from consumers.client.errors import InvalidArgument

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|sec|min|hr|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MAX_SECONDS = 1e12  # beyond year 33000: surely a mistake (milliseconds or nanoseconds)


def parse_duration(text: str, name: str = "duration") -> float:
    """`"1h30m"` → 5400.0; a positive number of seconds, or InvalidArgument."""
    if not isinstance(text, str):
        raise InvalidArgument(
            f"{name} must be a string like '1h' or '30s', got {type(text).__name__}"
        )
    s = text.strip().replace(" ", "")
    if not s:
        raise InvalidArgument(f"{name} is empty")
    if _NUMBER.match(s):
        value = float(s)
    else:
        pos = 0
        value = 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNITS[m.group(2).lower()]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise InvalidArgument(
                f"cannot read {name} {text!r}: use a number of seconds or units ms, s, m, h, d, w "
                f"(e.g. '90s', '1h30m')"
            )
    if not math.isfinite(value) or value > _MAX_SECONDS:
        raise InvalidArgument(f"{name} {text!r} is out of range")
    return value


def parse_time(value: object, name: str = "time") -> float:
    """One time argument as contract seconds: absolute UNIX seconds (> 0) or a
    relative offset (<= 0, seconds before now)."""
    if isinstance(value, bool) or value is None:
        raise InvalidArgument(f"{name} must be a time, got {value!r}")
    if isinstance(value, int | float):
        return _checked_number(float(value), name, value)
    if isinstance(value, _dt.datetime):
        return _from_datetime(value, name)
    if isinstance(value, _dt.date):
        return _from_datetime(_dt.datetime(value.year, value.month, value.day), name)
    if isinstance(value, str):
        return _from_string(value, name)
    numpy_value = _from_numpy(value, name)
    if numpy_value is not None:
        return numpy_value
    raise InvalidArgument(
        f"{name} must be UNIX seconds, a datetime, an ISO 8601 string or a duration like '1h', "
        f"got {type(value).__name__}"
    )


def _checked_number(x: float, name: str, original: object) -> float:
    if not math.isfinite(x):
        raise InvalidArgument(f"{name} must be finite, got {original!r}")
    if abs(x) > _MAX_SECONDS:
        raise InvalidArgument(
            f"{name} {original!r} is out of range for UNIX seconds (milliseconds?)"
        )
    return x


def _from_datetime(value: _dt.datetime, name: str) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    try:
        seconds = value.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidArgument(
            f"{name} {value!r} cannot be converted to UNIX seconds: {exc}"
        ) from None
    if seconds <= 0:
        raise InvalidArgument(f"{name} {value.isoformat()} is not after 1970-01-01")
    return seconds


def _from_string(text: str, name: str) -> float:
    s = text.strip()
    if not s:
        raise InvalidArgument(f"{name} is an empty string")
    if s.lower() == "now":
        return 0.0
    if _NUMBER.match(s):
        return _checked_number(float(s), name, text)
    body = s[1:] if s[0] == "-" else s
    if body and body[0].isdigit() and body[-1:].isalpha() and not _looks_like_date(body):
        try:
            return -parse_duration(body, name)
        except InvalidArgument:
            pass
    iso = s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s
    try:
        parsed = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidArgument(
            f"cannot read {name} {text!r}: give UNIX seconds, 'now', a duration ago like '1h' or "
            f"'30s', or an ISO 8601 time like '2024-05-01T12:00:00Z'"
        ) from None
    return _from_datetime(parsed, name)


def _looks_like_date(s: str) -> bool:
    return len(s) >= 8 and s[4:5] == "-"


def _from_numpy(value: object, name: str) -> float | None:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidArgument(f"{name} is NaT")
        seconds = float(value.astype("datetime64[ns]").astype(np.int64)) / 1e9
        if seconds <= 0:
            raise InvalidArgument(f"{name} {value} is not after 1970-01-01")
        return seconds
    if isinstance(value, np.integer | np.floating) and not isinstance(value, np.bool_):
        return _checked_number(float(value), name, value)
    return None


def absolute(t: float, now: float) -> float:
    """A contract time as absolute UNIX seconds, given the current time."""
    return now + t if t <= 0 else t


def parse_interval(start: object, end: object, now: float) -> tuple[float, float]:
    """Both ends parsed; InvalidArgument when start is after end."""
    t0 = parse_time(start, "start")
    t1 = parse_time(end, "end")
    a0, a1 = absolute(t0, now), absolute(t1, now)
    if a0 > a1:
        raise InvalidArgument(
            f"start ({_show(a0)}) is after end ({_show(a1)}); times <= 0 and durations like '1h' count back from now"
        )
    return t0, t1


def parse_stride(value: object) -> float | None:
    """`min_stride`: None, positive seconds, or a duration string like '1m'."""
    if value is None:
        return None
    if isinstance(value, str):
        seconds = parse_duration(value, "min_stride")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgument(
            f"min_stride must be seconds or a duration like '1m', got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"min_stride must be a positive number of seconds, got {value!r}")
    return seconds


def _show(t: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return repr(t)
