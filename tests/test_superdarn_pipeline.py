"""RadarPipeline on a real DataNode (memory store) with a fake clock: products,
history, status, staleness, and the SQLite echo counts with their retention."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from nodes.base import DataNode
from nodes.radar import synth
from nodes.radar.echoes import EchoStore
from nodes.radar.pipeline import RadarPipeline
from obsmesh import config

T0 = 1_700_000_040.0
DAY = 86400.0


class Node(DataNode):
    """A DataNode that keeps what it would publish."""

    def __init__(self, now: float = T0 + 3600) -> None:
        self.published: list[tuple[str, dict]] = []
        self.fake = Clock()
        self.fake.advance(now)
        super().__init__(
            "sdunit",
            config.mesh(environ={}, store="memory"),
            clock=self.fake.seconds,
            reactor=self.fake,
        )

    def publish(self, suffix, payload, retain=True):
        self.published.append((suffix, payload))

    def topic(self, suffix: str) -> list[dict]:
        return [p for s, p in self.published if s == suffix]

    def query(self, timeline: str, fields: list[str]):
        return self.store.query_now(timeline, fields, 0, 2e9)


def now_thread(fn, *args):
    return defer.maybeDeferred(fn, *args)


def records(stid: int = 5, n: int = 60, **kw) -> list[dict]:
    gen = synth.RadarSynth(stid, seed=9, **kw)
    gen.model.quiet_beam_chance = 0.3
    return list(itertools.islice(gen.records(T0), n))


def test_beams_and_scans_published_and_stored_per_radar():
    node = Node()
    pipe = RadarPipeline(node, run_in_thread=now_thread)
    pipe.add_radar("sas")
    recs = records(5, 60, sounding_every=2, camping_every=3)
    for r in recs:
        assert pipe.ingest("sas", r) is not None
    beams = node.topic("radar.sas.beam")
    assert len(beams) == len(recs) and beams[0]["name"] == "Saskatoon" and beams[0]["key"] == "sas"
    t, cols = node.query("sas.beam", ["sas.echoes", "sas.noise", "sas.bmnum"])
    assert t.tolist() == [b["time"] for b in beams]
    assert cols["sas.echoes"].tolist() == [len(r.get("slist", [])) for r in recs]
    assert 0 in cols["sas.echoes"].tolist()  # zero-echo beams are history too
    # Scans: from +1 to the next +1, soundings and camping beams left out.
    scans = node.topic("radar.sas.scan")
    starts = [i for i, r in enumerate(recs) if r["scan"] == 1]
    assert len(scans) == len(starts) - 1
    for scan, (a, b) in zip(scans, itertools.pairwise(starts), strict=True):
        part = [r for r in recs[a:b] if r["scan"] in (0, 1)]
        total = sum(len(r.get("slist", [])) for r in part)
        ground = sum(int(np.sum(r["gflg"])) for r in part if "slist" in r)
        assert (scan["beams"], scan["total"], scan["ground"], scan["complete"]) == (
            len(part),
            total,
            ground,
            True,
        )
        assert scan["mean_ionospheric"] == (total - ground) / len(part)
    t, cols = node.query("sas.scan", ["sas.scan.total", "sas.scan.complete", "sas.scan.duration"])
    assert t.tolist() == [s["time"] for s in scans]
    assert cols["sas.scan.total"].tolist() == [s["total"] for s in scans]
    assert cols["sas.scan.complete"].tolist() == [1.0] * len(scans)
    assert cols["sas.scan.duration"].tolist() == [s["end"] - s["time"] for s in scans]
    source = node.sources["sas"]
    assert (source["beams"], source["scans"], source["last_sample"]) == (
        len(recs),
        len(scans),
        beams[-1]["time"],
    )
    assert node.counters["records"] == len(recs) and node.counters["bad_records"] == 0


def test_each_node_gets_its_own_fields_and_keys_with_channels():
    a, b = Node(), Node()
    RadarPipeline(a, run_in_thread=now_thread).add_radar("sas.a")
    RadarPipeline(b, run_in_thread=now_thread).add_radar("inv")
    assert a.fields["sas.a.noise"]["timeline"] == "sas.a.beam"
    assert a.fields["sas.a.scan.total"]["timeline"] == "sas.a.scan"
    assert (
        a.fields["sas.a.tfreq"]["units"] == "kHz"
        and "Saskatoon" in a.fields["sas.a.noise"]["description"]
    )
    assert "inv.noise" in b.fields and "inv.noise" not in a.fields
    with pytest.raises(ValueError):
        RadarPipeline(a).add_radar("SAS; drop")


def test_bad_records_are_counted_never_raised_and_clock_ahead_refused():
    node = Node()
    pipe = RadarPipeline(node, run_in_thread=now_thread)
    good = records(5, 3)
    assert pipe.ingest("sas", {"stid": 5}) is None
    assert pipe.ingest("sas", {**good[0], "nrang": -3}) is None
    future = {**good[1], **synth.radar_time_fields(node.clock() + 2 * 3600)}
    assert pipe.ingest("sas", future) is None
    assert pipe.ingest("sas", good[2]) is not None
    assert node.counters["bad_records"] == 3 and node.sources["sas"]["bad_records"] == 3
    assert node.query("sas.beam", ["sas.noise"])[0].size == 1


def test_going_away_finishes_the_open_scan_as_incomplete():
    node = Node()
    pipe = RadarPipeline(node, run_in_thread=now_thread)
    recs = records(5, 24, sounding_every=0)
    for r in recs[:20]:  # one whole scan, then four beams of the next
        pipe.ingest("sas", r)
    pipe.radar_status("sas", connected=True)
    assert [s["complete"] for s in node.topic("radar.sas.scan")] == [True]
    pipe.radar_status("sas", connected=False, error="connection lost")
    cut = node.topic("radar.sas.scan")[-1]
    assert (cut["complete"], cut["beams"]) == (False, 4)
    assert node.sources["sas"]["error"] == "connection lost"
    assert any(
        e["title"] == "sas disconnected" and e["text"] == "connection lost" for e in node.events
    )
    pipe.radar_status("sas", connected=False)  # no news: nothing more finished
    assert len(node.topic("radar.sas.scan")) == 2


def test_watchdog_marks_a_quiet_radar_stale_and_fresh_again():
    node = Node()
    pipe = RadarPipeline(node, stale_after=30.0, run_in_thread=now_thread)
    pipe.add_radar("rkn")
    recs = records(65, 5)
    pipe.ingest("rkn", recs[0])
    node.fake.advance(29)
    pipe.ingest("rkn", recs[1])
    node.fake.advance(29)
    assert not node.sources["rkn"]["stale"]
    node.fake.advance(2)
    assert node.sources["rkn"]["stale"] is True
    assert [p["stale"] for p in node.topic("status") if p["source"] == "rkn"][-1] is True
    pipe.ingest("rkn", recs[2])
    assert node.sources["rkn"]["stale"] is False


def test_echo_counts_written_in_batches_kept_through_failures_and_purged_on_schedule(tmp_path):
    node = Node(now=T0 + 10 * DAY)
    store = EchoStore(str(tmp_path / "e.sqlite"), retention=2)
    pending: list[defer.Deferred] = []

    def in_thread(fn, *args):  # completes when the test says so, like a worker thread
        d = defer.Deferred()
        pending.append(d)
        d.addCallback(lambda _: fn(*args))
        return d

    pipe = RadarPipeline(
        node, store, purge_interval=3600.0, maintain_every=60.0, run_in_thread=in_thread
    )
    recs = records(5, 60, sounding_every=0)
    for r in recs[:34]:  # two scans complete: the first goes alone, the second waits for it
        pipe.ingest("sas", r)
    assert len(pending) == 1
    pending.pop(0).callback(None)
    assert store.count() == 1 and len(pending) == 1
    # A failing write keeps its scans and tries again later.
    broken = pending.pop(0)
    broken.errback(RuntimeError("disk full"))
    assert node.counters["echo_db_errors"] == 1 and store.count() == 1
    node.fake.advance(5)
    pending.pop(0).callback(None)
    assert store.count() == 2
    done = pipe.drain()
    assert done.called
    # Rows older than the retention go on the first run and on every later one.
    store.add_scans(
        [
            {
                "stid": 5,
                "channel": 0,
                "time": node.clock() - 3 * DAY,
                "end": node.clock() - 3 * DAY,
                "code": "sas",
                "beams": 1,
                "total": 1,
                "ionospheric": 1,
                "ground": 0,
            }
        ]
    )
    pipe.start()
    pending.pop(0).callback(None)  # purge
    assert store.count() == 0 and node.counters["echo_rows_purged"] == 3  # T0 scans are 10 days old
    pending.pop(0).callback(None)  # radars known from the echo database
    store.add_scans(
        [
            {
                "stid": 64,
                "channel": 0,
                "time": node.clock() - 3 * DAY,
                "end": node.clock(),
                "code": "inv",
                "beams": 1,
                "total": 0,
                "ionospheric": 0,
                "ground": 0,
            }
        ]
    )
    node.fake.advance(60)  # maintenance, not yet a purge
    assert len(pending) == 1
    pending.pop(0).callback(None)
    assert store.count() == 1 and "inv.scan.total" in node.fields and "inv" not in node.sources
    node.fake.advance(3600)
    pending.pop(0).callback(None)
    assert store.count() == 0 and node.counters["echo_rows_purged"] == 4
    store.close()


def test_get_echoes_checks_its_arguments(tmp_path):
    from obsmesh.errors import InvalidArgument

    node = Node()
    store = EchoStore(str(tmp_path / "e.sqlite"), retention=None)
    pipe = RadarPipeline(node, store, run_in_thread=now_thread)
    for r in records(5, 40, sounding_every=0):
        pipe.ingest("sas", r)
    rows = defer.ensureDeferred(pipe.get_echoes(T0 - 60, T0 + 3600, "sas")).result
    assert [r["total"] for r in rows] == [s["total"] for s in node.topic("radar.sas.scan")]
    assert defer.ensureDeferred(pipe.get_echoes(T0 - 60, T0 + 3600, "pgr")).result == []
    caught = []
    for bad in [("x", 0, None), (0, -10, None), (-10, 0, "sas'; --"), (-10, 0, 5)]:
        defer.ensureDeferred(pipe.get_echoes(*bad)).addErrback(
            lambda f: caught.append(f.trap(InvalidArgument))
        )
    assert caught == [InvalidArgument] * 4
    store.close()


def test_skip_history_keeps_rows_out_of_the_store_only():
    from nodes.radar.products import radar_time

    node = Node()
    recs = records(5, 40, sounding_every=0)
    held = radar_time(recs[3])  # as if the store had this beam already
    pipe = RadarPipeline(
        node,
        run_in_thread=now_thread,
        skip_history=lambda tl, t, ch: tl == "sas.beam" and (t, ch) == (held, 0),
    )
    for r in recs:
        pipe.ingest("sas", r, live=False)
    t, _ = node.query("sas.beam", ["sas.noise"])
    assert t.size == len(recs) - 1 and held not in t.tolist()
    assert node.published == []  # archived records are not live news
    assert node.counters["beams"] == len(recs)


def test_velocity_power_and_the_site_for_the_dashboard():
    node = Node()
    pipe = RadarPipeline(node, run_in_thread=now_thread)
    pipe.add_radar("sas")
    site = node.sources["sas"]["site"]
    assert site == {
        "name": "Saskatoon",
        "lat": 52.1575,
        "lon": -106.53031,
        "boresight": 23.1,
        "beams": 16,
    }
    recs = records(5, 40)
    for r in recs:
        pipe.ingest("sas", r)
    t, cols = node.query("sas.beam", ["sas.velocity", "sas.power"])
    for r, v, p in zip(
        recs, cols["sas.velocity"].tolist(), cols["sas.power"].tolist(), strict=True
    ):
        iono = [x for x, g in zip(r.get("v", []), r.get("gflg", []), strict=True) if not g]
        assert (np.isnan(v) and not iono) or v == pytest.approx(float(np.median(iono)), rel=1e-5)
        pl = list(r.get("p_l", []))
        assert (np.isnan(p) and not pl) or p == pytest.approx(float(np.mean(pl)), rel=1e-5)
    meta = node.fields
    assert meta["sas.velocity"]["units"] == "m/s" and meta["sas.velocity"]["precision"] == 0
    assert (
        meta["sas.scan.total"]["precision"] == 0 and meta["sas.scan.mean_total"]["precision"] == 1
    )
    assert "plots" not in node.info()  # a bare DataNode announces no plots
