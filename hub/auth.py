"""Authentication and authorisation, hosted by the router beside the hub.

- `P.auth.authenticate`: the WAMP-CRA dynamic authenticator of the backend
  transport and of the public WebSocket. It gives the router the principal's
  role and secret from a fresh reading of the secrets file
  (`hub.principals`); the router then runs the challenge (a fresh nonce per
  session, so a replayed signature fails). Unknown authids are refused.
- Revocation: when the file changes, every open session of a principal that
  lost its credentials (revoked, or given another role or secret) is ended
  (`wamp.session.kill_by_authid`); a session that joins with credentials
  the file no longer holds is ended as it joins (`wamp.session.on_join`).
- `P.auth.authorize`: the dynamic authoriser of the `node` role
  (`hub.permissions`): a node authenticated as X registers and publishes only
  under `P.consumer.X.`. Answers that depend on the authid are never cached by
  the router; they are cached per authid here.

`config.extra`: {"prefix": ..., "secrets_file": path, "cache": true}; `cache`
false turns every cache off (the benchmark's reference).
"""

from __future__ import annotations

import time

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer
from twisted.logger import Logger

from hub import permissions
from hub.principals import PrincipalsFile
from obsmesh.uris import DEFAULT_PREFIX

KILLED = "wamp.close.killed"
JOIN_WINDOW = 60.0  # seconds an authentication may take to become a joined session


class Auth(ApplicationSession):
    log = Logger()

    async def onJoin(self, details):
        from twisted.internet import reactor

        extra = self.config.extra or {}
        self.prefix = extra.get("prefix", DEFAULT_PREFIX)
        # At a linked site every node name starts with "<site>-" (obsmesh.sites).
        self.site = extra.get("site", "")
        self.cache = bool(extra.get("cache", True))
        self.rule = permissions.cached_rule if self.cache else permissions.node_permission
        self.principals = PrincipalsFile(extra["secrets_file"], reactor, self._lost)
        self._joining: dict[
            int, tuple[float, tuple[str, str]]
        ] = {}  # session -> (when, credentials)
        first = await self.principals.fresh()
        await self.subscribe(self._on_session_join, "wamp.session.on_join")
        await self.register(self.authenticate, f"{self.prefix}.auth.authenticate")
        await self.register(self.authorize, f"{self.prefix}.auth.authorize")
        self.principals.watch()
        self.log.info(
            "authenticator ready ({n} principals, authorisation cache {cache})",
            n=len(first.principals) if first else 0,
            cache="per authid" if self.cache else "off",
        )

    def onLeave(self, details):
        principals = getattr(self, "principals", None)
        if principals is not None:
            principals.stop()
        return super().onLeave(details)

    # -- authentication --------------------------------------------------------
    async def authenticate(self, realm, authid, details):
        secrets = await self.principals.fresh()
        role = secrets.role_of(authid) if secrets is not None else None
        if role is None:
            self.log.warn("refused unknown authid {authid!r}", authid=authid)
            raise ApplicationError("wamp.error.not_authorized", f"no principal {authid!r}")
        if role == "node" and self.site and not authid.startswith(f"{self.site}-"):
            self.log.warn(
                "refused node {authid!r}: not of site {site}", authid=authid, site=self.site
            )
            raise ApplicationError(
                "wamp.error.not_authorized",
                f"node names at site {self.site!r} start with {self.site + '-'!r}",
            )
        secret = secrets.secret_for(authid)
        self._remember(details, (role, secret))
        return {"secret": secret, "role": role}

    def _remember(self, details, credentials: tuple[str, str]) -> None:
        """What a joining session authenticates with, until it has joined (or given up)."""
        now = time.monotonic()
        for sid in [s for s, (when, _) in self._joining.items() if now - when > JOIN_WINDOW]:
            del self._joining[sid]
        session = details.get("session") if isinstance(details, dict) else None
        if isinstance(session, int):
            self._joining[session] = (now, credentials)

    def _on_session_join(self, info, *args, **kwargs) -> None:
        """A session that authenticated against a reading older than the current
        one (the file changed while it joined) must still hold those credentials."""
        if not isinstance(info, dict) or info.get("authmethod") != "wampcra":
            return
        authid, role = info.get("authid"), info.get("authrole")
        session = info.get("session")
        used = self._joining.pop(session)[1] if session in self._joining else None
        secrets = self.principals.current
        held = secrets.role_of(authid) if secrets is not None else None
        now = (held, secrets.secret_for(authid)) if held is not None else None
        if now is not None and now[0] == role and used in (None, now):
            return
        self.log.warn(
            "ending session {sid} of {authid!r}: no longer a principal with role {role}",
            sid=info.get("session"),
            authid=authid,
            role=role,
        )
        d = defer.ensureDeferred(
            self.call(
                "wamp.session.kill",
                info.get("session"),
                reason=KILLED,
                message=f"the principal {authid!r} was revoked or changed",
            )
        )
        d.addErrback(lambda f: self.log.debug("kill: {e}", e=f.getErrorMessage()))

    def _lost(self, authids: set[str]) -> None:
        for authid in sorted(authids):
            d = self.call(
                "wamp.session.kill_by_authid",
                authid,
                reason=KILLED,
                message=f"the principal {authid!r} was revoked or changed",
            )
            d.addCallback(
                lambda killed, a=authid: self.log.info(
                    "principal {authid!r} revoked or changed: ended {n} session(s)",
                    authid=a,
                    n=len(killed or []),
                )
            )
            d.addErrback(
                lambda f, a=authid: self.log.error(
                    "could not end the sessions of {authid!r}: {e}", authid=a, e=f.getErrorMessage()
                )
            )

    # -- authorisation -----------------------------------------------------------
    def authorize(self, session, uri, action, options=None):
        decision = self.rule(self.prefix, session.get("authid", ""), uri, action)
        if not self.cache:
            decision = permissions.uncached(decision)
        if self.site and decision["allow"] and action in ("call", "publish"):
            # crossbar's site links forward only calls and events whose origin is disclosed
            decision = {**decision, "disclose": True}
        if not decision["allow"]:
            self.log.warn(
                "refused {authid} {action} {uri}",
                authid=session.get("authid"),
                action=action,
                uri=uri,
            )
        return dict(decision)  # the router may keep it: never hand out the cached object
