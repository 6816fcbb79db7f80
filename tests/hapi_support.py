"""What the HAPI tests share: the bridge started in-process, real HTTP, the
reference client `hapiclient` run in a thread (it blocks; the node and the
bridge live on the test's reactor), and the WAMP `get_data` values a HAPI
answer must equal."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from autobahn.wamp.types import CallOptions
from twisted.internet import reactor, threads
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from consumers.grafana import cli
from consumers.hapi import settings as hapi_settings
from obsmesh import config, wire


async def start_bridge(router, hapi: dict | None = None, **overrides):
    """The Grafana bridge with /hapi, in this process, on a free port."""
    mesh = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
    )
    settings = {**cli.DEFAULTS, "port": 0, "query_timeout": 10.0, **overrides}
    settings["hapi"] = {**hapi_settings.DEFAULTS, **(hapi or {})}
    bridge, port = cli.serve(mesh, settings, reactor)
    return bridge, port, f"http://127.0.0.1:{port.getHost().port}/hapi"


async def stop_bridge(bridge, port) -> None:
    await port.stopListening()
    await bridge.stop()


_POOL: list[HTTPConnectionPool] = []


async def http(url: str, method: bytes = b"GET", pool: HTTPConnectionPool | None = None):
    """One real HTTP request: (status, reason, headers, body)."""
    d = Agent(reactor, pool=pool).request(method, url.encode(), Headers({}), None)
    d.addTimeout(60, reactor)
    response = await d
    body = await readBody(response)
    return response.code, response.phrase, response.headers, body


async def get_json(url: str) -> tuple[int, Any]:
    code, _, _, body = await http(url)
    return code, json.loads(body)


async def hapi_client(*args, **options) -> tuple[np.ndarray, dict]:
    """`hapiclient.hapi(...)` in a thread, without its file cache."""
    from hapiclient import hapi

    options = {"cache": False, "usecache": False, "logging": False, **options}
    return await threads.deferToThread(hapi, *args, **options)


async def get_data(session, node: str, fields: list[str], start: float, end: float, **kw):
    """The node's own answer over WAMP (binary columns, progressive chunks joined):
    (times, {field: values}) for the one timeline of `fields`."""
    chunks: list = []
    final = await session.call(
        f"obsmesh.consumer.{node}.get_data",
        fields,
        start,
        end,
        encoding="array",
        options=CallOptions(on_progress=lambda r, *a, **k: chunks.append(r)),
        **kw,
    )
    chunks.append(final)
    times, cols = [], {f: [] for f in fields}
    for c in chunks:
        (tl,) = c["timeline"].keys()
        times.append(wire.decode(c["timeline"][tl]["t"]))
        for f in fields:
            cols[f].append(wire.decode(c["data"][f]))
    return np.concatenate(times), {f: np.concatenate(v) for f, v in cols.items()}


def iso_reference(t: np.ndarray) -> list[bytes]:
    """Times as HAPI writes them, computed with numpy's own formatter (not the server's)."""
    us = np.rint(t * 1e6).astype(np.int64).astype("datetime64[us]")
    return [s.encode() + b"Z" for s in np.datetime_as_string(us, unit="us").tolist()]


def assert_same(meta: dict, data: np.ndarray, t: np.ndarray, cols: dict) -> None:
    """A hapiclient answer equals get_data's: times, numbers (NaN where missing),
    bools as 1/0/-1, strings with "" for missing, arrays with their shape."""
    assert data.shape[0] == t.shape[0]
    assert data["Time"].tolist() == iso_reference(t)
    for p in meta["parameters"][1:]:
        name = p["name"]
        got, want = data[name], cols[name]
        if p["type"] == "double":
            want = np.array(
                [np.nan if v is None else v for v in want.tolist()]
                if want.dtype.kind == "O"
                else want,
                dtype=float,
            )
            want = np.where(np.isfinite(want), want, np.nan)
            assert got.shape == want.shape, name
            assert np.array_equal(got, want, equal_nan=True), name
        elif p["type"] == "integer":
            expected = [-1 if v is None else int(bool(v)) for v in want.tolist()]
            assert got.tolist() == expected, name
        else:
            expected = ["" if v is None else v for v in want.tolist()]
            assert [str(v) for v in got.tolist()] == expected, name


def body_json(body: bytes) -> Any:
    return json.load(io.BytesIO(body))
