"""CO2 unit endpoint: durable upload rate with 50 simulated units at once, and
the delay from an upload to the delivery of its rows (the live publication
path of the node; here up to the server's `on_rows` callback).

The server runs in its own process (its own reactor, real fsync on the data
root); 50 simulated units push their readings files in 4 KiB chunks, as the
firmware does, each from its own thread with its own connections.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

from nodes.co2.admin import add_unit
from nodes.co2.simulator import READINGS_DIR, SimUnit, unit_id_for

UNITS = 50
ROWS_PER_UNIT = 400  # ~64 KiB of readings per unit: 16 chunks of 4 KiB
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


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-co2-") as tmp:
        tmp_path = Path(tmp)
        root, rows_log = tmp_path / "root", tmp_path / "rows.log"
        units = []
        for i in range(UNITS):
            unit_id = unit_id_for(11, i)
            unit = SimUnit("http://127.0.0.1:1", unit_id, tmp_path / "sd" / unit_id,
                           add_unit(root, unit_id), layout="mixed", seed=i)
            for k in range(ROWS_PER_UNIT):
                unit.measure(1_700_000_000 + 300 * k)
            units.append(unit)
        ends = {u.unit_id: _row_ends(u) for u in units}

        proc, port = _start_server(root, rows_log)
        acks: list[tuple[str, str, int, int, float, float]] = []
        lock = threading.Lock()

        def on_ack(*record) -> None:
            with lock:
                acks.append(record)

        def push(unit: SimUnit) -> None:
            unit.port, unit.on_ack = port, on_ack
            unit.push_dir(READINGS_DIR)

        try:
            threads = [threading.Thread(target=push, args=(u,)) for u in units]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(30)

        uploads = len(acks)
        megabytes = sum(a[3] for a in acks) / 1e6
        # which acknowledged chunk completed each row: the one holding its newline
        chunk_start: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        for unit_id, fname, offset, _n, t0, _t1 in sorted(acks, key=lambda a: a[2]):
            offs, starts = chunk_start.setdefault((unit_id, fname), ([], []))
            offs.append(offset)
            starts.append(t0)
        row_chunk_start: dict[tuple[str, float], float] = {}
        for unit_id, files in ends.items():
            for fname, (line_ends, ts) in files.items():
                offs, starts = chunk_start[(unit_id, fname)]
                for end, t in zip(line_ends, ts, strict=True):
                    i = bisect_left(offs, end + 1) - 1
                    row_chunk_start[(unit_id, t)] = starts[i]
        delays = []
        for line in rows_log.read_text().splitlines():
            unit_id, t, wall = line.split("\t")
            delays.append((float(wall) - row_chunk_start[(unit_id, float(t))]) * 1000)
        expected_rows = UNITS * ROWS_PER_UNIT

    rate = uploads / elapsed
    p50, p99 = _pct(delays, 0.50), _pct(delays, 0.99)
    round_trips = [(a[5] - a[4]) * 1000 for a in acks]
    rtt = f"request round trip p50 {_pct(round_trips, 0.5):.0f} ms, p99 {_pct(round_trips, 0.99):.0f} ms"
    return [
        {"name": f"durable uploads/s, {UNITS} units at once (4 KiB chunks, fsync)",
         "value": rate, "unit": "uploads/s", "target": ">= 100 acknowledged durable uploads/s",
         "ratio": rate / 100, "met": rate >= 100},
        {"name": "upload throughput", "value": megabytes / elapsed, "unit": "MB/s",
         "target": "(none)", "ratio": None, "met": None},
        {"name": "upload -> rows delivered, p50", "value": p50, "unit": "ms",
         "target": "(p99 is the target)", "reference": rtt, "ratio": None, "met": None},
        {"name": "upload -> rows delivered, p99", "value": p99, "unit": "ms",
         "target": "p99 <= 200 ms", "reference": rtt, "ratio": 200 / p99 if p99 else None,
         "met": p99 <= 200},
        {"name": "rows delivered / rows sent", "value": len(delays) / expected_rows,
         "unit": "", "target": "1.0 (each row once)", "ratio": None,
         "met": len(delays) == expected_rows},
        {"name": "mean delay", "value": statistics.fmean(delays), "unit": "ms",
         "target": "(none)", "ratio": None, "met": None},
    ]


if __name__ == "__main__":
    for fig in run():
        print(fig)
