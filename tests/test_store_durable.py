"""The durable store on a real disk: round trips, restart, the lock, damage,
retention, compaction, users' tools, and disk faults (a small tmpfs mounted
for the test: full, then read-only, then healthy again)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

import numpy as np
import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, task

from obsmesh.store import wal
from obsmesh.store.dirlock import StoreLocked
from obsmesh.store.durable import DurableStore
from tests.harness import wait_until

FIELDS = {"x": "number", "y": "number", "label": "string", "ok": "bool"}


def make(path, **kw) -> DurableStore:
    s = DurableStore(str(path), reactor=reactor, **kw)
    for f, k in FIELDS.items():
        s.declare(f, k)
    return s


def batch(k0: int, k1: int, base: float = 1e9):
    k = np.arange(k0, k1)
    return base + k * 0.5, {
        "x": k.astype(float),
        "y": np.where(k % 7 == 0, np.nan, k / 3),
        "label": [None if i % 5 == 0 else f"s{i}" for i in k.tolist()],
        "ok": [bool(i % 2) for i in k.tolist()],
    }


async def read_all(s: DurableStore, timeline: str = "tl"):
    return await s.query(timeline, list(FIELDS), -np.inf, np.inf)


def same(a, b) -> None:
    ta, ca = a
    tb, cb = b
    assert np.array_equal(ta, tb)
    for f in FIELDS:
        if ca[f].dtype == object:
            assert ca[f].tolist() == cb[f].tolist(), f
        else:
            assert np.array_equal(ca[f], cb[f], equal_nan=True), f


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_history_survives_close_and_reopen_exactly(tmp_path):
    s = make(tmp_path / "st", roll_seconds=0.2)
    await s.open()
    for a in range(0, 5000, 500):
        s.append_now("tl", *batch(a, a + 500))
    s.append_now("tl", *batch(100, 110, base=1e9 + 0.25))  # reaches back in time
    s.append_now("other", [5.0, 5.0, 6.0], {"x": [1, 2, 3]})  # equal times keep their order
    assert await s.flush(30)
    assert s.pending_rows() == 0 and s.status()["durable_rows"]["tl"] == 5010
    before = await read_all(s)
    await wait_until(lambda: s.status()["segments"] >= 2, 30, "segments written")
    await s.close()
    again = make(tmp_path / "st")
    await again.open()
    same(before, await read_all(again))
    t, cols = await again.query("other", ["x"], 0, 10)
    assert t.tolist() == [5.0, 5.0, 6.0] and cols["x"].tolist() == [1, 2, 3]
    assert again.status()["loaded_rows"] == 5013
    await again.close()


@pytest_twisted.ensureDeferred
async def test_a_second_opener_is_refused_with_a_clear_error(tmp_path):
    first = make(tmp_path / "st")
    await first.open()
    second = make(tmp_path / "st")
    with pytest.raises(StoreLocked, match="taken by another process .pid \\d+"):
        await second.open()
    assert "taken by another process" in second.status()["error"]
    await first.close()
    await second.open()  # free again: the same store object may try again
    await second.close()


@pytest_twisted.ensureDeferred
async def test_the_log_of_a_run_that_never_closed_is_replayed_once(tmp_path):
    """A crash between log and segments: the next open serves the log's rows,
    turns them into segments and deletes the log; a third open finds them once."""
    s = make(tmp_path / "st", roll_seconds=3600)
    await s.open()
    s.append_now("tl", *batch(0, 1000))
    assert await s.flush(30)
    expected = await read_all(s)
    s.engine.lock.release()  # as if the process died here (nothing rolled)
    s.engine.stop()
    again = make(tmp_path / "st")
    await again.open()
    same(expected, await read_all(again))
    await wait_until(lambda: again.status()["segments"] == 1, 30, "the log rolled")
    await again.close()
    assert not [n for n in os.listdir(tmp_path / "st" / "wal") if n.endswith(".log")]
    third = make(tmp_path / "st")
    await third.open()
    same(expected, await read_all(third))
    await third.close()


def _flip(path, at: int, n: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        data = bytearray(f.read(n))
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


def _segments(root):
    return sorted(os.path.join(d, n) for d, _, names in os.walk(root / "segments") for n in names)


@pytest_twisted.ensureDeferred
async def test_a_corrupt_block_costs_only_its_rows(tmp_path):
    s = make(tmp_path / "st", roll_seconds=0.05)
    await s.open()
    s.append_now("tl", *batch(0, 200_000))  # four row groups of 65536
    assert await s.flush(30)
    await wait_until(lambda: s.status()["segments"] == 1, 30, "one segment")
    s.append_now("tl", *batch(200_000, 201_000))
    assert await s.flush(30)
    await wait_until(lambda: s.status()["segments"] == 2, 30, "two segments")
    full = await read_all(s)
    await s.close()
    first = _segments(tmp_path / "st")[0]
    size = os.path.getsize(first)
    _flip(first, size // 2)  # inside a data page of a middle row group
    again = make(tmp_path / "st")
    await again.open()
    t, cols = await read_all(again)
    status = again.status()
    assert status["damage"] and "damaged" in status["damage"][0]
    assert 200_000 - 65536 <= t.size < 201_000  # one block gone, nothing else
    keep = np.isin(full[0], t)
    assert keep[-1000:].all()  # the second segment is intact
    same((full[0][keep], {f: c[keep] for f, c in full[1].items()}), (t, cols))
    assert os.path.getsize(first) == size  # kept as it was, for inspection
    await again.close()


@pytest_twisted.ensureDeferred
async def test_truncated_files_keep_everything_before_the_cut(tmp_path):
    s = make(tmp_path / "st", roll_seconds=0.05)
    await s.open()
    s.append_now("tl", *batch(0, 1000))
    assert await s.flush(30)
    await wait_until(lambda: s.status()["segments"] == 1, 30, "a segment")
    s.append_now("tl", *batch(1000, 2000))
    assert await s.flush(30)
    await wait_until(lambda: s.status()["segments"] == 2, 30, "two segments")
    await s.close()
    second = _segments(tmp_path / "st")[1]
    os.truncate(second, os.path.getsize(second) // 2)  # footer gone: the file is unreadable
    again = make(tmp_path / "st")
    await again.open()
    t, _ = await read_all(again)
    assert t.tolist() == batch(0, 1000)[0].tolist()
    assert any("unreadable" in d for d in again.status()["damage"])
    await again.close()


def test_a_torn_log_record_ends_the_scan_and_a_bad_checksum_skips_one():
    t, cols = np.arange(3.0), {"x": np.arange(3.0)}
    one = b"".join(bytes(b) for b in wal.encode(1, "tl", t, cols, {"x": "number"}))
    two = b"".join(bytes(b) for b in wal.encode(2, "tl", t + 3, cols, {"x": "number"}))
    three = b"".join(bytes(b) for b in wal.encode(3, "tl", t + 6, cols, {"x": "number"}))
    scan = wal.parse(one + two + three[:-5])
    assert [r.lsn for r in scan.records] == [1, 2] and "cut off" in scan.damage[0]
    bad = bytearray(two)
    bad[-3] ^= 1
    scan = wal.parse(one + bytes(bad) + three)
    assert [r.lsn for r in scan.records] == [1, 3] and "checksum" in scan.damage[0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 200))
def test_the_log_parser_takes_any_bytes(noise, cut):
    t, cols = np.arange(4.0), {"x": np.arange(4.0), "s": np.array(["a", None, "c", "d"], object)}
    good = b"".join(bytes(b) for b in wal.encode(7, "tl", t, cols, {"x": "number", "s": "string"}))
    scan = wal.parse(good + noise)
    assert scan.records[0].lsn == 7 and scan.records[0].cols["s"].tolist() == ["a", None, "c", "d"]
    wal.parse(noise)  # never raises
    wal.parse(good[:cut] + noise)


@pytest.mark.slow  # over 1 s in the unit lane
@pytest_twisted.ensureDeferred
async def test_retention_and_compaction_on_disk(tmp_path):
    s = make(tmp_path / "st", max_samples=2500, roll_seconds=0.01)
    await s.open()
    for k in range(40):  # 40 rolls of 100 rows
        s.append_now("tl", *batch(100 * k, 100 * (k + 1)))
        assert await s.flush(30)
        await wait_until(lambda k=k: s.status()["rolls"] >= k + 1, 30, "a roll")
    status = s.status()
    assert status["merges"] >= 1  # eight small segments became one
    assert status["segments"] < 20
    t, _ = await read_all(s)
    assert t.size == 2500  # the hot tier's exact cut
    await s.close()
    again = make(tmp_path / "st", max_samples=2500)
    await again.open()
    t2, _ = await read_all(again)
    assert t2.tolist() == t.tolist()  # what disk keeps beyond the cut is not served
    assert 2500 <= again.status()["loaded_rows"] < 4000  # retention removed whole segments
    on_disk = sum(os.path.getsize(p) for p in _segments(tmp_path / "st"))
    assert again.status()["segment_bytes"] == on_disk
    await again.close()


@pytest_twisted.ensureDeferred
async def test_retention_by_age_on_disk(tmp_path):
    s = make(tmp_path / "st", max_age=100.0, roll_seconds=0.01)
    await s.open()
    for k in range(10):  # 50 s of data a roll
        s.append_now("tl", *batch(100 * k, 100 * (k + 1)))
        assert await s.flush(30)
        await wait_until(lambda k=k: s.status()["rolls"] >= k + 1, 30, "a roll")
    await s.close()
    again = make(tmp_path / "st", max_age=100.0)
    await again.open()
    t, _ = await read_all(again)
    assert t[-1] - t[0] <= 100.0
    assert again.status()["loaded_rows"] <= 400  # old segments gone from disk
    await again.close()


@pytest.mark.slow  # about 1 s in the unit lane
@pytest_twisted.ensureDeferred
async def test_retention_by_bytes(tmp_path):
    s = make(tmp_path / "st", roll_seconds=0.01, max_bytes=40_000)
    await s.open()
    for k in range(30):
        s.append_now("tl", *batch(1000 * k, 1000 * (k + 1)))
        assert await s.flush(30)
        await wait_until(lambda k=k: s.status()["rolls"] >= k + 1, 30, "a roll")
    assert s.status()["segment_bytes"] <= 40_000
    await s.close()


@pytest_twisted.ensureDeferred
async def test_users_tools_read_the_segments(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    s = make(tmp_path / "st", roll_seconds=0.01)
    await s.open()
    s.append_now("tl", *batch(0, 100))
    assert await s.flush(30)
    await wait_until(lambda: s.status()["segments"] == 1, 30, "a segment")
    await s.close()
    glob = str(tmp_path / "st" / "segments" / "tl" / "*.parquet")
    rows = duckdb.sql(f"select time, x, label from '{glob}' order by time").fetchall()
    assert [r[1] for r in rows] == list(range(100))
    assert rows[1][2] == "s1" and rows[0][2] is None


# -- disk faults on a real (small) file system ------------------------------------


@contextlib.contextmanager
def tmpfs(path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_disk_full_then_space_again(tmp_path):
    with tmpfs(tmp_path / "small", "4m") as fs:
        s = make(fs / "st", roll_seconds=0.05, retry_delay=0.1)
        await s.open()
        s.append_now("tl", *batch(0, 1000))
        assert await s.flush(30)
        await wait_until(lambda: s.status()["segments"] == 1, 30, "history on disk")
        stored = await read_all(s)
        ballast = fs / "ballast"
        with contextlib.suppress(OSError):
            with open(ballast, "wb") as f:
                f.write(b"\0" * (8 << 20))  # fills the file system
        k = 1000
        while s.status()["error"] is None:
            s.append_now("tl", *batch(k, k + 2000))
            k += 2000
            await sleep(0.05)
        assert "disk full" in s.status()["error"]
        assert s.pending_rows() > 0
        assert not await s.flush(0.5)  # not stored, and not claimed to be
        t, _ = await read_all(s)
        assert t.size == k  # accepted rows are served meanwhile
        os.unlink(ballast)  # space again: ingest resumes by itself
        assert await s.flush(30)
        await wait_until(lambda: s.status()["error"] is None, 30, "the error to clear")
        everything = await read_all(s)
        await s.close()
        again = make(fs / "st")
        await again.open()
        same(everything, await read_all(again))
        assert again.status()["loaded_rows"] == k
        t, _ = await read_all(again)
        assert np.isin(stored[0], t).all()
        await again.close()


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_read_only_directory_then_writable_again(tmp_path):
    """A node starting on a read-only disk serves its history and says why it
    cannot store; once the disk is writable, what it accepted meanwhile is stored."""
    with tmpfs(tmp_path / "fs", "64m") as fs:
        s = make(fs / "st", roll_seconds=0.05)
        await s.open()
        s.append_now("tl", *batch(0, 1000))
        await s.close()
        remount(fs, "ro")  # (a mount with files open for writing cannot go read-only)
        again = make(fs / "st", roll_seconds=0.05, retry_delay=0.1)
        await again.open()
        t, _ = await read_all(again)
        assert t.size == 1000  # history served at once
        again.append_now("tl", *batch(1000, 1100))
        await wait_until(lambda: again.status()["error"] is not None, 30, "the error")
        assert "read-only file system" in again.status()["error"]
        assert again.pending_rows() == 100
        remount(fs, "rw")
        assert await again.flush(30)
        await wait_until(lambda: again.status()["error"] is None, 30, "the error to clear")
        everything = await read_all(again)
        await again.close()
        third = make(fs / "st")
        await third.open()
        same(everything, await read_all(third))
        assert everything[0].size == 1100
        await third.close()


def test_store_directories_are_per_node(tmp_path):
    from obsmesh import config
    from obsmesh.store import make_store, store_directory

    settings = config.mesh(environ={}, state_dir=str(tmp_path))
    assert store_directory(settings, "weather") == str(tmp_path / "store" / "weather")
    other = config.mesh(environ={}, store_dir=str(tmp_path / "elsewhere"))
    assert store_directory(other, "weather") == str(tmp_path / "elsewhere" / "weather")
    store = make_store(settings, "obsmesh:weather", node="weather", reactor=reactor)
    assert store.status()["kind"] == "durable" and uuid.UUID  # the default


@pytest_twisted.ensureDeferred
async def test_the_node_shows_a_full_disk_in_get_status(tmp_path, router):
    from tests.nodes_for_tests import probe

    with tmpfs(tmp_path / "small", "2m") as fs:
        node = probe(router, "fullnode", store_dir=str(fs))
        node.store.engine.o.retry_delay = 0.1
        await node.store.open()
        node.append("fast", [1.0, 2.0], {"x": [1, 2]})
        assert await node.store.flush(30)
        with contextlib.suppress(OSError):
            with open(fs / "ballast", "wb") as f:
                f.write(b"\0" * (4 << 20))
        k = 0
        while node.get_status()["store"]["error"] is None:
            t = 10.0 + np.arange(k, k + 5000)
            node.append("fast", t, {"x": t, "y": t})
            k += 5000
            await sleep(0.05)
        status = node.get_status()
        assert status["last_error"].startswith("store: disk full")
        assert status["store"]["pending_rows"] > 0 and status["counters"]["store_problems"] == 1
        assert any(e["title"] == "store problem" for e in node.get_events())
        os.unlink(fs / "ballast")
        assert await node.store.flush(30)
        await wait_until(lambda: node.get_status()["last_error"] is None, 30, "recovery")
        await node.store.close()
