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
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

DEFAULT_LEVEL = "info"


def level(name: str | None = None) -> LogLevel:
    """The level `name` (or `OBSMESH_LOG_LEVEL`), `info` when unset or unknown."""
    text = (name or os.environ.get("OBSMESH_LOG_LEVEL") or DEFAULT_LEVEL).strip().lower()
    try:
        return LogLevel.levelWithName("warn" if text == "warning" else text)
    except Exception:  # InvalidLogLevelError: an unknown name must not stop a service
        return LogLevel.levelWithName(DEFAULT_LEVEL)


def begin(name: str | None = None, out: IO[str] | None = None) -> None:
    """Start logging to stderr (or `out`) at `level(name)`."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level(name))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(out or sys.stderr), [predicate])]
    )
