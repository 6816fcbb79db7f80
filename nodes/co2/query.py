"""Query strings of unit requests, parsed strictly.

The firmware sends a handful of short `key=value` pairs. A repeated key, a
value that is not printable text, or too many or too long pairs is refused
with Rejected(400) rather than guessed at.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from nodes.co2.errors import Rejected

MAX_QUERY_BYTES = 2048
MAX_FIELDS = 32
MAX_OFFSET = 1 << 40  # far beyond any file a unit holds; keeps arithmetic sane


def parse_query(raw: bytes) -> dict[str, str]:
    """Decode `a=1&b=x` (raw, percent-encoded, `+` meaning space) into a dict."""
    if not raw:
        return {}
    if len(raw) > MAX_QUERY_BYTES:
        raise Rejected(400, "bad_query", "query string too long")
    pairs = raw.split(b"&")
    if len(pairs) > MAX_FIELDS:
        raise Rejected(400, "bad_query", "too many query fields")
    out: dict[str, str] = {}
    for pair in pairs:
        if not pair:
            continue  # "a=1&&b=2" and a trailing "&" are harmless
        key_raw, _, value_raw = pair.partition(b"=")
        key = _decode(key_raw)
        if not key:
            raise Rejected(400, "bad_query", "empty query key")
        if key in out:
            raise Rejected(400, "bad_query", f"query key repeated: {key!r}")
        out[key] = _decode(value_raw)
    return out


def _decode(raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "bad_query", "query value is not UTF-8") from None
    if not text.isprintable():
        raise Rejected(400, "bad_query", "control characters in query")
    return text


def parse_offset(query: dict[str, str]) -> int:
    """The `offset` of a push-sequential request: decimal digits only."""
    raw = query.get("offset")
    if raw is None:
        raise Rejected(400, "bad_offset", "offset is required")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise Rejected(400, "bad_offset", "offset must be a non-negative decimal integer")
    value = int(raw)
    if value > MAX_OFFSET:
        raise Rejected(400, "bad_offset", "offset too large")
    return value


def parse_flag(query: dict[str, str], key: str) -> bool:
    """A boolean flag as the firmware writes it (Python's `True`/`False`) or 1/0."""
    raw = query.get(key)
    if raw is None or raw in ("False", "false", "0", ""):
        return False
    if raw in ("True", "true", "1"):
        return True
    raise Rejected(400, "bad_query", f"{key} must be True or False")


def parse_limit(query: dict[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise Rejected(400, "bad_query", "limit must be a positive integer")
    return max(1, min(int(raw), maximum))
