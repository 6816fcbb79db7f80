"""A node whose samples can be counted: sample k of timeline `tick` has value k,
one every `--period` seconds, stamped with the wall clock when it is made. A
complete history holds every k from 0 up; a live subscriber's latency is its
receive time minus the sample's time (all simulated hosts share one clock).

    python -m tests.hosts.ticker --name a-n1 [--period 0.1]

The node is the real node base: store (Redis with OBSMESH_STORE=redis),
registration, live batches, reconnection, heartbeat, graceful shutdown.
"""

from __future__ import annotations

import argparse
import time

from twisted.internet import task

from nodes.base import DataNode, run_node
from obsmesh import config


class Ticker(DataNode):
    kind = "ticker"
    description = "counts: sample k has value k"

    def __init__(self, name: str, period: float, **kw) -> None:
        super().__init__(name, **kw)
        self.period = period
        self.k = 0
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.reactor

    def declare_fields(self) -> None:
        self.declare("k", "tick", description="sample number")

    def tick(self) -> None:
        self.append("tick", [time.time()], {"k": [float(self.k)]})
        self.k += 1

    async def start(self) -> None:
        self._loop.start(self.period)

    async def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def get_status(self) -> dict:
        return {**super().get_status(), "made": self.k}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--period", type=float, default=0.1)
    args = p.parse_args()
    run_node(Ticker(args.name, args.period, settings=config.mesh()))


if __name__ == "__main__":
    main()
