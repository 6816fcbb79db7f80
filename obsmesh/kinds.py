"""Node kinds: one declaration per kind, found through Python entry points.

A node kind is one package exporting one `NodeKind`: its name, its settings
class (obsmesh/settings.py), how to build the node, its simulators, extra
commands, the dashboard view it lights up, and its demo recipe (what
`obsmesh up` runs for it). The package names the declaration in its
distribution's entry-point group `obsmesh.node_kinds`:

    [project.entry-points."obsmesh.node_kinds"]
    sensors = "nodes.sensors.kind:KIND"

so a separately installed package adds a kind with no edit to obsmesh. The
command line, the launcher, the health checks and the tests loop over
`registry()`; nothing in obsmesh/ names a kind.

A declaration module must stay light (standard library and obsmesh.settings):
every `obsmesh` command and every health check loads all of them. Heavy code
is named by "module:function" strings and imported only when used.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from obsmesh.settings import Section
from obsmesh.uris import valid_node_name

if TYPE_CHECKING:
    from obsmesh.layout import DemoContext, Service

GROUP = "obsmesh.node_kinds"
_COMMAND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Simulator:
    """`obsmesh simulate NAME`: a stand-in for the outside world the kind reads."""

    name: str
    module: str  # has configure(parser) and main(args)
    help: str
    port: int | None = None  # the port it listens on by default (None: it listens on none)


@dataclass(frozen=True)
class Command:
    """A command of the kind's own: `obsmesh NAME ...` (operator tools) or, with
    `replay=True`, `obsmesh replay KIND ...` (archive loaders)."""

    name: str
    module: str  # has configure(parser) and main(args)
    help: str


@dataclass(frozen=True)
class Port:
    """A port slot of a demo recipe: numbered from `port_base`, else `default`
    (or the value of the kind's setting `setting`, when it names one)."""

    name: str
    default: int
    setting: str | None = None


@dataclass(frozen=True)
class Demo:
    """What `obsmesh up` runs for the kind: `recipe(ctx)` returns the services
    (its node and the simulators feeding it), given a DemoContext with the state
    directory and the numbers of the port slots declared here."""

    recipe: Callable[[DemoContext], Sequence[Service]]
    ports: tuple[Port, ...] = ()  # ports its nodes listen on
    simulator_ports: tuple[Port, ...] = ()  # ports its simulators listen on


@dataclass(frozen=True)
class NodeKind:
    name: str  # `obsmesh node NAME`, the settings section, the default node name
    description: str
    settings: type[Section]
    build: str  # "module:function"; function(name, mesh settings, options) -> DataNode
    simulators: tuple[Simulator, ...] = ()
    demo: Demo | None = None
    view: str | None = None  # the dashboard view its nodes light up (hub entry "view")
    replay: Command | None = None
    commands: tuple[Command, ...] = ()
    readme: str = ""  # its documentation, relative to the package directory

    def node_factory(self) -> Callable[..., Any]:
        return load_target(self.build)


def load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Registered:
    kind: NodeKind
    entry_point: str  # "module:attribute"
    distribution: str  # "name version" of the distribution declaring it
    location: str  # the directory of the module holding the declaration

    @property
    def source(self) -> str:
        return f"{self.distribution}: {self.entry_point} ({self.location})"


@dataclass
class Registry:
    entries: dict[str, Registered] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # entry points refused, and why

    def kinds(self) -> list[NodeKind]:
        return [e.kind for e in self.entries.values()]

    def get(self, name: str) -> NodeKind:
        return self.entries[name].kind

    def simulators(self) -> dict[str, tuple[NodeKind, Simulator]]:
        return {s.name: (k, s) for k in self.kinds() for s in k.simulators}

    def commands(self) -> dict[str, tuple[NodeKind, Command]]:
        return {c.name: (k, c) for k in self.kinds() for c in k.commands}

    def view_of(self, kind: str) -> str | None:
        entry = self.entries.get(kind)
        return entry.kind.view if entry else None


def problems_of(kind: Any, name: str, registry: Registry) -> list[str]:
    """What is wrong with a declaration found under entry-point `name` (empty: fine)."""
    if not isinstance(kind, NodeKind):
        return [f"is a {type(kind).__name__}, not an obsmesh.kinds.NodeKind"]
    out = []
    if kind.name != name:
        out.append(f"declares the name {kind.name!r} under the entry point {name!r}")
    if not valid_node_name(kind.name):
        out.append(f"name {kind.name!r} is not a valid node name ([a-z0-9][a-z0-9_-]*)")
    if not (isinstance(kind.settings, type) and issubclass(kind.settings, Section)):
        out.append("settings is not an obsmesh.settings.Section class")
    elif kind.settings.section != kind.name:
        out.append(f"settings section {kind.settings.section!r} is not its name")
    if not isinstance(kind.build, str) or not _TARGET.match(kind.build):
        out.append(f"build {kind.build!r} is not a 'module:function' string")
    if kind.name in registry.entries:
        out.append(
            f"the kind {kind.name!r} is declared already by {registry.entries[kind.name].source}"
        )
    sims, cmds = registry.simulators(), registry.commands()
    for s in kind.simulators:
        if not _COMMAND.match(s.name):
            out.append(f"simulator name {s.name!r} is not a plain lower-case word")
        if s.name in sims:
            out.append(
                f"simulator {s.name!r} is declared already by the kind {sims[s.name][0].name}"
            )
    for c in kind.commands:
        if not _COMMAND.match(c.name):
            out.append(f"command name {c.name!r} is not a plain lower-case word")
        if c.name in cmds:
            out.append(f"command {c.name!r} is declared already by the kind {cmds[c.name][0].name}")
    return out


def _ordered(eps: Sequence[importlib.metadata.EntryPoint]) -> list[importlib.metadata.EntryPoint]:
    """obsmesh's own kinds first, then other distributions' by distribution name;
    within one, by kind name. Ports are numbered in this order (obsmesh/layout.py),
    so it must not depend on how an installer wrote entry_points.txt."""

    def dist(ep: importlib.metadata.EntryPoint) -> str:
        return ep.dist.name if ep.dist is not None else ""

    return sorted(eps, key=lambda ep: (dist(ep) != "obsmesh", dist(ep), ep.name))


def from_entry_points(eps: Sequence[importlib.metadata.EntryPoint]) -> Registry:
    reg = Registry()
    seen: set[tuple[str, str]] = set()
    for ep in _ordered(eps):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "(no distribution)"
        if (ep.name, ep.value) in seen:  # the same distribution found twice on the path
            continue
        seen.add((ep.name, ep.value))
        where = f"entry point {ep.name} = {ep.value} of {dist}"
        try:
            kind = ep.load()
        except Exception as exc:  # a broken third-party kind must not break every command
            reg.problems.append(f"{where}: cannot load it: {type(exc).__name__}: {exc}")
            continue
        problems = problems_of(kind, ep.name, reg)
        if problems:
            reg.problems.append(f"{where}: " + "; ".join(problems))
            continue
        module = importlib.import_module(ep.module)
        location = os.path.dirname(os.path.abspath(module.__file__ or ""))
        reg.entries[kind.name] = Registered(kind, ep.value, dist, location)
    return reg


_cached: Registry | None = None


def registry(refresh: bool = False) -> Registry:
    """Every installed node kind (loaded once per process)."""
    global _cached
    if _cached is None or refresh:
        _cached = from_entry_points(list(importlib.metadata.entry_points(group=GROUP)))
    return _cached
