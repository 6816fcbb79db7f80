"""One reconnecting Redis connection, as the mesh's Redis users want it.

Both the Redis store (obsmesh/store/redis.py) and the das2 block cache
(nodes/das2/cache.py) talk to Redis through one txredisapi connection that
reconnects forever with a short, capped backoff, and want to know at once
whether there is a live connection (an outage is reported, never waited out).
This wraps txredisapi's public API for that: a `RedisFactory` started with
`startConnecting` on an endpoint of the injected reactor; each new protocol's
`whenConnected()` / `whenDisconnected()` tell us which connection is live, so
a caller waiting for the first connection is called back, never polled for.

txredisapi's own timers (its reconnect backoff, its reply timeouts) run on
the global reactor: the library takes no other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

log = Logger()


class BadRedisUrl(ValueError):
    """A Redis URL that cannot be used."""


def parse_url(url: str) -> dict[str, Any]:
    """Connection arguments from redis[s]://[[user]:password@]host[:port][/db]."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except (ValueError, TypeError) as exc:
        raise BadRedisUrl(f"bad redis url {url!r}: {exc}") from exc
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise BadRedisUrl(f"bad redis url {url!r}: use redis://host:port/db")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise BadRedisUrl(f"bad redis url {url!r}: database must be a number")
    return {
        "host": parts.hostname,
        "port": port,
        "dbid": int(db) if db else None,
        "password": unquote(parts.password) if parts.password else None,
        "username": unquote(parts.username) if parts.username else None,
        "ssl_context_factory": parts.scheme == "rediss",
    }


class _Factory(txredisapi.RedisFactory):
    """A RedisFactory that tells its owner of each connection made and lost."""

    def __init__(self, owner: RedisConnection, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = owner

    def buildProtocol(self, addr: Any) -> Any:
        p = super().buildProtocol(addr)
        p.whenConnected().addCallback(self.owner._made)
        p.whenDisconnected().addCallback(self.owner._lost)
        return p


class RedisConnection:
    """One Redis connection that reconnects forever (backoff from `retry_initial`
    up to `retry_max` seconds). `live` is the connected protocol or None; run
    commands on it (`execute_command`, `eval`). `on_connect(conn)` is called on
    each new connection."""

    def __init__(
        self,
        url: str,
        *,
        reactor: Any,
        reply_timeout: float,
        connect_timeout: float = 5.0,
        retry_initial: float = 0.1,
        retry_max: float = 1.0,
        on_connect: Callable[[Any], None] | None = None,
    ) -> None:
        args = parse_url(url)
        self.url = url
        self.reactor = reactor
        self.on_connect = on_connect
        self.live: Any = None
        self._waiters: list[defer.Deferred] = []
        self._closed = False
        self._factory = _Factory(
            self,
            uuid=f"{args['host']}:{args['port']}",
            dbid=args["dbid"],
            poolsize=1,
            isLazy=True,
            charset=None,
            password=args["password"],
            username=args["username"],
            replyTimeout=reply_timeout,
            convertNumbers=False,
        )
        self._factory.reconnect = True
        self._factory.initialDelay = retry_initial
        self._factory.maxDelay = max(retry_max, retry_initial)
        endpoint: Any = HostnameEndpoint(
            reactor, args["host"], args["port"], timeout=connect_timeout
        )
        if args["ssl_context_factory"]:
            from twisted.internet.endpoints import wrapClientTLS
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(args["host"]), endpoint)
        self._factory.startConnecting(endpoint)

    @property
    def connected(self) -> bool:
        return self.live is not None

    def _made(self, conn: Any) -> Any:
        if self._closed:
            return conn
        self.live = conn
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(conn)
        if self.on_connect is not None:
            self.on_connect(conn)
        return conn

    def _lost(self, conn: Any) -> Any:
        if self.live is conn:
            self.live = None
        return conn

    async def wait(self, seconds: float) -> Any:
        """The live connection, waiting at most `seconds` for the next one; None
        when there is none by then."""
        if self.live is not None or seconds <= 0 or self._closed:
            return self.live
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        d.addTimeout(seconds, self.reactor)
        try:
            return await d
        except (defer.TimeoutError, defer.CancelledError):
            return self.live
        finally:
            if d in self._waiters:
                self._waiters.remove(d)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop reconnecting and close the connection (waiting at most `timeout` s)."""
        self._closed = True
        for d in self._waiters:
            d.cancel()
        self._waiters = []
        done = self._factory.disconnect()
        done.addTimeout(timeout, self.reactor)
        try:
            await done
        except defer.TimeoutError:
            log.warn("redis at {url}: the connection did not close in time", url=self.url)
        finally:
            self.live = None
