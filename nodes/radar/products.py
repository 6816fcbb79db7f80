"""Products derived from FITACF records: pure functions and a scan accumulator.

- `beam_product(record)`: one beam as a JSON-friendly dict (Python numbers and
  lists only, NaN/inf as None), echo arrays indexed by `slist`. A beam with no
  echoes gives empty arrays (it still counts in its scan).
- `ScanAccumulator`: groups beams by (stid, channel) into scans that start at
  `abs(scan) == 1` (several radars flag a new scan with -1); camping beams
  (-32768), sounding records (-2) and any other flag are not part of a scan.
  A scan is complete when the next one starts (or on `flush`), and is stamped
  with radar time, never the receiving computer's clock.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from obsmesh.wire import to_list

CAMPING = -32768
SOUNDING = -2
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_ECHO_ARRAYS = ("v", "p_l", "w_l", "gflg")


class ProductError(ValueError):
    """A record that decodes as DMAP but is not a usable FITACF beam."""


def radar_time(record: Mapping[str, Any]) -> float:
    """UNIX time of the record from its `time.*` fields (radar clock, UTC).

    `time.us` outside 0..999999 is ignored: old senders wrote it as int16, so it
    wrapped and its true value cannot be recovered."""
    try:
        yr, mo, dy, hr, mt, sc = (
            _int(record, f"time.{k}") for k in ("yr", "mo", "dy", "hr", "mt", "sc")
        )
        day = _dt.date(yr, mo, dy)
    except ValueError as exc:
        raise ProductError(f"bad record time: {exc}") from None
    if not (1970 <= yr <= 2200 and 0 <= hr <= 23 and 0 <= mt <= 59 and 0 <= sc <= 60):
        raise ProductError(f"bad record time {yr}-{mo}-{dy} {hr}:{mt}:{sc}")
    us = record.get("time.us", 0)
    us = int(us) if _is_int(us) and 0 <= us < 1_000_000 else 0
    return (day.toordinal() - _EPOCH_ORDINAL) * 86400 + hr * 3600 + mt * 60 + sc + us / 1e6


def beam_product(
    record: Mapping[str, Any], code: str | None = None, radar: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One beam for display and storage. `radar` (a radar table row as a dict)
    adds the radar's name and position."""
    nrang = _int(record, "nrang")
    if not 0 <= nrang <= 10000:
        raise ProductError(f"nrang {nrang} out of range")
    product: dict[str, Any] = {
        "time": radar_time(record),
        "stid": _int(record, "stid"),
        "code": code,
        "beam": _int(record, "bmnum"),
        "channel": _int(record, "channel", 0),
        "scan": _int(record, "scan"),
        "cp": _opt_int(record, "cp"),
        "tfreq": _opt_int(record, "tfreq"),
        "nrang": nrang,
        "frang": _opt_int(record, "frang"),
        "rsep": _opt_int(record, "rsep"),
        "noise": _opt_float(record, "noise.sky"),
        "nave": _opt_int(record, "nave"),
        "bmazm": _opt_float(record, "bmazm"),
        "xcf": bool(_opt_int(record, "xcf")),
    }
    if radar is not None:
        product.update(
            name=radar.get("name"),
            lat=radar.get("lat"),
            lon=radar.get("lon"),
            boresight=radar.get("boresight"),
        )
    slist = record.get("slist")
    if slist is None:
        n = 0
        echoes: dict[str, list] = {"slist": [], "v": [], "p_l": [], "w_l": [], "gflg": []}
        if product["xcf"]:
            echoes["elv"] = []
    else:
        slist = _array(slist, "slist")
        n = len(slist)
        if slist.dtype.kind not in "iu":
            raise ProductError("slist is not an integer array")
        gates = slist.tolist()  # (min/max of a short Python list: cheaper than numpy's reductions)
        if n and (min(gates) < 0 or max(gates) >= nrang):
            raise ProductError(f"slist has gates outside 0..{nrang - 1}")
        echoes = {"slist": gates}
        for name in _ECHO_ARRAYS:
            if name not in record:
                raise ProductError(f"record has slist but no {name}")
            echoes[name] = _echo_list(record[name], name, n)
        if "elv" in record:
            echoes["elv"] = _echo_list(record["elv"], "elv", n)
    ground = sum(map(bool, echoes["gflg"])) if n else 0
    product.update(echoes)
    product.update(echoes_total=n, echoes_ground=ground, echoes_ionospheric=n - ground)
    return product


class ScanAccumulator:
    """Per-(stid, channel) scan builder. `add(beam)` takes a `beam_product`
    and returns the scans it completed (usually none, sometimes one)."""

    def __init__(self, max_beams: int = 1024) -> None:
        self.max_beams = max_beams  # bounds memory if a radar never flags a scan start
        self._open: dict[tuple[int, int], dict[str, Any]] = {}
        self.ignored = 0  # camping, sounding, odd flags, beams before the first start

    def add(self, beam: Mapping[str, Any]) -> list[dict[str, Any]]:
        flag = beam["scan"]
        key = (beam["stid"], beam["channel"])
        if flag not in (-1, 0, 1):
            self.ignored += 1
            return []
        done: list[dict[str, Any]] = []
        scan = self._open.get(key)
        if abs(flag) == 1:
            if scan is not None:
                done.append(_finish(self._open.pop(key)))
            scan = self._open[key] = _start(beam)
        elif scan is None:
            self.ignored += 1  # joined mid-scan: this scan cannot be complete
            return done
        elif scan["beams"] >= self.max_beams:
            del self._open[key]
            self.ignored += scan["beams"] + 1
            return done
        _add(scan, beam)
        return done

    def flush(self, key: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Finish open scans now (end of a file, a radar gone silent)."""
        keys = list(self._open) if key is None else [key] if key in self._open else []
        return [_finish(self._open.pop(k)) for k in keys]

    def open_keys(self) -> list[tuple[int, int]]:
        return list(self._open)


def _start(beam: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "time": beam["time"],
        "end": beam["time"],
        "stid": beam["stid"],
        "code": beam.get("code"),
        "channel": beam["channel"],
        "scan_flag": beam["scan"],
        "beams": 0,
        "beam_numbers": [],
        "total": 0,
        "ionospheric": 0,
        "ground": 0,
        "noise": [],
        "tfreq": beam.get("tfreq"),
        **({"name": beam["name"]} if "name" in beam else {}),
    }


def _add(scan: dict[str, Any], beam: Mapping[str, Any]) -> None:
    scan["beams"] += 1
    scan["beam_numbers"].append(beam["beam"])
    scan["total"] += beam["echoes_total"]
    scan["ground"] += beam["echoes_ground"]
    scan["ionospheric"] += beam["echoes_ionospheric"]
    scan["end"] = max(scan["end"], beam["time"])
    if beam.get("noise") is not None:
        scan["noise"].append(beam["noise"])


def _finish(scan: dict[str, Any]) -> dict[str, Any]:
    beams = scan["beams"]
    noise = scan.pop("noise")
    scan["noise_mean"] = sum(noise) / len(noise) if noise else None
    for what in ("total", "ionospheric", "ground"):
        scan[f"mean_{what}"] = scan[what] / beams if beams else 0.0
    return scan


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _int(record: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = record.get(name, default)
    if value is None:
        raise ProductError(f"record has no {name}")
    if not _is_int(value):
        raise ProductError(f"{name} is not an integer: {value!r}")
    return int(value)


def _opt_int(record: Mapping[str, Any], name: str) -> int | None:
    value = record.get(name)
    return int(value) if _is_int(value) else None


def _opt_float(record: Mapping[str, Any], name: str) -> float | None:
    value = record.get(name)
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        value = float(value)
        return value if np.isfinite(value) else None
    return None


def _array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 1:
        raise ProductError(f"{name} is not a one-dimensional array")
    return value


def _echo_list(value: Any, name: str, n: int) -> list:
    arr = _array(value, name)
    if len(arr) != n:
        raise ProductError(f"{name} has {len(arr)} values for {n} gates")
    if arr.dtype.kind not in "iuf":
        raise ProductError(f"{name} is not numeric")
    return to_list(arr)
