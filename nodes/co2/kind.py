"""The `co2` kind: arctic CO2 observation units uploading over HTTP."""

from __future__ import annotations

from nodes.co2.settings import Settings, endpoint_url
from obsmesh.kinds import Command, Demo, NodeKind, Port, Simulator
from obsmesh.layout import DemoContext, Service


def demo(d: DemoContext) -> list[Service]:
    """The node's unit endpoint on its port slot, and five simulated units uploading to it."""
    root = d.path("co2")  # uploads, pings and the simulated units' tokens
    port = d.ports["http"]
    url = endpoint_url({**d.options, "port": port})
    return [
        d.node(
            "--data-root",
            root,
            "--port",
            str(port),
            where=f"node co2, unit endpoint {url}/",
            listens=[d.listen("http", "CO2 unit endpoint")],
        ),
        d.simulator(
            "co2",
            "--units",
            "5",
            "--data-root",
            root,
            "--sd-dir",
            d.path("co2-units"),
            url,
            where=f"5 simulated CO2 units uploading to {url}",
        ),
    ]


KIND = NodeKind(
    name="co2",
    description="CO2 observation units: their HTTP upload and ping protocol, with tokens",
    settings=Settings,
    build="nodes.co2.node:build",
    simulators=(Simulator("co2", "nodes.co2.simulator", "CO2 units uploading to an endpoint"),),
    demo=Demo(demo, ports=(Port("http", 8090, setting="port"),)),
    view="co2",
    commands=(
        Command("co2", "nodes.co2.admin", "CO2 units: register, revoke, offer firmware updates"),
    ),
    readme="README.md",
)
