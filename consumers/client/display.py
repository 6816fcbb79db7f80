"""Values as people read them: at their field's precision, with units, bytes
scaled (kB, MB, GB), UNIX times as times. Pure; used by `obsmesh tail` and
`obsmesh fields`. Files and JSON written for programs are never rounded.

A field's metadata (`get_fields`) may carry `precision`, the decimal places its
instrument resolves. Without it a value shows five significant digits, and
never fewer than its integer part has (1012.8 hPa stays 1012.8).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any

# Unit spellings of older or foreign nodes, as they are printed.
UNIT_NAMES = {
    "degC": "°C",
    "deg_C": "°C",
    "celsius": "°C",
    "degF": "°F",
    "deg": "°",
    "degree": "°",
    "degrees": "°",
}
# Units that name an absolute time ("s since 1970-01-01", UDUNITS style).
TIME_UNITS = re.compile(r"^\s*(s|sec|seconds?)\s+since\s+1970-01-01", re.IGNORECASE)
BYTE_UNITS = ("B", "B/s")
NO_SPACE = ("%", "°")
SIGNIFICANT = 5
MAX_DECIMALS = 6
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def natural_key(name: str) -> list:
    """Sort key putting "co2_2" before "co2_10" (digit runs compare as numbers)."""
    return [
        (0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", name) if p
    ]


def unit_text(units: Any) -> str:
    """A field's units as printed ("degC" -> "°C")."""
    if not isinstance(units, str):
        return ""
    return UNIT_NAMES.get(units.strip(), units.strip())


def is_time(meta: Mapping[str, Any] | None) -> bool:
    """True for a number field whose values are UNIX times."""
    return (
        bool(meta) and isinstance(meta.get("units"), str) and bool(TIME_UNITS.match(meta["units"]))
    )


def decimals(v: float, precision: Any = None) -> int:
    """Decimal places to show `v` with: the field's precision, else enough
    for SIGNIFICANT digits (none beyond MAX_DECIMALS)."""
    if isinstance(precision, int) and not isinstance(precision, bool) and 0 <= precision <= 12:
        return precision
    if v == 0 or not math.isfinite(v):
        return 0
    return max(0, min(MAX_DECIMALS, SIGNIFICANT - 1 - math.floor(math.log10(abs(v)))))


def number_text(v: float, precision: Any = None) -> str:
    d = decimals(v, precision)
    text = f"{v:.{d}f}"
    if precision is None and "." in text:  # auto precision: no trailing zeros
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def scaled_bytes(v: float, units: str) -> str:
    """Bytes with an SI prefix, three significant digits: 23_312_345_678 B -> "23.3 GB"."""
    for factor, prefix in _PREFIXES:
        x = v / factor
        if abs(x) >= 1:
            return f"{x:.{2 if abs(x) < 10 else 1 if abs(x) < 100 else 0}f} {prefix}{units}"
    return f"{v:.0f} {units}"


def value_text(v: Any, meta: Mapping[str, Any] | None = None) -> str:
    """One value of a field as people read it, with its units."""
    meta = meta or {}
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if not isinstance(v, int | float):
        return str(v)
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if is_time(meta):
        try:
            return _dt.datetime.fromtimestamp(v, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return number_text(v, 0)
    units = unit_text(meta.get("units"))
    if units in BYTE_UNITS:
        return scaled_bytes(v, units)
    text = number_text(v, meta.get("precision"))
    if not units:
        return text
    return f"{text}{units}" if units in NO_SPACE else f"{text} {units}"
