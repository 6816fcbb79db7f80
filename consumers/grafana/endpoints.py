"""What each endpoint answers, given a parsed JSON body and the bridge.

Both plugins are served from one table (`ROUTES`): the current JSON
datasource (`/`, `/metrics`, `/metric-payload-options`, `/query`,
`/variable`, `/tag-keys`, `/tag-values`) and the legacy SimpleJSON plugin
(`/search`, `/query` with `type`, `/annotations`, `/tag-keys`, `/tag-values`).
The HTTP plumbing (auth, CORS, errors, `/export` streaming) is in `http.py`.

Dashboard variables and `/search` share a small query language:
`nodes()`, `fields(<node>)`, `timelines(<node>)`; any other text lists the
targets containing it (empty text lists them all).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer

from consumers.grafana import frames, protocol
from consumers.grafana.bridge import Bridge
from consumers.grafana.catalog import Series
from consumers.grafana.errors import RequestError
from consumers.grafana.protocol import EVENTS, SEPARATOR, WILDCARD

TAG_KEYS = ("node", "field", "timeline", "units", "type", "kind")
_FUNCTION = re.compile(r"^\s*(nodes|fields|timelines)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")

REDUCE_OPTIONS = [
    {"label": "mean of each bin", "value": "mean"},
    {"label": "min and max of each bin (spikes survive)", "value": "minmax"},
]
FORMAT_OPTIONS = [
    {"label": "time series", "value": "timeseries"},
    {"label": "table", "value": "table"},
]
PAYLOADS = [
    {
        "label": "Reduction",
        "name": "reduce",
        "type": "select",
        "width": 30,
        "placeholder": "mean",
        "options": REDUCE_OPTIONS,
    },
    # No options here: Grafana asks /metric-payload-options for the node's timelines.
    {
        "label": "Timeline",
        "name": "timeline",
        "type": "select",
        "width": 30,
        "reloadMetric": True,
        "placeholder": "every timeline",
    },
    {
        "label": "Format",
        "name": "format",
        "type": "select",
        "width": 20,
        "placeholder": "time series",
        "options": FORMAT_OPTIONS,
    },
]


async def fresh(bridge: Bridge) -> None:
    """Before a picker lists fields, every node's field list is fetched anew (pickers are
    opened rarely; a field declared a moment ago must be offered)."""
    nodes = list(bridge.catalog.nodes)
    # Concurrently; a node that does not answer keeps its last known fields.
    await defer.DeferredList(
        [defer.ensureDeferred(bridge.refresh_fields(n)) for n in nodes], consumeErrors=True
    )


def _connected(bridge: Bridge) -> None:
    bridge._require()


def _label(s: Series) -> str:
    units = s.meta.get("units") or ""
    return f"{s.name} [{units}]" if units else s.name


def target_names(bridge: Bridge, timeline: str | None = None) -> list[tuple[str, str]]:
    """(value, label) of everything a panel can ask for."""
    out: list[tuple[str, str]] = []
    for node, entry in sorted(bridge.catalog.nodes.items()):
        if timeline and timeline not in entry.timelines:
            continue
        out.append((f"{node}{SEPARATOR}{WILDCARD}", f"{node}: every field"))
        for f in sorted(entry.fields):
            s = Series(node, f, entry.fields[f])
            if not timeline or s.timeline == timeline:
                out.append((s.name, _label(s)))
        out.append((f"{node}{SEPARATOR}{EVENTS}", f"{node}: events (annotations)"))
    return out


# -- the current JSON datasource -------------------------------------------------
async def root(bridge: Bridge, body: Any) -> dict[str, Any]:
    _connected(bridge)
    return {
        "status": "ok",
        "service": "obsmesh grafana bridge",
        "nodes": sorted(bridge.catalog.nodes),
    }


async def metrics(bridge: Bridge, body: Any) -> list[dict[str, Any]]:
    _connected(bridge)
    body = protocol.as_body(body)
    payload = protocol.as_object(body.get("payload"), "payload")
    timeline = protocol.text(payload.get("timeline"), "payload.timeline") or None
    protocol.text(body.get("metric"), "metric")
    await fresh(bridge)
    return [
        {"label": label, "value": value, "payloads": PAYLOADS}
        for value, label in target_names(bridge, timeline)
    ]


async def metric_payload_options(bridge: Bridge, body: Any) -> list[dict[str, str]]:
    _connected(bridge)
    body = protocol.as_body(body)
    name = protocol.text(body.get("name"), "name") or ""
    metric = protocol.text(body.get("metric"), "metric") or ""
    protocol.as_object(body.get("payload"), "payload")
    if name == "reduce":
        return REDUCE_OPTIONS
    if name == "format":
        return FORMAT_OPTIONS
    if name == "timeline":
        node = metric.partition(SEPARATOR)[0]
        nodes = [node] if node in bridge.catalog.nodes else sorted(bridge.catalog.nodes)
        names = sorted({tl for n in nodes for tl in bridge.catalog.timelines(n)})
        return [{"label": tl, "value": tl} for tl in names]
    return []


async def query(bridge: Bridge, body: Any) -> list[dict[str, Any]]:
    _connected(bridge)
    settings = bridge.settings
    q = protocol.parse_query(body, int(settings["max_points"]), int(settings["max_series"]))
    return await bridge.query(q)


def _listing(bridge: Bridge, text: str) -> list[tuple[str, str]]:
    """The query language of /variable and /search: (value, text) pairs."""
    m = _FUNCTION.match(text)
    if m:
        what, arg = m.group(1), m.group(2)
        if what == "nodes":
            return [(n, n) for n in sorted(bridge.catalog.nodes)]
        nodes = protocol.alternatives(arg) if arg else tuple(sorted(bridge.catalog.nodes))
        if what == "timelines":
            names = sorted({tl for n in nodes for tl in bridge.catalog.timelines(n)})
        else:
            names = sorted(
                {
                    f
                    for n in nodes
                    if n in bridge.catalog.nodes
                    for f in bridge.catalog.nodes[n].fields
                }
            )
        return [(x, x) for x in names]
    needle = text.strip()
    return [(value, value) for value, _ in target_names(bridge) if needle in value]


async def variable(bridge: Bridge, body: Any) -> list[dict[str, str]]:
    _connected(bridge)
    body = protocol.as_body(body)
    text = protocol.query_text(body, "payload", nested=True)
    protocol.as_object(body.get("range"), "range")
    await fresh(bridge)
    return [{"__text": t, "__value": v} for v, t in _listing(bridge, text)]


async def tag_keys(bridge: Bridge, body: Any) -> list[dict[str, str]]:
    _connected(bridge)
    protocol.as_body(body)
    return [{"type": "string", "text": k} for k in TAG_KEYS]


async def tag_values(bridge: Bridge, body: Any) -> list[dict[str, str]]:
    _connected(bridge)
    body = protocol.as_body(body)
    key = protocol.text(body.get("key"), "key")
    if key is None:
        raise RequestError("key is required")
    await fresh(bridge)
    return [{"text": v} for v in bridge.catalog.tag_values(key)] if key in TAG_KEYS else []


# -- the legacy SimpleJSON plugin ----------------------------------------------
async def search(bridge: Bridge, body: Any) -> list[str]:
    _connected(bridge)
    text = protocol.query_text(protocol.as_body(body), "target")
    await fresh(bridge)
    return [v for v, _ in _listing(bridge, text)]


async def annotations(bridge: Bridge, body: Any) -> list[dict[str, Any]]:
    _connected(bridge)
    body = protocol.as_body(body)
    start, end = protocol.parse_range(body)
    annotation = protocol.as_object(body.get("annotation"), "annotation")
    text = protocol.query_text(annotation, "query")
    events = await bridge.events(bridge.annotation_nodes(text), start, end)
    merged = sorted((e for evs in events.values() for e in evs), key=lambda e: e["time"])
    return frames.legacy_annotations(annotation, merged)


Handler = Callable[[Bridge, Any], Awaitable[Any]]

# path -> (methods, handler); /export and /openapi are served by http.py itself.
ROUTES: dict[str, tuple[tuple[bytes, ...], Handler | None]] = {
    "/": ((b"GET", b"HEAD"), root),
    "/metrics": ((b"POST",), metrics),
    "/metric-payload-options": ((b"POST",), metric_payload_options),
    "/query": ((b"POST",), query),
    "/variable": ((b"POST",), variable),
    "/tag-keys": ((b"POST",), tag_keys),
    "/tag-values": ((b"POST",), tag_values),
    "/search": ((b"POST",), search),
    "/annotations": ((b"POST",), annotations),
    "/export": ((b"GET", b"HEAD"), None),
    "/openapi.yaml": ((b"GET", b"HEAD"), None),
}
