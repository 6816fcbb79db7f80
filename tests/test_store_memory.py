"""The in-memory store and the reductions against plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsmesh.store import MemoryStore, StoreError
from obsmesh.store.reduce import bin_mean, bin_minmax, max_points

FIELDS = ["a", "b"]

finite = st.floats(-1e6, 1e6, allow_nan=False)
value = st.one_of(finite, st.just(math.nan))
row = st.tuples(st.floats(0, 1000, allow_nan=False), value, value)
batch = st.lists(row, min_size=0, max_size=40)


def reference_query(rows, start, end):
    kept = sorted([r for r in rows if start <= r[0] < end], key=lambda r: r[0])  # stable
    return [r[0] for r in kept], {f: [r[i + 1] for r in kept] for i, f in enumerate(FIELDS)}


def same(xs, ys):
    return len(xs) == len(ys) and all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(xs, ys, strict=True)
    )


@pytest.mark.slow  # measured 4.2 s (property test)
@settings(max_examples=200, deadline=None)
@given(batches=st.lists(batch, max_size=12), start=st.floats(0, 1000), width=st.floats(0, 1000))
def test_store_matches_reference_for_any_batches(batches, start, width):
    store = MemoryStore(max_age=1e9, max_samples=10**9)
    for f in FIELDS:
        store.declare(f, "number")
    rows = []
    for b in batches:
        ts = [r[0] for r in b]
        store.append_now("tl", ts, {"a": [r[1] for r in b], "b": [r[2] for r in b]})
        # within a batch the store sorts stably by time as well
        rows.extend(sorted(b, key=lambda r: r[0]))
    end = start + width
    t, cols = store.query_now("tl", FIELDS, start, end)
    rt, rcols = reference_query(rows, start, end)
    assert t.tolist() == rt
    for f in FIELDS:
        assert same(cols[f].tolist(), rcols[f])


def _fill(store, batches):
    for f in FIELDS:
        store.declare(f, "number")
    for b in batches:
        store.append_now("tl", [r[0] for r in b], {"a": [r[1] for r in b], "b": [r[2] for r in b]})
    return store.query_now("tl", FIELDS, 0, 2000)


@settings(max_examples=50, deadline=None)
@given(batches=st.lists(batch, min_size=1, max_size=8))
def test_small_chunks_give_the_same_answers(batches):
    import obsmesh.store.memory as memory

    old = memory.CHUNK_ROWS, memory.FIRST_ROWS
    memory.CHUNK_ROWS, memory.FIRST_ROWS = 4, 1  # many chunks, merges across them
    try:
        t1, c1 = _fill(MemoryStore(1e9, 10**9), batches)
    finally:
        memory.CHUNK_ROWS, memory.FIRST_ROWS = old
    t2, c2 = _fill(MemoryStore(1e9, 10**9), batches)
    assert t1.tolist() == t2.tolist()
    assert all(same(c1[f].tolist(), c2[f].tolist()) for f in FIELDS)


def test_fields_missing_from_a_batch_or_declared_later_read_as_missing():
    s = MemoryStore()
    s.declare("a", "number")
    s.declare("s", "string")
    s.append_now("tl", [1.0, 2.0], {"a": [1, 2]})
    s.declare("late", "number")
    s.append_now("tl", [3.0], {"s": ["x"], "late": [7]})
    t, cols = s.query_now("tl", ["a", "s", "late"], 0, 10)
    assert t.tolist() == [1.0, 2.0, 3.0]
    assert same(cols["a"].tolist(), [1.0, 2.0, math.nan])
    assert cols["s"].tolist() == [None, None, "x"]
    assert same(cols["late"].tolist(), [math.nan, math.nan, 7.0])


def test_bad_batches_store_nothing():
    s = MemoryStore()
    s.declare("a", "number")
    s.append_now("tl", [1.0], {"a": [1.0]})
    for t, cols in [
        ([2.0], {"zz": [1]}),
        ([2.0, 3.0], {"a": [1]}),
        ([math.nan], {"a": [1]}),
        ([2.0], {"a": ["x"]}),
    ]:
        with pytest.raises(StoreError):
            s.append_now("tl", t, cols)
    t, cols = s.query_now("tl", ["a"], 0, 10)
    assert t.tolist() == [1.0] and cols["a"].tolist() == [1.0]


def test_eviction_by_size_and_age():
    s = MemoryStore(max_age=100.0, max_samples=1000)
    s.declare("a", "number")
    for k in range(10):
        t = np.arange(k * 500, (k + 1) * 500) * 0.1  # 500 samples per 50 s
        s.append_now("tl", t, {"a": t})
    assert s.size("tl") == 1000  # both limits: 100 s at 10 Hz = 1000 samples
    t, _ = s.query_now("tl", ["a"], 0, 1e9)
    assert t.size == 1000 and t[-1] == pytest.approx(499.9) and t[0] == pytest.approx(400.0)
    s2 = MemoryStore(max_age=10.0, max_samples=10**6)
    s2.declare("a", "number")
    s2.append_now("tl", np.arange(100.0), {"a": np.arange(100.0)})
    t, _ = s2.query_now("tl", ["a"], 0, 1e9)
    assert t.tolist() == list(np.arange(89.0, 100.0))


def test_memory_stays_close_to_the_raw_bytes():
    s = MemoryStore(1e9, 10**9)
    for i in range(10):
        s.declare(f"f{i}", "number")
    t = np.arange(300_000.0)
    for a in range(0, t.size, 1000):
        s.append_now("tl", t[a : a + 1000], {f"f{i}": t[a : a + 1000] for i in range(10)})
    assert s.nbytes() <= 1.3 * t.size * 8 * 11


# -- reductions --------------------------------------------------------------


def ref_bins(t, v, stride):
    bins = {}
    for ti, vi in zip(t, v, strict=True):
        bins.setdefault(math.floor(ti / stride), []).append((ti, vi))
    return [bins[k] for k in sorted(bins)]


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(0, 1e4, allow_nan=False), value), min_size=0, max_size=200),
    stride=st.floats(0.5, 500),
)
@pytest.mark.slow  # over 1 s in the unit lane (property test)
def test_mean_and_minmax_match_plain_python(data, stride):
    data.sort(key=lambda r: r[0])
    t = np.array([r[0] for r in data], dtype=float)
    v = np.array([r[1] for r in data], dtype=float)
    mt, mc = bin_mean(t, {"v": v}, stride)
    groups = ref_bins(t.tolist(), v.tolist(), stride)
    assert len(mt) == len(groups)
    centres = [(math.floor(g[0][0] / stride) + 0.5) * stride for g in groups]
    for i, g in enumerate(groups):
        assert mt[i] == pytest.approx(centres[i], rel=1e-12, abs=1e-9)  # the bin's centre
        good = [x[1] for x in g if math.isfinite(x[1])]
        if good:
            assert mc["v"][i] == pytest.approx(sum(good) / len(good), rel=1e-9, abs=1e-6)
        else:
            assert math.isnan(mc["v"][i])
    xt, xc = bin_minmax(t, {"v": v}, stride)
    expect_t, expect_v = [], []
    for g, centre in zip(groups, centres, strict=True):
        good = [x[1] for x in g if math.isfinite(x[1])]
        lo, hi = (min(good), max(good)) if good else (math.nan, math.nan)
        if len(g) == 1:
            expect_t.append(centre)
            expect_v.append(lo)
        else:
            expect_t += [centre, centre]  # both at the centre, the minimum first
            expect_v += [lo, hi]
    assert xt.tolist() == pytest.approx(expect_t, rel=1e-12, abs=1e-9)
    assert same(xc["v"].tolist(), expect_v)
    # sisock's promise: successive points are at least min_stride apart
    steps = np.diff(mt) / stride
    assert (steps > 1 - 1e-9).all() and np.allclose(steps, np.round(steps), atol=1e-6)
    distinct = np.unique(xt)
    assert distinct.tolist() == pytest.approx(mt.tolist(), rel=1e-12, abs=1e-9)
    assert len(mt) <= max_points(
        len(t), float(t[0]) if len(t) else 0.0, float(t[-1]) if len(t) else 0.0, stride
    )


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1.0, 1e3, 1e9]),
    fraction=st.sampled_from([0.1, 0.3, 1 / 3, 7.7, 1e-3]),
)
def test_bin_edges_by_search_equal_floor_definition(seed, scale, fraction):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.random(5000) * scale + scale)
    stride = fraction * (t[-1] - t[0] + 1e-9) / 50
    bins = np.floor(t / stride)
    expected = np.concatenate(([0], np.flatnonzero(bins[1:] != bins[:-1]) + 1))
    from obsmesh.store.reduce import bin_starts

    assert np.array_equal(bin_starts(t, stride), expected)
