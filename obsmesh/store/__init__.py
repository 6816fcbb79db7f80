"""Time-series stores: in-memory (default) and Redis, behind one interface."""

from __future__ import annotations

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
]


def make_store(settings: dict[str, Any], namespace: str) -> Store:
    """The store a node's settings ask for; `namespace` keeps nodes apart in Redis."""
    kind = settings.get("store", "memory")
    if kind == "memory":
        return MemoryStore(settings["max_age"], settings["max_samples"])
    if kind == "redis":
        from obsmesh.store.redis import RedisStore

        return RedisStore(
            settings["redis_url"], namespace, settings["max_age"], settings["max_samples"]
        )
    raise StoreError(f"unknown store {kind!r}: use memory or redis")
