"""The superdarn node under load: 50 simulated radar sites at 20x real time.

Target (issue 5): report the node's ingest rate with 50 simulated radars at
20x real time, the node process's CPU use, and zero lost records.

Layout: a router of its own, the node as its own process (`obsmesh node
superdarn`, in-memory store, SQLite echo counts), and a probe process that
hosts the 50 radar sites (each a `RadarServer` on its own TCP port, synthetic
16-beam scans, 3 s integrations / 20) and a WAMP consumer subscribed to every
`radar.<code>.beam` topic of the node. The sites start sending only once the
node is announced and connected to all of them, so every record a site sends
goes to the node; after the sending window the probe waits for the last beams
and compares, per radar: records sent, records the node counted (get_status),
and beams received on the topics (and their order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RADARS = 50
SPEED = 20.0
# (speed, seconds of sending): the target load, then five times it for headroom
# (the 50 sites share one probe process, which may not quite keep that pace:
# the figures give the rate actually offered).
PHASES = ((SPEED, 20.0), (5 * SPEED, 10.0))
NODE = "sdbench"
PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks to seconds)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run() -> list[dict]:
    from tests.harness import Router, admit, free_port, stop_process

    logs = Path(tempfile.mkdtemp(prefix="obsmesh-bench-superdarn-"))
    router = Router()
    router.start()
    node = None
    try:
        ports = [free_port() for _ in range(RADARS)]
        config = logs / "radars.json"
        config.write_text(json.dumps({f"r{i:02d}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}))
        env = router.env()
        admit(NODE)  # a named principal (there is no wildcard)
        node = subprocess.Popen(
            [
                PY,
                "-m",
                "obsmesh",
                "node",
                "superdarn",
                "--name",
                NODE,
                "--radars",
                str(config),
                "--echo-db",
                str(logs / "echoes.sqlite"),
            ],
            env=env,
            cwd=REPO,
            stdout=open(logs / "node.log", "ab"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )
        out = subprocess.run(
            [
                PY,
                "-m",
                "bench.bench_superdarn",
                router.backend_url,
                json.dumps(ports),
                str(node.pid),
            ],
            env={**env, "OBSMESH_AUTHID": "benchprobe"},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=150,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"probe failed:\n{out.stderr[-3000:]}")
        phases = json.loads(lines[-1])["phases"]
    finally:
        if node is not None:
            stop_process(node)
        router.close()
    figures = []
    for r in phases:
        label = f"{RADARS} radars at {r['speed']:g}x real time"
        rate = r["node_records"] / r["elapsed"]
        cpu = 100.0 * r["cpu_seconds"] / r["elapsed"]
        lost_node = r["sent"] - r["node_records"]
        lost_topic = r["sent"] - r["received"]
        figures += [
            {
                "name": f"node ingest, {label}",
                "value": rate,
                "unit": "records/s",
                "target": "keep up with the offered load, zero loss",
                "reference": f"offered {r['sent'] / r['window']:.0f} records/s (nominal "
                f"{RADARS * r['speed'] * 16.2 / 60:.0f}; {r['sent']} records in {r['window']:.1f} s); "
                f"last beam on the topic {r['lag']:.2f} s after the last send",
                "ratio": None,
                "met": lost_node == 0 and r["lag"] < 2.0,
            },
            {
                "name": f"node CPU use, {label}",
                "value": cpu,
                "unit": "% of one core",
                "target": "report (the node process: decode, products, store, publish)",
                "reference": f"{r['cpu_seconds']:.2f} CPU s over {r['elapsed']:.1f} s; "
                f"about {r['node_records'] / max(r['cpu_seconds'], 1e-9):,.0f} records per CPU second",
                "ratio": None,
                "met": None,
            },
            {
                "name": f"records lost (sent - counted by the node), {label}",
                "value": float(lost_node),
                "unit": "records",
                "target": "0",
                "reference": f"sent {r['sent']}, node counted {r['node_records']} (bad {r['node_bad']})",
                "ratio": None,
                "met": lost_node == 0,
            },
            {
                "name": f"beams lost on the topics (sent - received), {label}",
                "value": float(lost_topic),
                "unit": "records",
                "target": "0, every radar in order",
                "reference": f"received {r['received']}, out of order {r['out_of_order']}, radars short "
                f"{r['radars_short']}",
                "ratio": None,
                "met": lost_topic == 0 and r["out_of_order"] == 0,
            },
        ]
    return figures


# ---------------------------------------------------------------- the probe


async def _probe(reactor, url: str, ports: list[int], node_pid: int) -> dict:
    from autobahn.wamp.types import SubscribeOptions
    from twisted.internet import defer, task

    from nodes.radar import synth
    from nodes.superdarn import simulator
    from obsmesh.wamp import component

    comp = component(url, "obsmesh")
    joined: defer.Deferred = defer.Deferred()
    comp.on(
        "join", lambda session, details: joined.callback(session) if not joined.called else None
    )
    comp.start(reactor)
    session = await joined
    received: dict[str, int] = {}
    last: dict[str, float] = {}
    out_of_order = 0

    def on_event(payload, details=None):
        nonlocal out_of_order
        if not details.topic.endswith(".beam"):
            return
        key = payload["key"]
        received[key] = received.get(key, 0) + 1
        if payload["time"] < last.get(key, float("-inf")):
            out_of_order += 1
        last[key] = payload["time"]

    await session.subscribe(
        on_event,
        f"obsmesh.consumer.{NODE}.radar.",
        options=SubscribeOptions(match="prefix", details_arg="details"),
    )
    now = time.time()
    servers = {}
    for i, port in enumerate(ports):
        gen = synth.RadarSynth(1000 + i, seed=i)
        server = simulator.RadarServer(simulator.synth_schedule(gen, now), reactor, speed=SPEED)
        reactor.listenTCP(port, server, interface="127.0.0.1")
        servers[f"r{i:02d}"] = server

    async def wait(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if hasattr(value, "__await__") or isinstance(value, defer.Deferred):
                value = await value
            if value:
                return True
            await task.deferLater(reactor, 0.05, lambda: None)
        return False

    async def listed() -> bool:
        nodes = await session.call("obsmesh.consumer.get_data_node")
        return NODE in [n["name"] for n in nodes]

    if not await wait(listed, 60) or not await wait(
        lambda: all(s.clients for s in servers.values()), 60
    ):
        raise RuntimeError("the node did not come up and connect to every radar")
    phases = []
    for speed, window in PHASES:
        before = {k: s.deliveries for k, s in servers.items()}
        got_before = dict(received)
        counted = (await session.call(f"obsmesh.consumer.{NODE}.get_status"))["counters"].get(
            "records", 0
        )
        cpu0, t0 = _cpu_seconds(node_pid), time.monotonic()
        for server in servers.values():
            server.speed = speed
            server.start()
        await task.deferLater(reactor, window, lambda: None)
        for server in servers.values():
            server.stop()
        t_stop = time.monotonic()
        sent = sum(s.deliveries - before[k] for k, s in servers.items())
        target = sum(got_before.values()) + sent
        await wait(lambda target=target: sum(received.values()) >= target, 30)
        t_end = time.monotonic()
        cpu1 = _cpu_seconds(node_pid)
        status = await session.call(f"obsmesh.consumer.{NODE}.get_status")
        phases.append(
            {
                "speed": speed,
                "sent": sent,
                "received": sum(received.values()) - sum(got_before.values()),
                "out_of_order": out_of_order,
                "radars_short": sorted(
                    k for k, s in servers.items() if received.get(k, 0) != s.deliveries
                ),
                "node_records": status["counters"].get("records", 0) - counted,
                "node_bad": status["counters"].get("bad_records", 0),
                "window": t_stop - t0,
                "elapsed": t_end - t0,
                "lag": t_end - t_stop,
                "cpu_seconds": cpu1 - cpu0,
            }
        )
    session.leave()
    return {"phases": phases}


def _probe_main(argv: list[str]) -> None:
    from twisted.internet import defer, reactor

    url, ports, node_pid = argv[0], json.loads(argv[1]), int(argv[2])
    result: dict = {}

    def done(value):
        if isinstance(value, dict):
            result.update(value)
        else:
            value.printTraceback(file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(
        lambda: defer.ensureDeferred(_probe(reactor, url, ports, node_pid)).addBoth(done)
    )
    reactor.run()
    if result:
        print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 4:
        _probe_main(sys.argv[1:])
    else:
        for figure in run():
            print(figure)
