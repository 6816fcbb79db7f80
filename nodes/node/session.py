"""A node's WAMP session: join, take the name, announce, leave.

On every join the node registers its procedures and announces itself to the
hub, and announces again whenever the hub comes (back) online. A name held by
another session is either a live node of the same name (a conflict: retried
every few seconds) or our own earlier session left behind at the router by a
dead network path, found by probing it and then taken over.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import defer, task
from twisted.logger import Logger

from obsmesh import wire
from obsmesh.calls import SharedCall
from obsmesh.errors import MeshError, to_wamp
from obsmesh.store import StoreError
from obsmesh.uris import Uris
from obsmesh.wamp import keep_alive, service_component

# Seconds a session holding this node's procedures has to answer before it is
# taken for a dead one of ours (see `NodeSession._holder_answers`).
HOLDER_PROBE_TIMEOUT = 5
NAME_RETRY = 5.0  # seconds between attempts to take a name another session holds


class SessionHost(Protocol):
    """What the session needs of its node."""

    name: str
    description: str
    settings: dict[str, Any]
    uris: Uris
    reactor: Any
    counters: collections.Counter[str]
    last_error: str | None

    def info(self) -> dict[str, Any]: ...


class NodeSession:
    """The node's presence on the mesh: its procedures and its hub entry."""

    log = Logger()

    def __init__(
        self,
        host: SessionHost,
        procedures: Callable[[], dict[str, Callable[..., Any]]],
        on_ready: Callable[[Any], Awaitable[None]],
    ) -> None:
        self.host = host
        self.procedures = procedures
        self.on_ready = on_ready  # before the node takes the session as its own
        self.session: Any = None  # joined, procedures registered
        self.announced = False
        self.stopping = False
        self._joined: Any = None
        self._component: Any = None

    # -- joining ---------------------------------------------------------------
    async def on_join(self, session: Any, details: Any) -> None:
        self.log.info(
            "{name} joined {realm} as session {sid}",
            name=self.host.name,
            realm=details.realm,
            sid=details.session,
        )
        self._joined = session
        await self._take_name(session)

    async def _take_name(self, session: Any) -> None:
        """Register the node's procedures, then announce; while another live
        session holds the name, retry every few seconds in the same session."""
        if session is not self._joined or self.stopping:
            return
        try:
            await self._register_all(session)
        except ApplicationError as exc:
            if exc.error != "wamp.error.procedure_already_exists":
                raise
            if await self._holder_answers(session):
                self._name_conflict(session, "its procedures are registered by another session")
                return
            # Our own earlier session, left at the router by a dead network path:
            # take the procedures back; the hub then lists this session instead.
            self.log.warn(
                "{name}: taking over from a session that no longer answers", name=self.host.name
            )
            self.host.counters["sessions_taken_over"] += 1
            await self._register_all(session, force=True)
        await self.on_ready(session)
        self.session = session
        await session.subscribe(lambda *a, **kw: self._announce(session), self.host.uris.hub_online)
        await self._announce(session)

    def register(self, suffix: str, fn: Callable[..., Any]) -> None:
        """One more procedure on the joined session (the next joins register it too)."""
        if self.session is not None:
            self.session.register(self.guarded(fn), self.host.uris.node(self.host.name, suffix))

    async def _register_all(self, session: Any, force: bool = False) -> None:
        """Register every procedure; on failure none stays registered."""
        done = []
        try:
            for suffix, fn in self.procedures().items():
                opts = RegisterOptions(
                    details_arg="details" if suffix == "get_data" else None,
                    force_reregister=force or None,
                )
                uri = self.host.uris.node(self.host.name, suffix)
                done.append(await session.register(self.guarded(fn), uri, options=opts))
        except ApplicationError:
            for reg in done:
                await reg.unregister()
            raise

    async def _holder_answers(self, session: Any) -> bool:
        """Whether the session holding our procedures answers. One that does not is
        our own earlier session, left behind at the router by a dead network path
        (only a session authenticated as this node may register under its name)."""
        # Neither cancelled nor timed out by the router (crossbar 26.10 then fails
        # to drop the stale session cleanly): the probe is left to finish on its
        # own, and we stop waiting for it after a while.
        uri = self.host.uris.get_fields(self.host.name)
        probe = SharedCall(session.call(uri, 1.0, 0.0), lambda: None)
        try:
            answer = await probe.wait(HOLDER_PROBE_TIMEOUT)
        except ApplicationError as exc:
            return exc.error not in ("wamp.error.no_such_procedure", "wamp.error.canceled")
        except Exception:  # our own session went away meanwhile: the next join retries
            return True
        return answer is not None  # None: no answer in time

    def _name_conflict(self, session: Any, why: str) -> None:
        name = self.host.name
        self.host.last_error = f"name {name!r} is taken: {why}; retrying"
        self.log.error("node name {name} is taken ({why}); retrying in 5 s", name=name, why=why)
        self.host.counters["name_conflicts"] += 1
        self.host.reactor.callLater(
            NAME_RETRY, lambda: defer.ensureDeferred(self._take_name(session))
        )

    async def _announce(self, session: Any) -> None:
        """Tell the hub we exist, retrying while the hub is not there yet."""
        host = self.host
        delay = 0.1
        # Consumers read "encodings" to know this node answers encoding="array" (sisock's do not).
        announced = {"encodings": list(wire.ENCODINGS), **host.info()}
        while session is self.session and not self.stopping:
            try:
                ok = await session.call(
                    host.uris.add, host.name, host.description, session._session_id, **announced
                )
            except ApplicationError as exc:
                if exc.error not in ("wamp.error.no_such_procedure", "wamp.error.canceled"):
                    host.last_error = f"hub refused: {exc}"
                    self.log.error("hub refused {name}: {exc}", name=host.name, exc=exc)
                    return
                await task.deferLater(host.reactor, delay, lambda: None)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:  # the session went away meanwhile
                self.log.debug("announce interrupted: {exc}", exc=exc)
                return
            if ok is False:  # the hub lists the name for another live session
                self.announced = False
                host.last_error = f"name {host.name!r} is held by another live session"
                host.counters["name_conflicts"] += 1
                host.reactor.callLater(
                    NAME_RETRY, lambda: defer.ensureDeferred(self._announce(session))
                )
            else:
                self.announced = True
            return

    def on_leave(self, session: Any, details: Any) -> None:
        if self._joined is session:
            self._joined = None
        if self.session is session:
            self.session = None
            self.announced = False
        self.log.info(
            "{name} left the router ({reason})",
            name=self.host.name,
            reason=getattr(details, "reason", details),
        )

    # -- the procedures --------------------------------------------------------
    def guarded(self, fn: Callable[..., Any]) -> Callable[..., defer.Deferred]:
        """Wrap an RPC so the mesh's errors become WAMP errors and anything
        unexpected is logged and reported without stopping the node."""
        uris, counters, log = self.host.uris, self.host.counters, self.log

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
                if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
                    result = await result
                return result
            except MeshError as exc:
                raise to_wamp(exc, uris.prefix) from None
            except ApplicationError:
                raise
            except StoreError as exc:  # e.g. Redis unreachable: the caller may retry
                counters["rpc_store_errors"] += 1
                raise ApplicationError(uris.error("unavailable"), f"history store: {exc}") from None
            except Exception as exc:
                counters["rpc_errors"] += 1
                log.failure("RPC {fn} failed", fn=getattr(fn, "__name__", fn))
                raise ApplicationError(
                    uris.error("unavailable"), f"internal error: {exc}"
                ) from None

        def deferred(*args: Any, **kwargs: Any) -> defer.Deferred:
            return defer.ensureDeferred(call(*args, **kwargs))

        return deferred

    # -- connecting and leaving ------------------------------------------------
    def connect(self) -> defer.Deferred:
        """Connect to the router (forever), authenticated as the node's name."""
        host = self.host
        comp = service_component(host.settings, host.name)
        keep_alive(comp, float(host.settings.get("heartbeat", 0.0)), reactor=host.reactor)
        comp.on("join", lambda s, d: defer.ensureDeferred(self.on_join(s, d)))
        comp.on("leave", self.on_leave)
        self._component = comp
        return comp.start(host.reactor)

    async def leave(self, before_leaving: Callable[[], None]) -> None:
        """Subtract the node from the hub, then leave (each step bounded in time);
        `before_leaving` runs first while the session is still there."""
        self.stopping = True
        session = self.session
        if session is not None:
            before_leaving()
            try:
                await with_timeout(
                    self.host.reactor,
                    session.call(self.host.uris.subtract, self.host.name, session._session_id),
                    2.0,
                )
            except Exception as exc:
                self.log.warn("subtract failed: {exc}", exc=exc)
        if self._component is not None:
            try:
                await with_timeout(self.host.reactor, self._component.stop(), 2.0)
            except Exception as exc:
                self.log.debug("leaving: {exc}", exc=exc)


async def with_timeout(reactor: Any, d: Any, seconds: float) -> Any:
    d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
    d.addTimeout(seconds, reactor)
    return await d
