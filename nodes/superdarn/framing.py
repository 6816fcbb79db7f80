"""RST "Connex" framing of the radar realtime feed, as an incremental decoder.

Each message is the magic `49 08 1e 00`, a uint32 little-endian payload
length, then the payload (one DMAP record; a zero-length payload is legal and
carries nothing). The radar's server drops the *oldest* bytes of a slow
client, so the stream may resume anywhere: the decoder then scans for the
magic. A frame longer than `max_payload` is drained (its bytes are skipped
as they arrive, never buffered) so the stream stays in step.

A false magic inside payload bytes is possible after a resynchronisation; a
frame found that way with an over-limit length is therefore taken as noise (the
scan goes on one byte further) rather than drained, since draining a bogus
length of up to 4 GiB would swallow the real frames behind it. For the same
reason, with `payload_prefix` set (the DMAP record code, for the radar feed), a
candidate found after a resynchronisation must start its payload with it.
"""

from __future__ import annotations

import struct

MAGIC = b"\x49\x08\x1e\x00"
HEADER = struct.Struct("<4sI")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_PAYLOAD = 1 << 20


def frame(payload: bytes) -> bytes:
    """One Connex message around `payload`."""
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("payload too large for a Connex frame")
    return HEADER.pack(MAGIC, len(payload)) + payload


class FrameDecoder:
    """Feed bytes, get complete payloads. Never raises on stream content.

    Counters: `frames` (payloads returned), `empty` (zero-length frames),
    `oversize` (frames drained), `resyncs` (times the stream had to be searched
    for the magic) and `skipped` (bytes discarded while searching)."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, payload_prefix: bytes = b"") -> None:
        if max_payload < 0:
            raise ValueError("max_payload must be >= 0")
        self.max_payload = max_payload
        # After a resynchronisation, a candidate frame whose payload does not
        # start with this (e.g. the DMAP record code) is a false magic.
        self.payload_prefix = bytes(payload_prefix)
        self._buf = bytearray()
        self._drain = 0  # bytes of an oversize payload still to skip
        self._in_step = True  # False after skipping bytes, until a frame is confirmed
        self.frames = 0
        self.empty = 0
        self.oversize = 0
        self.resyncs = 0
        self.skipped = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._drain:
            if len(data) <= self._drain:
                self._drain -= len(data)
                return out
            data = memoryview(data)[self._drain :]
            self._drain = 0
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while True:
            if n - pos < HEADER_SIZE:
                if n - pos >= 4 or (n - pos and not MAGIC.startswith(bytes(buf[pos:n]))):
                    # Not enough for a header, but the magic must at least begin here.
                    start = buf.find(MAGIC, pos)
                    if start < 0:
                        start = self._partial_magic_start(buf, pos, n)
                    if start != pos:
                        self._skip(start - pos)
                        pos = start
                break
            if buf[pos : pos + 4] != MAGIC:
                start = buf.find(MAGIC, pos)
                if start < 0:
                    start = self._partial_magic_start(buf, pos, n)
                self._skip(start - pos)
                pos = start
                continue
            length = HEADER.unpack_from(buf, pos)[1]
            if length > self.max_payload:
                if not self._in_step:
                    self._skip(1)  # most likely a false magic inside data
                    pos += 1
                    continue
                self.oversize += 1
                available = n - pos - HEADER_SIZE
                if available >= length:
                    pos += HEADER_SIZE + length
                    continue
                self._drain = length - available
                pos = n
                break
            prefix = self.payload_prefix
            if not self._in_step and prefix and length >= len(prefix):
                if n - pos - HEADER_SIZE < len(prefix):
                    break  # cannot judge this candidate yet
                if not buf.startswith(prefix, pos + HEADER_SIZE):
                    self._skip(1)
                    pos += 1
                    continue
            end = pos + HEADER_SIZE + length
            if end > n:
                break  # wait for the rest (short reads are normal)
            if length == 0:
                self.empty += 1
            else:
                out.append(bytes(buf[pos + HEADER_SIZE : end]))
                self.frames += 1
            self._in_step = True
            pos = end
        if pos:
            del buf[:pos]
        return out

    def _skip(self, count: int) -> None:
        if count <= 0:
            return
        if self._in_step:
            self.resyncs += 1
        self._in_step = False
        self.skipped += count

    @staticmethod
    def _partial_magic_start(buf: bytearray, pos: int, n: int) -> int:
        """Where a magic cut by the end of the buffer might begin (keep those
        last 1-3 bytes), or `n` if none can."""
        for keep in (3, 2, 1):
            if n - keep >= pos and MAGIC.startswith(bytes(buf[n - keep : n])):
                return n - keep
        return n
