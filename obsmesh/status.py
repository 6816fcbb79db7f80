"""`obsmesh status`: each service of the local mesh `obsmesh up` runs from this
state directory, read from its layout (STATE/launcher.json) and asked live:

- a node is *joined* when its process runs and the hub lists it; its
  get_status gives the last sample and the last error;
- a service that listens (router, bridge, simulators with a port) is
  *listening* when its process runs and every port of it accepts a connection;
- any other service is *running* once its process has run a few seconds
  (one that crash-loops never is).

Exit status 0 when every service is up, 1 when one is down or no launcher
runs from the state directory.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import sys
import time
from typing import Any

from obsmesh import layout as layout_mod
from obsmesh import procs, router
from obsmesh.launcher import SETTLED
from obsmesh.layout import LAUNCHER_AUTHID, NODE


def launcher_running(state: str) -> bool:
    """Whether a launcher holds the state directory's lock."""
    try:
        with open(os.path.join(state, "launcher.lock"), "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _ago(t: Any, now: float) -> str:
    if not isinstance(t, int | float) or not math.isfinite(t):
        return "-"
    return f"{max(0.0, now - t):.0f} s ago"


def _ask_hub(lay: layout_mod.Layout, mesh: dict[str, Any], secret: str | None, timeout: float):
    """(listed node names, node -> get_status) or an error message for each node."""
    from consumers.client import Mesh

    statuses: dict[str, Any] = {}
    try:
        with Mesh(
            lay.router_url,
            mesh["realm"],
            prefix=mesh["prefix"],
            authid=LAUNCHER_AUTHID,
            secret=secret,
            timeout=timeout,
        ) as client:
            listed = {n.get("name") for n in client.nodes()}
            for svc in lay.nodes():
                if svc.node and svc.node in listed:
                    try:
                        statuses[svc.node] = client.status(svc.node)
                    except Exception as exc:  # a node that cannot answer is reported, not fatal
                        statuses[svc.node] = f"get_status failed: {exc}"
        return listed, statuses
    except Exception as exc:
        return set(), {s.node: f"the hub did not answer: {exc}" for s in lay.nodes()}


def rows(data: dict[str, Any], mesh: dict[str, Any], secret: str | None, timeout: float):
    """One row per service: (name, state, up, pid, restarts, last sample, last error)."""
    lay: layout_mod.Layout = data["layout"]
    listed, statuses = _ask_hub(lay, mesh, secret, timeout)
    now = time.time()
    out = []
    for svc in lay.services:
        rec = data["services"].get(svc.name, {})
        pid = rec.get("pid")
        alive = bool(pid) and procs.alive(pid)
        sample, error = "-", rec.get("last_exit") or ""
        if svc.role == NODE:
            up = alive and svc.node in listed
            word = "joined" if up else ("not-listed" if alive else "down")
            status = statuses.get(svc.node)
            if isinstance(status, dict):
                times = [t for t in (status.get("last_sample") or {}).values() if t is not None]
                sample = _ago(max(times), now) if times else "none yet"
                error = status.get("last_error") or error
            elif isinstance(status, str) and not up:
                error = status
        elif svc.listens:
            up = alive and all(router.port_open(x.host, x.port) for x in svc.listens)
            word = "listening" if up else ("not-listening" if alive else "down")
        else:
            up = alive and time.time() - (rec.get("started") or now) >= SETTLED
            word = "running" if up else ("starting" if alive else "down")
        out.append(
            (svc.name, word, up, pid if alive else "-", rec.get("restarts", 0), sample, error)
        )
    return out


def main(mesh: dict[str, Any], args: argparse.Namespace) -> int:
    from obsmesh.cli import secrets_path
    from obsmesh.wamp import credentials

    state = os.path.abspath(mesh["state_dir"])
    path = os.path.join(state, "launcher.json")
    if not launcher_running(state) or not os.path.exists(path):
        print(f"obsmesh status: no `obsmesh up` runs from {state}", file=sys.stderr)
        return 1
    data = layout_mod.load(path)
    secrets_file = os.environ.get("OBSMESH_SECRETS_FILE") or secrets_path(mesh)
    try:
        found = credentials({**mesh, "secrets_file": secrets_file}, LAUNCHER_AUTHID)
    except Exception as exc:  # an unreadable secrets file: say so, the processes are still checked
        print(f"obsmesh status: no credentials for the hub: {exc}", file=sys.stderr)
        found = None
    table = rows(data, mesh, found["wampcra"]["secret"] if found else None, args.timeout)
    print(f"mesh of {state} (launcher pid {data.get('pid')}), {data['layout'].router_url}")
    print(
        f"{'SERVICE':<20} {'STATE':<13} {'PID':>7} {'RESTARTS':>8}  {'LAST SAMPLE':<12} LAST ERROR"
    )
    for name, word, _, pid, restarts, sample, error in table:
        print(f"{name:<20} {word:<13} {pid!s:>7} {restarts:>8}  {sample:<12} {error}")
    down = [r[0] for r in table if not r[2]]
    if down:
        print(f"down: {', '.join(down)}")
        return 1
    return 0
