"""The Grafana bridge's pure parts: request parsing, strides, the catalog, frames,
node answers and exports. Parsers are fuzzed: they either parse or raise the
one error type, nothing else."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from consumers.grafana import export, frames, jsonout, protocol, replies
from consumers.grafana.bridge import Bridge
from consumers.grafana.catalog import Catalog, NodeEntry
from consumers.grafana.errors import RequestError
from obsmesh import wire
from obsmesh.store.reduce import bin_mean, bin_minmax

GRAFANA_QUERY = {
    "panelId": 1,
    "range": {
        "from": "2016-10-31T06:33:44.866Z",
        "to": "2016-10-31T12:33:44.866Z",
        "raw": {"from": "now-6h", "to": "now"},
    },
    "rangeRaw": {"from": "now-6h", "to": "now"},
    "interval": "30s",
    "intervalMs": 30000,
    "maxDataPoints": 550,
    "targets": [
        {"target": "weather::temperature", "refId": "A", "payload": {"reduce": "minmax"}},
        {"target": "{weather,sensors}::*", "refId": "B", "payload": {"timeline": "slow"}},
        {"target": "weather::humidity", "refId": "C", "type": "table"},
        {"refId": "D"},  # a query still being edited
        {"target": "weather::hidden", "refId": "E", "hide": True},
    ],
    "adhocFilters": [{"key": "units", "operator": "=", "value": "C"}],
}


# -- parsing -----------------------------------------------------------------------
def test_a_grafana_query_body_parses_fully():
    q = protocol.parse_query(GRAFANA_QUERY, 100_000)
    assert q.start == pytest.approx(1477895624.866) and q.end == pytest.approx(1477917224.866)
    assert q.max_points == 550 and q.interval == 30.0
    assert [t.ref_id for t in q.targets] == ["A", "B", "C"]
    a, b, c = q.targets
    assert a.pairs == (("weather", "temperature"),) and a.reduce == "minmax" and not a.table
    assert b.pairs == (("weather", "*"), ("sensors", "*")) and b.timeline == "slow"
    assert c.table and c.reduce == "mean"
    assert q.filters == (protocol.Filter("units", "=", "C"),)


def test_payload_as_text_and_legacy_data_key():
    body = {
        "range": {"from": 0, "to": 1000},
        "targets": [
            {"target": "a::x", "payload": '{"reduce": "minmax"}'},
            {"target": "a::y", "data": {"format": "table"}},
        ],
    }
    q = protocol.parse_query(body, 10)
    assert q.targets[0].reduce == "minmax" and q.targets[1].table
    assert q.max_points == 10  # the default (1000) is capped too


@pytest.mark.parametrize(
    "body, words",
    [
        ([], "object"),
        ({}, "range.from and range.to"),
        ({"range": {"from": "yesterday", "to": "2020-01-01T00:00:00Z"}}, "range.from"),
        ({"range": {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"}}, "after"),
        ({"range": {"from": 0, "to": 1}, "maxDataPoints": 0}, "maxDataPoints"),
        ({"range": {"from": 0, "to": 1}, "maxDataPoints": "many"}, "maxDataPoints"),
        ({"range": {"from": 0, "to": 1}, "intervalMs": -5}, "intervalMs"),
        (
            {"range": {"from": 0, "to": 1}, "targets": {"target": "a::b"}},
            "targets must be an array",
        ),
        ({"range": {"from": 0, "to": 1}, "targets": ["a::b"]}, "targets[0]"),
        (
            {"range": {"from": 0, "to": 1}, "targets": [{"target": "no-separator"}]},
            "<node>::<field>",
        ),
        (
            {
                "range": {"from": 0, "to": 1},
                "targets": [{"target": "a::b", "payload": {"reduce": "median"}}],
            },
            "reduce",
        ),
        ({"range": {"from": 0, "to": 1}, "targets": [{"target": "a::b", "type": "graph"}]}, "type"),
        (
            {
                "range": {"from": 0, "to": 1},
                "adhocFilters": [{"key": "node", "operator": "<", "value": "a"}],
            },
            "operator",
        ),
        ({"range": {"from": 0, "to": 1}, "targets": [{"target": "a::b"}] * 101}, "at most"),
    ],
)
def test_malformed_query_bodies_get_clear_errors(body, words):
    with pytest.raises(RequestError) as info:
        protocol.parse_query(body, 1000)
    assert info.value.status == 400 and words in info.value.message


def test_json_bodies():
    assert protocol.parse_json(b"") == {} and protocol.parse_json(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"NaN", b'{"a": Infinity}', b"\xff\xfe\x00", b"[" * 100_000):
        with pytest.raises(RequestError):
            protocol.parse_json(bad)


def test_times_iso_rfc3339_and_milliseconds():
    assert protocol.parse_time("2016-10-31T06:33:44.866Z", "t") == pytest.approx(1477895624.866)
    assert protocol.parse_time("2016-10-31t06:33:44.866z", "t") == pytest.approx(1477895624.866)
    assert protocol.parse_time("2016-10-31T08:33:44.866+02:00", "t") == pytest.approx(
        1477895624.866
    )
    assert protocol.parse_time("1990-12-31T23:59:60Z", "t") == 662688000.0  # a leap second
    assert protocol.parse_time(1477895624866, "t") == pytest.approx(1477895624.866)
    for bad in ("soon", True, None, [], float("nan"), "1477895624866", 1e400):
        with pytest.raises(RequestError):
            protocol.parse_time(bad, "t")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
query_like = st.fixed_dictionaries(
    {},
    optional={
        "range": st.fixed_dictionaries(
            {},
            optional={
                "from": json_values | st.just("2020-01-01T00:00:00Z"),
                "to": json_values | st.just("2021-01-01T00:00:00Z"),
            },
        ),
        "maxDataPoints": json_values,
        "intervalMs": json_values,
        "targets": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "target": json_values | st.sampled_from(["a::b", "{a,b}::*"]),
                    "payload": json_values,
                    "type": json_values,
                    "refId": json_values,
                    "hide": json_values,
                },
            )
            | json_values,
            max_size=4,
        ),
        "adhocFilters": json_values,
    },
)


@pytest.mark.slow  # over 1 s in the unit lane (fuzz)
@given(query_like | json_values)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_query_bodies_parse_or_raise_request_error(body):
    try:
        q = protocol.parse_query(body, 1000)
    except RequestError as exc:
        assert exc.status == 400 and exc.message
        return
    assert q.start <= q.end and 1 <= q.max_points <= 1000 and q.interval >= 0


@pytest.mark.slow  # about 1 s in the unit lane (fuzz)
@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_fuzzed_raw_bytes_parse_or_raise_request_error(body):
    try:
        protocol.parse_json(body)
    except RequestError as exc:
        assert exc.status == 400


# -- the stride keeps answers within maxDataPoints ---------------------------------------
@given(
    start=st.floats(1e8, 2e9),
    span=st.floats(1.0, 40 * 86400.0),
    max_points=st.integers(1, 3000),
    reduce=st.sampled_from(["mean", "minmax"]),
    n=st.integers(1, 5000),
    seed=st.integers(0, 2**31),
)
@pytest.mark.slow  # about 1 s in the unit lane (fuzz)
@settings(max_examples=300, deadline=None)
def test_min_stride_keeps_the_node_reduction_within_max_points(
    start, span, max_points, reduce, n, seed
):
    end = start + span
    t = np.sort(np.random.default_rng(seed).uniform(start, end, n))
    t = t[t < end]
    stride = protocol.min_stride(start, end, max_points, reduce)
    reducer = bin_minmax if reduce == "minmax" else bin_mean
    out_t, _ = reducer(t, {"x": np.ones(t.size)}, stride)
    assert out_t.size <= max(max_points, 2 if reduce == "minmax" else 1)


def test_coarser_grafana_interval_wins():
    assert protocol.min_stride(0, 1000, 1000, "mean", interval=60.0) == 60.0
    assert protocol.min_stride(0, 1000, 1000, "mean", interval=0.001) == pytest.approx(
        1000 / 999, rel=1e-6
    )


# -- the catalog ---------------------------------------------------------------------
FIELDS = [
    {
        "temp": {"timeline": "fast", "type": "number", "units": "C", "description": "air"},
        "hum": {"timeline": "fast", "type": "number", "units": "%"},
        "state": {"timeline": "slow", "type": "string"},
    },
    {
        "fast": {"interval": 1.0, "field": ["temp", "hum"]},
        "slow": {"interval": None, "field": ["state"]},
    },
]


def catalog() -> Catalog:
    c = Catalog(clock=lambda: 100.0)
    c.set_directory(
        [
            {"name": "weather", "description": "w", "kind": "weather"},
            {"name": "Bad Name!"},
            "junk",
            {"name": "sensors", "description": "s", "kind": "sensors"},
        ]
    )
    assert c.set_fields("weather", FIELDS)
    assert c.set_fields("sensors", [{"cpu": {"timeline": "fast", "units": "C"}}, {}])
    return c


def target(text: str, timeline: str | None = None) -> protocol.Target:
    return protocol.Target(text, None, protocol.split_target(text), "mean", timeline, False)


def test_catalog_resolves_names_wildcards_alternatives_and_filters():
    c = catalog()
    assert sorted(c.nodes) == ["sensors", "weather"]
    res = c.resolve(
        [
            target("weather::temp"),
            target("weather::*", "slow"),
            target("{weather,sensors}::*"),
            target("weather::nope"),
            target("ghost::x"),
        ]
    )
    names = [[s.name for s in group] for group in res.series]
    assert names[0] == ["weather::temp"]
    assert names[1] == ["weather::state"]
    assert names[2] == ["weather::hum", "weather::state", "weather::temp", "sensors::cpu"]
    assert names[3] == [] and names[4] == []
    assert res.stale_nodes == {"weather"} and res.unknown_nodes == {"ghost"}
    only_c = c.resolve([target("*::*")], [protocol.Filter("units", "=", "C")]).series[0]
    assert [s.name for s in only_c] == ["sensors::cpu", "weather::temp"]
    globbed = c.resolve([target("*::*")], [protocol.Filter("node", "!~", "w*")]).series[0]
    assert [s.name for s in globbed] == ["sensors::cpu"]
    assert c.tag_values("kind") == ["sensors", "weather"] and c.tag_values("units") == ["%", "C"]


def test_catalog_follows_the_hub_and_keeps_fields_on_reannouncement():
    c = catalog()
    c.added({"name": "weather", "description": "again", "kind": "weather"})
    assert "temp" in c.nodes["weather"].fields  # same node re-announced: fields kept
    c.added({"name": "weather", "description": "new", "kind": "other"})
    assert c.nodes["weather"].fields == {}  # another node under the name: fetch anew
    assert c.subtracted({"name": "sensors"}) == "sensors" and "sensors" not in c.nodes
    assert c.subtracted({"name": 5}) is None and c.added(["x"]) is None
    c.set_directory([])
    assert c.nodes == {}


@pytest.mark.parametrize(
    "answer", [None, [], [1, 2], [{"x": {"timeline": "t"}}], "x", [[], {}], [{}, []]]
)
def test_malformed_field_lists_are_refused(answer):
    c = catalog()
    assert not c.set_fields("weather", answer)
    assert "temp" in c.nodes["weather"].fields  # the last good list stays


def test_field_entries_are_checked_one_by_one():
    c = catalog()
    assert c.set_fields(
        "weather",
        [
            {
                "ok": {"timeline": "t", "type": "bool"},
                "bad": {"type": "number"},
                "": {"timeline": "t"},
                "odd": {"timeline": "t", "type": "complex"},
            },
            {},
        ],
    )
    assert c.nodes["weather"].fields["ok"]["type"] == "bool"
    assert c.nodes["weather"].fields["odd"]["type"] == "number"
    assert sorted(c.nodes["weather"].fields) == ["odd", "ok"]
    assert c.nodes["weather"].timelines == {"t": {"interval": None, "field": ["odd", "ok"]}}


def test_sisock_nodes_are_told_apart():
    assert not NodeEntry("old").obsmesh and NodeEntry("new", info={"kind": "k"}).obsmesh


# -- frames and JSON out -------------------------------------------------------------------
def both_encoders(value):
    fast = jsonout.dumps(value)
    saved, jsonout.FAST = jsonout.FAST, None
    try:
        plain = jsonout.dumps(value)
    finally:
        jsonout.FAST = saved
    assert json.loads(fast) == json.loads(plain)
    return json.loads(fast)


def test_time_series_and_tables_are_exact_with_nan_as_null():
    t = 1_000_000_000.0 + np.arange(4) * 0.25
    v = np.array([0.1, np.nan, -np.inf, 1e300])
    out = both_encoders(frames.timeseries("n::x", t, v, "number", "A", "V"))
    assert out == {
        "target": "n::x",
        "refId": "A",
        "unit": "V",
        "datapoints": [
            [0.1, t[0] * 1000],
            [None, t[1] * 1000],
            [None, t[2] * 1000],
            [1e300, t[3] * 1000],
        ],
    }
    table = both_encoders(frames.table("n::x", t, v, "number"))
    assert table["rows"][0] == [t[0] * 1000, 0.1] and table["rows"][1][1] is None
    assert table["columns"][1] == {"text": "n::x", "type": "number"}


def test_bools_plot_as_numbers_and_strings_stay_strings():
    t = np.array([1.0, 2.0, 3.0])
    bools = np.array([True, False, None], dtype=object)
    assert both_encoders(frames.timeseries("n::ok", t, bools, "bool"))["datapoints"] == [
        [1.0, 1000.0],
        [0.0, 2000.0],
        [None, 3000.0],
    ]
    strings = np.array(["a", None, b"bytes"], dtype=object)
    assert both_encoders(frames.timeseries("n::s", t, strings, "string"))["datapoints"] == [
        ["a", 1000.0],
        [None, 2000.0],
        [None, 3000.0],
    ]
    assert both_encoders(frames.table("n::ok", t, bools, "bool"))["rows"][0] == [1000.0, True]


def test_huge_integers_echoed_back_still_encode():
    assert both_encoders({"annotation": {"n": 2**80}}) == {"annotation": {"n": 2**80}}


def test_events_are_checked_and_tagged_with_their_node():
    assert frames.clean_event({"time": 5, "title": "t", "text": 1, "tags": ["a", 3, "n"]}, "n") == {
        "time": 5.0,
        "title": "t",
        "text": "",
        "tags": ["n", "a"],
    }
    for bad in (None, {"time": "x"}, {"time": float("nan")}, {"time": True}, []):
        assert frames.clean_event(bad, "n") is None


# -- node answers ------------------------------------------------------------------------
def answer(encoding: str, n: int = 5) -> dict:
    t = 100.0 + np.arange(n)
    return {
        "data": {"x": wire.encode(np.arange(n) * 1.5, encoding), "s": ["a"] * 2},
        "timeline": {
            "fast": {"t": wire.encode(t, encoding), "finalized_until": 104.0},
            "slow": {"t": [1.0, 2.0]},
        },
    }


@pytest.mark.parametrize("encoding", ["list", "array"])
def test_both_column_encodings_decode_to_the_same_values(encoding):
    cols = replies.joined(
        [replies.columns(answer(encoding), [("x", "fast"), ("s", "slow"), ("gone", "fast")], "n")],
        "n",
    )
    assert cols.series["x"][0].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert cols.series["x"][1].tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert cols.series["s"][1].tolist() == ["a", "a"]
    assert cols.errors == {"gone": "node 'n', field 'gone': the answer has no column for it"}


def test_a_column_that_does_not_fit_its_timeline_is_an_error_naming_node_and_field():
    bad = answer("array")
    bad["data"]["x"] = wire.encode(np.arange(3.0), "array")  # wrong length
    bad["timeline"]["slow"]["t"] = {"dtype": "|O", "shape": [2], "data": b"xx"}
    bad["data"]["orphan"] = [1.0, 2.0]  # values, but its timeline is not in the answer
    bad["data"]["quiet"] = []  # no data and no timeline: sisock's way of saying nothing
    cols = replies.columns(
        bad, [("x", "fast"), ("s", "slow"), ("orphan", "other"), ("quiet", "other")], "wx"
    )
    assert cols.errors == {
        "x": "node 'wx', field 'x': 3 values for 5 times of timeline 'fast'",
        "s": "node 'wx', field 's': timeline 'slow' has unreadable times "
        "(unsupported wire dtype '|O')",
        "orphan": "node 'wx', field 'orphan': 2 values but no timeline 'other' in the answer",
    }
    assert list(cols.series) == ["quiet"] and cols.series["quiet"][0].size == 0
    for junk in (None, [], {"data": []}, {"data": {}, "timeline": 3}):
        with pytest.raises(replies.BadReply):
            replies.columns(junk, [("x", "fast")])


def test_progressive_chunks_join_and_a_field_failing_in_one_fails_whole():
    first, second = answer("list"), answer("list")
    del second["data"]["s"]  # a chunk of another timeline: not an error by itself
    second["data"]["x"] = [1.0]  # does not fit: the whole field fails
    parts = [replies.columns(p, [("x", "fast"), ("s", "slow")], "n") for p in (first, second)]
    cols = replies.joined(parts, "n")
    assert "x" in cols.errors and "x" not in cols.series
    assert cols.series["s"][1].tolist() == ["a", "a"]


hostile_columns = json_values | st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["<f8", "<i4", "|b1", "|O", 5]),
        "shape": json_values,
        "data": st.binary(max_size=40),
    }
)


@given(
    data=st.dictionaries(st.sampled_from(["x", "y"]), hostile_columns, max_size=2),
    t=hostile_columns,
)
@pytest.mark.slow  # over 1 s in the unit lane (fuzz)
@settings(max_examples=150, deadline=None)
def test_fuzzed_node_answers_never_raise_anything_else(data, t):
    try:
        cols = replies.columns(
            {"data": data, "timeline": {"fast": {"t": t}}}, [("x", "fast"), ("y", "fast")]
        )
    except replies.BadReply:
        return
    assert set(cols.series) | set(cols.errors) | cols.absent == {"x", "y"}
    for tt, values in cols.series.values():
        assert tt.shape == values.shape
        jsonout.dumps(frames.timeseries("n::x", tt, values, "number"))
    for why in cols.errors.values():
        assert why.startswith("node '?', field ")


# -- exports -------------------------------------------------------------------------
def test_export_arguments():
    r = export.parse_args(
        b"node=probe&field=x,y&field=x&start=100&end=2020-01-01T00:00:00Z&min_stride=5"
        b"&format=json&reduce=minmax"
    )
    assert r.fields == ("x", "y") and r.start == 100.0 and r.end == 1577836800.0
    assert r.min_stride == 5.0 and r.format == "json" and r.reduce == "minmax"
    d = export.parse_args("node=probe&field=x")
    assert (d.start, d.end, d.min_stride, d.format) == (-3600.0, 0.0, None, "csv")
    assert d.filename() == "probe-x.csv"
    for bad in (
        "field=x",
        "node=probe",
        "node=p&field=x&format=xml",
        "node=p&field=x&min_stride=-1",
        "node=p&field=x&start=soon",
        "node=p&field=x&start=200&end=100",
        "node=p&node=q&field=x",
        "node=p&field=x&reduce=median",
        b"node=p&field=\xff",
    ):
        with pytest.raises(RequestError):
            export.parse_args(bad)


def test_csv_export_round_trips_exact_floats():
    x = np.array([0.1, 1 / 3, np.nan, 1e-300, 123456789.123456789])
    reply = {
        "data": {
            "x": wire.encode(x, "array"),
            "s": ["a,b", None, 'q"', "", "z"],
            "ok": [True, False, None, True, True],
        },
        "timeline": {"fast": {"t": wire.encode(1e9 + np.arange(5) / 3, "array")}},
    }
    w = export.CsvExport(["x", "s", "ok"], {"x": "number", "s": "string", "ok": "bool"}, "fast")
    rows = list(csv.reader(io.StringIO((w.header() + w.rows(reply)).decode())))
    assert rows[0] == ["time", "x", "s", "ok"]
    assert [float(r[0]) for r in rows[1:]] == (1e9 + np.arange(5) / 3).tolist()
    assert [float(r[1]) if r[1] else math.nan for r in rows[1:]][:2] == [0.1, 1 / 3]
    assert rows[3][1] == "" and float(rows[5][1]) == 123456789.123456789
    assert [r[2] for r in rows[1:]] == ["a,b", "", 'q"', "", "z"]
    assert [r[3] for r in rows[1:]] == ["true", "false", "", "true", "true"]


def test_json_export_joins_chunks():
    req = export.parse_args("node=p&field=x&field=s&format=json")
    doc = export.JsonExport(
        req,
        {"x": {"timeline": "fast", "type": "number"}, "s": {"timeline": "slow", "type": "string"}},
    )
    doc.add(
        {
            "data": {"x": wire.encode(np.array([1.0, np.nan]), "array")},
            "timeline": {"fast": {"t": wire.encode(np.array([1.0, 2.0]), "array")}},
        }
    )
    doc.add(
        {"data": {"x": [3.0], "s": ["a"]}, "timeline": {"fast": {"t": [3.0]}, "slow": {"t": [9.0]}}}
    )
    out = json.loads(doc.finish())
    assert out["timeline"] == {"fast": {"t": [1.0, 2.0, 3.0]}, "slow": {"t": [9.0]}}
    assert out["data"] == {"x": [1.0, None, 3.0], "s": ["a"]}
    assert out["fields"]["s"]["type"] == "string" and out["node"] == "p"


# -- coalesced refreshes ---------------------------------------------------------------
def test_refreshes_are_shared_but_never_answered_by_a_call_older_than_the_ask():
    bridge = Bridge(
        {"prefix": "obsmesh", "router_url": "rs://127.0.0.1:1", "realm": "obsmesh"},
        {"query_timeout": 1.0},
        reactor=object(),
    )
    calls: list[defer.Deferred] = []

    def make():
        calls.append(defer.Deferred())
        return calls[-1]

    got: dict[str, list] = {"first": [], "later": [], "again": []}
    bridge._shared("fields:n", make).addBoth(got["first"].append)
    for _ in range(3):  # asked while the first call runs: one follow-up call for all three
        bridge._shared("fields:n", make).addBoth(got["later"].append)
    assert len(calls) == 1
    calls[0].callback("old answer")
    assert got["first"] == ["old answer"] and got["later"] == [] and len(calls) == 2
    calls[1].callback("new answer")
    assert got["later"] == ["new answer"] * 3
    bridge._shared("fields:n", make).addBoth(got["again"].append)  # nothing running: a call at once
    assert len(calls) == 3
    calls[2].errback(RuntimeError("node gone"))
    assert got["again"][0].check(RuntimeError) and bridge._inflight == {}


# -- per-target answers ---------------------------------------------------------------
def test_each_target_gets_its_frames_or_its_error():
    from consumers.grafana.answers import NodeResult, target_frames
    from consumers.grafana.catalog import Series

    meta = {"timeline": "fast", "type": "number", "units": "V"}
    good, bad = Series("n", "x", meta), Series("n", "y", meta)
    t = np.array([1.0, 2.0])
    results = {
        ("n", "mean"): NodeResult(
            columns=replies.Columns(
                series={"x": (t, t * 2)}, errors={"y": "node 'n', field 'y': 1 values for 2 times"}
            )
        ),
        ("gone", "mean"): NodeResult(failure="node 'gone' did not answer within 5 s"),
    }

    def target(text, table=False):
        return protocol.Target(text, "A", protocol.split_target(text), "mean", None, table)

    frames_out = target_frames(
        target("n::{x,y,z}"), [good, bad], ["node 'n' has no field 'z'"], results, {}
    )
    assert frames_out[0]["datapoints"].tolist() == [[2.0, 1000.0], [4.0, 2000.0]]
    assert frames_out[1]["meta"]["notices"] == [
        {"severity": "error", "text": "n::y: node 'n', field 'y': 1 values for 2 times"}
    ]
    assert frames_out[2]["target"] == "n::{x,y,z}"
    assert frames_out[2]["meta"]["notices"][0]["text"] == "n::{x,y,z}: node 'n' has no field 'z'"
    lost = target_frames(
        target("gone::x", table=True), [Series("gone", "x", meta)], [], results, {}
    )
    assert lost[0]["type"] == "table" and len(lost[0]["rows"]) == 0
    assert "did not answer" in lost[0]["meta"]["notices"][0]["text"]
    nothing = target_frames(target("n::*"), [], [], results, {})  # nothing matched: no error
    assert nothing == [{"target": "n::*", "refId": "A", "datapoints": []}]


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(1.0, 4e9),
    span=st.floats(1e-3, 4e9),
    reduce=st.sampled_from(["mean", "minmax"]),
)
def test_one_point_for_a_panel_is_stamped_inside_its_range(start, span, reduce):
    """maxDataPoints=1: one bin holds the whole range and its centre lies inside it."""
    import math

    end = start + span
    stride = protocol.min_stride(start, end, 1 if reduce == "mean" else 2, reduce)
    k = math.floor(start / stride)
    tol = 8 * math.ulp(end) + 1e-9 * span
    assert math.floor(math.nextafter(end, 0) / stride) == k or abs(end - (k + 1) * stride) < tol
    assert start - tol <= (k + 0.5) * stride < end + tol
