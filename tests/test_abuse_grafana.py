"""Fault and abuse, Grafana bridge (issue 17): a real `obsmesh grafana` process
in front of real node processes, attacked over HTTP while a well-behaved client
keeps querying. Figures are printed (`ABUSE {...}`; `pytest -rP` shows them)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from tests.abuse_support import Watch, fd_count, latency_figures, report
from tests.harness import PYTHON, REPO, admit, free_port, port_open, stop_process, wait_for

# the fault-and-abuse lane: pytest -m abuse -rP; slow: attacks against a bridge process
pytestmark = [pytest.mark.abuse, pytest.mark.slow]

CAP = 1 << 20  # the bridge's default max_body


@pytest.fixture(scope="module")
def bridge(router, tmp_path_factory):
    """A bridge process, a node with 2,000 fields (expensive to ask for all of them)
    and a small node the well-behaved client asks."""
    logs = tmp_path_factory.mktemp("grafana-abuse")
    env = router.env()
    admit("wide", "small")  # principals of the test mesh's secrets file
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "tests.nodes_for_tests", name, str(fields), str(samples)],
            env=env,
            cwd=str(REPO),
            stdout=open(logs / f"{name}.log", "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, fields, samples in (("wide", 2000, 5000), ("small", 1, 600))
    ]
    port = free_port()
    web = subprocess.Popen(
        [PYTHON, "-m", "obsmesh", "grafana", "--port", str(port)],
        env=env,
        cwd=str(REPO),
        stdout=open(logs / "bridge.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(web)
    try:
        wait_for(lambda: port_open(port), 30, "the bridge's port")
        wait_for(lambda: _nodes(port) >= {"wide", "small"}, 60, "the bridge to see both nodes")
        yield port, web
    finally:
        for p in procs:
            stop_process(p)


def _nodes(port: int) -> set[str]:
    try:
        status, body = _request(port, "GET", "/", None)
    except OSError:
        return set()
    return set(json.loads(body).get("nodes", [])) if status == 200 else set()


def _request(port: int, method: str, path: str, body: bytes | None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _query(targets: list[str], points: int = 100, span: float = 600) -> bytes:
    now = time.time()
    return json.dumps(
        {
            "range": {"from": (now - span) * 1000, "to": now * 1000},
            "maxDataPoints": points,
            "targets": [{"target": t, "refId": f"R{i}"} for i, t in enumerate(targets)],
        }
    ).encode()


def good_query(port: int) -> float:
    """The well-behaved client: one small panel; the seconds it took."""
    started = time.monotonic()
    status, body = _request(port, "POST", "/query", _query(["small::f00000"]))
    assert status == 200 and json.loads(body)[0]["datapoints"], body[:200]
    return time.monotonic() - started


class GoodClient:
    """Queries in a loop in a thread until stopped; latencies and failures kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(good_query(self.port))
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.errors.append(exc)
                return

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(120)
        assert not self.errors, self.errors
        return self.latencies


def _temp_files(pid: int) -> list[str]:
    """Open files of a process that are deleted temporary files (Twisted spools big
    bodies to such files)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and target.endswith("(deleted)"):
            out.append(target)
    return out


def _send_until_cut(port: int, head: bytes, chunk: bytes, limit: int) -> tuple[int, bytes]:
    """Send `head`, then `chunk` after `chunk` until the server answers and cuts
    (or `limit` bytes are sent); (body bytes sent, the server's answer)."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        s.setblocking(False)
        while sent < limit:
            try:
                got = s.recv(65536)
                if not got:
                    break
                answer += got
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.001)  # the peer's window is full: it is not reading
            except (BrokenPipeError, ConnectionResetError):
                break
        s.setblocking(True)
        s.settimeout(10)
        try:
            while got := s.recv(65536):
                answer += got
        except OSError:
            pass
    return sent, answer


def test_a_declared_10_gib_body_is_refused_before_it_is_read(bridge):
    port, proc = bridge
    watch = Watch(lambda: [proc.pid])
    good = GoodClient(port)
    head = (
        b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (10 << 30)
    )
    # The answer comes before any body byte is sent ...
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b"1048576" in answer  # the message names the cap
    # ... and a client that sends anyway gets no further than the drain allowance.
    sent, answer = _send_until_cut(port, head, b"\0" * 65536, 300 << 20)
    temp = _temp_files(proc.pid)
    latencies = good.stop()
    figures = watch.stop()
    report(
        "grafana: a declared 10 GiB body",
        {
            **figures,
            **latency_figures(latencies),
            "body_bytes_the_client_got_out": sent,
            "temp_files_in_the_bridge": len(temp),
        },
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 300 << 20  # the issue saw 300 MiB accepted in 1.5 s
    assert temp == []
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 32


def test_a_chunked_body_over_the_cap_is_refused_at_its_first_byte_over(bridge):
    port, proc = bridge
    watch = Watch(lambda: [proc.pid])
    head = (
        b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(block), block)
    sent, answer = _send_until_cut(port, head, chunk, 300 << 20)
    temp = _temp_files(proc.pid)
    figures = watch.stop()
    report(
        "grafana: a chunked body over the 1 MiB cap",
        {**figures, "body_bytes_the_client_got_out": sent, "temp_files_in_the_bridge": len(temp)},
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < 300 << 20 and temp == []
    assert good_query(port) < 60


def test_a_target_of_12_million_combinations_is_refused_and_others_are_served(bridge):
    port, proc = bridge
    # Three targets of 2,000 x 2,000 {a,b} alternatives: 12,000,000 (node, field) pairs
    # in a 37 KiB body (a target's text is at most 16 KiB).
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    names = [a + b for a in alphabet for b in alphabet][:2000]
    side = "{" + ",".join(names) + "}"
    body = _query([f"{side}::{side}"] * 3)
    assert 30_000 < len(body) < 50_000
    watch = Watch(lambda: [proc.pid])
    good = GoodClient(port)
    answers = [_request(port, "POST", "/query", body) for _ in range(20)]
    latencies = good.stop()
    figures = watch.stop()
    report(
        "grafana: 20 requests of 12,000,000 {a,b} combinations (37 KiB each)",
        {**figures, **latency_figures(latencies), "answer": answers[0][1][:160].decode()},
    )
    for status, text in answers:
        assert status == 400
        assert "4,000,000 series" in text.decode() and "max_series" in text.decode()
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 64  # the issue: +1,555 MiB
    assert latencies


def test_an_expensive_query_does_not_hold_up_another_clients_query(bridge):
    """Every field of a 2,000-field node at 2,500 points: millions of values for
    the bridge to shape and encode. A small query from another client is served
    meanwhile, many times over."""
    port, proc = bridge
    watch = Watch(lambda: [proc.pid])
    expensive: dict = {}

    def ask() -> None:
        started = time.monotonic()
        status, body = _request(port, "POST", "/query", _query(["wide::*"], 2500, 5000), 120)
        expensive.update(status=status, size=len(body), seconds=time.monotonic() - started)

    worker = threading.Thread(target=ask)
    good = GoodClient(port)
    worker.start()
    during: list[float] = []
    while worker.is_alive():
        before = len(good.latencies)
        worker.join(0.01)
        if worker.is_alive():
            during += good.latencies[before:]
    latencies = good.stop()
    figures = watch.stop()
    report(
        "grafana: wide::* (2,000 series x 2,500 points) beside a small panel",
        {
            **figures,
            "expensive_status": expensive.get("status"),
            "expensive_seconds": round(expensive.get("seconds", 0), 3),
            "expensive_answer_mib": round(expensive.get("size", 0) / 2**20, 1),
            "good_requests_during_expensive": len(during),
            **latency_figures(during or latencies),
        },
    )
    assert expensive["status"] == 200
    assert len(during) >= 5, "the small panel was not served while the big query ran"
    assert fd_count(proc.pid) > 0
