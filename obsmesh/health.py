"""Health checks that ask the service itself (container HEALTHCHECKs, probes).

    python -m obsmesh.health                 # what does this container run? ask that
    python -m obsmesh.health node NAME       # the node answers get_status and the hub lists it
    python -m obsmesh.health router          # the router and its hub answer get_data_node
    python -m obsmesh.health hub             # the same, over the backend transport
    python -m obsmesh.health http URL        # an HTTP service answers 2xx (the Grafana bridge's /)
    python -m obsmesh.health tcp HOST:PORT   # something listens (a radar or Canada simulator)

Exit status 0 when healthy, 1 when not, with one line saying why (Docker keeps
it in the container's health log). Without arguments the check is chosen from
the command line of process 1 (`/proc/1/cmdline`), so one HEALTHCHECK in an
image serves every service the image runs.

Node checks authenticate as the node's own name, so a node given only its own
secret (`OBSMESH_SECRET`) is checked with that secret. This module imports no
numpy: a check must be cheap.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

DEFAULT_TIMEOUT = 10.0


def simulator_ports() -> dict[str, int]:
    """`obsmesh simulate NAME` -> the port it listens on by default, as each node kind
    declares its simulators (obsmesh/kinds.py); simulators that listen on none are absent."""
    from obsmesh.kinds import registry

    return {name: sim.port for name, (_, sim) in registry().simulators().items() if sim.port}


class HealthError(Exception):
    """The service is not healthy; the message says why."""


@dataclass(frozen=True)
class Check:
    kind: str  # node | router | hub | http | tcp | none
    target: str = ""  # node name, URL or host:port; for `none`, why nothing can be asked
    config: str | None = None  # the service's --config file, if it had one


# -- choosing the check from a command line (pure) -----------------------------
def _option(args: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in args (the last one wins, as in argparse)."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1 :]
    return value


def _after_globals(args: Sequence[str]) -> list[str]:
    """Drop the global `--config FILE` that may precede the subcommand."""
    out = list(args)
    while out and (out[0] == "--config" or out[0].startswith("--config=")):
        out = out[2:] if out[0] == "--config" else out[1:]
    return out


def detect(argv: Sequence[str], environ: Mapping[str, str]) -> Check:
    """The check that fits a service started with `argv` (e.g. process 1's command line)."""
    argv = [a for a in argv if isinstance(a, str)]
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        if base == "crossbar":
            return Check("router")
        rest: list[str] | None = None
        if base == "obsmesh":  # the console script (or `docker-init -- obsmesh ...`)
            rest = argv[i + 1 :]
        elif arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "obsmesh":
            rest = argv[i + 2 :]
        elif arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "consumers.grafana":
            return _bridge(argv[i + 2 :], environ)
        if rest is None:
            continue
        config = _option(rest, "--config")
        cmd = _after_globals(rest)
        if not cmd:
            return Check("none", "obsmesh without a subcommand")
        if cmd[0] == "node" and len(cmd) > 1:
            return Check("node", _option(cmd[2:], "--name") or cmd[1], config)
        if cmd[0] in ("router", "up"):
            return Check("router", config=config)
        if cmd[0] == "hub":
            return Check("hub", config=config)
        if cmd[0] == "grafana":
            return _bridge(cmd[1:], environ)
        ports = simulator_ports() if cmd[0] == "simulate" else {}
        if len(cmd) > 1 and cmd[1] in ports:
            port = _option(cmd[2:], "--port") or str(ports[cmd[1]])
            return Check("tcp", f"127.0.0.1:{port}")
        return Check(
            "none", f"`obsmesh {' '.join(cmd[:2])}` serves nothing to ask; disable its health check"
        )
    return Check("none", f"not an obsmesh service: {' '.join(argv)[:200]!r}")


def _bridge(args: Sequence[str], environ: Mapping[str, str]) -> Check:
    """The bridge's `/` on the port it was given, else its `[grafana] port` setting."""
    from consumers.grafana.cli import DEFAULTS
    from obsmesh import config

    path = _option(args, "--config")
    port = _option(args, "--port") or config.settings(DEFAULTS, "grafana", path, environ)["port"]
    return Check("http", f"http://127.0.0.1:{port}/", path)


def pid1_argv() -> list[str]:
    with open("/proc/1/cmdline", "rb") as f:
        raw = f.read()
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


# -- asking ------------------------------------------------------------------
def check_http(url: str, timeout: float, auth: tuple[str, str] | None = None) -> str:
    request = urllib.request.Request(url, method="GET")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        raise HealthError(
            f"{url} answered {exc.code}: {exc.read(300).decode('utf-8', 'replace')}"
        ) from None
    except (OSError, ValueError) as exc:
        raise HealthError(f"{url}: {exc}") from None


def check_tcp(address: str, timeout: float) -> str:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return f"{address} accepts connections"
    except (OSError, ValueError) as exc:
        raise HealthError(f"{address}: {exc}") from None


def _bridge_auth(config_path: str | None) -> tuple[str, str] | None:
    """The bridge's own basic-auth credentials, when it has any (its `/` then asks for them)."""
    from consumers.grafana.cli import DEFAULTS
    from obsmesh import config

    s = config.settings(DEFAULTS, "grafana", path=config_path)
    if not s["user"]:
        return None
    password = s["password"]
    if not password and s["password_file"]:
        with open(s["password_file"], encoding="utf-8") as f:
            password = f.read().strip()
    return s["user"], password


async def _ask(
    url: str, realm: str, authentication: dict | None, calls: list[tuple[str, tuple]]
) -> list[Any]:
    """Join once (no retries), make the calls in order, leave."""
    from autobahn.twisted.component import Component
    from twisted.internet import defer, reactor

    from obsmesh.wamp import transport

    spec = transport(url)
    spec["max_retries"] = 0
    comp = Component(transports=[spec], realm=realm, authentication=authentication or {})
    joined: defer.Deferred = defer.Deferred()
    refused: list[str] = []
    comp.on("join", lambda session, details: None if joined.called else joined.callback(session))
    # A refused login (no or wrong credentials) ends in a leave before any join: keep its reason.
    comp.on(
        "leave",
        lambda session, details: refused.append(
            f"{details.reason}{': ' + details.message if details.message else ''}"
        ),
    )
    done = comp.start(reactor)

    def never_joined(failure):
        if not joined.called:
            joined.errback(
                HealthError(f"the router refused the session: {refused[0]}") if refused else failure
            )

    done.addErrback(never_joined)
    session = await joined
    try:
        return [await session.call(uri, *args) for uri, args in calls]
    finally:
        session.leave()


def _run(coro_fn, timeout: float) -> Any:
    """Run one coroutine on the reactor, at most `timeout` seconds; HealthError if it fails."""
    from autobahn.wamp.exception import ApplicationError
    from twisted.internet import defer, reactor

    out: dict[str, Any] = {}

    def go() -> None:
        d = defer.ensureDeferred(coro_fn())
        d.addTimeout(timeout, reactor)
        d.addCallbacks(lambda r: out.update(result=r), lambda f: out.update(error=f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]  # IReactorCore omits it
    if "error" in out:
        f = out["error"]
        if f.check(defer.TimeoutError, defer.CancelledError):
            raise HealthError(f"no answer within {timeout:g} s")
        if f.check(ApplicationError):
            exc = f.value
            raise HealthError(f"{exc.error}: {exc.args[0] if exc.args else ''}".rstrip(": "))
        raise HealthError(f.getErrorMessage() or f.type.__name__)
    return out["result"]


def _names(listing: Any) -> list[str | None]:
    if not isinstance(listing, list):
        raise HealthError(f"the hub's listing is not a list: {type(listing).__name__}")
    return [e.get("name") for e in listing if isinstance(e, dict)]


def check_node(settings: Mapping[str, Any], name: str, timeout: float) -> str:
    from obsmesh.uris import Uris
    from obsmesh.wamp import credentials

    uris = Uris(settings["prefix"])
    auth = credentials(settings, name)
    status, listing = _run(
        lambda: _ask(
            settings["router_url"],
            settings["realm"],
            auth,
            [(uris.get_status(name), ()), (uris.get_data_node, ())],
        ),
        timeout,
    )
    if not isinstance(status, dict) or status.get("name") != name:
        raise HealthError(f"node {name}: get_status answered something else: {str(status)[:200]}")
    if name not in _names(listing):
        raise HealthError(f"node {name} answers get_status but the hub does not list it")
    sources = status.get("sources") or {}
    up = sum(1 for s in sources.values() if isinstance(s, dict) and s.get("connected"))
    return f"node {name}: answers get_status, listed by the hub; {up} of {len(sources)} source(s) connected"


def check_hub(settings: Mapping[str, Any], timeout: float, public: bool) -> str:
    """The hub answers get_data_node: over the public WebSocket as an anonymous consumer
    (`public`, the router's own check), else over the backend with this service's credentials."""
    from obsmesh.uris import Uris
    from obsmesh.wamp import credentials

    uris = Uris(settings["prefix"])
    if public and not settings["consumer_auth"]:
        parsed = urlparse(settings["public_url"])
        url, auth = f"ws://127.0.0.1:{parsed.port}{parsed.path or '/ws'}", None
    else:
        parsed = urlparse(settings["router_url"])
        host = "127.0.0.1" if public else parsed.hostname
        url = f"{'rss' if parsed.scheme == 'rss' else 'rs'}://{host}:{parsed.port}"
        auth = credentials(settings, os.environ.get("OBSMESH_AUTHID") or "health")
    (listing,) = _run(
        lambda: _ask(url, settings["realm"], auth, [(uris.get_data_node, ())]), timeout
    )
    return f"the hub answers on {url}: {len(_names(listing))} node(s) listed"


def run_check(check: Check, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Perform one check; the healthy message, or HealthError."""
    from obsmesh import config

    if check.kind == "none":
        raise HealthError(check.target)
    if check.kind == "http":
        return check_http(check.target, timeout, _bridge_auth(check.config))
    if check.kind == "tcp":
        return check_tcp(check.target, timeout)
    settings = config.mesh(check.config)
    if check.kind == "node":
        return check_node(settings, check.target, timeout)
    if check.kind in ("router", "hub"):
        return check_hub(settings, timeout, public=check.kind == "router")
    raise HealthError(f"unknown check {check.kind!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m obsmesh.health", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=["node", "router", "hub", "http", "tcp"],
        help="what to ask (default: whatever process 1 of this container runs)",
    )
    parser.add_argument("target", nargs="?", default="", help="node name, URL, or HOST:PORT")
    parser.add_argument("--config", help="TOML configuration file (default: $OBSMESH_CONFIG)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 10)"
    )
    args = parser.parse_args(argv)
    if args.what is None:
        try:
            check = detect(pid1_argv(), os.environ)
        except OSError as exc:
            print(f"unhealthy: cannot read process 1's command line: {exc}")
            return 1
        check = Check(check.kind, check.target, args.config or check.config)
    elif args.what in ("node", "http", "tcp") and not args.target:
        parser.error(f"{args.what} needs a target")
    else:
        check = Check(args.what, args.target, args.config)
    try:
        message = run_check(check, args.timeout)
    except HealthError as exc:
        print(f"unhealthy: {exc}")
        return 1
    except Exception as exc:  # a bad setting, an unreadable secrets file: say so, stay a check
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        return 1
    print(f"ok: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
