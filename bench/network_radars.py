"""The radar sites of `make bench-network`: N simulated sites (RST's Connex
framing over TCP, synthetic FITACF records of realistic size, 16 beams, 3 s
integrations) in one process, driven from stdin:

    python -m bench.network_radars N WAMP_URL NODES_JSON

    speed K     every site sends K records a second (3 s integrations at 3K x)
    stop        the sites stop sending
    count       prints one JSON line: records delivered so far, the nodes'
                `records` counters, sites with a client
    status NODE prints one JSON line: that node's counters
Prints {"ports": [...]} once every site listens on a port of its own (start
the nodes then) and "ready" once every site has its node connected.
"""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import defer, reactor, stdio, task
from twisted.protocols.basic import LineReceiver

from nodes.radar import synth
from nodes.superdarn import simulator
from obsmesh.wamp import component


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, servers: dict, session) -> None:
        self.servers = servers
        self.session = session
        self.nodes: list[str] = []

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if not words:
            return
        if words[0] == "speed":
            for server in self.servers.values():
                server.stop()
                server.speed = 3.0 * float(words[1])
                server.start()
        elif words[0] == "stop":
            for server in self.servers.values():
                server.stop()
        elif words[0] == "count":
            defer.ensureDeferred(self.count())
        elif words[0] == "status":
            defer.ensureDeferred(self.status(words[1]))

    async def status(self, node: str) -> None:
        try:
            status = await self.session.call(f"obsmesh.consumer.{node}.get_status")
        except Exception as exc:  # not up yet
            self.sendLine(json.dumps({"error": str(exc)}).encode())
            return
        self.sendLine(json.dumps({"counters": status["counters"]}).encode())

    async def count(self) -> None:
        records = {}
        for node in self.nodes:
            try:
                status = await self.session.call(f"obsmesh.consumer.{node}.get_status")
            except Exception as exc:  # a node reconnecting: the caller asks again
                self.sendLine(json.dumps({"error": f"{node}: {exc}"}).encode())
                return
            records[node] = status["counters"].get("records", 0)
        out = {
            "at": time.time(),
            "delivered": sum(s.deliveries for s in self.servers.values()),
            "node_records": records,
            "connected": sum(1 for s in self.servers.values() if s.clients),
        }
        self.sendLine(json.dumps(out).encode())


async def main(count: int, url: str, nodes: list[str]) -> None:
    comp = component(url, "obsmesh")
    joined: defer.Deferred = defer.Deferred()
    comp.on("join", lambda s, d: joined.callback(s) if not joined.called else None)
    comp.start(reactor)
    session = await joined
    now = time.time()
    servers = {}
    ports = []
    for i in range(count):
        gen = synth.RadarSynth(2000 + i, seed=i)
        server = simulator.RadarServer(simulator.synth_schedule(gen, now), reactor, speed=3.0)
        ports.append(reactor.listenTCP(0, server, interface="127.0.0.1").getHost().port)
        servers[i] = server
    control = Control(servers, session)
    control.nodes = nodes
    stdio.StandardIO(control)
    control.sendLine(json.dumps({"ports": ports}).encode())  # the nodes may connect now
    while not all(s.clients for s in servers.values()):
        await task.deferLater(reactor, 0.2, lambda: None)
    control.sendLine(b"ready")


if __name__ == "__main__":
    d = defer.ensureDeferred(main(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])))
    d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))
    reactor.run()
