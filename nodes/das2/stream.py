"""das2.2 streams: an incremental decoder and an encoder, pure functions over bytes.

A stream is a `[00]` stream header, then any mix of `[NN]` packet headers
(a later `[NN]` redefines id NN), `:NN:` data records (no length: the size
follows from the current `[NN]` header) and `[xx]` comments or exceptions.

Decoding yields events (`StreamHeader`, `PacketHeader`, `Data`, `Comment`,
`StreamException`). A `Data` event holds one numpy array per plane for a run of
consecutive records of one packet id: binary records are read in bulk through a
numpy structured dtype, never one record at a time. Values of `asciiN` planes
come out as float64, values of `timeN` planes as float64 in the plane's time
units (us2000 when the plane's units are not a time unit).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.parsers import expat

import numpy as np

from nodes.das2.timefmt import (
    TimeTextError,
    format_time_array,
    parse_time_array,
    time_units,
    units_to_us1970,
    us1970_to_units,
)

MAX_HEADER_BYTES = 999_999  # six decimal digits of length
MAX_NITEMS = 1_000_000
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_TEXT_WIDTH = 128
PLANE_KINDS = ("x", "y", "z", "yscan")


class Das2StreamError(ValueError):
    """A stream (or an event to encode) that is not valid das2.2.

    `offset` is the byte offset of the fault in the stream when decoding;
    `events` are the events decoded from the same `feed` call before the fault,
    so nothing already accepted is lost.
    """

    def __init__(self, message: str, offset: int | None = None, events: Sequence = ()) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")
        self.message = message
        self.offset = offset
        self.events = list(events)


# ---------------------------------------------------------------- value types


@dataclass(frozen=True)
class ValueType:
    """One das2 value type: `kind` is "real", "ascii" or "time"; `size` in bytes."""

    name: str
    kind: str
    size: int
    dtype: str  # numpy dtype of the field inside a record

    @property
    def native(self) -> np.dtype:
        """dtype of decoded values."""
        if self.kind == "real" and self.size == 4:
            return np.dtype(np.float32)
        return np.dtype(np.float64)


_REAL_TYPES = {
    "sun_real8": ">f8",
    "sun_real4": ">f4",
    "little_endian_real8": "<f8",
    "little_endian_real4": "<f4",
}
_TEXT_TYPE_RE = re.compile(r"(ascii|time)([1-9][0-9]{0,2})")


def value_type(name: str) -> ValueType:
    """Parse a type name (`sun_real8`, `little_endian_real4`, `ascii10`, `time24`, ...)."""
    if name in _REAL_TYPES:
        dt = _REAL_TYPES[name]
        return ValueType(name, "real", int(dt[-1]), dt)
    m = _TEXT_TYPE_RE.fullmatch(name)
    if m and int(m[2]) <= MAX_TEXT_WIDTH:
        width = int(m[2])
        return ValueType(name, m[1], width, f"S{width}")
    raise Das2StreamError(f"unknown value type {name[:40]!r}")


# ---------------------------------------------------------------- events

Properties = dict[str, tuple[str, str]]  # name -> (type, value text); untyped is "String"


@dataclass(frozen=True)
class Plane:
    """One plane of a packet. For `yscan`, `units` are the zUnits (of the values)."""

    kind: str
    type: ValueType
    name: str = ""
    units: str = ""
    nitems: int = 1
    y_units: str = ""
    y_tags: tuple[float, ...] | None = None
    y_tag_interval: float | None = None
    y_tag_min: float | None = None
    properties: Properties = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one record's values: () for single values, (nitems,) for a yscan."""
        return (self.nitems,) if self.kind == "yscan" else ()


@dataclass(frozen=True)
class StreamHeader:
    properties: Properties = field(default_factory=dict)
    version: str = "2.2"


@dataclass(frozen=True)
class PacketHeader:
    packet_id: int
    planes: tuple[Plane, ...]
    properties: Properties = field(default_factory=dict)

    @property
    def record_size(self) -> int:
        return sum(p.type.size * p.nitems for p in self.planes)

    def plane_index(self, name: str, kind: str | None = None) -> int:
        for i, p in enumerate(self.planes):
            if p.name == name and (kind is None or p.kind == kind):
                return i
        raise KeyError(name)


@dataclass(frozen=True, eq=False)
class Data:
    """A run of records of one packet id: `columns[i]` belongs to `header.planes[i]`,
    shape (n,) or (n, nitems) for a yscan."""

    header: PacketHeader
    columns: tuple[np.ndarray, ...]

    @property
    def packet_id(self) -> int:
        return self.header.packet_id

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str, kind: str | None = None) -> np.ndarray:
        return self.columns[self.header.plane_index(name, kind)]

    def same_as(self, other: object) -> bool:
        """Equal header and bit-equal values (NaN equals NaN)."""
        return (
            isinstance(other, Data)
            and self.header == other.header
            and len(self.columns) == len(other.columns)
            and all(
                a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
                for a, b in zip(self.columns, other.columns, strict=True)
            )
        )


@dataclass(frozen=True)
class Comment:
    """An out-of-band comment, e.g. `taskSize` / `taskProgress` for progress bars."""

    type: str
    value: str = ""
    source: str = ""


@dataclass(frozen=True)
class StreamException:
    """An in-stream exception: `NoDataInInterval`, `IllegalArgument`, `ServerError`."""

    type: str
    message: str = ""


Event = StreamHeader | PacketHeader | Data | Comment | StreamException


def same_events(a: Sequence[Event], b: Sequence[Event]) -> bool:
    """Event lists equal, comparing data values bit for bit."""
    if len(a) != len(b):
        return False
    return all(x.same_as(y) if isinstance(x, Data) else x == y for x, y in zip(a, b, strict=True))


def coalesce(events: Iterable[Event]) -> list[Event]:
    """Merge consecutive `Data` events of the same header into one (a canonical form:
    how records were grouped depends only on how the bytes arrived)."""
    out: list[Event] = []
    pending: list[Data] = []

    def flush() -> None:
        if len(pending) == 1:
            out.append(pending[0])
        elif pending:
            cols = tuple(
                np.concatenate([d.columns[i] for d in pending])
                for i in range(len(pending[0].columns))
            )
            out.append(Data(pending[0].header, cols))
        pending.clear()

    for ev in events:
        if isinstance(ev, Data):
            if pending and pending[0].header is not ev.header and pending[0].header != ev.header:
                flush()
            pending.append(ev)
        else:
            flush()
            out.append(ev)
    flush()
    return out


# ---------------------------------------------------------------- XML headers

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_PROP_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")


class _Element:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Element] = []


def _parse_xml(raw: bytes, offset: int) -> _Element:
    """Parse a header with expat and no namespace processing (property attributes
    look like `double:fill`, an undeclared prefix to a namespace-aware parser).
    DTDs are refused: das2 headers never need them, and entities are an attack."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    root: list[_Element] = []

    def refuse(*_args: object) -> None:
        raise Das2StreamError("DTD or entity declarations are not allowed in a header", offset)

    def start(tag: str, attrs: dict[str, str]) -> None:
        el = _Element(tag, attrs)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        if len(stack) > 8:
            raise Das2StreamError("header nested too deeply", offset)
        stack.append(el)

    def end(_tag: str) -> None:
        stack.pop()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise Das2StreamError(f"header is not well-formed XML ({exc})", offset) from None
    return root[0]


def _decode_properties(el: _Element, offset: int) -> Properties:
    props: Properties = {}
    for key, value in el.attrs.items():
        ptype, sep, name = key.partition(":")
        if not sep:
            ptype, name = "String", key
        if not _PROP_TYPE_RE.fullmatch(ptype) or not _NAME_RE.fullmatch(name):
            raise Das2StreamError(f"bad property name {key[:40]!r}", offset)
        if name in props:
            raise Das2StreamError(f"property {name!r} given twice", offset)
        props[name] = (ptype, value)
    return props


def _properties_of(el: _Element, offset: int) -> Properties:
    found = [c for c in el.children if c.tag == "properties"]
    if len(found) > 1:
        raise Das2StreamError(f"<{el.tag}> has more than one <properties>", offset)
    return _decode_properties(found[0], offset) if found else {}


def _float_attr(el: _Element, key: str, offset: int) -> float | None:
    if key not in el.attrs:
        return None
    try:
        value = float(el.attrs[key])
    except ValueError:
        raise Das2StreamError(f"{key} is not a number", offset) from None
    if not math.isfinite(value):
        raise Das2StreamError(f"{key} is not finite", offset)
    return value


def _decode_plane(el: _Element, offset: int) -> Plane:
    attrs = el.attrs
    if "type" not in attrs:
        raise Das2StreamError(f"<{el.tag}> plane without a type", offset)
    try:
        vtype = value_type(attrs["type"])
    except Das2StreamError as exc:
        raise Das2StreamError(exc.message, offset) from None
    props = _properties_of(el, offset)
    name = attrs.get("name", "")
    if el.tag != "yscan":
        return Plane(el.tag, vtype, name, attrs.get("units", ""), properties=props)
    try:
        nitems = int(attrs.get("nitems", ""))
    except ValueError:
        raise Das2StreamError("yscan nitems is not an integer", offset) from None
    if not 1 <= nitems <= MAX_NITEMS:
        raise Das2StreamError(f"yscan nitems {nitems} out of range", offset)
    tags = None
    if "yTags" in attrs:
        try:
            tags = tuple(float(t) for t in attrs["yTags"].split(","))
        except ValueError:
            raise Das2StreamError("yTags are not numbers", offset) from None
        if len(tags) != nitems or not all(math.isfinite(t) for t in tags):
            raise Das2StreamError("yTags do not give nitems finite numbers", offset)
    return Plane(
        "yscan",
        vtype,
        name,
        attrs.get("zUnits", ""),
        nitems,
        attrs.get("yUnits", ""),
        tags,
        _float_attr(el, "yTagInterval", offset),
        _float_attr(el, "yTagMin", offset),
        props,
    )


def _check_planes(planes: Sequence[Plane]) -> str | None:
    """Why a list of planes is not a valid packet layout, or None."""
    if not planes or planes[0].kind != "x":
        return "a packet must start with its <x> plane"
    if any(p.kind == "x" for p in planes[1:]):
        return "a packet has one <x> plane"
    names = [p.name for p in planes[1:]]
    if len(set(names)) != len(names):
        return "plane names in a packet must be unique"
    if sum(p.type.size * p.nitems for p in planes) > MAX_RECORD_BYTES:
        return "records larger than 16 MiB are refused"
    return None


def _decode_header(raw: bytes, offset: int, packet_id: int | None) -> Event:
    root = _parse_xml(raw, offset)
    if packet_id == 0:
        if root.tag != "stream":
            raise Das2StreamError("[00] must hold a <stream> header", offset)
        version = root.attrs.get("version", "2.2")
        if not version.startswith("2."):
            raise Das2StreamError(f"unsupported stream version {version[:20]!r}", offset)
        return StreamHeader(_properties_of(root, offset), version)
    if packet_id is not None:
        if root.tag != "packet":
            raise Das2StreamError(f"[{packet_id:02d}] must hold a <packet> header", offset)
        planes = tuple(_decode_plane(c, offset) for c in root.children if c.tag in PLANE_KINDS)
        problem = _check_planes(planes)
        if problem:
            raise Das2StreamError(problem, offset)
        return PacketHeader(packet_id, planes, _properties_of(root, offset))
    if root.tag == "comment":
        a = root.attrs
        return Comment(a.get("type", ""), a.get("value", ""), a.get("source", ""))
    if root.tag == "exception":
        return StreamException(root.attrs.get("type", ""), root.attrs.get("message", ""))
    raise Das2StreamError(f"[xx] holds <{root.tag[:20]}>, not a comment or exception", offset)


# ---------------------------------------------------------------- record layouts


@dataclass(frozen=True, eq=False)
class _Layout:
    """How one packet id's records (with their 4-byte `:NN:` tag) sit in memory."""

    header: PacketHeader
    dtype: np.dtype
    tag: int  # the `:NN:` tag as a little-endian uint32

    @classmethod
    def of(cls, header: PacketHeader) -> _Layout:
        fields = [("tag", "<u4")]
        for i, p in enumerate(header.planes):
            fields.append((f"p{i}", p.type.dtype, p.shape) if p.shape else (f"p{i}", p.type.dtype))
        tag = int.from_bytes(_data_tag(header.packet_id), "little")
        return cls(header, np.dtype(fields), tag)


def _data_tag(packet_id: int) -> bytes:
    return b":%02d:" % packet_id


def _decode_values(raw: np.ndarray, plane: Plane) -> np.ndarray:
    vt = plane.type
    if vt.kind == "real":
        return raw.astype(vt.native)
    if vt.kind == "ascii":
        try:
            return np.char.strip(raw).astype(np.float64)
        except ValueError:
            raise Das2StreamError(
                f"{vt.name} value of plane {plane.name!r} is not a number"
            ) from None
    try:
        us = parse_time_array(raw)
    except TimeTextError as exc:
        raise Das2StreamError(f"{vt.name} value of plane {plane.name!r}: {exc}") from None
    return us1970_to_units(us, time_units(plane.units))


# ---------------------------------------------------------------- decoder

_CHECK_WINDOW = 64  # records checked for their tag before doubling the window


_LENGTH_RE = re.compile(rb" *[0-9]+ *")


def header_length(field: bytes, at: int | None = None) -> int:
    """The six-byte length after a `[NN]` tag. Writers pad it with zeros
    (`000072`) or with spaces (`    72`, as das2C's own tools write and read it
    with `sscanf("%d")`); both are accepted. A sign, a byte that is neither a
    digit nor a space, or no digit at all is refused."""
    if not _LENGTH_RE.fullmatch(field):
        raise Das2StreamError(f"header length {field!r} is not a six-character number", at)
    return int(field)


class Decoder:
    """Incremental das2.2 decoder: `feed(chunk) -> events`, then `finish()`.

    Feeding the same bytes in any chunking gives the same events once
    consecutive `Data` events are merged (`coalesce`). After an error the
    decoder stays failed and re-raises it.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._base = 0  # stream offset of self._buf[0]
        self._layouts: dict[int, _Layout] = {}
        self._started = False
        self._error: Das2StreamError | None = None

    @property
    def consumed(self) -> int:
        """Stream bytes that formed complete packets so far."""
        return self._base

    @property
    def headers(self) -> dict[int, PacketHeader]:
        """Current packet header of each defined packet id."""
        return {pid: lay.header for pid, lay in self._layouts.items()}

    def feed(self, chunk: bytes) -> list[Event]:
        if self._error is not None:
            raise self._error
        buf = self._buf + bytes(chunk) if self._buf else bytes(chunk)
        events: list[Event] = []
        pos = 0
        try:
            pos = self._parse(buf, events)
        except Das2StreamError as exc:
            err = Das2StreamError(exc.message, exc.offset, events)
            self._error = err
            self._buf = b""
            raise err from None
        self._buf = buf[pos:]
        self._base += pos
        return events

    def finish(self) -> None:
        """Declare the end of the stream; an error if it stopped inside a packet."""
        if self._error is not None:
            raise self._error
        if self._buf:
            self._error = Das2StreamError("stream ends inside a packet", self._base)
            raise self._error
        if not self._started:
            self._error = Das2StreamError("stream ends before its [00] header", self._base)
            raise self._error

    def _parse(self, buf: bytes, events: list[Event]) -> int:
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            tag = buf[pos : pos + 4]
            at = self._base + pos
            if not self._started and tag != b"[00]":
                raise Das2StreamError("stream does not start with [00]", at)
            if tag[0] == 0x3A and tag[3] == 0x3A:  # ':NN:'
                used = self._data(buf, pos, tag, at, events)
                if used == 0:
                    break
                pos += used
                continue
            if tag[0] != 0x5B or tag[3] != 0x5D:  # '[..]'
                raise Das2StreamError(f"expected a packet tag, found {tag!r}", at)
            packet_id = self._header_id(tag, at)
            if packet_id == 0 and self._started:
                raise Das2StreamError("a second [00] stream header", at)
            if n - pos < 10:
                break
            length = header_length(buf[pos + 4 : pos + 10], at)
            if n - pos < 10 + length:
                break
            ev = _decode_header(buf[pos + 10 : pos + 10 + length], at, packet_id)
            if isinstance(ev, StreamHeader):
                self._started = True
            elif isinstance(ev, PacketHeader):
                self._layouts[ev.packet_id] = _Layout.of(ev)
            events.append(ev)
            pos += 10 + length
        if not self._started and n - pos > 0 and not b"[00]".startswith(buf[pos : pos + 4]):
            raise Das2StreamError("stream does not start with [00]", self._base + pos)
        return pos

    @staticmethod
    def _header_id(tag: bytes, at: int) -> int | None:
        inner = tag[1:3]
        if inner == b"xx":
            return None
        if not inner.isdigit():
            raise Das2StreamError(f"bad packet tag {tag!r}", at)
        return int(inner)

    def _data(self, buf: bytes, pos: int, tag: bytes, at: int, events: list[Event]) -> int:
        """Decode as many whole records of this id as are buffered; bytes used."""
        inner = tag[1:3]
        packet_id = int(inner) if inner.isdigit() else -1
        layout = self._layouts.get(packet_id)
        if layout is None:
            raise Das2StreamError(f"data tag {tag!r} for an undefined packet id", at)
        size = layout.dtype.itemsize
        avail = (len(buf) - pos) // size
        if avail == 0:
            return 0
        records = np.frombuffer(buf, dtype=layout.dtype, count=avail, offset=pos)
        count = _leading_tagged(records["tag"], layout.tag)
        records = records[:count]
        try:
            events.append(_decode_records(records, layout.header))
        except Das2StreamError:
            # find the first bad record, keep the good ones before it
            for k in range(count):
                try:
                    _decode_records(records[k : k + 1], layout.header)
                except Das2StreamError as exc:
                    if k:
                        events.append(_decode_records(records[:k], layout.header))
                    raise Das2StreamError(exc.message, at + k * size) from None
            raise
        return count * size


def _decode_records(records: np.ndarray, header: PacketHeader) -> Data:
    columns = tuple(_decode_values(records[f"p{i}"], p) for i, p in enumerate(header.planes))
    return Data(header, columns)


def _leading_tagged(tags: np.ndarray, tag: int) -> int:
    """How many leading records carry the right tag. The window doubles so that
    interleaved packet ids cost no more than a contiguous run."""
    done, window, n = 0, _CHECK_WINDOW, len(tags)
    while done < n:
        stop = min(n, done + window)
        bad = np.flatnonzero(tags[done:stop] != tag)
        if bad.size:
            return done + int(bad[0])
        done, window = stop, window * 2
    return n


def decode(data: bytes) -> list[Event]:
    """Decode a whole stream; consecutive data of one packet id come as one event."""
    dec = Decoder()
    events = dec.feed(data)
    dec.finish()
    return coalesce(events)


# ---------------------------------------------------------------- encoder

_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _attr(value: str) -> str:
    if _XML_BAD.search(value):
        raise Das2StreamError("text holds characters XML cannot carry")
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _number(value: float) -> str:
    """Shortest text that reads back as the same float."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _encode_properties(props: Properties) -> str:
    if not props:
        return ""
    parts = []
    for name, (ptype, value) in props.items():
        if not _NAME_RE.fullmatch(name) or not _PROP_TYPE_RE.fullmatch(ptype):
            raise Das2StreamError(f"bad property name {name[:40]!r} or type {ptype[:20]!r}")
        key = name if ptype == "String" else f"{ptype}:{name}"
        parts.append(f'{key}="{_attr(value)}"')
    return f"<properties {' '.join(parts)}/>"


def _frame(tag: bytes, xml: str) -> bytes:
    body = xml.encode("utf-8")
    if len(body) > MAX_HEADER_BYTES:
        raise Das2StreamError("header longer than 999999 bytes")
    return tag + b"%06d" % len(body) + body


def encode_stream_header(header: StreamHeader) -> bytes:
    props = _encode_properties(header.properties)
    return _frame(b"[00]", f'<stream version="{_attr(header.version)}">{props}</stream>')


def _encode_plane(p: Plane) -> str:
    if p.kind not in PLANE_KINDS:
        raise Das2StreamError(f"unknown plane kind {p.kind!r}")
    attrs = [f'type="{p.type.name}"']
    if p.name:  # name="" would read as no name to some and as "" to others: never written
        attrs.append(f'name="{_attr(p.name)}"')
    if p.kind == "yscan":
        if not 1 <= p.nitems <= MAX_NITEMS:
            raise Das2StreamError(f"yscan nitems {p.nitems} out of range")
        attrs.append(f'nitems="{p.nitems}"')
        attrs.append(f'zUnits="{_attr(p.units)}" yUnits="{_attr(p.y_units)}"')
        if p.y_tags is not None:
            if len(p.y_tags) != p.nitems or not all(math.isfinite(t) for t in p.y_tags):
                raise Das2StreamError("yTags must be nitems finite numbers")
            attrs.append(f'yTags="{",".join(_number(float(t)) for t in p.y_tags)}"')
        for key, v in (("yTagInterval", p.y_tag_interval), ("yTagMin", p.y_tag_min)):
            if v is not None:
                if not math.isfinite(v):
                    raise Das2StreamError(f"{key} must be finite")
                attrs.append(f'{key}="{_number(float(v))}"')
    else:
        if p.nitems != 1:
            raise Das2StreamError(f"a <{p.kind}> plane holds one value per record")
        attrs.append(f'units="{_attr(p.units)}"')
    props = _encode_properties(p.properties)
    inner = f">{props}</{p.kind}>" if props else "/>"
    return f"<{p.kind} {' '.join(attrs)}{inner}"


def encode_packet_header(header: PacketHeader) -> bytes:
    if not 1 <= header.packet_id <= 99:
        raise Das2StreamError(f"packet id {header.packet_id} is not 01..99")
    problem = _check_planes(header.planes)
    if problem:
        raise Das2StreamError(problem)
    body = _encode_properties(header.properties) + "".join(_encode_plane(p) for p in header.planes)
    return _frame(b"[%02d]" % header.packet_id, f"<packet>{body}</packet>")


def encode_comment(comment: Comment) -> bytes:
    c = comment
    xml = f'<comment type="{_attr(c.type)}" value="{_attr(c.value)}" source="{_attr(c.source)}"/>'
    return _frame(b"[xx]", xml)


def encode_exception(exc: StreamException) -> bytes:
    return _frame(b"[xx]", f'<exception type="{_attr(exc.type)}" message="{_attr(exc.message)}"/>')


def _separators(shape: tuple[int, ...], last: bool) -> np.ndarray:
    """One separator per value: a space, or a newline after the final value of a
    record when this plane ends the record (as das2 text writers do)."""
    sep = np.full(shape, " ", dtype="U1")
    if last and len(shape) == 2:
        sep[:, -1] = "\n"
    elif last:
        sep[:] = "\n"
    return sep.reshape(-1)


def _ascii_field(values: np.ndarray, width: int, last: bool) -> np.ndarray:
    """Floats as `%.Ne` text right-aligned in width-1 characters plus a separator."""
    room = width - 1
    flat = values.reshape(-1).astype(np.float64)
    text = np.char.mod(f"%.{max(0, room - 7)}e", flat)
    too_long = np.char.str_len(text) > room
    for digits in range(max(0, room - 8), -1, -1):  # three-digit exponents need less precision
        if not too_long.any():
            break
        text[too_long] = np.char.mod(f"%.{digits}e", flat[too_long])
        too_long = np.char.str_len(text) > room
    if too_long.any():
        raise Das2StreamError(f"a value does not fit in ascii{width}")
    out = np.char.add(np.char.rjust(text, room), _separators(values.shape, last))
    return out.astype(f"S{width}").reshape(values.shape)


def _time_field(values: np.ndarray, plane: Plane, last: bool) -> np.ndarray:
    width = plane.type.size
    try:
        us = units_to_us1970(values.reshape(-1), time_units(plane.units))
        text = format_time_array(us, width - 1)
    except TimeTextError as exc:
        raise Das2StreamError(f"plane {plane.name!r}: {exc}") from None
    out = np.char.add(np.char.ljust(text, width - 1), _separators(values.shape, last))
    return out.astype(f"S{width}").reshape(values.shape)


def encode_records(header: PacketHeader, columns: Sequence[np.ndarray]) -> bytes:
    """Records of one packet id, `columns[i]` for `header.planes[i]`."""
    if len(columns) != len(header.planes):
        raise Das2StreamError("one column per plane is needed")
    n = len(columns[0]) if len(columns) else 0
    layout = _Layout.of(header)
    out = np.empty(n, dtype=layout.dtype)
    out["tag"] = layout.tag
    last = len(header.planes) - 1
    for i, (plane, col) in enumerate(zip(header.planes, columns, strict=True)):
        col = np.asarray(col)
        want = (n, *plane.shape)
        if col.shape != want:
            if col.size != math.prod(want):
                raise Das2StreamError(f"column {i} has shape {col.shape}, not {want}")
            col = col.reshape(want)
        if plane.type.kind == "real":
            out[f"p{i}"] = col
        elif plane.type.kind == "ascii":
            out[f"p{i}"] = _ascii_field(col, plane.type.size, i == last)
        else:
            out[f"p{i}"] = _time_field(col, plane, i == last)
    return out.tobytes()


class Encoder:
    """Encodes events in order, checking that the stream stays valid: the stream
    header first and only once, data only for the current header of its id."""

    def __init__(self) -> None:
        self._started = False
        self._headers: dict[int, PacketHeader] = {}

    def encode(self, event: Event) -> bytes:
        if isinstance(event, StreamHeader):
            if self._started:
                raise Das2StreamError("a stream has one stream header")
            self._started = True
            return encode_stream_header(event)
        if not self._started:
            raise Das2StreamError("the stream header must come first")
        if isinstance(event, PacketHeader):
            out = encode_packet_header(event)
            self._headers[event.packet_id] = event
            return out
        if isinstance(event, Data):
            current = self._headers.get(event.packet_id)
            if current is None or (current is not event.header and current != event.header):
                raise Das2StreamError(f"data for packet {event.packet_id} before its header")
            return encode_records(event.header, event.columns)
        if isinstance(event, Comment):
            return encode_comment(event)
        if isinstance(event, StreamException):
            return encode_exception(event)
        raise Das2StreamError(f"not a das2 event: {type(event).__name__}")

    def encode_all(self, events: Iterable[Event]) -> bytes:
        return b"".join(self.encode(ev) for ev in events)


def encode(events: Iterable[Event]) -> bytes:
    """Encode a whole stream."""
    return Encoder().encode_all(events)


# ---------------------------------------------------------------- properties


def property_value(props: Properties, name: str) -> str | float | bool | None:
    """A property's value typed by its das2 type: numbers for `double`/`int`/
    `float`, booleans for `boolean`, text otherwise (a `Datum` stays "60 s")."""
    if name not in props:
        return None
    ptype, text = props[name]
    if ptype in ("double", "float", "int", "long"):
        try:
            return float(text)
        except ValueError:
            return None
    if ptype == "boolean":
        return text.strip().lower() == "true"
    return text
