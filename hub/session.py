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
from obsmesh.calls import SharedCall
from obsmesh.uris import DEFAULT_PREFIX, Uris, valid_node_name

# How long the hub waits for a linked site's listing before leaving it out.
PEER_LISTING_TIMEOUT = 3


class HubService:
    log = Logger()

    def __init__(
        self,
        session,
        prefix: str = DEFAULT_PREFIX,
        enforce_authid: bool = False,
        site: str = "",
        peers: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.session = session
        # With authentication on, a node may only announce its own authid as its name.
        self.enforce_authid = enforce_authid
        self.uris = Uris(prefix)
        self.directory = Directory()  # new on every join: nodes re-announce on hub.online
        # Linked sites (obsmesh.sites): names here start with "<site>-"; the
        # listing adds the nodes of every peer site reachable now.
        self.site = site
        self.peers = tuple(peers)
        self._peer_calls: dict[str, SharedCall] = {}  # one listing call in flight per peer

    @inlineCallbacks
    def attach(self, details):
        u, s = self.uris, self.session
        opts = RegisterOptions(details_arg="details")
        yield s.register(self.add, u.add, options=opts)
        yield s.register(self.subtract, u.subtract, options=opts)
        yield s.register(self.get_data_node, u.get_data_node)
        if self.site:
            yield s.register(self.site_listing, site_listing_uri(u.prefix, self.site))
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
    def _serves(self, session: int, name: str):
        """Whether `session` is the one serving the node's `get_fields` now."""
        try:
            reg = yield self.session.call("wamp.registration.lookup", self.uris.get_fields(name))
            if reg is None:
                return False
            callees = yield self.session.call("wamp.registration.list_callees", reg)
        except ApplicationError:
            return False
        return session in (callees or [])

    @inlineCallbacks
    def _close(self, session: int):
        try:
            yield self.session.call(
                "wamp.session.kill", session, message="replaced by a newer session of the node"
            )
        except ApplicationError as exc:  # already gone
            self.log.debug("closing session {s}: {exc}", s=session, exc=exc)

    @inlineCallbacks
    def add(self, name, description="", session_id=None, details=None, **info):
        if not valid_node_name(name):
            raise ApplicationError(
                self.uris.error("invalid_argument"),
                f"node name {name!r} must match [a-z0-9][a-z0-9_-]* (at most 63 characters)",
            )
        if self.site and not name.startswith(f"{self.site}-"):
            raise ApplicationError(
                self.uris.error("invalid_argument"),
                f"node names at site {self.site!r} start with {self.site + '-'!r}, got {name!r}",
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
            if alive and (yield self._serves(session, name)):
                # The caller took the node's procedures from the holder: the holder
                # is an earlier session of the node left behind by a dead network
                # path (it did not answer the node). Close it; list the caller.
                self.log.warn(
                    "node {name}: session {session} replaces unanswering session {holder}",
                    name=name,
                    session=session,
                    holder=holder,
                )
                yield self._close(holder)
            elif alive:
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

    def site_listing(self):
        """This site's own nodes, each marked with the site (what linked sites ask for)."""
        return [{**entry, "site": self.site} for entry in self.directory.listing()]

    @inlineCallbacks
    def get_data_node(self):
        if not self.site:
            return self.directory.listing()
        listing = self.site_listing()
        for peer in self.peers:
            listing.extend((yield self._peer_listing(peer)))
        return listing

    @inlineCallbacks
    def _peer_listing(self, peer: str):
        """A linked site's nodes, or none while it is unreachable (partitioned, down)."""
        call = self._peer_calls.get(peer)
        if call is None or call.finished:
            # Never cancelled and never timed out by the router: crossbar 26.10,
            # dropping a dead link while it owes an answer to a call that was
            # cancelled or timed out, fails half-way and leaves the link's
            # registrations behind for good. The call waits for its answer (or
            # for the link to be dropped); listings stop waiting for it sooner.
            d = self.session.call(site_listing_uri(self.uris.prefix, peer))
            call = self._peer_calls[peer] = SharedCall(d, lambda: None)
        try:
            nodes = yield call.wait(PEER_LISTING_TIMEOUT)
        except Exception as exc:  # unreachable or not linked yet
            self.log.debug("site {peer} not listed: {exc}", peer=peer, exc=exc)
            return []
        # None: no answer in time, or crossbar's link answers None when the forwarded call failed
        prefix = f"{peer}-"
        return [
            n
            for n in nodes or []
            if isinstance(n, dict) and str(n.get("name", "")).startswith(prefix)
        ]

    @inlineCallbacks
    def on_session_leave(self, session_id, *args, **kwargs):
        for entry in self.directory.drop_session(session_id):
            yield self._announce_gone(entry)

    def _announce_gone(self, entry):
        self.log.info(
            "node subtracted: {name} (session {session})", name=entry.name, session=entry.session
        )
        return self.session.publish(self.uris.subtracted, entry.public())


def site_listing_uri(prefix: str, site: str) -> str:
    return f"{prefix}.site.{site}.get_data_node"


class Hub(ApplicationSession):
    """The hub as a router-hosted component; `config.extra` may carry `{"prefix": ...}`
    and, at a linked site, `{"site": name, "peers": [names]}`."""

    def onJoin(self, details):
        extra = (self.config.extra if self.config is not None else None) or {}
        self.service = HubService(
            self,
            extra.get("prefix", DEFAULT_PREFIX),
            bool(extra.get("auth")),
            site=extra.get("site", ""),
            peers=extra.get("peers", ()),
        )
        return self.service.attach(details)
