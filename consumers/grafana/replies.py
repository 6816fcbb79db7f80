"""A node's `get_data` answer to numpy columns (pure: no I/O).

The answer is `{"data": {f: column}, "timeline": {tl: {"t": column, ...}}}`
with columns either JSON lists or binary arrays (`encoding="array"`); both
are decoded by `obsmesh.wire.decode`. The node is outside input too: a column
that does not fit its timeline (another length, no timeline, unreadable) is
an error for that field alone, naming the node and the field, so the Grafana
user sees why it has no points while the other fields of the request are
drawn. Nothing is dropped silently. A field with no data (an empty column,
and for sisock's nodes then no timeline either) is simply empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from obsmesh import wire


class BadReply(ValueError):
    """The whole answer is unusable (not an object, no `data` or `timeline`)."""


@dataclass
class Columns:
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # field -> (t, v)
    errors: dict[str, str] = field(default_factory=dict)  # field -> why it has no series
    absent: set[str] = field(default_factory=set)  # not in this answer (a chunk may hold others)


def columns(reply: Any, wanted: Iterable[tuple[str, str]], node: str = "?") -> Columns:
    """Each wanted `(field, timeline)`: its `(t, values)`, or an error naming `node` and field."""
    if not isinstance(reply, dict):
        raise BadReply(f"get_data answered {type(reply).__name__}, not an object")
    data = reply.get("data")
    timelines = reply.get("timeline")
    if not isinstance(data, dict) or not isinstance(timelines, dict):
        raise BadReply("get_data answer lacks `data` or `timeline`")
    times: dict[str, np.ndarray | str | None] = {}
    out = Columns()
    for name, timeline in wanted:
        where = f"node {node!r}, field {name!r}"
        if name not in data:
            out.absent.add(name)
            continue
        try:
            values = wire.decode(data[name])
        except (ValueError, TypeError) as exc:
            out.errors[name] = f"{where}: unreadable column ({exc})"
            continue
        if values.ndim != 1:
            out.errors[name] = f"{where}: the column is not one value per time"
            continue
        if timeline not in times:
            times[timeline] = _times(timelines.get(timeline))
        t = times[timeline]
        if t is None:  # no timeline in the answer: fine for a field without data
            if values.shape[0]:
                out.errors[name] = (
                    f"{where}: {values.shape[0]} values but no timeline {timeline!r} in the answer"
                )
            else:
                out.series[name] = (np.zeros(0), values)
            continue
        if isinstance(t, str):
            out.errors[name] = f"{where}: timeline {timeline!r} {t}"
            continue
        if values.shape[0] != t.shape[0]:
            out.errors[name] = (
                f"{where}: {values.shape[0]} values for {t.shape[0]} times of timeline {timeline!r}"
            )
            continue
        out.series[name] = (t, values)
    return out


def _times(entry: Any) -> np.ndarray | str | None:
    """A timeline's times; None when absent, else a complaint when unusable."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or "t" not in entry:
        return "has no times"
    try:
        t = wire.decode(entry["t"])
    except (ValueError, TypeError) as exc:
        return f"has unreadable times ({exc})"
    if t.ndim != 1 or t.dtype.kind not in "fiu":
        return "times are not numbers"
    return t.astype(np.float64, copy=False)


def joined(parts: list[Columns], node: str = "?") -> Columns:
    """One answer's parts (progressive chunks, in order; or the one reply) into
    one column per field. A field that failed in any part fails as a whole; a
    field no part carries is an error too."""
    out = Columns()
    for part in parts:
        for name, why in part.errors.items():
            out.errors.setdefault(name, why)
    for name in dict.fromkeys(f for part in parts for f in part.absent):
        if all(name in part.absent for part in parts):
            out.errors.setdefault(
                name, f"node {node!r}, field {name!r}: the answer has no column for it"
            )
    for name in dict.fromkeys(f for part in parts for f in part.series):
        if name in out.errors:
            continue
        pieces = [part.series[name] for part in parts if name in part.series]
        out.series[name] = (
            np.concatenate([p[0] for p in pieces]),
            np.concatenate([p[1] for p in pieces]),
        )
    return out
