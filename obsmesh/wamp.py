"""The WAMP run loop every backend service shares: one autobahn Component over
the backend rawsocket (msgpack), reconnecting forever with capped exponential
backoff and jitter, including when the very first connection fails."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.component import Component
from autobahn.wamp.types import ComponentConfig  # noqa: F401  (re-exported for hosts)

RETRY = {
    "max_retries": -1,  # forever
    "initial_retry_delay": 0.25,
    "max_retry_delay": 5.0,
    "retry_delay_growth": 1.6,
    "retry_delay_jitter": 0.25,
}


def transport(url: str, serializer: str = "msgpack") -> dict[str, Any]:
    """An autobahn transport description for `rs://`, `tcp://`, `ws://` or `wss://` URLs."""
    parsed = urlparse(url)
    if parsed.scheme in ("rs", "rss", "tcp"):
        return {
            "type": "rawsocket",
            "url": f"{'rss' if parsed.scheme == 'rss' else 'rs'}://{parsed.hostname}:{parsed.port}",
            "serializer": serializer,
            **RETRY,
        }
    if parsed.scheme in ("ws", "wss"):
        return {"type": "websocket", "url": url, "serializers": [serializer], **RETRY}
    raise ValueError(f"router URL must be rs://, tcp://, ws:// or wss://, got {url!r}")


def component(url: str, realm: str, authentication: dict | None = None, serializer: str = "msgpack") -> Component:
    return Component(transports=[transport(url, serializer)], realm=realm, authentication=authentication or {})
