"""sisock's own data nodes work unchanged: a node written as sisock writes them
(tests/sisock_node.py: an ApplicationSession, no obsmesh import, WAMP-CRA over
the public WebSocket, prefix `org.simonsobservatory`) with the secret its
installation already had, on a router that keeps anonymous browsers too.

In the order an operator and users meet it: the operator admits the node with
its existing secret; the node is listed; `obsmesh get`, the Grafana bridge and
the browser's client read it; a router restart lets it come back when it
reconnects; SIGKILL removes it from the hub."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time

import pytest
import pytest_twisted
from playwright.sync_api import sync_playwright
from twisted.internet import defer, threads

from tests.harness import PYTHON, REPO, Router, connect, stop_process, wait_until
from tests.sisock_node import pressure, temperature
from tests.test_grafana import iso, post, start_bridge, stop_bridge
from tests.test_web_support import launch, web_ready

PREFIX = "org.simonsobservatory"
NAME = "sisock_weather"
SECRET = "Q5#x4%HCmgTsS!Pj-an-installation's-own"


def obsmesh(*args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "obsmesh", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def start_node(router: Router, secret_file, log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "tests/sisock_node.py",
            router.ws_url,
            router.realm,
            NAME,
            NAME,
            str(secret_file),
        ],
        cwd=REPO,
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


async def listed(anonymous) -> list[str]:
    try:
        return [n["name"] for n in await anonymous.call(f"{PREFIX}.consumer.get_data_node")]
    except Exception:  # the router is restarting
        return []


def read_in_browser(router: Router) -> dict:
    """The dashboard, anonymous, plots the node's temperature from its history."""
    web_ready()
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.goto(
                f"{router.http_url}?prefix={PREFIX}#/node/{NAME}?fields=temperature&range=900"
            )
            page.wait_for_function(
                f"window.obsmesh && window.obsmesh.nodes.includes('{NAME}')", timeout=30_000
            )
            plot = f"window.obsmesh.plots['{NAME}/temperature']"
            page.wait_for_function(f"{plot} && {plot}.historyPoints > 0", timeout=30_000)
            return {
                "connection": page.evaluate("window.obsmesh.connection.state"),
                "tail": page.evaluate(f"window.obsmesh.tail('{NAME}/temperature', 1000)"),
            }
        finally:
            browser.close()


@pytest.fixture
def bridges():
    started: list = []
    yield started
    for bridge, port in started:
        pytest_twisted.blockon(defer.ensureDeferred(stop_bridge(bridge, port)))


@pytest.fixture
def sisock_router():
    r = Router(prefix=PREFIX)
    r.start()
    yield r
    r.close()


@pytest_twisted.ensureDeferred
async def test_a_sisock_node_works_unchanged(sisock_router, tmp_path, bridges):
    router = sisock_router
    env = {**router.env(), "OBSMESH_PREFIX": PREFIX}
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    # The operator keeps the secret the sisock installation already has.
    added = obsmesh(
        "secrets", "add", NAME, "--role", "node", "--secret-file", "-", env=env, stdin=SECRET
    )
    assert added.returncode == 0, added.stderr
    node = start_node(router, secret_file, tmp_path / "node.log")
    anonymous = await connect(router.ws_url, serializer="json")
    try:
        await wait_until(lambda: _has(anonymous), 60, "the sisock node to be listed")
        entry = [
            n for n in await anonymous.call(f"{PREFIX}.consumer.get_data_node") if n["name"] == NAME
        ]
        assert entry == [{"name": NAME, "description": "A sisock-style weather archive."}]

        # `obsmesh get`: the client asks for lists, as the node advertises nothing
        got = obsmesh("get", NAME, "temperature", "pressure", "--since", "1h", env=env)
        assert got.returncode == 0, got.stderr
        rows = list(csv.reader(io.StringIO(got.stdout)))
        assert rows[0] == ["time", "timeline", "temperature", "pressure"]
        assert len(rows) > 300  # an hour of samples every 10 s
        for t, timeline, temp, pres in rows[1:]:
            assert timeline == "weather"
            assert float(temp) == pytest.approx(temperature(float(t)))
            assert float(pres) == pytest.approx(pressure(float(t)))
        strided = obsmesh("get", NAME, "temperature", "--since", "1h", "--stride", "60", env=env)
        times = [float(r[0]) for r in list(csv.reader(io.StringIO(strided.stdout)))[1:]]
        assert len(times) > 50 and min(b - a for a, b in zip(times, times[1:], strict=False)) >= 60

        # the Grafana bridge, with a bad target beside the good one
        bridge, port, url = await _bridge(router, bridges)
        end = time.time()
        body = {
            "range": {"from": iso(end - 3600), "to": iso(end)},
            "maxDataPoints": 10_000,
            "targets": [
                {"target": f"{NAME}::temperature", "refId": "A"},
                {"target": f"{NAME}::humidity", "refId": "B"},
            ],
        }
        code, out = await post(url + "/query", body)
        assert code == 200
        good, bad = out
        assert good["refId"] == "A" and len(good["datapoints"]) > 300
        for value, ms in good["datapoints"]:
            assert value == pytest.approx(temperature(ms / 1000.0))
        assert bad["refId"] == "B" and bad["datapoints"] == []
        assert bad["meta"]["notices"][0]["severity"] == "error"
        assert (
            NAME in bad["meta"]["notices"][0]["text"]
            and "humidity" in bad["meta"]["notices"][0]["text"]
        )

        # the browser's client (the dashboard), anonymous beside the node's WAMP-CRA
        seen = await threads.deferToThread(read_in_browser, router)
        assert seen["connection"] == "connected"
        tail = seen["tail"]
        assert len(tail["v"]) > 50
        for t, v in zip(tail["t"], tail["v"], strict=True):
            assert v == pytest.approx(temperature(t))

        # a router restart: the node comes back when it reconnects (sisock re-adds on join)
        anonymous.leave()
        router.restart()
        anonymous = await connect(router.ws_url, serializer="json")
        await wait_until(lambda: _has(anonymous), 90, "the sisock node to come back")

        # SIGKILL: the hub removes it (its session left)
        stop_process(node, signal.SIGKILL)
        await wait_until(lambda: _gone(anonymous), 30, "the killed node to leave the listing")
    finally:
        stop_process(node, signal.SIGKILL)
        if anonymous.is_attached():
            anonymous.leave()
    assert SECRET not in router.log.read_text()
    assert SECRET not in (tmp_path / "node.log").read_text()
    assert SECRET not in obsmesh("secrets", "list", env=env).stdout


async def _bridge(router, bridges):
    bridge, port, url = await start_bridge(router)
    bridges.append((bridge, port))
    await wait_until(lambda: NAME in bridge.catalog.nodes, 30, "the bridge to see the node")
    return bridge, port, url


async def _has(anonymous) -> bool:
    return NAME in await listed(anonymous)


async def _gone(anonymous) -> bool:
    return NAME not in await listed(anonymous)
