"""Radar products, history and status for any node that receives FITACF records.

A `RadarPipeline` belongs to one `DataNode`. Whatever brings the records (the
RST realtime feed over TCP, the Canadian ZeroMQ feed, archived files), the node
hands each decoded record to `ingest(key, record)`, and the pipeline, under
that node's own name:

- publishes the beam product on `P.consumer.<node>.radar.<key>.beam` and each
  completed scan on `P.consumer.<node>.radar.<key>.scan` (one event per beam or
  scan: each is already a batch of echoes);
- appends per-beam scalars to the timeline `<key>.beam` (fields `<key>.noise`,
  `<key>.tfreq`, `<key>.echoes`, ...) and per-scan figures to `<key>.scan`
  (`<key>.scan.total`, `<key>.scan.mean_total`, ...), all stamped with radar
  time, so `get_data` and Grafana serve them;
- queues each scan's echo counts for the SQLite `EchoStore` (written in a
  worker thread, a batch at a time) and purges that store on a schedule;
- keeps the radar's entry in the node's sources (connected, stale, last radar
  time, counts) and flushes a radar's open scan when it disconnects or goes
  stale (published with `complete: False`), so a scan never mixes beams from
  both sides of an outage.

A radar is named by its *key*: its code (`sas`), or `code.channel` when one
radar's channels come as separate feeds. The code finds the radar in the
radar table (name, position); unknown codes work too, without those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.logger import Logger

from obsmesh.errors import InvalidArgument, TooManyPoints
from obsmesh.periodic import Periodic
from obsmesh.sqlite import DatabaseThread
from obsmesh.timerules import resolve_interval

from . import radars
from .echoes import EchoStore
from .products import ProductError, ScanAccumulator, beam_product

KEY = re.compile(r"^[a-z][a-z0-9]{1,7}(\.[a-z0-9]{1,8})?$")
# A record stamped further ahead of the node's clock than this is refused: one
# sample from a radar with a broken clock would otherwise make the store evict
# the whole timeline as "older than max_age before the newest sample".
MAX_CLOCK_AHEAD = 3600.0
MAX_ECHO_ROWS = 100_000  # rows in one get_echoes reply
MAX_ECHO_QUEUE = 100_000  # scans waiting for SQLite before the oldest are dropped
ECHO_RETRY = 5.0  # seconds before a failed SQLite write is tried again
STOP_TIMEOUT = 10.0  # longest a stop waits for the last echo counts to be written

# suffix -> (type, units, description); field names are `<key>.<suffix>`.
BEAM_FIELDS: dict[str, tuple[str, str, str]] = {
    "bmnum": ("number", "", "beam number"),
    "channel": ("number", "", "channel of the record"),
    "noise": ("number", "", "sky noise (noise.sky)"),
    "velocity": (
        "number",
        "m/s",
        "median line-of-sight velocity of the beam's ionospheric echoes (+ away from the radar)",
    ),
    "power": ("number", "dB", "mean echo power (p_l) of the beam's echoes"),
    "tfreq": ("number", "kHz", "transmit frequency"),
    "echoes": ("number", "", "echoes on the beam (range gates with a fit)"),
    "echoes.ionospheric": ("number", "", "ionospheric-scatter echoes on the beam"),
    "echoes.ground": ("number", "", "ground-scatter echoes on the beam"),
}
SCAN_FIELDS: dict[str, tuple[str, str, str]] = {
    "scan.beams": ("number", "", "beams in the scan (zero-echo beams included)"),
    "scan.total": ("number", "", "echoes in the scan"),
    "scan.ionospheric": ("number", "", "ionospheric-scatter echoes in the scan"),
    "scan.ground": ("number", "", "ground-scatter echoes in the scan"),
    "scan.mean_total": ("number", "", "echoes per beam in the scan"),
    "scan.mean_ionospheric": ("number", "", "ionospheric echoes per beam in the scan"),
    "scan.mean_ground": ("number", "", "ground-scatter echoes per beam in the scan"),
    "scan.noise": ("number", "", "mean sky noise of the scan's beams"),
    "scan.channel": ("number", "", "channel of the scan"),
    "scan.duration": ("number", "s", "first to last beam of the scan"),
    "scan.complete": ("bool", "", "false for a scan cut short by an outage"),
}


# decimal places for display, by suffix (values are stored as received)
PRECISION = {
    "velocity": 0,
    "power": 1,
    "noise": 1,
    "tfreq": 0,
    "scan.noise": 1,
    "scan.duration": 1,
    "scan.mean_total": 1,
    "scan.mean_ionospheric": 1,
    "scan.mean_ground": 1,
}


def beam_velocity(beam: Mapping[str, Any]) -> float | None:
    """Median velocity of the ionospheric echoes (None without any): one
    number per beam that follows flows and is not thrown by a few wild gates."""
    v = [x for x, g in zip(beam["v"], beam["gflg"], strict=False) if x is not None and not g]
    return float(np.median(v)) if v else None


def beam_power(beam: Mapping[str, Any]) -> float | None:
    """Mean echo power in dB of all the beam's echoes (None without any)."""
    p = [x for x in beam["p_l"] if x is not None]
    return sum(p) / len(p) if p else None


def beam_timeline(key: str) -> str:
    return f"{key}.beam"


def scan_timeline(key: str) -> str:
    return f"{key}.scan"


@dataclass
class RadarState:
    """What the pipeline knows of one radar."""

    key: str
    code: str
    info: dict[str, Any] | None
    scans: ScanAccumulator = field(default_factory=ScanAccumulator)
    records: int = 0
    beams: int = 0
    scan_count: int = 0
    bad_records: int = 0
    last_time: float | None = None  # radar time of the newest beam
    connected: bool | None = None
    stale: bool | None = None
    live: bool = False  # fed by a transport (has a source entry), not only history
    watchdog: Any = None


class RadarPipeline:
    """Products and history of the radars of one node.

    - `node`: the DataNode whose store, topics, sources and counters are used.
    - `echoes`: an EchoStore for per-scan echo counts (None: no SQLite history).
    - `purge_interval`: seconds between retention purges of the EchoStore.
    - `stale_after`: if set, a radar that sends nothing for that long is marked
      stale by the pipeline itself (for transports without their own watchdog,
      such as a ZeroMQ feed shared by many radars); None leaves staleness to the
      transport, which reports it through `radar_status`.
    - `timelines`: False keeps beams and scans out of the node's store (a replay
      that only fills the EchoStore).
    - `skip_history(timeline, t, channel)`: True to keep one row out of the
      store (a replay skipping rows the store already holds); products and
      echo counts are unaffected.
    - `run_in_thread(fn, *args)`: how blocking SQLite calls leave the reactor
      thread (default: `self.db`, the store's one thread; tests pass a
      synchronous runner). `self.db.stop(store.close)` closes the store there.
    """

    log = Logger()

    def __init__(
        self,
        node: Any,
        echoes: EchoStore | None = None,
        *,
        purge_interval: float = 3600.0,
        maintain_every: float = 60.0,
        stale_after: float | None = None,
        timelines: bool = True,
        skip_history: Callable[[str, float, int], bool] | None = None,
        run_in_thread: Callable[..., defer.Deferred] | None = None,
        topic: str = "radar",
    ) -> None:
        if not purge_interval > 0 or not maintain_every > 0:
            raise ValueError("purge_interval and maintain_every must be positive")
        if stale_after is not None and not stale_after > 0:
            raise ValueError("stale_after must be positive (or None)")
        self.node = node
        self.echoes = echoes
        self.purge_interval = float(purge_interval)
        self.stale_after = stale_after
        self.timelines = timelines
        self.skip_history = skip_history
        # every SQLite call on the echo store runs on its one thread (obsmesh.sqlite)
        self.db = DatabaseThread(node.reactor, "superdarn-echoes")
        self.run_in_thread = run_in_thread or self.db.run
        self.topic = topic
        self.radars: dict[str, RadarState] = {}
        self._echo_queue: list[dict[str, Any]] = []
        self._echo_busy = False
        self._echo_retry: Any = None
        self._echo_idle: list[defer.Deferred] = []
        self._last_purge: float | None = None
        self._maintaining: defer.Deferred | None = None  # a maintenance pass under way
        self._maintain = Periodic(node.reactor, float(maintain_every), self._maintenance)

    # ------------------------------------------------------------ radars

    def add_radar(self, key: str, live: bool = True) -> RadarState:
        """Declare a radar's fields (idempotent). `live`: it has a transport,
        so it gets a source entry in get_status."""
        state = self.radars.get(key)
        if state is None:
            if not isinstance(key, str) or not KEY.match(key):
                raise ValueError(f"bad radar key {key!r}: a code, or code.channel")
            code = key.split(".", 1)[0]
            row = radars.radar(code)
            state = self.radars[key] = RadarState(key, code, row.as_dict() if row else None)
            self._declare(state)
        if live and not state.live:
            state.live = True
            where = state.info or {}
            self.node.source(
                key,
                connected=False,
                stale=False,
                # the site from the radar table: the dashboard draws the fan on a map
                site={
                    k: where[k] for k in ("name", "lat", "lon", "boresight", "beams") if k in where
                }
                or None,
                last_sample=state.last_time,
                records=0,
                beams=0,
                scans=0,
                bad_records=0,
            )
            self._arm_watchdog(state)
        return state

    def _declare(self, state: RadarState) -> None:
        name = state.info["name"] if state.info else state.key
        for timeline, fields in (
            (beam_timeline(state.key), BEAM_FIELDS),
            (scan_timeline(state.key), SCAN_FIELDS),
        ):
            for suffix, (kind, units, description) in fields.items():
                self.node.declare(
                    f"{state.key}.{suffix}",
                    timeline,
                    type=kind,
                    units=units,
                    description=f"{name}: {description}",
                    precision=PRECISION.get(suffix, 0 if kind == "number" and not units else None),
                )

    # ------------------------------------------------------------ records

    def ingest(
        self, key: str, record: Mapping[str, Any], live: bool = True
    ) -> dict[str, Any] | None:
        """One decoded FITACF record of radar `key`; returns its beam product,
        or None for a record that is not a usable beam (counted, never raised).
        `live=False` for archived records: history only, nothing published."""
        state = self.radars.get(key) or self.add_radar(key, live=live)
        state.records += 1
        self.node.count("records")
        try:
            beam = beam_product(record, state.code, state.info)
            beam["key"] = key
            if beam["time"] > self.node.clock() + MAX_CLOCK_AHEAD:
                raise ProductError(f"radar time {beam['time']:.0f} is ahead of this clock")
        except ProductError as exc:
            state.bad_records += 1
            self.node.count("bad_records")
            if live:
                self.node.source(key, bad_records=state.bad_records, error=f"bad record: {exc}")
            return None
        if state.info is not None and beam["stid"] != state.info["stid"]:
            self.node.count("stid_mismatch")  # kept: the config names the radar, not the record
        state.beams += 1
        self.node.count("beams")
        t = beam["time"]
        state.last_time = t if state.last_time is None else max(state.last_time, t)
        if live:
            self._arm_watchdog(state)
            if state.stale and self.stale_after is not None:
                self.radar_status(key, stale=False)
        for scan in state.scans.add(beam):
            self._scan_done(state, scan, complete=True, live=live)
        if live:
            self.node.publish(f"{self.topic}.{key}.beam", beam)
        self._append_beam(state, beam, live)
        if live:
            self.node.source(
                key,
                last_sample=state.last_time,
                records=state.records,
                beams=state.beams,
                scans=state.scan_count,
                bad_records=state.bad_records,
            )
        return beam

    def flush(self, key: str | None = None, live: bool = True) -> int:
        """Finish the open scans of one radar (or all) now: an outage, or the
        end of an archive. Such a scan was not ended by the next one's start, so
        it may lack beams: it is marked incomplete. Returns how many."""
        done = 0
        for state in [self.radars[key]] if key is not None else list(self.radars.values()):
            for scan in state.scans.flush():
                self._scan_done(state, scan, complete=False, live=live)
                done += 1
        return done

    def _append_beam(self, state: RadarState, beam: dict[str, Any], live: bool) -> None:
        timeline = beam_timeline(state.key)
        if not self.timelines or (
            self.skip_history and self.skip_history(timeline, beam["time"], beam["channel"])
        ):
            return
        k = state.key
        self.node.append(
            timeline,
            [beam["time"]],
            {
                f"{k}.bmnum": [beam["beam"]],
                f"{k}.channel": [beam["channel"]],
                f"{k}.noise": [beam["noise"]],
                f"{k}.velocity": [beam_velocity(beam)],
                f"{k}.power": [beam_power(beam)],
                f"{k}.tfreq": [beam["tfreq"]],
                f"{k}.echoes": [beam["echoes_total"]],
                f"{k}.echoes.ionospheric": [beam["echoes_ionospheric"]],
                f"{k}.echoes.ground": [beam["echoes_ground"]],
            },
            live=live,
        )

    def _scan_done(
        self, state: RadarState, scan: dict[str, Any], complete: bool, live: bool
    ) -> None:
        scan["key"] = state.key
        scan["complete"] = complete
        state.scan_count += 1
        self.node.count("scans")
        if live:
            self.node.publish(f"{self.topic}.{state.key}.scan", scan)
        timeline = scan_timeline(state.key)
        if self.timelines and not (
            self.skip_history and self.skip_history(timeline, scan["time"], scan["channel"])
        ):
            k = f"{state.key}.scan"
            self.node.append(
                timeline,
                [scan["time"]],
                {
                    f"{k}.beams": [scan["beams"]],
                    f"{k}.total": [scan["total"]],
                    f"{k}.ionospheric": [scan["ionospheric"]],
                    f"{k}.ground": [scan["ground"]],
                    f"{k}.mean_total": [scan["mean_total"]],
                    f"{k}.mean_ionospheric": [scan["mean_ionospheric"]],
                    f"{k}.mean_ground": [scan["mean_ground"]],
                    f"{k}.noise": [scan["noise_mean"]],
                    f"{k}.channel": [scan["channel"]],
                    f"{k}.duration": [scan["end"] - scan["time"]],
                    f"{k}.complete": [complete],
                },
                live=live,
            )
        if self.echoes is not None:
            self._queue_echoes(scan)

    # ------------------------------------------------------------ status

    def radar_status(
        self,
        key: str,
        *,
        connected: bool | None = None,
        stale: bool | None = None,
        error: str | None = None,
        **extra: Any,
    ) -> None:
        """A transport's news about radar `key` (None: unchanged). Going away
        (disconnected or stale) finishes the radar's open scan as incomplete."""
        state = self.radars.get(key) or self.add_radar(key)
        gone = (connected is False and state.connected is not False) or (
            stale is True and not state.stale
        )
        if connected is not None:
            state.connected = connected
        if stale is not None:
            state.stale = stale
        if gone:
            self.flush(key, live=True)
        update: dict[str, Any] = dict(extra)
        if connected is not None:
            update["connected"] = connected
        if stale is not None:
            update["stale"] = stale
        self.node.source(key, error=error, last_sample=state.last_time, **update)

    def _arm_watchdog(self, state: RadarState) -> None:
        if self.stale_after is None or not state.live:
            return
        if state.watchdog is not None and state.watchdog.active():
            state.watchdog.reset(self.stale_after)
        else:
            state.watchdog = self.node.reactor.callLater(
                self.stale_after, self._went_quiet, state.key
            )

    def _went_quiet(self, key: str) -> None:
        self.radars[key].watchdog = None
        self.radar_status(key, stale=True, error=f"nothing received for {self.stale_after:g} s")

    # ------------------------------------------------------------ echo store

    def _queue_echoes(self, scan: dict[str, Any]) -> None:
        self._echo_queue.append(scan)
        if len(self._echo_queue) > MAX_ECHO_QUEUE:  # SQLite failing for long: bound the memory
            drop = len(self._echo_queue) - MAX_ECHO_QUEUE
            del self._echo_queue[:drop]
            self.node.count("echo_rows_dropped", drop)
        self._write_echoes()

    def _write_echoes(self) -> None:
        """One batch in flight at a time; scans arriving meanwhile form the next."""
        if self._echo_busy or self.echoes is None:
            return
        if not self._echo_queue:
            waiting, self._echo_idle = self._echo_idle, []
            for d in waiting:
                d.callback(None)
            return
        if self._echo_retry is not None and self._echo_retry.active():
            return
        batch, self._echo_queue = self._echo_queue, []
        self._echo_busy = True
        d = self.run_in_thread(self.echoes.add_scans, batch)
        d.addCallbacks(self._echoes_written, self._echoes_failed, errbackArgs=(batch,))

    def _echoes_written(self, rows: int) -> None:
        self._echo_busy = False
        self.node.count("echo_rows_written", rows)
        self._write_echoes()

    def _echoes_failed(self, failure: Any, batch: list[dict[str, Any]]) -> None:
        self._echo_busy = False
        self._echo_queue[:0] = batch  # kept, in order, for the next attempt
        self.node.count("echo_db_errors")
        self.node.last_error = f"echo database: {failure.getErrorMessage()}"
        self.log.error("echo database write failed: {e}; retrying", e=failure.getErrorMessage())
        self._echo_retry = self.node.reactor.callLater(ECHO_RETRY, self._retry_echoes)

    def _retry_echoes(self) -> None:
        self._echo_retry = None
        self._write_echoes()

    def drain(self) -> defer.Deferred:
        """Fires once every queued scan is in SQLite (or at once without an EchoStore)."""
        if self.echoes is None or (not self._echo_queue and not self._echo_busy):
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._echo_idle.append(d)
        self._write_echoes()
        return d

    async def purge(self) -> int:
        """Delete scans older than the retention now; returns how many went."""
        if self.echoes is None:
            return 0
        now = self.node.clock()
        gone = await self.run_in_thread(self.echoes.purge, now)
        self._last_purge = now
        if gone:
            self.node.count("echo_rows_purged", gone)
        return gone

    async def adopt_known_radars(self) -> list[str]:
        """Declare the fields of radars the EchoStore knows but this node was
        not configured with (history loaded by `obsmesh replay`)."""
        if self.echoes is None:
            return []
        codes = await self.run_in_thread(self.echoes.codes)
        new = [c for c in codes if isinstance(c, str) and KEY.match(c) and c not in self.radars]
        for code in new:
            self.add_radar(code, live=False)
        return new

    async def _maintain_once(self) -> None:
        now = self.node.clock()
        if self._last_purge is None or now - self._last_purge >= self.purge_interval:
            await self.purge()
        await self.adopt_known_radars()

    def _maintenance(self) -> defer.Deferred:
        d = defer.ensureDeferred(self._maintain_once())

        def failed(f: Any) -> None:  # a bad disk must not stop the schedule
            self.node.count("echo_db_errors")
            self.node.last_error = f"echo database: {f.getErrorMessage()}"
            self.log.failure("echo database maintenance failed", failure=f)

        d.addErrback(failed)
        self._maintaining = d
        return d

    async def get_echoes(
        self, start: Any = -86400.0, end: Any = 0.0, code: Any = None
    ) -> list[dict]:
        """Per-scan echo counts with start time in [start, end), oldest first,
        of one radar code or all (the old server's `GET /echoes`)."""
        t0, t1 = resolve_interval(start, end, self.node.clock)
        if code is not None and (not isinstance(code, str) or not KEY.match(code)):
            raise InvalidArgument("code must be a radar code such as 'sas', or null for all radars")
        if self.echoes is None:
            return []
        rows = await self.run_in_thread(self.echoes.query, t0, t1, code, MAX_ECHO_ROWS + 1)
        if len(rows) > MAX_ECHO_ROWS:
            raise TooManyPoints(
                f"more than {MAX_ECHO_ROWS} scans in the interval: ask for a shorter one"
            )
        return rows

    def register_rpcs(self) -> None:
        """`P.consumer.<node>.get_echoes(start, end, code=None)`."""
        self.node.register_rpc("get_echoes", self.get_echoes)

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Start the maintenance schedule (purge, radars known from history)."""
        self._maintain.start(now=True)

    async def stop(self) -> None:
        """Stop the schedule and watchdogs; wait for queued echo counts to be written."""
        self._maintain.stop()
        if self._maintaining is not None and not self._maintaining.called:
            await self._maintaining  # the caller may close the EchoStore next
        for state in self.radars.values():
            if state.watchdog is not None and state.watchdog.active():
                state.watchdog.cancel()
            state.watchdog = None
        if self._echo_retry is not None and self._echo_retry.active():
            self._echo_retry.cancel()
            self._echo_retry = None
        if self.echoes is not None and (self._echo_queue or self._echo_busy):
            d = self.drain()
            d.addTimeout(STOP_TIMEOUT, self.node.reactor)
            try:
                await d
            except defer.TimeoutError:
                self.log.error(
                    "{n} scans not written to the echo database at stop", n=len(self._echo_queue)
                )

    def status(self) -> dict[str, Any]:
        """Per-radar pipeline figures (get_status adds these)."""
        return {
            "radars": {
                k: {
                    "records": s.records,
                    "beams": s.beams,
                    "scans": s.scan_count,
                    "bad_records": s.bad_records,
                    "last_time": s.last_time,
                    "open_scans": len(s.scans.open_keys()),
                    "live": s.live,
                }
                for k, s in self.radars.items()
            },
            "echo_queue": len(self._echo_queue),
            "echo_retention_days": self.echoes.retention if self.echoes else None,
            "last_purge": self._last_purge,
        }
