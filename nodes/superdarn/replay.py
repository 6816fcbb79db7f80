"""Archived FITACF files → beam and scan products, for `obsmesh replay superdarn`.

No storage here: the caller gets each beam and each completed scan through
callbacks (the node writes them to its history) and progress through another.
A corrupt record ends its file (DMAP cannot be resynchronised inside a file),
but everything decoded before it is kept, and the next file is read.
Scans run on across files (a scan may straddle two files) and are flushed at
the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nodes.radar import dmap, radars
from nodes.radar.products import ProductError, ScanAccumulator, beam_product

from .files import FileFormatError, read_file_bytes

Callback = Callable[[dict[str, Any]], None]


@dataclass
class ReplaySummary:
    files: int = 0
    records: int = 0
    beams: int = 0
    scans: int = 0
    bad_records: int = 0
    errors: list[str] = field(default_factory=list)


def replay_files(
    paths: Iterable[str],
    on_beam: Callback,
    on_scan: Callback,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: int = 500,
) -> ReplaySummary:
    """Read the files in order; `on_progress(done, total)` in bytes of input files."""
    paths = list(paths)
    sizes = []
    for p in paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    done_before = 0
    summary = ReplaySummary()
    scans = ScanAccumulator()

    def emit(completed: list[dict[str, Any]]) -> None:
        for scan in completed:
            summary.scans += 1
            on_scan(scan)

    for path, size in zip(paths, sizes, strict=True):
        try:
            data = read_file_bytes(path)
        except (OSError, FileFormatError) as exc:
            summary.errors.append(f"{path}: {exc}")
            done_before += size
            continue
        summary.files += 1
        n = len(data)
        for record, offset in iter_file_records(data, path, summary.errors):
            summary.records += 1
            info = (
                radars.radar_by_stid(record.get("stid"))
                if isinstance(record.get("stid"), int)
                else None
            )
            try:
                beam = beam_product(
                    record, info.code if info else None, info.as_dict() if info else None
                )
            except ProductError:
                summary.bad_records += 1
                continue
            summary.beams += 1
            on_beam(beam)
            emit(scans.add(beam))
            if on_progress is not None and summary.records % progress_every == 0:
                on_progress(done_before + (size * offset) // max(n, 1), total)
        done_before += size
        if on_progress is not None:
            on_progress(done_before, total)
    emit(scans.flush())
    return summary


def iter_file_records(
    data: bytes, path: str, errors: list[str]
) -> Iterator[tuple[dict[str, Any], int]]:
    """(record, offset after it) for each record of one file's bytes. A corrupt
    record ends the file (DMAP cannot be resynchronised inside a file): its
    error goes to `errors`, and the records before it stand."""
    offset, n = 0, len(data)
    while offset < n:
        try:
            record, offset = dmap.decode_at(data, offset, lazy=True)
        except dmap.DmapError as exc:
            errors.append(f"{path}: {exc}; rest of the file skipped")
            return
        yield record, offset


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """`[#########.....]  45%` for a terminal line."""
    fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%"
