"""Reductions for `min_stride`, vectorised: bins aligned to integer multiples of
the stride, one point per non-empty bin, stamped with the bin's centre
`(k + 0.5) * stride` (das2's convention), so successive points are always a
whole number of strides apart: never closer than `min_stride`, as sisock
promises. (A bin's mean sample time would put the points of two half-filled
neighbouring bins a fraction of a stride apart.)

- `bin_mean`: the mean of the finite values of each bin (a bin with no
  finite value gives NaN, which travels as None).
- `bin_minmax`: the minimum and the maximum of each bin, so spikes survive. A
  bin with one sample gives one point; others give two, both at the centre,
  carrying each field's minimum, then its maximum.

Times must be sorted (the stores guarantee it). Non-numeric columns keep the
first value of each bin (minmax: the first and the last).
"""

from __future__ import annotations

import numpy as np


def bin_starts(t: np.ndarray, stride: float) -> np.ndarray:
    """Indices where a new bin starts in sorted `t`; bin k is floor(t / stride) == k."""
    if t.size == 0:
        return np.zeros(0, dtype=np.intp)
    first, last = np.floor(t[0] / stride), np.floor(t[-1] / stride)
    nbins = int(last - first) + 1
    if nbins > t.size // 8:  # many small bins: one pass over every sample
        bins = np.floor(t / stride)
        change = np.flatnonzero(bins[1:] != bins[:-1]) + 1
        return np.concatenate(([0], change))
    # Few bins: binary-search each edge instead of touching every sample.
    k = first + np.arange(1, nbins)
    idx = np.searchsorted(t, k * stride, side="left")
    # k * stride may round differently from t / stride: nudge each edge until it
    # is exactly the first index whose floor(t / stride) reaches k (monotone in t).
    for _ in range(64):
        up = (idx < t.size) & (np.floor(t[np.minimum(idx, t.size - 1)] / stride) < k)
        down = (idx > 0) & (np.floor(t[np.maximum(idx - 1, 0)] / stride) >= k)
        if not (up.any() or down.any()):
            break
        idx = idx + up - down
    starts = np.concatenate(([0], idx))
    keep = np.concatenate(([True], np.diff(starts) > 0)) & (starts < t.size)
    return starts[keep]


def bin_centres(t: np.ndarray, starts: np.ndarray, stride: float) -> np.ndarray:
    """The centre `(k + 0.5) * stride` of each bin k that `starts` opens."""
    return (np.floor(t[starts] / stride) + 0.5) * stride


def _finite_mean(col: np.ndarray, starts: np.ndarray) -> np.ndarray:
    finite = np.isfinite(col)
    if finite.all():
        sums = np.add.reduceat(col, starts)
        counts = np.diff(np.append(starts, col.size))
        return sums / counts
    sums = np.add.reduceat(np.where(finite, col, 0.0), starts)
    counts = np.add.reduceat(finite.astype(np.int64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    out[counts == 0] = np.nan
    return out


def bin_mean(
    t: np.ndarray, columns: dict[str, np.ndarray], stride: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    starts = bin_starts(t, stride)
    if starts.size == 0:
        return t[:0], {k: v[:0] for k, v in columns.items()}
    out_t = bin_centres(t, starts, stride)
    out = {}
    for name, col in columns.items():
        if col.dtype.kind in "fiub":
            out[name] = _finite_mean(col.astype(np.float64, copy=False), starts)
        else:
            out[name] = col[starts]
    return out_t, out


def bin_minmax(
    t: np.ndarray, columns: dict[str, np.ndarray], stride: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    starts = bin_starts(t, stride)
    if starts.size == 0:
        return t[:0], {k: v[:0] for k, v in columns.items()}
    ends = np.append(starts[1:], t.size) - 1  # index of each bin's last sample
    pair = ends > starts  # bins with more than one sample give two points
    # Output slot of each bin's first point; a two-point bin takes two slots.
    slot = np.concatenate(([0], np.cumsum(1 + pair)[:-1]))
    n_out = int(slot[-1] + 1 + pair[-1])
    centres = bin_centres(t, starts, stride)
    out_t = np.empty(n_out)
    out_t[slot] = centres
    out_t[slot[pair] + 1] = centres[pair]
    out = {}
    for name, col in columns.items():
        if col.dtype.kind in "fiub":
            c = col.astype(np.float64, copy=False)
            lo = np.fmin.reduceat(c, starts)
            hi = np.fmax.reduceat(c, starts)
            o = np.empty(n_out)
            o[slot] = lo
            o[slot[pair] + 1] = hi[pair]
        else:
            o = np.empty(n_out, dtype=object)
            o[slot] = col[starts]
            o[slot[pair] + 1] = col[ends[pair]]
        out[name] = o
    return out_t, out


REDUCERS = {"mean": bin_mean, "minmax": bin_minmax}


def max_points(
    n_samples: int, start: float, end: float, stride: float | None, reduce: str = "mean"
) -> int:
    """An upper bound on the rows a query returns, known before reducing."""
    if stride is None:
        return n_samples
    span = max(end - start, 0.0)
    bins = (
        int(np.floor(end / stride) - np.floor(start / stride)) + 1
        if np.isfinite(span)
        else n_samples
    )
    per_bin = 2 if reduce == "minmax" else 1
    return min(n_samples, bins * per_bin)
