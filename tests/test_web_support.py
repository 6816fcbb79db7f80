"""Support for the dashboard's browser tests and benchmark: Debian's Chromium
driven by Playwright, and nodes that publish what the radar, CO2 and
data-flow nodes publish, fast (with checks that they do).

The radar feed builds its beams and scans with the radar node's own product
code (`nodes.radar.synth` records through `products.beam_product` and
`ScanAccumulator`), the data-flow feed its board with `nodes.dataflow.products`;
the CO2 feed follows the co2 node's fields and status sources (fields.py,
node.py). Run as a process:

    python tests/test_web_support.py radar NAME --codes sas,pgr [--stale pgr]
    python tests/test_web_support.py co2 NAME --units u1,u2 [--silent u9]
    python tests/test_web_support.py dataflow NAME --radars sas,pgr
    python tests/test_web_support.py plots NAME --fields 20 --rate 100
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from twisted.internet import task  # noqa: E402

from nodes.base import DataNode, run_node  # noqa: E402
from nodes.dataflow.names import STAGES  # noqa: E402
from nodes.dataflow.products import StageProducts  # noqa: E402
from nodes.radar import products  # noqa: E402
from nodes.radar.radars import radar as radar_info  # noqa: E402
from nodes.radar.synth import RadarSynth  # noqa: E402
from obsmesh import config  # noqa: E402

BEAMS = 16
REPO = pathlib.Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless, with nothing that reaches out to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        raise RuntimeError(
            "Debian's chromium is not installed (make test installs it: apt-get install chromium)"
        )
    return path


def launch(playwright):
    """Chromium from Debian's package (never a browser Playwright downloads)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def web_ready() -> None:
    """The dashboard's npm packages must be installed (make setup runs npm ci)."""
    missing = [
        p
        for p in (
            "autobahn-browser/autobahn.min.js",
            "uplot/dist/uPlot.esm.js",
            "topojson-client/src/index.js",
            "world-atlas/land-50m.json",
        )
        if not (REPO / "consumers" / "web" / "node_modules" / p).exists()
    ]
    if missing:
        raise RuntimeError(
            f"consumers/web/node_modules lacks {missing}: run `make setup` (npm ci in consumers/web)"
        )


class Console:
    """Everything the page logs; errors are what the tests refuse."""

    # Chromium's own line when a WebSocket cannot connect (the router is down):
    # expected while a test restarts the router, and only then.
    NETWORK = re.compile(r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed")

    def __init__(self, page) -> None:
        self.messages: list[tuple[str, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))

    def errors(self, allow_network: bool = False) -> list[tuple[str, str]]:
        return [
            (kind, text)
            for kind, text in self.messages
            if kind in ("error", "pageerror") and not (allow_network and self.NETWORK.match(text))
        ]


def spawn_feed(args: list[str], env: dict, log: pathlib.Path) -> subprocess.Popen:
    """A feed node as its own process (`tests/test_web_support.py KIND NAME ...`),
    its name admitted as a principal first."""
    from tests.harness import admit

    admit(args[1])
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "test_web_support.py"), *args],
        env=env,
        cwd=str(REPO),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def screenshot(page, name: str) -> pathlib.Path:
    """The whole page as a PNG. Plots draw only while on screen, so the page is
    scrolled through first (each part waits two animation frames)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate(
        """async () => {
            const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            for (let y = 0; y < document.documentElement.scrollHeight; y += window.innerHeight / 2) {
                window.scrollTo(0, y);
                await frame();
                await new Promise((r) => setTimeout(r, 300));
            }
            window.scrollTo(0, 0);
            await frame();
        }"""
    )
    page.screenshot(path=str(path), full_page=True)
    return path


class RadarFeed(DataNode):
    """Radars sweeping 16 beams every `integration` s (radar time = now)."""

    kind = "superdarn"
    description = "radar feed (test): beams and scans as the superdarn node publishes them"

    def __init__(
        self,
        name: str,
        settings: dict,
        codes: list[str],
        stale: list[str],
        integration: float,
        garbage: bool = False,
        history_minutes: int = 60,
    ) -> None:
        self.garbage = garbage
        self.history_minutes = history_minutes
        self.codes = codes
        self.stale = set(stale)
        self.integration = integration
        self.synths = {
            c: RadarSynth(radar_info(c).stid if radar_info(c) else 100 + i, seed=i, beams=BEAMS)
            for i, c in enumerate(codes)
        }
        self.scans = products.ScanAccumulator()
        self.beam_no = 0
        self.sent: dict[str, int] = {c: 0 for c in codes}
        super().__init__(name, settings)
        self.ticker = task.LoopingCall(self.tick)

    def declare_fields(self) -> None:
        for c in self.codes:
            for what in ("total", "ionospheric", "ground"):
                self.declare(f"{c}.{what}", f"{c}.scan", description=f"{c}: {what} echoes per scan")

    def beam(self, code: str, bmnum: int, when: float) -> tuple[dict, list[dict]]:
        record = self.synths[code].record(bmnum, when, 1 if bmnum == 0 else 0)
        info = radar_info(code)
        beam = products.beam_product(record, code, info.as_dict() if info else None)
        return beam, self.scans.add(beam)

    def tick(self) -> None:
        now = time.time()
        b = self.beam_no % BEAMS
        self.beam_no += 1
        for code in self.codes:
            if code in self.stale and self.sent[code] >= BEAMS + 1:
                continue  # one scan, then silence
            beam, done = self.beam(code, b, now)
            self.publish(f"radar.{code}.beam", beam)
            self.sent[code] += 1
            for scan in done:
                self.publish(f"radar.{code}.scan", scan)
                self.append(
                    f"{code}.scan",
                    [scan["time"]],
                    {f"{code}.{k}": [float(scan[k])] for k in ("total", "ionospheric", "ground")},
                )
            if self.garbage:
                self.publish_garbage(code, beam)
            if code in self.stale and self.sent[code] >= BEAMS + 1:
                self.source(code, connected=True, stale=True, error="no record for 120 s")
            else:
                self.source(code, connected=True, stale=False, last_sample=now)

    def publish_garbage(self, code: str, beam: dict) -> None:
        """Payloads a broken or hostile publisher could send, beside the good ones."""
        n = self.beam_no
        junk = [
            "not a beam",
            None,
            [1, 2, 3],
            {"beam": -1},
            {**beam, "beam": 10**9},
            {**beam, "slist": [beam["nrang"] + 5], "v": [1.0]},
            {**beam, "v": beam["v"][:-1] + ["x", "y"]},
            {**beam, "nrang": 10**9},
            {**beam, "time": "yesterday"},
        ]
        self.publish(f"radar.{code}.beam", junk[n % len(junk)])
        self.publish(
            f"radar.{code}.scan", [{"time": None}, {"total": -5, "time": 1.0}, "scan", 7][n % 4]
        )
        # not retained: a retained event would make the router hold the topic, and the
        # base would then never hear (wamp.subscription.on_create) that the page subscribed
        self.publish(
            "live",
            [
                {"timeline": "x", "t": "soon", "data": []},
                {"data": {"sas.total": [1]}},
                {"timeline": 3, "t": [1, 2], "data": {"x": "abc"}},
                "live",
            ][n % 4],
            retain=False,
        )
        self.publish("radar.x.y.beam", beam)  # a topic no radar code can have

    async def start(self) -> None:
        # scan history (an hour by default), so echo counts have a past
        now = time.time()
        for code in self.codes:
            t = now - 60 * self.history_minutes + np.arange(self.history_minutes) * 60.0
            total = 400 + 120 * np.sin(t / 900)
            ground = 0.3 * total
            self.append(
                f"{code}.scan",
                t,
                {
                    f"{code}.total": total,
                    f"{code}.ground": ground,
                    f"{code}.ionospheric": total - ground,
                },
                live=False,
            )
        self.ticker.start(self.integration, now=False)

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


class Co2Feed(DataNode):
    """Units uploading a reading and pinging every `interval` s; silent units never do."""

    kind = "co2"
    description = "CO2 feed (test): units as the co2 node serves them"

    def __init__(
        self, name: str, settings: dict, units: list[str], silent: list[str], interval: float
    ) -> None:
        self.units = units
        self.silent = silent
        self.interval = interval
        self.k = 0
        super().__init__(name, settings)
        self.ticker = task.LoopingCall(self.tick)

    def declare_fields(self) -> None:
        for u in [*self.units, *self.silent]:
            self.declare(f"{u}.temperature", u, units="degC", description=f"{u}: temperature")
            self.declare(f"{u}.co2_mean", u, units="ppm", description=f"{u}: mean CO2")
            self.declare(f"{u}.rssi_dbm", f"{u}.ping", units="dBm", description=f"{u}: signal")

    def tick(self) -> None:
        now = time.time()
        self.k += 1
        for i, u in enumerate(self.units):
            co2 = 415.0 + 10 * i + math.sin(self.k / 5)
            self.append(u, [now], {f"{u}.co2_mean": [co2], f"{u}.temperature": [-5.0 + i]})
            self.append(f"{u}.ping", [now], {f"{u}.rssi_dbm": [-70.0 - 8 * i]})
            self.source(
                u,
                connected=True,
                stale=False,
                last_heard=now,
                last_ping=now,
                rssi_dbm=-70.0 - 8 * i,
                site_code=f"site{i}",
                nickname=f"unit {i}",
                last_sample=now,
            )

    async def start(self) -> None:
        now = time.time()
        self.source("endpoint", connected=True, url="http://127.0.0.1:0/")
        for u in self.silent:
            self.append(
                u, [now - 7200], {f"{u}.co2_mean": [399.0], f"{u}.temperature": [1.0]}, live=False
            )
            self.append(f"{u}.ping", [now - 3600], {f"{u}.rssi_dbm": [-101.0]}, live=False)
            self.source(
                u,
                connected=True,
                stale=False,
                last_heard=now - 3600,
                last_ping=now - 3600,
                rssi_dbm=-101.0,
            )
            self.source(u, connected=False, stale=True, error="silent for 3600 s (limit 900 s)")
        self.ticker.start(self.interval, now=True)

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


def stage_products(radar: str, stage: str, now: float, i: int) -> StageProducts:
    """A plausible radar x stage: every third stage of the second radar failed
    its last run; the last stage of every radar is stale."""
    stale = stage == STAGES[-1]
    failed = 2 if (i % 3 == 1 and radar.endswith("r")) else 0
    start = now - 600 - 97 * i if not stale else now - 4 * 3600
    return StageProducts(
        radar=radar,
        stage=stage,
        now=now,
        runs=12,
        last_start=start,
        last_end=start + 42.0,
        last_state="finished",
        last_files_ok=8,
        last_files_failed=failed,
        last_duration=42.0,
        last_files_old=0,
        since_last_run=now - start,
        files_ok=96,
        files_failed=failed,
        success_rate=96 / (96 + failed),
        run_success_rate=1.0 if not failed else 11 / 12,
        stale=stale,
        overdue=max(0.0, now - start - 9000) if stale else 0.0,
    )


class DataflowFeed(DataNode):
    kind = "dataflow"
    description = "data-flow feed (test): the board as the dataflow node serves it"

    def __init__(self, name: str, settings: dict, radars: list[str], recover: float = 0) -> None:
        self.radars = radars
        self.recover = recover  # seconds after which the stale stages run again
        super().__init__(name, settings)
        self.register_rpc("stage_products", self.stage_products)
        self.ticker = task.LoopingCall(self.tick)

    def info(self) -> dict:
        return {**super().info(), "radars": list(self.radars)}

    def declare_fields(self) -> None:
        for r in self.radars:
            for s in STAGES:
                for f in ("files_ok", "files_failed", "duration"):
                    self.declare(f"{r}.{s}.{f}", f"{r}.{s}")
                self.declare(f"{r}.{s}.state", f"{r}.{s}", type="string")

    def tick(self) -> None:
        now = time.time()
        r, s = self.radars[0], STAGES[0]
        self.append(
            f"{r}.{s}",
            [now],
            {
                f"{r}.{s}.files_ok": [8.0],
                f"{r}.{s}.files_failed": [0.0],
                f"{r}.{s}.duration": [30.0],
                f"{r}.{s}.state": ["finished"],
            },
        )
        self.source(
            f"{r}.{s}",
            stale=False,
            radar=r,
            stage=s,
            last_run=now - 30,
            last_state="finished",
            last_files_failed=0,
            last_sample=now,
        )

    async def start(self) -> None:
        now = time.time()
        for p in (stage_products(r, s, now, i) for r in self.radars for i, s in enumerate(STAGES)):
            self.source(f"{p.radar}.{p.stage}", stale=False, radar=p.radar, stage=p.stage)
            if p.stale:
                self.source(
                    f"{p.radar}.{p.stage}", stale=True, error=f"no {p.stage} run for {p.radar}"
                )
            if p.last_files_failed:
                self.event(
                    p.last_end,
                    f"{p.radar} {p.stage}: {p.last_files_failed} file(s) failed",
                    "Transfer failed: /data/x.rawacf.h5",
                    ["dataflow", p.radar, p.stage, "failure"],
                )
        self.ticker.start(2.0, now=True)
        if self.recover > 0:
            self.reactor.callLater(self.recover, self.stale_stages_run)

    def stale_stages_run(self) -> None:
        """The stages that were stale run again: their sources recover."""
        self.recovered = True
        for r in self.radars:
            self.source(f"{r}.{STAGES[-1]}", stale=False, error=None, last_run=time.time())

    def stage_products(self) -> list[dict]:
        now = time.time()
        rows = [
            stage_products(r, s, now, i).as_dict()
            for r in self.radars
            for i, s in enumerate(STAGES)
        ]
        if getattr(self, "recovered", False):
            for row in rows:
                if row["stale"]:
                    row.update(stale=False, last_start=now - 5, since_last_run=5.0, overdue=0.0)
        return rows

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


class PlotFeed(DataNode):
    """`fields` number fields sampled `rate` times a second, published in
    batches every live_interval (0.1 s: ten batches a second per field)."""

    kind = "feed"
    description = "plot feed (benchmark): many fields at a fixed rate"

    def __init__(self, name: str, settings: dict, fields: int, rate: float) -> None:
        self.n_fields = fields
        self.rate = rate
        self.next_k = None
        super().__init__(name, settings)
        self.ticker = task.LoopingCall(self.tick)

    def declare_fields(self) -> None:
        for i in range(self.n_fields):
            self.declare(f"f{i:02d}", "tl", units="V", description=f"sine {i}")

    def tick(self) -> None:
        due = math.floor(time.time() * self.rate)
        if self.next_k is None:
            self.next_k = due - int(600 * self.rate)  # ten minutes of history at start
        if due <= self.next_k:
            return
        k = np.arange(self.next_k, due)
        t = k / self.rate
        self.append(
            "tl",
            t,
            {f"f{i:02d}": np.sin(t / (3 + i)) + 0.1 * np.sin(37 * t) for i in range(self.n_fields)},
            live=self.ticker.running,
        )
        self.next_k = due

    async def start(self) -> None:
        self.tick()
        self.ticker.start(0.02, now=False)

    async def stop(self) -> None:
        if self.ticker.running:
            self.ticker.stop()


def _names(text: str) -> list[str]:
    return [x for x in (text or "").split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("radar", "co2", "dataflow", "plots"))
    p.add_argument("name")
    p.add_argument("--codes", default="sas,pgr")
    p.add_argument("--stale", default="")
    p.add_argument("--integration", type=float, default=0.25)
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--units", default="u1,u2,u3")
    p.add_argument("--silent", default="u9")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--radars", default="sas,pgr")
    p.add_argument("--recover", type=float, default=0.0)
    p.add_argument("--history-minutes", type=int, default=60)
    p.add_argument("--fields", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0)
    a = p.parse_args()
    settings = config.mesh()
    if a.kind == "radar":
        node = RadarFeed(
            a.name,
            settings,
            _names(a.codes),
            _names(a.stale),
            a.integration,
            a.garbage,
            a.history_minutes,
        )
    elif a.kind == "co2":
        node = Co2Feed(a.name, settings, _names(a.units), _names(a.silent), a.interval)
    elif a.kind == "dataflow":
        node = DataflowFeed(a.name, settings, _names(a.radars), a.recover)
    else:
        node = PlotFeed(a.name, settings, a.fields, a.rate)
    run_node(node)


# -- checks of the feeds themselves ---------------------------------------------


def _settings() -> dict:
    return config.mesh(environ={})


def test_radar_feed_beams_and_scans_are_the_radar_nodes_products():
    feed = RadarFeed("sd", _settings(), ["sas"], [], 0.25)
    now = 1_800_000_000.0
    scans = []
    for i in range(2 * BEAMS + 1):
        beam, done = feed.beam("sas", i % BEAMS, now + i)
        assert (
            beam["code"] == "sas"
            and beam["beam"] == i % BEAMS
            and len(beam["v"]) == len(beam["slist"])
        )
        scans += done
    assert len(scans) == 2
    assert (
        scans[0]["beams"] == BEAMS
        and scans[0]["total"] == scans[0]["ionospheric"] + scans[0]["ground"]
    )


def test_dataflow_feed_products_have_the_stage_products_keys():
    feed = DataflowFeed("df", _settings(), ["sas", "pgr"])
    rows = feed.stage_products()
    assert len(rows) == 2 * len(STAGES)
    assert set(rows[0]) == set(StageProducts.__slots__)
    assert sum(r["stale"] for r in rows) == 2 and any(r["last_files_failed"] for r in rows)


if __name__ == "__main__":
    main()
