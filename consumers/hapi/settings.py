"""The HAPI server's settings: `[hapi]` in the mesh's TOML file, each key
overridable by `OBSMESH_HAPI_<KEY>` (read by `obsmesh grafana`, whose front door
serves `/hapi`)."""

from __future__ import annotations

from typing import Any

from obsmesh import config

DEFAULTS: dict[str, Any] = {
    "enabled": True,  # serve /hapi on the bridge's port
    "server_id": "obsmesh",  # /about id
    "title": "obsmesh: live observatory data",
    "contact": "the operator of this mesh",
    "description": "Every timeline of every node of an obsmesh mesh, one dataset each",
    "max_requests": 512,  # HAPI requests in progress at once; more get HTTP 503 (HAPI 1500)
    "max_streams": 4,  # /data responses streaming at once
    "max_waiting": 256,  # /data requests waiting for a stream slot; more get 503
    "max_rows": 500_000_000,  # records one /data request may ask for (1408 beyond)
    "window_values": 0,  # values per get_data window; 0 = the mesh's point budget
    "stall_timeout": 300.0,  # seconds a client may read nothing before its stream is dropped
}


def load(path: str | None = None) -> dict[str, Any]:
    out = config.settings(DEFAULTS, "hapi", path)
    for key in ("max_requests", "max_streams", "max_waiting", "max_rows"):
        if int(out[key]) < 1:
            raise config.ConfigError(f"hapi {key} must be at least 1")
    if float(out["stall_timeout"]) <= 0:
        raise config.ConfigError("hapi stall_timeout must be positive")
    if int(out["window_values"]) < 0:
        raise config.ConfigError("hapi window_values must be 0 or more")
    return out
