"""Echo-count history in SQLite (retention) and replay of archived files."""

from __future__ import annotations

import bz2
import itertools

import dmap as darn
import pytest

from nodes.radar import synth
from nodes.radar.echoes import EchoStore, retention_days
from nodes.radar.products import ScanAccumulator, beam_product
from nodes.superdarn import replay

T0 = 1_700_000_040.0
DAY = 86400.0


def scan(time: float, stid: int = 5, channel: int = 0, total: int = 32, ground: int = 12) -> dict:
    return {
        "stid": stid,
        "channel": channel,
        "time": time,
        "end": time + 45,
        "code": "sas",
        "beams": 16,
        "total": total,
        "ionospheric": total - ground,
        "ground": ground,
    }


def test_retention_setting_is_a_number_of_days():
    assert (
        retention_days(30) == 30.0 and retention_days("7") == 7.0 and retention_days(" 0.5 ") == 0.5
    )
    assert retention_days(None) is None and retention_days("") is None
    for bad in ("thirty", 0, -1, float("nan"), float("inf"), True, [3]):
        with pytest.raises(ValueError):
            retention_days(bad)


def test_store_query_and_retention_really_deletes(tmp_path):
    store = EchoStore(
        str(tmp_path / "echoes.sqlite"), retention="10"
    )  # text, as from the environment
    now = T0 + 100 * DAY
    store.add_scans(
        [
            scan(now - 30 * DAY),
            scan(now - 11 * DAY),
            scan(now - 9 * DAY),
            scan(now - 60),
            scan(now - 60, channel=1, total=0, ground=0),
        ]
    )
    assert store.count() == 5
    assert store.purge(now) == 2
    rows = store.query(now - 20 * DAY, now)
    assert [(r["time"], r["channel"]) for r in rows] == [
        (now - 9 * DAY, 0),
        (now - 60, 0),
        (now - 60, 1),
    ]
    assert rows[0]["mean_total"] == 2.0 and rows[0]["mean_ground"] == 0.75
    assert rows[2]["mean_total"] == 0.0
    assert store.query(now - 20 * DAY, now, code="pgr") == []
    store.add_scans([scan(now - 60, total=40)])  # the same scan again replaces itself
    assert store.count() == 3 and store.query(now - 61, now - 59)[0]["total"] == 40
    store.close()
    again = EchoStore(str(tmp_path / "echoes.sqlite"), retention=None)
    assert again.count() == 3 and again.purge(now + 1000 * DAY) == 0


def test_replay_files_gives_the_same_products_as_live(tmp_path):
    gen = synth.RadarSynth(65, seed=5, sounding_every=3)
    records = list(itertools.islice(gen.records(T0), 80))
    first = tmp_path / "a.fitacf.bz2"
    second = tmp_path / "b.fitacf"
    first.write_bytes(bz2.compress(darn.write_fitacf(records[:37])))  # a scan straddles the files
    second.write_bytes(darn.write_fitacf(records[37:]))
    beams, scans, progress = [], [], []
    summary = replay.replay_files(
        [str(first), str(second)],
        beams.append,
        scans.append,
        lambda done, total: progress.append((done, total)),
        progress_every=10,
    )
    assert (summary.files, summary.records, summary.beams, summary.bad_records) == (2, 80, 80, 0)
    assert summary.errors == []
    assert beams[0]["code"] == "rkn" and beams[0]["name"] == "Rankin Inlet"
    # Live path: the same records through the accumulator.
    acc = ScanAccumulator()
    live = [
        s
        for r in darn.read_fitacf(darn.write_fitacf(records), mode="strict")
        for s in acc.add(beam_product(r, "rkn"))
    ] + acc.flush()
    assert [(s["time"], s["beams"], s["total"]) for s in scans] == [
        (s["time"], s["beams"], s["total"]) for s in live
    ]
    assert summary.scans == len(scans) and scans[0]["beams"] == 16
    assert progress[-1][0] == progress[-1][1] > 0
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False))
    assert replay.progress_bar(1, 4, width=8) == "[##......]  25.0%"


def test_replay_keeps_what_came_before_a_corrupt_record(tmp_path):
    records = list(itertools.islice(synth.RadarSynth(5).records(T0), 10))
    data = darn.write_fitacf(records)
    bad = tmp_path / "bad.fitacf"
    bad.write_bytes(data[: len(data) - 100])
    broken_bz2 = tmp_path / "broken.fitacf.bz2"
    broken_bz2.write_bytes(b"BZh9 not really")
    good = tmp_path / "good.fitacf"
    good.write_bytes(data)
    beams = []
    summary = replay.replay_files(
        [str(bad), str(broken_bz2), str(tmp_path / "missing"), str(good)],
        beams.append,
        lambda s: None,
    )
    assert summary.records == 9 + 10 and len(beams) == 19
    assert len(summary.errors) == 3 and "rest of the file skipped" in summary.errors[0]
