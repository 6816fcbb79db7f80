"""Tree watcher and ingest on real directories: inotify through Twisted, and the poll fallback."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from nodes.dataflow.ingest import DataflowIngest
from nodes.dataflow.simulator import Injection, Simulator
from nodes.dataflow.summary import FileLine, Run, RunStart
from nodes.dataflow.watch import ARRIVED, CHANGED, EXISTS, GONE, TreeWatcher, inotify_available

needs_inotify = pytest.mark.skipif(not inotify_available(), reason="inotify is Linux-only")
SEP = "#" * 80


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the reactor run until predicate() holds; fail (not hang) after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, path: str, kind: str) -> None:
        self.seen.append((path, kind))

    def has(self, path, kind: str) -> bool:
        return (str(path), kind) in self.seen


def block(radar: str, minute: int) -> str:
    return (
        f"{SEP}\n\nExecuting /home/radar/data_flow/borealis/rsync_to_nas on {radar}main207 for {radar}\n"
        f"20240315 14:{minute:02d}:00 UTC\n"
        f"Successfully transferred: /d/20240315.1200.00.{radar}.0.rawacf.h5\n"
        f"\nFinished rsync_to_nas. End time: 20240315 14:{minute:02d}:30 UTC\n\n"
    )


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_inotify_watcher_follows_new_subdirectories_and_survives_deletions(tmp_path):
    (tmp_path / "old.log").write_text("x\n")
    ev = Events()
    w = TreeWatcher([str(tmp_path)], ev, mode="inotify")
    w.start()
    try:
        assert w.mode == "inotify"
        await wait_until(lambda: ev.has(tmp_path / "old.log", EXISTS), what="initial scan")
        # a new YYYY/MM directory with a file written at once (before any watch can be on it)
        sub = tmp_path / "2024" / "01"
        sub.mkdir(parents=True)
        (sub / "20240101.rsync_to_nas_summary.log").write_text("a\n")
        new = sub / "20240101.rsync_to_nas_summary.log"
        await wait_until(lambda: ev.has(new, ARRIVED), what="file in new subdirectory")
        with open(new, "a") as fh:
            fh.write("b\n")
        await wait_until(lambda: ev.has(new, CHANGED), what="append")
        # deleting a watched directory must not end the watch on the rest (Twisted drops it)
        shutil.rmtree(tmp_path / "2024")
        await wait_until(lambda: ev.has(new, GONE), what="deletion")
        later = tmp_path / "later.log"
        later.write_text("c\n")
        await wait_until(lambda: ev.has(later, ARRIVED), what="event after a directory deletion")
        # a directory moved in whole is followed too
        outside = tmp_path.parent / f"{tmp_path.name}-outside"
        (outside / "12").mkdir(parents=True)
        (outside / "12" / "moved.log").write_text("m\n")
        os.rename(outside, tmp_path / "2023")
        moved = tmp_path / "2023" / "12" / "moved.log"
        await wait_until(lambda: ev.has(moved, ARRIVED), what="file in a moved-in directory")
        with open(moved, "a") as fh:
            fh.write("n\n")
        await wait_until(lambda: ev.has(moved, CHANGED), what="append in a moved-in directory")
        assert w.counters["restarts"] == 0
    finally:
        w.stop()


@pytest_twisted.ensureDeferred
async def test_poll_fallback_reports_the_same_kinds_of_events(tmp_path):
    (tmp_path / "a.log").write_text("x\n")
    ev = Events()
    w = TreeWatcher([str(tmp_path)], ev, mode="poll", poll_interval=0.05)
    w.start()
    try:
        assert w.mode == "poll"
        await wait_until(lambda: ev.has(tmp_path / "a.log", EXISTS))
        (tmp_path / "2024" / "01").mkdir(parents=True)
        b = tmp_path / "2024" / "01" / "b.log"
        b.write_text("y\n")
        await wait_until(lambda: ev.has(b, ARRIVED))
        with open(tmp_path / "a.log", "a") as fh:
            fh.write("more\n")
        await wait_until(lambda: ev.has(tmp_path / "a.log", CHANGED))
        b.unlink()
        await wait_until(lambda: ev.has(b, GONE))
    finally:
        w.stop()


def test_bad_watcher_arguments():
    with pytest.raises(ValueError):
        TreeWatcher(["/tmp"], lambda p, k: None, mode="magic")
    with pytest.raises(ValueError):
        TreeWatcher(["/tmp"], lambda p, k: None, poll_interval=0)


class Collect:
    def __init__(self) -> None:
        self.records: list = []
        self.arrivals: list = []
        self.flags: list = []

    def on_records(self, records) -> None:
        self.records.extend(records)

    def runs(self) -> list[Run]:
        return [r for r in self.records if isinstance(r, Run)]


async def _ingest_simulated_cycles(tmp_path, mode: str) -> None:
    sim = Simulator(
        str(tmp_path / "sim"),
        ("sas", "cly"),
        period=3600.0,
        seed=7,
        failure_rate=0.0,
        antennas=2,
        injections=(Injection("transfer", 1, "sas"), Injection("integrity", 1, "sas")),
    )
    for d in (sim.summary_dir, sim.flag_dir, os.path.join(sim.data_dir, "campus")):
        os.makedirs(d, exist_ok=True)
    got = Collect()
    ingest = DataflowIngest(
        summary_roots=[sim.summary_dir],
        data_dirs=[os.path.join(sim.data_dir, "campus")],
        flag_dirs=[sim.flag_dir],
        on_records=got.on_records,
        on_arrival=got.arrivals.append,
        on_flag=got.flags.append,
        mode=mode,
        poll_interval=0.05,
    )
    ingest.start()
    try:
        # what is already there is "exists"; what the cycles write from now on "arrived"
        await wait_until(lambda: all(w._first_scan_done for w in ingest.watchers), what="scans")
        t0 = time.time() - 2 * 3600  # the cycles' clock (the file contents; the I/O is now)
        finished_lines = 0
        for k in range(2):
            for a in sim.plan_cycle(t0 + k * 3600):
                sim.apply(a)
                if a.op == "line" and "Finished" in a.b:
                    finished_lines += 1
                    if mode == "inotify" and finished_lines % 7 == 0:
                        # the run is delivered from the Finished line alone, without a rescan
                        n = finished_lines
                        await wait_until(lambda n=n: len(got.runs()) >= n, what=f"run {n}")
        await wait_until(lambda: len(got.runs()) == finished_lines, what="all runs")
        runs = got.runs()
        assert {r.script for r in runs} == {
            "rsync_to_nas",
            "plot_antennas_iq",
            "rsync_to_campus",
            "convert_on_campus",
            "distribute_borealis_data",
            "archive_iq_plots",
        }
        assert all(r.state == "finished" for r in runs)
        assert len({(r.script, r.radar, r.start) for r in runs}) == len(runs)  # none twice
        failed = [f for f in got.records if isinstance(f, FileLine) and f.outcome == "failed"]
        assert {(f.script, f.radar, f.status) for f in failed} == {
            ("rsync_to_nas", "sas", "Transfer failed"),
            ("distribute_borealis_data", "sas", "DMAP integrity test failed"),
        }
        assert len([r for r in got.records if isinstance(r, RunStart)]) == len(runs)
        # finished files reached the campus archive; flags came and went
        await wait_until(
            lambda: any("borealis_site_data" in a.path for a in got.arrivals), what="arrivals"
        )
        final = [a for a in got.arrivals if "borealis_site_data" in a.path]
        assert all(
            a.name is not None and a.name.radar in ("sas", "cly") and a.size > 0 for a in final
        )
        assert not any(os.path.basename(a.path).startswith(".") for a in got.arrivals)
        on_disk = {os.path.join(sim.flag_dir, n) for n in os.listdir(sim.flag_dir)}
        assert {os.path.basename(p) for p in on_disk} == {
            ".campus_dataflow_flag_sas",
            ".campus_dataflow_flag_cly",
        }
        await wait_until(lambda: set(ingest.flags.raised) == on_disk, what="flag state")
        if mode == "inotify":  # a poll between two scans cannot see a flag come and go
            await wait_until(lambda: any(not f.raised for f in got.flags), what="a cleared flag")
            stages = {(f.stage, f.radar) for f in got.flags if f.raised}
            assert ("rsync_to_nas", "sas") in stages and ("rsync_to_campus", "cly") in stages
    finally:
        ingest.stop()


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_ingest_with_inotify_delivers_every_run_once(tmp_path):
    await _ingest_simulated_cycles(tmp_path, "inotify")


@pytest_twisted.ensureDeferred
async def test_ingest_with_polling_delivers_every_run_once(tmp_path):
    await _ingest_simulated_cycles(tmp_path, "poll")


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_ingest_replacement_rotation_backlog_and_unfinished(tmp_path):
    root = tmp_path / "summary"
    (root / "2024" / "03").mkdir(parents=True)
    old = root / "2024" / "03" / "20240301.rsync_to_nas_summary.log"
    old.write_text(block("sas", 0))
    os.utime(old, (time.time() - 10 * 86400,) * 2)  # outside the backlog: not replayed
    log = root / "2024" / "03" / "20240315.rsync_to_nas_summary.log"
    log.write_text(block("sas", 1))  # recent: replayed
    got = Collect()
    ingest = DataflowIngest(
        summary_roots=[str(root)],
        on_records=got.on_records,
        mode="inotify",
        unfinished_after=3600.0,
    )
    ingest.start()
    try:
        await wait_until(lambda: len(got.runs()) == 1, what="replayed run")
        assert got.runs()[0].source == str(log)
        with open(old, "a") as fh:  # the old file grows: only the new block is read
            fh.write(block("pgr", 2))
        await wait_until(lambda: len(got.runs()) == 2, what="appended run in an old file")
        assert got.runs()[1].radar == "pgr"
        # rsync replaces the recent log with itself plus a block: only the block is new
        tmp = root / ".tmp"
        tmp.write_text(log.read_text() + block("inv", 3))
        os.replace(tmp, log)
        await wait_until(lambda: len(got.runs()) == 3, what="run after replacement")
        # logrotate: renamed away, a new file starting like the old one
        os.rename(log, root / "rotated.1")
        log.write_text(block("sas", 1).replace("14:01:", "15:01:"))
        await wait_until(lambda: len(got.runs()) == 4, what="run after rotation")
        assert [r.radar for r in got.runs()] == ["sas", "pgr", "inv", "sas"]
        # a run that never finishes: delivered as died by tick() once past the limit
        with open(log, "a") as fh:
            fh.write(f"{SEP}\n\nExecuting /x/rsync_to_nas on h for cly\n20240315 16:00:00 UTC\n")
        await wait_until(lambda: len(ingest.logs.running()) == 1, what="running block")
        died = ingest.tick(now=1710518400.0 + 3601)  # 2024-03-15 16:00 UTC + limit
        assert [(r.radar, r.state, r.reason) for r in died] == [("cly", "died", "expired")]
        assert got.runs()[-1].state == "died"
        assert ingest.logs.counters["duplicates"] == 0
        status = ingest.status()
        assert status["mode"] == ["inotify"] and status["logs"]["logs"] == 2
    finally:
        ingest.stop()


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_queue_overflow_and_lost_connection_lead_to_a_rescan(tmp_path):
    import struct

    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    (tmp_path / "a.log").write_text("x\n")
    ev = Events()
    w = TreeWatcher([str(tmp_path)], ev, mode="inotify")
    w.start()
    try:
        await wait_until(lambda: ev.has(tmp_path / "a.log", EXISTS))
        # the kernel's overflow event (wd -1, IN_Q_OVERFLOW), which Twisted alone ignores
        w._notifier._doRead(struct.pack("=LLLL", 0xFFFFFFFF, 0x4000, 0, 0))
        await wait_until(lambda: ev.has(tmp_path / "a.log", "rescan"), what="rescan after overflow")
        assert w.counters["overflows"] == 1
        # the inotify descriptor is lost: a new one is made, the tree rescanned and watched again
        ev.seen.clear()
        w._notifier.connectionLost(Failure(ConnectionLost()))
        await wait_until(lambda: ev.has(tmp_path / "a.log", "rescan"), what="rescan after restart")
        assert w.counters["restarts"] == 1 and w.mode == "inotify"
        (tmp_path / "b.log").write_text("y\n")
        await wait_until(lambda: ev.has(tmp_path / "b.log", ARRIVED), what="event after restart")
    finally:
        w.stop()


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_a_root_that_appears_later_is_watched(tmp_path):
    root = tmp_path / "summary"
    ev = Events()
    w = TreeWatcher([str(root)], ev, mode="inotify", poll_interval=0.05)
    w.start()
    try:
        # the first scan (of nothing) is done before the root appears: its file "arrived"
        await wait_until(lambda: w._first_scan_done, what="the first scan")
        (root / "2024").mkdir(parents=True)
        (root / "2024" / "a.log").write_text("x\n")
        await wait_until(
            lambda: ev.has(root / "2024" / "a.log", ARRIVED), what="file in a late root"
        )
        with open(root / "2024" / "a.log", "a") as fh:
            fh.write("y\n")
        await wait_until(
            lambda: ev.has(root / "2024" / "a.log", CHANGED), what="change in a late root"
        )
    finally:
        w.stop()


@needs_inotify
@pytest_twisted.ensureDeferred
async def test_idle_logs_release_their_descriptor_and_resume(tmp_path):
    root = tmp_path / "summary"
    root.mkdir()
    log = root / "20240315.rsync_to_nas_summary.log"
    got = Collect()
    ingest = DataflowIngest(summary_roots=[str(root)], on_records=got.on_records, mode="inotify")
    ingest.start()
    try:
        log.write_text(block("sas", 0))
        await wait_until(lambda: len(got.runs()) == 1)
        follower = ingest.logs.logs[str(log)].follower
        assert follower.is_open
        ingest.tick(now=time.time() + 3600)  # idle for an hour
        assert not follower.is_open
        with open(log, "a") as fh:
            fh.write(block("pgr", 1))
        await wait_until(lambda: len(got.runs()) == 2)
        assert [r.radar for r in got.runs()] == ["sas", "pgr"] and follower.is_open
    finally:
        ingest.stop()
