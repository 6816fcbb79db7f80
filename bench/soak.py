"""`make bench-soak`: the whole local mesh (`obsmesh up`: every simulator at its
realistic rate) plus 200 WebSocket subscribers for 10 minutes (SOAK_SECONDS).
Reports memory growth and CPU per process and the live events subscribers missed.
Never part of `make test`; writes bench/soak-results.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from obsmesh.router import REPO
from tests.harness import cmdline, free_port_range, port_open, process_tree, wait_for

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> tuple[str, int, float] | None:
    """(name, RSS bytes, CPU seconds) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    cmd = cmdline(pid)
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = int(fields[21]) * PAGE
    name = " ".join(cmd.split()[2:6]) if "obsmesh" in cmd else cmd.split()[0].rsplit("/", 1)[-1]
    if "crossbar" in cmd:
        name = "router " + ("worker" if "worker" in cmd else "controller")
    return name, rss, cpu


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    subscribers = int(os.environ.get("SOAK_SUBSCRIBERS", "200"))
    state = Path(tempfile.mkdtemp(prefix="obsmesh-soak-"))
    base = free_port_range(64)  # every port of the mesh, simulators included
    public, backend = base, base + 1
    env = dict(
        os.environ,
        OBSMESH_STATE_DIR=str(state),
        OBSMESH_PORT_BASE=str(base),
        OBSMESH_PUBLIC_URL=f"ws://127.0.0.1:{public}/ws",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "obsmesh", "up"],
        cwd=REPO,
        env=env,
        stdout=open(state / "up.log", "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(public) and port_open(backend), 120, "the mesh")
        time.sleep(30)  # let every node load its history and settle before the baseline
        subs = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.soak_subscribers",
                env["OBSMESH_PUBLIC_URL"],
                str(subscribers),
                str(seconds),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(min(30, seconds / 10))
        first = {p: s for p in process_tree(up.pid) + [subs.pid] if (s := sample(p))}
        t0 = time.time()
        out, _ = subs.communicate(timeout=seconds + 600)
        elapsed = time.time() - t0
        last = {p: s for p in process_tree(up.pid) if (s := sample(p))}
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(60)
    rows = []
    for pid, (name, rss0, cpu0) in sorted(first.items(), key=lambda kv: kv[1][0]):
        if pid not in last:
            continue
        _, rss1, cpu1 = last[pid]
        rows.append(
            {
                "process": name,
                "pid": pid,
                "rss_start_mb": rss0 / 2**20,
                "rss_end_mb": rss1 / 2**20,
                "growth_mb": (rss1 - rss0) / 2**20,
                "cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
            }
        )
    print(
        f"soak: {seconds:.0f} s, {subscribers} subscribers on {len(result['nodes'])} nodes' live topics"
    )
    print(f"{'process':<40} {'RSS start':>10} {'RSS end':>10} {'growth':>9} {'CPU':>7}")
    for r in rows:
        print(
            f"{r['process'][:40]:<40} {r['rss_start_mb']:>8.1f}MB {r['rss_end_mb']:>8.1f}MB "
            f"{r['growth_mb']:>7.1f}MB {r['cpu_pct']:>6.1f}%"
        )
    print(
        f"live events delivered: {result['events_total']}, missed by some subscriber: {result['missed']}"
    )
    (REPO / "bench" / "soak-results.json").write_text(
        json.dumps({"processes": rows, "subscribers": result, "seconds": seconds}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
