"""`obsmesh replay superdarn` as a process: archived files into the Redis
history and the echo database of a node, which then serves them."""

from __future__ import annotations

import bz2
import itertools
import subprocess
import time

import dmap as darn
import pytest
import pytest_twisted

from nodes.radar import synth
from nodes.superdarn import replay
from tests.harness import PYTHON, REPO, connect, spawn, stop_process, wait_until

NAME = "sdreplay"


def run_replay(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "obsmesh", "replay", "superdarn", *args],
        env=env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest_twisted.ensureDeferred
async def test_replay_into_redis_and_echo_db_served_by_the_node(router, redis_server, tmp_path):
    start = time.time() - 4 * 3600
    start -= start % 60
    records = list(
        itertools.islice(synth.RadarSynth(65, seed=5, sounding_every=3).records(start), 150)
    )
    first, second = tmp_path / "a.fitacf.bz2", tmp_path / "b.fitacf"
    first.write_bytes(bz2.compress(darn.write_fitacf(records[:70])))  # a scan straddles the files
    second.write_bytes(darn.write_fitacf(records[70:]))
    # What the products module makes of these files, for comparison.
    scans: list[dict] = []
    replay.replay_files([str(first), str(second)], lambda b: None, scans.append)
    conf = tmp_path / "mesh.toml"
    conf.write_text(
        f'store = "redis"\nredis_url = "{redis_server.url}"\n'
        f'[superdarn]\necho_db = "{tmp_path / "echoes.sqlite"}"\n'
    )
    env = router.env()

    done = run_replay(["--config", str(conf), "--name", NAME, str(first), str(second)], env)
    assert done.returncode == 0, done.stderr
    assert "150 records, 150 beams" in done.stdout and "0 rows already stored" in done.stdout
    assert "100.0%" in done.stderr  # the progress bar reached the end
    again = run_replay(["--config", str(conf), "--name", NAME, "--quiet", str(second)], env)
    assert again.returncode == 0 and "80 records" in again.stdout
    assert (
        f"{80 + 5} rows already stored" in again.stdout
    )  # 80 beams and the file's 5 complete scans

    proc = spawn(
        ["node", "superdarn", "--name", NAME, "--config", str(conf)], env, tmp_path / "node.log"
    )
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _listed(s, NAME), 30, "the node")
        fields, timelines = await s.call(
            f"obsmesh.consumer.{NAME}.get_fields", start - 60, time.time()
        )
        assert {"rkn.beam", "rkn.scan"} <= set(timelines) and fields["rkn.scan.total"][
            "units"
        ] == ""
        r = await s.call(
            f"obsmesh.consumer.{NAME}.get_data",
            ["rkn.scan.total", "rkn.scan.complete"],
            start - 60,
            time.time(),
        )
        assert r["timeline"]["rkn.scan"]["t"] == [x["time"] for x in scans]  # nothing stored twice
        assert r["data"]["rkn.scan.total"] == [x["total"] for x in scans]
        assert r["data"]["rkn.scan.complete"] == [True] * (len(scans) - 1) + [False]
        beams = await s.call(
            f"obsmesh.consumer.{NAME}.get_data", ["rkn.echoes"], start - 60, time.time()
        )
        assert beams["data"]["rkn.echoes"] == [len(x.get("slist", [])) for x in records]
        echoes = await s.call(f"obsmesh.consumer.{NAME}.get_echoes", start - 60, 0, "rkn")
        assert [(e["time"], e["total"], e["beams"]) for e in echoes] == [
            (x["time"], x["total"], x["beams"]) for x in scans
        ]
    finally:
        stop_process(proc)
        s.leave()


@pytest.mark.slow  # measured 5.5 s
@pytest.mark.router  # starts its own processes
def test_replay_refuses_the_memory_store_unless_echoes_only(tmp_path):
    records = list(
        itertools.islice(synth.RadarSynth(5, sounding_every=0).records(time.time() - 3600), 40)
    )
    path = tmp_path / "sas.fitacf"
    path.write_bytes(darn.write_fitacf(records))
    conf = tmp_path / "mesh.toml"
    conf.write_text(f'store = "memory"\n[superdarn]\necho_db = "{tmp_path / "echoes.sqlite"}"\n')
    refused = run_replay(["--config", str(conf), str(path)], {"PYTHONPATH": str(REPO)})
    assert refused.returncode == 2 and "in-memory store" in refused.stderr
    done = run_replay(
        [
            "--config",
            str(conf),
            "--echoes-only",
            "--quiet",
            str(path),
            str(tmp_path / "missing.fitacf"),
        ],
        {"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1 and "missing.fitacf" in done.stderr and "40 beams" in done.stdout
    from nodes.radar.echoes import EchoStore

    store = EchoStore(str(tmp_path / "echoes.sqlite"))
    assert store.codes() == ["sas"] and store.count() == sum(r["scan"] == 1 for r in records)
    store.close()


async def _listed(session, name):
    return name in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]
