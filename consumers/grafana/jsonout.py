"""JSON out, fast: orjson writes numpy float arrays straight to JSON text (NaN and
infinities as null), ten times faster than building lists for the json module.

orjson is optional: without it, or for a value it refuses (an integer past 64
bits echoed back from a request), the standard json module writes the same
document, turning arrays into lists with None for non-finite values.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing FAST = None in the tests
    orjson = None

FAST = orjson


def dumps(value: Any) -> bytes:
    if FAST is not None:
        try:
            return FAST.dumps(value, option=FAST.OPT_SERIALIZE_NUMPY)
        except (TypeError, FAST.JSONEncodeError):
            pass
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_plain).encode()


def _plain(value: Any) -> Any:
    """What the json module cannot write itself: numpy arrays and scalars."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            out = value.tolist()
            bad = ~np.isfinite(value)
            if bad.any():
                if value.ndim == 1:
                    for i in np.flatnonzero(bad).tolist():
                        out[i] = None
                else:
                    for i, j in zip(*np.nonzero(bad), strict=True):
                        out[int(i)][int(j)] = None
            return out
        if value.dtype.kind in "iub":
            return value.tolist()
        raise TypeError(f"no JSON for a numpy array of {value.dtype}")
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and not np.isfinite(item) else item
    raise TypeError(f"no JSON for {type(value).__name__}")
