"""The measuring side of the mesh benchmark (a process of its own, printing JSON).

python -m bench.mesh_probe rpc URL SECONDS
python -m bench.mesh_probe live URL EXPECTED_SAMPLES TIMEOUT
python -m bench.mesh_probe query URL N
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from obsmesh import wire
from tests.harness import connect


async def rpc(url: str, seconds: float) -> dict:
    s = await connect(url)
    out = {}
    for name, uri, args in (
        ("get_data_node", "obsmesh.consumer.get_data_node", ()),
        ("echo", "obsmesh.consumer.echo.echo", ({"name": "x", "description": "y"},)),
    ):
        for _ in range(200):  # warm up
            await s.call(uri, *args)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(uri=uri, args=args, deadline=deadline):
            nonlocal done
            while time.perf_counter() < deadline:
                await s.call(uri, *args)
                done += 1

        start = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(32)])
        out[name] = done / (time.perf_counter() - start)
    return out


async def live(url: str, expected: int, timeout: float) -> dict:
    s = await connect(url)
    seen = np.zeros(expected, dtype=np.int32)
    lat: list[np.ndarray] = []
    state = {"n": 0, "first": None, "last": None, "next": 0}

    def on_batch(ev):
        now = time.time()
        idx = wire.decode(ev["data"]["f0"])
        t = wire.decode(ev["t"])
        start = state["next"]
        if (
            idx.size
            and idx[0] == start
            and start + idx.size <= expected
            and (np.diff(idx) == 1).all()
        ):
            seen[start : start + idx.size] += 1  # the usual case: the next run of samples, in order
        else:
            ok = idx[(idx >= 0) & (idx < expected)].astype(np.int64)
            np.add.at(seen, ok, 1)
        state["next"] = int(idx[-1]) + 1 if idx.size else start
        lat.append(now - t)
        state["n"] += idx.size
        state["first"] = state["first"] or now
        state["last"] = now

    await s.subscribe(on_batch, "obsmesh.consumer.feeder.live.array")
    deadline = time.time() + timeout
    while True:  # tell the feeder to start (it may not have joined yet)
        try:
            await s.call("obsmesh.consumer.feeder.go")
            break
        except ApplicationError:
            if time.time() > deadline:
                raise
            await task.deferLater(reactor, 0.05, lambda: None)
    while state["n"] < expected and time.time() < deadline:
        await task.deferLater(reactor, 0.05, lambda: None)
    lat_all = np.concatenate(lat) if lat else np.zeros(1)
    span = (state["last"] or 0) - (state["first"] or 0)
    gone = np.flatnonzero(seen == 0)
    runs = []
    if gone.size:
        cut = np.flatnonzero(np.diff(gone) != 1) + 1
        runs = [[int(r[0]), int(r[-1]) + 1] for r in np.split(gone, cut)][:10]
    try:
        status = await s.call("obsmesh.consumer.feeder.get_status")
        counters = status["counters"]
    except Exception as exc:  # noqa: BLE001
        counters = str(exc)
    return {
        "missing_runs": runs,
        "feeder_counters": counters,
        "received": int(state["n"]),
        "expected": expected,
        "missing": int((seen == 0).sum()),
        "duplicated": int((seen > 1).sum()),
        "rate": state["n"] / span if span > 0 else 0.0,
        "p50_ms": float(np.percentile(lat_all, 50) * 1e3),
        "p99_ms": float(np.percentile(lat_all, 99) * 1e3),
    }


async def query(url: str, n: int) -> dict:
    s = await connect(url)
    start, end = 1_000_000_000.0, 1_000_000_000.0 + n
    stride = n / 1000
    times = []
    for _ in range(12):
        t0 = time.perf_counter()
        r = await s.call(
            "obsmesh.consumer.history.get_data",
            ["f0"],
            start,
            end,
            min_stride=stride,
            encoding="array",
        )
        times.append(time.perf_counter() - t0)
        assert wire.decode(r["data"]["f0"]).size == 1000
    return {"round_trip_ms": float(np.median(times[2:]) * 1e3)}


def main() -> None:
    mode, url, *rest = sys.argv[1:]
    fn = {
        "rpc": lambda: rpc(url, float(rest[0])),
        "live": lambda: live(url, int(rest[0]), float(rest[1])),
        "query": lambda: query(url, int(rest[0])),
    }[mode]

    async def go():
        try:
            print(json.dumps(await fn()), flush=True)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(go()))
    reactor.run()


if __name__ == "__main__":
    main()
