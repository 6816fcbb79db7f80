"""The durable store's write-ahead log: batches as checksummed records.

A log file (`wal/<number>.log`) is a run of records, each one batch of one
timeline, all little-endian:

    prefix (32 bytes)  b"OMW1", lsn u64, header bytes u32, payload bytes u64,
                       crc32 of header + payload u32, crc32 of the 28 bytes before u32
    header             msgpack {"tl": timeline, "n": rows, "c": [[field, type, bytes], ...]}
    payload            the times (n float64), then each column: float64 for
                       numbers and bools, a msgpack list of str/None for strings

The log sequence number (lsn) grows by one per record across files; a
segment remembers the highest lsn it holds per timeline, so a record already
in a segment is never replayed twice. A reader stops at the first record
whose prefix is damaged (a torn last write, or a file cut short) and skips a
record whose body fails its checksum; both are reported, never raised.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import msgpack
import numpy as np
from zlib_ng.zlib_ng import crc32

from obsmesh.store.base import STRING

MAGIC = b"OMW1"
PREFIX = struct.Struct("<4sQIQII")
HEAD = struct.Struct("<4sQIQI")  # the part of the prefix its own checksum covers
MAX_HEADER = 1 << 24  # a header claiming more is damage, not data


@dataclass(slots=True)
class Record:
    lsn: int
    timeline: str
    t: np.ndarray
    cols: dict[str, np.ndarray]
    types: dict[str, str]


@dataclass
class Scan:
    """What reading one log file found."""

    records: list[Record] = field(default_factory=list)
    good_bytes: int = 0  # the file up to the end of its last readable record
    damage: list[str] = field(default_factory=list)


def _name(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def encode(
    lsn: int, timeline: str, t: np.ndarray, cols: Mapping[str, np.ndarray], types: Mapping[str, str]
) -> list[bytes | memoryview]:
    """One record as buffers for `os.writev` (numeric columns are not copied)."""
    # memoryview(ndarray): numpy's stubs give ndarray the buffer protocol for Python 3.12+ only.
    parts: list[bytes | memoryview] = [memoryview(np.ascontiguousarray(t, dtype="<f8")).cast("B")]  # type: ignore[arg-type]
    described = []
    for name, col in cols.items():
        kind = types[name]
        if kind == STRING:
            buf: bytes | memoryview = msgpack.packb(col.tolist(), unicode_errors="surrogatepass")
        else:
            buf = memoryview(np.ascontiguousarray(col, dtype="<f8")).cast("B")  # type: ignore[arg-type]
        described.append([name, kind, len(buf)])
        parts.append(buf)
    header = msgpack.packb(
        {"tl": timeline, "n": int(t.shape[0]), "c": described}, unicode_errors="surrogatepass"
    )
    body_crc = crc32(header)
    for p in parts:
        body_crc = crc32(p, body_crc)
    size = sum(len(p) for p in parts)
    head = HEAD.pack(MAGIC, lsn, len(header), size, body_crc)
    return [head + struct.pack("<I", crc32(head)), header, *parts]


def record_size(buffers: list[bytes | memoryview]) -> int:
    return sum(len(b) for b in buffers)


def _decode_body(lsn: int, header: object, body: memoryview) -> Record:
    if not isinstance(header, dict):
        raise ValueError("header is not a map")
    timeline, rows, described = header["tl"], int(header["n"]), header["c"]
    if not isinstance(timeline, str) or rows < 0 or not isinstance(described, list):
        raise ValueError("header fields of the wrong type")
    at = 8 * rows
    t = np.frombuffer(body[:at], dtype="<f8")
    cols: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for name, kind, nbytes in described:
        raw = body[at : at + nbytes]
        at += nbytes
        if kind == STRING:
            col = np.empty(rows, dtype=object)
            col[:] = msgpack.unpackb(raw, unicode_errors="surrogatepass")
        else:
            col = np.frombuffer(raw, dtype="<f8")
        if col.shape[0] != rows:
            raise ValueError(f"column {name!r} has {col.shape[0]} values for {rows} rows")
        cols[name] = col
        types[name] = kind
    if at != len(body):
        raise ValueError("payload longer than its columns")
    return Record(lsn, timeline, t, cols, types)


def read(path: str) -> Scan:
    """Every readable record of one log file, in order, and what was damaged."""
    with open(path, "rb") as f:
        data = memoryview(f.read())
    return parse(data, os.path.basename(path))


def parse(data: memoryview | bytes, label: str = "log") -> Scan:
    data = memoryview(data)
    scan = Scan()
    at = 0
    while at < len(data):
        if len(data) - at < PREFIX.size:
            scan.damage.append(f"{label}: {len(data) - at} bytes of a cut-off record at {at}")
            break
        magic, lsn, hlen, plen, body_crc, head_crc = PREFIX.unpack_from(data, at)
        if magic != MAGIC or crc32(data[at : at + HEAD.size]) != head_crc or hlen > MAX_HEADER:
            scan.damage.append(f"{label}: unreadable record prefix at byte {at}; rest ignored")
            break
        end = at + PREFIX.size + hlen + plen
        if end > len(data):
            scan.damage.append(f"{label}: record at byte {at} cut off ({end - len(data)} missing)")
            break
        header = data[at + PREFIX.size : at + PREFIX.size + hlen]
        body = data[at + PREFIX.size + hlen : end]
        if crc32(body, crc32(header)) != body_crc:
            scan.damage.append(f"{label}: record {lsn} at byte {at} fails its checksum; skipped")
        else:
            try:
                unpacked = msgpack.unpackb(header, unicode_errors="surrogatepass")
                scan.records.append(_decode_body(lsn, unpacked, body))
            except Exception as exc:  # checksummed yet malformed: written by something else
                scan.damage.append(f"{label}: record {lsn} at byte {at} malformed ({exc}); skipped")
        at = end
        scan.good_bytes = at
    return scan


def iter_files(directory: str) -> Iterator[tuple[int, str]]:
    """(number, path) of the log files in `directory`, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    found = []
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot and ext == "log" and stem.isdigit():
            found.append((int(stem), os.path.join(directory, name)))
    yield from sorted(found)


def file_name(directory: str, number: int) -> str:
    return os.path.join(directory, f"{number:012d}.log")
