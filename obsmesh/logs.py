"""Where a service's log goes and from which level: stderr, `info` by default
(`OBSMESH_LOG_LEVEL=debug` adds the per-request lines, e.g. the CO2 endpoint's
access log), one line per event."""

from __future__ import annotations

import os
import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

ENV = "OBSMESH_LOG_LEVEL"


def level(name: str | None = None) -> LogLevel:
    name = (name or os.environ.get(ENV) or "info").strip().lower()
    try:
        return LogLevel.levelWithName(name)
    except Exception:
        raise ValueError(
            f"{ENV} must be one of debug, info, warn, error, critical; got {name!r}"
        ) from None


def begin(name: str | None = None) -> None:
    """Log to stderr from `name` (or $OBSMESH_LOG_LEVEL, or info) up."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level(name))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])]
    )
