"""Hardware sensors from /sys/class/hwmon and /sys/class/thermal.

Only sensors the machine exposes are read; a missing or unreadable file is
skipped, never replaced by an invented value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# hwmon input files: kind prefix -> (scale to SI-ish unit, units)
_HWMON = {
    "temp": (1e-3, "°C"),
    "fan": (1.0, "RPM"),
    "in": (1e-3, "V"),
    "power": (1e-6, "W"),
    "curr": (1e-3, "A"),
}
_INPUT = re.compile(r"^(temp|fan|in|power|curr)(\d+)_input$")
_SAFE = re.compile(r"[^a-zA-Z0-9_\-]+")


@dataclass(frozen=True)
class Reading:
    field: str
    value: float
    units: str
    description: str


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _slug(text: str) -> str:
    return _SAFE.sub("_", text.strip()).strip("_").lower() or "unnamed"


def hwmon(root: str = "/sys/class/hwmon") -> list[Reading]:
    out = []
    try:
        chips = sorted(os.listdir(root))
    except OSError:
        return out
    for chip in chips:
        base = os.path.join(root, chip)
        name = _slug(_read(os.path.join(base, "name")) or chip)
        try:
            files = sorted(os.listdir(base))
        except OSError:
            continue
        for fname in files:
            m = _INPUT.match(fname)
            if not m:
                continue
            raw = _read(os.path.join(base, fname))
            try:
                value = float(raw) if raw is not None else None
            except ValueError:
                value = None
            if value is None:
                continue
            kind, idx = m.groups()
            scale, units = _HWMON[kind]
            label = _read(os.path.join(base, f"{kind}{idx}_label")) or f"{kind}{idx}"
            out.append(
                Reading(f"hwmon.{name}.{_slug(label)}", value * scale, units, f"{name} {label}")
            )
    return out


def thermal(root: str = "/sys/class/thermal") -> list[Reading]:
    out = []
    try:
        zones = sorted(z for z in os.listdir(root) if z.startswith("thermal_zone"))
    except OSError:
        return out
    for zone in zones:
        raw = _read(os.path.join(root, zone, "temp"))
        try:
            value = float(raw) * 1e-3 if raw is not None else None
        except ValueError:
            value = None
        if value is None:
            continue
        kind = _slug(_read(os.path.join(root, zone, "type")) or zone)
        out.append(Reading(f"thermal.{zone}.{kind}", value, "°C", f"thermal zone {zone} ({kind})"))
    return out
