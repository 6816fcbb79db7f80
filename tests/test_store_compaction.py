"""The durable store's pure decisions: merges, retention, concatenation."""

from __future__ import annotations

import numpy as np

from obsmesh.store.compaction import FANOUT, concat, expired, merge_runs, over_budget, tier
from obsmesh.store.segments import Segment


def seg(seq: int, rows: int, first: float, last: float, nbytes: int = 100) -> Segment:
    return Segment("tl", seq, 0, f"/x/{seq}", rows, first, last, seq, nbytes)


def test_eight_small_segments_merge_and_a_bigger_one_waits():
    small = [seg(i, 100, 10.0 * i, 10.0 * i + 9) for i in range(1, 2 * FANOUT + 3)]
    runs = merge_runs(small, max_rows=10**6, max_span=1e9)
    assert [[s.seq for s in r] for r in runs] == [list(range(1, 9)), list(range(9, 17))]
    assert tier(100) == tier(1023) == 0 and tier(1024) == 1 and tier(8 * 1024) == 2
    big = seg(0, 5000, 0, 1)
    assert merge_runs([big, *small[:3]], 10**6, 1e9) == []  # a tier apart: no merge


def test_limits_cut_runs_and_a_full_segment_is_left_alone():
    segs = [seg(i, 100, 100.0 * i, 100.0 * i + 99) for i in range(1, 7)]
    runs = merge_runs(segs, max_rows=10**6, max_span=250)
    assert [[s.seq for s in r] for r in runs] == [[1, 2], [3, 4]]  # 5, 6 wait for more
    assert merge_runs([seg(1, 100, 0, 300), seg(2, 100, 300, 600)], 10**6, 250) == []
    assert merge_runs([seg(i, 600, i, i) for i in range(8)], max_rows=1000, max_span=1e9) == []


def test_retention_by_age_then_rows_then_bytes():
    segs = [seg(i, 100, 100.0 * i, 100.0 * i + 99) for i in range(10)]
    assert [s.seq for s in expired(segs, newest=999, max_age=500, max_samples=10**6)] == [
        0,
        1,
        2,
        3,
    ]
    gone = expired(segs, newest=999, max_age=1e9, max_samples=350)
    assert [s.seq for s in gone] == [0, 1, 2, 3, 4, 5]  # 400 rows stay: never fewer than asked
    assert [s.seq for s in over_budget(segs, max_bytes=450)] == [0, 1, 2, 3, 4, 5]


def test_concat_keeps_write_order_at_equal_times_and_fills_missing_fields():
    parts = [
        (np.array([1.0, 3.0]), {"a": np.array([10.0, 30.0])}),
        (np.array([2.0, 3.0]), {"b": np.array(["x", "y"], dtype=object)}),
    ]
    t, cols = concat(parts, {"a": "number", "b": "string"})
    assert t.tolist() == [1.0, 2.0, 3.0, 3.0]
    assert np.array_equal(cols["a"], [10.0, np.nan, 30.0, np.nan], equal_nan=True)
    assert cols["b"].tolist() == [None, "x", None, "y"]
