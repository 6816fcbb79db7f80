"""Every dataset of the demo mesh's node kinds, read by `hapiclient` in CSV and in
binary, equals the node's own get_data answer.

The real nodes run as processes with their simulators, as `obsmesh up` runs
them, but on free ports and under the demo's node names (so the dataset ids
are the documented ones: `weather/station`, `das2/spectrogram`, ...), behind a
router of this module's own. A das2 yscan arrives as a 2-D array (records x
channels).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytest_twisted

from consumers.hapi.times import iso, parse_time
from tests.hapi_support import (
    assert_same,
    get_data,
    get_json,
    hapi_client,
    start_bridge,
    stop_bridge,
)
from tests.harness import Router, connect, free_port, spawn, stop_process, wait_until

pytestmark = [pytest.mark.router, pytest.mark.slow]  # the demo's kinds as processes

KINDS = ("sensors", "weather", "superdarn", "canada", "co2", "dataflow", "das2")
WINDOW = 300.0  # seconds of each dataset compared (its newest, or das2's sample range)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's node kinds and simulators, each a process, behind their own router."""
    tmp = tmp_path_factory.mktemp("hapi-demo")
    router = Router()
    router.start()
    env = router.env()
    radar, canada, co2, das2 = free_port(), free_port(), free_port(), free_port()
    commands = {
        "weather-sim": ["simulate", "weather", str(tmp / "wx"), "--days", "0.05"],
        "weather": ["node", "weather", "--dir", str(tmp / "wx")],
        "sensors": ["node", "sensors", "--interval", "0.5"],
        "radar-sim": ["simulate", "radar", "--code", "sas", "--port", str(radar), "--speed", "10"],
        "superdarn": [
            "node",
            "superdarn",
            "--radars",
            json.dumps({"sas": f"127.0.0.1:{radar}"}),
            "--echo-db",
            str(tmp / "sd.sqlite"),
        ],
        "canada-sim": ["simulate", "canada", "--port", str(canada), "--sites", "pgr,inv"],
        "canada": [
            "node",
            "canada",
            "--addr",
            f"127.0.0.1:{canada}",
            "--echo-db",
            str(tmp / "ca.sqlite"),
        ],
        "co2": ["node", "co2", "--data-root", str(tmp / "co2"), "--port", str(co2)],
        "co2-sim": [
            "simulate",
            "co2",
            "--units",
            "2",
            "--interval",
            "1",
            "--data-root",
            str(tmp / "co2"),
            "--sd-dir",
            str(tmp / "co2-sd"),
            f"http://127.0.0.1:{co2}",
        ],
        "dataflow-sim": [
            "simulate",
            "dataflow",
            str(tmp / "df"),
            "--radars",
            "sas,pgr",
            "--speed",
            "1800",
            "--backfill",
            "3",
        ],
        "dataflow": [
            "node",
            "dataflow",
            "--dir",
            str(tmp / "df"),
            "--radars",
            "sas,pgr",
            "--period",
            "4",
            "--margin",
            "4",
        ],
        "das2": [
            "node",
            "das2",
            "--http",
            f"127.0.0.1:{das2}",
            "--cache",
            "disk",
            "--cache-dir",
            str(tmp / "das2"),
        ],
    }
    procs = {}
    try:
        for name, args in commands.items():
            procs[name] = spawn(args, env, tmp / f"{name}.log")
        yield router, procs, tmp
    finally:
        for proc in procs.values():
            stop_process(proc)
        router.close()


@pytest_twisted.ensureDeferred
async def test_every_dataset_of_every_node_kind_reads_equal_in_csv_and_binary(demo):
    router, procs, tmp = demo
    bridge, port, url = await start_bridge(router)
    session = await connect(router.backend_url)
    try:
        catalog = await _catalog_with_data(url, procs, tmp)
        compared = {kind: 0 for kind in KINDS}
        for dataset in catalog:
            node = dataset.split("/", 1)[0]
            code, info = await get_json(f"{url}/info?dataset={dataset}")
            assert code == 200, info
            start, stop = _window(info)
            fields = [p["name"] for p in info["parameters"][1:]]
            for fmt in ("csv", "binary"):
                for _ in range(5):  # a live node may store late rows in the window meanwhile
                    t, cols = await get_data(session, node, fields, start, stop)
                    data, meta = await hapi_client(
                        url, dataset, "", iso(start), iso(stop), format=fmt
                    )
                    t2, _ = await get_data(session, node, fields, start, stop)
                    if np.array_equal(t, t2):
                        break
                assert_same(meta, data, t, cols)
                for p in meta["parameters"][1:]:  # arrays arrive with their shape
                    assert data[p["name"]].shape == (t.shape[0], *p.get("size", []))
            compared[node] += 1 if t.size else 0
        assert all(compared[k] > 0 for k in KINDS), compared
        # The documented ids and a 2-D parameter with its bins.
        assert {"weather/station", "das2/spectrogram", "das2/magnetometer"} <= set(catalog)
        code, info = await get_json(f"{url}/info?dataset=das2/spectrogram")
        (yscan,) = [p for p in info["parameters"] if p.get("size")]
        assert yscan["size"] == [48] and len(yscan["bins"][0]["centers"]) == 48
        start, stop = _window(info)
        data, _ = await hapi_client(url, "das2/spectrogram", yscan["name"], iso(start), iso(stop))
        assert data[yscan["name"]].ndim == 2 and data[yscan["name"]].shape[1] == 48
    finally:
        session.leave()
        await stop_bridge(bridge, port)


def _window(info: dict) -> tuple[float, float]:
    """The newest WINDOW seconds of a dataset (das2: its sample range), stop just past
    the newest sample (stop is exclusive)."""
    if "sampleStartDate" in info and info.get("x_kind") == "das2":
        start = parse_time(info["sampleStartDate"])
        return start, min(parse_time(info["sampleStopDate"]), start + WINDOW)
    stop = parse_time(info["stopDate"]) + 2e-6
    return parse_time(iso(max(parse_time(info["startDate"]), stop - WINDOW))), parse_time(iso(stop))


async def _catalog_with_data(url: str, procs: dict, tmp) -> list[str]:
    """Wait until every node kind lists a dataset with stored data; the catalog then."""

    async def ready():
        for name, proc in procs.items():
            if proc.poll() is not None and not name.endswith("-sim"):
                log = (tmp / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log}")
        code, catalog = await get_json(url + "/catalog")
        if code != 200:
            return False
        ids = [d["id"] for d in catalog["catalog"]]
        for kind in KINDS:
            mine = [i for i in ids if i.startswith(kind + "/")]
            if not mine:
                return False
            infos = [await get_json(f"{url}/info?dataset={i}") for i in mine]
            if not any(info["startDate"] < info["stopDate"] for _, info in infos):
                return False
        return ids

    return await wait_until(ready, 150, "every node kind to list a dataset with data", 1.0)
