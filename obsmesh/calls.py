"""Calls that are waited on for a while but never cancelled.

crossbar 26.10 fails half-way through dropping a session (a dead link, a stale
session) while it still owes an answer to a call that its caller cancelled or
that the router timed out: the session's registrations then stay behind for
good, answering nothing. A caller that must not wait long therefore leaves
the call running and stops waiting for it instead.

Twisted only (the router-hosted hub imports this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer


class SharedCall:
    """One call in flight, waited on by any number of callers, each for at most
    a while: `wait(t)` gives the call's outcome, or None after `t` seconds; the
    call itself is left to finish (its outcome, if late, is dropped)."""

    def __init__(self, d: defer.Deferred, on_done: Callable[[], Any]) -> None:
        self.waiters: list[defer.Deferred] = []
        self.on_done = on_done
        self.finished = False
        self.outcome: Any = None
        d.addBoth(self._done)

    def _done(self, outcome):
        self.finished, self.outcome = True, outcome
        self.on_done()
        for w in self.waiters:
            if not w.called:
                w.callback(outcome)  # a Failure fires the waiter's errback
        self.waiters = []

    def wait(self, seconds: float) -> defer.Deferred:
        from twisted.internet import reactor

        w: defer.Deferred = defer.Deferred()
        if self.finished:  # answered already (a router may answer at once)
            w.callback(self.outcome)
            return w
        self.waiters.append(w)
        reactor.callLater(seconds, lambda: None if w.called else w.callback(None))
        return w
