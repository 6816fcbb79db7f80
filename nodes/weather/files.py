"""The weather-station file format, as pure functions.

One UTF-8 CSV file a day, named `YYYY-MM-DD.csv` (UTC date), whose first line
is a header naming the columns. `time` is required: UNIX seconds or an ISO 8601
UTC time. The known columns and their units:

    temperature (°C), pressure (hPa), humidity (%), wind_speed (m/s),
    wind_direction (°)

Any other column is served too, as a number without units. An empty cell is a
missing value. A malformed row is reported and skipped; the rows around it are
kept.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field

FILE_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.csv$")
KNOWN = {
    "temperature": ("°C", "air temperature"),
    "pressure": ("hPa", "air pressure"),
    "humidity": ("%", "relative humidity"),
    "wind_speed": ("m/s", "wind speed"),
    "wind_direction": ("°", "direction the wind blows from"),
}
# decimal places a station resolves, for display (values are stored as read)
PRECISION = {"temperature": 1, "pressure": 1, "humidity": 1, "wind_speed": 1, "wind_direction": 0}
COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class FormatError(ValueError):
    pass


def file_date(name: str) -> dt.date | None:
    m = FILE_NAME.match(name)
    if not m:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def file_name(day: dt.date) -> str:
    return f"{day.isoformat()}.csv"


def parse_header(line: str) -> list[str]:
    columns = [c.strip() for c in line.strip().split(",")]
    if not columns or columns[0] != "time":
        raise FormatError(f"the header must start with 'time', got {line.strip()[:80]!r}")
    bad = [c for c in columns[1:] if not COLUMN.match(c)]
    if bad or len(set(columns)) != len(columns):
        raise FormatError(f"bad or repeated column names in header: {bad or columns}")
    return columns


def parse_time(text: str) -> float:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FormatError(f"time {text[:40]!r} is neither UNIX seconds nor ISO 8601") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        value = stamp.timestamp()
    if not math.isfinite(value) or value <= 0:
        raise FormatError(f"time {text[:40]!r} is not a positive UNIX time")
    return value


@dataclass
class Rows:
    t: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def parse_rows(columns: list[str], lines: list[str], first_line_number: int = 2) -> Rows:
    out = Rows(values={c: [] for c in columns[1:]})
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split(",")
        if len(cells) != len(columns):
            out.errors.append(
                f"line {first_line_number + i}: {len(cells)} cells for {len(columns)} columns"
            )
            continue
        try:
            t = parse_time(cells[0])
            row = [float(c) if c.strip() else math.nan for c in cells[1:]]
        except (FormatError, ValueError) as exc:
            out.errors.append(f"line {first_line_number + i}: {exc}")
            continue
        out.t.append(t)
        for c, v in zip(columns[1:], row, strict=True):
            out.values[c].append(v)
    return out


def format_row(t: float, values: dict[str, float], columns: list[str]) -> str:
    cells = [f"{t:.3f}"] + [
        "" if not math.isfinite(values[c]) else f"{values[c]:.3f}" for c in columns[1:]
    ]
    return ",".join(cells) + "\n"
