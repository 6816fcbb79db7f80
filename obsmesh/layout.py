"""The local mesh as data: one table of services, addresses and ports.

`local()` builds the table `obsmesh up` runs: the router (hosting the hub), the
Grafana bridge, then each node kind's demo recipe (its nodes and simulators,
see obsmesh/kinds.py). The launcher starts what the table lists, the banner
prints it, `obsmesh status` and `obsmesh systemd` read it, and the launcher
checks every port in it before starting anything.

Ports. Without `port_base` every port is its default: the setting that holds
it (`public_url`, `router_url`, `[grafana] port`, a kind's own setting such as
`[co2] port`), else the default the kind declares. With `port_base` B
(`OBSMESH_PORT_BASE`) every port the local mesh listens on moves, in this
order, so two meshes share a host:

    B       router: public WebSocket and the dashboard
    B+1     router: backend rawsocket
    B+2     Grafana bridge
    B+3...  the ports the kinds' nodes listen on, kind by kind (registry order:
            obsmesh's own kinds by name, then other packages'),
    ...     then the ports the kinds' simulators listen on, kind by kind.

With the kinds shipped in nodes/: B+3 co2 unit endpoint, B+4 das2 HTTP, B+5
the Canadian aggregator simulator, B+6..B+8 the radar simulators (bks, fhe,
kod). Every kind's slots are numbered whether or not it runs, so a port never
depends on which kinds `obsmesh up KIND...` selects.

Principals. Each service that talks WAMP names the principal it authenticates
as (`authid`); `Layout.principals()` is the set a secrets file must admit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

ROUTER, BRIDGE, NODE, SIMULATOR = "router", "bridge", "node", "simulator"
LAUNCHER_AUTHID = "launcher"  # the launcher's and `obsmesh status`'s own session (reads only)


@dataclass(frozen=True)
class Listen:
    """An address a service listens on."""

    host: str
    port: int
    what: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Service:
    """One row of the table: a process `obsmesh <argv>`."""

    name: str  # unique in the layout; the log file is logs/<name>.log
    argv: tuple[str, ...]  # the obsmesh subcommand and its arguments
    role: str  # router | bridge | node | simulator
    where: str = ""  # one line for the banner
    kind: str | None = None  # the node kind it belongs to
    node: str | None = None  # the name it joins the hub under (nodes)
    authid: str | None = None  # the principal it authenticates as (services that talk WAMP)
    listens: tuple[Listen, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Service:
        return cls(
            **{
                **d,
                "argv": tuple(d["argv"]),
                "listens": tuple(Listen(**x) for x in d.get("listens", ())),
            }
        )


@dataclass(frozen=True)
class DemoContext:
    """What a kind's demo recipe is given: where its files go and its ports."""

    kind: str
    state_dir: str  # the mesh's state directory (absolute)
    host: str  # the interface the local mesh listens on
    ports: Mapping[str, int]  # this kind's port slots, numbered
    options: Mapping[str, Any]  # this kind's resolved settings
    mesh: Mapping[str, Any]  # the mesh settings

    def path(self, *parts: str) -> str:
        return os.path.join(self.state_dir, *parts)

    def listen(self, port: str, what: str) -> Listen:
        return Listen(self.host, self.ports[port], what)

    def node(self, *args: str, where: str = "", listens: Sequence[Listen] = ()) -> Service:
        """`obsmesh node KIND ARGS...`, joining the hub as KIND."""
        return Service(
            self.kind,
            ("node", self.kind, *args),
            NODE,
            where or f"node {self.kind}",
            kind=self.kind,
            node=self.kind,
            authid=self.kind,
            listens=tuple(listens),
        )

    def simulator(
        self,
        simulator: str,
        *args: str,
        name: str | None = None,
        where: str = "",
        listens: Sequence[Listen] = (),
    ) -> Service:
        """`obsmesh simulate SIMULATOR ARGS...` (no WAMP)."""
        return Service(
            name or f"{simulator}-simulator",
            ("simulate", simulator, *args),
            SIMULATOR,
            where or f"simulated {simulator}",
            kind=self.kind,
            listens=tuple(listens),
        )


@dataclass(frozen=True)
class Layout:
    state_dir: str  # absolute
    port_base: int
    host: str
    public_url: str
    router_url: str
    services: tuple[Service, ...]
    ports_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dashboard_url(self) -> str:
        public = urlparse(self.public_url)
        scheme = "https" if public.scheme == "wss" else "http"
        return f"{scheme}://{public.hostname}:{public.port}/"

    @property
    def cbdir(self) -> str:
        return os.path.join(self.state_dir, "router")

    @property
    def logs(self) -> str:
        return os.path.join(self.state_dir, "logs")

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def nodes(self) -> list[Service]:
        return [s for s in self.services if s.node]

    def listens(self) -> list[tuple[Service, Listen]]:
        return [(s, x) for s in self.services for x in s.listens]

    def principals(self) -> dict[str, str]:
        """authid -> role of every local service that talks WAMP (what a secrets file admits)."""
        out = {"hub": "hub", LAUNCHER_AUTHID: "consumer"}
        for s in self.services:
            if s.authid:
                out[s.authid] = "node" if s.role == NODE else "consumer"
        return out

    def env(self) -> dict[str, str]:
        """The `OBSMESH_*` variables every service of the layout is given."""
        return {
            "OBSMESH_PUBLIC_URL": self.public_url,
            "OBSMESH_ROUTER_URL": self.router_url,
            "OBSMESH_STATE_DIR": self.state_dir,
            "OBSMESH_PORT_BASE": str(self.port_base),
        }

    def banner(self) -> list[str]:
        lines = [
            f"  {'dashboard (browser)':<22}  {self.dashboard_url}",
            f"  {'WAMP for consumers':<22}  {self.public_url}",
            f"  {'WAMP for services':<22}  {self.router_url}",
        ]
        lines += [f"  {s.name:<22}  {s.where}" for s in self.services if s.role != ROUTER]
        lines.append(f"  {'logs':<22}  {self.logs}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Layout:
        return cls(
            **{
                **d,
                "services": tuple(Service.from_dict(s) for s in d["services"]),
            }
        )


class _Numbers:
    """Hands out ports: each slot's default, or the next number from the base."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.used = 0

    def next(self, default: int) -> int:
        if not self.base:
            return int(default)
        port = self.base + self.used
        self.used += 1
        if port > 65535:
            raise ValueError(f"port_base {self.base} leaves no room for every port of the mesh")
        return port


def local(
    mesh: Mapping[str, Any],
    kinds: Sequence[str] | None = None,
    registry: Any = None,
    path: str | None = None,
) -> Layout:
    """The layout `obsmesh up` runs, from the mesh settings (`config.mesh`) and the
    registry; `kinds` selects node kinds (default: every kind with a demo recipe).
    Each selected kind's settings are resolved and checked (ConfigError when one is
    bad); what the recipe's flags supply (a directory) is checked by the node."""
    from consumers.grafana.cli import DEFAULTS as BRIDGE_DEFAULTS
    from obsmesh import config
    from obsmesh import kinds as kinds_mod

    reg = registry if registry is not None else kinds_mod.registry()
    demo_kinds = [k for k in reg.kinds() if k.demo is not None]
    known = {k.name for k in demo_kinds}
    chosen = list(kinds) if kinds else [k.name for k in demo_kinds]
    unknown = [k for k in chosen if k not in known]
    if unknown:
        raise config.ConfigError(
            f"no demo recipe for kind(s) {', '.join(unknown)} (kinds with one: {', '.join(sorted(known))})"
        )
    base = int(mesh.get("port_base") or 0)
    state = os.path.abspath(mesh["state_dir"])
    public, backend = urlparse(mesh["public_url"]), urlparse(mesh["router_url"])
    host = public.hostname or "127.0.0.1"
    numbers = _Numbers(base)
    public_port = numbers.next(public.port or 8080)
    backend_port = numbers.next(backend.port or 8081)
    public_url = config.with_port(mesh["public_url"], public_port)
    router_url = config.with_port(mesh["router_url"], backend_port)
    bridge = config.settings(BRIDGE_DEFAULTS, "grafana", path)
    bridge_port = numbers.next(bridge["port"])

    options = {
        k.name: k.settings.resolve(path, mesh=mesh, complete=False)
        for k in demo_kinds
        if k.name in chosen
    }
    ports: dict[str, dict[str, int]] = {k.name: {} for k in demo_kinds}
    for group in ("ports", "simulator_ports"):
        for k in demo_kinds:
            for slot in getattr(k.demo, group):
                default = slot.default
                if slot.setting and k.name in options:
                    default = options[k.name][slot.setting]
                ports[k.name][slot.name] = numbers.next(default)

    services = [
        Service(
            ROUTER,
            ("router", "--cbdir", os.path.join(state, "router"), "--host", host),
            ROUTER,
            f"crossbar, realm {mesh['realm']}, hosting the hub",
            listens=(
                Listen(host, public_port, "public WebSocket and dashboard"),
                Listen(host, backend_port, "backend rawsocket"),
            ),
        ),
        Service(
            "grafana",
            ("grafana", "--host", bridge["host"], "--port", str(bridge_port)),
            BRIDGE,
            f"Grafana JSON datasource bridge on http://{_http_host(bridge['host'])}:{bridge_port}/",
            authid=bridge["authid"],
            listens=(Listen(_http_host(bridge["host"]), bridge_port, "Grafana bridge HTTP"),),
        ),
    ]
    for k in demo_kinds:
        if k.name not in chosen:
            continue
        assert k.demo is not None  # demo_kinds holds the kinds with a demo only
        ctx = DemoContext(k.name, state, host, ports[k.name], options[k.name], mesh)
        services.extend(k.demo.recipe(ctx))
    names = [s.name for s in services]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise config.ConfigError(f"two services of the layout share a name: {', '.join(twice)}")
    return Layout(state, base, host, public_url, router_url, tuple(services), ports)


def _http_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def load(path: str) -> dict[str, Any]:
    """The launcher's state file (launcher.json): its layout and its services' processes."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["layout"] = Layout.from_json(data["layout"])
    return data
