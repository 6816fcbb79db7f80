"""`obsmesh up` as users run it, twice on one host: each mesh on its own port
range (OBSMESH_PORT_BASE) and state directory, every node listed by its own
hub; a SIGKILLed launcher leaves none of its processes (crossbar's workers
included) and the other mesh runs on untouched; a router left behind by an
earlier run is stopped; a port held by something else is named; a service
that cannot start is named and `obsmesh status` says it is down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from obsmesh import kinds, layout, router
from obsmesh.procs import port_free
from tests.harness import Up, alive, cmdline, free_port, free_port_range, wait_for

pytestmark = [pytest.mark.router, pytest.mark.slow]  # obsmesh up, twice

SLOTS = 64  # ports a mesh may take from its base (more than any layout here has)


def demo_kinds() -> set[str]:
    return {k.name for k in kinds.registry().kinds() if k.demo is not None}


def two_bases() -> tuple[int, int]:
    """21000 when its whole range is free (as the README's example), else another; and a second."""
    if all(port_free("127.0.0.1", p) for p in range(21000, 21000 + SLOTS)):
        first = 21000
    else:
        first = free_port_range(SLOTS)
    second = first
    while abs(second - first) < SLOTS:
        second = free_port_range(SLOTS)
    return first, second


def orphan_router(state) -> subprocess.Popen:
    """A crossbar running from STATE/router, as a killed launcher of old left it."""
    log = state.parent / "orphan-router.log"
    cfg = router.render_config(public_port=free_port(), backend_port=free_port())
    proc = router.start_router(state / "router", cfg, log)
    router.wait_ready(proc, log, [], 0, timeout=90)
    return proc


def status(up: Up) -> tuple[int, dict[str, list[str]]]:
    """`obsmesh status`: its exit status and its rows by service."""
    done = up.obsmesh("status")
    rows = {}
    for line in done.stdout.splitlines()[2:]:
        words = line.split()
        if words and not line.startswith("down:"):
            rows[words[0]] = words
    return done.returncode, rows


def test_two_meshes_side_by_side_and_a_killed_launcher_leaves_nothing(tmp_path):
    base_a, base_b = two_bases()
    a = Up(tmp_path / "a", base_a)
    b = Up(tmp_path / "b", base_b)
    (a.state / "router").mkdir(parents=True)
    stale = orphan_router(a.state)
    try:
        a.start()
        b.start()
        for up in (a, b):
            up.wait_text("obsmesh is up:")
        expected = demo_kinds()
        for up in (a, b):
            wait_for(lambda up=up: expected <= up.listed(), 60, f"every node of {up.dir.name}")
        # the router an earlier run left in A's state directory was named and stopped
        assert f"stopping the router (crossbar) an earlier run of {a.state}" in a.text()
        assert stale.wait(10) is not None
        # each banner prints its own ports; status shows every service of the layout up
        assert (
            f"http://127.0.0.1:{base_a}/" in a.text() and f"rs://127.0.0.1:{base_a + 1}" in a.text()
        )
        assert f"http://127.0.0.1:{base_b}/" in b.text()
        lay = layout.load(str(a.state / "launcher.json"))["layout"]
        ports = sorted(x.port for _, x in lay.listens())
        assert ports[0] == base_a and ports == list(range(base_a, base_a + len(ports)))
        code, rows = status(a)
        assert code == 0, rows
        assert set(rows) == {s.name for s in lay.services}
        for svc in lay.services:
            word = "joined" if svc.role == "node" else ("listening" if svc.listens else "running")
            assert rows[svc.name][1] == word, rows[svc.name]

        # SIGKILL A's launcher: every process it started goes, crossbar's workers included
        mine = a.processes()
        assert any("crossbar-worker" in cmdline(p) for p in mine), [cmdline(p) for p in mine]
        assert len(mine) >= len(lay.services) + 2  # + the launcher and the reaper
        others = b.processes()
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        wait_for(lambda: not [p for p in mine if alive(p)], 30, "every process of mesh A gone")
        assert not [
            p for p in os.listdir("/proc") if p.isdigit() and str(a.state) in cmdline(int(p))
        ]
        assert all(port_free("127.0.0.1", p) for p in ports)
        # B runs on untouched: the same processes, every node still listed, status clean
        assert [p for p in others if alive(p)] == others
        assert expected <= b.listed()
        code, rows = status(b)
        assert code == 0 and all(r[3] == "0" for r in rows.values()), rows  # no restart
        # and a launcher that is gone is said to be: no mesh runs from A's state directory
        done = a.obsmesh("status")
        assert done.returncode == 1 and "no `obsmesh up` runs from" in done.stderr

        # Ctrl-C stops B: nodes leave the hub first, then the router; nothing is left
        mine = b.processes()
        took = b.interrupt()
        print(f"Ctrl-C to launcher exit: {took:.2f} s")
        assert b.proc.returncode == 0 and "obsmesh: stopped in" in b.text()
        assert not [p for p in mine if alive(p)]
        last_run = (b.state / "logs" / "router.log").read_text().rsplit("hub joined realm", 1)[1]
        for node in expected:  # the hub saw every node leave: the router outlived them
            assert f"node subtracted: {node} " in last_run, node
    finally:
        for up in (a, b):
            up.close()
        if stale.poll() is None:
            os.killpg(stale.pid, signal.SIGKILL)


def test_a_port_held_by_another_program_is_named_and_nothing_starts(tmp_path):
    base = free_port_range(SLOTS)
    up = Up(tmp_path / "held", base)
    lay = layout.local(_mesh(up))
    victim = next(x for s, x in lay.listens() if s.role == "node")
    holder = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(victim.port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: not port_free("127.0.0.1", victim.port), 20, "the other program's port")
        done = subprocess.run(
            [sys.executable, "-m", "obsmesh", "up"],
            env=up.env,
            cwd=str(up.dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        assert f"port {victim.port} on 127.0.0.1 ({victim.what}" in done.stderr
        assert f"in use by pid {holder.pid} (" in done.stderr and "http.server" in done.stderr
        assert "OBSMESH_PORT_BASE" in done.stderr
        assert not (up.state / "logs" / "router.log").exists()  # nothing was started
    finally:
        holder.kill()
        holder.wait()


def _mesh(up: Up) -> dict:
    from obsmesh import config

    return config.mesh(environ=up.env)


def test_a_service_that_cannot_start_is_named_and_status_says_it_is_down(tmp_path):
    base = free_port_range(SLOTS)
    up = Up(tmp_path / "broken", base, "sensors", "co2", "--wait", "15")
    up.state.mkdir(parents=True)
    (up.state / "co2").write_text("not a directory")  # the co2 node's data root cannot be made
    try:
        up.start()
        up.wait_text("not every service is up after 15 s")
        text = up.text()
        assert "obsmesh is up" not in text
        named = [
            line.split()[0]
            for line in text.split("after 15 s:")[1].splitlines()
            if " has not joined the hub" in line or " is not up" in line
        ]
        assert sorted(named) == ["co2", "co2-simulator"], text  # both need the data root
        assert "  co2 has not joined the hub, restarted" in text
        code, rows = status(up)
        assert code == 1
        assert rows["sensors"][1] == "joined" and rows["router"][1] == "listening"
        assert rows["co2"][1] in ("down", "not-listed")
        # one launcher per state directory
        second = up.obsmesh("up", "sensors")
        assert second.returncode == 1 and "another `obsmesh up` runs from" in second.stderr
        # mended, co2 comes back at its next restart and the mesh is up
        (up.state / "co2").unlink()
        up.wait_text("obsmesh is up (all joined now)", timeout=120)
        code, rows = status(up)
        assert code == 0 and rows["co2"][1] == "joined" and int(rows["co2"][3]) >= 1, rows
        state = json.loads((up.state / "launcher.json").read_text())
        assert state["services"]["co2"]["restarts"] >= 1
        assert "exited with" in state["services"]["co2"]["last_exit"]
    finally:
        up.close()


HOST = """
import sys
from twisted.internet import reactor
from nodes.das2.readers import ReaderLimits, ReaderPool
ReaderPool(reactor=reactor).run([sys.executable, sys.argv[1], sys.argv[2]], lambda b: None, ReaderLimits(timeout=600))
reactor.run()
"""
READER = """
import os, sys, time
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
time.sleep(600)
"""


def test_a_das2_reader_dies_with_the_node_that_started_it_whatever_kills_the_node(tmp_path):
    """Readers run in a session of their own (killpg reaches what they start), so
    nothing but their parent-death signal ends them when their node is SIGKILLed."""
    reader = tmp_path / "reader.py"
    reader.write_text(READER)
    pidfile = tmp_path / "reader.pid"
    node = subprocess.Popen(
        [sys.executable, "-c", HOST, str(reader), str(pidfile)],
        cwd=str(tmp_path.parent),
        env={**os.environ, "PYTHONPATH": str(router.REPO)},
    )
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60, "the reader to start")
        pid = int(pidfile.read_text())
        assert alive(pid) and os.getsid(pid) != os.getsid(node.pid)
        node.kill()  # SIGKILL: the node runs no code of its own on the way out
        node.wait(10)
        wait_for(lambda: not alive(pid), 10, "the reader to die with its node")
    finally:
        if node.poll() is None:
            node.kill()
