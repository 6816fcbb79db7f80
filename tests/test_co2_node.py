"""The co2 node through a real router: simulated units upload over HTTP, a
WAMP consumer reads get_data, the live topic, get_status and get_events."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from nodes.co2.admin import add_unit
from nodes.co2.simulator import READINGS_DIR, SimUnit, unit_id_for
from tests.harness import connect, free_port, port_open, spawn, stop_process, wait_until

READINGS = f"{READINGS_DIR}/readings-0000.tsv"


class NodeProc:
    """One `obsmesh node co2` process and what a test needs of it."""

    def __init__(
        self, router, tmp_path: Path, name: str, *extra: str, env: dict | None = None
    ) -> None:
        self.router, self.name = router, name
        self.root = tmp_path / f"{name}-root"
        self.port = free_port()
        self.args = [
            "node",
            "co2",
            "--name",
            name,
            "--data-root",
            str(self.root),
            "--port",
            str(self.port),
            *extra,
        ]
        self.env = {**router.env(), **(env or {})}
        self.log = tmp_path / f"{name}.log"
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, suffix: str) -> str:
        return f"obsmesh.consumer.{self.name}.{suffix}"

    async def start(self, session) -> None:
        self.proc = spawn(self.args, self.env, self.log)
        await wait_until(lambda: self._ready(session), 30, f"node {self.name} listed and listening")

    async def _ready(self, session) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"node exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            )
        names = [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]
        return self.name in names and port_open(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig)

    def stored(self, unit: SimUnit, rel: str = READINGS) -> bytes:
        return (self.root / "units" / unit.unit_id / rel).read_bytes()


def unit(
    node: NodeProc, tmp_path: Path, index: int, layout: str, chunk: int = 4096, token: bool = True
) -> SimUnit:
    unit_id = unit_id_for(7, index)
    tok = add_unit(node.root, unit_id) if token else None
    return SimUnit(
        node.url,
        unit_id,
        tmp_path / "sd" / unit_id,
        tok,
        layout=layout,
        seed=index,
        chunk=chunk,
        nickname=f"nick{index}",
    )


def fields_of(unit_id: str, extended: bool) -> list[str]:
    names = ["temperature", "flash_count", *[f"co2_{i}" for i in range(1, 11)], "co2_mean"]
    names += [f"extra_{i}" for i in range(1, 6)] if extended else []
    return [f"{unit_id}.{n}" for n in names]


def expected_columns(u: SimUnit, rows=None) -> dict[str, list]:
    """What the node must serve for a unit's rows: exactly the written values."""
    rows = u.rows if rows is None else rows
    out: dict[str, list] = {
        f"{u.unit_id}.temperature": [r.temperature for r in rows],
        f"{u.unit_id}.flash_count": [float(r.flash_count) for r in rows],
    }
    for i in range(10):
        out[f"{u.unit_id}.co2_{i + 1}"] = [
            None if r.co2[i] is None else float(r.co2[i]) for r in rows
        ]
    means = []
    for r in rows:
        ok = [float(v) for v in r.co2 if v is not None]
        means.append(math.fsum(ok) / len(ok) if ok else None)
    out[f"{u.unit_id}.co2_mean"] = means
    if any(r.extra for r in rows):
        for i in range(5):
            out[f"{u.unit_id}.extra_{i + 1}"] = [r.extra[i] if r.extra else None for r in rows]
    return out


class Live:
    """Collects a node's live events per timeline."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def times(self, timeline: str) -> list[float]:
        return [t for e in self.events if e["timeline"] == timeline for t in e["t"]]

    def column(self, timeline: str, field: str) -> list:
        out = []
        for e in self.events:
            if e["timeline"] == timeline:
                out += e["data"].get(field, [None] * len(e["t"]))
        return out


async def _status(session, node: NodeProc) -> dict:
    return await session.call(node.uri("get_status"))


@pytest_twisted.ensureDeferred
async def test_uploads_become_exact_history_and_live_samples(router, tmp_path):
    node = NodeProc(router, tmp_path, "co2a", "--silence", "3600")
    node.root.mkdir()
    ext = unit(node, tmp_path, 0, "extended", chunk=256)
    base = unit(node, tmp_path, 1, "base")
    s = await connect(router.backend_url)
    try:
        await node.start(s)
        live = Live()
        await s.subscribe(live, node.uri("live"))
        t0 = int(time.time()) - 7200
        for k in range(12):
            ext.measure(t0 + 60 * k)
        ext.measure(t0 + 800, clock_reset=True)  # dated 1970: counted, not stored
        ext.write_raw_line("this\tis not\ta row")  # malformed: counted, not stored
        ext.measure(t0 + 900)
        for k in range(5):
            base.measure(t0 + 30 * k)

        def cycle(u: SimUnit, rssi: int, interrupt_rate: float) -> None:
            assert u.ping(rssi_dbm=rssi) == 200
            u.push_dir(READINGS_DIR, interrupt_rate)

        await threads.deferToThread(cycle, ext, -71, 0.5)
        await threads.deferToThread(cycle, base, -88, 0.0)
        # The upload was cut or lost its answer several times and resumed: the
        # stored file is byte for byte the unit's.
        assert ext.stats["interrupted_cut"] >= 1 and ext.stats["interrupted_lost_ack"] >= 1, (
            ext.stats
        )
        assert node.stored(ext) == (ext.sd / READINGS).read_bytes()
        assert node.stored(base) == (base.sd / READINGS).read_bytes()

        for u in (ext, base):
            want = [r.t for r in u.rows]
            await wait_until(
                lambda u=u, want=want: live.times(u.unit_id) == want, 20, f"{u.unit_id} live"
            )
            for f, values in expected_columns(u).items():
                assert live.column(u.unit_id, f) == values, f

        for u, extended in ((ext, True), (base, False)):
            names = fields_of(u.unit_id, extended)
            r = await s.call(node.uri("get_data"), names, t0 - 1, t0 + 3600)
            assert r["timeline"][u.unit_id]["t"] == [row.t for row in u.rows]
            assert r["data"] == expected_columns(u)
            pings = await s.call(
                node.uri("get_data"),
                [f"{u.unit_id}.{n}" for n in ("rssi_dbm", "rssi_raw", "ber_raw")],
                -600,
                0,
            )
            rssi = -71 if u is ext else -88
            assert pings["data"] == {
                f"{u.unit_id}.rssi_dbm": [rssi],
                f"{u.unit_id}.rssi_raw": [8],
                f"{u.unit_id}.ber_raw": [99],
            }

        listing = {n["name"]: n for n in await s.call("obsmesh.consumer.get_data_node")}
        assert listing[node.name]["kind"] == "co2"
        assert listing[node.name]["endpoint"] == f"http://127.0.0.1:{node.port}/"
        fields, timelines = await s.call(node.uri("get_fields"), t0 - 1, 0)
        assert set(timelines) == {
            ext.unit_id,
            f"{ext.unit_id}.ping",
            base.unit_id,
            f"{base.unit_id}.ping",
        }
        assert fields[f"{ext.unit_id}.co2_mean"]["units"] == "ppm"
        assert f"{base.unit_id}.extra_1" not in fields  # the old layout has no extra fields

        status = await _status(s, node)
        assert status["co2"]["counters"]["rows_clock_error"] == 1
        assert status["co2"]["counters"]["rows_malformed"] == 1
        assert status["sources"][ext.unit_id]["clock_errors"] == 1
        assert status["sources"][ext.unit_id]["connected"] is True
        assert status["sources"][ext.unit_id]["nickname"] == "nick0"
        assert status["co2"]["compat_mode"]["enabled"] is False and "warnings" not in status
    finally:
        node.stop()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_replayed_chunks_change_nothing_and_conflicts_raise_an_event(router, tmp_path):
    node = NodeProc(router, tmp_path, "co2b", "--silence", "3600")
    node.root.mkdir()
    u = unit(node, tmp_path, 2, "mixed", chunk=700)
    s = await connect(router.backend_url)
    try:
        await node.start(s)
        t0 = int(time.time()) - 3600
        for k in range(10):
            u.measure(t0 + 60 * k)
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        names = fields_of(u.unit_id, True)
        want = [r.t for r in u.rows]

        async def data():
            return await s.call(node.uri("get_data"), names, t0 - 1, t0 + 3600)

        await wait_until(lambda: _has_times(data(), u.unit_id, want), 20, "the rows stored")
        before, stored = await data(), node.stored(u)
        assert before["data"] == expected_columns(u)
        sent = (u.sd / READINGS).read_bytes()
        path = f"/ou/{u.unit_id}/push-sequential/{READINGS}"
        last = (len(sent) - 1) // 700 * 700  # where the last chunk starts
        for offset, body in ((0, sent[:700]), (700, sent[700:1400]), (last, sent[last:])):
            status, raw = await threads.deferToThread(
                u.request, "PUT", f"{path}?offset={offset}", body
            )
            assert status == 200, raw
        status, raw = await threads.deferToThread(u.request, "PUT", f"{path}?offset=0", b"X" * 100)
        assert status == 409, raw
        await wait_until(lambda: _event_tagged(s, node, "conflict"), 20, "the conflict event")
        st = await _status(s, node)
        assert st["co2"]["counters"]["push_duplicate"] == 3
        assert st["co2"]["counters"]["push_conflict"] == 1
        assert node.stored(u) == stored == sent
        assert await data() == before

        # The unit goes on after the replays: new rows only.
        u.measure(t0 + 1000)
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        want = [r.t for r in u.rows]
        await wait_until(lambda: _has_times(data(), u.unit_id, want), 20, "the new row")
        assert (await data())["data"] == expected_columns(u)
    finally:
        node.stop()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_silent_unit_changes_status_and_raises_an_event_and_compat_mode_shows(
    router, tmp_path
):
    node = NodeProc(router, tmp_path, "co2c", "--silence", "1", "--compat-network", "127.0.0.0/8")
    node.root.mkdir()
    u = unit(node, tmp_path, 3, "base", token=False)  # old firmware: no token
    s = await connect(router.backend_url)
    try:
        changes: list[dict] = []
        await s.subscribe(changes.append, node.uri("status"))
        await node.start(s)
        status = await _status(s, node)
        assert status["co2"]["compat_mode"]["enabled"] is True
        assert status["co2"]["compat_mode"]["networks"] == ["127.0.0.0/8"]
        assert any("COMPATIBILITY MODE" in w for w in status["warnings"])
        events = await s.call(node.uri("get_events"), -600, 0)
        assert any("compat_mode" in e["tags"] for e in events)

        assert await threads.deferToThread(u.ping, -90) == 200  # accepted without a token
        status = await _status(s, node)
        assert status["sources"][u.unit_id]["connected"] is True
        assert status["co2"]["counters"]["auth_compat"] == 1

        await wait_until(
            lambda: _source_is(s, node, u.unit_id, stale=True), 20, "the unit flagged silent"
        )
        status = await _status(s, node)
        assert status["sources"][u.unit_id]["connected"] is False
        assert "silent for" in status["sources"][u.unit_id]["error"]
        events = await s.call(node.uri("get_events"), -600, 0)
        silent = [e for e in events if u.unit_id in e["tags"] and "stale" in e["tags"]]
        assert len(silent) == 1 and "silent for" in silent[0]["text"]
        await wait_until(
            lambda: any(c["source"] == u.unit_id and c.get("stale") for c in changes),
            10,
            "the status change published",
        )

        assert await threads.deferToThread(u.ping, -90) == 200  # heard again
        await wait_until(lambda: _source_is(s, node, u.unit_id, stale=False), 10, "the unit back")
        assert (await _status(s, node))["sources"][u.unit_id]["connected"] is True
    finally:
        node.stop()
        s.leave()


@pytest.mark.parametrize("store,sig", [("memory", signal.SIGTERM), ("redis", signal.SIGKILL)])
@pytest_twisted.ensureDeferred
async def test_restart_restores_history_without_duplicates(router, tmp_path, request, store, sig):
    env = {"OBSMESH_STORE": store}
    if store == "redis":
        env["OBSMESH_REDIS_URL"] = request.getfixturevalue("redis_server").url
    name = f"co2r{store[0]}{int(time.time() * 1000) % 100000}"
    node = NodeProc(router, tmp_path, name, "--silence", "3600", env=env)
    node.root.mkdir()
    u = unit(node, tmp_path, 4, "extended")
    s = await connect(router.backend_url)
    try:
        await node.start(s)
        t0 = int(time.time()) - 3600
        for k in range(20):
            u.measure(t0 + 60 * k)
        await threads.deferToThread(u.ping, -80)
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        names = fields_of(u.unit_id, True)

        async def data():
            return await s.call(node.uri("get_data"), names, t0 - 1, t0 + 7200)

        await wait_until(
            lambda: _has_times(data(), u.unit_id, [r.t for r in u.rows]), 20, "rows stored"
        )
        node.stop(sig)  # SIGKILL: delivery progress may be unsaved, rows come again at start
        await wait_until(lambda: _not_listed(s, name), 20, "the node gone")
        await node.start(s)
        r = await data()
        assert r["timeline"][u.unit_id]["t"] == [row.t for row in u.rows]  # each row once
        assert r["data"] == expected_columns(u)
        pings = await s.call(node.uri("get_data"), [f"{u.unit_id}.rssi_dbm"], -600, 0)
        assert pings["data"][f"{u.unit_id}.rssi_dbm"] == [-80]
        counters = (await _status(s, node))["counters"]
        if store == "redis":  # everything was in the store already: all skipped, none doubled
            assert counters.get("history_rows", 0) + counters.get("rows", 0) == 0
            assert counters["history_pings_duplicate"] == 1
        else:
            assert counters.get("history_rows", 0) + counters.get("rows", 0) == 20

        live = Live()
        await s.subscribe(live, node.uri("live"))
        u.measure(t0 + 2000)
        await threads.deferToThread(u.push_dir, READINGS_DIR)
        await wait_until(lambda: live.times(u.unit_id) == [t0 + 2000.0], 20, "the new row live")
        assert (await data())["data"] == expected_columns(u)
    finally:
        node.stop()
        s.leave()


async def _has_times(reply, timeline: str, want: list[float]) -> bool:
    r = await reply
    return r["timeline"].get(timeline, {}).get("t") == want


async def _event_tagged(session, node: NodeProc, tag: str) -> bool:
    return any(tag in e["tags"] for e in await session.call(node.uri("get_events"), -600, 0))


async def _source_is(session, node: NodeProc, key: str, **state) -> bool:
    src = (await _status(session, node))["sources"].get(key, {})
    return all(src.get(k) == v for k, v in state.items())


async def _not_listed(session, name: str) -> bool:
    return name not in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("level", ["info", "debug"])
async def test_requests_are_logged_at_debug_only(router, tmp_path, level):
    """Issue 20: a line per event worth reading at the default level, one per
    request only at debug (OBSMESH_LOG_LEVEL)."""
    node = NodeProc(router, tmp_path, f"co2log{level}", env={"OBSMESH_LOG_LEVEL": level})
    node.root.mkdir()
    u = unit(node, tmp_path, 3, "base")
    s = await connect(router.backend_url)
    try:
        await node.start(s)
        for k in range(5):  # five communication cycles of a unit
            u.measure(time.time() - 600 + k)
            await threads.deferToThread(u.ping)
            await threads.deferToThread(u.push_dir, READINGS_DIR)
        names = [f"{u.unit_id}.co2_mean"]

        async def stored() -> bool:
            r = await s.call(node.uri("get_data"), names, time.time() - 3600, time.time())
            return len(r["data"][names[0]]) == 5

        await wait_until(stored, 20, "the five rows")
    finally:
        node.stop()
        s.leave()
    text = node.log.read_text()
    requests = text.count("push-sequential") + text.count("/alive")
    if level == "info":
        assert requests == 0 and len(text.splitlines()) < 20, text
    else:
        assert requests >= 10
