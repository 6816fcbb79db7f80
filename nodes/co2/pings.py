"""Alive pings: validated values and their TSV line, pure.

The firmware posts `/ou/<id>/alive?site_code=&rssi_raw=&rssi_dbm=&ber_raw=`
(the signal values are absent when the modem gave none, and "None" when it
gave an empty reading). The old server wrote query values into its TSV files
unescaped, so a value with a tab or newline forged columns or rows; here every
text value is escaped (backslash, tab, newline, CR, other control characters).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from nodes.co2.errors import Rejected

TSV_COLUMNS = ("iso_utc_ts", "unit_id", "site_code", "rssi_raw", "rssi_dbm", "ber_raw")
MAX_SITE_CODE = 64

# Ranges the modem reports: AT+CSQ rssi 0..31 (99 = unknown), ber 0..7 (99 = unknown).
_RANGES = {"rssi_raw": (0, 99), "rssi_dbm": (-200, 0), "ber_raw": (0, 99)}


@dataclass(frozen=True)
class Ping:
    t: float  # server receive time, UNIX s
    unit_id: str
    site_code: str | None
    rssi_raw: int | None
    rssi_dbm: int | None
    ber_raw: int | None

    @property
    def iso(self) -> str:
        return dt.datetime.fromtimestamp(self.t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def as_dict(self) -> dict[str, object]:
        return {
            "t": self.t,
            "time": self.iso,
            "unit_id": self.unit_id,
            "site_code": self.site_code,
            "rssi_raw": self.rssi_raw,
            "rssi_dbm": self.rssi_dbm,
            "ber_raw": self.ber_raw,
        }


def parse_ping(unit_id: str, query: dict[str, str], t: float) -> Ping:
    """A ping from its query; Rejected(400) for values that are not what the firmware sends."""
    site = query.get("site_code")
    if site is not None and (len(site) > MAX_SITE_CODE or not site.isprintable()):
        raise Rejected(400, "bad_query", f"site_code must be printable, at most {MAX_SITE_CODE}")
    values = {key: _int_value(query, key, lo, hi) for key, (lo, hi) in _RANGES.items()}
    return Ping(t=t, unit_id=unit_id, site_code=site, **values)


def _int_value(query: dict[str, str], key: str, lo: int, hi: int) -> int | None:
    raw = query.get(key)
    if raw is None or raw in ("", "None"):
        return None
    digits = raw[1:] if raw.startswith("-") else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > 4:
        raise Rejected(400, "bad_query", f"{key} must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise Rejected(400, "bad_query", f"{key} must be within {lo}..{hi}")
    return value


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_tsv(value: str) -> str:
    """Escape a value for one TSV cell: never a tab, newline or control character."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape_tsv(cell: str) -> str:
    """Inverse of `escape_tsv` (for readers of the ping files and for tests)."""
    out = []
    i = 0
    while i < len(cell):
        ch = cell[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = cell[i + 1 : i + 2]
        if nxt == "x":
            out.append(chr(int(cell[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[nxt])
            i += 2
    return "".join(out)


def tsv_line(ping: Ping) -> bytes:
    """One line of the ping files, columns `TSV_COLUMNS`; missing values are "None"
    as in the old files."""
    cells = [
        ping.iso,
        ping.unit_id,
        "None" if ping.site_code is None else ping.site_code,
        str(ping.rssi_raw),
        str(ping.rssi_dbm),
        str(ping.ber_raw),
    ]
    return ("\t".join(escape_tsv(c) for c in cells) + "\n").encode("utf-8")
