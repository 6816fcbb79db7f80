"""The bridge's in-memory picture of the mesh: which nodes exist and their fields.

Pure state with no I/O: the bridge feeds it the hub's listing, the hub's
added/subtracted events and each node's `get_fields` answer, and asks it
which series a target names, what to offer Grafana in its pickers, and which
targets it could not resolve (so the bridge refreshes just those nodes).
Everything a node or the hub sends is checked; a malformed entry is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from consumers.grafana.protocol import (
    DEFAULT_MAX_SERIES,
    EVENTS,
    SEPARATOR,
    WILDCARD,
    Filter,
    Target,
    too_many_series,
)
from obsmesh import wire
from obsmesh.uris import valid_node_name

FIELD_TYPES = ("number", "string", "bool")
MAX_FIELDS = 100_000  # per node: more is a node bug, not something to mirror
STEP = 512  # candidates looked at between two yields of resolve_steps


@dataclass
class NodeEntry:
    name: str
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # field -> {timeline, type, units, description}
    timelines: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # timeline -> {interval, field}
    loaded_at: float | None = None  # when `fields` last came from the node
    refuses_arrays: bool = False  # asked for them anyway, it said it knows no `encoding`

    @property
    def obsmesh(self) -> bool:
        """An obsmesh node (announces its kind) takes `reduce=`; sisock's nodes do not."""
        return "kind" in self.info

    @property
    def arrays(self) -> bool:
        """The node answers `encoding="array"` (its hub entry says so)."""
        return wire.advertises_arrays(self.info) and not self.refuses_arrays


@dataclass(frozen=True)
class Series:
    """One resolved series of a target."""

    node: str
    field: str
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.node}{SEPARATOR}{self.field}"

    @property
    def timeline(self) -> str:
        return self.meta["timeline"]


@dataclass
class Resolution:
    series: list[list[Series]]  # per target, in order
    unknown_nodes: set[str]  # named by a target and not in the directory
    stale_nodes: set[str]  # known, but a named field is missing
    problems: list[list[str]] = field(default_factory=list)  # per target: names that gave nothing


class Catalog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.nodes: dict[str, NodeEntry] = {}
        self.clock = clock

    # -- feeding -----------------------------------------------------------
    def set_directory(self, listing: Any) -> None:
        """The hub's full listing; nodes no longer listed are dropped, fields of kept ones kept."""
        entries = [
            e for e in (_entry(x) for x in (listing if isinstance(listing, list) else [])) if e
        ]
        names = {e.name for e in entries}
        for gone in set(self.nodes) - names:
            del self.nodes[gone]
        for e in entries:
            self.add(e)

    def added(self, announcement: Any) -> str | None:
        e = _entry(announcement)
        if e is None:
            return None
        self.add(e)
        return e.name

    def add(self, entry: NodeEntry) -> None:
        known = self.nodes.get(entry.name)
        if known is not None and known.info == entry.info:
            known.description = entry.description  # same node (re-announced): keep its fields
            return
        self.nodes[entry.name] = entry

    def subtracted(self, announcement: Any) -> str | None:
        name = announcement.get("name") if isinstance(announcement, dict) else None
        if isinstance(name, str) and name in self.nodes:
            del self.nodes[name]
            return name
        return None

    def set_fields(self, node: str, answer: Any) -> bool:
        """A node's `get_fields` answer `[fields, timelines]`; False if it is malformed."""
        entry = self.nodes.get(node)
        if entry is None:
            return False
        parsed = parse_fields(answer)
        if parsed is None:
            return False
        entry.fields, entry.timelines = parsed
        entry.loaded_at = self.clock()
        return True

    # -- asking ------------------------------------------------------------
    def resolve(
        self,
        targets: Iterable[Target],
        filters: Iterable[Filter] = (),
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> Resolution:
        steps = self.resolve_steps(targets, filters, max_series)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def resolve_steps(
        self,
        targets: Iterable[Target],
        filters: Iterable[Filter] = (),
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> Generator[None, None, Resolution]:
        """`resolve` in steps: it yields every STEP candidates, so a caller can
        spread a large expansion over several reactor turns (and give up on it).
        More than `max_series` series in all raise TooManySeries."""
        filters = tuple(filters)
        out = Resolution([], set(), set())
        total = work = 0
        for target in targets:
            found: list[Series] = []
            problems: list[str] = []
            for node, fname in target.pairs:
                work += 1
                if work % STEP == 0:
                    yield
                if fname == EVENTS:
                    continue  # annotation tables are not series
                nodes = sorted(self.nodes) if node == WILDCARD else [node]
                for n in nodes:
                    entry = self.nodes.get(n)
                    if entry is None:
                        out.unknown_nodes.add(n)
                        problems.append(f"no node {n!r} in the mesh")
                        continue
                    if entry.loaded_at is None:
                        out.stale_nodes.add(n)
                    if fname == WILDCARD:
                        names = sorted(entry.fields)
                    elif fname in entry.fields:
                        names = [fname]
                    else:
                        out.stale_nodes.add(n)
                        problems.append(f"node {n!r} has no field {fname!r}")
                        continue
                    for f in names:
                        work += 1
                        if work % STEP == 0:
                            yield
                        meta = entry.fields.get(f)
                        if meta is None:  # the node's fields changed between two steps
                            continue
                        s = Series(n, f, meta)
                        if target.timeline and s.timeline != target.timeline and fname == WILDCARD:
                            continue
                        if all(flt.accepts(self.tag(s, flt.key)) for flt in filters):
                            found.append(s)
                            total += 1
                            if total > max_series:
                                raise too_many_series(
                                    total, max_series, "this request (wildcards expanded)"
                                )
            unique = {(s.node, s.field): s for s in found}  # a series named twice is drawn once
            out.series.append(list(unique.values()))
            out.problems.append(list(dict.fromkeys(problems)))
        return out

    def tag(self, s: Series, key: str) -> str | None:
        """The value of an ad hoc filter key for one series."""
        if key == "node":
            return s.node
        if key == "field":
            return s.field
        if key in ("timeline", "units", "type", "description"):
            v = s.meta.get(key)
            return v if isinstance(v, str) else None
        if key == "kind":
            entry = self.nodes.get(s.node)
            v = entry.info.get("kind") if entry else None
            return v if isinstance(v, str) else None
        return None

    def all_series(self) -> list[Series]:
        return [
            Series(n, f, e.fields[f])
            for n, e in sorted(self.nodes.items())
            for f in sorted(e.fields)
        ]

    def tag_values(self, key: str) -> list[str]:
        values = {self.tag(s, key) for s in self.all_series()}
        if key == "node":
            values |= set(self.nodes)
        return sorted(v for v in values if v)

    def timelines(self, node: str) -> list[str]:
        entry = self.nodes.get(node)
        return sorted(entry.timelines) if entry else []


def _entry(x: Any) -> NodeEntry | None:
    """A hub listing entry or announcement `{"name", "description", ...info}`."""
    if not isinstance(x, dict) or not valid_node_name(x.get("name")):
        return None
    desc = x.get("description")
    info = {k: v for k, v in x.items() if k not in ("name", "description") and isinstance(k, str)}
    return NodeEntry(x["name"], desc if isinstance(desc, str) else "", info)


def parse_fields(answer: Any) -> tuple[dict[str, dict], dict[str, dict]] | None:
    """Check a `get_fields` answer; keep the well-formed fields of it."""
    if not isinstance(answer, list | tuple) or len(answer) != 2:
        return None
    raw_fields, raw_timelines = answer
    if (
        not isinstance(raw_fields, dict)
        or not isinstance(raw_timelines, dict)
        or len(raw_fields) > MAX_FIELDS
    ):
        return None
    fields: dict[str, dict] = {}
    for name, meta in raw_fields.items():
        if not isinstance(name, str) or not name or not isinstance(meta, dict):
            continue
        timeline = meta.get("timeline")
        if not isinstance(timeline, str):
            continue
        kind = meta.get("type", "number")
        fields[name] = {
            "timeline": timeline,
            "type": kind if kind in FIELD_TYPES else "number",
            "units": meta.get("units") if isinstance(meta.get("units"), str) else "",
            "description": meta.get("description")
            if isinstance(meta.get("description"), str)
            else "",
        }
    timelines: dict[str, dict] = {}
    for name, meta in raw_timelines.items():
        if not isinstance(name, str):
            continue
        interval = meta.get("interval") if isinstance(meta, dict) else None
        ok = isinstance(interval, int | float) and not isinstance(interval, bool)
        timelines[name] = {"interval": float(interval) if ok else None, "field": []}
    for name, meta in sorted(fields.items()):  # also a timeline the node forgot to list
        timelines.setdefault(meta["timeline"], {"interval": None, "field": []})["field"].append(
            name
        )
    return fields, timelines
