"""`obsmesh up` as a user runs it (every node kind and simulator), then the
router is killed under live load: the launcher restarts it, every node comes
back, stored history is intact, and a live consumer is told of the gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from consumers.client import Mesh
from consumers.client.live import Gap
from obsmesh import kinds
from obsmesh.router import REPO
from tests.harness import children, cmdline, free_port_range, port_open, wait_for

pytestmark = pytest.mark.slow  # the whole mesh as processes, restarted

EXPECTED = {k.name for k in kinds.registry().kinds() if k.demo is not None}


def crossbar_of(launcher_pid: int) -> int:
    for pid in children().get(launcher_pid, []):
        if "crossbar" in cmdline(pid):
            return pid
    raise LookupError("no crossbar child")


@pytest.fixture
def mesh_up(tmp_path):
    base = free_port_range(64)
    env = dict(
        os.environ,
        OBSMESH_STATE_DIR=str(tmp_path / "state"),
        OBSMESH_PORT_BASE=str(base),  # every port of this mesh, simulators included, moved
    )
    env["OBSMESH_ROUTER_URL"] = f"rs://127.0.0.1:{base + 1}"  # for the test's own client
    grafana = base + 2
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "obsmesh", "up"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(base + 1) or proc.poll() is not None, 120, "the router")
        assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
        yield proc, env, grafana, tmp_path / "up.log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def listed(mesh: Mesh) -> set[str]:
    try:
        return {n["name"] for n in mesh.nodes()}
    except Exception:
        return set()


def test_whole_mesh_survives_the_router_being_killed(mesh_up):
    proc, env, grafana, log = mesh_up
    with Mesh(env["OBSMESH_ROUTER_URL"], timeout=20) as mesh:
        wait_for(
            lambda: EXPECTED <= listed(mesh), 120, f"every node kind ({EXPECTED})", interval=0.5
        )
        stream = mesh.stream("weather", "temperature", backfill=True)
        wait_for(lambda: _first_batch(stream), 30, "live weather rows")
        before = mesh.get("weather", "temperature", -3600, -5)
        assert before["temperature"].size > 1000  # the simulator's history plus live rows

        os.killpg(crossbar_of(proc.pid), signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: EXPECTED <= listed(mesh),
            60,
            "every node back after the router restart",
            interval=0.5,
        )
        back = time.monotonic() - killed
        assert len([n for n in mesh.nodes() if n["name"] == "weather"]) == 1

        # History stored before the crash is intact.
        after = mesh.get(
            "weather",
            "temperature",
            before.time("temperature")[0],
            before.time("temperature")[-1] + 1e-6,
        )
        assert np.array_equal(after["temperature"], before["temperature"])
        # The live consumer is told of the gap, then data flows again.
        items = [stream.get(timeout=60) for _ in range(3)]
        while not any(isinstance(i, Gap) for i in items):
            items.append(stream.get(timeout=60))
        gap = next(i for i in items if isinstance(i, Gap))
        assert gap.end >= gap.start
        nxt = stream.get(timeout=60)
        assert not isinstance(nxt, Gap)
        stream.close()
    # The Grafana bridge found the router again on its own.
    body = json.dumps(
        {
            "range": {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
            "maxDataPoints": 100,
            "targets": [{"target": "weather::temperature"}],
        }
    ).encode()
    wait_for(
        lambda: _grafana_answers(grafana, body),
        60,
        "the Grafana bridge to answer again",
        interval=0.5,
    )
    assert back < 60
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0
    assert b"obsmesh: stopped in" in log.read_bytes()


def _first_batch(stream) -> bool:
    try:
        return stream.get(timeout=1) is not None
    except Exception:
        return False


def _grafana_answers(port: int, body: bytes) -> bool:
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/query",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            series = json.loads(r.read())
        return bool(series and series[0]["datapoints"])
    except Exception:
        return False


# Per node kept by its store: the fields whose history a restart must keep (the
# radars' per-scan totals included: every radar the launcher simulates). weather,
# co2 and dataflow rebuild theirs from their own files, which `obsmesh up`'s
# simulators write anew at start.
# A name, or a suffix (".scan.total": that field of every radar).
KEPT = {"sensors": "load1", "superdarn": ".scan.total", "canada": ".scan.total"}


def _kept_fields(mesh: Mesh) -> dict[str, list[str]]:
    out = {}
    for node, want in KEPT.items():
        names = mesh.fields(node)
        out[node] = sorted(f for f in names if f == want or (want[0] == "." and f.endswith(want)))
    return out


def _up(tmp_path, env: dict, log_name: str) -> subprocess.Popen:
    log = open(tmp_path / log_name, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "obsmesh", "up"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _down(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(10)


def _history(mesh: Mesh, fields: dict[str, list[str]], since: dict | None = None) -> dict:
    """(node, field) -> (times, values) of the last day, or of the interval that
    `since` (an earlier answer) covered."""
    out = {}
    for node, names in fields.items():
        for field in names:
            if since is None:
                r = mesh.get(node, field, -86400, 0)
            else:
                t = since[node, field][0] or [0.0]
                r = mesh.get(node, field, t[0], t[-1] + 1e-6)
            out[node, field] = (r.time(field).tolist(), r[field].tolist())
    return out


@pytest.mark.router  # starts its own processes
@pytest.mark.timeout(600)
def test_whole_mesh_restart_keeps_every_nodes_history(tmp_path):
    """`obsmesh up`, history on every node (a completed radar scan included),
    stop, `obsmesh up` again on the same state directory: the first answers
    already hold all of it."""
    base = free_port_range(64)
    env = dict(
        os.environ,
        OBSMESH_STATE_DIR=str(tmp_path / "state"),
        OBSMESH_PORT_BASE=str(base),  # every port of this mesh, simulators included, moved
    )
    backend = base + 1
    env["OBSMESH_ROUTER_URL"] = f"rs://127.0.0.1:{backend}"  # for the test's own client
    proc = _up(tmp_path, env, "up1.log")
    try:
        wait_for(lambda: port_open(backend) or proc.poll() is not None, 120, "the router")
        with Mesh(env["OBSMESH_ROUTER_URL"], timeout=20) as mesh:
            wait_for(lambda: EXPECTED <= listed(mesh), 120, "every node", interval=0.5)

            def filled() -> bool:
                try:
                    fields = _kept_fields(mesh)
                    got = _history(mesh, fields)
                except Exception:
                    return False
                # Minute scans: the first complete one ends when the second begins.
                return all(
                    names and any(got[node, f][0] for f in names) for node, names in fields.items()
                )

            wait_for(filled, 240, f"history on {sorted(KEPT)}", interval=2)
            fields = _kept_fields(mesh)
            before = _history(mesh, fields)
        assert _down(proc) == 0
        proc = _up(tmp_path, env, "up2.log")
        wait_for(lambda: port_open(backend) or proc.poll() is not None, 120, "the router again")
        with Mesh(env["OBSMESH_ROUTER_URL"], timeout=20) as mesh:
            wait_for(lambda: EXPECTED <= listed(mesh), 120, "every node again", interval=0.5)
            after = _history(mesh, fields, since=before)  # the first answers after the restart
        assert after == before
        assert sum(len(t) for t, _ in before.values()) > 0
    finally:
        _down(proc)
