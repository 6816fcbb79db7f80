"""The bridge as its own process in a mesh of real node processes (the weather and
sensors nodes and a probe): checked against its OpenAPI document with
schemathesis, fuzzed with hostile bodies and raw bytes (never a 500, never
down), and end to end against the weather station's own files."""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from consumers.grafana.http import OPENAPI
from consumers.grafana.protocol import min_stride
from nodes.weather import files, simulator
from obsmesh.router import REPO
from tests.harness import free_port, port_open, spawn, stop_process, wait_for

pytestmark = pytest.mark.slow  # schemathesis and fuzzing against processes

PROBE_BASE = 1_500_000_000.0
NODES = ("fz", "sens", "wx")


def _listed(url: str) -> bool:
    try:
        r = requests.get(url + "/", timeout=2)
        return r.status_code == 200 and set(NODES) <= set(r.json()["nodes"])
    except (requests.RequestException, ValueError):
        return False


@pytest.fixture(scope="module")
def bridge(router, tmp_path_factory):
    """(url, bridge process, weather directory) with three node processes behind it."""
    tmp = tmp_path_factory.mktemp("grafana-fuzz")
    wx_dir = tmp / "wx"
    simulator.main(argparse.Namespace(dir=str(wx_dir), days=1.0, step=60.0, seed=1, once=True))
    env = router.env()
    port = free_port()
    procs = [
        spawn(["node", "weather", "--name", "wx", "--dir", str(wx_dir)], env, tmp / "wx.log"),
        spawn(["node", "sensors", "--name", "sens"], env, tmp / "sens.log"),
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "probe_process.py"),
                "fz",
                "--base",
                str(PROBE_BASE),
                "--dt",
                "1",
                "--history",
                "3600",
            ],
            env=env,
            cwd=str(REPO),
            stdout=open(tmp / "fz.log", "ab"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    bridge_proc = subprocess.Popen(
        [sys.executable, "-m", "consumers.grafana", "--port", str(port)],
        env=env,
        cwd=str(REPO),
        stdout=open(tmp / "bridge.log", "ab"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    procs.append(bridge_proc)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_open(port), 30, "the bridge's HTTP port")
        wait_for(lambda: _listed(url), 60, "the bridge to list the nodes")
        yield url, bridge_proc, wx_dir
    finally:
        for p in procs:
            stop_process(p)
        log = (tmp / "bridge.log").read_text(errors="replace")
        assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]


def alive(url: str, proc) -> None:
    assert proc.poll() is None, "the bridge process died"
    assert requests.get(url + "/", timeout=10).status_code == 200


# -- real nodes end to end -----------------------------------------------------------------
def test_weather_history_through_the_bridge_matches_the_station_files(bridge):
    url, proc, wx_dir = bridge
    t, temp = [], []
    for name in sorted(os.listdir(wx_dir)):
        lines = (wx_dir / name).read_text().splitlines()
        rows = files.parse_rows(files.parse_header(lines[0]), lines[1:])
        t += list(rows.t)
        temp += list(rows.values["temperature"])
    assert len(t) > 1000
    r = requests.get(
        url + "/export",
        params={"node": "wx", "field": "temperature", "start": t[0] - 1, "end": t[-1] + 1},
        timeout=30,
    )
    assert r.status_code == 200
    got = list(csv.reader(io.StringIO(r.text)))[1:]
    assert [float(a) for a, _ in got] == t and [float(b) for _, b in got] == temp

    names = requests.post(url + "/search", json={"target": ""}, timeout=10).json()
    assert {"wx::temperature", "wx::humidity", "fz::x"} <= set(names)
    sensors = [n for n in names if n.startswith("sens::") and n not in ("sens::*", "sens::@events")]
    body = {
        "range": {"from": t[0] * 1000, "to": (t[-1] + 1) * 1000},
        "maxDataPoints": 200,
        "targets": [
            {"target": "wx::temperature", "refId": "A"},
            {"target": "wx::humidity"},
            *({"target": n} for n in sensors[:3]),
        ],
    }
    out = requests.post(url + "/query", json=body, timeout=30).json()
    assert [s["target"] for s in out] == ["wx::temperature", "wx::humidity", *sensors[:3]]
    assert 100 <= len(out[0]["datapoints"]) <= 200
    means = np.array([v for v, _ in out[0]["datapoints"]])
    assert np.nanmin(means) >= min(temp) and np.nanmax(means) <= max(temp)


# -- the OpenAPI document -------------------------------------------------------------------
schema = schemathesis.openapi.from_path(OPENAPI)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_bridge_conforms_to_its_openapi_document(case, bridge):
    url, proc, _ = bridge
    case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)


def test_openapi_document_lists_every_route():
    from consumers.grafana.endpoints import ROUTES

    assert set(schema.raw_schema["paths"]) == set(ROUTES)


# -- hostile bodies --------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
targets = st.sampled_from(
    [
        "fz::x",
        "fz::*",
        "wx::temperature",
        "{fz,wx}::*",
        "*::*",
        "fz::@events",
        "nope::x",
        "fz::",
        "::",
        "sens::*",
    ]
) | st.text(max_size=20)
times = (
    st.sampled_from(["2017-07-14T02:40:00Z", "2017-07-14T03:40:00.000Z", "now", ""]) | json_values
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "range": st.fixed_dictionaries({}, optional={"from": times, "to": times}) | json_values,
            "maxDataPoints": st.integers(-5, 10**7) | json_values,
            "intervalMs": st.integers(-5, 10**9) | json_values,
            "targets": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "target": targets,
                        "refId": json_values,
                        "type": st.sampled_from(["table", "timeserie"]) | json_values,
                        "payload": st.fixed_dictionaries(
                            {},
                            optional={
                                "reduce": st.sampled_from(["mean", "minmax", "x"]),
                                "timeline": st.sampled_from(["fast", "slow", "zz"]),
                                "format": st.sampled_from(["table", "x"]),
                            },
                        )
                        | json_values,
                        "hide": json_values,
                    },
                )
                | json_values,
                max_size=5,
            ),
            "adhocFilters": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "key": st.sampled_from(["node", "units", "kind", "x"]) | json_values,
                        "operator": st.sampled_from(["=", "!=", "=~", "!~", "<"]),
                        "value": json_values,
                    },
                ),
                max_size=3,
            ),
            "target": targets | json_values,
            "payload": json_values | targets,
            "key": st.sampled_from(["node", "units"]) | json_values,
            "name": st.sampled_from(["timeline", "reduce", "format"]) | json_values,
            "metric": targets | json_values,
            "annotation": st.fixed_dictionaries({}, optional={"query": targets | json_values})
            | json_values,
        },
    )
    | json_values
)
PATHS = [
    "/query",
    "/metrics",
    "/metric-payload-options",
    "/variable",
    "/tag-keys",
    "/tag-values",
    "/search",
    "/annotations",
]


@given(path=st.sampled_from(PATHS), body=bodies)
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_bodies_never_get_a_500(bridge, path, body):
    url, proc, _ = bridge
    r = requests.post(url + path, json=body, timeout=30)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    assert isinstance(r.json(), list | dict)


@given(
    path=st.sampled_from(PATHS + ["/export?node=fz&field=x", "/nowhere"]),
    body=st.binary(max_size=300),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_raw_bodies_never_get_a_500(bridge, path, body):
    url, proc, _ = bridge
    r = requests.post(
        url + path,
        data=body,
        headers={"content-type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    assert r.status_code in (200, 400, 404, 405), (r.status_code, r.text[:300])


@given(query=st.text(max_size=80))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_export_queries_never_get_a_500(bridge, query):
    url, proc, _ = bridge
    r = requests.get(
        url + "/export?" + query.encode("utf-8", "surrogatepass").decode("latin-1"), timeout=30
    )
    assert r.status_code in (200, 400, 404), (r.status_code, r.text[:300])


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"POST /query HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",  # then hang up mid-body
    ],
)
def test_broken_http_never_stops_the_bridge(bridge, garbage):
    url, proc, _ = bridge
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(65536)
        except OSError:
            pass
    alive(url, proc)


def test_the_bridge_is_still_up_after_all_that(bridge):
    url, proc, _ = bridge
    alive(url, proc)
    body = {
        "range": {"from": PROBE_BASE * 1000, "to": (PROBE_BASE + 10) * 1000},
        "maxDataPoints": 100,
        "targets": [{"target": "fz::x"}],
    }
    out = requests.post(url + "/query", json=body, timeout=10).json()
    # one sample a bin, each stamped at its bin's centre
    stride = min_stride(PROBE_BASE, PROBE_BASE + 10, 100, "mean")
    at = [(math.floor((PROBE_BASE + k) / stride) + 0.5) * stride * 1000 for k in range(10)]
    assert out[0]["datapoints"] == [[float(k), at[k]] for k in range(10)]
