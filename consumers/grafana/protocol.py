"""Grafana request bodies to validated values (pure functions: no I/O).

Both datasource plugins are covered: the current JSON datasource
(simpod-json-datasource) and the legacy SimpleJSON plugin. Every body is
hostile until parsed here; anything malformed becomes one `RequestError`
(HTTP 400) with a message that says what was wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumers.grafana.errors import RequestError

REDUCTIONS = ("mean", "minmax")
DEFAULT_POINTS = 1000  # when a request names no maxDataPoints
MAX_TARGETS = 100  # targets in one request
DEFAULT_MAX_SERIES = 10_000  # (node, field) pairs one request may name after expanding {a,b}
MAX_TEXT = 16384  # characters of a target, key or value (Grafana "All" over many fields is long)
SEPARATOR = "::"  # sisock's `<node>::<field>`
EVENTS = "@events"  # `<node>::@events`: the node's annotation events as a table
WILDCARD = "*"
FILTER_OPERATORS = ("=", "!=", "=~", "!~")
FORMATS = ("timeserie", "timeseries", "time_series", "table")

_ALTERNATIVES = re.compile(r"^\{([^{}]*)\}$")  # Grafana's multi-value variable format {a,b}


# -- JSON --------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """A request body to a JSON value; an empty body is `{}` (Grafana sends none at times)."""
    if not body.strip():
        return {}
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RequestError(f"the body is not valid JSON: {exc}") from None


def as_object(value: Any, what: str) -> dict[str, Any]:
    """An optional object member: null or absent is `{}`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def as_body(value: Any) -> dict[str, Any]:
    """A request body: a JSON object (an empty body was already read as `{}`)."""
    if not isinstance(value, dict):
        raise RequestError(f"the body must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


def text(value: Any, what: str, default: str | None = None, allow_empty: bool = True) -> str | None:
    """An optional string field, bounded in length."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestError(f"{what} must be a string, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise RequestError(f"{what} is longer than {MAX_TEXT} characters")
    if not allow_empty and not value:
        raise RequestError(f"{what} must not be empty")
    return value


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{what} must be a number, got {_kind(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise RequestError(f"{what} is out of range") from None
    if not math.isfinite(out):
        raise RequestError(f"{what} must be finite")
    return out


# -- times -------------------------------------------------------------------
_LEAP_SECOND = re.compile(r"^(.*T\d\d:\d\d):60(.*)$")


def iso_seconds(s: str) -> float:
    """An ISO 8601 / RFC 3339 time to UNIX seconds (UTC when no offset is given).

    RFC 3339 allows a lower-case `t` and `z` and a leap second `:60`; Python's
    parser knows neither, so they are normalised first. Raises ValueError.
    """
    s = s.strip().upper()
    leap = _LEAP_SECOND.match(s)
    if leap:
        s = f"{leap.group(1)}:59{leap.group(2)}"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() + (1.0 if leap else 0.0)


def parse_time(value: Any, what: str) -> float:
    """Grafana's ISO 8601 time (`2016-10-31T06:33:44.866Z`) or UNIX milliseconds, to UNIX seconds."""
    if isinstance(value, str):
        s = value.strip()
        if len(s) > 64:
            raise RequestError(f"{what} is not a time: too long")
        try:
            return iso_seconds(s)
        except (ValueError, OverflowError):
            pass
        raise RequestError(f"{what} is not an ISO 8601 time: {s!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value, what) / 1000.0
    raise RequestError(f"{what} must be an ISO 8601 time or UNIX milliseconds, got {_kind(value)}")


def parse_range(body: dict[str, Any], required: bool = True) -> tuple[float, float] | None:
    """`range.from` / `range.to` → `(start, end)` in UNIX seconds, start not after end."""
    rng = body.get("range")
    if rng is None:
        if not required:
            return None
        raise RequestError("range.from and range.to are required")
    if not isinstance(rng, dict):
        raise RequestError(f"range must be a JSON object with from and to, got {_kind(rng)}")
    if "from" not in rng or "to" not in rng:
        raise RequestError("range.from and range.to are required")
    start = parse_time(rng["from"], "range.from")
    end = parse_time(rng["to"], "range.to")
    if start > end:
        raise RequestError("range.from is after range.to")
    return start, end


# -- targets -----------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One query target: which series to draw and how."""

    text: str  # as the dashboard wrote it
    ref_id: str | None
    pairs: tuple[tuple[str, str], ...]  # (node, field); either may be "*"
    reduce: str  # "mean" | "minmax"
    timeline: str | None  # only the fields of this timeline (for wildcards)
    table: bool  # table instead of time series


@dataclass(frozen=True)
class Filter:
    key: str
    operator: str
    value: str

    def accepts(self, actual: str | None) -> bool:
        actual = "" if actual is None else actual
        if self.operator == "=":
            return actual == self.value
        if self.operator == "!=":
            return actual != self.value
        # Shell-style patterns, not regular expressions: no pathological backtracking.
        from fnmatch import fnmatchcase

        matched = fnmatchcase(actual, self.value)
        return matched if self.operator == "=~" else not matched


@dataclass(frozen=True)
class Query:
    start: float
    end: float
    max_points: int
    interval: float  # seconds; Grafana's intervalMs, 0 if absent
    targets: tuple[Target, ...]
    filters: tuple[Filter, ...]


def alternatives(part: str) -> tuple[str, ...]:
    """`{a,b}` (a multi-value dashboard variable) → ("a", "b"); anything else stays one name."""
    m = _ALTERNATIVES.match(part)
    if m is None:
        return (part,)
    names = tuple(dict.fromkeys(p.strip() for p in m.group(1).split(",") if p.strip()))
    if not names:
        raise RequestError(f"empty alternatives {part!r}")
    return names


class TooManySeries(RequestError):
    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


def too_many_series(count: int, cap: int, what: str) -> TooManySeries:
    return TooManySeries(
        f"{what} names {count:,} series, more than the {cap:,} one request may ask for "
        "(max_series): choose fewer values of the dashboard variables, or fewer targets",
        count,
    )


def split_target(name: str, max_pairs: int = DEFAULT_MAX_SERIES) -> tuple[tuple[str, str], ...]:
    """`<node>::<field>` → (node, field) pairs; node names never hold ':' so the first `::` splits.
    The number of combinations is checked before any is made."""
    node, sep, field = name.partition(SEPARATOR)
    if not sep or not node or not field:
        raise RequestError(f"target {name!r} must be <node>::<field>")
    nodes, fields = alternatives(node.strip()), alternatives(field)
    if len(nodes) * len(fields) > max_pairs:
        raise too_many_series(len(nodes) * len(fields), max_pairs, f"target {name[:40]!r}…")
    return tuple((n, f) for n in nodes for f in fields)


def _payload(raw: dict[str, Any]) -> dict[str, Any]:
    """The plugin's per-target payload (current plugin) or `data` (older versions)."""
    value = raw.get("payload", raw.get("data"))
    if isinstance(value, str):  # some versions send the payload editor's text
        value = parse_json(value.encode()) if value.strip() else {}
    return as_object(value, "payload")


def _choice(value: Any, what: str, allowed: tuple[str, ...]) -> str | None:
    value = text(value, what)
    if value is not None and value not in allowed:
        raise RequestError(f"{what} must be one of {list(allowed)}, got {value!r}")
    return value


def parse_target(raw: Any, index: int, max_pairs: int = DEFAULT_MAX_SERIES) -> Target | None:
    """One entry of `targets`, checked whole; None for a hidden or still empty one
    (a panel being edited)."""
    where = f"targets[{index}]"
    if not isinstance(raw, dict):
        raise RequestError(f"{where} must be a JSON object, got {_kind(raw)}")
    hide = raw.get("hide")
    if hide is not None and not isinstance(hide, bool):
        raise RequestError(f"{where}.hide must be true or false")
    name = (text(raw.get("target"), f"{where}.target") or "").strip()
    payload = _payload(raw)
    reduce = _choice(payload.get("reduce"), f"{where}.payload.reduce", REDUCTIONS) or "mean"
    timeline = text(payload.get("timeline"), f"{where}.payload.timeline") or None
    kind = _choice(raw.get("type"), f"{where}.type", FORMATS)
    kind = kind or _choice(payload.get("format"), f"{where}.payload.format", FORMATS) or "timeserie"
    ref_id = text(raw.get("refId"), f"{where}.refId")
    if hide or not name:
        return None
    return Target(
        text=name,
        ref_id=ref_id,
        pairs=split_target(name, max_pairs),
        reduce=reduce,
        timeline=timeline,
        table=kind == "table",
    )


def parse_filters(body: dict[str, Any]) -> tuple[Filter, ...]:
    """Ad hoc filters (`adhocFilters` in the current plugin, `filters` in some versions)."""
    raw = body.get("adhocFilters", body.get("filters"))
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TARGETS:
        raise RequestError(f"adhocFilters must be an array of at most {MAX_TARGETS} filters")
    out = []
    for i, f in enumerate(raw):
        if not isinstance(f, dict):
            raise RequestError(f"adhocFilters[{i}] must be a JSON object, got {_kind(f)}")
        key = text(f.get("key"), f"adhocFilters[{i}].key", allow_empty=False)
        op = text(f.get("operator"), f"adhocFilters[{i}].operator", "=")
        value = f.get("value")
        value = (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )
        value = text(value, f"adhocFilters[{i}].value", "")
        if key is None:
            raise RequestError(f"adhocFilters[{i}].key is required")
        if op not in FILTER_OPERATORS:
            raise RequestError(
                f"adhocFilters[{i}].operator must be one of {list(FILTER_OPERATORS)}, got {op!r}"
            )
        out.append(Filter(key, op, value))
    return tuple(out)


def parse_query(body: Any, max_points_cap: int, max_series: int = DEFAULT_MAX_SERIES) -> Query:
    """A `/query` body of either plugin; its targets may name at most `max_series`
    (node, field) pairs in all (wildcards are counted when the bridge resolves them)."""
    body = as_body(body)
    start, end = parse_range(body)
    points = body.get("maxDataPoints")
    if points is None:
        max_points = min(DEFAULT_POINTS, max_points_cap)
    else:
        p = number(points, "maxDataPoints")
        if p < 1:
            raise RequestError("maxDataPoints must be at least 1")
        max_points = int(min(p, max_points_cap))
    interval_ms = body.get("intervalMs")
    interval = 0.0 if interval_ms is None else number(interval_ms, "intervalMs") / 1000.0
    if interval < 0:
        raise RequestError("intervalMs must not be negative")
    raw_targets = body.get("targets", [])
    if not isinstance(raw_targets, list):
        raise RequestError(f"targets must be an array, got {_kind(raw_targets)}")
    if len(raw_targets) > MAX_TARGETS:
        raise RequestError(f"at most {MAX_TARGETS} targets per request")
    targets: list[Target] = []
    pairs = 0
    for i, raw in enumerate(raw_targets):
        try:
            t = parse_target(raw, i, max_series - pairs)
        except TooManySeries as exc:
            raise too_many_series(pairs + exc.count, max_series, "this request") from None
        if t is not None:
            targets.append(t)
            pairs += len(t.pairs)
    return Query(start, end, max_points, interval, tuple(targets), parse_filters(body))


def min_stride(
    start: float, end: float, max_points: int, reduce: str, interval: float = 0.0
) -> float:
    """The bin width (seconds) that keeps a series within `max_points` points.

    Bins are aligned to multiples of the stride, so B bins can touch a span of
    (B - 1) strides; minmax gives two points per bin. Grafana's own interval
    (intervalMs) wins when it is coarser.
    """
    span = end - start
    bins = max_points // 2 if reduce == "minmax" else max_points
    if span <= 0:
        return max(interval, 1.0)
    if bins <= 1:
        return max(interval, one_bin(start, end))
    stride = span / (bins - 1) * (1.0 + 1e-9)  # a hair wider against rounding
    return max(stride, interval)


def one_bin(start: float, end: float) -> float:
    """A stride whose one aligned bin holds all of [start, end) and has its centre
    (where the point is stamped) inside the range: the bin starts at `start`,
    `start / j` wide for the j that makes it at least as wide as the range."""
    span = end - start
    j = math.floor(start / span) if start > 0 else 0
    if j < 1:  # start < span (back towards 1970): bin 0 = [0, 1.5 end), centre 0.75 end
        return 1.5 * end if end > 0 else 1.0
    stride = start / j
    while math.floor(start / stride) < j:  # rounding put `start` at the end of bin j - 1
        stride = math.nextafter(stride, 0.0)
    return stride


# -- the other bodies --------------------------------------------------------
def query_text(body: dict[str, Any], key: str, nested: bool = False) -> str:
    """The free text of /search, /variable and annotation queries: a string member, or
    (`nested`, the variable editor's payload) an object holding `target` or `query`."""
    value = body.get(key)
    if nested and isinstance(value, dict):
        found = [text(value.get(inner), f"{key}.{inner}") for inner in ("target", "query")]
        return next((f for f in found if f is not None), "")
    return text(value, key) or ""


def parse_timestamp_arg(value: str, what: str) -> float:
    """A time in a URL: UNIX seconds (`<= 0` means before now, resolved by the node) or ISO 8601."""
    if len(value) > 64:
        raise RequestError(f"{what} is too long")
    try:
        return number(float(value), what)
    except (ValueError, OverflowError):
        pass
    try:
        return iso_seconds(value)
    except (ValueError, OverflowError):
        raise RequestError(
            f"{what} must be UNIX seconds or an ISO 8601 time, got {value!r}"
        ) from None
