"""The `tidegauge` node: a harbour's water level every `interval` seconds.

The level is the sum of the main tidal constituents (M2, S2, N2, K1, O1) with
a harbour's amplitudes and phases, plus a slow random surge standing in for
the weather; `predicted` is the tide alone and `surge` their difference. At
start it computes `history` seconds of past readings (stored, not published
live), then one reading per interval, live.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from nodes.base import DataNode
from obsmesh.periodic import Periodic

TIMELINE = "gauge"
# constituent: (period in hours, amplitude in metres, phase in degrees)
CONSTITUENTS = {
    "M2": (12.4206, 1.20, 0.0),
    "S2": (12.0000, 0.40, 35.0),
    "N2": (12.6583, 0.23, 340.0),
    "K1": (23.9345, 0.10, 120.0),
    "O1": (25.8193, 0.08, 95.0),
}


def tide(t: np.ndarray, mean_level: float) -> np.ndarray:
    """The predicted level (metres above datum) at UNIX times `t`."""
    level = np.full(t.shape, mean_level, dtype=np.float64)
    for period_h, amplitude, phase in CONSTITUENTS.values():
        level += amplitude * np.cos(2 * math.pi * t / (period_h * 3600.0) - math.radians(phase))
    return level


class TideGaugeNode(DataNode):
    kind = "tidegauge"
    description = "harbour tide gauge: water level, harmonic prediction and surge"

    def __init__(
        self, name: str, settings: dict[str, Any], options: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(name, settings, **kw)  # first: the base's state, then ours
        self.options = options
        self.rng = random.Random(int(options["seed"]))
        self.surge = 0.0
        # one reading per interval; a reading that fails is logged and the next one comes
        self._loop = Periodic(self.reactor, float(options["interval"]), self.sample)

    def setup(self) -> None:
        """Called once construction finished: the fields known at start."""
        self.declare("level", TIMELINE, units="m", description="water level above datum")
        self.declare("predicted", TIMELINE, units="m", description="harmonic tide prediction")
        self.declare("surge", TIMELINE, units="m", description="level minus prediction")

    def _surge(self, n: int) -> np.ndarray:
        """A slow random walk pulled back to zero (the weather's effect on the sea)."""
        out = np.empty(n)
        for i in range(n):
            self.surge += -0.001 * self.surge + self.rng.gauss(0.0, 0.003)
            out[i] = self.surge
        return out

    def readings(self, t: np.ndarray, live: bool) -> None:
        predicted = tide(t, float(self.options["mean_level"]))
        surge = self._surge(t.size)
        columns = {"level": predicted + surge, "predicted": predicted, "surge": surge}
        self.append(TIMELINE, t, columns, live=live)
        self.source("gauge", connected=True, last_sample=float(t[-1]))

    def sample(self) -> None:
        self.readings(np.array([self.clock()]), live=True)

    async def start(self) -> None:
        interval = float(self.options["interval"])
        now = self.clock()
        n = int(float(self.options["history"]) / interval)
        if n:
            self.readings(now - interval * np.arange(n, 0, -1), live=False)
        self._loop.start(now=True)

    async def stop(self) -> None:
        self._loop.stop()


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> TideGaugeNode:
    return TideGaugeNode(name, mesh, options)
