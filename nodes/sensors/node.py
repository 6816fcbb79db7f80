"""The `sensors` node: the host's gauges every `interval` seconds on one timeline."""

from __future__ import annotations

import os
from typing import Any

from nodes.base import DataNode
from nodes.sensors import procfs, sysfs
from obsmesh.periodic import Periodic

TIMELINE = "host"
# decimal places shown per unit (values are stored as read)
PRECISION = {"%": 1, "": 2, "B": 0, "B/s": 0, "°C": 1, "V": 3, "A": 3, "W": 1, "RPM": 0}

_GAUGES = {
    "load1": ("1-minute load average", ""),
    "load5": ("5-minute load average", ""),
    "load15": ("15-minute load average", ""),
    "mem_total": ("memory installed", "B"),
    "mem_available": ("memory available", "B"),
    "mem_used": ("memory in use", "B"),
    "mem_used_pct": ("memory in use", "%"),
    "swap_used": ("swap in use", "B"),
}


class SensorsNode(DataNode):
    kind = "sensors"
    description = "Linux host sensors: load, CPU, memory, disks, network, hwmon and thermal zones"
    plots = ("cpu", "load1", "mem_used_pct", "disk.*.write")

    def __init__(
        self, name: str, settings: dict[str, Any], options: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(name, settings, **kw)
        self.options = options
        self._prev_cpu: dict[str, tuple[int, int]] = {}
        self._prev_io: dict[str, dict[str, tuple[int, int]]] = {}
        self._prev_time: float | None = None
        self._loop = Periodic(self.reactor, float(options["interval"]), self.sample)

    def _proc(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.options["proc_root"], name)) as f:
                return f.read()
        except OSError:
            return None

    def _whole_disk(self, dev: str) -> bool:
        # Only whole block devices (not partitions), and no loop or RAM disks.
        if dev.startswith(("loop", "ram", "zram")):
            return False
        return os.path.isdir(os.path.join(self.options["sys_block"], dev))

    def _ensure(self, field: str, units: str, description: str) -> None:
        if field not in self.fields:
            self.declare(
                field,
                TIMELINE,
                units=units,
                description=description,
                precision=PRECISION.get(units),
            )

    def read(self, now: float) -> dict[str, float]:
        """One reading of every gauge the host has (rates need a previous reading)."""
        values: dict[str, float] = {}
        text = self._proc("loadavg")
        if text:
            values.update(procfs.parse_loadavg(text))
        text = self._proc("meminfo")
        if text:
            values.update(procfs.parse_meminfo(text))
        for key in list(values):
            self._ensure(key, _GAUGES[key][1], _GAUGES[key][0])
        text = self._proc("stat")
        if text:
            cur = procfs.parse_stat(text)
            for cpu, pct in procfs.cpu_percent(self._prev_cpu, cur).items():
                field = "cpu" if cpu == "cpu" else f"cpu.{cpu[3:]}"
                self._ensure(
                    field, "%", "CPU use, all cores" if cpu == "cpu" else f"CPU use, core {cpu[3:]}"
                )
                values[field] = pct
            self._prev_cpu = cur
        dt = now - self._prev_time if self._prev_time is not None else 0.0
        counters = {
            "disk": (
                self._proc("diskstats"),
                lambda t: procfs.parse_diskstats(t, self._whole_disk),
                ("read", "write"),
            ),
            "net": (self._proc("net/dev"), procfs.parse_netdev, ("rx", "tx")),
        }
        for group, (text, parse, names) in counters.items():
            if not text:
                continue
            cur = parse(text)
            if group == "net":
                cur.pop("lo", None)
            for dev, (a, b) in procfs.rates(self._prev_io.get(group, {}), cur, dt).items():
                for direction, rate in zip(names, (a, b), strict=True):
                    field = f"{group}.{dev}.{direction}"
                    self._ensure(field, "B/s", f"{group} {dev} {direction} rate")
                    values[field] = rate
            self._prev_io[group] = cur
        self._prev_time = now
        for r in sysfs.hwmon(os.path.join(self.options["sys_root"], "hwmon")) + sysfs.thermal(
            os.path.join(self.options["sys_root"], "thermal")
        ):
            self._ensure(r.field, r.units, r.description)
            values[r.field] = r.value
        return values

    def sample(self) -> None:
        now = self.clock()
        values = self.read(now)
        if values:
            self.append(TIMELINE, [now], {k: [v] for k, v in values.items()})
            self.source("host", connected=True, last_sample=now)

    async def start(self) -> None:
        self._loop.start(now=True)

    async def stop(self) -> None:
        self._loop.stop()


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> SensorsNode:
    return SensorsNode(name, mesh, options)
