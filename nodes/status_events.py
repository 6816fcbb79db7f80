"""A source's health flip as an event people read: a sentence for the title
("sas disconnected", "u3 went stale", "sas.rsync_to_nas recovered"), the
source's error as the text, and tags a consumer can filter on
(`status`, the source key, and `disconnected` / `stale` / `recovered`).
Pure: nodes/base.py calls it from `source()`; the dashboard and Grafana's
annotations show what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def status_event(
    key: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[str, str, list[str]] | None:
    """(title, text, tags) for the flips of `connected` and `stale` from
    `old` to `new`, or None when neither changed (or the source is new)."""
    if not old:
        return None
    words: list[str] = []
    tags = ["status", key]
    if "connected" in new and old.get("connected") != new["connected"]:
        if new["connected"] is True:
            words.append("connected")
            tags.append("recovered")
        elif new["connected"] is False:
            words.append("disconnected")
            tags.append("disconnected")
    if "stale" in new and old.get("stale") != new["stale"]:
        if new["stale"] is True:
            words.append("went stale (nothing new in time)")
            tags.append("stale")
        elif new["stale"] is False and old.get("stale") is True:
            words.append("recovered (fresh data again)")
            if "recovered" not in tags:
                tags.append("recovered")
    if not words:
        return None
    bad = "disconnected" in tags or "stale" in tags
    if bad and "recovered" in tags:
        tags.remove("recovered")  # e.g. connected again but still stale: not yet well
    error = new.get("error") if bad else None
    return f"{key} {' and '.join(words)}", str(error or ""), tags
