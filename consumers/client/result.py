"""History replies (one reply, or progressive chunks) assembled into numpy
arrays per timeline. Pure: no I/O.

A reply is `{"data": {field: column}, "timeline": {tl: {"t": column,
"finalized_until": x}}}`. It does not say which timeline a field belongs to;
a progressive chunk carries one timeline, so that is clear, and otherwise
columns are matched to timelines by length, or by the node's field list when
lengths are ambiguous (`needs_field_map`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumers.client.errors import ProtocolError
from obsmesh import wire


def decode_column(value: Any, what: str) -> np.ndarray:
    """One wire column as numpy: binary arrays as they are, numbers with None as
    NaN, bools as bool (object with None where missing), strings as object."""
    if isinstance(value, list) and value and all(isinstance(v, bool) or v is None for v in value):
        if any(v is None for v in value):
            return np.array(value, dtype=object)
        return np.array(value, dtype=bool)
    try:
        column = wire.decode(value)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"{what}: {exc}") from None
    if column.ndim < 1:
        raise ProtocolError(f"{what}: expected a column, got a single value")
    return column  # rows along the first axis (das2 spectra are (n, nitems))


@dataclass
class Timeline:
    """The samples of one timeline: a time column and the fields on it."""

    name: str
    t: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    finalized_until: float | None = None

    def __len__(self) -> int:
        return int(self.t.size)

    def frame(self) -> Any:
        """This timeline as a pandas DataFrame indexed by UTC time."""
        pd = _pandas()
        # Microseconds: float UNIX seconds carry no more, and whole numbers avoid
        # float noise in the index (…12.009999990).
        micros = np.round(self.t * 1e6).astype(np.int64)
        index = pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True), name="time")
        # A column of rows (a spectrum per time) becomes one array per cell.
        data = {f: list(c) if c.ndim > 1 else c for f, c in self.data.items()}
        return pd.DataFrame(data, index=index)


class Result(Mapping[str, np.ndarray]):
    """`result[field]` is that field's values; `result.time(field)` their times;
    `result.timelines[name]` a `Timeline` with `.t` and `.data`."""

    def __init__(self, node: str, timelines: dict[str, Timeline]) -> None:
        self.node = node
        self.timelines = timelines
        self._where = {f: tl for tl in timelines.values() for f in tl.data}

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._where[name].data[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in this result (fields: {', '.join(self._where)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def timeline_of(self, name: str) -> Timeline:
        self[name]
        return self._where[name]

    def time(self, name: str) -> np.ndarray:
        """The time column (UNIX seconds) of a field's timeline."""
        return self.timeline_of(name).t

    @property
    def points(self) -> int:
        return sum(len(tl) for tl in self.timelines.values())

    def frame(self) -> Any:
        """All timelines in one pandas DataFrame indexed by UTC time (outer join
        on time; where times repeat within a timeline, rows are stacked instead)."""
        pd = _pandas()
        frames = [tl.frame() for tl in self.timelines.values()]
        if not frames:
            return pd.DataFrame(index=pd.DatetimeIndex([], name="time", tz="UTC"))
        if len(frames) == 1:
            return frames[0]
        if all(f.index.is_unique for f in frames):
            return pd.concat(frames, axis=1, sort=True).rename_axis("time")
        return pd.concat(frames, axis=0).sort_index(kind="stable")

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{tl.name}: {len(tl)} x {list(tl.data)}" for tl in self.timelines.values()
        )
        return f"<Result {self.node} {{{parts}}}>"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("DataFrames need pandas, which is optional: pip install pandas") from None
    return pandas


@dataclass
class _Chunk:
    timelines: dict[str, tuple[np.ndarray, float | None]]
    data: dict[str, np.ndarray]


class Assembler:
    """Collects replies in arrival order and builds the `Result`."""

    def __init__(self, node: str, fields: list[str]) -> None:
        self.node = node
        self.fields = fields
        self.chunks: list[_Chunk] = []
        self.rows = 0

    def reset(self) -> None:
        self.chunks.clear()
        self.rows = 0

    def add(self, reply: Any) -> int:
        """Decode one reply or chunk; returns the rows it brought."""
        if (
            not isinstance(reply, dict)
            or not isinstance(reply.get("data"), dict)
            or not isinstance(reply.get("timeline"), dict)
        ):
            raise ProtocolError(f"node {self.node!r} sent a reply without 'data' and 'timeline'")
        timelines: dict[str, tuple[np.ndarray, float | None]] = {}
        for name, entry in reply["timeline"].items():
            if not isinstance(entry, dict) or "t" not in entry:
                raise ProtocolError(f"node {self.node!r}: timeline {name!r} has no 't'")
            t = decode_column(entry["t"], f"timeline {name!r}")
            if t.dtype.kind not in "fiu":
                raise ProtocolError(
                    f"node {self.node!r}: times of timeline {name!r} are not numbers"
                )
            fin = entry.get("finalized_until")
            timelines[str(name)] = (
                t.astype(np.float64, copy=False),
                float(fin) if _is_number(fin) else None,
            )
        data = {str(f): decode_column(v, f"field {f!r}") for f, v in reply["data"].items()}
        chunk = _Chunk(timelines, data)
        self._attribute(chunk, None, strict=False)
        self.chunks.append(chunk)
        rows = sum(t.size for t, _ in timelines.values())
        self.rows += rows
        return rows

    def needs_field_map(self) -> bool:
        """True when some column's timeline cannot be told from lengths alone."""
        return any(
            len(c.timelines) > 1 and self._attribute(c, None, strict=False) is None
            for c in self.chunks
        )

    def _attribute(
        self, chunk: _Chunk, field_map: Mapping[str, str] | None, strict: bool
    ) -> dict[str, str] | None:
        """field -> timeline for one chunk; None when ambiguous and not strict."""
        out: dict[str, str] = {}
        sizes = {tl: t.size for tl, (t, _) in chunk.timelines.items()}
        for f, col in chunk.data.items():
            mapped = field_map.get(f) if field_map else None
            rows = len(col)
            if mapped in sizes and sizes[mapped] == rows:
                out[f] = mapped
                continue
            candidates = [tl for tl, n in sizes.items() if n == rows]
            if not candidates:
                raise ProtocolError(
                    f"node {self.node!r}: field {f!r} has {rows} values but no timeline has that many times"
                )
            if len(candidates) > 1 and not strict:
                return None
            out[f] = candidates[0]
        return out

    def result(self, field_map: Mapping[str, str] | None = None) -> Result:
        pieces: dict[str, list[np.ndarray]] = {}
        columns: dict[str, dict[str, list[np.ndarray]]] = {}
        finalized: dict[str, float | None] = {}
        for chunk in self.chunks:
            where = self._attribute(chunk, field_map, strict=True) or {}
            for tl, (t, fin) in chunk.timelines.items():
                pieces.setdefault(tl, []).append(t)
                columns.setdefault(tl, {})
                if fin is not None:
                    finalized[tl] = fin
            for f, col in chunk.data.items():
                columns[where[f]].setdefault(f, []).append(col)
        timelines = {}
        for tl, parts in pieces.items():
            t = _join(parts)
            data = {}
            for f in self.fields:
                if f in columns[tl]:
                    data[f] = _join(columns[tl][f])
                    if len(data[f]) != t.size:
                        raise ProtocolError(
                            f"node {self.node!r}: field {f!r} and its times differ in length"
                        )
            timelines[tl] = Timeline(tl, t, data, finalized.get(tl))
        return Result(self.node, timelines)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate chunks into one writable array (wire arrays are read-only views)."""
    if len(parts) == 1:
        return parts[0].copy()
    kinds = {p.dtype.kind for p in parts if p.size}
    if len(kinds) > 1 and "O" not in kinds and not kinds <= set("fiu"):
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
