"""The HAPI server as users run it: `obsmesh grafana` (with /hapi) and a node, each
its own process. Every request parameter fuzzed over HTTP, huge ranges, and a
long stream read slowly: back-pressure keeps the bridge's memory flat."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.hapi.times import iso
from tests.harness import (
    PYTHON,
    REPO,
    free_port,
    port_open,
    rss_kb,
    spawn,
    stop_process,
    wait_for,
)

N = 2_000_000  # rows of the probe's `fast` timeline (x, y): 86 MB of HAPI binary
DT = 0.01


@pytest.fixture(scope="module")
def server(router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hapi-stream")
    base = float(int(time.time())) - N * DT - 60
    probe = subprocess.Popen(
        [PYTHON, "tests/probe_process.py", "hs", "--base", repr(base), "--dt", str(DT)]
        + ["--history", str(N)],
        env=router.env(),
        cwd=str(REPO),
        stdout=open(tmp / "probe.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = free_port()
    env = {
        **router.env(),
        "OBSMESH_HAPI_WINDOW_VALUES": "60000",
        "OBSMESH_HAPI_MAX_STREAMS": "2",
        "OBSMESH_HAPI_STALL_TIMEOUT": "5",
    }
    bridge = spawn(["grafana", "--port", str(port)], env, tmp / "bridge.log")
    url = f"http://127.0.0.1:{port}/hapi"
    try:
        wait_for(lambda: port_open(port) or bridge.poll() is not None, 30, "the bridge")
        wait_for(lambda: b"hs/fast" in get(url + "/catalog")[2], 60, "the probe in the catalog")
        yield url, base, bridge
    finally:
        stop_process(bridge)
        stop_process(probe)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def counters(url: str) -> dict:
    return json.loads(get(url + "/x_status")[2])["x_counters"]


NAMES = st.sampled_from(
    ["dataset", "id", "start", "stop", "time.min", "time.max", "parameters", "format"]
    + ["include", "x_stride", "x_reduce", "resolve_references", "depth", "avg", "x_"]
)
VALUES = st.one_of(
    st.sampled_from(
        ["hs/fast", "hs/slow", "hs/", "hs/fast/x", "x,y", "y,x", "x,x", "Time", "label,ok"]
        + ["2000Z", "2100Z", "0001-001", "9999-365T23:59:59.999999999Z", "2026-02-29"]
        + ["csv", "binary", "json", "header", "PT1S", "0.001", "1e300", "mean", "minmax", ""]
    ),
    st.text(max_size=30),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["info", "data", "catalog", "about", "capabilities", "x_status", "nope"]),
    st.lists(st.tuples(NAMES, VALUES), max_size=7),
)
def test_every_request_parameter_fuzzed_gets_data_or_a_hapi_status(server, endpoint, pairs):
    url, base, bridge = server
    q = "&".join(f"{quote(k, safe='.')}={quote(v, safe='')}" for k, v in pairs)
    code, headers, body = get(f"{url}/{endpoint}?{q}")
    assert code in (200, 400, 404, 503), (code, q)
    kind = headers.get("Content-Type", "")
    if code != 200 or kind == "application/json":
        doc = json.loads(body)
        assert doc["HAPI"] == "3.3" and set(doc["status"]) == {"code", "message"}
        assert (doc["status"]["code"] // 100) - 10 == code // 100 or code in (404, 503)
        assert "Traceback" not in doc["status"]["message"]
    else:
        assert endpoint == "data" and kind in (
            "text/csv; charset=utf-8",
            "application/octet-stream",
        )
    assert bridge.poll() is None


def test_huge_ranges_give_what_is_stored(server):
    url, base, _ = server
    q = "dataset=hs/slow&start=0001-01-01Z&stop=9999-12-31T23:59:59.999999Z&format=binary"
    code, headers, body = get(f"{url}/data?{q}")
    assert code == 200
    rec = np.frombuffer(body, dtype=[("t", "S27"), ("label", "S16"), ("ok", "<i4")])
    assert rec.shape[0] == N // 10  # every tenth sample has a `slow` row
    assert rec["label"][-1] == f"s{N - 10}".encode()
    # Binned over the whole range: one row per day at most, whatever the span asked.
    code, _, body = get(f"{url}/data?{q.replace('slow', 'fast')}&x_stride=P1D")
    assert code == 200 and 1 <= len(body) // (27 + 16) <= 2
    assert counters(url)["failures"] == 0


def test_a_long_stream_read_slowly_holds_the_bridge_in_constant_memory(server):
    url, base, bridge = server
    host, port = url.split("//")[1].split("/")[0].split(":")
    rss_before = rss_kb(bridge.pid)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("GET", f"/hapi/data?dataset=hs/fast&start={iso(base)}&stop=2100Z&format=binary")
    response = conn.getresponse()
    assert response.status == 200
    got = response.read(1 << 20)
    # The client stops reading: the stream must pause (its socket buffers are full).
    wait_for(lambda: counters(url)["paused"] >= 1, 60, "the stream to pause")
    rss_paused = rss_kb(bridge.pid)
    peak = rss_paused
    count = len(got)
    last = b""
    while True:  # a slow reader (about 10 MB/s), slower than the node and the bridge
        block = response.read(1 << 19)
        if not block:
            break
        count += len(block)
        last = (last + block)[-43:]
        peak = max(peak, rss_kb(bridge.pid))
        time.sleep(0.05)  # the client's pace, not a wait for the server
    conn.close()
    assert count == N * 43  # every record, 27 bytes of time and two doubles
    assert last[:27].decode() == iso(base + (N - 1) * DT)
    # The bridge held windows, never the stream: far less than the 86 MB it sent.
    assert (peak - rss_before) * 1024 < 40 * 1024 * 1024, (rss_before, rss_paused, peak)
    assert counters(url)["rows"] >= N


def test_a_client_that_stops_reading_loses_its_stream_and_frees_its_slot(server):
    url, base, bridge = server
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        path = f"/hapi/data?dataset=hs/fast&start={iso(base)}&stop=2100Z&format=binary"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        wait_for(lambda: counters(url)["paused"] >= 1, 60, "the stream to pause")
        # The client reads nothing more: after stall_timeout (5 s) the bridge drops it.
        wait_for(lambda: counters(url)["streams"] == 0, 60, "the stalled stream to be dropped")
        assert counters(url)["paused"] == 0
    # The slot is free: the next request streams at once.
    code, _, body = get(f"{url}/data?dataset=hs/slow&start={iso(base)}&stop={iso(base + 1)}")
    assert code == 200 and body.count(b"\n") == 10
