"""Columns on the wire: JSON-friendly lists (NaN and infinities as None, no numpy
types) or, when asked, binary arrays `{"dtype", "shape", "data"}`."""

from __future__ import annotations

from typing import Any

import numpy as np

LIST = "list"
ARRAY = "array"
ENCODINGS = (LIST, ARRAY)

# Wire dtypes a decoder accepts: little-endian numbers and bools only, never objects.
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "|u1", "<u2", "<u4", "<u8", "|b1"}


def to_list(column: np.ndarray | list) -> list:
    """A column as a plain list; non-finite floats become None."""
    if not isinstance(column, np.ndarray):
        return list(column)
    if column.dtype.kind == "f":
        values = column.tolist()
        if np.isfinite(column).all():
            return values
        bad = np.flatnonzero(~np.isfinite(column)).tolist()
        for i in bad:
            values[i] = None
        return values
    if column.dtype.kind == "O":
        return [
            None if (isinstance(v, float) and not np.isfinite(v)) else v for v in column.tolist()
        ]
    return column.tolist()


def to_array(column: np.ndarray | list) -> dict[str, Any] | list:
    """A numeric column as raw little-endian bytes; other columns stay lists."""
    if not isinstance(column, np.ndarray) or column.dtype.kind not in "fiub":
        return to_list(column)
    column = np.ascontiguousarray(column)
    if column.dtype.byteorder == ">":
        column = column.astype(column.dtype.newbyteorder("<"))
    return {"dtype": column.dtype.str, "shape": list(column.shape), "data": column.tobytes()}


def encode(column: np.ndarray | list, encoding: str) -> Any:
    return to_array(column) if encoding == ARRAY else to_list(column)


def decode(value: Any) -> np.ndarray:
    """Either wire form back to numpy (None → NaN for numeric lists)."""
    if isinstance(value, dict):
        dtype = value.get("dtype")
        if dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"unsupported wire dtype {dtype!r}")
        data = value.get("data")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError("array column without bytes")
        shape = tuple(int(n) for n in value.get("shape", [-1]))
        return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    if isinstance(value, list):
        if all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value
        ):
            return np.array([np.nan if v is None else v for v in value], dtype=float)
        return np.array(value, dtype=object)
    raise ValueError(f"not a column: {type(value).__name__}")


# -- knowing whether a node takes encoding="array" ------------------------------
def advertises_arrays(entry: object) -> bool:
    """Whether a hub entry says its node answers `encoding="array"` (obsmesh
    nodes announce `"encodings": ["list", "array"]`; sisock's announce nothing)."""
    encodings = entry.get("encodings") if isinstance(entry, dict) else None
    return isinstance(encodings, list) and ARRAY in encodings


def refuses_encoding(error_args: Any) -> bool:
    """Whether a call failed because the node knows no `encoding` argument: a
    Python callee answers with its TypeError's text."""
    message = str(error_args[0]) if isinstance(error_args, list | tuple) and error_args else ""
    return "unexpected keyword argument" in message and "'encoding'" in message
