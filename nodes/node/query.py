"""The query engine: `get_fields` and `get_data` over a source of samples.

One path for every kind. The engine checks the arguments, sizes the answer
against the point budget (refusing early with a suggested `min_stride`),
reduces, splits a large answer into progressive chunks, and builds the reply
in the mesh's shape. Where the samples come from is the source's business:
the node's store (`StoreSource`) or something that reads on demand (the das2
readers, `nodes/das2/node.py`).

A source answers what the stores already offer (`count`, `span`, `query`)
plus what an on-demand source needs to say: whether it counts before reading,
the latest time it can answer for, and which reductions it makes itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from obsmesh import wire
from obsmesh.errors import InvalidArgument, NoSuchField, TooManyPoints
from obsmesh.store import Store
from obsmesh.store.reduce import REDUCERS, max_points
from obsmesh.suggest import did_you_mean
from obsmesh.timerules import resolve_interval, resolve_stride

# Values in one progressive chunk (and one live event, nodes/node/live.py).
# Messages stay around 1 MB: the router reassembles a rawsocket message at a
# cost that grows faster than its size, so several 1 MB messages pass far
# quicker than one 8 MB message.
MAX_MESSAGE_VALUES = 131_072

Columns = dict[str, np.ndarray]
Progress = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Ask:
    """One timeline's part of a get_data call, as the source sees it."""

    timeline: str
    fields: list[str]
    start: float
    end: float
    stride: float | None
    reduce: str
    # Values the answer may hold (None: no cap): a source reading on demand
    # stops there and raises TooManyPoints with `too_many(values)` as text.
    limit: int | None
    too_many: Callable[[int], str]
    request: Any = None  # what the source's `plan` made of the call


class Source(Protocol):
    """Where the engine's samples come from."""

    # Values a progressive answer may gather in all (None: no cap).
    max_values: int | None

    def horizon(self) -> float:
        """The latest time the source can answer for (no reader reads the future)."""
        ...

    async def count(self, timeline: str, start: float, end: float) -> int | None:
        """Samples in `[start, end)`, or None when not known before reading."""
        ...

    async def span(self, timeline: str) -> tuple[float, float] | None:
        """First and last sample time of the timeline, None when it is empty."""
        ...

    def reduces(self, reduce: str) -> bool:
        """Whether `query` makes this reduction itself (else the engine does)."""
        ...

    def plan(
        self,
        timelines: Sequence[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str,
        params: Any,
    ) -> Mapping[str, Any]:
        """Check the call's source-specific arguments before anything is read
        (raising a MeshError); per timeline, what travels as `Ask.request`."""
        ...

    async def query(self, ask: Ask) -> tuple[np.ndarray, Columns]:
        """Sorted times in `[ask.start, ask.end)` and the asked columns."""
        ...

    def finalized_until(self, timeline: str, end: float) -> float | None:
        """Up to when the answer for `timeline` is final (reply's `finalized_until`)."""
        ...


class StoreSource:
    """A node's store as a source; the newest sample is what is final."""

    max_values: int | None = None

    def __init__(self, store: Store, last_sample: Mapping[str, float]) -> None:
        self.store = store
        self.last_sample = last_sample

    def horizon(self) -> float:
        return math.inf

    async def count(self, timeline: str, start: float, end: float) -> int | None:
        return await self.store.count(timeline, start, end)

    async def span(self, timeline: str) -> tuple[float, float] | None:
        return await self.store.span(timeline)

    def reduces(self, reduce: str) -> bool:
        return False

    def plan(
        self,
        timelines: Sequence[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str,
        params: Any,
    ) -> Mapping[str, Any]:
        if params is not None:
            raise InvalidArgument("this node takes no params")
        return {}

    async def query(self, ask: Ask) -> tuple[np.ndarray, Columns]:
        return await self.store.query(ask.timeline, ask.fields, ask.start, ask.end)

    def finalized_until(self, timeline: str, end: float) -> float | None:
        return self.last_sample.get(timeline)


class QueryEngine:
    """get_fields / get_data of one node over `fields` (field -> metadata with
    at least `timeline` and `type`; rows of items carry a `shape`)."""

    def __init__(
        self,
        name: str,
        fields: Mapping[str, Mapping[str, Any]],
        source: Source,
        budget: int,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.fields = fields
        self.source = source
        self.budget = int(budget)
        self.clock = clock

    # -- fields ---------------------------------------------------------------
    async def get_fields(self, start: Any = -3600.0, end: Any = 0.0) -> list[dict[str, Any]]:
        """Every field, and per timeline the mean sample interval in `[start, end)`
        (None with fewer than two samples there), the number of samples there
        (`count`) and the first and newest sample times of the whole timeline
        (`span`, None when it is empty); `count` and `span` are obsmesh
        additions to sisock's shape."""
        t0, t1 = resolve_interval(start, end, self.clock)
        fields = {f: dict(meta) for f, meta in self.fields.items()}
        timelines: dict[str, dict[str, Any]] = {}
        for timeline, names in self.by_timeline(list(self.fields)).items():
            n = await self.source.count(timeline, t0, t1)
            span = await self.source.span(timeline)  # cheap: the first/last samples only
            interval = None
            if span is not None and n is not None and n > 1:
                interval = (min(t1, span[1]) - max(t0, span[0])) / (n - 1)
            timelines[timeline] = {
                "interval": interval,
                "field": names,
                "count": n,
                "span": None if span is None else [span[0], span[1]],
            }
        return [fields, timelines]

    def by_timeline(self, names: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in names:
            out.setdefault(self.fields[f]["timeline"], []).append(f)
        return out

    def check_fields(self, field: Any) -> list[str]:
        names = [field] if isinstance(field, str) else field
        if (
            not isinstance(names, list | tuple)
            or not names
            or not all(isinstance(f, str) for f in names)
        ):
            raise InvalidArgument("field must be a field name or a non-empty list of field names")
        unknown = [f for f in names if f not in self.fields]
        if unknown:
            hint = did_you_mean(unknown[0], self.fields) if len(unknown) == 1 else ""
            raise NoSuchField(
                f"node {self.name!r} has no field {', '.join(map(repr, unknown))}{hint}"
            )
        return list(dict.fromkeys(names))

    def check_args(
        self, field: Any, start: Any, end: Any, min_stride: Any, reduce: Any, encoding: Any
    ) -> tuple[list[str], float, float, float | None]:
        """get_data's arguments checked: (field names, start, end, stride)."""
        names = self.check_fields(field)
        t0, t1 = resolve_interval(start, end, self.clock)
        stride = resolve_stride(min_stride)
        if reduce not in REDUCERS:
            raise InvalidArgument(f"reduce must be one of {sorted(REDUCERS)}, got {reduce!r}")
        if encoding not in wire.ENCODINGS:
            raise InvalidArgument(
                f"encoding must be one of {list(wire.ENCODINGS)}, got {encoding!r}"
            )
        return names, t0, t1, stride

    def width(self, fields: Sequence[str]) -> int:
        """Values in one row of these fields with their time (rows of items count each)."""
        return 1 + sum(int(np.prod(self.fields[f].get("shape", [1]))) for f in fields)

    # -- data -----------------------------------------------------------------
    async def get_data(
        self,
        field: Any,
        start: Any,
        end: Any,
        min_stride: Any = None,
        reduce: Any = "mean",
        encoding: Any = "list",
        details: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        names, t0, t1, stride = self.check_args(field, start, end, min_stride, reduce, encoding)
        t1 = max(t0, min(t1, self.source.horizon()))
        progress: Progress | None = getattr(details, "progress", None)
        budget = self.budget
        groups = self.by_timeline(names)
        width = sum(self.width(fs) for fs in groups.values())
        # With stride s a timeline gives about (t1 - t0) / s rows of `width` values.
        suggestion = _nice_stride((t1 - t0) * width / max(1, budget - width))
        advice = (
            f"ask for min_stride >= {suggestion:g} s, a shorter interval, or progressive results"
        )

        def too_many(_values: int) -> str:
            return f"more than {budget} values for one reply: {advice}"

        # Every argument checked before anything is read.
        plans = self.source.plan(list(groups), t0, t1, stride, reduce, params)
        # Size the answer before building it, where the source can: refuse early, cheaply.
        values = 0
        for timeline, fs in groups.items():
            n = await self.source.count(timeline, t0, t1)
            if n is not None:
                values += max_points(n, t0, t1, stride, reduce) * self.width(fs)
        if values > budget and progress is None:
            raise TooManyPoints(
                f"{values} values exceed the budget of {budget} per reply: {advice}"
            )
        # Without progressive results nothing past the budget is gathered.
        cap = budget if progress is None else self.source.max_values
        answers = []
        used = 0
        for timeline, fs in groups.items():
            ask = Ask(
                timeline,
                fs,
                t0,
                t1,
                stride,
                reduce,
                None if cap is None else max(0, cap - used),
                too_many,
                plans.get(timeline),
            )
            t, cols = await self.source.query(ask)
            if stride is not None and not self.source.reduces(reduce):
                t, cols = reduce_rows(t, cols, stride, reduce)
            used += t.size * self.width(fs)
            if cap is not None and used > cap:
                raise TooManyPoints(too_many(used))
            answers.append((timeline, fs, t, cols))
        if values <= budget and used <= budget:
            return self.reply(answers, encoding, t1)
        if progress is None:
            raise TooManyPoints(too_many(used))
        # Progressive: chunks of whole rows of about 1 MB, the last one as the result.
        chunks = list(self._chunked(answers, min(budget, MAX_MESSAGE_VALUES)))
        for chunk in chunks[:-1]:
            progress(self.reply(chunk, encoding, t1))
        return self.reply(chunks[-1], encoding, t1)

    def _chunked(self, answers: list, budget: int) -> Any:
        for timeline, fs, t, cols in answers:
            rows = max(1, budget // self.width(fs))
            for a in range(0, max(t.size, 1), rows):
                yield [
                    (timeline, fs, t[a : a + rows], {f: c[a : a + rows] for f, c in cols.items()})
                ]

    def reply(self, answers: list, encoding: str, end: float) -> dict[str, Any]:
        """The mesh's reply shape: `data` by field, `timeline` by timeline."""
        data: dict[str, Any] = {}
        timeline: dict[str, Any] = {}
        for tl, fs, t, cols in answers:
            for f in fs:
                data[f] = encode_column(cols[f], self.fields[f]["type"], encoding)
            timeline[tl] = {
                "t": wire.encode(t, encoding),
                "finalized_until": self.source.finalized_until(tl, end),
            }
        return {"data": data, "timeline": timeline}


def encode_column(col: np.ndarray, kind: str, encoding: str) -> Any:
    """A column on the wire: bools as true/false/None, rows of items as nested
    lists (None for NaN) or one (n, items) array, the rest `wire.encode`."""
    if kind == "bool":
        return [None if math.isnan(v) else bool(v) for v in col.tolist()]
    if col.ndim == 1 or encoding == wire.ARRAY:
        return wire.encode(col, encoding)
    rows = col.tolist()
    if not np.isfinite(col).all():
        bad = ~np.isfinite(col)
        for i in np.flatnonzero(bad.any(axis=1)).tolist():
            rows[i] = [None if b else v for v, b in zip(rows[i], bad[i].tolist(), strict=True)]
    return rows


def reduce_rows(
    t: np.ndarray, cols: Columns, stride: float, reduce: str
) -> tuple[np.ndarray, Columns]:
    """The mesh's reduction `reduce` in bins of `stride`; rows of items item by item."""
    if all(c.ndim == 1 for c in cols.values()):
        return REDUCERS[reduce](t, cols, stride)
    flat: Columns = {}
    for f, c in cols.items():
        if c.ndim == 1:
            flat[f] = c
        else:
            for i in range(c.shape[1]):
                flat[f"{f}\x00{i}"] = c[:, i]
    rt, rc = REDUCERS[reduce](t, flat, stride)
    out: Columns = {}
    for f, c in cols.items():
        out[f] = (
            rc[f]
            if c.ndim == 1
            else np.stack([rc[f"{f}\x00{i}"] for i in range(c.shape[1])], axis=1).reshape(
                rt.size, c.shape[1]
            )
        )
    return rt, out


def _nice_stride(seconds: float) -> float:
    """A readable stride at least `seconds` long (1, 2, 5 × 10^k)."""
    if seconds <= 0:
        return 1.0
    exp = math.floor(math.log10(seconds))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= seconds:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))
