"""A node's health: its inputs (sources), counters, last error and events.

What `get_status` and `get_events` answer. A source's flip of `connected` or
`stale` becomes an event people read (nodes/status_events.py) and is
published on `P.consumer.<name>.status`; events go out on `.event`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from nodes.status_events import status_event
from obsmesh.timerules import resolve_interval

MAX_EVENTS_KEPT = 10_000
Publish = Callable[[str, Any, bool], None]  # (suffix, payload, retain)


class NodeHealth:
    """Sources, counters, the last error and the recent events of one node."""

    log = Logger()

    def __init__(self, clock: Callable[[], float], publish: Publish) -> None:
        self.clock = clock
        self.publish = publish
        self.sources: dict[str, dict[str, Any]] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None
        self.events: collections.deque[dict] = collections.deque(maxlen=MAX_EVENTS_KEPT)

    def source(self, key: str, **state: Any) -> None:
        """Update the health of one input. A change of `connected` or `stale`
        is published on `.status` and kept as an event."""
        old = self.sources.get(key, {})
        new = {**old, **state, "updated": self.clock()}
        self.sources[key] = new
        if "error" in state and state["error"]:
            self.last_error = f"{key}: {state['error']}"
        elif "error" in state and (self.last_error or "").startswith(f"{key}: "):
            self.last_error = None  # that source recovered: its error is history (see the events)
        flips = [k for k in ("connected", "stale") if k in state and old.get(k) != state[k]]
        sentence = status_event(key, old, new)
        if sentence is not None:
            title, text, tags = sentence
            self.event(self.clock(), title, text, tags)
        if flips:
            self.publish("status", {"source": key, **new}, True)

    def event(self, when: float, title: str, text: str = "", tags: Sequence[str] = ()) -> None:
        """An annotation-worthy event (get_events; published on `.event`)."""
        ev = {
            "time": float(when),
            "title": str(title),
            "text": str(text),
            "tags": [str(t) for t in tags],
        }
        self.events.append(ev)
        self.publish("event", ev, False)

    def events_between(self, start: Any, end: Any) -> list[dict]:
        t0, t1 = resolve_interval(start, end, self.clock)
        return [e for e in self.events if t0 <= e["time"] < t1]

    # -- the store's and ingest's troubles -------------------------------------
    def rejected_batch(self, message: str) -> None:
        self.counters["rejected_batches"] += 1
        self.last_error = message
        self.log.error("rejected a batch: {message}", message=message)

    def store_failed(self, failure: Failure, timeline: str) -> None:
        self.counters["store_errors"] += 1
        self.last_error = f"store: {failure.getErrorMessage()}"
        self.log.failure("store append to {timeline} failed", failure=failure, timeline=timeline)

    def store_problem(self, text: str | None) -> None:
        """The store's news: a problem (disk full, read-only, damage found), or None once over."""
        if text is None:
            self.event(self.clock(), "store: writing again", "", ["status", "store"])
            if self.last_error and self.last_error.startswith("store:"):
                self.last_error = None
            return
        self.counters["store_problems"] += 1
        self.last_error = f"store: {text}"
        self.event(self.clock(), "store problem", text, ["status", "store"])
