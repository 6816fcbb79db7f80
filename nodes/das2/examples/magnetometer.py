#!/usr/bin/env python3
"""Example das2 reader: a synthetic fluxgate magnetometer (several planes).

usage: python magnetometer.py START END [frame=gse|gsm]

Eight vectors a second: the dipole field seen from a modelled 9-hour orbit
(6 to 10 Earth radii), a 10 mHz ULF wave of 2 nT and a little noise, as Bx,
By, Bz and |B| in nT. Telemetry gaps (no records) in the first two minutes of
every sixth hour; about one sample in ten thousand is a fill value (-1e31).
`frame=gsm` rotates by a modelled dipole tilt. Each value depends only on its
own time stamp: runs and overlapping requests agree. Records cover [START, END).
"""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np

CADENCE_US = 125_000
RECORDS_PER_WRITE = 28_800  # one hour
ORBIT_S = 9 * 3600.0
FILL = -1e31
VALID = ("2000-01-01T00:00:00", "2030-01-01T00:00:00")
EPOCH_2000 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def us2000(text: str) -> int:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH_2000) // dt.timedelta(microseconds=1)


def uniform(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of integer keys to uniform floats in [0, 1)."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def field(t_us: np.ndarray, frame: str) -> np.ndarray:
    """(n, 4) float32: Bx, By, Bz, |B| in nT."""
    t = t_us / 1e6
    phase = 2 * np.pi * t / ORBIT_S
    r = 8.0 - 2.0 * np.cos(phase)  # Earth radii
    latitude = 0.35 * np.sin(phase)
    b0 = 31_000.0 / r**3
    bx = -3 * b0 * np.sin(latitude) * np.cos(latitude) * np.cos(phase)
    by = -3 * b0 * np.sin(latitude) * np.cos(latitude) * np.sin(phase)
    bz = b0 * (1 - 3 * np.sin(latitude) ** 2)
    wave = 2.0 * np.sin(2 * np.pi * 0.01 * t)
    index = t_us // CADENCE_US
    noise = [(uniform(index * 4 + k) - 0.5) * 0.2 for k in range(3)]
    b = np.stack([bx + noise[0], by + wave + noise[1], bz + 0.5 * wave + noise[2]], axis=1)
    if frame == "gsm":
        tilt = 0.4 * np.sin(2 * np.pi * t / 86_400.0)
        c, s = np.cos(tilt), np.sin(tilt)
        b = np.stack([b[:, 0], c * b[:, 1] - s * b[:, 2], s * b[:, 1] + c * b[:, 2]], axis=1)
    out = np.empty((len(t), 4), dtype=np.float32)
    out[:, :3] = b
    out[:, 3] = np.sqrt((b**2).sum(axis=1))
    bad = uniform(index * 4 + 3) < 1e-4
    out[bad] = FILL
    return out


def packet(tag: bytes, xml: str) -> bytes:
    body = xml.encode()
    return tag + b"%06d" % len(body) + body


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        start, end = us2000(argv[1]), us2000(argv[2])
    except ValueError as exc:
        print(f"bad time: {exc}", file=sys.stderr)
        return 2
    frame = "gse"
    for param in argv[3:]:
        if param not in ("frame=gse", "frame=gsm"):
            print(f"unknown parameter {param!r} (frame=gse or frame=gsm)", file=sys.stderr)
            return 2
        frame = param.partition("=")[2]
    out = sys.stdout.buffer
    out.write(
        packet(
            b"[00]",
            '<stream version="2.2"><properties String:title="Synthetic magnetometer '
            f'({frame.upper()})" Datum:xTagWidth="0.125 s" String:yLabel="B (nT)"/></stream>',
        )
    )
    lo, hi = max(start, us2000(VALID[0])), min(end, us2000(VALID[1]))
    first = -(-lo // CADENCE_US) * CADENCE_US
    times = np.arange(first, hi, CADENCE_US, dtype=np.int64) if hi > lo else np.empty(0, np.int64)
    in_gap = ((times // 3_600_000_000) % 6 == 0) & ((times % 3_600_000_000) < 120_000_000)
    times = times[~in_gap]
    if times.size == 0:
        out.write(
            packet(
                b"[xx]",
                '<exception type="NoDataInInterval" message="no vectors in this interval"/>',
            )
        )
        return 0
    planes = "".join(
        f'<y type="little_endian_real4" name="{name}" units="nT">'
        '<properties double:fill="-1e31"/></y>'
        for name in ("Bx", "By", "Bz", "Bmag")
    )
    out.write(
        packet(b"[01]", f'<packet><x type="little_endian_real8" units="t2000"/>{planes}</packet>')
    )
    record = np.dtype([("tag", "S4"), ("t", "<f8"), ("b", "<f4", (4,))])
    for i in range(0, times.size, RECORDS_PER_WRITE):
        chunk = times[i : i + RECORDS_PER_WRITE]
        rec = np.empty(chunk.size, dtype=record)
        rec["tag"] = b":01:"
        rec["t"] = chunk / 1e6
        rec["b"] = field(chunk, frame)
        out.write(rec.tobytes())
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except BrokenPipeError:
        sys.exit(1)
