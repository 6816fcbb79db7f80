"""Authorisation benchmark: what caching authorisation safely buys, and the hub's
get_data_node rate with authentication on.

crossbar may keep an authoriser's answer only when it is the same for every
node (hub/permissions.py); answers that depend on the authid are cached per
authid inside the authoriser instead. Measured on two routers of the same
configuration, one with that safe caching and one with every cache off
(`render_config(auth_cache=False)`), in the same run:

- authorisations/s of answers that depend on the authid: acknowledged publishes
  on the node's own topic (the router asks the authoriser every time; the
  authoriser's own cache saves it working the answer out again);
- authorisations/s of answers shared by every node: a node's calls of the hub's
  get_data_node (the router keeps the answer, so it stops asking);
- the authoriser's rule alone, in this process, cached per authid or not;
- the hub's get_data_node calls/s with authentication on against a bare echo
  procedure on the same router (issue 2's target: >= 0.8x).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hub import permissions
from obsmesh.router import REPO
from tests.harness import Router, admit

PY = sys.executable
SECONDS = 3.0


def _json(args: list[str], timeout: float = 180) -> dict:
    out = subprocess.run(
        [PY, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def _rule_rate(rule, n: int = 200_000) -> float:
    """Decisions/s over a node's usual mix: own publishes, calls, subscribes, a stranger's register."""
    asks = [
        ("wx", "obsmesh.consumer.wx.live", "publish"),
        ("wx", "obsmesh.consumer.sensors.get_data", "call"),
        ("wx", "obsmesh.consumer.data_node_added", "subscribe"),
        ("wx", "obsmesh.consumer.sensors.get_data", "register"),
    ]
    start = time.perf_counter()
    for i in range(n):
        authid, uri, action = asks[i & 3]
        rule("obsmesh", authid, uri, action)
    return n / (time.perf_counter() - start)


def _router_figures(cache: bool, logs: Path) -> dict:
    router = Router(auth_cache=cache)
    router.start()
    url = router.backend_url
    admit("echo", "authbench")
    echo = subprocess.Popen(
        [PY, "-m", "bench.feeder", "echo", url],
        cwd=REPO,
        stdout=open(logs / f"echo-{cache}.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)  # let the echo callee join (a benchmark, not a test: a settle time is fine)
        figures = _json(["bench.auth_probe", url, str(SECONDS)])
        figures.update(_json(["bench.mesh_probe", "rpc", url, str(SECONDS)]))
        return figures
    finally:
        echo.terminate()
        echo.wait(10)
        router.close()


def run() -> list[dict]:
    logs = Path(tempfile.mkdtemp(prefix="obsmesh-bench-auth-"))
    cached = _rule_rate(permissions.cached_rule)
    uncached = _rule_rate(permissions.node_permission)
    safe = _router_figures(True, logs)
    none = _router_figures(False, logs)
    ratio = safe["get_data_node"] / safe["echo"]
    return [
        {
            "name": "authorisations/s, answers that depend on the authid (acked publish, own topic)",
            "value": safe["publish_own"],
            "unit": "ops/s",
            "target": "(reported; never cached by the router)",
            "reference": f"no caching at all {none['publish_own']:.0f} ops/s",
            "ratio": safe["publish_own"] / none["publish_own"],
        },
        {
            "name": "authorisations/s, answers shared by every node (a node calls get_data_node)",
            "value": safe["get_data_node"],
            "unit": "ops/s",
            "target": "(reported; the router keeps the answer)",
            "reference": f"no caching at all {none['get_data_node']:.0f} ops/s",
            "ratio": safe["get_data_node"] / none["get_data_node"],
        },
        {
            "name": "authoriser rule decisions/s in-process, cached per authid",
            "value": cached,
            "unit": "decisions/s",
            "target": "(reported)",
            "reference": f"uncached {uncached:.0f} decisions/s",
            "ratio": cached / uncached,
        },
        {
            "name": "hub get_data_node calls/s, authentication on (32 in flight, node role)",
            "value": safe["get_data_node"],
            "unit": "calls/s",
            "target": ">= 0.8x bare echo",
            "reference": f"bare echo {safe['echo']:.0f} calls/s; with every cache off "
            f"{none['get_data_node']:.0f} vs echo {none['echo']:.0f}",
            "ratio": ratio,
            "met": ratio >= 0.8,
        },
    ]
