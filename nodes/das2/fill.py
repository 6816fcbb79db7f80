"""Fill values, matched the way das2C matches them.

das2C takes a value as fill when `|(fill - v) / fill| < 1e-5` (or both are
zero), computed in double precision (`PlaneDesc_isFill`). A reader that wrote
-1.000001e31 for a fill of -1e31 therefore means fill, and obsmesh must read
it so too, or the value is averaged in as data.

Comparing that expression value by value is slow, so `fill_band` turns it
into the closed interval `[lo, hi]` of the values' own type that satisfies it
(the predicate is monotonic on either side of the fill): then a mask is two
comparisons in the values' type, with exactly das2C's answer.

NaN is never fill (das2C's test is false for NaN too). Unlike das2C, which
adds a NaN into the bin's sum and so makes the whole bin NaN, the obsmesh
reducer skips NaN like fill: NaN marks a missing sample, and one of them must
not blank a bin (`reduce.py`). Infinities are data in both.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FILL = -1e31
FILL_TOLERANCE = 1e-5  # das2C's PlaneDesc_isFill


def is_fill_scalar(value: float, fill: float) -> bool:
    """das2C's test, in double precision."""
    if fill == 0.0:
        return value == 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(abs((fill - value) / fill) < FILL_TOLERANCE)


def fill_band(fill: float, dtype: np.dtype) -> tuple[float, float] | None:
    """The smallest and largest values of `dtype` that das2C takes as `fill`,
    as numbers of that type; None when no value of the type is fill."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        dt = np.dtype(np.float64)
    ftype = dt.type
    fill = float(fill)
    if not np.isfinite(fill):
        return None
    if fill == 0.0:
        return (ftype(-0.0), ftype(0.0))
    edge = fill * (1 - FILL_TOLERANCE), fill * (1 + FILL_TOLERANCE)
    with np.errstate(over="ignore"):
        lo = ftype(min(edge))
        hi = ftype(max(edge))
    lo = _walk(lo, fill, ftype, -np.inf)
    hi = _walk(hi, fill, ftype, np.inf)
    if lo is None or hi is None or lo > hi:
        return None
    return lo, hi


def _walk(start, fill: float, ftype, outward: float):
    """From a first guess near one end of the band, step to the outermost value
    of the type that is still fill (a few steps: the guess is within an ulp or
    two of the band's edge)."""
    inward = -outward
    x = start
    for _ in range(64):  # step inwards until inside the band
        if is_fill_scalar(float(x), fill):
            break
        x = np.nextafter(x, ftype(inward))
    else:
        return None
    for _ in range(64):  # then outwards while still inside
        nxt = np.nextafter(x, ftype(outward))
        if not np.isfinite(nxt) or not is_fill_scalar(float(nxt), fill):
            return x
        x = nxt
    return x


def fill_mask(values: np.ndarray, band: tuple[float, float] | None) -> np.ndarray | None:
    """True where a value is fill (das2C's test) or NaN; None when none is."""
    bad = np.isnan(values)
    if band is not None:
        lo, hi = band
        inside = values >= lo
        inside &= values <= hi
        bad |= inside
    return bad if bad.any() else None


def fill_to_nan(values: np.ndarray, fill: float) -> np.ndarray:
    """Values as float64 with fill (das2C's test) as NaN."""
    values = np.asarray(values)
    out = values.astype(np.float64)
    band = fill_band(fill, values.dtype)
    if band is not None:
        lo, hi = band
        out[(values >= lo) & (values <= hi)] = np.nan
    return out
