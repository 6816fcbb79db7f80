"""das2 events as the mesh's columns: a dataset is a timeline, each plane a field.

A field is named `<dataset>.<plane name>` (an unnamed plane by its kind:
`y`, `z` or `yscan`). Times are UNIX seconds; values are float64 with the
plane's fill value (and NaN) as NaN, which travels as None. A `yscan` plane is
one field whose values are rows of `nitems` numbers (shape (n, nitems)).
Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nodes.das2.fill import fill_to_nan
from nodes.das2.reduce import plane_fill, plane_operation
from nodes.das2.service import StopStream, x_seconds
from nodes.das2.stream import (
    Data,
    Event,
    PacketHeader,
    Plane,
    Properties,
    StreamException,
    StreamHeader,
)
from obsmesh.errors import InvalidArgument, TooManyPoints, Unavailable


def field_name(dataset: str, plane: Plane) -> str:
    """`<dataset>.<plane>`; an unnamed plane by its kind, as the node names it
    in what it serves (`reduce.plane_names`)."""
    return f"{dataset}.{plane.name or plane.kind}"


def value_planes(header: PacketHeader) -> list[Plane]:
    """The planes that are fields: not x, not the extremes a reducer added."""
    return [p for p in header.planes[1:] if plane_operation(p) == "mean"]


def plane_meta(dataset: str, description: str, plane: Plane) -> dict:
    """What get_fields says about a plane's field (beyond the base's keys)."""
    meta: dict = {
        "description": f"{description} ({plane.kind} {plane.name or 'unnamed'})",
        "units": plane.units,
        "das2_plane": plane.name,
        "das2_kind": plane.kind,
    }
    if plane.kind == "yscan":
        meta["shape"] = [plane.nitems]
        meta["y_units"] = plane.y_units
        if plane.y_tags is not None:
            meta["y_tags"] = list(plane.y_tags)
        elif plane.y_tag_interval is not None:
            start = plane.y_tag_min or 0.0
            meta["y_tags"] = [start + i * plane.y_tag_interval for i in range(plane.nitems)]
    return meta


def plane_values(plane: Plane, values: np.ndarray, stream_props: Properties) -> np.ndarray:
    """Values as float64 with fill (within das2C's relative tolerance, `fill.py`)
    and NaN as NaN."""
    return fill_to_nan(values, plane_fill(plane, stream_props))


def row_width(col: np.ndarray) -> int:
    return int(np.prod(col.shape[1:])) if col.ndim > 1 else 1


@dataclass
class Collector:
    """Collects the asked fields of one dataset from its events (an `emit`).

    Past `max_values` values it stops the stream (StopStream) and remembers a
    TooManyPoints error; a stream exception other than "no data" becomes an
    Unavailable error. `result()` gives sorted times and the columns.
    """

    dataset: str
    fields: Sequence[str]
    max_values: int
    too_many: Callable[[int], str] = lambda n: f"more than {n} values"
    parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)
    values: int = 0
    error: Exception | None = None
    headers: list[PacketHeader] = field(default_factory=list)
    _stream_props: Properties = field(default_factory=dict)

    def __call__(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, StreamHeader):
                self._stream_props = ev.properties
            elif isinstance(ev, PacketHeader):
                self.headers.append(ev)
            elif isinstance(ev, Data) and len(ev):
                self._data(ev)
            elif isinstance(ev, StreamException) and ev.type == "IllegalArgument":
                self.error = InvalidArgument(f"{self.dataset}: {ev.message}")  # e.g. too large
            elif isinstance(ev, StreamException) and ev.type != "NoDataInInterval":
                self.error = Unavailable(f"{self.dataset}: {ev.type}: {ev.message}")

    def _data(self, data: Data) -> None:
        header = data.header
        t = x_seconds(header.planes[0], data.columns[0])
        if t is None:
            self.error = Unavailable(f"{self.dataset}: x is not a time, not a time series")
            raise StopStream()
        cols: dict[str, np.ndarray] = {}
        for plane, col in zip(header.planes[1:], data.columns[1:], strict=True):
            name = field_name(self.dataset, plane)
            if name in self.fields and plane_operation(plane) == "mean":
                cols[name] = plane_values(plane, col, self._stream_props)
        if not cols:
            return
        self.values += t.size * (1 + sum(row_width(c) for c in cols.values()))
        if self.values > self.max_values:
            self.error = TooManyPoints(self.too_many(self.values))
            raise StopStream()
        self.parts.append((t, cols))

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Times (sorted, stable) and one column per asked field (NaN where a
        packet did not carry that field)."""
        if self.error is not None:
            raise self.error
        return merge_parts(self.parts, self.fields)


def merge_parts(
    parts: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]], fields: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if not parts:
        return np.zeros(0), {f: np.zeros(0) for f in fields}
    t = np.concatenate([p[0] for p in parts])
    shapes: dict[str, tuple[int, ...]] = {}
    for _, cols in parts:
        for f, c in cols.items():
            known = shapes.setdefault(f, c.shape[1:])
            if known != c.shape[1:]:
                raise Unavailable(f"field {f!r} changed its number of items within one answer")
    out: dict[str, np.ndarray] = {}
    for f in fields:
        shape = shapes.get(f, ())
        out[f] = np.concatenate(
            [cols.get(f, np.full((pt.size, *shape), np.nan)) for pt, cols in parts]
        )
    if t.size > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        t = t[order]
        out = {f: c[order] for f, c in out.items()}
    return t, out
