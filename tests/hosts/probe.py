"""A consumer on a simulated host, through the Python client (what a user's
script does), printing JSON lines for the test to read:

    python -m tests.hosts.probe URL watch          # the node listing, twice a second
    python -m tests.hosts.probe URL tail NODE      # live batches, gaps, backfill
    python -m tests.hosts.probe URL history NODE FIELD   # the whole history, once
    python -m tests.hosts.probe URL status NODE    # the node's get_status, once

Every line carries `at`, this host's wall clock when it was printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from consumers.client import Mesh
from consumers.client.live import Gap


def out(**kw) -> None:
    print(json.dumps({"at": time.time(), **kw}), flush=True)


def watch(mesh: Mesh) -> None:
    while True:
        try:
            out(nodes=sorted(n["name"] for n in mesh.nodes()))
        except Exception as exc:  # the router away, a partition: said, then retried
            out(error=str(exc))
        time.sleep(0.5)


def tail(mesh: Mesh, node: str) -> None:
    with mesh.stream(node) as stream:
        for item in stream:
            if isinstance(item, Gap):
                out(
                    gap={
                        "start": item.start,
                        "end": item.end,
                        "reason": item.reason,
                        "backfilled": item.backfilled,
                        "recovered": item.recovered,
                    }
                )
            else:
                out(t=item.t.tolist(), k=item.data["k"].tolist(), backfill=item.backfill)


def history(mesh: Mesh, node: str, field: str) -> None:
    r = mesh.get(node, [field], 1.0, time.time() + 3600)
    out(t=r.time(field).tolist(), k=r[field].tolist())


def status(mesh: Mesh, node: str) -> None:
    out(status=mesh.status(node))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("command", choices=("watch", "tail", "history", "status"))
    p.add_argument("args", nargs="*")
    a = p.parse_args()
    with Mesh(a.url, timeout=10) as mesh:
        {"watch": watch, "tail": tail, "history": history, "status": status}[a.command](
            mesh, *a.args
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
