"""Weather: the file format, the simulator and the archive node live."""

from __future__ import annotations

import argparse
import math
import os
import time

import pytest
import pytest_twisted

from nodes.weather import files, simulator
from tests.harness import connect, spawn, stop_process, wait_until


def test_rows_parse_with_iso_and_unix_times_and_bad_rows_reported():
    cols = files.parse_header("time,temperature,pressure,extra\n")
    rows = files.parse_rows(
        cols,
        [
            "1700000000,1.5,1000,7",
            "2023-11-14T22:13:21Z,2.5,,8",
            "1700000002,x,1000,9",
            "1700000003,1,2",
            "",
            "1700000004,3.5,1001,10",
        ],
    )
    assert rows.t == [1700000000.0, 1700000001.0, 1700000004.0]
    assert rows.values["temperature"] == [1.5, 2.5, 3.5]
    assert math.isnan(rows.values["pressure"][1])
    assert len(rows.errors) == 2 and "line 4" in rows.errors[0] and "line 5" in rows.errors[1]


@pytest.mark.parametrize("header", ["temperature,time", "time,Bad Name", "time,a,a", ""])
def test_bad_headers_are_refused(header):
    with pytest.raises(files.FormatError):
        files.parse_header(header)


def test_simulator_writes_realistic_days(tmp_path):
    st = simulator.Station(seed=3)
    start = 1_700_000_000.0 - 1_700_000_000.0 % 86400
    simulator.write_history(str(tmp_path), st, start, start + 2 * 86400, 60.0)
    names = sorted(os.listdir(tmp_path))
    assert names == [files.file_name(__import__("datetime").date(2023, 11, d)) for d in (14, 15)]
    text = (tmp_path / names[0]).read_text().splitlines()
    cols = files.parse_header(text[0])
    rows = files.parse_rows(cols, text[1:])
    assert not rows.errors and len(rows.t) == 1440
    temp = rows.values["temperature"]
    assert max(temp) - min(temp) > 8  # a diurnal cycle
    assert all(5 <= h <= 100 for h in rows.values["humidity"])
    assert all(0 <= d < 360 for d in rows.values["wind_direction"])


@pytest_twisted.ensureDeferred
async def test_weather_node_serves_history_and_follows_today_live(router, tmp_path):
    data = tmp_path / "wx"
    args = argparse.Namespace(dir=str(data), days=1.0, step=10.0, seed=1, once=True)
    simulator.main(args)
    proc = spawn(
        ["node", "weather", "--name", "wx", "--dir", str(data)], router.env(), tmp_path / "wx.log"
    )
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _listed(s, "wx"), 30, "the weather node")
        r = await s.call(
            "obsmesh.consumer.wx.get_data", ["temperature"], -86400 - 60, 0, min_stride=600
        )
        assert 140 <= len(r["data"]["temperature"]) <= 146
        live = []
        await s.subscribe(live.append, "obsmesh.consumer.wx.live")
        now = time.time()
        path = data / files.file_name(
            __import__("datetime").datetime.fromtimestamp(now, __import__("datetime").UTC).date()
        )
        with open(path, "a") as f:
            f.write(f"{now:.3f},12.25,1001.5,80,3,90\n")
            f.write(f"{now + 1:.3f},12.5,")  # half a row: not taken until complete
        await wait_until(
            lambda: any(12.25 in e["data"]["temperature"] for e in live),
            10,
            "the appended row live",
        )
        with open(path, "a") as f:
            f.write("1001.25,81,3,91\nnot,a,row\n")
        await wait_until(
            lambda: any(12.5 in e["data"]["temperature"] for e in live),
            10,
            "the completed row live",
        )
        r = await s.call(
            "obsmesh.consumer.wx.get_data", ["temperature", "pressure"], now - 0.5, now + 2
        )
        assert r["data"] == {"temperature": [12.25, 12.5], "pressure": [1001.5, 1001.25]}
        await wait_until(lambda: _bad_rows(s), 10, "the bad row counted")
    finally:
        stop_process(proc)
        s.leave()


async def _bad_rows(session):
    status = await session.call("obsmesh.consumer.wx.get_status")
    return status["counters"].get("bad_rows", 0) == 1


async def _listed(session, name):
    return name in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


@pytest_twisted.ensureDeferred
async def test_weather_node_started_before_its_station_recovers(router, tmp_path):
    """`make run` starts the node and the simulated station at once: the node may
    look before the directory exists. Its health must say so, then clear."""
    data = tmp_path / "late"
    proc = spawn(
        ["node", "weather", "--name", "wxlate", "--dir", str(data)],
        router.env(),
        tmp_path / "wxlate.log",
    )
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _listed(s, "wxlate"), 30, "the weather node")
        await wait_until(lambda: _directory(s, False), 10, "the missing directory reported")
        status = await s.call("obsmesh.consumer.wxlate.get_status")
        assert "No such file or directory" in status["sources"]["directory"]["error"]
        simulator.main(argparse.Namespace(dir=str(data), days=0.01, step=10.0, seed=1, once=True))
        await wait_until(lambda: _directory(s, True), 10, "the directory listed again")
        status = await s.call("obsmesh.consumer.wxlate.get_status")
        assert status["sources"]["directory"]["error"] is None and status["last_error"] is None
        assert status["sources"]["station"]["connected"] is True
        events = await s.call("obsmesh.consumer.wxlate.get_events", -600, 0)
        assert [e["title"] for e in events] == ["directory connected"]
    finally:
        stop_process(proc)
        s.leave()


async def _directory(session, connected: bool) -> bool:
    status = await session.call("obsmesh.consumer.wxlate.get_status")
    return status["sources"].get("directory", {}).get("connected") is connected


def test_followed_file_parse_across_chunks_and_a_file_read_again_from_its_header():
    from nodes.weather.node import _File, parse

    state = _File()
    ((cols, rows),) = parse(state, b"time,temperature\n1700000000,1.5\n")
    assert cols == ["time", "temperature"] and rows.t == [1700000000.0]
    ((_, rows),) = parse(state, b"1700000001,x\n1700000002,2.5\n")
    assert rows.t == [1700000002.0] and "line 3" in rows.errors[0]  # numbered across reads
    # truncated or replaced: the follower hands out the file from its start, header first
    parsed = parse(state, b"1700000003,3.5\ntime,temperature,pressure\n1700000004,4.5,1000\n")
    assert [c for c, _ in parsed] == [["time", "temperature"], ["time", "temperature", "pressure"]]
    assert parsed[1][1].values["pressure"] == [1000.0] and state.line == 3
    assert parse(state, b"") == []
    with pytest.raises(files.FormatError):
        parse(_File(), b"1700000000,1.5\n")  # a file must start with its header
