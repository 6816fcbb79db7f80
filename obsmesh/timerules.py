"""Time rules of the contract: float UNIX seconds, `<= 0` means "that many seconds
before now", intervals are `[start, end)`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from obsmesh.errors import InvalidArgument


def resolve_time(value: object, name: str, now: float) -> float:
    """One time argument to absolute UNIX seconds; a clear error for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(
            f"{name} must be a number of UNIX seconds, got {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be finite, got {value}")
    return now + value if value <= 0 else value


def resolve_interval(
    start: object, end: object, clock: Callable[[], float] = time.time
) -> tuple[float, float]:
    """`(start, end)` to absolute seconds, checking that start is not after end."""
    now = clock()
    t0 = resolve_time(start, "start", now)
    t1 = resolve_time(end, "end", now)
    if t0 > t1:
        raise InvalidArgument(f"start ({t0:.3f}) is after end ({t1:.3f})")
    return t0, t1


def resolve_stride(min_stride: object) -> float | None:
    """`min_stride` is None (raw samples) or a positive finite number of seconds."""
    if min_stride is None:
        return None
    if isinstance(min_stride, bool) or not isinstance(min_stride, int | float):
        raise InvalidArgument(
            f"min_stride must be a number of seconds or null, got {type(min_stride).__name__}"
        )
    stride = float(min_stride)
    if not math.isfinite(stride) or stride <= 0:
        raise InvalidArgument(f"min_stride must be a positive number of seconds, got {min_stride}")
    return stride
