"""`obsmesh simulate weather DIR`: a realistic station writing a row a second,
after writing a few days of history.

A prairie station at 52° N (see `Station`): temperature follows the season
and the sun, weather systems move pressure, temperature and wind every few
days, humidity moves against temperature, wind is gusty and veers.
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


YEAR_S = 365.2425 * 86400
DAY_S = 86400.0
SITE_UTC_OFFSET_H = -7.1  # local solar time at 106.6° W (a prairie station near Saskatoon, 52° N)


class Station:
    """A prairie station at 52° N: a seasonal cycle from about -16 °C in
    January to +19 °C in July; a diurnal cycle (warmest mid-afternoon, larger
    in summer); weather systems passing every few days that move pressure by
    about ±10 hPa around 1013 hPa, bring wind, and swing temperature by
    several degrees (more in winter); relative humidity high at night and low
    in the afternoon; wind veering slowly, with gusts."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.phases = self.rng.uniform(0, 2 * math.pi, 6)
        self.drift = 0.0
        self.wind = 4.0
        self.direction = 240.0

    def _systems(self, t: np.ndarray, first: int) -> np.ndarray:
        """Passing weather systems (periods of about 3, 5 and 8 days), -1..1."""
        days = t / DAY_S
        out = np.zeros_like(t, dtype=float)
        for p, w, ph in zip(
            (3.1, 5.3, 8.2), (0.5, 0.3, 0.2), self.phases[first : first + 3], strict=True
        ):
            out += w * np.sin(2 * math.pi * days / p + ph)
        return out

    def rows(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Values at times `t` (seconds, increasing), vectorised."""
        n = t.size
        rng = self.rng
        year = (t / YEAR_S) % 1.0
        summer = np.cos(2 * math.pi * (year - 0.47))  # +1 at the June solstice, -1 in December
        hours = ((t / 3600.0) + SITE_UTC_OFFSET_H) % 24.0
        day_cycle = np.cos(2 * math.pi * (hours - 15.0) / 24.0)  # +1 mid-afternoon
        systems = self._systems(t, 0)
        drift = self.drift + np.cumsum(rng.normal(0, 0.001, n))  # what the systems miss
        temp = (
            1.5
            + 17.5 * np.cos(2 * math.pi * (year - 0.55))  # late-July maximum
            + (5.0 + 1.5 * summer) * day_cycle
            + (4.0 - 1.5 * summer) * systems
            + drift
            + rng.normal(0, 0.05, n)
        )
        pressure = 1013.0 - 10.0 * self._systems(t, 3) + rng.normal(0, 0.03, n)
        humidity = np.clip(
            68.0 - 18.0 * day_cycle + 8.0 * systems + 5.0 * summer + rng.normal(0, 0.5, n),
            15.0,
            100.0,
        )
        # wind follows the pressure gradient: strongest while a system passes
        tendency = np.abs(np.cos(2 * math.pi * (t / DAY_S) / 5.3 + self.phases[4]))
        wind = np.clip(self.wind + np.cumsum(rng.normal(0, 0.03, n)), 0.5, 12.0)
        base_wind = 0.5 * wind + 4.0 * tendency + 1.0 * np.maximum(day_cycle, 0)
        gust = np.abs(rng.normal(0, 1.0, n)) * (rng.random(n) < 0.05) * 3.0
        direction = (self.direction + np.cumsum(rng.normal(0, 0.5, n))) % 360.0
        self.drift = float(drift[-1])
        self.wind, self.direction = float(wind[-1]), float(direction[-1])
        return {
            "temperature": temp,
            "pressure": pressure,
            "humidity": humidity,
            "wind_speed": base_wind + gust,
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
