"""The HAPI server's pure parts: time parsing and formatting, request checking,
the three encoders, datasets from hostile get_fields answers, window planning
and the status table; property-based where the input space is large."""

from __future__ import annotations

import csv as csv_module
import datetime as dt
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.hapi import encode, query
from consumers.hapi.datasets import Parameter, datasets_of, string_length
from consumers.hapi.status import CODES, HapiError, status_line
from consumers.hapi.stream import next_length, window_end
from consumers.hapi.times import (
    BadTime,
    duration,
    format_times,
    iso,
    parse_seconds,
    parse_time,
)

UTC = dt.UTC


def unix(*args) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2017-01-15T00:00:00.000Z", unix(2017, 1, 15)),
        ("2017-01-15T23Z", unix(2017, 1, 15, 23)),
        ("2017-01-15T23:05Z", unix(2017, 1, 15, 23, 5)),
        ("2017-01-15Z", unix(2017, 1, 15)),
        ("2017-01-15", unix(2017, 1, 15)),  # no Z: UTC all the same
        ("1999-01Z", unix(1999, 1, 1)),
        ("1999Z", unix(1999, 1, 1)),
        ("1999-001Z", unix(1999, 1, 1)),
        ("2016-366T12:00Z", unix(2016, 12, 31, 12)),
        ("2017-01-15T24:00:00Z", unix(2017, 1, 16)),
        ("2016-12-31T23:59:60Z", unix(2017, 1, 1)),  # a leap second folds onto the next
        ("2017-01-15T01:02:03.123456789Z", unix(2017, 1, 15, 1, 2, 3) + 0.123456789),
    ],
)
def test_incoming_times_in_every_allowed_form(text, expected):
    assert parse_time(text) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2017-13Z",
        "2017-02-29Z",
        "2017-366Z",
        "2017-00-10",
        "2017-01-15T25Z",
        "2017-01-15T24:00:01Z",
        "2017-01-15T12:60Z",
        "2017T12Z",  # a time of day needs a full date
        "2017-01T12Z",
        "0000-01-01",
        "17-01-15",
        "2017-01-15T12:00:00+02:00",
        "2017-01-15 12:00:00",
        "2017-01-15T12:00:00.1234567890Z",
        "２０１７",
        "1" * 100,
    ],
)
def test_anything_else_is_a_bad_time(text):
    with pytest.raises(BadTime):
        parse_time(text)


def _message(text: str) -> str:
    try:
        parse_time(text)
    except BadTime as exc:
        return str(exc)
    raise AssertionError(text)


# One of each refusal the parser makes (format, ranges of each part, a long text).
BAD_TIME_MESSAGES = {
    _message(t)
    for t in ("x", "0000", "2017-366", "2017-13", "2017-02-30", "2017T01", "2017-01-01T25")
    + ("2017-01-01T24:01", "9" * 41)
}


@settings(deadline=None)
@given(st.text(max_size=50))
def test_no_text_breaks_the_time_parser(text):
    try:
        value = parse_time(text)
    except BadTime as exc:
        assert str(exc) in BAD_TIME_MESSAGES  # a fixed sentence: the input is never echoed
    else:
        assert math.isfinite(value)


@settings(deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
)
def test_written_times_read_back_to_the_microsecond(when):
    text = f"{when.year:04d}-" + when.strftime("%m-%dT%H:%M:%S.%f") + "Z"
    t = parse_time(text)
    # float64 seconds resolve a microsecond until about 2200 (0.24 us now, 30 us in 9999)
    ulp = math.ulp(abs(t)) if t else 0.0
    assert t == pytest.approx(when.replace(tzinfo=UTC).timestamp(), abs=max(1e-6, ulp))
    if 1900 <= when.year <= 2200:
        assert iso(t) == text


@settings(deadline=None)
@given(
    st.lists(
        st.floats(min_value=-6.2e10, max_value=2.5e11, allow_nan=False), min_size=1, max_size=50
    )
)
def test_the_vectorised_formatter_agrees_with_numpys(values):
    t = np.array(values)
    us = np.rint(t * 1e6).astype(np.int64).astype("datetime64[us]")
    expected = [s + "Z" for s in np.datetime_as_string(us, unit="us").tolist()]
    assert [b.decode() for b in format_times(t).tolist()] == expected


def test_durations_both_ways():
    assert duration(1.0) == "PT1S" and duration(0.125) == "PT0.125S" and duration(600) == "PT600S"
    assert parse_seconds("PT1M") == 60 and parse_seconds("P1DT1H") == 90000
    assert parse_seconds("0.5") == 0.5
    for bad in ("", "P", "PT", "-1", "0", "nan", "inf", "P1Y", "1 s", "PT1M30"):
        with pytest.raises(ValueError):
            parse_seconds(bad)


# -- request parameters ---------------------------------------------------------------
QUERY_TEXT = st.lists(
    st.sampled_from(list("abcdefghijklmnopqrstuvwxyz_.,=&%+-:TZ0123456789 /é") + ["%ff", "%00"]),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(QUERY_TEXT)
def test_no_query_string_breaks_the_request_parsers(text):
    for parse in (query.catalog, query.info, query.data):
        for raw in (text, text.encode("utf-8")):
            try:
                parse(raw)
            except HapiError as exc:
                assert exc.code in CODES and exc.code >= 1400
                assert exc.http // 100 == CODES[exc.code][0] // 100


VALUES = st.one_of(
    st.sampled_from(
        ["", "2020Z", "2021-01-01T00:00:00Z", "2019-365", "x", "csv", "binary", "json", "header"]
    ),
    st.text(max_size=20),
)
NAMES = st.sampled_from(
    ["dataset", "id", "start", "stop", "time.min", "time.max", "parameters", "format"]
    + ["include", "x_stride", "x_reduce", "resolve_references", "depth", "fields", "x_other"]
)


@pytest.mark.slow  # over 1 s in the unit lane (fuzz)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_every_data_request_parameter_fuzzed(pairs):
    from urllib.parse import quote

    text = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
    try:
        req = query.data(text)
    except HapiError as exc:
        assert exc.code in CODES
        return
    names = [query._ALIASES.get(k, k) for k, _ in pairs]
    assert len(set(names)) == len(names) and "fields" not in names
    assert req.start < req.stop and req.format in query.FORMATS
    assert req.stride is None or req.stride > 0


def test_parameter_selection_rules():
    names = ["Time", "a", "b", "c"]
    assert query.select(names, None) == names
    assert query.select(names, ("a", "c")) == ["Time", "a", "c"]
    assert query.select(names, ("Time",)) == ["Time"]
    assert query.select(names, ("Time", "b")) == ["Time", "b"]
    for asked, code in [(("c", "a"), 1411), (("a", "a"), 1411), (("b", "Time"), 1411)]:
        with pytest.raises(HapiError) as info:
            query.select(names, asked)
        assert info.value.code == code
    with pytest.raises(HapiError) as info:
        query.select(names, ("a", "zz"))
    assert info.value.code == 1407


@settings(deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6))
def test_selection_accepts_exactly_ordered_distinct_known_names(asked):
    names = ["Time", "a", "b", "c"]
    ok = all(n in names for n in asked) and asked == sorted(set(asked), key=names.index)
    try:
        out = query.select(names, tuple(asked) or None)
    except HapiError:
        assert not ok
    else:
        assert ok and out == (["Time", *asked] if asked else names)


# -- encoders ---------------------------------------------------------------------------
PARAMS = [
    Parameter("x", "number"),
    Parameter("v", "number", size=(3,)),
    Parameter("ok", "bool"),
    Parameter("s", "string"),
]
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
TEXTS = st.one_of(st.none(), st.text(max_size=12))


@st.composite
def blocks(draw):
    n = draw(st.integers(0, 20))
    t = np.sort(np.array(draw(st.lists(st.floats(0, 4e9), min_size=n, max_size=n)), dtype=float))
    x = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=float)
    v = np.array(draw(st.lists(FLOATS, min_size=3 * n, max_size=3 * n)), dtype=float).reshape(n, 3)
    ok = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
    s = draw(st.lists(TEXTS, min_size=n, max_size=n))
    reply = {
        "timeline": {"tl": {"t": {"dtype": "<f8", "shape": [n], "data": t.tobytes()}}},
        "data": {
            "x": {"dtype": "<f8", "shape": [n], "data": x.tobytes()},
            "v": {"dtype": "<f8", "shape": [n, 3], "data": v.tobytes()},
            "ok": ok,
            "s": s,
        },
    }
    return reply, t, x, v, ok, s


def _missing(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), a, np.nan)


@pytest.mark.slow  # measured 4.3 s
@settings(max_examples=150, deadline=None)
@given(blocks())
def test_the_three_formats_carry_the_same_values(block):
    reply, t, x, v, ok, s = block
    tt, cols = encode.columns(reply, "tl", PARAMS)
    lengths = {"s": string_length(max([len(z.encode()) for z in s if z] or [0]))}
    want_ok = [-1 if b is None else int(b) for b in ok]
    want_s = ["" if z is None else z for z in s]
    times = [b.decode() for b in format_times(t).tolist()]
    # binary
    rec = np.frombuffer(
        encode.binary(tt, cols, PARAMS, lengths),
        dtype=[
            ("t", "S27"),
            ("x", "<f8"),
            ("v", "<f8", (3,)),
            ("ok", "<i4"),
            ("s", f"S{lengths['s']}"),
        ],
    )
    assert [b.decode() for b in rec["t"].tolist()] == times
    assert np.array_equal(rec["x"], _missing(x), equal_nan=True)
    assert np.array_equal(rec["v"], _missing(v), equal_nan=True)
    assert rec["ok"].tolist() == want_ok
    assert [b.decode() for b in rec["s"].tolist()] == [z.rstrip("\0") for z in want_s]
    # CSV, read back by the standard library's RFC 4180 reader
    rows = list(csv_module.reader(io.StringIO(encode.csv(tt, cols, PARAMS).decode())))
    assert len(rows) == len(times)
    for row, when, xv, vv, o, z in zip(
        rows, times, _missing(x), _missing(v), want_ok, want_s, strict=True
    ):
        assert row[0] == when and len(row) == 7
        assert np.array_equal(np.array(row[1:5], dtype=float), np.r_[xv, vv], equal_nan=True)
        assert int(row[5]) == o and row[6] == z
    # JSON records
    records = json.loads(b"[" + encode.json_rows(tt, cols, PARAMS) + b"]") if len(t) else []
    for rec_, when, xv, vv, o, z in zip(
        records, times, _missing(x), _missing(v), want_ok, want_s, strict=True
    ):
        assert rec_[0] == when and rec_[3] == o and rec_[4] == z
        assert rec_[1] == (None if np.isnan(xv) else xv)
        assert rec_[2] == [None if np.isnan(a) else a for a in vv]


def test_a_string_longer_than_its_length_stops_binary_rather_than_being_cut():
    p = [Parameter("s", "string")]
    with pytest.raises(encode.StringTooLong):
        encode.binary(np.zeros(1), [np.array(["é" * 10], dtype=object)], p, {"s": 16})


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [],
        {"data": {}, "timeline": {}},
        {"data": {"x": [1.0]}, "timeline": {"tl": {"t": [1.0, 2.0]}}},  # rows disagree
        {"data": {"x": ["a"]}, "timeline": {"tl": {"t": [1.0]}}},  # text for a number
        {"data": {"x": {"dtype": "|O", "data": b"x"}}, "timeline": {"tl": {"t": [1.0]}}},
        {"data": {"x": [1.0]}, "timeline": {"tl": {"t": [float("nan")]}}},
        {"data": {"y": [1.0]}, "timeline": {"tl": {"t": [1.0]}}},  # the column is missing
    ],
)
def test_a_malformed_node_answer_is_refused(reply):
    with pytest.raises(encode.BadColumns):
        encode.columns(reply, "tl", [Parameter("x", "number")])


# -- datasets from get_fields answers ------------------------------------------------------
def test_datasets_keep_order_types_sizes_and_skip_what_hapi_cannot_carry():
    fields = {
        "b": {"timeline": "tl", "type": "number", "units": "V"},
        "a": {"timeline": "tl", "type": "bool"},
        "A": {"timeline": "tl", "type": "number"},  # differs from a only by case
        "c,d": {"timeline": "tl", "type": "number"},  # a comma cannot be requested
        "time": {"timeline": "tl", "type": "number"},  # the time parameter's name
        "spec": {"timeline": "tl", "shape": [4], "y_tags": [1, 2, 3, 4], "y_units": "Hz"},
        "huge": {"timeline": "tl", "shape": [10**9]},
        "s": {"timeline": "other", "type": "string", "units": ""},
    }
    timelines = {
        "tl": {"field": ["b", "a", "A", "c,d", "time", "spec", "huge"], "span": [1.0, 2.0]}
    }
    out = datasets_of("n", {"kind": "k"}, [fields, timelines])
    assert sorted(out) == ["n/other", "n/tl"]
    tl = out["n/tl"]
    assert tl.names == ["Time", "b", "a", "spec"]
    assert [p.hapi_type for p in tl.parameters] == ["isotime", "double", "integer", "double"]
    assert tl.parameter("spec").size == (4,)
    assert tl.parameter("spec").bins[0]["centers"] == [1, 2, 3, 4]
    assert (tl.first, tl.last) == (1.0, 2.0)
    info = out["n/other"].info(["Time", "s"], now=10.0)
    assert info["parameters"][1]["units"] is None and info["parameters"][1]["length"] == 16


HOSTILE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)
@given(HOSTILE, HOSTILE)
def test_no_get_fields_answer_breaks_the_catalog(fields, timelines):
    for answer in ([fields, timelines], fields, [timelines, fields]):
        for ds in datasets_of("n", {}, answer).values():
            ds.info(ds.names, now=1e9)


# -- windows and statuses -------------------------------------------------------------
@settings(deadline=None)
@given(
    st.floats(0, 1e9),
    st.floats(1e-3, 1e6),
    st.floats(0, 1e7),
    st.one_of(st.none(), st.floats(1e-2, 1e4)),
)
def test_windows_advance_and_cut_bins_only_at_stride_multiples(start, length, extra, stride):
    stop = start + extra + 1e-3
    end = window_end(start, length, stop, stride)
    assert start < end <= stop
    if stride is not None and end < stop:
        assert math.isclose(end / stride, round(end / stride), abs_tol=1e-6)


def test_windows_adapt_at_most_fourfold():
    assert next_length(10.0, 0, 100) == 40.0
    assert next_length(10.0, 1, 100) == 40.0
    assert next_length(10.0, 1000, 100) == 2.5
    assert next_length(10.0, 200, 100) == 5.0


def test_http_and_hapi_codes_agree():
    for code, (http, message) in CODES.items():
        assert http // 100 == code // 100 - 10 or (code >= 1500 and http == 500)
        assert f"HAPI {code} {message}".encode() in status_line(http, code)
    with pytest.raises(ValueError):
        HapiError(1406, http=500)
