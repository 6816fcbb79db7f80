"""The subscriber side of the fan-out benchmark: N WebSocket (JSON) sessions on one topic.

    python -m bench.fanout_subscribers WS_URL N TOPIC SECONDS

Joins N sessions, subscribes each to TOPIC, prints "subscribed" once all are,
then counts events for SECONDS and prints one JSON line: events received,
sessions, and the latency of each event's last sample (receive time minus its
time stamp, milliseconds, percentiles).
"""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import defer, reactor, task

from tests.harness import connect


async def join(url: str):
    """One session; a few attempts (a loaded router may drop an opening handshake)."""
    last = None
    for _ in range(5):
        try:
            return await connect(url, serializer="json", timeout=60)
        except Exception as exc:
            last = exc
            await task.deferLater(reactor, 1.0, lambda: None)
    raise RuntimeError(f"no session after 5 attempts: {last!r}")


async def main(url: str, n: int, topic: str, seconds: float) -> dict:
    sessions = []
    while len(sessions) < n:  # 20 opening handshakes at a time
        batch = [defer.ensureDeferred(join(url)) for _ in range(min(20, n - len(sessions)))]
        sessions += await defer.gatherResults(batch, consumeErrors=True)
    counting = {"on": False, "events": 0}
    lat: list[float] = []

    def on_event(ev):
        if counting["on"]:
            counting["events"] += 1
            if len(lat) < 200_000 and ev.get("t"):
                lat.append(time.time() - ev["t"][-1])

    for s in sessions:
        await s.subscribe(on_event, topic)
    print("subscribed", flush=True)
    await task.deferLater(reactor, 2.0, lambda: None)  # let the first burst settle
    counting["on"] = True
    start = time.monotonic()
    await task.deferLater(reactor, seconds, lambda: None)
    counting["on"] = False
    elapsed = time.monotonic() - start
    for s in sessions:
        s.leave()
    lat.sort()

    def pct(q):
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {
        "sessions": n,
        "events": counting["events"],
        "seconds": elapsed,
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
    }


def run() -> None:
    url, n, topic, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    d = defer.ensureDeferred(main(url, n, topic, seconds))

    def done(result):
        print(json.dumps(result), flush=True)
        reactor.stop()

    def failed(f):
        err = f.value.subFailure.value if hasattr(f.value, "subFailure") else f.value
        print(json.dumps({"error": repr(err)}), flush=True)
        reactor.stop()

    d.addCallbacks(done, failed)
    reactor.run()


if __name__ == "__main__":
    run()
