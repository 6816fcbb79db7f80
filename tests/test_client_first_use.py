"""The first hour with the terminal and a script, as a new user meets them:
a mesh is running and nothing is configured. The commands and `Mesh()` find
the mesh through its public WebSocket (anonymous, read-only), a refused
connection says how to fix it, and the commands behave in a pipe, suggest
names for typos and print values as people read them.

The router runs on free ports, so the one setting a test cannot leave out is
where the public WebSocket is (`OBSMESH_PUBLIC_URL`, what `make run` puts at
ws://127.0.0.1:8080/ws); no router URL, no secret, no config file is given,
and the commands run from a directory with no `.obsmesh` in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from consumers.client import Mesh, MeshUnavailable
from consumers.client.settings import resolve
from tests.harness import PYTHON, REPO, SECRETS_FILE, admit, free_port, stop_process, wait_for


def bare_env(**extra: str) -> dict[str, str]:
    """The user's shell: no OBSMESH_* variable at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSMESH_")}
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


def obsmesh(
    args: list[str], env: dict[str, str], cwd, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "obsmesh", *args],
        env=env,
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def showcase(router, tmp_path_factory):
    """A node with units, precision and a time field (tests/showcase_process.py)."""
    log = tmp_path_factory.mktemp("showcase") / "showcase.log"
    admit("show")  # a node is a named principal of the mesh
    proc = subprocess.Popen(
        [PYTHON, "tests/showcase_process.py", "show", "--history", "900"],
        env=router.env(),
        cwd=str(REPO),
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with Mesh(router.backend_url, router.realm, timeout=30) as m:
            wait_for(lambda: "show" in {n["name"] for n in m.nodes()}, 30, "the showcase node")
        yield "show"
    finally:
        stop_process(proc)


def test_settings_default_to_the_public_websocket_anonymously(tmp_path):
    s = resolve(environ={})
    assert s.url == "ws://127.0.0.1:8080/ws" and s.credentials is None  # what make run serves
    moved = resolve(environ={"OBSMESH_PUBLIC_URL": "ws://10.0.0.5:9000/ws"})
    assert moved.url == "ws://10.0.0.5:9000/ws"
    # the backend only when asked for, and then with the local mesh's secret if there is one
    state = tmp_path / "state"
    state.mkdir()
    asked = resolve(
        environ={"OBSMESH_ROUTER_URL": "rs://127.0.0.1:1", "OBSMESH_STATE_DIR": str(state)}
    )
    assert asked.url == "rs://127.0.0.1:1" and asked.credentials is None
    shutil.copy(SECRETS_FILE, state / "secrets.json")
    found = resolve(
        environ={"OBSMESH_ROUTER_URL": "rs://127.0.0.1:1", "OBSMESH_STATE_DIR": str(state)}
    )
    assert found.credentials is not None and found.credentials.authid == "client"
    assert resolve("ws://h:1/ws", environ={"OBSMESH_STATE_DIR": str(state)}).credentials is None


def test_commands_and_mesh_work_with_nothing_configured(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    listing = obsmesh(["nodes"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "show" in listing.stdout and "showcase" in listing.stdout
    fields = obsmesh(["fields", "show"], env, tmp_path)
    assert fields.returncode == 0 and "pressure" in fields.stdout and "hPa" in fields.stdout
    assert fields.stdout.index("u2.co2_mean") < fields.stdout.index("u10.co2_mean")  # natural order
    assert "°C" in fields.stdout and "degC" not in fields.stdout
    got = obsmesh(["get", "show", "pressure", "--since", "2m"], env, tmp_path)
    assert got.returncode == 0 and got.stdout.startswith("time,timeline,pressure\n")
    assert len(got.stdout.splitlines()) > 60
    tail = obsmesh(["tail", "show", "pressure", "-n", "2"], env, tmp_path)
    assert tail.returncode == 0 and tail.stdout.count("\n") == 2
    script = (
        "from consumers.client import Mesh\n"
        "with Mesh() as m:\n"
        "    print(m.url, sorted(n['name'] for n in m.nodes()))\n"
    )
    run = subprocess.run(
        [PYTHON, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(router.ws_url) and "'show'" in run.stdout


def test_the_quickstart_example_runs_as_the_readme_says(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    run = subprocess.run(
        [
            PYTHON,
            str(REPO / "examples" / "client_quickstart.py"),
            "show",
            "--minutes",
            "5",
            "--batches",
            "2",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "show" in run.stdout and "live show" in run.stdout


def test_a_refused_connection_says_how_to_fix_it(router, tmp_path):
    # the backend, anonymously: the router refuses, and the message says what to do
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url, OBSMESH_ROUTER_URL=router.backend_url)
    refused = obsmesh(["nodes", "--timeout", "20"], env, tmp_path)
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "public WebSocket" in refused.stderr
    assert router.ws_url in refused.stderr and "OBSMESH_SECRETS_FILE" in refused.stderr
    # ... and with the local mesh's secrets file where `make run` keeps it, it works
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(SECRETS_FILE, state / "secrets.json")
    ok = obsmesh(["nodes"], {**env, "OBSMESH_STATE_DIR": str(state)}, tmp_path)
    assert ok.returncode == 0, ok.stderr
    # nothing listening: said at once (not after the whole timeout), with the fix
    nobody = f"ws://127.0.0.1:{free_port()}/ws"
    began = time.monotonic()
    down = obsmesh(["nodes", "--url", nobody], env, tmp_path)
    assert (
        down.returncode == 1 and "Is the mesh running?" in down.stderr and "make run" in down.stderr
    )
    assert time.monotonic() - began < 25  # the default timeout is 30 s
    with pytest.raises(MeshUnavailable) as info, Mesh(nobody, timeout=20) as m:
        m.nodes()
    assert "make run" in str(info.value)


def test_get_into_a_closed_pipe_ends_quietly(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    cmd = f"{sys.executable} -m obsmesh get show pressure cpu --since 15m | head -3"
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.count("\n") == 3
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
    cmd = f"{sys.executable} -m obsmesh tail show | head -1"
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr


def test_typos_get_a_suggestion(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    node = obsmesh(["get", "shwo", "pressure"], env, tmp_path)
    assert node.returncode == 1 and "did you mean 'show'?" in node.stderr
    field = obsmesh(["get", "show", "presure"], env, tmp_path)
    assert field.returncode == 1 and "did you mean 'pressure'?" in field.stderr
    tail = obsmesh(["tail", "show", "cpuu"], env, tmp_path)
    assert tail.returncode == 1 and "did you mean 'cpu'?" in tail.stderr


def test_get_until(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    now = time.time()
    run = obsmesh(
        [
            "get",
            "show",
            "pressure",
            "--since",
            str(now - 300),
            "--until",
            str(now - 240),
            "--format",
            "json",
        ],
        env,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    t = json.loads(run.stdout)["timelines"]["station"]["t"]
    assert 55 <= len(t) <= 61 and now - 300 <= t[0] and t[-1] < now - 240


def test_tail_prints_values_at_their_precision_with_units(router, showcase, tmp_path):
    env = bare_env(OBSMESH_PUBLIC_URL=router.ws_url)
    run = obsmesh(["tail", "show", "--since", "10s", "-n", "12"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    import re

    cpu = re.findall(r"cpu=(\S+)", text)
    assert cpu and all(re.fullmatch(r"\d{2}\.\d%", c) for c in cpu)  # 48.2%, not 48.223350253807105
    assert all(re.fullmatch(r"\d\.\d\d GB", m) for m in re.findall(r"memory=(\S+ \S+)", text))
    assert all(re.fullmatch(r"1012\.\d hPa", p) for p in re.findall(r"pressure=(\S+ \S+)", text))
    assert all(re.fullmatch(r"-2\d\.\d °C", p) for p in re.findall(r"temperature=(\S+ \S+)", text))
    assert re.search(r"file_time=20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)  # a time, shown as one
    # CSV and JSON keep every digit: they are for programs
    raw = obsmesh(["get", "show", "cpu", "--since", "30s"], env, tmp_path)
    assert max(len(line.split(",")[-1]) for line in raw.stdout.splitlines()[1:]) > 8
