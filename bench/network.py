"""`make bench-network`: a simulated observing network on this machine.

The load: 200 radar sites over TCP (bench/network_radars.py: RST's framing,
synthetic FITACF records of realistic size, one record a second per site,
served to 4 `superdarn` nodes of 50 sites each), 500 CO2 units over HTTP
(bench/network_units.py: the firmware's protocol, a readings row every 20 s,
a ping, push and update check every minute, into one `co2` node) and 50
WebSocket subscribers (JSON, as browsers) on every node's live topic. Real
router, real nodes, each its own process, as `obsmesh up` runs them.

Phases at 1, 2, 4 and 8 times that load (BENCH_NETWORK_MULTIPLES), each
BENCH_NETWORK_SECONDS long. After each phase the sources stop and every record
sent must be counted by its node (radar records, CO2 rows after a last push):
the difference is what was lost. Reported: CPU and memory of every process,
live latency p50/p99 at the subscribers (radar records: from leaving the site
to reaching the browser), records lost per phase, and the headroom: the
largest multiple held with nothing lost. The load average before the run is
reported with the figures; run it on a quiet machine.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from tests.harness import (
    REPO,
    Router,
    cmdline,
    free_port,
    process_tree,
    rss_kb,
    stop_process,
    wait_for,
)

RADARS = 200
RADAR_NODES = 4
UNITS = 500
SUBSCRIBERS = 50
SECONDS = float(os.environ.get("BENCH_NETWORK_SECONDS", "40"))
MULTIPLES = [float(x) for x in os.environ.get("BENCH_NETWORK_MULTIPLES", "1,2,4,8").split(",")]
DRAIN = 60.0  # seconds a phase's last records have to reach their node
TICK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class Proc:
    """A process of the benchmark, with a line-oriented control channel."""

    def __init__(self, name: str, args: list[str], env: dict, logs: pathlib.Path, control=False):
        self.name = name
        self.p = subprocess.Popen(
            [PY, "-m", *args],
            cwd=str(REPO),
            env=env,
            stdin=subprocess.PIPE if control else subprocess.DEVNULL,
            stdout=subprocess.PIPE if control else open(logs / f"{name}.log", "ab"),  # noqa: SIM115
            stderr=open(logs / f"{name}.err", "ab"),  # noqa: SIM115
            text=True,
            start_new_session=True,
        )

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def read(self, what: str = "{") -> str:
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} ended")
            if line.startswith(what):
                return line

    def ask(self, command: str, attempts: int = 30) -> dict:
        """The answer to `command`; asked again while it is an error (a node reconnecting)."""
        for _ in range(attempts):
            self.send(command)
            answer = json.loads(self.read("{"))
            if "error" not in answer:
                return answer
            time.sleep(1.0)
        return answer

    def pids(self) -> list[int]:
        return process_tree(self.p.pid)


def run() -> list[dict]:
    logs = pathlib.Path(tempfile.mkdtemp(prefix="obsmesh-bench-network-"))
    load = os.getloadavg()
    router = Router()
    router.start(timeout=120)
    env = router.env()
    procs: list[Proc] = []
    try:
        nodes = [f"sd{i + 1}" for i in range(RADAR_NODES)]
        radars = Proc(
            "radars",
            ["bench.network_radars", str(RADARS), router.backend_url, json.dumps(nodes)],
            {**env, "OBSMESH_AUTHID": "benchradars"},
            logs,
            control=True,
        )
        procs.append(radars)
        ports = json.loads(radars.read("{"))["ports"]
        per = RADARS // RADAR_NODES
        for i, node in enumerate(nodes):
            conf = logs / f"{node}.json"
            sites = {f"r{k:03d}": f"127.0.0.1:{ports[k]}" for k in range(i * per, (i + 1) * per)}
            conf.write_text(json.dumps(sites))
            args = ["obsmesh", "node", "superdarn", "--name", node, "--radars", str(conf)]
            args += ["--echo-db", str(logs / f"{node}.sqlite")]
            procs.append(Proc(node, args, env, logs))
        co2_port = free_port()
        data_root = logs / "co2"
        args = ["obsmesh", "node", "co2", "--data-root", str(data_root), "--port", str(co2_port)]
        procs.append(Proc("co2", args, env, logs))
        units = Proc(
            "units",
            ["bench.network_units", f"http://127.0.0.1:{co2_port}", str(data_root)]
            + [str(logs / "sd"), str(UNITS)],
            env,
            logs,
            control=True,
        )
        procs.append(units)
        radars.read("ready")
        units.read("ready")
        radars.ask("status co2", attempts=60)  # the co2 node answers
        topics = [f"obsmesh.consumer.{n}.live" for n in [*nodes, "co2"]]
        events = logs / "events.txt"
        subs = Proc(
            "subscribers",
            ["bench.network_subscribers", router.ws_url, str(SUBSCRIBERS), str(events), *topics],
            env,
            logs,
            control=True,
        )
        procs.append(subs)
        subs.read("subscribed")
        phases = [phase(k, router, procs, radars, units, nodes, events) for k in MULTIPLES]
    finally:
        for p in procs:
            stop_process(p.p)
        router.close()
    return figures(phases, load, logs)


def process_groups(router: Router, procs: list[Proc]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {"router worker": [], "router controller": []}
    for pid in process_tree(router.proc.pid):
        line = cmdline(pid)
        if "RouterController" in line:
            groups["router worker"].append(pid)
        elif "crossbar-controller" in line:
            groups["router controller"].append(pid)
    for p in procs:
        groups[p.name] = p.pids()
    return groups


def phase(k, router, procs, radars, units, nodes, events) -> dict:
    groups = process_groups(router, procs)
    before_r = radars.ask("count")
    before_u = units.ask("count")
    co2_before = co2_rows(radars)
    cpu0 = {g: sum(cpu_seconds(p) for p in pids) for g, pids in groups.items()}
    t0 = time.time()
    radars.send(f"speed {k}")
    units.send(f"rate {k}")
    time.sleep(SECONDS)  # a benchmark's load window, not a synchronisation
    t1 = time.time()
    cpu1 = {g: sum(cpu_seconds(p) for p in pids) for g, pids in groups.items()}
    memory = {g: sum(rss_kb(p) for p in pids) // 1024 for g, pids in groups.items()}
    radars.send("stop")
    units.send("stop")
    units.send("flush")
    units.read('{"flushed"')
    after_u = units.ask("count")
    sent = None

    def drained():
        nonlocal sent
        now = radars.ask("count")
        sent = now
        counted = sum(now["node_records"].values()) - sum(before_r["node_records"].values())
        return counted >= now["delivered"] - before_r["delivered"]

    try:
        wait_for(drained, DRAIN, "the nodes to count every record", interval=1.0)
    except TimeoutError:
        pass
    rows_sent = after_u.get("rows", 0) - before_u.get("rows", 0)
    wait_for_quiet = time.time() + DRAIN
    rows_counted = co2_rows(radars) - co2_before
    while rows_counted < rows_sent and time.time() < wait_for_quiet:
        time.sleep(1.0)
        rows_counted = co2_rows(radars) - co2_before
    radar_sent = sent["delivered"] - before_r["delivered"]
    radar_counted = sum(sent["node_records"].values()) - sum(before_r["node_records"].values())
    lat = latencies(events, t0 + 5, t1, len(nodes))
    return {
        "multiple": k,
        "window": t1 - t0,
        "radar_records_sent": radar_sent,
        "radar_records_lost": max(0, radar_sent - radar_counted),
        "co2_rows_sent": rows_sent,
        "co2_rows_lost": max(0, rows_sent - rows_counted),
        "co2_cycle_failures": after_u.get("cycle_failed", 0) - before_u.get("cycle_failed", 0),
        "cpu": {g: (cpu1[g] - cpu0[g]) / (t1 - t0) for g in cpu0},
        "memory_mb": memory,
        "latency_p50_ms": pct(lat, 0.5),
        "latency_p99_ms": pct(lat, 0.99),
        "events": len(lat),
    }


def co2_rows(radars: Proc) -> int:
    """Rows the co2 node has stored (its `rows` counter), through the radar host's session."""
    return radars.ask("status co2").get("counters", {}).get("rows", 0)


def latencies(path: pathlib.Path, start: float, end: float, radar_topics: int) -> list[float]:
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            recv, t, idx = float(parts[0]), float(parts[1]), int(parts[2])
            if start <= recv <= end and idx < radar_topics:
                out.append(recv - t)
    return sorted(out)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)


def figures(phases: list[dict], load, logs) -> list[dict]:
    out = [
        {
            "name": "load average before the run (1, 5, 15 min)",
            "value": " ".join(f"{x:.2f}" for x in load),
            "unit": "",
            "target": "quiet machine",
        }
    ]
    held = [
        p["multiple"] for p in phases if p["radar_records_lost"] == 0 and p["co2_rows_lost"] == 0
    ]
    for p in phases:
        k = p["multiple"]
        tag = f"{k:g}x load"
        out += [
            {
                "name": f"{tag}: radar records sent / lost",
                "value": f"{p['radar_records_sent']} / {p['radar_records_lost']}",
                "unit": "records",
                "target": "0 lost",
                "met": p["radar_records_lost"] == 0,
            },
            {
                "name": f"{tag}: CO2 rows sent / lost",
                "value": f"{p['co2_rows_sent']} / {p['co2_rows_lost']}",
                "unit": "rows",
                "target": "0 lost",
                "met": p["co2_rows_lost"] == 0,
            },
            {
                "name": f"{tag}: live latency p50 / p99 ({p['events']} events)",
                "value": f"{p['latency_p50_ms']} / {p['latency_p99_ms']}",
                "unit": "ms",
                "target": "",
            },
        ]
        for group, cpu in sorted(p["cpu"].items()):
            out.append(
                {
                    "name": f"{tag}: CPU {group}",
                    "value": round(100 * cpu, 1),
                    "unit": "% of a core",
                    "target": "",
                    "memory_mb": p["memory_mb"][group],
                }
            )
    out.append(
        {
            "name": "headroom: largest multiple of the load held without loss",
            "value": max(held) if held else 0,
            "unit": "x",
            "target": ">= 1",
            "met": bool(held) and min(held) <= 1,
        }
    )
    (logs / "figures.json").write_text(json.dumps({"phases": phases, "figures": out}, indent=2))
    return out


def main() -> int:
    from bench.run import _fmt

    figs = run()
    for f in figs:
        mem = f" (memory {f['memory_mb']} MB)" if "memory_mb" in f else ""
        met = "" if f.get("met") is None else ("  met" if f["met"] else "  MISSED")
        print(f"{f['name']:<70} {_fmt(f['value']):>16} {f.get('unit', '')}{mem}{met}")
    out = pathlib.Path(__file__).resolve().parent / "results-network.json"
    out.write_text(json.dumps({"time": time.time(), "figures": figs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
