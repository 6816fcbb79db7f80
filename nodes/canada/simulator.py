"""Simulated Canadian radar feeds over ZeroMQ (`obsmesh simulate canada`).

- `--envelope aggregator` (default): one PUB socket on `--port`, as the
  aggregated `CANADA_ADDR` feed: `[site code, zlib(DMAP)]` for every site;
- `--envelope borealis`: one PUB socket per site on `--port`, `--port`+1, ...,
  as Borealis sites: `[b"fitacf/0", bz2(DMAP)]`, each preceded by a
  `rawacf/0` message carrying a pickle, as real sites send (a consumer must
  ignore it);
- `--envelope json`: like borealis, but the older single frame
  `zlib(JSON record)`.

Records come from the radar synthesiser, nodes.radar.synth (16 beams of 3 s,
minute scans, soundings), one radar per site with its real station id, stamped with the
time they are sent (so the feed always looks live); `--speed N` runs N times
faster. `--flood SECONDS` instead sends aggregator messages as fast as it can
(or at `--rate` per second) for that long and prints how many it sent: the
benchmark and the reactor-latency test use it.
"""

from __future__ import annotations

import argparse
import bz2
import heapq
import json
import math
import pickle
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import zmq

from nodes.radar import dmap, radars, synth
from nodes.radar.synth import stamp, synth_schedule

from . import envelopes
from .flood import FloodSite

DEFAULT_SITES = "sas,pgr,inv,cly,rkn"


def aggregator_message(code: str, raw: bytes) -> list[bytes]:
    return [code.encode("ascii"), zlib.compress(raw)]


def borealis_message(raw: bytes, slice_id: int = 0) -> list[bytes]:
    return [f"fitacf/{slice_id}".encode(), bz2.compress(raw)]


def json_message(record: dict[str, Any]) -> list[bytes]:
    """The older Borealis single frame: numpy arrays as lists (as it did with tolist())."""
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}
    return [zlib.compress(json.dumps(plain).encode("utf-8"))]


def rawacf_message(record: dict[str, Any], slice_id: int = 0) -> list[bytes]:
    """A stand-in for the pickled SliceData a Borealis site publishes under rawacf/N."""
    blob = {
        "slice_id": slice_id,
        "station": record.get("stid"),
        "main_acfs": np.zeros((4, 75, 19), "c8"),
    }
    return [f"rawacf/{slice_id}".encode(), pickle.dumps(blob)]


def encode(envelope: str, code: str, record: dict[str, Any]) -> list[list[bytes]]:
    """The messages one record becomes under `envelope`."""
    if envelope == envelopes.JSON:
        return [json_message(record)]
    raw = dmap.encode_record(record)
    if envelope == envelopes.BOREALIS:
        return [rawacf_message(record), borealis_message(raw)]
    return [aggregator_message(code, raw)]


def site_schedules(codes: list[str], seed: int, start: float) -> dict[str, Iterator]:
    out = {}
    for i, code in enumerate(codes):
        info = radars.radar(code)
        if info is None:
            raise ValueError(f"unknown radar code {code!r}")
        gen = synth.RadarSynth(
            info.stid, seed=seed + i, scan_sign=-1 if code == "pgr" else 1, boresight=info.boresight
        )
        out[code] = synth_schedule(gen, start)
    return out


def run_feed(
    sockets: dict[str, zmq.Socket],
    envelope: str,
    seed: int = 0,
    speed: float = 1.0,
    duration: float | None = None,
) -> int:
    """Send every site's records when due (all sites merged by time); returns
    how many records were sent. `sockets`: site code -> its PUB socket."""
    now = time.time()
    schedules = site_schedules(list(sockets), seed, now)
    due: list[tuple[float, str, dict]] = []
    for code, schedule in schedules.items():
        pause, record = next(schedule)
        heapq.heappush(due, (now + pause / speed, code, record))
    sent = 0
    end = None if duration is None else now + duration
    while due:
        when, code, record = heapq.heappop(due)
        if end is not None and when > end:
            break
        delay = when - time.time()
        if delay > 0:
            time.sleep(delay)
        for frames in encode(envelope, code, stamp(record, time.time())):
            sockets[code].send_multipart(frames)
        sent += 1
        pause, record = next(schedules[code])
        heapq.heappush(due, (when + pause / speed, code, record))
    return sent


PREBUILT_PER_SITE = 60_000  # bodies made ahead per site for a paced flood (~2.2 kB each)


def run_flood(sockets: dict[str, zmq.Socket], seconds: float, rate: float | None = None) -> int:
    """Aggregator messages round-robin over the sites (`sockets`: site code ->
    its PUB socket, maybe one for all), as fast as possible (or `rate` per
    second), for `seconds`; returns how many were sent.

    With a `rate`, every body is made before the clock starts (up to
    PREBUILT_PER_SITE per site, reused in a loop beyond that): the sending loop
    then costs little more than ZeroMQ's send, so a load generator sharing the
    machine with the node takes as little CPU from it as it can."""
    start = time.time() - 1800.0  # radar times well behind the clock, advancing 1 ms per message
    sites = [
        (code.encode(), sockets[code], FloodSite(radars.radar(code).stid, start, seed=i))
        for i, code in enumerate(sockets)
    ]
    if rate is not None:
        per_site = min(PREBUILT_PER_SITE, int(rate * seconds / len(sites)) + 1)
        bodies = [[site.next_body() for _ in range(per_site)] for _, _, site in sites]

        def next_bodies(n: int) -> list[bytes]:
            return [b[n % per_site] for b in bodies]
    else:

        def next_bodies(n: int) -> list[bytes]:
            return [site.next_body() for _, _, site in sites]

    sent = rounds = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate is not None and sent >= (now - t0) * rate:
            time.sleep(min(0.001, end - now))
            continue
        for (code, sock, _), body in zip(sites, next_bodies(rounds), strict=True):
            sock.send_multipart([code, body])  # PUB drops, never blocks, when a reader lags
        rounds += 1
        sent += len(sites)
    return sent


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=9696, help="PUB port (the first of them for borealis/json)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument(
        "--sites", default=DEFAULT_SITES, help=f"radar codes (default {DEFAULT_SITES})"
    )
    parser.add_argument(
        "--envelope",
        choices=envelopes.ENVELOPES,
        default=envelopes.AGGREGATOR,
        help="message shape (default aggregator)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="run N times faster")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic echoes")
    parser.add_argument(
        "--flood",
        type=float,
        metavar="SECONDS",
        help="send aggregator messages as fast as possible for SECONDS, then print the count",
    )
    parser.add_argument(
        "--rate", type=float, help="with --flood: at most this many messages per second"
    )
    parser.add_argument(
        "--per-site",
        action="store_true",
        help="with --flood: one PUB socket per site (port, port+1, ...), as Borealis sites",
    )


def main(args: argparse.Namespace) -> int:
    codes = [c.strip().lower() for c in args.sites.split(",") if c.strip()]
    unknown = [c for c in codes if radars.radar(c) is None]
    if not codes or unknown:
        print(
            f"--sites: unknown radar code(s) {', '.join(unknown) or '(none given)'}",
            file=sys.stderr,
        )
        return 2
    if not (args.speed > 0 and math.isfinite(args.speed)):
        print("--speed must be a positive number", file=sys.stderr)
        return 2
    context = zmq.Context()
    sockets: dict[str, zmq.Socket] = {}
    try:
        per_site = args.envelope != envelopes.AGGREGATOR if args.flood is None else args.per_site
        if not per_site:
            sock = context.socket(zmq.PUB)
            sockets = dict.fromkeys(codes, sock)  # (closed in finally, even if bind fails)
            sock.bind(f"tcp://{args.host}:{args.port}")
            print(
                f"canada aggregator simulator: {','.join(codes)} on tcp://{args.host}:{args.port}",
                file=sys.stderr,
                flush=True,
            )
        else:
            for i, code in enumerate(codes):
                sockets[code] = context.socket(zmq.PUB)
                sockets[code].bind(f"tcp://{args.host}:{args.port + i}")
                what = "aggregator flood" if args.flood is not None else args.envelope
                print(
                    f"site {code} ({what}) on tcp://{args.host}:{args.port + i}",
                    file=sys.stderr,
                    flush=True,
                )
        if args.flood is not None:
            sent = run_flood(sockets, args.flood, args.rate)
            print(json.dumps({"sent": sent, "seconds": args.flood}), flush=True)
        else:
            run_feed(sockets, args.envelope, seed=args.seed, speed=args.speed)
    except zmq.ZMQError as exc:
        print(f"canada simulator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        for sock in set(sockets.values()):
            sock.close(0)
        context.term()
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="obsmesh simulate canada")
    configure(_parser)
    raise SystemExit(main(_parser.parse_args()))
