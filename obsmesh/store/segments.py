"""The durable store's segments: Parquet files, one timeline each.

    segments/<timeline, %-quoted>/<seq>-<gen>.parquet

A segment holds a time column `time` then one column per field (float64 for
numbers and bools, NaN = missing; UTF-8 strings, null = missing), zstd
compressed (times byte-stream-split) with page checksums, in row groups of
ROW_GROUP rows, so a damaged block costs only its row group. Any Parquet
reader reads them: `duckdb -c "select * from 'segments/sensors/*.parquet'"`,
`pandas.read_parquet(...)`, `polars.read_parquet(...)`.

The key-value metadata `obsmesh` (JSON) names the timeline, the fields in
column order with their types, the rows, the first and last time, the highest
log sequence number (lsn) the segment holds, and the segments it replaces (a
compaction's inputs). Writing goes to a temporary name, fsync, rename, fsync
of the directory: a segment is there whole or not at all. The order of rows
with equal times is the order of `seq` (write order), then of rows within.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from obsmesh.store.base import STRING, missing_column

ROW_GROUP = 1 << 16
KEY = b"obsmesh"
TIME = "time"


@dataclass(slots=True)
class Segment:
    timeline: str
    seq: int
    gen: int
    path: str
    rows: int
    first: float
    last: float
    lsn: int
    nbytes: int
    replaces: list[tuple[int, int]] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    @property
    def order(self) -> tuple[int, int]:
        return (self.seq, self.gen)


@dataclass
class Loaded:
    """A segment's rows, and what could not be read of it."""

    t: np.ndarray
    cols: dict[str, np.ndarray]
    damage: list[str] = field(default_factory=list)


def timeline_dir(root: str, timeline: str) -> str:
    return os.path.join(root, quote(timeline.encode("utf-8", "surrogatepass"), safe="") or "%00")


def file_name(seq: int, gen: int) -> str:
    return f"{seq:012d}-{gen:04d}.parquet"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _array(col: np.ndarray, kind: str) -> pa.Array:
    if kind == STRING:
        return pa.array(col.tolist(), type=pa.string())
    return pa.array(np.ascontiguousarray(col, dtype=np.float64))


def write(
    root: str,
    timeline: str,
    seq: int,
    gen: int,
    parts: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]],
    types: Mapping[str, str],
    lsn: int,
    replaces: Sequence[tuple[int, int]] = (),
) -> Segment:
    """Write one segment durably (temp file, fsync, rename, fsync dir); OSError on
    failure, leaving no partial file behind under the final name. `parts` are
    sorted runs of rows, each starting at or after the end of the one before;
    they become the file's rows without being copied together first."""
    directory = timeline_dir(root, timeline)
    os.makedirs(directory, exist_ok=True)
    names = list(types)
    rows = sum(int(p[0].shape[0]) for p in parts)
    meta: dict[str, Any] = {
        "version": 1,
        "timeline": timeline,
        "fields": [[n, types[n]] for n in names],
        "rows": rows,
        "first": float(parts[0][0][0]),
        "last": float(parts[-1][0][-1]),
        "lsn": int(lsn),
        "seq": seq,
        "gen": gen,
        "replaces": [list(r) for r in replaces],
    }
    # Column names are the field names, but position decides: a field called
    # "time" is stored as "time" too and told apart by the metadata.
    arrays = [pa.chunked_array([_array(p[0], "number") for p in parts], type=pa.float64())]
    for n in names:
        chunks = [
            _array(c[n] if n in c else missing_column(types[n], t.shape[0]), types[n])
            for t, c in parts
        ]
        arrays.append(
            pa.chunked_array(chunks, type=pa.string() if types[n] == STRING else pa.float64())
        )
    schema = pa.schema(
        [pa.field(TIME, pa.float64())]
        + [pa.field(n, a.type) for n, a in zip(names, arrays[1:], strict=True)],
        metadata={KEY: json.dumps(meta).encode()},
    )
    table = pa.Table.from_arrays(arrays, schema=schema)
    final = os.path.join(directory, file_name(seq, gen))
    tmp = final + ".tmp"
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=1,
            use_dictionary=False,
            use_byte_stream_split=[TIME],  # measured: helps times, hurts quantised readings
            write_page_checksum=True,
            row_group_size=ROW_GROUP,
            write_statistics=[TIME],
        )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Segment(
        timeline,
        seq,
        gen,
        final,
        meta["rows"],
        meta["first"],
        meta["last"],
        int(lsn),
        os.path.getsize(final),
        [(a, b) for a, b in replaces],
        {n: types[n] for n in names},
    )


def describe(path: str) -> Segment:
    """A segment's metadata (reads the footer only); ValueError/OSError if unreadable."""
    try:
        md = pq.read_metadata(path)
    except pa.ArrowException as exc:
        raise ValueError(str(exc)) from None
    raw = (md.metadata or {}).get(KEY)
    if raw is None:
        raise ValueError("no obsmesh metadata")
    meta = json.loads(raw)
    fields = {str(n): str(k) for n, k in meta["fields"]}
    seg = Segment(
        str(meta["timeline"]),
        int(meta["seq"]),
        int(meta["gen"]),
        path,
        int(meta["rows"]),
        float(meta["first"]),
        float(meta["last"]),
        int(meta["lsn"]),
        os.path.getsize(path),
        [(int(a), int(b)) for a, b in meta.get("replaces", [])],
        fields,
    )
    if md.num_rows != seg.rows or md.num_columns != 1 + len(fields) or seg.first > seg.last:
        raise ValueError("metadata does not match the file")
    return seg


def _columns(table: pa.Table, seg: Segment) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    t = table.column(0).to_numpy()
    cols: dict[str, np.ndarray] = {}
    for i, (name, kind) in enumerate(seg.types.items(), start=1):
        col = table.column(i)
        if kind == STRING:
            out = np.empty(len(col), dtype=object)
            out[:] = col.to_pylist()
            cols[name] = out
        else:
            cols[name] = col.to_numpy()
    return t, cols


def read(seg: Segment) -> Loaded:
    """A segment's rows; a damaged row group is left out and reported."""
    try:
        table = pq.ParquetFile(seg.path, page_checksum_verification=True).read(use_threads=True)
        t, cols = _columns(table, seg)
        return Loaded(t, cols)
    except (pa.ArrowException, OSError, ValueError):
        pass
    # Salvage: row group by row group.
    name = os.path.basename(seg.path)
    try:
        pf = pq.ParquetFile(seg.path, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return _empty(seg, [f"{seg.timeline}/{name}: unreadable ({exc}); {seg.rows} rows lost"])
    parts, damage = [], []
    for g in range(pf.num_row_groups):
        try:
            parts.append(_columns(pf.read_row_group(g, use_threads=True), seg))
        except (pa.ArrowException, OSError, ValueError) as exc:
            rows = pf.metadata.row_group(g).num_rows
            damage.append(f"{seg.timeline}/{name}: block {g} ({rows} rows) damaged ({exc})")
    if not parts:
        return _empty(seg, damage)
    t = np.concatenate([p[0] for p in parts])
    cols = {n: np.concatenate([p[1][n] for p in parts]) for n in seg.types}
    return Loaded(t, cols, damage)


def _empty(seg: Segment, damage: list[str]) -> Loaded:
    return Loaded(np.zeros(0), {n: missing_column(k, 0) for n, k in seg.types.items()}, damage)


def scan(root: str) -> tuple[list[Segment], list[str], list[str]]:
    """Every segment under `root`; (segments, leftover temporary files, problems)."""
    segs: list[Segment] = []
    leftovers: list[str] = []
    problems: list[str] = []
    try:
        dirs = sorted(os.listdir(root))
    except FileNotFoundError:
        return segs, leftovers, problems
    for d in dirs:
        sub = os.path.join(root, d)
        if not os.path.isdir(sub):
            continue
        for name in sorted(os.listdir(sub)):
            path = os.path.join(sub, name)
            if name.endswith(".parquet.tmp"):
                leftovers.append(path)
            elif name.endswith(".parquet"):
                try:
                    seg = describe(path)
                except (ValueError, OSError, KeyError, TypeError) as exc:
                    problems.append(f"{unquote(d)}/{name}: unreadable footer ({exc}); skipped")
                    continue
                segs.append(seg)
    return segs, leftovers, problems


def superseded(segs: Iterable[Segment]) -> list[Segment]:
    """Segments a later compaction replaced (left by a crash between its rename
    and its deletes): they must go, or their rows would count twice."""
    segs = list(segs)
    replaced = {(s.timeline, r) for s in segs for r in s.replaces}
    return [s for s in segs if (s.timeline, s.order) in replaced]
