"""The dashboard's pure modules (binning, configuration, payload checks), run
in the browser they are written for, against Python references, and fuzzed
with hostile payloads: nothing a node or a link sends may throw."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import sync_playwright

from tests.test_web_support import launch, web_ready

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)
BEAM_KEYS = [
    "time",
    "beam",
    "nrang",
    "frang",
    "rsep",
    "channel",
    "scan",
    "tfreq",
    "noise",
    "slist",
    "v",
    "gflg",
    "name",
    "total",
    "ionospheric",
    "ground",
    "radar",
    "stage",
    "last_start",
    "stale",
    "t",
    "data",
    "timeline",
    "sources",
    "connected",
    "last_ping",
    "rssi_dbm",
    "co2",
]
shaped = st.dictionaries(st.sampled_from(BEAM_KEYS), json_values, max_size=12)
payloads = st.lists(json_values | shaped, min_size=1, max_size=8)


@pytest.fixture(scope="module")
def page(router):
    web_ready()
    with sync_playwright() as pw:
        browser = launch(pw)
        pg = browser.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(router.http_url)
        pg.wait_for_function("window.obsmesh !== undefined", timeout=30_000)
        yield pg
        browser.close()
        assert errors == []


def run(page, module, body, arg=None):
    """Evaluate `body` (a function body with `m` the module and `arg`) in the page."""
    return page.evaluate(
        f"async (arg) => {{ const m = await import('/app/{module}'); {body} }}", arg
    )


def binned(t, v, stride):
    """The server's mean bins: aligned to multiples of stride, stamped at the centre, mean of finite values."""
    bins: dict[int, list] = {}
    for ti, vi in zip(t, v, strict=True):
        bins.setdefault(math.floor(ti / stride), []).append((ti, vi))
    out_t, out_v = [], []
    for k in sorted(bins):
        rows = bins[k]
        out_t.append((k + 0.5) * stride)
        vals = [r[1] for r in rows if r[1] is not None]
        out_v.append(sum(vals) / len(vals) if vals else None)
    return out_t, out_v


samples = st.lists(
    st.tuples(st.floats(0.001, 5.0), st.one_of(st.none(), st.floats(-1e6, 1e6))),
    min_size=1,
    max_size=120,
)


@FUZZ
@given(samples, st.sampled_from([None, 0.5, 1.0, 2.0, 5.0]), st.integers(1, 7))
def test_live_binning_matches_the_servers_mean_bins(page, rows, stride, chunk):
    t, v = [], []
    now = 1_800_000_000.0
    for gap, value in rows:
        now += gap
        t.append(now)
        v.append(value)
    got = run(
        page,
        "series.js",
        """
        const s = new m.Series(arg.stride);
        for (let i = 0; i < arg.t.length; i += arg.chunk) s.append(arg.t.slice(i, i + arg.chunk), arg.v.slice(i, i + arg.chunk));
        s.append(arg.t, arg.v);  // the same samples again (a retained batch): dropped
        return [s.t, s.v];
    """,
        {"t": t, "v": v, "stride": stride, "chunk": chunk},
    )
    want = (t, v) if stride is None else binned(t, v, stride)
    assert got[0] == pytest.approx(want[0], rel=0, abs=1e-6)
    assert [x is None for x in got[1]] == [x is None for x in want[1]]
    assert [x for x in got[1] if x is not None] == pytest.approx(
        [x for x in want[1] if x is not None], rel=1e-9
    )


def test_history_then_live_continues_the_last_bin_and_trim_keeps_the_range(page):
    got = run(
        page,
        "series.js",
        """
        const s = new m.Series(10);
        s.setHistory([100, 105, 115, 112, "x"], [1, 3, 5, 9, 9]);  // not increasing or not a time: dropped
        const kept = s.length;
        s.append([117, 119, 121], [7, null, 11]);  // 117, 119 join the bin of 115; 121 opens a new one
        s.trim(110);
        return {kept, t: s.t.slice(s.head), v: s.v.slice(s.head), stride: m.niceStride(900), s300: m.niceStride(300)};
    """,
    )
    assert got["kept"] == 3
    assert got["t"] == pytest.approx([115, 125])  # a new bin's point is at its centre
    assert got["v"] == pytest.approx([6, 11])  # mean of 5 and 7; the null is no value
    assert got["stride"] == 1 and got["s300"] == 0.2


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["realm", "prefix", "ws", "x"]), st.text(max_size=40), max_size=4
    )
)
def test_a_crafted_link_never_points_the_page_elsewhere(page, query):
    got = run(
        page,
        "config.js",
        """
        const q = new URLSearchParams(arg).toString();
        return m.meshConfig({search: "?" + q, protocol: "http:", host: "127.0.0.1:8080"});
    """,
        query,
    )
    assert got["url"].startswith("ws://127.0.0.1:8080/")
    assert "//" not in got["url"][len("ws://") :]
    for key in ("realm", "prefix"):
        assert got[key] == query.get(key, "obsmesh") or got[key] == "obsmesh"
        assert all(c.isalnum() or c in "._" for c in got[key])


@FUZZ
@given(payloads)
def test_hostile_payloads_never_throw_and_never_break_invariants(page, items):
    got = run(
        page,
        "radar-model.js",
        """
        const co2 = await import('/app/co2-model.js');
        const df = await import('/app/dataflow-model.js');
        const dir = await import('/app/directory.js');
        const r = new m.RadarState("n", "sas");
        const u = new co2.Co2Units();
        const b = new df.Board();
        for (const p of arg) {
            r.addBeam(p, 1000);
            r.addScan(p);
            const beam = m.cleanBeam(p);
            if (beam) for (const g of beam.gates) if (!(g >= 0 && g < beam.nrang)) throw new Error("gate outside nrang");
            u.fromStatus(p);
            u.fromSource("sas", p);
            u.fromColumns(p && p.timeline, p && p.t, p && p.data);
            u.fromFields(p);
            b.fromProducts(p);
            b.fromProducts([p]);
            b.fromSources(p);
            b.fromColumns(p && p.timeline, p && p.t, p && p.data);
            b.fromColumns("stages", p && p.t, p);
            df.isFailureEvent(p);
            dir.cleanEntry(p);
            m.radarTopic(p && p.name, "obsmesh.consumer.n.radar.");
        }
        r.state(2000); r.summary(2000); r.grid(); u.rows(2000); b.radars(); b.stages();
        for (const c of b.cells.values()) b.look(c);
        return {scans: r.scans.map(s => s.time), rows: u.rows(2000).length};
    """,
        items,
    )
    assert got["scans"] == sorted(got["scans"])


def test_topic_names_and_colours(page):
    got = run(
        page,
        "radar-model.js",
        """
        return {
            ok: m.radarTopic("p.consumer.n.radar.sas.beam", "p.consumer.n.radar."),
            deep: m.radarTopic("p.consumer.n.radar.x.y.beam", "p.consumer.n.radar."),
            other: m.radarTopic("p.consumer.m.radar.sas.beam", "p.consumer.n.radar."),
            toward: m.velocityColor(-5000), away: m.velocityColor(5000), none: m.velocityColor(null),
            fields: m.echoFields({"sas.total": {}, "sas.ground": {}, "pgr.total": {}, "sas.noise": {}}, "sas"),
        };
    """,
    )
    assert got["ok"] == {"code": "sas", "what": "beam"}
    assert got["deep"] is None and got["other"] is None
    assert (
        got["toward"] == "rgb(29,78,216)"
        and got["away"] == "rgb(185,28,28)"
        and got["none"] == "#cbd5e1"
    )
    assert got["fields"] == {"total": "sas.total", "ground": "sas.ground"}


def test_co2_silence_and_dataflow_cells(page):
    got = run(
        page,
        "co2-model.js",
        """
        const df = await import('/app/dataflow-model.js');
        const u = new m.Co2Units();
        u.fromStatus({sources: {endpoint: {connected: true}, a: {connected: true, last_heard: 1000},
                                b: {connected: true, last_heard: 100}, c: {connected: false, stale: true, last_heard: 990},
                                d: {connected: false, stale: false, last_heard: null}}});
        u.fromColumns("a", [1001, 1002], {"a.co2_mean": [410, null], "a.temperature": [null, -3]});
        u.fromColumns("a.ping", [1003], {"a.rssi_dbm": [-80]});
        const b = new df.Board();
        b.fromProducts([{radar: "sas", stage: "rsync_to_nas", last_start: 10, last_files_ok: 3, last_files_failed: 0, stale: false},
                        {radar: "sas", stage: "convert_on_campus", last_start: 10, last_files_failed: 2, stale: false},
                        {radar: "sas", stage: "archive_iq_plots", stale: true}, {radar: "../x", stage: "y"}]);
        b.fromColumns("pgr.rsync_to_nas", [50], {"pgr.rsync_to_nas.state": ["died"], "pgr.rsync_to_nas.duration": [5]});
        return {rows: u.rows(1010).map(r => [r.id, r.silent, r.co2, r.temperature, r.rssi, r.bars]),
                looks: [...b.cells.values()].map(c => [c.radar, c.stage, b.look(c)]), stages: b.stages()};
    """,
    )
    assert got["rows"] == [
        ["a", False, 410, -3, -80, 3],
        ["b", True, None, None, None, 0],
        ["c", True, None, None, None, 0],
        ["d", True, None, None, None, 0],
    ]
    assert got["looks"] == [
        ["sas", "rsync_to_nas", "ok"],
        ["sas", "convert_on_campus", "failed"],
        ["sas", "archive_iq_plots", "stale"],
        ["pgr", "rsync_to_nas", "failed"],
    ]
    assert got["stages"] == ["rsync_to_nas", "convert_on_campus", "archive_iq_plots"]


def test_values_ticks_and_order_as_the_reader_sees_them(page):
    got = run(
        page,
        "format.js",
        """
        return {
            values: [
                m.fmtValue(1012.8432, {units: "hPa", precision: 1}),
                m.fmtValue(1012.8432, {units: "hPa"}),
                m.fmtValue(6.65e9, {units: "B"}),
                m.fmtValue(6.65e9, {}),
                m.fmtValue(48.223350253807105, {units: "%", precision: 1}),
                m.fmtValue(-2.04, {units: "degC", precision: 1}),
                m.fmtValue(1800000000, {units: "s since 1970-01-01"}),
                m.fmtValue(null, {}),
            ],
            bytes: m.tickLabels([0, 2e9, 4e9, 6e9], "B", 2e9),
            big: m.tickLabels([0, 500000, 1000000, 1500000], "", 500000),
            fine: m.tickLabels([1012.75, 1012.775, 1012.8], "hPa", 0.025),
            order: ["co2_10", "co2_2", "u10.x", "u2.x", "co2_1"].sort(m.natural),
            units: [m.unitText("degC"), m.unitText("deg"), m.unitText("s since 1970-01-01"), m.unitText("ppm")],
        };
    """,
    )
    assert got["values"] == [
        "1,012.8 hPa",
        "1,012.8 hPa",
        "6.65 GB",
        "6.65 G",
        "48.2%",
        "-2.0 °C",
        "2027-01-15 08:00:00Z",
        "—",
    ]
    assert got["bytes"] == ["0 GB", "2 GB", "4 GB", "6 GB"]
    assert got["big"] == ["0.0M", "0.5M", "1.0M", "1.5M"]
    assert got["fine"] == ["1,012.750", "1,012.775", "1,012.800"]
    assert got["order"] == ["co2_1", "co2_2", "co2_10", "u2.x", "u10.x"]
    assert got["units"] == ["°C", "°", "UNIX time", "ppm"]


def test_default_plots_events_and_suggestions(page):
    got = run(
        page,
        "plots-choice.js",
        """
        const ev = await import('/app/events.js');
        const sg = await import('/app/suggest.js');
        const n = {type: "number"};
        const fields = {"sas.velocity": n, "sas.power": n, "sas.noise": n, "sas.scan.noise": n,
                        "pgr.velocity": n, "pgr.noise": n, "stamp": {type: "number", units: "s since 1970-01-01"},
                        "a10": n, "a2": n, "flag": {type: "bool"}, "name": {type: "string"}};
        return {
            radar: m.defaultPlots(fields, ["*.velocity", "*.power", "*.noise"]),
            fallback: m.defaultPlots(fields, []),
            time: m.plottableField(fields.stamp),
            titles: [ev.eventTitle("sas: connected=False"), ev.eventTitle("u3: connected=False, stale=True"),
                     ev.eventTitle("x: stale=False"), ev.eventTitle("sas disconnected")],
            problems: [
                ev.isProblemEvent({time: 1, title: "x: stale=True"}),
                ev.isProblemEvent({time: 1, title: "x: stale=False"}),
                ev.isProblemEvent({time: 1, title: "x recovered (fresh data again)", tags: ["status", "x", "recovered"]}),
                ev.isProblemEvent({time: 1, title: "x went stale", tags: ["status", "x", "stale"]}),
                ev.isProblemEvent({time: 1, title: "sas rsync: 2 file(s) failed", tags: ["failure"]}),
            ],
            close: sg.closeNames("wether", ["weather", "sensors", "canada"]),
            none: sg.closeNames("zzzzzz", ["weather"]),
        };
    """,
    )
    assert got["radar"] == ["pgr.velocity", "pgr.noise", "sas.velocity", "sas.power", "sas.noise"]
    assert got["fallback"] == ["a2", "a10", "pgr.noise", "pgr.velocity"]  # no time stamp, no flag
    assert got["time"] is False
    assert got["titles"] == [
        "sas disconnected",
        "u3 disconnected and went stale (nothing new in time)",
        "x recovered (fresh data again)",
        "sas disconnected",
    ]
    assert got["problems"] == [True, False, False, True, True]
    assert got["close"] == ["weather"] and got["none"] == []


@FUZZ
@given(json_values, json_values)
def test_formatting_never_throws(page, value, meta):
    got = run(
        page,
        "format.js",
        """
        const out = [m.fmtValue(arg.v, arg.m), m.fmtNum(arg.v), m.fmtTime(arg.v), m.unitText(arg.m && arg.m.units)];
        const splits = Array.isArray(arg.v) ? arg.v.filter(x => typeof x === "number") : [];
        out.push(...m.tickLabels(splits, arg.m && arg.m.units, 1));
        return out.every(x => typeof x === "string");
    """,
        {"v": value, "m": meta if isinstance(meta, dict) else None},
    )
    assert got is True
