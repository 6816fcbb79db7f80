"""Fault and abuse, CO2 endpoint (issue 17), against a real `obsmesh node co2`
process behind a real router, with the descriptor limit the attack found
(1,024), and hostile clients in a process of their own (tests/attackers.py).

Each test replays an attack, asserts the limit holds and that a real unit is
served meanwhile, and prints its figures (`ABUSE {...}`; `pytest -rP` shows them).
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from nodes.co2.admin import add_unit
from nodes.co2.simulator import READINGS_DIR, SimUnit, unit_id_for
from tests.abuse_support import (
    Attacker,
    Watch,
    latency_figures,
    limit_descriptors,
    report,
    timed,
)
from tests.harness import (
    PYTHON,
    REPO,
    admit,
    connect,
    free_port,
    port_open,
    stop_process,
    wait_until,
)

# the fault-and-abuse lane: pytest -m abuse -rP; slow: attacks against a node process
pytestmark = [pytest.mark.abuse, pytest.mark.slow]

NOFILE = 1024  # the limit the node ran with
SLOW, TOKENLESS = 2000, 200


class Co2Node:
    """`obsmesh node co2` with a small descriptor limit."""

    def __init__(self, router, tmp_path: Path, name: str) -> None:
        self.router, self.name = router, name
        self.root = tmp_path / f"{name}-root"
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def uri(self, suffix: str) -> str:
        return f"obsmesh.consumer.{self.name}.{suffix}"

    async def start(self, session) -> None:
        admit(self.name)  # a principal of the test mesh's secrets file
        args = ["node", "co2", "--name", self.name, "--data-root", str(self.root)]
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "obsmesh", *args, "--port", str(self.port)],
            env=self.router.env(),
            cwd=str(REPO),
            stdout=open(self.log, "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit_descriptors(NOFILE),
        )

        async def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited:\n{self.log.read_text()[-3000:]}")
            listed = await session.call("obsmesh.consumer.get_data_node")
            return self.name in [n["name"] for n in listed] and port_open(self.port)

        await wait_until(ready, 30, f"node {self.name}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def make_unit(node: Co2Node, tmp_path: Path, index: int) -> SimUnit:
    unit_id = unit_id_for(17, index)
    token = add_unit(node.root, unit_id)
    return SimUnit(
        f"http://127.0.0.1:{node.port}", unit_id, tmp_path / "sd" / unit_id, token, timeout=30
    )


def unit_cycle(u: SimUnit, t: float) -> list[float]:
    """What a unit does every few seconds: a ping and an upload of its new rows;
    the seconds each request took (both must be answered 200)."""
    (status, _), ping_s = timed(lambda: u.request("POST", f"/ou/{u.unit_id}/alive?rssi_dbm=-80"))
    assert status == 200
    u.measure(t)
    pushes_before = u.stats["push_200"]
    _, push_s = timed(lambda: u.push_dir(READINGS_DIR))
    assert u.stats["push_200"] > pushes_before
    return [ping_s, push_s]


async def stored_times(session, node: Co2Node, u: SimUnit) -> list[float]:
    r = await session.call(node.uri("get_data"), [f"{u.unit_id}.co2_mean"], 1.6e9, 2e9)
    return r["timeline"].get(u.unit_id, {}).get("t", [])


@pytest_twisted.ensureDeferred
async def test_slow_and_tokenless_floods_leave_a_real_unit_served(router, tmp_path):
    """2,000 slowloris clients and 200 tokenless 1 MiB uploads, reconnecting as
    they are cut, against a node whose descriptor limit is 1,024."""
    s = await connect(router.backend_url)
    node = Co2Node(router, tmp_path, "co2flood")
    await node.start(s)
    u = make_unit(node, tmp_path, 1)
    attacker = None
    try:
        t0 = time.time() - 3600
        await threads.deferToThread(unit_cycle, u, t0)
        watch = Watch(lambda: [node.proc.pid])
        attacker = Attacker(
            "127.0.0.1",
            node.port,
            "--slow",
            str(SLOW),
            "--tokenless",
            str(TOKENLESS),
            "--path",
            f"/ou/{u.unit_id}/push-sequential/{READINGS_DIR}/readings-0000.tsv?offset=0",
        )
        await wait_until(
            lambda: (
                attacker.last.get("slow_connected", 0) >= SLOW
                and attacker.last.get("tokenless_connected", 0) >= TOKENLESS
            ),
            60,
            "every hostile client to have connected",
        )
        latencies: list[float] = []
        for i in range(1, 21):  # the real unit keeps working through the flood
            latencies += await threads.deferToThread(unit_cycle, u, t0 + 60 * i)
        during = dict(attacker.last)
        status = await s.call(node.uri("get_status"))
        attack = attacker.stop()
        attacker = None
        await wait_until(
            lambda: _connections(s, node, 0), 30, "the node to hold no hostile connection"
        )
        figures = watch.stop()
        assert await stored_times(s, node, u) == [r.t for r in u.rows]  # every row, once
        counters = status["co2"]["counters"]
        report(
            "co2: 2,000 slow + 200 tokenless 1 MiB clients, descriptor limit 1,024",
            {
                **figures,
                **latency_figures(latencies),
                "hostile_connections_opened": during.get("slow_connected", 0)
                + during.get("tokenless_connected", 0),
                "hostile_connections_open_at_the_client": during.get("open"),
                "node_connections_during": status["co2"]["connections"],
                "tokenless_body_bytes_sent": attack.get("tokenless_body_bytes", 0),
                "refused_token_required": counters.get("refused_token_required", 0),
                "cut_slow_head": counters.get("cut_slow_head", 0),
                "pushed_out_waiting": counters.get("pushed_out_waiting", 0),
            },
        )
        # The limits held: descriptors never ran out, memory did not follow the bodies.
        assert figures["fds_peak"] < NOFILE
        assert counters.get("refused_token_required", 0) > 0
        assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 64  # 200 MiB were sent
        # The real unit was answered throughout (median within the 1 s).
        assert latency_figures(latencies)["good_latency_median_s"] < 1.0
    finally:
        if attacker is not None:
            attacker.stop()
        node.stop()
        s.leave()


async def _connections(session, node: Co2Node, at_most: int) -> bool:
    status = await session.call(node.uri("get_status"))
    return status["co2"]["connections"] <= at_most


@pytest_twisted.ensureDeferred
async def test_a_row_dated_hours_ahead_is_flagged_and_the_rows_after_it_are_stored(
    router, tmp_path
):
    """The issue's attack: one row 6 h ahead in an upload, then 20 correct rows."""
    s = await connect(router.backend_url)
    node = Co2Node(router, tmp_path, "co2clock")
    await node.start(s)
    u = make_unit(node, tmp_path, 2)
    try:
        now = time.time()
        first = u.measure(now - 1800)
        ahead = float(int(now + 6 * 3600))
        u.write_raw_line(_line(u, first, ahead))  # the bad clock's row
        good = [u.measure(now - 1700 + 30 * i) for i in range(20)]
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        await wait_until(
            lambda: _has(s, node, u, [first.t, *(r.t for r in good)]), 20, "the 21 correct rows"
        )
        stored = (tmp_path / f"{node.name}-root" / "units" / u.unit_id / READINGS_DIR).glob("*")
        sd = (u.sd / READINGS_DIR).glob("*")
        assert [p.read_bytes() for p in sorted(stored)] == [p.read_bytes() for p in sorted(sd)]
        status = await s.call(node.uri("get_status"))
        assert status["counters"]["rows_implausible_time"] == 1
        source = status["sources"][u.unit_id]
        assert source["implausible_times"] == 1 and source["last_implausible"]["t"] == ahead
        events = await s.call(node.uri("get_events"), now - 3600, now + 3600)
        assert any("implausible" in e["title"] and u.unit_id in e["tags"] for e in events)
        # A late row within the reorder window is merged, in time order.
        late = u.measure(now - 1750)
        u.rows.sort(key=lambda r: r.t)
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        await wait_until(lambda: _has(s, node, u, [r.t for r in u.rows]), 20, "the late row")
        report(
            "co2: one row 6 h ahead, then 20 correct rows and one late row",
            {
                "rows_stored": len(await stored_times(s, node, u)),
                "rows_implausible_time": 1,
                "late_row_merged": late.t in await stored_times(s, node, u),
            },
        )
    finally:
        node.stop()
        s.leave()


def _line(u: SimUnit, like, t: float) -> str:
    stamp = time.gmtime(t)
    co2 = "\t".join("400" for _ in range(10))
    return (
        f"{u.unit_id}\t{u.nickname}\t{time.strftime('%Y-%m-%d', stamp)}\t"
        f"{time.strftime('%H:%M:%S', stamp)}\t1.5\t{like.flash_count}\t{co2}"
    )


async def _has(session, node: Co2Node, u: SimUnit, times: list[float]) -> bool:
    got = await stored_times(session, node, u)
    return got == sorted(times) and not any(math.isnan(t) for t in got)
