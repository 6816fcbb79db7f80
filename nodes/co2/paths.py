"""Unit ids and the relative paths units may write or read, validated strictly.

Everything here works on the *raw* URL path (still percent-encoded, as it came
off the wire): each segment is decoded exactly once and the decoded name must
be a plain file name. So `..`, `%2e%2e`, `%2f`, `%00`, backslashes, absolute
paths, empty segments, hidden and special names are all refused before any
file system call is made.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from nodes.co2.errors import Rejected

# The firmware's hardware id: "co2unit-" and the FiPy's 12 hex digits.
DEFAULT_UNIT_PATTERN = r"co2unit-[0-9a-f]{12}"

# A file or directory name: starts with a letter or digit (so never ".", "..",
# a hidden name, "-option" or "~"), then letters, digits, dot, dash, underscore.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
# Names that mean a device on some systems: refused so the tree can be copied anywhere.
_DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(10)] + [f"lpt{i}" for i in range(10)]
)
MAX_DEPTH = 8
MAX_RAW_PATH = 1024

# Top-level directories the firmware pushes (its `sync_dirs`): data/readings and errors.
DEFAULT_UPLOAD_DIRS = ("data", "errors")


def compile_unit_pattern(pattern: str = DEFAULT_UNIT_PATTERN) -> re.Pattern[str]:
    """Compile a unit id pattern; it must match the whole id (fullmatch) and may
    only admit names that are also safe single path segments."""
    return re.compile(pattern, re.ASCII)


def check_unit_id(raw: bytes | str, pattern: re.Pattern[str]) -> str:
    """The unit id of a URL segment, or Rejected(400). The id is used as a
    directory name, so it must also be a plain name."""
    text = _decode_segment(raw) if isinstance(raw, bytes) else raw
    if not pattern.fullmatch(text) or not is_plain_name(text):
        raise Rejected(400, "bad_unit_id", "unit id does not match the unit id pattern")
    return text


def check_relative_path(
    raw_segments: list[bytes], allowed_top: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """Decode and validate the segments of a relative path (raw, from the URL).

    Returns the decoded names. `allowed_top` restricts the first segment (the
    directories units push). Raises Rejected(400) on anything but plain names.
    """
    if not raw_segments:
        raise Rejected(400, "bad_path", "empty path")
    if sum(len(s) + 1 for s in raw_segments) > MAX_RAW_PATH:
        raise Rejected(400, "bad_path", "path too long")
    if len(raw_segments) > MAX_DEPTH:
        raise Rejected(400, "bad_path", f"path deeper than {MAX_DEPTH} levels")
    names = tuple(_decode_segment(s) for s in raw_segments)
    for name in names:
        if not is_plain_name(name):
            raise Rejected(400, "bad_path", f"not a plain file name: {name!r}")
    if allowed_top is not None and names[0] not in allowed_top:
        raise Rejected(403, "path_not_allowed", f"uploads go under {', '.join(allowed_top)} only")
    return names


def _decode_segment(raw: bytes) -> str:
    """Percent-decode one segment once; the result must be printable ASCII."""
    if b"\\" in raw or b"\x00" in raw:
        raise Rejected(400, "bad_path", "backslash or NUL in path")
    try:
        decoded = unquote_to_bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise Rejected(400, "bad_path", "path is not ASCII") from None
    if not decoded.isprintable() or "\x00" in decoded:
        raise Rejected(400, "bad_path", "control characters in path")
    return decoded


def is_plain_name(name: str) -> bool:
    if not _NAME.fullmatch(name):
        return False
    if name.split(".", 1)[0].lower() in _DEVICE_NAMES:
        return False
    return not name.endswith(".")


READINGS_NAME = re.compile(r"readings-[0-9]{4,8}\.tsv", re.ASCII)


def is_readings_file(names: tuple[str, ...]) -> bool:
    """Whether an uploaded path is a readings file (`data/readings/readings-NNNN.tsv`)."""
    return (
        len(names) == 3
        and names[0] == "data"
        and names[1] == "readings"
        and READINGS_NAME.fullmatch(names[2]) is not None
    )
