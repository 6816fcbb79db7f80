"""The WAMP run loop every backend service shares: one autobahn Component over
the backend rawsocket (msgpack), reconnecting forever with capped exponential
backoff and jitter, including when the very first connection fails."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.component import Component
from autobahn.twisted.rawsocket import WampRawSocketClientProtocol
from twisted.logger import Logger

from obsmesh import backoff
from obsmesh import secrets as mesh_secrets
from obsmesh.periodic import Periodic

RETRY = backoff.ROUTER.autobahn()  # forever


def transport(url: str, serializer: str = "msgpack", tls_ca: str = "") -> dict[str, Any]:
    """An autobahn transport description for `rs://`, `rss://`, `tcp://`, `ws://` or
    `wss://` URLs; `rss://` and `wss://` trust `tls_ca` (a PEM file) when given,
    the system's roots otherwise."""
    parsed = urlparse(url)
    if parsed.scheme in ("rs", "rss", "tcp"):
        spec = {
            "type": "rawsocket",
            "url": f"{'rss' if parsed.scheme == 'rss' else 'rs'}://{parsed.hostname}:{parsed.port}",
            "serializer": serializer,
            **RETRY,
        }
    elif parsed.scheme in ("ws", "wss"):
        spec = {"type": "websocket", "url": url, "serializers": [serializer], **RETRY}
    else:
        raise ValueError(f"router URL must be rs://, rss://, tcp://, ws:// or wss://, got {url!r}")
    if tls_ca and parsed.scheme in ("rss", "wss"):
        spec["endpoint"] = {
            "type": "tcp",
            "host": parsed.hostname,
            "port": parsed.port,
            "tls": {"hostname": parsed.hostname, "trust_root": tls_ca},
        }
    return spec


def component(
    url: str,
    realm: str,
    authentication: dict | None = None,
    serializer: str = "msgpack",
    tls_ca: str | None = None,
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
    if tls_ca is None:
        tls_ca = os.environ.get("OBSMESH_TLS_CA", "")
    return no_delay(
        Component(
            transports=[transport(url, serializer, tls_ca)],
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


def keep_alive(
    comp: Component,
    interval: float,
    probe: str = "wamp.subscription.lookup",
    on_answer: Callable[[float], None] | None = None,
    reactor: Any = None,
) -> Component:
    """Notice a dead connection and drop it, so `comp` reconnects.

    A pulled cable or a host that vanished sends no reset: TCP keeps the
    connection open for many minutes while everything sent into it is lost, and
    rawsocket has no pings. Every `interval` seconds the session calls `probe`,
    a meta procedure the router answers itself (any answer, an error included,
    proves the path works); after `3 * interval` seconds without one, the
    connection is aborted. `on_answer(sent)` gets the monotonic time the
    answered probe was sent: everything sent before it has reached the router.
    """
    if interval <= 0:
        return comp
    if reactor is None:
        from twisted.internet import reactor
    log = Logger()
    beats: dict[int, Periodic] = {}

    def joined(session, details):
        state = {"answered": time.monotonic(), "outstanding": False}

        def answered(_result, sent):
            state["answered"] = time.monotonic()
            state["outstanding"] = False
            if on_answer is not None:
                on_answer(sent)

        def beat():
            now = time.monotonic()
            if now - state["answered"] > 3 * interval:
                log.warn(
                    "no answer from the router for {s:.0f} s: dropping the connection",
                    s=now - state["answered"],
                )
                _abort(session)
                return
            if not state["outstanding"]:
                state["outstanding"] = True
                d = session.call(probe, "heartbeat")
                d.addBoth(answered, now)

        loop = Periodic(reactor, interval, beat, name="heartbeat")
        beats[id(session)] = loop
        loop.start(now=False)

    def left(session, *args):
        loop = beats.pop(id(session), None)
        if loop is not None:
            loop.stop()

    comp.on("join", joined)
    comp.on("leave", left)
    return comp


def _abort(session: Any) -> None:
    wamp_transport = getattr(session, "_transport", None)
    tcp = getattr(wamp_transport, "transport", None)
    if tcp is not None and hasattr(tcp, "abortConnection"):
        tcp.abortConnection()
    elif wamp_transport is not None:
        wamp_transport.close()


def linear_framing(protocol: Any) -> None:
    """Frame a rawsocket client's incoming messages in linear time.

    autobahn's rawsocket reads frames with Twisted's Int32StringReceiver, which
    copies the whole partial message on every read: quadratic in the message
    size. A 1 MB get_data chunk arriving in 64 KiB reads was copied 16 times,
    most of the Grafana bridge's CPU when it streams a download. Installed on
    the protocol instance (its handshake is left to autobahn); nothing for
    other transports."""
    if isinstance(protocol, WampRawSocketClientProtocol) and "dataReceived" not in vars(protocol):
        protocol.dataReceived = _LinearFrames(protocol)  # type: ignore[method-assign]  # this one


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
        settings["router_url"],
        settings["realm"],
        credentials(settings, authid),
        serializer,
        settings.get("tls_ca") or "",
    )
