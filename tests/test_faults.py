"""Fault injection through a real router: node crash and restart, Redis restart
under a Redis-backed store, and a consumer that stops reading."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.harness import (
    RedisServer,
    connect,
    process_tree,
    rss_kb,
    spawn,
    stop_process,
    wait_until,
)
from tests.nodes_for_tests import probe

GET = "obsmesh.consumer.get_data_node"


async def names(session):
    return [n["name"] for n in await session.call(GET)]


@pytest.mark.slow  # measured 3-6 s and a node process
@pytest_twisted.ensureDeferred
async def test_node_killed_and_restarted_hub_state_correct(router, tmp_path):
    args = ["node", "sensors", "--name", "phoenix", "--interval", "0.2"]
    proc = spawn(args, router.env(), tmp_path / "phoenix.log")
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _has(s, "phoenix"), 30, "the node")
        stop_process(proc, signal.SIGKILL)
        killed = time.monotonic()
        await wait_until(lambda: _lacks(s, "phoenix"), 2.0, "the hub to drop the node")
        assert time.monotonic() - killed < 2.0
        proc = spawn(args, router.env(), tmp_path / "phoenix.log")
        await wait_until(lambda: _has(s, "phoenix"), 30, "the node again")
        assert (await names(s)).count("phoenix") == 1
        r = await s.call("obsmesh.consumer.phoenix.get_data", ["load1"], -30, 0)
        assert r["data"]["load1"]
    finally:
        stop_process(proc, signal.SIGKILL)
        s.leave()


async def _has(s, name):
    return name in await names(s)


async def _lacks(s, name):
    return name not in await names(s)


@pytest_twisted.ensureDeferred
async def test_redis_restart_under_a_redis_backed_node(router, tmp_path):
    redis = RedisServer()
    redis.start()
    node = probe(router, "redisnode", store="redis", redis_url=redis.url)
    await node.launch()
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: node._announced, 20, "the node")
        base = time.time() - 1000
        node.append("fast", base + np.arange(10.0), {"x": np.arange(10.0)})
        await wait_until(lambda: _count(s, base, 10), 10, "the first samples in Redis")
        redis.stop()
        node.append(
            "fast", base + 10 + np.arange(10.0), {"x": 10 + np.arange(10.0)}
        )  # while Redis is down
        err = await _error(s, base)
        assert err == "obsmesh.error.unavailable"  # a clear error, and the node lives on
        status = await s.call("obsmesh.consumer.redisnode.get_status")
        assert status["connected"]
        redis.start()  # an empty Redis (this one keeps nothing): the pending rows land again
        node.append("fast", base + 20 + np.arange(10.0), {"x": 20 + np.arange(10.0)})
        await wait_until(
            lambda: _count(s, base + 10, 20), 30, "writes to resume after Redis came back"
        )
        r = await s.call("obsmesh.consumer.redisnode.get_data", ["x"], base + 10, base + 30)
        assert r["data"]["x"] == list(np.arange(10.0, 30.0))
    finally:
        s.leave()
        await node.shutdown()
        redis.close()


async def _count(s, start, n):
    try:
        r = await s.call("obsmesh.consumer.redisnode.get_data", ["x"], start, start + 100)
    except Exception:
        return False
    return len(r["data"]["x"]) >= n


async def _error(s, base):
    try:
        await s.call("obsmesh.consumer.redisnode.get_data", ["x"], base, base + 100)
    except Exception as exc:
        return getattr(exc, "error", None)
    return None


@pytest.mark.slow  # about 25 s of feed
@pytest_twisted.ensureDeferred
async def test_a_consumer_that_stops_reading_is_dropped_and_memory_stays_bounded(own_router):
    router = own_router
    node = probe(router, "firehose")
    await node.launch()
    fast = await connect(router.ws_url, serializer="json")
    slow = await connect(router.ws_url, serializer="json")
    got = []
    try:
        await wait_until(lambda: node._announced, 20, "the node")
        await fast.subscribe(
            lambda ev: got.append((time.time(), ev["t"][-1])), "obsmesh.consumer.firehose.live"
        )
        await slow.subscribe(lambda ev: None, "obsmesh.consumer.firehose.live")
        slow._transport.transport.pauseProducing()  # reads nothing from now on
        left = []
        slow.on("leave", lambda *a: left.append(time.time()))
        workers = process_tree(router.proc.pid)
        before = sum(rss_kb(p) for p in workers)
        rss = []  # (seconds since start, router kB above the start)
        payload = np.random.default_rng(1).random(5000)  # ~200 kB of JSON per batch
        start = time.time()
        # The router's meta event when it drops the stalled consumer (whose session id
        # is gone by then): the live topic loses a subscriber, the fast one stays.
        watcher = await connect(router.backend_url)
        live = await watcher.call("wamp.subscription.lookup", "obsmesh.consumer.firehose.live")
        unsubscribed = []
        await watcher.subscribe(
            lambda session, subscription: unsubscribed.append(subscription),
            "wamp.subscription.on_unsubscribe",
        )

        def feed() -> None:  # ~2 MB/s: kept for the stalled consumer, megabytes a second
            now = time.time()
            node.append("fast", now + np.arange(5000) * 1e-6, {"x": payload, "y": payload})
            node.flush_live()
            rss.append((now - start, sum(rss_kb(p) for p in workers) - before))

        feeding = task.LoopingCall(feed)
        feeding.start(0.1)
        try:
            # Fed until the router drops the stalled consumer (its WebSocket ping
            # timeout, 10-20 s in), then 10 s more to see the router stop growing.
            await wait_until(
                lambda: live in unsubscribed,
                60,
                "the router to drop the stalled consumer",
                interval=0.1,
            )
            dropped = time.time() - start
            await task.deferLater(reactor, 10, lambda: None)  # the scenario: 10 s more feed
        finally:
            if feeding.running:
                feeding.stop()
            watcher.leave()
        end = rss[-1][0]
        lags = [recv - t for recv, t in got[-20:]]
        assert got and max(lags) < 1.0  # the fast consumer kept up all along
        at = lambda sec: max(kb for t, kb in rss if t <= sec)  # noqa: E731
        # The stalled consumer made the router buffer (megabytes a second) until the
        # WebSocket ping timeout dropped it; after that the router stops growing.
        assert at(10) > 8 * 1024, f"no pressure on the router: {rss[-1]}"
        assert at(end) - at(end - 10) < 4 * 1024, (
            f"router still growing after the drop at {dropped:.0f} s: "
            f"{at(end - 10)} -> {at(end)} kB"
        )
        # The stalled client only learns it was dropped once it reads again.
        slow._transport.transport.resumeProducing()
        await wait_until(lambda: left, 15, "the stalled consumer to find itself dropped")
    finally:
        fast.leave()
        await node.shutdown()
