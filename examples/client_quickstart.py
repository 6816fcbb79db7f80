"""A first look at the mesh from Python: list the nodes, fetch history as numpy
(and pandas, if installed), then follow live data for a few batches.

    make run                                  # in another terminal: the demo mesh
    .venv/bin/python examples/client_quickstart.py            # first node found
    .venv/bin/python examples/client_quickstart.py weather --minutes 30

With nothing configured it reads the local mesh through its public WebSocket
(ws://127.0.0.1:8080/ws), anonymously; `--url ws://host:8080/ws` (or
OBSMESH_PUBLIC_URL) reaches another mesh.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from consumers.client import Batch, ClientError, Gap, Mesh, MeshTimeout
from consumers.client.display import value_text


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("node", nargs="?", help="node to look at (default: the first one listed)")
    p.add_argument("--url", help="router URL (default from the configuration)")
    p.add_argument("--minutes", type=float, default=10.0, help="history to fetch (default 10)")
    p.add_argument("--batches", type=int, default=5, help="live batches to print (default 5)")
    args = p.parse_args()

    try:
        with Mesh(args.url, timeout=15) as mesh:
            return explore(mesh, args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def explore(mesh: Mesh, args: argparse.Namespace) -> int:
    nodes = mesh.nodes()
    print(f"{len(nodes)} node(s) on {mesh.url}:")
    for n in nodes:
        print(f"  {n['name']:<20} {n.get('kind', ''):<10} {n.get('description', '')}")
    if not nodes:
        return 0
    node = args.node or nodes[0]["name"]

    fields = mesh.fields(node, f"{args.minutes}m", "now")
    numeric = [f for f, info in fields.items() if info.get("type") == "number"]
    print(f"\n{node}: {len(fields)} field(s); numeric: {', '.join(numeric) or 'none'}")
    if not numeric:
        return 0
    chosen = numeric[:3]

    # History: numpy arrays per field, times in UNIX seconds.
    result = mesh.get(node, chosen, f"{args.minutes}m", "now", progress=True)
    for f in chosen:
        values, t = result[f], result.time(f)
        if values.size == 0:
            print(f"  {f}: no samples in the last {args.minutes:g} min")
            continue
        show = lambda v, f=f: value_text(float(v), fields[f])  # noqa: E731 - its precision, its units
        print(
            f"  {f}: {values.size} samples, min {show(np.nanmin(values))}, "
            f"mean {show(np.nanmean(values))}, max {show(np.nanmax(values))}, last at {t[-1]:.3f}"
        )

    # The same as a DataFrame, binned to one point per minute (pandas is optional).
    try:
        frame = mesh.get(node, chosen, f"{args.minutes}m", "now", min_stride="1m", as_frame=True)
        print(f"\none-minute means:\n{frame.tail()}")
    except ImportError as exc:
        print(f"\n({exc})")

    # Live: Batch items as they arrive; a Gap item if the stream was interrupted
    # (the missed samples then follow, fetched from history).
    print(f"\nlive {node} ({args.batches} batches):")
    with mesh.stream(node, chosen) as live:
        for _ in range(args.batches):
            try:
                item = live.get(timeout=10)
            except MeshTimeout:
                print("  nothing live within 10 s")
                break
            if isinstance(item, Gap):
                print(
                    f"  gap of {item.duration:.1f} s ({item.reason}); recovered {item.recovered} samples"
                )
            elif isinstance(item, Batch):
                shown = ", ".join(
                    f"{f}={value_text(c[-1], fields[f])}" for f, c in item.data.items()
                )
                print(f"  {item.timeline}: {len(item)} samples, last {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
