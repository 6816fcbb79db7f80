"""A probe node as its own process, with samples a test can compute.

Sample k of timeline "fast" is at t = base + k * dt with x = k and y = k / 2;
every tenth k also gives timeline "slow" a sample: label "s<k>", ok = (k // 10)
is even. At start the node holds samples 0 .. history-1; with --rate it then
appends, every 50 ms, all samples whose time has come (t <= now).

    OBSMESH_ROUTER_URL=rs://... python tests/probe_process.py NAME --base B --dt 0.01 --history 1000 --live
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

from nodes.base import run_node  # noqa: E402
from obsmesh import config  # noqa: E402
from tests import harness  # noqa: E402, F401 - admits this node's name as a principal
from tests.nodes_for_tests import ProbeNode  # noqa: E402


def samples(base: float, dt: float, k0: int, k1: int) -> tuple[np.ndarray, dict, np.ndarray, dict]:
    """Samples k0 .. k1-1: (fast times, fast columns, slow times, slow columns)."""
    k = np.arange(k0, k1)
    t = base + k * dt
    fast = {"x": k.astype(np.float64), "y": k / 2.0}
    tens = k[k % 10 == 0]
    slow_t = base + tens * dt
    slow = {
        "label": [f"s{i}" for i in tens.tolist()],
        "ok": [bool((i // 10) % 2 == 0) for i in tens.tolist()],
    }
    return t, fast, slow_t, slow


class DeterministicProbe(ProbeNode):
    def __init__(
        self, name: str, settings: dict, base: float, dt: float, history: int, live: bool
    ) -> None:
        super().__init__(name, settings)
        self.base = base
        self.dt = dt
        self.next_k = 0
        self.history = history
        self.live = live
        self.ticker = task.LoopingCall(self.tick)

    def emit(self, k1: int) -> None:
        step = 1_000_000
        for a in range(self.next_k, k1, step):
            b = min(k1, a + step)
            t, fast, slow_t, slow = samples(self.base, self.dt, a, b)
            self.append("fast", t, fast)
            if slow_t.size:
                self.append("slow", slow_t, slow)
        self.next_k = max(self.next_k, k1)

    def tick(self) -> None:
        due = math.floor((time.time() - self.base) / self.dt) + 1
        if due > self.next_k:
            self.emit(due)

    async def start(self) -> None:
        self.emit(self.history)
        if self.live:
            self.ticker.start(0.05, now=False)

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--base", type=float, required=True)
    p.add_argument("--dt", type=float, default=0.01)
    p.add_argument("--history", type=int, default=0)
    p.add_argument("--live", action="store_true")
    a = p.parse_args()
    settings = config.mesh()
    run_node(DeterministicProbe(a.name, settings, a.base, a.dt, a.history, a.live))


if __name__ == "__main__":
    main()
