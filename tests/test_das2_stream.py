"""das2 stream decoder and encoder: round trips, any chunking, corrupt input.

The strategies at the top build streams whose values survive encoding exactly
(text fields carry limited precision, so values are drawn on that grid); the
reducer tests import them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.das2.stream import (
    Comment,
    Das2StreamError,
    Data,
    Decoder,
    Encoder,
    PacketHeader,
    Plane,
    StreamException,
    StreamHeader,
    coalesce,
    decode,
    encode,
    encode_records,
    same_events,
    value_type,
)
from nodes.das2.timefmt import US_PER_DAY, us1970_to_units

REAL_TYPES = ["sun_real8", "sun_real4", "little_endian_real8", "little_endian_real4"]
TIME_UNIT_CHOICES = ["us2000", "t2000", "t1970", "mj1958", "", "UTC"]
# 1950..2080: float seconds since 1970 still resolve a microsecond there
US_LO = -20 * 365 * US_PER_DAY
US_HI = 110 * 365 * US_PER_DAY

# XML 1.0 can carry these; the encoder refuses the rest
xml_text = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cs",),
        exclude_characters="".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32)]))
        + "\ufffe\uffff",
    ),
    max_size=20,
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
properties = st.dictionaries(
    names,
    st.tuples(st.sampled_from(["String", "double", "Datum", "boolean", "int"]), xml_text),
    max_size=3,
)


@st.composite
def value_types(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["real", "real", "ascii", "time"]))
    if kind == "real":
        return draw(st.sampled_from(REAL_TYPES))
    if kind == "ascii":
        return f"ascii{draw(st.integers(8, 20))}"
    return f"time{draw(st.integers(11, 32))}"


@st.composite
def planes(draw: st.DrawFn, kind: str, name: str) -> Plane:
    vt = value_type(draw(value_types()))
    units = draw(st.sampled_from(TIME_UNIT_CHOICES)) if vt.kind == "time" else draw(xml_text)
    props = draw(properties)
    if kind != "yscan":
        return Plane(kind, vt, name, units, properties=props)
    nitems = draw(st.integers(1, 4))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    tags = draw(st.one_of(st.none(), st.tuples(*[finite] * nitems)))
    interval = draw(st.one_of(st.none(), finite)) if tags is None else None
    tag_min = draw(st.one_of(st.none(), finite)) if tags is None else None
    return Plane("yscan", vt, name, units, nitems, draw(xml_text), tags, interval, tag_min, props)


@st.composite
def packet_headers(draw: st.DrawFn, packet_id: int) -> PacketHeader:
    x = draw(planes("x", draw(st.sampled_from(["", "time"]))))
    kinds = draw(st.lists(st.sampled_from(["y", "z", "yscan"]), min_size=0, max_size=3))
    plane_names = draw(st.lists(names, min_size=len(kinds), max_size=len(kinds), unique=True))
    others = [draw(planes(k, n)) for k, n in zip(kinds, plane_names, strict=True)]
    return PacketHeader(packet_id, (x, *others), draw(properties))


def _time_step(width: int) -> int:
    """The time precision a timeN field carries (as the encoder rounds)."""
    room = width - 1
    if room >= 20:
        return 10 ** (6 - min(6, room - 20))
    return {19: 10**6}.get(
        room, 60 * 10**6 if room >= 16 else 3600 * 10**6 if room >= 13 else US_PER_DAY
    )


@st.composite
def values(draw: st.DrawFn, plane: Plane, n: int) -> np.ndarray:
    shape = (n, plane.nitems) if plane.kind == "yscan" else (n,)
    count = int(np.prod(shape))
    vt = plane.type
    if vt.kind == "real" and vt.size == 4:
        xs = draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
        return np.array(xs, dtype=np.float32).reshape(shape)
    if vt.kind == "real":
        xs = draw(st.lists(st.floats(), min_size=count, max_size=count))
        return np.array(xs, dtype=np.float64).reshape(shape)
    if vt.kind == "ascii":
        digits = max(0, vt.size - 1 - 7)
        special = st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf")])
        exact = st.builds(
            lambda sign, mant, exp: float(f"{sign}{str(mant)[0]}.{str(mant)[1:]}e{exp}"),
            st.sampled_from(["", "-"]),
            st.integers(10**digits, 10 ** (digits + 1) - 1),
            st.integers(-99, 99),
        )
        xs = draw(st.lists(st.one_of(exact, special), min_size=count, max_size=count))
        return np.array(xs, dtype=np.float64).reshape(shape)
    units = plane.units if plane.units in ("us2000", "t2000", "t1970", "mj1958") else "us2000"
    step = max(_time_step(vt.size), 1000 if units == "mj1958" else 1)
    ks = draw(st.lists(st.integers(US_LO // step, US_HI // step), min_size=count, max_size=count))
    us = np.array(ks, dtype=np.int64) * step
    return us1970_to_units(us, units).reshape(shape)


@st.composite
def streams(draw: st.DrawFn, max_items: int = 8) -> list:
    """A valid stream as a list of events (data runs never empty)."""
    events: list = [StreamHeader(draw(properties), draw(st.sampled_from(["2.2", "2.0"])))]
    headers: dict[int, PacketHeader] = {}
    ids = draw(st.lists(st.integers(1, 99), min_size=1, max_size=3, unique=True))
    for _ in range(draw(st.integers(0, max_items))):
        what = draw(st.sampled_from(["header", "data", "data", "comment", "exception"]))
        if what == "header" or (what == "data" and not headers):
            pid = draw(st.sampled_from(ids))
            headers[pid] = draw(packet_headers(pid))
            events.append(headers[pid])
        elif what == "data":
            h = headers[draw(st.sampled_from(sorted(headers)))]
            n = draw(st.integers(1, 4))
            events.append(Data(h, tuple(draw(values(p, n)) for p in h.planes)))
        elif what == "comment":
            events.append(Comment(draw(xml_text), draw(xml_text), draw(xml_text)))
        else:
            events.append(StreamException(draw(xml_text), draw(xml_text)))
    return events


# ---------------------------------------------------------------- helpers


def feed_in_pieces(data: bytes, cuts: list[int]) -> list:
    dec = Decoder()
    events: list = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        events.extend(dec.feed(data[last:cut]))
        last = cut
    dec.finish()
    return coalesce(events)


def error_of(data: bytes, cuts: list[int] = ()) -> tuple[Das2StreamError, list]:
    """The decoder's error for a corrupt stream and every event it gave first."""
    dec = Decoder()
    events: list = []
    last = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            events.extend(dec.feed(data[last:cut]))
            last = cut
        dec.finish()
    except Das2StreamError as exc:
        return exc, coalesce(events + exc.events)
    raise AssertionError("no error for a corrupt stream")


def realistic_stream() -> list:
    """Every value type and packet kind, a redefinition, comments and an exception."""
    t = value_type
    x_time = Plane("x", t("time24"), units="us2000")
    spec = PacketHeader(
        1,
        (
            Plane("x", t("sun_real8"), units="us2000"),
            Plane(
                "yscan",
                t("sun_real4"),
                "E",
                "V**2 m**-2 Hz**-1",
                3,
                "Hz",
                (10.0, 100.0, 1000.0),
                properties={"fill": ("double", "-1e31")},
            ),
        ),
        {"renderer": ("String", "spectrum")},
    )
    mag = PacketHeader(
        2,
        (
            Plane("x", t("little_endian_real8"), units="t2000"),
            Plane("y", t("little_endian_real4"), "Bx", "nT"),
            Plane("y", t("little_endian_real8"), "By", "nT"),
            Plane("z", t("ascii12"), "dens", "cm**-3"),
        ),
    )
    text = PacketHeader(
        1, (x_time, Plane("y", t("ascii10"), "", "V"), Plane("y", t("time27"), "t2", "t1970"))
    )
    return [
        StreamHeader(
            {"title": ("String", 'Test <stream> & "quotes"\nline'), "xTagWidth": ("Datum", "1 s")}
        ),
        Comment("taskSize", "100", "test"),
        spec,
        Data(
            spec,
            (np.array([1e6, 2e6]), np.array([[1, 2, 3], [4, np.nan, -1e31]], dtype=np.float32)),
        ),
        mag,
        Data(
            mag,
            (
                np.array([0.5, 1.5, 2.5]),
                np.array([1, -2, 3.5], dtype=np.float32),
                np.array([0.1, 0.2, np.inf]),
                np.array([1.25, -3.5e-5, 7e11]),
            ),
        ),
        Comment("taskProgress", "50", "test"),
        Data(spec, (np.array([3e6]), np.array([[7, 8, 9]], dtype=np.float32))),
        text,  # redefines packet 1 with text types
        Data(
            text,
            (
                np.array([0.0, 86_400e6 + 0.123e6]),
                np.array([1.5, -2.25]),
                np.array([1.6e9, 1.6e9 + 0.000001]),
            ),
        ),
        Data(
            mag,
            (np.array([3.5]), np.array([4], dtype=np.float32), np.array([5.0]), np.array([6.0])),
        ),
        StreamException("NoDataInInterval", "nothing after this"),
    ]


# ---------------------------------------------------------------- round trips


@pytest.mark.slow  # measured 12.7 s (property test)
@given(streams())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decode_of_encode_is_identity(events: list) -> None:
    assert same_events(decode(encode(events)), coalesce(events))


@pytest.mark.slow  # over 1 s in the unit lane (property test)
@given(streams(max_items=5), st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_decodes_the_same(events: list, data: st.DataObject) -> None:
    raw = encode(events)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert same_events(feed_in_pieces(raw, cuts), coalesce(events))


@pytest.mark.slow  # over 1 s in the unit lane (property test)
def test_split_at_every_byte_boundary() -> None:
    events = realistic_stream()
    raw = encode(events)
    whole = decode(raw)
    assert same_events(whole, coalesce(events))
    for k in range(len(raw) + 1):
        assert same_events(feed_in_pieces(raw, [k]), whole), f"split at {k}"
    assert same_events(feed_in_pieces(raw, list(range(len(raw)))), whole)  # one byte at a time


def test_realistic_stream_values() -> None:
    out = decode(encode(realistic_stream()))
    text = out[8]
    assert isinstance(text, PacketHeader) and text.planes[0].type.name == "time24"
    data = out[9]
    assert data.columns[0].tolist() == [0.0, 86_400e6 + 0.123e6]
    assert data.column("t2").tolist() == [1.6e9, 1.6e9 + 0.000001]
    spec = out[3]
    assert spec.columns[1].dtype == np.float32 and spec.columns[1].shape == (2, 3)
    assert out[2].planes[1].y_tags == (10.0, 100.0, 1000.0)
    assert out[0].properties["title"] == ("String", 'Test <stream> & "quotes"\nline')
    assert out[-1] == StreamException("NoDataInInterval", "nothing after this")


def frame(tag: bytes, xml: bytes) -> bytes:
    return tag + b"%06d" % len(xml) + xml


def test_reads_text_written_by_others() -> None:
    """Headers with whitespace, an XML declaration, day-of-year times, trailing Z."""
    raw = (
        frame(
            b"[00]",
            b'<?xml version="1.0"?>\n<stream version="2.2">\n'
            b'  <properties double:fill="-1"/>\n</stream>\n',
        )
        + frame(
            b"[01]",
            b'<packet>\n <x type="time24" units="us2000"/>\n'
            b' <y type="ascii9" name="v" units=""/>\n</packet>\n',
        )
        + b":01:"
        + b"2001-002T03:04:05.500Z".ljust(24)
        + b"     1.5\n"
        + b":01:"
        + b"2001-01-02 03:04:06".ljust(24)
        + b" 2.5e+00\n"
    )
    events = decode(raw)
    data = events[2]
    t0 = (366 + 1) * 86_400e6 + (3 * 3600 + 4 * 60 + 5.5) * 1e6
    assert data.columns[0].tolist() == [t0, t0 + 0.5e6]
    assert data.columns[1].tolist() == [1.5, 2.5]
    assert events[0].properties == {"fill": ("double", "-1")}


def test_interleaved_packets_decode_in_order() -> None:
    """Alternating packet ids (the bulk path must stop at every change of id)."""
    a = PacketHeader(
        1, (Plane("x", value_type("little_endian_real8")), Plane("y", value_type("sun_real4"), "a"))
    )
    b = PacketHeader(2, (Plane("x", value_type("sun_real8")),))
    events: list = [StreamHeader(), a, b]
    for i in range(300):
        if i % 3:
            events.append(Data(a, (np.array([float(i)]), np.array([i], dtype=np.float32))))
        else:
            events.append(Data(b, (np.array([float(-i)]),)))
    assert same_events(decode(encode(events)), coalesce(events))


def test_bulk_run_of_many_records() -> None:
    h = PacketHeader(
        7,
        (
            Plane("x", value_type("little_endian_real8"), units="t1970"),
            *[Plane("y", value_type("little_endian_real4"), f"p{i}") for i in range(4)],
        ),
    )
    n = 50_000
    cols = (np.arange(n) * 1e-3, *[np.full(n, i, dtype=np.float32) for i in range(4)])
    raw = encode([StreamHeader(), h, Data(h, cols)])
    dec = Decoder()
    got = dec.feed(raw[: len(raw) // 2]) + dec.feed(raw[len(raw) // 2 :])
    dec.finish()
    assert sum(len(e) for e in got if isinstance(e, Data)) == n
    assert [type(e).__name__ for e in got] == ["StreamHeader", "PacketHeader", "Data", "Data"]
    assert same_events(coalesce(got), [StreamHeader(), h, Data(h, cols)])
    assert dec.consumed == len(raw)


# ---------------------------------------------------------------- encoder refusals


def test_encoder_refuses_invalid_streams() -> None:
    h = PacketHeader(1, (Plane("x", value_type("sun_real8")),))
    with pytest.raises(Das2StreamError, match="stream header must come first"):
        Encoder().encode(h)
    enc = Encoder()
    enc.encode(StreamHeader())
    with pytest.raises(Das2StreamError, match="before its header"):
        enc.encode(Data(h, (np.zeros(1),)))
    with pytest.raises(Das2StreamError, match="one stream header"):
        enc.encode(StreamHeader())
    with pytest.raises(Das2StreamError, match="01..99"):
        encode([StreamHeader(), PacketHeader(100, h.planes)])
    with pytest.raises(Das2StreamError, match="start with its <x>"):
        encode([StreamHeader(), PacketHeader(1, (Plane("y", value_type("sun_real8")),))])
    with pytest.raises(Das2StreamError, match="XML cannot carry"):
        encode([StreamHeader({"a": ("String", "nul\x00")})])
    with pytest.raises(Das2StreamError, match="does not fit"):
        ph = PacketHeader(
            1, (Plane("x", value_type("sun_real8")), Plane("y", value_type("ascii5"), "v"))
        )
        encode_records(ph, [np.zeros(1), np.array([123.0])])
    with pytest.raises(Das2StreamError, match="not finite"):
        ph = PacketHeader(1, (Plane("x", value_type("time24"), units="t2000"),))
        encode_records(ph, [np.array([np.nan])])
    with pytest.raises(Das2StreamError, match="unknown value type"):
        value_type("real9")


# ---------------------------------------------------------------- corrupt streams

GOOD = encode(realistic_stream())
FIRST_DATA = GOOD.index(b":01:")


S = frame(b"[00]", b"<stream/>")


def P(xml: bytes, tag: bytes = b"[01]") -> bytes:  # noqa: N802 - reads like a packet
    return frame(tag, xml)


X8 = b'<x type="sun_real8"/>'


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "ends before its \\[00\\] header"),
        (b"hello world", "does not start with \\[00\\]"),
        (P(b"<packet/>"), "does not start with \\[00\\]"),
        (b":01:abcd", "does not start with \\[00\\]"),
        (b"[00]00001x<stream/>", "not a six-character number"),
        (b"[00]+00010<stream/>", "not a six-character number"),
        (b"[00]000008<stream/>", "not well-formed"),
        (b"[00]000010<stream/>", "ends inside a packet"),
        (frame(b"[00]", b"<packet/>"), "must hold a <stream>"),
        (frame(b"[00]", b'<stream version="3.0"/>'), "unsupported stream version"),
        (S + S, "second \\[00\\]"),
        (S + b":01:", "undefined packet id"),
        (S + b":x1:", "undefined packet id"),
        (S + b"[ab]000000", "bad packet tag"),
        (S + b"{01}", "expected a packet tag"),
        (S + P(b"<packet></packet>"), "start with its <x>"),
        (S + P(b'<packet><y type="sun_real8"/>' + X8 + b"</packet>"), "start with its <x>"),
        (S + P(b"<packet>" + X8 + X8 + b"</packet>"), "one <x> plane"),
        (S + P(b'<packet><x type="real9"/></packet>'), "unknown value type"),
        (S + P(b'<packet><x type="ascii0"/></packet>'), "unknown value type"),
        (S + P(b'<packet><x type="ascii999"/></packet>'), "unknown value type"),
        (S + P(b"<packet>" + X8 + b"<y/></packet>"), "without a type"),
        (
            S
            + P(
                b"<packet>" + X8 + b'<y type="sun_real4" name="a"/><z type="sun_real4" name="a"/>'
                b"</packet>"
            ),
            "unique",
        ),
        (
            S + P(b"<packet>" + X8 + b'<yscan type="sun_real4" nitems="99999999"/></packet>'),
            "nitems .* out of range",
        ),
        (
            S + P(b"<packet>" + X8 + b'<yscan type="sun_real4" nitems="two"/></packet>'),
            "not an integer",
        ),
        (
            S + P(b"<packet>" + X8 + b'<yscan type="sun_real4" nitems="2" yTags="1"/></packet>'),
            "yTags",
        ),
        (
            S + P(b"<packet>" + X8 + b'<yscan type="sun_real4" nitems="1" yTags="nan"/></packet>'),
            "yTags",
        ),
        (
            S + P(b"<packet>" + X8 + b'<yscan type="sun_real4" nitems="1" yTagMin="x"/></packet>'),
            "not a number",
        ),
        (
            S
            + P(
                b"<packet>" + X8 + b'<yscan type="sun_real8" nitems="1000000"/>'
                b'<yscan type="sun_real8" name="b" nitems="1000000"/>'
                b'<yscan type="sun_real8" name="c" nitems="1000000"/></packet>'
            ),
            "larger than 16 MiB",
        ),
        (S + P(b"<packet>" + X8 + b"</packet>", b"[00]"), "second \\[00\\]"),
        (S + P(b"<bogus/>", b"[xx]"), "not a comment or exception"),
        (
            frame(
                b"[00]",
                b'<!DOCTYPE s [<!ENTITY a "aaaaaaaaaaaa">]><stream version="2.2">&a;</stream>',
            ),
            "DTD or entity",
        ),
        (frame(b"[00]", b"<stream>&lol;</stream>"), "not well-formed"),
        (
            frame(b"[00]", b"<stream>" + b"<a>" * 20 + b"</a>" * 20 + b"</stream>"),
            "nested too deeply",
        ),
        (frame(b"[00]", b'<stream><properties bad:na me="1"/></stream>'), "not well-formed"),
        (frame(b"[00]", b'<stream><properties a:b:c="1"/></stream>'), "bad property name"),
        (frame(b"[00]", b'<stream><properties x="1" String:x="2"/></stream>'), "given twice"),
        (frame(b"[00]", b"<stream><properties/><properties/></stream>"), "more than one"),
        (frame(b"[00]", b"<stream>\xff\xfe</stream>"), "not well-formed"),
        (
            S
            + P(b"<packet>" + X8 + b'<y type="ascii4"/></packet>')
            + b":01:"
            + b"\0" * 8
            + b"abcd",
            "not a number",
        ),
        (S + P(b'<packet><x type="time5"/></packet>') + b":01:1999x", "time5"),
        (S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b" " * 24, "time24"),
        (
            S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b"2001-02-30".ljust(24),
            "time24",
        ),
        (S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b"2001-366".ljust(24), "time24"),
        (
            S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b"2001-01-01T25:00".ljust(24),
            "time24",
        ),
        (
            S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b"2001-01-01+01:00".ljust(24),
            "time24",
        ),
        (
            S + P(b'<packet><x type="time24"/></packet>') + b":01:" + b"0999-01-01".ljust(24),
            "time24",
        ),
        (
            S
            + P(b'<packet><x type="time24"/></packet>')
            + b":01:"
            + "2001-01-01\u00e9".encode().ljust(24),
            "time24",
        ),
        (GOOD[:-3], "ends inside a packet"),
        (GOOD[: FIRST_DATA + 2], "ends inside a packet"),
        (b"[00]0000", "ends inside a packet"),
    ],
)
def test_corrupt_stream_gives_the_decoders_error(raw: bytes, message: str) -> None:
    with pytest.raises(Das2StreamError, match=message):
        decode(raw)


def test_error_keeps_what_came_before_and_is_the_same_for_any_chunking() -> None:
    bad = (
        GOOD[: GOOD.index(b"[xx]", FIRST_DATA)]
        + b"[q1]"
        + GOOD[GOOD.index(b"[xx]", FIRST_DATA) + 4 :]
    )
    whole_err, whole_events = error_of(bad)
    assert whole_err.offset == GOOD.index(b"[xx]", FIRST_DATA)
    assert isinstance(whole_events[-1], Data)  # the records before the fault were kept
    for k in range(0, len(bad) + 1, 7):
        err, events = error_of(bad, [k])
        assert (err.message, err.offset) == (whole_err.message, whole_err.offset)
        assert same_events(events, whole_events)


def test_bad_text_value_is_located_and_earlier_records_kept() -> None:
    h = PacketHeader(
        1, (Plane("x", value_type("little_endian_real8")), Plane("y", value_type("ascii10"), "v"))
    )
    raw = encode([StreamHeader(), h, Data(h, (np.arange(5.0), np.arange(5.0)))])
    size = 4 + 8 + 10
    third = raw.index(b":01:") + 2 * size
    bad = raw[: third + 12] + b"  x.yz    " + raw[third + 22 :]
    err, events = error_of(bad)
    assert err.offset == third
    assert events[-1].columns[1].tolist() == [0.0, 1.0]


def test_decoder_stays_failed() -> None:
    dec = Decoder()
    with pytest.raises(Das2StreamError):
        dec.feed(b"nonsense")
    with pytest.raises(Das2StreamError):
        dec.feed(GOOD)


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_the_decoder(raw: bytes) -> None:
    for data in (raw, GOOD[:200] + raw, b"[00]000010<stream/>" + raw):
        try:
            decode(data)
        except Das2StreamError:
            pass


@pytest.mark.slow  # over 1 s in the unit lane (property test)
@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_streams_never_crash_the_decoder(data: st.DataObject) -> None:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "digit"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i : i + data.draw(st.integers(1, 30))]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=10))
        else:
            raw[i] = data.draw(st.sampled_from(b'0123456789[]:x<>"'))
        if not raw:
            raw = bytearray(b"x")
    try:
        decode(bytes(raw))
    except Das2StreamError:
        pass
