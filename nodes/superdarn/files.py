"""Reading archived DMAP files (plain, bzip2 or gzip; recognised by content)."""

from __future__ import annotations

import bz2
import gzip
import pathlib


class FileFormatError(ValueError):
    """A file that claims a compression it does not hold."""


def read_file_bytes(path: str | pathlib.Path) -> bytes:
    """A DMAP file's bytes, decompressed when it is bzip2 or gzip."""
    raw = pathlib.Path(path).read_bytes()
    try:
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise FileFormatError(f"{path}: damaged compressed file: {exc}") from None
    return raw
