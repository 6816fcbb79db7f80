"""The consumers of `make bench-network`: N WebSocket (JSON) sessions, each
subscribed to every given live topic, writing one line per event to OUT:
receive time, the time of the event's last sample, the topic's index.

    python -m bench.network_subscribers WS_URL N OUT TOPIC...

Prints "subscribed" once every session is; runs until terminated.
"""

from __future__ import annotations

import sys
import time

from twisted.internet import defer, reactor

from obsmesh.wamp import component


async def main(url: str, n: int, out: str, topics: list[str]) -> None:
    f = open(out, "a", buffering=1 << 16)  # noqa: SIM115 - flushed at exit
    reactor.addSystemEventTrigger("before", "shutdown", f.close)

    def on_event(ev, index):
        t = ev.get("t") if isinstance(ev, dict) else None
        if t:
            f.write(f"{time.time():.3f} {t[-1]:.3f} {index}\n")

    ready = []
    for _ in range(n):  # each session rejoins and resubscribes if it is dropped
        comp = component(url, "obsmesh", authentication={}, serializer="json")
        d: defer.Deferred = defer.Deferred()

        async def joined(session, details, d=d):
            for i, topic in enumerate(topics):
                await session.subscribe(lambda ev, i=i: on_event(ev, i), topic)
            if not d.called:
                d.callback(None)

        comp.on("join", lambda s, det, j=joined: defer.ensureDeferred(j(s, det)))
        comp.start(reactor)
        ready.append(d)
    await defer.gatherResults(ready)
    print("subscribed", flush=True)


if __name__ == "__main__":
    d = defer.ensureDeferred(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]))
    d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))
    reactor.run()
