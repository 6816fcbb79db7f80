"""The superdarn node through a real router, fed by simulated radar sites.

Two sites run in the test's reactor (so the test knows every record it sent
and can write garbage into the stream); the node and the router are real
processes; a consumer session checks what the node publishes and serves.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest_twisted
from twisted.internet import reactor

from nodes.radar import radars, synth
from nodes.superdarn import simulator
from nodes.superdarn.framing import HEADER, MAGIC, frame
from tests.harness import connect, free_port, spawn, stop_process, wait_until

NODE = "sdtest"
SPEED = 40.0  # a 16-beam scan every 1.5 s
MAX_PAYLOAD = 65536
SCANS_WANTED = 3


class Site:
    """A simulated radar site in this process: records every record it sends."""

    def __init__(self, code: str, scan_sign: int = 1, seed: int = 1) -> None:
        info = radars.radar(code)
        gen = synth.RadarSynth(
            info.stid,
            seed=seed,
            scan_sign=scan_sign,
            sounding_every=2,
            camping_every=3,
            boresight=info.boresight,
        )
        gen.model.quiet_beam_chance = 0.3  # plenty of zero-echo beams in a few scans
        self.code = code
        self.server = simulator.RadarServer(
            simulator.synth_schedule(gen, time.time()), reactor, speed=SPEED
        )
        self.sent: list[dict] = []
        self.server.on_sent = self._sent
        self.after_send = None
        self.port = free_port()
        self.listening = None
        self.listen()

    def _sent(self, record: dict, clients: int) -> None:
        if clients:  # (none while the site is down)
            self.sent.append(record)
        if self.after_send is not None:
            self.after_send(self)

    def listen(self) -> None:
        self.listening = reactor.listenTCP(self.port, self.server, interface="127.0.0.1")

    async def kill(self) -> None:
        """As a site going down: no more listening, connections reset."""
        await self.listening.stopListening()
        for client in list(self.server.clients):
            client.transport.abortConnection()

    def write_raw(self, data: bytes) -> None:
        for client in self.server.clients:
            client.transport.write(data)


def record_time(r: dict) -> float:
    """Radar time computed here from the time fields (not with the node's code)."""
    moment = dt.datetime(
        r["time.yr"],
        r["time.mo"],
        r["time.dy"],
        r["time.hr"],
        r["time.mt"],
        r["time.sc"],
        tzinfo=dt.UTC,
    )
    return moment.timestamp() + r["time.us"] / 1e6


def hand_scans(records: list[dict]) -> list[dict]:
    """Complete scans of a record sequence: a scan starts at scan = +1 or -1,
    takes the following scan = 0 beams (zero-echo ones too) and ends where the
    next starts; camping and sounding records are not part of it."""
    scans, current = [], None
    for r in records:
        n = len(r["slist"]) if "slist" in r else 0
        ground = int(sum(r["gflg"])) if n else 0
        if r["scan"] in (1, -1):
            if current is not None:
                scans.append(current)
            current = {
                "time": record_time(r),
                "beams": 0,
                "total": 0,
                "ground": 0,
                "zero_echo_beams": 0,
            }
        elif r["scan"] != 0 or current is None:
            continue
        current["beams"] += 1
        current["total"] += n
        current["ground"] += ground
        current["zero_echo_beams"] += n == 0
    for s in scans:
        s["ionospheric"] = s["total"] - s["ground"]
        s["mean_total"] = s["total"] / s["beams"]
    return scans


def config_file(tmp_path, sites: list[Site] | dict) -> str:
    entries = sites if isinstance(sites, dict) else {s.code: f"127.0.0.1:{s.port}" for s in sites}
    radar_lines = ", ".join(
        f'{{code = "{c}", host = "{a.rsplit(":", 1)[0]}", port = {a.rsplit(":", 1)[1]}}}'
        for c, a in entries.items()
    )
    path = tmp_path / "sd.toml"
    path.write_text(
        "[superdarn]\n"
        f"radars = [{radar_lines}]\n"
        "stale_after = 1.0\n"
        f"max_payload = {MAX_PAYLOAD}\n"
        "backoff_initial = 0.2\n"
        "backoff_max = 1.0\n"
        f'echo_db = "{tmp_path / "echoes.sqlite"}"\n'
    )
    return str(path)


async def _listed(session, name):
    return name in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


def uri(suffix: str) -> str:
    return f"obsmesh.consumer.{NODE}.{suffix}"


@pytest_twisted.ensureDeferred
async def test_two_radars_every_beam_in_order_scans_history_garbage_stale_and_restart(
    router, tmp_path
):
    sas, pgr = Site("sas", scan_sign=1, seed=3), Site("pgr", scan_sign=-1, seed=4)
    proc = spawn(
        ["node", "superdarn", "--name", NODE, "--config", config_file(tmp_path, [sas, pgr])],
        router.env(),
        tmp_path / "node.log",
    )
    s = await connect(router.backend_url)
    beams = {"sas": [], "pgr": []}
    scans = {"sas": [], "pgr": []}
    statuses: list[dict] = []
    try:
        for code in beams:
            await s.subscribe(beams[code].append, uri(f"radar.{code}.beam"))
            await s.subscribe(scans[code].append, uri(f"radar.{code}.scan"))
        await s.subscribe(statuses.append, uri("status"))
        await wait_until(lambda: _listed(s, NODE), 30, "the node listed by the hub")
        await wait_until(
            lambda: sas.server.clients and pgr.server.clients, 20, "the node connected to both"
        )

        # Into sas's stream, after its 10th record: bytes that are no frame, a
        # frame whose payload is no DMAP record, and a frame over the size limit.
        def garbage(site: Site) -> None:
            if len(site.sent) == 10:
                site.write_raw(bytes(range(0x4A, 0xFF)) * 3)
                site.write_raw(frame(b"\x01\x00\x01\x00" + b"not a record" * 20))
                site.write_raw(
                    HEADER.pack(MAGIC, MAX_PAYLOAD + 40_000) + b"\x00" * (MAX_PAYLOAD + 40_000)
                )

        sas.after_send = garbage
        sas.server.start()
        pgr.server.start()

        def enough() -> bool:
            return all(len(hand_scans(site.sent)) >= SCANS_WANTED for site in (sas, pgr))

        await wait_until(enough, 60, f"{SCANS_WANTED} complete scans sent by each radar")
        sas.server.stop()
        pgr.server.stop()
        silent_since = time.time()

        # Every beam of both radars, in order, nothing lost after the garbage.
        for site in (sas, pgr):
            assert (
                site.server.sent == site.server.deliveries == len(site.sent)
            )  # all went to the node
            await wait_until(
                lambda site=site: len(beams[site.code]) >= len(site.sent),
                20,
                f"every beam of {site.code}",
            )
            got = [
                (round(b["time"], 6), b["beam"], b["scan"], len(b["slist"]))
                for b in beams[site.code]
            ]
            want = [
                (round(record_time(r), 6), r["bmnum"], r["scan"], len(r.get("slist", [])))
                for r in site.sent
            ]
            assert got == want
            assert all(
                b["code"] == site.code and b["name"] == radars.radar(site.code).name
                for b in beams[site.code]
            )
        status = await s.call(uri("get_status"))
        client = status["radars"]["sas"]
        assert (
            client["frames_oversize"] == 1
            and client["bad_records"] == 1
            and client["frames_resyncs"] >= 1
        )
        assert status["sources"]["sas"]["beams"] == len(sas.sent)

        # Scan products and history equal a hand computation, zero-echo beams included.
        for site in (sas, pgr):
            want = hand_scans(site.sent)
            await wait_until(
                lambda site=site, want=want: len(scans[site.code]) >= len(want),
                10,
                f"the scans of {site.code}",
            )
            got = {round(x["time"], 6): x for x in scans[site.code] if x["complete"]}
            assert sum(w["zero_echo_beams"] for w in want) > 0
            for w in want:
                x = got[round(w["time"], 6)]
                assert (x["beams"], x["total"], x["ionospheric"], x["ground"]) == (
                    w["beams"],
                    w["total"],
                    w["ionospheric"],
                    w["ground"],
                )
                assert abs(x["mean_total"] - w["mean_total"]) < 1e-12
            t0, t1 = want[0]["time"], want[-1]["time"] + 1e-3
            fields = [
                f"{site.code}.scan.beams",
                f"{site.code}.scan.total",
                f"{site.code}.scan.ground",
                f"{site.code}.scan.mean_total",
            ]
            hist = await s.call(uri("get_data"), fields, t0, t1)
            assert hist["timeline"][f"{site.code}.scan"]["t"] == [w["time"] for w in want]
            assert hist["data"][fields[0]] == [w["beams"] for w in want]
            assert hist["data"][fields[1]] == [w["total"] for w in want]
            assert hist["data"][fields[2]] == [w["ground"] for w in want]
            assert hist["data"][fields[3]] == [w["mean_total"] for w in want]
            per_beam = await s.call(
                uri("get_data"),
                [f"{site.code}.echoes"],
                record_time(site.sent[0]),
                record_time(site.sent[-1]) + 1e-3,
            )
            assert per_beam["data"][f"{site.code}.echoes"] == [
                len(r.get("slist", [])) for r in site.sent
            ]

        # The echo database answers like the old /echoes, per radar.
        want = hand_scans(sas.sent)
        rows = await wait_until(
            lambda: _echo_rows(s, want[0]["time"], want[-1]["time"] + 1e-3, len(want)),
            10,
            "the echo counts in SQLite",
        )
        assert [(r["time"], r["total"], r["ground"], r["beams"]) for r in rows] == [
            (w["time"], w["total"], w["ground"], w["beams"]) for w in want
        ]

        # A silent radar is published stale, and its open scan is finished as incomplete.
        await wait_until(
            lambda: any(
                e["source"] == "pgr" and e.get("stale") and e["updated"] > silent_since
                for e in statuses
            ),
            10,
            "pgr published stale",
        )
        status = await s.call(uri("get_status"))
        assert (
            status["sources"]["pgr"]["stale"] is True
            and status["sources"]["pgr"]["connected"] is True
        )
        starts = [i for i, r in enumerate(pgr.sent) if r["scan"] == -1]
        tail = [r for r in pgr.sent[starts[-1] :] if r["scan"] in (0, -1)]
        await wait_until(
            lambda: any(not x["complete"] for x in scans["pgr"]), 10, "pgr's open scan finished"
        )
        cut = [x for x in scans["pgr"] if not x["complete"]]
        assert [(round(x["time"], 6), x["beams"]) for x in cut] == [
            (round(record_time(tail[0]), 6), len(tail))
        ]

        # A radar that goes down is reconnected to when it is back.
        sas.server.start()
        await wait_until(lambda: len(beams["sas"]) > len(want) + 2, 10, "sas sending again")
        await sas.kill()
        await wait_until(
            lambda: any(e["source"] == "sas" and e.get("connected") is False for e in statuses),
            10,
            "sas published disconnected",
        )
        back = len(statuses)
        sas.listen()
        await wait_until(
            lambda: any(e["source"] == "sas" and e.get("connected") for e in statuses[back:]),
            20,
            "sas reconnected",
        )
        before = len(beams["sas"])
        await wait_until(lambda: len(beams["sas"]) > before + 3, 10, "beams after the reconnection")
        events = await s.call(uri("get_events"), -600, 0)
        titles = [e["title"] for e in events]
        assert "sas disconnected" in titles
        assert "pgr went stale (nothing new in time)" in titles
    finally:
        for site in (sas, pgr):
            site.server.stop()
            if site.listening is not None:
                await site.listening.stopListening()
        stop_process(proc)
        s.leave()


async def _echo_rows(session, t0, t1, n):
    rows = await session.call(uri("get_echoes"), t0, t1, "sas")
    return rows if len(rows) >= n else None


@pytest_twisted.ensureDeferred
async def test_simulator_process_killed_and_restarted_is_reconnected(router, tmp_path):
    port = free_port()
    sim_args = ["simulate", "radar", "--code", "kod", "--port", str(port), "--speed", "20"]
    sim = spawn(sim_args, router.env(), tmp_path / "sim.log")
    # Radars inline on the command line (as `obsmesh up` gives them) override the file's.
    proc = spawn(
        [
            "node",
            "superdarn",
            "--name",
            "sdkill",
            "--config",
            config_file(tmp_path, {"gbr": "127.0.0.1:9"}),
            "--radars",
            json.dumps({"kod": f"127.0.0.1:{port}"}),
        ],
        router.env(),
        tmp_path / "node.log",
    )
    s = await connect(router.backend_url)
    beams: list[dict] = []
    statuses: list[dict] = []
    try:
        await s.subscribe(beams.append, "obsmesh.consumer.sdkill.radar.kod.beam")
        await s.subscribe(statuses.append, "obsmesh.consumer.sdkill.status")
        await wait_until(lambda: len(beams) >= 3, 30, "beams from the simulator process")
        stop_process(sim, sig=9)
        await wait_until(
            lambda: any(e.get("connected") is False for e in statuses), 10, "disconnected"
        )
        down = len(beams)
        sim = spawn(sim_args, router.env(), tmp_path / "sim.log")
        await wait_until(lambda: len(beams) >= down + 3, 30, "beams after the simulator restarted")
        status = await s.call("obsmesh.consumer.sdkill.get_status")
        assert status["sources"]["kod"]["connected"] is True
        assert status["radars"]["kod"]["connections"] >= 2
        assert beams[-1]["name"] == "Kodiak" and set(status["sources"]) == {"kod"}
    finally:
        stop_process(sim)
        stop_process(proc)
        s.leave()


def test_node_settings_refuse_bad_radar_config(tmp_path):
    from nodes.superdarn import node
    from nodes.superdarn.kind import Settings
    from obsmesh import config

    bad = tmp_path / "bad.toml"
    bad.write_text('[superdarn]\nradars = [{code = "SAS!", host = "h", port = 1}]\n')
    try:
        node.build("superdarn", config.mesh(str(bad)), Settings.resolve(str(bad)))
    except config.ConfigError as exc:
        assert "bad radar code" in str(exc)
    else:
        raise AssertionError("a bad radar code was accepted")
    assert [e.key for e in node.load_radars(json.dumps({"sas": "127.0.0.1:1401"}))] == ["sas"]
    assert node.load_radars("") == [] and node.load_radars(None) == []
