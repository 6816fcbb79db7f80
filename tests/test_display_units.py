"""Pure pieces of what people read: values at their precision with units,
"did you mean", health flips as sentences, hints for refused connections,
log levels, and simulators whose physics fits their site and season."""

from __future__ import annotations

import calendar
import datetime as dt
import io
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import Logger, globalLogPublisher

from consumers.client.display import unit_text, value_text
from consumers.client.hints import refusal_hint, unreachable_hint
from nodes.co2.simulator import ArcticAir
from nodes.radar.pipeline import beam_power, beam_velocity
from nodes.status_events import status_event
from nodes.weather.simulator import Station
from obsmesh import logs
from obsmesh.suggest import close_names, did_you_mean


@pytest.mark.parametrize(
    "value, meta, shown",
    [
        (48.223350253807105, {"units": "%", "precision": 1}, "48.2%"),
        (48.223350253807105, {"units": "%"}, "48.223%"),  # no precision: five digits
        (1012.843, {"units": "hPa"}, "1012.8 hPa"),  # never fewer digits than the integer part
        (-2.04, {"units": "degC", "precision": 1}, "-2.0 °C"),  # legacy spelling, printed as °C
        (23_312_345_678.0, {"units": "B"}, "23.3 GB"),
        (15_849_797.8, {"units": "B/s"}, "15.8 MB/s"),
        (999.0, {"units": "B"}, "999 B"),
        (199.5, {"units": "°", "precision": 0}, "200°"),
        (1_800_000_000.0, {"units": "s since 1970-01-01"}, "2027-01-15T08:00:00Z"),
        (None, {}, "-"),
        (float("nan"), {"units": "V"}, "-"),
        (True, {}, "true"),
        ("finished", {}, "finished"),
    ],
)
def test_values_as_people_read_them(value, meta, shown):
    assert value_text(value, meta) == shown


@given(st.floats(allow_nan=False, allow_infinity=False), st.one_of(st.none(), st.integers(0, 12)))
def test_any_number_prints_and_keeps_its_integer_part(v, precision):
    text = value_text(v, {"precision": precision})
    assert text and "e" not in text.lower().replace("inf", "")
    if abs(v) < 1e15 and precision is not None:
        assert float(text) == pytest.approx(v, abs=0.51 * 10**-precision)


def test_unit_spellings():
    assert unit_text("degC") == "°C" and unit_text("deg") == "°" and unit_text(" ppm ") == "ppm"
    assert unit_text(None) == ""


def test_did_you_mean():
    assert (
        did_you_mean("tempreature", ["temperature", "pressure"]) == "; did you mean 'temperature'?"
    )
    assert close_names("temp", ["temperature", "tempo", "x"]) == ["tempo", "temperature"]
    assert did_you_mean("zzz", ["temperature"]) == ""
    assert did_you_mean("sas", ["sas.noise", "pgr.noise"]) == "; did you mean 'sas.noise'?"


def test_health_flips_read_as_sentences():
    assert status_event("sas", {}, {"connected": True}) is None  # a new source: no news
    assert status_event("sas", {"connected": True}, {"connected": False, "error": "refused"}) == (
        "sas disconnected",
        "refused",
        ["status", "sas", "disconnected"],
    )
    title, _, tags = status_event("u3", {"stale": False}, {"stale": True, "error": "silent"})
    assert title == "u3 went stale (nothing new in time)" and "stale" in tags
    title, text, tags = status_event("u3", {"stale": True}, {"stale": False, "error": None})
    assert title == "u3 recovered (fresh data again)" and text == "" and "recovered" in tags
    title, _, tags = status_event(
        "sas", {"connected": False, "stale": False}, {"connected": True, "stale": True}
    )
    assert title == "sas connected and went stale (nothing new in time)"
    assert "recovered" not in tags and "stale" in tags  # back, but not well yet
    assert status_event("sas", {"connected": True}, {"connected": True}) is None


def test_refusal_hints_name_the_fix():
    hint = refusal_hint("wamp.error.no_auth_method", "rs://h:8081", True, "ws://h:8080/ws")
    assert "ws://h:8080/ws" in hint and "OBSMESH_SECRETS_FILE" in hint
    assert "obsmesh secrets show" in refusal_hint("wamp.error.not_authorized", "rs://h:1", False)
    assert "realm" in refusal_hint("wamp.error.no_such_realm", "ws://h:1/ws", True)
    assert "make run" in unreachable_hint("connection refused", "ws://h:1/ws")


def test_beam_velocity_and_power():
    beam = {
        "v": [100.0, None, -50.0, 300.0, 20.0],
        "gflg": [0, 0, 0, 0, 1],
        "p_l": [10.0, 20.0, None, 30.0, 0.0],
    }
    assert beam_velocity(beam) == 100.0  # median of the ionospheric echoes (ground left out)
    assert beam_power(beam) == 15.0
    empty = {"v": [], "gflg": [], "p_l": []}
    assert beam_velocity(empty) is None and beam_power(empty) is None


def test_log_levels_keep_debug_lines_out_by_default():
    assert logs.level("debug").name == "debug" and logs.level("nonsense").name == "info"
    from twisted.logger import FilteringLogObserver, LogLevelFilterPredicate, textFileLogObserver

    out = io.StringIO()
    observer = FilteringLogObserver(
        textFileLogObserver(out), [LogLevelFilterPredicate(defaultLogLevel=logs.level(None))]
    )
    globalLogPublisher.addObserver(observer)
    try:
        log = Logger(namespace="test")
        log.debug("a request line")
        log.info("an event worth reading")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert "an event worth reading" in out.getvalue() and "a request line" not in out.getvalue()


def _month(year: int, month: int, step_h: int = 1) -> list[float]:
    first = calendar.timegm(dt.datetime(year, month, 1).timetuple())
    return [first + h * 3600 for h in range(0, 28 * 24, step_h)]


def test_arctic_co2_units_read_what_an_arctic_site_measures():
    air = ArcticAir(random.Random(5))
    winter = [air.co2(t) for t in _month(2026, 12)]
    summer = [air.co2(t) for t in _month(2026, 8)]
    assert 420 < min(winter) and max(winter) < 434  # no 680-1,100 ppm swings
    assert max(winter) - min(winter) < 6  # small synoptic variation in the polar night
    assert 414 < min(summer) and np.mean(summer) < np.mean(winter) - 4  # the tundra draws CO2 down
    cold = [air.temperature(t) for t in _month(2026, 1)]
    warm = [air.temperature(t) for t in _month(2026, 7)]
    assert max(cold) < -10 and -35 < np.mean(cold) < -20  # no unit at 0 °C in an arctic winter
    assert 0 < np.mean(warm) < 10
    temp, readings = air.readings(_month(2026, 12)[0], 10)
    assert len(readings) == 10 and max(readings) - min(readings) < 15
    assert temp * 16 == int(temp * 16)  # the firmware's 1/16 °C steps


def test_the_weather_station_follows_its_season_and_the_sun():
    st_ = Station(seed=2)
    jan = st_.rows(np.array(_month(2026, 1, 1), dtype=float))
    jul = st_.rows(np.array(_month(2026, 7, 1), dtype=float))
    assert -25 < jan["temperature"].mean() < -8 and 12 < jul["temperature"].mean() < 25
    assert 990 < jan["pressure"].min() and jan["pressure"].max() < 1035
    assert jan["pressure"].max() - jan["pressure"].min() > 8  # weather systems pass
    hours = (np.array(_month(2026, 7, 1)) / 3600 - 7) % 24
    afternoon = jul["temperature"][(hours > 13) & (hours < 17)].mean()
    night = jul["temperature"][(hours > 2) & (hours < 6)].mean()
    assert afternoon - night > 5
    assert ((jul["humidity"] >= 15) & (jul["humidity"] <= 100)).all()


def test_a_router_outage_is_one_failure_line_not_one_per_retry():
    from twisted.logger import FilteringLogObserver, LogLevelFilterPredicate, textFileLogObserver

    out = io.StringIO()
    threshold = logs.level("info")
    observer = FilteringLogObserver(
        textFileLogObserver(out),
        [logs.QuietRetries(threshold), LogLevelFilterPredicate(defaultLogLevel=threshold)],
    )
    globalLogPublisher.addObserver(observer)
    comp = Logger(namespace=logs.QuietRetries.NAMESPACE)
    try:
        for _outage in range(2):
            comp.info("session leaving '{reason}'", reason="wamp.close.transport_lost")
            for _ in range(50):  # every few seconds while the router is away
                comp.warn("trying transport {i} using connect delay {d}", i=0, d=5.0)
                comp.info("connecting once using transport type rawsocket")
                comp.error("Connection failed: {e}", e="ConnectionRefusedError: refused")
        comp.error("Connection failed: {e}", e="TimeoutError")  # a different failure is news
    finally:
        globalLogPublisher.removeObserver(observer)
    lines = out.getvalue().splitlines()
    assert (
        sum("Connection failed: ConnectionRefusedError" in x for x in lines) == 2
    )  # one per outage
    assert sum("TimeoutError" in x for x in lines) == 1
    assert not any("trying transport" in x or "connecting once" in x for x in lines)
    assert len(lines) == 5
