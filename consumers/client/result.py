"""History replies (one reply, or progressive chunks) assembled into numpy
arrays per timeline. Pure: no I/O.

A reply is `{"data": {field: column}, "timeline": {tl: {"t": column,
"finalized_until": x}}}`. A column is one value a sample, or, for a field with
items (a das2 `yscan`: a spectrum a sample), one row of items a sample: nested
lists, or an array of shape (n, items); those come out as 2-D float arrays
(NaN where the node sent None), and `Result.tidy` gives them as a long frame. It does not say which timeline a field belongs to;
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


def decode_column(value: Any, what: str, rows: bool = False) -> np.ndarray:
    """One wire column as numpy: binary arrays as they are, numbers with None as
    NaN, bools as bool (object with None where missing), strings as object.
    With `rows`, a column of rows (nested lists or an (n, items) array) is a
    2-D float array."""
    if isinstance(value, list) and value and all(isinstance(v, bool) or v is None for v in value):
        if any(v is None for v in value):
            return np.array(value, dtype=object)
        return np.array(value, dtype=bool)
    if rows and isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return _rows(value, what)
    try:
        column = wire.decode(value)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"{what}: {exc}") from None
    if column.ndim == 2 and rows and column.dtype.kind in "fiu":
        return column
    if column.ndim != 1:
        raise ProtocolError(f"{what}: expected a flat column, got shape {column.shape}")
    return column


def _rows(value: list[list], what: str) -> np.ndarray:
    """Nested lists of numbers (None: missing) as a 2-D float array."""
    table = np.array(value, dtype=object)
    if table.ndim != 2:
        raise ProtocolError(f"{what}: rows of different lengths")
    missing = np.equal(table, None)
    table[missing] = np.nan
    if any(isinstance(v, bool | str | bytes) for v in table.flat):
        raise ProtocolError(f"{what}: rows must hold numbers")
    try:
        return table.astype(np.float64)
    except (TypeError, ValueError):
        raise ProtocolError(f"{what}: rows must hold numbers") from None


@dataclass
class Timeline:
    """The samples of one timeline: a time column and the fields on it."""

    name: str
    t: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    finalized_until: float | None = None

    def __len__(self) -> int:
        return int(self.t.size)

    def _index(self) -> Any:
        pd = _pandas()
        # Microseconds: float UNIX seconds carry no more, and whole numbers avoid
        # float noise in the index (…12.009999990).
        micros = np.round(self.t * 1e6).astype(np.int64)
        return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True), name="time")

    def frame(self) -> Any:
        """This timeline as a pandas DataFrame indexed by UTC time; a field with
        items is one column per item, `field[0]`, `field[1]`, ..."""
        pd = _pandas()
        columns: dict[str, np.ndarray] = {}
        for f, col in self.data.items():
            if col.ndim == 2:
                columns.update({f"{f}[{i}]": col[:, i] for i in range(col.shape[1])})
            else:
                columns[f] = col
        return pd.DataFrame(columns, index=self._index())

    def tidy(self, name: str, y: Any = None) -> Any:
        """One field as a long ("tidy") DataFrame: a row per sample and item,
        columns `time`, `item` (the item's index), `y` (the item's coordinate,
        e.g. its frequency, when given) and `value`."""
        pd = _pandas()
        col = self.data[name]
        items = col.shape[1] if col.ndim == 2 else 1
        values = col.reshape(len(col), items)
        frame = pd.DataFrame(
            {
                "time": np.repeat(self._index(), items),
                "item": np.tile(np.arange(items), len(col)),
                "value": values.reshape(-1),
            }
        )
        if y is not None:
            tags = np.asarray(y, dtype=np.float64)
            if tags.shape != (items,):
                raise ValueError(f"{name}: {tags.size} y values for {items} items")
            frame.insert(2, "y", np.tile(tags, len(col)))
        return frame


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

    def tidy(self, name: str, y: Any = None) -> Any:
        """One field as a long DataFrame (`Timeline.tidy`): for a field with
        items, a row per sample and item; `y` are the items' coordinates (a das2
        field's `y_tags` from `get_fields`)."""
        return self.timeline_of(name).tidy(name, y)

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
        data = {
            str(f): decode_column(v, f"field {f!r}", rows=True) for f, v in reply["data"].items()
        }
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
            n = len(col)  # samples (rows, for a field with items)
            if mapped in sizes and sizes[mapped] == n:
                out[f] = mapped
                continue
            candidates = [tl for tl, size in sizes.items() if size == n]
            if not candidates:
                raise ProtocolError(
                    f"node {self.node!r}: field {f!r} has {n} values but no timeline has that many times"
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
    wide = [p for p in parts if p.ndim == 2]
    if wide:  # rows of items; an empty chunk came as a flat empty list
        parts = [p if p.ndim == 2 else p.reshape(0, wide[0].shape[1]) for p in parts]
    kinds = {p.dtype.kind for p in parts if p.size}
    if len(kinds) > 1 and "O" not in kinds and not kinds <= set("fiu"):
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
