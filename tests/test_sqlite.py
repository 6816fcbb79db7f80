"""obsmesh.sqlite: one thread per database, calls in order, closed where used."""

from __future__ import annotations

import sqlite3
import threading

import pytest_twisted
from twisted.internet import defer, reactor

from obsmesh.sqlite import DatabaseThread


@pytest_twisted.ensureDeferred
async def test_every_call_runs_on_one_thread_in_order_and_close_runs_there(tmp_path):
    db = DatabaseThread(reactor, "test-db")
    # a connection that refuses any thread but the one that made it
    conn = await db.run(sqlite3.connect, str(tmp_path / "t.sqlite"))
    await db.run(conn.execute, "CREATE TABLE t (i INTEGER)")
    seen: set[int] = set()

    def insert(i: int) -> None:
        seen.add(threading.get_ident())
        with conn:
            conn.execute("INSERT INTO t VALUES (?)", (i,))

    # many calls made at once: each sees every write made before it
    await defer.gatherResults([db.run(insert, i) for i in range(50)])
    rows = await db.run(lambda: [r[0] for r in conn.execute("SELECT i FROM t ORDER BY rowid")])
    assert rows == list(range(50))
    assert len(seen) == 1 and threading.get_ident() not in seen
    closed_on: list[int] = []

    def close() -> None:
        closed_on.append(threading.get_ident())
        conn.close()

    await db.stop(close)
    assert closed_on == list(seen) and not db.running


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_queued_calls_and_a_thread_never_started_closes_at_once():
    db = DatabaseThread(reactor, "test-db2")
    done: list[int] = []
    for i in range(5):
        db.run(done.append, i)
    await db.stop()
    assert done == [0, 1, 2, 3, 4]
    closed = []
    await DatabaseThread(reactor, "unused").stop(lambda: closed.append(True))
    assert closed == [True]
