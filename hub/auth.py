"""Authentication and authorisation, hosted by the router beside the hub.

- `P.auth.authenticate`: the WAMP-CRA dynamic authenticator of the backend
  transport (and of the public one when consumers must authenticate too). It
  gives the router the principal's role and derived secret; the router then
  runs the challenge (a fresh nonce per session, so a replayed signature fails).
- `P.auth.authorize`: the dynamic authoriser of the `node` role: a node
  authenticated as X may register and publish only under `P.consumer.X.`; it may
  call the hub's add/subtract (its session disclosed to the hub), read the mesh,
  and follow subscription meta events.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from obsmesh import secrets as mesh_secrets
from obsmesh.uris import DEFAULT_PREFIX, valid_node_name

DENY = {"allow": False, "disclose": False, "cache": True}


def node_permission(prefix: str, authid: str, uri: str, action: str) -> dict:
    """What a node authenticated as `authid` may do on `uri` (a pure rule)."""
    allow = {"allow": True, "disclose": False, "cache": True}
    own = f"{prefix}.consumer.{authid}."
    if not valid_node_name(authid):
        return DENY
    if action in ("register", "publish"):
        return allow if uri.startswith(own) else DENY
    if action == "call":
        if uri in (f"{prefix}.data_node.add", f"{prefix}.data_node.subtract"):
            return {"allow": True, "disclose": True, "cache": True}
        if uri.startswith(f"{prefix}.consumer.") or uri == "wamp.subscription.lookup":
            return allow
        return DENY
    if action == "subscribe":
        if uri.startswith((f"{prefix}.consumer.", f"{prefix}.hub.", "wamp.subscription.on_")):
            return allow
        return DENY
    return DENY


class Auth(ApplicationSession):
    """`config.extra`: {"prefix": ..., "secrets_file": path}."""

    log = Logger()

    @inlineCallbacks
    def onJoin(self, details):
        extra = self.config.extra or {}
        self.prefix = extra.get("prefix", DEFAULT_PREFIX)
        self.path = extra["secrets_file"]
        self.secrets = mesh_secrets.load(self.path)
        # At a linked site every node name starts with "<site>-" (obsmesh.sites).
        self.site = extra.get("site", "")
        yield self.register(self.authenticate, f"{self.prefix}.auth.authenticate")
        yield self.register(self.authorize, f"{self.prefix}.auth.authorize")
        self.log.info("authenticator ready ({n} principals)", n=len(self.secrets.principals))

    def _current(self) -> mesh_secrets.Secrets:
        # Re-read so `obsmesh secrets add/revoke` take effect without a restart.
        try:
            self.secrets = mesh_secrets.load(self.path)
        except mesh_secrets.SecretsError as exc:
            self.log.error("keeping the previous secrets: {exc}", exc=exc)
        return self.secrets

    def authenticate(self, realm, authid, details):
        secrets = self._current()
        role = secrets.role_of(authid)
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
        return {"secret": secrets.secret_for(authid), "role": role}

    def authorize(self, session, uri, action, options=None):
        decision = node_permission(self.prefix, session.get("authid", ""), uri, action)
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
        return decision
