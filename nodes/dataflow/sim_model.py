"""The simulator's vocabulary: settings, injections and stops, files, timed actions.

Pure (no I/O). See `nodes.dataflow.simulator` for what the simulation does.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from nodes.dataflow.names import STAGES, is_radar_code

DEFAULT_RADARS = ("sas", "pgr", "inv", "cly", "rkn")
LOW_BANDWIDTH = frozenset({"cly", "rkn"})  # convert rawacf to DMAP on campus (config.sh)
DEFAULT_PERIOD = 7200.0
DAY = 86400.0
SEPARATOR = "#" * 80
KINDS = (
    "transfer",
    "connection",
    "convert",
    "plot",
    "integrity",
    "bzip2",
    "distribute",
    "died",
    "old",
    "nothing",
    "unknown",
)
# The stage an injection of each kind lands in unless one is named.
KIND_STAGE = {
    "transfer": "rsync_to_nas",
    "connection": "rsync_to_campus",
    "convert": "convert_on_campus",
    "plot": "plot_antennas_iq",
    "integrity": "distribute_borealis_data",
    "bzip2": "distribute_borealis_data",
    "distribute": "distribute_borealis_data",
    "died": "rsync_to_campus",
    "old": "rsync_to_nas",
    "nothing": "rsync_to_nas",
    "unknown": "rsync_to_nas",
}
# Seconds a stage takes at real speed: fixed part, per file.
STAGE_TIME = {
    "rsync_to_nas": (12.0, 9.0),
    "plot_antennas_iq": (20.0, 4.0),
    "rsync_to_campus": (10.0, 12.0),
    "convert_on_campus": (3.0, 35.0),
    "distribute_borealis_data": (4.0, 5.0),
    "archive_iq_plots": (1.0, 0.05),
}
RADAR_SPACING = 300.0  # seconds between radars' pipelines (longer than any stage run)


class SimulatorError(ValueError):
    """A bad simulator argument."""


@dataclass(frozen=True)
class Injection:
    kind: str
    cycle: int
    radar: str | None = None
    stage: str | None = None


@dataclass(frozen=True)
class Stop:
    stage: str
    cycle: int
    radar: str | None = None
    cycles: int | None = None  # None: for good

    def covers(self, stage: str, radar: str, cycle: int) -> bool:
        if self.radar is not None and self.radar != radar:
            return False
        if cycle < self.cycle or (self.cycles is not None and cycle >= self.cycle + self.cycles):
            return False
        # a stopped stage sends no flag: the stages after it stop too
        return STAGES.index(stage) >= STAGES.index(self.stage)


def parse_injection(text: str) -> Injection:
    """KIND@CYCLE[:RADAR[:STAGE]]"""
    kind, at, rest = text.partition("@")
    if not at or kind not in KINDS:
        raise SimulatorError(
            f"injection {text!r}: want KIND@CYCLE[:RADAR[:STAGE]], KIND one of {', '.join(KINDS)}"
        )
    parts = rest.split(":")
    cycle = _int(parts[0], text)
    radar = parts[1] if len(parts) > 1 and parts[1] else None
    stage = parts[2] if len(parts) > 2 and parts[2] else None
    if radar is not None and not is_radar_code(radar):
        raise SimulatorError(f"injection {text!r}: {radar!r} is not a radar code")
    if stage is not None and stage not in STAGES:
        raise SimulatorError(f"injection {text!r}: unknown stage {stage!r}")
    if len(parts) > 3:
        raise SimulatorError(f"injection {text!r}: too many fields")
    return Injection(kind, cycle, radar, stage)


def parse_stop(text: str) -> Stop:
    """STAGE@CYCLE[:RADAR][+N]"""
    stage, at, rest = text.partition("@")
    if not at or stage not in STAGES:
        raise SimulatorError(
            f"stop {text!r}: want STAGE@CYCLE[:RADAR][+N], STAGE one of {', '.join(STAGES)}"
        )
    rest, plus, n = rest.partition("+")
    cycles = _int(n, text) if plus else None
    cycle_text, _, radar = rest.partition(":")
    radar_or_none = radar or None
    if radar_or_none is not None and not is_radar_code(radar_or_none):
        raise SimulatorError(f"stop {text!r}: {radar!r} is not a radar code")
    return Stop(stage, _int(cycle_text, text), radar_or_none, cycles)


def _int(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise SimulatorError(f"{whole!r}: {text!r} is not a whole number")
    return int(text)


@dataclass
class SimFile:
    name: str
    radar: str
    size: int
    path: str  # where it is now, under DIR/data


@dataclass(order=True)
class Action:
    t: float
    seq: int
    op: str = field(compare=False)  # "line", "flag", "clear", "create", "move", "copy", "delete"
    a: str = field(compare=False, default="")
    b: str = field(compare=False, default="")
    size: int = field(compare=False, default=0)


def utc_line(t: float) -> str:
    return time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(int(t)))


def file_stamp(t: float) -> str:
    return time.strftime("%Y%m%d.%H%M.%S", time.gmtime(int(t)))


def dmap_name(array_name: str) -> str:
    """20240101.0000.00.sas.1.rawacf.h5 -> 20240101.0000.00.sas.b.rawacf.bz2"""
    parts = array_name.split(".")
    return ".".join([*parts[:4], chr(97 + int(parts[4])), "rawacf", "bz2"])


def name_time(name: str) -> float:
    dt = datetime.datetime.strptime(name[:16], "%Y%m%d.%H%M.%S").replace(tzinfo=datetime.UTC)
    return dt.timestamp()
