"""Time-bin reducer for das2 streams, in numpy.

Bins are `[origin + k*width, origin + (k+1)*width)`: aligned to a fixed origin
(UNIX 0 by default), so blocks reduced separately line up with each other and
with the mesh's `min_stride` bins. For each packet id and each plane (each
yscan item on its own) a bin gives the mean of the valid values (not NaN and
not the plane's fill value); a bin with no valid value gives the fill value.
Optionally each plane gets `<name>.min` and `<name>.max` planes beside it.
The output x of a bin is its centre.

A stream reduced before (a cache block) can be reduced again to a coarser
width: planes marked `operation = BIN_MIN` / `BIN_MAX` are combined by their
minimum / maximum, not averaged, and no second set of min/max planes is added.
Means of means are not weighted by how many samples each held.

Input must be in time order from one batch to the next for one output record
per bin; inside a batch any order is fine. A late record for a bin already
written produces a second record for that bin rather than being lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    Decoder,
    Encoder,
    Event,
    PacketHeader,
    Plane,
    Properties,
    StreamException,
    StreamHeader,
    value_type,
)
from nodes.das2.timefmt import seconds_per_unit, time_units, unix_to_units

DEFAULT_FILL = -1e31
_REAL8 = value_type("little_endian_real8")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def resolution_datum(width: float, x_units: str = "s") -> str:
    """A bin width as a das2 Datum text, e.g. "60 s"."""
    return f"{_fmt(width)} {x_units}".strip()


def plane_fill(plane: Plane, stream_properties: Properties | None = None) -> float:
    """A plane's fill value: its own `fill` (or `zFill` for a yscan, `yFill` for
    a y), else the stream's, else das2's customary -1e31."""
    names = ("fill", "zFill") if plane.kind == "yscan" else ("fill", "yFill")
    for props in (plane.properties, stream_properties or {}):
        for name in names:
            if name in props:
                text = props[name][1].split()
                try:
                    return float(text[0]) if text else DEFAULT_FILL
                except ValueError:
                    return DEFAULT_FILL
    return DEFAULT_FILL


@dataclass
class _Bins:
    """Aggregates of some bins of one packet id: per value plane j, arrays of shape
    (k,) or (k, nitems)."""

    bins: np.ndarray
    sums: list[np.ndarray]
    counts: list[np.ndarray]
    mins: list[np.ndarray]
    maxs: list[np.ndarray]

    def take(self, sel: np.ndarray | slice) -> _Bins:
        return _Bins(
            self.bins[sel],
            [a[sel] for a in self.sums],
            [a[sel] for a in self.counts],
            [a[sel] for a in self.mins],
            [a[sel] for a in self.maxs],
        )


def _aggregate(
    bins: np.ndarray, values: list[np.ndarray], fills: list[float], minmax: bool
) -> _Bins:
    """Per-bin sums, counts, minima and maxima of one batch (at least one record)."""
    step = np.diff(bins)
    if (step < 0).any():
        order = np.argsort(bins, kind="stable")
        bins = bins[order]
        values = [v[order] for v in values]
        step = np.diff(bins)
    starts = np.flatnonzero(step)
    starts += 1
    starts = np.concatenate(([0], starts)).astype(np.intp)
    sizes = np.diff(np.append(starts, bins.size))
    out = _Bins(bins[starts], [], [], [], [])
    for v, fill in zip(values, fills, strict=True):
        bad = np.isnan(v)
        bad |= v == fill
        if not bad.any():  # the usual case: no masking needed
            out.sums.append(np.add.reduceat(v, starts, axis=0, dtype=np.float64))
            # each plane gets its own counts array: merging adds into it in place
            out.counts.append(
                sizes.copy() if v.ndim == 1 else np.repeat(sizes[:, None], v.shape[1], 1)
            )
            if minmax:
                out.mins.append(np.minimum.reduceat(v, starts, axis=0).astype(np.float64))
                out.maxs.append(np.maximum.reduceat(v, starts, axis=0).astype(np.float64))
            continue
        valid = ~bad
        out.sums.append(np.add.reduceat(np.where(valid, v, 0), starts, axis=0, dtype=np.float64))
        out.counts.append(np.add.reduceat(valid, starts, axis=0, dtype=np.int64))
        if minmax:
            lo = np.where(valid, v, np.inf)
            hi = np.where(valid, v, -np.inf)
            out.mins.append(np.minimum.reduceat(lo, starts, axis=0).astype(np.float64))
            out.maxs.append(np.maximum.reduceat(hi, starts, axis=0).astype(np.float64))
    return out


def _merge(a: _Bins, b: _Bins, minmax: bool) -> _Bins:
    """Two aggregates into one over the union of their bins (sorted); b is consumed."""
    if a.bins.size and b.bins.size and a.bins[-1] <= b.bins[0]:
        # time-ordered input: at most the edge bin is shared, no general merge needed
        return _merge_ordered(a, b, minmax)
    bins = np.concatenate([a.bins, b.bins])
    uniq, inverse = np.unique(bins, return_inverse=True)
    k = len(uniq)

    def combine(xs: np.ndarray, ys: np.ndarray, ufunc: np.ufunc, start: float) -> np.ndarray:
        both = np.concatenate([xs, ys])
        out = np.full((k,) + both.shape[1:], start, dtype=both.dtype)
        ufunc.at(out, inverse, both)
        return out

    merged = _Bins(uniq, [], [], [], [])
    for j in range(len(a.sums)):
        merged.sums.append(combine(a.sums[j], b.sums[j], np.add, 0.0))
        merged.counts.append(combine(a.counts[j], b.counts[j], np.add, 0))
        if minmax:
            merged.mins.append(combine(a.mins[j], b.mins[j], np.minimum, np.inf))
            merged.maxs.append(combine(a.maxs[j], b.maxs[j], np.maximum, -np.inf))
    return merged


def _merge_ordered(a: _Bins, b: _Bins, minmax: bool) -> _Bins:
    if a.bins[-1] < b.bins[0]:
        return _Bins(
            np.concatenate([a.bins, b.bins]),
            [np.concatenate(p) for p in zip(a.sums, b.sums, strict=True)],
            [np.concatenate(p) for p in zip(a.counts, b.counts, strict=True)],
            [np.concatenate(p) for p in zip(a.mins, b.mins, strict=True)],
            [np.concatenate(p) for p in zip(a.maxs, b.maxs, strict=True)],
        )
    # the shared edge bin: fold a's last bin into b's first (b is fresh, owned here)
    for j in range(len(b.sums)):
        b.sums[j][0] += a.sums[j][-1]
        b.counts[j][0] += a.counts[j][-1]
        if minmax:
            b.mins[j][0] = np.minimum(b.mins[j][0], a.mins[j][-1])
            b.maxs[j][0] = np.maximum(b.maxs[j][0], a.maxs[j][-1])
    head = a.take(slice(0, -1))
    return _merge_ordered(head, b, minmax) if head.bins.size else b


def plane_operation(plane: Plane) -> str:
    """How a plane's values combine in a bin: "min" / "max" for the extreme planes
    of an already reduced stream, "mean" otherwise."""
    op = plane.properties.get("operation", ("", ""))[1]
    return {"BIN_MIN": "min", "BIN_MAX": "max"}.get(op, "mean")


class _PacketReducer:
    """State of one packet id: its headers in and out, the open bin."""

    def __init__(
        self,
        header: PacketHeader,
        width: float,
        origin: float,
        minmax: bool,
        stream_properties: Properties,
    ) -> None:
        x = header.planes[0]
        if x.type.kind == "time" or seconds_per_unit(x.units) is not None:
            units = time_units(x.units)  # the units decoded time values are in
            self.width = width / seconds_per_unit(units)
            self.origin = unix_to_units(origin, units)
        else:  # not a time axis: width and origin are in x units
            self.width, self.origin = width, origin
        self.header_in = header
        self.value_planes = header.planes[1:]
        self.operations = [plane_operation(p) for p in self.value_planes]
        reduced_before = any(op != "mean" for op in self.operations)
        self.add_planes = minmax and not reduced_before  # min/max planes of our own
        self.minmax = minmax or reduced_before  # whether bins track extremes
        self.fills = [plane_fill(p, stream_properties) for p in self.value_planes]
        self.header_out = _output_header(header, self.add_planes)
        self.pending: _Bins | None = None
        self.frontier: int | None = None

    def feed(self, data: Data) -> Data | None:
        x = np.asarray(data.columns[0], dtype=np.float64)
        values = list(data.columns[1:])
        if not (np.isfinite(x.min()) and np.isfinite(x.max())):
            keep = np.isfinite(x)  # records without a time cannot be binned
            x = x[keep]
            values = [v[keep] for v in values]
        if x.size == 0:
            return None
        reach = max(abs(x.min() - self.origin), abs(x.max() - self.origin)) / self.width
        if not reach < 2**62:
            raise Das2StreamError("x values too far from the bin origin to bin")
        bins = x - self.origin
        bins /= self.width
        np.floor(bins, out=bins)
        agg = _aggregate(bins.astype(np.int64), values, self.fills, self.minmax)
        if self.pending is not None:
            agg = _merge(self.pending, agg, self.minmax)
        top = int(agg.bins[-1])
        self.frontier = top if self.frontier is None else max(self.frontier, top)
        done = agg.bins < self.frontier
        self.pending = agg.take(~done) if not done.all() else None
        return self._records(agg.take(done)) if done.any() else None

    def flush(self) -> Data | None:
        pending, self.pending = self.pending, None
        return self._records(pending) if pending is not None else None

    def _records(self, agg: _Bins) -> Data:
        centres = self.origin + (agg.bins.astype(np.float64) + 0.5) * self.width
        columns = [centres]
        for j, plane in enumerate(self.value_planes):
            fill = self.fills[j]
            counts = agg.counts[j]
            op = self.operations[j]
            if op == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = np.where(counts > 0, agg.sums[j] / np.maximum(counts, 1), fill)
            else:
                value = np.where(counts > 0, agg.mins[j] if op == "min" else agg.maxs[j], fill)
            columns.append(value.astype(_output_plane(plane).type.native))
            if self.add_planes:
                for extreme in (agg.mins[j], agg.maxs[j]):
                    columns.append(np.where(counts > 0, extreme, fill).astype(plane.type.native))
        return Data(self.header_out, tuple(columns))


def _output_plane(plane: Plane) -> Plane:
    """Averages are numbers: text planes become 8-byte reals in the same units."""
    if plane.type.kind == "real":
        return plane
    units = time_units(plane.units) if plane.type.kind == "time" else plane.units
    return replace(plane, type=_REAL8, units=units)


def _output_header(header: PacketHeader, minmax: bool) -> PacketHeader:
    planes = [_output_plane(p) for p in header.planes]
    if not minmax:
        return PacketHeader(header.packet_id, tuple(planes), header.properties)
    taken = {p.name for p in planes}
    out = [planes[0]]
    for plane in planes[1:]:
        out.append(plane)
        for op, suffix in (("BIN_MIN", "min"), ("BIN_MAX", "max")):
            name = f"{plane.name}.{suffix}" if plane.name else suffix
            while name in taken:
                name += "_"
            taken.add(name)
            props: Properties = dict(plane.properties)
            props["operation"] = ("String", op)
            props["source"] = ("String", plane.name)
            out.append(replace(plane, name=name, properties=props))
    return PacketHeader(header.packet_id, tuple(out), header.properties)


class Reducer:
    """Reduces decoded events into binned events, incrementally.

    `width` is the bin width in seconds when x is a time (else in x units);
    `origin` in UNIX seconds when x is a time (else in x units).
    """

    def __init__(self, width: float, origin: float = 0.0, minmax: bool = False) -> None:
        if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
            raise ValueError(f"bin width must be a positive number, got {width!r}")
        if not (isinstance(origin, int | float) and math.isfinite(origin)):
            raise ValueError(f"bin origin must be a finite number, got {origin!r}")
        self.width = float(width)
        self.origin = float(origin)
        self.minmax = minmax
        self._packets: dict[int, _PacketReducer] = {}
        self._stream_properties: Properties = {}

    def feed(self, events: Iterable[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, Data):
                state = self._packets.get(ev.packet_id)
                if (
                    state is None
                    or state.header_in is not ev.header
                    and state.header_in != ev.header
                ):
                    raise Das2StreamError(f"data for packet {ev.packet_id} before its header")
                if len(ev):
                    reduced = state.feed(ev)
                    if reduced is not None:
                        out.append(reduced)
            elif isinstance(ev, PacketHeader):
                old = self._packets.pop(ev.packet_id, None)
                if old is not None:  # a redefinition closes the bins of the old layout
                    self._emit(old.flush(), out)
                state = _PacketReducer(
                    ev, self.width, self.origin, self.minmax, self._stream_properties
                )
                self._packets[ev.packet_id] = state
                out.append(state.header_out)
            elif isinstance(ev, StreamHeader):
                self._stream_properties = ev.properties
                out.append(self._stream_header(ev))
            elif isinstance(ev, StreamException):
                out.extend(self.flush())  # what came before the error is still good data
                out.append(ev)
            elif isinstance(ev, Comment):
                out.append(ev)
        return out

    def flush(self) -> list[Event]:
        """Close every open bin (end of stream)."""
        out: list[Event] = []
        for state in self._packets.values():
            self._emit(state.flush(), out)
        return out

    @staticmethod
    def _emit(data: Data | None, out: list[Event]) -> None:
        if data is not None:
            out.append(data)

    def _stream_header(self, header: StreamHeader) -> StreamHeader:
        props = dict(header.properties)
        datum = resolution_datum(self.width)
        props["xCacheResolution"] = ("Datum", datum)
        props["xTagWidth"] = ("Datum", datum)
        return StreamHeader(props, header.version)


class StreamReducer:
    """Bytes in, bytes out: decode, reduce, encode. `feed(chunk) -> bytes`, then
    `finish() -> bytes`. Decoder errors propagate as `Das2StreamError` after the
    output for everything before the fault was returned by earlier calls or is
    available as `err.output`."""

    def __init__(self, width: float, origin: float = 0.0, minmax: bool = False) -> None:
        self._decoder = Decoder()
        self._reducer = Reducer(width, origin, minmax)
        self._encoder = Encoder()

    def feed(self, chunk: bytes) -> bytes:
        try:
            events = self._decoder.feed(chunk)
        except Das2StreamError as exc:
            exc.output = self._encoder.encode_all(self._reducer.feed(exc.events))
            raise
        return self._encoder.encode_all(self._reducer.feed(events))

    def finish(self) -> bytes:
        self._decoder.finish()
        return self._encoder.encode_all(self._reducer.flush())


def reduce_stream(data: bytes, width: float, origin: float = 0.0, minmax: bool = False) -> bytes:
    """Reduce a whole stream."""
    r = StreamReducer(width, origin, minmax)
    return r.feed(data) + r.finish()
