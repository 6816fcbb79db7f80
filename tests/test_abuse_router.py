"""Fault and abuse, router (issue 17): WebSocket consumers that stop reading while
about 6.4 MB/s flows are dropped at the byte bound (obsmesh/routerguard.py), the
router's memory comes back, and a consumer that reads loses nothing. Two rounds,
as in the issue. Figures are printed (`ABUSE {...}`; `pytest -rP`)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.abuse_support import report
from tests.harness import Router, connect, process_tree, rss_kb, wait_until
from tests.nodes_for_tests import probe

# the fault-and-abuse lane (pytest -m abuse -rP); its own router; slow: rounds of stalled consumers
pytestmark = [pytest.mark.abuse, pytest.mark.router, pytest.mark.slow]

SLOW = 10
BOUND = 32 << 20  # max_queued_bytes (the default)
ROWS = 40_000  # rows of (t, x, y) per flush: 960 kB; 7 flushes a second is 6.7 MB/s


def router_kb(router: Router) -> int:
    return sum(rss_kb(p) for p in process_tree(router.proc.pid))


def drops(router: Router) -> int:
    return router.log.read_text(errors="replace").count("bytes queued for it")


@pytest_twisted.ensureDeferred
async def test_consumers_that_stop_reading_are_dropped_and_the_memory_comes_back():
    router = Router(max_queued_bytes=BOUND)
    router.start()
    node = probe(router, "firehose")
    await node.launch()
    fast = await connect(router.ws_url)
    got: list[np.ndarray] = []
    sent = 0
    rounds = []
    try:
        await wait_until(lambda: node._announced, 20, "the node")
        topic = "obsmesh.consumer.firehose.live.array"

        def on_live(event):
            got.append(np.frombuffer(event["t"]["data"], dtype=event["t"]["dtype"]))

        await fast.subscribe(on_live, topic)
        await wait_until(lambda: topic in node._live_wanted, 20, "the node to see the subscriber")
        payload = np.random.default_rng(1).random(ROWS)
        clock = [time.time()]

        def publish() -> None:
            nonlocal sent
            t = clock[0] + np.arange(ROWS) * 1e-6
            clock[0] += 1.0
            node.append("fast", t, {"x": payload, "y": payload})
            node.flush_live()
            sent += ROWS

        pump = task.LoopingCall(publish)
        pump.start(1 / 7)
        await wait_until(lambda: sum(a.size for a in got) >= 20 * ROWS, 30, "the stream to flow")
        baseline = router_kb(router)
        for n in (1, 2):
            slow = [await connect(router.ws_url) for _ in range(SLOW)]
            for s in slow:
                await s.subscribe(lambda event: None, topic)
                s._transport.transport.pauseProducing()  # reads nothing from now on
            before, peak = router_kb(router), 0
            dropped_before = drops(router)
            started = time.time()

            def all_dropped(dropped_before: int = dropped_before) -> bool:
                nonlocal peak
                peak = max(peak, router_kb(router))
                return drops(router) >= dropped_before + SLOW

            await wait_until(all_dropped, 60, f"round {n}: the {SLOW} stalled consumers dropped")
            seconds = time.time() - started
            await wait_until(
                lambda before=before: router_kb(router) < before + 48 * 1024,
                60,
                f"round {n}: the router's memory back near {before // 1024} MiB",
            )
            back = time.time() - started - seconds
            rounds.append(
                {
                    "round": n,
                    "rss_before_mib": round(before / 1024, 1),
                    "rss_peak_mib": round(peak / 1024, 1),
                    "rss_after_mib": round(router_kb(router) / 1024, 1),
                    "seconds_until_all_dropped": round(seconds, 1),
                    "seconds_until_memory_back": round(back, 1),
                }
            )
            for s in slow:
                s._test_component.stop()
        pump.stop()
        await wait_until(
            lambda: sum(a.size for a in got) >= sent,
            30,
            f"the last batches ({sum(a.size for a in got)} of {sent}; {drops(router)} dropped; "
            f"{dict(node.counters)})",
        )
        times = np.concatenate(got)
        report(
            f"router: {SLOW} WebSocket consumers stop reading at 6.7 MB/s, two rounds "
            f"(max_queued_bytes {BOUND >> 20} MiB)",
            {
                "baseline_mib": round(baseline / 1024, 1),
                "rounds": rounds,
                "fast_consumer_samples": int(times.size),
                "published_samples": sent,
            },
        )
        # The reading consumer lost nothing and got everything in order.
        assert times.size == sent and bool(np.all(np.diff(times) > 0))
        # Each round's stalled consumers cost at most their bound, and it came back.
        for r in rounds:
            assert r["rss_peak_mib"] - r["rss_before_mib"] < SLOW * (BOUND >> 20) * 2 + 64
    finally:
        fast.leave()
        await node.shutdown()
        await task.deferLater(reactor, 0.1, lambda: None)
        router.close()
