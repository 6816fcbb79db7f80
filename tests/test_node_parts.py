"""The node base's parts alone (no router): setup() after construction, and
the query engine over a source that reads on demand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import task

from nodes.base import DataNode
from nodes.node.query import Ask, QueryEngine, StoreSource
from obsmesh import config
from obsmesh.errors import InvalidArgument, TooManyPoints
from obsmesh.store import MemoryStore


def mesh() -> dict[str, Any]:
    return config.mesh(environ={}, store="memory")


class NewStyle(DataNode):
    """A kind written the new way: base first, own state after, fields in setup()."""

    def __init__(self, name: str, units: str) -> None:
        super().__init__(name, mesh(), reactor=task.Clock(), clock=lambda: 1000.0)
        self.units = units
        self.calls: list[str] = []

    def setup(self) -> None:
        self.calls.append("setup")
        self.declare("x", "tl", units=self.units)


class OldStyle(DataNode):
    """A kind written before setup(): own state first, fields in declare_fields()."""

    def __init__(self, name: str) -> None:
        self.units = "V"
        super().__init__(name, mesh(), reactor=task.Clock())

    def declare_fields(self) -> None:
        self.declare("x", "tl", units=self.units)


def test_setup_runs_once_after_the_whole_construction():
    node = NewStyle("new", "m")
    assert node.calls == ["setup"]
    assert node.fields["x"]["units"] == "m"


def test_a_kind_overriding_declare_fields_still_works():
    assert OldStyle("old").fields["x"]["units"] == "V"


class Reading:
    """A source that cannot count before reading (as das2's readers)."""

    max_values: int | None = 10_000

    def __init__(self, rows: int, now: float) -> None:
        self.rows, self.now = rows, now
        self.asks: list[Ask] = []

    def horizon(self) -> float:
        return self.now

    async def count(self, timeline: str, start: float, end: float) -> int | None:
        return None

    async def span(self, timeline: str) -> tuple[float, float] | None:
        return None

    def reduces(self, reduce: str) -> bool:
        return False

    def plan(self, timelines, start, end, stride, reduce, params) -> dict[str, Any]:
        if params not in (None, "ok"):
            raise InvalidArgument("bad params")
        return dict.fromkeys(timelines, params)

    async def query(self, ask: Ask):
        self.asks.append(ask)
        t = ask.start + np.arange(self.rows, dtype=np.float64)
        if ask.limit is not None and t.size * (1 + len(ask.fields)) > ask.limit:
            raise TooManyPoints(ask.too_many(t.size))
        return t, {f: np.arange(self.rows, dtype=np.float64) for f in ask.fields}

    def finalized_until(self, timeline: str, end: float) -> float | None:
        return end


FIELDS = {"a": {"timeline": "tl", "type": "number"}, "b": {"timeline": "tl", "type": "number"}}


@pytest_twisted.ensureDeferred
async def test_a_reading_source_is_cut_at_now_and_refused_past_the_budget():
    source = Reading(rows=40, now=150.0)
    engine = QueryEngine("n", FIELDS, source, budget=100, clock=lambda: 150.0)
    with pytest.raises(TooManyPoints) as info:
        await engine.get_data(["a", "b"], 100.0, 200.0)
    assert "more than 100 values" in info.value.message
    assert source.asks[0].end == 150.0 and source.asks[0].limit == 100
    with pytest.raises(InvalidArgument):
        await engine.get_data("a", 100.0, 200.0, params="nope")


@pytest_twisted.ensureDeferred
async def test_progressive_answers_come_in_chunks_under_the_budget():
    source = Reading(rows=100, now=1e9)
    engine = QueryEngine("n", FIELDS, source, budget=90, clock=lambda: 1e9)
    chunks: list[dict] = []
    last = await engine.get_data(
        ["a", "b"], 1000.0, 2000.0, details=SimpleNamespace(progress=chunks.append), params="ok"
    )
    chunks.append(last)
    assert all(len(c["timeline"]["tl"]["t"]) * 3 <= 90 for c in chunks)
    assert sum(len(c["data"]["a"]) for c in chunks) == 100
    assert chunks[-1]["timeline"]["tl"]["finalized_until"] == 2000.0


@pytest_twisted.ensureDeferred
async def test_a_counting_source_is_refused_before_reading_with_a_stride_to_ask_for():
    store = MemoryStore(1e9, 1_000_000)
    store.declare("a", "number")
    store.append_now("tl", 1000.0 + np.arange(1000.0), {"a": np.arange(1000.0)})
    fields = {"a": {"timeline": "tl", "type": "number"}}
    engine = QueryEngine("n", fields, StoreSource(store, {}), budget=100, clock=lambda: 1e4)
    with pytest.raises(TooManyPoints) as info:
        await engine.get_data("a", 1000.0, 2000.0)
    assert info.value.message.startswith("2000 values exceed the budget of 100")
    assert "min_stride >= 50 s" in info.value.message
    reply = await engine.get_data("a", 1000.0, 2000.0, min_stride=50)
    assert len(reply["data"]["a"]) == 20
    with pytest.raises(InvalidArgument):
        await engine.get_data("a", 1000.0, 2000.0, params="x")
