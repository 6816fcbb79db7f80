"""Records in the three HAPI data formats, a block of rows at a time (pure: no I/O).

`columns()` turns one `get_data` answer (binary columns or JSON lists, as
`obsmesh.wire` decodes them) into checked numpy columns for the selected
parameters; `csv()`, `binary()` and `json_rows()` write them.

- binary: one numpy structured record per row (time as 27 ASCII bytes, doubles
  little-endian float64, integers int32, strings UTF-8 null-padded to their
  length) written with one `tobytes()`: memory speed.
- CSV: each column is written at once (orjson writes a float64 array in the
  shortest text that reads back to the same double, numbers never lose a bit),
  split into one token per row, and the rows joined: no Python loop over values
  except for strings. Strings are quoted as RFC 4180 says when they need it.
- JSON: one array per record, strings and times quoted, array parameters as
  JSON arrays; a missing number is `null` (JSON has no NaN).

Missing values are the declared fills: NaN for doubles (and the mesh's
infinities, which it treats as missing), -1 for the integers that carry bools,
"" for strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from consumers.hapi.datasets import Parameter
from consumers.hapi.times import TIME_LENGTH, format_times
from obsmesh import wire

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class BadColumns(ValueError):
    """A node's answer that does not hold what was asked (checked, never trusted)."""


class StringTooLong(ValueError):
    """A string longer than its parameter's declared length (binary cannot hold it)."""


def columns(
    reply: Any, timeline: str, params: Sequence[Parameter]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Times and one column per parameter (Time excluded) from a get_data answer."""
    if not isinstance(reply, dict):
        raise BadColumns("get_data did not answer an object")
    data, timelines = reply.get("data"), reply.get("timeline")
    if not isinstance(data, dict) or not isinstance(timelines, dict):
        raise BadColumns("get_data answer lacks data or timeline")
    entry = timelines.get(timeline)
    try:
        t = wire.decode(entry["t"]) if isinstance(entry, dict) and "t" in entry else None
    except (ValueError, TypeError):
        t = None
    if t is None or t.ndim != 1 or t.dtype.kind not in "fiu":
        raise BadColumns(f"no times for timeline {timeline!r}")
    t = t.astype(np.float64, copy=False)
    if t.size and not np.isfinite(t).all():
        raise BadColumns("non-finite times")
    out = []
    for p in params:
        if p.name not in data:
            raise BadColumns(f"no column {p.name!r}")
        try:
            col = wire.decode(data[p.name])
        except (ValueError, TypeError) as exc:
            raise BadColumns(f"column {p.name!r}: {exc}") from None
        out.append(_checked(p, col, t.shape[0]))
    return t, out


def _checked(p: Parameter, col: np.ndarray, n: int) -> np.ndarray:
    if col.shape[:1] != (n,):
        raise BadColumns(f"column {p.name!r} has {col.shape[0] if col.ndim else 0} rows for {n}")
    if p.kind == "number":
        shape = (n, *p.size) if p.size else (n,)
        if col.dtype.kind == "O":  # JSON lists with None (nested for array fields)
            try:
                col = np.array(_nan_for_none(col.tolist()), dtype=np.float64)
            except (TypeError, ValueError):
                raise BadColumns(f"column {p.name!r} is not numbers") from None
        if col.dtype.kind not in "fiub" or col.size != int(np.prod(shape)):
            raise BadColumns(f"column {p.name!r} is not {shape} numbers")
        col = col.astype(np.float64, copy=False).reshape(shape)
        if not np.isfinite(col).all():  # NaN stays NaN, infinities are missing too
            col = np.where(np.isfinite(col), col, np.nan)
        return col
    if p.kind == "bool":
        if col.dtype.kind in "fiub":
            v = col.astype(np.float64, copy=False)
            return np.where(np.isnan(v), -1, v != 0).astype(np.int32)
        return np.fromiter(
            (-1 if v is None else int(bool(v)) for v in col.tolist()), dtype=np.int32, count=n
        )
    if col.ndim != 1:
        raise BadColumns(f"column {p.name!r} is not text")
    if col.dtype.kind == "f":  # a list of nothing but None decodes as NaN numbers
        if not np.isnan(col).all():
            raise BadColumns(f"column {p.name!r} holds numbers, not text")
        return np.full(n, None, dtype=object)
    return np.array([None if v is None else str(v) for v in col.tolist()], dtype=object)


def _nan_for_none(values: Any) -> Any:
    if isinstance(values, list):
        return [_nan_for_none(v) for v in values]
    return np.nan if values is None else values


# -- binary ------------------------------------------------------------------------
def record_dtype(params: Sequence[Parameter], lengths: dict[str, int]) -> np.dtype:
    fields: list[tuple] = [("t", f"S{TIME_LENGTH}")]
    for i, p in enumerate(params):
        if p.kind == "number":
            fields.append((f"p{i}", "<f8", p.size) if p.size else (f"p{i}", "<f8"))
        elif p.kind == "bool":
            fields.append((f"p{i}", "<i4"))
        else:
            fields.append((f"p{i}", f"S{lengths[p.name]}"))
    return np.dtype(fields)


def binary(
    t: np.ndarray, cols: Sequence[np.ndarray], params: Sequence[Parameter], lengths: dict[str, int]
) -> bytes:
    rec = np.empty(t.shape[0], dtype=record_dtype(params, lengths))
    rec["t"] = format_times(t)
    for i, (p, col) in enumerate(zip(params, cols, strict=True)):
        if p.kind == "string":
            limit = lengths[p.name]
            raw = [b"" if v is None else v.encode("utf-8") for v in col.tolist()]
            if any(len(b) > limit for b in raw):
                raise StringTooLong(f"a value of {p.name!r} is longer than {limit} bytes")
            rec[f"p{i}"] = raw
        else:
            rec[f"p{i}"] = col
    return rec.tobytes()


# -- CSV ---------------------------------------------------------------------------
def _number_tokens(col: np.ndarray, missing: bytes) -> list[bytes]:
    n = col.shape[0]
    flat = np.ascontiguousarray(col.reshape(n, -1) if col.ndim > 1 else col)
    text = orjson.dumps(flat, option=_NUMPY)
    if missing != b"null":
        text = text.replace(b"null", missing)
    if flat.ndim == 1:
        return text[1:-1].split(b",")
    return text[2:-2].split(b"],[")


def _csv_text(v: str | None) -> bytes:
    if v is None:
        return b""
    if any(c in v for c in ',"\r\n'):
        return b'"' + v.replace('"', '""').encode("utf-8") + b'"'
    return v.encode("utf-8")


def csv(t: np.ndarray, cols: Sequence[np.ndarray], params: Sequence[Parameter]) -> bytes:
    if t.shape[0] == 0:
        return b""
    tokens: list[list[bytes]] = [format_times(t).tolist()]
    for p, col in zip(params, cols, strict=True):
        if p.kind == "string":
            tokens.append([_csv_text(v) for v in col.tolist()])
        else:
            tokens.append(_number_tokens(col, b"NaN"))
    return b"\n".join(map(b",".join, zip(*tokens, strict=True))) + b"\n"


# -- JSON --------------------------------------------------------------------------
def json_rows(t: np.ndarray, cols: Sequence[np.ndarray], params: Sequence[Parameter]) -> bytes:
    """Records `["time",v,[...],"s"]` joined by `,\\n` (no surrounding brackets)."""
    n = t.shape[0]
    if n == 0:
        return b""
    tokens: list[list[bytes]] = [[b'"' + s + b'"' for s in format_times(t).tolist()]]
    for p, col in zip(params, cols, strict=True):
        if p.kind == "string":
            tokens.append([b'""' if v is None else orjson.dumps(v) for v in col.tolist()])
        elif p.size and len(p.size) > 1:
            tokens.append([orjson.dumps(row, option=_NUMPY) for row in col])
        elif p.size:
            tokens.append([b"[" + row + b"]" for row in _number_tokens(col, b"null")])
        else:
            tokens.append(_number_tokens(col, b"null"))
    return b",\n".join(b"[" + r + b"]" for r in map(b",".join, zip(*tokens, strict=True)))


def header_lines(doc: dict) -> bytes:
    """The info header a CSV or binary stream starts with: every line prefixed with #."""
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    return b"".join(b"#" + line + b"\n" for line in text.split(b"\n"))


def json_head(doc: dict) -> bytes:
    """The JSON format's document up to its data array: `{..., "data":[`."""
    return orjson.dumps(doc)[:-1] + b',"data":[\n'


JSON_TAIL = b"\n]}\n"
