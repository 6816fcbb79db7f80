#!/usr/bin/env python3
"""Example das2 reader: a synthetic plasma-wave spectrogram (one yscan per record).

usage: python spectrogram.py START END [channels=N]

Electric-field spectral density, 10 Hz to 10 kHz, one spectrum a second: a
power-law background, a whistler-mode chorus band at a third of the electron
cyclotron frequency of a modelled 9-hour orbit, arriving in bursts, and
multiplicative noise. Each value depends only on its own time stamp, so two
requests agree wherever they overlap and every run gives the same bytes.
Times are ISO 8601 UTC; records cover [START, END).
"""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np

CADENCE_US = 1_000_000
RECORDS_PER_WRITE = 3600
ORBIT_S = 9 * 3600.0
VALID = ("2000-01-01T00:00:00", "2030-01-01T00:00:00")
EPOCH_2000 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def us2000(text: str) -> int:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH_2000) // dt.timedelta(microseconds=1)


def uniform(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of integer keys to uniform floats in [0, 1): noise that is a
    pure function of (time, channel)."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def spectra(t_us: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    t = t_us / 1e6
    phase = 2 * np.pi * t / ORBIT_S
    f_ce = 200.0 * 10 ** (1.3 * (1 + np.cos(phase)) / 2)  # 200 Hz .. 4 kHz
    burst = np.maximum(0.0, np.sin(2 * np.pi * t / 1800.0)) ** 2
    log_f = np.log10(freqs)[None, :]
    centre = np.log10(0.3 * f_ce)[:, None]
    chorus = 1e-10 * burst[:, None] * np.exp(-0.5 * ((log_f - centre) / 0.08) ** 2)
    background = 1e-13 * (freqs[None, :] / 100.0) ** -2.0
    keys = (t_us // CADENCE_US)[:, None] * 1024 + np.arange(len(freqs))[None, :]
    noise = 10 ** (0.4 * (uniform(keys) - 0.5))
    return ((background + chorus) * noise).astype(np.float32)


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
    channels = 48
    for param in argv[3:]:
        key, _, value = param.partition("=")
        if key != "channels" or not value.isdigit() or not 8 <= int(value) <= 256:
            print(f"unknown or bad parameter {param!r} (channels=8..256)", file=sys.stderr)
            return 2
        channels = int(value)
    freqs = np.geomspace(10.0, 10_000.0, channels)
    out = sys.stdout.buffer
    out.write(
        packet(
            b"[00]",
            '<stream version="2.2"><properties String:title="Synthetic wave spectrogram" '
            'Datum:xTagWidth="1 s" String:renderer="spectrogram" '
            'String:zScaleType="log" String:yScaleType="log"/></stream>',
        )
    )
    lo, hi = max(start, us2000(VALID[0])), min(end, us2000(VALID[1]))
    first = -(-lo // CADENCE_US) * CADENCE_US  # records sit on whole multiples of the cadence
    times = np.arange(first, hi, CADENCE_US, dtype=np.int64) if hi > lo else np.empty(0, np.int64)
    if times.size == 0:
        out.write(
            packet(
                b"[xx]",
                '<exception type="NoDataInInterval" message="no spectra in this interval"/>',
            )
        )
        return 0
    tags = ",".join(f"{f:.6g}" for f in freqs)
    out.write(
        packet(
            b"[01]",
            '<packet><x type="sun_real8" units="us2000"/>'
            f'<yscan type="sun_real4" name="yscan" nitems="{channels}" yUnits="Hz" '
            f'zUnits="V**2 m**-2 Hz**-1" yTags="{tags}">'
            '<properties double:zFill="-1e31"/></yscan></packet>',
        )
    )
    record = np.dtype([("tag", "S4"), ("t", ">f8"), ("z", ">f4", (channels,))])
    steps = range(0, times.size, RECORDS_PER_WRITE)
    out.write(
        packet(b"[xx]", f'<comment type="taskSize" value="{len(steps)}" source="spectrogram"/>')
    )
    for done, i in enumerate(steps, 1):
        chunk = times[i : i + RECORDS_PER_WRITE]
        rec = np.empty(chunk.size, dtype=record)
        rec["tag"] = b":01:"
        rec["t"] = chunk
        rec["z"] = spectra(chunk, freqs)
        out.write(rec.tobytes())
        out.write(
            packet(b"[xx]", f'<comment type="taskProgress" value="{done}" source="spectrogram"/>')
        )
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except BrokenPipeError:  # the server stopped reading; nothing more to say
        sys.exit(1)
