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

from twisted.logger import Logger

from nodes.dataflow.names import STAGES, is_radar_code
from nodes.dataflow.sim_model import (
    DAY,
    DEFAULT_PERIOD,
    DEFAULT_RADARS,
    KIND_STAGE,
    KINDS,
    LOW_BANDWIDTH,
    RADAR_SPACING,
    Action,
    Injection,
    SimFile,
    SimulatorError,
    Stop,
    file_stamp,
    parse_injection,
    parse_stop,
    utc_line,
)
from nodes.dataflow.sim_stages import StagePlanner

log = Logger()

__all__ = [
    "Action",
    "Injection",
    "Simulator",
    "SimulatorError",
    "Stop",
    "configure",
    "main",
    "parse_injection",
    "parse_stop",
]


class Simulator(StagePlanner):
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
        if (
            not radars
            or not all(is_radar_code(r) for r in radars)
            or len(set(radars)) != len(radars)
        ):
            raise SimulatorError(f"radars must be distinct three-letter codes, got {radars!r}")
        if not (period >= 1.0):
            raise SimulatorError(
                "period must be at least 1 s (file names have one-second resolution)"
            )
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
        self.commit = {
            "data_flow": (self._hex(7), "2023-10-02 15:04:11 -0600"),
            "pyDARNio": (self._hex(7), "2023-09-28 09:41:55 -0600"),
        }
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

    def _act(
        self, acts: list[Action], t: float, op: str, a: str = "", b: str = "", size: int = 0
    ) -> None:
        self._seq += 1
        acts.append(Action(t, self._seq, op, a, b, size))

    def _note(self, t: float, radar: str, stage: str, kind: str, detail: str = "") -> None:
        self.journal.append(
            {
                "t": round(t, 3),
                "cycle": self.cycle,
                "radar": radar,
                "stage": stage,
                "kind": kind,
                "detail": detail,
            }
        )

    def _injected(self, kind: str, stage: str, radar: str) -> bool:
        for inj in self.injections:
            if (
                inj.kind == kind
                and inj.cycle == self.cycle
                and (inj.stage or KIND_STAGE[kind]) == stage
            ):
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
        return os.path.join(
            self.summary_dir,
            time.strftime("%Y/%m", day),
            f"{time.strftime('%Y%m%d', day)}.{stage}_summary.log",
        )

    def _borealis_files(self, acts: list[Action], radar: str, t: float) -> list[SimFile]:
        """Borealis opens the files of a new two-hour block."""
        d = os.path.join(self.data_dir, radar, "borealis")
        files = []
        slices = (0, 1) if radar == "sas" else (0,)
        for s in slices:
            for kind, size in (("rawacf", 60e6), ("antennas_iq", 600e6)):
                name = f"{file_stamp(t)}.{radar}.{s}.{kind}.h5"
                f = SimFile(
                    name, radar, int(size * self.rng.uniform(0.7, 1.3)), os.path.join(d, name)
                )
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
        if (
            self._injected("old", "rsync_to_nas", radar)
            or self.rng.random() < self.failure_rate / 5
        ):
            old_t = block_t - 2 * DAY - self.rng.randrange(1, 12) * 7200 * self.scale
            name = f"{file_stamp(old_t)}.{radar}.0.rawacf.h5"
            f = SimFile(
                name, radar, 50_000_000, os.path.join(self.data_dir, radar, "borealis", name)
            )
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
        for q_name in (
            "rsync_to_nas",
            "rsync_to_campus",
            "convert_on_campus",
            "distribute_borealis_data",
        ):
            del q[q_name][60:]  # a long stop must not grow without bound

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


def _sleep_until(
    t: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    should_stop: Callable[[], bool],
) -> None:
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
        raise argparse.ArgumentTypeError(
            f"want an ISO time like 2023-12-31T20:00:00Z, got {text!r}"
        ) from None
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
    parser.add_argument(
        "--radars",
        type=_radars,
        default=DEFAULT_RADARS,
        help="comma-separated radar codes (default: %(default)s)",
    )
    parser.add_argument(
        "--period",
        type=float,
        default=None,
        help="seconds per cycle (default 7200, the two-hour Borealis file)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time compression: the period is 7200/SPEED seconds (e.g. 3600: 2 s)",
    )
    parser.add_argument("--cycles", type=int, default=None, help="stop after this many cycles")
    parser.add_argument(
        "--start",
        type=_time_arg,
        default=None,
        help="clock time of the first cycle (ISO, UTC); past cycles are written at once",
    )
    parser.add_argument(
        "--backfill",
        type=int,
        default=0,
        help="start this many cycles in the past (history written at once)",
    )
    parser.add_argument("--fast", action="store_true", help="never sleep: write all cycles at once")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.05,
        help="probability of a random failure per stage run (default %(default)s)",
    )
    parser.add_argument(
        "--inject",
        action="append",
        type=_wrap(parse_injection),
        default=[],
        metavar="KIND@CYCLE[:RADAR[:STAGE]]",
        help=f"inject a failure; KIND: {', '.join(KINDS)} (repeatable)",
    )
    parser.add_argument(
        "--stop",
        action="append",
        type=_wrap(parse_stop),
        default=[],
        metavar="STAGE@CYCLE[:RADAR][+N]",
        help="stop a stage (and the ones after it) from a cycle, for N cycles or for good",
    )
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
        sim = Simulator(
            args.dir,
            args.radars,
            period=period,
            seed=args.seed,
            failure_rate=args.failure_rate,
            injections=tuple(args.inject),
            stops=tuple(args.stop),
            antennas=args.antennas,
        )
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
        sim.run(
            args.cycles, start=start, realtime=not args.fast, should_stop=lambda: bool(stopping)
        )
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        sim.write_journal()
    return 0


if __name__ == "__main__":
    sys.exit(main(configure(argparse.ArgumentParser(prog="simulate-dataflow")).parse_args()))
