"""The client's pure parts: time parsing, argument checks, reply assembly,
rawsocket framing, the live inbox. No router needed."""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.client import args as check
from consumers.client.errors import (
    ClientError,
    InvalidArgument,
    MeshTimeout,
    NodeUnavailable,
    ProtocolError,
    TooManyPoints,
    UnknownField,
    from_wamp,
)
from consumers.client.live import Batch, Inbox, _after
from consumers.client.result import Assembler, decode_column
from consumers.client.times import (
    absolute,
    parse_duration,
    parse_interval,
    parse_stride,
    parse_time,
)
from consumers.client.transport import FastRawSocketClientProtocol, parse_url
from obsmesh import wire

# -- times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1h", 3600),
        ("90s", 90),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5h", 5400),
        ("10 min", 600),
        ("3600", 3600),
        (" 2m ", 120),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "h", "1x", "1h30", "h1", "1h-2m", "--1h", "1e400", "nan", "1 h x"]
)
def test_bad_durations(text):
    with pytest.raises(InvalidArgument):
        parse_duration(text)


def test_time_forms():
    assert parse_time(1_700_000_000) == 1_700_000_000.0
    assert parse_time(-60) == -60.0 and parse_time(0) == 0.0
    assert parse_time("now") == 0.0
    assert parse_time("1h") == -3600.0 and parse_time("-1h") == -3600.0
    assert parse_time("-3600") == -3600.0 and parse_time("1700000000.5") == 1_700_000_000.5
    aware = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert parse_time(aware) == aware.timestamp()
    assert parse_time(dt.datetime(2024, 5, 1, 12)) == aware.timestamp()  # naive is UTC
    assert parse_time("2024-05-01T12:00:00Z") == aware.timestamp()
    assert parse_time("2024-05-01T14:00:00+02:00") == aware.timestamp()
    assert parse_time("2024-05-01") == dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
    assert parse_time(dt.date(2024, 5, 1)) == dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
    assert parse_time(np.datetime64("2024-05-01T12:00:00")) == aware.timestamp()
    assert parse_time(np.float64(5.5)) == 5.5


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "yesterday",
        "+1h",
        "2024-13-01",
        float("nan"),
        float("inf"),
        1e15,
        [],
        b"1",
        "1h x",
        np.datetime64("NaT"),
        dt.datetime(1960, 1, 1),
    ],
)
def test_bad_times_name_the_argument(value):
    with pytest.raises(InvalidArgument) as info:
        parse_time(value, "start")
    assert "start" in str(info.value)


def test_interval_order_and_stride():
    assert parse_interval("2h", "1h", now=10_000.0) == (-7200.0, -3600.0)
    with pytest.raises(InvalidArgument, match="after end"):
        parse_interval("1h", "2h", now=10_000.0)
    with pytest.raises(InvalidArgument, match="after end"):
        parse_interval(2000, 1000, now=10_000.0)
    assert parse_stride("1m") == 60.0 and parse_stride(0.5) == 0.5 and parse_stride(None) is None
    for bad in (0, -1, "0s", True, float("nan"), [1]):
        with pytest.raises(InvalidArgument):
            parse_stride(bad)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=30),
        st.floats(allow_nan=True),
        st.integers(),
        st.none(),
        st.booleans(),
        st.datetimes(),
        st.binary(max_size=5),
    )
)
@pytest.mark.slow  # over 1 s in the unit lane (property test)
def test_parse_time_never_crashes(value):
    """Any input is a number of seconds or an InvalidArgument, nothing else."""
    try:
        t = parse_time(value)
    except InvalidArgument:
        return
    assert isinstance(t, float) and np.isfinite(t)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.smhdwin -+eE:TZ", max_size=20))
def test_duration_and_time_strings_fuzz(text):
    for fn in (parse_duration, parse_time):
        try:
            v = fn(text)
        except InvalidArgument:
            continue
        assert isinstance(v, float) and np.isfinite(v)


@given(st.integers(0, 10**6), st.integers(0, 59), st.integers(0, 59))
def test_duration_roundtrip(h, m, s):
    assert parse_duration(f"{h}h{m}m{s}s") == h * 3600 + m * 60 + s
    assert parse_time(f"{h}h{m}m{s}s") == -(h * 3600 + m * 60 + s) or h == m == s == 0


def test_absolute():
    assert absolute(-10, 100.0) == 90.0 and absolute(0, 100.0) == 100.0 and absolute(5, 100.0) == 5


# -- argument checks --------------------------------------------------------------------


def test_argument_checks():
    assert check.node_name("weather-1") == "weather-1"
    for bad in ("", "A", "a.b", "a b", None, 3, "x" * 64):
        with pytest.raises(InvalidArgument):
            check.node_name(bad)
    assert check.field_names("x") == ["x"] and check.field_names(["x", "y", "x"]) == ["x", "y"]
    assert check.field_names(None) is None
    for bad in ([], [""], [3], b"x", 5, ["x" * 201]):
        with pytest.raises(InvalidArgument):
            check.field_names(bad)
    assert check.reduction("minmax") == "minmax" and check.reduction(None) is None
    with pytest.raises(InvalidArgument):
        check.reduction("median")
    with pytest.raises(InvalidArgument):
        check.positive_int(0, "maxsize")


def test_url_parsing():
    a = parse_url("rs://127.0.0.1:8081")
    assert (a.kind, a.host, a.port, a.secure) == ("rawsocket", "127.0.0.1", 8081, False)
    assert parse_url("wss://mesh.example.org/ws").port == 443
    for bad in ("http://x", "", "rs://", "rs://h:99999", None):
        with pytest.raises(InvalidArgument):
            parse_url(bad)


def test_wamp_errors_map_to_exceptions():
    assert isinstance(
        from_wamp("obsmesh.error.no_such_field", ["no field 'q'"], "obsmesh", "n"), UnknownField
    )
    assert isinstance(from_wamp("obsmesh.error.too_many_points", [], "obsmesh"), TooManyPoints)
    assert isinstance(from_wamp("obsmesh.error.unavailable", ["x"], "obsmesh"), NodeUnavailable)
    e = from_wamp("obsmesh.error.invalid_argument", ["start is after end"], "obsmesh", "n")
    assert isinstance(e, InvalidArgument) and "'n'" in str(e) and "start is after end" in str(e)
    assert type(from_wamp("wamp.error.other", None, "obsmesh")) is ClientError


# -- reply assembly ---------------------------------------------------------------------


def arr(values, dtype="<f8"):
    return wire.to_array(np.asarray(values, dtype=dtype))


def test_progressive_chunks_assemble_in_order():
    a = Assembler("n", ["x", "label"])
    a.add(
        {
            "data": {"x": arr([1, 2])},
            "timeline": {"fast": {"t": arr([10, 11]), "finalized_until": 11}},
        }
    )
    a.add({"data": {"x": arr([3])}, "timeline": {"fast": {"t": arr([12]), "finalized_until": 12}}})
    a.add(
        {
            "data": {"label": ["a", None]},
            "timeline": {"slow": {"t": [10.5, 11.5], "finalized_until": None}},
        }
    )
    r = a.result()
    assert r["x"].tolist() == [1, 2, 3] and r.time("x").tolist() == [10, 11, 12]
    assert r["label"].tolist() == ["a", None] and r.timelines["fast"].finalized_until == 12
    assert r.points == 5 and r["x"].flags.writeable


def test_columns_matched_to_timelines_by_length_or_field_map():
    reply = {
        "data": {"x": arr([1, 2]), "s": ["a"]},
        "timeline": {"fast": {"t": arr([1, 2])}, "slow": {"t": arr([1.5])}},
    }
    a = Assembler("n", ["x", "s"])
    a.add(reply)
    assert not a.needs_field_map()
    assert a.result().timeline_of("s").name == "slow"
    same = {
        "data": {"x": arr([1, 2]), "y": arr([5, 6])},
        "timeline": {"a": {"t": arr([1, 2])}, "b": {"t": arr([3, 4])}},
    }
    b = Assembler("n", ["x", "y"])
    b.add(same)
    assert b.needs_field_map()
    r = b.result({"x": "b", "y": "a"})
    assert r.time("x").tolist() == [3, 4] and r.time("y").tolist() == [1, 2]


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [],
        {"data": {}},
        {"data": {"x": arr([1])}, "timeline": {"t": {"t": arr([1, 2])}}},  # length mismatch
        {
            "data": {"x": {"dtype": "|O", "shape": [1], "data": b"x"}},
            "timeline": {"t": {"t": arr([1])}},
        },
        {"data": {"x": arr([1])}, "timeline": {"t": {"t": ["a"]}}},
        {"data": {"x": arr([1])}, "timeline": {"t": "nope"}},
        {
            "data": {"x": {"dtype": "<f8", "shape": [2], "data": b"\0" * 8}},
            "timeline": {"t": {"t": arr([1])}},
        },
    ],
)
def test_malformed_replies_are_protocol_errors(reply):
    with pytest.raises(ProtocolError):
        Assembler("n", ["x"]).add(reply)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=6))
def test_any_chunking_gives_the_same_arrays(sizes):
    total = sum(sizes)
    t = np.arange(total, dtype=float) * 0.5
    x = np.arange(total, dtype=float) ** 2
    a = Assembler("n", ["x"])
    pos = 0
    for n in sizes:
        a.add(
            {"data": {"x": arr(x[pos : pos + n])}, "timeline": {"tl": {"t": arr(t[pos : pos + n])}}}
        )
        pos += n
    r = a.result()
    assert np.array_equal(r["x"], x) and np.array_equal(r.time("x"), t)


def test_decode_bool_and_number_lists():
    assert decode_column([True, False], "c").dtype == bool
    assert decode_column([True, None], "c").tolist() == [True, None]
    assert np.isnan(decode_column([1.0, None], "c")[1])


# -- rawsocket framing --------------------------------------------------------------------


class _Framing(FastRawSocketClientProtocol):
    def __init__(self):
        super().__init__()
        self.frames = []
        self.transport = object()
        self._handshake_complete = True
        self.MAX_LENGTH = 2**24
        self._parts, self._have, self._need = [], 0, None

    def stringReceived(self, payload):
        self.frames.append(payload)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(1, 200), min_size=1, max_size=50),
)
def test_framing_splits_anywhere(messages, cuts):
    stream = b"".join(struct.pack("!I", len(m)) + m for m in messages)
    p = _Framing()
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        p.dataReceived(stream[pos : pos + step])
        pos += step
        i += 1
    assert p.frames == messages


def test_framing_refuses_oversized_frames():
    p = _Framing()
    p.MAX_LENGTH = 100
    with pytest.raises(Exception, match="exceeded"):
        p.dataReceived(struct.pack("!I", 101) + b"x")


# -- the inbox and live filtering ---------------------------------------------------------


def test_inbox_is_bounded_and_wakes_readers():
    box = Inbox(2)
    assert box.offer(1) and box.offer(2) and not box.offer(3)
    box.force("gap")
    low = threading.Event()
    box.on_low = low.set
    assert box.get() == 1 and not low.is_set()
    assert box.get() == 2 and low.is_set()  # drained to half
    assert box.get() == "gap"
    with pytest.raises(MeshTimeout):
        box.get(timeout=0.01)
    threading.Timer(0.05, box.offer, args=("late",)).start()
    assert box.get(timeout=10) == "late"
    box.close()
    with pytest.raises(StopIteration):
        box.get()


def test_inbox_async_reader():
    box = Inbox(10)

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: threading.Thread(target=box.offer, args=("x",)).start())
        first = await asyncio.wait_for(box.aget(), 10)
        box.close()
        with pytest.raises(StopAsyncIteration):
            await box.aget()
        return first

    assert asyncio.run(main()) == "x"


def test_after_keeps_only_later_samples():
    b = Batch("n", "tl", np.array([1.0, 2.0, 3.0]), {"x": np.array([10.0, 20.0, 30.0])})
    assert _after(b, 1.5).data["x"].tolist() == [20.0, 30.0]
    assert _after(b, 3.0) is None
    assert _after(b, None) is b
    assert _after(b, None, floor=2.0).t.tolist() == [2.0, 3.0]


# -- planning large queries --------------------------------------------------------------


def test_small_queries_are_one_piece():
    from consumers.client.core import plan_pieces

    assert plan_pieces(100.0, 200.0, 1000, None) == [100.0, 200.0]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1e9, 1.7e9),
    st.floats(1, 1e6),
    st.integers(0, 10**9),
    st.one_of(st.none(), st.floats(0.001, 1e4)),
)
def test_pieces_cover_the_interval_and_never_split_a_bin(start, span, values, stride):
    from consumers.client.core import MAX_PIECES, plan_pieces

    end = start + span
    cuts = plan_pieces(start, end, values, stride)
    assert cuts[0] == start and cuts[-1] == end
    assert all(a < b for a, b in zip(cuts, cuts[1:], strict=False))
    assert len(cuts) - 1 <= MAX_PIECES
    if stride is not None:
        # a bin of the node (floor(t / stride)) starts exactly at each cut
        assert all(
            np.floor(c / stride) > np.floor(np.nextafter(c, -np.inf) / stride) for c in cuts[1:-1]
        )
