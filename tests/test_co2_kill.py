"""CO2 endpoint killed (SIGKILL) in the middle of uploads: what is stored is a
valid prefix of what units sent, at least everything acknowledged, and the
units resume from their offsets to byte-identical files after a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nodes.co2.admin import add_unit
from nodes.co2.simulator import READINGS_DIR, SimUnit, unit_id_for

# starts its own processes; slow: a killed endpoint and resuming units
pytestmark = [pytest.mark.router, pytest.mark.slow]

ROOT_DIR = Path(__file__).resolve().parents[1]


def start_server(root: Path, tag: str) -> tuple[subprocess.Popen, int]:
    port_file = root.parent / f"port-{tag}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes.co2.server",
            "--root",
            str(root),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--rows-log",
            str(root.parent / "rows.log"),
            "--log-level",
            "error",
        ],
        cwd=ROOT_DIR,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def delivered_times(root: Path) -> dict[str, set[float]]:
    out: dict[str, set[float]] = {}
    for line in (root.parent / "rows.log").read_text().splitlines():
        unit, t, _ = line.split("\t")
        out.setdefault(unit, set()).add(float(t))
    return out


@pytest.mark.timeout(90)
def test_sigkill_mid_upload_leaves_valid_prefixes_and_units_resume(tmp_path):
    root = tmp_path / "root"
    units = []
    for i in range(4):
        unit_id = unit_id_for(3, i)
        token = add_unit(root, unit_id)
        unit = SimUnit(
            "http://127.0.0.1:1",
            unit_id,
            tmp_path / "sd" / unit_id,
            token,
            layout="extended",
            seed=i,
            timeout=10,
        )
        for k in range(1200):  # ~190 KiB: two readings files each
            unit.measure(1_650_000_000 + 300 * k)
        units.append(unit)

    proc, port = start_server(root, "a")
    acks, lock, killed = [0], threading.Lock(), threading.Event()

    def on_ack(*_):
        with lock:
            acks[0] += 1
            if acks[0] == 40:  # kill while the other units have requests in flight
                half_sent.wait(5)
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()

    # one request whose body is only half sent when the server dies
    half_sent = threading.Event()
    body = (units[0].sd / READINGS_DIR / "readings-0000.tsv").read_bytes()[:4096]
    head = (
        f"PUT /ou/{units[0].unit_id}/push-sequential/{READINGS_DIR}/readings-0009.tsv"
        f"?offset=0 HTTP/1.1\r\nHost: x\r\nX-Unit-Token: {units[0].token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body[:2000])
    half_sent.set()

    def run(unit: SimUnit) -> None:
        unit.port, unit.on_ack = port, on_ack
        try:
            unit.communicate()
        except (OSError, RuntimeError, ValueError):
            unit.stats["failed"] += 1

    threads = [threading.Thread(target=run, args=(u,)) for u in units]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sock.close()
    assert killed.is_set() and proc.wait(10) == -signal.SIGKILL

    for unit in units:
        acked_name, acked_progress, _ = unit.sync_state[READINGS_DIR]
        sd_files = sorted((unit.sd / READINGS_DIR).iterdir())
        for sd_file in sd_files:
            stored = root / "units" / unit.unit_id / READINGS_DIR / sd_file.name
            data = stored.read_bytes() if stored.exists() else b""
            assert sd_file.read_bytes()[: len(data)] == data  # a valid prefix
            if sd_file.name == acked_name:
                assert len(data) >= acked_progress  # nothing acknowledged is lost
    assert not (root / "units" / units[0].unit_id / READINGS_DIR / "readings-0009.tsv").exists()
    assert sum(u.stats["failed"] for u in units) >= 1

    proc, port = start_server(root, "b")
    try:
        for unit in units:
            unit.port, unit.on_ack = port, None
            unit.communicate(interrupt_rate=0.2)
        for unit in units:
            for sd_file in sorted((unit.sd / READINGS_DIR).iterdir()):
                stored = root / "units" / unit.unit_id / READINGS_DIR / sd_file.name
                assert stored.read_bytes() == sd_file.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    delivered = delivered_times(root)
    for unit in units:
        assert delivered[unit.unit_id] == {r.t for r in unit.rows}
