"""How the units' readings and pings become fields, columns and timelines, pure.

Each unit has two timelines: `<unit>` for its readings rows (measurement time,
from the unit's clock) and `<unit>.ping` for its alive pings (server receive
time). Fields are named `<unit>.<name>`.

Which samples are stored (implausible times, replays, rows out of order) is
decided by timecheck.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nodes.co2.pings import Ping
from nodes.co2.readings import N_CO2, N_EXTRA, Reading

# name -> (units, description)
READINGS = {
    "temperature": ("°C", "temperature"),
    "flash_count": ("", "flash count"),
    **{f"co2_{i}": ("ppm", f"CO2 reading {i} of {N_CO2}") for i in range(1, N_CO2 + 1)},
    "co2_mean": ("ppm", f"mean of the valid CO2 readings of a row (of {N_CO2})"),
}
EXTRA = {
    f"extra_{i}": ("", f"raw sensor field {i} of {N_EXTRA} (newer firmware)")
    for i in range(1, N_EXTRA + 1)
}
# decimal places the units resolve, for display (values are stored as read)
PRECISION = {
    "temperature": 1,
    "co2_mean": 1,
    "rssi_dbm": 0,
    **{f"co2_{i}": 0 for i in range(1, 11)},
}
PINGS = {
    "rssi_dbm": ("dBm", "modem signal strength at the last ping"),
    "rssi_raw": ("", "modem signal quality (AT+CSQ rssi, 99 = unknown)"),
    "ber_raw": ("", "modem bit error rate (AT+CSQ ber, 99 = unknown)"),
}


def readings_timeline(unit_id: str) -> str:
    return unit_id


def ping_timeline(unit_id: str) -> str:
    return f"{unit_id}.ping"


def field(unit_id: str, name: str) -> str:
    return f"{unit_id}.{name}"


def _nan(value: float | int | None) -> float:
    return math.nan if value is None else float(value)


def readings_columns(
    unit_id: str, rows: Sequence[Reading]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The time column and one column per field of `rows` (extra fields only
    when a row has them; NaN in the rows without)."""
    n = len(rows)
    t = np.fromiter((r.t for r in rows), np.float64, n)
    co2 = np.array([r.co2 for r in rows], dtype=np.float64).reshape(n, N_CO2)
    cols = {
        field(unit_id, "temperature"): np.fromiter((r.temperature for r in rows), np.float64, n),
        field(unit_id, "flash_count"): np.fromiter(
            (_nan(r.flash_count) for r in rows), np.float64, n
        ),
        **{field(unit_id, f"co2_{i + 1}"): co2[:, i] for i in range(N_CO2)},
        field(unit_id, "co2_mean"): np.fromiter((r.co2_mean for r in rows), np.float64, n),
    }
    if any(r.extra for r in rows):
        extra = np.array([r.extra or (math.nan,) * N_EXTRA for r in rows], dtype=np.float64)
        for i in range(N_EXTRA):
            cols[field(unit_id, f"extra_{i + 1}")] = extra[:, i]
    return t, cols


def ping_columns(unit_id: str, pings: Sequence[Ping]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    n = len(pings)
    t = np.fromiter((p.t for p in pings), np.float64, n)
    return t, {
        field(unit_id, k): np.fromiter((_nan(getattr(p, k)) for p in pings), np.float64, n)
        for k in PINGS
    }
