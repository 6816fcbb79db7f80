"""The dataflow node through a real router: runs live and in get_data within a
second of being written, simulator failures as events, staleness as status,
and summary logs rotated, replaced and truncated under the node without a run
stored twice or lost."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from nodes.dataflow import node as dataflow_node
from nodes.dataflow import options as dataflow_options
from tests.harness import connect, spawn, stop_process, wait_until

SEP = "#" * 80


def utc(t: float) -> str:
    return time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(t))


def block(
    radar: str, start: int, end: int, ok: int = 2, failed: int = 0, script: str = "rsync_to_nas"
) -> list[str]:
    """The lines of one run, as the script prints them (each written on its own)."""
    day = time.strftime("%Y%m%d", time.gmtime(start))
    lines = [
        f"{SEP}\n",
        "\n",
        f"Executing /home/radar/data_flow/borealis/{script} on {radar}main207 for {radar}\n",
        utc(start) + "\n",
        "data_flow: On branch main, last commit: \t\t3f2a9c1 2024-01-02 10:00:00 -0600\n",
        "Transferring from: /data/borealis_data/\n",
    ]
    for k in range(ok + failed):
        status = "Successfully transferred" if k < ok else "Transfer failed"
        lines.append(f"{status}: /data/borealis_data/{day}/{day}.0000.00.{radar}.{k}.rawacf.h5\n")
    lines.append("\n")
    lines.append(f"Finished {script}. End time: {utc(end)}\n")
    return lines


def append(path: Path, lines: list[str]) -> None:
    for line in lines:  # like `tee --append`: open, one write, close
        with open(path, "a") as fh:
            fh.write(line)


class DataflowProc:
    def __init__(
        self, router, tmp_path: Path, name: str, *args: str, env: dict | None = None
    ) -> None:
        self.name = name
        self.args = ["node", "dataflow", "--name", name, *args]
        self.env = {**router.env(), **(env or {})}
        self.log = tmp_path / f"{name}.log"
        self.proc = None

    def uri(self, suffix: str) -> str:
        return f"obsmesh.consumer.{self.name}.{suffix}"

    async def start(self, session) -> None:
        self.proc = spawn(self.args, self.env, self.log)
        await wait_until(lambda: self._listed(session), 30, f"node {self.name} listed")

    async def _listed(self, session) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"node exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            )
        return self.name in [
            n["name"] for n in await session.call("obsmesh.consumer.get_data_node")
        ]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)

    async def times(self, session, field: str, t0: float, t1: float) -> list[float]:
        """The times stored for `field`; none before its first run declares it
        (logs are read in a thread: the first call may come before that)."""
        try:
            r = await session.call(self.uri("get_data"), [field], t0, t1)
        except ApplicationError as e:
            if e.error != "obsmesh.error.no_such_field":
                raise
            return []
        return list(r["timeline"][field.rsplit(".", 1)[0]]["t"])


def live_times(events: list[dict], timeline: str) -> list[float]:
    return [t for e in events if e["timeline"] == timeline for t in e["t"]]


@pytest_twisted.ensureDeferred
async def test_runs_reach_the_live_topic_and_get_data_within_a_second(router, tmp_path):
    root = tmp_path / "summary"
    (root / "2024").mkdir(parents=True)
    node = DataflowProc(router, tmp_path, "df-live", "--summary-root", str(root), "--period", "600")
    s = await connect(router.backend_url)
    base = int(time.time()) - 300
    log = root / "2024" / f"{time.strftime('%Y%m%d', time.gmtime(base))}.rsync_to_nas_summary.log"
    append(log, block("sas", base - 50, base - 45))  # history: in the store, never live
    try:
        await node.start(s)
        # the log found at start is read (as history) before it is written on: what is
        # appended after that is news (a node listed on the hub may not have read it yet)
        await wait_until(
            lambda: node.times(s, "sas.rsync_to_nas.files_ok", base - 60, base),
            20,
            "the history run stored",
        )
        received: list[tuple[float, dict]] = []
        await s.subscribe(lambda ev: received.append((time.time(), ev)), node.uri("live"))
        # a first run, until the node has seen the subscription (it publishes only to subscribed topics)
        append(log, block("pgr", base, base + 5))
        await wait_until(
            lambda: live_times([e for _, e in received], "pgr.rsync_to_nas"), 20, "the warm-up run"
        )
        delays = []
        ends = []
        for k in range(5):
            start, end = base + 20 * (k + 1), base + 20 * (k + 1) + 7
            lines = block("sas", start, end, ok=3, failed=k % 2)
            append(log, lines[:-1])
            written = time.time()
            append(log, lines[-1:])  # the Finished line completes the run
            got = await wait_until(
                lambda end=end: next(
                    (
                        at
                        for at, e in received
                        if e["timeline"] == "sas.rsync_to_nas" and end in e["t"]
                    ),
                    None,
                ),
                10,
                f"run {k} live",
            )
            delays.append(got - written)
            ends.append(float(end))
        # the must-hold: a run is live within 1 s of its line being written
        assert max(delays) < 1.0, delays
        assert live_times([e for _, e in received], "sas.rsync_to_nas") == ends
        fields = [
            f"sas.rsync_to_nas.{f}"
            for f in ("files_ok", "files_failed", "duration", "state", "died")
        ]
        r = await s.call(node.uri("get_data"), fields[:1], base - 100, base)
        assert r["timeline"]["sas.rsync_to_nas"]["t"] == [base - 45.0]
        r = await s.call(node.uri("get_data"), fields, base, base + 200)
        assert r["timeline"]["sas.rsync_to_nas"]["t"] == ends
        assert r["data"]["sas.rsync_to_nas.files_ok"] == [3.0] * 5
        assert r["data"]["sas.rsync_to_nas.files_failed"] == [0.0, 1.0, 0.0, 1.0, 0.0]
        assert r["data"]["sas.rsync_to_nas.duration"] == [7.0] * 5
        assert r["data"]["sas.rsync_to_nas.state"] == ["finished"] * 5
        assert r["data"]["sas.rsync_to_nas.died"] == [False] * 5
        events = await s.call(node.uri("get_events"), base, base + 200)
        failures = [e for e in events if "failure" in e["tags"]]
        assert [e["time"] for e in failures] == [ends[1], ends[3]]
        assert all("sas" in e["tags"] and "rsync_to_nas" in e["tags"] for e in failures)
        assert "Transfer failed: /data/borealis_data/" in failures[0]["text"]
    finally:
        node.stop()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_simulated_failures_become_events_and_a_stopped_stage_goes_stale(router, tmp_path):
    sim_dir = tmp_path / "sim"
    node = DataflowProc(
        router,
        tmp_path,
        "df-sim",
        "--dir",
        str(sim_dir),
        "--radars",
        "sas,pgr",
        "--period",
        "2",
        "--margin",
        "3",
    )
    s = await connect(router.backend_url)
    sim = None
    try:
        await node.start(s)
        status_changes, arrivals = [], []
        await s.subscribe(status_changes.append, node.uri("status"))
        await s.subscribe(arrivals.append, node.uri("arrival"))
        sim = spawn(
            [
                "simulate",
                "dataflow",
                str(sim_dir),
                "--radars",
                "sas,pgr",
                "--speed",
                "3600",
                "--seed",
                "5",
                "--failure-rate",
                "0",
                "--antennas",
                "1",
                "--inject",
                "transfer@1:sas",
                "--inject",
                "died@1:sas",
                "--inject",
                "connection@1:pgr",
                "--stop",
                "rsync_to_campus@3:pgr",
            ],
            node.env,
            tmp_path / "sim.log",
        )

        async def event_with(*tags):
            events = await s.call(node.uri("get_events"), -600, time.time() + 60)
            return next((e for e in events if set(tags) <= set(e["tags"])), None)

        failed = await wait_until(
            lambda: event_with("failure", "sas", "rsync_to_nas"), 30, "the transfer failure"
        )
        assert "1 file(s) failed" in failed["title"] and "Transfer failed:" in failed["text"]
        died = await wait_until(
            lambda: event_with("died", "sas", "rsync_to_campus"), 30, "the died run"
        )
        assert "superseded" in died["title"]
        conn = await wait_until(
            lambda: event_with("connection", "pgr", "rsync_to_campus"), 30, "the connection failure"
        )
        assert "Connection timed out" in conn["text"]
        # a stopped stage: no run within period + margin -> stale, on .status, in get_status and as an event
        await wait_until(
            lambda: any(
                c["source"] == "pgr.rsync_to_campus" and c.get("stale") for c in status_changes
            ),
            30,
            "pgr.rsync_to_campus stale on the status topic",
        )
        status = await s.call(node.uri("get_status"))
        assert status["sources"]["pgr.rsync_to_campus"]["stale"] is True
        assert "pgr.rsync_to_campus" in status["dataflow"]["stale"]
        assert "no rsync_to_campus run for pgr" in status["sources"]["pgr.rsync_to_campus"]["error"]
        assert await event_with("status", "pgr.rsync_to_campus")
        # the run products carry the failure too, and files reach the data directory
        r = await s.call(
            node.uri("get_data"), ["sas.rsync_to_nas.files_failed"], -600, time.time() + 60
        )
        assert 1.0 in r["data"]["sas.rsync_to_nas.files_failed"]
        await wait_until(lambda: arrivals, 30, "file arrivals on the arrival topic")
        assert {a["radar"] for e in arrivals for a in e["arrivals"]} <= {"sas", "pgr"}
        r = await s.call(
            node.uri("get_data"), ["arrival.name", "arrival.size"], -600, time.time() + 60
        )
        assert r["data"]["arrival.name"] and all(v > 0 for v in r["data"]["arrival.size"])
    finally:
        if sim is not None:
            stop_process(sim)
        node.stop()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_rotation_replacement_and_truncation_neither_duplicate_nor_lose_runs(
    router, tmp_path
):
    root = tmp_path / "summary"
    root.mkdir()
    node = DataflowProc(router, tmp_path, "df-rot", "--summary-root", str(root), "--period", "600")
    s = await connect(router.backend_url)
    base = int(time.time()) - 1000
    log = root / f"{time.strftime('%Y%m%d', time.gmtime(base))}.rsync_to_nas_summary.log"
    runs = [block("sas", base + 10 * k, base + 10 * k + 3, ok=1 + k) for k in range(9)]
    ends = [float(base + 10 * k + 3) for k in range(9)]
    field = "sas.rsync_to_nas.files_ok"

    async def stored(n: int) -> list[float]:
        times = await node.times(s, field, base - 10, base + 200)
        return times if len(times) >= n else None

    try:
        await node.start(s)
        for lines in runs[:3]:
            append(log, lines)
        assert await wait_until(lambda: stored(3), 20, "runs 0-2") == ends[:3]
        # rsync replacement: a new inode with the same bytes and one more run
        tmp = root / ".replacement"
        tmp.write_text(log.read_text() + "".join(runs[3]))
        os.replace(tmp, log)
        assert await wait_until(lambda: stored(4), 20, "run 3") == ends[:4]
        # logrotate: renamed away, a new file started
        log.rename(root / (log.name + ".1"))
        append(log, runs[4])
        assert await wait_until(lambda: stored(5), 20, "run 4") == ends[:5]
        # copytruncate: emptied in place, then written on
        shutil.copy(log, root / (log.name + ".2"))
        with open(log, "r+") as fh:
            fh.truncate(0)
        append(log, runs[5])
        append(log, runs[6])
        assert await wait_until(lambda: stored(7), 20, "runs 5-6") == ends[:7]
        # shortened back to the end of run 5, then written on
        with open(log, "r+") as fh:
            fh.truncate(len("".join(runs[5]).encode()))
        append(log, runs[7])
        assert await wait_until(lambda: stored(8), 20, "run 7") == ends[:8]
        # rewritten with the same runs after a new first line: read again, stored once
        log_text = log.read_text()
        tmp.write_text("log rotated by hand\n" + log_text + "".join(runs[8]))
        os.replace(tmp, log)
        assert await wait_until(lambda: stored(9), 20, "run 8") == ends

        async def duplicates_muted():
            status = await s.call(node.uri("get_status"))
            return status["dataflow"]["logs"]["duplicates"] >= 2

        await wait_until(duplicates_muted, 20, "the re-read runs recognised")
        r = await s.call(node.uri("get_data"), [field], base - 10, base + 200)
        assert r["timeline"]["sas.rsync_to_nas"]["t"] == ends
        assert r["data"][field] == [float(1 + k) for k in range(9)]
    finally:
        node.stop()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_a_restarted_node_on_a_persistent_store_stores_history_once(
    router, redis_server, tmp_path
):
    root = tmp_path / "summary"
    root.mkdir()
    env = {"OBSMESH_STORE": "redis", "OBSMESH_REDIS_URL": redis_server.url}
    name = f"df-redis-{os.getpid()}"
    node = DataflowProc(
        router, tmp_path, name, "--summary-root", str(root), "--period", "600", env=env
    )
    s = await connect(router.backend_url)
    base = int(time.time()) - 1000
    log = root / f"{time.strftime('%Y%m%d', time.gmtime(base))}.plot_antennas_iq_summary.log"
    runs = [
        block("inv", base + 10 * k, base + 10 * k + 2, script="plot_antennas_iq") for k in range(4)
    ]
    ends = [float(base + 10 * k + 2) for k in range(4)]
    field = "inv.plot_antennas_iq.files_ok"

    async def stored(n: int):
        times = await node.times(s, field, base - 10, base + 200)
        return times if len(times) >= n else None

    try:
        await node.start(s)
        for lines in runs[:3]:
            append(log, lines)
        assert await wait_until(lambda: stored(3), 20, "runs 0-2") == ends[:3]
        node.stop()
        append(log, runs[3])  # written while the node is down
        await node.start(s)
        assert await wait_until(lambda: stored(4), 20, "run 3 after the restart") == ends

        async def replayed():
            status = await s.call(node.uri("get_status"))
            return status["counters"].get("runs_already_stored") == 3

        await wait_until(replayed, 20, "the history already stored recognised")
        assert await node.times(s, field, base - 10, base + 200) == ends
    finally:
        node.stop()
        s.leave()


def test_options_from_dir_environment_and_command_line(tmp_path, monkeypatch):
    from nodes.dataflow.node import build
    from nodes.dataflow.options import Settings

    monkeypatch.setenv("OBSMESH_DATAFLOW_RADARS", "sas, pgr")
    monkeypatch.setenv("OBSMESH_DATAFLOW_MARGIN", "5")
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(
        ["--dir", str(tmp_path), "--period", "2", "--data-dir", str(tmp_path / "d")]
    )
    from obsmesh import config

    node = build("dataflow", config.mesh(), Settings.resolve(None, args=args))
    o = node.options
    assert o["radars"] == ["sas", "pgr"] and o["period"] == 2.0 and o["margin"] == 5.0
    assert o["summary_roots"] == [str(tmp_path / "summary")]
    assert o["data_dirs"] == [str(tmp_path / "d")]  # given: not replaced by the dir's
    assert o["flag_dirs"] == [str(tmp_path / "flags" / ".inotify_watchdir")]
    assert (
        o["unfinished_after"] == 7.0 and o["check_interval"] == 0.2 and o["sample_interval"] == 1.0
    )
    assert node.name == "dataflow" and node.ingest.watchers[0].roots == [str(tmp_path / "summary")]


@pytest.mark.parametrize(
    "bad",
    [
        {},  # no summary root
        {"summary_roots": ["x"], "period": 0.0},
        {"summary_roots": ["x"], "margin": -1.0},
        {"summary_roots": ["x"], "window": float("nan")},
        {"summary_roots": ["x"], "radars": ["SAS"]},
        {"summary_roots": ["x"], "mode": "fast"},
    ],
)
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        dataflow_options.resolve_options({**dataflow_options.DEFAULTS, **bad})


@pytest.mark.parametrize(
    "radar,stage,ok",
    [
        ("sas", "rsync_to_nas", True),
        ("unknown", "my-script_2", True),
        ("SAS", "rsync_to_nas", False),
        ("sas", "a.b", False),
        ("sas", "x" * 49, False),
        ("sas", "", False),
        ("sas", "a b", False),
    ],
)
def test_only_safe_names_make_timelines(radar, stage, ok):
    assert (dataflow_node.DataflowNode.timeline_of(radar, stage) is not None) is ok


@pytest.mark.slow  # over 1 s in the unit lane
@pytest_twisted.ensureDeferred
async def test_in_process_arrivals_flags_and_hostile_script_names(tmp_path):
    """The node's own logic without a router: what it stores and counts."""
    tree = tmp_path / "tree"
    summary, data, flags = (
        tree / "summary",
        tree / "data" / "campus" / "borealis_site_data",
        tree / "flags",
    )
    for d in (summary, data, flags / ".inotify_watchdir", flags / ".inotify_flags"):
        d.mkdir(parents=True)
    options = {
        **dataflow_options.DEFAULTS,
        "dir": str(tree),
        "period": 600.0,
        "sample_interval": 1.0,
    }
    node = dataflow_node.DataflowNode("df-local", None, options)
    await node.start()
    try:
        base = int(time.time()) - 100
        log = summary / f"{time.strftime('%Y%m%d', time.gmtime(base))}.rsync_to_nas_summary.log"
        evil = block("sas", base, base + 1, script="evil.name") + block(
            "sas", base + 2, base + 3, script=".."
        )
        append(log, evil + block("cly", base + 4, base + 6, ok=1, failed=2))
        name = f"{time.strftime('%Y%m%d', time.gmtime(base))}.0000.00.cly.a.rawacf.bz2"
        (tmp_path / name).write_bytes(b"x" * 1234)
        os.replace(tmp_path / name, data / name)  # arrives by rename, as rsync does
        (flags / ".inotify_flags" / ".borealis_flag_cly").write_text("")
        os.replace(
            flags / ".inotify_flags" / ".borealis_flag_cly",
            flags / ".inotify_watchdir" / ".borealis_flag_cly",
        )
        await wait_until(
            lambda: (
                node.counters["arrivals"] == 1
                and node.counters["runs"] == 1
                and node.counters["flags_raised"] == 1
            ),
            20,
            "the run, the arrival and the flag",
        )
        assert node.counters["runs_refused"] >= 2  # no timeline for names a field cannot carry
        assert set(node.pairs.values()) == {"cly.rsync_to_nas"}
        r = await node.get_data(
            ["arrival.name", "arrival.radar", "arrival.kind", "arrival.size"], -60, 0
        )
        assert r["data"] == {
            "arrival.name": [name],
            "arrival.radar": ["cly"],
            "arrival.kind": ["rawacf"],
            "arrival.size": [1234.0],
        }
        await wait_until(
            lambda: "arrivals.cly.rawacf" in node.fields and node.last_sample.get("arrival_counts"),
            10,
            "the arrival counts sampled",
        )
        r = await node.get_data(["arrivals.cly.rawacf"], -60, 0)
        assert r["data"]["arrivals.cly.rawacf"] == [1.0]
        r = await node.get_data(
            ["cly.rsync_to_nas.since_last_run", "cly.rsync_to_nas.stale"], -60, 0
        )
        assert (
            r["data"]["cly.rsync_to_nas.since_last_run"][-1] >= 96
            and r["data"]["cly.rsync_to_nas.stale"][-1] is False
        )
        (products,) = node.stage_products()
        assert (
            products["radar"] == "cly"
            and products["files_failed"] == 2
            and products["success_rate"] == 1 / 3
        )
        status = node.get_status()
        assert (
            status["dataflow"]["flags_raised"] == [".borealis_flag_cly"]
            and status["dataflow"]["stale"] == []
        )
        assert [e["title"] for e in node.events if "failure" in e["tags"]] == [
            "cly rsync_to_nas: 2 file(s) failed"
        ]
    finally:
        await node.stop()
