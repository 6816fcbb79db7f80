"""Readers: request validation, argument lists, guarded real processes, the
shipped example readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from nodes.das2.dsdf import load_catalog, parse_dsdf
from nodes.das2.readers import (
    ReaderError,
    ReaderLimits,
    ReaderPool,
    StreamGate,
    parse_request_time,
    parse_resolution,
    reader_argv,
    run_reader_stream,
    validate_request,
)
from nodes.das2.reduce import reduce_stream
from nodes.das2.stream import Data, PacketHeader, StreamException, StreamHeader, decode
from nodes.das2.timefmt import parse_time_text
from obsmesh.errors import InvalidArgument

EXAMPLES = Path(__file__).resolve().parent.parent / "nodes" / "das2" / "examples"
CATALOG, _ = load_catalog(EXAMPLES)
SPEC = CATALOG["spectrogram"]
MAG = CATALOG["magnetometer"]
LIMITS_30S = ReaderLimits(timeout=30)
LIMITS_60S = ReaderLimits(timeout=60)

HOSTILE = [
    "; touch MARK",
    "$(touch MARK)",
    "`touch MARK`",
    "channels=1;touch MARK",
    "channels=$(id)",
    "channels='48'",
    'channels="48"',
    "channels=48\ntouch MARK",
    "channels=48\rx",
    "channels=48\tx",
    "channels=48\x00",
    "../../etc/passwd",
    "channels=..",
    "channels=48 && touch MARK",
    "channels=48 | tee MARK",
    "channels=48 > MARK",
    "channels=4\u00e9",
    "channels=48 channels=64",
    "x" * 2000,
]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("params", HOSTILE)
def test_hostile_params_are_rejected(params: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_request(SPEC, "2020-01-01", "2020-01-02", None, params)


def test_good_requests() -> None:
    req = validate_request(SPEC, "2020-001T00:00Z", "2020-01-01T01:00:00.5", "60", " channels=96 ")
    assert req.start_us == parse_time_text("2020-01-01") and req.params == ("channels=96",)
    assert req.end_text == "2020-01-01T01:00:00.500000Z"
    assert req.resolution == 60.0
    assert validate_request(MAG, 1.6e9, 1.6e9 + 60, 0, ["frame=gsm"]).resolution is None
    not_reducible = parse_dsdf("description = 'd'\nreader = 'p'\nnot_reducible = 1\n", "n")
    assert validate_request(not_reducible, "2020-01-01", "2020-01-02", "60").resolution is None


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2020-13-01",
        "2020-01-01; rm -rf /",
        "",
        "2020-01-01T00:00+01:00",
        float("nan"),
        float("inf"),
        1e300,
        1e303,
        -1e20,
        True,
        None,
        ["2020"],
        "9" * 100,
    ],
)
def test_bad_times(value: object) -> None:
    with pytest.raises(InvalidArgument):
        parse_request_time(value, "start_time")


@pytest.mark.parametrize(
    "value", ["-1", "abc", "inf", "nan", -5, float("nan"), True, [60], "1" * 40]
)
def test_bad_resolutions(value: object) -> None:
    with pytest.raises(InvalidArgument):
        parse_resolution(value)


def test_end_must_follow_start() -> None:
    with pytest.raises(InvalidArgument, match="after"):
        validate_request(SPEC, "2020-01-02", "2020-01-01")


def test_reader_argv() -> None:
    req = validate_request(SPEC, "2020-01-01", "2020-01-02", None, "channels=16")
    argv = reader_argv(SPEC, req)
    assert argv == [
        os.path.abspath(sys.executable),
        str(EXAMPLES / "spectrogram.py"),
        "2020-01-01T00:00:00.000000Z",
        "2020-01-02T00:00:00.000000Z",
        "channels=16",
    ]
    missing = parse_dsdf("description = 'd'\nreader = 'no-such-reader-anywhere'\n", "m")
    with pytest.raises(ReaderError):
        reader_argv(missing, validate_request(missing, "2020-01-01", "2020-01-02"))


# ---------------------------------------------------------------- processes


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


async def run(pool: ReaderPool, argv: list[str], limits: ReaderLimits = LIMITS_30S, cwd=None):
    chunks: list[bytes] = []
    result = await pool.run(argv, chunks.append, limits, cwd)
    return result, b"".join(chunks)


async def wait_until(condition, limit: float = 15.0) -> None:
    """Wait (without blocking the reactor) for a condition; a hang fails the test."""
    for _ in range(int(limit / 0.02)):
        if condition():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not reached")


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_arguments_reach_the_reader_literally_and_no_shell_runs(tmp_path: Path) -> None:
    echo = script(
        tmp_path,
        "echo.py",
        """
        import json, os, sys
        print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ)}))
    """,
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-file").write_text("glob bait")
    hostile = [
        "$(touch MARK)",
        "; touch MARK",
        "`touch MARK`",
        "a'b\"c",
        "line1\nline2",
        "../x",
        "*",
        "$HOME",
        "~",
    ]
    result, out = await run(ReaderPool(), [sys.executable, echo, *hostile], cwd=str(work))
    assert result.ok, result.stderr
    seen = json.loads(out)
    assert seen["argv"] == hostile  # no expansion, no splitting, no globbing
    assert not (work / "MARK").exists() and not (tmp_path / "MARK").exists()
    assert set(seen["env"]) <= {"PATH", "LANG", "LC_ALL", "TZ"}  # minimal environment
    assert seen["env"]["TZ"] == "UTC"


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_hanging_reader_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    hang = script(
        tmp_path,
        "hang.py",
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        sys.stdout.write(str(child.pid)); sys.stdout.flush()
        time.sleep(120)
    """,
    )
    result, out = await run(ReaderPool(), [sys.executable, hang], ReaderLimits(timeout=1.0))
    assert result.reason == "timeout" and not result.ok
    assert result.signal == 9
    child = int(out)

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child}/stat") as f:  # a zombie awaiting its reaper is dead too
            return f.read().split(")")[-1].split()[0] == "Z"

    await wait_until(gone)


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_flooding_reader_is_cut_at_its_cap(tmp_path: Path) -> None:
    flood = script(
        tmp_path,
        "flood.py",
        """
        import sys
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
    """,
    )
    cap = 1_000_003
    result, out = await run(
        ReaderPool(), [sys.executable, flood], ReaderLimits(timeout=30, output_cap=cap)
    )
    assert result.reason == "output_cap"
    assert len(out) == cap == result.bytes_out


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_failure_exit_code_and_stderr_are_reported(tmp_path: Path) -> None:
    fail = script(
        tmp_path,
        "fail.py",
        """
        import sys
        sys.stderr.write("x" * 100000 + "boom: no such file")
        sys.exit(3)
    """,
    )
    result, _ = await run(
        ReaderPool(), [sys.executable, fail], ReaderLimits(timeout=30, stderr_cap=1000)
    )
    assert (result.reason, result.exit_code) == ("exit", 3)
    assert len(result.stderr) == 1000 and result.stderr.endswith(b"boom: no such file")
    assert "exit status 3" in result.describe()


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_at_most_max_concurrent_readers_run(tmp_path: Path) -> None:
    wait = script(
        tmp_path,
        "wait.py",
        """
        import sys, time
        time.sleep(0.3)
        print(sys.argv[1])
    """,
    )
    pool = ReaderPool(max_concurrent=2)
    runs = [
        pool.run([sys.executable, wait, str(i)], lambda _b: None, ReaderLimits(timeout=30))
        for i in range(5)
    ]
    assert (pool.active, pool.waiting) == (2, 3)
    results = await defer.gatherResults(runs)
    assert all(r.ok for r in results)
    assert pool.most_active == 2 and pool.active == 0 and pool.waiting == 0


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_cancelling_kills_a_running_reader_and_drops_a_waiting_one(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang.py", "import time\ntime.sleep(120)\n")
    pool = ReaderPool(max_concurrent=1)
    running = pool.run([sys.executable, hang], lambda _b: None)
    queued = pool.run([sys.executable, hang], lambda _b: None)
    queued.cancel()
    running.cancel()
    for d in (running, queued):
        with pytest.raises(defer.CancelledError):
            await d
    await wait_until(lambda: pool.active == 0)
    assert pool.waiting == 0 and pool.most_active == 1


def test_refused_argv() -> None:
    pool = ReaderPool()
    for argv in ([], ["relative/prog"], [sys.executable, "nul\x00"], [sys.executable, 3]):
        d = pool.run(argv, lambda _b: None)
        failures = []
        d.addErrback(failures.append)
        assert failures and failures[0].check(ReaderError)


# ---------------------------------------------------------------- stream guard


async def gated(argv: list[str], limits: ReaderLimits = LIMITS_60S):
    out: list[bytes] = []
    gate = StreamGate(on_bytes=out.append)
    result = await run_reader_stream(ReaderPool(), argv, gate, limits)
    return result, b"".join(out)


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_reader_failing_after_data_ends_with_an_exception_packet(tmp_path: Path) -> None:
    partial = script(
        tmp_path,
        "partial.py",
        """
        import struct, sys
        def packet(tag, xml):
            return tag + b"%06d" % len(xml) + xml
        out = sys.stdout.buffer
        out.write(packet(b"[00]", b"<stream version='2.2'/>"))
        out.write(packet(b"[01]", b"<packet><x type='sun_real8' units='t2000'/></packet>"))
        for i in range(3):
            out.write(b":01:" + struct.pack(">d", i))
        out.write(b":01:\\x00\\x00")  # a record cut short
        out.flush()
        sys.exit(1)
    """,
    )
    result, out = await gated([sys.executable, partial])
    assert result.reason == "exit"
    events = decode(out)  # a valid stream, whatever the reader did
    assert events[2].columns[0].tolist() == [0.0, 1.0, 2.0]
    assert events[-1] == StreamException("ServerError", "reader failed (exit status 1)")
    assert out.count(b"[00]") == 1


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_reader_cut_short_but_exiting_zero_is_refused(tmp_path: Path) -> None:
    cut = script(
        tmp_path,
        "cut.py",
        """
        import sys
        sys.stdout.buffer.write(b"[00]000009<stream/>[01]0000")
    """,
    )
    result, out = await gated([sys.executable, cut])
    assert result.reason == "refused" and "ends inside a packet" in result.error
    assert [type(e) for e in decode(out)] == [StreamHeader, StreamException]


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_garbage_output_kills_the_reader_and_still_gives_a_valid_stream(
    tmp_path: Path,
) -> None:
    garbage = script(
        tmp_path,
        "garbage.py",
        """
        import sys, time
        sys.stdout.write("Traceback (most recent call last): oops\\n"); sys.stdout.flush()
        time.sleep(120)
    """,
    )
    result, out = await gated([sys.executable, garbage])
    assert result.reason == "refused" and "does not start with [00]" in result.error
    events = decode(out)
    assert events[0] == StreamHeader() and events[1].type == "ServerError"


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_reader_that_cannot_start_gives_an_error_stream(tmp_path: Path) -> None:
    result, out = await gated([sys.executable, str(tmp_path / "missing.py")])
    assert result.reason == "exit"
    assert [type(e) for e in decode(out)] == [StreamHeader, StreamException]


# ---------------------------------------------------------------- example readers


async def example(ds, start: str, end: str, params: str = "") -> bytes:
    req = validate_request(ds, start, end, None, params)
    result, out = await gated(reader_argv(ds, req))
    assert result.ok, result.stderr
    return out


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_spectrogram_example_is_deterministic_and_consistent_across_requests() -> None:
    hour = await example(SPEC, "2020-03-01T06:00", "2020-03-01T07:00")
    again = await example(SPEC, "2020-03-01T06:00", "2020-03-01T07:00")
    assert hour == again
    events = decode(hour)
    header = next(e for e in events if isinstance(e, PacketHeader))
    assert header.planes[1].kind == "yscan" and header.planes[1].nitems == 48
    data = next(e for e in events if isinstance(e, Data))
    assert len(data) == 3600
    z = data.columns[1]
    assert z.dtype == np.float32 and np.all(z > 0) and np.all(np.isfinite(z))
    later = await example(SPEC, "2020-03-01T06:30", "2020-03-01T06:31")
    part = next(e for e in decode(later) if isinstance(e, Data))
    assert np.array_equal(part.columns[1], z[1800:1860])  # overlapping requests agree
    fine = decode(await example(SPEC, "2020-03-01T06:00", "2020-03-01T06:00:10", "channels=96"))
    assert next(e for e in fine if isinstance(e, PacketHeader)).planes[1].nitems == 96


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_magnetometer_example_planes_gaps_fill_and_frames() -> None:
    raw = await example(MAG, "2020-03-01T00:00", "2020-03-01T01:00")
    events = decode(raw)
    header = next(e for e in events if isinstance(e, PacketHeader))
    assert [p.name for p in header.planes[1:]] == ["Bx", "By", "Bz", "Bmag"]
    data = next(e for e in events if isinstance(e, Data))
    assert len(data) == 8 * (3600 - 120)  # hour 0 of the day opens with a 2-minute gap
    t = data.columns[0]
    assert t[0] == parse_time_text("2020-03-01T00:02") / 1e6 - 946_684_800.0
    bmag = data.column("Bmag")
    assert np.count_nonzero(bmag == np.float32(-1e31)) < 20
    gsm = decode(await example(MAG, "2020-03-01T00:02", "2020-03-01T00:03", "frame=gsm"))
    gsm_data = next(e for e in gsm if isinstance(e, Data))
    assert not np.array_equal(gsm_data.column("By"), data.column("By")[:480])
    good = data.column("Bmag") != np.float32(-1e31)
    assert np.allclose(
        gsm_data.column("Bmag")[good[:480]], data.column("Bmag")[:480][good[:480]], rtol=1e-5
    )
    reduced = decode(reduce_stream(raw, 60.0, minmax=True))
    r = next(e for e in reduced if isinstance(e, Data))
    names = [p.name for p in r.header.planes]
    assert len(r) == 58 and names[:5] == ["time", "Bx", "By", "Bz", "Bmag"]
    assert names[5:7] == ["Bx.min", "Bx.max"]  # das2C's order: the extremes after the averages
    assert reduced[0].properties["xCacheResolution"] == ("Datum", "60 s")


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_example_outside_valid_range_says_no_data() -> None:
    events = decode(await example(SPEC, "1990-01-01", "1990-01-02"))
    assert events[-1].type == "NoDataInInterval"


@pytest.mark.router  # starts its own processes
def test_pool_works_in_a_reactor_without_signal_handlers(tmp_path: Path) -> None:
    """Without a SIGCHLD handler Twisted never hears of an exit by itself; the
    pool must still see every reader end (this hung one run in four before)."""
    quick = script(tmp_path, "quick.py", "import sys\nsys.stdout.write('x' * 100000)\n")
    program = textwrap.dedent(f"""
        import sys
        from twisted.internet import defer, reactor
        from nodes.das2.readers import ReaderPool
        results = []

        @defer.inlineCallbacks
        def go():
            try:
                pool = ReaderPool(max_concurrent=2)
                runs = [pool.run([sys.executable, {quick!r}], lambda b: None) for _ in range(8)]
                results.extend((yield defer.gatherResults(runs)))
            finally:
                reactor.callLater(0, reactor.stop)

        reactor.callWhenRunning(go)
        reactor.run(installSignalHandlers=False)
        print(sum(r.ok and r.bytes_out == 100000 for r in results))
    """)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "8", done.stderr


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_a_reader_cannot_take_more_memory_than_its_limit(tmp_path) -> None:
    """RLIMIT_AS / RLIMIT_DATA on the reader process (and what it starts): an
    allocation past the limit fails in the reader, which dies of it; the real
    spectrogram reader asked for 30 years at full resolution (what drove a
    reader to 2 GiB in the issue) stops at once instead."""
    hog = script(
        tmp_path,
        "hog.py",
        """
        import resource, sys
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        sys.stderr.write(f"limit {soft}\\n")
        block = bytearray(3 * 1024**3)
        sys.stdout.write("allocated")
    """,
    )
    limits = ReaderLimits(timeout=30, memory=512 * 1024**2)
    result, out = await run(ReaderPool(), [sys.executable, hog], limits)
    assert result.reason == "exit" and out == b""
    assert b"limit 536870912" in result.stderr and b"MemoryError" in result.stderr
    # without a limit the same program gets its memory (the limit is what stops it)
    small = script(tmp_path, "small.py", "block = bytearray(64 * 1024**2); print('ok')")
    result, out = await run(ReaderPool(), [sys.executable, small], limits)
    assert result.ok and out == b"ok\n"
    req = validate_request(SPEC, "2000-01-01", "2029-12-31")
    result, out = await run(
        ReaderPool(), reader_argv(SPEC, req), ReaderLimits(timeout=60, memory=1024**3)
    )
    assert result.reason == "exit" and b"MemoryError" in result.stderr


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_a_paused_reader_lends_its_slot(tmp_path) -> None:
    """With one slot, a reader whose client stopped reading (its flow paused)
    lets another reader run; when the client reads again it waits for a slot."""
    from nodes.das2.readers import ReaderFlow

    flood = script(
        tmp_path,
        "flood.py",
        """
        import sys
        chunk = b"x" * 65536
        for _ in range(400):
            sys.stdout.buffer.write(chunk)
    """,
    )
    quick = script(tmp_path, "quick.py", "print('done')")
    pool = ReaderPool(max_concurrent=1, max_processes=2)
    flow = ReaderFlow()
    flow.pause()
    got: list[bytes] = []
    slow = pool.run([sys.executable, flood], got.append, LIMITS_30S, None, flow)
    await wait_until(lambda: pool.active == 1 and pool.lent == 1)
    result, out = await run(pool, [sys.executable, quick])  # runs while the first is paused
    assert result.ok and out == b"done\n" and not slow.called and got == []
    flow.resume()
    result = await slow
    assert result.ok and sum(len(c) for c in got) == 400 * 65536
    assert pool.active == 0 and pool.lent == 0
