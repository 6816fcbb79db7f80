"""The push-sequential decision, pure: what to do with a body of `body_len`
bytes sent at `offset` for a stored file of `stored_size` bytes.

- offset == stored size: append.
- offset inside the file: the overlapping bytes must equal what is stored
  (a replayed or resumed chunk); any bytes past the end are appended. A
  mismatch is a conflict: stored bytes are never rewritten.
- offset past the end: 416 (bytes would be skipped), with the stored size so
  the unit can resume from it.
- a file that would grow past `max_file_bytes`: refused.

The body itself is never needed whole: I/O compares the `overlap(...)` range
of the stored file with the start of the body (block by block), then calls
`decide(...)` and copies `tail_len` bytes from `tail_from` in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["append", "duplicate", "conflict", "past_end", "too_large"]


@dataclass(frozen=True)
class Decision:
    action: Action
    append_at: int  # where the tail goes (the stored size)
    tail_from: int  # offset in the body of the first byte to append
    tail_len: int  # bytes to append; 0 unless action == "append"
    size_after: int  # stored size once the decision is carried out


def overlap(stored_size: int, offset: int, body_len: int) -> tuple[int, int]:
    """The (start, length) of stored bytes the body overlaps and must match."""
    if offset >= stored_size:
        return offset, 0
    return offset, min(stored_size - offset, body_len)


def decide(
    stored_size: int, offset: int, body_len: int, overlap_matches: bool, max_file_bytes: int
) -> Decision:
    """Decide for one request. `overlap_matches`: whether the stored bytes at
    `overlap(stored_size, offset, body_len)` equal the body's first bytes."""
    if stored_size < 0 or offset < 0 or body_len < 0:
        raise ValueError("sizes and offsets are non-negative")
    if offset > stored_size:
        return Decision("past_end", stored_size, 0, 0, stored_size)
    _, length = overlap(stored_size, offset, body_len)
    if not overlap_matches:
        return Decision("conflict", stored_size, 0, 0, stored_size)
    tail_len = body_len - length
    if not tail_len:
        return Decision("duplicate", stored_size, 0, 0, stored_size)
    if stored_size + tail_len > max_file_bytes:
        return Decision("too_large", stored_size, 0, 0, stored_size)
    return Decision("append", stored_size, length, tail_len, stored_size + tail_len)
