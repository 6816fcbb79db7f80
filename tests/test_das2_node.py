"""The das2 node as a process behind a real router: WAMP get_fields/get_data
against the readers run by hand, min_stride as the das2 resolution, errors,
the point budget and progressive results, live publication; the das2.2 HTTP
interface (each server= command, ascii output, a das2 client's request
decoded by our decoder equals the WAMP answer, progress comments)."""

from __future__ import annotations

import http.client
import math
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import threads

from nodes.das2.dsdf import load_catalog
from nodes.das2.readers import reader_argv, validate_request
from nodes.das2.reduce import reduce_stream
from nodes.das2.stream import (
    Comment,
    Data,
    PacketHeader,
    StreamException,
    StreamHeader,
    coalesce,
    decode,
)
from obsmesh import wire
from obsmesh.store.reduce import bin_minmax
from tests.das2c_model import dimensions
from tests.harness import connect, free_port, port_open, spawn, stop_process, wait_for, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "nodes" / "das2" / "examples"
CATALOG, _ = load_catalog(EXAMPLES)
T2000 = 946_684_800.0
BUDGET = 100_000
NAME = "d2"
P = f"obsmesh.consumer.{NAME}"
MAG_FIELDS = ["magnetometer.Bx", "magnetometer.By", "magnetometer.Bz", "magnetometer.Bmag"]


@dataclass
class Das2Process:
    proc: subprocess.Popen
    url: str
    log: Path


@pytest.fixture(scope="module")
def node(router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("das2")
    port = free_port()
    env = router.env()
    env["OBSMESH_POINT_BUDGET"] = str(BUDGET)
    log = tmp / "node.log"
    proc = spawn(
        [
            "node",
            "das2",
            "--name",
            NAME,
            "--http",
            f"127.0.0.1:{port}",
            "--cache",
            "disk",
            "--cache-dir",
            str(tmp / "cache"),
            "--live-poll",
            "1",
        ],
        env,
        log,
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "the das2 HTTP interface")
        assert proc.poll() is None, log.read_text()
        yield Das2Process(proc, f"http://127.0.0.1:{port}/", log)
    finally:
        stop_process(proc)


async def session_for(router):
    s = await connect(router.backend_url)
    await wait_until(lambda: _listed(s), 60, "the das2 node in the hub")
    return s


async def _listed(session) -> bool:
    return NAME in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


# ---------------------------------------------------------------- references


def t1970(text: str) -> float:
    from nodes.das2.timefmt import parse_time_text

    return parse_time_text(text) / 1e6


def run_reader(dataset: str, start: str, end: str, params: str | None = None) -> bytes:
    dsdf = CATALOG[dataset]
    argv = reader_argv(dsdf, validate_request(dsdf, start, end, None, params))
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


def columns(raw: bytes, dataset: str) -> tuple[list[float], dict[str, list]]:
    """The reader's records as the mesh should give them: UNIX seconds, fill as
    None, extreme planes left out (written here from the stream, not the node's code)."""
    t: list[float] = []
    out: dict[str, list] = {}
    for ev in coalesce([e for e in decode(raw) if not isinstance(e, Comment)]):
        if not isinstance(ev, Data):
            continue
        x = ev.header.planes[0]
        scale = 1e-6 if x.units == "us2000" else 1.0
        t += (ev.columns[0] * scale + T2000).tolist()
        for plane, col in zip(ev.header.planes[1:], ev.columns[1:], strict=True):
            if plane.properties.get("operation", ("", ""))[1] not in ("", "BIN_AVG"):
                continue
            fill = float(
                plane.properties.get("fill", plane.properties.get("zFill", ("", "-1e31")))[1]
            )
            bad = (col == col.dtype.type(fill)) | np.isnan(col)
            values = col.astype(np.float64)
            listed = values.tolist()
            if values.ndim == 1:
                listed = [None if b else v for v, b in zip(listed, bad.tolist(), strict=True)]
            else:
                listed = [
                    [None if b else v for v, b in zip(row, brow, strict=True)]
                    for row, brow in zip(listed, bad.tolist(), strict=True)
                ]
            out.setdefault(f"{dataset}.{plane.name or plane.kind}", []).extend(listed)
    return t, out


# ---------------------------------------------------------------- WAMP


@pytest_twisted.ensureDeferred
async def test_fields_are_the_planes_of_each_dataset(node, router):
    s = await session_for(router)
    try:
        fields, timelines = await s.call(
            f"{P}.get_fields", t1970("2020-03-01"), t1970("2020-03-02")
        )
        assert set(timelines) == {"magnetometer", "spectrogram"}
        assert sorted(timelines["magnetometer"]["field"]) == sorted(MAG_FIELDS)
        assert timelines["magnetometer"]["interval"] == 0.125
        assert timelines["spectrogram"]["interval"] == 1.0
        assert fields["magnetometer.Bx"]["units"] == "nT"
        assert fields["magnetometer.Bx"]["timeline"] == "magnetometer"
        spec = fields["spectrogram.yscan"]
        assert spec["shape"] == [48] and spec["y_units"] == "Hz" and len(spec["y_tags"]) == 48
        assert spec["units"] == "V**2 m**-2 Hz**-1"
        outside = await s.call(f"{P}.get_fields", t1970("1990-01-01"), t1970("1990-01-02"))
        assert outside == [{}, {}]
        datasets = await s.call(f"{P}.get_datasets")
        assert [d["name"] for d in datasets] == ["magnetometer", "spectrogram"]
        assert datasets[0]["live"] is True and datasets[1]["cache_levels"][0] == [10.0, "hourly"]
        listing = {n["name"]: n for n in await s.call("obsmesh.consumer.get_data_node")}
        assert listing[NAME]["http"] == node.url
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_get_data_equals_the_reader_run_by_hand(node, router):
    s = await session_for(router)
    try:
        start, end = "2020-03-01T01:00", "2020-03-01T01:10"
        r = await s.call(f"{P}.get_data", MAG_FIELDS, t1970(start), t1970(end))
        t, want = await threads.deferToThread(
            columns, run_reader("magnetometer", start, end), "magnetometer"
        )
        assert r["timeline"]["magnetometer"]["t"] == t and len(t) == 4800
        assert r["data"] == {f: want[f] for f in MAG_FIELDS}
        # a fill value (about one sample in ten thousand) travels as None
        start, end = "2020-03-01T01:00", "2020-03-01T04:00"
        r = await s.call(
            f"{P}.get_data",
            ["magnetometer.Bz"],
            t1970(start),
            t1970(end),
            options=CallOptions(on_progress=lambda _chunk: None),
        )
        t, want = await threads.deferToThread(
            columns, run_reader("magnetometer", start, end), "magnetometer"
        )
        # (progressive: 86400 rows exceed the budget, the last chunk ends with the last row)
        assert r["timeline"]["magnetometer"]["t"][-1] == t[-1]
        assert None in want["magnetometer.Bz"]
        # a spectrogram's yscan plane: one field, rows of 96 values with params
        start, end = "2020-03-01T06:00", "2020-03-01T06:05"
        r = await s.call(
            f"{P}.get_data", "spectrogram.yscan", t1970(start), t1970(end), params="channels=96"
        )
        t, want = await threads.deferToThread(
            columns, run_reader("spectrogram", start, end, "channels=96"), "spectrogram"
        )
        assert r["timeline"]["spectrogram"]["t"] == t
        assert r["data"]["spectrogram.yscan"] == want["spectrogram.yscan"]
        assert len(r["data"]["spectrogram.yscan"][0]) == 96
        r = await s.call(
            f"{P}.get_data", "spectrogram.yscan", t1970(start), t1970(end), encoding="array"
        )
        column = wire.decode(r["data"]["spectrogram.yscan"])
        assert column.shape == (300, 48)
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_min_stride_is_the_das2_resolution(node, router):
    s = await session_for(router)
    try:
        start, end = "2020-03-01T07:00", "2020-03-01T09:00"
        r = await s.call(f"{P}.get_data", MAG_FIELDS, t1970(start), t1970(end), min_stride=60)
        raw = run_reader("magnetometer", start, end)
        reduced = reduce_stream(raw, 60.0, minmax=CATALOG["magnetometer"].minmax)
        t, want = await threads.deferToThread(columns, reduced, "magnetometer")
        got_t = r["timeline"]["magnetometer"]["t"]
        assert got_t == t and len(t) == 120
        assert got_t[0] == t1970(start) + 30  # bins aligned to multiples of 60 s, at their centres
        assert r["data"] == {f: want[f] for f in MAG_FIELDS}
        # minmax: the mesh's own min/max bins over full resolution
        r = await s.call(
            f"{P}.get_data",
            ["magnetometer.Bx"],
            t1970(start),
            t1970(end),
            min_stride=600,
            reduce="minmax",
        )
        t, full = await threads.deferToThread(columns, raw, "magnetometer")
        bx = np.array([np.nan if v is None else v for v in full["magnetometer.Bx"]])
        mt, mc = bin_minmax(np.array(t), {"x": bx}, 600.0)
        assert r["timeline"]["magnetometer"]["t"] == mt.tolist()
        assert r["data"]["magnetometer.Bx"] == wire.to_list(mc["x"])
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_errors_for_bad_arguments(node, router):
    s = await session_for(router)
    a, b = t1970("2020-03-01T01:00"), t1970("2020-03-01T01:01")
    try:
        bad = [
            (["spectrogram.yscan", a, b], {"params": "channels=abc"}, "invalid_argument"),
            (
                ["spectrogram.yscan", a, b],
                {"params": "channels=48; touch /tmp/x"},
                "invalid_argument",
            ),
            (["spectrogram.yscan", a, b], {"params": "frame=gsm"}, "invalid_argument"),
            (
                ["spectrogram.yscan", a, b],
                {"params": {"magnetometer": "frame=gsm"}},
                "invalid_argument",
            ),
            (["spectrogram.yscan", a, b], {"params": 7}, "invalid_argument"),
            (["magnetometer.Bx", b, a], {}, "invalid_argument"),
            (["magnetometer.Bx", a, b], {"min_stride": -1}, "invalid_argument"),
            (["magnetometer.Bx", a, b], {"reduce": "median"}, "invalid_argument"),
            (["magnetometer.Bx", a, b], {"encoding": "csv"}, "invalid_argument"),
            (["magnetometer.Bx", "2020", b], {}, "invalid_argument"),
            (["magnetometer.Nope", a, b], {}, "no_such_field"),
            (["magnetometer.Bx", t1970("2020-03-01"), t1970("2020-03-02")], {}, "too_many_points"),
        ]
        for args, kwargs, kind in bad:
            with pytest.raises(ApplicationError) as err:
                await s.call(f"{P}.get_data", *args, **kwargs)
            assert err.value.error == f"obsmesh.error.{kind}", (args, kwargs, err.value)
        with pytest.raises(ApplicationError) as err:
            await s.call(f"{P}.get_data", MAG_FIELDS, t1970("2020-03-01"), t1970("2020-03-02"))
        assert "min_stride >=" in err.value.args[0]
        # nothing in the interval: empty columns, not an error
        r = await s.call(
            f"{P}.get_data",
            ["magnetometer.Bx"],
            t1970("2020-03-01T00:00"),
            t1970("2020-03-01T00:01"),
        )
        assert r["data"] == {"magnetometer.Bx": []} and r["timeline"]["magnetometer"]["t"] == []
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_progressive_results_come_in_chunks_under_the_budget(node, router):
    s = await session_for(router)
    try:
        start, end = "2020-03-01T10:00", "2020-03-01T12:00"  # 57600 rows of 3 values
        chunks = []
        last = await s.call(
            f"{P}.get_data",
            ["magnetometer.Bx", "magnetometer.By"],
            t1970(start),
            t1970(end),
            options=CallOptions(on_progress=chunks.append),
        )
        chunks.append(last)
        assert len(chunks) == 2
        assert all(len(c["timeline"]["magnetometer"]["t"]) * 3 <= BUDGET for c in chunks)
        t = sum((c["timeline"]["magnetometer"]["t"] for c in chunks), [])
        bx = sum((c["data"]["magnetometer.Bx"] for c in chunks), [])
        rt, want = await threads.deferToThread(
            columns, run_reader("magnetometer", start, end), "magnetometer"
        )
        assert t == rt and bx == want["magnetometer.Bx"]
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_live_dataset_publishes_new_records(node, router):
    s = await session_for(router)
    try:
        events = []
        await s.subscribe(events.append, f"{P}.live")
        await wait_until(
            lambda: any(e["timeline"] == "magnetometer" and e["t"] for e in events),
            30,
            "a live magnetometer batch",
        )
        ev = next(e for e in events if e["timeline"] == "magnetometer" and e["t"])
        assert set(ev["data"]) == set(MAG_FIELDS)
        first, last = ev["t"][0], ev["t"][-1]
        from nodes.das2.timefmt import format_time

        raw = run_reader(
            "magnetometer", format_time(round(first * 1e6)), format_time(round(last * 1e6) + 1)
        )
        t, want = await threads.deferToThread(columns, raw, "magnetometer")
        assert ev["t"] == t
        assert ev["data"]["magnetometer.Bmag"] == want["magnetometer.Bmag"]
        status = await s.call(f"{P}.get_status")
        assert status["sources"]["live:magnetometer"]["connected"] is True
        assert status["counters"]["live_records"] > 0
    finally:
        s.leave()


# ---------------------------------------------------------------- HTTP


def get(node, query: dict | str, timeout: float = 60) -> tuple[int, str, bytes]:
    q = query if isinstance(query, str) else urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(node.url + "?" + q, timeout=timeout) as resp:
            return resp.status, resp.headers["content-type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["content-type"], err.read()


def test_http_list_id_dsdf(node):
    status, mime, body = get(node, {"server": "list"})
    assert status == 200 and mime.startswith("text/plain")
    lines = body.decode().splitlines()
    assert [line.split("|")[0] for line in lines] == ["magnetometer", "spectrogram"]
    assert lines[1].split("|", 1)[1] == CATALOG["spectrogram"].description
    assert get(node, {"server": "id"})[2] == b"obsmesh-das2\n"
    status, mime, body = get(node, {"server": "dsdf", "dataset": "spectrogram"})
    assert status == 200 and mime == "application/vnd.das2.das2stream"
    (header,) = decode(body)
    props = {k: v for k, (_, v) in header.properties.items()}
    assert props["exampleRange_00"] == CATALOG["spectrogram"].keys["exampleRange_00"]
    assert props["cacheLevel_01"] == "60 s | daily" and "reader" not in props
    status, mime, body = get(node, {"server": "dsdf", "dataset": "nope"})
    assert status == 404 and decode(body)[-1] == StreamException(
        "IllegalArgument", "no such dataset"
    )
    assert get(node, {"server": "bogus"})[0] == 400


@pytest.mark.parametrize(
    "query",
    [
        {"server": "dataset", "dataset": "spectrogram", "end_time": "2020-03-01T01:00"},
        {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "2020-03-01",
            "end_time": "2020-02-01",
        },
        {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "x; id",
            "end_time": "2020-03-02",
        },
        {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "2020-03-01",
            "end_time": "2020-03-02",
            "params": "channels=$(id)",
        },
        {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "2020-03-01",
            "end_time": "2020-03-02",
            "resolution": "-5",
        },
        {
            "server": "dataset",
            "dataset": "../examples/spectrogram",
            "start_time": "2020-03-01",
            "end_time": "2020-03-02",
        },
        {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "2020-03-01",
            "end_time": "2020-03-02",
            "shell": "1",
        },
        "server=dataset&dataset=spectrogram&dataset=magnetometer&start_time=2020-03-01&end_time=2020-03-02",
        "server=dataset&dataset=spectrogram&start_time=%ff&end_time=2020-03-02",
    ],
)
def test_http_bad_requests_get_an_illegal_argument_stream(node, query):
    status, mime, body = get(node, query)
    assert status in (400, 404)
    if mime == "application/vnd.das2.das2stream":
        events = decode(body)
        assert isinstance(events[0], StreamHeader) and events[-1].type == "IllegalArgument"


def test_http_dataset_binary_ascii_and_progress(node):
    query = {
        "server": "dataset",
        "dataset": "magnetometer",
        "start_time": "2020-03-01T13:00",
        "end_time": "2020-03-01T13:20",
        "resolution": "1",
    }  # a cache level: hits are exact
    status, mime, body = get(node, query)
    assert status == 200 and mime == "application/vnd.das2.das2stream"
    events = decode(body)
    comments = [e for e in events if isinstance(e, Comment)]
    assert comments[0] == Comment("taskSize", "100", "obsmesh")
    assert comments[-1] == Comment("taskProgress", "100", "obsmesh")
    progress = [int(c.value) for c in comments[1:]]
    assert progress == sorted(progress)
    want = coalesce(
        decode(
            reduce_stream(
                run_reader("magnetometer", "2020-03-01T13:00", "2020-03-01T13:20"), 1.0, minmax=True
            )
        )
    )
    got = coalesce([e for e in events if not isinstance(e, Comment)])
    assert got[0] == want[0]  # stream header with xCacheResolution
    data, ref = got[-1], want[-1]
    assert all(np.array_equal(a, b) for a, b in zip(data.columns, ref.columns, strict=True))
    status, mime, text = get(node, {**query, "ascii": "1"})
    assert status == 200 and mime.startswith("text/vnd.das2.das2stream")
    text_events = coalesce([e for e in decode(text) if not isinstance(e, Comment)])
    header = text_events[1]
    assert header.planes[0].type.name == "time27" and header.planes[1].type.name == "ascii16"
    assert b":01:2020-03-01T13:00:00.500000 " in text
    tdata = text_events[-1]
    assert np.array_equal(tdata.columns[0], ref.columns[0])  # microsecond times
    for a, b in zip(tdata.columns[1:], ref.columns[1:], strict=True):
        assert np.array_equal(a.astype(np.float32), b)  # 9 digits: float32 exactly


@pytest.mark.parametrize("dataset", sorted(CATALOG))
def test_every_http_answer_is_what_das2c_clients_load(node, dataset):
    """das2py cannot be installed here (it needs das2C's headers and library,
    which no package index ships: see tests/das2c_model.py), so what it depends
    on is checked on every kind of answer: every plane named; averages marked
    BIN_AVG with their source, .min/.max beside them as das2C writes them;
    das2C's builder would make distinct dimensions; every example range, full
    and reduced (at a level's resolution, at a resolution made from blocks and
    at one no level divides), binary and ascii."""
    dsdf = CATALOG[dataset]
    start = dsdf.examples[0].start_us / 1e6
    for resolution in (None, dsdf.cache_levels[0].resolution, 120.0, 7.0):
        for ascii_ in ("", "1"):
            query = {
                "server": "dataset",
                "dataset": dataset,
                "start_time": fmt_time(start),
                "end_time": fmt_time(start + 1800),
            }
            if resolution:
                query["resolution"] = str(resolution)
            if ascii_:
                query["ascii"] = "1"
            status, _mime, body = get(node, query)
            assert status == 200, body[-300:]
            headers = [e for e in decode(body) if isinstance(e, PacketHeader)]
            assert headers and any(isinstance(e, Data) for e in decode(body))
            for h in headers:
                assert all(p.name for p in h.planes), query
                dims = dimensions(h)  # raises what das2C would refuse
                ops = {p.name: p.properties.get("operation", ("", ""))[1] for p in h.planes[1:]}
                if resolution:
                    values = [n for n, op in ops.items() if op == "BIN_AVG"]
                    assert values and set(values) <= set(dims)
                    for n in values:
                        assert h.planes[[p.name for p in h.planes].index(n)].properties[
                            "source"
                        ] == ("String", n)
                        if dsdf.minmax:
                            assert (ops[f"{n}.min"], ops[f"{n}.max"]) == ("BIN_MIN", "BIN_MAX")
                    assert not any(op in ("BIN_SUM", "BIN_COUNT") for op in ops.values())
                else:
                    assert set(ops.values()) == {""}


def fmt_time(t: float) -> str:
    from nodes.das2.timefmt import format_time

    return format_time(round(t * 1e6))


def test_http_streams_chunked(node):
    host, port = urllib.parse.urlsplit(node.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(
        "GET",
        "/?server=dataset&dataset=spectrogram&start_time=2020-03-01T02:00"
        "&end_time=2020-03-01T03:00",
    )
    resp = conn.getresponse()
    assert resp.status == 200
    assert (
        resp.getheader("transfer-encoding") == "chunked"
        and resp.getheader("content-length") is None
    )
    body = resp.read()
    conn.close()
    data = [e for e in coalesce(decode(body)) if isinstance(e, Data)]
    assert len(data) == 1 and len(data[0]) == 3600


def test_requests_are_not_logged_one_line_each_at_the_default_level(node):
    for _ in range(3):
        assert get(node, {"server": "id"})[0] == 200
    text = node.log.read_text()
    assert "starting on" in text  # the log is written: events are in it
    assert "GET /?server=id" not in text  # per-request lines are debug (OBSMESH_LOG_LEVEL=debug)


@pytest_twisted.ensureDeferred
async def test_a_das2_client_request_equals_the_wamp_answer(node, router):
    s = await session_for(router)
    try:
        # as Autoplot asks: full times, a resolution, params url-encoded (the resolution
        # is a cache level's, so the answer is the same whether a block exists yet or not)
        query = (
            "server=dataset&dataset=spectrogram&start_time=2020-03-01T06:00:00.000Z"
            "&end_time=2020-03-01T07:00:00.000Z&resolution=10.0&params=channels%3D96"
        )
        status, _, body = await threads.deferToThread(get, node, query)
        assert status == 200
        data = [
            e
            for e in coalesce([e for e in decode(body) if not isinstance(e, Comment)])
            if isinstance(e, Data)
        ]
        assert len(data) == 1
        t = (data[0].columns[0] * 1e-6 + T2000).tolist()
        z = data[0].columns[1].astype(np.float64).tolist()
        r = await s.call(
            f"{P}.get_data",
            "spectrogram.yscan",
            t1970("2020-03-01T06:00"),
            t1970("2020-03-01T07:00"),
            min_stride=10,
            params="channels=96",
        )
        assert r["timeline"]["spectrogram"]["t"] == t and len(t) == 360
        assert r["data"]["spectrogram.yscan"] == z
        assert all(math.isfinite(v) for v in z[0])
    finally:
        s.leave()


def _reader_running(marker: str) -> bool:
    for pid in filter(str.isdigit, __import__("os").listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return True
        except OSError:
            continue
    return False


@pytest_twisted.ensureDeferred
async def test_a_client_that_hangs_up_stops_its_reader(node, router):
    s = await session_for(router)
    try:
        # a week of full-resolution spectra (~120 MB): far more than the client reads
        host, port = urllib.parse.urlsplit(node.url).netloc.split(":")
        marker = "2020-04-01T00:00:00.000000Z"
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request(
            "GET", "/?server=dataset&dataset=spectrogram&start_time=2020-04-01&end_time=2020-04-08"
        )
        resp = conn.getresponse()
        assert len(await threads.deferToThread(resp.read, 65536)) == 65536
        assert _reader_running(marker)
        resp.close()  # (the response holds the socket too)
        conn.close()
        await wait_until(lambda: _cancelled(s), 30, "the request cancelled")
        await wait_until(lambda: not _reader_running(marker), 30, "the reader gone")
    finally:
        s.leave()


async def _cancelled(session) -> bool:
    status = await session.call(f"{P}.get_status")
    return status["counters"].get("http_cancelled", 0) >= 1
