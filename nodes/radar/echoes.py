"""Per-scan echo counts in SQLite, with a retention that really runs.

This is the old server's `echoes` table (served as `GET /echoes?site_name=
&start=&end=`). Calls block on disk I/O: from the reactor, run them all on the
store's one thread (`obsmesh.sqlite.DatabaseThread`, as the pipeline does);
the store itself has no lock. The retention is a number of days, checked when the
store is made (the old server compared a string, so nothing was ever deleted).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scan_echoes (
    stid INTEGER NOT NULL,
    channel INTEGER NOT NULL,
    time REAL NOT NULL,
    code TEXT,
    end_time REAL NOT NULL,
    beams INTEGER NOT NULL,
    total INTEGER NOT NULL,
    ionospheric INTEGER NOT NULL,
    ground INTEGER NOT NULL,
    PRIMARY KEY (stid, channel, time)
);
CREATE INDEX IF NOT EXISTS scan_echoes_code_time ON scan_echoes (code, time);
CREATE INDEX IF NOT EXISTS scan_echoes_time ON scan_echoes (time);
"""
_COLUMNS = (
    "stid",
    "channel",
    "time",
    "code",
    "end_time",
    "beams",
    "total",
    "ionospheric",
    "ground",
)


def retention_days(value: Any) -> float | None:
    """A retention setting as days: a positive number (or its text, from an
    environment variable), or None/"" for "keep forever"."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("retention must be a number of days")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"retention {value!r} is not a number of days") from None
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"retention {value!r} must be a positive number of days")
    return float(value)


class EchoStore:
    def __init__(self, path: str, retention: Any = 30) -> None:
        self.retention = retention_days(retention)
        # made by whoever builds the node; used from then on by one thread only
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._db:
            self._db.executescript(_SCHEMA)

    def add_scans(self, scans: Iterable[Mapping[str, Any]]) -> int:
        """Store scan products (from `ScanAccumulator`); a scan stored again
        (a file replayed twice) replaces itself. Returns rows written."""
        rows = [
            (
                int(s["stid"]),
                int(s["channel"]),
                float(s["time"]),
                s.get("code"),
                float(s["end"]),
                int(s["beams"]),
                int(s["total"]),
                int(s["ionospheric"]),
                int(s["ground"]),
            )
            for s in scans
        ]
        with self._db:
            self._db.executemany(
                f"INSERT OR REPLACE INTO scan_echoes ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                rows,
            )
        return len(rows)

    def query(
        self, start: float, end: float, code: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Scans with start time in [start, end), oldest first, optionally of one
        radar; at most `limit` rows (the oldest)."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM scan_echoes WHERE time >= ? AND time < ?"
        args: list[Any] = [float(start), float(end)]
        if code is not None:
            sql += " AND code = ?"
            args.append(code)
        sql += " ORDER BY time, stid, channel"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._db.execute(sql, args).fetchall()
        out = []
        for row in rows:
            item = dict(zip(_COLUMNS, row, strict=True))
            item["end"] = item.pop("end_time")
            beams = item["beams"]
            for what in ("total", "ionospheric", "ground"):
                item[f"mean_{what}"] = item[what] / beams if beams else 0.0
            out.append(item)
        return out

    def purge(self, now: float) -> int:
        """Delete scans older than the retention; returns how many went."""
        if self.retention is None:
            return 0
        cutoff = float(now) - self.retention * 86400.0
        with self._db:
            return self._db.execute("DELETE FROM scan_echoes WHERE time < ?", (cutoff,)).rowcount

    def codes(self) -> list[str]:
        """Radar codes that have rows (radars known from a replay, say)."""
        rows = self._db.execute(
            "SELECT DISTINCT code FROM scan_echoes WHERE code IS NOT NULL ORDER BY code"
        ).fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scan_echoes").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def open_echo_store(path: str, retention_days: float) -> EchoStore:
    """The node's SQLite echo store (its directory made if needed); 0 days = keep forever."""
    if not (math.isfinite(retention_days) and retention_days >= 0):
        raise ValueError(f"retention_days must be a number >= 0, got {retention_days!r}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return EchoStore(path, retention=retention_days or None)
