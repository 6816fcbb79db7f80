"""The tree watcher the data-flow node uses lives in `obsmesh.watch` (weather
follows its files with it too); these names stay importable from here."""

from obsmesh.watch import (
    ARRIVED,
    CHANGED,
    CREATED,
    EXISTS,
    GONE,
    RESCAN,
    TreeWatcher,
    inotify_available,
)

__all__ = [
    "ARRIVED",
    "CHANGED",
    "CREATED",
    "EXISTS",
    "GONE",
    "RESCAN",
    "TreeWatcher",
    "inotify_available",
]
