"""Redis store against the in-memory store: 1,000,000 samples of 10 fields.

- append: 1,000 batches of 1,000 rows, timed until every row is in Redis
  (`flush`). Called back to back the batches pile up behind the one write in
  flight and go out as big segments; "live" gives the reactor a turn after
  each batch, so each batch is its own write (plus the writer's compaction).
- query: the 1,000,000 samples of all 10 fields read back in one query.

run() starts its own redis-server (tests.harness.RedisServer); the measuring
runs in a child process because it needs a reactor of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

ROWS = 1_000_000
BATCH = 1_000
FIELDS = [f"f{i}" for i in range(10)]


def _batches():
    import numpy as np

    rng = np.random.default_rng(0)
    for k in range(ROWS // BATCH):
        t = 1.7e9 + (k * BATCH + np.arange(BATCH)) * 0.01
        yield t, {f: rng.normal(size=BATCH) for f in FIELDS}


async def _append(store, batches, live: bool) -> float:
    from twisted.internet import reactor, task

    started = time.perf_counter()
    for t, cols in batches:
        await store.append("tl", t, cols)
        if live:
            await task.deferLater(reactor, 0, lambda: None)
    assert await store.flush(120)  # every store has flush (a no-op in memory)
    return time.perf_counter() - started


async def _query(store) -> float:
    started = time.perf_counter()
    t, cols = await store.query("tl", FIELDS, 0, 1e10)
    assert t.shape[0] == ROWS and all(c.shape[0] == ROWS for c in cols.values())
    return time.perf_counter() - started


async def _measure(url: str) -> dict:
    import uuid

    from obsmesh.store import MemoryStore
    from obsmesh.store.redis import RedisStore

    batches = list(_batches())  # made before timing: only the stores are measured
    out: dict = {}
    memory = MemoryStore(1e9, 10**8)
    for f in FIELDS:
        memory.declare(f, "number")
    out["memory_append"] = await _append(memory, batches, live=False)
    out["memory_query"] = await _query(memory)
    for how in ("bulk", "live"):
        store = RedisStore(
            url, f"obsmesh:bench:{uuid.uuid4().hex}", 1e9, 10**8, max_pending=2 * ROWS
        )
        for f in FIELDS:
            store.declare(f, "number")
        out[f"redis_{how}_append"] = await _append(store, batches, live=how == "live")
        await store.maintain()
        out[f"redis_{how}_segments"] = await store.segment_count("tl")
        out[f"redis_{how}_query"] = await _query(store)
        await store.close()
        fresh = RedisStore(url, store.namespace, 1e9, 10**8)  # cold: a restarted node
        out[f"redis_{how}_query_restart"] = await _query(fresh)
        await fresh.close()
    return out


def _child(url: str) -> None:
    from twisted.internet import defer, task

    def main(reactor):
        d = defer.ensureDeferred(_measure(url))
        d.addCallback(lambda out: print(json.dumps(out), flush=True))
        return d

    task.react(main)


def run() -> list[dict]:
    from tests.harness import RedisServer

    server = RedisServer()
    server.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.bench_store_redis", server.url],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.close()
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    mem_rate = ROWS / r["memory_append"]
    figures = []
    for how, what in (
        ("bulk", "batches back to back"),
        ("live", "a reactor turn after each batch"),
    ):
        rate = ROWS / r[f"redis_{how}_append"]
        figures += [
            {
                "name": f"redis append 1M x 10 fields, 1k-row batches ({what}), until in Redis",
                "value": rate,
                "unit": "samples/s",
                "target": ">= 200,000 samples/s",
                "reference": f"memory store append {mem_rate:,.0f} samples/s",
                "ratio": rate / mem_rate,
                "met": rate >= 200_000,
            },
            {
                "name": f"redis query 1M x 10 fields ({how} writes, {r[f'redis_{how}_segments']} segments)",
                "value": r[f"redis_{how}_query"],
                "unit": "s",
                "target": "<= 2 s",
                "reference": f"memory store query {r['memory_query']:.3f} s",
                "ratio": r[f"redis_{how}_query"] / r["memory_query"],
                "met": r[f"redis_{how}_query"] <= 2.0,
            },
            {
                "name": f"redis query 1M x 10 fields by a restarted node ({how} writes)",
                "value": r[f"redis_{how}_query_restart"],
                "unit": "s",
                "target": "<= 2 s",
                "reference": f"memory store query {r['memory_query']:.3f} s",
                "ratio": r[f"redis_{how}_query_restart"] / r["memory_query"],
                "met": r[f"redis_{how}_query_restart"] <= 2.0,
            },
        ]
    return figures


if __name__ == "__main__":
    _child(sys.argv[1])
