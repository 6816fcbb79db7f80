"""The `co2` node: the units' HTTP endpoint (Co2Server) inside a data node.

Each unit appears as two timelines (see fields.py): `<unit>` with its readings
rows and `<unit>.ping` with its alive pings; the fields are declared when a
unit first shows up. Rows and pings go to the store and, batched by the base,
live on `P.consumer.<name>.live`. Rows dated 1970 never reach the node (the
server counts them: `co2.counters.rows_clock_error` in get_status).

A unit's clock is outside input (timecheck.py): a row dated implausibly (too
far ahead of the server's clock, or before `unit_epoch`) stays in the uploaded
file, is flagged (the unit's source, an event at most hourly, a warning) and
counted, and never holds back the correct rows after it. Rows out of order by
up to `reorder_tolerance` are merged in time order.

At start the node gets its history back from the data root: the readings
rows delivered by earlier runs (files written within the mesh's `max_age`)
and the pings of that period, stored without live publication. The times
stored within the reorder window are read back from the store first, so rows
delivered again after a restart, or already kept by a Redis store that
outlived the node, are skipped and counted, never stored twice.

A unit that sends nothing for `silence` seconds is marked `connected=False,
stale=True` (the base publishes the change on `.status` and keeps it as an
event for get_events and Grafana annotations); its next request marks it
connected again. Conflicting uploads (409) are events too.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from nodes.base import DataNode
from nodes.co2 import fields as F
from nodes.co2.paths import compile_unit_pattern
from nodes.co2.pings import Ping
from nodes.co2.readings import Reading
from nodes.co2.server import Co2Config, Co2Server
from nodes.co2.timecheck import Admission, Admitted, TimeRules
from nodes.co2.tokens import TokenFileError
from obsmesh import config
from obsmesh.periodic import Periodic

MAX_HISTORY_PINGS = 200_000  # newest pings reloaded at start (a week of 5 demo units at 10 s)
CONFLICT_EVENT_EVERY = 3600.0  # seconds between events about conflicts on one file
CLOCK_EVENT_EVERY = 3600.0  # seconds between events (and warnings) about one unit's clock


class Co2Node(DataNode):
    kind = "co2"
    history_from_own_files = True  # rebuilt from its files at start
    description = "CO2 observation units: readings and alive pings uploaded over HTTP"
    plots = ("*.co2_mean", "*.temperature")

    def __init__(
        self, name: str, settings: dict[str, Any], options: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(name, settings, **kw)
        self.options = options
        self.root = Path(options["data_root"])
        self.silence = float(options["silence"])
        self.rules = TimeRules(
            future_tolerance=float(options["future_tolerance"]),
            reorder_tolerance=float(options["reorder_tolerance"]),
            epoch=float(options["unit_epoch"]),
        )
        self._admission: dict[str, Admission] = {}  # timeline -> what it has stored
        self._clock_flagged: dict[str, float] = {}  # unit -> last event about its clock
        self._heard: dict[str, float] = {}  # unit -> last word from it (silence reference)
        self._conflicts: dict[tuple[str, str], float] = {}  # (unit, path) -> last event
        self.port: Any = None
        self.server = Co2Server(
            Co2Config(
                root=self.root,
                unit_pattern=options["unit_pattern"],
                max_body_bytes=int(options["max_body_bytes"]),
                token_header=options["token_header"] or None,
                token_query=options["token_query"] or None,
                compat_networks=tuple(options["compat_networks"]),
                max_connections=int(options["max_connections"]),
                max_connections_per_client=int(options["max_connections_per_client"]),
                header_timeout=float(options["header_timeout"]),
                body_timeout=float(options["body_timeout"]),
            ),
            on_rows=self._on_rows,
            on_ping=self._on_ping,
            reactor=self.reactor,
            on_unit=self._on_unit,
            on_conflict=self._on_conflict,
        )
        self._watch = Periodic(
            self.reactor, max(0.05, min(self.silence / 4, 10.0)), self.check_silence
        )

    # -- fields ------------------------------------------------------------------

    def _declare(self, unit_id: str, timeline: str, names: dict[str, tuple[str, str]]) -> None:
        if F.field(unit_id, next(iter(names))) in self.fields:
            return
        for name, (units, description) in names.items():
            self.declare(
                F.field(unit_id, name),
                timeline,
                units=units,
                description=f"{unit_id}: {description}",
                precision=F.PRECISION.get(name),
            )

    # -- what the endpoint hands over (reactor thread) ----------------------------

    def _on_unit(self, unit_id: str) -> None:
        """Any authenticated request: the unit is alive."""
        now = self.clock()
        self._heard[unit_id] = now
        src = self.sources.get(unit_id)
        if src is None:
            self.event(
                now,
                f"{unit_id}: first contact",
                "a unit this node had not seen",
                ["co2", "unit", unit_id],
            )
        if src is None or not src.get("connected") or src.get("stale"):
            self.source(unit_id, connected=True, stale=False, error=None, last_heard=now)
        else:
            self.source(unit_id, last_heard=now)

    def _on_rows(self, unit_id: str, rows: list[Reading]) -> None:
        self._store_rows(unit_id, rows, live=True)

    def _history_rows(self, unit_id: str, rows: list[Reading]) -> None:
        self._store_rows(unit_id, rows, live=False)

    def _store_rows(self, unit_id: str, rows: list[Reading], live: bool) -> None:
        self._declare(unit_id, F.readings_timeline(unit_id), F.READINGS)
        if any(r.extra for r in rows):
            self._declare(unit_id, F.readings_timeline(unit_id), F.EXTRA)
        timeline = F.readings_timeline(unit_id)
        kept = self._keep(
            timeline, [r.t for r in rows], "rows" if live else "history_rows", unit_id, live
        )
        if not kept:
            return
        rows = rows if len(kept) == len(rows) else [rows[i] for i in kept]
        t, cols = F.readings_columns(unit_id, rows)
        self.append(timeline, t, cols, live=live)
        self.source(unit_id, last_sample=max(r.t for r in rows), nickname=rows[-1].nickname)

    def _on_ping(self, unit_id: str, ping: Ping) -> None:
        self._store_pings(unit_id, [ping], live=True)

    def _store_pings(self, unit_id: str, pings: list[Ping], live: bool) -> None:
        timeline = F.ping_timeline(unit_id)
        self._declare(unit_id, timeline, F.PINGS)
        kept = self._keep(
            timeline, [p.t for p in pings], "pings" if live else "history_pings", unit_id, live
        )
        if not kept:
            return
        pings = pings if len(kept) == len(pings) else [pings[i] for i in kept]
        t, cols = F.ping_columns(unit_id, pings)
        self.append(timeline, t, cols, live=live)
        last = pings[-1]
        self.source(unit_id, last_ping=last.t, site_code=last.site_code, rssi_dbm=last.rssi_dbm)

    def _admission_of(self, timeline: str) -> Admission:
        adm = self._admission.get(timeline)
        if adm is None:
            adm = self._admission[timeline] = Admission(self.rules)
        return adm

    def _keep(
        self, timeline: str, times: list[float], counter: str, unit_id: str, live: bool
    ) -> list[int]:
        """Indices of the samples to store; the rest counted (implausible ones flagged)."""
        verdict = self._admission_of(timeline).admit(times, self.clock())
        if verdict.index:
            self.count(counter, len(verdict.index))
        if verdict.duplicate:  # a replay: harmless, and frequent after a restart
            self.count(f"{counter}_duplicate", verdict.duplicate)
            self.log.debug(
                "{unit}: {n} samples of {tl} stored already, not stored again",
                unit=unit_id,
                n=verdict.duplicate,
                tl=timeline,
            )
        if verdict.too_late:
            self.count(f"{counter}_too_late", verdict.too_late)
            self.log.debug(
                "{unit}: {n} samples of {tl} more than {tol:g} s older than the newest, not stored",
                unit=unit_id,
                n=verdict.too_late,
                tl=timeline,
                tol=self.rules.reorder_tolerance,
            )
        if verdict.implausible:
            self.count(f"{counter}_implausible_time", len(verdict.implausible))
            self._flag_clock(unit_id, timeline, times, verdict)
        return verdict.index

    def _flag_clock(
        self, unit_id: str, timeline: str, times: list[float], verdict: Admitted
    ) -> None:
        """Samples dated implausibly: kept in the uploaded file, flagged on the
        unit's source, an event and a warning at most once an hour per unit."""
        now = self.clock()
        worst = times[verdict.ahead[-1]] if verdict.ahead else times[verdict.before_epoch[0]]
        src = self.sources.get(unit_id, {})
        total = int(src.get("implausible_times", 0)) + len(verdict.implausible)
        what = (
            f"{len(verdict.ahead)} dated up to {(worst - now) / 3600:.1f} h ahead of the server's clock"
            if verdict.ahead
            else f"{len(verdict.before_epoch)} dated before the unit epoch"
        )
        self.source(
            unit_id,
            implausible_times=total,
            last_implausible={"t": worst, "seen": now, "timeline": timeline},
        )
        if now - self._clock_flagged.get(unit_id, -math.inf) < CLOCK_EVENT_EVERY:
            self.log.debug(
                "{unit}: {what} ({tl}), not stored", unit=unit_id, what=what, tl=timeline
            )
            return
        self._clock_flagged[unit_id] = now
        text = (
            f"{what} on {timeline}: kept in the uploaded file, not stored; the samples after "
            f"them are stored as usual (more are counted in implausible_times, one event an hour)"
        )
        self.log.warn("{unit}: {text}", unit=unit_id, text=text)
        self.event(now, f"{unit_id}: implausible sample times", text, ["co2", "clock", unit_id])

    def _on_conflict(self, unit_id: str, path: str, offset: int, size: int) -> None:
        now = self.clock()
        key = (unit_id, path)
        self.source(unit_id, error=f"upload conflict on {path} at offset {offset}")
        if now - self._conflicts.get(key, -math.inf) < CONFLICT_EVENT_EVERY:
            return
        self._conflicts[key] = now
        self.event(
            now,
            f"{unit_id}: upload conflict on {path}",
            f"bytes sent at offset {offset} differ from the {size} bytes stored; the stored file is kept "
            f"as it is (more conflicts on this file are counted in co2.counters.push_conflict, "
            f"one event an hour)",
            ["co2", "conflict", unit_id],
        )

    # -- silence ------------------------------------------------------------------

    def check_silence(self) -> None:
        now = self.clock()
        for unit_id, heard in self._heard.items():
            quiet = now - heard
            if quiet >= self.silence and not self.sources.get(unit_id, {}).get("stale"):
                self.source(
                    unit_id,
                    connected=False,
                    stale=True,
                    error=f"silent for {quiet:.0f} s (limit {self.silence:g} s)",
                )

    def _track(self, unit_id: str, heard: float) -> None:
        """A unit expected to speak, from the data root (no event: not news)."""
        if unit_id not in self.sources:
            self.source(unit_id, connected=False, stale=False, last_heard=None)
        self._heard.setdefault(unit_id, heard)

    def _units_on_disk(self) -> set[str]:
        pattern = compile_unit_pattern(self.options["unit_pattern"])
        try:
            names = {n for n in os.listdir(self.root / "units") if pattern.fullmatch(n)}
        except FileNotFoundError:
            names = set()
        tokens = self.server.tokens.units()
        names |= {u for u, e in tokens.items() if e.token_hash}
        return {u for u in names if u not in tokens or tokens[u].token_hash}

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock()
        since = now - float(self.settings["max_age"])
        for unit_id in sorted(self._units_on_disk()):
            self._track(unit_id, now)
        for unit_id in [u for u in self.sources if u != "endpoint"]:
            await self._seed(unit_id)
        await self.server.start(history=self._history_rows, history_since=since)
        await self._load_pings(since, now)
        if self.server.networks:
            status = self.server.status()["compat_mode"]
            self.event(
                now, "CO2 endpoint in compatibility mode", status["warning"], ["co2", "compat_mode"]
            )
        host, port = self.options["host"], int(self.options["port"])
        self.port = self.server.listen(port, host)
        bound = self.port.getHost().port
        self.source(
            "endpoint", connected=True, url=f"http://{host}:{bound}/", data_root=str(self.root)
        )
        self._watch.start(now=False)

    async def _seed(self, unit_id: str) -> None:
        """The times a unit has stored within the reorder window (a store that
        outlived the node keeps them), so that nothing is stored twice."""
        for timeline in (F.readings_timeline(unit_id), F.ping_timeline(unit_id)):
            if timeline in self._admission:
                continue
            span = await self.store.span(timeline)
            if span is not None:
                last = span[1]
                t, _ = await self.store.query(
                    timeline,
                    [],
                    last - self.rules.reorder_tolerance,
                    math.nextafter(last, math.inf),
                )
                self._admission_of(timeline).seed([float(x) for x in t])

    async def _load_pings(self, since: float, now: float) -> None:
        pings = await self.server.workers.in_db(self.server.pings.since, since, MAX_HISTORY_PINGS)
        by_unit: dict[str, list[Ping]] = defaultdict(list)
        for p in pings:
            by_unit[p.unit_id].append(p)
        for unit_id, group in by_unit.items():
            self._track(unit_id, now)
            await self._seed(unit_id)
            self._store_pings(unit_id, group, live=False)
            self._heard[unit_id] = group[-1].t  # silence counts from its last ping
            self.source(unit_id, last_heard=group[-1].t)

    async def stop(self) -> None:
        self._watch.stop()
        await self.server.stop()
        self.port = None

    # -- status ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {**super().info(), "endpoint": self.sources.get("endpoint", {}).get("url")}

    def get_status(self) -> dict:
        status = super().get_status()
        co2 = self.server.status()
        summary = self.server.ingest.summary() if self.server.ingest is not None else {}
        for unit_id, s in summary.items():  # this run's clock-error and malformed rows
            if unit_id in status["sources"]:
                status["sources"][unit_id].update(
                    clock_errors=s["clock_errors"], malformed_rows=s["malformed"]
                )
        co2["endpoint"] = self.sources.get("endpoint", {}).get("url")
        status["co2"] = co2
        if co2["compat_mode"]["enabled"]:
            status["warnings"] = [co2["compat_mode"]["warning"]]
        return status


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> Co2Node:
    try:
        return Co2Node(name, mesh, options)
    except (ValueError, re.error, TokenFileError, OSError) as exc:
        raise config.ConfigError(f"co2 node: {exc}") from exc
