"""The measuring side of the authorisation benchmark (a process of its own, printing JSON).

python -m bench.auth_probe URL SECONDS

As the node `authbench` (WAMP-CRA, role node, so every action goes through the
dynamic authoriser unless the router kept an answer), with 32 operations in
flight: acknowledged publishes on its own topic, an answer that depends on the
authid. (Calls with an answer shared by every node are `bench.mesh_probe rpc`'s.)
"""

from __future__ import annotations

import json
import sys
import time

from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, reactor

from tests.harness import backend_credentials, connect

ACK = PublishOptions(acknowledge=True)


async def rate(action, seconds: float, width: int = 32) -> float:
    for _ in range(200):  # warm up
        await action()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            await action()
            done += 1

    start = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(width)])
    return done / (time.perf_counter() - start)


async def measure(url: str, seconds: float) -> dict:
    s = await connect(url, authentication=backend_credentials("authbench"))
    try:
        return {
            "publish_own": await rate(
                lambda: s.publish("obsmesh.consumer.authbench.live", 1, options=ACK), seconds
            ),
        }
    finally:
        s.leave()


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    out = {}

    async def run():
        try:
            out.update(await measure(url, seconds))
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()))
    reactor.run()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
