"""Time-bin reducer for das2 streams, in numpy (das2C's `das2_bin_avgsec` and
`das2_bin_peakavgsec`, with bins aligned to a fixed origin).

Bins are `[origin + k*width, origin + (k+1)*width)`: aligned to a fixed origin
(UNIX 0 by default), so blocks reduced separately line up with each other and
with the mesh's `min_stride` bins. The output x of a bin is its centre.

Output planes, as das2C writes them: each value plane P keeps its name and
becomes the bin average, marked `operation="BIN_AVG"` and `source="P"`; with
`minmax`, planes `P.min` (`BIN_MIN`) and `P.max` (`BIN_MAX`), both with
`source="P"`, follow all the averages, in plane order. A bin without a valid
value gives the plane's fill value in all three. Valid means not fill (within
das2C's relative tolerance, `fill.py`) and not NaN: unlike das2C, a NaN is
skipped rather than turning the bin into NaN. Every plane gets a name
(`plane_names`): das2C's dataset builder cannot tell unnamed planes apart.

Partial aggregates (`partial=True`, what cache blocks hold): besides the
above, `P.sum` (`BIN_SUM`) and `P.count` (`BIN_COUNT`), float64, the exact
sum and number of valid values of each bin, and always `P.min` / `P.max`.
Reducing such a stream again adds sums and counts, so a coarser answer made
from blocks is the same mean as the reduction of the raw stream (the sums
only associate differently: float rounding), fill records included. Min and
max planes combine by min and max. A stream reduced by das2C (averages and
extremes, no sums) reduces again as a mean of means, extremes kept extreme.

Sums are float64 (das2C's too), added in record order within a bin.

Input must be in time order from one batch to the next for one output record
per bin; inside a batch any order is fine. A late record for a bin already
written produces a second record for that bin rather than being lost.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from nodes.das2.fill import DEFAULT_FILL, fill_band, fill_mask
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

__all__ = [
    "DEFAULT_FILL",
    "Reducer",
    "StreamReducer",
    "plane_fill",
    "plane_names",
    "plane_operation",
    "reduce_stream",
    "resolution_datum",
]

_REAL8 = value_type("little_endian_real8")
BIN_AVG, BIN_MIN, BIN_MAX, BIN_SUM, BIN_COUNT = (
    "BIN_AVG",
    "BIN_MIN",
    "BIN_MAX",
    "BIN_SUM",
    "BIN_COUNT",
)
_PARTS = (BIN_MIN, BIN_MAX, BIN_SUM, BIN_COUNT)  # planes that belong to another's bins


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


def _operation(plane: Plane) -> str:
    return plane.properties.get("operation", ("", ""))[1]


def plane_operation(plane: Plane) -> str:
    """What a plane holds: "mean" for values and averages, "min" / "max" for
    the extremes of a reduced stream, "sum" / "count" for partial aggregates."""
    return {BIN_MIN: "min", BIN_MAX: "max", BIN_SUM: "sum", BIN_COUNT: "count"}.get(
        _operation(plane), "mean"
    )


def plane_names(header: PacketHeader) -> PacketHeader:
    """The header with every plane named: an unnamed x is `time` (or `x` when
    not a time), any other unnamed plane takes its kind (`y`, `z`, `yscan`),
    made unique with a suffix. Named planes are left alone."""
    if all(p.name for p in header.planes):
        return header
    taken = {p.name for p in header.planes if p.name}
    planes = []
    for p in header.planes:
        if not p.name:
            if p.kind == "x":
                is_time = p.type.kind == "time" or seconds_per_unit(p.units) is not None
                base = "time" if is_time else "x"
            else:
                base = p.kind
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            p = replace(p, name=name)
        planes.append(p)
    return PacketHeader(header.packet_id, tuple(planes), header.properties)


# ---------------------------------------------------------------- plane groups


@dataclass(frozen=True)
class _Group:
    """One output value: its main plane and the parts that belong to it
    (indices into the value planes, i.e. planes[1:])."""

    main: int
    kind: str  # "mean"; "min" / "max" for a lone extreme plane
    sum: int | None = None
    count: int | None = None
    lo: int | None = None
    hi: int | None = None

    @property
    def partial(self) -> bool:
        return self.sum is not None and self.count is not None


def _groups(planes: Sequence[Plane]) -> list[_Group]:
    """Value planes grouped by `source`: parts attach to the plane they name."""
    mains = {}
    for i, p in enumerate(planes):
        if _operation(p) not in _PARTS and p.name and p.name not in mains:
            mains[p.name] = i
    parts: dict[int, dict[str, int]] = {}
    lone = []
    for i, p in enumerate(planes):
        op = _operation(p)
        if op not in _PARTS:
            continue
        source = p.properties.get("source", ("", ""))[1]
        owner = mains.get(source)
        key = {BIN_MIN: "lo", BIN_MAX: "hi", BIN_SUM: "sum", BIN_COUNT: "count"}[op]
        if owner is None or key in parts.setdefault(owner, {}):
            lone.append(i)
        else:
            parts[owner][key] = i
    for g in parts.values():
        if ("sum" in g) != ("count" in g):  # half a partial aggregate is not one
            lone.append(g.pop("sum") if "sum" in g else g.pop("count"))
    out = []
    for i, p in enumerate(planes):
        op = _operation(p)
        if op not in _PARTS:
            out.append(_Group(i, "mean", **parts.get(i, {})))
        elif i in lone:
            out.append(_Group(i, {BIN_MIN: "min", BIN_MAX: "max"}.get(op, "mean")))
    return out


# ---------------------------------------------------------------- aggregates


@dataclass
class _Bins:
    """Aggregates of some bins of one packet id: per group, arrays of shape
    (k,) or (k, nitems). `mins`/`maxs` are empty lists when not tracked."""

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


def _merge(a: _Bins, b: _Bins) -> _Bins:
    """Two aggregates into one over the union of their bins (sorted); b is consumed."""
    if a.bins.size and b.bins.size and a.bins[-1] <= b.bins[0]:
        # time-ordered input: at most the edge bin is shared, no general merge needed
        return _merge_ordered(a, b)
    bins = np.concatenate([a.bins, b.bins])
    uniq, inverse = np.unique(bins, return_inverse=True)
    k = len(uniq)

    def combine(xs: np.ndarray, ys: np.ndarray, ufunc: np.ufunc, start: float) -> np.ndarray:
        both = np.concatenate([xs, ys])
        out = np.full((k,) + both.shape[1:], start, dtype=both.dtype)
        ufunc.at(out, inverse, both)
        return out

    return _Bins(
        uniq,
        [combine(x, y, np.add, 0.0) for x, y in zip(a.sums, b.sums, strict=True)],
        [combine(x, y, np.add, 0) for x, y in zip(a.counts, b.counts, strict=True)],
        [combine(x, y, np.minimum, np.inf) for x, y in zip(a.mins, b.mins, strict=True)],
        [combine(x, y, np.maximum, -np.inf) for x, y in zip(a.maxs, b.maxs, strict=True)],
    )


def _merge_ordered(a: _Bins, b: _Bins) -> _Bins:
    if a.bins[-1] < b.bins[0]:
        return _Bins(
            np.concatenate([a.bins, b.bins]),
            [np.concatenate(p) for p in zip(a.sums, b.sums, strict=True)],
            [np.concatenate(p) for p in zip(a.counts, b.counts, strict=True)],
            [np.concatenate(p) for p in zip(a.mins, b.mins, strict=True)],
            [np.concatenate(p) for p in zip(a.maxs, b.maxs, strict=True)],
        )
    # the shared edge bin: fold a's last bin into b's first (b is fresh, owned here);
    # a's sum comes first, as the records came
    for j in range(len(b.sums)):
        b.sums[j][0] = a.sums[j][-1] + b.sums[j][0]
        b.counts[j][0] += a.counts[j][-1]
    for j in range(len(b.mins)):
        b.mins[j][0] = np.minimum(b.mins[j][0], a.mins[j][-1])
        b.maxs[j][0] = np.maximum(b.maxs[j][0], a.maxs[j][-1])
    head = a.take(slice(0, -1))
    return _merge_ordered(head, b) if head.bins.size else b


class _PacketReducer:
    """State of one packet id: its headers in and out, the open bins."""

    def __init__(
        self,
        header: PacketHeader,
        width: float,
        origin: float,
        minmax: bool,
        partial: bool,
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
        planes = header.planes[1:]
        self.groups = _groups(planes)
        fills = [plane_fill(p, stream_properties) for p in planes]
        self.fills = fills
        self.bands = [fill_band(f, p.type.native) for f, p in zip(fills, planes, strict=True)]
        means = [g for g in self.groups if g.kind == "mean"]
        from_das2c = any(g.lo is not None or g.hi is not None for g in means) and not any(
            g.partial for g in means
        )
        self.extremes = minmax or partial or from_das2c  # min/max planes out
        self.partial = partial
        self.track = self.extremes or any(g.kind != "mean" for g in self.groups)
        self.header_out = self._output_header(header)
        self.pending: _Bins | None = None
        self.frontier: int | None = None

    # -- headers -------------------------------------------------------------
    def _output_header(self, header: PacketHeader) -> PacketHeader:
        named = plane_names(header)
        x = _output_plane(named.planes[0])
        planes = named.planes[1:]
        # names of the planes that go out as they are; the derived ones are added
        taken = {named.planes[0].name} | {planes[g.main].name for g in self.groups}
        avgs, extremes, parts = [], [], []

        def derived(plane: Plane, suffix: str, op: str, native: bool = True) -> Plane:
            name = f"{plane.name}.{suffix}"
            while name in taken:
                name += "_"
            taken.add(name)
            props: Properties = dict(plane.properties)
            props["source"] = ("String", plane.name)
            props["operation"] = ("String", op)
            if not native:  # sums and counts: float64, no fill (a count says "none")
                props.pop("fill", None)
                props.pop("zFill", None)
                props.pop("yFill", None)
                return replace(plane, name=name, type=_REAL8, properties=props)
            return replace(plane, name=name, properties=props)

        for g in self.groups:
            plane = _output_plane(planes[g.main])
            if g.kind != "mean":
                avgs.append(plane)
                continue
            props: Properties = dict(plane.properties)
            props["source"] = ("String", plane.name)
            props["operation"] = ("String", BIN_AVG)
            avg = replace(plane, properties=props)
            avgs.append(avg)
            if self.extremes:
                extremes += [derived(plane, "min", BIN_MIN), derived(plane, "max", BIN_MAX)]
            if self.partial:
                parts += [
                    derived(plane, "sum", BIN_SUM, native=False),
                    derived(plane, "count", BIN_COUNT, native=False),
                ]
        return PacketHeader(header.packet_id, (x, *avgs, *extremes, *parts), header.properties)

    # -- data ----------------------------------------------------------------
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
        agg = self._aggregate(bins.astype(np.int64), values)
        if self.pending is not None:
            agg = _merge(self.pending, agg)
        top = int(agg.bins[-1])
        self.frontier = top if self.frontier is None else max(self.frontier, top)
        done = agg.bins < self.frontier
        self.pending = agg.take(~done) if not done.all() else None
        return self._records(agg.take(done)) if done.any() else None

    def flush(self) -> Data | None:
        pending, self.pending = self.pending, None
        return self._records(pending) if pending is not None else None

    def _aggregate(self, bins: np.ndarray, values: list[np.ndarray]) -> _Bins:
        """Per-bin sums, counts (and extremes) of one batch (at least one record)."""
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
        for g in self.groups:
            if g.partial:
                self._aggregate_partial(g, values, starts, out)
            else:
                self._aggregate_values(g, values, starts, sizes, out)
        return out

    def _aggregate_values(self, g: _Group, values, starts, sizes, out: _Bins) -> None:
        v = values[g.main]
        bad = fill_mask(v, self.bands[g.main])
        if bad is None:  # the usual case: no masking needed
            out.sums.append(np.add.reduceat(v, starts, axis=0, dtype=np.float64))
            # each group gets its own counts array: merging adds into it in place
            out.counts.append(
                sizes.copy() if v.ndim == 1 else np.repeat(sizes[:, None], v.shape[1], 1)
            )
            lo_v = hi_v = v
        else:
            valid = ~bad
            out.sums.append(
                np.add.reduceat(np.where(valid, v, 0), starts, axis=0, dtype=np.float64)
            )
            out.counts.append(np.add.reduceat(valid, starts, axis=0, dtype=np.int64))
            if self.track:
                lo_v, hi_v = np.where(valid, v, np.inf), np.where(valid, v, -np.inf)
        if not self.track:
            return
        # a das2C-reduced input brings its own extremes: those are the bin's
        for part, src, ufunc, none in (
            (out.mins, g.lo, np.minimum, np.inf),
            (out.maxs, g.hi, np.maximum, -np.inf),
        ):
            if src is not None:
                w = values[src]
                wbad = fill_mask(w, self.bands[src])
                if wbad is not None or bad is not None:
                    skip = wbad if bad is None else bad if wbad is None else wbad | bad
                    w = np.where(skip, none, w)
            else:
                w = lo_v if ufunc is np.minimum else hi_v
            part.append(ufunc.reduceat(w, starts, axis=0).astype(np.float64))

    def _aggregate_partial(self, g: _Group, values, starts, out: _Bins) -> None:
        counts = values[g.count]
        has = counts > 0
        out.sums.append(
            np.add.reduceat(np.where(has, values[g.sum], 0.0), starts, axis=0, dtype=np.float64)
        )
        out.counts.append(np.add.reduceat(counts, starts, axis=0).astype(np.int64))
        if not self.track:
            return
        for part, src, ufunc, none in (
            (out.mins, g.lo, np.minimum, np.inf),
            (out.maxs, g.hi, np.maximum, -np.inf),
        ):
            w = values[src if src is not None else g.main]
            part.append(ufunc.reduceat(np.where(has, w, none), starts, axis=0).astype(np.float64))

    def _records(self, agg: _Bins) -> Data:
        centres = self.origin + (agg.bins.astype(np.float64) + 0.5) * self.width
        out_planes = self.header_out.planes
        main, extremes, parts = [centres], [], []
        for j, g in enumerate(self.groups):
            fill = self.fills[g.main]
            counts = agg.counts[j]
            has = counts > 0
            dtype = out_planes[1 + j].type.native
            if g.kind == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = np.where(has, agg.sums[j] / np.maximum(counts, 1), fill)
            else:
                value = np.where(has, agg.mins[j] if g.kind == "min" else agg.maxs[j], fill)
            main.append(value.astype(dtype))
            if g.kind != "mean":
                continue
            if self.extremes:
                extremes.append(np.where(has, agg.mins[j], fill).astype(dtype))
                extremes.append(np.where(has, agg.maxs[j], fill).astype(dtype))
            if self.partial:
                parts.append(np.where(has, agg.sums[j], 0.0))
                parts.append(counts.astype(np.float64))
        return Data(self.header_out, tuple(main + extremes + parts))


def _output_plane(plane: Plane) -> Plane:
    """Averages are numbers: text planes become 8-byte reals in the same units."""
    if plane.type.kind == "real":
        return plane
    units = time_units(plane.units) if plane.type.kind == "time" else plane.units
    return replace(plane, type=_REAL8, units=units)


class Reducer:
    """Reduces decoded events into binned events, incrementally.

    `width` is the bin width in seconds when x is a time (else in x units);
    `origin` in UNIX seconds when x is a time (else in x units). `minmax` adds
    min/max planes; `partial` writes partial aggregates (cache blocks).
    """

    def __init__(
        self, width: float, origin: float = 0.0, minmax: bool = False, partial: bool = False
    ) -> None:
        if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
            raise ValueError(f"bin width must be a positive number, got {width!r}")
        if not (isinstance(origin, int | float) and math.isfinite(origin)):
            raise ValueError(f"bin origin must be a finite number, got {origin!r}")
        self.width = float(width)
        self.origin = float(origin)
        self.minmax = minmax
        self.partial = partial
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
                state = _PacketReducer(
                    ev, self.width, self.origin, self.minmax, self.partial, self._stream_properties
                )
                old = self._packets.pop(ev.packet_id, None)
                self._packets[ev.packet_id] = state
                if old is not None and old.header_out == state.header_out:
                    # Another layout of the same output (raw reader records after
                    # a cache block's aggregates): the open bins go on.
                    state.pending, state.frontier = old.pending, old.frontier
                    continue
                if old is not None:  # a redefinition closes the bins of the old layout
                    self._emit(old.flush(), out)
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

    def __init__(
        self, width: float, origin: float = 0.0, minmax: bool = False, partial: bool = False
    ) -> None:
        self._decoder = Decoder()
        self._reducer = Reducer(width, origin, minmax, partial)
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


def reduce_stream(
    data: bytes, width: float, origin: float = 0.0, minmax: bool = False, partial: bool = False
) -> bytes:
    """Reduce a whole stream."""
    r = StreamReducer(width, origin, minmax, partial)
    return r.feed(data) + r.finish()


USAGE = """usage: python -m nodes.das2.reduce [-r] [-b UNIX_SECONDS] BIN_SECONDS < IN > OUT

A das2 stream on stdin reduced to BIN_SECONDS bins on stdout, like das2C's
das2_bin_avgsec; -r adds the .min/.max planes (das2_bin_avgsec -r); -b moves
the bins' origin (default UNIX 0)."""


def main(argv: Sequence[str]) -> int:
    """A reducer process, as readers' pipelines use das2C's."""
    args = list(argv)
    minmax = "-r" in args
    if minmax:
        args.remove("-r")
    origin = 0.0
    try:
        if "-b" in args:
            i = args.index("-b")
            origin = float(args[i + 1])
            del args[i : i + 2]
        (width_text,) = args
        reducer = StreamReducer(float(width_text), origin, minmax)
    except (ValueError, IndexError):
        print(USAGE, file=sys.stderr)
        return 2
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        while chunk := stdin.read1(1 << 20) if hasattr(stdin, "read1") else stdin.read(1 << 20):
            stdout.write(reducer.feed(chunk))
        stdout.write(reducer.finish())
    except Das2StreamError as exc:
        stdout.write(getattr(exc, "output", b""))
        print(f"das2 reduce: {exc}", file=sys.stderr)
        return 1
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
