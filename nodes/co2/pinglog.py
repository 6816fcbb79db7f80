"""Alive pings and readings delivery progress: escaped TSV files rolled at
~100 KiB (`pings/pings-NNNN.tsv`, as the old server kept them) and SQLite
(`co2.sqlite3`). Blocking: used from the server's single database thread.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from nodes.co2.pings import Ping, tsv_line
from nodes.co2.storage import DIR_FLAGS, FILE_FLAGS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pings (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    unit_id TEXT NOT NULL,
    site_code TEXT,
    rssi_raw INTEGER,
    rssi_dbm INTEGER,
    ber_raw INTEGER,
    peer TEXT
);
CREATE INDEX IF NOT EXISTS pings_by_unit ON pings (unit_id, id);
CREATE TABLE IF NOT EXISTS readings_progress (
    unit_id TEXT NOT NULL,
    path TEXT NOT NULL,
    parsed_until INTEGER NOT NULL,
    PRIMARY KEY (unit_id, path)
);
"""


class PingLog:
    """Ping TSV files and the SQLite database. Use from one thread only (the
    server's `DatabaseThread`, obsmesh.sqlite), which also orders the ping lines;
    the connection refuses any other thread."""

    def __init__(self, root: Path, file_bytes: int = 100 * 1024) -> None:
        self.root = Path(root)
        self.file_bytes = file_bytes
        self._dir = self.root / "pings"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._index = self._last_index()
        self.db = sqlite3.connect(self.root / "co2.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def _last_index(self) -> int:
        indices = [
            int(p.stem.split("-")[1])
            for p in self._dir.glob("pings-[0-9][0-9][0-9][0-9]*.tsv")
            if p.stem.split("-")[1].isdigit()
        ]
        return max(indices, default=0)

    def _file_fd(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_size >= self.file_bytes:
            os.close(self._fd)
            self._fd = None
            self._index += 1
        if self._fd is None:
            dir_fd = os.open(self._dir, DIR_FLAGS)
            try:
                name = f"pings-{self._index:04d}.tsv"
                self._fd = os.open(
                    name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | FILE_FLAGS, 0o644, dir_fd=dir_fd
                )
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            if os.fstat(self._fd).st_size >= self.file_bytes:
                return self._file_fd()
        return self._fd

    def append(self, ping: Ping, peer: str) -> None:
        """Durably record one ping: its TSV line (fsync), then its database row."""
        fd = self._file_fd()
        line = tsv_line(ping)
        _pwrite_all_append(fd, line)
        os.fsync(fd)
        self.db.execute(
            "INSERT INTO pings (t, unit_id, site_code, rssi_raw, rssi_dbm, ber_raw, peer)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                ping.t,
                ping.unit_id,
                ping.site_code,
                ping.rssi_raw,
                ping.rssi_dbm,
                ping.ber_raw,
                peer,
            ),
        )

    def recent(self, limit: int) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT t, unit_id, site_code, rssi_raw, rssi_dbm, ber_raw FROM pings"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_ping_row(r) for r in rows]

    def summary(self) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT p.t, p.unit_id, p.site_code, p.rssi_raw, p.rssi_dbm, p.ber_raw, g.n, g.first"
            " FROM pings p JOIN (SELECT unit_id, MAX(id) AS id, COUNT(*) AS n, MIN(t) AS first"
            " FROM pings GROUP BY unit_id) g ON p.id = g.id ORDER BY p.unit_id"
        ).fetchall()
        out = []
        for r in rows:
            last = _ping_row(r[:6])
            out.append(
                {
                    "unit_id": r[1],
                    "pings": r[6],
                    "first_seen": r[7],
                    "last_seen": r[0],
                    "last": last,
                }
            )
        return out

    def since(self, t0: float, limit: int) -> list[Ping]:
        """Pings received at or after `t0`, oldest first (the newest `limit`)."""
        rows = self.db.execute(
            "SELECT t, unit_id, site_code, rssi_raw, rssi_dbm, ber_raw FROM pings"
            " WHERE t >= ? ORDER BY id DESC LIMIT ?",
            (t0, limit),
        ).fetchall()
        return [Ping(*r) for r in reversed(rows)]

    def progress(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT unit_id, path, parsed_until FROM readings_progress")
        return {(u, p): n for u, p, n in rows}

    def save_progress(self, entries: dict[tuple[str, str], int]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO readings_progress (unit_id, path, parsed_until) VALUES (?, ?, ?)"
            " ON CONFLICT (unit_id, path) DO UPDATE SET parsed_until = excluded.parsed_until",
            [(u, p, n) for (u, p), n in entries.items()],
        )
        self.db.execute("COMMIT")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.db.close()


def _pwrite_all_append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _ping_row(r: tuple) -> dict[str, object]:
    t, unit_id, site, rssi_raw, rssi_dbm, ber_raw = r
    return Ping(t, unit_id, site, rssi_raw, rssi_dbm, ber_raw).as_dict()
