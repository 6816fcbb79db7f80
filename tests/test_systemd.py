"""`obsmesh systemd DIR`: one unit per service of the layout, checked for what
they say always, and by systemd's own `systemd-analyze verify` where it is
installed (`make test` installs Debian's systemd when it is missing)."""

from __future__ import annotations

import base64
import shlex
import shutil
import subprocess
import sys

import pytest

from obsmesh import config, layout, secrets
from tests.harness import PYTHON, REPO

pytestmark = pytest.mark.router  # starts its own processes


def _write(tmp_path, *extra: str) -> tuple[layout.Layout, dict[str, str], str]:
    state = tmp_path / "state"
    state.mkdir()
    key = secrets.new({"hub": "hub", "weather": "node"})
    secrets.save(str(state / "secrets.json"), key)
    env = {
        "PATH": "/usr/bin:/bin",
        "OBSMESH_STATE_DIR": str(state),
        "OBSMESH_PORT_BASE": "23000",
    }
    done = subprocess.run(
        [PYTHON, "-m", "obsmesh", "systemd", str(tmp_path / "units"), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lay = layout.local(config.mesh(environ=env), path="")
    units = {p.name: p.read_text() for p in (tmp_path / "units").iterdir()}
    return lay, units, [key.secret_for("weather"), base64.b64encode(key.key).decode()]


def _values(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


def test_one_unit_per_service_restarted_with_the_secrets_by_path(tmp_path):
    lay, units, never = _write(tmp_path)
    assert set(units) == {f"obsmesh-{s.name}.service" for s in lay.services} | {"obsmesh.target"}
    state = str(tmp_path / "state")
    for svc in lay.services:
        unit = units[f"obsmesh-{svc.name}.service"]
        (exec_start,) = _values(unit, "ExecStart")
        # systemd's quoting reads back to the layout's very command line
        assert shlex.split(exec_start.replace("%%", "%")) == [
            sys.executable,
            "-m",
            "obsmesh",
            *svc.argv,
        ]
        assert _values(unit, "Restart") == ["always"] and _values(unit, "KillMode") == [
            "control-group"
        ]
        env = dict(v.strip('"').split("=", 1) for v in _values(unit, "Environment"))
        assert env["OBSMESH_SECRETS_FILE"] == f"{state}/secrets.json"
        assert env["OBSMESH_ROUTER_URL"] == "rs://127.0.0.1:23001"
        assert not {"OBSMESH_SECRET", "OBSMESH_SECRET_FILE"} & set(env)
        assert not [text for text in never if text in unit]  # neither a secret nor the key
        if svc.role != "router":
            assert "obsmesh-router.service" in _values(unit, "After")[0]
        assert _values(unit, "WantedBy") == ["obsmesh.target"]
    wants = _values(units["obsmesh.target"], "Wants")[0].split()
    assert sorted(wants) == sorted(f"obsmesh-{s.name}.service" for s in lay.services)


def test_real_instruments_leave_the_simulators_out(tmp_path):
    lay, units, _ = _write(tmp_path, "--no-simulators", "--user", "nobody")
    expected = {s.name for s in lay.services if s.role != "simulator"}
    assert {n.removeprefix("obsmesh-").removesuffix(".service") for n in units} - {
        "obsmesh.target"
    } == expected
    assert all(_values(u, "User") == ["nobody"] for n, u in units.items() if n.endswith(".service"))


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed here"
)
def test_systemd_analyze_verifies_the_units(tmp_path):
    _, units, _ = _write(tmp_path)
    files = sorted(str(tmp_path / "units" / n) for n in units)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "obsmesh" not in done.stderr, done.stderr  # no warning about our units either
