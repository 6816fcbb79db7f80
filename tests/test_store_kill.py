"""A node process SIGKILLed during ingest at 10,000 samples/s: after a restart
every sample it reported stored (get_status: the store's durable_last) is
there and served, exact and without gaps, and what it lost is within the
stated window."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import pytest_twisted

from obsmesh.router import REPO
from tests.harness import connect, stop_process, wait_until

pytestmark = pytest.mark.slow  # ingest, SIGKILL, restart

DT = 1e-4  # 10,000 samples/s on timeline "fast"
SYNC_S = 0.05  # store_sync_ms, the default
TICK_S = 0.05  # the probe appends every 50 ms
SLACK_S = 0.5  # a loaded shared machine may stall a process this long


async def status(session, name: str) -> dict | None:
    try:
        return await session.call(f"obsmesh.consumer.{name}.get_status")
    except Exception:
        return None


@pytest_twisted.ensureDeferred
async def test_sigkill_during_ingest_loses_nothing_reported_stored(router, tmp_path):
    base = time.time()
    s = await connect(router.backend_url)
    proc = _spawn(router, tmp_path, base, ["--live"])
    again = None
    try:
        seen: dict = {}

        async def enough():
            st = await status(s, "killme")
            if st and st["store"]["durable_rows"].get("fast", 0) >= 30_000:
                seen.update(st)
                return True
            return False

        await wait_until(enough, 60, "3 s of ingest stored")
        reported = seen["store"]["durable_last"]["fast"]
        proc.send_signal(signal.SIGKILL)
        killed = time.time()
        proc.wait(10)

        again = _spawn(router, tmp_path, base, [])  # no new samples: serve what is stored
        await wait_until(lambda: _served(s), 60, "the node back")
        reply = await s.call("obsmesh.consumer.killme.get_data", "x", base - 1, time.time() + 10)
        t = np.asarray(reply["timeline"]["fast"]["t"])
        x = np.asarray(reply["data"]["x"])
        # Every sample is there once, in order, from the first on: x is k for sample k.
        assert np.array_equal(x, np.arange(x.size))
        assert np.allclose(t, base + x * DT)
        # Everything reported stored before the kill is served.
        assert t[-1] >= reported
        assert x.size >= seen["store"]["durable_rows"]["fast"]
        lost = killed - t[-1]
        print(f"stored up to {killed - t[-1]:.3f} s before the SIGKILL")
        assert lost <= SYNC_S + TICK_S + SLACK_S, f"lost the last {lost:.3f} s"
        st = await status(s, "killme")
        assert st["store"]["loaded_rows"] >= x.size and st["store"]["error"] is None
    finally:
        for p in (proc, again):
            if p is not None and p.poll() is None:
                stop_process(p, signal.SIGKILL)
        s.leave()


def _spawn(router, tmp_path, base: float, extra: list[str]) -> subprocess.Popen:
    """tests/probe_process.py: sample k of "fast" at base + k * DT with x = k."""
    env = router.env()
    log = open(tmp_path / "killme.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "probe_process.py"),
            "killme",
            "--base",
            repr(base),
            "--dt",
            repr(DT),
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
    )


async def _served(session) -> bool:
    st = await status(session, "killme")
    return bool(st and st["store"]["state"] == "open")
