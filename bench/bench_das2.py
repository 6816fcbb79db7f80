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
import sys
import tempfile
import textwrap
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
    """MB/s from a reader process's stdout, through the reactor, the pool, the
    stream gate and the reducer."""
    from twisted.internet import defer, reactor

    from nodes.das2.readers import ReaderLimits, ReaderPool, StreamGate, run_reader_stream

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "stream.d2s")
        with open(data, "wb") as f:
            f.write(raw)
        reader = os.path.join(tmp, "cat_reader.py")
        with open(reader, "w") as f:
            f.write(
                textwrap.dedent("""
                import shutil, sys
                with open(sys.argv[1], "rb") as f:
                    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            """)
            )
        reducer, encoder = Reducer(60.0), Encoder()
        out: list[bytes] = []
        gate = StreamGate(on_events=lambda ev: out.append(encoder.encode_all(reducer.feed(ev))))
        elapsed: list[float] = []

        @defer.inlineCallbacks
        def go():
            started = time.perf_counter()
            try:
                result = yield run_reader_stream(
                    ReaderPool(), [sys.executable, reader, data], gate, ReaderLimits(timeout=120)
                )
                out.append(encoder.encode_all(reducer.flush()))
                if result.ok:
                    elapsed.append(time.perf_counter() - started)
            finally:
                reactor.callLater(0, reactor.stop)

        reactor.callWhenRunning(go)
        reactor.run(installSignalHandlers=False)
    return len(raw) / elapsed[0] / 1e6 if elapsed else 0.0


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
    except Exception as exc:  # e.g. a reactor already used by another benchmark in this run
        print(f"bench_das2: end-to-end figure skipped: {exc}", file=sys.stderr)
    for f in figures:
        f["stream_MB"] = round(mb, 1)
    return figures


if __name__ == "__main__":
    for f in run():
        print(f)
