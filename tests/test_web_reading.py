"""The dashboard read as a user reads it, in Debian's headless Chromium
against a real router and real node processes: every view fits a phone,
numbers and axes read right, each kind opens on its own plots, health never
claims what the page cannot know, recovered sources clear, events are
sentences, developer figures wait behind "details", times are in UTC or local
time as chosen, a plot saves as CSV, an unknown node is explained, and radar
fans sit on a map. Screenshots of every view at 1440 px and 390 px go to
test-artifacts/screenshots/."""

from __future__ import annotations

import calendar
import re
import subprocess
import time

import pytest
from playwright.sync_api import sync_playwright

from nodes.radar.radars import radar as radar_row
from tests.harness import PYTHON, REPO, admit, stop_process
from tests.test_web_support import Console, launch, screenshot, spawn_feed, web_ready

WAIT_MS = 30_000
WIDTHS = {"wide": 1440, "phone": 390}


@pytest.fixture(scope="module")
def browser():
    web_ready()
    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


def new_page(browser, width=1440, **options):
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 500 else 844}, **options
    )
    page = context.new_page()
    page.console = Console(page)
    return page


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    yield pg
    pg.context.close()


def wait(page, expression, arg=None):
    page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


def showcase(router, name, tmp_path, *args, env=None):
    """tests/showcase_process.py: units, precision, a time field, `plots` patterns."""
    admit(name)  # a node is a named principal of the mesh
    return subprocess.Popen(
        [PYTHON, "tests/showcase_process.py", name, *args],
        env={**router.env(), **(env or {})},
        cwd=str(REPO),
        stdout=open(tmp_path / f"{name}.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def plots_of(page, node):
    return page.evaluate(
        "(node) => [...document.querySelectorAll('#plots [data-plot]')].map(e => e.dataset.plot.slice(node.length + 1))",
        node,
    )


def test_every_view_fits_a_phone(router, browser, tmp_path):
    procs = [
        showcase(router, "webshow", tmp_path),
        spawn_feed(["radar", "webfans", "--codes", "sas,pgr"], router.env(), tmp_path / "r.log"),
        spawn_feed(["co2", "webunits", "--units", "u1,u2,u10"], router.env(), tmp_path / "c.log"),
        spawn_feed(
            ["dataflow", "webflow", "--radars", "sas,pgr"], router.env(), tmp_path / "d.log"
        ),
    ]
    views = {
        "home": ("", "document.querySelectorAll('#node-cards .node-card').length >= 4"),
        "node": ("node/webshow", "Object.keys(window.obsmesh.plots).length >= 6"),
        "radars": ("radars", "(window.obsmesh.radar['webfans/pgr'] || {}).coast > 0"),
        "co2": ("co2", "(window.obsmesh.co2['webunits'] || {}).units === 4"),
        "dataflow": ("dataflow", "(window.obsmesh.dataflow['webflow'] || {}).cells === 12"),
        "unknown-node": (
            "node/webshoe",
            "document.querySelector('.missing-node:not([hidden])') !== null",
        ),
    }
    try:
        for label, width in WIDTHS.items():
            pg = new_page(browser, width)
            try:
                for view, (route, ready) in views.items():
                    pg.goto(f"{router.http_url}#/{route}")
                    wait(pg, ready)
                    screenshot(pg, f"{view}-{label}")
                    overflow = pg.evaluate(
                        """(w) => [...document.querySelectorAll('body *')]
                            .filter(e => { const r = e.getBoundingClientRect();
                                           return r.width > 0 && r.right > w + 1 && !e.closest('.table-card, .scroll-x, .card.scroll'); })
                            .map(e => e.tagName + '.' + e.className).slice(0, 5)""",
                        width,
                    )
                    assert pg.evaluate("document.documentElement.scrollWidth") <= width, view
                    assert overflow == [], (view, overflow)  # wide tables scroll inside their card
                # the tabs and the connection badge are on screen on a phone too
                for sel in (".nav-link[data-view='dataflow']", "#connection", "#tz-toggle"):
                    box = pg.locator(sel).bounding_box()
                    assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, sel
                assert pg.console.errors() == []
            finally:
                pg.context.close()
    finally:
        for p in procs:
            stop_process(p)


def test_each_kind_opens_on_its_plots_with_readable_numbers(router, page, tmp_path):
    proc = showcase(router, "webnums", tmp_path)
    try:
        page.goto(f"{router.http_url}#/node/webnums")
        wait(page, "Object.keys(window.obsmesh.plots).length === 6")
        # the kind's `plots` ("*.co2_mean", "*.temperature"), unit by unit, u2 before u10
        assert plots_of(page, "webnums") == [
            "u1.co2_mean",
            "u1.temperature",
            "u2.co2_mean",
            "u2.temperature",
            "u10.co2_mean",
            "u10.temperature",
        ]
        assert "fields=u1.co2_mean%2Cu1.temperature" in page.evaluate("location.hash")
        rows = page.locator("#fields tbody tr").evaluate_all("rs => rs.map(r => r.dataset.field)")
        assert rows.index("u2.co2_mean") < rows.index("u10.co2_mean")  # natural order
        # a field of times is listed, never offered for plotting
        assert page.locator("#fields tr[data-field='file_time'] button").count() == 0
        assert (
            page.locator("#fields tr[data-field='file_time'] td").nth(4).inner_text() == "UNIX time"
        )
        for f in ("pressure", "cpu", "memory"):
            page.locator(f"#fields tr[data-field='{f}'] button").click()
        wait(
            page,
            "['pressure','cpu','memory'].every(f => (window.obsmesh.plots['webnums/' + f] || {}).draws > 1)",
        )
        value = {
            f: page.locator(f"[data-plot='webnums/{f}'] .plot-value").inner_text()
            for f in ("pressure", "cpu", "memory")
        }
        assert re.fullmatch(r"1,012\.[789] hPa", value["pressure"]), value
        assert re.fullmatch(r"\d\d\.\d%", value["cpu"]), value
        assert re.fullmatch(r"6\.6\d GB", value["memory"]), value
        assert (
            page.locator("[data-plot='webnums/u10.temperature'] .plot-title").inner_text()
            == "u10.temperature (°C)"
        )
        stats = {
            f: page.evaluate(f"window.obsmesh.plots['webnums/{f}']")
            for f in ("pressure", "cpu", "memory")
        }
        assert stats["cpu"]["yRange"] == [0, 100]  # percent on 0-100
        assert stats["memory"]["yTicks"] and all(
            t.endswith(" GB") for t in stats["memory"]["yTicks"]
        )
        assert all("," in t or "." in t for t in stats["pressure"]["yTicks"])  # 1,012.8, not ",000"
        for f, st in stats.items():  # every label fits the room the axis has
            widest = page.evaluate(
                """(labels) => { const c = document.createElement('canvas').getContext('2d');
                                c.font = '11px system-ui, sans-serif';
                                return Math.max(...labels.map(l => c.measureText(l).width)); }""",
                st["yTicks"],
            )
            assert widest + 8 <= st["ySize"], (f, st["yTicks"], st["ySize"])
        # asked for by URL, a time field is still not plotted
        page.goto(f"{router.http_url}#/node/webnums?fields=file_time,pressure")
        wait(page, "(window.obsmesh.plots['webnums/pressure'] || {}).loads >= 1")
        assert "webnums/file_time" not in page.evaluate("Object.keys(window.obsmesh.plots)")
    finally:
        stop_process(proc)
    assert page.console.errors() == []


def test_health_is_unknown_while_disconnected_and_plots_keep_their_history(
    own_router, browser, tmp_path
):
    router = own_router
    proc = showcase(router, "webkeep", tmp_path, "--history", "600")
    page = new_page(browser)
    try:
        page.goto(f"{router.http_url}#/")
        wait(
            page,
            "document.querySelector('#node-cards [data-node=webkeep]')?.dataset.health === 'ok'",
        )
        page.goto(f"{router.http_url}#/node/webkeep?fields=pressure")
        wait(page, "(window.obsmesh.plots['webkeep/pressure'] || {}).livePoints >= 3")
        wait(page, "document.querySelector('.status-grid')?.dataset.current === 'yes'")
        first = page.evaluate("window.obsmesh.tail('webkeep/pressure', 1e6).first")
        assert first < time.time() - 500  # ten minutes of history on screen

        router.stop()
        stop_process(proc)  # the node goes too, and comes back with no history
        wait(page, "window.obsmesh.connection.state === 'reconnecting'")
        wait(page, "document.querySelector('.status-grid')?.dataset.current === 'no'")
        pills = page.locator(".status-grid .pill").all_inner_texts()
        assert pills and set(pills) == {"unknown"}  # never "ok" while it cannot know
        assert "Not current" in page.locator(".stale-note").inner_text()
        screenshot(page, "node-disconnected-wide")
        page.goto(f"{router.http_url}#/")
        wait(
            page,
            "document.querySelector('#node-cards [data-node=webkeep]')?.dataset.health === 'unknown'",
        )
        assert "health unknown" in page.locator("#node-cards [data-node=webkeep]").inner_text()

        page.goto(f"{router.http_url}#/node/webkeep?fields=pressure")
        router.start()
        proc = showcase(router, "webkeep", tmp_path, "--history", "0")
        wait(page, "window.obsmesh.connection.state === 'connected'")
        wait(page, "(window.obsmesh.plots['webkeep/pressure'] || {}).loads >= 1")
        wait(page, "(window.obsmesh.plots['webkeep/pressure'] || {}).livePoints >= 3")
        wait(page, "document.querySelector('.status-grid')?.dataset.current === 'yes'")
    finally:
        stop_process(proc)
        page.context.close()


def test_plot_history_survives_an_outage_in_one_page(own_router, browser, tmp_path):
    """The same page across the outage: the reload merges, nothing shown is lost.

    The node keeps its history in memory here, so after its restart it answers
    only what came since: what the page showed before must stay (a durable
    store would answer all of it, and the page would have nothing to merge)."""
    router = own_router
    memory = {"OBSMESH_STORE": "memory"}
    proc = showcase(router, "webmerge", tmp_path, "--history", "600", env=memory)
    page = new_page(browser)
    try:
        page.goto(f"{router.http_url}#/node/webmerge?fields=pressure")
        wait(page, "(window.obsmesh.plots['webmerge/pressure'] || {}).livePoints >= 3")
        first = page.evaluate("window.obsmesh.tail('webmerge/pressure', 1e6).first")
        router.stop()
        stop_process(proc)
        wait(page, "window.obsmesh.connection.state === 'reconnecting'")
        restarted = time.time()
        router.start()
        proc = showcase(router, "webmerge", tmp_path, "--history", "0", env=memory)
        wait(page, "window.obsmesh.connection.opens === 2")
        wait(page, "(window.obsmesh.plots['webmerge/pressure'] || {}).loads >= 2")
        wait(page, f"window.obsmesh.tail('webmerge/pressure', 5).t.at(-1) > {restarted}")
        tail = page.evaluate("window.obsmesh.tail('webmerge/pressure', 1e6)")
        assert tail["first"] == pytest.approx(
            first, abs=1.0
        )  # the ten minutes before are still there
        assert page.evaluate("window.obsmesh.plots['webmerge/pressure'].kept") > 500
    finally:
        stop_process(proc)
        page.context.close()


def test_recovered_sources_clear_and_events_read_as_sentences(router, page, tmp_path):
    procs = [
        showcase(router, "webflap", tmp_path, "--flap", "3"),
        spawn_feed(
            ["dataflow", "webheal", "--radars", "sas,pgr", "--recover", "4"],
            router.env(),
            tmp_path / "h.log",
        ),
    ]
    try:
        page.goto(f"{router.http_url}#/node/webflap?fields=pressure")
        # the node's own flip (stale after 3 s, fresh after 6 s), beside the two it wrote at start
        wait(
            page,
            "[...document.querySelectorAll('.events li')].filter(li => li.innerText.includes('feed recovered')).length === 2",
        )
        wait(
            page,
            "document.querySelector('.status-grid tr[data-source=feed] .pill')?.innerText === 'ok'",
        )
        events = page.locator(".events li").all_inner_texts()
        assert sum("feed went stale (nothing new in time)" in e for e in events) == 2  # one legacy
        # problems in red, the legacy one too; recoveries not
        bad = page.locator(".events li.bad-event").all_inner_texts()
        assert len(bad) == 2 and all("went stale" in e for e in bad)
        text = page.locator("#view").inner_text()
        assert "=True" not in text and "=False" not in text  # the legacy "feed: stale=True" too
        screenshot(page, "node-events-wide")

        page.goto(f"{router.http_url}#/dataflow")
        wait(page, "(window.obsmesh.dataflow['webheal'] || {}).cells === 12")
        wait(
            page,
            "window.obsmesh.dataflow['webheal'].stale === 0 && window.obsmesh.dataflow['webheal'].resolved >= 2",
        )
        df = page.evaluate("window.obsmesh.dataflow['webheal']")
        assert not any("recovered" in t for t in df["titles"])  # a recovery is not a failure
        assert all("=" not in t for t in df["titles"])
        assert page.locator("#board-webheal td.cell.stale").count() == 0
        assert page.locator(".feed li.resolved").count() == df["resolved"]
        screenshot(page, "dataflow-recovered-wide")
    finally:
        for p in procs:
            stop_process(p)
    assert page.console.errors() == []


def test_details_and_clock_are_the_readers_choice(router, browser, tmp_path):
    proc = showcase(router, "webclock", tmp_path)
    page = new_page(browser, timezone_id="Asia/Tokyo")
    try:
        page.goto(f"{router.http_url}#/node/webclock?fields=pressure")
        wait(page, "(window.obsmesh.plots['webclock/pressure'] || {}).draws > 1")
        wait(
            page,
            "document.querySelector('.status-grid') !== null && document.querySelectorAll('.events li').length > 0",
        )
        info = page.locator(".plot-info").first
        assert "history" not in info.inner_text() and "UTC" in info.inner_text()
        assert page.locator(".details-only").count() == 0  # counters wait behind "details"
        assert "frame p95" not in page.locator(".statusbar").inner_text()
        utc_time = page.locator(".events li time").first.inner_text()

        page.locator("#details-toggle").check()
        wait(page, "document.querySelectorAll('.details-only').length === 1")
        wait(page, "(window.obsmesh.plots['webclock/pressure'] || {}).draws > 1")
        wait(page, "document.querySelector('.plot-info').innerText.includes('history')")
        wait(page, "document.querySelector('.statusbar').innerText.includes('frame p95')")
        page.locator("#tz-toggle button[data-tz='local']").click()
        wait(page, "document.querySelector('.plot-info')?.innerText.includes('UTC+09:00')")
        wait(page, "document.querySelectorAll('.events li time').length > 0")
        local_time = page.locator(".events li time").first.inner_text()
        to_s = lambda text: time.mktime(time.strptime(text.rstrip("Z"), "%Y-%m-%d %H:%M:%S"))  # noqa: E731
        assert to_s(local_time) - to_s(utc_time) == 9 * 3600
        screenshot(page, "node-details-local-wide")
        page.reload()  # the choices are kept
        wait(page, "document.querySelector('.plot-info')?.innerText.includes('UTC+09:00')")
        assert page.locator("#details-toggle").is_checked()
    finally:
        stop_process(proc)
        page.context.close()


def test_a_plot_saves_what_it_shows_as_csv(router, page, tmp_path):
    proc = showcase(router, "webcsv", tmp_path)
    try:
        page.goto(f"{router.http_url}#/node/webcsv?fields=pressure&range=300")
        wait(page, "(window.obsmesh.plots['webcsv/pressure'] || {}).draws > 1")
        page.locator("#pause").click()  # what is shown stays put while we compare
        with page.expect_download() as info:
            page.locator("[data-plot='webcsv/pressure'] .csv").click()
        download = info.value
        assert re.fullmatch(r"webcsv_pressure_\d{8}\d{6}Z\.csv", download.suggested_filename)
        lines = open(download.path()).read().splitlines()
        assert lines[0] == "time_utc,unix_time,pressure (hPa)"
        shown = page.evaluate("window.obsmesh.tail('webcsv/pressure', 1e6)")
        rows = [line.split(",") for line in lines[1:]]
        assert 250 <= len(rows) <= len(shown["t"]) + 1
        by_time = {round(t, 3): v for t, v in zip(shown["t"], shown["v"], strict=True)}
        for iso, unix, v in rows[-50:]:
            assert float(v) == pytest.approx(by_time[round(float(unix), 3)])
            stamp = calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
            assert iso.endswith("Z") and abs(stamp - float(unix)) < 1
    finally:
        stop_process(proc)
    assert page.console.errors() == []


def test_an_unknown_node_is_explained(router, page, tmp_path):
    proc = showcase(router, "webknown", tmp_path)
    try:
        page.goto(f"{router.http_url}#/node/webknwon")
        wait(page, "document.querySelector('.missing-node:not([hidden])') !== null")
        wait(page, "window.obsmesh.nodes.includes('webknown')")  # the note follows the directory
        note = page.locator(".missing-node").inner_text()
        assert "No node named “webknwon” is on the mesh" in note and "Did you mean" in note
        assert page.locator(".missing-node a[href='#/node/webknown']").count() >= 1
        body = page.locator("body").inner_text()
        assert "wamp.error" not in body and "no_such_procedure" not in body
        page.locator(".missing-node a[href='#/node/webknown']").first.click()
        wait(page, "Object.keys(window.obsmesh.plots).some(p => p.startsWith('webknown/'))")
    finally:
        stop_process(proc)
    assert page.console.errors() == []


def test_radar_fans_sit_on_a_map_and_echo_counts_come_from_history(router, browser, tmp_path):
    feed = spawn_feed(
        ["radar", "webgeo", "--codes", "sas,qzx", "--history-minutes", "6"],
        router.env(),
        tmp_path / "g.log",
    )
    try:
        for label, width in WIDTHS.items():
            page = new_page(browser, width)
            try:
                page.goto(f"{router.http_url}#/radars")
                wait(page, "(window.obsmesh.radar['webgeo/sas'] || {}).coast > 0")
                wait(page, "(window.obsmesh.radar['webgeo/qzx'] || {}).fanBeams >= 4")
                sas = page.evaluate("window.obsmesh.radar['webgeo/sas']")
                row = radar_row("sas")
                assert sas["mapped"] is True
                assert sas["site"] == {"lat": row.lat, "lon": row.lon, "boresight": row.boresight}
                assert sas["echoPoints"] >= 6  # the stored scans (get_data), not only live ones
                assert sas["echoSpan"] <= 15 * 60  # minutes of data on an axis of minutes, not 2 h
                qzx = page.evaluate("window.obsmesh.radar['webgeo/qzx']")
                assert qzx["mapped"] is False  # no position known: drawn relative to its boresight
                page.locator("[data-radar='webgeo/sas']").screenshot(
                    path=str(screenshot_dir() / f"radar-map-{label}.png")
                )
                screenshot(page, f"radars-map-{label}")
                assert page.console.errors() == []
            finally:
                page.context.close()
    finally:
        stop_process(feed)


def screenshot_dir():
    from tests.test_web_support import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
