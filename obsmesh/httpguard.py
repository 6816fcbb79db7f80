"""A bounded HTTP front door on twisted.web: what an anonymous client can hold is capped.

Used by the services that face the outside over HTTP (the CO2 unit endpoint,
the Grafana bridge and what shares its port). Every limit is a setting
(`HttpLimits`) with a safe default.

- **Connections**: at most `max_connections` in all and `max_per_client` from
  one address. At a cap, a new connection takes the place of the oldest one
  that has been *waiting* for at least 0.25 s: still sending its request
  head, idle between requests, or being drained after a refusal. A client
  that has sent a complete, accepted head is never pushed out, so slow or
  half-open clients cannot starve real ones, and a burst of real clients never
  pushes itself out. While the door is full with nobody to push out, the port
  stops accepting and new clients wait in the kernel's queue (a client over
  its address's cap is closed at once). The cap never exceeds what the
  process's descriptor limit leaves (`raise_nofile_limit` raises the soft
  limit to the hard one first).
- **Time**: a request head must be complete within `header_timeout` of the
  connection opening or of the previous answer; its body within
  `body_timeout` of the head. A client that is slower is cut.
- **The head is judged before any body byte is read** (`head_check`:
  credentials, route, declared length). A refusal, a declared body over the
  cap (413) included, is answered at once; the write side is closed and what
  the client still sends is read and dropped (at most `drain_bytes` for
  `drain_seconds`), so it sees the answer rather than a reset.
- **Bodies** are counted as they stream (chunked ones included): the first byte
  over the cap gets 413, and nothing past the cap is ever kept.

Refusals at the door (caps, timeouts) are counted, and summed up in one log
line a minute at most, so a flood costs no log line per connection.
"""

from __future__ import annotations

import io
import ipaddress
import resource
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import tcp
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

log = Logger(namespace="obsmesh.http")

DESCRIPTOR_RESERVE = 192  # descriptors kept for files, threads, databases, the router link
# Connections pushed out release their descriptor one reactor turn later: at most this many
# may be on their way out at once, so a burst of accepts never runs the descriptors out.
CLOSING_BUDGET = 64
MAX_ACCEPTS = 32  # connections accepted in one reactor turn (twisted grows it without bound)
PUSH_OUT_AFTER = 0.25  # seconds a connection must have waited before it may be pushed out
SUMMARY_INTERVAL = 60.0  # seconds between summary lines about refusals at the door


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 1024
    max_per_client: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_body_bytes: int = 1 << 20
    drain_bytes: int = 1 << 20
    drain_seconds: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_client", "max_body_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("header_timeout", "body_timeout", "drain_seconds"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if int(self.drain_bytes) < 0:
            raise ValueError("drain_bytes must not be negative")


class Refusal(Exception):
    """An answer given instead of serving the request: `status`, a reason key
    (counted) and a message for the client."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[bytes, bytes] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's soft descriptor limit to its hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def connection_cap(wanted: int, reserve: int = DESCRIPTOR_RESERVE) -> int:
    """`wanted` connections, or fewer if the descriptor limit would not hold them."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - reserve))


def client_key(addr: Any) -> str:
    """The address a per-client cap counts (IPv4-mapped IPv6 as IPv4)."""
    host = getattr(addr, "host", None)
    if not isinstance(host, str):
        return str(addr)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class BoundedPort(tcp.Port):
    """A listening port that accepts at most MAX_ACCEPTS connections a reactor
    turn, so the ones pushed out in a turn are closed before the next accepts,
    and none at all while the door is full: the rest wait in the kernel's
    backlog rather than being turned away."""

    _accepts = MAX_ACCEPTS

    def doRead(self) -> Any:
        room = getattr(self.factory, "room_to_accept", None)
        if room is not None:
            budget = room(self)
            if not budget:
                return None  # accepting stops until a connection ends; the kernel queues the rest
            self._accepts = max(1, min(budget, MAX_ACCEPTS))
        return super().doRead()

    @property
    def numberAccepts(self) -> int:
        return self._accepts

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        self._accepts = max(1, min(int(value), MAX_ACCEPTS))


def listen_tcp(
    reactor: Any, port: int, factory: Any, backlog: int = 1024, interface: str = ""
) -> tcp.Port:
    """`reactor.listenTCP` with a BoundedPort (and a deeper backlog than twisted's 50)."""
    listening = BoundedPort(port, factory, backlog, interface, reactor)
    listening.startListening()
    return listening


class ConnectionTable:
    """Who is connected, from where, and who may be pushed out (pure state).

    A connection is *waiting* while it has not sent a complete, accepted request
    head (or is idle between requests, or drained after a refusal). Only one that
    has waited at least `min_age` seconds may be pushed out: a burst of new
    clients, which all send their heads at once, never pushes itself out.
    `admit(client, now)` says whether a new connection from `client` fits, and
    which waiting connections must make room for it first.
    """

    def __init__(self, max_total: int, max_per_client: int, min_age: float = 0.0) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.min_age = min_age
        self.client: dict[Any, str] = {}
        self.per_client: Counter = Counter()
        self.waiting: OrderedDict[Any, float] = OrderedDict()  # since when; oldest first
        self.waiting_of: dict[str, OrderedDict[Any, float]] = {}

    def __len__(self) -> int:
        return len(self.client)

    def _oldest(self, waiting: OrderedDict[Any, float] | None, now: float, skip: list) -> Any:
        for conn, since in (waiting or {}).items():
            if now - since < self.min_age:
                return None  # the rest are younger still
            if conn not in skip:
                return conn
        return None

    def admit(self, client: str, now: float = 0.0) -> tuple[bool, list[Any]]:
        """(fits, connections to push out first)."""
        evict: list[Any] = []
        if self.per_client[client] >= self.max_per_client:
            victim = self._oldest(self.waiting_of.get(client), now, evict)
            if victim is None:
                return False, []
            evict.append(victim)
        if len(self.client) - len(evict) >= self.max_total:
            victim = self._oldest(self.waiting, now, evict)
            if victim is None:
                return False, []
            evict.append(victim)
        return True, evict

    @property
    def free(self) -> int:
        return max(0, self.max_total - len(self.client))

    def room(self, now: float = 0.0, most: int = 1 << 30) -> int:
        """How many connections from new addresses would fit now (free places,
        then waiting connections old enough to be pushed out), counting to `most`."""
        room = self.free
        for since in self.waiting.values():
            if room >= most or now - since < self.min_age:
                break
            room += 1
        return min(room, most)

    def has_room(self, now: float = 0.0) -> bool:
        """Whether a connection from a new address would fit (accepting may go on)."""
        return self.room(now, 1) > 0

    def add(self, conn: Any, client: str, now: float = 0.0) -> None:
        self.client[conn] = client
        self.per_client[client] += 1
        self.set_waiting(conn, True, now)

    def set_waiting(self, conn: Any, waiting: bool, now: float = 0.0) -> None:
        client = self.client.get(conn)
        if client is None:
            return
        mine = self.waiting_of.setdefault(client, OrderedDict())
        self.waiting.pop(conn, None)
        mine.pop(conn, None)
        if waiting:
            self.waiting[conn] = now
            mine[conn] = now
        elif not mine:
            del self.waiting_of[client]

    def remove(self, conn: Any) -> None:
        client = self.client.pop(conn, None)
        if client is None:
            return
        self.waiting.pop(conn, None)
        mine = self.waiting_of.get(client)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.waiting_of[client]
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


class DoorSummary:
    """Refusals at the door, counted, and logged as one line per interval at most."""

    def __init__(self, name: str, counters: Counter, clock: Callable[[], float]) -> None:
        self.name = name
        self.counters = counters
        self.clock = clock
        self._since: Counter = Counter()
        self._next = 0.0

    def note(self, what: str) -> None:
        self.counters[what] += 1
        self._since[what] += 1
        now = self.clock()
        if now >= self._next:
            self._next = now + SUMMARY_INTERVAL
            parts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self._since.items()))
            self._since.clear()
            log.warn(
                "{name}: clients refused or cut at the door: {parts} (summed up at most once a "
                "minute; totals in the status counters)",
                name=self.name,
                parts=parts,
            )


HeadCheck = Callable[[Request, bytes, bytes, "int | None"], int]
ErrorBody = Callable[[int, str, str], tuple[bytes, bytes]]


def json_error(status: int, reason: str, message: str) -> tuple[bytes, bytes]:
    import json

    return b"application/json", json.dumps({"error": reason, "message": message}).encode()


_REASONS = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    416: b"Range Not Satisfiable",
    503: b"Service Unavailable",
}


class GuardedRequest(Request):
    """A request whose body is counted against the cap its head was given."""

    body_cap: int = 0
    _body_seen = 0
    channel: GuardedChannel  # None once the request is done (Twisted's type omits it)
    # From gotLength on, before any of the body (Twisted's Request declares it as None).
    content: IO[bytes]  # type: ignore[assignment]

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()  # the cap bounds it; subclasses may spool instead
        self.open_body(length)

    def open_body(self, length: int | None) -> None:
        """Called once the head is accepted (subclasses: where the body goes)."""

    def handleContentChunk(self, data: bytes) -> None:
        channel = self.channel
        if channel is None or channel.refused:
            return
        self._body_seen += len(data)
        if self._body_seen > self.body_cap:
            channel.refuse(
                Refusal(413, "body_too_large", f"request body over {self.body_cap} bytes")
            )
            return
        self.body_chunk(data)

    def body_chunk(self, data: bytes) -> None:
        self.content.write(data)


class GuardedChannel(HTTPChannel):
    """An HTTP/1.1 connection with deadlines, a head check before the body and
    refusals answered at once (see the module docstring)."""

    site: GuardedSite
    transport: ITCPTransport | None  # TCP (or TLS over it): it can abort
    refused = False
    pushed_out = False
    _deadline: Any = None
    _drained = 0

    # -- phases -------------------------------------------------------------------
    def connectionMade(self) -> None:
        super().connectionMade()
        self._wait_for_head()

    def _wait_for_head(self) -> None:
        self.site.table.set_waiting(self, True, self.site.reactor.seconds())
        self._arm(self.site.limits.header_timeout, "cut_slow_head")

    def _arm(self, seconds: float | None, cut_as: str = "") -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if seconds is not None:
            self._deadline = self.site.reactor.callLater(seconds, self._cut, cut_as)

    def _cut(self, why: str) -> None:
        self._deadline = None
        self.site.summary.note(why)
        if self.transport is not None:
            self.transport.abortConnection()

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        try:
            request.body_cap = self.site.head_check(request, self._command, self._path, self.length)
            if self.length is not None and self.length > request.body_cap:
                raise Refusal(413, "body_too_large", f"request body over {request.body_cap} bytes")
        except Refusal as refusal:
            request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after a refusal
            self.refuse(refusal)
            return
        self.site.table.set_waiting(self, False)
        self._arm(self.site.limits.body_timeout, "cut_slow_body")
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self.refused:
            return
        self._arm(None)  # our own work has its own bounds
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self.persistent and not self.refused and self.transport is not None:
            self._wait_for_head()

    # -- refusing -------------------------------------------------------------------
    def refuse(self, refusal: Refusal) -> None:
        """Answer `refusal` now, close the write side, drop what still comes."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self.length = -1  # never 0: lineReceived must not hand the request on
        site = self.site
        site.counters[f"refused_{refusal.reason}"] += 1
        site.on_refusal(refusal, self)
        ctype, body = site.error_body(refusal.status, refusal.reason, refusal.message)
        reason = _REASONS.get(refusal.status, b"Refused")
        extra = b"".join(b"%s: %s\r\n" % kv for kv in refusal.headers.items())
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\nCache-Control: no-store\r\n%s\r\n%s"
            % (refusal.status, reason, ctype, len(body), extra, body)
        )
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.transport.loseConnection()
        else:
            half_close()
        site.table.set_waiting(self, True, site.reactor.seconds())
        self._arm(site.limits.drain_seconds, "drained")

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if self.refused:
            self._drained += len(data)
            if self._drained > self.site.limits.drain_bytes and self.transport is not None:
                self._arm(None)
                self.transport.abortConnection()
            return
        super().rawDataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._arm(None)
        self.site.table.remove(self)
        if self.pushed_out:
            self.pushed_out = False
            self.site.closing -= 1
        self.site.connection_ended()
        super().connectionLost(reason)


class GuardedSite(Site):
    """A Site behind the door: caps, deadlines, the head check (see the module docstring).

    `head_check(request, method, raw path, declared length or None)` returns
    the request's body cap or raises Refusal. `error_body(status, reason,
    message)` gives the (content type, body) of a refusal. `on_refusal(refusal,
    channel)` is told about each one (logging).
    """

    # A plain HTTP/1.1 channel, not Twisted's HTTP/2-negotiating wrapper around one.
    protocol = GuardedChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        limits: HttpLimits,
        *,
        name: str,
        counters: Counter | None = None,
        head_check: HeadCheck | None = None,
        error_body: ErrorBody = json_error,
        on_refusal: Callable[[Refusal, GuardedChannel], None] | None = None,
        requestFactory: type[Request] = GuardedRequest,
        reactor: Any = None,
        **kwargs: Any,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(resource, requestFactory=requestFactory, reactor=reactor, **kwargs)
        self.reactor = reactor
        self.limits = limits
        self.counters = counters if counters is not None else Counter()
        self.summary = DoorSummary(name, self.counters, reactor.seconds)
        self.cap = connection_cap(limits.max_connections)
        if self.cap < limits.max_connections:
            log.warn(
                "{name}: the descriptor limit holds {cap} connections, not max_connections "
                "{wanted}; at most {cap} are served at once",
                name=name,
                cap=self.cap,
                wanted=limits.max_connections,
            )
        self.table = ConnectionTable(
            self.cap, min(limits.max_per_client, self.cap), min_age=PUSH_OUT_AFTER
        )
        self._paused_port: Any = None
        self.head_check = head_check or (lambda req, method, path, length: limits.max_body_bytes)
        self.error_body = error_body
        self.on_refusal = on_refusal or (lambda refusal, channel: None)
        self.closing = 0  # connections pushed out whose descriptor is not closed yet

    @property
    def connections(self) -> int:
        return len(self.table)

    def room_to_accept(self, port: Any) -> int:
        """Asked by the port before it accepts: how many connections it may accept
        now. When full with nobody to push out, it stops reading until a
        connection ends (or a waiting one has waited long enough)."""
        room = self.table.room(self.reactor.seconds(), MAX_ACCEPTS)
        room = min(room, max(0, CLOSING_BUDGET - self.closing) + self.table.free)
        if room > 0:
            return room
        if self._paused_port is None:
            self._paused_port = port
            port.stopReading()
            self.summary.note("accepting_paused_full")
            self.reactor.callLater(PUSH_OUT_AFTER, self.connection_ended)  # a waiting one ages
        return 0

    def connection_ended(self) -> None:
        port, self._paused_port = self._paused_port, None
        if port is not None and port.connected:
            port.startReading()

    def buildProtocol(self, addr: Any) -> Any:
        client = client_key(addr)
        fits, evict = self.table.admit(client, self.reactor.seconds())
        if evict and self.closing + len(evict) > CLOSING_BUDGET:
            fits = False
        if not fits:
            self.summary.note(
                "refused_client_cap"
                if self.table.per_client[client] >= self.table.max_per_client
                else "refused_connection_cap"
            )
            return None  # twisted closes the socket at once
        for victim in evict:
            self.table.remove(victim)
            self.summary.note("pushed_out_waiting")
            if victim.transport is not None:
                victim.pushed_out = True
                self.closing += 1
                victim.transport.abortConnection()
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.table.add(channel, client, self.reactor.seconds())
        return channel
