"""The store interface every node uses, and what both stores share.

A store holds timelines; a timeline is a sorted time column with any number of
field columns. Numbers and bools are kept as float64 (NaN = missing), strings
as Python objects. Both stores answer `query` with sorted times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

NUMERIC = "number"
STRING = "string"
BOOL = "bool"
FIELD_TYPES = (NUMERIC, STRING, BOOL)


class StoreError(ValueError):
    """A batch the store refuses; nothing of it is stored."""


def as_batch(
    t: Sequence[float] | np.ndarray,
    columns: Mapping[str, Sequence | np.ndarray],
    types: Mapping[str, str],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate one batch into sorted numpy columns; a StoreError stores nothing."""
    times = np.asarray(t, dtype=np.float64).reshape(-1)
    if not np.isfinite(times).all():
        raise StoreError("times must be finite numbers")
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        kind = types.get(name)
        if kind is None:
            raise StoreError(f"field {name!r} is not declared")
        if kind == STRING:
            col = np.empty(len(values), dtype=object)
            col[:] = [None if v is None else str(v) for v in values]
        else:
            try:
                col = np.asarray(
                    [np.nan if v is None else v for v in values]
                    if isinstance(values, list)
                    else values,
                    dtype=np.float64,
                ).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"field {name!r}: values are not numbers ({exc})") from exc
        if col.shape[0] != times.shape[0]:
            raise StoreError(f"field {name!r} has {col.shape[0]} values for {times.shape[0]} times")
        out[name] = col
    if times.size > 1 and (np.diff(times) < 0).any():
        order = np.argsort(times, kind="stable")
        times = times[order]
        out = {k: v[order] for k, v in out.items()}
    return times, out


def missing_column(kind: str, n: int) -> np.ndarray:
    if kind == STRING:
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan)


class Store(ABC):
    """One interface over the in-memory and the Redis store."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}  # field -> type, across all timelines

    def declare(self, field: str, kind: str) -> None:
        if kind not in FIELD_TYPES:
            raise StoreError(f"field type must be one of {FIELD_TYPES}, got {kind!r}")
        self.types[field] = kind

    @abstractmethod
    async def append(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        """Store a batch; returns the number of samples stored."""

    @abstractmethod
    async def count(self, timeline: str, start: float, end: float) -> int:
        """Samples of `timeline` in `[start, end)`."""

    @abstractmethod
    async def query(
        self, timeline: str, fields: Sequence[str], start: float, end: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Times in `[start, end)` and the asked columns (missing values NaN/None)."""

    @abstractmethod
    async def span(self, timeline: str) -> tuple[float, float] | None:
        """First and last sample time of a timeline, or None when it is empty."""

    async def close(self) -> None:
        return None
