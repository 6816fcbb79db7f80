"""Periodic work on the reactor: one helper instead of hand-written LoopingCalls.

`Periodic(reactor, seconds, fn)` calls `fn` every `seconds` once started, on
the reactor it is given (a `task.Clock` in tests). It differs from a bare
LoopingCall where nodes kept getting it wrong:

- an exception in `fn` is logged and counted, and the next tick still comes
  (a LoopingCall stops for good on the first error: a node whose loop dies
  stops ingesting without a word);
- a tick whose `fn` returns a Deferred or a coroutine is waited for before
  the next one is scheduled (no overlapping runs);
- `start` and `stop` may be called any number of times in any order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class Periodic:
    """`fn` every `seconds` seconds on `reactor` while started."""

    def __init__(self, reactor: Any, seconds: float, fn: Callable[[], Any], name: str = "") -> None:
        if not seconds > 0:
            raise ValueError(f"a period must be positive seconds, got {seconds!r}")
        self.reactor = reactor
        self.seconds = float(seconds)
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self.failures = 0  # ticks whose fn raised (each logged)
        self._loop: task.LoopingCall | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    def start(self, now: bool = False) -> None:
        """Begin ticking (at once when `now`); a no-op while already running."""
        if self.running:
            return
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.seconds, now=now)

    def stop(self) -> None:
        if self.running:
            assert self._loop is not None
            self._loop.stop()

    def _tick(self) -> defer.Deferred | None:
        try:
            result = self.fn()
        except Exception:
            self._failed(Failure())
            return None
        if inspect.iscoroutine(result):
            result = defer.ensureDeferred(result)
        if isinstance(result, defer.Deferred):
            return result.addErrback(self._failed)
        return None

    def _failed(self, failure: Failure) -> None:
        self.failures += 1
        log.failure(
            "periodic {name} failed; it runs again in {s:g} s",
            failure=failure,
            name=self.name,
            s=self.seconds,
        )
