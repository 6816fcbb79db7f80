"""SuperDARN DMAP records: pure decoding and encoding over bytes, no I/O.

A stream is records back to back. Record header (little-endian int32): code
0x00010001, total size including the header, number of scalars, number of
arrays. A scalar is `name\\0`, a type byte and the value (strings are
NUL-terminated); an array is `name\\0`, a type byte, int32 ndim, ndim int32
extents (fastest-varying first) and the elements.

Decoding gives a mapping (a dict, or a read-only `Record`) of Python scalars
(int, float, str) and numpy arrays. The arrays are read-only views on the input
bytes (zero copy): they keep that
buffer alive, so `.copy()` one to keep it alone. Every count, length and type
code is checked before anything is allocated; any corruption raises
`DmapError` carrying the byte offset where it was found. A string value that is
not UTF-8 is no corruption (RST writes bytes): it is decoded with U+FFFD for
the bad bytes, the record is kept, and `replaced_strings(record)` says how
many strings were mended.

Speed: records from one source share their layout (same names, types and
ndims in the same order; only extents and string contents vary). After a
record is decoded the careful generic way, its layout is compiled into a regular
expression for the scalar block (names and type codes are matched literally,
string values are captured) plus struct formats that read the fixed-size
values between strings in one call each. Its arrays are walked once per
array-block length (a radar's beams have one per echo count); the walk gives a
plan, every header byte and where each array sits, and a later record of that
length is checked against the plan in one regex match. Such a record is a
read-only `Record` mapping whose arrays are made on first access. A record
that does not fit a known layout byte for byte goes through the generic
decoder, which either finds the corruption or yields a new layout. Both paths
give identical fields, values, types and order.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

RECORD_CODE = 0x00010001
HEADER = struct.Struct("<iiii")
HEADER_SIZE = HEADER.size

# Type codes.
CHAR, SHORT, INT, FLOAT, DOUBLE, STRING = 1, 2, 3, 4, 8, 9
LONG, UCHAR, USHORT, UINT, ULONG, MAP = 10, 16, 17, 18, 19, 255

_STRUCT_CHAR = {
    CHAR: "b",
    SHORT: "h",
    INT: "i",
    FLOAT: "f",
    DOUBLE: "d",
    LONG: "q",
    UCHAR: "B",
    USHORT: "H",
    UINT: "I",
    ULONG: "Q",
}
NUMERIC_TYPES = frozenset(_STRUCT_CHAR)
_SCALAR_SIZE = {t: struct.calcsize("<" + c) for t, c in _STRUCT_CHAR.items()}
_SCALAR_UNPACK = {t: struct.Struct("<" + c).unpack_from for t, c in _STRUCT_CHAR.items()}
_DTYPE = {t: np.dtype("<" + c) for t, c in _STRUCT_CHAR.items()}
_TYPE_OF_DTYPE = {(d.kind, d.itemsize): t for t, d in _DTYPE.items()}
_INT32 = struct.Struct("<i")
_UNPACK_INT32 = _INT32.unpack_from

# numpy refuses more dimensions than this; DMAP files in practice use 1 to 3.
MAX_NDIM = 32
# Smallest possible encodings, used to reject absurd counts before looping.
_MIN_SCALAR_BYTES = 3  # empty name, type byte, 1-byte value (or empty string)
_MIN_ARRAY_BYTES = 10  # empty name, type byte, ndim, one extent, no elements
# Largest product of the non-zero extents of an empty array (an int32 count).
_MAX_EMPTY_SHAPE = 0x7FFFFFFF

# FITACF field types (RST fitacf 2.x/3.x), used to encode plain Python values so
# that the bytes match what RST and darn-dmap's write_fitacf expect.
FITACF_SCALAR_TYPES: dict[str, int] = {
    "radar.revision.major": CHAR,
    "radar.revision.minor": CHAR,
    "origin.code": CHAR,
    "origin.time": STRING,
    "origin.command": STRING,
    "cp": SHORT,
    "stid": SHORT,
    "time.yr": SHORT,
    "time.mo": SHORT,
    "time.dy": SHORT,
    "time.hr": SHORT,
    "time.mt": SHORT,
    "time.sc": SHORT,
    "time.us": INT,
    "txpow": SHORT,
    "nave": SHORT,
    "atten": SHORT,
    "lagfr": SHORT,
    "smsep": SHORT,
    "ercod": SHORT,
    "stat.agc": SHORT,
    "stat.lopwr": SHORT,
    "noise.search": FLOAT,
    "noise.mean": FLOAT,
    "channel": SHORT,
    "bmnum": SHORT,
    "bmazm": FLOAT,
    "scan": SHORT,
    "offset": SHORT,
    "rxrise": SHORT,
    "intt.sc": SHORT,
    "intt.us": INT,
    "txpl": SHORT,
    "mpinc": SHORT,
    "mppul": SHORT,
    "mplgs": SHORT,
    "mplgexs": SHORT,
    "ifmode": SHORT,
    "nrang": SHORT,
    "frang": SHORT,
    "rsep": SHORT,
    "xcf": SHORT,
    "tfreq": SHORT,
    "mxpwr": INT,
    "lvmax": INT,
    "combf": STRING,
    "fitacf.revision.major": INT,
    "fitacf.revision.minor": INT,
    "noise.sky": FLOAT,
    "noise.lag0": FLOAT,
    "noise.vel": FLOAT,
    "tdiff": FLOAT,
    "widetx": SHORT,
    "algorithm": STRING,
}
FITACF_ARRAY_TYPES: dict[str, int] = {
    "ptab": SHORT,
    "ltab": SHORT,
    "pwr0": FLOAT,
    "slist": SHORT,
    "nlag": SHORT,
    "qflg": CHAR,
    "gflg": CHAR,
    "x_qflg": CHAR,
    "x_gflg": CHAR,
    **{
        name: FLOAT
        for name in (
            "p_l",
            "p_l_e",
            "p_s",
            "p_s_e",
            "v",
            "v_e",
            "w_l",
            "w_l_e",
            "w_s",
            "w_s_e",
            "sd_l",
            "sd_s",
            "sd_phi",
            "x_p_l",
            "x_p_l_e",
            "x_p_s",
            "x_p_s_e",
            "x_v",
            "x_v_e",
            "x_w_l",
            "x_w_l_e",
            "x_w_s",
            "x_w_s_e",
            "phi0",
            "phi0_e",
            "elv",
            "elv_fitted",
            "elv_error",
            "elv_low",
            "elv_high",
            "x_sd_l",
            "x_sd_s",
            "x_sd_phi",
        )
    },
}


class DmapError(ValueError):
    """Corrupt or unsupported DMAP bytes; `offset` is the absolute byte offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.message = message
        self.offset = offset


class DmapEncodeError(ValueError):
    """A record that cannot be written as DMAP (bad type, value out of range...)."""


# ---------------------------------------------------------------- decoding


def record_size(data: bytes, offset: int = 0) -> int | None:
    """Total size declared by the record header at `offset`, or None if the
    header is not complete yet. Raises DmapError on a header that cannot be right."""
    if len(data) - offset < HEADER_SIZE:
        return None
    code, size, nscal, narr = HEADER.unpack_from(data, offset)
    _check_header(code, size, nscal, narr, offset)
    return size


def decode_record(data: bytes, lazy: bool = False) -> Mapping[str, Any]:
    """Decode a buffer that holds exactly one record (a realtime packet)."""
    record, end = decode_at(data, 0, lazy)
    if end != len(data):
        raise DmapError(f"{len(data) - end} bytes after the record", end)
    return record


def decode_records(data: bytes, lazy: bool = False) -> list[Mapping[str, Any]]:
    """Decode a whole stream of records (a file's contents)."""
    return list(iter_records(data, lazy))


def iter_records(data: bytes, lazy: bool = False) -> Iterator[Mapping[str, Any]]:
    """Decode records one after another; raises DmapError at the first bad one
    (records already yielded stay valid)."""
    data = _as_bytes(data)
    offset, n = 0, len(data)
    while offset < n:
        record, offset = decode_at(data, offset, lazy)
        yield record


def decode_at(data: bytes, offset: int = 0, lazy: bool = False) -> tuple[Mapping[str, Any], int]:
    """Decode the record starting at `offset`; returns (record, offset after it).

    The record is a dict, or with `lazy` possibly a read-only `Record` whose
    arrays are made on first access (the same values; for hot paths that read
    few of the arrays)."""
    buf = _as_bytes(data)
    if offset < 0 or len(buf) - offset < HEADER_SIZE:
        raise DmapError(f"truncated record header ({max(len(buf) - offset, 0)} bytes)", offset)
    code, size, nscal, narr = HEADER.unpack_from(buf, offset)
    _check_header(code, size, nscal, narr, offset)
    end = offset + size
    if end > len(buf):
        raise DmapError(
            f"record size {size} is more than the {len(buf) - offset} bytes available", offset + 4
        )
    for layout in _LAYOUTS.get((nscal, narr), ()):
        record = layout.decode(buf, offset + HEADER_SIZE, end, lazy)
        if record is not None:
            return record, end
    record, signature = _decode_generic(buf, offset + HEADER_SIZE, end, nscal, narr)
    _remember(nscal, narr, signature)
    return record, end


def _as_bytes(data: Any) -> bytes:
    # Arrays are views on this buffer, so it must never change under them.
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"DMAP data must be bytes, not {type(data).__name__}")


def _check_header(code: int, size: int, nscal: int, narr: int, offset: int) -> None:
    if code != RECORD_CODE:
        raise DmapError(f"bad record code 0x{code & 0xFFFFFFFF:08x}", offset)
    if size < HEADER_SIZE:
        raise DmapError(f"record size {size} is smaller than its header", offset + 4)
    if nscal < 0:
        raise DmapError(f"negative scalar count {nscal}", offset + 8)
    if narr < 0:
        raise DmapError(f"negative array count {narr}", offset + 12)
    if nscal * _MIN_SCALAR_BYTES + narr * _MIN_ARRAY_BYTES > size - HEADER_SIZE:
        raise DmapError(
            f"{nscal} scalars and {narr} arrays cannot fit in a record of {size} bytes", offset + 8
        )


_NAMES: dict[bytes, str] = {}  # interned field names (bounded, see _name)


def _name(raw: bytes, at: int) -> str:
    name = _NAMES.get(raw)
    if name is None:
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DmapError("field name is not ASCII", at) from None
        if len(_NAMES) > 4096:  # hostile input must not grow this forever
            _NAMES.clear()
        _NAMES[raw] = name
    return name


def _string(raw: bytes, mended: list[int]) -> str:
    """A string value. RST writes bytes, not text: a byte that is not UTF-8
    (0xE9 in a `combf` comment, say) becomes U+FFFD and the record is kept,
    as RST's own client keeps it; `mended` counts such strings."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        mended.append(1)
        return raw.decode("utf-8", errors="replace")


class MendedRecord(dict):
    """A decoded record (a plain dict otherwise) in which `replaced` string
    values held bytes that are not UTF-8 and were decoded with U+FFFD."""

    replaced = 0


def replaced_strings(record: Mapping[str, Any]) -> int:
    """How many string values of a decoded record were not valid UTF-8."""
    return getattr(record, "replaced", 0)


def _decode_generic(
    buf: bytes, pos: int, end: int, nscal: int, narr: int
) -> tuple[dict[str, Any], tuple]:
    """The careful path: every byte checked. Returns the record and its layout
    signature ((name bytes, type) per scalar, (name bytes, type, ndim) per array)."""
    record: dict[str, Any] = {}
    mended: list[int] = []
    scalars: list[tuple[bytes, int]] = []
    arrays: list[tuple[bytes, int, int]] = []
    find = buf.find
    for _ in range(nscal):
        start = pos
        z = find(b"\0", pos, end)
        if z < 0:
            raise DmapError("scalar name runs past the end of the record", pos)
        raw = buf[pos:z]
        name = _name(raw, pos)
        if z + 1 >= end:
            raise DmapError(f"scalar {name!r} has no type byte", z + 1)
        kind = buf[z + 1]
        pos = z + 2
        if kind == STRING:
            z = find(b"\0", pos, end)
            if z < 0:
                raise DmapError(f"string scalar {name!r} runs past the end of the record", pos)
            value: Any = _string(buf[pos:z], mended)
            pos = z + 1
        else:
            size = _SCALAR_SIZE.get(kind)
            if size is None:
                raise DmapError(_bad_type(kind, name), z + 1)
            if pos + size > end:
                raise DmapError(f"scalar {name!r} runs past the end of the record", pos)
            value = _SCALAR_UNPACK[kind](buf, pos)[0]
            pos += size
        if name in record:
            raise DmapError(f"duplicate field {name!r}", start)
        record[name] = value
        scalars.append((raw, kind))
    for _ in range(narr):
        start = pos
        z = find(b"\0", pos, end)
        if z < 0:
            raise DmapError("array name runs past the end of the record", pos)
        raw = buf[pos:z]
        name = _name(raw, pos)
        if z + 6 > end:
            raise DmapError(f"array {name!r} header runs past the end of the record", z + 1)
        kind = buf[z + 1]
        if kind != STRING and kind not in _DTYPE:
            raise DmapError(_bad_type(kind, name), z + 1)
        ndim = _UNPACK_INT32(buf, z + 2)[0]
        pos = z + 6
        if ndim < 1 or ndim > MAX_NDIM:
            raise DmapError(f"array {name!r} has {ndim} dimensions", z + 2)
        if pos + 4 * ndim > end:
            raise DmapError(f"array {name!r} extents run past the end of the record", pos)
        extents = struct.unpack_from(f"<{ndim}i", buf, pos)
        for i, extent in enumerate(extents):
            if extent < 0:
                raise DmapError(f"array {name!r} has negative extent {extent}", pos + 4 * i)
        pos += 4 * ndim
        count = math.prod(extents)
        shape = extents[::-1]
        # An empty array must not declare giant other extents either (numpy
        # cannot even describe such a shape): bound the product of non-zero ones.
        if count == 0 and math.prod(e or 1 for e in extents) > _MAX_EMPTY_SHAPE:
            raise DmapError(
                f"array {name!r} declares absurd extents {list(extents)}", pos - 4 * ndim
            )
        if kind == STRING:
            value, pos = _string_array(buf, pos, end, count, shape, name, mended)
        else:
            dtype = _DTYPE[kind]
            nbytes = count * dtype.itemsize
            if pos + nbytes > end:
                raise DmapError(
                    f"array {name!r} of {count} elements runs past the end of the record", pos
                )
            value = np.frombuffer(buf, dtype, count, pos)
            if ndim > 1:
                value = value.reshape(shape)
            pos += nbytes
        if name in record:
            raise DmapError(f"duplicate field {name!r}", start)
        record[name] = value
        arrays.append((raw, kind, ndim))
    if pos != end:
        raise DmapError(f"{end - pos} unread bytes at the end of the record", pos)
    if mended:
        record = MendedRecord(record)
        record.replaced = len(mended)
    return record, (tuple(scalars), tuple(arrays))


def _string_array(
    buf: bytes, pos: int, end: int, count: int, shape: tuple[int, ...], name: str, mended: list[int]
) -> tuple[np.ndarray, int]:
    if count > end - pos:  # each element takes at least its NUL
        raise DmapError(f"string array {name!r} of {count} elements cannot fit", pos)
    items = []
    for _ in range(count):
        z = buf.find(b"\0", pos, end)
        if z < 0:
            raise DmapError(f"string array {name!r} runs past the end of the record", pos)
        items.append(_string(buf[pos:z], mended))
        pos = z + 1
    return np.array(items, dtype=str).reshape(shape), pos


def _bad_type(kind: int, name: str) -> str:
    if kind == MAP:
        return f"field {name!r} is a nested map (type 255), not supported"
    return f"field {name!r} has unknown type code {kind}"


# ------------------------------------------------------ compiled layouts

_ABSENT = object()


class Record(Mapping):
    """A record decoded through a known layout: the scalars at once, each
    array made on first access. Decoding has already checked every byte of the
    structure (names, types, extents, sizes), so an access only wraps bytes
    known to be there in a read-only numpy view, the same one the generic path
    gives. Most consumers read a handful of a FITACF record's ~40 arrays; the
    views nobody asks for are never made. Read-only, like the views."""

    __slots__ = ("_values", "_plan", "_buf", "_base", "_names")

    def __init__(
        self,
        values: dict[str, Any],
        plan: _ArrayPlan,
        buf: bytes,
        base: int,
        names: tuple[str, ...],
    ) -> None:
        self._values = values
        self._plan = plan
        self._buf = buf
        self._base = base
        self._names = names

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            pass
        value = self._values[name] = self._plan.view(
            name, self._buf, self._base
        )  # KeyError: no such field
        return value

    def get(self, name: str, default: Any = None) -> Any:
        value = self._values.get(name, _ABSENT)
        if value is not _ABSENT:
            return value
        return self[name] if name in self._plan.arrays else default

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._plan.arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Record({dict(self)!r})"


class _ArrayPlan:
    """Where a layout's arrays sit for one array-block length: per array
    (dtype, count, offset from the block's start, numpy shape or None for 1-D),
    and a regular expression of the whole block, every header byte (name,
    type, ndim, extents) literal and the elements skipped by count, so that a
    record of that length is checked against the plan in one match."""

    __slots__ = ("arrays", "regex")

    def __init__(self, arrays: dict[str, tuple], headers: list[tuple[bytes, int]]) -> None:
        self.arrays = arrays
        self.regex = re.compile(
            b"".join(
                re.escape(raw) + (b".{%d}" % nbytes if nbytes else b"") for raw, nbytes in headers
            ),
            re.DOTALL,
        )

    def fits(self, buf: bytes, start: int, end: int) -> bool:
        return self.regex.fullmatch(buf, start, end) is not None

    def view(self, name: str, buf: bytes, start: int) -> np.ndarray:
        """Array `name` of the block starting at `start` (a read-only view)."""
        dtype, count, at, shape = self.arrays[name]
        value = np.frombuffer(buf, dtype, count, start + at)
        return value if shape is None else value.reshape(shape)


_PLANS_PER_LAYOUT = (
    256  # array-block lengths remembered per layout (a radar's beams: one per echo count)
)


class _Layout:
    """One record layout compiled for speed; `decode` returns None (never
    raises) when the bytes do not follow this layout exactly."""

    __slots__ = ("names", "all_names", "regex", "runs", "nstrings", "arrays", "plans")

    def __init__(self, signature: tuple) -> None:
        scalars, arrays = signature
        self.names = tuple(raw.decode("ascii") for raw, _ in scalars)
        self.all_names = self.names + tuple(raw.decode("ascii") for raw, _, _ in arrays)
        pattern = []
        runs: list[list[str]] = [[]]  # struct formats of fixed-size runs between strings
        for raw, kind in scalars:
            head = raw + b"\0" + bytes([kind])
            pattern.append(re.escape(head))
            if kind == STRING:
                pattern.append(b"([^\x00]*)\x00")
                runs[-1].append(f"{len(head)}x")
                runs.append([])
            else:
                pattern.append(b".{%d}" % _SCALAR_SIZE[kind])
                runs[-1].append(f"{len(head)}x{_STRUCT_CHAR[kind]}")
        self.regex = re.compile(b"".join(pattern), re.DOTALL)
        self.runs = tuple(struct.Struct("<" + "".join(r)) for r in runs)
        self.nstrings = len(runs) - 1
        self.arrays = tuple(
            (
                raw + b"\0" + bytes([kind]) + _INT32.pack(ndim),
                raw.decode("ascii"),
                _DTYPE[kind],
                ndim,
                struct.Struct(f"<{ndim}i"),
            )
            for raw, kind, ndim in arrays
        )
        self.plans: dict[int, _ArrayPlan] = {}

    def decode(
        self, buf: bytes, pos: int, end: int, lazy: bool = True
    ) -> Record | dict[str, Any] | None:
        match = self.regex.match(buf, pos, end)
        if match is None:
            return None
        runs = self.runs
        values = runs[0].unpack_from(buf, pos)
        try:
            for i in range(1, self.nstrings + 1):
                values += (match.group(i).decode("utf-8"),)
                values += runs[i].unpack_from(buf, match.end(i) + 1)
        except UnicodeDecodeError:
            return None
        start = match.end()
        length = end - start
        plan = self.plans.get(length)
        if plan is None or not plan.fits(buf, start, end):
            plan = self._plan(buf, start, end)
            if plan is None:
                return None
            if len(self.plans) >= _PLANS_PER_LAYOUT:
                self.plans.clear()
            self.plans[length] = plan
        record = dict(zip(self.names, values, strict=True))
        if lazy:
            return Record(record, plan, buf, start, self.all_names)
        for name in plan.arrays:
            record[name] = plan.view(name, buf, start)
        return record

    def _plan(self, buf: bytes, start: int, end: int) -> _ArrayPlan | None:
        """Walk the array block header by header; None if it does not fit."""
        pos = start
        startswith = buf.startswith
        arrays: dict[str, tuple] = {}
        headers: list[tuple[bytes, int]] = []  # (header bytes, element bytes after it)
        for prefix, name, dtype, ndim, extents_struct in self.arrays:
            if not startswith(prefix, pos) or pos + len(prefix) + 4 * ndim > end:
                return None
            at = pos
            pos += len(prefix)
            extents = extents_struct.unpack_from(buf, pos)
            pos += 4 * ndim
            if min(extents) < 0:
                return None
            count = math.prod(extents)
            if count == 0 and math.prod(e or 1 for e in extents) > _MAX_EMPTY_SHAPE:
                return None
            nbytes = count * dtype.itemsize
            if pos + nbytes > end:
                return None
            headers.append((buf[at:pos], nbytes))
            arrays[name] = (dtype, count, pos - start, extents[::-1] if ndim > 1 else None)
            pos += nbytes
        if pos != end:
            return None
        return _ArrayPlan(arrays, headers)


# Shared by every caller; safe across threads too: a reader that misses a
# layout being replaced just takes the generic path.
_LAYOUTS: dict[tuple[int, int], list[_Layout]] = {}
_LAYOUTS_PER_KEY = 4
_MAX_KEYS = 64


def _remember(nscal: int, narr: int, signature: tuple) -> None:
    scalars, arrays = signature
    if any(kind == STRING for _, kind, _ in arrays):
        return  # string arrays are rare: always the generic path
    try:
        layout = _Layout(signature)
    except (re.error, UnicodeDecodeError, struct.error):
        return
    if len(_LAYOUTS) >= _MAX_KEYS and (nscal, narr) not in _LAYOUTS:
        _LAYOUTS.clear()
    known = _LAYOUTS.setdefault((nscal, narr), [])
    known.insert(0, layout)
    del known[_LAYOUTS_PER_KEY:]


# ---------------------------------------------------------------- encoding


def encode_records(
    records: list[Mapping[str, Any]], types: Mapping[str, int] | None = None
) -> bytes:
    return b"".join(encode_record(r, types) for r in records)


def encode_record(record: Mapping[str, Any], types: Mapping[str, int] | None = None) -> bytes:
    """Encode one record, fields in the mapping's order (scalars, then arrays).

    Types: a numpy scalar or array keeps its own dtype; a plain Python value
    takes its type from `types` (default: the FITACF field types), otherwise
    int → int32 (int64 if it does not fit), float → float64, str → string.
    Lists and tuples become arrays of the same rules.
    """
    if types is None:
        types = _FITACF_TYPES
    scalar_parts: list[bytes] = []
    array_parts: list[bytes] = []
    for name, value in record.items():
        if not isinstance(name, str):
            raise DmapEncodeError(f"field name {name!r} is not a string")
        try:
            raw = name.encode("ascii")
        except UnicodeEncodeError:
            raise DmapEncodeError(f"field name {name!r} is not ASCII") from None
        if b"\0" in raw:
            raise DmapEncodeError(f"field name {name!r} contains NUL")
        if isinstance(value, np.ndarray | list | tuple):
            array_parts.append(raw + b"\0" + _encode_array(name, value, types.get(name)))
        else:
            scalar_parts.append(raw + b"\0" + _encode_scalar(name, value, types.get(name)))
    body = b"".join(scalar_parts) + b"".join(array_parts)
    size = HEADER_SIZE + len(body)
    if size > 0x7FFFFFFF:
        raise DmapEncodeError(f"record of {size} bytes is too large")
    return HEADER.pack(RECORD_CODE, size, len(scalar_parts), len(array_parts)) + body


_FITACF_TYPES = {**FITACF_SCALAR_TYPES, **FITACF_ARRAY_TYPES}


def _encode_scalar(name: str, value: Any, kind: int | None) -> bytes:
    if isinstance(value, np.generic):
        kind = _type_of_dtype(name, value.dtype)
        value = value.item()
    elif isinstance(value, str):
        kind = STRING
    elif isinstance(value, bool):
        raise DmapEncodeError(f"scalar {name!r}: bool has no DMAP type")
    elif kind is None or kind == STRING:
        if isinstance(value, int):
            kind = INT if -(2**31) <= value < 2**31 else LONG
        elif isinstance(value, float):
            kind = DOUBLE
        else:
            raise DmapEncodeError(f"scalar {name!r}: cannot encode {type(value).__name__}")
    if kind == STRING:
        if not isinstance(value, str):
            raise DmapEncodeError(f"scalar {name!r}: expected a string")
        data = value.encode("utf-8")
        if b"\0" in data:
            raise DmapEncodeError(f"string {name!r} contains NUL")
        return bytes([STRING]) + data + b"\0"
    if kind in (FLOAT, DOUBLE) and isinstance(value, int):
        value = float(value)
    if not isinstance(value, int | float) or (
        kind not in (FLOAT, DOUBLE) and isinstance(value, float)
    ):
        raise DmapEncodeError(f"scalar {name!r}: {value!r} is not a valid type-{kind} value")
    try:
        return bytes([kind]) + struct.pack("<" + _STRUCT_CHAR[kind], value)
    except (struct.error, OverflowError) as exc:
        raise DmapEncodeError(
            f"scalar {name!r}: {value!r} does not fit type {kind}: {exc}"
        ) from None


def _encode_array(name: str, value: Any, kind: int | None) -> bytes:
    if not isinstance(value, np.ndarray):
        if kind == STRING or (value and all(isinstance(v, str) for v in value)):
            value = np.array(value, dtype=str)
        else:
            dtype = _DTYPE.get(kind) if kind is not None else None
            try:
                value = np.asarray(value, dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise DmapEncodeError(f"array {name!r}: {exc}") from None
    if value.ndim < 1 or value.ndim > MAX_NDIM:
        raise DmapEncodeError(f"array {name!r} has {value.ndim} dimensions")
    extents = value.shape[::-1]
    head = struct.pack(f"<i{value.ndim}i", value.ndim, *extents)
    if value.dtype.kind == "U":
        parts = []
        for item in value.ravel().tolist():
            data = item.encode("utf-8")
            if b"\0" in data:
                raise DmapEncodeError(f"string array {name!r} contains NUL")
            parts.append(data + b"\0")
        return bytes([STRING]) + head + b"".join(parts)
    code = _type_of_dtype(name, value.dtype)
    data = np.ascontiguousarray(value, dtype=_DTYPE[code]).tobytes()
    return bytes([code]) + head + data


def _type_of_dtype(name: str, dtype: np.dtype) -> int:
    code = _TYPE_OF_DTYPE.get((dtype.kind, dtype.itemsize))
    if code is None:
        raise DmapEncodeError(f"field {name!r}: dtype {dtype} has no DMAP type")
    return code
