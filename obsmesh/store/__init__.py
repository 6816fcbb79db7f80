"""Time-series stores behind one protocol: durable (the default: history on
disk that survives any restart), in-memory, and Redis. See README.md here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from obsmesh.store.base import BOOL, FIELD_TYPES, NUMERIC, STRING, Store, StoreError
from obsmesh.store.memory import MemoryStore

__all__ = [
    "BOOL",
    "FIELD_TYPES",
    "NUMERIC",
    "STRING",
    "MemoryStore",
    "Store",
    "StoreError",
    "make_store",
    "store_directory",
]

KINDS = ("durable", "memory", "redis")


def store_directory(settings: dict[str, Any], node: str) -> str:
    """Where a node's durable store lives: `<store_dir>/<node>`, and by default
    `<state_dir>/store/<node>`."""
    root = settings.get("store_dir") or os.path.join(settings["state_dir"], "store")
    return os.path.join(os.path.abspath(root), node)


def make_store(
    settings: dict[str, Any],
    namespace: str,
    *,
    node: str | None = None,
    reactor: Any = None,
    clock: Callable[[], float] = time.time,
) -> Store:
    """The store a node's settings ask for; `namespace` keeps nodes apart in Redis,
    `node` names the durable store's directory (default: the namespace's last part)."""
    kind = settings.get("store", "durable")
    if kind == "memory":
        return MemoryStore(
            settings["max_age"], settings["max_samples"], reactor=reactor, clock=clock
        )
    if kind == "durable":
        from obsmesh.store.durable import DurableStore

        return DurableStore(
            store_directory(settings, node or namespace.rsplit(":", 1)[-1]),
            settings["max_age"],
            settings["max_samples"],
            max_bytes=int(settings.get("store_max_bytes", 0)),
            sync_interval=float(settings.get("store_sync_ms", 50.0)) / 1000.0,
            reactor=reactor,
            clock=clock,
        )
    if kind == "redis":
        from obsmesh.store.redis import RedisStore

        return RedisStore(
            settings["redis_url"],
            namespace,
            settings["max_age"],
            settings["max_samples"],
            reactor=reactor,
            clock=clock,
        )
    raise StoreError(f"unknown store {kind!r}: use {', '.join(KINDS)}")
