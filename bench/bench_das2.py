"""das2 benchmark: decode and reduce throughput on a 100 MB binary stream.

The stream: 3.6 M records at 1 ms cadence (one hour), x as little-endian
real8 seconds, four little-endian real4 planes; 28 bytes a record, ~100 MB.
Reduction to 60 s bins.

The target figure is a whole process, as das2 servers run reducers: a new
`python -m nodes.das2.reduce 60` reading the file on stdin and writing the
reduced stream to stdout, timed from exec to exit (interpreter and numpy
start-up included). The reference, measured in the same run on the same bytes:
`das2_bin_avgsec` when the machine has das2C, else a plain-C reducer loop
(`das2_reduce_ref.c`: the same work, sscanf'd header lengths, das2C's fill
test, a double sum and count per plane) compiled here with gcc -O2. The two
outputs are checked to hold the same bins and values.

Informative figures: this process doing everything (decode, reduce, encode),
fed in chunks as a pipe would deliver them, and end to end: a real reader
process writing the stream into a pipe, read by the Twisted reactor through
the guarded reader pool.

Cache: the das2 node as a process (example readers, blocks in a real
redis-server), asked over its das2 HTTP interface for the same request twice:
first a miss (the reader runs, the reply streams as it is reduced, the block is
built in the background), then, once the block is in Redis, hits. Target: a
hit at least 20x faster than the miss.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from nodes.das2.reduce import Reducer, StreamReducer
from nodes.das2.stream import (
    Data,
    Decoder,
    Encoder,
    PacketHeader,
    Plane,
    StreamHeader,
    coalesce,
    decode,
    encode,
    value_type,
)

RECORDS = 3_600_000
TARGET_MB_S = 400.0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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


def figure(name: str, mb_s: float, target: bool = True, reference: tuple | None = None) -> dict:
    ref_name, ref_mb_s = reference if reference else (None, None)
    return {
        "name": name,
        "value": mb_s,
        "unit": "MB/s",
        "target": f">= {TARGET_MB_S:.0f} MB/s" if target else "informative",
        "reference": f"{ref_name} {ref_mb_s:.0f} MB/s, same bytes, same run" if ref_name else "",
        "ratio": mb_s / ref_mb_s if ref_mb_s else None,
        "met": (mb_s >= TARGET_MB_S) if target else None,
    }


def reference_reducer(tmp: str) -> tuple[str, list[str]]:
    """das2C's das2_bin_avgsec when installed, else the plain-C loop built here."""
    das2c = shutil.which("das2_bin_avgsec")
    if das2c:
        return "das2C das2_bin_avgsec", [das2c]
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise OSError("neither das2C nor a C compiler is installed")
    exe = os.path.join(tmp, "das2_reduce_ref")
    subprocess.run(
        [gcc, "-O2", "-o", exe, os.path.join(HERE, "das2_reduce_ref.c"), "-lm"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return "plain-C reducer (gcc -O2)", [exe]


def whole_process(argv: list[str], data: str, out: str, repeat: int = 3) -> float:
    """Best wall time of a process reducing `data` (stdin) into `out` (stdout)."""
    best = float("inf")
    for _ in range(repeat):
        with open(data, "rb") as stdin, open(out, "wb") as stdout:
            started = time.perf_counter()
            subprocess.run(argv, stdin=stdin, stdout=stdout, check=True, cwd=ROOT, timeout=300)
            best = min(best, time.perf_counter() - started)
    return best


def same_bins(ours: bytes, theirs: bytes) -> None:
    """Both reducers' outputs hold the same bins and (to a float32 step) values."""
    a = [e for e in coalesce(decode(ours)) if isinstance(e, Data)]
    b = [e for e in coalesce(decode(theirs)) if isinstance(e, Data)]
    if len(a) != 1 or len(b) != 1 or len(a[0]) != len(b[0]):
        raise ValueError("the reducers disagree on the bins")
    if not np.array_equal(a[0].columns[0], b[0].columns[0]):
        raise ValueError("the reducers disagree on the bin times")
    for x, y in zip(a[0].columns[1:], b[0].columns[1:], strict=False):
        np.testing.assert_array_max_ulp(x, y, maxulp=1)


def whole_processes(raw: bytes) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "stream.d2s")
        with open(data, "wb") as f:
            f.write(raw)
        ref_name, ref_argv = reference_reducer(tmp)
        ours_out, ref_out = os.path.join(tmp, "ours.d2s"), os.path.join(tmp, "ref.d2s")
        ours_argv = [sys.executable, "-m", "nodes.das2.reduce", "60"]
        ref_s = whole_process([*ref_argv, "60"], data, ref_out)
        ours_s = whole_process(ours_argv, data, ours_out)
        with open(ours_out, "rb") as f, open(ref_out, "rb") as g:
            same_bins(f.read(), g.read())
    mb = len(raw) / 1e6
    return [
        figure(
            "whole process: python -m nodes.das2.reduce 60 < 100 MB stream",
            mb / ours_s,
            reference=(ref_name, mb / ref_s),
        ),
        figure(f"whole process: {ref_name}, same stream", mb / ref_s, target=False),
    ]


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


CACHE_TARGET = 20.0
CACHE_DAYS = ("2020-03-10", "2020-03-11", "2020-03-12")
HITS_PER_DAY = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def _redis_keys(port: int, pattern: str) -> int:
    """How many keys match (KEYS over a raw socket: no client library needed)."""
    arg = pattern.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n" % (len(arg), arg))
        first = s.makefile("rb").readline()
    return int(first[1:]) if first.startswith(b"*") else 0


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        while resp.read(1 << 20):
            pass
    return time.perf_counter() - started


def cache_latency() -> list[dict]:
    """Miss and hit latency of one request through the das2 node's HTTP interface."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise OSError("redis-server is not installed")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="bench-das2-")
    redis_port, http_port = _free_port(), _free_port()
    redis = subprocess.Popen(
        [
            exe,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = dict(
        os.environ,
        OBSMESH_ROUTER_URL=f"rs://127.0.0.1:{_free_port()}",  # no router: HTTP only
        OBSMESH_DAS2_CACHE_NAMESPACE="bench:das2",
    )
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obsmesh",
            "node",
            "das2",
            "--name",
            "das2-bench",
            "--http",
            f"127.0.0.1:{http_port}",
            "--cache",
            "redis",
            "--redis-url",
            f"redis://127.0.0.1:{redis_port}/0",
            "--live-poll",
            "3600",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    misses: list[float] = []
    hits: list[float] = []
    try:
        _wait_port(redis_port, 20)
        _wait_port(http_port, 60)
        for day in CACHE_DAYS:
            end = day[:-2] + f"{int(day[-2:]) + 1:02d}"
            url = (
                f"http://127.0.0.1:{http_port}/?server=dataset&dataset=spectrogram"
                f"&start_time={day}&end_time={end}&resolution=60"
            )
            built = _redis_keys(redis_port, "bench:das2:blk:*")
            misses.append(_get(url))
            deadline = time.monotonic() + 60
            while _redis_keys(redis_port, "bench:das2:blk:*") <= built:
                if time.monotonic() > deadline:
                    raise TimeoutError("the block was not built")
                time.sleep(0.05)
            hits += [_get(url) for _ in range(HITS_PER_DAY)]
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    miss, hit = statistics.median(misses), statistics.median(hits)
    ratio = miss / hit
    what = "spectrogram, 1 day at 60 s (1440 x 48 values), das2 HTTP, Redis blocks"
    return [
        {
            "name": f"cache miss latency: {what}",
            "value": miss * 1e3,
            "unit": "ms",
            "target": "informative",
            "reference": f"median of {len(misses)} days",
            "ratio": None,
            "met": None,
        },
        {
            "name": "cache hit latency: the same request",
            "value": hit * 1e3,
            "unit": "ms",
            "target": "informative",
            "reference": f"median of {len(hits)}",
            "ratio": None,
            "met": None,
        },
        {
            "name": "cache hit vs miss, same request",
            "value": ratio,
            "unit": "x",
            "target": f">= {CACHE_TARGET:.0f}x",
            "reference": f"miss {miss * 1e3:.0f} ms / hit {hit * 1e3:.1f} ms",
            "ratio": ratio,
            "met": ratio >= CACHE_TARGET,
        },
    ]


def run() -> list[dict]:
    raw = make_stream()
    mb = len(raw) / 1e6
    figures = []
    try:
        figures += whole_processes(raw)
    except (OSError, ValueError, AssertionError, subprocess.SubprocessError) as exc:
        print(f"bench_das2: whole-process figures skipped: {exc}", file=sys.stderr)
    figures += [
        figure(
            "in this process: decode+reduce+encode, 1 MiB chunks",
            mb / best_of(lambda: decode_reduce(raw, 1 << 20)),
            target=False,
        ),
        figure(
            "in this process: decode+reduce+encode with min/max planes, 1 MiB chunks",
            mb / best_of(lambda: decode_reduce(raw, 1 << 20, minmax=True)),
            target=False,
        ),
        figure(
            "in this process: decode only, 1 MiB chunks",
            mb / best_of(lambda: decode_only(raw, 1 << 20)),
            target=False,
        ),
    ]
    try:
        figures.append(
            figure(
                "end to end: reader process -> pipe -> reactor -> reduce",
                through_a_reader_process(raw),
                target=False,
            )
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"bench_das2: end-to-end figure skipped: {exc}", file=sys.stderr)
    try:
        figures += cache_latency()
    except (OSError, ValueError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"bench_das2: cache figures skipped: {exc}", file=sys.stderr)
    for f in figures:
        if f["unit"] == "MB/s":
            f["stream_MB"] = round(mb, 1)
        f["load_average"] = os.getloadavg()[0]  # other work on this machine skews every figure
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--end-to-end"]:
        print(_end_to_end(sys.argv[2]))
    else:
        for f in run():
            print(f)
