"""Radar table and radar connection config."""

from __future__ import annotations

import json

import pytest

from nodes.radar import radars
from nodes.radar.radars import RadarConfigError, load_radar_config, parse_radar_config


def test_table_is_consistent():
    assert len(radars.RADARS) == len(radars.BY_STID) == len(radars._TABLE)
    for r in radars.RADARS.values():
        assert -90 <= r.lat <= 90 and -180 <= r.lon <= 180 and -360 < r.boresight < 360
        assert r.beams in (16, 22, 24) and r.gates >= 75
        assert r.name and r.code.isalpha() and len(r.code) == 3
    sas = radars.radar("sas")
    assert (sas.stid, sas.name, sas.operator, sas.hemisphere) == (
        5,
        "Saskatoon",
        "University of Saskatchewan",
        "north",
    )
    assert radars.radar_by_stid(64).code == "inv"
    assert radars.radar_by_stid(209).code == "ade" and radars.radar("ade").beams == 22
    assert radars.radar("hal").hemisphere == "south"
    assert radars.radar("han").active is False  # offline in its hardware file
    assert "SuperDARN" in radars.ATTRIBUTION


def test_config_shapes():
    by_code = parse_radar_config(
        {
            "sas": {"host": "sas.example.org", "port": 1401},
            "pgr": "10.0.0.7:1402",
            "cly": {"host": "cly.example.org", "port": "1024", "channel": "a"},
        }
    )
    assert [(e.key, e.host, e.port) for e in by_code] == [
        ("sas", "sas.example.org", 1401),
        ("pgr", "10.0.0.7", 1402),
        ("cly.a", "cly.example.org", 1024),
    ]
    assert by_code[0].radar.stid == 5
    listed = parse_radar_config(
        {
            "radars": [
                {"code": "rkn", "host": "h", "port": 1401, "channel": 1},
                {"code": "rkn", "host": "h", "port": 1402, "channel": 2},
            ]
        }
    )
    assert [e.key for e in listed] == ["rkn.1", "rkn.2"]
    assert parse_radar_config([{"code": "xyz", "host": "h", "port": 9}])[0].radar is None


@pytest.mark.parametrize(
    "bad",
    [
        {"sas": {"host": "h", "port": 0}},
        {"sas": {"host": "h", "port": 70000}},
        {"sas": {"host": "h", "port": True}},
        {"sas": {"host": "", "port": 1401}},
        {"sas": {"host": "a b", "port": 1401}},
        {"SAS!": {"host": "h", "port": 1401}},
        {"sas": {"host": "h", "port": 1401, "chanel": "a"}},
        {"sas": {"host": "h", "port": 1401, "channel": "A B"}},
        {"sas": "no-port"},
        {"sas": 1401},
        [{"code": "sas", "host": "h", "port": 1}, {"code": "sas", "host": "h", "port": 2}],
        [{"host": "h", "port": 1}],
        "sas",
    ],
)
def test_config_errors_are_clear(bad):
    with pytest.raises(RadarConfigError):
        parse_radar_config(bad)


def test_config_files(tmp_path):
    js = tmp_path / "radars.config.json"
    js.write_text(json.dumps({"sas": {"host": "127.0.0.1", "port": 1401}}))
    assert load_radar_config(js)[0].port == 1401
    toml = tmp_path / "radars.toml"
    toml.write_text('[inv]\nhost = "127.0.0.1"\nport = 1402\nchannel = "a"\n')
    assert load_radar_config(toml)[0].key == "inv.a"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(RadarConfigError, match="broken.json"):
        load_radar_config(broken)
