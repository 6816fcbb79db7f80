"""A node's `get_data` answer to numpy columns (pure: no I/O).

The answer is `{"data": {f: column}, "timeline": {tl: {"t": column, ...}}}`
with columns either JSON lists or binary arrays (`encoding="array"`); both
are decoded by `obsmesh.wire.decode`. The node is outside input too: a
missing or inconsistent column gives no series for that field, never an
exception that would take the other fields of the request with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from obsmesh import wire


class BadReply(ValueError):
    pass


def columns(
    reply: Any, wanted: Iterable[tuple[str, str]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{field: (t, values)}` for each wanted `(field, timeline)` the reply carries consistently."""
    if not isinstance(reply, dict):
        raise BadReply(f"get_data answered {type(reply).__name__}, not an object")
    data = reply.get("data")
    timelines = reply.get("timeline")
    if not isinstance(data, dict) or not isinstance(timelines, dict):
        raise BadReply("get_data answer lacks `data` or `timeline`")
    times: dict[str, np.ndarray | None] = {}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for field, timeline in wanted:
        if timeline not in times:
            times[timeline] = _times(timelines.get(timeline))
        t = times[timeline]
        if t is None or field not in data:
            continue
        try:
            values = wire.decode(data[field])
        except (ValueError, TypeError):
            continue
        if values.ndim != 1 or values.shape[0] != t.shape[0]:
            continue
        out[field] = (t, values)
    return out


def _times(entry: Any) -> np.ndarray | None:
    if not isinstance(entry, dict) or "t" not in entry:
        return None
    try:
        t = wire.decode(entry["t"])
    except (ValueError, TypeError):
        return None
    if t.ndim != 1 or t.dtype.kind not in "fiu":
        return None
    return t.astype(np.float64, copy=False)


def joined(
    parts: list[dict[str, tuple[np.ndarray, np.ndarray]]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Progressive chunks of one answer, in order, back into one column per field."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(f for part in parts for f in part):
        pieces = [part[name] for part in parts if name in part]
        t = np.concatenate([p[0] for p in pieces])
        values = np.concatenate([p[1] for p in pieces])
        out[name] = (t, values)
    return out
