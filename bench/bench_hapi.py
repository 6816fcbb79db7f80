"""HAPI /data streamed: 1,000,000 records of 5 parameters, in binary and in CSV,
against the same rows through get_data in the same run.

A node process holds 1,000,000 samples of five fields on one timeline; the
Grafana bridge (with /hapi) runs as its own process, as `obsmesh grafana`
does. Figures, best of three after a warm-up:
- get_data through the Python client (binary columns, msgpack over rawsocket,
  progressive chunks joined into numpy): the reference;
- HAPI binary and HAPI CSV read to the last byte over HTTP by a plain client
  (the rows are then counted and the last one checked).
Targets: >= 1,000,000 rows/s binary, >= 300,000 rows/s CSV.

    python -m bench.run hapi
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time

import numpy as np

N = 1_000_000
DT = 0.01
FIELDS = [f"f{i}" for i in range(5)]
RUNS = 3


def _best(fn, runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _read_all(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", path)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HAPI answered {response.status}: {response.read()[:300]!r}")
    parts = []
    while True:
        block = response.read(1 << 22)
        if not block:
            break
        parts.append(block)
    conn.close()
    return b"".join(parts)


def run() -> list[dict]:
    from consumers.client import Mesh
    from consumers.hapi.times import iso
    from tests.harness import (
        PYTHON,
        REPO,
        Router,
        admit,
        free_port,
        port_open,
        spawn,
        stop_process,
        wait_for,
    )

    router = Router()
    router.start()
    admit("hb")  # a named principal (there is no wildcard)
    base = float(int(time.time())) - N * DT - 60
    node = subprocess.Popen(
        [PYTHON, "-m", "bench.bench_hapi", "node", repr(base)],
        env=router.env(),
        cwd=str(REPO),
        stdout=open(router.dir / "node.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = free_port()
    bridge = spawn(["grafana", "--port", str(port)], router.env(), router.dir / "bridge.log")
    figures: list[dict] = []
    try:
        wait_for(lambda: port_open(port), 60, "the bridge")
        with Mesh(router.backend_url, router.realm, timeout=120) as mesh:
            wait_for(lambda: any(n["name"] == "hb" for n in mesh.nodes()), 60, "the node", 0.2)
            start, end = base, base + N * DT

            def wamp() -> None:
                r = mesh.get("hb", FIELDS, start, end)
                assert r["f4"].size == N and r["f4"][-1] == 4.0 * (N - 1)

            q = f"/hapi/data?dataset=hb/bench&start={iso(start)}&stop={iso(end)}"
            wait_for(lambda: _ready(port, q), 60, "the dataset over HAPI", 0.2)
            last_time = iso(base + (N - 1) * DT).encode()

            def binary() -> None:
                body = _read_all(port, q + "&format=binary")
                rec = np.frombuffer(body, dtype=[("t", "S27"), ("v", "<f8", (5,))])
                assert rec.shape[0] == N and rec["t"][-1] == last_time
                assert rec["v"][-1, 4] == 4.0 * (N - 1)

            def csv() -> None:
                body = _read_all(port, q)
                assert body.count(b"\n") == N
                assert body[body.rindex(b"\n", 0, -1) + 1 :].startswith(last_time)

            t_wamp = _best(wamp)
            t_bin = _best(binary)
            t_csv = _best(csv)
        for name, seconds, target in (
            ("HAPI binary, 1M records x 5 parameters", t_bin, 1_000_000),
            ("HAPI CSV, 1M records x 5 parameters", t_csv, 300_000),
        ):
            figures.append(
                {
                    "name": name,
                    "value": N / seconds,
                    "unit": "rows/s",
                    "target": f">= {target:,} rows/s",
                    "reference": "get_data, same rows (Python client, binary columns)",
                    "ratio": t_wamp / seconds,
                    "met": N / seconds >= target,
                }
            )
        figures.append(
            {
                "name": "get_data, same rows (reference)",
                "value": N / t_wamp,
                "unit": "rows/s",
                "target": "compare",
                "ratio": None,
                "met": None,
            }
        )
    finally:
        stop_process(bridge)
        stop_process(node)
        router.close()
    return figures


def _ready(port: int, q: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", q.replace("/data?", "/info?").split("&")[0])
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _node(base: float) -> None:
    """The bench node: five fields, 1,000,000 samples, f_i = i * k at base + k * DT."""
    from nodes.base import DataNode, run_node
    from obsmesh import config

    class BenchNode(DataNode):
        kind = "bench"
        description = "HAPI benchmark: five fields"

        def declare_fields(self) -> None:
            for f in FIELDS:
                self.declare(f, "bench", units="1")

        async def start(self) -> None:
            k = np.arange(N, dtype=np.float64)
            self.append(
                "bench", base + k * DT, {f: i * k for i, f in enumerate(FIELDS)}, live=False
            )

    run_node(BenchNode("hb", config.mesh()))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "node":
        _node(float(sys.argv[2]))
    else:
        for f in run():
            print(f)
