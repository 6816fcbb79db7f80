"""The HAPI server (/hapi on the bridge's port) through a real router, a real node
and real HTTP, read by the reference client `hapiclient`: values equal to the
node's get_data, fills, headers and formats, schema checks of every metadata
answer, every error as a HAPI status, live datasets, requests larger than the
node's point budget, x_stride/x_reduce, and 1,000 concurrent requests."""

from __future__ import annotations

import json
import time

import jsonschema
import numpy as np
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool

from consumers.hapi.times import iso, parse_time
from tests import hapi_schema
from tests.hapi_support import (
    assert_same,
    get_data,
    get_json,
    hapi_client,
    http,
    iso_reference,
    start_bridge,
    stop_bridge,
)
from tests.harness import connect, wait_until
from tests.nodes_for_tests import probe

BASE = float(int(time.time()) - 3 * 86400)  # absolute, inside the store's max_age


@pytest.fixture
def parts():
    """Whatever a test starts, stopped afterwards even when it fails."""
    held = {"nodes": [], "bridges": [], "sessions": []}
    yield held

    async def cleanup():
        for s in held["sessions"]:
            s.leave()
        for node in held["nodes"]:
            await node.shutdown()
        for bridge, port in held["bridges"]:
            await stop_bridge(bridge, port)

    pytest_twisted.blockon(defer.ensureDeferred(cleanup()))


async def mesh(router, parts, name: str, hapi: dict | None = None, **node_settings):
    node = probe(router, name, **node_settings)
    await node.launch()
    parts["nodes"].append(node)
    await wait_until(lambda: node._announced, 20, f"node {name} announced")
    bridge, port, url = await start_bridge(router, hapi)
    parts["bridges"].append((bridge, port))
    await wait_until(lambda: name in bridge.catalog.nodes, 20, "the bridge to see the node")
    session = await connect(router.backend_url)
    parts["sessions"].append(session)
    return node, url, session


def fill(node, n: int = 2000) -> np.ndarray:
    """`fast`: x with NaN, an infinity and numbers of every size; y plain.
    `slow`: strings (comma, quote, newline, non-ASCII, missing) and bools (missing too)."""
    t = BASE + np.arange(n) * 0.25 + 0.000123
    x = np.sin(np.arange(n)) * 10.0 ** (np.arange(n) % 40 - 20)
    x[7] = np.nan
    x[8] = np.inf
    node.append("fast", t, {"x": x, "y": np.arange(n) * -2.5})
    labels = ["plain", "a,b", 'say "hi"', "two\nlines", "naïve α", None, "", "x" * 40]
    oks = [True, False, None, True, False, True, None, False]
    node.append("slow", BASE + np.arange(8) * 10.0, {"label": labels, "ok": oks})
    return t


@pytest_twisted.ensureDeferred
async def test_hapiclient_reads_every_dataset_in_csv_and_binary_equal_to_get_data(router, parts):
    node, url, session = await mesh(router, parts, "hp1")
    fill(node)
    start, stop = iso(BASE - 1), iso(BASE + 1000)
    for dataset, fields in (("hp1/fast", ["x", "y"]), ("hp1/slow", ["label", "ok"])):
        t, cols = await get_data(session, "hp1", fields, parse_time(start), parse_time(stop))
        assert t.size > 0
        for fmt in ("csv", "binary"):
            data, meta = await hapi_client(url, dataset, "", start, stop, format=fmt)
            assert meta["x_server"] == url and data.dtype.names == ("Time", *fields)
            assert_same(meta, data, t, cols)
            # A subset (the second parameter alone) arrives alone, with Time.
            part, meta = await hapi_client(url, dataset, fields[1], start, stop, format=fmt)
            assert part.dtype.names == ("Time", fields[1])
            assert_same(meta, part, t, {fields[1]: cols[fields[1]]})
    # Fills round-trip: the node's missing values come back as the declared fills.
    data, meta = await hapi_client(url, "hp1/slow", "", start, stop, format="binary")
    fills = {p["name"]: p["fill"] for p in meta["parameters"]}
    assert fills == {"Time": None, "label": "", "ok": "-1"}
    assert data["ok"].tolist() == [1, 0, -1, 1, 0, 1, -1, 0]
    assert data["label"].tolist()[5] == fills["label"]
    fast, meta = await hapi_client(url, "hp1/fast", "x", start, stop, format="csv")
    assert {p["name"]: p["fill"] for p in meta["parameters"]}["x"] == "NaN"
    assert np.isnan(fast["x"][7]) and np.isnan(fast["x"][8])  # NaN and an infinity: missing


@pytest_twisted.ensureDeferred
async def test_metadata_follows_the_hapi_json_schema(router, parts):
    node, url, _ = await mesh(router, parts, "hp2")
    fill(node)
    code, about = await get_json(url + "/about")
    assert code == 200
    hapi_schema.validate(about, hapi_schema.ABOUT)
    code, caps = await get_json(url + "/capabilities")
    hapi_schema.validate(caps, hapi_schema.CAPABILITIES)
    assert caps["outputFormats"] == ["csv", "binary", "json"]
    code, catalog = await get_json(url + "/catalog")
    hapi_schema.validate(catalog, hapi_schema.CATALOG)
    ids = [d["id"] for d in catalog["catalog"]]
    assert {"hp2/fast", "hp2/slow"} <= set(ids)
    code, full = await get_json(url + "/catalog?depth=all")
    hapi_schema.validate(full, hapi_schema.CATALOG)
    for dataset in ids:
        code, info = await get_json(f"{url}/info?dataset={dataset}")
        assert code == 200, info
        hapi_schema.validate(info, hapi_schema.INFO)
        names = [p["name"].lower() for p in info["parameters"]]
        assert len(set(names)) == len(names)  # unique, not only by case
        embedded = next(d for d in full["catalog"] if d["id"] == dataset)["info"]
        assert embedded["parameters"] == info["parameters"]
    # The schema is not a rubber stamp: it refuses what the specification forbids.
    code, info = await get_json(f"{url}/info?dataset=hp2/fast")
    bad = {**info, "parameters": [{**info["parameters"][0], "fill": "0"}, *info["parameters"][1:]]}
    with pytest.raises(jsonschema.ValidationError):
        hapi_schema.validate(bad, hapi_schema.INFO)
    with pytest.raises(jsonschema.ValidationError):
        hapi_schema.validate(
            {**info, "units": ""}
            | {"parameters": [{**p, "units": ""} for p in info["parameters"]]},
            hapi_schema.INFO,
        )
    with pytest.raises(jsonschema.ValidationError):
        hapi_schema.validate({**caps, "outputFormats": ["binary"]}, hapi_schema.CAPABILITIES)


ERRORS = [
    # (query, HTTP status, HAPI code)
    ("/info", 400, 1400),  # no dataset
    ("/info?dataset=hp3/nothing", 404, 1406),
    ("/info?dataset=nonode/fast", 404, 1406),
    ("/info?dataset=hp3", 404, 1406),
    ("/info?dataset=hp3/fast&parameters=zz", 404, 1407),
    ("/info?dataset=hp3/fast&parameters=y,x", 400, 1411),
    ("/info?dataset=hp3/fast&parameters=x,x", 400, 1411),
    ("/info?dataset=hp3/fast&resolve_references=maybe", 400, 1412),
    ("/info?dataset=hp3/fast&averagingInterval=5s", 400, 1401),
    ("/info?dataset=hp3/fast&dataset=hp3/slow", 400, 1400),
    ("/catalog?depth=deep", 400, 1413),
    ("/catalog?x=1", 400, 1401),
    ("/capabilities?x=1", 400, 1401),
    ("/data?dataset=hp3/fast&stop=2020Z", 400, 1402),
    ("/data?dataset=hp3/fast&start=yesterday&stop=2020Z", 400, 1402),
    ("/data?dataset=hp3/fast&start=2020-02-30Z&stop=2021Z", 400, 1402),
    ("/data?dataset=hp3/fast&start=2020Z", 400, 1403),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2020-13Z", 400, 1403),
    ("/data?dataset=hp3/fast&start=2021Z&stop=2020Z", 400, 1404),
    ("/data?dataset=hp3/fast&start=2021Z&stop=2021Z", 400, 1404),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&format=xml", 400, 1409),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&include=all", 400, 1410),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&parameters=y,x", 400, 1411),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&parameters=Time,x,x", 400, 1411),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&parameters=x,,y", 404, 1407),
    ("/data?dataset=hp3/gone&start=2020Z&stop=2021Z", 404, 1406),
    ("/data?dataset=hp3/fast&start=2020Z&time.min=2020Z&stop=2021Z", 400, 1400),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&x_stride=-1", 400, 1400),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&x_reduce=minmax", 400, 1400),
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&x_stride=1&x_reduce=max", 400, 1400),
    ("/data?dataset=hp3/fast&start=1900Z&stop=2100Z", 400, 1408),  # 2,000 stored > max_rows
    ("/data?dataset=hp3/fast&start=2020Z&stop=2021Z&fields=x", 400, 1401),
    ("/nosuch", 404, 1400),
    ("/data/more?dataset=hp3/fast", 404, 1400),
    ("/data?dataset=%ff&start=2020Z&stop=2021Z", 400, 1400),
]


@pytest_twisted.ensureDeferred
async def test_every_error_is_a_hapi_status_and_never_echoes_the_input(router, parts):
    node, url, _ = await mesh(router, parts, "hp3", hapi={"max_rows": 1000})
    fill(node)
    for q, http_status, hapi_code in ERRORS:
        code, phrase, headers, body = await http(url + q)
        assert (code, q) == (http_status, q)
        doc = hapi_schema_error(body)
        assert doc["status"]["code"] == hapi_code, (q, doc)
        assert f"HAPI {hapi_code}".encode() in phrase  # the status line names the code
        assert headers.getRawHeaders(b"content-type") == [b"application/json"]
        for echoed in ("averagingInterval", "yesterday", "xml", "zz", "nonode"):
            assert echoed not in doc["status"]["message"]
    # Only GET and HEAD: anything else is refused with a HAPI status too.
    code, phrase, _, body = await http(url + "/catalog", b"POST")
    assert code == 405 and hapi_schema_error(body)["status"]["code"] == 1400
    code, _, headers, body = await http(url + "/catalog", b"HEAD")
    assert code == 200 and body == b""
    # A trailing slash is redirected (the specification's advice), the query kept.
    code, _, headers, _ = await http(url + "/info/?dataset=hp3/fast")
    assert code == 301
    assert headers.getRawHeaders(b"location") == [b"/hapi/info?dataset=hp3/fast"]


def hapi_schema_error(body: bytes) -> dict:
    doc = json.loads(body)
    hapi_schema.validate(doc, hapi_schema.ERROR)
    return doc


@pytest_twisted.ensureDeferred
async def test_header_formats_and_the_old_parameter_names(router, parts):
    node, url, session = await mesh(router, parts, "hp4")
    t = fill(node, 500)
    q = f"dataset=hp4/fast&start={iso(BASE)}&stop={iso(BASE + 60)}"
    code, phrase, headers, csv_body = await http(f"{url}/data?{q}")
    assert code == 200 and b"HAPI 1200" in phrase
    assert headers.getRawHeaders(b"content-type") == [b"text/csv; charset=utf-8"]
    rows = csv_body.decode().splitlines()
    want_t = t[(t >= BASE) & (t < BASE + 60)]
    assert [r.split(",")[0].encode() for r in rows] == iso_reference(want_t)
    # HAPI 2's names give the same answer.
    old = q.replace("dataset=", "id=").replace("start=", "time.min=").replace("stop=", "time.max=")
    assert (await http(f"{url}/data?{old}"))[3] == csv_body
    # include=header: the info document, each line behind #, with format.
    code, _, _, with_header = await http(f"{url}/data?{q}&include=header")
    head = b"".join(line[1:] for line in with_header.splitlines(True) if line.startswith(b"#"))
    doc = json.loads(head)
    hapi_schema.validate(doc, hapi_schema.INFO)
    assert doc["format"] == "csv" and with_header.endswith(csv_body)
    code, _, headers, binary = await http(f"{url}/data?{q}&format=binary&include=header")
    lines = binary.split(b"\n")
    header_len = sum(len(line) + 1 for line in lines if line.startswith(b"#"))
    header = b"".join(line[1:] for line in lines if line.startswith(b"#"))
    assert json.loads(header)["format"] == "binary"
    records = np.frombuffer(binary[header_len:], dtype=[("t", "S27"), ("x", "<f8"), ("y", "<f8")])
    assert records["t"].tolist() == iso_reference(want_t)
    # JSON: one document, data records last.
    code, _, headers, body = await http(f"{url}/data?{q}&format=json&parameters=y")
    doc = json.loads(body)
    assert doc["format"] == "json" and [p["name"] for p in doc["parameters"]] == ["Time", "y"]
    assert [r[0] for r in doc["data"]] == [s.decode() for s in iso_reference(want_t)]
    assert all(len(r) == 2 for r in doc["data"])
    # No data in the range: an empty body, 1201 in the status line and in any header.
    code, phrase, _, body = await http(f"{url}/data?dataset=hp4/fast&start=2001Z&stop=2002Z")
    assert code == 200 and body == b"" and b"HAPI 1201" in phrase
    code, _, _, body = await http(f"{url}/data?dataset=hp4/fast&start=2001Z&stop=2002Z&format=json")
    assert json.loads(body)["status"]["code"] == 1201 and json.loads(body)["data"] == []


@pytest_twisted.ensureDeferred
async def test_a_live_dataset_stops_at_its_newest_sample_and_up_to_now_is_what_is_stored(
    router, parts
):
    node, url, session = await mesh(router, parts, "hp5")
    now = float(int(time.time()))  # stamps exact in binary: the printed ones read back the same
    node.append("fast", [now - 30, now - 20, now - 10.5], {"x": [1.0, 2.0, 3.0], "y": [0, 0, 0]})
    code, info = await get_json(url + "/info?dataset=hp5/fast")
    assert info["stopDate"] == iso(now - 10.5) and info["startDate"] == iso(now - 30)
    newest = now - 0.5
    node.append("fast", [newest], {"x": [4.0], "y": [0.0]})
    code, info = await get_json(url + "/info?dataset=hp5/fast")
    assert info["stopDate"] == iso(newest)
    # A request up to now (and past it) returns what is stored: the newest sample included.
    data, _ = await hapi_client(url, "hp5/fast", "x", iso(now - 3600), iso(time.time() + 3600))
    assert data["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    data, _ = await hapi_client(url, "hp5/fast", "x", iso(now - 3600), info["stopDate"])
    assert data["x"].tolist() == [1.0, 2.0, 3.0]  # stop is exclusive


@pytest_twisted.ensureDeferred
async def test_a_request_past_the_point_budget_is_split_into_windows(router, parts):
    # The node refuses more than 3,000 values per reply; HAPI asks in windows of 3,000.
    node, url, session = await mesh(
        router, parts, "hp6", hapi={"window_values": 3000}, point_budget=3000
    )
    n = 50_000
    t = BASE + np.arange(n) * 0.01
    node.append("fast", t, {"x": np.arange(n) * 1.0, "y": np.arange(n) * 0.5})
    start, stop = iso(BASE), iso(BASE + n * 0.01)
    for fmt in ("csv", "binary"):
        data, meta = await hapi_client(url, "hp6/fast", "", start, stop, format=fmt)
        assert data["x"].tolist() == list(range(n))
        assert data["Time"].tolist() == iso_reference(t)
    code, status = await get_json(url + "/x_status")
    assert status["x_counters"]["rows"] >= 2 * n
    with pytest.raises(Exception, match="too_many_points"):
        await session.call("obsmesh.consumer.hp6.get_data", ["x"], BASE, BASE + 500)


@pytest_twisted.ensureDeferred
async def test_x_stride_and_x_reduce_are_the_nodes_min_stride_and_reduce(router, parts):
    node, url, session = await mesh(router, parts, "hp7", hapi={"window_values": 500})
    n = 20_000
    t = BASE + np.arange(n) * 0.1
    node.append("fast", t, {"x": np.sin(np.arange(n) / 50.0), "y": np.arange(n) * 1.0})
    for reduce in ("mean", "minmax"):
        want_t, want = await get_data(
            session, "hp7", ["x", "y"], BASE, BASE + n * 0.1, min_stride=7.0, reduce=reduce
        )
        code, _, _, body = await http(
            f"{url}/data?dataset=hp7/fast&start={iso(BASE)}&stop={iso(BASE + n * 0.1)}"
            f"&x_stride=PT7S&x_reduce={reduce}&format=binary"
        )
        rec = np.frombuffer(body, dtype=[("t", "S27"), ("x", "<f8"), ("y", "<f8")])
        # Windows are cut at multiples of the stride: the same bins as one call.
        assert rec["t"].tolist() == iso_reference(want_t)
        assert np.array_equal(rec["x"], want["x"]) and np.array_equal(rec["y"], want["y"])


@pytest_twisted.ensureDeferred
async def test_a_thousand_concurrent_requests_are_answered_within_the_bounds(router, parts):
    node, url, session = await mesh(
        router, parts, "hp8", hapi={"max_streams": 3, "max_waiting": 400, "max_requests": 700}
    )
    fill(node, 5000)
    pool = HTTPConnectionPool(reactor)
    pool.maxPersistentPerHost = 1000
    q = f"/data?dataset=hp8/fast&start={iso(BASE)}&stop={iso(BASE + 600)}"
    kinds = [q, q + "&format=binary", "/info?dataset=hp8/fast", "/catalog", q + "&format=zip"]
    requests = [http(url + kinds[i % len(kinds)], pool=pool) for i in range(1000)]
    answers = await defer.gatherResults([defer.ensureDeferred(r) for r in requests])
    codes = [a[0] for a in answers]
    assert set(codes) <= {200, 400, 503}
    assert codes.count(200) >= 100  # the bounds refuse some, never all
    for code, _, headers, body in answers:
        if code != 200:
            assert hapi_schema_error(body)["status"]["code"] in (1409, 1500)
            if code == 503:
                assert headers.getRawHeaders(b"retry-after") == [b"1"]
    code, status = await get_json(url + "/x_status")
    counters = status["x_counters"]
    assert counters["peak_streams"] <= 3 and counters["streams"] == 0
    assert counters["failures"] == 0 and counters["in_progress"] == 1  # this request
    # Every streamed answer is whole.
    csv_answers = [
        a[3] for a, k in zip(answers, range(1000), strict=True) if k % 5 == 0 and a[0] == 200
    ]
    assert len({len(b) for b in csv_answers}) == 1
    await pool.closeCachedConnections()
