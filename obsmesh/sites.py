"""Sites: routers linked to each other with crossbar's router-to-router realm links.

A *site* is one router (with its hub) and the nodes that join it. Each site's
router links the realm to every peer site (`rlinks` in the realm of the
rendered crossbar configuration): the link forwards the site's own
registrations and subscriptions to the peer, so a consumer at one site calls
and subscribes to another site's nodes through its own router. Crossbar does
the forwarding; obsmesh only renders the configuration:

- a `links` transport on the router worker: WebSocket (its pings notice a dead
  peer within seconds), TLS beyond loopback, and WAMP-cryptosign only, with one
  principal per peer site holding that router's public key (`obsmesh router
  --show-key` prints it);
- the role `rlink` for those principals (crossbar publishes no registration
  meta events for sessions of that role, which keeps two links from echoing
  each other's registrations), allowed to register and subscribe in the mesh's
  URI space;
- one rlink per peer forwarding local registrations and subscriptions only;
  the peer's own link brings the other direction;
- caller and publisher disclosure for every role: crossbar's link refuses to
  forward a call or an event whose origin it does not know.

Node names are unique across sites because every name at site S starts with
`S-`: S's authenticator admits no node principal without that prefix and S's
hub lists no node name without it (so no site can hold a name of another),
and site names are distinct (a router refuses a peer named like itself). The
hub of S answers `P.site.S.get_data_node` with its own nodes; its
`P.consumer.get_data_node` adds those of every peer reachable now.

Standard library only (the router renders this module's output for crossbar).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from obsmesh.config import ConfigError

SITE_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
LOOPBACK = ("127.0.0.1", "::1", "localhost")

# The `[site]` section of the configuration (`OBSMESH_SITE_<KEY>`).
SITE_DEFAULTS: dict[str, Any] = {
    "name": "",  # this site's name; every node name here starts with "<name>-"
    "link_port": 0,  # the port peer routers link to (WebSocket, TLS beyond loopback)
    # One "NAME URL KEY" per peer: its site name, its links URL (wss://host:port/)
    # and its router's public key (hex, `obsmesh router --show-key` there).
    "peers": [],
}


class SiteError(ConfigError):
    pass


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    key: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 0


@dataclass(frozen=True)
class Site:
    name: str
    link_port: int
    peers: tuple[Peer, ...]


def valid_site_name(name: object) -> bool:
    return isinstance(name, str) and SITE_NAME.match(name) is not None


def node_prefix(site: str) -> str:
    """What every node name at `site` starts with."""
    return f"{site}-"


def parse_peer(text: str) -> Peer:
    parts = text.split()
    if len(parts) != 3:
        raise SiteError(f"a peer is 'NAME URL KEY', got {text!r}")
    name, url, key = parts
    if not valid_site_name(name):
        raise SiteError(f"peer site name {name!r} must match {SITE_NAME.pattern}")
    parsed = urlparse(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname or not parsed.port:
        raise SiteError(f"peer {name}: the URL must be ws://HOST:PORT/ or wss://HOST:PORT/")
    if parsed.scheme == "ws" and parsed.hostname not in LOOPBACK:
        raise SiteError(f"peer {name}: a link beyond loopback must use TLS (wss://)")
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise SiteError(f"peer {name}: the key must be 64 hex digits (an Ed25519 public key)")
    return Peer(name, url, key)


def resolve(settings: dict[str, Any]) -> Site | None:
    """The site from the `[site]` settings, or None when this router is on its own."""
    name = settings.get("name") or ""
    if not name:
        if settings.get("peers"):
            raise SiteError("[site] peers need a site name ([site] name)")
        return None
    if not valid_site_name(name):
        raise SiteError(f"site name {name!r} must match {SITE_NAME.pattern}")
    peers = tuple(parse_peer(p) for p in settings.get("peers") or [])
    names = [p.name for p in peers]
    if name in names:
        raise SiteError(f"a peer is named like this site ({name}): site names must be distinct")
    if len(set(names)) != len(names):
        raise SiteError("two peers share a site name")
    port = int(settings.get("link_port") or 0)
    if peers and not 0 < port < 65536:
        raise SiteError("[site] link_port must be set when the site has peers")
    return Site(name, port, peers)


def router_key(cbdir: str | os.PathLike, crossbar: str) -> str:
    """The public key (hex) of the router whose node directory is `cbdir`, made by
    crossbar itself (`crossbar keys`) on first use; the links authenticate with it."""
    cbdir = pathlib.Path(cbdir)
    pub = cbdir / "key.pub"
    if not pub.exists():
        cbdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [crossbar, "keys", "--cbdir", str(cbdir)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    for line in pub.read_text().splitlines():
        tag, _, value = line.partition(":")
        if tag.strip() == "public-key-ed25519":
            return value.strip()
    raise SiteError(f"no public-key-ed25519 in {pub}")


def apply(
    cfg: dict[str, Any],
    site: Site,
    *,
    realm: str,
    prefix: str,
    host: str,
    tls: dict[str, str] | None,
    tls_ca: str | None,
) -> None:
    """Add the site's links to a rendered router configuration (in place)."""
    worker = cfg["workers"][0]
    if site.peers and host not in LOOPBACK and tls is None:
        raise SiteError(f"links on {host} need TLS (tls_cert and tls_key)")
    for r in worker["realms"]:
        for role in r["roles"]:
            for perm in role.get("permissions", []):  # the authoriser of nodes does the same
                perm["disclose"] = {"caller": True, "publisher": True}
        if site.peers:
            r["roles"].append(_link_role(prefix))
            r["rlinks"] = [_rlink(peer, realm, tls_ca) for peer in site.peers]
    if site.peers:
        worker["transports"].append(_links_transport(site, realm, host, tls))
    for c in worker.get("components", []):
        extra = c.setdefault("extra", {})
        extra["site"] = site.name
        if c["id"] == "hub":
            extra["peers"] = [p.name for p in site.peers]


def _link_role(prefix: str) -> dict[str, Any]:
    return {
        "name": "rlink",
        "permissions": [
            {
                "uri": f"{prefix}.",
                "match": "prefix",
                "allow": {"call": False, "register": True, "publish": False, "subscribe": True},
                "disclose": {"caller": True, "publisher": True},
                "cache": True,
            }
        ],
    }


def _links_transport(
    site: Site, realm: str, host: str, tls: dict[str, str] | None
) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"type": "tcp", "interface": host, "port": site.link_port}
    if tls is not None:
        endpoint["tls"] = dict(tls)
    principals = {
        p.name: {"realm": realm, "role": "rlink", "authorized_keys": [p.key]} for p in site.peers
    }
    return {
        "id": "links",
        "type": "websocket",
        "endpoint": endpoint,
        "serializers": ["cbor", "msgpack", "json"],
        "options": {
            "max_message_size": 16777216,
            "max_frame_size": 16777216,
            # A peer behind a dead network path is dropped, and its forwarded
            # registrations with it, within 15 s.
            "auto_ping_interval": 5000,
            "auto_ping_timeout": 10000,
        },
        "auth": {"cryptosign": {"type": "static", "principals": principals}},
    }


def _rlink(peer: Peer, realm: str, tls_ca: str | None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"type": "tcp", "host": peer.host, "port": peer.port}
    if peer.url.startswith("wss://"):
        tls: dict[str, Any] = {"hostname": peer.host}
        if tls_ca:
            tls["ca_certificates"] = [str(pathlib.Path(tls_ca).resolve())]
        endpoint["tls"] = tls
    return {
        "id": f"to-{peer.name}",
        "realm": realm,
        "forward_local_invocations": True,
        "forward_remote_invocations": False,
        "forward_local_events": True,
        "forward_remote_events": False,
        "transport": {"type": "websocket", "endpoint": endpoint, "url": peer.url},
    }
