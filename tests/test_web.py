"""The dashboard in a real browser (Debian's headless Chromium via Playwright)
against a real router and real node processes. Assertions read the data the
page received (window.obsmesh), never pixels; screenshots of every view go to
test-artifacts/screenshots/ for review."""

from __future__ import annotations

import math
import time

import pytest
from playwright.sync_api import sync_playwright

from tests.harness import PYTHON, REPO, stop_process
from tests.test_web_support import Console, launch, screenshot, spawn_feed, web_ready

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    web_ready()
    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = context.new_page()
    pg.console = Console(pg)
    yield pg
    context.close()


def probe(router, name, tmp_path, base, dt=0.05, history=6000):
    """tests/probe_process.py: sample k at base + k dt with x = k, live from now on."""
    return _popen(
        [
            PYTHON,
            "tests/probe_process.py",
            name,
            "--base",
            str(base),
            "--dt",
            str(dt),
            "--history",
            str(history),
            "--live",
        ],
        router.env(),
        tmp_path / f"{name}.log",
    )


def _popen(cmd, env, log):
    import subprocess

    return subprocess.Popen(
        cmd,
        env=env,
        cwd=str(REPO),
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait(page, expression, arg=None):
    page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


def listed(page):
    return page.evaluate("window.obsmesh.nodes")


def test_page_lists_the_running_nodes_and_follows_them(router, page, tmp_path):
    a = probe(router, "webdir-a", tmp_path, time.time() - 60, history=100)
    b = None
    try:
        page.goto(router.http_url)
        wait(page, "window.obsmesh && window.obsmesh.nodes.includes('webdir-a')")
        assert page.locator("#directory li[data-node='webdir-a']").count() == 1
        assert page.locator("#node-cards [data-node='webdir-a']").count() == 1
        assert page.evaluate("window.obsmesh.connection.state") == "connected"
        assert page.locator("#connection").get_attribute("data-state") == "connected"
        b = probe(router, "webdir-b", tmp_path, time.time() - 60, history=100)
        wait(page, "window.obsmesh.nodes.includes('webdir-b')")  # added live, no reload
        assert page.evaluate("window.obsmesh.connection.opens") == 1
        stop_process(b)
        wait(page, "!window.obsmesh.nodes.includes('webdir-b')")  # subtracted live
        assert "webdir-a" in listed(page)
        assert page.locator("#directory li[data-node='webdir-b']").count() == 0
        screenshot(page, "nodes")
    finally:
        stop_process(a)
        if b is not None:
            stop_process(b)
    assert page.console.errors() == []


def test_plot_loads_history_then_appends_live_points(router, page, tmp_path):
    base = time.time() - 300
    dt = 0.05
    proc = probe(router, "webplot", tmp_path, base, dt=dt, history=6000)
    try:
        page.goto(f"{router.http_url}#/node/webplot?fields=x&range=900")
        wait(page, "window.obsmesh.nodes.includes('webplot')")
        wait(
            page,
            "window.obsmesh.plots['webplot/x'] && window.obsmesh.plots['webplot/x'].loads >= 1",
        )
        # batches as they come (a node slowed at start may send its first 2 s in one)
        wait(
            page,
            "window.obsmesh.plots['webplot/x'].livePoints >= 40"
            " && window.obsmesh.plots['webplot/x'].liveBatches >= 2",
        )
        stats = page.evaluate("window.obsmesh.plots['webplot/x']")
        assert stats["historyPoints"] > 250  # 300 s of history in bins of 1 s
        assert stats["liveBatches"] >= 2 and stats["error"] is None
        tail = page.evaluate("window.obsmesh.tail('webplot/x', 400)")
        assert tail["stride"] == 1  # 15 min in bins of 1 s
        # x = k at t = base + k dt: a bin's mean of a straight line, stamped at the bin's
        # centre, is within half a bin of the line there
        half_bin = tail["stride"] / dt / 2
        for t, v in zip(tail["t"], tail["v"], strict=True):
            assert abs(v - (t - base) / dt) <= half_bin + 1e-6
            assert math.isclose(t / tail["stride"] % 1, 0.5, abs_tol=1e-6)  # a bin's centre
        assert tail["t"][-1] > time.time() - 5  # reaches the present: live points appended
        assert all(b > a for a, b in zip(tail["t"], tail["t"][1:], strict=False))

        # the fields table filters by name or description
        page.fill(".filter", "a number")
        assert page.locator("#fields tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.field)"
        ) == ["x"]
        page.fill(".filter", "")
        assert page.locator("#fields tbody tr").count() == 4

        # the fields table offers y; plotting it loads its history and follows it live
        page.locator("#fields tr[data-field='y'] button").click()
        wait(
            page,
            "window.obsmesh.plots['webplot/y'] && window.obsmesh.plots['webplot/y'].livePoints >= 20",
        )
        assert page.evaluate("window.obsmesh.plots['webplot/y'].historyPoints") > 250

        # time range: 5 min reloads with finer bins and holds only that span
        loads = page.evaluate("window.obsmesh.plots['webplot/x'].loads")
        page.locator("button[data-range='300']").click()
        wait(
            page,
            f"window.obsmesh.tail('webplot/x').stride === 0.2 && window.obsmesh.plots['webplot/x'].loads > {loads}",
        )
        drawn = page.evaluate("window.obsmesh.plots['webplot/x'].draws")
        wait(page, f"window.obsmesh.plots['webplot/x'].draws > {drawn}")
        span = page.evaluate(
            "(() => { const t = window.obsmesh.tail('webplot/x', 1e6); return t.t[t.t.length-1] - t.first; })()"
        )
        assert 250 < span <= 302
        assert "range=300" in page.evaluate("location.hash")

        # pause: no redraw while paused, yet live points keep arriving; resume redraws
        page.locator("#pause").click()
        drawn = page.evaluate("window.obsmesh.plots['webplot/x'].draws")
        received = page.evaluate("window.obsmesh.plots['webplot/x'].livePoints")
        wait(page, f"window.obsmesh.plots['webplot/x'].livePoints >= {received + 20}")
        assert page.evaluate("window.obsmesh.plots['webplot/x'].draws") == drawn
        assert page.evaluate("window.obsmesh.tail('webplot/x').paused") is True
        page.locator("#pause").click()
        wait(page, f"window.obsmesh.plots['webplot/x'].draws > {drawn}")
        screenshot(page, "node-plots")
    finally:
        stop_process(proc)
    assert page.console.errors() == []


def test_page_recovers_after_the_router_restarts(own_router, page, tmp_path):
    proc = probe(own_router, "webrestart", tmp_path, time.time() - 60, history=1000)
    try:
        page.goto(f"{own_router.http_url}#/node/webrestart?fields=x")
        wait(
            page,
            "window.obsmesh.plots['webrestart/x'] && window.obsmesh.plots['webrestart/x'].livePoints >= 20",
        )
        own_router.stop()
        wait(
            page,
            "window.obsmesh.connection.state === 'reconnecting' && window.obsmesh.connection.closes === 1",
        )
        assert page.locator("#connection").get_attribute("data-state") == "reconnecting"
        screenshot(page, "reconnecting")
        before = page.evaluate("window.obsmesh.plots['webrestart/x'].livePoints")
        loads = page.evaluate("window.obsmesh.plots['webrestart/x'].loads")
        own_router.start()
        wait(
            page,
            "window.obsmesh.connection.state === 'connected' && window.obsmesh.connection.opens === 2",
        )
        wait(page, "window.obsmesh.nodes.includes('webrestart')")  # the node re-announced itself
        wait(
            page, f"window.obsmesh.plots['webrestart/x'].loads > {loads}"
        )  # history reloaded: no gap
        wait(
            page, f"window.obsmesh.plots['webrestart/x'].livePoints >= {before + 20}"
        )  # live again
        tail = page.evaluate("window.obsmesh.tail('webrestart/x', 1e6)")
        gaps = [b - a for a, b in zip(tail["t"], tail["t"][1:], strict=False)]
        assert max(gaps) < 3  # the outage is filled from history (bins of 1 s)
        assert page.locator("#connection").get_attribute("data-state") == "connected"
    finally:
        stop_process(proc)
    # Chromium logs each refused WebSocket connection while the router is down; nothing else.
    assert page.console.errors(allow_network=True) == []


def test_radar_co2_and_dataflow_views_light_up_with_their_nodes(router, page, tmp_path):
    page.goto(f"{router.http_url}#/radars")
    wait(page, "window.obsmesh.connection.state === 'connected'")
    for view in ("radars", "co2", "dataflow"):  # no such node yet: dimmed, empty
        assert "lit" not in (
            page.locator(f".nav-link[data-view='{view}']").get_attribute("class") or ""
        )
    assert page.locator("#view .empty").count() == 1

    feeds = [
        spawn_feed(
            ["radar", "websd", "--codes", "sas,pgr,kod", "--stale", "kod"],
            router.env(),
            tmp_path / "sd.log",
        ),
        spawn_feed(
            ["co2", "webco2", "--units", "u1,u2,u3", "--silent", "u9"],
            router.env(),
            tmp_path / "co2.log",
        ),
        spawn_feed(["dataflow", "webdf", "--radars", "sas,pgr"], router.env(), tmp_path / "df.log"),
    ]
    try:
        wait(page, "['websd', 'webco2', 'webdf'].every(n => window.obsmesh.nodes.includes(n))")
        for view in ("radars", "co2", "dataflow"):  # lit at the next render of the header
            wait(
                page,
                f"document.querySelector(\".nav-link[data-view='{view}']\").classList.contains('lit')",
            )
            assert "lit" in page.locator(f".nav-link[data-view='{view}']").get_attribute("class")

        # radars: beams fill the fans, scans and their history the echo counts
        wait(page, "(window.obsmesh.radar['websd/sas'] || {}).fanBeams >= 16")
        wait(page, "(window.obsmesh.radar['websd/pgr'] || {}).scans >= 1")
        wait(page, "(window.obsmesh.radar['websd/kod'] || {}).state === 'stale'")
        # an hour of stored scan history, then live scans (a history call that failed
        # under load is made again at the view's next status refresh)
        wait(page, "(window.obsmesh.radar['websd/sas'] || {}).scanPoints >= 60")
        sas = page.evaluate("window.obsmesh.radar['websd/sas']")
        assert sas["state"] == "connected" and sas["echoes"] > 0 and sas["rejected"] == 0
        assert sas["scanPoints"] >= 60
        wait(
            page, "document.querySelector(\"[data-radar='websd/kod']\")?.dataset.state === 'stale'"
        )
        assert page.locator("[data-radar='websd/kod']").get_attribute("data-state") == "stale"
        screenshot(page, "radars")

        page.locator(".nav-link[data-view='co2']").click()
        wait(
            page,
            "(window.obsmesh.co2['webco2'] || {}).units === 4 && window.obsmesh.co2['webco2'].liveRows > 0",
        )
        co2 = {r["id"]: r for r in page.evaluate("window.obsmesh.co2['webco2'].rows")}
        assert [u for u, r in co2.items() if r["silent"]] == ["u9"]
        assert (
            co2["u9"]["co2"] == 399.0 and co2["u9"]["rssi"] == -101.0
        )  # its last reading, from history
        assert 413 < co2["u1"]["co2"] < 417 and co2["u2"]["rssi"] == -78.0
        assert page.locator("tr.silent[data-unit='u9']").count() == 1
        screenshot(page, "co2")

        page.locator(".nav-link[data-view='dataflow']").click()
        wait(page, "(window.obsmesh.dataflow['webdf'] || {}).cells === 12")
        df = page.evaluate("window.obsmesh.dataflow['webdf']")
        assert df["radars"] == ["pgr", "sas"] and df["stages"][0] == "rsync_to_nas"
        assert df["stale"] == 2 and df["failing"] == 2 and df["failures"] >= 2
        assert page.locator("#board-webdf td.cell.failed").count() == 2
        screenshot(page, "dataflow")

        page.locator(".nav-link[href='#/']").click()
        wait(page, "document.querySelectorAll('#node-cards .node-card').length >= 3")
        screenshot(page, "home")

        page.locator(".nav-link[data-view='radars']").click()
        stop_process(feeds[0])  # the radar node leaves: its view goes dark again
        wait(page, "!window.obsmesh.nodes.includes('websd')")
        wait(page, "document.querySelector('#view .empty.no-node') !== null")
        assert "lit" not in page.locator(".nav-link[data-view='radars']").get_attribute("class")
    finally:
        for f in feeds:
            stop_process(f)
    assert page.console.errors() == []


def test_malformed_payloads_are_ignored_without_errors(router, page, tmp_path):
    feed = spawn_feed(
        ["radar", "webjunk", "--codes", "sas", "--garbage"], router.env(), tmp_path / "junk.log"
    )
    try:
        page.goto(f"{router.http_url}#/radars")
        wait(page, "(window.obsmesh.radar['webjunk/sas'] || {}).rejected >= 8")
        wait(page, "window.obsmesh.radar['webjunk/sas'].fanBeams >= 8")
        assert set(page.evaluate("Object.keys(window.obsmesh.radar)")) >= {"webjunk/sas"}
        assert not any(
            k.startswith("webjunk/x") for k in page.evaluate("Object.keys(window.obsmesh.radar)")
        )
        page.goto(
            f"{router.http_url}#/node/webjunk?fields=sas.total&range=3600"
        )  # junk on .live too
        wait(page, "(window.obsmesh.plots['webjunk/sas.total'] || {}).loads >= 1")
        assert (
            page.evaluate("window.obsmesh.plots['webjunk/sas.total'].historyPoints") >= 59
        )  # an hour, one a minute
        wait(
            page, "window.obsmesh.plots['webjunk/sas.total'].taken >= 1"
        )  # and the good live scans
        assert page.evaluate("window.obsmesh.errors") == []
    finally:
        stop_process(feed)
    assert page.console.errors() == []
