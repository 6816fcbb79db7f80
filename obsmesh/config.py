"""Configuration: built-in defaults, then a TOML file, then `OBSMESH_*` variables.

Each component declares its defaults as a flat dict; its keys live in the TOML
file's top level (mesh-wide keys) or in a `[section]` (a node kind's keys).
Environment variables override: `OBSMESH_<KEY>` for mesh keys and
`OBSMESH_<SECTION>_<KEY>` for section keys. Values are coerced to the type of
the default, so a retention of "7" days is the number 7, never a string.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse, urlunparse

MESH_DEFAULTS: dict[str, Any] = {
    "realm": "obsmesh",
    "prefix": "obsmesh",
    "router_url": "rs://127.0.0.1:8081",  # backend rawsocket
    "public_url": "ws://127.0.0.1:8080/ws",  # WebSocket for browsers and remote consumers
    "store": "durable",  # durable (on disk, survives restarts) | memory | redis
    "store_dir": "",  # durable store root ("" = <state_dir>/store); a node uses <root>/<name>
    "store_sync_ms": 50.0,  # durability window: fsync at least this often while ingesting
    "store_max_bytes": 0,  # segment bytes on disk per node (0 = no limit)
    "redis_url": "redis://127.0.0.1:6379/0",
    "max_age": 7 * 86400.0,  # seconds of history kept per timeline
    "max_samples": 10_000_000,  # samples kept per timeline
    "point_budget": 1_000_000,  # values in one reply before too_many_points
    "live_interval": 0.1,  # longest a sample waits for its live batch, in seconds
    "live_batch_values": 4096,  # a live batch this full is published at once
    "max_queued_bytes": 32 << 20,  # the router drops a peer with more queued for it
    "heartbeat": 10.0,  # seconds between liveness probes to the router (0: none); 3 missed: reconnect
    "state_dir": ".obsmesh",  # local state: simulated data, logs, the durable stores
    # Moves every port of the local mesh (0: the defaults): the public WebSocket on
    # the base, the backend on base+1, the rest in the order obsmesh/layout.py gives.
    "port_base": 0,
    # Authentication (WAMP-CRA). The mesh's secrets file (router, local services);
    # a service elsewhere is given its own secret instead, never that file.
    "secrets_file": "",
    "secret": "",
    "secret_file": "",
    "consumer_auth": False,  # consumers must authenticate too (public transport)
    "tls_key": "",  # TLS on the public transport when both are set
    "tls_cert": "",
    "tls_ca": "",  # CA a client trusts for wss:// and rss:// (self-signed setups)
}


class ConfigError(ValueError):
    pass


def _coerce(key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
        if kind is int and isinstance(value, str):
            return int(value.replace("_", ""))
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key!r}: cannot read {value!r} as {kind.__name__}") from exc


def load_file(path: str | None) -> dict[str, Any]:
    path = path or os.environ.get("OBSMESH_CONFIG")
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def settings(
    defaults: Mapping[str, Any],
    section: str | None = None,
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve one component's settings; unknown keys in the file are refused."""
    environ = os.environ if environ is None else environ
    data = load_file(path)
    table = (
        data.get(section, {})
        if section
        else {k: v for k, v in data.items() if not isinstance(v, dict)}
    )
    unknown = set(table) - set(defaults)
    if unknown:
        where = f"[{section}]" if section else "top level"
        raise ConfigError(f"unknown setting(s) at {where}: {', '.join(sorted(unknown))}")
    out = dict(defaults)
    for key, value in table.items():
        out[key] = _coerce(key, value, defaults[key])
    env_prefix = f"OBSMESH_{section.upper()}_" if section else "OBSMESH_"
    for key, default in defaults.items():
        name = env_prefix + key.upper()
        if name in environ:
            out[key] = _coerce(key, environ[name], default)
    for key, value in (overrides or {}).items():
        if value is not None:
            out[key] = _coerce(key, value, defaults.get(key))
    return out


def mesh(
    path: str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The mesh settings; with `port_base` the router's URLs carry its first two ports,
    so every command run with the same settings finds that mesh."""
    out = settings(MESH_DEFAULTS, None, path, environ, overrides)
    base = out["port_base"]
    if base:
        if not 1024 <= base <= 65535 - 64:
            raise ConfigError(f"port_base must be 0 or a port from 1024 to 65471, got {base}")
        out["public_url"] = with_port(out["public_url"], base)
        out["router_url"] = with_port(out["router_url"], base + 1)
    return out


def with_port(url: str, port: int) -> str:
    """`url` with its port replaced."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunparse(parsed._replace(netloc=f"{host}:{port}"))
