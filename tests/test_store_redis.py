"""The Redis store against a real redis-server, checked against the in-memory store."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
import pytest_twisted
import txredisapi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task, threads

from obsmesh.store import MemoryStore, StoreError
from obsmesh.store import redis as redis_store
from obsmesh.store.redis import MAINTAIN_EVERY, RedisStore, StoreUnavailable, parse_url
from tests.harness import RedisServer, free_port

TYPES = {"x": "number", "s": "string", "b": "bool"}
EVERYTHING = (-math.inf, math.inf)


def fresh(url: str, *args, **kw) -> RedisStore:
    return RedisStore(url, f"obsmesh:test:{uuid.uuid4().hex}", *args, **kw)


def declare(*stores, types=TYPES):
    for s in stores:
        for f, k in types.items():
            s.declare(f, k)


def same_column(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.dtype == b.dtype and a.tolist() == b.tolist()
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
    )


async def assert_same(
    redis: RedisStore, memory: MemoryStore, timeline: str, fields, ranges
) -> None:
    for start, end in ranges:
        t1, c1 = await redis.query(timeline, fields, start, end)
        t2, c2 = await memory.query(timeline, fields, start, end)
        assert t1.tolist() == t2.tolist(), (start, end)
        for f in fields:
            assert same_column(c1[f], c2[f]), (f, c1[f], c2[f])
        assert await redis.count(timeline, start, end) == await memory.count(timeline, start, end)
    assert await redis.span(timeline) == await memory.span(timeline)


async def feed(stores, timeline, t, cols):
    for s in stores:
        assert await s.append(timeline, t, cols) == len(t)


class PersistentRedis(RedisServer):
    """A redis-server with an append-only file, so a stop and start loses nothing."""

    def start(self) -> None:
        import subprocess

        from tests.harness import port_open, wait_for

        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 20, "redis-server")


# -- exact values, restart, replicas -------------------------------------------


@pytest_twisted.ensureDeferred
async def test_round_trip_is_exact_and_survives_a_node_restart(redis_server):
    ns = f"obsmesh:test:{uuid.uuid4().hex}"
    a = RedisStore(redis_server.url, ns, 1e10)
    declare(a)
    t = [1.5, 1e-300, 1700000000.123456789, -5.0]
    x = [math.pi, -0.0, math.inf, None]
    s = ["é ü", "", None, "\ud800 lone surrogate"]
    b = [True, False, None, True]
    await a.append("weird:tl/name|x", t, {"x": x, "s": s, "b": b})
    await a.close()  # flushes

    again = RedisStore(redis_server.url, ns, 1e10)  # a restarted node: declares nothing yet
    got_t, cols = await again.query("weird:tl/name|x", ["x", "s", "b"], -10, 2e9)
    order = np.argsort(t, kind="stable")
    assert got_t.tobytes() == np.asarray(t)[order].tobytes()
    want_x = np.array([math.nan if v is None else v for v in x])[order]
    assert cols["x"][~np.isnan(want_x)].tobytes() == want_x[~np.isnan(want_x)].tobytes()  # -0.0 too
    assert np.isnan(cols["x"]).tolist() == np.isnan(want_x).tolist()
    assert cols["s"].tolist() == [s[i] for i in order]
    want_b = [math.nan if b[i] is None else float(b[i]) for i in order]
    assert same_column(cols["b"], np.array(want_b)) and want_b[:3] == [1.0, 0.0, 1.0]
    assert again.types == TYPES  # the types came back from Redis
    await again.close()


@pytest_twisted.ensureDeferred
async def test_replicas_on_one_namespace_see_each_others_rows(redis_server):
    ns = f"obsmesh:test:{uuid.uuid4().hex}"
    a, b, m = RedisStore(redis_server.url, ns), RedisStore(redis_server.url, ns), MemoryStore()
    declare(a, b, m)
    for k in range(20):
        writer = a if k % 2 else b
        t = np.arange(k * 10, k * 10 + 10) + 0.25 * (k % 3)
        await feed([writer, m], "tl", t, {"x": t * 2, "s": [f"{k}"] * 10})
    assert await a.flush(10) and await b.flush(10)
    for s in (a, b):
        await assert_same(s, m, "tl", ["x", "s"], [EVERYTHING, (15, 77.5)])
    await a.close()
    await b.close()


# -- the same answers as the in-memory store -------------------------------------

times = st.lists(st.integers(0, 40).map(lambda v: v / 2), min_size=1, max_size=12)
number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
text = st.one_of(st.none(), st.text(max_size=3))


@st.composite
def operation(draw):
    kind = draw(st.sampled_from(["append"] * 6 + ["flush", "maintain", "declare", "check"]))
    if kind != "append":
        return (kind,)
    t = draw(times)
    n = len(t)
    cols = {}
    for name, values in [
        ("x", number),
        ("s", text),
        ("b", st.one_of(st.none(), st.booleans())),
        ("late", number),
    ]:
        if draw(st.booleans()):
            cols[name] = draw(st.lists(values, min_size=n, max_size=n))
    return ("append", draw(st.sampled_from(["a", "b"])), t, cols)


async def one_example(url, ops, max_samples, max_age, ranges):
    r = fresh(url, max_age, max_samples, segment_rows=7, small_rows=5, max_small=1)
    m = MemoryStore(max_age, max_samples)
    declare(r, m)
    ranges = [EVERYTHING, *ranges]
    fields = ["x", "s", "b", "late"]
    try:
        for op in ops:
            if op[0] == "append":
                _, tl, t, cols = op
                if "late" in cols and "late" not in m.types:
                    cols = {k: v for k, v in cols.items() if k != "late"}
                await feed([r, m], tl, t, cols)
            elif op[0] == "flush":
                assert await r.flush(10)
            elif op[0] == "maintain":
                await r.flush(10)
                await r.maintain()
            elif op[0] == "declare":
                declare(r, m, types={"late": "number"})
            else:
                for tl in ("a", "b"):
                    await assert_same(r, m, tl, fields, ranges)
        for tl in ("a", "b"):
            await assert_same(r, m, tl, fields, ranges)  # with pending rows
        assert await r.flush(10)
        for tl in ("a", "b"):
            await assert_same(r, m, tl, fields, ranges)
        await r.maintain()
        for tl in ("a", "b"):
            await assert_same(r, m, tl, fields, ranges)
            assert await r.stored_rows(tl) == m.size(tl)  # evicted in Redis too
    finally:
        await r.close()


@pytest_twisted.ensureDeferred
async def test_same_answers_as_the_memory_store(redis_server):
    """Random batches (out of order, ties, missing fields, late fields) with tiny segments
    and compaction thresholds, read at random points: pending, written, compacted.
    Hypothesis runs in a thread; each example runs on the reactor."""

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(
        ops=st.lists(operation(), min_size=1, max_size=25),
        max_samples=st.integers(3, 60),
        max_age=st.sampled_from([2.0, 7.5, 1000.0]),
        ranges=st.lists(
            st.tuples(st.integers(-2, 42), st.integers(0, 30)).map(
                lambda p: (p[0] / 2, p[0] / 2 + p[1])
            ),
            max_size=3,
        ),
    )
    def check(ops, max_samples, max_age, ranges):
        threads.blockingCallFromThread(
            reactor,
            lambda: defer.ensureDeferred(
                one_example(redis_server.url, ops, max_samples, max_age, ranges)
            ),
        )

    await threads.deferToThread(check)


@pytest_twisted.ensureDeferred
async def test_unwritten_rows_are_read_once_while_a_write_is_in_flight(redis_server):
    r, m = fresh(redis_server.url), MemoryStore()
    declare(r, m)
    assert await r.count("tl", 0, 1) == 0  # connected: the first append's write goes out at once
    for k in range(50):  # no reactor turn in between: one write in flight, the rest pending
        t = np.arange(k, k + 30) * 1.0 if k % 7 else np.arange(30) * 0.5  # some out of order
        await feed([r, m], "tl", t, {"x": t + k, "s": [str(k)] * 30})
    assert r.pending_rows("tl") == 50 * 30
    await assert_same(r, m, "tl", ["x", "s"], [EVERYTHING, (3.5, 20)])
    assert await r.flush(10)
    assert r.pending_rows() == 0
    await assert_same(r, m, "tl", ["x", "s"], [EVERYTHING, (3.5, 20)])
    await r.close()


# -- compaction ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_compaction_keeps_answers_and_bounds_the_segments(redis_server):
    r, m = (
        fresh(redis_server.url, 1e9, 10**9, max_small=4, small_rows=50, segment_rows=200),
        MemoryStore(1e9, 10**9),
    )
    declare(r, m)
    rng = np.random.default_rng(7)
    for k in range(300):  # 1 Hz style: one small write each, some reaching back in time
        t = [float(k)] if k % 10 else sorted(rng.integers(0, k + 1, size=3).astype(float).tolist())
        await feed([r, m], "tl", t, {"x": rng.normal(size=len(t)), "s": [f"k{k}"] * len(t)})
        assert await r.flush(10)
    # the writer compacts every MAINTAIN_EVERY writes, so segments stay few
    assert await r.segment_count("tl") <= r.max_small + MAINTAIN_EVERY + 300 // r.segment_rows + 2
    await assert_same(r, m, "tl", ["x", "s"], [EVERYTHING, (17, 123.5)])
    r.max_small = 0
    await r.maintain("tl")
    assert await r.segment_count("tl") <= 3  # ~330 rows in segments of at most 200
    await assert_same(r, m, "tl", ["x", "s"], [EVERYTHING, (17, 123.5), (299, 300)])
    await r.close()


@pytest_twisted.ensureDeferred
async def test_eviction_by_age_and_size_reaches_redis(redis_server):
    r, m = fresh(redis_server.url, 100.0, 1000), MemoryStore(100.0, 1000)
    declare(r, m)
    for k in range(10):
        t = np.arange(k * 500, (k + 1) * 500) * 0.1
        await feed([r, m], "tl", t, {"x": t})
        assert await r.flush(10)
    await r.maintain("tl")
    assert await r.stored_rows("tl") == m.size("tl") == 1000
    await assert_same(r, m, "tl", ["x"], [EVERYTHING, (420, 450)])
    await r.close()


@pytest_twisted.ensureDeferred
async def test_a_read_whose_segments_a_replica_compacts_away_reads_again(redis_server):
    ns = f"obsmesh:test:{uuid.uuid4().hex}"
    reader, other, m = (
        RedisStore(redis_server.url, ns),
        RedisStore(redis_server.url, ns),
        MemoryStore(),
    )
    declare(reader, other, m)
    for k in range(40):
        await feed([reader, m], "tl", [k / 2, 20 - k / 3], {"x": [k, -k]})
        assert await reader.flush(10)
    fetch = reader._fetch

    async def compact_first(*args):  # the replica compacts between index read and fetch
        reader._fetch = fetch
        other.max_small = 0
        await other.maintain("tl")
        return await fetch(*args)

    reader._fetch = compact_first
    await assert_same(reader, m, "tl", ["x"], [EVERYTHING])
    assert reader.rereads == 1 and await reader.segment_count("tl") < 40
    await reader.close()
    await other.close()


@pytest_twisted.ensureDeferred
async def test_replicas_maintaining_at_once_neither_lose_nor_double_rows(redis_server, monkeypatch):
    monkeypatch.setattr(redis_store, "MAINTAIN_EVERY", 10**9)  # maintenance only when asked
    ns = f"obsmesh:test:{uuid.uuid4().hex}"
    kw = {"max_small": 0, "small_rows": 100, "segment_rows": 16}
    a, b = (
        RedisStore(redis_server.url, ns, 30.0, 10**6, **kw),
        RedisStore(redis_server.url, ns, 30.0, 10**6, **kw),
    )
    m = MemoryStore(30.0, 10**6)
    declare(a, b, m)
    for k in range(60):
        await feed([a, m], "tl", [float(k), k - 0.5], {"x": [k, k]})
        assert await a.flush(10)
    replace = a._replace
    outcomes = []

    async def b_goes_first(conn, name, old, new=None):
        if new is not None and not outcomes:  # a has read rows and is about to rewrite them
            outcomes.append("raced")
            await b.maintain("tl")  # b evicts and compacts the same segments first
            outcomes.append(await replace(conn, name, old, new))
            return outcomes[-1]
        return await replace(conn, name, old, new)

    a._replace = b_goes_first
    await a.maintain("tl")
    assert outcomes == ["raced", False]  # a's rewrite was refused, not applied twice
    a._replace = replace
    await a.maintain("tl")
    assert await a.stored_rows("tl") == m.size("tl")
    await assert_same(a, m, "tl", ["x"], [EVERYTHING, (40, 50)])
    await assert_same(b, m, "tl", ["x"], [EVERYTHING])
    await a.close()
    await b.close()


# -- Redis going away ---------------------------------------------------------------


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_redis_stopped_and_started_mid_appends_loses_nothing():
    server = PersistentRedis()
    await threads.deferToThread(server.start)
    try:
        r = RedisStore(server.url, "obsmesh:outage", retry_max_delay=0.1)
        m = MemoryStore()
        declare(r, m)
        for k in range(90):
            if k == 30:
                assert await r.flush(10)
                await threads.deferToThread(server.stop)
            if k == 60:
                assert r.pending_rows("tl") > 0
                with pytest.raises(StoreUnavailable):
                    await r.query("tl", ["x"], *EVERYTHING)
                await threads.deferToThread(server.start)
            t = np.arange(k * 5, k * 5 + 5) * 1.0
            await feed([r, m], "tl", t, {"x": t, "s": ["v"] * 5})  # never raises
            await task.deferLater(reactor, 0.005, lambda: None)
        assert await r.flush(20)
        assert r.dropped == 0
        await r.close()
        again = RedisStore(server.url, "obsmesh:outage")
        await assert_same(again, m, "tl", ["x", "s"], [EVERYTHING])
        await again.close()
    finally:
        await threads.deferToThread(server.close)


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_pending_rows_are_capped_while_redis_is_down():
    server = RedisServer()  # not started yet: the store starts during an outage
    r = RedisStore(server.url, "obsmesh:cap", max_pending=100, retry_max_delay=0.1, connect_wait=0)
    declare(r)
    try:
        for k in range(5):
            t = np.arange(k * 50, k * 50 + 50) * 1.0
            assert await r.append("tl", t, {"x": t}) == 50
            await task.deferLater(reactor, 0.01, lambda: None)
        assert r.dropped == 150 and r.pending_rows("tl") == 100
        with pytest.raises(StoreUnavailable):
            await r.count("tl", *EVERYTHING)
        await threads.deferToThread(server.start)
        assert await r.flush(20)
        t, cols = await r.query("tl", ["x"], *EVERYTHING)
        assert t.tolist() == list(np.arange(150.0, 250.0)) and cols["x"].tolist() == t.tolist()
    finally:
        await r.close(timeout=1)
        await threads.deferToThread(server.close)


# -- hostile contents and arguments -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_foreign_or_corrupt_redis_contents_do_not_break_reads(redis_server):
    r = fresh(redis_server.url)
    declare(r)
    await r.append("tl", [1.0, 2.0], {"x": [1.0, 2.0], "s": ["a", "b"]})
    assert await r.flush(10)
    conn = await txredisapi.Connection(
        redis_server.host, redis_server.port, charset=None, convertNumbers=False
    )
    try:
        idx = f"{r.namespace}:tl:tl:idx"
        (member,) = await conn.zrange(idx, 0, -1)
        seg = f"{r.namespace}:tl:tl:seg:" + member.split(b"|")[0].decode()
        await conn.zadd(idx, 5, b"not|a|member")
        await conn.hset(seg, b"n:x", b"short")
        await conn.hset(seg, b"s:s", b"\xc1 not msgpack")
    finally:
        await conn.disconnect()
    t, cols = await r.query("tl", ["x", "s"], *EVERYTHING)
    assert t.tolist() == [1.0, 2.0]
    assert np.isnan(cols["x"]).all() and cols["s"].tolist() == [None, None]
    await r.close()


def test_bad_settings_are_refused():
    for url in ["http://h:1/", "redis://", "redis://h:port/", "redis://h:1/db"]:
        with pytest.raises(StoreError):
            parse_url(url)
    assert parse_url("redis://:p%40ss@h:7/3")["password"] == "p@ss"
    with pytest.raises(StoreError):
        RedisStore(f"redis://127.0.0.1:{free_port()}/0", "")


@pytest_twisted.ensureDeferred
async def test_bad_batches_store_nothing_and_closed_store_refuses(redis_server):
    r = fresh(redis_server.url)
    declare(r)
    for t, cols in [([2.0], {"zz": [1]}), ([2.0, 3.0], {"x": [1]}), ([math.nan], {"x": [1]})]:
        with pytest.raises(StoreError):
            await r.append("tl", t, cols)
    assert r.pending_rows() == 0
    await r.close()
    with pytest.raises(StoreError):
        await r.append("tl", [1.0], {"x": [1.0]})
    with pytest.raises(StoreUnavailable):
        await r.query("tl", ["x"], 0, 1)
