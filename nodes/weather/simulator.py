"""`obsmesh simulate weather DIR`: a realistic station writing a row a second,
after writing a few days of history.

Temperature follows the sun (a diurnal cycle with day-to-day drift), humidity
moves against it, pressure wanders slowly, wind is gusty and veers.
Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import signal
import time

import numpy as np

from nodes.weather import files

COLUMNS = ["time", "temperature", "pressure", "humidity", "wind_speed", "wind_direction"]


class Station:
    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.pressure = 1013.0
        self.drift = 0.0
        self.wind = 4.0
        self.direction = 240.0

    def rows(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Values at times `t` (seconds, increasing), vectorised."""
        n = t.size
        rng = self.rng
        hours = (t % 86400) / 3600.0
        drift = self.drift + np.cumsum(rng.normal(0, 0.002, n))  # weather changing from day to day
        temp = (
            4.0 + 7.0 * np.sin(2 * math.pi * (hours - 9.0) / 24.0) + drift + rng.normal(0, 0.05, n)
        )
        pressure = np.clip(self.pressure + np.cumsum(rng.normal(0, 0.004, n)), 960.0, 1050.0)
        humidity = np.clip(75.0 - 2.5 * (temp - 4.0) + rng.normal(0, 0.5, n), 5.0, 100.0)
        wind = np.clip(self.wind + np.cumsum(rng.normal(0, 0.03, n)), 0.0, 25.0)
        gust = np.abs(rng.normal(0, 1.0, n)) * (rng.random(n) < 0.05) * 4.0
        direction = (self.direction + np.cumsum(rng.normal(0, 0.5, n))) % 360.0
        self.drift, self.pressure = float(drift[-1]), float(pressure[-1])
        self.wind, self.direction = float(wind[-1]), float(direction[-1])
        return {
            "temperature": temp,
            "pressure": pressure,
            "humidity": humidity,
            "wind_speed": wind + gust,
            "wind_direction": direction,
        }


def _path(directory: str, t: float) -> str:
    return os.path.join(directory, files.file_name(dt.datetime.fromtimestamp(t, dt.UTC).date()))


def write_rows(directory: str, t: np.ndarray, values: dict[str, np.ndarray]) -> None:
    """Append rows to their day files, writing a header to a new file."""
    days = np.floor(t / 86400.0)
    for day in np.unique(days):
        idx = np.flatnonzero(days == day)
        path = _path(directory, float(t[idx[0]]))
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write(",".join(COLUMNS) + "\n")
            f.writelines(
                files.format_row(
                    float(t[i]), {c: float(values[c][i]) for c in COLUMNS[1:]}, COLUMNS
                )
                for i in idx
            )


def write_history(directory: str, station: Station, start: float, end: float, step: float) -> None:
    t = np.arange(start, end, step)
    for a in range(0, t.size, 86400):
        chunk = t[a : a + 86400]
        write_rows(directory, chunk, station.rows(chunk))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="directory to write YYYY-MM-DD.csv files into")
    parser.add_argument(
        "--days", type=float, default=3.0, help="days of history to write first (default 3)"
    )
    parser.add_argument("--step", type=float, default=1.0, help="seconds between rows (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--once", action="store_true", help="write the history and exit")


def main(args: argparse.Namespace) -> int:
    os.makedirs(args.dir, exist_ok=True)
    station = Station(args.seed)
    now = math.floor(time.time())
    existing = sorted(n for n in os.listdir(args.dir) if files.file_date(n))
    if not existing:
        write_history(args.dir, station, now - args.days * 86400.0, now, args.step)
    if args.once:
        return 0
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_t = math.floor(time.time()) + args.step
    while running:
        delay = next_t - time.time()
        if delay > 0:
            time.sleep(min(delay, 0.5))
            continue
        t = np.array([next_t])
        write_rows(args.dir, t, station.rows(t))
        next_t += args.step
    return 0
