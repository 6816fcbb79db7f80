"""Grafana's response shapes, built from numpy columns (pure functions).

Speed matters here: numeric points stay a float64 array
`np.column_stack((values, ms))` that `jsonout.dumps` writes in one C loop
(non-finite values as null); no Python object per point is ever made.
String columns stay lists, sanitised so the JSON encoder never meets NaN,
bytes or other non-JSON values from a node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_JSON_SCALARS = (str, int, float, bool, type(None))


def clean_scalar(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, _JSON_SCALARS) else None


def _as_numbers(values: np.ndarray, kind: str) -> np.ndarray:
    """A column as float64 for plotting: bools become 1/0, anything else non-numeric NaN."""
    if values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    if values.dtype.kind == "b":
        return values.astype(np.float64)
    out = np.full(values.shape[0], np.nan)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, bool | int | float):
            out[i] = float(v)
    return out


def _pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Rows `[first[i], second[i]]` of two float columns (NaN is written as null)."""
    return np.column_stack((first, second))


def _object_pairs(first: list, second: list) -> list[list]:
    return [[clean_scalar(a), clean_scalar(b)] for a, b in zip(first, second, strict=True)]


def timeseries(
    name: str,
    t: np.ndarray,
    values: np.ndarray,
    kind: str = "number",
    ref_id: str | None = None,
    unit: str = "",
) -> dict[str, Any]:  # datapoints: a (n, 2) float array, or a list for strings
    """`{"target", "datapoints": [[value, unix_ms], ...]}`; strings stay strings."""
    ms = t.astype(np.float64, copy=False) * 1000.0
    if kind == "string":
        points = _object_pairs(values.tolist(), ms.tolist())
    else:
        points = _pairs(_as_numbers(values, kind), ms)
    out: dict[str, Any] = {"target": name, "datapoints": points}
    if ref_id is not None:
        out["refId"] = ref_id
    if unit:
        out["unit"] = unit
    return out


def error_frame(
    name: str, message: str, ref_id: str | None = None, table: bool = False, kind: str = "number"
) -> dict[str, Any]:
    """An empty series (or table) with an error notice Grafana shows in the panel header."""
    frame = empty_table(name, kind, ref_id) if table else empty_series(name, ref_id)
    frame["meta"] = {"notices": [{"severity": "error", "text": message}]}
    return frame


def empty_series(name: str, ref_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name, "datapoints": []}
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def _column_type(kind: str) -> str:
    return {"string": "string", "bool": "boolean"}.get(kind, "number")


def table(
    name: str, t: np.ndarray, values: np.ndarray, kind: str = "number", ref_id: str | None = None
) -> dict[str, Any]:
    """`{"type": "table", "columns": [Time, <name>], "rows": [[unix_ms, value], ...]}`."""
    ms = t.astype(np.float64, copy=False) * 1000.0
    if kind == "number":
        rows = _pairs(ms, _as_numbers(values, kind))
    else:
        rows = _object_pairs(ms.tolist(), values.tolist())
    out: dict[str, Any] = {
        "type": "table",
        "columns": [{"text": "Time", "type": "time"}, {"text": name, "type": _column_type(kind)}],
        "rows": rows,
    }
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def empty_table(name: str, kind: str = "number", ref_id: str | None = None) -> dict[str, Any]:
    return table(name, np.zeros(0), np.zeros(0), kind, ref_id)


# -- annotations ---------------------------------------------------------------
def events_table(
    name: str, events: Sequence[dict[str, Any]], ref_id: str | None = None
) -> dict[str, Any]:
    """Annotation events for the current plugin: a table Grafana maps to annotations
    (time, title, text, tags as a comma-separated string)."""
    rows = [[e["time"] * 1000.0, e["title"], e["text"], ",".join(e["tags"])] for e in events]
    out: dict[str, Any] = {
        "type": "table",
        "columns": [
            {"text": "time", "type": "time"},
            {"text": "title", "type": "string"},
            {"text": "text", "type": "string"},
            {"text": "tags", "type": "string"},
        ],
        "rows": rows,
    }
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def legacy_annotations(
    annotation: dict[str, Any], events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Annotation events for the SimpleJSON plugin's `/annotations`."""
    return [
        {
            "annotation": annotation,
            "time": e["time"] * 1000.0,
            "title": e["title"],
            "text": e["text"],
            "tags": list(e["tags"]),
        }
        for e in events
    ]


def clean_event(raw: Any, node: str) -> dict[str, Any] | None:
    """A node's event `{time, title, text, tags}` checked; None if it is unusable."""
    if not isinstance(raw, dict):
        return None
    t = raw.get("time")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    title = raw.get("title")
    body = raw.get("text")
    tags = raw.get("tags")
    tags = [x for x in tags if isinstance(x, str)] if isinstance(tags, list) else []
    return {
        "time": float(t),
        "title": title if isinstance(title, str) else "",
        "text": body if isinstance(body, str) else "",
        "tags": [node, *[x for x in tags if x != node]],
    }
