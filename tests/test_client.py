"""The Python client through a real router, written like a user's script: plain
blocking calls, no reactor in the test's thread. Nodes are separate processes
(tests/probe_process.py) whose samples the tests can compute: sample k is at
t = base + k * dt with x = k, y = k / 2, and every tenth k a "slow" sample."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from consumers.client import (
    AsyncMesh,
    Batch,
    Closed,
    Gap,
    InvalidArgument,
    Mesh,
    MeshUnavailable,
    UnknownField,
    UnknownNode,
)
from tests.harness import PYTHON, REPO, free_port, stop_process, wait_for

DT = 0.01


def expected(base: float, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, x and y of samples k0 .. k1-1, computed as the probe computes them."""
    k = np.arange(k0, k1)
    return base + k * DT, k.astype(np.float64), k / 2.0


class Probe:
    """A probe node process pointed at a router."""

    def __init__(self, router, name: str, history: int, live: bool = False, **env: str) -> None:
        self.name = name
        self.base = float(int(time.time())) - history * DT
        environ = router.env()
        environ.update(env)
        args = [
            PYTHON,
            "tests/probe_process.py",
            name,
            "--base",
            repr(self.base),
            "--dt",
            str(DT),
            "--history",
            str(history),
        ]
        if live:
            args.append("--live")
        self.log = router.dir / f"probe-{name}.log"
        self.proc = subprocess.Popen(
            args,
            env=environ,
            cwd=str(REPO),
            stdout=open(self.log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_listed(self, mesh: Mesh) -> None:
        def listed():
            if self.proc.poll() is not None:
                raise RuntimeError(f"probe exited:\n{self.log.read_text()[-3000:]}")
            return any(n["name"] == self.name for n in mesh.nodes())

        wait_for(listed, 30, f"node {self.name} to be listed", interval=0.1)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def history(router):
    """A node holding 3000 samples of history and no live data."""
    probe = Probe(router, "hist", history=3000)
    with Mesh(router.backend_url, router.realm) as mesh:
        probe.wait_listed(mesh)
    yield probe
    probe.stop()


@pytest.fixture
def mesh(router):
    with Mesh(router.backend_url, router.realm, timeout=20) as m:
        yield m


def test_lists_nodes_and_fetches_exact_history_as_numpy(history, mesh):
    listing = {n["name"]: n for n in mesh.nodes()}
    assert listing["hist"]["kind"] == "probe"
    assert listing["hist"]["encodings"] == ["list", "array"]  # so the client asks for arrays
    base = history.base
    r = mesh.get("hist", ["x", "y", "label", "ok"], base, base + 3000 * DT)
    t, x, y = expected(base, 0, 3000)
    assert sorted(r.timelines) == ["fast", "slow"]
    assert (
        np.array_equal(r.time("x"), t) and np.array_equal(r["x"], x) and np.array_equal(r["y"], y)
    )
    assert r["x"].dtype == np.float64 and r["x"].flags.writeable
    assert r.time("label").tolist() == (base + np.arange(0, 3000, 10) * DT).tolist()
    assert r["label"].tolist() == [f"s{k}" for k in range(0, 3000, 10)]
    assert r["ok"].dtype == bool and r["ok"].tolist() == [
        (k // 10) % 2 == 0 for k in range(0, 3000, 10)
    ]
    # [start, end): the sample at `end` is excluded
    part = mesh.get("hist", "x", base + 100 * DT, base + 200 * DT)
    assert np.array_equal(part["x"], np.arange(100.0, 200.0))


def test_times_in_every_accepted_form(history, mesh):
    base = history.base
    start = dt.datetime.fromtimestamp(base + 10 * DT, dt.UTC)
    r = mesh.get("hist", "x", start, (start + dt.timedelta(seconds=0.5)).isoformat())
    assert np.array_equal(r["x"], np.arange(10.0, 60.0))
    naive = start.replace(tzinfo=None)  # naive means UTC
    assert np.array_equal(mesh.get("hist", "x", naive, base + 60 * DT)["x"], np.arange(10.0, 60.0))
    # relative: all 3000 samples are within the last day
    assert mesh.get("hist", "x", "1d", "now")["x"].size == 3000
    assert mesh.get("hist", "x", -86400, 0)["x"].size == 3000
    assert mesh.get("hist", "x", str(base), str(base + 1))["x"].size == 100


def test_fields_status_reductions_and_frame(history, mesh):
    base = history.base
    fields = mesh.fields("hist", base, base + 30)
    assert fields["x"]["timeline"] == "fast" and fields["x"]["units"] == "V"
    assert fields.timelines["fast"]["interval"] == pytest.approx(DT)
    status = mesh.status("hist")
    assert status["name"] == "hist" and status["counters"]["samples"] >= 3000
    binned = mesh.get("hist", "x", base, base + 30, min_stride="1s")
    assert binned["x"].size == 30 and binned["x"][0] == pytest.approx(np.mean(np.arange(100.0)))
    spikes = mesh.get("hist", "x", base, base + 30, min_stride=1, reduce="minmax")
    assert spikes["x"][:2].tolist() == [0.0, 99.0]
    frame = mesh.get("hist", ["x", "label"], base, base + 1, as_frame=True)
    assert list(frame.columns) == ["x", "label"] and len(frame) == 100
    assert str(frame.index.tz) == "UTC" and frame["label"].iloc[0] == "s0"
    assert frame.index[1] - frame.index[0] == np.timedelta64(10, "ms")


def test_large_get_uses_progressive_results_transparently(router, mesh, capsys):
    # This node refuses replies over 1000 values: 20000 rows can only come in chunks.
    probe = Probe(router, "small-budget", history=20000, OBSMESH_POINT_BUDGET="1000")
    try:
        probe.wait_listed(mesh)
        base = probe.base
        r = mesh.get("small-budget", ["x", "y"], base, base + 200, progress=True)
        t, x, y = expected(base, 0, 20000)
        assert (
            np.array_equal(r.time("x"), t)
            and np.array_equal(r["x"], x)
            and np.array_equal(r["y"], y)
        )
        err = (
            capsys.readouterr().err
        )  # the bar reached the full count (tqdm, or the plain fallback)
        assert "20.0k/20.0k" in err or "20,000 of 20,000" in err
    finally:
        probe.stop()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m: m.get("no-such-node", "x", -60, 0), UnknownNode, ["no-such-node", "hist"]),
        (lambda m: m.get("hist", ["x", "nope"], -60, 0), UnknownField, ["nope"]),
        (lambda m: m.get("hist", "x", 2000, 1000), InvalidArgument, ["start", "after end"]),
        (
            lambda m: m.get("hist", "x", "yesterday-ish", 0),
            InvalidArgument,
            ["start", "yesterday-ish"],
        ),
        (lambda m: m.get("hist", "x", "-1h", "tomorrow"), InvalidArgument, ["end", "tomorrow"]),
        (lambda m: m.get("hist", "x", -60, 0, min_stride=-1), InvalidArgument, ["min_stride"]),
        (
            lambda m: m.get("hist", "x", -60, 0, reduce="median"),
            InvalidArgument,
            ["reduce", "median"],
        ),
        (lambda m: m.get("Bad.Name", "x"), InvalidArgument, ["Bad.Name"]),
        (lambda m: m.get("hist", []), InvalidArgument, ["empty"]),
        (lambda m: m.fields("no-such-node"), UnknownNode, ["no-such-node"]),
        (lambda m: m.status("no-such-node"), UnknownNode, ["no-such-node"]),
        (lambda m: m.stream("hist", ["nope"]), UnknownField, ["nope"]),
        (lambda m: m.stream("no-such-node"), UnknownNode, ["no-such-node"]),
    ],
)
def test_bad_arguments_raise_clear_exceptions(history, mesh, call, error, words):
    with pytest.raises(error) as info:
        call(mesh)
    for w in words:
        assert w in str(info.value)
    # and the client keeps working
    assert mesh.get("hist", "x", history.base, history.base + DT)["x"].tolist() == [0.0]


@pytest.mark.slow  # over 1 s in the unit lane
def test_unreachable_router_is_reported_with_its_url():
    url = f"rs://127.0.0.1:{free_port()}"
    with Mesh(url, "obsmesh", timeout=1) as m, pytest.raises(MeshUnavailable) as info:
        m.nodes()
    assert url in str(info.value) and "cannot connect" in str(info.value)


def test_refused_credentials_fail_fast_and_name_the_principal(router):
    with Mesh(router.backend_url, router.realm, authid="client", secret="wrong", timeout=20) as m:
        with pytest.raises(MeshUnavailable) as info:
            m.nodes()
    # the router's refusal itself, not a timeout waiting for a session
    assert (
        "refused" in str(info.value)
        and "'client'" in str(info.value)
        and "not_authorized" in str(info.value)
    )


def test_two_clients_and_many_threads(history, router):
    base = history.base
    t, x, _ = expected(base, 0, 3000)
    errors: list[BaseException] = []
    with (
        Mesh(router.backend_url, router.realm) as a,
        Mesh(router.ws_url, router.realm, serializer="json") as b,
    ):

        def worker(mesh: Mesh, i: int) -> None:
            try:
                for j in range(5):
                    k0 = (i * 97 + j * 13) % 2500
                    r = mesh.get(
                        "hist", "x", base + k0 * DT - DT / 2, base + (k0 + 500) * DT - DT / 2
                    )
                    assert np.array_equal(r["x"], x[k0 : k0 + 500]), (i, j)
                    assert np.array_equal(r.time("x"), t[k0 : k0 + 500])
            except BaseException as exc:  # noqa: BLE001 - reported to the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(a if i % 2 else b, i)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert not errors, errors


def collect(stream, n: int, timeout: float = 30) -> list[Batch | Gap]:
    """Items until n samples have arrived."""
    items, got = [], 0
    deadline = time.monotonic() + timeout
    while got < n:
        item = stream.get(timeout=max(0.1, deadline - time.monotonic()))
        items.append(item)
        if isinstance(item, Batch):
            got += len(item)
    return items


def check_contiguous(base: float, batches: list[Batch]) -> np.ndarray:
    """The samples form one unbroken run of k with exact values; returns k."""
    t = np.concatenate([b.t for b in batches])
    x = np.concatenate([b.data["x"] for b in batches])
    k = np.round((t - base) / DT).astype(np.int64)
    assert np.array_equal(np.diff(k), np.ones(k.size - 1, dtype=np.int64)), (
        "samples missing or repeated"
    )
    assert np.array_equal(t, base + k * DT) and np.array_equal(x, k.astype(float))
    if "y" in batches[0].data:
        assert np.array_equal(np.concatenate([b.data["y"] for b in batches]), k / 2.0)
    return k


def test_stream_delivers_live_samples_in_order(router, mesh):
    probe = Probe(router, "live", history=0, live=True)
    try:
        probe.wait_listed(mesh)
        with mesh.stream("live", ["x", "y"]) as stream:
            items = collect(stream, 100)
        assert all(isinstance(i, Batch) and i.timeline == "fast" and not i.backfill for i in items)
        assert set(items[0].data) == {"x", "y"}
        check_contiguous(probe.base, items)
        got = []
        sub = mesh.subscribe("live", got.append, ["label"])
        wait_for(lambda: sum(len(b) for b in got) >= 3, 20, "subscribed slow samples")
        sub.close()
        assert all(b.timeline == "slow" and set(b.data) == {"label"} for b in got)
        for b in got:
            k = np.round((b.t - probe.base) / DT).astype(int)
            assert b.data["label"].tolist() == [f"s{i}" for i in k]
        assert not sub.thread.is_alive()  # close() ends the callback thread
    finally:
        probe.stop()


def test_stream_survives_router_restart_and_reports_the_gap(own_router):
    probe = Probe(own_router, "restart", history=0, live=True)
    with Mesh(own_router.backend_url, own_router.realm, timeout=60) as mesh:
        try:
            probe.wait_listed(mesh)
            with mesh.stream("restart", ["x", "y"]) as stream:
                before = collect(stream, 50)
                own_router.restart()  # a few seconds without a router
                after = collect(stream, 300, timeout=90)
            gaps = [i for i in after if isinstance(i, Gap)]
            assert len(gaps) == 1, gaps
            gap = gaps[0]
            assert gap.backfilled and gap.recovered > 0 and gap.error is None
            assert "connection" in gap.reason and gap.end > gap.start
            items = before + after
            at = items.index(gap)
            delivered = [i for i in items[:at] if isinstance(i, Batch)]
            assert gap.last == {"fast": delivered[-1].t[-1]}
            # what follows the gap: the recovered samples first, then live ones
            kinds = [i.backfill for i in items[at + 1 :]]
            assert kinds[0] and kinds == sorted(kinds, reverse=True)
            batches = [i for i in items if isinstance(i, Batch)]
            k = check_contiguous(probe.base, batches)
            # the backfilled samples are exactly those between the gap's edges
            recovered = [i for i in after if isinstance(i, Batch) and i.backfill]
            assert sum(len(b) for b in recovered) == gap.recovered
            assert k.size >= 350
        finally:
            probe.stop()


def test_slow_reader_gets_a_gap_then_the_missed_samples(router, mesh):
    probe = Probe(router, "slowreader", history=0, live=True)
    try:
        probe.wait_listed(mesh)
        with mesh.stream("slowreader", "x", maxsize=2) as stream:
            # Do not read: the inbox fills and later batches cannot be queued.
            wait_for(lambda: stream._core.pending is not None, 30, "the inbox to overflow")
            items = collect(stream, 200)
        gap = next(i for i in items if isinstance(i, Gap))
        assert "behind" in gap.reason and gap.backfilled and gap.recovered > 0
        check_contiguous(probe.base, [i for i in items if isinstance(i, Batch)])
    finally:
        probe.stop()


def test_stream_since_starts_with_history(history, mesh):
    # No live data on this node: `since` brings the stored samples, then silence.
    with mesh.stream("hist", "x", since=history.base + 2990 * DT) as stream:
        first = stream.get(timeout=20)
        assert isinstance(first, Batch) and first.backfill
        assert first.data["x"].tolist() == [float(k) for k in range(2990, 3000)]


def test_close_ends_streams_and_calls(history, router):
    mesh = Mesh(router.backend_url, router.realm)
    stream = mesh.stream("hist", "x")
    ended = threading.Event()

    def reader():
        for _ in stream:
            pass
        ended.set()

    th = threading.Thread(target=reader)
    th.start()
    mesh.close()
    assert ended.wait(10)
    th.join(5)
    with pytest.raises(Closed):
        mesh.nodes()
    mesh.close()  # twice is fine


def test_asyncio_flavour(history, router):
    async def main():
        async with AsyncMesh(router.backend_url, router.realm) as mesh:
            names = [n["name"] for n in await mesh.nodes()]
            r, fields = await asyncio.gather(
                mesh.get("hist", ["x", "y"], history.base, history.base + 10),
                mesh.fields("hist", history.base, history.base + 10),
            )
            with pytest.raises(UnknownField):
                await mesh.get("hist", "nope")
            async with await mesh.stream("hist", "x", since=history.base + 2995 * DT) as live:
                item = await live.get(timeout=20)
            return names, r, fields, item

    names, r, fields, item = asyncio.run(main())
    assert "hist" in names and set(fields) >= {"x", "y"}
    _, x, y = expected(history.base, 0, 1000)
    assert np.array_equal(r["x"], x) and np.array_equal(r["y"], y)
    assert item.data["x"].tolist() == [2995.0, 2996.0, 2997.0, 2998.0, 2999.0]


def run_cli(router, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The commands as their own process, configured by the environment."""
    return subprocess.run(
        [PYTHON, "-m", "consumers.client.cli", *args],
        env=router.env(),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(router, capsys, *args: str) -> tuple[int, str, str]:
    """The commands in this process (faster), pointed at the router by options."""
    from consumers.client import cli as commands

    capsys.readouterr()
    code = commands.main([args[0], *args[1:], "--url", router.backend_url, "--realm", router.realm])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_nodes_fields_get_csv_and_json(history, router, tmp_path, capsys):
    out = run_cli(router, "nodes", "--json")
    assert out.returncode == 0, out.stderr
    assert "hist" in [n["name"] for n in json.loads(out.stdout)]
    code, text, _ = cli(router, capsys, "nodes")
    assert (
        code == 0
        and text.splitlines()[0].split() == ["NAME", "KIND", "DESCRIPTION"]
        and "hist" in text
    )
    code, text, _ = cli(router, capsys, "fields", "hist", "--start", "1d")
    assert code == 0 and "x" in text and "fast" in text and "0.01 s" in text
    base = history.base
    code, text, err = cli(
        router,
        capsys,
        "get",
        "hist",
        "x",
        "label",
        "--start",
        repr(base),
        "--end",
        repr(base + 0.2),
    )
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0] == "time,timeline,x,label"
    assert lines[1] == f"{base!r},fast,0.0," and lines[2] == f"{base!r},slow,,s0"
    assert lines[3] == f"{base + DT!r},fast,1.0,"
    assert len(lines) == 1 + 20 + 2
    path = tmp_path / "out.json"
    code, _, err = cli(
        router,
        capsys,
        "get",
        "hist",
        "x",
        "--start",
        repr(base),
        "--end",
        repr(base + 30),
        "-o",
        str(path),
    )
    assert code == 0, err
    doc = json.loads(path.read_text())
    t, x, _ = expected(base, 0, 3000)
    assert (
        doc["timelines"]["fast"]["t"] == t.tolist()
        and doc["timelines"]["fast"]["data"]["x"] == x.tolist()
    )
    code, _, err = cli(router, capsys, "get", "hist", "nope")
    assert code == 1 and "nope" in err and "Traceback" not in err
    code, _, err = cli(router, capsys, "get", "hist", "x", "--start", "whenever")
    assert code == 2 and "whenever" in err


def test_cli_tail_prints_live_samples(router, capsys):
    probe = Probe(router, "tailed", history=0, live=True)
    try:
        with Mesh(router.backend_url, router.realm) as mesh:
            probe.wait_listed(mesh)
        out = run_cli(
            router, "tail", "tailed", "x", "--format", "csv", "--time", "unix", "-n", "30"
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "time,timeline,x" and len(lines) == 31
        rows = [line.split(",") for line in lines[1:]]
        k = [round((float(t) - probe.base) / DT) for t, _, _ in rows]
        assert k == list(range(k[0], k[0] + 30)) and [float(x) for _, _, x in rows] == [
            float(i) for i in k
        ]
        code, text, err = cli(router, capsys, "tail", "tailed", "--format", "json", "-n", "5")
        assert code == 0, err
        objs = [json.loads(line) for line in text.splitlines()]
        assert len(objs) == 5 and all(o["timeline"] in ("fast", "slow") and o["data"] for o in objs)
    finally:
        probe.stop()


def test_client_runs_beside_pytest_twisted_reactor():
    # pytest-twisted owns the global reactor in this process; the client's is its own.
    from twisted.internet import reactor as global_reactor

    from consumers.client.reactor import shared

    assert shared().reactor is not global_reactor
    assert "pytest_twisted" in sys.modules


def test_large_queries_split_into_pieces_give_the_same_answer(router, mesh, monkeypatch):
    import consumers.client.core as core

    probe = Probe(router, "pieces", history=20000)
    try:
        probe.wait_listed(mesh)
        base = probe.base
        whole = mesh.get("pieces", ["x", "y", "label"], base, base + 200)
        binned = mesh.get(
            "pieces", ["x", "label"], base, base + 200, min_stride=0.7, reduce="minmax"
        )
        monkeypatch.setattr(core, "PIECE_VALUES", 500)  # dozens of pieces, fetched 8 at a time
        cut = mesh.get("pieces", ["x", "y", "label"], base, base + 200)
        t, x, y = expected(base, 0, 20000)
        assert (
            np.array_equal(cut.time("x"), t)
            and np.array_equal(cut["x"], x)
            and np.array_equal(cut["y"], y)
        )
        assert np.array_equal(whole["x"], x) and cut["label"].tolist() == whole["label"].tolist()
        cut_binned = mesh.get(
            "pieces", ["x", "label"], base, base + 200, min_stride=0.7, reduce="minmax"
        )
        assert np.array_equal(cut_binned.time("x"), binned.time("x"))
        assert (
            np.array_equal(cut_binned["x"], binned["x"])
            and cut_binned["label"].tolist() == binned["label"].tolist()
        )
    finally:
        probe.stop()
