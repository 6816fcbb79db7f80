"""Checks of the caller's arguments, done in the caller's thread before anything
goes on the wire, each failure an `InvalidArgument` naming the problem."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from consumers.client.errors import InvalidArgument
from consumers.client.times import absolute, parse_interval, parse_stride
from obsmesh.uris import valid_node_name

REDUCE = ("mean", "minmax")
MAX_FIELD_NAME = 200


def node_name(node: object) -> str:
    if not valid_node_name(node):
        raise InvalidArgument(
            f"{node!r} is not a node name (lower-case letters, digits, '_' and '-', at most 63 characters)"
        )
    return str(node)


def field_names(fields: object, allow_none: bool = True) -> list[str] | None:
    """A field name or a sequence of them, as a list without repeats."""
    if fields is None:
        if allow_none:
            return None
        raise InvalidArgument("give at least one field name")
    names = [fields] if isinstance(fields, str) else fields
    if not isinstance(names, Sequence) or isinstance(names, bytes | bytearray):
        raise InvalidArgument(
            f"fields must be a field name or a list of names, got {type(fields).__name__}"
        )
    names = list(names)
    if not names:
        raise InvalidArgument("the list of fields is empty")
    for f in names:
        if not isinstance(f, str) or not f or len(f) > MAX_FIELD_NAME:
            raise InvalidArgument(f"bad field name {f!r}")
    return list(dict.fromkeys(names))


def interval(start: Any, end: Any) -> tuple[float, float]:
    """Both ends as absolute UNIX seconds. Relative times count back from this
    machine's clock, so every call a query makes (field list, pieces of a large
    query) means the same interval."""
    now = time.time()
    t0, t1 = parse_interval(start, end, now)
    return absolute(t0, now), absolute(t1, now)


def stride(min_stride: Any) -> float | None:
    return parse_stride(min_stride)


def reduction(reduce: Any) -> str | None:
    if reduce is None:
        return None
    if reduce not in REDUCE:
        raise InvalidArgument(
            f"reduce must be one of {', '.join(REDUCE)} (or None), got {reduce!r}"
        )
    return str(reduce)


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return value


def positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgument(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
