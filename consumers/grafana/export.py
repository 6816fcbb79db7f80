"""Downloads: a node's columns as CSV or JSON (pure functions over get_data answers).

`/export` asks the node for progressive results, so the answer arrives as a
series of chunks; CSV is written chunk by chunk (rows of one timeline), JSON
is assembled at the end. Numbers are written in their shortest exact form,
so a download round-trips to the very same floats; missing values are empty
(CSV) or null (JSON).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from consumers.grafana import frames, jsonout, protocol, replies
from consumers.grafana.errors import RequestError
from obsmesh.uris import valid_node_name

FORMATS = ("csv", "json")
MAX_FIELDS = 100
MAX_FIELD_NAME = 200  # a node never declares a longer field name (nodes/base.py)


@dataclass(frozen=True)
class ExportRequest:
    node: str
    fields: tuple[str, ...]
    start: float  # UNIX seconds; <= 0 means before now (the node resolves it)
    end: float
    min_stride: float | None
    reduce: str
    format: str

    def filename(self) -> str:
        what = self.fields[0] if len(self.fields) == 1 else f"{len(self.fields)}-fields"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in what)[:80]
        return f"{self.node}-{safe}.{self.format}"


def parse_args(query: bytes | str) -> ExportRequest:
    """`node=&field=&start=&end=&min_stride=&reduce=&format=csv|json` (field may repeat or hold commas)."""
    if isinstance(query, bytes):
        try:
            query = query.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the query string is not UTF-8") from None
    try:
        args = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except ValueError as exc:
        raise RequestError(f"bad query string: {exc}") from None

    def one(name: str, default: str | None = None) -> str | None:
        values = args.get(name)
        if not values:
            return default
        if len(values) > 1:
            raise RequestError(f"{name} given more than once")
        return values[0]

    node = one("node")
    if not valid_node_name(node):
        raise RequestError("node is required: a node name as listed by the hub")
    fields = [f.strip() for v in args.get("field", []) for f in v.split(",") if f.strip()]
    fields = list(dict.fromkeys(fields))
    if not fields:
        raise RequestError("field is required (repeat it or separate names by commas)")
    if len(fields) > MAX_FIELDS or any(len(f) > MAX_FIELD_NAME for f in fields):
        raise RequestError(f"at most {MAX_FIELDS} fields of reasonable length")
    start = protocol.parse_timestamp_arg(one("start", "-3600"), "start")
    end = protocol.parse_timestamp_arg(one("end", "0"), "end")
    if start > 0 and end > 0 and start > end:
        raise RequestError("start is after end")
    stride_text = one("min_stride", "")
    stride = None
    if stride_text:
        stride = protocol.parse_timestamp_arg(stride_text, "min_stride")
        if not stride > 0:
            raise RequestError("min_stride must be a positive number of seconds")
    reduce = one("reduce", "mean")
    if reduce not in protocol.REDUCTIONS:
        raise RequestError(f"reduce must be one of {list(protocol.REDUCTIONS)}")
    fmt = one("format", "csv")
    if fmt not in FORMATS:
        raise RequestError(f"format must be one of {list(FORMATS)}")
    return ExportRequest(node, tuple(fields), start, end, stride, reduce, fmt)


def _strings(values: np.ndarray, kind: str) -> list[str]:
    if kind == "number" and values.dtype.kind in "fiu":
        out = values.astype(str)
        if values.dtype.kind == "f":
            out[~np.isfinite(values)] = ""
        return out.tolist()
    if kind == "bool":
        return ["" if v is None else ("true" if v else "false") for v in values.tolist()]
    return [
        "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else str(v)
        for v in values.tolist()
    ]


class CsvExport:
    """Rows `time,<field>,...` of one timeline; time in UNIX seconds."""

    def __init__(
        self, fields: Sequence[str], kinds: Mapping[str, str], timeline: str, node: str = "?"
    ) -> None:
        self.fields = list(fields)
        self.kinds = dict(kinds)
        self.timeline = timeline
        self.node = node

    def header(self) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(["time", *self.fields])
        return buf.getvalue().encode()

    def rows(self, reply: Any) -> bytes:
        cols = _checked(
            replies.columns(reply, [(f, self.timeline) for f in self.fields], self.node)
        )
        if not cols:
            return b""
        t = next(iter(cols.values()))[0]
        out = [_strings(t, "number")]
        for f in self.fields:
            out.append(_strings(cols[f][1], self.kinds[f]) if f in cols else [""] * t.shape[0])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(zip(*out, strict=True))
        return buf.getvalue().encode()


class JsonExport:
    """The node's own answer shape, whole, with what was asked: one JSON document."""

    def __init__(self, request: ExportRequest, metas: Mapping[str, dict]) -> None:
        self.request = request
        self.metas = dict(metas)
        self.parts: list[Any] = []

    def add(self, reply: Any) -> None:
        self.parts.append(reply)

    def finish(self) -> bytes:
        r = self.request
        by_timeline: dict[str, list[str]] = {}
        for f in r.fields:
            by_timeline.setdefault(self.metas[f]["timeline"], []).append(f)
        times: dict[str, list[np.ndarray]] = {tl: [] for tl in by_timeline}
        data: dict[str, list[np.ndarray]] = {f: [] for f in r.fields}
        for part in self.parts:
            for tl, fs in by_timeline.items():
                cols = _checked(replies.columns(part, [(f, tl) for f in fs], r.node))
                if not cols:
                    continue
                t = next(iter(cols.values()))[0]
                times[tl].append(t)
                for f in fs:
                    data[f].append(
                        cols[f][1] if f in cols else np.full(t.shape[0], None, dtype=object)
                    )
        doc = {
            "node": r.node,
            "start": r.start,
            "end": r.end,
            "min_stride": r.min_stride,
            "reduce": r.reduce,
            "fields": {f: self.metas[f] for f in r.fields},
            "timeline": {tl: {"t": _joined(parts)} for tl, parts in times.items()},
            "data": {f: _joined(parts, self.metas[f]["type"]) for f, parts in data.items()},
        }
        return jsonout.dumps(doc)


def _checked(cols: replies.Columns) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A download is one node's answer: a column that does not fit fails it (never a hole)."""
    if cols.errors:
        raise replies.BadReply("; ".join(cols.errors.values()))
    return {f: tc for f, tc in cols.series.items() if tc[0].shape[0] or tc[1].shape[0]}


def _joined(parts: list[np.ndarray], kind: str = "number") -> np.ndarray | list:
    if not parts:
        return []
    col = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if kind == "number" and col.dtype.kind in "fiu":
        return np.ascontiguousarray(col, dtype=np.float64)  # jsonout writes NaN as null
    return [frames.clean_scalar(v) for v in col.tolist()]
