"""The three message envelopes of the Canadian radar feeds: pure functions over frames.

- aggregator (the `CANADA_ADDR` feed): `[site code, zlib(DMAP fitacf)]`;
- Borealis (a site's own PUB socket, current releases):
  `[b"fitacf/<slice>", bz2(DMAP fitacf)]`; the site's other topics
  (`rawacf/<slice>`, `bfiq/...`, `antennas_iq/...`) carry *pickled* Python
  objects: they are recognised by their topic and ignored, their payload is
  never looked at (unpickling network data runs the sender's code);
- legacy Borealis: one frame, `zlib(JSON of the fitacf record)`, arrays as
  JSON lists; they become numpy arrays of the FITACF field types so that the
  products equal those of the DMAP path.

A DMAP payload may hold several records back to back (Borealis sends all beams
of one averaging period together). Decompression always has a hard limit on its
output: a small frame that would inflate to gigabytes (a decompression bomb) is
refused after at most `max_bytes` + one step of output, whatever it claims.
Anything malformed raises `EnvelopeError` (`UnknownEnvelope` for a message of
none of the three shapes); nothing else escapes.
"""

from __future__ import annotations

import bz2
import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from zlib_ng import zlib_ng

from nodes.radar import dmap

AGGREGATOR, BOREALIS, JSON = "aggregator", "borealis", "json"
ENVELOPES = (AGGREGATOR, BOREALIS, JSON)

# bz2 output read per step: the limit is checked between steps, so a bz2 bomb
# costs at most max_bytes + STEP bytes before it is refused.
STEP = 64 * 1024
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_RECORDS = 64

# Topics of a Borealis site whose payloads are pickles (kept as their kind only).
PICKLED_TOPICS = frozenset({"rawacf", "bfiq", "antennas_iq", "rawrf", "txdata"})
_SITE = re.compile(rb"^[A-Za-z][A-Za-z0-9]{1,7}$")
_NOT_SITES = frozenset(
    {b"fitacf", *(t.encode() for t in PICKLED_TOPICS)}
)  # topics shaped like codes
_FITACF_TOPIC = re.compile(rb"^fitacf(?:/([0-9]{1,6}))?$")
_TOPIC_KIND = re.compile(rb"^([a-z][a-z0-9_]{0,31})(?:/|$)")

_DTYPES = {
    dmap.CHAR: np.dtype("<i1"),
    dmap.SHORT: np.dtype("<i2"),
    dmap.INT: np.dtype("<i4"),
    dmap.LONG: np.dtype("<i8"),
    dmap.UCHAR: np.dtype("<u1"),
    dmap.USHORT: np.dtype("<u2"),
    dmap.UINT: np.dtype("<u4"),
    dmap.ULONG: np.dtype("<u8"),
    dmap.FLOAT: np.dtype("<f4"),
    dmap.DOUBLE: np.dtype("<f8"),
}
MAX_JSON_NDIM = 4


class EnvelopeError(ValueError):
    """A message that cannot be used. `envelope` is the shape it had (or None),
    `reason` a short machine-readable cause (counted in get_status)."""

    def __init__(
        self, message: str, envelope: str | None, reason: str, site: str | None = None
    ) -> None:
        super().__init__(message)
        self.envelope = envelope
        self.reason = reason
        self.site = site


class UnknownEnvelope(EnvelopeError):
    """A message of none of the three shapes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None, "unknown")


@dataclass(
    slots=True
)  # not frozen: a frozen dataclass pays for every field at each of 20,000 messages/s
class Decoded:
    """Records from one message. `site` is the code the envelope names (the
    aggregator's first frame); None when the envelope does not say (Borealis
    and legacy JSON: the socket or the record's station id tells)."""

    envelope: str
    site: str | None
    records: list[dict[str, Any]]
    slice: int | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A Borealis topic whose payload is a pickle: counted, never decoded."""

    topic: str


# ---------------------------------------------------------------- classify


def decode_message(
    frames: Sequence[bytes],
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> Decoded | Ignored:
    """Decode one ZeroMQ message (its frames; three or more frames is never a
    valid shape, so callers may stop keeping frames after the third)."""
    n = len(frames)
    if n == 1:
        return _legacy_json(frames[0], max_bytes)
    if n != 2:
        raise UnknownEnvelope(f"a message of {n} frames" if n else "an empty message")
    head, body = frames
    if head not in _NOT_SITES and _SITE.match(head):  # the aggregator: by far the most common
        site = head.decode("ascii").lower()
        data = inflate(body, max_bytes, AGGREGATOR, site)
        return Decoded(AGGREGATOR, site, _dmap_records(data, max_records, AGGREGATOR, site))
    if len(head) <= 64:
        fit = _FITACF_TOPIC.match(head)
        if fit is not None:
            data = bunzip(body, max_bytes, BOREALIS)
            slice_id = int(fit.group(1)) if fit.group(1) is not None else None
            return Decoded(
                BOREALIS, None, _dmap_records(data, max_records, BOREALIS, None), slice_id
            )
        kind = _TOPIC_KIND.match(head)
        if (
            kind is not None
            and kind.group(1) != b"fitacf"
            and (b"/" in head or kind.group(1).decode() in PICKLED_TOPICS)
        ):
            topic = kind.group(1).decode()
            return Ignored(topic if topic in PICKLED_TOPICS else "other")
    raise UnknownEnvelope(f"a 2-frame message whose first frame is {_show(head)}")


def _show(head: bytes) -> str:
    return repr(head[:24]) + ("..." if len(head) > 24 else "")


def _legacy_json(frame: bytes, max_bytes: int) -> Decoded:
    # A zlib stream starts with CMF = 0x?8 (deflate) and a header check
    # (CMF * 256 + FLG) % 31 == 0; anything else is not this envelope at all.
    if len(frame) < 2 or frame[0] & 0x0F != 8 or (frame[0] << 8 | frame[1]) % 31:
        raise UnknownEnvelope(f"a single frame that is not zlib data: {_show(frame)}")
    text = inflate(frame, max_bytes, JSON)
    return Decoded(JSON, None, [record_from_json(text)])


# ---------------------------------------------------------------- decompress


def inflate(
    data: bytes, max_bytes: int, envelope: str | None = None, site: str | None = None
) -> bytes:
    """zlib-decompress `data`, refusing more than `max_bytes` of output, a
    truncated stream and bytes after its end. The output limit is given to
    the decompressor itself, which grows its buffer as it goes: a bomb costs
    at most `max_bytes` + 1 bytes before it is refused."""
    d = zlib_ng.decompressobj()  # zlib-ng: the same streams, inflated about a third faster
    try:
        out = d.decompress(data, max_bytes + 1)
    except (zlib.error, zlib_ng.error) as exc:
        raise EnvelopeError(f"bad zlib data: {exc}", envelope, "decompress", site) from None
    if len(out) > max_bytes:
        raise EnvelopeError(
            f"zlib data inflates past {max_bytes} bytes", envelope, "too_large", site
        )
    if not d.eof:
        raise EnvelopeError("truncated zlib data", envelope, "decompress", site)
    if d.unused_data:
        raise EnvelopeError(
            f"{len(d.unused_data)} bytes after the zlib data", envelope, "decompress", site
        )
    return out


def bunzip(
    data: bytes, max_bytes: int, envelope: str | None = None, site: str | None = None
) -> bytes:
    """bz2-decompress `data` (one stream), with the same limits as `inflate`."""
    d = bz2.BZ2Decompressor()
    parts: list[bytes] = []
    total = 0
    pending = data
    try:
        while not d.eof:
            chunk = d.decompress(pending, min(STEP, max_bytes + 1 - total))
            pending = b""
            parts.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise EnvelopeError(
                    f"bz2 data inflates past {max_bytes} bytes", envelope, "too_large", site
                )
            if not d.eof and d.needs_input:
                raise EnvelopeError("truncated bz2 data", envelope, "decompress", site)
    except OSError as exc:  # how bz2 reports corrupt data
        raise EnvelopeError(f"bad bz2 data: {exc}", envelope, "decompress", site) from None
    if d.unused_data:
        raise EnvelopeError(
            f"{len(d.unused_data)} bytes after the bz2 data", envelope, "decompress", site
        )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _dmap_records(
    data: bytes, max_records: int, envelope: str, site: str | None
) -> list[dict[str, Any]]:
    if not data:
        raise EnvelopeError("no DMAP record in the message", envelope, "dmap", site)
    records: list[dict[str, Any]] = []
    offset, end = 0, len(data)
    try:
        while offset < end:
            if len(records) == max_records:
                raise EnvelopeError(
                    f"more than {max_records} records in one message", envelope, "dmap", site
                )
            record, offset = dmap.decode_at(data, offset, lazy=True)
            records.append(record)
    except dmap.DmapError as exc:
        raise EnvelopeError(f"bad DMAP: {exc}", envelope, "dmap", site) from None
    return records


# ---------------------------------------------------------------- legacy JSON


def record_from_json(text: bytes) -> dict[str, Any]:
    """A FITACF record from the JSON older Borealis releases sent (numpy arrays
    as lists, numpy scalars as numbers). Known FITACF fields get their DMAP
    types (float32 values rounded as the DMAP path gives them); other fields
    keep what JSON says. Raises EnvelopeError on anything else."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EnvelopeError(f"bad JSON: {exc}", JSON, "json") from None
    if not isinstance(obj, dict):
        raise EnvelopeError(f"JSON record is a {type(obj).__name__}, not an object", JSON, "json")
    record: dict[str, Any] = {}
    try:
        with np.errstate(over="raise"):  # a float32 field holding 1e300: refused, not inf
            for name, value in obj.items():
                record[name] = _field(name, value)
    except EnvelopeError:
        raise
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
        raise EnvelopeError(f"JSON field: {exc}", JSON, "json") from None
    return record


def _field(name: str, value: Any) -> Any:
    if name in dmap.FITACF_ARRAY_TYPES:
        return _typed_array(name, value, _DTYPES[dmap.FITACF_ARRAY_TYPES[name]])
    if name in dmap.FITACF_SCALAR_TYPES:
        return _typed_scalar(name, value, dmap.FITACF_SCALAR_TYPES[name])
    if isinstance(value, list):
        return _typed_array(name, value, None)
    return _plain_scalar(name, value)


def _fail(message: str) -> EnvelopeError:
    return EnvelopeError(message, JSON, "json")


def _typed_scalar(name: str, value: Any, kind: int) -> Any:
    if kind == dmap.STRING:
        if not isinstance(value, str):
            raise _fail(f"{name} is not a string")
        return value
    dtype = _DTYPES[kind]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{name} is not a number")
    if dtype.kind == "f":
        return float(dtype.type(value)) if dtype.itemsize == 4 else float(value)
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise _fail(f"{name} is not an integer: {value!r}")
        value = int(value)
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise _fail(f"{name} = {value} does not fit {dtype.name}")
    return value


def _plain_scalar(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    raise _fail(f"{name} is a {type(value).__name__ if value is not None else 'null'}, not a value")


def _typed_array(name: str, value: Any, dtype: np.dtype | None) -> np.ndarray:
    if not isinstance(value, list):
        raise _fail(f"{name} is not an array")
    depth, probe = 0, value
    while isinstance(probe, list):
        depth += 1
        if depth > MAX_JSON_NDIM:
            raise _fail(f"{name} nests deeper than {MAX_JSON_NDIM} dimensions")
        probe = probe[0] if probe else None
    arr = np.array(value)
    if arr.dtype.kind not in "biufU" or arr.ndim != depth:  # ragged, nulls, mixed kinds
        raise _fail(f"{name} is not a regular array of numbers or strings")
    if dtype is None:
        if arr.dtype.kind == "b":
            return arr.astype(np.int8)
        if arr.dtype.kind == "f" or arr.dtype.kind == "U":
            return arr
        return arr.astype(np.int32) if _fits(arr, np.dtype(np.int32)) else arr.astype(np.int64)
    if arr.dtype.kind == "U":
        raise _fail(f"{name} holds strings, not numbers")
    if dtype.kind == "f":
        return arr.astype(dtype)
    if arr.dtype.kind == "f":
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr))):
            raise _fail(f"{name} holds values that are not integers")
    if arr.size and not _fits(arr, dtype):
        raise _fail(f"{name} holds values that do not fit {dtype.name}")
    return arr.astype(dtype)


def _fits(arr: np.ndarray, dtype: np.dtype) -> bool:
    if arr.size == 0:
        return True
    info = np.iinfo(dtype)
    lo, hi = arr.min(), arr.max()
    return bool(info.min <= lo and hi <= info.max)
