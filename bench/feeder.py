"""Processes the mesh benchmark drives: a feeder node and a bare echo callee.

python -m bench.feeder live ROUTER RATE SECONDS   # 10 float fields, f0 = sample index
python -m bench.feeder history ROUTER N           # N samples of history, then idle
python -m bench.feeder echo ROUTER                # registers obsmesh.consumer.echo.echo
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from twisted.internet import defer, reactor, task

from nodes.base import DataNode
from obsmesh import config
from obsmesh.wamp import component, credentials

FIELDS = [f"f{i}" for i in range(10)]


class Feeder(DataNode):
    kind = "bench"
    description = "benchmark feeder"

    def declare_fields(self) -> None:
        for f in FIELDS:
            self.declare(f, "tl")


def settings(url: str) -> dict:
    return config.mesh(
        environ={},
        router_url=url,
        max_samples=50_000_000,
        max_age=1e9,
        secrets_file=os.environ.get("OBSMESH_SECRETS_FILE", ""),
    )


def live(url: str, rate: float, seconds: float) -> None:
    node = Feeder("feeder", settings(url))
    tick = 0.01
    state = {"next": 0, "start": None}

    # The benchmark's subscriber calls `go` once subscribed. (Starting when the
    # node sees any subscriber would race a subscription left by an earlier
    # probe whose session the router has not closed yet: events to nobody.)
    node.register_rpc("go", lambda: state.update(go=True) or True)

    def push():
        now = time.time()
        if state["start"] is None:
            if not state.get("go"):
                return  # wait for the benchmark's subscriber
            state["start"] = now
        elapsed = now - state["start"]
        due = int(min(elapsed + tick, seconds) * rate)
        if elapsed >= seconds:  # the last push sends whatever is still due, then stops
            due = int(seconds * rate)
            loop.stop()
        n = due - state["next"]
        if n <= 0:
            return
        idx = np.arange(state["next"], due, dtype=np.float64)
        t = np.full(n, now)
        node.append("tl", t, {f: idx for f in FIELDS})
        state["next"] = due

    loop = task.LoopingCall(push)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(node.launch()))
    reactor.callWhenRunning(loop.start, tick)
    reactor.run()


def history(url: str, n: int) -> None:
    node = Feeder("history", settings(url))
    t = 1_000_000_000.0 + np.arange(n, dtype=np.float64)
    node.append("tl", t, {f: np.sin(t / (100 + i)) for i, f in enumerate(FIELDS)}, live=False)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(node.launch()))
    reactor.run()


def echo(url: str) -> None:
    comp = component(url, "obsmesh", credentials(settings(url), "echo"))
    comp.on(
        "join",
        lambda session, details: session.register(lambda *a: a, "obsmesh.consumer.echo.echo"),
    )
    comp.start(reactor)
    reactor.run()


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "live":
        live(url, float(rest[0]), float(rest[1]))
    elif mode == "history":
        history(url, int(rest[0]))
    else:
        echo(url)
