"""The `superdarn` node: SuperDARN radars' realtime feeds (RST Connex over TCP).

One `RadarClient` per configured radar (or radar channel) decodes the feed and
hands each record to the node's `RadarPipeline`, which publishes the beam and
scan products on `P.consumer.<name>.radar.<key>.beam|scan`, keeps per-beam and
per-scan history on the timelines `<key>.beam` and `<key>.scan`, and the
per-scan echo counts in SQLite (`get_echoes`). A radar's connection, loss and
staleness are status changes (published on `.status`, kept as events for
annotations); `get_status` shows each client's state, attempts and framing
counters.

Settings (section `[superdarn]` of the TOML file, `OBSMESH_SUPERDARN_<KEY>`,
or the command line): see `Settings` in kind.py and nodes/superdarn/README.md.
"""

from __future__ import annotations

import json
import os
import sqlite3
from functools import partial
from typing import Any

from twisted.internet import defer

from nodes.base import DataNode
from nodes.radar.echoes import EchoStore, open_echo_store
from nodes.radar.pipeline import RadarPipeline
from nodes.radar.radars import (
    RadarConfigError,
    RadarEndpoint,
    load_radar_config,
    parse_radar_config,
)
from obsmesh import config

from .client import Backoff, RadarClient
from .kind import Settings

DEFAULTS: dict[str, Any] = Settings.defaults()


def load_radars(value: Any) -> list[RadarEndpoint]:
    """The radars setting: None/"" (none), a file path, inline JSON text, or an
    already parsed list/table (from the TOML file). RadarConfigError if bad."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text[0] in "[{":
            try:
                return parse_radar_config(json.loads(text))
            except json.JSONDecodeError as exc:
                raise RadarConfigError(f"inline radar config: {exc}") from None
        try:
            return load_radar_config(text)
        except OSError as exc:
            raise RadarConfigError(f"radar config file: {exc}") from None
    return parse_radar_config(value)


def echo_db_path(options: dict[str, Any], settings: dict[str, Any], name: str) -> str:
    path = options.get("echo_db") or os.path.join(
        settings["state_dir"], "superdarn", f"{name}-echoes.sqlite"
    )
    return os.path.abspath(path)


class SuperdarnNode(DataNode):
    kind = "superdarn"
    description = "SuperDARN radars: realtime beams, scans and echo counts (RST realtime feeds)"
    plots = ("*.velocity", "*.power", "*.noise")

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        options: dict[str, Any],
        endpoints: list[RadarEndpoint],
        *,
        echoes: EchoStore | None = None,
        timelines: bool = True,
        **kw: Any,
    ) -> None:
        Settings.check(options)  # before the base makes a store (a Redis one connects)
        super().__init__(name, settings, **kw)
        self.options = options
        self.endpoints = list(endpoints)
        self.clients: dict[str, RadarClient] = {}
        self.backoff = Backoff(
            initial=float(options["backoff_initial"]),
            maximum=max(float(options["backoff_max"]), float(options["backoff_initial"])),
        )
        self.echo_store = echoes
        self.pipeline = RadarPipeline(
            self, echoes, purge_interval=float(options["purge_interval"]), timelines=timelines
        )
        self.pipeline.register_rpcs()
        for ep in self.endpoints:
            self.pipeline.add_radar(ep.key)
        if not self.endpoints:
            self.log.warn("{name}: no radars configured; serving history only", name=name)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "radars": [ep.key for ep in self.endpoints]}

    async def start(self) -> None:
        self.pipeline.start()
        silence = float(self.options["reconnect_after_silence"]) or None
        for ep in self.endpoints:
            client = RadarClient(
                ep.host,
                ep.port,
                partial(self.pipeline.ingest, ep.key),
                partial(self._client_status, ep.key),
                name=ep.key,
                reactor=self.reactor,
                backoff=self.backoff,
                stale_after=float(self.options["stale_after"]),
                reconnect_after_silence=silence,
                max_payload=int(self.options["max_payload"]),
            )
            self.clients[ep.key] = client
            client.start()

    async def stop(self) -> None:
        await defer.gatherResults([c.stop() for c in self.clients.values()], consumeErrors=True)
        await self.pipeline.stop()
        # closed on the thread every statement ran on (obsmesh.sqlite)
        await self.pipeline.db.stop(self.echo_store.close if self.echo_store is not None else None)

    def _client_status(self, key: str, status: dict[str, Any]) -> None:
        connected = bool(status["connected"])
        self.pipeline.radar_status(
            key,
            connected=connected,
            stale=bool(status["stale"]),
            error=None if connected else status["error"],
            state=status["state"],
            host=status["host"],
            port=status["port"],
            attempts=status["attempts"],
            next_attempt=status["next_attempt"],
        )

    def get_status(self) -> dict:
        status = super().get_status()
        status["radars"] = {key: c.status() for key, c in self.clients.items()}
        status["pipeline"] = self.pipeline.status()
        return status


def build(name: str, mesh: dict[str, Any], options: dict[str, Any]) -> SuperdarnNode:
    try:
        endpoints = load_radars(options["radars"])
        echoes = open_echo_store(
            echo_db_path(options, mesh, name), float(options["retention_days"])
        )
        return SuperdarnNode(name, mesh, options, endpoints, echoes=echoes)
    except (RadarConfigError, ValueError, OSError, sqlite3.Error) as exc:
        raise config.ConfigError(f"superdarn node: {exc}") from None
