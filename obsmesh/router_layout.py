"""The router's process layout: the `[router]` section (`OBSMESH_ROUTER_<KEY>`).

- `backend_tls`: the backend rawsocket speaks TLS (`rss://`) with the mesh's
  certificate; needed to open it beyond loopback on a public address, and on
  every interface (`--host 0.0.0.0`) unless `backend_plain` is set.
- `backend_plain`: a plain backend on every interface is acceptable because
  every interface is on a private network (a container's own network, whose
  published ports the host binds; the compose stack sets it).
- `proxies = N`: N crossbar proxy workers serve the public web transport
  (static dashboard, WebSocket) and the router worker keeps only the routing.
  The proxies share the public port (SO_REUSEPORT: the kernel spreads new
  connections over them), terminate WebSocket, TLS and JSON, authenticate
  consumers (the hosted authenticator answers through them), and forward each
  session to the router worker over a Unix socket, authenticated with the
  router node's own key (WAMP-cryptosign-proxy). Each client session keeps its
  own backend session, so routing, authorisation and meta events are those of
  a direct connection.

Standard library only (rendered for crossbar).
"""

from __future__ import annotations

import copy
import os
import pathlib
from typing import Any

ROUTER_DEFAULTS: dict[str, Any] = {
    "proxies": 0,
    "backend_tls": False,
    "backend_plain": False,
}

SOCKET = "router.sock"  # in the router's node directory
NODE_ID = "obsmesh_router"  # the crossbar node's id: proxies authenticate under it


def apply_proxies(cfg: dict[str, Any], count: int, realm: str, pubkey: str) -> None:
    """Move the public transport of a rendered configuration to `count` proxy workers."""
    if count < 0 or count > 64:
        raise ValueError(f"proxies must be between 0 and 64, got {count}")
    if count == 0:
        return
    cfg.setdefault("controller", {})["id"] = NODE_ID
    worker = cfg["workers"][0]
    public = next(t for t in worker["transports"] if t["id"] == "public")
    worker["transports"].remove(public)
    worker["transports"].append(
        {
            "id": "proxies",
            "type": "rawsocket",
            "endpoint": {"type": "unix", "path": SOCKET},
            "serializers": ["cbor", "msgpack", "json"],
            "options": {"max_message_size": 16777216},
            "auth": {
                "cryptosign-proxy": {
                    "type": "static",
                    "principals": {
                        NODE_ID: {"realm": realm, "role": "consumer", "authorized_keys": [pubkey]}
                    },
                }
            },
        }
    )
    roles = sorted({ro["name"] for r in worker["realms"] for ro in r["roles"]})
    for i in range(count):
        transport = copy.deepcopy(public)
        transport["id"] = "public"
        transport["endpoint"]["shared"] = True
        transport["endpoint"].setdefault("backlog", 1024)
        for path in transport["paths"].values():
            for method in (path.get("auth") or {}).values():
                if method.get("type") == "dynamic":
                    # the proxy asks the hosted authenticator through a session of this role
                    method["authenticator-realm"] = realm
                    method["authenticator-role"] = "hub"
        cfg["workers"].append(
            {
                "type": "proxy",
                "id": f"proxy{i + 1}",
                "options": {},
                "connections": {
                    "router": {
                        "transport": {
                            "type": "rawsocket",
                            "endpoint": {"type": "unix", "path": SOCKET},
                            "serializer": "cbor",
                            "url": "rs://localhost",
                        },
                        "auth": {"cryptosign-proxy": {"type": "static"}},
                    }
                },
                "routes": {realm: {role: "router" for role in roles}},
                "transports": [transport],
            }
        )


def socket_path(cbdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(cbdir) / SOCKET
