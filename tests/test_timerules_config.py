import math

import pytest

from obsmesh import config
from obsmesh.errors import InvalidArgument
from obsmesh.timerules import resolve_interval, resolve_stride, resolve_time


def test_non_positive_times_are_relative_to_now():
    assert resolve_time(0, "end", now=1000.0) == 1000.0
    assert resolve_time(-60, "start", now=1000.0) == 940.0
    assert resolve_time(5.5, "start", now=1000.0) == 5.5


@pytest.mark.parametrize("bad", ["1h", None, True, math.nan, math.inf, [1]])
def test_bad_times_are_refused_clearly(bad):
    with pytest.raises(InvalidArgument) as info:
        resolve_time(bad, "start", now=0.0)
    assert "start" in str(info.value)


def test_start_after_end_is_refused():
    with pytest.raises(InvalidArgument, match="after end"):
        resolve_interval(200, 100, clock=lambda: 1000.0)
    assert resolve_interval(-10, 0, clock=lambda: 1000.0) == (990.0, 1000.0)


@pytest.mark.parametrize("bad", [0, -1, math.nan, "5", True])
def test_min_stride_must_be_positive(bad):
    with pytest.raises(InvalidArgument, match="min_stride"):
        resolve_stride(bad)
    assert resolve_stride(None) is None and resolve_stride(2) == 2.0


def test_settings_file_then_environment_with_types(tmp_path):
    path = tmp_path / "mesh.toml"
    path.write_text('realm = "site"\nmax_age = 3600\n[weather]\ndir = "/data"\ndays = 2\n')
    mesh = config.mesh(
        str(path), environ={"OBSMESH_MAX_SAMPLES": "1_000", "OBSMESH_REALM": "other"}
    )
    assert mesh["realm"] == "other" and mesh["max_age"] == 3600.0 and mesh["max_samples"] == 1000
    weather = config.settings(
        {"dir": "", "days": 7}, "weather", str(path), environ={"OBSMESH_WEATHER_DAYS": "3"}
    )
    assert weather == {"dir": "/data", "days": 3}


def test_bad_settings_are_named(tmp_path):
    path = tmp_path / "mesh.toml"
    path.write_text("relam = 1\n")
    with pytest.raises(config.ConfigError, match="relam"):
        config.mesh(str(path), environ={})
    with pytest.raises(config.ConfigError, match="max_age"):
        config.mesh(None, environ={"OBSMESH_MAX_AGE": "a week"})
