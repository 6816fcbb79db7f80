"""Service logs: one line per event worth reading at the default level
(`info`); per-request and per-connection lines at `debug`.

`OBSMESH_LOG_LEVEL` (debug, info, warn, error; default info) sets the level of
every service `obsmesh up` starts. Twisted and autobahn only: the hub's
process imports this too.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import implementer

DEFAULT_LEVEL = "info"


def level(name: str | None = None) -> LogLevel:
    """The level `name` (or `OBSMESH_LOG_LEVEL`), `info` when unset or unknown."""
    text = (name or os.environ.get("OBSMESH_LOG_LEVEL") or DEFAULT_LEVEL).strip().lower()
    try:
        return LogLevel.levelWithName("warn" if text == "warning" else text)
    except Exception:  # InvalidLogLevelError: an unknown name must not stop a service
        return LogLevel.levelWithName(DEFAULT_LEVEL)


@implementer(ILogFilterPredicate)
class QuietRetries:
    """autobahn's Component logs two or three lines per connection attempt, every
    few seconds for as long as the router is away: thousands of lines an hour
    per service. The attempts go to debug; of the failures, the first of each
    outage (and any different one) stays."""

    NAMESPACE = "autobahn.twisted.component.Component"
    ATTEMPT = ("trying transport", "connecting once using")

    def __init__(self, threshold: LogLevel) -> None:
        self.threshold = threshold
        self.last_failure: str | None = None

    def __call__(self, event: dict) -> PredicateResult:
        if event.get("log_namespace") != self.NAMESPACE:
            return PredicateResult.maybe
        text = formatEvent(event)
        if text.startswith("session leaving"):
            self.last_failure = None  # an outage begins: its first failure is news
        debug = text.startswith(self.ATTEMPT)
        if text.startswith("Connection failed"):
            debug = text == self.last_failure
            self.last_failure = text
        if debug and self.threshold > LogLevel.debug:
            return PredicateResult.no
        return PredicateResult.maybe


def begin(name: str | None = None, out: IO[str] | None = None) -> None:
    """Start logging to stderr (or `out`) at `level(name)`."""
    threshold = level(name)
    predicates = [QuietRetries(threshold), LogLevelFilterPredicate(defaultLogLevel=threshold)]
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(out or sys.stderr), predicates)]
    )
