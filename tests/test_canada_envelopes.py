"""The three envelopes of the Canadian feeds, as pure functions: same records and
beam products as superdarn's DMAP decoder gives for the same bytes, bounded
decompression, pickles never loaded, and nothing but EnvelopeError on hostile input."""

from __future__ import annotations

import bz2
import itertools
import json
import pickle
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.canada import envelopes as E
from nodes.canada.flood import FloodSite
from nodes.canada.simulator import json_message
from nodes.radar import dmap, products, synth

T0 = 1_700_000_040.0


def sample_records(n: int = 24, stid: int = 5, xcf: bool = True) -> list[dict]:
    gen = synth.RadarSynth(stid, seed=4, xcf=xcf)
    gen.model.quiet_beam_chance = 0.3  # zero-echo beams (no per-echo arrays) among them
    return list(itertools.islice(gen.records(T0), n))


def assert_same_record(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        other = got[name]
        if isinstance(value, np.ndarray):
            assert isinstance(other, np.ndarray), name
            assert (other.dtype, other.shape) == (value.dtype, value.shape), name
            assert np.array_equal(other, value, equal_nan=True), name
        else:
            assert type(other) is type(value), name
            assert other == value or (value != value and other != other), name


@pytest.mark.parametrize("xcf", [True, False])
def test_each_envelope_gives_the_records_and_products_of_the_dmap_path(xcf):
    recs = sample_records(24, xcf=xcf)
    assert any("slist" not in r for r in recs)
    for record in recs:
        raw = dmap.encode_record(record)
        want = dmap.decode_record(raw)  # what the TCP path decodes from the same bytes
        product = products.beam_product(want, "sas")
        agg = E.decode_message([b"sas", zlib.compress(raw)])
        bor = E.decode_message([b"fitacf/3", bz2.compress(raw)])
        leg = E.decode_message(json_message(want))
        assert (agg.envelope, agg.site) == (E.AGGREGATOR, "sas")
        assert (bor.envelope, bor.site, bor.slice) == (E.BOREALIS, None, 3)
        assert (leg.envelope, leg.site) == (E.JSON, None)
        for got in (agg, bor, leg):
            (rec,) = got.records
            assert_same_record(rec, want)
            assert products.beam_product(rec, "sas") == product


def test_a_message_may_carry_several_records_and_site_codes_are_lowercased():
    recs = sample_records(5)
    stream = b"".join(dmap.encode_record(r) for r in recs)
    got = E.decode_message([b"fitacf", bz2.compress(stream)])
    assert got.slice is None and len(got.records) == 5
    for rec, want in zip(got.records, dmap.decode_records(stream), strict=True):
        assert_same_record(rec, want)
    assert E.decode_message([b"SAS", zlib.compress(stream)]).site == "sas"
    with pytest.raises(E.EnvelopeError) as err:
        E.decode_message([b"sas", zlib.compress(stream)], max_records=4)
    assert (err.value.reason, err.value.site) == ("dmap", "sas")


def test_json_fields_get_the_fitacf_types_and_bad_values_are_refused():
    (want,) = [dmap.decode_record(dmap.encode_record(r)) for r in sample_records(1)]
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in want.items()}
    # A sender writing float64 noise and integral floats for integer fields.
    plain["noise.sky"] = 3.14159265358979
    plain["bmnum"] = 7.0
    plain["extra.flag"] = True
    plain["extra.list"] = [[1, 2], [3, 4]]
    rec = E.record_from_json(json.dumps(plain).encode())
    assert rec["noise.sky"] == float(np.float32(3.14159265358979)) and rec["bmnum"] == 7
    assert rec["ltab"].dtype == np.dtype("<i2") and rec["ltab"].shape == want["ltab"].shape
    assert rec["extra.flag"] == 1 and rec["extra.list"].dtype == np.int32
    bad = [
        {**plain, "bmnum": 70000},  # does not fit int16
        {**plain, "bmnum": 1.5},
        {**plain, "slist": [1, 2.5]},
        {**plain, "slist": [1, None]},
        {**plain, "v": [[1.0], [2.0, 3.0]]},  # ragged
        {**plain, "v": ["a", "b"]},
        {**plain, "p_l": [1e300]},  # beyond float32
        {**plain, "cp": "151"},
        {**plain, "origin.command": 5},
        {**plain, "odd": None},
        {**plain, "odd": {"nested": 1}},
        {**plain, "slist": [[[[[1]]]]]},
    ]
    for case in bad:
        with pytest.raises(E.EnvelopeError) as err:
            E.record_from_json(json.dumps(case).encode())
        assert err.value.reason == "json"
    for text in (b"[1, 2]", b"{", b"\xff\xfe\x00", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(E.EnvelopeError):
            E.record_from_json(text)


def _bomb_zlib(size: int) -> bytes:
    c = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    return b"".join(c.compress(block) for _ in range(size >> 20)) + c.flush()


def _bomb_bz2(size: int) -> bytes:
    c = bz2.BZ2Compressor(9)
    block = b"\0" * (1 << 20)
    return b"".join(c.compress(block) for _ in range(size >> 20)) + c.flush()


@pytest.mark.slow  # over 1 s in the unit lane
@pytest.mark.parametrize("kind", ["aggregator", "borealis", "json"])
def test_a_decompression_bomb_is_refused_without_inflating_it(kind):
    inflated, limit = 96 << 20, 1 << 20
    if kind == "borealis":
        frames = [b"fitacf/0", _bomb_bz2(inflated)]
    else:
        bomb = _bomb_zlib(inflated)
        frames = [b"sas", bomb] if kind == "aggregator" else [bomb]
    assert len(frames[-1]) < 200_000  # a small frame that claims 96 MiB
    tracemalloc.start()
    try:
        with pytest.raises(E.EnvelopeError) as err:
            E.decode_message(frames, max_bytes=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason == "too_large"
    assert peak < 3 * limit + (8 << 20), f"peak {peak} bytes"  # bz2's own state is ~4 MiB


def test_truncated_trailing_and_corrupt_compressed_data_are_errors():
    raw = dmap.encode_record(sample_records(1)[0])
    z, b = zlib.compress(raw), bz2.compress(raw)
    cases = [
        ([b"sas", z[:-10]], "decompress"),
        ([b"sas", z + b"extra"], "decompress"),
        ([b"sas", b"\x78\x9c" + b"\x00garbage"], "decompress"),
        ([b"sas", b""], "decompress"),
        ([b"fitacf/0", b[:-5]], "decompress"),
        ([b"fitacf/0", b + b"x"], "decompress"),
        ([b"fitacf/0", b"BZh9" + b"\x00" * 40], "decompress"),
        ([b"sas", zlib.compress(raw[:-1])], "dmap"),
        ([b"sas", zlib.compress(b"")], "dmap"),
        ([b"fitacf/0", bz2.compress(raw + b"\x01\x00")], "dmap"),
        ([zlib.compress(b"not json")], "json"),
        ([z[:-3]], "decompress"),
    ]
    for frames, reason in cases:
        with pytest.raises(E.EnvelopeError) as err:
            E.decode_message(frames)
        assert not isinstance(err.value, E.UnknownEnvelope), frames[0][:10]
        assert err.value.reason == reason, (frames[0][:10], err.value)


def test_unknown_shapes_are_unknown_envelopes():
    z = zlib.compress(dmap.encode_record(sample_records(1)[0]))
    for frames in (
        [],
        [b"sas", z, b"more"],
        [b"", z],
        [b"s", z],
        [b"toolongcode", z],
        [b"sas!", z],
        [b"\xff\xfe", z],
        [b"not zlib"],
        [b""],
        [b"fitacf/x", z],
    ):
        with pytest.raises(E.UnknownEnvelope):
            E.decode_message(frames)


class _Tripwire:
    """Unpickling this calls `_tripped`: if any decoder ever loads a pickle, we know."""

    fired = 0

    def __reduce__(self):
        return (_tripped, ())


def _tripped():
    _Tripwire.fired += 1
    return "loaded"


def test_pickled_topics_are_ignored_and_never_unpickled():
    payload = pickle.dumps({"data": _Tripwire()})
    assert pickle.loads(payload)["data"] == "loaded" and _Tripwire.fired == 1  # it would fire
    _Tripwire.fired = 0
    for topic in (
        b"rawacf/0",
        b"bfiq/2",
        b"antennas_iq/0",
        b"rawrf/1",
        b"rawacf",
        b"something_new/4",
    ):
        got = E.decode_message([topic, payload])
        assert isinstance(got, E.Ignored)
        assert got.topic == (
            topic.split(b"/")[0].decode() if topic != b"something_new/4" else "other"
        )
    assert _Tripwire.fired == 0


def test_flood_bodies_are_ordinary_zlib_streams_with_advancing_times():
    site = FloodSite(5, time.time() - 600, step=0.25, beams=16)
    bodies = [site.next_body() for _ in range(40)]
    for n, body in enumerate(bodies):
        zlib.decompress(body)  # any inflater reads it
        (rec,) = E.decode_message([b"sas", body]).records
        assert abs(products.radar_time(rec) - site.time_of(n)) < 1e-5
        assert rec["bmnum"] == n % 16 and rec["scan"] == (1 if n % 16 == 0 else 0)
    assert len(set(bodies)) == len(bodies)


# ---------------------------------------------------------------- fuzzing

_GOOD = [dmap.encode_record(r) for r in sample_records(3)]


def _valid_frames(i: int, kind: int) -> list[bytes]:
    raw = _GOOD[i % len(_GOOD)]
    if kind == 0:
        return [b"sas", zlib.compress(raw)]
    if kind == 1:
        return [b"fitacf/0", bz2.compress(raw)]
    return json_message(dmap.decode_record(raw))


_VALID = [_valid_frames(i, k) for i in range(3) for k in range(3)]


def _check(frames: list[bytes]) -> None:
    try:
        got = E.decode_message(frames, max_bytes=1 << 18)
    except E.EnvelopeError:
        return
    assert isinstance(got, E.Decoded | E.Ignored)
    if isinstance(got, E.Decoded):
        for rec in got.records:
            try:
                products.beam_product(rec, "sas")
            except products.ProductError:
                pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_fuzz_random_frames_raise_only_envelope_errors(frames):
    _check(frames)


@pytest.mark.slow  # over 1 s in the unit lane
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(_VALID))), st.integers(0, 1), st.data())
def test_fuzz_mutated_valid_messages_raise_only_envelope_errors(which, part, data):
    frames = list(_VALID[which])
    part = min(part, len(frames) - 1)
    blob = bytearray(frames[part])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    frames[part] = bytes(blob)
    _check(frames)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "slist",
                "v",
                "bmnum",
                "noise.sky",
                "origin.command",
                "ltab",
                "gflg",
                "x",
                "time.us",
                "nrang",
            ]
        ),
        _json_values,
        max_size=6,
    )
)
@pytest.mark.slow  # measured 5.4 s (fuzz)
def test_fuzz_json_records_raise_only_envelope_errors(obj):
    frames = [zlib.compress(json.dumps(obj).encode())]
    _check(frames)


def test_fuzz_helpers_accept_the_valid_messages():
    for frames in _VALID:
        got = E.decode_message(frames)
        assert isinstance(got, E.Decoded) and len(got.records) == 1
