"""Fill values as das2C matches them (relative tolerance 1e-5), NaN never fill."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from nodes.das2.fill import fill_band, fill_mask, fill_to_nan, is_fill_scalar

FILLS = [-1e31, 1e31, -999.0, 0.0, 1e-40, -3.4e38, 1e300, 65535.0]


def neighbourhood(fill: float, dtype) -> np.ndarray:
    """Values around both edges of the band: every representable step there."""
    t = np.dtype(dtype).type
    with np.errstate(over="ignore"):
        out = [t(fill)]  # (1e300 is inf as a float32: no float32 value is its fill)
    for edge in (fill * (1 - 1e-5), fill * (1 + 1e-5)):
        with np.errstate(over="ignore"):
            x = t(edge)
        if not np.isfinite(x):
            continue
        lo = hi = x
        for _ in range(6):
            lo = np.nextafter(lo, t(-np.inf))
            hi = np.nextafter(hi, t(np.inf))
            out += [lo, hi]
    return np.array([v for v in out if np.isfinite(v)], dtype=dtype)


def test_the_band_is_exactly_das2cs_test_at_its_edges() -> None:
    for fill in FILLS:
        for dtype in (np.float32, np.float64):
            values = neighbourhood(fill, dtype)
            want = np.array([is_fill_scalar(float(v), fill) for v in values])
            got = fill_mask(values, fill_band(fill, dtype))
            got = np.zeros(values.size, bool) if got is None else got
            assert np.array_equal(got, want), (fill, dtype)


@given(
    st.sampled_from(FILLS),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=50),
    st.sampled_from([np.float32, np.float64]),
)
def test_any_value_is_fill_exactly_when_das2c_says_so(fill, values, dtype) -> None:
    v = np.array(values, dtype=dtype)
    mask = fill_mask(v, fill_band(fill, dtype))
    mask = np.zeros(v.size, bool) if mask is None else mask
    want = [np.isnan(x) or is_fill_scalar(float(x), fill) for x in v]
    assert mask.tolist() == want


def test_the_issues_example_and_nan() -> None:
    """-1.000001e31 is fill for -1e31 (das2C averages it out); NaN is never fill
    but is skipped all the same (fill_mask marks both); 2e-5 away is data."""
    assert is_fill_scalar(-1.000001e31, -1e31)
    assert not is_fill_scalar(-1.00002e31, -1e31)
    assert not is_fill_scalar(float("nan"), -1e31)
    v = np.array([-1.000001e31, np.nan, 3.0, -1.00002e31], dtype=np.float32)
    assert fill_mask(v, fill_band(-1e31, np.float32)).tolist() == [True, True, False, False]
    out = fill_to_nan(v, -1e31)
    assert np.isnan(out[:2]).all() and out[2] == 3.0 and out[3] == np.float32(-1.00002e31)
