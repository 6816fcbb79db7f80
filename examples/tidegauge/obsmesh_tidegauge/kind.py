"""The `tidegauge` kind: its settings, how to build it, what `obsmesh up` runs."""

from __future__ import annotations

from obsmesh.kinds import Demo, NodeKind
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import POSITIVE, Section, Setting, between


class Settings(Section):
    section = "tidegauge"
    interval = Setting(1.0, "seconds between readings", flag=True, check=POSITIVE)
    mean_level = Setting(2.5, "mean water level above the gauge datum, metres", flag=True)
    history = Setting(
        3600.0, "seconds of readings computed at start", flag=True, check=between(0, 7 * 86400)
    )
    seed = Setting(1, "seed of the weather surge", check=between(0, 2**32 - 1))


def demo(d: DemoContext) -> list[Service]:
    return [d.node(where="node tidegauge (a computed harbour tide; an example kind)")]


KIND = NodeKind(
    name="tidegauge",
    description="a harbour tide gauge: harmonic tide plus a weather surge (example kind)",
    settings=Settings,
    build="obsmesh_tidegauge.node:build",
    demo=Demo(demo),
    readme="../README.md",
)
