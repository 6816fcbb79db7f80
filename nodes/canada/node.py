"""The `canada` node: Canadian SuperDARN radars over ZeroMQ.

It subscribes to the aggregated feed (`addr`, the old server's `CANADA_ADDR`)
and/or to Borealis sites' own PUB sockets (`borealis`), decodes whichever of
the three envelopes arrives (nodes/canada/envelopes.py) and hands every FITACF
record to the `RadarPipeline` of nodes.radar (superdarn's too), unchanged: the
same beam and scan products on `P.consumer.<name>.radar.<code>.beam|scan`, the same history and
echo counts, under this node's own name.

get_status adds, besides the pipeline's per-radar figures: each socket's state
(`feeds`), per site the wall-clock time of its last message and its counts by
envelope (`sites`), messages by envelope, ignored Borealis topics, unknown
envelopes and decode errors by reason (`envelopes`, `decode_errors`).

Settings: section `[canada]` of the TOML file, `OBSMESH_CANADA_<KEY>`, or the
command line; see `Settings` in kind.py and nodes/canada/README.md.
"""

from __future__ import annotations

import collections
import os
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import zmq

from nodes.base import DataNode
from nodes.radar import radars
from nodes.radar.echoes import EchoStore
from nodes.radar.pipeline import KEY, RadarPipeline
from obsmesh import config

from . import envelopes
from .feed import RECEIVING, SILENT, ZmqFeed
from .kind import BOREALIS_PORT, Settings

DEFAULTS: dict[str, Any] = Settings.defaults()

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9._-]{1,253})$")


@dataclass(frozen=True)
class FeedSpec:
    """One socket to subscribe: `name` in get_status, `code` the radar a
    Borealis site's socket carries (None for the aggregator)."""

    name: str
    endpoint: str
    code: str | None = None


@dataclass(slots=True)
class SiteStats:
    """What arrived for one radar code (get_status `sites`)."""

    messages: int = 0
    records: int = 0
    decode_errors: int = 0
    last_message: float | None = None  # wall clock of this node
    feed: str | None = None  # the socket its last message came through
    connected: bool = False
    envelopes: collections.Counter = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "records": self.records,
            "decode_errors": self.decode_errors,
            "last_message": self.last_message,
            "feed": self.feed,
            "receiving": self.connected,
            "envelopes": dict(self.envelopes),
        }


def tcp_endpoint(addr: str, default_port: int | None = None) -> str:
    """`host:port` (or `tcp://host:port`, `[v6]:port`) as a ZeroMQ endpoint;
    ValueError if it is not one."""
    text = addr.strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:  # no port (or only a bare IPv6 address)
        host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError(f"address {addr!r} has no port: give host:port")
        port = str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {addr!r}: bad port {port!r}")
    if not _HOST.match(host):
        raise ValueError(f"address {addr!r}: bad host {host!r}")
    return f"tcp://{host}:{int(port)}"


def feed_specs(options: dict[str, Any]) -> list[FeedSpec]:
    """The sockets the settings ask for; ValueError on a malformed entry."""
    specs: list[FeedSpec] = []
    if options["addr"]:
        specs.append(FeedSpec("aggregator", tcp_endpoint(options["addr"])))
    seen: set[str] = set()
    for entry in options["borealis"]:
        code, sep, addr = str(entry).partition("=")
        code = code.strip().lower()
        if not sep or not KEY.match(code) or "." in code:
            raise ValueError(
                f"borealis entry {entry!r}: write code=host[:port], e.g. sas=10.0.0.5:9696"
            )
        if code in seen:
            raise ValueError(f"borealis site {code!r} given twice")
        seen.add(code)
        specs.append(FeedSpec(code, tcp_endpoint(addr, BOREALIS_PORT), code))
    return specs


class CanadaNode(DataNode):
    kind = "canada"
    description = "Canadian SuperDARN radars over ZeroMQ: realtime beams, scans and echo counts"
    plots = ("*.velocity", "*.power", "*.noise")

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        options: dict[str, Any],
        specs: list[FeedSpec],
        *,
        echoes: EchoStore | None = None,
        **kw: Any,
    ) -> None:
        # Settings checked before the base makes a store (a Redis one connects).
        Settings.check(options)
        allowed = {str(c).strip().lower() for c in options["sites"] if str(c).strip()}
        bad = [c for c in allowed if not KEY.match(c) or "." in c]
        if bad:
            raise ValueError(f"sites: bad radar code(s) {', '.join(sorted(bad))}")
        super().__init__(name, settings, **kw)
        self.options = options
        self.specs = list(specs)
        self.silence = float(options["silence"])
        stale_after = float(options["stale_after"])
        purge_interval = float(options["purge_interval"])
        self.batch_seconds = float(options["batch_ms"]) / 1000.0
        self.max_bytes = int(options["max_decompressed"])
        self.max_records = int(options["max_records"])
        self.max_sites = int(options["max_sites"])
        self.allowed = allowed
        self.echo_store = echoes
        # The feed has no per-radar connection, so the pipeline watches each
        # radar's silence itself (stale_after).
        self.pipeline = RadarPipeline(
            self, echoes, purge_interval=purge_interval, stale_after=stale_after
        )
        self.pipeline.register_rpcs()
        self.sites: dict[str, SiteStats] = {}
        self.envelope_counts: collections.Counter[str] = collections.Counter()
        self.ignored: collections.Counter[str] = collections.Counter()
        self.unknown = 0
        self.last_unknown: str | None = None
        self.errors_by_reason: collections.Counter[str] = collections.Counter()
        self.errors_by_envelope: collections.Counter[str] = collections.Counter()
        self.last_decode_error: str | None = None
        self.context: zmq.Context | None = None
        self.feeds: dict[str, ZmqFeed] = {}
        for code in sorted({s.code for s in self.specs if s.code} | self.allowed):
            self._site(code)
        if not self.specs:
            self.log.warn(
                "{name}: no ZeroMQ feed configured (addr, borealis); serving history only",
                name=name,
            )

    def info(self) -> dict[str, Any]:
        return {**super().info(), "feeds": {s.name: s.endpoint for s in self.specs}}

    # ------------------------------------------------------------ running

    async def start(self) -> None:
        self.pipeline.start()
        self.context = zmq.Context()
        # The per-turn budget is the node's, shared by its feeds: with all of
        # them flooding, one reactor turn still ends after about batch_ms.
        share = self.batch_seconds / max(1, len(self.specs))
        for spec in self.specs:
            feed = ZmqFeed(
                spec.name,
                spec.endpoint,
                self._on_message,
                self._on_state,
                reactor=self.reactor,
                context=self.context,
                silence=self.silence,
                max_frame=int(self.options["max_frame"]),
                rcvhwm=int(self.options["rcvhwm"]),
                batch_messages=int(self.options["batch_messages"]),
                batch_seconds=share,
                code=spec.code,
            )
            self.feeds[spec.name] = feed
            feed.start()

    async def stop(self) -> None:
        for feed in self.feeds.values():
            feed.stop()
        if self.context is not None:
            self.context.term()  # every socket is closed with linger 0: returns at once
            self.context = None
        await self.pipeline.stop()
        # closed on the thread every statement ran on (obsmesh.sqlite)
        await self.pipeline.db.stop(self.echo_store.close if self.echo_store is not None else None)

    # ------------------------------------------------------------ messages

    def _on_message(self, feed: ZmqFeed, frames: list[bytes]) -> None:
        try:
            msg = envelopes.decode_message(frames, self.max_bytes, self.max_records)
        except envelopes.UnknownEnvelope as exc:
            self.unknown += 1
            self.last_unknown = f"{feed.name}: {exc}"
            self.counters["unknown_envelopes"] += 1
            return
        except envelopes.EnvelopeError as exc:
            self._decode_error(feed, exc, exc.site or feed.code)
            return
        if type(msg) is envelopes.Ignored:
            self.ignored[msg.topic] += 1
            self.counters["ignored_messages"] += 1
            return
        code = msg.site or feed.code or self._code_of(msg.records[0])
        stats = self._site(code) if code is not None else None
        if stats is None:
            why = "no radar code" if code is None else f"radar {code!r} not accepted"
            self._decode_error(
                feed,
                envelopes.EnvelopeError(
                    f"{why} (sites setting, max_sites, or an unknown station id)",
                    msg.envelope,
                    "site",
                ),
                None,
            )
            return
        self.envelope_counts[msg.envelope] += 1
        stats.messages += 1
        stats.records += len(msg.records)
        stats.envelopes[msg.envelope] += 1
        stats.last_message = self.clock()
        stats.feed = feed.name
        if not stats.connected:
            stats.connected = True
            self.pipeline.radar_status(code, connected=True, feed=feed.name)
        for record in msg.records:
            self.pipeline.ingest(code, record)

    def _code_of(self, record: dict[str, Any]) -> str | None:
        """Which radar a record without a named site is from: its station id."""
        stid = record.get("stid")
        row = radars.radar_by_stid(stid) if isinstance(stid, int) else None
        return row.code if row is not None else None

    def _site(self, code: str) -> SiteStats | None:
        stats = self.sites.get(code)
        if stats is None:
            if (self.allowed and code not in self.allowed) or len(self.sites) >= self.max_sites:
                return None
            stats = self.sites[code] = SiteStats()
            self.pipeline.add_radar(code)
        return stats

    def _decode_error(self, feed: ZmqFeed, exc: envelopes.EnvelopeError, code: str | None) -> None:
        self.errors_by_reason[exc.reason] += 1
        self.errors_by_envelope[exc.envelope or "unknown"] += 1
        self.counters["decode_errors"] += 1
        where = feed.name if code is None else f"{feed.name}/{code}"
        self.last_decode_error = f"{where}: {exc}"
        stats = self.sites.get(code) if code is not None else None
        if stats is not None:
            stats.decode_errors += 1

    def _on_state(self, feed: ZmqFeed) -> None:
        receiving = feed.state == RECEIVING
        self.source(
            f"feed:{feed.name}",
            connected=receiving,
            state=feed.state,
            endpoint=feed.endpoint,
            recreated=feed.recreated,
            error=None if receiving else feed.last_error,
        )
        if feed.state == SILENT:
            # Every radar last heard through this socket is gone with it: its
            # open scan is finished as incomplete (the pipeline does that).
            for code, stats in self.sites.items():
                if stats.connected and stats.feed == feed.name:
                    stats.connected = False
                    self.pipeline.radar_status(
                        code,
                        connected=False,
                        error=f"feed {feed.name} silent for {feed.silence:g} s",
                    )

    def get_status(self) -> dict:
        status = super().get_status()
        status["feeds"] = {name: feed.status() for name, feed in self.feeds.items()}
        status["sites"] = {code: s.as_dict() for code, s in self.sites.items()}
        status["envelopes"] = {
            **{e: self.envelope_counts[e] for e in envelopes.ENVELOPES},
            "ignored": dict(self.ignored),
            "unknown": self.unknown,
            "last_unknown": self.last_unknown,
        }
        status["decode_errors"] = {
            "total": sum(self.errors_by_reason.values()),
            "by_reason": dict(self.errors_by_reason),
            "by_envelope": dict(self.errors_by_envelope),
            "last": self.last_decode_error,
        }
        status["pipeline"] = self.pipeline.status()
        return status


# ---------------------------------------------------------------- building


def echo_db_path(options: dict[str, Any], settings: dict[str, Any], name: str) -> str:
    path = options.get("echo_db") or os.path.join(
        settings["state_dir"], "canada", f"{name}-echoes.sqlite"
    )
    return os.path.abspath(path)


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> CanadaNode:
    from nodes.radar.echoes import open_echo_store

    try:
        specs = feed_specs(options)
        echoes = open_echo_store(
            echo_db_path(options, mesh, name), float(options["retention_days"])
        )
        return CanadaNode(name, mesh, options, specs, echoes=echoes)
    except (ValueError, OSError, sqlite3.Error) as exc:
        raise config.ConfigError(f"canada node: {exc}") from None
