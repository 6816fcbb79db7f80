"""The subscriber side of the soak: N WebSocket consumers on every node's live topic.

    python -m bench.soak_subscribers WS_URL N SECONDS

Prints one JSON line: events per topic per subscriber, and how many each missed
compared with the subscriber that got the most.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

from twisted.internet import defer, reactor, task

from tests.harness import connect


async def main(url: str, n: int, seconds: float) -> dict:
    first = await connect(url, serializer="json")
    nodes = [x["name"] for x in await first.call("obsmesh.consumer.get_data_node")]
    topics = [f"obsmesh.consumer.{name}.live" for name in nodes]
    seen: list[set] = [set() for _ in range(n)]  # events by (topic, first sample time, samples)
    sessions = [first]
    for _ in range(n - 1):
        sessions.append(await connect(url, serializer="json"))

    def on_event(ev, i, topic):
        if ev.get("t"):
            seen[i].add((topic, ev["timeline"], ev["t"][0], len(ev["t"])))

    for i, s in enumerate(sessions):
        for topic in topics:
            await s.subscribe(lambda ev, i=i, topic=topic: on_event(ev, i, topic), topic)
    # Compare only events stamped well inside the window every subscriber covered.
    start = time.time() + 2.0
    await task.deferLater(reactor, seconds, lambda: None)
    end = time.time() - 5.0
    window = [{k for k in s if start <= k[2] <= end} for s in seen]
    union = set().union(*window)
    missed = sum(len(union - w) for w in window)
    for s in sessions:
        s.leave()
    per_topic = Counter(k[0] for k in union)
    return {
        "nodes": nodes,
        "subscribers": n,
        "events_per_topic": dict(per_topic),
        "missed": missed,
        "events_total": sum(len(w) for w in window),
        "time": time.time(),
    }


if __name__ == "__main__":
    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    async def go():
        try:
            print(json.dumps(await main(url, n, seconds)), flush=True)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(go()))
    reactor.run()
