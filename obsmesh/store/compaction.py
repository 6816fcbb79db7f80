"""Pure decisions of the durable store: which segments to merge, which retention
removes, and how batches of one timeline become one sorted run of rows.

Compaction is tiered: a segment's tier is the power of FANOUT its rows reach
past BASE_ROWS; FANOUT consecutive segments (in write order) of one tier merge
into one of the next, as long as the result stays within `max_rows` rows and
`max_span` seconds (a fraction of max_age, so retention frees disk in steps of
that size); fewer merge when those limits stop the run. A timeline written
once a second for a week ends as some dozens of files, however often the log
was rolled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from obsmesh.store.base import missing_column
from obsmesh.store.segments import Segment

FANOUT = 8
BASE_ROWS = 1024


def tier(rows: int) -> int:
    if rows < BASE_ROWS:
        return 0
    return int(math.log(rows / BASE_ROWS, FANOUT)) + 1


def merge_runs(segs: Sequence[Segment], max_rows: int, max_span: float) -> list[list[Segment]]:
    """Runs of one timeline's segments to merge: consecutive ones (in write order)
    of one tier, taken while the result stays within `max_rows` and `max_span`.
    A run merges when it holds FANOUT segments, or at least two that the limit
    keeps from growing (else segments just short of the limit would pile up)."""
    ordered = sorted(segs, key=lambda s: s.order)
    runs: list[list[Segment]] = []
    i = 0
    while i < len(ordered):
        level = tier(ordered[i].rows)
        run = [ordered[i]]
        rows, first, last = ordered[i].rows, ordered[i].first, ordered[i].last
        j = i + 1
        blocked = False
        while j < len(ordered) and len(run) < FANOUT and tier(ordered[j].rows) == level:
            nxt = ordered[j]
            grown = (rows + nxt.rows, min(first, nxt.first), max(last, nxt.last))
            if grown[0] > max_rows or grown[2] - grown[1] > max_span:
                blocked = True
                break
            run.append(nxt)
            rows, first, last = grown
            j += 1
        if len(run) == FANOUT or (blocked and len(run) >= 2):
            runs.append(run)
        i = j
    return runs


def expired(
    segs: Sequence[Segment],
    newest: float,
    max_age: float,
    max_samples: int,
    unsegmented_rows: int = 0,
) -> list[Segment]:
    """One timeline's segments retention removes: whole segments older than
    `newest - max_age`, then the oldest while the rest still hold max_samples."""
    cutoff = newest - max_age
    gone = [s for s in segs if s.last < cutoff]
    rest = sorted((s for s in segs if s.last >= cutoff), key=lambda s: (s.last, s.order))
    total = sum(s.rows for s in rest) + unsegmented_rows
    for s in rest:
        if total - s.rows < max_samples:
            break
        gone.append(s)
        total -= s.rows
    return gone


def over_budget(segs: Sequence[Segment], max_bytes: int) -> list[Segment]:
    """Oldest segments (by last time, any timeline) to remove to fit `max_bytes`."""
    total = sum(s.nbytes for s in segs)
    gone = []
    for s in sorted(segs, key=lambda s: (s.last, s.order)):
        if total <= max_bytes:
            break
        gone.append(s)
        total -= s.nbytes
    return gone


def concat(
    parts: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]], types: Mapping[str, str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Batches of one timeline, in write order, as one run sorted by time (stable:
    rows with equal times keep their write order); a field a batch lacks is missing there."""
    names = list(dict.fromkeys(n for _, cols in parts for n in cols))
    if len(parts) == 1:
        t, cols = parts[0]
        out = {n: cols[n] for n in names}
    else:
        t = np.concatenate([p[0] for p in parts])
        out = {
            n: np.concatenate(
                [
                    cols[n] if n in cols else missing_column(types[n], pt.shape[0])
                    for pt, cols in parts
                ]
            )
            for n in names
        }
    if t.shape[0] > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        t = t[order]
        out = {n: c[order] for n, c in out.items()}
    return t, out
