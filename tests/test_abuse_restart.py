"""Fault and abuse (issue 17): a node of every kind killed under a streaming
client, in the whole mesh as `obsmesh up` runs it (the launcher restarts it).
The stream reports the gap, backfills what it missed without ever asking past
now, and goes on live. Figures are printed (`ABUSE {...}`; `pytest -rP`)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from consumers.client import Mesh
from consumers.client.errors import MeshTimeout
from consumers.client.live import Batch, Gap
from tests.abuse_support import report
from tests.harness import children, cmdline, wait_for
from tests.test_whole_mesh import EXPECTED, listed, mesh_up  # noqa: F401 - the fixture

# the fault-and-abuse lane: pytest -m abuse -rP; slow: every node kind killed under a stream
pytestmark = [pytest.mark.abuse, pytest.mark.slow]


def node_pid(launcher: int, kind: str) -> int | None:
    todo = list(children().get(launcher, []))
    kids = children()
    while todo:
        pid = todo.pop()
        if f"obsmesh node {kind}" in cmdline(pid):
            return pid
        todo += kids.get(pid, [])
    return None


def next_item(stream, deadline: float):
    while time.monotonic() < deadline:
        try:
            return stream.get(timeout=1)
        except MeshTimeout:
            continue
    raise TimeoutError("the stream gave nothing")


@pytest.mark.timeout(900)
def test_a_node_of_every_kind_restarted_under_a_streaming_client_is_resumed(mesh_up):  # noqa: F811
    proc, env, _grafana, _log = mesh_up
    with Mesh(env["OBSMESH_ROUTER_URL"], timeout=30) as mesh:
        wait_for(lambda: EXPECTED <= listed(mesh), 180, f"every node kind ({EXPECTED})", 0.5)
        asked: list[tuple[str, float, float]] = []  # what backfills asked: (node, end, now)
        real_get = mesh._core.get

        async def spy(node, fields, start, end, *args, **kwargs):
            asked.append((node, end, time.time()))
            return await real_get(node, fields, start, end, *args, **kwargs)

        mesh._core.get = spy
        figures = {}
        for kind in sorted(EXPECTED):
            with mesh.stream(kind) as stream:  # every field of the node
                deadline = time.monotonic() + 120
                while not isinstance(next_item(stream, deadline), Batch):
                    pass
                pid = node_pid(proc.pid, kind)
                assert pid is not None, f"no process for {kind}"
                os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                deadline = killed + 120
                item = next_item(stream, deadline)
                while not isinstance(item, Gap):
                    item = next_item(stream, deadline)
                gap, gap_at = item, time.monotonic() - killed
                recovered = 0
                item = next_item(stream, deadline)
                while not (isinstance(item, Batch) and not item.backfill):
                    recovered += len(item) if isinstance(item, Batch) else 0
                    item = next_item(stream, deadline)
                figures[kind] = {
                    "gap_reported_after_s": round(gap_at, 1),
                    "live_again_after_s": round(time.monotonic() - killed, 1),
                    "backfilled": gap.backfilled,
                    "recovered_samples": recovered,
                    "backfill_error": gap.error,
                }
                assert gap.backfilled and gap.error is None, (kind, gap)
        report("a node of every kind killed (SIGKILL) under a streaming client", figures)
        backfills = [(node, end, now) for node, end, now in asked if end > 1e9]
        assert backfills, "no backfill asked the history"
        assert all(end <= now for _, end, now in backfills), backfills
