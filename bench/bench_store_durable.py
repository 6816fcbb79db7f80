"""Durable store against the in-memory store, and the on-disk formats compared.

- append: 1,000,000 rows of 10 fields in batches of 10,000, timed until every
  row is fsynced (`flush`); the in-memory store's append of the same batches
  is the reference.
- get_data 1 M -> 1 k: a node's get_data (min_stride so that about 1,000
  points come back) over 1,000,000 rows that the durable store loaded from
  disk in a fresh open, against the same query on the in-memory store.
- bytes on disk per sample: 7 days x 1 Hz x 10 fields, against raw float64
  (8 bytes per value, time included); for sensor-like values (a random walk
  at 0.01 resolution) and for white noise (incompressible).
- cold start: a fresh Python process that opens a node's durable store of
  7 days x 1 Hz x 10 fields and answers get_data (imports included).
- formats: the candidates for the segments, measured on the same week of
  data: write (fsynced), bytes against raw, full read back into numpy.

The measuring runs in a child process (it needs a reactor of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROWS = 1_000_000
BATCH = 10_000
FIELDS = [f"f{i}" for i in range(10)]
WEEK = 7 * 86400
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _week(noise: bool = False, start: float = 1.7e9):
    import numpy as np

    rng = np.random.default_rng(1)
    t = start + np.arange(WEEK, dtype=np.float64)
    if noise:
        cols = {f: rng.normal(size=WEEK) for f in FIELDS}
    else:  # sensor-like: a slow random walk read at 0.01 resolution
        cols = {f: np.round(20 + np.cumsum(rng.normal(0, 0.05, WEEK)), 2) for f in FIELDS}
    return t, cols


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def _node(store):
    from nodes.base import DataNode
    from obsmesh import config

    class BenchNode(DataNode):
        def declare_fields(self) -> None:
            for f in FIELDS:
                self.declare(f, "tl")

    return BenchNode("bench", config.mesh(environ={}, store="memory"), store=store)


async def _get_data_ms(
    nodes: list, t0: float, t1: float, rounds: int = 10, fields: list[str] = FIELDS
) -> list[float]:
    """Best get_data time of each node, in ms, the nodes taking turns (so a busy
    moment of the shared machine does not fall on one of them only)."""
    stride = (t1 - t0) / 1000
    best = [float("inf")] * len(nodes)
    for _ in range(rounds):
        for i, node in enumerate(nodes):
            started = time.perf_counter()
            reply = await node.get_data(fields, t0, t1, min_stride=stride)
            best[i] = min(best[i], time.perf_counter() - started)
            assert 900 <= len(reply["timeline"]["tl"]["t"]) <= 1100
    return [b * 1000 for b in best]


async def _measure(reactor, root: str) -> dict:
    import numpy as np

    from obsmesh.store.durable import DurableStore
    from obsmesh.store.memory import MemoryStore

    rng = np.random.default_rng(0)
    batches = [
        (
            1.7e9 + np.arange(k * BATCH, (k + 1) * BATCH) * 0.01,
            {f: rng.normal(size=BATCH) for f in FIELDS},
        )
        for k in range(ROWS // BATCH)
    ]
    out: dict = {}
    mem = MemoryStore()
    node_mem = _node(mem)
    started = time.perf_counter()
    for t, cols in batches:
        mem.append_now("tl", t, cols)
    out["memory_append"] = ROWS / (time.perf_counter() - started)

    d = os.path.join(root, "append")
    store = DurableStore(d, reactor=reactor)
    for f in FIELDS:
        store.declare(f, "number")
    await store.open()
    started = time.perf_counter()
    for t, cols in batches:
        store.append_now("tl", t, cols)
    accepted = time.perf_counter() - started
    assert await store.flush(300)
    out["durable_append"] = ROWS / (time.perf_counter() - started)
    out["durable_accept"] = ROWS / accepted
    out["fsyncs"] = store.status()["fsyncs"]
    await store.close()

    # get_data from history the durable store loaded from disk (a fresh open).
    again = DurableStore(d, reactor=reactor)
    started = time.perf_counter()
    await again.open()
    out["reopen_1m_s"] = time.perf_counter() - started
    node_durable = _node(again)
    t0, t1 = float(batches[0][0][0]), float(batches[-1][0][-1]) + 1e-6
    out["get_data_memory_ms"], out["get_data_durable_ms"] = await _get_data_ms(
        [node_mem, node_durable], t0, t1
    )
    # one field of the ten: the shape of bench_mesh's "get_data 1,000,000 -> 1,000"
    out["get_data_memory_1_ms"], out["get_data_durable_1_ms"] = await _get_data_ms(
        [node_mem, node_durable], t0, t1, fields=FIELDS[:1]
    )
    await again.close()

    # Bytes on disk: a week at 1 Hz, sensor-like and white noise.
    for label, noise in (("sensor", False), ("noise", True)):
        path = os.path.join(root, f"week-{label}")
        t, cols = _week(noise)
        s = DurableStore(path, reactor=reactor)
        for f in FIELDS:
            s.declare(f, "number")
        await s.open()
        for a in range(0, WEEK, 3600):  # an hour a batch
            s.append_now("tl", t[a : a + 3600], {f: c[a : a + 3600] for f, c in cols.items()})
        await s.close()
        out[f"bytes_ratio_{label}"] = _du(path) / (WEEK * (1 + len(FIELDS)) * 8)
    return out


COLD = """
import time, sys
t_import = time.perf_counter()
from twisted.internet import defer, task
from nodes.base import DataNode
from obsmesh import config

FIELDS = %r

class Cold(DataNode):
    def declare_fields(self):
        for f in FIELDS:
            self.declare(f, "tl")

async def main(reactor):
    node = Cold("cold", config.mesh(environ={}, store_dir=sys.argv[1]), reactor=reactor)
    await node.store.open()
    reply = await node.get_data(FIELDS, 2e9 - 8 * 86400, 2e9, min_stride=%r)
    assert len(reply["timeline"]["tl"]["t"]) > 800
    print("answered", flush=True)
    await node.store.close()

task.react(lambda r: defer.ensureDeferred(main(r)))
"""


def _cold_start(root: str) -> float:
    """Seconds from starting a Python process to its first get_data answer."""
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            COLD % (FIELDS, 8 * 86400 / 1000),
            os.path.join(root, "week-stores"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    if "answered" not in proc.stdout:
        raise RuntimeError(proc.stderr[-2000:])
    return elapsed


def _prepare_cold(root: str) -> None:
    """A node `cold` whose durable store holds a week at 1 Hz (written by a child)."""
    code = """
import sys
from twisted.internet import defer, task
sys.path.insert(0, sys.argv[2])
from bench.bench_store_durable import _week, FIELDS, WEEK
from obsmesh.store.durable import DurableStore

async def main(reactor):
    t, cols = _week(start=2e9 - WEEK - 10)
    s = DurableStore(sys.argv[1], reactor=reactor)
    for f in FIELDS:
        s.declare(f, "number")
    await s.open()
    for a in range(0, WEEK, 3600):
        s.append_now("tl", t[a : a + 3600], {f: c[a : a + 3600] for f, c in cols.items()})
    await s.close()

task.react(lambda r: defer.ensureDeferred(main(r)))
"""
    subprocess.run(
        [sys.executable, "-c", code, os.path.join(root, "week-stores", "cold"), REPO],
        cwd=REPO,
        check=True,
        timeout=300,
    )


def _formats(root: str) -> dict:
    """The segment format candidates on one week of 1 Hz x 10 fields."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    t, cols = _week()
    table = pa.table({"time": t, **cols})
    raw = WEEK * (1 + len(FIELDS)) * 8
    out = {}

    def fsync(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def timed(write, read, path) -> tuple[float, float, float]:
        started = time.perf_counter()
        write(path)
        fsync(path)
        w = time.perf_counter() - started
        started = time.perf_counter()
        read(path)
        r = time.perf_counter() - started
        return WEEK / w, _du(path) if os.path.isdir(path) else os.path.getsize(path), r

    def np_of(tbl):
        return {c: tbl.column(c).to_numpy() for c in tbl.column_names}

    candidates = {
        "parquet zstd-1, times byte-stream-split (chosen)": (
            lambda p: pq.write_table(
                table,
                p,
                compression="zstd",
                compression_level=1,
                use_dictionary=False,
                use_byte_stream_split=["time"],
                write_page_checksum=True,
                row_group_size=1 << 16,
            ),
            lambda p: np_of(pq.read_table(p)),
        ),
        "parquet zstd-1, all byte-stream-split": (
            lambda p: pq.write_table(
                table, p, compression="zstd", use_dictionary=False, use_byte_stream_split=True
            ),
            lambda p: np_of(pq.read_table(p)),
        ),
        "parquet uncompressed": (
            lambda p: pq.write_table(table, p, compression="none", use_dictionary=False),
            lambda p: np_of(pq.read_table(p)),
        ),
        "arrow ipc lz4": (
            lambda p: feather.write_feather(table, p, compression="lz4"),
            lambda p: np_of(feather.read_table(p)),
        ),
        "arrow ipc zstd": (
            lambda p: feather.write_feather(table, p, compression="zstd"),
            lambda p: np_of(feather.read_table(p)),
        ),
    }

    def sqlite_write(p):  # column-chunk blobs, one transaction per 1,000 rows (its own log)
        db = sqlite3.connect(p)
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=full")
        db.execute("create table chunk (first real, col text, data blob)")
        names = [("time", t), *cols.items()]
        for a in range(0, WEEK, 1000):
            with db:
                db.executemany(
                    "insert into chunk values (?, ?, ?)",
                    [(float(t[a]), n, c[a : a + 1000].tobytes()) for n, c in names],
                )
        db.execute("pragma wal_checkpoint(truncate)")
        db.close()

    def sqlite_read(p):
        db = sqlite3.connect(p)
        parts: dict = {}
        for n, data in db.execute("select col, data from chunk order by first"):
            parts.setdefault(n, []).append(np.frombuffer(data))
        db.close()
        return {n: np.concatenate(v) for n, v in parts.items()}

    candidates["sqlite column-chunk blobs (commit / 1,000 rows)"] = (sqlite_write, sqlite_read)
    try:
        import duckdb

        def duck_write(p):  # a table, one transaction per 10,000 rows
            con = duckdb.connect(p)
            week = table  # noqa: F841 (read by the SQL below)
            con.execute("create table s as select * from week limit 0")
            for a in range(0, WEEK, 10_000):
                part = table.slice(a, 10_000)  # noqa: F841 (read by the SQL below)
                con.execute("insert into s select * from part")
            con.execute("checkpoint")
            con.close()

        def duck_read(p):
            con = duckdb.connect(p, read_only=True)
            got = np_of(con.sql("select * from s order by time").to_arrow_table())
            con.close()
            return got

        candidates["duckdb table (commit / 10,000 rows)"] = (duck_write, duck_read)
    except ImportError:
        pass
    for i, (name, (write, read)) in enumerate(candidates.items()):
        path = os.path.join(root, f"format-{i}")
        rate, size, read_s = timed(write, read, path)
        out[name] = {"rows_per_s": rate, "bytes_ratio": size / raw, "read_ms": read_s * 1000}
    return out


def run() -> list[dict]:
    root = tempfile.mkdtemp(prefix="bench-durable-", dir=REPO)  # on the disk, not a tmpfs
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.bench_store_durable", "child", root],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if not line:
            raise RuntimeError(proc.stderr[-3000:])
        r = json.loads(line[-1])
        _prepare_cold(root)
        cold = min(_cold_start(root) for _ in range(3))
        formats = _formats(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = r["durable_append"] / r["memory_append"]
    figures = [
        {
            "name": "memory append (reference)",
            "value": r["memory_append"],
            "unit": "rows/s (10 fields)",
            "target": "",
        },
        {
            "name": "durable append, fsynced",
            "value": r["durable_append"],
            "unit": "rows/s (10 fields)",
            "target": ">= 0.5x memory and >= 1,000,000",
            "reference": "memory append",
            "ratio": ratio,
            "met": ratio >= 0.5 and r["durable_append"] >= 1e6,
        },
        {
            "name": "durable append, accepted (before fsync)",
            "value": r["durable_accept"],
            "unit": "rows/s",
            "target": "",
        },
        {
            "name": "get_data 1M -> 1k of 1 field, memory (reference)",
            "value": r["get_data_memory_1_ms"],
            "unit": "ms",
            "target": "",
        },
        {
            "name": "get_data 1M -> 1k of 1 field, durable (history loaded from disk)",
            "value": r["get_data_durable_1_ms"],
            "unit": "ms",
            "target": "<= 20 ms, as memory",
            "reference": "memory",
            "ratio": r["get_data_durable_1_ms"] / r["get_data_memory_1_ms"],
            "met": r["get_data_durable_1_ms"] <= 20,
        },
        {
            "name": "get_data 1M -> 1k of 10 fields, memory (reference)",
            "value": r["get_data_memory_ms"],
            "unit": "ms",
            "target": "",
        },
        {
            "name": "get_data 1M -> 1k of 10 fields, durable (history loaded from disk)",
            "value": r["get_data_durable_ms"],
            "unit": "ms",
            "target": "as memory (10 x the values of the 1-field query)",
            "reference": "memory",
            "ratio": r["get_data_durable_ms"] / r["get_data_memory_ms"],
        },
        {"name": "reopen 1M rows (open -> served)", "value": r["reopen_1m_s"], "unit": "s"},
        {
            "name": "bytes on disk per sample / raw, sensor-like week",
            "value": r["bytes_ratio_sensor"],
            "unit": "x raw",
            "target": "<= 1.3x",
            "met": r["bytes_ratio_sensor"] <= 1.3,
        },
        {
            "name": "bytes on disk per sample / raw, white-noise week",
            "value": r["bytes_ratio_noise"],
            "unit": "x raw",
            "target": "<= 1.3x",
            "met": r["bytes_ratio_noise"] <= 1.3,
        },
        {
            "name": "cold start, 7 d x 1 Hz x 10 fields: process start -> first get_data",
            "value": cold,
            "unit": "s",
            "target": "<= 2 s",
            "met": cold <= 2.0,
        },
    ]
    for name, f in formats.items():
        figures.append(
            {
                "name": f"format {name}: write / bytes vs raw / full read",
                "value": f"{f['rows_per_s'] / 1e6:.2f} M rows/s, {f['bytes_ratio']:.2f}x, "
                f"{f['read_ms']:.0f} ms",
                "unit": "",
            }
        )
    return figures


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "child":
    sys.path.insert(0, REPO)
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor

    holder: dict = {}

    async def _main() -> None:
        holder.update(await _measure(_reactor, sys.argv[2]))

    done = defer.ensureDeferred(_main())
    done.addErrback(lambda f: f.printTraceback())
    done.addBoth(lambda _: _reactor.stop())
    _reactor.run()
    print(json.dumps(holder))
