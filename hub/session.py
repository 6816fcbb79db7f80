"""The hub's WAMP behaviour: sisock's hub contract plus liveness and re-announcement.

`HubService` works on any joined session: the router hosts it through `Hub`
(an ApplicationSession crossbar instantiates), and `obsmesh hub` runs it on a
Component's session.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from hub.directory import Directory
from obsmesh.uris import DEFAULT_PREFIX, Uris, valid_node_name


class HubService:
    log = Logger()

    def __init__(self, session, prefix: str = DEFAULT_PREFIX, enforce_authid: bool = False) -> None:
        self.session = session
        # With authentication on, a node may only announce its own authid as its name.
        self.enforce_authid = enforce_authid
        self.uris = Uris(prefix)
        self.directory = Directory()  # new on every join: nodes re-announce on hub.online

    @inlineCallbacks
    def attach(self, details):
        u, s = self.uris, self.session
        opts = RegisterOptions(details_arg="details")
        yield s.register(self.add, u.add, options=opts)
        yield s.register(self.subtract, u.subtract, options=opts)
        yield s.register(self.get_data_node, u.get_data_node)
        yield s.subscribe(self.on_session_leave, "wamp.session.on_leave")
        yield s.publish(
            u.hub_online, {"session": details.session}, options=PublishOptions(acknowledge=True)
        )
        self.log.info(
            "hub joined realm {realm} with prefix {prefix}", realm=details.realm, prefix=u.prefix
        )

    def _session_of(self, claimed: object, details) -> int:
        """The caller's real session id when the router discloses it, else the claim."""
        caller = getattr(details, "caller", None)
        if caller is not None:
            return int(caller)
        if isinstance(claimed, bool) or not isinstance(claimed, int):
            raise ApplicationError(
                self.uris.error("invalid_argument"), "session_id must be an integer"
            )
        return claimed

    @inlineCallbacks
    def _alive(self, session: int):
        try:
            yield self.session.call("wamp.session.get", session)
        except ApplicationError as e:
            if e.error == "wamp.error.no_such_session":
                return False
            raise
        return True

    @inlineCallbacks
    def add(self, name, description="", session_id=None, details=None, **info):
        if not valid_node_name(name):
            raise ApplicationError(
                self.uris.error("invalid_argument"),
                f"node name {name!r} must match [a-z0-9][a-z0-9_-]* (at most 63 characters)",
            )
        if not isinstance(description, str):
            raise ApplicationError(
                self.uris.error("invalid_argument"), "description must be a string"
            )
        session = self._session_of(session_id, details)
        self._check_own(name, details)
        holder = self.directory.holder(name)
        if holder is not None and holder != session:
            alive = yield self._alive(holder)
            if alive:
                self.log.warn(
                    "refused node {name}: held by live session {holder}", name=name, holder=holder
                )
                return False
            for entry in self.directory.drop_session(holder):
                yield self._announce_gone(entry)
        accepted, changed = self.directory.add(name, description, session, info)
        if changed:
            self.log.info("node added: {name} (session {session})", name=name, session=session)
            yield self.session.publish(self.uris.added, self.directory.get(name).public())
        return accepted

    def _check_own(self, name: str, details) -> None:
        """With authentication on, a node may add or subtract only its own authid as a name."""
        authid = getattr(details, "caller_authid", None)
        if (
            self.enforce_authid
            and getattr(details, "caller_authrole", None) == "node"
            and authid != name
        ):
            self.log.warn("refused {authid!r} naming node {name!r}", authid=authid, name=name)
            raise ApplicationError(
                "wamp.error.not_authorized", f"authenticated as {authid!r}, not {name!r}"
            )

    @inlineCallbacks
    def subtract(self, name, session_id=None, details=None):
        session = self._session_of(session_id, details)
        self._check_own(name, details)
        entry = self.directory.subtract(name, session)
        if entry is not None:
            yield self._announce_gone(entry)

    def get_data_node(self):
        return self.directory.listing()

    @inlineCallbacks
    def on_session_leave(self, session_id, *args, **kwargs):
        for entry in self.directory.drop_session(session_id):
            yield self._announce_gone(entry)

    def _announce_gone(self, entry):
        self.log.info(
            "node subtracted: {name} (session {session})", name=entry.name, session=entry.session
        )
        return self.session.publish(self.uris.subtracted, entry.public())


class Hub(ApplicationSession):
    """The hub as a router-hosted component; `config.extra` may carry `{"prefix": ...}`."""

    def onJoin(self, details):
        extra = (self.config.extra if self.config is not None else None) or {}
        self.service = HubService(
            self, extra.get("prefix", DEFAULT_PREFIX), bool(extra.get("auth"))
        )
        return self.service.attach(details)
