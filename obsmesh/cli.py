"""The `obsmesh` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from urllib.parse import urlparse

from obsmesh import config, kinds


def _port(url: str) -> int:
    port = urlparse(url).port
    if port is None:
        raise config.ConfigError(f"no port in {url!r}")
    return port


def secrets_path(settings: dict) -> str:
    return settings["secrets_file"] or os.path.join(settings["state_dir"], "secrets.json")


def ensure_secrets(settings: dict, principals: dict[str, str] | None = None) -> str:
    """The mesh's secrets file, created on first use with a fresh key and the
    local principals (`default_principals`); `principals` (authid -> role) are
    admitted too when missing. A file of an older version (with the `*`
    wildcard, no longer honoured) gets the local principals instead."""
    from obsmesh import secrets

    path = secrets_path(settings)
    fresh = not os.path.exists(path)
    wanted = dict(principals or {})
    if fresh or _has_wildcard(path):
        wanted = {**default_principals(), **wanted}
    if wanted:
        added = secrets.admit(path, wanted)
        if fresh:
            print(
                f"obsmesh: wrote a new secrets file {path} (keep it private; it is git-ignored)",
                file=sys.stderr,
            )
        elif added:
            print(f"obsmesh: admitted {', '.join(sorted(added))} in {path}", file=sys.stderr)
    return path


def _has_wildcard(path: str) -> bool:
    from obsmesh import secrets

    try:
        return bool(secrets.load(path).ignored)
    except secrets.SecretsError:
        return False


# Local principals: the hub, and the backend readers: the Grafana bridge, the
# `obsmesh nodes/fields/get/tail` client and the health checks. Each node is
# its own principal, named after the node (the layout's `principals()`).
DEFAULT_PRINCIPALS = {
    "hub": "hub",
    "grafana": "consumer",
    "client": "consumer",
    "health": "consumer",
}


def default_principals() -> dict[str, str]:
    """A new secrets file's principals: the local ones and every built-in node
    kind under its default name (what `obsmesh router` in the container stack
    needs). Each has a secret derived from the file's key; revoke what you do not run."""
    return {**DEFAULT_PRINCIPALS, **{k.name: "node" for k in kinds.registry().kinds()}}


def router_config(
    settings: dict,
    host: str = "127.0.0.1",
    no_hub: bool = False,
    path: str | None = None,
    cbdir: str | None = None,
) -> dict:
    from obsmesh import router, router_layout, sites

    layout = config.settings(router_layout.ROUTER_DEFAULTS, "router", path)
    return router.render_config(
        realm=settings["realm"],
        prefix=settings["prefix"],
        host=host,
        public_port=_port(settings["public_url"]),
        backend_port=_port(settings["router_url"]),
        host_hub=not no_hub,
        secrets_file=ensure_secrets(settings),
        consumer_auth=settings["consumer_auth"],
        tls_key=settings["tls_key"] or None,
        tls_cert=settings["tls_cert"] or None,
        backend_tls=layout["backend_tls"],
        backend_plain=layout["backend_plain"],
        proxies=layout["proxies"],
        site=sites.resolve(config.settings(sites.SITE_DEFAULTS, "site", path)),
        tls_ca=settings["tls_ca"] or None,
        cbdir=cbdir or os.path.abspath(os.path.join(settings["state_dir"], "router")),
        max_queued_bytes=settings["max_queued_bytes"],
    )


def cmd_router(args: argparse.Namespace) -> int:
    from obsmesh import router

    settings = config.mesh(args.config)
    cbdir = os.path.abspath(args.cbdir or os.path.join(settings["state_dir"], "router"))
    exe = router.crossbar_executable()
    if args.show_key:  # what peer sites put in their [site] peers (obsmesh.sites)
        from obsmesh import sites

        print(sites.router_key(cbdir, exe))
        return 0
    router.write_cbdir(cbdir, router_config(settings, args.host, args.no_hub, args.config, cbdir))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # crossbar runs from its own virtualenv
    os.execve(exe, [exe, "start", "--cbdir", cbdir, "--loglevel", "info"], env)
    return 0  # not reached


def cmd_hub(args: argparse.Namespace) -> int:
    """The hub as its own process (when the router does not host it)."""
    from twisted.internet import reactor

    from hub.session import HubService
    from obsmesh import logs
    from obsmesh.wamp import service_component

    settings = config.mesh(args.config)
    logs.begin()
    comp = service_component(settings, "hub")
    enforce = bool(settings["secrets_file"] or settings["secret"] or settings["secret_file"])
    comp.on(
        "join",
        lambda session, details: HubService(session, settings["prefix"], enforce).attach(details),
    )
    comp.start(reactor)
    reactor.run()
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from nodes.base import run_node

    kind = kinds.registry().get(args.kind)
    mesh = config.mesh(args.config)
    options = kind.settings.resolve(args.config, args=args, mesh=mesh)
    run_node(kind.node_factory()(args.name or kind.name, mesh, options))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    _, sim = kinds.registry().simulators()[args.kind]
    return importlib.import_module(sim.module).main(args) or 0


def cmd_replay(args: argparse.Namespace) -> int:
    replay = kinds.registry().get(args.kind).replay
    assert replay is not None  # the parser offers the kinds with a replay only
    return importlib.import_module(replay.module).main(args) or 0


def cmd_kinds(args: argparse.Namespace) -> int:
    reg = kinds.registry()
    chosen = args.kind or list(reg.entries)
    unknown = [k for k in chosen if k not in reg.entries]
    if unknown:
        print(f"obsmesh: no node kind {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in chosen:
        entry = reg.entries[name]
        kind = entry.kind
        if args.settings:
            print(f"### `{name}`\n\n{kind.settings.table()}")
            continue
        sims = ", ".join(s.name for s in kind.simulators) or "-"
        extra = [c.name for c in kind.commands] + ([f"replay {name}"] if kind.replay else [])
        print(f"{name:<12} {kind.description}")
        print(f"{'':<12} from {entry.source}")
        print(
            f"{'':<12} simulators: {sims}; view: {kind.view or '-'}; "
            f"demo: {'yes' if kind.demo else 'no'}; commands: {', '.join(extra) or '-'}"
        )
    for problem in reg.problems:
        print(f"obsmesh: ignored {problem}", file=sys.stderr)
    return 1 if reg.problems else 0


def cmd_grafana(args: argparse.Namespace) -> int:
    from consumers.grafana import cli as grafana

    return grafana.main(args)


def cmd_client(args: argparse.Namespace) -> int:
    from consumers.client import cli as client_cli

    return getattr(client_cli, f"run_{args.command}")(args) or 0


def cmd_up(args: argparse.Namespace) -> int:
    from obsmesh import launcher

    overrides = {"port_base": args.port_base} if args.port_base is not None else {}
    return launcher.up(config.mesh(args.config, **overrides), args)


def cmd_status(args: argparse.Namespace) -> int:
    from obsmesh import status

    return status.main(config.mesh(args.config), args)


def cmd_systemd(args: argparse.Namespace) -> int:
    from obsmesh import systemd

    return systemd.main(config.mesh(args.config), args)


def cmd_secrets(args: argparse.Namespace) -> int:
    from obsmesh import secrets

    settings = config.mesh(args.config)
    path = args.file or secrets_path(settings)
    try:
        return _secrets_action(secrets, path, args)
    except secrets.SecretsError as exc:
        print(f"obsmesh secrets: {exc}", file=sys.stderr)
        return 2


def _secrets_action(secrets, path: str, args: argparse.Namespace) -> int:
    """`obsmesh secrets ...`; a running router reads every change at once (a
    revoked principal's sessions are ended). No secret is ever printed but by `show`."""
    if args.action == "init":
        if os.path.exists(path) and not args.force:
            print(
                f"obsmesh: {path} exists (use --force to replace it and every secret)",
                file=sys.stderr,
            )
            return 1
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        secrets.save(path, secrets.new(default_principals()))
        print(f"wrote {path}")
        return 0
    if args.action != "list" and not args.authid:
        print(f"obsmesh secrets {args.action}: name the principal", file=sys.stderr)
        return 2
    if args.action == "show":  # the one secret a remote service needs
        s = secrets.load(path)
        if s.role_of(args.authid) is None:
            print(f"obsmesh: {args.authid!r} is not a principal of {path}", file=sys.stderr)
            return 1
        print(s.secret_for(args.authid))
    elif args.action == "add":
        given = secrets.read_secret(args.secret_file) if args.secret_file else None
        secrets.update(path, lambda s: s.add(args.authid, args.role, given))
        how = "its given secret" if given is not None else "a secret derived from the key"
        print(f"{args.authid}: role {args.role}, {how}")
    elif args.action == "revoke":
        if not secrets.update(path, lambda s: s.revoke(args.authid)):
            print(f"obsmesh: {args.authid!r} is not a principal of {path}", file=sys.stderr)
            return 1
        print(f"{args.authid}: revoked (its open sessions are ended)")
    elif args.action == "list":
        s = secrets.load(path)
        for authid, role, how in s.listing():
            print(f"{authid}\t{role}\t{how}")
        if s.ignored:
            print(
                f"obsmesh: ignored in {path}: {', '.join(s.ignored)} (a wildcard admits no one now; "
                "`obsmesh secrets add NAME` each principal)",
                file=sys.stderr,
            )
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from obsmesh import certs

    paths = certs.make(args.dir, args.host or None)
    for name, path in paths.items():
        print(f"{name:<11} {path}")
    print(
        "set OBSMESH_TLS_CERT and OBSMESH_TLS_KEY to server.pem/server.key; clients trust ca.pem (OBSMESH_TLS_CA)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file (default: $OBSMESH_CONFIG)")
    parser = argparse.ArgumentParser(prog="obsmesh", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "up", parents=[common], help="run the whole local mesh (router, hub, nodes, simulators)"
    )
    p.add_argument(
        "kinds", nargs="*", metavar="KIND", help="run only these node kinds (default all)"
    )
    p.add_argument(
        "--port-base", type=int, help="move every port of the mesh (OBSMESH_PORT_BASE; see README)"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=90.0,
        help="seconds to wait for every service before saying which have not joined (default 90)",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "status",
        parents=[common],
        help="each service of the running local mesh; non-zero if one is down",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the router")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "systemd", parents=[common], help="write one systemd unit per service of the local mesh"
    )
    p.add_argument("dir", help="where to write the units")
    p.add_argument("kinds", nargs="*", metavar="KIND", help="only these node kinds (default all)")
    p.add_argument(
        "--no-simulators", action="store_true", help="leave the simulators out (real instruments)"
    )
    p.add_argument("--user", help="the user the services run as (default: none, i.e. root)")
    p.set_defaults(func=cmd_systemd)

    p = sub.add_parser(
        "kinds", parents=[common], help="the installed node kinds and where each comes from"
    )
    p.add_argument("kind", nargs="*", help="only these kinds")
    p.add_argument(
        "--settings", action="store_true", help="print each kind's settings table (Markdown)"
    )
    p.set_defaults(func=cmd_kinds)

    p = sub.add_parser("router", parents=[common], help="run the crossbar router (hosting the hub)")
    p.add_argument("--cbdir", help="where to write the rendered router configuration")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument(
        "--no-hub", action="store_true", help="do not host the hub (run `obsmesh hub` instead)"
    )
    p.add_argument(
        "--show-key",
        action="store_true",
        help="print this router's public key for linked sites' [site] peers, and exit",
    )
    p.set_defaults(func=cmd_router)

    p = sub.add_parser("secrets", parents=[common], help="the mesh's secrets file (WAMP-CRA)")
    p.add_argument("action", choices=["init", "show", "add", "revoke", "list"])
    p.add_argument("authid", nargs="?", default="", help="principal (for show, add, revoke)")
    p.add_argument(
        "--role", default="node", choices=["node", "hub", "consumer"], help="role for add"
    )
    p.add_argument(
        "--secret-file",
        help="add: keep this secret (a file, or - for standard input) instead of deriving one",
    )
    p.add_argument("--file", help="secrets file (default: secrets_file, or STATE_DIR/secrets.json)")
    p.add_argument("--force", action="store_true", help="init: replace an existing file")
    p.set_defaults(func=cmd_secrets)

    p = sub.add_parser(
        "certs", parents=[common], help="write a self-signed CA and server certificate"
    )
    p.add_argument("dir")
    p.add_argument(
        "--host", action="append", help="host name or address (repeatable; default localhost)"
    )
    p.set_defaults(func=cmd_certs)

    p = sub.add_parser("grafana", parents=[common], help="run the Grafana JSON datasource bridge")
    importlib.import_module("consumers.grafana.cli").configure(p)
    p.set_defaults(func=cmd_grafana)

    client_cli = importlib.import_module("consumers.client.cli")
    for name in (
        "nodes",
        "fields",
        "get",
        "tail",
    ):  # quick looks from a terminal, through the client
        p = sub.add_parser(name, parents=[common], help=client_cli.COMMANDS[name][2])
        getattr(client_cli, f"configure_{name}")(p)
        p.set_defaults(func=cmd_client)

    p = sub.add_parser("hub", parents=[common], help="run the hub standalone")
    p.set_defaults(func=cmd_hub)

    reg = kinds.registry()
    p = sub.add_parser("node", parents=[common], help="run one data node")
    subs = p.add_subparsers(dest="kind", required=True)
    for kind in reg.kinds():
        kp = subs.add_parser(kind.name, parents=[common], help=kind.description)
        kp.add_argument("--name", help=f"node name (default {kind.name})")
        kind.settings.add_arguments(kp)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser(
        "simulate", parents=[common], help="simulate an outside system for the demo and the tests"
    )
    subs = p.add_subparsers(dest="kind", required=True)
    for name, (_, sim) in reg.simulators().items():
        importlib.import_module(sim.module).configure(
            subs.add_parser(name, parents=[common], help=sim.help)
        )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", parents=[common], help="load archived files into a node's history")
    subs = p.add_subparsers(dest="kind", required=True)
    for kind in reg.kinds():
        if kind.replay is not None:
            importlib.import_module(kind.replay.module).configure(
                subs.add_parser(kind.name, parents=[common], help=kind.replay.help)
            )
    p.set_defaults(func=cmd_replay)

    for name, (kind, command) in reg.commands().items():  # a kind's own operator commands
        if name in sub.choices:
            reg.problems.append(
                f"command {name!r} of the kind {kind.name}: obsmesh has one already"
            )
            continue
        p = sub.add_parser(name, parents=[common], help=command.help)
        module = importlib.import_module(command.module)
        module.configure(p)
        p.set_defaults(func=module.main)

    return parser


def main(argv: list[str] | None = None) -> int:
    from obsmesh.procs import die_with_launcher

    die_with_launcher()  # a service `obsmesh up` started ends when the launcher does
    parser = build_parser()
    if kinds.registry().problems and (argv or sys.argv[1:])[:1] != ["kinds"]:
        for problem in kinds.registry().problems:
            print(f"obsmesh: ignored {problem} (see `obsmesh kinds`)", file=sys.stderr)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as exc:
        print(f"obsmesh: {exc}", file=sys.stderr)
        return 2
