"""Where the client connects and as whom: arguments first, then `OBSMESH_*`
variables and the TOML file (`obsmesh.config.mesh()`).

Where: a consumer only reads, so by default it joins the mesh's public
WebSocket (`public_url`, `ws://127.0.0.1:8080/ws` for `make run`), where the
router admits anonymous consumers with the read-only `consumer` role. That
works right after `make run`, from any directory and any machine that can
reach the router, with no secret to copy. The backend rawsocket (`rs://`,
faster for bulk history) is used when asked for: the `url` argument, or
`router_url` set explicitly (`OBSMESH_ROUTER_URL` or the TOML file).

As whom: on the backend the router asks for WAMP-CRA. The client answers as
`authid` (argument, `OBSMESH_AUTHID`, else "client") with `secret` (argument,
`OBSMESH_SECRET`, the file `OBSMESH_SECRET_FILE`, derived from the mesh's
secrets file `OBSMESH_SECRETS_FILE`, else from the local mesh's own secrets
file `<state_dir>/secrets.json` when it exists, as `make run` writes it).
Without a secret it connects anonymously.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from consumers.client.connection import Credentials
from consumers.client.errors import InvalidArgument
from obsmesh import config as mesh_config

DEFAULT_AUTHID = "client"
BACKEND_SCHEMES = ("rs", "rss", "tcp")


@dataclass(frozen=True)
class ClientSettings:
    url: str
    realm: str
    prefix: str
    credentials: Credentials | None
    tls_ca: str | None
    public_url: str = ""  # the mesh's public WebSocket, for hints in error messages


def resolve(
    url: str | None = None,
    realm: str | None = None,
    prefix: str | None = None,
    config_path: str | None = None,
    authid: str | None = None,
    secret: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    environ = os.environ if environ is None else environ
    try:
        s = mesh_config.mesh(config_path, environ)
        router_set = "OBSMESH_ROUTER_URL" in environ or "router_url" in mesh_config.load_file(
            config_path or environ.get("OBSMESH_CONFIG")
        )
    except mesh_config.ConfigError as exc:
        raise InvalidArgument(str(exc)) from None
    target = url or (s["router_url"] if router_set else s["public_url"])
    who = authid or environ.get("OBSMESH_AUTHID") or DEFAULT_AUTHID
    if not isinstance(who, str):
        raise InvalidArgument(f"authid must be a string, got {type(who).__name__}")
    if secret is None:
        secret = _secret(s, who, backend=_is_backend(target))
    creds = Credentials(who, secret) if secret else None
    return ClientSettings(
        target,
        realm or s["realm"],
        prefix or s["prefix"],
        creds,
        s.get("tls_ca") or None,
        s["public_url"],
    )


def _is_backend(url: object) -> bool:
    return isinstance(url, str) and urlparse(url).scheme in BACKEND_SCHEMES


def local_secrets_file(settings: Mapping) -> str | None:
    """The secrets file `obsmesh up` keeps in its state directory, if there is one."""
    path = os.path.join(str(settings["state_dir"]), "secrets.json")
    return path if os.path.isfile(path) else None


def _secret(settings: Mapping, who: str, backend: bool) -> str | None:
    from obsmesh.wamp import credentials

    where = dict(settings)
    if backend and not (where["secret"] or where["secret_file"] or where["secrets_file"]):
        where["secrets_file"] = local_secrets_file(settings) or ""
    try:
        found = credentials(where, who)
    except Exception as exc:  # an unreadable secret file names itself
        raise InvalidArgument(f"credentials for {who!r}: {exc}") from None
    return found["wampcra"]["secret"] if found else None
