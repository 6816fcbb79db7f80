"""URL routing of the CO2 endpoint, pure: (method, raw path) -> Route.

Units (the firmware's URLs):
    POST /ou/<id>/alive?site_code=&rssi_raw=&rssi_dbm=&ber_raw=
    PUT  /ou/<id>/push-sequential/<path>?offset=N
    GET  /ou/<id>/updates[/<path>][?recursive=True]
Status pages (JSON):
    GET  /status/alive/recent[?limit=N], /status/alive/summary, /data/co2/summary
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from nodes.co2.errors import Rejected
from nodes.co2.paths import check_relative_path, check_unit_id

Kind = Literal["alive", "push", "updates", "recent", "alive_summary", "co2_summary", "index"]

_PAGES: dict[bytes, Kind] = {
    b"/": "index",
    b"/status/alive/recent": "recent",
    b"/status/alive/summary": "alive_summary",
    b"/data/co2/summary": "co2_summary",
}


@dataclass(frozen=True)
class Route:
    kind: Kind
    unit_id: str | None = None
    path: tuple[str, ...] = ()  # decoded, validated names below the unit's directory


def route(
    method: bytes,
    raw_path: bytes,
    unit_pattern: re.Pattern[str],
    upload_dirs: tuple[str, ...],
) -> Route:
    """Route a request or raise Rejected (400 bad input, 404, 405)."""
    if not raw_path.startswith(b"/"):
        raise Rejected(400, "bad_path", "request path must be absolute")
    page = _PAGES.get(raw_path)
    if page is not None:
        _want(method, b"GET")
        return Route(page)
    parts = raw_path.split(b"/")[1:]
    if len(parts) < 3 or parts[0] != b"ou":
        raise Rejected(404, "not_found", "no such resource")
    unit_id = check_unit_id(parts[1], unit_pattern)
    action, rest = parts[2], parts[3:]
    if action == b"alive" and not rest:
        _want(method, b"POST")
        return Route("alive", unit_id)
    if action == b"push-sequential":
        _want(method, b"PUT")
        names = check_relative_path(rest, upload_dirs)
        if len(names) < 2:  # a file named like a synced directory would block it
            raise Rejected(400, "bad_path", "uploads go into a directory (data/..., errors/...)")
        return Route("push", unit_id, names)
    if action == b"updates":
        _want(method, b"GET")
        if rest and rest[-1] == b"":
            rest = rest[:-1]  # "updates/" and "updates/x/" list a directory
        return Route("updates", unit_id, check_relative_path(rest) if rest else ())
    raise Rejected(404, "not_found", "no such resource")


def _want(method: bytes, allowed: bytes) -> None:
    if method != allowed:
        raise Rejected(405, "method_not_allowed", f"use {allowed.decode()}")
