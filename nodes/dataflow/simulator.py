"""Simulated SuperDARN data flow: summary logs, flags and data files, written over time.

    obsmesh simulate dataflow DIR --radars sas,pgr,inv,cly,rkn [--speed 3600] [--inject ...]

Every cycle (a two-hour Borealis file by default) each radar's files go
through the six stages, each run appending a block to
DIR/summary/YYYY/MM/YYYYMMDD.<script>_summary.log line by line as a real run
would (one write per printed line). Flags move into DIR/flags/.inotify_watchdir
by atomic rename when a daemon's stages finish and are removed when the next
daemon is done. Data files (sparse: real sizes, no disk) move through
DIR/data/<radar>/{borealis,nas} and DIR/data/campus, ending in
DIR/data/campus/borealis_site_data/<radar>_rawacf[_dmap]/YYYY/MM/.

Failures are injected at random (`--failure-rate`) or exactly
(`--inject transfer@3:sas`); a stage can be stopped (`--stop rsync_to_campus@2:pgr`).
Each injection and stop is recorded in DIR/simulator.jsonl.

Time: everything written is stamped with the simulation clock. By default it
is the wall clock, the first cycle runs at once and the next every `--period`
seconds (`--speed K` divides the two hours by K, so a cycle can take
seconds). `--start` in the past writes the cycles before now at once
(history), then carries on in real time; `--fast` never sleeps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.logger import Logger

from nodes.dataflow.names import STAGES, is_radar_code

log = Logger()

DEFAULT_RADARS = ("sas", "pgr", "inv", "cly", "rkn")
LOW_BANDWIDTH = frozenset({"cly", "rkn"})  # convert rawacf to DMAP on campus (config.sh)
DEFAULT_PERIOD = 7200.0
DAY = 86400.0
SEPARATOR = "#" * 80
KINDS = ("transfer", "connection", "convert", "plot", "integrity", "bzip2", "distribute", "died", "old",
         "nothing", "unknown")
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
        raise SimulatorError(f"injection {text!r}: want KIND@CYCLE[:RADAR[:STAGE]], KIND one of {', '.join(KINDS)}")
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
        raise SimulatorError(f"stop {text!r}: want STAGE@CYCLE[:RADAR][+N], STAGE one of {', '.join(STAGES)}")
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


class Simulator:
    """Plans each cycle as timed actions (`plan_cycle`), then performs them (`apply`)."""

    def __init__(
        self,
        root: str,
        radars: tuple[str, ...] = DEFAULT_RADARS,
        *,
        period: float = DEFAULT_PERIOD,
        seed: int | None = None,
        failure_rate: float = 0.05,
        injections: tuple[Injection, ...] = (),
        stops: tuple[Stop, ...] = (),
        antennas: int = 20,
        keep_files: int = 200,
    ) -> None:
        if not radars or not all(is_radar_code(r) for r in radars) or len(set(radars)) != len(radars):
            raise SimulatorError(f"radars must be distinct three-letter codes, got {radars!r}")
        if not (period >= 1.0):
            raise SimulatorError("period must be at least 1 s (file names have one-second resolution)")
        if not (0.0 <= failure_rate <= 1.0):
            raise SimulatorError("failure rate must be within [0, 1]")
        self.root = os.path.abspath(root)
        self.radars = tuple(radars)
        self.period = float(period)
        self.scale = self.period / DEFAULT_PERIOD
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.injections = tuple(injections)
        self.stops = tuple(stops)
        self.antennas = antennas
        self.keep_files = keep_files
        self.summary_dir = os.path.join(self.root, "summary")
        self.flag_dir = os.path.join(self.root, "flags", ".inotify_watchdir")
        self.flag_src = os.path.join(self.root, "flags", ".inotify_flags")
        self.data_dir = os.path.join(self.root, "data")
        self.commit = {"data_flow": (self._hex(7), "2023-10-02 15:04:11 -0600"),
                       "pyDARNio": (self._hex(7), "2023-09-28 09:41:55 -0600")}
        self._seq = 0
        self._busy: dict[str, float] = {}  # stage -> end of its latest run
        self.cycle = 0
        # per radar: files waiting at each stage
        self.queues: dict[str, dict[str, list[SimFile]]] = {
            r: {s: [] for s in STAGES} for r in self.radars
        }
        self.current_block: dict[str, list[SimFile]] = {r: [] for r in self.radars}
        self.final: dict[str, deque[str]] = {r: deque() for r in self.radars}
        self.journal: list[dict[str, object]] = []

    # ---- planning ---------------------------------------------------------------

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def _act(self, acts: list[Action], t: float, op: str, a: str = "", b: str = "", size: int = 0) -> None:
        self._seq += 1
        acts.append(Action(t, self._seq, op, a, b, size))

    def _note(self, t: float, radar: str, stage: str, kind: str, detail: str = "") -> None:
        self.journal.append({"t": round(t, 3), "cycle": self.cycle, "radar": radar, "stage": stage,
                             "kind": kind, "detail": detail})

    def _injected(self, kind: str, stage: str, radar: str) -> bool:
        for inj in self.injections:
            if inj.kind == kind and inj.cycle == self.cycle and (inj.stage or KIND_STAGE[kind]) == stage:
                if (inj.radar or self._default_radar(kind)) == radar:
                    return True
        return False

    def _default_radar(self, kind: str) -> str:
        if kind == "convert":
            low = [r for r in self.radars if r in LOW_BANDWIDTH]
            if low:
                return low[0]
        return self.radars[0]

    def _chance(self, kind: str, stage: str, radar: str, scale: float = 1.0) -> bool:
        return self._injected(kind, stage, radar) or self.rng.random() < self.failure_rate * scale

    def _stopped(self, stage: str, radar: str) -> bool:
        return any(s.covers(stage, radar, self.cycle) for s in self.stops)

    def plan_cycle(self, t0: float) -> list[Action]:
        """Plan cycle `self.cycle` starting at clock time t0; advances the cycle counter."""
        acts: list[Action] = []
        for i, radar in enumerate(self.radars):
            self._plan_radar(acts, radar, t0 + i * RADAR_SPACING * self.scale, t0)
        self.cycle += 1
        acts.sort()
        return acts

    def _log_path(self, stage: str, t: float) -> str:
        day = time.gmtime(int(t))
        return os.path.join(self.summary_dir, time.strftime("%Y/%m", day),
                            f"{time.strftime('%Y%m%d', day)}.{stage}_summary.log")

    def _borealis_files(self, acts: list[Action], radar: str, t: float) -> list[SimFile]:
        """Borealis opens the files of a new two-hour block."""
        d = os.path.join(self.data_dir, radar, "borealis")
        files = []
        slices = (0, 1) if radar == "sas" else (0,)
        for s in slices:
            for kind, size in (("rawacf", 60e6), ("antennas_iq", 600e6)):
                name = f"{file_stamp(t)}.{radar}.{s}.{kind}.h5"
                f = SimFile(name, radar, int(size * self.rng.uniform(0.7, 1.3)), os.path.join(d, name))
                self._act(acts, t, "create", f.path, size=4096)  # grows over the block
                files.append(f)
        return files

    def _plan_radar(self, acts: list[Action], radar: str, t: float, block_t: float) -> None:
        q = self.queues[radar]
        # the block that just ended is complete; a new one starts
        finished, self.current_block[radar] = self.current_block[radar], []
        for f in finished:
            self._act(acts, block_t, "create", f.path, size=f.size)  # final size, closed
        if self._injected("nothing", "rsync_to_nas", radar) or (
            self.cycle > 0 and self.rng.random() < self.failure_rate / 5
        ):
            # the radar was down: what it wrote in that block is unusable and removed
            for f in finished:
                self._act(acts, block_t, "delete", f.path)
            finished = []
            self._note(t, radar, "rsync_to_nas", "nothing")
        q["rsync_to_nas"].extend(finished)
        self.current_block[radar] = self._borealis_files(acts, radar, block_t)
        if self._injected("old", "rsync_to_nas", radar) or self.rng.random() < self.failure_rate / 5:
            old_t = block_t - 2 * DAY - self.rng.randrange(1, 12) * 7200 * self.scale
            name = f"{file_stamp(old_t)}.{radar}.0.rawacf.h5"
            f = SimFile(name, radar, 50_000_000, os.path.join(self.data_dir, radar, "borealis", name))
            self._act(acts, block_t, "create", f.path, size=f.size)
            q["rsync_to_nas"].append(f)
            self._note(t, radar, "rsync_to_nas", "old", name)
        # clear the flags of the last cycle that the next daemon would have removed
        for flag in (f".campus_dataflow_flag_{radar}",):
            self._act(acts, t, "clear", flag)
        for stage in STAGES:
            if self._stopped(stage, radar):
                self._note(t, radar, stage, "stopped")
                break
            # one run at a time per log file: a radar waits for the previous radar's run
            t = max(t, self._busy.get(stage, t) + self.scale)
            t, ok = getattr(self, "_run_" + stage)(acts, radar, t)
            self._busy[stage] = t
            if not ok:
                break  # the run died: the daemon sends no flag, later stages wait
            t += self.rng.uniform(1.0, 4.0) * self.scale
        for q_name in ("rsync_to_nas", "rsync_to_campus", "convert_on_campus", "distribute_borealis_data"):
            del q[q_name][60:]  # a long stop must not grow without bound

    # ---- one run -----------------------------------------------------------------

    def _header(self, acts: list[Action], stage: str, radar: str, t: float, script: str, host: str,
                repos: tuple[str, ...]) -> str:
        path = self._log_path(stage, t)
        self._act(acts, t, "line", path, SEPARATOR + "\n\n")
        self._act(acts, t, "line", path, f"Executing {script} on {host} for {radar}\n")
        self._act(acts, t, "line", path, utc_line(t) + "\n")
        for repo in repos:
            commit, date = self.commit[repo]
            self._act(acts, t, "line", path, f"{repo}: On branch main, last commit: \t\t{commit} {date}\n")
        return path

    def _finish(self, acts: list[Action], path: str, stage: str, t: float) -> None:
        self._act(acts, t, "line", path, f"\nFinished {stage}. End time: {utc_line(t)}\n\n")

    def _times(self, stage: str, t: float, n: int) -> tuple[list[float], float]:
        """Times of n file lines and of the end of a run starting at t."""
        fixed, per = STAGE_TIME[stage]
        per = min(per * self.rng.uniform(0.6, 1.4), (RADAR_SPACING * 0.8 - fixed) / max(n, 1))
        step = per * self.scale
        head = fixed * 0.5 * self.scale
        times = [t + head + step * (i + 1) for i in range(n)]
        end = (times[-1] if times else t + head) + fixed * 0.5 * self.scale
        return times, end

    def _die_maybe(self, stage: str, radar: str, t: float, times: list[float]) -> int | None:
        """If this run dies, how many of its file lines get written first."""
        if self._chance("died", stage, radar, 0.1):
            self._note(t, radar, stage, "died")
            return self.rng.randrange(0, max(1, len(times)))
        return None

    def _unknown_maybe(self, acts: list[Action], path: str, stage: str, radar: str, t: float) -> None:
        if self._injected("unknown", stage, radar) or self.rng.random() < self.failure_rate / 10:
            self._act(acts, t, "line", path,
                      "rsync warning: some files vanished before they could be transferred (code 24)\n")
            self._note(t, radar, stage, "unknown")

    def _run_rsync_to_nas(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "rsync_to_nas"
        q = self.queues[radar]
        files = list(q[stage])
        path = self._header(acts, stage, radar, t, "/home/radar/data_flow/borealis/rsync_to_nas",
                            f"{radar}main207", ("data_flow",))
        self._act(acts, t, "line", path, "Transferring from: /data/borealis_data/\n")
        self._act(acts, t, "line", path, "Transferring to NAS: /borealis_nfs/borealis_data\n\n")
        if not files:
            self._act(acts, t, "line", path, "No files to be transferred.\n")
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "transfer", stage, radar, t)
        self._unknown_maybe(acts, path, stage, radar, t)
        nas = os.path.join(self.data_dir, radar, "nas")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            day = f.name[:8]
            shown = f"/data/borealis_data/{day}/{f.name}"
            if f is fail:
                self._act(acts, ft, "line", path, f"Transfer failed: {shown}\n")
                continue
            self._act(acts, ft, "line", path, f"Successfully transferred: {shown}\n")
            q[stage].remove(f)
            sub = "antennas_iq_array" if ".antennas_iq." in f.name else "rawacf_array"
            self._move(acts, ft, f, os.path.join(nas, sub, f.name))
            if sub == "rawacf_array":
                q["rsync_to_campus"].append(f)
                if radar not in LOW_BANDWIDTH:
                    # the site converts to DMAP too (convert_and_restructure, not simulated as a stage)
                    dmap = SimFile(_dmap_name(f.name), radar, f.size // 3,
                                   os.path.join(nas, "rawacf_dmap", _dmap_name(f.name)))
                    self._act(acts, ft, "create", dmap.path, size=dmap.size)
                    q["rsync_to_campus"].append(dmap)
            else:
                q["plot_antennas_iq"].append(f)
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        self._flag(acts, end, f".borealis_flag_{radar}")
        return end, True

    def _run_plot_antennas_iq(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "plot_antennas_iq"
        q = self.queues[radar]
        files, q[stage] = list(q[stage]), []  # it plots the last two hours, whatever happens
        path = self._header(acts, stage, radar, t, "/home/transfer/data_flow/site-linux/plot_antennas_iq",
                            f"{radar}dist205", ("data_flow",))
        self._act(acts, t, "line", path, "IQ plot directory: /home/transfer/logs/daily_plots/\n\n")
        if not files:
            self._act(acts, t, "line", path, "No antenna iq files found to plot.\n")
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "plot", stage, radar, t)
        plots_dir = os.path.join(self.data_dir, "campus", "antennas_iq_plots", f"{radar}_iq_plots")
        made: list[SimFile] = []
        last_shown = ""
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            last_shown = f"/borealis_nfs/borealis_data/antennas_iq_array/{f.name}"
            if f is fail:
                self._act(acts, ft, "line", path, f"Failed to generate iq plot from: {last_shown}\n")
            else:
                self._act(acts, ft, "line", path, f"Successfully converted: {last_shown}\n")
                stem = ".".join(f.name.split(".")[:6])
                for a in range(self.antennas):
                    name = f"{stem}.antenna_{a}_0_70.jpg"
                    made.append(SimFile(name, radar, 180_000, os.path.join(plots_dir, name)))
            self._act(acts, ft, "delete", f.path)
        if dies is not None:
            return end, False
        for p in made:
            # the script's own bug: it names the last IQ file, not the image
            self._act(acts, end, "line", path, f"Resizing file: {last_shown}\n")
            self._act(acts, end, "create", p.path, size=p.size)
        q["archive_iq_plots"].extend(made)
        self._finish(acts, path, stage, end)
        return end, True

    def _run_rsync_to_campus(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "rsync_to_campus"
        q = self.queues[radar]
        low = radar in LOW_BANDWIDTH
        dest = f"/sddata/{radar}_holding_dir" if low else f"/sddata/{radar}_data/"
        path = self._header(acts, stage, radar, t, "/home/transfer/data_flow/site-linux/rsync_to_campus",
                            f"{radar}dist205", ("data_flow", "pyDARNio"))
        self._act(acts, t, "line", path, "Transferring from: /borealis_nfs/borealis_data\n")
        self._act(acts, t, "line", path, f"Transferring to: dataman@sdc-serv.usask.ca:{dest}\n\n")
        dmaps = [f for f in q[stage] if f.name.endswith(".bz2")]
        arrays = [f for f in q[stage] if not f.name.endswith(".bz2")]
        files = ([] if low else dmaps) + arrays
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        down = self._chance("connection", stage, radar, 0.2)
        fail = None if down else self._pick_failure(files, "transfer", stage, radar, t)
        if low:
            self._act(acts, t, "line", path, "Not transferring any dmap files\n")
        elif not dmaps:
            self._act(acts, t, "line", path, "No dmap files found to be transferred.\n")
        if not arrays:
            self._act(acts, t, "line", path, "\nNo array files found to be transferred.\n")
        if down and files:
            self._act(acts, t, "line", path,
                      "ssh: connect to host sdc-serv.usask.ca port 22: Connection timed out\n")
            self._note(t, radar, stage, "connection")
        campus = os.path.join(self.data_dir, "campus", f"{radar}_holding_dir" if low else f"{radar}_data")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            sub = "rawacf_dmap" if f.name.endswith(".bz2") else "rawacf_array"
            shown = f"/borealis_nfs/borealis_data/{sub}/{f.name}"
            if down or f is fail:
                self._act(acts, ft, "line", path, f"Transfer failed: {shown}\n")
                continue
            self._act(acts, ft, "line", path, f"Successfully transferred: {shown}\n")
            q[stage].remove(f)
            self._copy(acts, ft, f, os.path.join(campus, f.name))
            q["convert_on_campus" if low else "distribute_borealis_data"].append(f)
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        self._act(acts, end, "clear", f".borealis_flag_{radar}")
        self._flag(acts, end, f".site-linux_flag_{radar}")
        return end, True

    def _run_convert_on_campus(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "convert_on_campus"
        q = self.queues[radar]
        low = radar in LOW_BANDWIDTH
        path = self._header(acts, stage, radar, t, "/home/dataman/data_flow/campus/convert_on_campus",
                            "sdc-serv", ("data_flow", "pyDARNio") if low else ())
        files = list(q[stage]) if low else []
        times, end = self._times(stage, t, len(files))
        if not low:
            self._act(acts, t, "line", path, f"\nNot converting files for {radar}.\n")
            self._finish(acts, path, stage, end)
            return end, True
        if not files:
            self._act(acts, t, "line", path, "No files to be converted.\n")
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "convert", stage, radar, t)
        data = os.path.join(self.data_dir, "campus", f"{radar}_data")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            shown = f"/sddata/{radar}_holding_dir/{f.name}"
            q[stage].remove(f)
            if f is fail:
                self._act(acts, ft, "line", path, f"File failed to convert: {shown}\n")
                self._move(acts, ft, f, os.path.join(self.data_dir, "campus", "conversion_failure", f.name))
                continue
            dmap = SimFile(_dmap_name(f.name), radar, f.size // 3, os.path.join(data, _dmap_name(f.name)))
            self._act(acts, ft, "create", dmap.path, size=dmap.size)
            self._move(acts, ft, f, os.path.join(data, f.name))
            self._act(acts, ft, "line", path, f"Successfully converted: {shown}\n")
            q["distribute_borealis_data"] += [dmap, f]
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        return end, True

    def _run_distribute_borealis_data(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "distribute_borealis_data"
        q = self.queues[radar]
        path = self._header(acts, stage, radar, t, "distribute_borealis_data", "sdc-serv",
                            ("data_flow", "pyDARNio"))
        self._act(acts, t, "line", path, f"Distributing from: /sddata/{radar}_data\n")
        self._act(acts, t, "line", path,
                  "Distributing to: \n        \tNAS: /data/borealis_site_data\n"
                  "        \tMirror: /data/holding/globus\n"
                  f"        \tInstitutions: /home/bas/outgoing/{radar}\t/home/vtsd/outgoing/{radar}\n\n")
        dmaps = [f for f in q[stage] if f.name.endswith(".bz2")]
        arrays = [f for f in q[stage] if not f.name.endswith(".bz2")]
        files = dmaps + arrays
        times, end = self._times(stage, t, len(files))
        if not dmaps:
            self._act(acts, t, "line", path, "No dmap files found to be distributed.\n")
        dies = self._die_maybe(stage, radar, t, times)
        kind = self.rng.choice(("integrity", "bzip2", "distribute"))
        for k in ("integrity", "bzip2", "distribute"):
            if self._injected(k, stage, radar):
                kind = k
        fail = self._pick_failure(dmaps, kind, stage, radar, t)
        site = os.path.join(self.data_dir, "campus", "borealis_site_data")
        problems = os.path.join(self.data_dir, "campus", "conversion_failure")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            shown = f"/sddata/{radar}_data/{f.name}"
            if f is fail:
                if kind == "distribute":  # a copy failed: the file stays for the next run
                    self._act(acts, ft, "line", path, f"File distribution failed: {shown}\n")
                    continue
                q[stage].remove(f)
                if kind == "integrity":
                    # the script prints an unset variable here: the path is empty
                    self._act(acts, ft, "line", path, "DMAP integrity test failed: \n")
                else:
                    self._act(acts, ft, "line", path, f"DMAP file failed bzip2 test: {shown}\n")
                self._move(acts, ft, f, os.path.join(problems, f.name))
                continue
            q[stage].remove(f)
            self._act(acts, ft, "line", path, f"File distribution successful: {shown}\n")
            sub = f"{radar}_rawacf_dmap" if f.name.endswith(".bz2") else f"{radar}_rawacf"
            dest = os.path.join(site, sub, f.name[:4], f.name[4:6], f.name)
            self._move(acts, ft, f, dest)
            self._keep_bounded(acts, ft, radar, dest)
        if not arrays:
            self._act(acts, end, "line", path, "\nNo array files found to be distributed.\n")
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        return end, True

    def _run_archive_iq_plots(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "archive_iq_plots"
        q = self.queues[radar]
        shown_dir = f"/sddata/antennas_iq_plots/{radar}_iq_plots/"
        path = self._header(acts, stage, radar, t, "/home/dataman/data_flow/campus/archive_iq_plots",
                            "sdc-serv", ())
        self._act(acts, t, "line", path, f"Archiving from: {shown_dir}\n")
        self._act(acts, t, "line", path, f"Archiving to: {shown_dir}archive/\n\n")
        cutoff = t - DAY * self.scale  # plots over 24 hours (of simulated time) old
        old = [p for p in q[stage] if _name_time(p.name) < cutoff]
        times, end = self._times(stage, t, len(old))
        if not old:
            self._act(acts, t, "line", path, "No plots to archive.\n")
        archive = os.path.join(self.data_dir, "campus", "antennas_iq_plots", f"{radar}_iq_plots", "archive")
        for p, pt in zip(old, times, strict=True):
            q[stage].remove(p)
            self._act(acts, pt, "line", path, f"Successfully archived: {shown_dir}{p.name}\n")
            dest = os.path.join(archive, p.name[:4], p.name[4:6], p.name)
            self._move(acts, pt, p, dest)
            self._keep_bounded(acts, pt, radar, dest)
        self._finish(acts, path, stage, end)
        self._flag(acts, end, f".campus_dataflow_flag_{radar}")
        self._act(acts, end, "clear", f".site-linux_flag_{radar}")
        return end, True

    # ---- helpers -------------------------------------------------------------------

    def _pick_failure(self, files: list[SimFile], kind: str, stage: str, radar: str, t: float) -> SimFile | None:
        if files and self._chance(kind, stage, radar):
            f = self.rng.choice(files)
            self._note(t, radar, stage, kind, f.name)
            return f
        return None

    def _move(self, acts: list[Action], t: float, f: SimFile, dest: str) -> None:
        self._act(acts, t, "move", f.path, dest)
        f.path = dest

    def _copy(self, acts: list[Action], t: float, f: SimFile, dest: str) -> None:
        self._act(acts, t, "copy", f.path, dest, size=f.size)
        f.path = dest

    def _flag(self, acts: list[Action], t: float, name: str) -> None:
        self._act(acts, t, "flag", name)

    def _keep_bounded(self, acts: list[Action], t: float, radar: str, path: str) -> None:
        kept = self.final[radar]
        kept.append(path)
        while len(kept) > self.keep_files:
            self._act(acts, t, "delete", kept.popleft())

    # ---- performing ------------------------------------------------------------------

    def apply(self, a: Action) -> None:
        """Perform one action on the file system (errors on data files are not fatal)."""
        if a.op == "line":
            os.makedirs(os.path.dirname(a.a), exist_ok=True)
            # like `tee --append`: open, one write, close
            with open(a.a, "a", encoding="utf-8") as fh:
                fh.write(a.b)
        elif a.op == "flag":
            os.makedirs(self.flag_src, exist_ok=True)
            os.makedirs(self.flag_dir, exist_ok=True)
            src = os.path.join(self.flag_src, a.a)
            with open(src, "w"):
                pass
            os.replace(src, os.path.join(self.flag_dir, a.a))  # arrives by rename (MOVED_TO)
        elif a.op == "clear":
            _unlink(os.path.join(self.flag_dir, a.a))
        elif a.op == "create":
            os.makedirs(os.path.dirname(a.a), exist_ok=True)
            with open(a.a, "ab") as fh:
                fh.truncate(a.size)  # sparse: the real size without the disk
        elif a.op == "move":
            if os.path.exists(a.a):
                os.makedirs(os.path.dirname(a.b), exist_ok=True)
                os.replace(a.a, a.b)
        elif a.op == "copy":
            # like rsync: a hidden temporary in the destination, renamed when complete
            if os.path.exists(a.a):
                d, name = os.path.split(a.b)
                os.makedirs(d, exist_ok=True)
                tmp = os.path.join(d, f".{name}.{self._hex(6)}")
                with open(tmp, "wb") as fh:
                    fh.truncate(a.size)
                os.replace(tmp, a.b)
                _unlink(a.a)
        elif a.op == "delete":
            _unlink(a.a)
        else:
            raise ValueError(f"unknown action {a.op!r}")

    def write_journal(self) -> None:
        if not self.journal:
            return
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, "simulator.jsonl"), "a", encoding="utf-8") as fh:
            for entry in self.journal:
                fh.write(json.dumps(entry) + "\n")
        self.journal.clear()

    def run(
        self,
        cycles: int | None = None,
        *,
        start: float | None = None,
        realtime: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Run `cycles` cycles (None: until stopped). Returns the number of cycles run."""
        t0 = clock() if start is None else start
        done = 0
        while cycles is None or done < cycles:
            ct = t0 + self.cycle * self.period
            if realtime:
                _sleep_until(ct, clock, sleep, should_stop)
            if should_stop():
                break
            log.info("dataflow simulator: cycle {k} at {t}", k=self.cycle, t=utc_line(ct))
            for a in self.plan_cycle(ct):
                if realtime:
                    _sleep_until(a.t, clock, sleep, should_stop)
                if should_stop():
                    break
                self.apply(a)
            self.write_journal()
            done += 1
        return done


def _sleep_until(t: float, clock: Callable[[], float], sleep: Callable[[float], None],
                 should_stop: Callable[[], bool]) -> None:
    while not should_stop():
        left = t - clock()
        if left <= 0:
            return
        sleep(min(left, 0.5))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _dmap_name(array_name: str) -> str:
    """20240101.0000.00.sas.1.rawacf.h5 -> 20240101.0000.00.sas.b.rawacf.bz2"""
    parts = array_name.split(".")
    return ".".join([*parts[:4], chr(97 + int(parts[4])), "rawacf", "bz2"])


def _name_time(name: str) -> float:
    dt = datetime.datetime.strptime(name[:16], "%Y%m%d.%H%M.%S").replace(tzinfo=datetime.UTC)
    return dt.timestamp()


# ---- command line -------------------------------------------------------------------


def _radars(text: str) -> tuple[str, ...]:
    radars = tuple(r.strip() for r in text.split(",") if r.strip())
    if not radars or not all(is_radar_code(r) for r in radars) or len(set(radars)) != len(radars):
        raise argparse.ArgumentTypeError(f"want distinct three-letter radar codes, got {text!r}")
    return radars


def _time_arg(text: str) -> float:
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want an ISO time like 2023-12-31T20:00:00Z, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return dt.timestamp()


def _wrap(fn: Callable[[str], object]) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return fn(text)
        except SimulatorError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = fn.__name__
    return parse


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the simulator's arguments to `parser` (for `obsmesh simulate dataflow`)."""
    parser.description = "Write simulated SuperDARN data-flow summary logs, flags and data files."
    parser.add_argument("dir", help="directory to write summary/, flags/ and data/ under")
    parser.add_argument("--radars", type=_radars, default=DEFAULT_RADARS,
                        help="comma-separated radar codes (default: %(default)s)")
    parser.add_argument("--period", type=float, default=None,
                        help="seconds per cycle (default 7200, the two-hour Borealis file)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="time compression: the period is 7200/SPEED seconds (e.g. 3600: 2 s)")
    parser.add_argument("--cycles", type=int, default=None, help="stop after this many cycles")
    parser.add_argument("--start", type=_time_arg, default=None,
                        help="clock time of the first cycle (ISO, UTC); past cycles are written at once")
    parser.add_argument("--backfill", type=int, default=0,
                        help="start this many cycles in the past (history written at once)")
    parser.add_argument("--fast", action="store_true", help="never sleep: write all cycles at once")
    parser.add_argument("--failure-rate", type=float, default=0.05,
                        help="probability of a random failure per stage run (default %(default)s)")
    parser.add_argument("--inject", action="append", type=_wrap(parse_injection), default=[],
                        metavar="KIND@CYCLE[:RADAR[:STAGE]]",
                        help=f"inject a failure; KIND: {', '.join(KINDS)} (repeatable)")
    parser.add_argument("--stop", action="append", type=_wrap(parse_stop), default=[],
                        metavar="STAGE@CYCLE[:RADAR][+N]",
                        help="stop a stage (and the ones after it) from a cycle, for N cycles or for good")
    parser.add_argument("--antennas", type=int, default=20, help="IQ plots per antennas_iq file")
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the simulator from parsed arguments; returns an exit status."""
    try:
        if not args.speed > 0:
            raise SimulatorError("speed must be positive")
        period = args.period if args.period is not None else DEFAULT_PERIOD / args.speed
        if args.cycles is not None and args.cycles < 0:
            raise SimulatorError("cycles must be >= 0")
        if args.backfill < 0:
            raise SimulatorError("backfill must be >= 0")
        sim = Simulator(args.dir, args.radars, period=period, seed=args.seed,
                        failure_rate=args.failure_rate, injections=tuple(args.inject),
                        stops=tuple(args.stop), antennas=args.antennas)
    except SimulatorError as e:
        sys.stderr.write(f"simulate dataflow: {e}\n")
        return 2
    start = args.start
    if start is None and args.backfill:
        start = time.time() - args.backfill * period
    stopping = []

    def on_signal(signum, frame) -> None:
        stopping.append(signum)

    try:
        old = signal.signal(signal.SIGTERM, on_signal)
    except ValueError:  # not the main thread: the caller handles signals
        old = None
    try:
        sim.run(args.cycles, start=start, realtime=not args.fast, should_stop=lambda: bool(stopping))
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        sim.write_journal()
    return 0


if __name__ == "__main__":
    sys.exit(main(configure(argparse.ArgumentParser(prog="simulate-dataflow")).parse_args()))
