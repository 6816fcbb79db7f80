"""The `sensors` kind: this Linux host as an instrument.

The smallest kind, and the template of the guide (nodes/README.md, "Writing a
node kind"): a settings class, a build function, a demo recipe, one
declaration. No simulator: the host is always there.
"""

from __future__ import annotations

from obsmesh.kinds import Demo, NodeKind
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import POSITIVE, Section, Setting


class Settings(Section):
    section = "sensors"
    interval = Setting(1.0, "seconds between readings", flag=True, check=POSITIVE)
    proc_root = Setting("/proc", "where procfs is mounted (a container mounts the host's)")
    sys_root = Setting("/sys/class", "where hwmon/ and thermal/ are")
    sys_block = Setting("/sys/block", "the block devices (to tell disks from partitions)")


def demo(d: DemoContext) -> list[Service]:
    """What `obsmesh up` runs: the node alone (the host feeds it)."""
    return [d.node(where="node sensors (this host)")]


KIND = NodeKind(
    name="sensors",
    description="this Linux host as an instrument: load, CPU, memory, disks, network, hwmon",
    settings=Settings,
    build="nodes.sensors.node:build",
    demo=Demo(demo),
)
