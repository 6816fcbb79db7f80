"""Connex framing: incremental decoding, resynchronisation, oversize frames."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.superdarn.framing import MAGIC, FrameDecoder, frame

DMAP_CODE = b"\x01\x00\x01\x00"


def feed_all(decoder: FrameDecoder, chunks) -> list[bytes]:
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def payload(i: int, size: int = 40) -> bytes:
    return DMAP_CODE + bytes([i % 256]) * size


def test_frames_split_at_every_byte_boundary():
    payloads = [payload(i, 10 * i) for i in range(1, 6)]
    data = b"".join(frame(p) for p in payloads)
    assert feed_all(FrameDecoder(), [data]) == payloads
    assert feed_all(FrameDecoder(), [data[i : i + 1] for i in range(len(data))]) == payloads
    for cut in range(len(data)):
        assert feed_all(FrameDecoder(), [data[:cut], data[cut:]]) == payloads


def test_zero_length_frames_are_accepted_and_carry_nothing():
    decoder = FrameDecoder()
    data = frame(b"") + frame(payload(1)) + frame(b"") + frame(b"") + frame(payload(2))
    assert decoder.feed(data) == [payload(1), payload(2)]
    assert decoder.empty == 3 and decoder.frames == 2 and decoder.resyncs == 0


def test_resynchronises_after_garbage_and_dropped_bytes():
    frames = [frame(payload(i, 30)) for i in range(4)]
    # The server dropped the oldest bytes: the stream starts mid-frame.
    data = frames[0][13:] + frames[1] + b"\x00garbage\x49\x08" + frames[2] + frames[3]
    decoder = FrameDecoder()
    assert feed_all(decoder, [data[i : i + 7] for i in range(0, len(data), 7)]) == [
        payload(1, 30),
        payload(2, 30),
        payload(3, 30),
    ]
    assert decoder.resyncs == 2 and decoder.skipped == len(frames[0]) - 13 + 10


def test_magic_split_across_feeds_during_resync():
    data = b"noise" + frame(payload(9))
    for cut in range(len(data)):
        assert feed_all(FrameDecoder(), [data[:cut], data[cut:]]) == [payload(9)]


def test_oversize_frames_are_drained_not_desynchronising():
    decoder = FrameDecoder(max_payload=100)
    big = frame(DMAP_CODE + bytes(5000))
    data = frame(payload(1)) + big + frame(payload(2)) + big + frame(payload(3))
    chunks = [data[i : i + 333] for i in range(0, len(data), 333)]
    assert feed_all(decoder, chunks) == [payload(1), payload(2), payload(3)]
    assert decoder.oversize == 2 and decoder.resyncs == 0
    assert decoder.buffered == 0


def test_large_frames_within_the_default_limit_pass():
    # 17 kB is a 110-gate beam; the old client refused anything over 10,000 bytes.
    big = DMAP_CODE + bytes(range(256)) * 200
    assert FrameDecoder().feed(frame(big) + frame(payload(1))) == [big, payload(1)]


def test_false_magic_with_huge_length_after_resync_is_skipped():
    fake = MAGIC + struct.pack("<I", 0xFFFFFFF0)
    data = b"xx" + fake + b"junk" + frame(payload(4))
    assert FrameDecoder().feed(data) == [payload(4)]


def test_payload_prefix_rejects_false_frames_only_after_resync():
    false_frame = MAGIC + struct.pack("<I", 20) + b"not a record........"
    decoder = FrameDecoder(payload_prefix=DMAP_CODE)
    assert decoder.feed(b"zz" + false_frame + frame(payload(5))) == [payload(5)]
    # In step, a frame is a frame: the record decoder judges its payload.
    assert FrameDecoder(payload_prefix=DMAP_CODE).feed(false_frame) == [b"not a record........"]


def test_buffer_is_bounded_by_the_size_limit():
    decoder = FrameDecoder(max_payload=1000)
    for _ in range(200):
        decoder.feed(b"\x00" * 4096)  # no magic at all
        assert decoder.buffered <= 3
    decoder.feed(MAGIC + struct.pack("<I", 900) + DMAP_CODE)
    assert decoder.buffered <= 1000 + 8


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 97), min_size=1, max_size=30),
)
def test_any_chunking_gives_the_same_payloads(sizes, cuts):
    payloads = [DMAP_CODE + bytes([i]) * n for i, n in enumerate(sizes)]
    data = b"".join(frame(p) for p in payloads)
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        chunks.append(data[pos : pos + step])
        pos += step
        i += 1
    assert feed_all(FrameDecoder(), chunks) == payloads


@settings(max_examples=200, deadline=None)
@given(garbage=st.lists(st.binary(max_size=60), min_size=4, max_size=4), chunk=st.integers(1, 64))
def test_garbage_between_frames_never_loses_a_following_frame(garbage, chunk):
    payloads = [DMAP_CODE + bytes([i]) * 25 for i in range(3)]
    # Garbage never holds the magic here (that case is covered above).
    garbage = [g.replace(b"\x49", b"\x48") for g in garbage]
    data = garbage[0] + frame(payloads[0]) + garbage[1] + frame(payloads[1]) + garbage[2]
    data += frame(payloads[2]) + garbage[3]
    decoder = FrameDecoder(payload_prefix=DMAP_CODE)
    out = feed_all(decoder, [data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert out == payloads


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(1, 300))
def test_random_bytes_never_raise_and_stay_bounded(data, chunk):
    decoder = FrameDecoder(max_payload=512)
    for i in range(0, len(data), chunk):
        for p in decoder.feed(data[i : i + chunk]):
            assert 0 < len(p) <= 512
        assert decoder.buffered <= 512 + 8 + chunk
