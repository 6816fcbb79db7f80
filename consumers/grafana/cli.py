"""`obsmesh grafana`: run the Grafana bridge (also `python -m consumers.grafana`).

Settings: the mesh's (router_url, realm, prefix, credentials: secrets_file,
secret or secret_file, for the principal `authid`) and the `[grafana]` section,
each key overridable by `OBSMESH_GRAFANA_<KEY>` (the password is best given
that way or through `password_file`, never in a committed file).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from obsmesh import config
from obsmesh.memtune import keep_freed_memory

DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "authid": "grafana",  # the bridge's principal on the router (role consumer)
    "port": 5000,
    "user": "",  # HTTP basic auth is on when a user is set
    "password": "",
    "password_file": "",
    "cors_origins": [],  # origins allowed to call from a browser; "*" for any
    "query_timeout": 10.0,  # seconds a node may take to answer one call
    "max_body": 1_048_576,  # bytes of one request body; over it: 413 before it is read
    "max_points": 100_000,  # cap on maxDataPoints
    # The front door (obsmesh.httpguard), for every path on this port.
    "max_connections": 1024,  # in all; fewer if the descriptor limit is lower
    "max_connections_per_client": 1024,  # from one address (a Grafana server is one client)
    "header_timeout": 10.0,  # seconds to send a request head
    "body_timeout": 30.0,  # seconds to send a body once its head is accepted
    # Bounded work per request.
    "max_series": 10_000,  # series one request may name, after expanding {a,b} and wildcards
    "expand_seconds": 2.0,  # longest time spent expanding one request's targets
    "max_values": 2_000_000,  # values in one answer: more series get fewer points each
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"interface to listen on (default {DEFAULTS['host']})")
    parser.add_argument("--port", type=int, help=f"HTTP port (default {DEFAULTS['port']})")
    parser.add_argument(
        "--router-url", help="the router's backend rawsocket (default from the mesh settings)"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        help="an origin allowed to call from a browser (repeatable; * for any)",
    )


def load(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    path = getattr(args, "config", None)
    mesh = config.mesh(path, router_url=getattr(args, "router_url", None))
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "cors_origins")}
    settings = config.settings(DEFAULTS, "grafana", path, overrides=overrides)
    if settings["port"] < 0 or settings["port"] > 65535:
        raise config.ConfigError(f"grafana port {settings['port']} is not a TCP port")
    if settings["user"] and not (settings["password"] or settings["password_file"]):
        raise config.ConfigError("grafana user is set without a password or password_file")
    from consumers.hapi.settings import load as hapi_settings  # [hapi]: served on this port

    settings["hapi"] = hapi_settings(path)
    return mesh, settings


def serve(mesh: dict[str, Any], settings: dict[str, Any], reactor: Any = None):
    """Start the bridge's WAMP session and HTTP server; returns (bridge, listening port)."""
    if reactor is None:
        from twisted.internet import reactor
    from consumers.grafana.bridge import Bridge
    from consumers.grafana.http import site
    from obsmesh.httpguard import listen_tcp, raise_nofile_limit

    bridge = Bridge(mesh, settings, reactor)
    raise_nofile_limit()  # the door's caps hold anyway; the limit only sets how many fit
    web = site(bridge, settings)  # reads password_file now: a bad path fails before listening
    port = listen_tcp(reactor, int(settings["port"]), web, interface=settings["host"])
    bridge.start()
    return bridge, port


def main(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor
    from twisted.logger import Logger

    from obsmesh import logs

    try:
        mesh, settings = load(args)
    except config.ConfigError as exc:
        print(f"obsmesh grafana: {exc}", file=sys.stderr)
        return 2
    logs.begin()
    keep_freed_memory()  # every /query builds and frees column-sized arrays: keep them warm
    try:
        bridge, port = serve(mesh, settings, reactor)
    except Exception as exc:  # a port in use, an unreadable password file
        print(f"obsmesh grafana: {exc}", file=sys.stderr)
        return 1
    where = port.getHost()
    Logger().info(
        "grafana bridge on http://{host}:{port}/ for router {router}",
        host=where.host,
        port=where.port,
        router=mesh["router_url"],
    )
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(bridge.stop()))
    reactor.run()
    return 0


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="obsmesh grafana", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file (default: $OBSMESH_CONFIG)")
    configure(parser)
    return main(parser.parse_args(argv))
