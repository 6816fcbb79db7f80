"""The numpy time-bin reducer against a plain-Python reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.das2.reduce import DEFAULT_FILL, Reducer, StreamReducer, reduce_stream
from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    PacketHeader,
    Plane,
    StreamException,
    StreamHeader,
    coalesce,
    decode,
    encode,
    value_type,
)
from nodes.das2.timefmt import seconds_per_unit, time_units, unix_to_units, us1970_to_units

T0 = 1_700_000_000.0  # a UNIX time inside the test data


# ---------------------------------------------------------------- reference


def reference(header: PacketHeader, columns, width: float, origin: float, minmax: bool):
    """Plain Python: {bin: [x, then per value plane (mean, [min, max]) per item]}."""
    x_plane = header.planes[0]
    units = time_units(x_plane.units)
    w = width / seconds_per_unit(units)
    o = unix_to_units(origin, units)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(columns[0].tolist()):
        if math.isfinite(x):
            groups[math.floor((x - o) / w)].append(i)
    out = {}
    for b, rows in groups.items():
        record = [o + (b + 0.5) * w]
        for plane, col in zip(header.planes[1:], columns[1:], strict=True):
            ptype, text = plane.properties.get("fill", ("double", str(DEFAULT_FILL)))
            fill = float(text)
            cmp_fill = float(np.float32(fill)) if col.dtype == np.float32 else fill
            items = col.reshape(len(col), -1)
            for k in range(items.shape[1]):
                vals = [float(items[r, k]) for r in rows]
                good = [v for v in vals if not math.isnan(v) and v != cmp_fill]
                record.append(math.fsum(good) / len(good) if good else fill)
                if minmax:
                    record.append(min(good) if good else fill)
                    record.append(max(good) if good else fill)
        out[b] = record
    return out


def flatten_output(data: list[Data]) -> dict[int, list[float]]:
    """Reducer output as {x: values in the reference's order}."""
    rows = {}
    for d in data:
        n = len(d)
        parts = [c.reshape(n, -1) for c in d.columns[1:]]
        for i in range(n):
            rows[float(d.columns[0][i])] = [float(v) for p in parts for v in p[i]]
    return rows


def reorder_minmax(values: list[float], header: PacketHeader, minmax: bool) -> list[float]:
    """Output planes come as avg-plane, min-plane, max-plane (each all items);
    the reference gives per item (mean, min, max). Bring the output to that order."""
    if not minmax:
        return values
    out, pos = [], 0
    for plane in header.planes[1:]:
        k = plane.nitems
        avg, lo, hi = (
            values[pos : pos + k],
            values[pos + k : pos + 2 * k],
            values[pos + 2 * k : pos + 3 * k],
        )
        for j in range(k):
            out += [avg[j], lo[j], hi[j]]
        pos += 3 * k
    return out


# ---------------------------------------------------------------- strategies

SPECIAL = [float("nan"), DEFAULT_FILL]


@st.composite
def reducible(draw: st.DrawFn):
    units = draw(st.sampled_from(["us2000", "t2000", "t1970", "mj1958"]))
    x_type = draw(st.sampled_from(["sun_real8", "little_endian_real8", "time26"]))
    x = Plane("x", value_type(x_type), units=units)
    planes = [x]
    for j in range(draw(st.integers(1, 3))):
        vt = value_type(draw(st.sampled_from(["sun_real4", "little_endian_real8", "ascii14"])))
        props = draw(st.sampled_from([{}, {"fill": ("double", "-999")}]))
        if draw(st.booleans()):
            planes.append(
                Plane("yscan", vt, f"s{j}", "V", draw(st.integers(1, 3)), "Hz", properties=props)
            )
        else:
            planes.append(Plane("y", vt, f"y{j}", "nT", properties=props))
    header = PacketHeader(1, tuple(planes))
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(0, 40_000_000), min_size=n, max_size=n))  # microseconds
    us = int(T0 * 1e6) + np.cumsum(np.array(steps, dtype=np.int64))
    xs = us1970_to_units(us, units)
    columns = [np.asarray(xs, dtype=np.float64)]
    for p in planes[1:]:
        fill = float(p.properties.get("fill", ("", str(DEFAULT_FILL)))[1])
        count = n * p.nitems
        choice = st.one_of(
            st.floats(-1e6, 1e6).map(lambda v: float(f"{v:.6e}")),
            st.sampled_from([float("nan"), fill]),
        )
        vals = np.array(draw(st.lists(choice, min_size=count, max_size=count)))
        col = vals.reshape((n, p.nitems) if p.kind == "yscan" else (n,))
        columns.append(col.astype(p.type.native))
    width = draw(st.sampled_from([1.0, 10.0, 60.0, 0.25, 3600.0]))
    origin = draw(st.sampled_from([0.0, T0 + 0.3, -17.0]))
    return header, columns, width, origin


def assert_matches_reference(header, columns, width, origin, minmax, events_out) -> None:
    data = [e for e in events_out if isinstance(e, Data)]
    got = flatten_output(data)
    want = reference(header, columns, width, origin, minmax)
    assert sum(len(d) for d in data) == len(want)  # one record per bin, none twice
    assert sorted(got) == sorted(r[0] for r in want.values())
    out_header = data[0].header if data else None
    for record in want.values():
        values = reorder_minmax(got[record[0]], header, minmax)
        assert len(values) == len(record) - 1
        # output dtype per value, to know the tolerance
        dtypes = []
        for plane in out_header.planes[1:]:
            dtypes += [plane.type.native] * plane.nitems
        dtypes = reorder_minmax(dtypes, header, minmax)
        for v, r, dt in zip(values, record[1:], dtypes, strict=True):
            expect = float(np.asarray(r, dtype=dt))
            if dt == np.float32:
                assert v == pytest.approx(expect, rel=1e-6, abs=1e-30), (v, r)
            else:
                assert v == pytest.approx(expect, rel=1e-12, abs=1e-300), (v, r)


# ---------------------------------------------------------------- tests


@given(reducible(), st.booleans(), st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reducer_matches_plain_python_in_any_batching(case, minmax, data) -> None:
    header, columns, width, origin = case
    n = len(columns[0])
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    reducer = Reducer(width, origin, minmax)
    out = reducer.feed([StreamHeader(), header])
    last = 0
    for cut in [*cuts, n]:
        if cut > last:
            out += reducer.feed([Data(header, tuple(c[last:cut] for c in columns))])
        last = cut
    out += reducer.flush()
    assert_matches_reference(header, columns, width, origin, minmax, out)
    assert len([e for e in out if isinstance(e, Data)]) <= len(cuts) + 2


@given(reducible(), st.booleans(), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_order_inside_one_batch(case, minmax, rnd) -> None:
    header, columns, width, origin = case
    order = list(range(len(columns[0])))
    rnd.shuffle(order)
    shuffled = [c[order] for c in columns]
    reducer = Reducer(width, origin, minmax)
    out = reducer.feed([StreamHeader(), header, Data(header, tuple(shuffled))]) + reducer.flush()
    assert_matches_reference(header, columns, width, origin, minmax, out)


@given(reducible(), st.booleans(), st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_output_does_not_depend_on_chunking(case, minmax, data) -> None:
    """Same records whatever the chunking; sums split across chunks may round
    differently in the last bit, nothing more."""
    header, columns, width, origin = case
    raw = encode([StreamHeader(), header, Data(header, tuple(columns))])
    whole = decode(reduce_stream(raw, width, origin, minmax))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    r = StreamReducer(width, origin, minmax)
    out, last = b"", 0
    for cut in [*cuts, len(raw)]:
        out += r.feed(raw[last:cut])
        last = cut
    chunked = decode(out + r.finish())
    assert [type(e) for e in chunked] == [type(e) for e in whole]
    assert chunked[:2] == whole[:2]
    if len(whole) > 2:
        scale = max(1.0, *(float(np.nanmax(np.abs(c), initial=0)) for c in columns[1:]))
        for a, b in zip(chunked[2].columns, whole[2].columns, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            tol = 1e-6 if a.dtype == np.float32 else 1e-12
            assert np.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


def spectrogram(n: int, start: float = T0, cadence: float = 1.0):
    h = PacketHeader(
        1,
        (
            Plane("x", value_type("sun_real8"), units="t1970"),
            Plane("yscan", value_type("sun_real4"), "", "V", 3, "Hz", (1.0, 2.0, 3.0)),
        ),
    )
    t = start + np.arange(n) * cadence
    z = (np.arange(n * 3, dtype=np.float32) % 7).reshape(n, 3)
    return h, t, z


def test_output_is_a_valid_stream_with_cache_resolution() -> None:
    h, t, z = spectrogram(600)
    raw = encode(
        [
            StreamHeader({"title": ("String", "spec")}),
            Comment("taskSize", "10", "r"),
            h,
            Data(h, (t, z)),
        ]
    )
    events = decode(reduce_stream(raw, 60.0))
    head = events[0]
    assert head.properties["xCacheResolution"] == ("Datum", "60 s")
    assert head.properties["title"] == ("String", "spec")
    assert events[1] == Comment("taskSize", "10", "r")
    data = [e for e in events if isinstance(e, Data)]
    assert sum(len(d) for d in data) == 11  # 600 s from T0 (20 s into a minute) touch 11 bins
    x = np.concatenate([d.columns[0] for d in data])
    assert np.all(np.diff(x) == 60.0) and (x[0] - 30.0) % 60.0 == 0.0  # centres of aligned bins
    assert data[0].columns[1].shape == (len(data[0]), 3)


def test_blocks_reduced_apart_line_up_with_the_whole() -> None:
    """Split at a bin boundary, reduced separately, the pieces join to the whole."""
    h, t, z = spectrogram(7200, start=3600.0 * 472_222)  # starts on an hour
    cut = 3600
    whole = decode(reduce_stream(encode([StreamHeader(), h, Data(h, (t, z))]), 600.0))
    a = decode(reduce_stream(encode([StreamHeader(), h, Data(h, (t[:cut], z[:cut]))]), 600.0))
    b = decode(reduce_stream(encode([StreamHeader(), h, Data(h, (t[cut:], z[cut:]))]), 600.0))
    pick = lambda ev: coalesce([e for e in ev if isinstance(e, Data)])[0]  # noqa: E731
    joined = [np.concatenate([pick(a).columns[i], pick(b).columns[i]]) for i in range(2)]
    assert all(np.array_equal(j, w) for j, w in zip(joined, pick(whole).columns, strict=True))


def test_minmax_planes_and_fill() -> None:
    h = PacketHeader(
        2,
        (
            Plane("x", value_type("little_endian_real8"), units="t2000"),
            Plane(
                "y",
                value_type("little_endian_real4"),
                "B",
                "nT",
                properties={"fill": ("double", "-1")},
            ),
        ),
    )
    x = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 25.0])
    y = np.array([1.0, -1.0, 5.0, -1.0, np.nan, 2.0], dtype=np.float32)
    reducer = Reducer(10.0, origin=946_684_800.0, minmax=True)
    out = reducer.feed([StreamHeader(), h, Data(h, (x, y))]) + reducer.flush()
    header = out[1]
    assert [p.name for p in header.planes] == ["", "B", "B.min", "B.max"]
    assert header.planes[2].properties["operation"] == ("String", "BIN_MIN")
    data = coalesce([e for e in out if isinstance(e, Data)])[0]
    assert data.columns[0].tolist() == [5.0, 15.0, 25.0]
    assert data.columns[1].tolist() == [3.0, -1.0, 2.0]  # the middle bin has only fill and NaN
    assert data.columns[2].tolist() == [1.0, -1.0, 2.0]
    assert data.columns[3].tolist() == [5.0, -1.0, 2.0]


def test_redefinition_exception_and_late_data() -> None:
    h1 = PacketHeader(
        1,
        (
            Plane("x", value_type("sun_real8"), units="t1970"),
            Plane("y", value_type("sun_real8"), "a"),
        ),
    )
    h2 = PacketHeader(
        1, (Plane("x", value_type("time24"), units="t1970"), Plane("y", value_type("ascii12"), "b"))
    )
    reducer = Reducer(10.0)
    out = reducer.feed([StreamHeader(), h1, Data(h1, (np.array([1.0, 2.0]), np.array([1.0, 3.0])))])
    assert not [e for e in out if isinstance(e, Data)]  # the open bin waits for more data
    out = reducer.feed([h2])  # the redefinition closes it
    assert isinstance(out[0], Data) and out[0].columns[1].tolist() == [2.0]
    assert out[1].planes[0].type.name == "little_endian_real8" and out[1].planes[0].units == "t1970"
    out = reducer.feed([Data(h2, (np.array([21.0, 35.0]), np.array([4.0, 6.0])))])
    out += reducer.feed([Data(h2, (np.array([22.0]), np.array([8.0])))])  # late for a closed bin
    out += reducer.feed([StreamException("ServerError", "reader died")])
    data = [e for e in out if isinstance(e, Data)]
    assert [(d.columns[0].tolist(), d.columns[1].tolist()) for d in data] == [
        ([25.0], [4.0]),
        ([25.0], [8.0]),  # written again rather than lost
        ([35.0], [6.0]),  # flushed before the exception
    ]
    assert out[-1] == StreamException("ServerError", "reader died")


def test_non_time_axis_bins_in_x_units() -> None:
    h = PacketHeader(
        1,
        (Plane("x", value_type("sun_real8"), units="Hz"), Plane("y", value_type("sun_real8"), "p")),
    )
    reducer = Reducer(100.0, origin=50.0)
    out = reducer.feed(
        [StreamHeader(), h, Data(h, (np.array([49.0, 60.0, 149.0, 150.0]), np.arange(4.0)))]
    )
    data = coalesce([e for e in out + reducer.flush() if isinstance(e, Data)])[0]
    assert data.columns[0].tolist() == [0.0, 100.0, 200.0]
    assert data.columns[1].tolist() == [0.0, 1.5, 3.0]


def test_refusals() -> None:
    for bad in (0, -1, float("nan"), float("inf"), "60"):
        with pytest.raises(ValueError):
            Reducer(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Reducer(1.0, origin=float("inf"))
    h, t, z = spectrogram(3)
    with pytest.raises(Das2StreamError, match="before its header"):
        Reducer(1.0).feed([StreamHeader(), Data(h, (t, z))])
    with pytest.raises(Das2StreamError) as err:
        r = StreamReducer(1.0)
        r.feed(encode([StreamHeader(), h, Data(h, (t, z))]) + b"garbage!")
    assert err.value.output.startswith(b"[00]")  # what was good still came out


def test_fill_from_zfill_and_from_the_stream_header() -> None:
    h = PacketHeader(
        1,
        (
            Plane("x", value_type("sun_real8"), units="t1970"),
            Plane(
                "yscan",
                value_type("sun_real8"),
                "s",
                "V",
                2,
                "Hz",
                properties={"zFill": ("double", "-5")},
            ),
            Plane("y", value_type("sun_real8"), "y", "V"),
        ),
    )
    x = np.array([0.0, 1.0])
    scan = np.array([[-5.0, 2.0], [4.0, -5.0]])
    y = np.array([7.0, -9.0])
    reducer = Reducer(10.0)
    head = StreamHeader({"yFill": ("double", "-9")})
    out = reducer.feed([head, h, Data(h, (x, scan, y))]) + reducer.flush()
    data = coalesce([e for e in out if isinstance(e, Data)])[0]
    assert data.columns[1].tolist() == [[4.0, 2.0]]  # each item skips its own fills
    assert data.columns[2].tolist() == [7.0]  # the stream's yFill applies to y planes


def test_a_reduced_stream_reduces_again_with_its_extremes_kept_extreme() -> None:
    """A cache block (reduced with min/max planes) reduced to a coarser width:
    min planes give the minimum, max planes the maximum, no second set is added,
    and with equal counts per fine bin the means equal the direct reduction."""
    x = Plane("x", value_type("little_endian_real8"), units="t1970")
    h = PacketHeader(1, (x, Plane("y", value_type("little_endian_real8"), "B", "nT")))
    rng = np.random.default_rng(3)
    t = T0 - T0 % 600 + np.arange(6000) * 0.1  # ten per second, whole seconds aligned
    y = rng.normal(size=t.size)
    raw = encode([StreamHeader(), h, Data(h, (t, y))])
    fine = reduce_stream(raw, 1.0, minmax=True)
    twice = coalesce(decode(reduce_stream(fine, 60.0, minmax=True)))
    once = coalesce(decode(reduce_stream(raw, 60.0, minmax=True)))
    assert twice[0].properties["xCacheResolution"] == ("Datum", "60 s")
    assert twice[1] == once[1]  # the same planes: B, B.min, B.max
    a, b = twice[2], once[2]
    assert np.array_equal(a.columns[0], b.columns[0])
    np.testing.assert_allclose(a.columns[1], b.columns[1], rtol=1e-12, atol=1e-15)
    assert np.array_equal(a.columns[2], b.columns[2]) and np.array_equal(a.columns[3], b.columns[3])
