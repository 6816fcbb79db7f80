"""Aggregator messages at flood rate: distinct, realistic, cheap to make.

A flood (benchmarks, the reactor-latency test) needs tens of thousands of
zlib-compressed FITACF records per second, each with its own radar time (the
history store sorts by time, and repeated times would make it do work no real
feed causes). Compressing every record costs ~60 µs, so instead each of a
site's record templates is compressed once, in three independent pieces of one
zlib stream:

    zlib header | deflate(bytes before the time fields), full flush
                | stored block (the time fields, uncompressed)
                | deflate(bytes after them), final block | Adler-32 of it all

A full flush ends the first piece byte-aligned with no back-references into
the stored block, and the last piece is compressed on its own, so only the
stored block (a few dozen bytes) and the checksum change per message. The
result is an ordinary zlib stream that any inflater reads.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from dataclasses import dataclass

from nodes.radar import dmap, synth

_ZLIB_HEADER = b"\x78\x9c"
_TIME_FIELDS = (
    ("time.yr", "<h"),
    ("time.mo", "<h"),
    ("time.dy", "<h"),
    ("time.hr", "<h"),
    ("time.mt", "<h"),
    ("time.sc", "<h"),
    ("time.us", "<i"),
)


@dataclass(frozen=True)
class _Template:
    head: bytes  # deflate of the bytes before the time fields, ending byte-aligned
    tail: bytes  # deflate of the bytes after them, with the final block
    head_adler: int
    after: bytes  # the bytes after the time fields (for the checksum)
    times: bytes  # the time fields as encoded
    offsets: tuple[int, ...]  # where each time value sits in `times`


def _deflate(data: bytes, mode: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(mode)


def _template(raw: bytes) -> _Template:
    start = raw.index(b"time.yr\x00")
    offsets, pos = [], start
    for name, fmt in _TIME_FIELDS:
        tag = name.encode() + b"\x00"
        if raw[pos : pos + len(tag)] != tag:
            raise ValueError("time fields are not contiguous in this record layout")
        pos += len(tag) + 1  # name, type byte
        offsets.append(pos - start)
        pos += struct.calcsize(fmt)
    before, times, after = raw[:start], raw[start:pos], raw[pos:]
    if len(times) > 0xFFFF:
        raise ValueError("time block too long for one stored block")
    return _Template(
        _deflate(before, zlib.Z_FULL_FLUSH),
        _deflate(after, zlib.Z_FINISH),
        zlib.adler32(before),
        after,
        times,
        tuple(offsets),
    )


class FloodSite:
    """Aggregator bodies (zlib DMAP) of one radar: one scan of `beams` beam
    templates in a loop, message n stamped `start + n * step` (radar time)."""

    def __init__(
        self, stid: int, start: float, step: float = 0.001, beams: int = 16, seed: int = 0
    ) -> None:
        gen = synth.RadarSynth(stid, seed=seed, beams=beams, sounding_every=0)
        records = list(itertools.islice(gen.records(start - start % gen.scan_period), beams))
        self.templates = [_template(dmap.encode_record(r)) for r in records]
        self.start = float(start)
        self.step = float(step)
        self.n = 0

    def next_body(self) -> bytes:
        """The next message's body; its radar time is `time_of(n)` for the n it had."""
        tpl = self.templates[self.n % len(self.templates)]
        when = self.start + self.n * self.step
        self.n += 1
        fields = synth.radar_time_fields(when)
        times = bytearray(tpl.times)
        for (name, fmt), at in zip(_TIME_FIELDS, tpl.offsets, strict=True):
            struct.pack_into(fmt, times, at, fields[name])
        block = b"\x00" + struct.pack("<HH", len(times), len(times) ^ 0xFFFF) + times
        check = zlib.adler32(tpl.after, zlib.adler32(times, tpl.head_adler))
        return b"".join((_ZLIB_HEADER, tpl.head, block, tpl.tail, check.to_bytes(4, "big")))

    def time_of(self, n: int) -> float:
        return self.start + n * self.step
