"""CO2 unit endpoint: durable upload rate with 50 simulated units at once, and
the delay from an upload to the delivery of its rows (the live publication
path of the node; here up to the server's `on_rows` callback).

Two phases against one server: saturated (every unit pushes as fast as it is
acknowledged: the upload rate) and paced at the target rate (50 units, one
chunk each every 0.5 s: the delay, measured from the start of the request
that completed a row to that row's delivery). Under saturation the delay is
mostly time queued behind the other 49 units, reported for information.

The server runs in its own process (its own reactor, real fsync on the data
root); 50 simulated units push their readings files in 4 KiB chunks, as the
firmware does, each from its own thread with its own connections.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

from nodes.co2.admin import add_unit
from nodes.co2.simulator import CHUNK, READINGS_DIR, SimUnit, unit_id_for

UNITS = 50
ROWS_PER_UNIT = 400  # ~64 KiB of readings per unit: 16 chunks of 4 KiB
PACE_PERIOD = 0.5  # paced phase: 50 units x 2 uploads/s = the 100 uploads/s target
ROOT = Path(__file__).resolve().parents[1]


def _start_server(root: Path, rows_log: Path) -> tuple[subprocess.Popen, int]:
    port_file = root.parent / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodes.co2.server", "--root", str(root), "--port", "0",
         "--port-file", str(port_file), "--rows-log", str(rows_log), "--log-level", "error"],
        cwd=ROOT)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("CO2 server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def _row_ends(unit: SimUnit) -> dict[str, tuple[list[int], list[float]]]:
    """Per readings file: the end offsets of its lines and their row times."""
    out = {}
    times = iter(unit.rows)
    for path in sorted((unit.sd / READINGS_DIR).iterdir()):
        ends, ts, pos = [], [], 0
        for line in path.read_bytes().splitlines(keepends=True):
            pos += len(line)
            ends.append(pos - 1)  # offset of the newline that completes the row
            ts.append(next(times).t)
        out[path.name] = (ends, ts)
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _make_units(root: Path, sd: Path, seed: int) -> list[SimUnit]:
    units = []
    for i in range(UNITS):
        unit_id = unit_id_for(seed, i)
        unit = SimUnit("http://127.0.0.1:1", unit_id, sd / unit_id, add_unit(root, unit_id),
                       layout="mixed", seed=seed * 1000 + i)
        for k in range(ROWS_PER_UNIT):
            unit.measure(1_700_000_000 + 300 * k)
        units.append(unit)
    return units


def _saturated(units: list[SimUnit], port: int) -> tuple[list[tuple], float]:
    """Every unit pushes its readings as fast as the server acknowledges."""
    acks: list[tuple] = []
    lock = threading.Lock()

    def on_ack(*record) -> None:
        with lock:
            acks.append(record)

    def push(unit: SimUnit) -> None:
        unit.port, unit.on_ack = port, on_ack
        unit.push_dir(READINGS_DIR)

    threads = [threading.Thread(target=push, args=(u,)) for u in units]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acks, time.perf_counter() - started


def _paced(units: list[SimUnit], port: int, period: float) -> list[tuple]:
    """Every unit pushes one 4 KiB chunk each `period` seconds, units out of step:
    an aggregate of UNITS / period uploads per second."""
    acks: list[tuple] = []
    lock = threading.Lock()
    t0 = time.time() + 0.5

    def push(i: int, unit: SimUnit) -> None:
        unit.port = port
        data = (unit.sd / READINGS_DIR / "readings-0000.tsv").read_bytes()
        for k, offset in enumerate(range(0, len(data), CHUNK)):
            delay = t0 + period * (k + i / len(units)) - time.time()
            if delay > 0:
                time.sleep(delay)
            body = data[offset:offset + CHUNK]
            started = time.time()
            status, _ = unit.request("PUT", unit._url(
                f"/ou/{unit.unit_id}/push-sequential/{READINGS_DIR}/readings-0000.tsv",
                {"offset": offset}), body)
            if status == 200:
                with lock:
                    acks.append((unit.unit_id, "readings-0000.tsv", offset, len(body),
                                 started, time.time()))

    threads = [threading.Thread(target=push, args=(i, u)) for i, u in enumerate(units)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acks


def _delays(units: list[SimUnit], acks: list[tuple], rows_log: Path) -> list[float]:
    """Per delivered row: delivery time minus the start of the upload that completed it."""
    ends = {u.unit_id: _row_ends(u) for u in units}
    chunk_start: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for unit_id, fname, offset, _n, t0, _t1 in sorted(acks, key=lambda a: a[2]):
        offs, starts = chunk_start.setdefault((unit_id, fname), ([], []))
        offs.append(offset)
        starts.append(t0)
    row_chunk_start: dict[tuple[str, float], float] = {}
    for unit_id, files in ends.items():
        for fname, (line_ends, ts) in files.items():
            offs, starts = chunk_start.get((unit_id, fname), ([], []))
            for end, t in zip(line_ends, ts, strict=True):
                i = bisect_left(offs, end + 1) - 1
                if i >= 0 and offs[i] + CHUNK > end:
                    row_chunk_start[(unit_id, t)] = starts[i]
    delays = []
    for line in rows_log.read_text().splitlines():
        unit_id, t, wall = line.split("\t")
        start = row_chunk_start.get((unit_id, float(t)))
        if start is not None:
            delays.append((float(wall) - start) * 1000)
    return delays


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-co2-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "root"
        fast_units = _make_units(root, tmp_path / "sd", 11)
        paced_units = _make_units(root, tmp_path / "sd", 12)
        rows_log = tmp_path / "rows.log"
        proc, port = _start_server(root, rows_log)
        try:
            acks, elapsed = _saturated(fast_units, port)
            paced_acks = _paced(paced_units, port, PACE_PERIOD)
        finally:
            proc.terminate()
            proc.wait(30)
        fast_delays = _delays(fast_units, acks, rows_log)
        paced_delays = _delays(paced_units, paced_acks, rows_log)
        expected_rows = 2 * UNITS * ROWS_PER_UNIT
        delivered = len(rows_log.read_text().splitlines())

    rate = len(acks) / elapsed
    megabytes = sum(a[3] for a in acks) / 1e6
    load = f"{UNITS} units, one 4 KiB chunk each every {PACE_PERIOD} s ({UNITS / PACE_PERIOD:.0f} uploads/s)"
    p50, p99 = _pct(paced_delays, 0.50), _pct(paced_delays, 0.99)
    rtt = [(a[5] - a[4]) * 1000 for a in paced_acks]
    return [
        {"name": f"durable uploads/s, {UNITS} units at once, as fast as acknowledged",
         "value": rate, "unit": "uploads/s", "target": ">= 100 acknowledged durable uploads/s",
         "ratio": rate / 100, "met": rate >= 100},
        {"name": "upload throughput (4 KiB chunks, fsync each)", "value": megabytes / elapsed,
         "unit": "MB/s", "target": "(none)", "ratio": None, "met": None},
        {"name": f"upload -> rows delivered p50, {load}", "value": p50, "unit": "ms",
         "target": "(p99 is the target)", "ratio": None, "met": None},
        {"name": f"upload -> rows delivered p99, {load}", "value": p99, "unit": "ms",
         "target": "p99 <= 200 ms", "ratio": 200 / p99 if p99 else None, "met": p99 <= 200,
         "reference": f"request round trip p99 {_pct(rtt, 0.99):.0f} ms at this load"},
        {"name": "upload -> rows delivered p99, saturated (queueing in the clients)",
         "value": _pct(fast_delays, 0.99), "unit": "ms", "target": "(information)",
         "ratio": None, "met": None},
        {"name": "rows delivered / rows sent", "value": delivered / expected_rows,
         "unit": "", "target": "1.0 (each row once)", "ratio": None,
         "met": delivered == expected_rows},
    ]


if __name__ == "__main__":
    for fig in run():
        print(fig)
