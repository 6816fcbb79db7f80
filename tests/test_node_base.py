"""The node base through a real router: registration, get_data, errors, live."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, SubscribeOptions

from obsmesh import wire
from tests.harness import connect, wait_until
from tests.nodes_for_tests import probe


async def started(router, name="probe", **overrides):
    node = probe(router, name, **overrides)
    await node.launch()
    await wait_until(lambda: node._announced, 20, "the node to announce itself")
    return node


@pytest_twisted.ensureDeferred
async def test_node_is_listed_and_serves_exact_history(router):
    node = await started(router, "exact")
    s = await connect(router.backend_url)
    try:
        listing = await s.call("obsmesh.consumer.get_data_node")
        assert {
            "name": "exact",
            "description": "test probe",
            "kind": "probe",
            "encodings": ["list", "array"],  # so consumers ask it for binary columns
        } in listing
        t0 = time.time() - 100
        t = t0 + np.arange(50) * 0.5
        node.append("fast", t, {"x": np.arange(50.0), "y": np.arange(50.0) * 2})
        node.append("slow", [t0 + 1], {"label": ["hello"], "ok": [True]})
        r = await s.call("obsmesh.consumer.exact.get_data", ["x", "label", "ok"], t0, t0 + 10)
        assert r["timeline"]["fast"]["t"] == t[t < t0 + 10].tolist()
        assert r["data"]["x"] == list(np.arange(20.0))
        assert r["data"]["label"] == ["hello"] and r["data"]["ok"] == [True]
        fields, timelines = await s.call("obsmesh.consumer.exact.get_fields", t0, 0)
        assert fields["x"] == {
            "description": "a number",
            "timeline": "fast",
            "type": "number",
            "units": "V",
        }
        assert timelines["fast"]["interval"] == pytest.approx(0.5)
        assert sorted(timelines["fast"]["field"]) == ["x", "y"]
        # relative times: the last 200 s
        r = await s.call("obsmesh.consumer.exact.get_data", "y", -200, 0)
        assert r["data"]["y"] == list(np.arange(50.0) * 2)
        # binary columns carry the same values
        r = await s.call("obsmesh.consumer.exact.get_data", ["x"], t0, t0 + 10, encoding="array")
        assert np.array_equal(wire.decode(r["data"]["x"]), np.arange(20.0))
    finally:
        s.leave()
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_reductions_and_nan_travel_as_none(router):
    node = await started(router, "reduce")
    s = await connect(router.backend_url)
    try:
        base = 1_000_000.0
        t = base + np.arange(100.0)
        x = np.arange(100.0)
        x[5] = np.nan
        x[50] = 1000.0  # a spike
        node.append("fast", t, {"x": x})
        r = await s.call("obsmesh.consumer.reduce.get_data", ["x"], base, base + 100, min_stride=10)
        assert len(r["data"]["x"]) == 10
        assert r["data"]["x"][0] == pytest.approx(np.nanmean(x[:10]))
        assert r["timeline"]["fast"]["t"] == [base + 5 + 10 * k for k in range(10)]  # centres
        r = await s.call(
            "obsmesh.consumer.reduce.get_data", ["x"], base, base + 100, 10, reduce="minmax"
        )
        assert max(v for v in r["data"]["x"] if v is not None) == 1000.0
        assert r["timeline"]["fast"]["t"] == [base + 5 + 10 * (k // 2) for k in range(20)]
        # each bin's minimum first, then its maximum (the spike in bin 5 survives)
        assert r["data"]["x"][8:12] == [40.0, 49.0, 51.0, 1000.0]
        r = await s.call("obsmesh.consumer.reduce.get_data", ["x"], base, base + 10)
        assert r["data"]["x"][5] is None
        # samples late in one bin and early in the next: the points are still one
        # min_stride apart (mean sample times would put them 61 s apart here)
        late = 2_000_040.0 + np.arange(60.0, 120.0)
        node.append("fast", np.concatenate((late, late + 60)), {"x": np.ones(120)})
        r = await s.call(
            "obsmesh.consumer.reduce.get_data", ["x"], 2_000_040.0, 2_000_400.0, min_stride=120
        )
        assert r["timeline"]["fast"]["t"] == [2_000_100.0, 2_000_220.0]
    finally:
        s.leave()
        await node.shutdown()


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        ((42, 0, 10), {}, "invalid_argument"),
        (("x", "yesterday", 10), {}, "invalid_argument"),
        (("x", 100, 10), {}, "invalid_argument"),  # start after end
        (("nope", 0, 10), {}, "no_such_field"),
        ((["x"], 1, 10), {"min_stride": -1}, "invalid_argument"),
        ((["x"], 1, 10), {"reduce": "median"}, "invalid_argument"),
        ((["x"], 1, 10), {"encoding": "xml"}, "invalid_argument"),
        (([], 1, 10), {}, "invalid_argument"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_get_data_gets_clear_errors_and_node_keeps_serving(
    router, args, kwargs, error
):
    node = await started(router, "strict")
    s = await connect(router.backend_url)
    try:
        with pytest.raises(ApplicationError) as info:
            await s.call("obsmesh.consumer.strict.get_data", *args, **kwargs)
        assert info.value.error == f"obsmesh.error.{error}"
        assert info.value.args and isinstance(info.value.args[0], str) and info.value.args[0]
        node.append("fast", [time.time() - 1], {"x": [1.5]})
        r = await s.call("obsmesh.consumer.strict.get_data", ["x"], -60, 0)
        assert r["data"]["x"] == [1.5]
    finally:
        s.leave()
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_point_budget_and_progressive_results(router):
    node = await started(router, "budget", point_budget=1000)
    s = await connect(router.backend_url)
    try:
        base = 2_000_000.0
        n = 5000
        node.append("fast", base + np.arange(n) * 0.1, {"x": np.arange(float(n))})
        with pytest.raises(ApplicationError) as info:
            await s.call("obsmesh.consumer.budget.get_data", ["x"], base, base + n)
        assert info.value.error == "obsmesh.error.too_many_points"
        assert "min_stride" in info.value.args[0]
        chunks = []
        final = await s.call(
            "obsmesh.consumer.budget.get_data",
            ["x"],
            base,
            base + n,
            options=CallOptions(on_progress=chunks.append),
        )
        chunks.append(final)
        assert len(chunks) > 1
        got = [v for c in chunks for v in c["data"]["x"]]
        assert got == list(np.arange(float(n)))
        # a stride that fits is answered at once
        stride = float(info.value.args[0].split(">= ")[1].split(" s")[0])
        r = await s.call(
            "obsmesh.consumer.budget.get_data", ["x"], base, base + n, min_stride=stride
        )
        assert 0 < len(r["data"]["x"]) * 2 <= 1000
    finally:
        s.leave()
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_live_batches_arrive_complete_and_retained(router):
    node = await started(router, "live")
    s = await connect(router.backend_url)
    try:
        got = []
        await s.subscribe(lambda ev: got.append(ev), "obsmesh.consumer.live.live")
        base = time.time()
        for i in range(30):  # many appends, few events
            node.append("fast", [base + i], {"x": [float(i)], "y": [math.inf]})
        await wait_until(lambda: sum(len(e["t"]) for e in got) >= 30, 10, "live samples")
        assert len(got) < 30
        xs = [v for e in got for v in e["data"]["x"]]
        assert xs == [float(i) for i in range(30)]
        assert all(v is None for e in got for v in e["data"]["y"])
        late = []
        await s.subscribe(
            late.append, "obsmesh.consumer.live.live", options=SubscribeOptions(get_retained=True)
        )
        await wait_until(lambda: late, 10, "the retained batch")
        assert late[0]["data"]["x"][-1] == 29.0
    finally:
        s.leave()
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_status_and_graceful_shutdown_subtracts(router):
    node = await started(router, "graceful")
    s = await connect(router.backend_url)
    try:
        gone = []
        await s.subscribe(gone.append, "obsmesh.consumer.data_node_subtracted")
        status = await s.call("obsmesh.consumer.graceful.get_status")
        assert status["connected"] is True and status["name"] == "graceful"
        await node.shutdown()
        await wait_until(lambda: gone, 10, "data_node_subtracted")
        assert gone[0]["name"] == "graceful"
        assert all(n["name"] != "graceful" for n in await s.call("obsmesh.consumer.get_data_node"))
    finally:
        s.leave()


@pytest_twisted.ensureDeferred
async def test_kind_plots_field_precision_and_typo_suggestions(router):
    node = probe(router, "plotted")
    node.plots = ("*.co2_mean", "x")
    node.declare("u2.co2_mean", "u2", units="ppm", precision=1)
    with pytest.raises(ValueError):
        node.declare("bad", "u2", precision=-1)
    await node.launch()
    await wait_until(lambda: node._announced, 20, "the node to announce itself")
    s = await connect(router.backend_url)
    try:
        listing = await s.call("obsmesh.consumer.get_data_node")
        entry = next(n for n in listing if n["name"] == "plotted")
        assert entry["plots"] == ["*.co2_mean", "x"]  # the dashboard reads the kind's choice here
        fields, _ = await s.call("obsmesh.consumer.plotted.get_fields", -60, 0)
        assert fields["u2.co2_mean"]["precision"] == 1 and "precision" not in fields["x"]
        with pytest.raises(ApplicationError) as info:
            await s.call("obsmesh.consumer.plotted.get_data", ["u2.co2_maen"], -60, 0)
        assert "did you mean 'u2.co2_mean'?" in info.value.args[0]
    finally:
        s.leave()
        await node.shutdown()


def test_a_recovered_source_clears_its_error(router):
    node = probe(router, "recovering")
    node.source("directory", connected=False, error="No such file or directory")
    assert node.last_error == "directory: No such file or directory"
    node.source("directory", connected=True, error=None)
    assert node.last_error is None and node.sources["directory"]["error"] is None
    assert [e["title"] for e in node.events] == ["directory connected"]
    node.source("other", connected=False, error="down")
    node.source("directory", error=None)  # another source's error stays
    assert node.last_error == "other: down"
