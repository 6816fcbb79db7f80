"""The WAMP run loop every backend service shares: one autobahn Component over
the backend rawsocket (msgpack), reconnecting forever with capped exponential
backoff and jitter, including when the very first connection fails."""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.component import Component
from autobahn.twisted.rawsocket import WampRawSocketClientProtocol

from obsmesh import secrets as mesh_secrets

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


def component(
    url: str, realm: str, authentication: dict | None = None, serializer: str = "msgpack"
) -> Component:
    """A Component on `url`. Without explicit `authentication`, a backend
    (rawsocket) client authenticates from the environment, as `OBSMESH_AUTHID`
    (default `service`), with `OBSMESH_SECRET`, `OBSMESH_SECRET_FILE` or a
    secret derived from `OBSMESH_SECRETS_FILE`."""
    if authentication is None and urlparse(url).scheme in ("rs", "rss", "tcp"):
        env = {
            k.removeprefix("OBSMESH_").lower(): v
            for k, v in os.environ.items()
            if k.startswith("OBSMESH_")
        }
        authentication = credentials(env, os.environ.get("OBSMESH_AUTHID") or "service")
    return no_delay(
        Component(
            transports=[transport(url, serializer)],
            realm=realm,
            authentication=authentication or {},
        )
    )


def no_delay(comp: Component) -> Component:
    """Switch Nagle's algorithm off on every connection `comp` makes.

    WAMP messages are small and latency-bound. With Nagle on, a message written
    while an earlier one still awaits its ACK is held back until the peer's
    delayed ACK (up to 40 ms on Linux); with a few calls in flight that was the
    whole tail of the Grafana bridge's latency (p99 60-130 ms, 23 ms without).
    autobahn sets TCP_NODELAY for WebSocket but not for rawsocket.
    """

    def connected(_session, protocol) -> None:
        send_at_once(getattr(protocol, "transport", None))
        linear_framing(protocol)

    comp.on("connect", connected)
    return comp


def linear_framing(protocol: Any) -> None:
    """Frame a rawsocket client's incoming messages in linear time.

    autobahn's rawsocket reads frames with Twisted's Int32StringReceiver, which
    copies the whole partial message on every read: quadratic in the message
    size. A 1 MB get_data chunk arriving in 64 KiB reads was copied 16 times,
    most of the Grafana bridge's CPU when it streams a download. Installed on
    the protocol instance (its handshake is left to autobahn); nothing for
    other transports."""
    if isinstance(protocol, WampRawSocketClientProtocol) and "dataReceived" not in vars(protocol):
        protocol.dataReceived = _LinearFrames(protocol)


class _LinearFrames:
    """A rawsocket protocol's dataReceived: received bytes kept as a list of reads,
    joined once per frame."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.parts: list[bytes] = []
        self.have = 0
        self.need: int | None = None  # size of the frame at the front (header + body)

    def __call__(self, data: bytes) -> None:
        p = self.protocol
        if not p._handshake_complete:
            type(p).dataReceived(p, data)  # autobahn's handshake; it hands back what follows
            return
        self.parts.append(data)
        self.have += len(data)
        while not p.paused and p.transport is not None:
            if self.need is None:
                if self.have < 4:
                    return
                if len(self.parts[0]) < 4:
                    self.parts = [b"".join(self.parts)]
                (length,) = struct.unpack("!I", self.parts[0][:4])
                if length > p.MAX_LENGTH:
                    p.lengthLimitExceeded(length)
                    return
                self.need = 4 + length
            if self.have < self.need:
                return
            joined = b"".join(self.parts) if len(self.parts) > 1 else self.parts[0]
            rest = joined[self.need :]
            body = bytes(memoryview(joined)[4 : self.need])
            self.parts = [rest] if rest else []
            self.have = len(rest)
            self.need = None
            p.stringReceived(body)


def send_at_once(tcp: Any) -> None:
    """TCP_NODELAY on a Twisted transport (see `no_delay`); nothing for one that is not TCP."""
    try:
        tcp.setTcpNoDelay(True)
    except (AttributeError, OSError):  # not a TCP transport (or already gone): nothing to tune
        pass


def credentials(settings: Mapping[str, Any], authid: str) -> dict | None:
    """WAMP-CRA credentials of a backend service, or None to connect anonymously.

    In order: the service's own secret (`secret`, or the file `secret_file`),
    else a secret derived from the mesh's secrets file (`secrets_file`, what the
    local launcher and the tests give their children).
    """
    secret = settings.get("secret") or ""
    if not secret and settings.get("secret_file"):
        try:
            with open(settings["secret_file"], encoding="utf-8") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret_file: {exc}") from None
    if not secret and settings.get("secrets_file"):
        secret = mesh_secrets.load(settings["secrets_file"]).secret_for(authid)
    if not secret:
        return None
    return {"wampcra": {"authid": authid, "secret": secret}}


def service_component(
    settings: Mapping[str, Any], authid: str, serializer: str = "msgpack"
) -> Component:
    """A backend service's Component: the mesh settings' router, realm and credentials."""
    return component(
        settings["router_url"], settings["realm"], credentials(settings, authid), serializer
    )
