"""The numpy time-bin reducer against a plain-Python reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.das2.fill import is_fill_scalar
from nodes.das2.reduce import DEFAULT_FILL, Reducer, StreamReducer, plane_fill, reduce_stream
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
from nodes.das2.timefmt import (
    seconds_per_unit,
    time_units,
    units_to_us1970,
    unix_to_units,
    us1970_to_units,
)

T0 = 1_700_000_000.0  # a UNIX time inside the test data


# ---------------------------------------------------------------- reference


def reference(header: PacketHeader, columns, width: float, origin: float):
    """Plain Python: {bin: [x, then per value plane per item (mean, min, max, n, sum|x|)]}
    with das2C's fill test and exact sums (math.fsum)."""
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
            fill = plane_fill(plane)
            items = col.reshape(len(col), -1)
            for k in range(items.shape[1]):
                vals = [float(items[r, k]) for r in rows]
                good = [v for v in vals if not math.isnan(v) and not is_fill_scalar(v, fill)]
                if good:
                    mags = math.fsum(abs(v) for v in good)
                    record.append(
                        (math.fsum(good) / len(good), min(good), max(good), len(good), mags)
                    )
                else:
                    record.append((fill, fill, fill, 0, 0.0))
        out[b] = record
    return out


def output_rows(data: list[Data], header: PacketHeader, minmax: bool) -> dict[float, list]:
    """Reducer output as {x: per value plane per item [mean, min, max]} (min and
    max None without minmax), checking the planes are as das2C writes them."""
    out_header = data[0].header
    names = [p.name for p in out_header.planes]
    value_names = [p.name for p in header.planes[1:]]
    expect = ["time", *value_names]
    if minmax:
        expect += [f"{n}.{s}" for n in value_names for s in ("min", "max")]
    assert names == expect
    for p in out_header.planes[1 : 1 + len(value_names)]:
        assert p.properties["operation"] == ("String", "BIN_AVG")
        assert p.properties["source"] == ("String", p.name)
    rows: dict[float, list] = {}
    for d in data:
        n = len(d)
        col = {p.name: c.reshape(n, -1) for p, c in zip(out_header.planes, d.columns, strict=True)}
        for i in range(n):
            record = []
            for name in value_names:
                for k in range(col[name].shape[1]):
                    lo = float(col[f"{name}.min"][i, k]) if minmax else None
                    hi = float(col[f"{name}.max"][i, k]) if minmax else None
                    record.append([float(col[name][i, k]), lo, hi])
            rows[float(d.columns[0][i])] = record
    return rows


def rounding(mean: float, n: int, mags: float, dtype) -> float:
    """How far a float mean may be from the exact one: the float64 sum's rounding
    in any order ((n + 1) units in the last place of sum|x|, over n), then one
    step of the output type."""
    cast = np.asarray(mean, dtype=dtype)
    return (n + 1) * 2.0**-53 * mags / max(n, 1) + float(np.spacing(np.abs(cast)))


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
        # fill as das2C reads it: within 1e-5 relative is fill, 2e-5 away is data
        near = [fill, fill * (1 + 4e-6), fill * (1 - 9e-6), fill * (1 + 2e-5)]
        choice = st.one_of(
            st.floats(-1e6, 1e6).map(lambda v: float(f"{v:.6e}")),
            st.sampled_from([float("nan"), *near]),
        )
        vals = np.array(draw(st.lists(choice, min_size=count, max_size=count)))
        col = vals.reshape((n, p.nitems) if p.kind == "yscan" else (n,))
        columns.append(col.astype(p.type.native))
    width = draw(st.sampled_from([1.0, 10.0, 60.0, 0.25, 3600.0]))
    origin = draw(st.sampled_from([0.0, T0 + 0.3, -17.0]))
    return header, columns, width, origin


def assert_matches_reference(header, columns, width, origin, minmax, events_out) -> None:
    """Every bin once, at its centre; means within float rounding of the exact
    mean; minima and maxima exact; empty bins are the fill value."""
    data = [e for e in events_out if isinstance(e, Data)]
    want = reference(header, columns, width, origin)
    assert sum(len(d) for d in data) == len(want)  # one record per bin, none twice
    got = output_rows(data, header, minmax)
    assert sorted(got) == sorted(r[0] for r in want.values())
    dtypes = []
    for plane in data[0].header.planes[1 : len(header.planes)]:
        dtypes += [plane.type.native] * plane.nitems
    for record in want.values():
        values = got[record[0]]
        assert len(values) == len(record) - 1
        for (mean, lo, hi), (r_mean, r_lo, r_hi, n, mags), dt in zip(
            values, record[1:], dtypes, strict=True
        ):
            cast = lambda v, dt=dt: float(np.asarray(v, dtype=dt))  # noqa: E731
            assert abs(mean - cast(r_mean)) <= rounding(r_mean, n, mags, dt), (mean, r_mean)
            if minmax:
                assert (lo, hi) == (cast(r_lo), cast(r_hi))


# ---------------------------------------------------------------- tests


@pytest.mark.slow  # measured 3.5-6.9 s (property tests)
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


@pytest.mark.slow  # measured 3.5-6.9 s (property tests)
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


@pytest.mark.slow  # measured 3.5-6.9 s (property tests)
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
    assert [p.name for p in header.planes] == ["time", "B", "B.min", "B.max"]
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


def test_cancellation_is_float_rounding_not_an_error() -> None:
    """The example main's property test found: 1e5, a tiny value and -1e5 in
    one bin. The exact mean is the tiny value over three; a float64 sum gives 0.
    Both are within float rounding of each other (the bound the property tests
    use), and the reducer must not do worse."""
    h = PacketHeader(
        1,
        (
            Plane("x", value_type("sun_real8"), units="t1970"),
            Plane("y", value_type("ascii14"), "a"),
        ),
    )
    cols = [np.array([T0, T0 + 0.1, T0 + 0.2]), np.array([1e5, 3.9e-248, -1e5])]
    r = Reducer(1.0)
    out = r.feed([StreamHeader(), h, Data(h, tuple(cols))]) + r.flush()
    assert_matches_reference(h, cols, 1.0, 0.0, False, out)


def blocks_of(header, columns, level: float, cuts_s: list[float], minmax: bool) -> list[bytes]:
    """Cache blocks as the node builds them: the raw records of each period
    [cut_i, cut_i+1) reduced to `level` as partial aggregates."""
    unix = units_to_us1970(columns[0], time_units(header.planes[0].units)) / 1e6
    edges = [-np.inf, *cuts_s, np.inf]
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        keep = (unix >= a) & (unix < b)
        if keep.any():
            raw = encode([StreamHeader(), header, Data(header, tuple(c[keep] for c in columns))])
            out.append(reduce_stream(raw, level, minmax=minmax, partial=True))
    return out


@pytest.mark.slow  # measured 3.5-6.9 s (property tests)
@given(reducible(), st.booleans(), st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_an_answer_from_blocks_is_the_reduction_of_the_raw_stream(case, minmax, data) -> None:
    """Blocks keep sums, counts, minima and maxima per bin: reduced again to any
    multiple of their resolution they give the raw stream's reduction (float
    rounding of the sums aside), fill records and NaN included, whatever the
    block boundaries (a block edge may split a bin: its two parts join)."""
    header, columns, _width, _origin = case
    # the values as the stream carries them (ascii planes hold fewer digits)
    columns = list(
        coalesce(decode(encode([StreamHeader(), header, Data(header, tuple(columns))])))[2].columns
    )
    level = data.draw(st.sampled_from([0.25, 1.0, 7.0, 10.0]))
    width = level * data.draw(st.sampled_from([1, 2, 6, 60]))
    cuts = sorted(data.draw(st.lists(st.floats(0, 3000), max_size=4)))
    blocks = blocks_of(header, columns, level, [T0 - 5 + c for c in cuts], minmax)
    # as the service joins segments: one stream header, equal packet headers once
    r = Reducer(width, 0.0, minmax)
    out = r.feed([StreamHeader()])
    seen = None
    for raw in blocks:
        for ev in decode(raw):
            if isinstance(ev, PacketHeader):
                if ev == seen:
                    continue
                seen = ev
            if not isinstance(ev, StreamHeader):
                out += r.feed([ev])
    out += r.flush()
    assert_matches_reference(header, columns, width, 0.0, minmax, out)
    # and the blocks themselves say what they are
    head = decode(blocks[0])[1]
    ops = {p.name: p.properties.get("operation", ("", ""))[1] for p in head.planes[1:]}
    for p in header.planes[1:]:
        assert ops[p.name] == "BIN_AVG"
        assert (ops[f"{p.name}.sum"], ops[f"{p.name}.count"]) == ("BIN_SUM", "BIN_COUNT")
        assert (ops[f"{p.name}.min"], ops[f"{p.name}.max"]) == ("BIN_MIN", "BIN_MAX")
