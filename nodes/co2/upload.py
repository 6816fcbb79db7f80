"""The push-sequential decision, pure: what to do with `body` sent at `offset`
for a stored file of `stored_size` bytes.

- offset == stored size: append.
- offset inside the file: the overlapping bytes must equal what is stored
  (a replayed or resumed chunk); any bytes past the end are appended. A
  mismatch is a conflict: stored bytes are never rewritten.
- offset past the end: 416 (bytes would be skipped), with the stored size so
  the unit can resume from it.
- a file that would grow past `max_file_bytes`: refused.

I/O reads `overlap(...)` bytes of the stored file, then calls `decide(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["append", "duplicate", "conflict", "past_end", "too_large"]


@dataclass(frozen=True)
class Decision:
    action: Action
    append_at: int  # where `tail` goes (the stored size)
    tail: bytes  # bytes to append; empty unless action == "append"
    size_after: int  # stored size once the decision is carried out


def overlap(stored_size: int, offset: int, body_len: int) -> tuple[int, int]:
    """The (start, length) of stored bytes the body overlaps and must match."""
    if offset >= stored_size:
        return offset, 0
    return offset, min(stored_size - offset, body_len)


def decide(
    stored_size: int,
    offset: int,
    body: bytes,
    stored_overlap: bytes,
    max_file_bytes: int,
) -> Decision:
    """Decide for one request. `stored_overlap` must be the stored bytes at
    `overlap(stored_size, offset, len(body))`."""
    if stored_size < 0 or offset < 0:
        raise ValueError("sizes and offsets are non-negative")
    if offset > stored_size:
        return Decision("past_end", stored_size, b"", stored_size)
    start, length = overlap(stored_size, offset, len(body))
    if len(stored_overlap) != length:
        raise ValueError(f"stored_overlap must be {length} bytes from {start}")
    if body[:length] != stored_overlap:
        return Decision("conflict", stored_size, b"", stored_size)
    tail = body[length:]
    if not tail:
        return Decision("duplicate", stored_size, b"", stored_size)
    if stored_size + len(tail) > max_file_bytes:
        return Decision("too_large", stored_size, b"", stored_size)
    return Decision("append", stored_size, bytes(tail), stored_size + len(tail))
