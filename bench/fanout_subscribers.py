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

from obsmesh.wamp import component


async def main(url: str, n: int, topic: str, seconds: float) -> dict:
    """N sessions that rejoin and resubscribe by themselves if dropped (a loaded
    machine may miss a ping deadline); opened 10 at a time."""
    counting = {"on": False, "events": 0, "joins": 0}
    lat: list[float] = []

    def on_event(ev):
        if counting["on"]:
            counting["events"] += 1
            if len(lat) < 200_000 and ev.get("t"):
                lat.append(time.time() - ev["t"][-1])

    comps = []
    for first in range(0, n, 10):
        batch = []
        for _ in range(min(10, n - first)):
            comp = component(url, "obsmesh", authentication={}, serializer="json")
            ready: defer.Deferred = defer.Deferred()

            async def joined(session, details, ready=ready):
                await session.subscribe(on_event, topic)
                counting["joins"] += 1
                if not ready.called:
                    ready.callback(None)

            comp.on("join", lambda s, d, j=joined: defer.ensureDeferred(j(s, d)))
            comp.start(reactor)
            comps.append(comp)
            batch.append(ready)
        await defer.gatherResults(batch)
    print("subscribed", flush=True)
    await task.deferLater(reactor, 2.0, lambda: None)  # let the first burst settle
    counting["on"] = True
    start = time.monotonic()
    await task.deferLater(reactor, seconds, lambda: None)
    counting["on"] = False
    elapsed = time.monotonic() - start
    for comp in comps:
        comp.stop()
    lat.sort()

    def pct(q):
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {
        "sessions": n,
        "joins": counting["joins"],  # more than sessions: some were dropped and rejoined
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
