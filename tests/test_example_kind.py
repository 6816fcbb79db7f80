"""The example kind (examples/tidegauge): a package of its own outside nodes/,
installed by the test setup (`make test`) through its entry point. Listed by
`obsmesh kinds`, run by `obsmesh up`, served by the Grafana bridge and shown
by the dashboard, with no edit anywhere else: one package plus its
entry-point line is all a new kind touches."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from obsmesh import kinds
from tests.harness import REPO, Up, free_port_range, wait_for
from tests.test_web_support import Console, launch, screenshot, web_ready

pytestmark = [pytest.mark.router, pytest.mark.slow]  # its own processes; obsmesh up

KIND = "tidegauge"
PACKAGE = REPO / "examples" / "tidegauge"
# Where the example may be named besides its own package: this test, the test setup
# that installs it (Makefile) and prose (READMEs).
MAY_NAME_IT = {"Makefile", "tests/test_example_kind.py"}


def _installed() -> kinds.Registered:
    entry = kinds.registry().entries.get(KIND)
    assert entry is not None, (
        "the example kind is not installed: `make test` installs it "
        "(pip install --no-deps -e examples/tidegauge)"
    )
    return entry


def test_the_example_is_its_own_package_found_through_its_entry_point():
    entry = _installed()
    assert entry.distribution == "obsmesh-example-tidegauge 0.1.0"
    assert entry.entry_point == "obsmesh_tidegauge.kind:KIND"
    assert pathlib.Path(entry.location) == PACKAGE / "obsmesh_tidegauge"
    assert 'tidegauge = "obsmesh_tidegauge.kind:KIND"' in (PACKAGE / "pyproject.toml").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "obsmesh", "kinds", KIND],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{KIND} ") and f"from {entry.source}" in done.stdout


def test_no_file_outside_the_package_names_it():
    tracked = subprocess.run(
        ["git", "grep", "-l", "-i", KIND], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    assert tracked, "git grep found not even the example itself"
    elsewhere = [
        p
        for p in tracked
        if not p.startswith("examples/tidegauge/")
        and p not in MAY_NAME_IT
        and not p.endswith(".md")
    ]
    assert elsewhere == [], f"files outside the example's package that name it: {elsewhere}"
    assert not (REPO / "nodes" / KIND).exists()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """`obsmesh up tidegauge`: the router, the bridge and the example's demo."""
    _installed()
    up = Up(tmp_path_factory.mktemp("example"), free_port_range(64), KIND).start()
    try:
        up.wait_text("obsmesh is up:")
        yield up
    finally:
        up.close()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_obsmesh_up_runs_it_and_the_bridge_serves_it(mesh):
    assert KIND in mesh.listed()
    assert f"  {KIND} " in mesh.text()  # in the banner
    now = time.time()
    body = json.dumps(
        {
            "range": {"from": _iso(now - 7200), "to": _iso(now + 60)},
            "maxDataPoints": 500,
            "targets": [{"target": f"{KIND}::level"}, {"target": f"{KIND}::surge"}],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{mesh.port_base + 2}/query",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    series: list = []

    def answered() -> bool:
        with urllib.request.urlopen(request, timeout=10) as r:
            series[:] = json.loads(r.read())
        return len(series) == 2 and all(len(s["datapoints"]) > 100 for s in series)

    wait_for(answered, 60, "the bridge to serve the example's history", interval=0.5)
    level = [v for v, _ in series[0]["datapoints"]]
    assert all(0.0 < v < 5.5 for v in level)  # mean 2.5 m, tide within +-2 m, a small surge
    status = mesh.obsmesh("status")
    assert status.returncode == 0 and f"\n{KIND} " in status.stdout, status.stdout


def test_the_dashboard_lists_it_and_plots_it_live(mesh):
    web_ready()
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.console = Console(page)
            page.goto(f"http://127.0.0.1:{mesh.port_base}/#/node/{KIND}?fields=level&range=900")
            page.wait_for_function(
                f"window.obsmesh && window.obsmesh.nodes.includes('{KIND}')", timeout=30_000
            )
            assert page.locator(f"#directory li[data-node='{KIND}']").count() == 1
            page.wait_for_function(
                f"(window.obsmesh.plots['{KIND}/level'] || {{}}).livePoints >= 3", timeout=30_000
            )
            stats = page.evaluate(f"window.obsmesh.plots['{KIND}/level']")
            assert stats["historyPoints"] > 100 and stats["error"] is None
            screenshot(page, "example-kind")
            assert page.console.errors() == []
        finally:
            browser.close()
