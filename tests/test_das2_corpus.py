"""The decoder over a corpus written byte by byte (`das2_corpus.py`), fuzzed
header lengths, and what das2C's dataset builder would make of the node's
output (`das2c_model.py`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.das2.reduce import plane_names, reduce_stream
from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    Decoder,
    PacketHeader,
    StreamException,
    coalesce,
    decode,
    encode,
    header_length,
    same_events,
)
from tests.das2_corpus import corpus, header, stream_header
from tests.das2c_model import Das2cLoadError, dimensions

CASES = {c.name: c for c in corpus()}


def feed_in_pieces(raw: bytes, size: int) -> list:
    dec = Decoder()
    events = []
    for i in range(0, len(raw), size):
        events += dec.feed(raw[i : i + size])
    dec.finish()
    return coalesce(events)


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_stream_decodes_to_what_it_holds(name: str) -> None:
    case = CASES[name]
    events = decode(case.raw)
    data = [e for e in events if isinstance(e, Data)]
    counts: dict[int, int] = {}
    for d in data:
        counts[d.packet_id] = counts.get(d.packet_id, 0) + len(d)
    assert counts == case.records
    for pid, names in case.names.items():
        last = [e for e in events if isinstance(e, PacketHeader) and e.packet_id == pid][-1]
        assert [p.name for p in plane_names(last).planes] == names
    for pid, first in case.first.items():
        d = next(d for d in data if d.packet_id == pid)
        for got, want in zip(d.columns, first, strict=True):
            np.testing.assert_allclose(got[0], np.asarray(want, dtype=got.dtype), rtol=1e-6)
    assert [(c.type, c.value) for c in events if isinstance(c, Comment)] == case.comments
    assert [e.type for e in events if isinstance(e, StreamException)] == case.exceptions
    # any chunking gives the same events; encoded again, the same events again
    for size in (1, 7, 4096):
        assert same_events(feed_in_pieces(case.raw, size), events)
    assert same_events(decode(encode(events)), events)


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_stream_reduces_to_what_das2c_loads(name: str) -> None:
    case = CASES[name]
    for minmax in (False, True):
        reduced = decode(reduce_stream(case.raw, 60.0, minmax=minmax))
        for ev in reduced:
            if isinstance(ev, PacketHeader):
                assert all(p.name for p in ev.planes)
                dims = dimensions(ev)
                for p in ev.planes[1:]:
                    op = p.properties.get("operation", ("", ""))[1]
                    assert op in ("BIN_AVG", "BIN_MIN", "BIN_MAX")
                    assert p.properties["source"][1] in dims


@pytest.mark.slow  # measured 4.1 s (property test)
@given(st.data())
@settings(max_examples=100, deadline=None)
def test_any_padding_of_header_lengths_decodes_alike(data) -> None:
    """The corpus with each header length padded at random (spaces before,
    zeros before, spaces after the digits, all as sscanf("%d") reads them)
    decodes to the same events as with zero-padded lengths."""

    def pad(length: int) -> str:
        digits = str(length)
        room = 6 - len(digits)
        lead = data.draw(st.integers(0, room))
        zeros = data.draw(st.integers(0, room - lead))
        return " " * lead + "0" * zeros + digits + " " * (room - lead - zeros)

    for case in corpus(pad):
        assert same_events(decode(case.raw), decode(CASES[case.name].raw)), case.name


@given(st.integers(0, 999_999), st.integers(0, 5), st.sampled_from([" ", "0"]))
def test_header_length_field_any_padding(length: int, extra: int, pad: str) -> None:
    digits = str(length)
    room = 6 - len(digits)
    lead = min(extra, room)
    field = (pad * lead + digits).ljust(6)
    assert header_length(field.encode()) == length


@pytest.mark.parametrize(
    "field", [b"      ", b"+00072", b"-00072", b"  7 2 ", b"0x0048", b"\t   72", b"72\x00   "]
)
def test_header_length_fields_das2_never_writes_are_refused(field: bytes) -> None:
    with pytest.raises(Das2StreamError, match="six-character number"):
        header_length(field)


def test_a_space_padded_header_decodes_like_a_zero_padded_one() -> None:
    spaces = stream_header(pad="spaces") + header(
        b"[xx]", '<comment type="a" value="b" source="c"/>', pad="spaces"
    )
    zeros = stream_header() + header(b"[xx]", '<comment type="a" value="b" source="c"/>')
    assert spaces != zeros and spaces[4:10] == b"    31"
    assert decode(spaces) == decode(zeros)


def test_the_model_refuses_what_das2c_refused_in_the_issue() -> None:
    """The node's old reduced magnetometer (an average without source beside
    its .min/.max) and its old spectrogram (an unnamed yscan) are refused with
    das2C's own messages; the same planes as served now load."""
    old_mag = decode(CASES["das2c_reduced_min_max"].raw)[1]
    planes = list(old_mag.planes)
    planes[1] = type(planes[1])(**{**planes[1].__dict__, "properties": {}})
    with pytest.raises(Das2cLoadError, match="A dimension named Bx already exists"):
        dimensions(PacketHeader(1, tuple(planes)))
    assert set(dimensions(old_mag)) == {"time", "Bx", "By"}
    spec = [e for e in decode(CASES["yscan_ytag_list_unnamed"].raw) if isinstance(e, PacketHeader)]
    with pytest.raises(Das2cLoadError, match="A dimension named time already exists"):
        dimensions(spec[0])
    assert set(dimensions(plane_names(spec[0]))) == {"time", "frequency", "yscan"}
