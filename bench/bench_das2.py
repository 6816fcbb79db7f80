"""das2 benchmark: decode and reduce throughput on a 100 MB binary stream.

The stream: 3.6 M records at 1 ms cadence (one hour), x as little-endian
real8 seconds, four little-endian real4 planes; 28 bytes a record, ~100 MB.
Reduction to 60 s bins. Figures are for this process doing everything (decode,
reduce, encode the reduced stream), fed in chunks as a pipe would deliver
them, and once end to end: a real reader process writing the stream into a
pipe, read by the Twisted reactor through the guarded reader pool.
das2C's reducer (das2_bin_avgsec) does about 90 MB/s, optimised.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from nodes.das2.reduce import Reducer, StreamReducer
from nodes.das2.stream import (
    Data,
    Decoder,
    Encoder,
    PacketHeader,
    Plane,
    StreamHeader,
    encode,
    value_type,
)

RECORDS = 3_600_000
DAS2C_MB_S = 90.0
TARGET_MB_S = 400.0


def make_stream() -> bytes:
    x = Plane("x", value_type("little_endian_real8"), units="t1970")
    planes = [Plane("y", value_type("little_endian_real4"), f"p{i}", "nT") for i in range(4)]
    header = PacketHeader(1, (x, *planes))
    t = 1.7e9 + np.arange(RECORDS) * 1e-3
    rng = np.random.default_rng(7)
    columns = (t, *[rng.normal(size=RECORDS).astype(np.float32) for _ in planes])
    return encode([StreamHeader({"title": ("String", "bench")}), header, Data(header, columns)])


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def decode_only(raw: bytes, chunk: int) -> None:
    dec = Decoder()
    view = memoryview(raw)
    for i in range(0, len(raw), chunk):
        dec.feed(view[i : i + chunk])
    dec.finish()


def decode_reduce(raw: bytes, chunk: int, minmax: bool = False) -> bytes:
    red = StreamReducer(60.0, minmax=minmax)
    view = memoryview(raw)
    out = [red.feed(view[i : i + chunk]) for i in range(0, len(raw), chunk)]
    out.append(red.finish())
    return b"".join(out)


def figure(name: str, mb_s: float, target: bool = True) -> dict:
    return {
        "name": name,
        "value": mb_s,
        "unit": "MB/s",
        "target": f">= {TARGET_MB_S:.0f} MB/s" if target else "informative",
        "reference": f"das2C reducer ~{DAS2C_MB_S:.0f} MB/s",
        "ratio": mb_s / DAS2C_MB_S,
        "met": (mb_s >= TARGET_MB_S) if target else None,
    }


def through_a_reader_process(raw: bytes) -> float:
    """MB/s from a reader process's stdout, through the reactor, the reader pool,
    the stream gate and the reducer. Runs in a child Python so that this
    process's reactor (perhaps used by another benchmark) is not involved."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "stream.d2s")
        with open(data, "wb") as f:
            f.write(raw)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run(
            [sys.executable, "-m", "bench.bench_das2", "--end-to-end", data],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    return float(done.stdout.strip().splitlines()[-1])


def _end_to_end(data: str) -> float:
    from twisted.internet import defer, reactor

    from nodes.das2.readers import ReaderLimits, ReaderPool, StreamGate, run_reader_stream

    reader = os.path.join(os.path.dirname(data), "cat_reader.py")
    with open(reader, "w") as f:
        f.write(
            "import shutil, sys\n"
            "with open(sys.argv[1], 'rb') as f:\n"
            "    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)\n"
        )
    elapsed: list[float] = []

    def one_run() -> defer.Deferred:
        reducer, encoder = Reducer(60.0), Encoder()
        out: list[bytes] = []
        first_byte: list[float] = []

        def reduce_events(events: list) -> None:
            if not first_byte:
                first_byte.append(time.perf_counter())
            out.append(encoder.encode_all(reducer.feed(events)))

        def ended(result) -> None:
            out.append(encoder.encode_all(reducer.flush()))
            if result.ok:  # throughput from the first byte: process start-up is not part of it
                elapsed.append(time.perf_counter() - first_byte[0])

        gate = StreamGate(on_events=reduce_events)
        argv = [sys.executable, reader, data]
        return run_reader_stream(ReaderPool(), argv, gate, ReaderLimits(timeout=120)).addCallback(
            ended
        )

    @defer.inlineCallbacks
    def go():
        try:
            for _ in range(3):
                yield one_run()
        finally:
            reactor.callLater(0, reactor.stop)

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)  # (also proves the pool needs no SIGCHLD handler)
    return os.path.getsize(data) / min(elapsed) / 1e6 if elapsed else 0.0


def run() -> list[dict]:
    raw = make_stream()
    mb = len(raw) / 1e6
    figures = [
        figure(
            "decode+reduce+encode, 1 MiB chunks", mb / best_of(lambda: decode_reduce(raw, 1 << 20))
        ),
        figure(
            "decode+reduce+encode with min/max planes, 1 MiB chunks",
            mb / best_of(lambda: decode_reduce(raw, 1 << 20, minmax=True)),
        ),
        figure(
            "decode+reduce+encode, 64 KiB chunks",
            mb / best_of(lambda: decode_reduce(raw, 1 << 16), 2),
        ),
        figure(
            "decode only, 1 MiB chunks",
            mb / best_of(lambda: decode_only(raw, 1 << 20)),
            target=False,
        ),
    ]
    try:
        figures.append(
            figure(
                "end to end: reader process -> pipe -> reactor -> reduce",
                through_a_reader_process(raw),
            )
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"bench_das2: end-to-end figure skipped: {exc}", file=sys.stderr)
    for f in figures:
        f["stream_MB"] = round(mb, 1)
        f["load_average"] = os.getloadavg()[0]  # other work on this machine skews every figure
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--end-to-end"]:
        print(_end_to_end(sys.argv[2]))
    else:
        for f in run():
            print(f)
