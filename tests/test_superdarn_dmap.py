"""DMAP decoder/encoder against darn-dmap (the reference), and under fuzzing."""

from __future__ import annotations

import struct
import tracemalloc

import dmap as darn
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.radar import dmap, synth

# ------------------------------------------------------------------ helpers


def assert_same(mine: dict, ref: dict, ordered: bool = True) -> None:
    """Same fields, values, types and dtypes (and, from the same bytes, order)."""
    assert list(mine) == list(ref) if ordered else sorted(mine) == sorted(ref)
    for key, expected in ref.items():
        got = mine[key]
        if isinstance(expected, np.ndarray):
            assert isinstance(got, np.ndarray), key
            assert got.dtype == expected.dtype, key
            assert got.shape == expected.shape, key
            assert np.array_equal(got, expected, equal_nan=True), key
        else:
            assert type(got) is type(expected), key
            assert got == expected or (got != got and expected != expected), key


def beam(n: int, xcf: bool, seed: int = 1, nrang: int = 110) -> dict:
    """A FITACF record with exactly n echo gates."""
    rng = np.random.default_rng(seed)
    slist = np.sort(rng.choice(nrang, size=n, replace=False)).astype("<i2")
    return synth.fitacf_record(
        stid=5,
        when=1.7e9 + seed * 3.0,
        bmnum=seed % 16,
        scan=1 if seed % 16 == 0 else 0,
        slist=slist,
        v=rng.normal(0, 300, n),
        p_l=rng.uniform(0, 40, n),
        w_l=rng.uniform(0, 300, n),
        gflg=rng.integers(0, 2, n),
        elv=rng.uniform(0, 45, n),
        xcf=xcf,
        nrang=nrang,
        noise=float(rng.uniform(1, 30)),
    )


def stream(count: int = 6, xcf: bool = True) -> bytes:
    return darn.write_fitacf([beam(n, xcf, seed=n) for n in range(0, count * 7, 7)])


ALL_NUMERIC = [
    ("i1", dmap.CHAR),
    ("<i2", dmap.SHORT),
    ("<i4", dmap.INT),
    ("<f4", dmap.FLOAT),
    ("<f8", dmap.DOUBLE),
    ("<i8", dmap.LONG),
    ("u1", dmap.UCHAR),
    ("<u2", dmap.USHORT),
    ("<u4", dmap.UINT),
    ("<u8", dmap.ULONG),
]


# ------------------------------------------------------- agreement with darn-dmap


@pytest.mark.parametrize("xcf", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 17, 50, 75, 109, 110])
def test_decoder_agrees_with_darn_dmap_on_fitacf_it_writes(n, xcf):
    data = darn.write_fitacf([beam(n, xcf, seed=n + 3), beam(max(n - 1, 0), xcf, seed=n + 4)])
    ref = darn.read_fitacf(data, mode="strict")
    mine = dmap.decode_records(data)
    assert len(mine) == 2
    for m, r in zip(mine, ref, strict=True):
        assert_same(m, r)
    # The same bytes again go through the compiled-layout fast path: same result.
    for m, r in zip(dmap.decode_records(data), ref, strict=True):
        assert_same(m, r)
    if n == 0:
        assert "slist" not in mine[0] and "v" not in mine[0]
    assert ("elv" in mine[0]) == (xcf and n > 0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 110), xcf=st.booleans(), seed=st.integers(0, 2**16))
def test_round_trip_both_ways_for_any_echo_count(n, xcf, seed):
    record = beam(n, xcf, seed)
    ref = darn.read_fitacf(darn.write_fitacf([record]), mode="strict")[0]
    assert_same(dmap.decode_record(darn.write_fitacf([record])), ref)
    # Our encoder's bytes, read by darn-dmap, give the identical record.
    ours = dmap.encode_record(record)
    # (write_fitacf puts fields in its own order; ours keeps the record's.)
    assert_same(darn.read_fitacf(ours, mode="strict")[0], ref, ordered=False)
    assert_same(dmap.decode_record(ours), ref, ordered=False)


def test_encoding_a_decoded_stream_reproduces_its_bytes():
    # Decoded records keep the file's field order and values, and the FITACF
    # types put every field back in its original type: byte-identical output.
    for xcf in (True, False):
        data = stream(8, xcf)
        assert dmap.encode_records(dmap.decode_records(data)) == data


def test_every_type_code_both_ways():
    scalars = {
        f"s{code}": np.dtype(dt).type(7 if dt[-2] != "f" else 1.5) for dt, code in ALL_NUMERIC
    }
    scalars.update(
        big=np.int64(-(2**62)),
        ubig=np.uint64(2**64 - 1),
        neg=np.int8(-128),
        text="hello é",
        empty="",
    )
    arrays = {f"a{code}": np.arange(6).astype(dt) for dt, code in ALL_NUMERIC}
    arrays["two_d"] = np.arange(12, dtype="<f8").reshape(3, 4)
    arrays["three_d"] = np.arange(24, dtype="<i2").reshape(2, 3, 4)
    record = {**scalars, **arrays}
    ours = dmap.encode_record(record, types={})
    # The type byte of every field is the one asked for.
    codes = _type_codes(ours)
    for _, code in ALL_NUMERIC:
        assert codes[f"s{code}"] == code and codes[f"a{code}"] == code
    assert codes["text"] == dmap.STRING
    ref = darn.read_dmap(ours, mode="strict")[0]
    mine = dmap.decode_record(ours)
    assert_same(mine, ref)
    assert mine["ubig"] == 2**64 - 1 and mine["big"] == -(2**62) and mine["text"] == "hello é"
    assert mine["two_d"].shape == (3, 4) and mine["three_d"][1, 2, 3] == 23
    # darn-dmap's generic writer keeps array dtypes: read those back too.
    theirs = darn.write_dmap([{"x": np.int16(1), **arrays}])
    assert_same(dmap.decode_record(theirs), darn.read_dmap(theirs, mode="strict")[0])


def test_ltab_shape_is_reversed_extents():
    record = beam(5, True)
    data = dmap.encode_record(record)
    at = data.index(b"ltab\x00")
    ndim, d0, d1 = struct.unpack_from("<3i", data, at + 6)
    assert (ndim, d0, d1) == (2, 2, len(synth.LTAB))
    assert dmap.decode_record(data)["ltab"].shape == (len(synth.LTAB), 2)


def test_string_arrays_round_trip():
    data = dmap.encode_record({"x": 1, "names": np.array([["ab", ""], ["c", "dé"]])}, types={})
    out = dmap.decode_record(data)
    assert out["names"].tolist() == [["ab", ""], ["c", "dé"]]


def test_arrays_are_zero_copy_read_only_views():
    data = stream(2)
    record = dmap.decode_records(data)[1]
    assert record["v"].base is data and not record["v"].flags.writeable
    assert record["ltab"].base.base is data or record["ltab"].base is data
    assert type(record["stid"]) is int and type(record["noise.sky"]) is float


def test_encoder_rejects_what_dmap_cannot_hold():
    with pytest.raises(dmap.DmapEncodeError):
        dmap.encode_record({"stid": 70000})  # FITACF stid is int16
    with pytest.raises(dmap.DmapEncodeError):
        dmap.encode_record({"s": "a\0b"})
    with pytest.raises(dmap.DmapEncodeError):
        dmap.encode_record({"flags": np.array([True, False])})
    with pytest.raises(dmap.DmapEncodeError):
        dmap.encode_record({"stid": 1.5})
    with pytest.raises(dmap.DmapEncodeError):
        dmap.encode_record({"n\u00e9": 1})


# ------------------------------------------------------------- corruption


def test_errors_carry_the_offset_of_the_corruption():
    data = stream(3)
    first = dmap.record_size(data)
    second = dmap.record_size(data, first)
    bad = bytearray(data)
    bad[first] = 0x02  # record code of the second record
    with pytest.raises(dmap.DmapError) as err:
        dmap.decode_records(bytes(bad))
    assert err.value.offset == first
    bad = bytearray(data)
    at = data.index(b"slist\x00", first) + 6  # type byte of slist in the second record
    bad[at] = 77
    with pytest.raises(dmap.DmapError) as err:
        dmap.decode_records(bytes(bad))
    assert err.value.offset == at and "unknown type code 77" in str(err.value)
    with pytest.raises(dmap.DmapError) as err:
        dmap.decode_record(data[: first + second])
    assert err.value.offset == first  # two records where one was expected
    with pytest.raises(dmap.DmapError) as err:
        dmap.decode_records(data[: first + 100])
    assert err.value.offset == first + 4  # declared size beyond the data


def test_records_before_a_corrupt_one_are_kept():
    data = stream(3)
    first = dmap.record_size(data)
    out = []
    with pytest.raises(dmap.DmapError):
        for record in dmap.iter_records(data[: first + 50]):
            out.append(record)
    assert len(out) == 1 and out[0]["bmnum"] == 0


def test_nested_maps_and_absurd_dimensions_are_refused():
    def record(body: bytes, nscal: int, narr: int) -> bytes:
        return struct.pack("<iiii", dmap.RECORD_CODE, 16 + len(body), nscal, narr) + body

    with pytest.raises(dmap.DmapError, match="nested map"):
        dmap.decode_record(record(b"m\0\xff" + bytes(4), 1, 0))
    with pytest.raises(dmap.DmapError, match="dimensions"):
        dmap.decode_record(record(b"a\0\x01" + struct.pack("<i", 0) + bytes(4), 0, 1))
    huge = b"a\0\x04" + struct.pack("<iii", 2, 2**31 - 1, 2**31 - 1) + bytes(8)
    with pytest.raises(dmap.DmapError, match="past the end"):
        dmap.decode_record(record(huge, 0, 1))
    with pytest.raises(dmap.DmapError, match="duplicate"):
        dmap.decode_record(record(b"x\0\x01\x01x\0\x01\x02", 2, 0))
    with pytest.raises(dmap.DmapError, match="cannot fit"):
        dmap.decode_record(record(b"x\0\x01\x01", 2**31 - 1, 2**31 - 1))


SAMPLE = stream(2)
SAMPLE_FIRST = dmap.record_size(SAMPLE)


def only_dmap_errors(data: bytes) -> list | None:
    try:
        return dmap.decode_records(data)
    except dmap.DmapError as exc:
        assert 0 <= exc.offset <= len(data)
        return None


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(SAMPLE) - 1))
def test_any_truncation_is_a_dmap_error(cut):
    data = SAMPLE[:cut]
    if cut in (0, SAMPLE_FIRST):
        assert len(dmap.decode_records(data)) == (0 if cut == 0 else 1)
    else:
        with pytest.raises(dmap.DmapError):
            dmap.decode_records(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 7)), min_size=1, max_size=4
    )
)
@pytest.mark.slow  # over 1 s in the unit lane (fuzz)
def test_bit_flips_raise_only_dmap_error_and_agree_with_darn_when_accepted(flips):
    bad = bytearray(SAMPLE)
    for at, bit in flips:
        bad[at] ^= 1 << bit
    bad = bytes(bad)
    mine = only_dmap_errors(bad)
    if mine is None:
        return
    try:
        ref = darn.read_dmap(bad, mode="strict")
    except Exception:
        return  # darn-dmap is stricter on some things (e.g. empty arrays)
    for m, r in zip(mine, ref, strict=True):
        assert list(m) == list(r)


def _poke(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<i", value) + data[at + 4 :]


def _int_fields(data: bytes) -> list[int]:
    """Offsets of every header count and array ndim/extent in the first record."""
    offsets = [4, 8, 12]
    pos, (_, _, nscal, narr) = 16, struct.unpack_from("<iiii", data)
    for _ in range(nscal):
        z = data.index(b"\0", pos)
        kind = data[z + 1]
        pos = data.index(b"\0", z + 2) + 1 if kind == 9 else z + 2 + dmap._SCALAR_SIZE[kind]
    for _ in range(narr):
        z = data.index(b"\0", pos)
        kind = data[z + 1]
        ndim = struct.unpack_from("<i", data, z + 2)[0]
        offsets += [z + 2 + 4 * i for i in range(ndim + 1)]
        extents = struct.unpack_from(f"<{ndim}i", data, z + 6)
        pos = z + 6 + 4 * ndim + int(np.prod(extents)) * dmap._DTYPE[kind].itemsize
    return offsets


INT_FIELDS = _int_fields(SAMPLE)


@settings(max_examples=300, deadline=None)
@given(
    at=st.sampled_from(INT_FIELDS),
    value=st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.sampled_from([2**31 - 1, 2**30, 2**24, -1, -(2**31), 0, 65536, 1 << 20]),
    ),
)
@pytest.mark.slow  # about 1 s in the unit lane (property test)
def test_absurd_counts_and_lengths_fail_cleanly_with_bounded_memory(at, value):
    bad = _poke(SAMPLE, at, value)
    tracemalloc.start()
    try:
        only_dmap_errors(bad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(SAMPLE) + 200_000


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_dmap_error(data):
    only_dmap_errors(data)
    only_dmap_errors(struct.pack("<i", dmap.RECORD_CODE) + data)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), nscal=st.integers(0, 8), narr=st.integers(0, 8))
def test_random_bodies_behind_a_valid_header(body, nscal, narr):
    data = struct.pack("<iiii", dmap.RECORD_CODE, 16 + len(body), nscal, narr) + body
    only_dmap_errors(data)


@settings(max_examples=300, deadline=None)
@given(
    flips=st.lists(
        st.tuples(st.integers(16, SAMPLE_FIRST - 1), st.integers(0, 255)), min_size=1, max_size=3
    )
)
@pytest.mark.slow  # about 1 s in the unit lane (property test)
def test_compiled_layout_equals_generic_decoder(flips):
    """The fast path either declines or returns exactly what the careful path does."""
    first = SAMPLE[:SAMPLE_FIRST]
    _, signature = dmap._decode_generic(first, 16, len(first), *struct.unpack_from("<ii", first, 8))
    layout = dmap._Layout(signature)
    assert (
        layout.decode(first, 16, len(first)) is not None
    )  # its array plan: the check the flips face
    bad = bytearray(first)
    for at, value in flips:
        bad[at] = value
    bad = bytes(bad)
    fast = layout.decode(bad, 16, len(bad))
    try:
        slow, _ = dmap._decode_generic(bad, 16, len(bad), *struct.unpack_from("<ii", bad, 8))
    except dmap.DmapError:
        assert fast is None
        return
    if fast is not None:
        assert_same(fast, slow)


def _arrays_record(extents: list[int]) -> bytes:
    body = b"".join(
        b"a%d\0\x03" % i
        + struct.pack("<ii", 1, n)
        + struct.pack(f"<{n}i", *range(100 * i, 100 * i + n))
        for i, n in enumerate(extents)
    )
    return struct.pack("<iiii", dmap.RECORD_CODE, 16 + len(body), 0, len(extents)) + body


def test_fast_path_records_are_read_only_mappings_equal_to_the_generic_decode():
    data = stream(3)
    # Its layouts learnt here, not left to whichever tests ran before (others may
    # have filled the layout table, which then starts again empty).
    dmap.decode_records(data)
    generic = [
        dmap._decode_generic(data[a:], 16, size, *struct.unpack_from("<ii", data, a + 8))[0]
        for a, size in _offsets(data)
    ]
    for again in (False, True):  # the second time every record takes a known layout and array plan
        for got, want in zip(dmap.decode_records(data, lazy=True), generic, strict=True):
            assert isinstance(got, dmap.Record) or not again
            assert_same(got, want)
            assert dict(got).keys() == want.keys() and len(got) == len(want)
            assert "pwr0" in got and "nope" not in got and got.get("nope", 7) == 7
            with pytest.raises(KeyError):
                got["nope"]
            with pytest.raises(TypeError):
                got["stid"] = 1


def test_same_block_length_with_other_extents_is_walked_again():
    a, b = _arrays_record([3, 5, 1]), _arrays_record([5, 1, 3])
    assert len(a) == len(b)
    for data, extents in ((a, [3, 5, 1]), (a, [3, 5, 1]), (b, [5, 1, 3]), (a, [3, 5, 1])):
        record = dmap.decode_record(data, lazy=True)
        for i, n in enumerate(extents):
            assert record[f"a{i}"].tolist() == list(range(100 * i, 100 * i + n))
    bad = bytearray(a)
    bad[16 + 3 + 4] = 4  # a0's extent, under a cached plan of the same length
    with pytest.raises(dmap.DmapError):
        dmap.decode_record(bytes(bad))


def _offsets(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from("<i", data, pos + 4)[0]
        out.append((pos, size))
        pos += size
    return out


def _type_codes(data: bytes) -> dict[str, int]:
    codes, pos = {}, 16
    _, _, nscal, narr = struct.unpack_from("<iiii", data)
    for i in range(nscal + narr):
        z = data.index(b"\0", pos)
        name, kind = data[pos:z].decode(), data[z + 1]
        codes[name] = kind
        if i < nscal:
            pos = data.index(b"\0", z + 2) + 1 if kind == 9 else z + 2 + dmap._SCALAR_SIZE[kind]
        else:
            ndim = struct.unpack_from("<i", data, z + 2)[0]
            extents = struct.unpack_from(f"<{ndim}i", data, z + 6)
            pos = z + 6 + 4 * ndim + int(np.prod(extents)) * dmap._DTYPE[kind].itemsize
    return codes


def test_empty_array_with_giant_extents_is_refused():
    # Found by the bit-flip fuzzer: extents (0, 2**31-1, ...) make numpy itself fail.
    body = b"a\0\x04" + struct.pack("<iiii", 3, 0, 2**31 - 1, 2**31 - 1)
    data = struct.pack("<iiii", dmap.RECORD_CODE, 16 + len(body), 0, 1) + body
    with pytest.raises(dmap.DmapError, match="absurd extents"):
        dmap.decode_record(data)
    body = b"a\0\x04" + struct.pack("<iii", 2, 0, 3)
    ok = struct.pack("<iiii", dmap.RECORD_CODE, 16 + len(body), 0, 1) + body
    assert dmap.decode_record(ok)["a"].shape == (3, 0)
    layout = dmap._Layout(dmap._decode_generic(ok, 16, len(ok), 0, 1)[1])
    assert layout.decode(data, 16, len(data)) is None


def with_latin1_comment(record: dict) -> bytes:
    """A record whose `combf` holds 0xE9 (an e-acute written by a Latin-1
    radar site, as seen in the wild): not UTF-8."""
    record = dict(record)
    record["combf"] = "Site x@x comment"
    raw = dmap.encode_record(record)
    return raw.replace(b"x@x", b"x\xe9x")


def test_a_string_with_bytes_that_are_not_utf8_keeps_its_record():
    """RST writes strings as bytes; its client decodes such a record, so must we:
    the bad byte becomes U+FFFD, every other field is as written, and the
    record says how many strings were mended. Both the generic decoder and a
    compiled layout (learned from a clean record first) agree."""
    clean = dict(dmap.decode_record(dmap.encode_record(beam(5, True))))
    raw = with_latin1_comment(beam(5, True))
    for lazy in (False, True):
        got = dmap.decode_record(raw, lazy=lazy)
        assert got["combf"] == "Site x\ufffdx comment"
        assert dmap.replaced_strings(got) == 1
        assert_same(
            {k: v for k, v in got.items() if k != "combf"},
            {k: v for k, v in clean.items() if k != "combf"},
        )
    assert dmap.replaced_strings(clean) == 0
    records = dmap.decode_records(dmap.encode_record(beam(3, True)) + raw)
    assert len(records) == 2 and dmap.replaced_strings(records[1]) == 1
