"""Readings and pings as columns, the node's settings and
the operator commands (`obsmesh co2 ...` as a real process)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from nodes.co2 import fields as F
from nodes.co2.pings import Ping
from nodes.co2.readings import parse_line
from nodes.co2.settings import Settings, endpoint_url
from nodes.co2.tokens import FILE_NAME, TokenStore
from obsmesh.config import ConfigError
from obsmesh.router import REPO

UNIT = "co2unit-30aea42a50bc"


def _row(date: str, temp: str, co2: list[str], extra: list[str] | None = None):
    cells = [UNIT, "nick", date, "12:00:00", temp, "3", *co2, *(extra or [])]
    return parse_line("\t".join(cells).encode(), UNIT)


def test_readings_columns_carry_exact_values_and_nan_for_missing():
    rows = [
        _row("2023-01-01", "1.5", ["400"] * 9 + ["None"], ["1", "2", "3", "4", "5.5"]),
        _row("2023-01-02", "None", ["None"] * 10),
    ]
    t, cols = F.readings_columns(UNIT, rows)
    assert t.tolist() == [rows[0].t, rows[1].t]
    assert cols[f"{UNIT}.temperature"][0] == 1.5 and math.isnan(cols[f"{UNIT}.temperature"][1])
    assert cols[f"{UNIT}.co2_1"].tolist()[0] == 400.0 and math.isnan(cols[f"{UNIT}.co2_10"][0])
    assert cols[f"{UNIT}.co2_mean"][0] == 400.0 and math.isnan(cols[f"{UNIT}.co2_mean"][1])
    assert cols[f"{UNIT}.extra_5"][0] == 5.5 and math.isnan(cols[f"{UNIT}.extra_5"][1])
    assert cols[f"{UNIT}.flash_count"].tolist() == [3.0, 3.0]
    assert set(cols) == {f"{UNIT}.{n}" for n in [*F.READINGS, *F.EXTRA]}
    _, old = F.readings_columns(UNIT, rows[1:])
    assert set(old) == {f"{UNIT}.{n}" for n in F.READINGS}  # no extra fields in the old layout


def test_ping_columns():
    pings = [Ping(1.0, UNIT, "x", 8, -97, None), Ping(2.0, UNIT, None, None, None, 99)]
    t, cols = F.ping_columns(UNIT, pings)
    assert t.tolist() == [1.0, 2.0]
    assert np.array_equal(cols[f"{UNIT}.rssi_dbm"], [-97.0, np.nan], equal_nan=True)
    assert np.array_equal(cols[f"{UNIT}.ber_raw"], [np.nan, 99.0], equal_nan=True)


def test_settings_default_data_root_env_and_endpoint(tmp_path):
    mesh = {"state_dir": str(tmp_path)}
    options = Settings.resolve(None, mesh=mesh, environ={})
    assert options["data_root"] == str(tmp_path / "co2") and options["port"] == 8090
    conf = tmp_path / "m.toml"
    conf.write_text('[co2]\ncompat_networks = ["10.0.0.0/8"]\nhost = "0.0.0.0"\nsilence = 60\n')
    options = Settings.resolve(str(conf), mesh=mesh, environ={})
    assert options["compat_networks"] == ["10.0.0.0/8"] and options["silence"] == 60.0
    assert endpoint_url(options) == "http://127.0.0.1:8090"
    conf.write_text("[co2]\nport_typo = 1\n")
    with pytest.raises(ConfigError, match="port_typo"):
        Settings.resolve(str(conf), mesh=mesh, environ={})
    conf.write_text("[co2]\nsilence = -5\n")
    with pytest.raises(ConfigError, match=r"\[co2\] silence must be a positive number, got -5.0"):
        Settings.resolve(str(conf), mesh=mesh, environ={})


def _obsmesh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "obsmesh", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.router  # starts its own processes
def test_operator_commands(tmp_path):
    root = tmp_path / "root"
    added = _obsmesh("co2", "--data-root", str(root), "add-unit", UNIT)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    store = TokenStore(root / FILE_NAME)
    assert store.check(UNIT, token) and not store.check(UNIT, token + "x")
    assert token not in (root / FILE_NAME).read_text()  # only its hash is kept

    bad = _obsmesh("co2", "--data-root", str(root), "add-unit", "../etc")
    assert bad.returncode == 2 and "unit id" in bad.stderr and bad.stdout == ""

    update = tmp_path / "fw" / "flash"
    update.mkdir(parents=True)
    (update / "main.py").write_text("print('v2')\n")
    placed = _obsmesh(
        "co2", "--data-root", str(root), "add-update", UNIT, str(tmp_path / "fw"), "v2"
    )
    assert placed.returncode == 0, placed.stderr
    assert (
        root / "updates" / UNIT / "update-v2" / "flash" / "main.py"
    ).read_text() == "print('v2')\n"
    again = _obsmesh(
        "co2", "--data-root", str(root), "add-update", UNIT, str(tmp_path / "fw"), "v2"
    )
    assert again.returncode == 2 and "never replaced" in again.stderr

    assert _obsmesh("co2", "--data-root", str(root), "revoke-unit", UNIT).returncode == 0
    assert TokenStore(root / FILE_NAME).is_revoked(UNIT)
    assert (
        _obsmesh("co2", "--data-root", str(root), "revoke-unit", "co2unit-000000000000").returncode
        == 1
    )
