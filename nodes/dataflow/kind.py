"""The `dataflow` kind: the radar data pipeline's summary logs as live health."""

from __future__ import annotations

from nodes.dataflow.options import Settings
from obsmesh.kinds import Demo, NodeKind, Simulator
from obsmesh.layout import DemoContext, Service

# The Canadian (Borealis) sites whose pipeline the demo simulates.
RADARS = "sas,pgr,inv,cly,rkn"


def demo(d: DemoContext) -> list[Service]:
    """A simulated pipeline (a cycle every 4 s, random failures, an injected few and
    a 40-s stop) writing summary logs, flags and data files the node watches."""
    where = d.path("dataflow")
    return [
        d.simulator(
            "dataflow",
            where,
            "--radars",
            RADARS,
            "--speed",
            "1800",
            "--antennas",
            "2",
            "--failure-rate",
            "0.03",
            "--inject",
            "connection@5:pgr",
            "--inject",
            "died@8:inv",
            "--stop",
            "rsync_to_campus@15:cly+10",
            where=f"writes {where} (a data-flow cycle every 4 s)",
        ),
        d.node(
            "--dir",
            where,
            "--radars",
            RADARS,
            "--period",
            "4",
            "--margin",
            "4",
            where=f"node dataflow ({where})",
        ),
    ]


KIND = NodeKind(
    name="dataflow",
    description="the radar data pipeline's summary logs as live health",
    settings=Settings,
    build="nodes.dataflow.node:build",
    simulators=(
        Simulator("dataflow", "nodes.dataflow.simulator", "a radar data pipeline with failures"),
    ),
    demo=Demo(demo),
    view="dataflow",
    readme="README.md",
)
