"""Where the client connects and as whom: arguments first, then `OBSMESH_*`
variables and the TOML file (`obsmesh.config.mesh()`).

Credentials: on the backend rawsocket the router asks for WAMP-CRA. The client
answers as `authid` (argument, `OBSMESH_AUTHID`, else "client") with `secret`
(argument, `OBSMESH_SECRET`, the file `OBSMESH_SECRET_FILE`, or derived from the
mesh's secrets file `OBSMESH_SECRETS_FILE`). Without a secret it connects
anonymously, which the public WebSocket (`ws://host:8080/ws`) accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from consumers.client.connection import Credentials
from consumers.client.errors import InvalidArgument
from obsmesh import config as mesh_config

DEFAULT_AUTHID = "client"


@dataclass(frozen=True)
class ClientSettings:
    url: str
    realm: str
    prefix: str
    credentials: Credentials | None
    tls_ca: str | None


def resolve(
    url: str | None = None,
    realm: str | None = None,
    prefix: str | None = None,
    config_path: str | None = None,
    authid: str | None = None,
    secret: str | None = None,
) -> ClientSettings:
    try:
        s = mesh_config.mesh(config_path)
    except mesh_config.ConfigError as exc:
        raise InvalidArgument(str(exc)) from None
    who = authid or os.environ.get("OBSMESH_AUTHID") or DEFAULT_AUTHID
    if not isinstance(who, str):
        raise InvalidArgument(f"authid must be a string, got {type(who).__name__}")
    if secret is None:
        from obsmesh.wamp import credentials

        try:
            found = credentials(s, who)
        except Exception as exc:  # an unreadable secret file names itself
            raise InvalidArgument(f"credentials for {who!r}: {exc}") from None
        secret = found["wampcra"]["secret"] if found else None
    creds = Credentials(who, secret) if secret else None
    return ClientSettings(
        url or s["router_url"],
        realm or s["realm"],
        prefix or s["prefix"],
        creds,
        s.get("tls_ca") or None,
    )
