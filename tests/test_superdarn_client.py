"""Radar client: backoff and staleness on a fake clock; real TCP against the simulator."""

from __future__ import annotations

import argparse
import bz2
import itertools
import pathlib
import random
import subprocess
import sys
import time

import dmap as darn
import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from nodes.radar import dmap, synth
from nodes.radar.products import radar_time
from nodes.superdarn import simulator
from nodes.superdarn.client import Backoff, RadarClient
from nodes.superdarn.framing import frame
from tests.harness import free_port

T0 = 1_700_000_040.0


def record_bytes(bmnum: int = 0) -> bytes:
    return dmap.encode_record(
        next(itertools.islice(synth.RadarSynth(5, sounding_every=0).records(T0 + 3 * bmnum), 1))
    )


class Harness:
    """A RadarClient on a MemoryReactorClock, with helpers to play the network."""

    def __init__(self, **options) -> None:
        self.reactor = MemoryReactorClock()
        self.records: list[dict] = []
        self.statuses: list[dict] = []
        options.setdefault("backoff", Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.25))
        options.setdefault("reconnect_after_silence", None)
        self.client = RadarClient(
            "radar.test",
            1401,
            self.records.append,
            self.statuses.append,
            reactor=self.reactor,
            **options,
        )

    @property
    def attempts_made(self) -> int:
        return len(self.reactor.tcpClients)

    def fail_connect(self) -> float:
        """The pending attempt is refused; returns the delay chosen."""
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[-1], Failure(ConnectionRefusedError())
        )
        return self.client.next_attempt - self.reactor.seconds()

    def accept(self) -> tuple[Protocol, StringTransport]:
        factory = self.reactor.tcpClients[-1][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def lose(self) -> float:
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionLost(self.reactor.connectors[-1], Failure(ConnectionDone()))
        return self.client.next_attempt - self.reactor.seconds()


def test_backoff_grows_is_capped_and_jittered():
    b = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.25)
    assert [b.delay(n, lambda: 0.5) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.delay(3, lambda: 0.0) == 6.0 and b.delay(3, lambda: 1.0) == 10.0
    assert b.delay(10_000, lambda: 1.0) == 30.0  # capped, and no overflow
    with pytest.raises(ValueError):
        Backoff(initial=0)


def test_first_connect_failure_is_retried_forever_with_capped_backoff():
    h = Harness(rand=random.Random(4).random, stale_after=1e9)
    h.client.start()
    assert h.attempts_made == 1
    delays = []
    for n in range(40):
        delay = h.fail_connect()
        delays.append(delay)
        base = min(30.0, 2.0**n)
        assert 0.75 * base - 1e-9 <= delay <= min(30.0, 1.25 * base) + 1e-9
        assert h.client.status()["state"] == "waiting"
        h.reactor.advance(delay * 0.999)
        assert h.attempts_made == n + 1  # not a moment too early
        h.reactor.advance(delay * 0.002)
        assert h.attempts_made == n + 2
    assert len(set(delays[10:])) > 1  # jitter keeps retries of many clients apart
    assert "connect failed" in h.statuses[-1]["error"]


def test_backoff_restarts_only_after_a_connection_delivered_a_frame():
    h = Harness(rand=lambda: 0.5, stale_after=1e9)
    h.client.start()
    for expected in (1, 2, 4):
        assert h.fail_connect() == expected
        h.reactor.advance(expected)
    # Accepted and closed at once (a full server): the backoff keeps growing.
    h.accept()
    assert h.lose() == 8
    h.reactor.advance(8)
    protocol, _ = h.accept()
    assert h.statuses[-1]["connected"] is True
    protocol.dataReceived(frame(record_bytes()))
    assert len(h.records) == 1 and h.records[0]["stid"] == 5
    assert h.lose() == 1  # a working connection was lost: start again quickly


def test_records_decode_across_reads_and_bad_frames_are_counted():
    h = Harness(stale_after=1e9)
    h.client.start()
    protocol, _ = h.accept()
    data = frame(record_bytes(0)) + frame(b"\x01\x00\x01\x00 not dmap") + frame(record_bytes(1))
    for i in range(0, len(data), 100):
        protocol.dataReceived(data[i : i + 100])
    assert [r["bmnum"] for r in h.records] == [0, 1]
    status = h.client.status()
    assert status["records"] == 2 and status["bad_records"] == 1 and "bad record" in status["error"]


def test_a_failing_record_handler_does_not_cut_the_feed():
    h = Harness(stale_after=1e9)
    seen = []

    def handler(record):
        seen.append(record["bmnum"])
        raise RuntimeError("consumer bug")

    h.client.on_record = handler
    h.client.start()
    protocol, transport = h.accept()
    protocol.dataReceived(frame(record_bytes(0)) + frame(record_bytes(1)))
    assert seen == [0, 1] and not transport.disconnecting


def test_stale_after_silence_and_fresh_again_on_data():
    h = Harness(stale_after=100.0)
    h.client.start()
    protocol, _ = h.accept()
    protocol.dataReceived(frame(record_bytes()))
    h.reactor.advance(99)
    assert not h.client.stale
    h.reactor.advance(2)
    assert h.client.stale and h.statuses[-1]["stale"] is True
    assert h.statuses[-1]["connected"] is True  # connected yet silent
    protocol.dataReceived(frame(record_bytes(1)))
    assert not h.client.stale and h.statuses[-1]["stale"] is False


def test_a_radar_that_never_answers_goes_stale_too():
    h = Harness(stale_after=50.0, rand=lambda: 0.5)
    h.client.start()
    for _ in range(6):
        h.reactor.advance(h.fail_connect())
    assert h.client.stale and any(s["stale"] for s in h.statuses)


def test_silent_connection_is_dropped_and_made_again():
    h = Harness(stale_after=1e9, reconnect_after_silence=300.0, rand=lambda: 0.5)
    h.client.start()
    protocol, transport = h.accept()
    protocol.dataReceived(frame(record_bytes()))
    h.reactor.advance(299)
    assert not transport.disconnecting
    protocol.dataReceived(frame(b""))  # any bytes count as life, even an empty frame
    h.reactor.advance(2)
    assert not transport.disconnecting
    h.reactor.advance(299)
    assert transport.disconnecting
    h.lose()
    h.reactor.advance(1)
    assert h.attempts_made == 2


def test_stop_cancels_retries():
    h = Harness(stale_after=10.0, rand=lambda: 0.5)
    h.client.start()
    h.fail_connect()
    d = h.client.stop()
    assert d.called
    h.reactor.advance(1000)
    assert h.attempts_made == 1 and h.client.status()["state"] == "stopped"
    assert not h.client.stale  # no timers left running


# ------------------------------------------------------------------ real TCP


async def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


def fast_synth(stid: int = 5):
    return simulator.synth_schedule(synth.RadarSynth(stid, sounding_every=0), time.time())


def real_client(port: int, records: list, statuses: list) -> RadarClient:
    return RadarClient(
        "127.0.0.1",
        port,
        records.append,
        statuses.append,
        backoff=Backoff(initial=0.05, factor=2.0, maximum=0.4, jitter=0.2),
        stale_after=60.0,
        reconnect_after_silence=None,
    )


@pytest.mark.slow  # about 1 s in the unit lane
@pytest_twisted.ensureDeferred
async def test_client_against_simulator_first_connect_fails_then_server_appears():
    port = free_port()
    records: list[dict] = []
    statuses: list[dict] = []
    client = real_client(port, records, statuses)
    client.start()
    listening = None
    try:
        await wait_until(lambda: client.attempts >= 3, what="repeated connect attempts")
        assert records == [] and statuses[-1]["error"].startswith("connect failed")
        listening, server = simulator.start_simulator(reactor, port, fast_synth(), speed=300.0)
        await wait_until(lambda: len(records) >= 20, what="records from the simulator")
        assert client.status()["connected"] and client.attempts == 0
        assert {r["stid"] for r in records} == {5}
        beams = [r["bmnum"] for r in records[:20]]
        assert all((b - a) % 16 == 1 for a, b in zip(beams, beams[1:], strict=False))
        assert all(r["scan"] == (1 if r["bmnum"] == 0 else 0) for r in records)
        assert abs(radar_time(records[-1]) - time.time()) < 60  # stamped when sent

        # The site goes away and comes back: the client reconnects on its own.
        server.stop()
        await listening.stopListening()
        for c in list(server.clients):
            c.transport.loseConnection()
        await wait_until(lambda: not client.status()["connected"], what="disconnect")
        count = len(records)
        listening, server = simulator.start_simulator(reactor, port, fast_synth(), speed=300.0)
        await wait_until(lambda: len(records) >= count + 5, what="records after the restart")
        assert client.status()["connections"] == 2
    finally:
        await client.stop()
        if listening is not None:
            server.stop()
            await listening.stopListening()
            for c in list(server.clients):
                c.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_simulator_plays_a_bz2_file_with_times_rewritten(tmp_path):
    original = list(itertools.islice(synth.RadarSynth(64, xcf=True).records(T0), 20))
    path = tmp_path / "20231114.2214.00.inv.fitacf.bz2"
    path.write_bytes(bz2.compress(darn.write_fitacf(original)))
    schedule = simulator.make_schedule("inv", str(path))
    port = free_port()
    listening, server = simulator.start_simulator(reactor, port, schedule, speed=1000.0)
    records: list[dict] = []
    client = real_client(port, records, [])
    client.start()
    try:
        await wait_until(lambda: len(records) >= 25, what="file records, looped")
        assert all(r["stid"] == 64 for r in records)
        assert radar_time(records[0]) > T0 + 3600  # stamped now, not with the file's time

        def signature(r):
            return (
                r["bmnum"],
                r["scan"],
                r["noise.sky"],
                r["slist"].tolist() if "slist" in r else None,
            )

        # What arrives is a window of the file played in a loop, contents untouched.
        expected = [
            signature(r) for r in darn.read_fitacf(darn.write_fitacf(original), mode="strict")
        ]
        start = expected.index(signature(records[0]))
        got = [signature(r) for r in records[:25]]
        assert got == [expected[(start + i) % len(expected)] for i in range(25)]
    finally:
        await client.stop()
        server.stop()
        await listening.stopListening()
        for c in list(server.clients):
            c.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_simulator_serves_at_most_16_clients():
    port = free_port()
    listening, server = simulator.start_simulator(reactor, port, fast_synth(), speed=50.0)
    opened: list[Protocol] = []
    closed: list[Protocol] = []

    class Reader(Protocol):
        def connectionMade(self):
            opened.append(self)

        def connectionLost(self, reason=None):
            closed.append(self)

    try:
        for _ in range(17):
            reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(Reader))
        await wait_until(
            lambda: len(opened) == 17 and len(server.clients) == 16 and closed,
            what="16 clients served and one turned away",
        )
        assert len(closed) == 1 and len(server.clients) == 16
    finally:
        server.stop()
        for p in opened:
            p.transport.loseConnection()
        await listening.stopListening()


@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_simulator_command_line_process():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes.superdarn.simulator",
            "--code",
            "pgr",
            "--port",
            str(port),
            "--speed",
            "200",
            "--scan-sign",
            "-1",
        ],
        cwd=str(pathlib.Path(__file__).resolve().parents[1]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records: list[dict] = []
    client = real_client(port, records, [])
    client.start()  # the process may not listen yet: the client retries
    try:
        await wait_until(lambda: len(records) >= 20, what="records from the simulator process")
        assert {r["stid"] for r in records} == {6}
        assert {r["scan"] for r in records} <= {-1, 0, -2}
        assert any(r["scan"] == -1 for r in records)
    finally:
        await client.stop()
        proc.terminate()
        proc.wait(timeout=10)


def test_simulator_command_line_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.fitacf"
    bad.write_bytes(b"\x01\x00\x01\x00garbage")
    parser = argparse.ArgumentParser()
    simulator.configure(parser)
    for args in (
        ["--file", str(bad)],
        ["--file", str(tmp_path / "missing")],
        ["--code", "zzz"],
        ["--speed", "0"],
        ["--speed", "nan"],
    ):
        assert simulator.main(parser.parse_args(args)) == 2  # before any reactor is started
        err = capsys.readouterr().err
        assert ("--speed" in err) if args[0] == "--speed" else ("cannot start" in err)


def test_a_record_with_a_non_utf8_string_is_kept_and_counted():
    h = Harness(stale_after=1e9)
    h.client.start()
    protocol, _ = h.accept()
    record = next(itertools.islice(synth.RadarSynth(5, sounding_every=0).records(T0), 1))
    raw = dmap.encode_record({**record, "combf": "x@x"}).replace(b"x@x", b"x\xe9x")
    protocol.dataReceived(frame(raw) + frame(record_bytes(1)))
    assert len(h.records) == 2 and h.records[0]["combf"] == "x\ufffdx"
    status = h.client.status()
    assert status["records"] == 2 and status["bad_records"] == 0
    assert status["replaced_strings"] == 1
