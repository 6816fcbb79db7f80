"""What a node may do on the router: the authoriser's rule, pure.

crossbar caches an authoriser's answer under (realm, authrole, URI, action)
when the answer says `"cache": True`, and then gives it to every session of
that role, whoever it is. So an answer may say so only when it is the same
for every node; the answers that depend on who asks (a node's own URIs,
another node's) are never cached by the router. `cached_rule` caches those
per authid inside the authoriser instead, which is safe because the rule
depends on nothing but its arguments.

Every node-role session has a valid node name as its authid: the
authenticator admits no other (see `obsmesh.secrets.check_principal`), which
is what makes the shared answers the same for every node.
"""

from __future__ import annotations

from functools import lru_cache

from obsmesh.uris import valid_node_name

# Answers the router may keep for every node, and answers for this authid only.
SHARED_ALLOW = {"allow": True, "disclose": False, "cache": True}
SHARED_DENY = {"allow": False, "disclose": False, "cache": True}
DISCLOSED = {"allow": True, "disclose": True, "cache": True}  # the hub learns the caller
OWN_ALLOW = {"allow": True, "disclose": False, "cache": False}
OWN_DENY = {"allow": False, "disclose": False, "cache": False}

CACHE_SIZE = 65_536  # (authid, URI, action) decisions kept by `cached_rule`


def node_permission(prefix: str, authid: str, uri: str, action: str) -> dict:
    """What a node authenticated as `authid` may do on `uri`: register and
    publish under `P.consumer.<authid>.` only; call the hub's add/subtract
    (disclosed, so the hub can check the name) and anything under
    `P.consumer.`; subscribe to the mesh's topics and subscription meta events."""
    if not valid_node_name(authid):  # never admitted as a node; refuse, for this session only
        return OWN_DENY
    consumer = f"{prefix}.consumer."
    if action in ("register", "publish"):
        if uri.startswith(f"{consumer}{authid}."):
            return OWN_ALLOW
        # Under another node's name: that node may, so the refusal is this node's alone.
        return OWN_DENY if uri.startswith(consumer) else SHARED_DENY
    if action == "call":
        if uri in (f"{prefix}.data_node.add", f"{prefix}.data_node.subtract"):
            return DISCLOSED
        if uri.startswith(consumer) or uri == "wamp.subscription.lookup":
            return SHARED_ALLOW
        return SHARED_DENY
    if action == "subscribe":
        if uri.startswith((consumer, f"{prefix}.hub.", "wamp.subscription.on_")):
            return SHARED_ALLOW
        return SHARED_DENY
    return SHARED_DENY


def uncached(decision: dict) -> dict:
    """The same decision, never to be kept by the router (the benchmark's reference)."""
    return {**decision, "cache": False}


cached_rule = lru_cache(maxsize=CACHE_SIZE)(node_permission)
