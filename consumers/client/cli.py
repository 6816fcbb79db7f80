"""The `obsmesh nodes | fields | get | tail` commands, all through the client.

`obsmesh/cli.py` mounts them: for each NAME, `configure_NAME(subparser)` adds
the arguments and `run_NAME(args) -> int` runs it. They also run on their own:
`python -m consumers.client.cli get NODE FIELD --start -1h`.

Output: tables for people, `--json` (or `--format json`) for programs; `get`
writes CSV (default) or JSON to stdout or `--output FILE`; `tail` prints live
samples as they arrive (text, CSV or JSON lines) and reports gaps.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import numpy as np

from consumers.client.display import natural_key, unit_text, value_text
from consumers.client.errors import ClientError, InvalidArgument, NodeUnavailable
from consumers.client.live import Batch, Gap
from consumers.client.result import Result

# -- shared options ----------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "connection (defaults: OBSMESH_* variables, then the config file)"
    )
    g.add_argument("--url", help="router URL: rs://host:8081 (rawsocket) or ws://host:8080/ws")
    g.add_argument("--realm", help="WAMP realm")
    g.add_argument("--prefix", help="URI prefix")
    g.add_argument(
        "--authid",
        help="WAMP-CRA principal on the backend (default $OBSMESH_AUTHID or client); "
        "the secret comes from OBSMESH_SECRET, OBSMESH_SECRET_FILE or OBSMESH_SECRETS_FILE",
    )
    g.add_argument(
        "--serializer", choices=("msgpack", "json"), default="msgpack", help="default msgpack"
    )
    g.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the router and answers"
    )


def _mesh(args: argparse.Namespace):
    from consumers.client.mesh import Mesh

    return Mesh(
        args.url,
        args.realm,
        prefix=args.prefix,
        serializer=args.serializer,
        timeout=args.timeout,
        authid=args.authid,
        config=getattr(args, "config", None),
    )


def _fail(command: str, exc: BaseException) -> int:
    print(f"obsmesh {command}: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, InvalidArgument | ValueError) else 1


def quiet_on_closed_pipe(run: Callable[[argparse.Namespace], int]) -> Callable:
    """`obsmesh get ... | head`: when the reader goes away, stop and exit 0
    without a traceback (and without Python's complaint at exit)."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except BrokenPipeError:
            try:  # the interpreter flushes stdout at exit: point it at /dev/null first
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except OSError:
                pass
            return 0

    return wrapper


def _open_output(path: str | None) -> IO[str]:
    if path in (None, "-"):
        return sys.stdout
    return open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed by the caller


def _time_text(t: float, style: str) -> str:
    if style == "iso":
        return (
            _dt.datetime.fromtimestamp(t, _dt.UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z")
        )
    return repr(float(t))


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):  # a row of items (a das2 yscan)
        return [_json_value(x) for x in v]
    return v


# -- nodes ------------------------------------------------------------------------


def configure_nodes(parser: argparse.ArgumentParser) -> None:
    parser.description = "List the data nodes on the mesh."
    parser.add_argument("--json", action="store_true", help="print JSON")
    _connection_options(parser)


@quiet_on_closed_pipe
def run_nodes(args: argparse.Namespace) -> int:
    try:
        with _mesh(args) as mesh:
            nodes = mesh.nodes()
    except (ClientError, ValueError) as exc:
        return _fail("nodes", exc)
    if args.json:
        json.dump(nodes, sys.stdout, indent=2, default=str)
        print()
        return 0
    rows = [
        (str(n.get("name", "")), str(n.get("kind", "")), str(n.get("description", "")))
        for n in nodes
    ]
    _table(("NAME", "KIND", "DESCRIPTION"), sorted(rows))
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


# -- fields -----------------------------------------------------------------------


def configure_fields(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List a node's fields, with each timeline's mean sample interval in [start, end)."
    )
    parser.add_argument("node")
    parser.add_argument(
        "--start", default="-1h", help="UNIX s, ISO time or duration ago like 1h (default 1h ago)"
    )
    parser.add_argument("--end", "--until", dest="end", default="now", help="default now")
    parser.add_argument("--json", action="store_true", help="print JSON ([fields, timelines])")
    _connection_options(parser)


@quiet_on_closed_pipe
def run_fields(args: argparse.Namespace) -> int:
    try:
        with _mesh(args) as mesh:
            fields = mesh.fields(args.node, args.start, args.end)
    except (ClientError, ValueError) as exc:
        return _fail("fields", exc)
    if args.json:
        json.dump([dict(fields), fields.timelines], sys.stdout, indent=2, default=str)
        print()
        return 0
    rows = []
    for name, info in sorted(fields.items(), key=lambda item: natural_key(item[0])):
        tl = info.get("timeline", "")
        interval = (fields.timelines.get(tl) or {}).get("interval")
        rows.append(
            (
                name,
                str(tl),
                str(info.get("type", "")),
                unit_text(info.get("units", "")),
                "" if interval is None else f"{interval:g} s",
                str(info.get("description", "")),
            )
        )
    _table(("FIELD", "TIMELINE", "TYPE", "UNITS", "INTERVAL", "DESCRIPTION"), rows)
    return 0


# -- get ----------------------------------------------------------------------------


def configure_get(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write a node's history as CSV or JSON."
    parser.add_argument("node")
    parser.add_argument(
        "fields", nargs="*", help="field names (default: all with data in the interval)"
    )
    parser.add_argument(
        "--start",
        "--since",
        dest="start",
        default="-1h",
        help="UNIX s, ISO time or duration ago like 1h (default 1h ago)",
    )
    parser.add_argument(
        "--end", "--until", dest="end", default="now", help="same forms as --start (default now)"
    )
    parser.add_argument("--stride", help="min_stride: bin width, seconds or duration like 1m")
    parser.add_argument(
        "--reduce", choices=("mean", "minmax"), help="how to bin with --stride (default mean)"
    )
    parser.add_argument(
        "--format", choices=("csv", "json"), help="default: from --output's suffix, else csv"
    )
    parser.add_argument(
        "--time", choices=("unix", "iso"), default="unix", help="time column: UNIX s or ISO 8601"
    )
    parser.add_argument("-o", "--output", help="file to write (default stdout)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    _connection_options(parser)


@quiet_on_closed_pipe
def run_get(args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if (args.output or "").lower().endswith(".json") else "csv")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        with _mesh(args) as mesh:
            result = mesh.get(
                args.node,
                args.fields or None,
                args.start,
                args.end,
                min_stride=args.stride,
                reduce=args.reduce,
                progress=progress,
            )
    except (ClientError, ValueError) as exc:
        return _fail("get", exc)
    try:
        out = _open_output(args.output)
    except OSError as exc:
        return _fail("get", exc)
    try:
        if fmt == "json":
            write_json(result, out)
        else:
            write_csv(result, out, args.time)
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    return 0


def csv_rows(result: Result, time_style: str = "unix") -> Iterator[list]:
    """Header, then one row per sample ordered by time: time, timeline, and
    every field (empty where the field is on another timeline or missing)."""
    fields = []  # a field with items (a das2 yscan) is a column per item: f[0], f[1], ...
    for f in result:
        col = result[f]
        fields += [f"{f}[{i}]" for i in range(col.shape[1])] if col.ndim == 2 else [f]
    yield ["time", "timeline", *fields]
    order = {f: i for i, f in enumerate(fields)}
    parts = []
    for tl in result.timelines.values():
        if len(tl):
            parts.append(tl)
    if not parts:
        return
    all_t = np.concatenate([tl.t for tl in parts])
    which = np.concatenate([np.full(len(tl), i) for i, tl in enumerate(parts)])
    index = np.concatenate([np.arange(len(tl)) for tl in parts])
    order_rows = np.argsort(all_t, kind="stable")
    columns = [
        {
            name: c.tolist()
            for f, col in tl.data.items()
            for name, c in (
                [(f"{f}[{i}]", col[:, i]) for i in range(col.shape[1])]
                if col.ndim == 2
                else [(f, col)]
            )
        }
        for tl in parts
    ]
    times = all_t[order_rows].tolist()
    for t, w, i in zip(times, which[order_rows].tolist(), index[order_rows].tolist(), strict=True):
        row: list[Any] = [""] * len(fields)
        for f, col in columns[w].items():
            row[order[f]] = _cell(col[i])
        yield [_time_text(t, time_style), parts[w].name, *row]


def write_csv(result: Result, out: IO[str], time_style: str = "unix") -> None:
    csv.writer(out, lineterminator="\n").writerows(csv_rows(result, time_style))


def write_json(result: Result, out: IO[str]) -> None:
    doc = {
        "node": result.node,
        "timelines": {
            tl.name: {
                "t": tl.t.tolist(),
                "finalized_until": tl.finalized_until,
                "data": {f: [_json_value(v) for v in c.tolist()] for f, c in tl.data.items()},
            }
            for tl in result.timelines.values()
        },
    }
    json.dump(doc, out, allow_nan=False)
    out.write("\n")


# -- tail ---------------------------------------------------------------------------


def configure_tail(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print a node's live samples as they arrive (Ctrl-C to stop)."
    parser.add_argument("node")
    parser.add_argument("fields", nargs="*", help="field names (default: all)")
    parser.add_argument(
        "--format",
        choices=("text", "csv", "json"),
        default="text",
        help="text (default), csv, or json (one object per line)",
    )
    parser.add_argument(
        "--time", choices=("unix", "iso"), default="iso", help="time style (default iso)"
    )
    parser.add_argument("--since", help="first print history from this time (e.g. 10m)")
    parser.add_argument(
        "--latest", action="store_true", help="start with the last batch the node published"
    )
    parser.add_argument("-n", "--count", type=int, help="stop after this many samples")
    parser.add_argument(
        "--no-backfill",
        action="store_true",
        help="after an interruption, do not fetch the missed samples from history",
    )
    _connection_options(parser)


@quiet_on_closed_pipe
def run_tail(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        return _fail("tail", InvalidArgument("--count must be at least 1"))
    printed = 0
    try:
        with _mesh(args) as mesh:
            fields = args.fields or None
            meta: Mapping[str, Any] = {}
            if args.format == "text":  # units and precision to print values with
                try:
                    meta = mesh.fields(args.node, 1.0, 0.0)
                except NodeUnavailable:
                    meta = {}  # restarting: values print plain until it answers
            if args.format == "csv":
                # CSV needs its columns up front: every field the node has data for.
                fields = fields or sorted(mesh.fields(args.node, 1.0, 0.0))
                if not fields:
                    raise InvalidArgument(
                        f"node {args.node!r} has no data yet: name the fields to tail as CSV"
                    )
                print(",".join(["time", "timeline", *fields]), flush=True)
            with mesh.stream(
                args.node,
                fields,
                since=args.since,
                latest=args.latest,
                backfill=not args.no_backfill,
            ) as stream:
                for item in stream:
                    if isinstance(item, Gap):
                        _print_gap(item, args)
                        continue
                    for line in tail_lines(item, args.format, args.time, fields, meta):
                        print(line)
                        printed += 1
                        if args.count is not None and printed >= args.count:
                            sys.stdout.flush()
                            return 0
                    sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.flush()
        return 130
    except (ClientError, ValueError) as exc:
        return _fail("tail", exc)
    return 0


def tail_lines(
    batch: Batch,
    fmt: str,
    time_style: str = "iso",
    fields: list[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """One line per sample: text (values at their field's precision, with
    units: `meta` is the node's get_fields), CSV (columns `fields`, values as
    received) or a JSON object."""
    meta = meta or {}
    cols = {f: c.tolist() for f, c in batch.data.items()}
    names = fields if fields is not None else list(cols)
    for i, t in enumerate(batch.t.tolist()):
        if fmt == "json":
            yield json.dumps(
                {
                    "time": t,
                    "timeline": batch.timeline,
                    "backfill": batch.backfill,
                    "data": {f: _json_value(c[i]) for f, c in cols.items()},
                },
                allow_nan=False,
            )
        elif fmt == "csv":
            cells = [_csv_text(cols[f][i]) if f in cols else "" for f in names]
            yield ",".join([_time_text(t, time_style), batch.timeline, *cells])
        else:
            shown = "  ".join(
                f"{f}={value_text(cols[f][i], meta.get(f))}" for f in sorted(cols, key=natural_key)
            )
            mark = " (backfill)" if batch.backfill else ""
            yield f"{_time_text(t, time_style)}  {batch.timeline}  {shown}{mark}"


def _csv_text(v: Any) -> str:
    v = _cell(v)
    s = str(v)
    return f'"{s.replace(chr(34), chr(34) * 2)}"' if any(c in s for c in ',"\n') else s


def _print_gap(gap: Gap, args: argparse.Namespace) -> None:
    what = (
        "missed samples follow from history" if gap.backfilled else "samples in it may be missing"
    )
    message = (
        f"gap of {gap.duration:.1f} s ({gap.reason}): {what}{'; ' + gap.error if gap.error else ''}"
    )
    if args.format == "json":
        print(
            json.dumps(
                {
                    "gap": {
                        "start": gap.start,
                        "end": gap.end,
                        "reason": gap.reason,
                        "backfilled": gap.backfilled,
                        "recovered": gap.recovered,
                        "error": gap.error,
                    }
                }
            ),
            flush=True,
        )
    else:
        print(f"# {message}", file=sys.stderr, flush=True)


# -- standalone ---------------------------------------------------------------------

COMMANDS = {
    "nodes": (configure_nodes, run_nodes, "list the data nodes"),
    "fields": (configure_fields, run_fields, "list a node's fields"),
    "get": (configure_get, run_get, "write history as CSV or JSON"),
    "tail": (configure_tail, run_tail, "print live samples as they arrive"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsmesh", description="obsmesh client commands")
    parser.add_argument("--config", help="TOML configuration file (default: $OBSMESH_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        configure(p)
        p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
