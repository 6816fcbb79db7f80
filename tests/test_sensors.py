"""Sensors: /proc parsers, sysfs trees, and the node serving real host gauges."""

from __future__ import annotations

import pytest
import pytest_twisted

from nodes.sensors import procfs, sysfs
from tests.harness import connect, spawn, stop_process, wait_until

STAT_1 = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\nintr 1 2 3\n"
STAT_2 = "cpu  200 0 100 900 0 0 0 0 0 0\ncpu0 100 0 50 450 0 0 0 0 0 0\n"


def test_cpu_percent_from_two_readings():
    pct = procfs.cpu_percent(procfs.parse_stat(STAT_1), procfs.parse_stat(STAT_2))
    assert pct == {"cpu": pytest.approx(50.0), "cpu0": pytest.approx(50.0)}


def test_meminfo_loadavg_and_rates():
    mem = procfs.parse_meminfo(
        "MemTotal: 1000 kB\nMemAvailable: 250 kB\nSwapTotal: 10 kB\nSwapFree: 4 kB\n"
    )
    assert (
        mem["mem_used"] == 750 * 1024
        and mem["mem_used_pct"] == 75.0
        and mem["swap_used"] == 6 * 1024
    )
    assert procfs.parse_loadavg("0.50 0.25 0.10 1/100 42\n") == {
        "load1": 0.5,
        "load5": 0.25,
        "load15": 0.1,
    }
    net1 = procfs.parse_netdev("h1\nh2\n  eth0: 1000 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n")
    net2 = procfs.parse_netdev("h1\nh2\n  eth0: 3000 1 0 0 0 0 0 0 900 1 0 0 0 0 0 0\n")
    assert procfs.rates(net1, net2, 2.0) == {"eth0": (1000.0, 200.0)}
    assert procfs.rates(net2, net1, 2.0) == {}  # a counter reset gives no rate, not a negative one
    disk = procfs.parse_diskstats(
        "   8 0 sda 10 0 4 0 20 0 8 0 0 0 0\n   7 0 loop0 1 0 1 0 1 0 1 0 0 0 0\n",
        keep=lambda d: not d.startswith("loop"),
    )
    assert disk == {"sda": (4 * 512, 8 * 512)}


def test_hwmon_and_thermal_read_only_what_exists(tmp_path):
    chip = tmp_path / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("coretemp\n")
    (chip / "temp1_input").write_text("45500\n")
    (chip / "temp1_label").write_text("Package id 0\n")
    (chip / "fan2_input").write_text("1200\n")
    (chip / "temp3_input").write_text("garbage\n")  # unreadable: skipped, not invented
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("38000\n")
    (zone / "type").write_text("acpitz\n")
    readings = {r.field: (r.value, r.units) for r in sysfs.hwmon(str(tmp_path / "hwmon"))}
    assert readings == {
        "hwmon.coretemp.package_id_0": (45.5, "°C"),
        "hwmon.coretemp.fan2": (1200.0, "RPM"),
    }
    assert [(r.field, r.value) for r in sysfs.thermal(str(tmp_path / "thermal"))] == [
        ("thermal.thermal_zone0.acpitz", 38.0)
    ]
    assert sysfs.hwmon(str(tmp_path / "absent")) == []


@pytest_twisted.ensureDeferred
async def test_sensors_node_serves_the_host_live_and_in_history(router, tmp_path):
    proc = spawn(
        ["node", "sensors", "--name", "host", "--interval", "0.2"],
        router.env(),
        tmp_path / "host.log",
    )
    s = await connect(router.backend_url)
    try:
        live = []
        await wait_until(lambda: _listed(s, "host"), 30, "the sensors node")
        await s.subscribe(live.append, "obsmesh.consumer.host.live")
        await wait_until(lambda: sum(len(e["t"]) for e in live) >= 3, 10, "live host samples")
        assert all("load1" in e["data"] for e in live)
        fields, timelines = await s.call("obsmesh.consumer.host.get_fields", -60, 0)
        assert {"load1", "mem_used", "cpu"} <= set(fields)
        with open("/proc/meminfo") as f:
            total = procfs.parse_meminfo(f.read())["mem_total"]
        r = await s.call("obsmesh.consumer.host.get_data", ["mem_total", "load1"], -60, 0)
        assert r["data"]["mem_total"][-1] == total  # a real gauge, exactly
        assert len(r["timeline"]["host"]["t"]) >= 3
    finally:
        stop_process(proc)
        s.leave()


async def _listed(session, name):
    return name in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]
