"""The CO2 units' HTTP endpoint on twisted.web.

Speaks the existing firmware's protocol (see routes.py), authenticates units,
stores uploads durably (storage.py) and hands parsed readings rows and pings
to the callbacks `on_rows(unit_id, rows)` and `on_ping(unit_id, ping)`, which
run on the reactor thread. Two more callbacks tell the node about units:
`on_unit(unit_id)` after every authenticated request (the unit is alive) and
`on_conflict(unit_id, path, offset, stored_size)` when an upload's bytes
differ from the bytes already stored (409).

The endpoint sits behind obsmesh.httpguard's door (caps on connections and
on the time to send a request head and body). Each request head is judged
before any body byte is read (`check_head`: route, offset, token), so an
unauthenticated client never gets a body byte buffered; a push body is then
streamed to a spool file on disk (`web.BodySpool`) and compared and appended
block by block. Every refusal is a JSON `{"error", "message"}` with a 4xx
status and writes nothing. Refusals are logged once per (reason, unit,
address) an hour at the default level, each one at debug.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import DeferredLock, ensureDeferred
from twisted.logger import Logger
from twisted.web.server import Request, Site

from nodes.co2.errors import Rejected
from nodes.co2.ingest import ReadingsIngest
from nodes.co2.paths import (
    DEFAULT_UNIT_PATTERN,
    DEFAULT_UPLOAD_DIRS,
    compile_unit_pattern,
    is_readings_file,
)
from nodes.co2.pinglog import PingLog
from nodes.co2.pings import Ping, parse_ping
from nodes.co2.query import parse_flag, parse_limit, parse_offset, parse_query
from nodes.co2.readings import Batch, Reading
from nodes.co2.routes import Route, route
from nodes.co2.storage import PushResult, Storage, Workers
from nodes.co2.tokens import FILE_NAME as TOKENS_FILE
from nodes.co2.tokens import TokenStore
from nodes.co2.web import Co2Request, Co2Site, peer
from obsmesh.httpguard import HttpLimits, listen_tcp, raise_nofile_limit

log = Logger(namespace="obsmesh.co2")

JSON = b"application/json"
COMPAT_WARNING = (
    "COMPATIBILITY MODE: units that send no token are accepted from {nets}; "
    "anyone on these networks can upload as any unit"
)


@dataclass
class Co2Config:
    root: Path
    unit_pattern: str = DEFAULT_UNIT_PATTERN
    max_body_bytes: int = 1 << 20  # the firmware sends 4 KiB chunks
    max_file_bytes: int = 64 << 20  # readings files roll at 100 KiB
    max_update_bytes: int = 16 << 20
    token_header: str | None = "X-Unit-Token"  # None: tokens not accepted in a header
    token_query: str | None = "token"  # None: tokens not accepted in the query
    compat_networks: tuple[str, ...] = ()  # non-empty: tokenless units from these networks
    upload_dirs: tuple[str, ...] = DEFAULT_UPLOAD_DIRS
    ping_file_bytes: int = 100 * 1024
    file_threads: int = 4
    max_connections: int = 1024  # in all (fewer if the descriptor limit is lower)
    max_connections_per_client: int = 64  # from one address
    header_timeout: float = 10.0  # seconds to send a request head
    body_timeout: float = 60.0  # seconds to send a body once its head is in
    drain_bytes: int = 1 << 20  # of a refused body, read and dropped before hanging up
    drain_seconds: float = 5.0

    def limits(self) -> HttpLimits:
        return HttpLimits(
            max_connections=self.max_connections,
            max_per_client=self.max_connections_per_client,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            max_body_bytes=self.max_body_bytes,
            drain_bytes=self.drain_bytes,
            drain_seconds=self.drain_seconds,
        )


SMALL_BODY = 4096  # bytes of body accepted (and dropped) on requests other than a push
REFUSAL_LOG_EVERY = 3600.0  # seconds between log lines about one (reason, unit, address)


class _FileLocks:
    """One lock per file: pushes to a file, and the parsing of what they
    appended, happen one at a time and in order."""

    def __init__(self) -> None:
        self._locks: dict[object, DeferredLock] = {}

    async def run(self, key: object, fn: Callable[[], Awaitable[Any]]) -> Any:
        lock = self._locks.setdefault(key, DeferredLock())
        await lock.acquire()
        try:
            return await fn()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(key, None)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


Response = tuple[int, bytes, bytes]


def _notify(callback: Callable[..., object] | None, *args: Any) -> None:
    """Call a node callback; its failure is logged, never the request's."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.failure("callback {name} failed", name=getattr(callback, "__name__", callback))


def _json_response(status: int, doc: Any) -> Response:
    return status, JSON, json.dumps(_json_safe(doc)).encode()


class Co2Server:
    """The endpoint: storage, authentication, routing; `site()` to serve it."""

    def __init__(
        self,
        config: Co2Config,
        on_rows: Callable[[str, list[Reading]], object] | None = None,
        on_ping: Callable[[str, Ping], object] | None = None,
        reactor: Any = None,
        on_unit: Callable[[str], object] | None = None,
        on_conflict: Callable[[str, str, int, int], object] | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor or default_reactor
        self.on_rows = on_rows
        self.on_ping = on_ping
        self.on_unit = on_unit
        self.on_conflict = on_conflict
        self.counters: Counter = Counter()
        self.root = Path(config.root)
        self.unit_pattern = compile_unit_pattern(config.unit_pattern)
        self.networks = [ipaddress.ip_network(n, strict=False) for n in config.compat_networks]
        self.storage = Storage(self.root)
        self.tokens = TokenStore(self.root / TOKENS_FILE)
        self.workers = Workers(self.reactor, config.file_threads)
        self.pings: PingLog | None = None
        self.ingest: ReadingsIngest | None = None
        self._locks = _FileLocks()
        self._compat_seen: set[str] = set()
        self._port = None
        self._site: Co2Site | None = None
        self._refusals_logged: dict[tuple[str, str, str], float] = {}
        self._stopped = False
        self.started_at = time.time()

    # -- life cycle ---------------------------------------------------------------

    async def start(
        self,
        history: Callable[[str, list[Reading]], object] | None = None,
        history_since: float = -math.inf,
    ) -> None:
        """Open the database and deliver readings stored but not yet delivered
        (`history`: see `ReadingsIngest.start`)."""
        self.workers.start()
        self.pings = await self.workers.in_db(PingLog, self.root, self.config.ping_file_bytes)
        self.ingest = ReadingsIngest(
            self.storage,
            self.pings,
            self.workers,
            self.on_rows,
            self.counters,
            reactor=self.reactor,
        )
        await self.ingest.start(history, history_since)
        if self.networks:
            log.warn(COMPAT_WARNING, nets=", ".join(map(str, self.networks)))

    def site(self) -> Site:
        self._site = Co2Site(self)
        return self._site

    def listen(self, port: int, interface: str = "127.0.0.1", backlog: int = 1024) -> Any:
        soft, _ = raise_nofile_limit()  # caps hold anyway; the limit only sets how many fit
        site = self.site()
        self._port = listen_tcp(self.reactor, port, site, backlog, interface)
        log.info(
            "CO2 unit endpoint on http://{host}:{port}/ data root {root} (at most {cap} "
            "connections, {per} per address; descriptor limit {soft})",
            host=interface,
            port=self._port.getHost().port,
            root=str(self.root),
            cap=site.cap,
            per=site.table.max_per_client,
            soft=soft,
        )
        return self._port

    @property
    def connections(self) -> int:
        """Connections open now (the door's count)."""
        return self._site.connections if self._site is not None else 0

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._port is not None:
            await self._port.stopListening()
            self._port = None
        if self.ingest is not None:
            await self.ingest.stop()
        pings, self.pings = self.pings, None
        await self.workers.stop(pings.close if pings is not None else None)
        self.storage.close()

    def status(self) -> dict[str, Any]:
        """Health for get_status: compatibility mode, counters, units."""
        compat = {"enabled": bool(self.networks), "networks": [str(n) for n in self.networks]}
        if self.networks:
            compat["warning"] = COMPAT_WARNING.format(nets=", ".join(compat["networks"]))
        units = self.tokens.units()
        return {
            "compat_mode": compat,
            "counters": dict(self.counters),
            "units_with_token": sorted(u for u, e in units.items() if e.token_hash),
            "units_revoked": sorted(u for u, e in units.items() if e.token_hash is None),
            "started_at": self.started_at,
            "connections": self.connections,
        }

    # -- requests -----------------------------------------------------------------------

    def check_head(
        self, request: Co2Request, method: bytes, raw_uri: bytes, length: int | None
    ) -> int:
        """Judge a request from its head alone, before any body byte is read:
        route, query, offset and credentials. Returns the body cap; raises Rejected."""
        path, _, raw_query = raw_uri.partition(b"?")
        r = route(method, path, self.unit_pattern, self.config.upload_dirs)
        query = parse_query(raw_query)
        if r.kind == "push":
            parse_offset(query)
        if r.unit_id is not None:
            self._authenticate(request, r.unit_id, query)
            _notify(self.on_unit, r.unit_id)
        request.route, request.query = r, query
        return self.config.max_body_bytes if r.kind == "push" else SMALL_BODY

    def refused(self, refusal: Exception, channel: Any) -> None:
        """A request refused at its head or while its body streamed in: one
        line at debug each, at the default level once an hour per (reason, unit, address)."""
        request = channel.requests[-1] if channel.requests else None
        status = getattr(refusal, "status", 0)
        reason = getattr(refusal, "reason", "refused")
        addr = channel.transport.getPeer() if channel.transport is not None else None
        who = getattr(addr, "host", "?")
        raw = getattr(channel, "_path", b"") or b""
        path = raw.partition(b"?")[0][:200].decode("ascii", "replace")
        unit = request.route.unit_id if request is not None and request.route else ""
        message = getattr(refusal, "message", str(refusal))
        log.debug(
            "{status} {path} from {peer}: {message}",
            status=status,
            path=path,
            peer=who,
            message=message,
        )
        key = (reason, unit, who)
        now = self.reactor.seconds()
        if status == 404 or now - self._refusals_logged.get(key, -math.inf) < REFUSAL_LOG_EVERY:
            return
        if len(self._refusals_logged) > 10_000:
            self._refusals_logged.clear()
        self._refusals_logged[key] = now
        log.warn(
            "{status} {path} from {peer}: {message} (further refusals like this one are "
            "counted in co2.counters, logged at debug)",
            status=status,
            path=path,
            peer=who,
            message=message,
        )

    async def respond(self, request: Co2Request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        try:
            if request.route is None:  # judged at its head, always; kept for safety
                self.check_head(request, request.method, request.uri, None)
            status, ctype, body = await self._handle(request, request.route, request.query)
        except Rejected as exc:
            self.counters[f"rejected_{exc.code}"] += 1
            log.debug(
                "{status} {method} {path} from {peer}: {message}",
                status=exc.status,
                method=request.method.decode("ascii", "replace"),
                path=request.path[:200].decode("ascii", "replace"),
                peer=peer(request),
                message=exc.message,
            )
            status, ctype, body = _json_response(exc.status, exc.as_json())
        except Exception:
            self.counters["internal_errors"] += 1
            log.failure(
                "internal error on {path}", path=request.path[:200].decode("ascii", "replace")
            )
            status, ctype, body = _json_response(
                500, {"error": "internal_error", "message": "internal error"}
            )
        finally:
            request.release()
        if gone:  # client went away; whatever was stored stays stored
            self.counters["client_gone"] += 1
            return
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", ctype)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()

    async def _handle(self, request: Co2Request, r: Route, query: dict[str, str]) -> Response:
        if r.kind == "push":
            return await self._push(request, r.unit_id, r.path, query)
        if r.kind == "alive":
            return await self._alive(request, r.unit_id, query)
        if r.kind == "updates":
            return await self._updates(r.unit_id, r.path, query)
        if r.kind == "recent":
            limit = parse_limit(query, 100, 1000)
            return _json_response(200, await self.workers.in_db(self.pings.recent, limit))
        if r.kind == "alive_summary":
            return _json_response(200, await self.workers.in_db(self.pings.summary))
        if r.kind == "co2_summary":
            return _json_response(200, self.ingest.summary())
        return _json_response(
            200,
            {
                "service": "obsmesh co2 unit endpoint",
                "pages": ["/status/alive/recent", "/status/alive/summary", "/data/co2/summary"],
                "status": self.status(),
            },
        )

    def _authenticate(self, request: Request, unit_id: str, query: dict[str, str]) -> None:
        cfg = self.config
        from_header = (
            request.requestHeaders.getRawHeaders(cfg.token_header, [None])[-1]
            if cfg.token_header
            else None
        )
        if isinstance(from_header, bytes):
            from_header = from_header.decode("latin-1")
        from_query = query.pop(cfg.token_query, None) if cfg.token_query else None
        if from_header is not None and from_query is not None and from_header != from_query:
            raise Rejected(400, "two_tokens", "different tokens in header and query")
        token = from_header if from_header is not None else from_query
        if token is not None:
            if self.tokens.check(unit_id, token):
                self.counters["auth_token"] += 1
                return
            self.counters["auth_failures"] += 1
            raise Rejected(401, "bad_token", "unknown unit or wrong token")
        if self.networks and self._in_compat_networks(request):
            if self.tokens.is_revoked(unit_id):
                self.counters["auth_failures"] += 1
                raise Rejected(401, "revoked", "unit revoked")
            self.counters["auth_compat"] += 1
            if unit_id not in self._compat_seen:
                self._compat_seen.add(unit_id)
                log.warn(
                    "COMPATIBILITY MODE: accepting {unit} without a token from {peer}",
                    unit=unit_id,
                    peer=peer(request),
                )
            return
        self.counters["auth_failures"] += 1
        raise Rejected(401, "token_required", "a unit token is required")

    def _in_compat_networks(self, request: Request) -> bool:
        try:
            ip = ipaddress.ip_address(peer(request))
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    async def _push(
        self, request: Co2Request, unit_id: str, names: tuple[str, ...], query: dict[str, str]
    ) -> Response:
        offset = parse_offset(query)
        body_fd, body_len = (None, 0) if request.spool is None else await request.spool.finish()

        def push_and_parse() -> tuple[PushResult, Batch | None, str | None]:
            """One file-thread call: the durable push, then the parse of what it added."""
            try:
                result = self.storage.push(
                    unit_id, names, offset, body_fd, body_len, self.config.max_file_bytes
                )
            finally:
                if body_fd is not None:
                    os.close(body_fd)
            if result.action != "append" or not is_readings_file(names):
                return result, None, None
            try:
                return result, self.ingest.parse_appended(unit_id, names, result), None
            except Exception as exc:  # the bytes are stored; parsing is retried at start
                return result, None, repr(exc)

        async def store() -> PushResult:
            result, batch, error = await self.workers.in_files(push_and_parse)
            if batch is not None:
                self.ingest.deliver(unit_id, names, batch)
            if error is not None:
                log.error(
                    "parsing {unit} {path} failed: {error}",
                    unit=unit_id,
                    path="/".join(names),
                    error=error,
                )
            return result

        result = await self._locks.run((unit_id, names), store)
        self.counters[f"push_{result.action}"] += 1
        ack = [names[-1], result.size_after, result.size_after]
        if result.action in ("append", "duplicate"):
            return _json_response(200, {"ack_file": ack})
        if result.action == "past_end":
            return _json_response(
                416,
                {
                    "error": "SKIPPED_PART_OF_FILE",
                    "ack_file": ack,
                    "message": f"offset {offset} is past the stored size {result.size_after}",
                },
            )
        if result.action == "conflict":
            _notify(self.on_conflict, unit_id, "/".join(names), offset, result.size_after)
            return _json_response(
                409,
                {
                    "error": "conflict",
                    "ack_file": ack,
                    "message": f"bytes at offset {offset} differ from the stored bytes",
                },
            )
        return _json_response(
            413,
            {
                "error": "file_too_large",
                "ack_file": ack,
                "message": f"file would exceed {self.config.max_file_bytes} bytes",
            },
        )

    async def _alive(self, request: Request, unit_id: str, query: dict[str, str]) -> Response:
        ping = parse_ping(unit_id, query, time.time())
        await self.workers.in_db(self.pings.append, ping, peer(request))
        self.counters["pings"] += 1
        if self.on_ping is not None:
            try:
                self.on_ping(unit_id, ping)
            except Exception:
                log.failure("on_ping callback failed for {unit}", unit=unit_id)
        return _json_response(200, {})

    async def _updates(
        self, unit_id: str, names: tuple[str, ...], query: dict[str, str]
    ) -> Response:
        recursive = parse_flag(query, "recursive")
        got = await self.workers.in_files(
            self.storage.get_update, unit_id, names, recursive, self.config.max_update_bytes
        )
        if got is None:
            raise Rejected(404, "not_found", "no such update")
        if isinstance(got, bytes):
            return 200, b"application/octet-stream", got
        return _json_response(200, got)


# -- standalone run (tests, benchmarks; the node mounts Co2Server itself) ------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.co2.server")
    p.add_argument("--root", type=Path, required=True, help="data root")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--interface", default="127.0.0.1")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument(
        "--compat-network",
        action="append",
        default=[],
        help="accept tokenless units from this network (CIDR); repeatable",
    )
    p.add_argument("--max-body", type=int, default=1 << 20)
    p.add_argument(
        "--rows-log",
        type=Path,
        help="append 'unit<TAB>row time<TAB>delivery time' per delivered row",
    )
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    args = _parser().parse_args(argv)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(args.log_level))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])]
    )
    rows_log = open(args.rows_log, "a", buffering=1) if args.rows_log else None  # noqa: SIM115

    def on_rows(unit_id: str, rows: list[Reading]) -> None:
        if rows_log is not None:
            now = time.time()
            rows_log.write("".join(f"{unit_id}\t{r.t!r}\t{now!r}\n" for r in rows))

    config = Co2Config(
        root=args.root, compat_networks=tuple(args.compat_network), max_body_bytes=args.max_body
    )
    server = Co2Server(config, on_rows=on_rows)

    async def run() -> None:
        await server.start()
        port = server.listen(args.port, args.interface)
        if args.port_file:
            tmp = args.port_file.with_suffix(".tmp")
            tmp.write_text(str(port.getHost().port))
            os.replace(tmp, args.port_file)

    def shutdown(*_: object) -> None:
        d = ensureDeferred(server.stop())
        d.addBoth(lambda _: default_reactor.stop())

    def failed(failure: Any) -> None:
        log.failure("CO2 server failed to start", failure)
        default_reactor.stop()

    default_reactor.callWhenRunning(lambda: ensureDeferred(run()).addErrback(failed))
    signal.signal(signal.SIGTERM, lambda *a: default_reactor.callFromThread(shutdown))
    signal.signal(signal.SIGINT, lambda *a: default_reactor.callFromThread(shutdown))
    default_reactor.run(installSignalHandlers=False)
    if rows_log is not None:
        rows_log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
