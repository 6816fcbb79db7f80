"""Fan-out: 1,000 WebSocket subscribers on one live topic, through the router
worker alone and through proxy workers (`[router] proxies = N`).

A counting node (tests/hosts/ticker.py) publishes one live topic; subscriber
processes (bench/fanout_subscribers.py, JSON over WebSocket, as browsers) hold
the sessions. Reported for each layout: events delivered per second (all
subscribers), against what the node published times the subscribers; the CPU
of the router worker and of the proxy workers over the same window; the
latency of delivered events. The ratio compares the router worker's CPU per
delivered event with proxies to that without, measured in the same run.

    python -m bench.run fanout       (FANOUT_SUBSCRIBERS, FANOUT_SECONDS, FANOUT_PROXIES)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.harness import REPO, Router, admit, cmdline, process_tree, stop_process, wait_for

SUBSCRIBERS = int(os.environ.get("FANOUT_SUBSCRIBERS", "1000"))
SECONDS = float(os.environ.get("FANOUT_SECONDS", "20"))
PROXIES = int(os.environ.get("FANOUT_PROXIES", "2"))
PROCESSES = 4  # subscriber processes (250 sessions each for 1,000)
# The node publishes FANOUT_EVENTS live events a second (10 samples each): 5 x
# 1,000 subscribers is 5,000 deliveries a second. Much more and, on a loaded
# 2-core machine, the router worker falls behind its own ping deadlines and
# drops sessions (counted as rejoins below).
EVENTS = float(os.environ.get("FANOUT_EVENTS", "5"))
LIVE_INTERVAL = 1.0 / EVENTS
PERIOD = LIVE_INTERVAL / 10
NODE = "fanout"
TOPIC = f"obsmesh.consumer.{NODE}.live"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def workers(router: Router) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"router": [], "proxy": []}
    for pid in process_tree(router.proc.pid):
        line = cmdline(pid)
        if "RouterController" in line:
            out["router"].append(pid)
        elif "ProxyController" in line:
            out["proxy"].append(pid)
    return out


def measure(proxies: int, log_dir: str) -> dict:
    router = Router()
    if proxies:
        router.options.update(proxies=proxies, cbdir=str(router.dir / "cbdir"))
    router.start(timeout=120)
    admit(NODE)  # a named principal (there is no wildcard)
    env = router.env()
    env["OBSMESH_LIVE_INTERVAL"] = str(LIVE_INTERVAL)
    node = spawn_node(env, log_dir)
    subs: list[subprocess.Popen] = []
    try:
        per = [SUBSCRIBERS // PROCESSES + (i < SUBSCRIBERS % PROCESSES) for i in range(PROCESSES)]
        for i, n in enumerate(per):
            subs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.fanout_subscribers", router.ws_url, str(n)]
                    + [TOPIC, str(SECONDS)],
                    cwd=str(REPO),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=open(os.path.join(log_dir, f"subs{proxies}-{i}.log"), "ab"),  # noqa: SIM115
                    text=True,
                )
            )
        for p in subs:  # each says "subscribed" once all its sessions are
            line = p.stdout.readline()
            if "subscribed" not in line:
                raise RuntimeError(f"subscribers failed: {line!r}")
        time.sleep(2.0)  # as the subscribers do before counting
        pids = workers(router)
        before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        t0 = time.monotonic()
        results = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in subs]
        elapsed = time.monotonic() - t0
        after = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
    finally:
        for p in subs:
            if p.poll() is None:
                p.kill()
        stop_process(node)
        router.close()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"subscribers: {errors}")
    events = sum(r["events"] for r in results)
    window = max(r["seconds"] for r in results)
    return {
        "proxies": proxies,
        "delivered_per_s": events / window,
        "expected_per_s": SUBSCRIBERS / LIVE_INTERVAL,
        "router_cpu": (after["router"] - before["router"]) / elapsed,
        "proxy_cpu": (after["proxy"] - before["proxy"]) / elapsed,
        "latency_p50_ms": max(r["latency_p50_ms"] or 0 for r in results),
        "latency_p99_ms": max(r["latency_p99_ms"] or 0 for r in results),
        "rejoins": sum(r["joins"] for r in results) - SUBSCRIBERS,
    }


def spawn_node(env: dict[str, str], log_dir: str) -> subprocess.Popen:
    import pathlib

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hosts.ticker", "--name", NODE, "--period", str(PERIOD)],
        cwd=str(REPO),
        env=env,
        stdout=open(pathlib.Path(log_dir) / "node.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = pathlib.Path(log_dir) / "node.log"
    wait_for(lambda: "joined obsmesh" in log.read_text(errors="replace"), 60, "the node")
    return proc


def run() -> list[dict]:
    import tempfile

    logs = tempfile.mkdtemp(prefix="obsmesh-fanout-")
    load = os.getloadavg()[0]
    direct = measure(0, logs)
    print(f"fan-out, router worker only: {direct}", file=sys.stderr, flush=True)
    proxied = measure(PROXIES, logs)
    print(f"fan-out, {PROXIES} proxies: {proxied}", file=sys.stderr, flush=True)
    figures = []
    for m in (direct, proxied):
        label = f"{m['proxies']} proxies" if m["proxies"] else "router worker only"
        figures += [
            {
                "name": f"{SUBSCRIBERS} WebSocket subscribers, {label}: events delivered",
                "value": m["delivered_per_s"],
                "unit": "events/s",
                "target": f"{m['expected_per_s']:.0f}/s published x subscribers",
                "ratio": m["delivered_per_s"] / m["expected_per_s"],
            },
            {
                "name": f"{label}: router worker CPU",
                "value": 100 * m["router_cpu"],
                "unit": "% of a core",
                "target": "lower with proxies",
            },
            {
                "name": f"{label}: sessions dropped by the router and rejoined",
                "value": m["rejoins"],
                "unit": "",
                "target": "0",
            },
            {
                "name": f"{label}: latency p50 / p99",
                "value": f"{m['latency_p50_ms']} / {m['latency_p99_ms']}",
                "unit": "ms",
                "target": "",
            },
        ]
        if m["proxies"]:
            figures.append(
                {
                    "name": f"{label}: proxy workers CPU (together)",
                    "value": 100 * m["proxy_cpu"],
                    "unit": "% of a core",
                    "target": "",
                }
            )

    def per_event(m):
        return m["router_cpu"] / max(m["delivered_per_s"], 1e-9)

    figures.append(
        {
            "name": "router worker CPU per delivered event, proxies vs router only",
            "value": 1e6 * per_event(proxied),
            "unit": "us/event",
            "target": "below the router-only figure",
            "reference": f"{1e6 * per_event(direct):.1f} us/event without proxies",
            "ratio": per_event(proxied) / per_event(direct),
            "met": per_event(proxied) < per_event(direct),
        }
    )
    figures.append(
        {"name": "load average before the run", "value": load, "unit": "", "target": "quiet"}
    )
    print(f"fan-out logs: {logs}", file=sys.stderr)
    return figures
