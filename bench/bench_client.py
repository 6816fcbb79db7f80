"""Client `get` of 1,000,000 points into numpy through a real router.

A probe node process holds 1,000,000 samples of one field; the client fetches
them all (time column + values, 16 MB of float64) as:
- binary columns, msgpack over rawsocket (the client's default);
- binary columns, JSON over WebSocket (bytes travel base64-encoded);
- JSON lists over WebSocket (what a sisock-style caller gets), as a reference.
Best of three runs each, after one warm-up. Target: 1,000,000 points in at
most 100 ms with binary columns.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np

N = 1_000_000
DT = 0.01
RUNS = 3
TARGET_S = 0.100


def _best(fn, runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _list_get(mesh, node: str, start: float, end: float) -> np.ndarray:
    """get_data with JSON-friendly lists (no `encoding`), chunks joined into numpy."""
    chunks: list = []
    uri = mesh._core.uris.get_data(node)
    final = mesh._run(
        mesh._core.conn.call, uri, ["x"], start, end, timeout=120, on_progress=chunks.append
    )
    chunks.append(final)
    x = np.concatenate([np.asarray(c["data"]["x"], dtype=float) for c in chunks])
    t = np.concatenate([np.asarray(c["timeline"]["fast"]["t"], dtype=float) for c in chunks])
    assert x.size == t.size == N
    return x


def run() -> list[dict]:
    from consumers.client import Mesh
    from tests.harness import PYTHON, REPO, Router, admit, stop_process, wait_for

    router = Router()
    router.start()
    admit("bench")  # a named principal (there is no wildcard)
    base = float(int(time.time())) - N * DT
    log = router.dir / "probe.log"
    probe = subprocess.Popen(
        [
            PYTHON,
            "tests/probe_process.py",
            "bench",
            "--base",
            repr(base),
            "--dt",
            str(DT),
            "--history",
            str(N),
        ],
        env=router.env(),
        cwd=str(REPO),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    figures: list[dict] = []
    try:
        with (
            Mesh(router.backend_url, router.realm, timeout=120) as rs,
            Mesh(router.ws_url, router.realm, serializer="json", timeout=120) as ws,
        ):
            wait_for(
                lambda: any(n["name"] == "bench" for n in rs.nodes()), 60, "the bench node", 0.2
            )
            start, end = base, base + N * DT
            expect = np.arange(float(N))

            def fetch(mesh):
                def go():
                    r = mesh.get("bench", "x", start, end)
                    assert r["x"].size == N and r["x"][-1] == expect[-1]

                return go

            r = rs.get("bench", "x", start, end)
            assert np.array_equal(r["x"], expect), "wrong values"
            megabytes = 2 * N * 8 / 1e6
            t_rs = _best(fetch(rs))
            t_ws = _best(fetch(ws))
            t_list = _best(lambda: _list_get(ws, "bench", start, end), runs=1)
            figures.append(
                {
                    "name": "get 1M points, binary columns, msgpack/rawsocket",
                    "value": t_rs * 1000,
                    "unit": "ms",
                    "target": "<= 100 ms for 1,000,000 points into numpy",
                    "reference": "JSON over WebSocket, binary columns",
                    "ratio": t_ws / t_rs,
                    "met": t_rs <= TARGET_S,
                }
            )
            figures.append(
                {
                    "name": "throughput, msgpack/rawsocket",
                    "value": megabytes / t_rs,
                    "unit": "MB/s",
                    "target": ">= 160 MB/s (16 MB in 100 ms)",
                    "ratio": None,
                    "met": megabytes / t_rs >= 160,
                }
            )
            figures.append(
                {
                    "name": "get 1M points, binary columns, JSON/WebSocket",
                    "value": t_ws * 1000,
                    "unit": "ms",
                    "target": "compare",
                    "reference": "msgpack over rawsocket",
                    "ratio": t_rs / t_ws,
                    "met": None,
                }
            )
            figures.append(
                {
                    "name": "throughput, JSON/WebSocket",
                    "value": megabytes / t_ws,
                    "unit": "MB/s",
                    "target": "compare",
                    "ratio": None,
                    "met": None,
                }
            )
            figures.append(
                {
                    "name": "get 1M points, JSON lists/WebSocket (sisock-style)",
                    "value": t_list * 1000,
                    "unit": "ms",
                    "target": "compare",
                    "reference": "binary columns over msgpack/rawsocket",
                    "ratio": t_list / t_rs,
                    "met": None,
                }
            )
    finally:
        stop_process(probe)
        router.close()
    return figures


if __name__ == "__main__":
    for f in run():
        print(f)
