"""A node whose fields carry everything a display must get right, as its own
process: units and precision (°C, hPa, %, bytes), a field of UNIX times,
per-unit fields whose natural order differs from their alphabetical one
(`u2` before `u10`), a `plots` choice with patterns, and a source that goes
stale and recovers (with the legacy flag-style event titles older nodes
wrote, next to sentences).

Values are functions of time a test can compute (see `value`).

    OBSMESH_ROUTER_URL=rs://... python tests/showcase_process.py NAME [--history 600] [--flap 3]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from twisted.internet import task  # noqa: E402

from nodes.base import DataNode, run_node  # noqa: E402
from obsmesh import config  # noqa: E402

UNITS = ("u2", "u10", "u1")
STEP = 1.0  # seconds between samples
BYTES = 6.65e9


def value(field: str, t: np.ndarray) -> np.ndarray:
    """The showcase's value of `field` at times `t`."""
    if field == "pressure":
        return 1012.8 + 0.04 * np.sin(t / 30.0)
    if field == "cpu":
        return 48.223350253807105 + 10.0 * np.sin(t / 20.0)
    if field == "memory":
        return BYTES + 1e7 * np.sin(t / 40.0)
    if field == "file_time":
        return np.floor(t) - 3600.0
    unit, _, name = field.partition(".")
    k = UNITS.index(unit)
    if name == "co2_mean":
        return 425.0 + k + 0.5 * np.sin(t / 50.0)
    return -24.0 + k + 0.5 * np.sin(t / 60.0)  # temperature


class ShowcaseNode(DataNode):
    kind = "showcase"
    description = "display showcase (test): units, precision, times, natural order"
    plots = ("*.co2_mean", "*.temperature")

    def __init__(self, name: str, settings: dict, history: float, flap: float) -> None:
        super().__init__(name, settings)
        self.history = history
        self.flap = flap
        self.next_t: float | None = None
        self.ticker = task.LoopingCall(self.tick)

    def setup(self) -> None:
        self.declare("pressure", "station", units="hPa", description="air pressure", precision=1)
        self.declare("cpu", "host", units="%", description="CPU use", precision=1)
        self.declare("memory", "host", units="B", description="memory in use", precision=0)
        self.declare(
            "file_time", "host", units="s since 1970-01-01", description="time a file names"
        )
        for u in UNITS:
            self.declare(f"{u}.co2_mean", u, units="ppm", description=f"{u}: CO2", precision=1)
            self.declare(f"{u}.temperature", u, units="°C", description=f"{u}: air", precision=1)

    def emit(self, t: np.ndarray, live: bool) -> None:
        if not t.size:
            return
        self.append("station", t, {"pressure": value("pressure", t)}, live=live)
        self.append("host", t, {f: value(f, t) for f in ("cpu", "memory", "file_time")}, live=live)
        for u in UNITS:
            self.append(
                u,
                t,
                {f"{u}.{n}": value(f"{u}.{n}", t) for n in ("co2_mean", "temperature")},
                live=live,
            )

    def tick(self) -> None:
        now = time.time()
        t = np.arange(self.next_t, now, STEP)
        self.emit(t, live=True)
        if t.size:
            self.next_t = float(t[-1]) + STEP
        if self.flap > 0:
            self.flip(now)

    def flip(self, now: float) -> None:
        """The "feed" source: fresh, stale after `flap` s, fresh again after 2 `flap` s."""
        age = now - self.started
        stale = self.flap <= age < 2 * self.flap
        if self.sources["feed"].get("stale") != stale:
            self.source("feed", stale=stale, error="nothing for a while" if stale else None)

    async def start(self) -> None:
        now = time.time()
        start = math.floor(now - self.history)
        self.emit(np.arange(start, now, STEP), live=False)
        self.next_t = float(start + math.ceil((now - start) / STEP) * STEP)
        self.source("feed", connected=True, stale=False, last_sample=now)
        # what an older node wrote, next to what nodes write now
        self.event(now - 120, "feed: stale=True", "legacy title", ["status", "feed"])
        self.event(
            now - 60, "feed recovered (fresh data again)", "", ["status", "feed", "recovered"]
        )
        self.ticker.start(0.2, now=False)

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--history", type=float, default=600.0)
    p.add_argument("--flap", type=float, default=0.0)
    a = p.parse_args()
    run_node(ShowcaseNode(a.name, config.mesh(), a.history, a.flap))


if __name__ == "__main__":
    main()
