"""CO2 node: durable upload rate with 50 simulated units at once, and the delay
from an upload to the live WAMP publication of its rows.

A real router, the `co2` node as its own process (`obsmesh node co2`: its own
reactor, real fsync on the data root) and a subscriber process on
`P.consumer.co2.live` (an anonymous consumer on the public WebSocket, msgpack)
that writes down when each row arrives. 50 simulated
units push their readings files in 4 KiB chunks, as the firmware does, each
from its own thread with its own connections.

Two phases against one node: saturated (every unit pushes as fast as it is
acknowledged: the upload rate) and paced at the target rate (50 units, one
chunk each every 0.5 s: the delay, measured from the start of the request
that completed a row to that row's arrival at the subscriber). Under
saturation the delay is mostly time queued behind the other 49 units,
reported for information.

    python -m bench.bench_co2 subscribe WS_URL NODE OUT READY   (the subscriber)
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
from tests.harness import Router, admit, free_port, port_open, wait_for

NODE = "co2"
UNITS = 50
ROWS_PER_UNIT = 400  # ~64 KiB of readings per unit: 16 chunks of 4 KiB
PACE_PERIOD = 0.5  # paced phase: 50 units x 2 uploads/s = the 100 uploads/s target
ROOT = Path(__file__).resolve().parents[1]


def _start_node(router: Router, root: Path, logs: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    admit(NODE)  # a named principal (there is no wildcard)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obsmesh",
            "node",
            "co2",
            "--name",
            NODE,
            "--data-root",
            str(root),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=router.env(),
        stdout=open(logs / "node.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: proc.poll() is not None or port_open(port), 60, "the co2 node listening")
    if proc.poll() is not None:
        raise RuntimeError(f"co2 node exited: {(logs / 'node.log').read_text()[-2000:]}")
    return proc, port


def _start_subscriber(router: Router, rows_log: Path, logs: Path) -> subprocess.Popen:
    ready = logs / "subscribed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_co2",
            "subscribe",
            router.ws_url,
            NODE,
            str(rows_log),
            str(ready),
        ],
        cwd=ROOT,
        stdout=open(logs / "subscriber.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: proc.poll() is not None or ready.exists(), 60, "the subscriber ready")
    if proc.poll() is not None:
        raise RuntimeError(f"subscriber exited: {(logs / 'subscriber.log').read_text()[-2000:]}")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


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
        unit = SimUnit(
            "http://127.0.0.1:1",
            unit_id,
            sd / unit_id,
            add_unit(root, unit_id),
            layout="mixed",
            seed=seed * 1000 + i,
        )
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
            body = data[offset : offset + CHUNK]
            started = time.time()
            status, _ = unit.request(
                "PUT",
                unit._url(
                    f"/ou/{unit.unit_id}/push-sequential/{READINGS_DIR}/readings-0000.tsv",
                    {"offset": offset},
                ),
                body,
            )
            if status == 200:
                with lock:
                    acks.append(
                        (unit.unit_id, "readings-0000.tsv", offset, len(body), started, time.time())
                    )

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
        expected_rows = 2 * UNITS * ROWS_PER_UNIT
        router = Router()
        router.start()
        procs = []
        try:
            proc, port = _start_node(router, root, tmp_path)
            procs.append(proc)
            procs.append(_start_subscriber(router, rows_log, tmp_path))
            acks, elapsed = _saturated(fast_units, port)
            paced_acks = _paced(paced_units, port, PACE_PERIOD)
            try:
                wait_for(
                    lambda: _lines(rows_log) >= expected_rows, 30, "every row live", interval=0.2
                )
            except TimeoutError:
                pass  # reported below as rows published / rows sent
        finally:
            for proc in reversed(procs):
                _stop(proc)
            router.close()
        fast_delays = _delays(fast_units, acks, rows_log)
        paced_delays = _delays(paced_units, paced_acks, rows_log)
        delivered = _lines(rows_log)

    rate = len(acks) / elapsed
    megabytes = sum(a[3] for a in acks) / 1e6
    load = f"{UNITS} units, one 4 KiB chunk each every {PACE_PERIOD} s ({UNITS / PACE_PERIOD:.0f} uploads/s)"
    p50, p99 = _pct(paced_delays, 0.50), _pct(paced_delays, 0.99)
    rtt = [(a[5] - a[4]) * 1000 for a in paced_acks]
    return [
        {
            "name": f"durable uploads/s through the co2 node, {UNITS} units at once, as fast as acknowledged",
            "value": rate,
            "unit": "uploads/s",
            "target": ">= 100 acknowledged durable uploads/s",
            "ratio": rate / 100,
            "met": rate >= 100,
        },
        {
            "name": "upload throughput (4 KiB chunks, fsync each)",
            "value": megabytes / elapsed,
            "unit": "MB/s",
            "target": "(none)",
            "ratio": None,
            "met": None,
        },
        {
            "name": f"upload -> live WAMP publication p50, {load}",
            "value": p50,
            "unit": "ms",
            "target": "(p99 is the target)",
            "ratio": None,
            "met": None,
        },
        {
            "name": f"upload -> live WAMP publication p99, {load}",
            "value": p99,
            "unit": "ms",
            "target": "p99 <= 200 ms",
            "ratio": 200 / p99 if p99 else None,
            "met": p99 <= 200,
            "reference": f"request round trip p99 {_pct(rtt, 0.99):.0f} ms at this load",
        },
        {
            "name": "upload -> live WAMP publication p99, saturated (queueing in the clients)",
            "value": _pct(fast_delays, 0.99),
            "unit": "ms",
            "target": "(information)",
            "ratio": None,
            "met": None,
        },
        {
            "name": f"rows received on P.consumer.{NODE}.live / rows sent",
            "value": delivered / expected_rows,
            "unit": "",
            "target": "1.0 (each row once)",
            "ratio": None,
            "met": delivered == expected_rows,
        },
    ]


# -- the subscriber process ------------------------------------------------------------


async def _subscribe(url: str, node: str, out: Path, ready: Path) -> None:
    """Write `timeline<TAB>row time<TAB>arrival time` for every live sample."""
    from tests.harness import connect, wait_until

    session = await connect(url)
    log = open(out, "a", buffering=1 << 16)  # noqa: SIM115 - open for the process's life

    def on_batch(event: dict) -> None:
        now = time.time()
        tl = event["timeline"]
        log.write("".join(f"{tl}\t{t!r}\t{now!r}\n" for t in event["t"]))
        log.flush()

    await session.subscribe(on_batch, f"obsmesh.consumer.{node}.live")

    async def listed() -> bool:
        return node in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]

    await wait_until(listed, 60, f"node {node} listed", interval=0.1)
    ready.write_text("ready")


def _subscriber_main(url: str, node: str, out: str, ready: str) -> None:
    import signal

    from twisted.internet import defer, reactor

    d = defer.ensureDeferred(_subscribe(url, node, Path(out), Path(ready)))
    d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["subscribe"]:
        _subscriber_main(*sys.argv[2:6])
    else:
        for fig in run():
            print(fig)
