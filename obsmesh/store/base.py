"""The store protocol every node uses, and what the stores share.

A store holds timelines; a timeline is a sorted time column with any number of
field columns. Numbers and bools are kept as float64 (NaN = missing), strings
as Python objects. Every store answers `query` with sorted times.

One protocol for the memory, durable and Redis stores, so a node never probes
what its store can do:

- `open()` once before use (the durable store loads its history, off the
  reactor thread; the others have nothing to do);
- `append_now()` accepts a batch at once, synchronously (validated, visible
  to queries); `append()` is the same as a coroutine;
- `pending_rows()` counts rows accepted but not yet stored for good (on disk,
  in Redis); `flush(timeout)` waits until there are none;
- `count`, `query`, `span` read; `status()` reports health; `close()` flushes
  and releases what the store holds (files, a lock, a connection).

Each store takes the reactor and the clock it is given (tests pass fakes).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


def as_kind(col: np.ndarray, kind: str) -> np.ndarray:
    """A column as the field's type now (only differs when a field changed type)."""
    if kind == STRING:
        if col.dtype == object:
            return col
        out = np.empty(col.shape[0], dtype=object)
        out[:] = [None if np.isnan(v) else repr(float(v)) for v in col]
        return out
    if col.dtype != object:
        return col
    out = np.full(col.shape[0], np.nan)
    for i, v in enumerate(col):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def missing_column(kind: str, n: int) -> np.ndarray:
    if kind == STRING:
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan)


class Store(ABC):
    """One protocol over the memory, durable and Redis stores."""

    kind = "store"  # what status() names it

    def __init__(self, reactor: Any = None, clock: Callable[[], float] = time.time) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.clock = clock
        self.types: dict[str, str] = {}  # field -> type, across all timelines
        # Called on the reactor thread with a problem's text, or None once it is
        # over (disk full, then space again): the node shows it in get_status.
        self.on_problem: Callable[[str | None], None] | None = None

    def declare(self, field: str, kind: str) -> None:
        if kind not in FIELD_TYPES:
            raise StoreError(f"field type must be one of {FIELD_TYPES}, got {kind!r}")
        self.types[field] = kind

    async def open(self) -> None:  # noqa: B027 (most stores have nothing to open)
        """Get ready (load history, connect); called once, before ingest starts."""

    @abstractmethod
    def append_now(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        """Accept a batch now (queries see it at once); returns the samples accepted.
        A StoreError stores nothing of the batch."""

    async def append(self, timeline: str, t, columns: Mapping[str, Sequence | np.ndarray]) -> int:
        return self.append_now(timeline, t, columns)

    def pending_rows(self, timeline: str | None = None) -> int:
        """Rows accepted but not yet stored for good (all timelines when None)."""
        return 0

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending; False when `timeout` seconds passed first."""
        return True

    def status(self) -> dict[str, Any]:
        """Health for get_status: at least the kind, the pending rows and the error."""
        return {"kind": self.kind, "pending_rows": self.pending_rows(), "error": None}

    def _problem(self, text: str | None) -> None:
        if self.on_problem is not None:
            self.on_problem(text)

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
