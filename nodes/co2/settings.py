"""Settings of the co2 node (`[co2]` in the TOML file, `OBSMESH_CO2_*`, the
flags of `obsmesh node co2`), shared by the node, the operator commands and
the demo recipe."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nodes.co2.paths import DEFAULT_UNIT_PATTERN
from obsmesh.settings import NOT_NEGATIVE, PORT, POSITIVE, Section, Setting, at_least


class Settings(Section):
    section = "co2"
    data_root = Setting(
        "", "uploads, pings and unit tokens (empty: <state_dir>/co2)", flag=True, metavar="DIR"
    )
    port = Setting(8090, "HTTP port of the unit endpoint", flag=True, check=PORT)
    host = Setting("127.0.0.1", "interface the unit endpoint listens on", flag=True)
    unit_pattern = Setting(DEFAULT_UNIT_PATTERN, "regular expression a unit id must match in full")
    token_header = Setting("X-Unit-Token", "header carrying a unit's token (empty: none)")
    token_query = Setting("token", "query parameter carrying a unit's token (empty: none)")
    compat_networks = Setting(
        [],
        "networks (CIDR) whose units may send no token (compatibility mode)",
        flag="--compat-network",
        repeat=True,
        metavar="CIDR",
    )
    max_body_bytes = Setting(
        1 << 20,
        "largest request body, bytes (a larger one gets 413, never buffered)",
        check=at_least(1),
    )
    silence = Setting(
        900.0, "seconds without a word from a unit before it is flagged", flag=True, check=POSITIVE
    )
    # The HTTP door (obsmesh/httpguard.py): what slow and anonymous clients can hold.
    max_connections = Setting(
        1024,
        "connections at once, in all (fewer if the descriptor limit is lower)",
        check=at_least(1),
    )
    max_connections_per_client = Setting(
        64, "connections at once from one address", check=at_least(1)
    )
    header_timeout = Setting(10.0, "seconds a client has to send a request head", check=POSITIVE)
    body_timeout = Setting(
        60.0, "seconds a client has to send a body once its head is accepted", check=POSITIVE
    )
    # A unit's clock (timecheck.py).
    future_tolerance = Setting(
        600.0, "seconds a sample may be dated ahead of the server's clock", check=NOT_NEGATIVE
    )
    reorder_tolerance = Setting(
        3600.0,
        "seconds a row may be older than the unit's newest stored row and still be stored",
        check=NOT_NEGATIVE,
    )
    unit_epoch = Setting(
        1_514_764_800.0, "UNIX time (2018-01-01) before which a sample's time is implausible"
    )

    @classmethod
    def validate(cls, values: dict[str, Any], mesh: Mapping[str, Any]) -> dict[str, Any]:
        if not values["data_root"]:
            values["data_root"] = os.path.join(mesh["state_dir"], "co2")
        return values


def endpoint_url(options: Mapping[str, Any]) -> str:
    """Where a local unit (or the simulator) reaches the endpoint."""
    host = options["host"]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{options['port']}"
