"""The `obsmesh` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from urllib.parse import urlparse

from obsmesh import config

# Node kinds: `obsmesh node KIND`. Each module has configure(parser) and build(args, settings).
NODE_KINDS = {
    "sensors": "nodes.sensors.node",
    "weather": "nodes.weather.node",
    "co2": "nodes.co2.node",
}
# Simulators of the outside world: `obsmesh simulate KIND`. Each has configure(parser) and main(args).
SIMULATORS = {
    "weather": "nodes.weather.simulator",
    "co2": "nodes.co2.simulator",
}


def _port(url: str) -> int:
    port = urlparse(url).port
    if port is None:
        raise config.ConfigError(f"no port in {url!r}")
    return port


def cmd_router(args: argparse.Namespace) -> int:
    from obsmesh import router

    settings = config.mesh(args.config)
    cbdir = os.path.abspath(args.cbdir or os.path.join(settings["state_dir"], "router"))
    router.write_cbdir(cbdir, router.render_config(
        realm=settings["realm"], prefix=settings["prefix"], host=args.host,
        public_port=_port(settings["public_url"]), backend_port=_port(settings["router_url"]),
        host_hub=not args.no_hub, hub_ticket=os.environ.get("OBSMESH_HUB_SECRET"),
    ))
    exe = router.crossbar_executable()
    os.execv(exe, [exe, "start", "--cbdir", cbdir])
    return 0  # not reached


def cmd_hub(args: argparse.Namespace) -> int:
    """The hub as its own process (when the router does not host it)."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from hub.session import HubService
    from obsmesh.wamp import component

    settings = config.mesh(args.config)
    secret = os.environ.get("OBSMESH_HUB_SECRET")
    if not secret:
        print("obsmesh hub: set OBSMESH_HUB_SECRET (the router's hub ticket)", file=sys.stderr)
        return 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    comp = component(settings["router_url"], settings["realm"], {"ticket": {"authid": "hub", "ticket": secret}})
    comp.on("join", lambda session, details: HubService(session, settings["prefix"]).attach(details))
    comp.start(reactor)
    reactor.run()
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from nodes.base import run_node

    module = importlib.import_module(NODE_KINDS[args.kind])
    settings = config.mesh(args.config)
    run_node(module.build(args, settings))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    return importlib.import_module(SIMULATORS[args.kind]).main(args) or 0


def cmd_up(args: argparse.Namespace) -> int:
    from obsmesh import launcher

    return launcher.up(config.mesh(args.config), args)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file (default: $OBSMESH_CONFIG)")
    parser = argparse.ArgumentParser(prog="obsmesh", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", parents=[common], help="run the whole local mesh (router, hub, nodes, simulators)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("router", parents=[common], help="run the crossbar router (hosting the hub)")
    p.add_argument("--cbdir", help="where to write the rendered router configuration")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--no-hub", action="store_true", help="do not host the hub (run `obsmesh hub` instead)")
    p.set_defaults(func=cmd_router)

    p = sub.add_parser("hub", parents=[common], help="run the hub standalone")
    p.set_defaults(func=cmd_hub)

    p = sub.add_parser("node", parents=[common], help="run one data node")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, module in NODE_KINDS.items():
        kp = kinds.add_parser(kind, parents=[common], help=f"the {kind} node")
        kp.add_argument("--name", help=f"node name (default {kind})")
        importlib.import_module(module).configure(kp)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("simulate", parents=[common], help="simulate an outside system for the demo and the tests")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, module in SIMULATORS.items():
        importlib.import_module(module).configure(kinds.add_parser(kind, parents=[common], help=f"simulate {kind}"))
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("co2", parents=[common], help="CO2 units: register, revoke, offer firmware updates")
    co2_admin = importlib.import_module("nodes.co2.admin")
    co2_admin.configure(p)
    p.set_defaults(func=co2_admin.main)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as exc:
        print(f"obsmesh: {exc}", file=sys.stderr)
        return 2
