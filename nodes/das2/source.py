"""The das2 readers as a source of the node's query engine (nodes/node/query.py).

Nothing is counted before reading: a request runs through `Das2Service` (cache
blocks where present, the reader for the rest) and the reader is stopped as
soon as the answer outgrows what the call may hold. `min_stride` is the das2
resolution (`reduce="mean"`: bins aligned to multiples of it, one record per
non-empty bin at the bin's centre, made by the reader or the cache); the
mesh's min/max reduction is left to the engine, over full resolution gathered
up to `max_values`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nodes.das2.columns import Collector
from nodes.das2.readers import validate_request
from nodes.das2.service import Das2Service
from nodes.node.query import Ask, Columns
from obsmesh.errors import InvalidArgument


class Das2Source:
    """Reads a dataset (a timeline) for each ask; its fields are the node's."""

    def __init__(self, service: Das2Service, clock: Callable[[], float], max_values: int) -> None:
        self.service = service
        self.clock = clock
        self.max_values: int | None = int(max_values)

    def horizon(self) -> float:
        return self.clock()  # nothing after now: no reader reads the future

    async def count(self, timeline: str, start: float, end: float) -> int | None:
        return None

    async def span(self, timeline: str) -> tuple[float, float] | None:
        return None

    def reduces(self, reduce: str) -> bool:
        return reduce == "mean"

    def plan(
        self,
        timelines: Sequence[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str,
        params: Any,
    ) -> Mapping[str, Any]:
        """Every dataset's reader request checked before any reader runs (None:
        an empty interval, nothing to read)."""
        per_dataset = _params_for(params, list(timelines))
        if end <= start:
            return dict.fromkeys(timelines)
        resolution = stride if reduce == "mean" else None
        return {
            d: validate_request(self.service.catalog[d], start, end, resolution, per_dataset[d])
            for d in timelines
        }

    async def query(self, ask: Ask) -> tuple[np.ndarray, Columns]:
        if ask.request is None:
            return np.zeros(0), {f: np.zeros(0) for f in ask.fields}
        # min/max bins are made from full resolution, gathered up to max_values
        raw_minmax = ask.stride is not None and ask.reduce == "minmax"
        limit = self.max_values if raw_minmax or ask.limit is None else ask.limit
        collector = Collector(ask.timeline, ask.fields, max(0, limit or 0), ask.too_many)
        await self.service.answer(ask.request, collector)
        return collector.result()

    def finalized_until(self, timeline: str, end: float) -> float | None:
        return min(end, self.clock())


def _params_for(params: Any, datasets: list[str]) -> dict[str, Any]:
    if params is None or isinstance(params, str | list | tuple):
        return dict.fromkeys(datasets, params)
    if isinstance(params, dict):
        unknown = set(params) - set(datasets)
        if unknown:
            raise InvalidArgument(f"params for datasets not asked: {', '.join(sorted(unknown))}")
        return {d: params.get(d) for d in datasets}
    raise InvalidArgument("params must be a text, a list of texts, or {dataset: params}")
