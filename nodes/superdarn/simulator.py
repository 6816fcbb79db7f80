"""A simulated radar site: serves FITACF records over Connex framing on TCP,
like RST's fitacfserver (`obsmesh simulate radar`).

Records come from the synthesiser (16 beams, 3 s integrations, minute scans,
scan flags, soundings) or from a fitacf[.bz2] file played in a loop with the
original spacing between records. Every record is stamped with the time it is
sent, so the feed always looks live. `--speed N` runs N times faster. As the
real server, it accepts at most 16 clients and sends every client the same
stream from the moment it connects.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from nodes.radar import dmap, radars, synth
from nodes.radar.products import ProductError, radar_time
from nodes.radar.synth import stamp, synth_schedule

from .files import read_file_bytes
from .framing import frame

MAX_CLIENTS = 16
# Longest pause taken from a file's record spacing (files span gaps and days).
MAX_FILE_GAP = 60.0


def file_schedule(records: list[dict[str, Any]]) -> Iterator[tuple[float, dict[str, Any]]]:
    """(pause before sending, record) forever: pauses from the records' own
    times (clamped to 0..MAX_FILE_GAP), 3 s when looping back to the start or
    when a time is unreadable or goes backwards."""
    if not records:
        raise ValueError("no records to play")
    times: list[float | None] = []
    for record in records:
        try:
            times.append(radar_time(record))
        except ProductError:
            times.append(None)
    yield 0.0, records[0]
    while True:
        for i in range(1, len(records) + 1):
            i %= len(records)
            previous, when = times[i - 1], times[i]
            if i == 0 or when is None or previous is None or when < previous:
                pause = 3.0
            else:
                pause = min(when - previous, MAX_FILE_GAP)
            yield pause, records[i]


class _Client(Protocol):
    def connectionMade(self) -> None:
        if not self.factory.add(self):
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.remove(self)

    def dataReceived(self, data: bytes) -> None:
        pass  # clients only read


class RadarServer(Factory):
    """Broadcasts records from `schedule` to every connected client. Pauses are
    divided by `speed`. `clock` provides seconds() and callLater()."""

    protocol = _Client
    log = Logger()

    def __init__(
        self,
        schedule: Iterator[tuple[float, dict[str, Any]]],
        clock: Any,
        speed: float = 1.0,
        max_clients: int = MAX_CLIENTS,
        wall_time: Any = time.time,
    ) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        self.schedule = schedule
        self.clock = clock
        self.speed = speed
        self.max_clients = max_clients
        self.wall_time = wall_time
        self.clients: list[_Client] = []
        self.sent = 0  # records sent (to however many clients, maybe none)
        self.deliveries = 0  # records written to a client, summed over clients
        # Called with each record as sent (times rewritten) and the number of
        # clients it went to: tests and benchmarks count what left the site.
        self.on_sent: Any = None
        self._call: Any = None

    def add(self, client: _Client) -> bool:
        if len(self.clients) >= self.max_clients:
            return False
        self.clients.append(client)
        return True

    def remove(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.remove(client)

    def start(self) -> None:
        self._next()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _next(self) -> None:
        pause, record = next(self.schedule)
        self._call = self.clock.callLater(pause / self.speed, self._send, record)

    def _send(self, record: dict[str, Any]) -> None:
        stamped = stamp(record, self.wall_time())
        try:
            payload = dmap.encode_record(stamped)
        except dmap.DmapEncodeError as exc:
            self.log.warn("skipping a record that cannot be encoded: {e}", e=exc)
        else:
            message = frame(payload)
            clients = list(self.clients)
            for client in clients:
                client.transport.write(message)
            self.sent += 1
            self.deliveries += len(clients)
            if self.on_sent is not None:
                self.on_sent(stamped, len(clients))
        self._next()


def make_schedule(
    code: str,
    file: str | None = None,
    *,
    stid: int | None = None,
    seed: int = 0,
    channel: int = 0,
    xcf: bool = True,
    scan_sign: int = 1,
    start: float | None = None,
) -> Iterator[tuple[float, dict[str, Any]]]:
    if file:
        records = dmap.decode_records(read_file_bytes(file))
        return file_schedule(records)
    info = radars.radar(code)
    if stid is None:
        if info is None:
            raise ValueError(f"unknown radar code {code!r}: give --stid")
        stid = info.stid
    generator = synth.RadarSynth(
        stid,
        seed=seed,
        channel=channel,
        xcf=xcf,
        scan_sign=scan_sign,
        boresight=info.boresight if info else 0.0,
    )
    return synth_schedule(generator, time.time() if start is None else start)


def start_simulator(
    reactor: Any,
    port: int,
    schedule: Iterator[tuple[float, dict[str, Any]]],
    *,
    interface: str = "127.0.0.1",
    speed: float = 1.0,
) -> tuple[Any, RadarServer]:
    """Listen and start broadcasting; returns (listening port, server)."""
    server = RadarServer(schedule, reactor, speed=speed)
    listening = reactor.listenTCP(port, server, interface=interface)
    server.start()
    return listening, server


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--code", default="sas", help="radar code (default sas)")
    parser.add_argument("--port", type=int, default=1401, help="TCP port (default 1401)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--file", help="play this fitacf[.bz2] file instead of synthesising")
    parser.add_argument("--speed", type=float, default=1.0, help="run N times faster")
    parser.add_argument("--stid", type=int, help="station id (default: from the radar table)")
    parser.add_argument("--channel", type=int, default=0, help="channel number in the records")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic echoes")
    parser.add_argument("--no-xcf", action="store_true", help="synthesise without elevation data")
    parser.add_argument(
        "--scan-sign",
        type=int,
        choices=(1, -1),
        default=1,
        help="flag of a scan's first beam (some radars use -1)",
    )


def main(args: argparse.Namespace) -> int:
    import sys

    from twisted.internet import reactor

    from obsmesh import logs

    if not args.speed > 0 or not math.isfinite(args.speed):
        print("--speed must be a positive number", file=sys.stderr)
        return 2
    try:
        schedule = make_schedule(
            args.code,
            args.file,
            stid=args.stid,
            seed=args.seed,
            channel=args.channel,
            xcf=not args.no_xcf,
            scan_sign=args.scan_sign,
        )
    except (OSError, ValueError) as exc:  # DmapError is a ValueError
        print(f"cannot start the radar simulator: {exc}", file=sys.stderr)
        return 2
    logs.begin()
    start_simulator(reactor, args.port, schedule, interface=args.host, speed=args.speed)
    RadarServer.log.info(
        "radar {code} simulator on {host}:{port} (speed {speed})",
        code=args.code,
        host=args.host,
        port=args.port,
        speed=args.speed,
    )
    reactor.run()
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="obsmesh simulate radar")
    configure(_parser)
    raise SystemExit(main(_parser.parse_args()))
