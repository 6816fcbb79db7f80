"""The das2 node under the attacks of issue 17, each replayed against a real
node process behind a real router: the limit holds and a well-behaved client
is served meanwhile. Each test prints its figures (RSS of the node and of its
whole process tree before, at the peak and after; its descriptors; the good
client's latency) on a line starting `das2-abuse:` (run with -s to see them).

- A request for 30 years of a spectrogram at full resolution (four at once) is
  refused before any reader starts, with an exception naming the limit.
- `get_data(magnetometer.Bx, now-60, 1e10)` is clipped to now.
- Six clients that never read hold no reader slot: the live magnetometer goes
  on and a 10 s request is answered; after `stall_timeout` they are cut off.
- Ten requests with distinct `channels=` queue a bounded number of builds, and
  builds nobody asked for lately are dropped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import threads

from tests.harness import (
    connect,
    free_port,
    port_open,
    process_tree,
    rss_kb,
    spawn,
    stop_process,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.slow  # attacks against a node process

NAME = "d2abuse"
P = f"obsmesh.consumer.{NAME}"
STALL = 4.0  # the node's stall_timeout here (default 60 s): short, for the test
MAX_AGE = 8.0  # build_max_age (default 600 s)


@dataclass
class Node:
    proc: object
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture(scope="module")
def node(router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("das2abuse")
    port = free_port()
    env = router.env()
    env["OBSMESH_DAS2_STALL_TIMEOUT"] = str(STALL)
    env["OBSMESH_DAS2_BUILD_MAX_AGE"] = str(MAX_AGE)
    log = tmp / "node.log"
    proc = spawn(
        [
            "node",
            "das2",
            "--name",
            NAME,
            "--http",
            f"127.0.0.1:{port}",
            "--cache",
            "disk",
            "--cache-dir",
            str(tmp / "cache"),
            "--live-poll",
            "1",
        ],
        env,
        log,
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "the das2 HTTP interface")
        assert proc.poll() is None, log.read_text()
        yield Node(proc, f"http://127.0.0.1:{port}/", log)
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- measuring


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    """RSS of the node and of its process tree (readers included), and its
    descriptors, sampled every 20 ms in a thread while an attack runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = (rss_kb(pid), self.tree_kb(), fds(pid))
        self.peak_node = self.peak_tree = self.peak_fds = 0
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def tree_kb(self) -> int:
        return sum(rss_kb(p) for p in process_tree(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            tree = process_tree(self.pid)
            self.most_processes = max(self.most_processes, len(tree) - 1)
            self.peak_node = max(self.peak_node, rss_kb(self.pid))
            self.peak_tree = max(self.peak_tree, sum(rss_kb(p) for p in tree))
            self.peak_fds = max(self.peak_fds, fds(self.pid))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        node, tree, fd = self.before
        return {
            "node_rss_mib": [node / 1024, self.peak_node / 1024, rss_kb(self.pid) / 1024],
            "tree_rss_mib": [tree / 1024, self.peak_tree / 1024, self.tree_kb() / 1024],
            "fds": [fd, self.peak_fds, fds(self.pid)],
            "reader_processes_most": self.most_processes,
        }


def report(name: str, figures: dict) -> None:
    def fmt(v):
        if isinstance(v, float):
            return round(v, 1)
        if isinstance(v, list):
            return [fmt(x) for x in v]
        return v

    print(f"das2-abuse: {name}: {json.dumps({k: fmt(v) for k, v in figures.items()})}")


def get(node: Node, query: dict, timeout: float = 60) -> tuple[int, bytes, float]:
    started = time.monotonic()
    url = f"{node.url}?{urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, err.read(), time.monotonic() - started


def good_request(node: Node) -> float:
    """A well-behaved client: ten seconds of the magnetometer at full resolution."""
    from nodes.das2.stream import Data, decode

    status, body, took = get(
        node,
        {
            "server": "dataset",
            "dataset": "magnetometer",
            "start_time": "2021-06-01T12:10:00",
            "end_time": "2021-06-01T12:10:10",
        },
        timeout=10,  # the failure: a 10 s request that timed out
    )
    assert status == 200
    assert sum(len(e) for e in decode(body) if isinstance(e, Data)) == 80
    return took


async def status(session) -> dict:
    return await session.call(f"{P}.get_status")


async def node_session(router):
    s = await connect(router.backend_url)

    async def listed() -> bool:
        return NAME in [n["name"] for n in await s.call("obsmesh.consumer.get_data_node")]

    await wait_until(listed, 60, "the das2 node in the hub")
    return s


# ---------------------------------------------------------------- attacks


@pytest_twisted.ensureDeferred
async def test_a_huge_request_is_refused_before_any_reader_starts(node, router):
    from nodes.das2.stream import StreamException, decode

    s = await node_session(router)
    try:
        before = (await status(s))["counters"]
        sampler = Sampler(node.pid)
        query = {
            "server": "dataset",
            "dataset": "spectrogram",
            "start_time": "2000-01-01",
            "end_time": "2029-12-31",
        }
        attacks = [
            threads.deferToThread(get, node, q)
            for q in (query, query, query, {**query, "resolution": "60"})
        ]
        took = await threads.deferToThread(good_request, node)
        answers = [await d for d in attacks]
        figures = sampler.stop()
        for code, body, _ in answers:
            events = decode(body)
            assert code == 400
            assert isinstance(events[-1], StreamException)
            assert events[-1].type == "IllegalArgument"
            assert "max_request_bytes" in events[-1].message
        # over WAMP the same request is the same refusal, an invalid_argument
        with pytest.raises(ApplicationError) as err:
            await s.call(f"{P}.get_data", "spectrogram.yscan", 946_684_800.0, 1_893_456_000.0)
        assert err.value.error == "obsmesh.error.invalid_argument"
        assert "max_request_bytes" in err.value.args[0]
        after = (await status(s))["counters"]
        assert (
            after.get("requests_refused_too_large", 0) - before.get("requests_refused_too_large", 0)
            == 5
        )
        # one reader ran: the good client's
        assert after.get("reader_runs", 0) - before.get("reader_runs", 0) == 1
        assert figures["reader_processes_most"] <= 2  # the good client's, a live read
        report(
            "30 years of spectrogram at full resolution, 4 at once",
            {**figures, "good_client_s": took, "refused_in_s": max(a[2] for a in answers)},
        )
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_get_data_to_1e10_is_clipped_to_now(node, router):
    s = await node_session(router)
    try:
        sampler = Sampler(node.pid)
        before = (await status(s))["counters"].get("reader_runs", 0)
        now = time.time()
        r = await s.call(f"{P}.get_data", ["magnetometer.Bx"], now - 60, 1e10)
        t = r["timeline"]["magnetometer"]["t"]
        assert t and now - 60 <= t[0] and t[-1] <= time.time()
        assert r["timeline"]["magnetometer"]["finalized_until"] <= time.time()
        # a streaming client's backfill after a restart: every field up to 1e10
        fields, _ = await s.call(f"{P}.get_fields")
        r = await s.call(f"{P}.get_data", sorted(fields), now - 120, 1e10)
        for timeline in r["timeline"].values():
            assert timeline["t"] and timeline["t"][-1] <= time.time()
        took = await threads.deferToThread(good_request, node)
        figures = sampler.stop()
        runs = (await status(s))["counters"].get("reader_runs", 0) - before
        # a reader per dataset and call (and the request edges' pieces), never one per
        # period up to 1e10
        assert runs <= 8 and figures["reader_processes_most"] <= 3  # (a live read, too)
        report(
            "get_data(magnetometer.Bx, now-60, 1e10)",
            {**figures, "reader_runs": runs, "good_client_s": took},
        )
    finally:
        s.leave()


def stalled_client(node: Node, query: dict) -> socket.socket:
    """A client that asks and then never reads (a tiny receive buffer)."""
    host, port = node.url.split("//")[1].rstrip("/").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /?{urlencode(query)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """The server dropped the connection (reading what is buffered to see it)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest_twisted.ensureDeferred
async def test_clients_that_do_not_read_cannot_stop_live_or_a_normal_request(node, router):
    s = await node_session(router)
    socks: list[socket.socket] = []
    try:
        base = await status(s)
        fd_before = fds(node.pid)
        sampler = Sampler(node.pid)
        for i in range(6):  # a day of a 256-channel spectrogram each: ~90 MB to send
            query = {
                "server": "dataset",
                "dataset": "spectrogram",
                "start_time": f"2021-02-{i + 1:02d}",
                "end_time": f"2021-02-{i + 2:02d}",
                "params": "channels=256",
            }
            socks.append(await threads.deferToThread(stalled_client, node, query))

        async def all_paused() -> bool:
            readers = (await status(s))["das2"]["readers"]
            return readers["paused"] >= 6

        await wait_until(all_paused, 60, "six readers paused by back-pressure")
        readers = (await status(s))["das2"]["readers"]
        live_before = (await status(s))["counters"].get("live_records", 0)
        took = await threads.deferToThread(good_request, node)

        async def live_moves() -> bool:
            return (await status(s))["counters"].get("live_records", 0) > live_before

        await wait_until(live_moves, 30, "the live magnetometer to advance")

        async def cut_off() -> bool:
            c = (await status(s))["counters"]
            return c.get("http_stalled", 0) - base["counters"].get("http_stalled", 0) >= 6

        await wait_until(cut_off, STALL * 10, "the stalled clients to be cut off")
        await threads.deferToThread(
            wait_for, lambda: all(closed_by_peer(k) for k in socks), 30, "connections dropped"
        )

        async def readers_gone() -> bool:
            return (await status(s))["das2"]["readers"]["active"] == 0

        await wait_until(readers_gone, 30, "their readers killed")
        for k in socks:
            k.close()
        socks.clear()
        await threads.deferToThread(
            wait_for, lambda: fds(node.pid) <= fd_before + 2, 30, "descriptors back"
        )
        figures = sampler.stop()
        report(
            "6 clients that never read",
            {
                **figures,
                "paused_readers": readers["paused"],
                "good_client_s": took,
                "stall_timeout_s": STALL,
            },
        )
    finally:
        for k in socks:
            k.close()
        s.leave()


@pytest_twisted.ensureDeferred
async def test_distinct_params_queue_a_bounded_number_of_builds(node, router):
    s = await node_session(router)
    try:
        before = (await status(s))["counters"]
        sampler = Sampler(node.pid)

        def ask(channels: int):
            return get(
                node,
                {
                    "server": "dataset",
                    "dataset": "spectrogram",
                    "start_time": "2022-01-01",
                    "end_time": "2022-01-04",  # 72 hourly 10 s blocks missing each
                    "resolution": "10",
                    "params": f"channels={channels}",
                },
                timeout=120,
            )

        answers = [await threads.deferToThread(ask, 8 + i) for i in range(10)]
        took = await threads.deferToThread(good_request, node)
        assert all(code == 200 for code, _, _ in answers)
        c = (await status(s))["counters"]
        queued = c.get("jobs_queued", 0) - before.get("jobs_queued", 0)
        skipped = c.get("jobs_not_queued_per_request", 0) - before.get(
            "jobs_not_queued_per_request", 0
        )
        assert queued <= 10 * 32  # build_per_request (default 32) of each request
        assert skipped >= 10 * (72 - 32)

        async def stale_dropped() -> bool:
            n = (await status(s))["counters"]
            return n.get("jobs_stale", 0) > before.get("jobs_stale", 0)

        # builds nobody asked for in build_max_age are dropped, not built
        await wait_until(stale_dropped, 120, "stale builds dropped")
        c = (await status(s))["counters"]
        built = c.get("blocks_built", 0) - before.get("blocks_built", 0)
        figures = sampler.stop()
        report(
            "10 requests with distinct channels=",
            {
                **figures,
                "jobs_queued": queued,
                "jobs_not_queued": skipped,
                "blocks_built": built,
                "jobs_stale": c.get("jobs_stale", 0) - before.get("jobs_stale", 0),
                "good_client_s": took,
            },
        )
        assert built < queued
    finally:
        s.leave()
