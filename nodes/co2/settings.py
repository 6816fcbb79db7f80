"""Settings of the co2 node (`[co2]` in the TOML file, `OBSMESH_CO2_*`), shared
by the node, the operator commands and the launcher."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nodes.co2.paths import DEFAULT_UNIT_PATTERN
from obsmesh import config

SECTION = "co2"
DEFAULTS: dict[str, Any] = {
    "data_root": "",  # empty: <state_dir>/co2
    "port": 8090,
    "host": "127.0.0.1",
    "unit_pattern": DEFAULT_UNIT_PATTERN,
    "token_header": "X-Unit-Token",  # empty: tokens not taken from a header
    "token_query": "token",  # empty: tokens not taken from the query string
    "compat_networks": [],  # CIDRs whose units may send no token (compatibility mode)
    "max_body_bytes": 1 << 20,
    "silence": 900.0,  # seconds without a word from a unit before it is flagged silent
    # The HTTP door (obsmesh.httpguard): caps that hold against slow and anonymous clients.
    "max_connections": 1024,  # in all; fewer if the descriptor limit is lower
    "max_connections_per_client": 64,  # from one address
    "header_timeout": 10.0,  # seconds to send a request head
    "body_timeout": 60.0,  # seconds to send a body once its head is accepted
    # A unit's clock (timecheck.py).
    "future_tolerance": 600.0,  # seconds a sample may be dated ahead of the server's clock
    "reorder_tolerance": 3600.0,  # seconds a sample may be older than the newest stored
    "unit_epoch": 1_514_764_800.0,  # 2018-01-01T00:00:00Z: samples before it are implausible
}


def resolve(
    path: str | None, mesh: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The node's settings with the data root made concrete."""
    options = config.settings(DEFAULTS, SECTION, path=path, overrides=overrides)
    if not options["data_root"]:
        options["data_root"] = os.path.join(mesh["state_dir"], "co2")
    return options


def endpoint_url(options: Mapping[str, Any]) -> str:
    """Where a local unit (or the simulator) reaches the endpoint."""
    host = options["host"]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{options['port']}"
