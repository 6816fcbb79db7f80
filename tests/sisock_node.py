"""A data node written the way sisock writes them, for the tests: no obsmesh import.

The base class follows sisock's `sisock.base.DataNodeServer`: an autobahn
`ApplicationSession` that joins with WAMP-CRA as `WAMP_USER` (its secret
`WAMP_SECRET`), registers `consumer.<name>.get_fields` and `get_data` under
`BASE_URI`, then asks the hub to add it with `data_node.add(name,
description, session)`; it knows nothing of `hub.online` and comes back only
by rejoining. The node below serves a synthetic weather archive as sisock's
example does: `get_fields(start, end)`, `get_data(field, start, end,
min_stride=None)` answering plain lists, downsampling itself so successive
samples are at least `min_stride` apart, and an unknown field silently as an
empty list.

    python tests/sisock_node.py URL REALM NAME USER SECRET_FILE [--claims-arrays]

Like sisock's own nodes (which set these constants in sisock/base.py), it
runs with `ApplicationRunner(...).run(..., auto_reconnect=True)`.
"""

from __future__ import annotations

import math
import sys
import time

from autobahn import wamp
from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession
from twisted.internet.defer import inlineCallbacks

BASE_URI = "org.simonsobservatory"
WAMP_USER = "server"
WAMP_SECRET = ""
STEP = 10.0  # seconds between samples of the archive
SPAN = 6 * 3600.0  # seconds of archive, ending now


def uri(s: str) -> str:
    return f"{BASE_URI}.{s}"


def sisock_to_unix_time(t: float) -> float:
    return t if t > 0 else time.time() + t


class DataNodeServer(ApplicationSession):
    """sisock's data node base, behaviour for behaviour."""

    name: str = ""
    description: str = ""

    @inlineCallbacks
    def onJoin(self, details):
        self.log.info("Successfully joined WAMP.")
        proc = [
            (self.get_fields, uri("consumer." + self.name + ".get_fields")),
            (self.get_data, uri("consumer." + self.name + ".get_data")),
        ]
        for p in proc:
            try:
                yield self.register(p[0], p[1])
                self.log.info(f"Registered procedure {p[1]}.")
            except Exception as e:
                self.log.error(f"Could not register procedure: {e}.")
        try:
            res = yield self.call(
                uri("data_node.add"), self.name, self.description, details.session
            )
            if not res:
                self.log.warn("Request to add data node denied.")
            else:
                self.log.info(f'Data node registered as "{self.name}".')
        except Exception as e:
            self.log.error(f"Call error: {e}.")

    def onConnect(self):
        self.log.info("Client session connected.")
        self.join(self.config.realm, ["wampcra"], WAMP_USER)

    def onChallenge(self, challenge):
        if challenge.method == "wampcra":
            return wamp.auth.compute_wcs(WAMP_SECRET, challenge.extra["challenge"])
        raise Exception(f"Invalid authmethod {challenge.method}")


def archive_times(start: float, end: float) -> list[float]:
    """The archive's sample times in [start, end): every STEP s over the last SPAN s."""
    now = time.time()
    first = max(start, now - SPAN)
    k = math.ceil(first / STEP)
    out = []
    while k * STEP < min(end, now):
        out.append(k * STEP)
        k += 1
    return out


def temperature(t: float) -> float:
    return round(-5.0 + 3.0 * math.sin(t / 3600.0), 6)


def pressure(t: float) -> float:
    return round(1000.0 + 0.001 * (t % 1000.0), 6)


class Weather(DataNodeServer):
    name = "sisock_weather"
    description = "A sisock-style weather archive."
    series = {"temperature": (temperature, "C"), "pressure": (pressure, "hPa")}

    def get_fields(self, start, end):
        field, timeline = {}, {}
        if archive_times(sisock_to_unix_time(start), sisock_to_unix_time(end)):
            for name, (_, units) in self.series.items():
                field[name] = {
                    "description": f"{name} at the station",
                    "timeline": "weather",
                    "type": "number",
                    "units": units,
                }
            timeline["weather"] = {"interval": STEP, "field": list(self.series)}
        return field, timeline

    def get_data(self, field, start, end, min_stride=None):
        start, end = sisock_to_unix_time(start), sisock_to_unix_time(end)
        times = archive_times(start, end)
        if min_stride:  # keep samples at least min_stride apart
            kept, last = [], -math.inf
            for t in times:
                if t - last >= min_stride:
                    kept.append(t)
                    last = t
            times = kept
        ret = {"data": {}, "timeline": {}}
        for f in field:
            ret["data"][f] = []
            if f not in self.series:
                continue  # as sisock's example: an unknown field silently gives nothing
            fn = self.series[f][0]
            ret["data"][f] = [fn(t) for t in times]
            ret["timeline"]["weather"] = {
                "t": times,
                "finalized_until": times[-1] if times else None,
            }
        return ret


class ClaimsArrays(Weather):
    """Not sisock's: a node whose hub entry says it answers `encoding="array"`
    although its get_data knows no such argument (what a client must survive)."""

    @inlineCallbacks
    def onJoin(self, details):
        yield super().onJoin(details)
        yield self.call(
            uri("data_node.add"),
            self.name,
            self.description,
            details.session,
            encodings=["list", "array"],
        )


if __name__ == "__main__":
    url, realm, name, WAMP_USER, secret_file = sys.argv[1:6]
    with open(secret_file) as f:
        WAMP_SECRET = f.read().strip()
    kind = ClaimsArrays if sys.argv[6:] == ["--claims-arrays"] else Weather
    kind.name = name
    ApplicationRunner(url, realm).run(kind, auto_reconnect=True)
