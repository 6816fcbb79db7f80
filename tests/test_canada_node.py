"""The canada node as a process, through a real router, fed by the simulated
aggregator as a process (what `obsmesh up` runs): a consumer receives every
site's beams on `P.consumer.canada.radar.<code>.beam`, reads status and
history, and the simulator killed and restarted on its port is followed."""

from __future__ import annotations

import pytest_twisted

from tests.harness import connect, free_port, spawn, stop_process, wait_until

SITES = ("sas", "pgr", "inv", "cly", "rkn")
NAMES = {
    "sas": "Saskatoon",
    "pgr": "Prince George",
    "inv": "Inuvik",
    "cly": "Clyde River",
    "rkn": "Rankin Inlet",
}


def uri(suffix: str) -> str:
    return f"obsmesh.consumer.canada.{suffix}"


async def _listed(session) -> bool:
    return "canada" in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


@pytest_twisted.ensureDeferred
async def test_consumer_receives_every_sites_beams_through_the_router(router, tmp_path):
    port = free_port()
    sim_args = [
        "simulate",
        "canada",
        "--port",
        str(port),
        "--sites",
        ",".join(SITES),
        "--speed",
        "30",
    ]
    sim = spawn(sim_args, router.env(), tmp_path / "sim.log")
    node = spawn(
        [
            "node",
            "canada",
            "--addr",
            f"127.0.0.1:{port}",
            "--echo-db",
            str(tmp_path / "echo.sqlite"),
        ],
        {**router.env(), "OBSMESH_CANADA_SILENCE": "2"},
        tmp_path / "node.log",
    )
    s = await connect(router.backend_url)
    beams: dict[str, list[dict]] = {code: [] for code in SITES}
    scans: list[dict] = []
    try:
        for code in SITES:
            await s.subscribe(beams[code].append, uri(f"radar.{code}.beam"))
        await s.subscribe(scans.append, uri("radar.sas.scan"))
        await wait_until(lambda: _listed(s), 30, "the canada node listed by the hub")
        await wait_until(
            lambda: all(len(b) >= 3 for b in beams.values()), 30, "beams of every site"
        )
        for code, got in beams.items():
            assert {(b["code"], b["name"]) for b in got} == {(code, NAMES[code])}
        status = await s.call(uri("get_status"))
        assert status["feeds"]["aggregator"]["state"] == "receiving"
        assert status["envelopes"]["aggregator"] >= 15 and status["decode_errors"]["total"] == 0
        assert set(SITES) <= set(status["sites"])
        assert all(status["sites"][c]["last_message"] is not None for c in SITES)
        assert status["sources"]["feed:aggregator"]["connected"] is True
        # History: the per-beam echo counts of sas, as published.
        first, last = beams["sas"][0]["time"], beams["sas"][-1]["time"]
        hist = await s.call(uri("get_data"), ["sas.echoes"], first, last + 1e-3)
        published = [b["echoes_total"] for b in beams["sas"] if first <= b["time"] <= last]
        assert hist["data"]["sas.echoes"] == published

        # The aggregator process dies and comes back on the same port.
        stop_process(sim, sig=9)
        down = {c: len(b) for c, b in beams.items()}
        sim = spawn(sim_args, router.env(), tmp_path / "sim.log")
        await wait_until(
            lambda: all(len(beams[c]) >= down[c] + 2 for c in SITES),
            40,
            "beams after the simulator restarted",
        )
        await wait_until(lambda: len(scans) >= 1, 30, "a complete sas scan")
        assert scans[0]["code"] == "sas" and scans[0]["beams"] >= 1
    finally:
        stop_process(sim)
        stop_process(node)
        s.leave()
