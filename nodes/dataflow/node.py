"""The `dataflow` node: the SuperDARN data pipeline's health as live data.

`DataflowIngest` follows the summary logs (and optionally data and flag
directories); this node turns what it reports into samples, events and
status:

- one timeline per radar x stage, `<rad>.<stage>`, with one sample per run,
  stamped at the run's end (a run that died has no end: at its start):
  files ok / failed, duration, files over a day old, success rates over the
  window, connection errors, state;
- the timeline `stages`, sampled every `sample_interval`: for every radar x
  stage the time since its last run and whether it is stale;
- the timeline `arrivals`, one sample per file arriving in a data directory
  (name, radar, kind, size), `arrival_counts` with counts per radar and kind,
  and the extra topics `.arrival` and `.flag`;
- events (Grafana annotations) for runs with failed files, connection
  failures or that died; staleness (no run within the stage's period plus a
  margin) as a status change of the source `<rad>.<stage>`, which the base
  publishes on `.status` and keeps as an event.

Logs present when the node starts are read as history (stored, not published
live). With a persistent store a restarted node skips runs its timeline
already holds, so nothing is stored twice.
"""

from __future__ import annotations

import collections
import math
import os
import re
import time
from typing import Any

from twisted.internet import defer

from nodes.base import DataNode
from nodes.dataflow import options as options_mod
from nodes.dataflow.ingest import Arrival, DataflowIngest, FlagEvent
from nodes.dataflow.names import STAGES, is_radar_code
from nodes.dataflow.products import ProductBook, run_figures
from nodes.dataflow.summary import Record, Run, RunStart
from obsmesh.periodic import Periodic
from obsmesh.store import StoreError

STAGES_TIMELINE = "stages"
ARRIVALS = "arrivals"
ARRIVAL_COUNTS = "arrival_counts"
MAX_PAIRS = 1000  # radar x stage timelines; hostile logs must not grow the field list forever
MAX_COUNT_FIELDS = 500
MAX_EVENT_FILES = 10  # failed file paths quoted in one event
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")

# name, type, units, description of the per-run fields on `<rad>.<stage>`
RUN_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("files_ok", "number", "", "files handled successfully in the run"),
    ("files_failed", "number", "", "files that failed in the run"),
    ("duration", "number", "s", "run duration, start to Finished line"),
    ("files_old", "number", "", "files over a day old at transfer (file-name time vs run start)"),
    ("success_rate", "number", "", "files ok / files tried over the window up to this run (0-1)"),
    (
        "run_success_rate",
        "number",
        "",
        "runs finished without failures / runs over the window (0-1)",
    ),
    ("connection_errors", "number", "", "connection failure lines in the run"),
    ("unknown_lines", "number", "", "lines of no known form in the run"),
    ("nothing_to_do", "bool", "", "the run found nothing to do"),
    ("died", "bool", "", "the run has no Finished line (it died or was cut off)"),
    ("state", "string", "", "finished or died"),
    ("host", "string", "", "host the script ran on"),
)


# the fields of the `arrivals` timeline, one sample per file arrived
ARRIVAL_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("arrival.name", "string", "", "name of a file arrived in a watched data directory"),
    ("arrival.radar", "string", "", "radar the file's name names"),
    ("arrival.kind", "string", "", "file kind from its name (rawacf, antennas_iq, iq_plot...)"),
    ("arrival.size", "number", "B", "size of the file"),
    (
        "arrival.file_time",
        "number",
        "s since 1970-01-01",
        "start time the file's name gives (UNIX time)",
    ),
    ("arrival.dir", "string", "", "directory the file arrived in"),
)


# decimal places for display by field suffix (values are stored as read)
PRECISION = {
    "files_ok": 0,
    "files_failed": 0,
    "files_old": 0,
    "connection_errors": 0,
    "unknown_lines": 0,
    "duration": 1,
    "success_rate": 3,
    "run_success_rate": 3,
    "since_last_run": 0,
    "arrival.size": 0,
    "arrival.file_time": 0,
}


def _utc(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


class DataflowNode(DataNode):
    kind = "dataflow"
    history_from_own_files = True  # rebuilt from its files at start
    description = "SuperDARN data-flow telemetry: runs, failures and staleness per radar and stage"
    # files reaching the pipeline per radar, and how many of them get to campus
    plots = ("arrivals.*.rawacf", "*.rsync_to_campus.success_rate")

    def __init__(
        self, name: str, settings: dict[str, Any] | None, options: dict[str, Any], **kw: Any
    ) -> None:
        resolved = options_mod.resolve_options(options)  # refused before the store is made
        super().__init__(name, settings, **kw)
        self.options = resolved
        self.pairs: dict[tuple[str, str], str] = {}  # (radar, stage) -> timeline
        self.running: dict[str, float | None] = {}  # timeline -> start of the run going on
        # timeline -> its last time stored before this process (in a persistent store)
        self._floors: dict[str, float | None] = {}
        self._inbox: collections.deque[tuple[list[Record], bool]] = collections.deque()
        self._draining = False
        self._arrival_counts: collections.Counter[str] = collections.Counter()
        self._count_fields: set[str] = set()
        self._arrivals_out: list[dict[str, Any]] = []
        self._arrivals_call = None
        self._next_sample = 0.0
        o = self.options
        self.book = ProductBook(period=o["period"], margin=o["margin"], window=o["window"])
        self.ingest = DataflowIngest(
            summary_roots=o["summary_roots"],
            on_records=self._on_records,
            data_dirs=o["data_dirs"],
            flag_dirs=o["flag_dirs"],
            on_arrival=self._on_arrival,
            on_flag=self._on_flag,
            reactor=self.reactor,
            clock=self.clock,
            mode=o["mode"],
            poll_interval=o["poll_interval"],
            backlog=o["backlog"],
            unfinished_after=o["unfinished_after"],
        )
        self._loop = Periodic(
            self.reactor, min(o["check_interval"], o["sample_interval"]), self._tick
        )
        self.register_rpc("stage_products", self.stage_products)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "radars": list(self.options["radars"])}

    def setup(self) -> None:
        for field, kind, units, description in ARRIVAL_FIELDS:
            self.declare(
                field,
                ARRIVALS,
                type=kind,
                units=units,
                description=description,
                precision=PRECISION.get(field),
            )

    # -- radar x stage timelines ------------------------------------------
    @staticmethod
    def timeline_of(radar: str, stage: str) -> str | None:
        """The timeline of a radar x stage, None for names no field may carry."""
        if not (is_radar_code(radar) or radar == "unknown") or not _STAGE_NAME.fullmatch(stage):
            return None
        return f"{radar}.{stage}"

    def _pair(self, radar: str, stage: str) -> str | None:
        timeline = self.pairs.get((radar, stage))
        if timeline is not None:
            return timeline
        timeline = self.timeline_of(radar, stage)
        if timeline is None or len(self.pairs) >= MAX_PAIRS:
            self.count("runs_refused")
            return None
        for field, kind, units, description in RUN_FIELDS:
            self.declare(
                f"{timeline}.{field}",
                timeline,
                type=kind,
                units=units,
                description=f"{radar} {stage}: {description}",
                precision=PRECISION.get(field),
            )
        self.declare(
            f"{timeline}.since_last_run",
            STAGES_TIMELINE,
            units="s",
            description=f"{radar} {stage}: time since the last run started",
            precision=0,
        )
        self.declare(
            f"{timeline}.stale",
            STAGES_TIMELINE,
            type="bool",
            description=f"{radar} {stage}: no run within the expected period plus margin",
        )
        self.pairs[(radar, stage)] = timeline
        self.book.history(radar, stage)
        self.source(timeline, stale=False, radar=radar, stage=stage)
        return timeline

    # -- records from the summary logs ------------------------------------
    def _on_records(self, records: list[Record]) -> None:
        # One queue, taken in order: a timeline's first run waits for what the store
        # already holds (the span), and nothing may overtake it meanwhile.
        self._inbox.append((records, self.ingest.logs.replaying))
        if not self._draining:
            defer.ensureDeferred(self._drain()).addErrback(
                lambda f: self.log.failure("dataflow records failed", failure=f)
            )

    async def _drain(self) -> None:
        self._draining = True
        try:
            while self._inbox:
                records, replay = self._inbox.popleft()
                for r in records:
                    if isinstance(r, Run):
                        timeline = self.timeline_of(r.radar, r.script)
                        if timeline is not None and timeline not in self._floors:
                            self._floors[timeline] = await self._stored_until(timeline)
                try:
                    self._take(records, live=not replay)
                except Exception as exc:  # a bug on one batch must not stop the node
                    self.count("record_errors")
                    self.last_error = f"records: {exc}"
                    self.log.failure("taking dataflow records failed")
        finally:
            self._draining = False

    async def _stored_until(self, timeline: str) -> float | None:
        try:
            span = await self.store.span(timeline)
        except StoreError as exc:
            self.log.warn("span of {timeline}: {exc}", timeline=timeline, exc=exc)
            return None
        return None if span is None else float(span[1])

    def _take(self, records: list[Record], live: bool) -> None:
        for r in records:
            if isinstance(r, Run):
                self._on_run(r, live)
            elif isinstance(r, RunStart):
                timeline = self._pair(r.radar, r.script)
                if timeline is None:
                    continue
                self.book.note_start(r.radar, r.script, r.start)
                self.running[timeline] = r.start
                self.count("runs_started")
            else:
                self.count("file_lines" if r.script is not None else "file_lines_outside_runs")
        self._check_staleness(self.clock())

    def _on_run(self, run: Run, live: bool) -> None:
        if run.start is None or not math.isfinite(run.start):
            self.count("runs_without_time")
            return
        timeline = self._pair(run.radar, run.script)
        if timeline is None:
            return
        stamp = run.end if run.state == "finished" and run.end is not None else run.start
        self.book.add_run(run)
        self.running.pop(timeline, None)
        self.count("runs")
        self.count(f"runs_{run.state}")
        self._run_event(run, stamp)
        floor = self._floors.get(timeline)
        if not live and floor is not None and stamp <= floor:
            self.count("runs_already_stored")  # history a previous process stored
            return
        p = self.book.products(run.radar, run.script, stamp)
        values: dict[str, Any] = {
            **run_figures(run, self.book.old_after),
            "success_rate": p.success_rate,
            "run_success_rate": p.run_success_rate,
            "state": run.state,
            "host": run.host,
        }
        self.append(
            timeline, [stamp], {f"{timeline}.{k}": [v] for k, v in values.items()}, live=live
        )
        self.source(
            timeline,
            last_run=run.start,
            last_state=run.state,
            last_files_failed=run.files_failed,
            last_sample=stamp,
        )

    def _run_event(self, run: Run, stamp: float) -> None:
        """One annotation per run that went wrong: failed files, no connection, or died."""
        died = run.state != "finished"
        if not (run.files_failed or run.connection_errors or died):
            return
        what, tags = [], ["dataflow", run.radar, run.script]
        if run.connection_errors:
            what.append("connection failure")
            tags.append("connection")
        if run.files_failed:
            what.append(f"{run.files_failed} file(s) failed")
            tags.append("failure")
        if died:
            what.append("run died" + (f" ({run.reason})" if run.reason else ""))
            tags.append("died")
        lines = list(run.connection_errors[:3])
        failed = [f for f in run.files if f.outcome == "failed"]
        lines += [f"{f.status}: {f.path}" for f in failed[:MAX_EVENT_FILES]]
        if len(failed) > MAX_EVENT_FILES:
            lines.append(f"... and {len(failed) - MAX_EVENT_FILES} more")
        lines.append(f"on {run.host or '?'}, started {_utc(run.start)}, log {run.source}")
        self.count("run_events")
        self.event(stamp, f"{run.radar} {run.script}: {', '.join(what)}", "\n".join(lines), tags)

    # -- staleness and the sampled timelines -------------------------------
    def _check_staleness(self, now: float) -> None:
        if self.ingest.logs.catching_up:
            return  # half the history is no evidence: a stage would go stale, then fresh again
        for ch in self.book.check(now):
            timeline = self._pair(ch.radar, ch.stage)
            if timeline is None:
                continue
            if ch.stale:
                self.count("stale_changes")
                self.source(
                    timeline,
                    stale=True,
                    last_activity=ch.last_activity,
                    error=(
                        f"no {ch.stage} run for {ch.radar} since {_utc(ch.last_activity)} "
                        f"(expected every {ch.period:g} s, margin {ch.margin:g} s)"
                    ),
                )
            else:
                self.source(timeline, stale=False, last_activity=ch.last_activity, error=None)

    def _tick(self) -> None:
        now = self.clock()
        self.ingest.tick(now)  # runs open too long come back through _on_records, as died
        self._check_staleness(now)
        if now >= self._next_sample:
            self._next_sample = now + self.options["sample_interval"]
            self._sample(now)

    def _sample(self, now: float) -> None:
        if self.pairs:
            cols: dict[str, list] = {}
            for (radar, stage), timeline in self.pairs.items():
                p = self.book.products(radar, stage, now)
                cols[f"{timeline}.since_last_run"] = [p.since_last_run]
                cols[f"{timeline}.stale"] = [1.0 if p.stale else 0.0]
            self.append(STAGES_TIMELINE, [now], cols)
        if self._arrival_counts:
            counts = {f: [float(self._arrival_counts.get(f, 0))] for f in self._count_fields}
            self._arrival_counts.clear()
            self.append(ARRIVAL_COUNTS, [now], counts)

    # -- data files and flags ----------------------------------------------
    def _on_arrival(self, a: Arrival) -> None:
        now = self.clock()
        radar = a.name.radar if a.name is not None else None
        kind = a.name.kind if a.name is not None else "other"
        self.append(
            ARRIVALS,
            [now],
            {
                "arrival.name": [a.basename],
                "arrival.radar": [radar],
                "arrival.kind": [kind],
                "arrival.size": [float(a.size)],
                "arrival.file_time": [None if a.name is None else a.name.time],
                "arrival.dir": [os.path.dirname(a.path)],
            },
        )
        self.count("arrivals")
        self.count("arrival_bytes", int(a.size))
        field = f"arrivals.{radar or 'none'}.{kind}"
        if field not in self._count_fields and len(self._count_fields) < MAX_COUNT_FIELDS:
            self._count_fields.add(field)
            self.declare(
                field,
                ARRIVAL_COUNTS,
                description=f"{kind} files of {radar or 'no radar'} "
                "arrived since the previous sample",
                precision=0,
            )
        if field in self._count_fields:
            self._arrival_counts[field] += 1
        self._arrivals_out.append(
            {
                "time": now,
                "path": a.path,
                "name": a.basename,
                "size": a.size,
                "mtime": a.mtime,
                "radar": radar,
                "kind": kind,
            }
        )
        if self._arrivals_call is None:  # one event per burst, not one per file
            self._arrivals_call = self.reactor.callLater(
                self.settings["live_interval"], self._publish_arrivals
            )

    def _publish_arrivals(self) -> None:
        self._arrivals_call = None
        batch, self._arrivals_out = self._arrivals_out, []
        if batch:
            self.publish("arrival", {"arrivals": batch}, retain=False)

    def _on_flag(self, ev: FlagEvent) -> None:
        self.count("flags_raised" if ev.raised else "flags_cleared")
        if ev.initial:
            return  # found at start: not news
        self.publish(
            "flag",
            {
                "time": ev.time,
                "stage": ev.stage,
                "radar": ev.radar,
                "raised": ev.raised,
                "name": os.path.basename(ev.path),
            },
            retain=False,
        )

    # -- start, stop, status -----------------------------------------------
    async def start(self) -> None:
        now = self.clock()
        radars = list(self.options["radars"])
        if radars:
            self.book.expect(radars, now)
            for radar in radars:
                for stage in STAGES:
                    self._pair(radar, stage)
        self.ingest.start()
        self._loop.start(now=False)

    async def stop(self) -> None:
        self._loop.stop()
        self.ingest.stop()
        if self._arrivals_call is not None and self._arrivals_call.active():
            self._arrivals_call.cancel()
        self._publish_arrivals()

    def stage_products(self) -> list[dict[str, Any]]:
        """Products of every radar x stage now (RPC `stage_products`)."""
        return [p.as_dict() for p in self.book.snapshot(self.clock())]

    def get_status(self) -> dict:
        status = super().get_status()
        ingest = self.ingest.status()
        flags = self.ingest.flags
        ingest["flags_raised"] = sorted(os.path.basename(p) for p in flags.raised) if flags else []
        ingest["running"] = {k: v for k, v in self.running.items()}
        ingest["stale"] = sorted(k for k, s in self.sources.items() if s.get("stale"))
        ingest["options"] = {
            k: self.options[k]
            for k in (
                "summary_roots",
                "data_dirs",
                "flag_dirs",
                "radars",
                "period",
                "margin",
                "window",
                "unfinished_after",
            )
        }
        status["dataflow"] = ingest
        return status


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> DataflowNode:
    return DataflowNode(name, mesh, options)
