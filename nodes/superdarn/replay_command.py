"""`obsmesh replay superdarn FILE...`: archived FITACF files into a node's history."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections import defaultdict
from typing import Any

from twisted.internet import defer, task

from nodes.radar import radars
from nodes.radar.echoes import open_echo_store
from nodes.radar.pipeline import KEY, beam_timeline, scan_timeline
from nodes.radar.products import ProductError, radar_time
from obsmesh import config

from .files import FileFormatError, read_file_bytes
from .kind import Settings
from .node import SuperdarnNode, echo_db_path
from .replay import iter_file_records, progress_bar

DESCRIPTION = """\
Read archived FITACF files (plain, .bz2 or .gz; in the order given) and add
their beams and scans to the history of a superdarn node, exactly as the node
would have made them live (nothing is published: the router is not needed).

It writes where the node keeps its history:
  - the timelines <code>.beam and <code>.scan go into the Redis store of the
    mesh configuration (store = "redis", redis_url), under the node's name
    (--name), so the running node serves them through get_data and Grafana at
    once, and a node started later finds them;
  - the per-scan echo counts go into the node's SQLite echo database
    ([superdarn] echo_db, or <state_dir>/superdarn/<name>-echoes.sqlite),
    served by get_echoes. A running node lists radars found there within a
    minute.
With the in-memory store (the default) a node's history lives inside its own
process and a replay cannot reach it: the command then refuses, unless
--echoes-only asks for the echo database alone.

Rows the store already holds (same radar, channel and radar time) are skipped,
so a file replayed twice is stored once; echo counts replace themselves.
Radars are named by the station id of each record (the radar table), or all
by --code. A corrupt record ends its file; the records before it are kept and
the next file is read. The last scan of the run is stored as incomplete.
Mind the limits the node applies too: the store keeps max_age seconds before a
timeline's newest sample, and echo counts older than retention_days are
purged at the node's next purge.
"""

YIELD_EVERY = 1000  # records between turns of the reactor (Redis writes go on meanwhile)
PENDING_LIMIT = 200_000  # unwritten Redis rows before the replay waits for them
SCAN_LOOKBACK = 3600.0  # a scan in a file may have started this long before its first record


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("files", nargs="+", metavar="FILE", help="fitacf files (plain, .bz2, .gz)")
    parser.add_argument("--name", help="the node whose history is filled (default superdarn)")
    parser.add_argument(
        "--code", help="radar key for every record (default: from each record's station id)"
    )
    parser.add_argument("--echo-db", help="SQLite echo database (default: the node's)")
    parser.add_argument(
        "--echoes-only",
        action="store_true",
        help="write only the echo database (works with the in-memory store)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class _Known:
    """Rows the store holds already, per timeline, as (radar time, channel)."""

    def __init__(self) -> None:
        self.rows: dict[str, set[tuple[float, int]]] = defaultdict(set)
        self.skipped = 0

    def skip(self, timeline: str, t: float, channel: int) -> bool:
        rows = self.rows[timeline]
        if (t, channel) in rows:
            self.skipped += 1
            return True
        rows.add((t, channel))  # a later copy of this row in the archive is skipped too
        return False

    async def load(
        self, store: Any, key: str, timeline: str, channel_field: str, t0: float, t1: float
    ) -> None:
        times, cols = await store.query(timeline, [channel_field], t0, t1)
        channels = cols[channel_field]
        self.rows[timeline].update(
            (float(t), int(c) if c == c else 0)
            for t, c in zip(times.tolist(), channels.tolist(), strict=True)
        )


def _key_of(record: dict[str, Any], code: str | None) -> str | None:
    if code:
        return code
    stid = record.get("stid")
    info = radars.radar_by_stid(stid) if isinstance(stid, int) else None
    return info.code if info else None


async def replay(
    args: argparse.Namespace,
    settings: dict[str, Any],
    options: dict[str, Any],
    reactor: Any,
    out: Any = sys.stdout,
    err: Any = sys.stderr,
) -> int:
    name = args.name or "superdarn"
    echoes = open_echo_store(
        echo_db_path(options, settings, name), float(options["retention_days"])
    )
    if args.echoes_only:
        settings = {**settings, "store": "memory"}
    node = SuperdarnNode(
        name, settings, options, [], echoes=echoes, timelines=not args.echoes_only, reactor=reactor
    )
    pipeline, store, known = node.pipeline, node.store, _Known()
    await store.open()  # a durable store held by the running node refuses: stop the node first
    pipeline.skip_history = known.skip
    errors: list[str] = []
    unknown = 0
    sizes = [os.path.getsize(p) if os.path.isfile(p) else 0 for p in args.files]
    total, done_before = sum(sizes), 0

    def progress(done: int) -> None:
        if not args.quiet:
            err.write(f"\r{progress_bar(done, total)}")
            err.flush()

    for path, size in zip(args.files, sizes, strict=True):
        try:
            data = read_file_bytes(path)
        except (OSError, FileFormatError) as exc:
            errors.append(f"{path}: {exc}")
            done_before += size
            continue
        records = list(iter_file_records(data, path, errors))
        if not args.echoes_only:  # learn what the store holds for this file's period
            spans: dict[str, list[float]] = {}
            for record, _ in records:
                key = _key_of(record, args.code)
                try:
                    t = radar_time(record)
                except ProductError:
                    continue
                if key is not None:
                    lo_hi = spans.setdefault(key, [t, t])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], t), max(lo_hi[1], t)
            for key, (lo, hi) in spans.items():
                pipeline.add_radar(key, live=False)
                await known.load(store, key, beam_timeline(key), f"{key}.channel", lo, hi + 1)
                await known.load(
                    store,
                    key,
                    scan_timeline(key),
                    f"{key}.scan.channel",
                    lo - SCAN_LOOKBACK,
                    hi + 1,
                )
        for i, (record, offset) in enumerate(records, 1):
            key = _key_of(record, args.code)
            if key is None:
                unknown += 1
                continue
            pipeline.ingest(key, record, live=False)
            if i % YIELD_EVERY == 0:
                progress(done_before + size * offset // max(len(data), 1))
                await task.deferLater(reactor, 0, lambda: None)
                if store.pending_rows() > PENDING_LIMIT:
                    await store.flush()
        done_before += size
        progress(done_before)
    pipeline.flush(live=False)
    await pipeline.drain()
    if not await store.flush(60.0):
        errors.append(f"the store did not take every row within 60 s ({store.pending_rows()} left)")
    await store.close()
    await pipeline.db.stop(echoes.close)  # closed on the thread it was used on
    if not args.quiet:
        err.write("\n")
    c = node.counters
    out.write(
        f"replayed {len(args.files)} file(s) into node {name!r}: {c['records']} records, "
        f"{c['beams']} beams, {c['scans']} scans; {known.skipped} rows already stored, "
        f"{c['bad_records']} unusable records, {unknown} of unknown stations\n"
    )
    for e in errors:
        err.write(f"error: {e}\n")
    return 1 if errors else 0


def main(args: argparse.Namespace) -> int:
    settings = config.mesh(args.config)
    options = Settings.resolve(args.config, args=args, mesh=settings)
    if settings["store"] == "memory" and not args.echoes_only:
        print(
            "obsmesh replay superdarn: the history of a node with the in-memory store lives in that "
            "node's process, so a replay cannot reach it. Use the durable store (the default; stop "
            'the node while replaying) or store = "redis" (and redis_url) in the mesh configuration '
            "for the node and this command, or pass --echoes-only to fill only the echo database.",
            file=sys.stderr,
        )
        return 2
    if args.code and not KEY.match(args.code):
        print(f"obsmesh replay superdarn: bad radar code {args.code!r}", file=sys.stderr)
        return 2
    from twisted.internet import reactor

    outcome: dict[str, int] = {}

    def finished(result: Any) -> None:
        if isinstance(result, int):
            outcome["code"] = result
        else:
            outcome["code"] = 2
            if result.check(ValueError, OSError, sqlite3.Error, config.ConfigError):
                print(f"obsmesh replay superdarn: {result.getErrorMessage()}", file=sys.stderr)
            else:
                result.printTraceback(file=sys.stderr)
        reactor.stop()

    def begin() -> None:
        d = defer.ensureDeferred(replay(args, settings, options, reactor))
        d.addBoth(finished)

    reactor.callWhenRunning(begin)
    reactor.run()
    return outcome.get("code", 2)
