"""One WAMP session to the router that comes back on its own: connect, join,
and on any loss reconnect with capped exponential backoff and jitter, forever,
until closed. Lives in the reactor thread; nothing here blocks.

Listeners (live streams) hear `joined(session)` and `lost(when)` so they can
resubscribe and report gaps. Calls wait for a session up to their timeout and
are retried when the connection drops under them (every call the client makes
reads and changes nothing, so a retry is safe).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.auth import compute_wcs, derive_key
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CallOptions, ComponentConfig
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import Logger

from consumers.client.errors import Closed, MeshTimeout, MeshUnavailable
from consumers.client.hints import refusal_hint, unreachable_hint
from consumers.client.transport import endpoint, make_factory, parse_url
from obsmesh import backoff
from obsmesh.backoff import Retry

# Connection attempts refused in a row, before any session, after which callers
# hear at once that nothing listens (the connection keeps retrying meanwhile).
REFUSED_ATTEMPTS = 3


class Listener(Protocol):
    def joined(self, session: Any) -> None: ...
    def lost(self, when: float) -> None: ...


def is_connection_loss(exc: BaseException) -> bool:
    """Errors that mean "the session went away", not "the call failed"."""
    if isinstance(exc, TransportLost):
        return True
    return isinstance(exc, ApplicationError) and exc.error.startswith("wamp.close.")


class _Session(ApplicationSession):
    def __init__(self, config: ComponentConfig, owner: Connection) -> None:
        super().__init__(config)
        self.owner = owner

    def onConnect(self) -> None:
        creds = self.owner.credentials
        if creds is None:
            self.join(self.config.realm, authmethods=["anonymous"])
        else:
            # WAMP-CRA where the transport asks for it (the backend), anonymous
            # where it does not (the public WebSocket).
            self.join(self.config.realm, authmethods=["wampcra", "anonymous"], authid=creds.authid)

    def onChallenge(self, challenge: Any) -> str:
        creds = self.owner.credentials
        if creds is None or challenge.method != "wampcra":
            raise ApplicationError(
                "wamp.error.no_auth_method", f"cannot answer a {challenge.method} challenge"
            )
        key = creds.secret.encode("utf-8")
        extra = challenge.extra or {}
        if "salt" in extra:
            key = derive_key(key, extra["salt"], extra["iterations"], extra["keylen"])
        return compute_wcs(key, extra["challenge"].encode("utf-8")).decode("ascii")

    def onJoin(self, details: Any) -> None:
        self.owner._joined(self)

    def onLeave(self, details: Any) -> Any:
        self.owner._left(self, details)
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        super().onDisconnect()
        self.owner._disconnected(self)


@dataclass(frozen=True)
class Credentials:
    authid: str
    secret: str = field(repr=False)


# Reasons the router gives for refusing a session: waiting will not help, so
# callers hear of it at once (the connection still retries in the background).
REFUSALS = (
    "wamp.error.not_authorized",
    "wamp.error.no_auth_method",
    "wamp.error.authentication_failed",
    "wamp.error.no_such_realm",
    "wamp.error.no_such_role",
    "wamp.error.authorization_failed",
)


class Connection:
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        realm: str,
        serializer: str = "msgpack",
        credentials: Credentials | None = None,
        tls_ca: str | None = None,
        public_url: str = "",
    ) -> None:
        self.reactor = reactor
        self.public_url = public_url
        self.credentials = credentials
        self.tls_ca = tls_ca
        self.address = parse_url(url)
        self.url = url
        self.realm = realm
        self.serializer = serializer
        self.session: _Session | None = None
        self.closed = False
        self.last_error: str | None = None
        self.refused: MeshUnavailable | None = None  # the router's last refusal, until a join
        self.listeners: list[Listener] = []
        self.joins = 0
        self._refused_attempts = 0
        self._retry = Retry(backoff.ROUTER)
        self._retry_call: Any = None
        self._waiting: list[defer.Deferred] = []
        self._close_waiters: list[defer.Deferred] = []
        self._connecting: defer.Deferred | None = None
        self._transport_session: _Session | None = None  # joined or not, the one on the wire
        self._factory = make_factory(self.address, serializer, self._new_session, reactor)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if not self.closed and self._connecting is None and self._transport_session is None:
            self._connect()

    def _new_session(self) -> _Session:
        s = _Session(ComponentConfig(self.realm), self)
        self._transport_session = s
        return s

    def _connect(self) -> None:
        self._retry_call = None
        if self.closed:
            return
        try:
            ep = endpoint(self.address, self.reactor, self.tls_ca)
        except Exception as exc:
            self.last_error = f"cannot connect to {self.url}: {exc}"
            self._schedule_retry()
            return
        d = ep.connect(self._factory)
        self._connecting = d

        def connected(_protocol: Any) -> None:
            self._connecting = None
            self._refused_attempts = 0

        def failed(failure: Any) -> None:
            self._connecting = None
            refused = failure.check(ConnectionRefusedError) is not None
            error = "connection refused" if refused else failure.getErrorMessage()
            hint = unreachable_hint(error, self.url)
            self.last_error = f"cannot connect to {self.url}: {error}{'. ' + hint if hint else ''}"
            self._refused_attempts = self._refused_attempts + 1 if "refused" in error.lower() else 0
            if self.joins == 0 and self._refused_attempts >= REFUSED_ATTEMPTS:
                self._refuse(MeshUnavailable(self.last_error))
            self._schedule_retry()

        d.addCallbacks(connected, failed)

    def _schedule_retry(self) -> None:
        if self.closed or self._retry_call is not None:
            return
        delay = self._retry.failed()
        self._retry_call = self.reactor.callLater(delay, self._connect)

    def _joined(self, session: _Session) -> None:
        if self.closed:
            session.leave("wamp.close.normal", "client closed")
            return
        self.session = session
        self.refused = None
        self.joins += 1
        self._retry.reset()
        self.last_error = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(session)
        for listener in list(self.listeners):
            try:
                listener.joined(session)
            except Exception:
                self.log.failure("a listener failed on join")

    def _left(self, session: _Session, details: Any) -> None:
        reason = getattr(details, "reason", "")
        if reason and reason not in ("wamp.close.normal", "wamp.close.goodbye_and_out"):
            message = getattr(details, "message", "") or ""
            self.last_error = (
                f"router closed the session: {reason}{' (' + message + ')' if message else ''}"
            )
            if reason in REFUSALS and self.session is not session:
                who = f" as {self.credentials.authid!r}" if self.credentials else " anonymously"
                hint = refusal_hint(reason, self.url, self.credentials is None, self.public_url)
                self._refuse(
                    MeshUnavailable(
                        f"the router at {self.url} refused the session{who} (realm {self.realm!r}): "
                        f"{reason}{': ' + message if message else ''}{'. Fix: ' + hint if hint else ''}"
                    )
                )
        self._lose(session)

    def _refuse(self, refusal: MeshUnavailable) -> None:
        """Waiting will not help: callers hear of it now (retries go on)."""
        self.refused = refusal
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(refusal)

    def _disconnected(self, session: _Session) -> None:
        self._lose(session)
        if self._transport_session is session:
            self._transport_session = None
            self._schedule_retry()
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def _lose(self, session: _Session) -> None:
        if self.session is not session:
            return
        self.session = None
        when = self.reactor.seconds()
        for listener in list(self.listeners):
            try:
                listener.lost(when)
            except Exception:
                self.log.failure("a listener failed on loss")

    def close(self) -> defer.Deferred:
        """Leave and disconnect; fires once the transport is gone (or after 2 s)."""
        self.closed = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._connecting is not None:
            self._connecting.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(Closed("the client was closed"))
        session = self._transport_session
        if session is None:
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()
        self._close_waiters.append(done)
        transport = session._transport
        try:
            if session.is_attached():
                session.leave("wamp.close.normal", "client closed")
            elif transport is not None:
                transport.close()
        except Exception:
            if transport is not None:
                transport.close()
        done.addTimeout(2.0, self.reactor)
        done.addErrback(lambda _f: _abort(session))
        return done

    # -- sessions for callers ----------------------------------------------
    def ready(self, timeout: float) -> defer.Deferred:
        """A joined session, waiting at most `timeout` seconds for one."""
        if self.closed:
            return defer.fail(Closed("the client was closed"))
        if self.session is not None:
            return defer.succeed(self.session)
        if self.refused is not None:
            return defer.fail(self.refused)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)

        def expired(failure: Any) -> Any:
            if d in self._waiting:
                self._waiting.remove(d)
            if failure.check(defer.TimeoutError):
                why = self.last_error or "no answer yet"
                raise MeshUnavailable(
                    f"no session with the router at {self.url} (realm {self.realm!r}) after {timeout:g} s: {why}"
                )
            return failure

        d.addTimeout(timeout, self.reactor)
        d.addErrback(expired)
        return d

    async def call(
        self,
        uri: str,
        *args: Any,
        timeout: float,
        on_progress: Callable[[Any], None] | None = None,
        on_retry: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call `uri`; an idle timeout (reset by each progressive result) and
        transparent retries when the connection drops during the call."""
        deadline = self.reactor.seconds() + timeout
        while True:
            remaining = max(0.0, deadline - self.reactor.seconds())
            session = await self.ready(max(remaining, 0.001))
            watchdog = _Watchdog(self.reactor, timeout)
            progress = None
            if on_progress is not None:

                def progress(
                    chunk: Any,
                    *_a: Any,
                    _cb: Callable = on_progress,
                    _w: _Watchdog = watchdog,
                    **_kw: Any,
                ) -> None:
                    _w.reset()
                    _cb(chunk)

            options = CallOptions(on_progress=progress) if progress is not None else None
            d = session.call(uri, *args, options=options, **kwargs)
            watchdog.watch(d)
            try:
                return await d
            except defer.CancelledError:
                if watchdog.fired:
                    raise MeshTimeout(f"{uri}: no answer for {timeout:g} s") from None
                raise
            except Exception as exc:
                if not is_connection_loss(exc) or self.closed:
                    raise
                if self.reactor.seconds() >= deadline:
                    raise MeshUnavailable(
                        f"{uri}: connection to {self.url} lost during the call"
                    ) from None
                if on_retry is not None:
                    on_retry()
            finally:
                watchdog.stop()


class _Watchdog:
    """Cancels a Deferred after `seconds` without progress."""

    def __init__(self, reactor: Any, seconds: float) -> None:
        self.reactor = reactor
        self.seconds = seconds
        self.fired = False
        self._d: defer.Deferred | None = None
        self._timer: Any = None

    def watch(self, d: defer.Deferred) -> None:
        self._d = d
        self.reset()

    def reset(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.reactor.callLater(self.seconds, self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self._d is not None and not self._d.called:
            self._d.cancel()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _abort(session: _Session) -> None:
    transport = getattr(session, "_transport", None)
    if transport is not None:
        try:
            transport.abort()
        except Exception:
            pass
