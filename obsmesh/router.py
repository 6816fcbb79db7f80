"""The crossbar router: the committed `.crossbar/config.json` is the default;
`render_config` patches ports, realm, URI prefix and paths into a copy for a
given run (tests, containers, `obsmesh up`), and `start_router` runs crossbar
from its own virtualenv on that copy."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obsmesh.sites import Site

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / ".crossbar" / "config.json"
ROUTER_VENV = REPO / ".venv-router"
ANONYMOUS_CONSUMER = {"type": "static", "role": "consumer"}


def crossbar_executable() -> str:
    candidate = ROUTER_VENV / "bin" / "crossbar"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("crossbar")
    if found:
        return found
    raise FileNotFoundError(
        "crossbar not found: run `make setup` (it installs crossbar into .venv-router)"
    )


def render_config(
    *,
    realm: str = "obsmesh",
    prefix: str = "obsmesh",
    host: str = "127.0.0.1",
    public_port: int = 8080,
    backend_port: int = 8081,
    web_dir: str | os.PathLike | None = None,
    host_hub: bool = True,
    secrets_file: str | os.PathLike | None = None,
    consumer_auth: bool = False,
    tls_key: str | os.PathLike | None = None,
    tls_cert: str | os.PathLike | None = None,
    backend_tls: bool = False,
    backend_plain: bool = False,
    auth_cache: bool = True,
    base: dict[str, Any] | None = None,
    site: Site | None = None,
    tls_ca: str | os.PathLike | None = None,
    proxies: int = 0,
    cbdir: str | os.PathLike | None = None,
    max_queued_bytes: int | None = None,
) -> dict[str, Any]:
    """The router configuration for one run, derived from the committed default.

    With `secrets_file` (the default config expects one), backend services
    authenticate with WAMP-CRA through the hosted authenticator and nodes are
    authorised per name, and the public WebSocket takes WAMP-CRA beside
    anonymous consumers (`consumer_auth` switches anonymous off). Without it
    the backend grants the node role to anyone who can reach it: only for a
    loopback-only development router. `auth_cache=False` switches off every
    authorisation cache (a benchmark's reference).

    `site` links this router to peer sites (`obsmesh.sites`); `proxies` moves
    the public transport to that many proxy workers (`obsmesh.router_layout`,
    which needs `cbdir` for the router's key).
    """
    cfg = copy.deepcopy(base or json.loads(DEFAULT_CONFIG.read_text()))
    worker = cfg["workers"][0]
    worker["options"]["pythonpath"] = [str(REPO)]
    if not secrets_file and host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("a router listening beyond loopback needs authentication (a secrets file)")
    if host not in ("127.0.0.1", "::1", "localhost") and not backend_tls and not _private(host):
        raise ValueError(f"the backend transport on public address {host} needs TLS (backend_tls)")
    if _wildcard(host) and not backend_tls and not backend_plain:
        # 0.0.0.0 / :: listen on every interface, public ones included: a plain
        # backend there is only safe where the operator knows the network is
        # private (a container's own network: the compose stack says so).
        raise ValueError(
            f"the backend transport on every interface ({host}) needs TLS (backend_tls), or "
            "backend_plain = true where every interface is on a private network (a container)"
        )
    for r in worker["realms"]:
        r["name"] = realm
        for role in r["roles"]:
            for perm in role.get("permissions", []):
                if perm["uri"].startswith("obsmesh."):
                    perm["uri"] = prefix + perm["uri"][len("obsmesh") :]
            if "authorizer" in role:
                role["authorizer"] = f"{prefix}.auth.authorize"
        if not secrets_file:  # development: static permissions instead of the authoriser
            r["roles"] = [
                _static_node_role(prefix) if ro["name"] == "node" else ro for ro in r["roles"]
            ]
    cra = {"wampcra": {"type": "dynamic", "authenticator": f"{prefix}.auth.authenticate"}}
    tls = {"key": str(tls_key), "certificate": str(tls_cert)} if tls_key and tls_cert else None
    for t in worker["transports"]:
        t["endpoint"]["interface"] = host
        if t["id"] == "backend":
            t["endpoint"]["port"] = backend_port
            t["auth"] = (
                copy.deepcopy(cra)
                if secrets_file
                else {"anonymous": {"type": "static", "role": "node"}}
            )
            if tls and backend_tls:
                t["endpoint"]["tls"] = dict(tls)
        elif t["id"] == "public":
            t["endpoint"]["port"] = public_port
            t["paths"]["/"]["directory"] = str(
                pathlib.Path(web_dir or REPO / "consumers" / "web").resolve()
            )
            if consumer_auth and not secrets_file:
                raise ValueError("consumer authentication needs a secrets file")
            # WAMP-CRA for any principal (a sisock node joins here with its own
            # secret and role) beside anonymous read-only consumers, unless
            # consumers must authenticate too.
            anonymous = {} if consumer_auth else {"anonymous": dict(ANONYMOUS_CONSUMER)}
            t["paths"]["ws"]["auth"] = {**anonymous, **(copy.deepcopy(cra) if secrets_file else {})}
            if tls:
                t["endpoint"]["tls"] = dict(tls)
    comps = worker.get("components", [])
    for c in comps:
        c["realm"] = realm
        extra = c.setdefault("extra", {})
        extra["prefix"] = prefix
        if c["id"] == "auth":
            extra["secrets_file"] = (
                str(pathlib.Path(secrets_file).resolve()) if secrets_file else ""
            )
            extra["cache"] = auth_cache
        if c["id"] == "hub":
            extra["auth"] = bool(secrets_file)
        if c["id"] == "outbound" and max_queued_bytes:  # obsmesh/routerguard.py
            extra["max_queued_bytes"] = int(max_queued_bytes)
    worker["components"] = [
        c for c in comps if (c["id"] != "hub" or host_hub) and (c["id"] != "auth" or secrets_file)
    ]
    _extend(
        cfg, site, proxies, cbdir, realm=realm, prefix=prefix, host=host, tls=tls, tls_ca=tls_ca
    )
    return cfg


def _extend(cfg: dict[str, Any], site: Site | None, proxies: int, cbdir: Any, **where: Any) -> None:
    """Site links (`obsmesh.sites`) and proxy workers (`obsmesh.router_layout`), when asked for."""
    from obsmesh import router_layout, sites

    if site is not None:
        sites.apply(cfg, site, **where)
    if proxies:
        if cbdir is None:
            raise ValueError("proxy workers need the router's node directory (cbdir) for its key")
        key = sites.router_key(cbdir, crossbar_executable())
        router_layout.apply_proxies(cfg, proxies, where["realm"], key)


def _private(host: str) -> bool:
    """A private address (10/8, 192.168/16, ...); the wildcards count too, and
    are checked on their own (`_wildcard`)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def _wildcard(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


def _static_node_role(prefix: str) -> dict[str, Any]:
    """The node role without the authoriser (development routers only)."""

    def perm(uri, call=False, register=False, publish=False, subscribe=False, disclose=False):
        return {
            "uri": uri,
            "match": "prefix",
            "allow": {
                "call": call,
                "register": register,
                "publish": publish,
                "subscribe": subscribe,
            },
            "disclose": {"caller": disclose, "publisher": False},
            "cache": True,
        }

    return {
        "name": "node",
        "permissions": [
            perm(f"{prefix}.consumer.", call=True, register=True, publish=True, subscribe=True),
            perm(f"{prefix}.data_node.", call=True, disclose=True),
            perm(f"{prefix}.hub.", subscribe=True),
            perm("wamp.subscription.", call=True, subscribe=True),
        ],
    }


def write_cbdir(cbdir: str | os.PathLike, config: dict[str, Any]) -> pathlib.Path:
    cbdir = pathlib.Path(cbdir)
    cbdir.mkdir(parents=True, exist_ok=True)
    path = cbdir / "config.json"
    # The rendered file may hold a ticket: readable by its owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return path


def start_router(
    cbdir: str | os.PathLike, config: dict[str, Any], log_path: str | os.PathLike | None = None
) -> subprocess.Popen:
    """Start crossbar on a rendered configuration (see `render_config`) in `cbdir`."""
    write_cbdir(cbdir, config)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [crossbar_executable(), "start", "--cbdir", str(cbdir), "--loglevel", "info"],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def hub_joins(log_path: str | os.PathLike) -> int:
    """How often the hosted hub has joined, read from the router's log."""
    try:
        return pathlib.Path(log_path).read_text(errors="replace").count("hub joined realm")
    except FileNotFoundError:
        return 0


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_ready(
    proc: subprocess.Popen,
    log_path: str | os.PathLike,
    ports: list[int],
    joins_before: int,
    hosted_hub: bool = True,
    timeout: float = 60.0,
    host: str = "127.0.0.1",
) -> None:
    """Wait until the router listens on its ports and (if hosted) the hub has joined."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = pathlib.Path(log_path).read_text(errors="replace")[-4000:]
            raise RuntimeError(f"router exited with {proc.returncode}:\n{tail}")
        if all(port_open(host, p) for p in ports) and (
            not hosted_hub or hub_joins(log_path) > joins_before
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"router not ready after {timeout} s (log: {log_path})")


if __name__ == "__main__":  # debugging aid: print the rendered config
    json.dump(render_config(), sys.stdout, indent=2)
