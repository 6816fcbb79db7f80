"""The mesh as HAPI datasets: one dataset per node timeline (pure: no I/O).

A node's `get_fields` answer becomes one `Dataset` per timeline, id
`<node>/<timeline>` (`weather/station`, `das2/spectrogram`,
`superdarn/sas.scan`): node names never hold a `/`, so the first `/` splits an
id back. Its parameters are `Time` and the timeline's fields, named as the
node names them, in the order the node declared them (so a field added later
comes last and never moves the others):

| mesh field | HAPI parameter |
|---|---|
| `number` | `double`, fill `"NaN"` (the mesh's missing value; infinities too) |
| `number` with `shape` `[n, ...]` (a das2 `yscan`, a per-gate profile) | `double` with `size` `[n, ...]`, and `bins` from `y_tags`/`y_units` |
| `bool` | `integer`: 1 true, 0 false, fill `"-1"` for missing |
| `string` | `string`, UTF-8, fill `""`, `length` in bytes (see `string_length`) |

Units: the node's, or null for none (HAPI forbids an empty string). The
dataset's `startDate`/`stopDate` are its first and newest stored samples
(`span` in the node's `get_fields` answer), so a live dataset's `stopDate`
moves with its data. The mesh's own keys carry the `x_` prefix: `x_node`,
`x_timeline`, `x_kind`, and on `/data` the request extras `x_stride`/`x_reduce`.

Whatever the node sends is checked: a field or timeline that cannot be
served as HAPI (a comma in its name, a name that differs from another only in
case, a bad shape) is left out rather than breaking the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.hapi.status import HAPI_VERSION, status
from consumers.hapi.times import EARLIEST, LATEST, TIME_LENGTH, duration, iso

TIME_NAME = "Time"
DOUBLE_FILL = "NaN"
INTEGER_FILL = "-1"
STRING_FILL = ""
MIN_STRING_LENGTH = 16
MAX_SIZE = 65_536  # values in one array parameter
MAX_NAME = 200
SAMPLE_SECONDS = 3600.0  # sampleStartDate..sampleStopDate: at most the last hour...
SAMPLE_ROWS = 10_000  # ...and about this many records
REDUCE_NOTE = (
    "x_stride=S (seconds or an ISO 8601 duration) on /data bins the records: bins aligned to "
    "multiples of S; x_reduce=mean (the default: mean time and mean of each bin) or "
    "x_reduce=minmax (each bin's minimum and maximum, at its first and last sample times)"
)


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # the mesh's type: time, number, bool or string
    units: str | None = None
    description: str = ""
    size: tuple[int, ...] | None = None
    bins: tuple[dict, ...] | None = None

    @property
    def hapi_type(self) -> str:
        return {"time": "isotime", "number": "double", "bool": "integer"}.get(self.kind, "string")

    @property
    def width(self) -> int:
        """Values per record (the columns it unrolls into)."""
        return math.prod(self.size) if self.size else 1

    def describe(self, string_length: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.hapi_type}
        if self.kind == "time":
            out.update(units="UTC", fill=None, length=TIME_LENGTH)
            return out
        out["units"] = self.units or None
        if self.kind == "number":
            out["fill"] = DOUBLE_FILL
        elif self.kind == "bool":
            out["fill"] = INTEGER_FILL
        else:
            out["fill"] = STRING_FILL
            out["length"] = string_length or MIN_STRING_LENGTH
        if self.size:
            out["size"] = list(self.size)
        if self.bins:
            out["bins"] = [dict(b) for b in self.bins]
        text = self.description
        if self.kind == "bool":
            text = f"{text} (a mesh bool: 1 true, 0 false, -1 missing)".strip()
            out["x_type"] = "bool"
        if text:
            out["description"] = text
        return out


@dataclass
class Dataset:
    id: str
    node: str
    timeline: str
    kind: str  # the node's kind ("" for a sisock node)
    obsmesh: bool  # takes reduce= and encoding= (an obsmesh node)
    parameters: list[Parameter]
    first: float | None  # first and newest stored sample (None: unknown)
    last: float | None
    cadence: float | None
    sample: tuple[float, float] | None = None
    description: str = ""
    empty: bool = False  # the node says it holds no sample
    string_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    def fields(self, names: list[str]) -> list[str]:
        """The node's field names of selected parameters (all but Time)."""
        return [n for n in names if n != TIME_NAME]

    def dates(self, now: float) -> tuple[float, float]:
        """startDate and stopDate as UNIX seconds."""
        if self.first is None or self.last is None:
            # Nothing stored yet: an empty range at now; unknown (a sisock node): all until now.
            return (now, now) if self.empty else (0.0, now)
        return self.first, self.last

    def info(
        self, names: list[str], now: float, fmt: str | None = None, extras: Mapping | None = None
    ) -> dict[str, Any]:
        """The `/info` document (and the header `include=header` prefixes to data)."""
        start, stop = self.dates(now)
        doc: dict[str, Any] = {"HAPI": HAPI_VERSION, "status": status(1200)}
        if fmt is not None:
            doc["format"] = fmt
        doc["parameters"] = [self.parameter(n).describe(self.string_lengths.get(n)) for n in names]
        doc["startDate"] = iso(start)
        doc["stopDate"] = iso(stop)
        if self.cadence:
            doc["cadence"] = duration(self.cadence)
        sample = self.sample_range(start, stop)
        if sample is not None:
            doc["sampleStartDate"], doc["sampleStopDate"] = iso(sample[0]), iso(sample[1])
        doc["description"] = self.description or f"timeline {self.timeline} of node {self.node}"
        doc["x_node"] = self.node
        doc["x_timeline"] = self.timeline
        if self.kind:
            doc["x_kind"] = self.kind
        if self.obsmesh:
            doc["x_reduce"] = REDUCE_NOTE
        doc.update(extras or {})
        return doc

    def sample_range(self, start: float, stop: float) -> tuple[float, float] | None:
        if self.sample is not None:
            return self.sample
        if self.first is None or self.last is None or stop <= start:
            return None
        span = (
            SAMPLE_SECONDS if not self.cadence else min(SAMPLE_SECONDS, SAMPLE_ROWS * self.cadence)
        )
        return max(start, stop - span), stop

    def title(self) -> str:
        return f"{self.node} {self.timeline}"[:40]


def dataset_id(node: str, timeline: str) -> str:
    return f"{node}/{timeline}"


def split_id(dataset: str) -> tuple[str, str]:
    node, sep, timeline = dataset.partition("/")
    return (node, timeline) if sep else ("", "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pair(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    a, b = _number(value[0]), _number(value[1])
    if a is None or b is None or b < a or a < EARLIEST or b >= LATEST:
        return None
    return a, b


def _usable_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME
        and "," not in name
        and name.isprintable()
        and name.lower() != TIME_NAME.lower()
    )


def _size(meta: Mapping) -> tuple[int, ...] | None | bool:
    """A field's `shape` as a HAPI size; None for a scalar, False when unusable."""
    shape = meta.get("shape")
    if shape is None:
        return None
    if not isinstance(shape, list) or not shape or len(shape) > 4:
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        return False
    if math.prod(shape) > MAX_SIZE:
        return False
    return tuple(shape) if math.prod(shape) > 1 or len(shape) > 1 else None


def _bins(meta: Mapping, size: tuple[int, ...] | None) -> tuple[dict, ...] | None:
    """The bin centres of a 1-D array parameter (a das2 yscan's y_tags)."""
    tags = meta.get("y_tags")
    if size is None or len(size) != 1 or not isinstance(tags, list) or len(tags) != size[0]:
        return None
    centers = [_number(v) for v in tags]
    if any(c is None for c in centers):
        return None
    units = meta.get("y_units")
    return (
        {
            "name": "y",
            "units": units if isinstance(units, str) and units else "dimensionless",
            "centers": centers,
        },
    )


def parameter_of(name: str, meta: Mapping) -> Parameter | None:
    kind = meta.get("type", "number")
    if kind not in ("number", "string", "bool"):
        kind = "number"
    size = _size(meta) if kind == "number" else None
    if size is False:
        return None
    units = meta.get("units")
    text = meta.get("description")
    return Parameter(
        name,
        kind,
        units if isinstance(units, str) and units else None,
        text if isinstance(text, str) else "",
        size or None,
        _bins(meta, size or None),
    )


def datasets_of(
    node: str, info: Mapping[str, Any], answer: Any, description: str = ""
) -> dict[str, Dataset]:
    """A node's `get_fields` answer `[fields, timelines]` as datasets by id."""
    if not isinstance(answer, list | tuple) or len(answer) != 2:
        return {}
    raw_fields, raw_timelines = answer
    if not isinstance(raw_fields, dict) or not isinstance(raw_timelines, dict):
        return {}
    kind = info.get("kind") if isinstance(info.get("kind"), str) else ""
    by_timeline: dict[str, list[str]] = {}
    for tl, meta in raw_timelines.items():  # the node's declaration order first
        names = meta.get("field") if isinstance(meta, dict) else None
        if isinstance(tl, str) and isinstance(names, list):
            by_timeline[tl] = [n for n in names if isinstance(n, str)]
    for name, meta in raw_fields.items():  # then any field the listing forgot
        if (
            isinstance(name, str)
            and isinstance(meta, dict)
            and isinstance(meta.get("timeline"), str)
        ):
            names = by_timeline.setdefault(meta["timeline"], [])
            if name not in names:
                names.append(name)
    out: dict[str, Dataset] = {}
    for tl, names in by_timeline.items():
        if not _usable_name(tl) or "/" in node:
            continue
        params = [Parameter(TIME_NAME, "time")]
        folded: set[str] = set()
        for name in names:
            meta = raw_fields.get(name)
            if not isinstance(meta, dict) or meta.get("timeline") != tl or not _usable_name(name):
                continue
            if name.lower() in folded:  # HAPI names may not differ only in case
                continue
            p = parameter_of(name, meta)
            if p is not None:
                folded.add(name.lower())
                params.append(p)
        if len(params) == 1:
            continue
        tmeta = raw_timelines.get(tl) if isinstance(raw_timelines.get(tl), dict) else {}
        span = _pair(tmeta.get("span"))
        interval = _number(tmeta.get("interval"))
        ds = Dataset(
            dataset_id(node, tl),
            node,
            tl,
            kind,
            bool(kind),
            params,
            span[0] if span else None,
            span[1] if span else None,
            interval if interval and interval > 0 else None,
            _pair(tmeta.get("sample")),
            description,
            tmeta.get("count") == 0,
        )
        out[ds.id] = ds
    return out


def string_length(longest: int) -> int:
    """A string parameter's `length`: the next power of two holding the longest value
    seen, at least MIN_STRING_LENGTH, so it stays put while values grow a little."""
    n = MIN_STRING_LENGTH
    while n < longest:
        n *= 2
    return n
