"""Beam and scan products from FITACF records."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from nodes.radar import dmap, products, synth
from nodes.radar.products import ProductError, ScanAccumulator, beam_product, radar_time
from nodes.radar.radars import radar

T0 = 1_700_000_040.0  # 2023-11-14 22:14:00 UTC, a minute boundary


def decoded(record: dict) -> dict:
    """Through the wire and back, as the node sees it (a mutable copy: decoded
    records are read-only)."""
    return dict(dmap.decode_record(dmap.encode_record(record)))


def test_radar_time_from_record_fields():
    rec = decoded(
        synth.fitacf_record(
            stid=5, when=T0 + 12.25, bmnum=3, scan=0, slist=[], v=[], p_l=[], w_l=[], gflg=[]
        )
    )
    assert radar_time(rec) == T0 + 12.25
    assert radar_time({**rec, "time.us": -12345}) == T0 + 12  # wrapped int16: ignored
    with pytest.raises(ProductError):
        radar_time({**rec, "time.mo": 13})
    with pytest.raises(ProductError):
        radar_time({**rec, "time.dy": 31, "time.mo": 2})
    with pytest.raises(ProductError):
        radar_time({k: v for k, v in rec.items() if k != "time.hr"})


def test_beam_product_echo_arrays_indexed_by_slist():
    rec = decoded(
        synth.fitacf_record(
            stid=5,
            when=T0,
            bmnum=7,
            scan=1,
            channel=2,
            tfreq=11200,
            nrang=75,
            frang=180,
            rsep=45,
            noise=4.5,
            slist=np.array([3, 10, 11]),
            v=np.array([-120.5, 0.0, np.nan]),
            p_l=np.array([10, 20, 30]),
            w_l=np.array([50, 60, 70]),
            gflg=np.array([0, 1, 1]),
            elv=np.array([20, 25, 30]),
            xcf=True,
        )
    )
    p = beam_product(rec, "sas", radar("sas").as_dict())
    assert p["time"] == T0 and p["stid"] == 5 and p["code"] == "sas" and p["name"] == "Saskatoon"
    assert (p["beam"], p["channel"], p["scan"], p["cp"], p["tfreq"]) == (7, 2, 1, 151, 11200)
    assert (p["nrang"], p["frang"], p["rsep"], p["noise"]) == (75, 180, 45, 4.5)
    assert p["slist"] == [3, 10, 11] and p["gflg"] == [0, 1, 1]
    assert p["v"] == [-120.5, 0.0, None]  # NaN travels as None
    assert p["p_l"] == [10.0, 20.0, 30.0] and p["w_l"] == [50.0, 60.0, 70.0]
    assert p["elv"] == [20.0, 25.0, 30.0]
    assert (p["echoes_total"], p["echoes_ground"], p["echoes_ionospheric"]) == (3, 2, 1)
    json.dumps(p, allow_nan=False)  # plain JSON, no numpy types
    assert all(type(x) is int for x in p["slist"])


def test_zero_echo_beam_is_a_product_with_empty_arrays():
    rec = decoded(
        synth.fitacf_record(
            stid=64, when=T0, bmnum=0, scan=0, slist=[], v=[], p_l=[], w_l=[], gflg=[], xcf=True
        )
    )
    assert "slist" not in rec
    p = beam_product(rec, "inv")
    assert p["slist"] == [] and p["v"] == [] and p["gflg"] == [] and p["elv"] == []
    assert p["echoes_total"] == 0


def test_elevation_only_when_present():
    rec = decoded(
        synth.fitacf_record(
            stid=5,
            when=T0,
            bmnum=0,
            scan=0,
            slist=[4],
            v=[1.0],
            p_l=[2.0],
            w_l=[3.0],
            gflg=[0],
            xcf=False,
        )
    )
    assert "elv" not in beam_product(rec)


@pytest.mark.parametrize(
    "change",
    [
        {"slist": np.array([80], "<i2")},  # gate beyond nrang
        {"slist": np.array([-1], "<i2")},
        {"v": np.zeros(2, "<f4")},  # length differs from slist
        {"stid": "five"},
        {"nrang": -3},
    ],
)
def test_inconsistent_records_are_refused(change):
    rec = decoded(
        synth.fitacf_record(
            stid=5, when=T0, bmnum=0, scan=0, slist=[4], v=[1.0], p_l=[2.0], w_l=[3.0], gflg=[0]
        )
    )
    with pytest.raises(ProductError):
        beam_product({**rec, **change})
    rec.pop("gflg")
    with pytest.raises(ProductError):
        beam_product(rec)


def beams_of(stream, n):
    return [beam_product(decoded(r), "sas") for r in itertools.islice(stream, n)]


def test_scans_end_at_the_next_start_and_count_zero_echo_beams():
    gen = synth.RadarSynth(5, seed=3, sounding_every=2, camping_every=3)
    beams = beams_of(gen.records(T0), 16 * 6 + 10)
    acc = ScanAccumulator()
    scans = [s for b in beams for s in acc.add(b)]
    assert len(scans) >= 5
    flagged = [b for b in beams if b["scan"] not in (0, 1)]
    assert {b["scan"] for b in flagged} == {products.SOUNDING, products.CAMPING}
    zero_echo_beams = 0
    for scan in scans:
        members = [
            b for b in beams if b["scan"] in (0, 1) and scan["time"] <= b["time"] <= scan["end"]
        ]
        assert scan["beams"] == 16 == len(members)
        assert scan["beam_numbers"] == list(range(16))
        assert scan["total"] == sum(b["echoes_total"] for b in members)
        assert scan["ground"] == sum(b["echoes_ground"] for b in members)
        assert scan["ionospheric"] == scan["total"] - scan["ground"]
        assert scan["mean_total"] == scan["total"] / 16  # zero-echo beams count
        assert scan["time"] == members[0]["time"] and scan["time"] % 60 == 0  # radar time
        zero_echo_beams += sum(1 for b in members if b["echoes_total"] == 0)
        json.dumps(scan, allow_nan=False)
    assert zero_echo_beams > 0  # the synthesiser does produce quiet beams
    assert acc.ignored == len(flagged)


def test_minus_one_starts_a_scan_and_channels_are_separate():
    a = beams_of(synth.RadarSynth(5, scan_sign=-1, channel=1, sounding_every=0).records(T0), 40)
    b = beams_of(synth.RadarSynth(5, channel=2, seed=9, sounding_every=0).records(T0), 40)
    acc = ScanAccumulator()
    scans = [s for pair in zip(a, b, strict=True) for beam in pair for s in acc.add(beam)]
    # 40 beams per channel: two complete scans each, 8 beams of a third open.
    assert sorted((s["channel"], s["beams"], s["scan_flag"]) for s in scans) == [
        (1, 16, -1),
        (1, 16, -1),
        (2, 16, 1),
        (2, 16, 1),
    ]
    rest = acc.flush()
    assert sorted(s["channel"] for s in rest) == [1, 2] and all(s["beams"] == 8 for s in rest)
    assert acc.open_keys() == []


def test_beams_before_the_first_scan_start_are_ignored():
    beams = beams_of(synth.RadarSynth(5, sounding_every=0).records(T0 + 30), 16 + 6)
    assert beams[0]["scan"] == 0 and beams[6]["scan"] == 1
    acc = ScanAccumulator()
    assert [s for b in beams for s in acc.add(b)] == []
    assert acc.ignored == 6
    (scan,) = acc.flush()
    assert scan["beams"] == 16 and scan["time"] == T0 + 60


def test_a_radar_that_never_flags_a_start_cannot_grow_memory():
    acc = ScanAccumulator(max_beams=10)
    beam = {
        "scan": 1,
        "stid": 1,
        "channel": 0,
        "beam": 0,
        "time": T0,
        "echoes_total": 1,
        "echoes_ground": 0,
        "echoes_ionospheric": 1,
        "noise": 1.0,
    }
    acc.add(beam)
    for i in range(100):
        acc.add({**beam, "scan": 0, "time": T0 + i})
    assert acc.open_keys() == [] and acc.flush() == []
