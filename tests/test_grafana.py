"""The Grafana bridge through a real router with real nodes (ProbeNode in-process)
and real HTTP: each endpoint of both plugins, exact values, maxDataPoints,
fresh metadata, nodes that leave, annotations, exports, errors, auth, CORS."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from consumers.grafana import cli, protocol
from consumers.grafana.catalog import NodeEntry
from obsmesh import config, wire
from tests.harness import Router, wait_until
from tests.nodes_for_tests import ProbeNode, probe

BASE = 1_000_000_000.0  # 2001-09-09: absolute times, far from "now"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def query_body(targets, start=BASE, end=BASE + 100, **extra) -> dict:
    return {"range": {"from": iso(start), "to": iso(end)}, "targets": targets, **extra}


async def http(url: str, method: bytes = b"GET", body=None, headers: dict | None = None):
    """One real HTTP request: (status, headers, body bytes)."""
    from twisted.web.client import FileBodyProducer

    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    hdrs = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    if body is not None and not hdrs.hasHeader(b"content-type"):
        hdrs.addRawHeader(b"content-type", b"application/json")
    producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
    d = Agent(reactor).request(method, url.encode(), hdrs, producer)
    d.addTimeout(30, reactor)
    response = await d
    data = await readBody(response)
    return response.code, response.headers, data


async def post(url: str, body, **kw):
    code, headers, data = await http(url, b"POST", body, **kw)
    return code, json.loads(data) if data else None


async def start_bridge(router, **overrides):
    mesh = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
    )
    settings = {**cli.DEFAULTS, "port": 0, "query_timeout": 5.0, **overrides}
    bridge, port = cli.serve(mesh, settings, reactor)
    return bridge, port, f"http://127.0.0.1:{port.getHost().port}"


async def stop_bridge(bridge, port) -> None:
    await port.stopListening()
    await bridge.stop()


async def started(router, name: str, **overrides):
    node = probe(router, name, **overrides)
    await node.launch()
    await wait_until(lambda: node._announced, 20, f"node {name} to announce itself")
    return node


@pytest.fixture
def mesh_parts():
    """Whatever a test starts, stopped afterwards even when it fails."""
    parts = {"nodes": [], "bridges": []}
    yield parts

    async def cleanup():
        for node in parts["nodes"]:
            await node.shutdown()
        for bridge, port in parts["bridges"]:
            await stop_bridge(bridge, port)

    pytest_twisted.blockon(defer.ensureDeferred(cleanup()))


async def mesh(router, mesh_parts, names=("probe",), **bridge_settings):
    nodes = []
    for name in names:
        node = await started(router, name)
        mesh_parts["nodes"].append(node)
        nodes.append(node)
    bridge, port, url = await start_bridge(router, **bridge_settings)
    mesh_parts["bridges"].append((bridge, port))
    await wait_until(
        lambda: bridge.connected and all(n in bridge.catalog.nodes for n in names),
        20,
        "the bridge to see the nodes",
    )
    return nodes, bridge, url


def stamps(t, start=BASE, end=BASE + 100, points=1000, interval_ms=0, reduce="mean") -> list:
    """Where the bridge's bins put samples that each fall in a bin of their own:
    at the bin's centre (the min_stride the bridge asks for this request)."""
    stride = protocol.min_stride(start, end, points, reduce, interval_ms / 1000.0)
    return ((np.floor(np.asarray(t, dtype=float) / stride) + 0.5) * stride * 1000).tolist()


def fill(node, n: int = 100, step: float = 1.0) -> np.ndarray:
    t = BASE + np.arange(n) * step
    node.append("fast", t, {"x": np.arange(n) * 0.5, "y": np.arange(n) * -2.0})
    node.append("slow", [BASE + 10, BASE + 20], {"label": ["one", "two"], "ok": [True, False]})
    return t


# -- the current JSON datasource ----------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_current_plugin_endpoints(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["cur"])
    fill(node)
    code, _, body = await http(url + "/")
    assert code == 200 and json.loads(body)["nodes"] == ["cur"]

    code, metrics = await post(url + "/metrics", {})
    assert code == 200
    values = [m["value"] for m in metrics]
    assert values == ["cur::*", "cur::label", "cur::ok", "cur::x", "cur::y", "cur::@events"]
    x = metrics[values.index("cur::x")]
    assert x["label"] == "cur::x [V]"
    assert {p["name"] for p in x["payloads"]} == {"reduce", "timeline", "format"}
    code, slow = await post(url + "/metrics", {"metric": "cur::x", "payload": {"timeline": "slow"}})
    assert [m["value"] for m in slow] == ["cur::*", "cur::label", "cur::ok", "cur::@events"]

    code, options = await post(
        url + "/metric-payload-options", {"metric": "cur::x", "payload": {}, "name": "timeline"}
    )
    assert code == 200 and options == [
        {"label": "fast", "value": "fast"},
        {"label": "slow", "value": "slow"},
    ]
    code, options = await post(
        url + "/metric-payload-options", {"metric": "cur::x", "name": "reduce"}
    )
    assert [o["value"] for o in options] == ["mean", "minmax"]

    code, nodes = await post(url + "/variable", {"payload": {"target": "nodes()"}, "range": {}})
    assert code == 200 and nodes == [{"__text": "cur", "__value": "cur"}]
    code, fields = await post(url + "/variable", {"payload": "fields(cur)"})
    assert [f["__value"] for f in fields] == ["label", "ok", "x", "y"]
    code, tls = await post(url + "/variable", {"payload": {"query": "timelines(cur)"}})
    assert [f["__value"] for f in tls] == ["fast", "slow"]

    code, keys = await post(url + "/tag-keys", {})
    assert {"type": "string", "text": "node"} in keys and {
        "type": "string",
        "text": "units",
    } in keys
    code, units = await post(url + "/tag-values", {"key": "units"})
    assert units == [{"text": "A"}, {"text": "V"}]
    code, none = await post(url + "/tag-values", {"key": "colour"})
    assert code == 200 and none == []


@pytest_twisted.ensureDeferred
async def test_query_gives_exact_values_tables_and_filters(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["exact"])
    t = fill(node)
    code, out = await post(
        url + "/query",
        query_body(
            [
                {"target": "exact::x", "refId": "A"},
                {"target": "exact::label", "refId": "B"},
                {"target": "exact::ok", "refId": "C", "payload": {"format": "table"}},
            ],
            maxDataPoints=1000,
            intervalMs=100,
        ),
    )
    assert code == 200
    assert out[0] == {
        "target": "exact::x",
        "refId": "A",
        "unit": "V",
        "datapoints": [[i * 0.5, ms] for i, ms in enumerate(stamps(t, interval_ms=100))],
    }
    slow = stamps([BASE + 10, BASE + 20], interval_ms=100)
    assert out[1]["datapoints"] == [["one", slow[0]], ["two", slow[1]]]
    assert out[2] == {
        "type": "table",
        "refId": "C",
        "columns": [{"text": "Time", "type": "time"}, {"text": "exact::ok", "type": "boolean"}],
        "rows": [[slow[0], True], [slow[1], False]],
    }
    # a sub-range [start, end) and a wildcard over one timeline
    code, out = await post(
        url + "/query",
        query_body([{"target": "exact::*", "payload": {"timeline": "fast"}}], BASE + 10, BASE + 15),
    )
    assert [s["target"] for s in out] == ["exact::x", "exact::y"]
    assert [p[0] for p in out[1]["datapoints"]] == [-20.0, -22.0, -24.0, -26.0, -28.0]
    # ad hoc filters: only the series in amperes
    code, out = await post(
        url + "/query",
        query_body(
            [{"target": "exact::*"}], adhocFilters=[{"key": "units", "operator": "=", "value": "A"}]
        ),
    )
    assert [s["target"] for s in out] == ["exact::y"]


@pytest_twisted.ensureDeferred
async def test_max_data_points_and_interval_are_respected(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["dense"])
    n = 5000
    t = BASE + np.arange(n) * 0.1
    x = np.sin(np.arange(n) / 50.0)
    x[2345] = 50.0  # a spike
    node.append("fast", t, {"x": x})
    for points in (1, 7, 100, 999):
        for reduce in ("mean", "minmax"):
            code, out = await post(
                url + "/query",
                query_body(
                    [{"target": "dense::x", "payload": {"reduce": reduce}}],
                    BASE,
                    BASE + 500,
                    maxDataPoints=points,
                ),
            )
            got = out[0]["datapoints"]
            assert code == 200 and 0 < len(got) <= max(points, 2 if reduce == "minmax" else 1)
            if reduce == "minmax" and points >= 2:
                assert max(p[0] for p in got) == 50.0  # the spike survives
    code, out = await post(
        url + "/query", query_body([{"target": "dense::x"}], BASE, BASE + 500, maxDataPoints=1000)
    )
    assert 400 <= len(out[0]["datapoints"]) <= 1000  # as many as allowed, not far fewer
    code, out = await post(
        url + "/query",
        query_body(
            [{"target": "dense::x"}], BASE, BASE + 500, maxDataPoints=1000, intervalMs=50_000
        ),
    )
    assert len(out[0]["datapoints"]) <= 11  # Grafana's coarser interval wins


@pytest_twisted.ensureDeferred
async def test_answers_over_the_node_point_budget_come_in_chunks_and_are_joined(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["budget"])
    t = fill(node, n=2000, step=0.25)
    node.settings["point_budget"] = 300  # 2000 rows of x and y: seven chunks
    code, out = await post(
        url + "/query",
        query_body(
            [{"target": "budget::*", "payload": {"timeline": "fast"}}],
            BASE,
            BASE + 600,
            maxDataPoints=5000,
        ),
    )
    assert code == 200 and [s["target"] for s in out] == ["budget::x", "budget::y"]
    at = stamps(t, BASE, BASE + 600, 5000)
    assert out[0]["datapoints"] == [[i * 0.5, at[i]] for i in range(2000)]
    assert [v for v, _ in out[1]["datapoints"]] == [i * -2.0 for i in range(2000)]


@pytest_twisted.ensureDeferred
async def test_a_field_declared_after_start_up_is_queryable_at_once(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["late"])
    fill(node)
    await post(url + "/query", query_body([{"target": "late::x"}]))  # the catalog is warm
    assert "z" not in bridge.catalog.nodes["late"].fields
    node.declare("z", "fast", units="K", description="new")
    node.append("fast", [BASE + 200, BASE + 201], {"z": [7.5, 8.5]})
    code, out = await post(
        url + "/query", query_body([{"target": "late::z"}, {"target": "late::x"}], BASE, BASE + 300)
    )
    assert code == 200
    z = out[0]["datapoints"]
    assert z[-2:] == [[7.5, ms] for ms in stamps([BASE + 200], end=BASE + 300)] + [
        [8.5, ms] for ms in stamps([BASE + 201], end=BASE + 300)
    ]
    assert len(z) == 102 and all(
        v is None for v, _ in z[:100]
    )  # no z before it existed: null, not 0
    assert [v for v, _ in out[1]["datapoints"]][:100] == [i * 0.5 for i in range(100)]
    node.declare("w", "slow")
    node.append("slow", [BASE + 250], {"w": [1.0]})
    code, metrics = await post(url + "/metrics", {})
    assert "late::w" in [m["value"] for m in metrics]  # the pickers see it too
    code, out = await post(url + "/query", query_body([{"target": "late::*"}], BASE, BASE + 300))
    assert "late::w" in [s["target"] for s in out]


class GatedNode(ProbeNode):
    """Its get_data answers only once `gate` fires: a bridge calling nodes one after
    the other would wait here forever, so only concurrent calls complete."""

    gate: defer.Deferred | None = None

    async def get_data(self, *args, **kwargs):
        await self.gate
        return await super().get_data(*args, **kwargs)


class OpeningNode(ProbeNode):
    opens: defer.Deferred | None = None

    async def get_data(self, *args, **kwargs):
        if not self.opens.called:
            self.opens.callback(None)
        return await super().get_data(*args, **kwargs)


@pytest_twisted.ensureDeferred
async def test_nodes_are_asked_concurrently(router, mesh_parts):
    settings = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
    )
    gate: defer.Deferred = defer.Deferred()
    first, second = GatedNode("gated", settings), OpeningNode("opening", settings)
    first.gate = second.opens = gate
    for node in (first, second):
        await node.launch()
        mesh_parts["nodes"].append(node)
        fill(node)
    await wait_until(lambda: first._announced and second._announced, 20, "the nodes")
    bridge, port, url = await start_bridge(router, query_timeout=20.0)
    mesh_parts["bridges"].append((bridge, port))
    await wait_until(lambda: {"gated", "opening"} <= set(bridge.catalog.nodes), 20, "the catalog")
    code, out = await post(
        url + "/query", query_body([{"target": "gated::x"}, {"target": "opening::x"}])
    )
    assert [len(s["datapoints"]) for s in out] == [100, 100]


@pytest_twisted.ensureDeferred
async def test_a_bad_target_gives_its_error_and_the_others_their_data(router, mesh_parts):
    """Never a 500 for a panel: each target that cannot be drawn carries an error
    notice (shown in Grafana's panel header) naming the node and field."""
    (stays, leaves), bridge, url = await mesh(router, mesh_parts, ["stays", "leaves"])
    fill(stays)
    fill(leaves)
    body = query_body(
        [
            {"target": "stays::x"},
            {"target": "leaves::x", "refId": "B"},
            {"target": "ghost::x"},
            {"target": "stays::nope", "refId": "D", "payload": {"format": "table"}},
        ]
    )
    code, out = await post(url + "/query", body)
    assert code == 200
    assert [len(s.get("datapoints", s.get("rows", []))) for s in out] == [100, 100, 0, 0]
    assert notice(out[2]) == "ghost::x: no node 'ghost' in the mesh"
    assert out[3]["type"] == "table" and out[3]["refId"] == "D"
    assert notice(out[3]) == "stays::nope: node 'stays' has no field 'nope'"
    await leaves.shutdown()
    mesh_parts["nodes"].remove(leaves)
    await wait_until(lambda: "leaves" not in bridge.catalog.nodes, 20, "the bridge to hear")
    code, out = await post(url + "/query", body)
    assert code == 200
    assert out[0]["target"] == "stays::x" and len(out[0]["datapoints"]) == 100
    assert out[1]["refId"] == "B" and out[1]["datapoints"] == []
    assert notice(out[1]) == "leaves::x: no node 'leaves' in the mesh"
    # A node the catalog still lists but that is gone from the router (its call fails).
    bridge.catalog.add(
        NodeEntry(
            "vanished",
            info={"kind": "probe"},
            fields={"x": {"timeline": "fast", "type": "number", "units": ""}},
            loaded_at=bridge.catalog.clock(),
        )
    )
    code, out = await post(
        url + "/query", query_body([{"target": "vanished::x"}, {"target": "stays::y"}])
    )
    assert code == 200 and out[0]["datapoints"] == [] and len(out[1]["datapoints"]) == 100
    assert notice(out[0]) == (
        "vanished::x: node 'vanished' does not answer get_data (it left the mesh?)"
    )
    assert "meta" not in out[1]


class MisfitNode(ProbeNode):
    """Answers one column shorter than its timeline, as a buggy or hostile node might."""

    async def get_data(self, *args, **kwargs):
        answer = await super().get_data(*args, **kwargs)
        if "y" in answer["data"]:
            y = answer["data"]["y"]
            encoding = "array" if isinstance(y, dict) else "list"
            answer["data"]["y"] = wire.encode(wire.decode(y)[:-1], encoding)
        return answer


class PickyNode(ProbeNode):
    """Fails any call that asks for `y`, as a sisock node raising on one field does."""

    async def get_data(self, field, *args, **kwargs):
        if "y" in field:
            raise RuntimeError("y is out of order")
        return await super().get_data(field, *args, **kwargs)


@pytest_twisted.ensureDeferred
async def test_a_column_that_does_not_fit_or_a_failing_field_is_that_targets_error(
    router, mesh_parts
):
    settings = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
    )
    misfit, picky = MisfitNode("misfit", settings), PickyNode("picky", settings)
    for node in (misfit, picky):
        await node.launch()
        mesh_parts["nodes"].append(node)
        fill(node)
    await wait_until(lambda: misfit._announced and picky._announced, 20, "the nodes")
    bridge, port, url = await start_bridge(router)
    mesh_parts["bridges"].append((bridge, port))
    await wait_until(lambda: {"misfit", "picky"} <= set(bridge.catalog.nodes), 20, "the catalog")
    targets = [{"target": f"{n}::{f}"} for n in ("misfit", "picky") for f in ("x", "y")]
    code, out = await post(url + "/query", query_body(targets))
    assert code == 200
    assert [len(s["datapoints"]) for s in out] == [100, 0, 100, 0]
    assert (
        notice(out[1])
        == "misfit::y: node 'misfit', field 'y': 99 values for 100 times of timeline 'fast'"
    )
    assert notice(out[3]).startswith("picky::y: node 'picky': ") and "y is out of order" in notice(
        out[3]
    )
    assert "meta" not in out[0] and "meta" not in out[2]
    code, _, body = await http(
        url + f"/export?node=misfit&field=x,y&start={BASE:.0f}&end={BASE + 100:.0f}"
    )
    assert code == 502 and b"misfit" in body and b"'y'" in body  # a download is never holed


def notice(frame: dict) -> str:
    (only,) = frame["meta"]["notices"]
    assert only["severity"] == "error"
    return only["text"]


# -- the legacy SimpleJSON plugin ---------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_legacy_plugin_endpoints(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["old"])
    t = fill(node)
    node.event(BASE + 5, "restart", "the unit restarted", ["power"])
    node.event(BASE + 500, "outside", "not in range", [])
    code, names = await post(url + "/search", {"target": ""})
    assert names == ["old::*", "old::label", "old::ok", "old::x", "old::y", "old::@events"]
    code, names = await post(url + "/search", {"target": "::x"})
    assert names == ["old::x"]
    code, names = await post(url + "/search", {"target": "fields(old)"})
    assert names == ["label", "ok", "x", "y"]
    code, out = await post(
        url + "/query",
        query_body(
            [
                {"target": "old::y", "refId": "A", "type": "timeserie"},
                {"target": "old::x", "type": "table"},
            ]
        ),
    )
    at = stamps(t)
    assert out[0]["datapoints"][:2] == [[0.0, at[0]], [-2.0, at[1]]]
    assert out[1]["type"] == "table" and out[1]["rows"][3] == [at[3], 1.5]
    annotation = {"name": "restarts", "datasource": "obsmesh", "enable": True, "query": "old"}
    code, events = await post(
        url + "/annotations",
        {"range": {"from": iso(BASE), "to": iso(BASE + 100)}, "annotation": annotation},
    )
    assert code == 200
    assert events == [
        {
            "annotation": annotation,
            "time": (BASE + 5) * 1000,
            "title": "restart",
            "text": "the unit restarted",
            "tags": ["old", "power"],
        }
    ]
    code, keys = await post(url + "/tag-keys", {})
    assert code == 200 and len(keys) == 6
    code, values = await post(url + "/tag-values", {"key": "node"})
    assert values == [{"text": "old"}]


@pytest_twisted.ensureDeferred
async def test_annotations_for_the_current_plugin_are_event_tables(router, mesh_parts):
    (a, b), bridge, url = await mesh(router, mesh_parts, ["ev-a", "ev-b"])
    a.event(BASE + 1, "a1", "first", ["x"])
    b.event(BASE + 2, "b1", "second", [])
    code, out = await post(
        url + "/query", query_body([{"target": "{ev-a,ev-b}::@events", "refId": "ANN"}])
    )
    assert code == 200 and out[0]["refId"] == "ANN"
    assert [c["text"] for c in out[0]["columns"]] == ["time", "title", "text", "tags"]
    assert out[0]["rows"] == [
        [(BASE + 1) * 1000, "a1", "first", "ev-a,x"],
        [(BASE + 2) * 1000, "b1", "second", "ev-b"],
    ]
    code, events = await post(
        url + "/annotations",
        {"range": {"from": iso(BASE), "to": iso(BASE + 10)}, "annotation": {"query": "*"}},
    )
    assert [e["title"] for e in events] == ["a1", "b1"]


# -- downloads ------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_export_csv_and_json_exact_and_streamed(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["exp"])
    n = 3000
    t = BASE + np.arange(n) / 3.0
    x = np.random.default_rng(1).normal(size=n)
    node.append("fast", t, {"x": x, "y": x * 2})
    node.append("slow", [BASE + 7], {"label": ["only"]})
    node.settings["point_budget"] = 1000  # the node must answer in chunks
    code, headers, body = await http(
        f"{url}/export?node=exp&field=x,y&start={BASE}&end={BASE + 10000}"
    )
    assert code == 200 and headers.getRawHeaders(b"content-type") == [b"text/csv; charset=utf-8"]
    assert b'filename="exp-2-fields.csv"' in headers.getRawHeaders(b"content-disposition")[0]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["time", "x", "y"] and len(rows) == n + 1
    assert np.array_equal(
        np.array([[float(v) for v in r] for r in rows[1:]]), np.column_stack((t, x, x * 2))
    )
    code, headers, body = await http(
        f"{url}/export?node=exp&field=x&field=label&start={BASE}&end={BASE + 10000}&format=json"
    )
    doc = json.loads(body)
    assert (
        code == 200
        and doc["data"]["x"] == x.tolist()
        and doc["timeline"]["fast"]["t"] == t.tolist()
    )
    assert doc["data"]["label"] == ["only"] and doc["timeline"]["slow"]["t"] == [BASE + 7]
    assert doc["fields"]["label"]["type"] == "string"
    code, _, body = await http(
        f"{url}/export?node=exp&field=x&start={BASE}&end={BASE + 1000}&min_stride=100"
    )
    assert len(body.decode().splitlines()) == 1 + 10
    for query, status in (
        ("node=nope&field=x", 404),
        ("node=exp&field=nope", 404),
        ("node=exp&field=x&field=label", 400),
        ("node=exp", 400),
        ("node=exp&field=x&min_stride=often", 400),
    ):
        code, headers, body = await http(f"{url}/export?{query}")
        assert code == status and json.loads(body)["error"], query


# -- errors, auth, CORS, the router away --------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_json_errors_and_the_bridge_keeps_serving(router, mesh_parts):
    (node,), bridge, url = await mesh(router, mesh_parts, ["err"], max_body=10_000)
    fill(node)
    cases = [
        ("/query", b"{not json", 400),
        ("/query", b"[]", 400),
        ("/query", b'{"range": 5}', 400),
        ("/query", json.dumps(query_body([{"target": "err::x"}], maxDataPoints=-1)).encode(), 400),
        ("/metrics", b'{"payload": []}', 400),
        ("/tag-values", b"{}", 400),
        ("/annotations", b'{"annotation": {}}', 400),
        ("/search", b'{"target": 5}', 400),
        ("/query", b'{"pad": "' + b"x" * 20_000 + b'"}', 413),
        ("/nowhere", b"{}", 404),
    ]
    for path, body, status in cases:
        code, headers, data = await http(url + path, b"POST", body)
        assert code == status, (path, body[:40])
        assert headers.getRawHeaders(b"content-type") == [b"application/json"]
        assert isinstance(json.loads(data)["error"], str)
    code, headers, data = await http(url + "/query")
    assert code == 405 and b"POST" in headers.getRawHeaders(b"allow")[0]
    code, out = await post(
        url + "//query/", query_body([{"target": "err::x"}])
    )  # Grafana's joined URLs
    assert code == 200 and len(out[0]["datapoints"]) == 100
    code, headers, data = await http(url + "/openapi.yaml")
    assert code == 200 and data.startswith(b"openapi: 3.")


@pytest_twisted.ensureDeferred
async def test_basic_auth_and_cors(router, mesh_parts, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    (node,), bridge, url = await mesh(
        router,
        mesh_parts,
        ["auth"],
        user="grafana",
        password_file=str(secret),
        cors_origins=["https://dash.example"],
    )
    good = "Basic " + base64.b64encode(b"grafana:s3cret").decode()
    for headers in (
        {},
        {"authorization": "Basic " + base64.b64encode(b"grafana:wrong").decode()},
        {"authorization": "Basic !!!"},
        {"authorization": "Bearer x"},
    ):
        code, hdrs, data = await http(url + "/", headers=headers)
        assert code == 401 and hdrs.getRawHeaders(b"www-authenticate")
        assert json.loads(data) == {"error": "authentication required"}
    code, hdrs, data = await http(
        url + "/", headers={"authorization": good, "origin": "https://dash.example"}
    )
    assert code == 200
    assert hdrs.getRawHeaders(b"access-control-allow-origin") == [b"https://dash.example"]
    assert hdrs.getRawHeaders(b"access-control-allow-credentials") == [b"true"]
    code, hdrs, data = await http(
        url + "/query",
        b"OPTIONS",
        headers={
            "origin": "https://dash.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-grafana-org-id",
        },
    )
    assert code == 204 and b"POST" in hdrs.getRawHeaders(b"access-control-allow-methods")[0]
    assert hdrs.getRawHeaders(b"access-control-allow-headers") == [
        b"content-type, x-grafana-org-id"
    ]
    code, hdrs, data = await http(
        url + "/query",
        b"OPTIONS",
        headers={
            "origin": "https://dash.example",
            "access-control-request-headers": "bad header\r\nx",
        },
    )
    assert hdrs.getRawHeaders(b"access-control-allow-headers") == [b"Content-Type, Authorization"]
    code, hdrs, data = await http(
        url + "/", headers={"authorization": good, "origin": "https://evil.example"}
    )
    assert code == 200 and not hdrs.hasHeader(b"access-control-allow-origin")


@pytest.mark.slow  # measured 11.8 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_503_while_the_router_is_unreachable_then_serving_once_it_is_up(mesh_parts):
    later = Router()  # ports chosen, not started yet
    try:
        bridge, port, url = await start_bridge(later)
        mesh_parts["bridges"].append((bridge, port))
        for path, method, body in (
            ("/", b"GET", None),
            ("/query", b"POST", query_body([])),
            ("/metrics", b"POST", {}),
            ("/search", b"POST", {}),
        ):
            code, _, data = await http(url + path, method, body)
            assert code == 503 and "router" in json.loads(data)["error"], path
        code, _, data = await http(url + "/query", b"POST", b"{broken")
        assert code == 400  # a malformed body is the caller's to fix, router or not
        later.start()  # blocks this test's reactor a while; the bridge retries afterwards
        await wait_until(lambda: bridge.connected, 30, "the bridge to connect")
        code, _, data = await http(url + "/")
        assert code == 200 and json.loads(data)["nodes"] == []
    finally:
        later.close()


def test_configuration_from_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "mesh.toml"
    path.write_text(
        'router_url = "rs://10.0.0.1:9000"\n[grafana]\nport = 5050\ncors_origins = ["*"]\n'
    )
    monkeypatch.setenv("OBSMESH_GRAFANA_HOST", "0.0.0.0")
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    cli.configure(parser)
    mesh, settings = cli.load(parser.parse_args(["--config", str(path), "--port", "6000"]))
    assert mesh["router_url"] == "rs://10.0.0.1:9000"
    assert (
        settings["port"] == 6000
        and settings["host"] == "0.0.0.0"
        and settings["cors_origins"] == ["*"]
    )
    path.write_text('[grafana]\nuser = "x"\n')
    with pytest.raises(config.ConfigError, match="password"):
        cli.load(parser.parse_args(["--config", str(path)]))
    path.write_text("[grafana]\ncolour = 1\n")
    with pytest.raises(config.ConfigError, match="colour"):
        cli.load(parser.parse_args(["--config", str(path)]))
