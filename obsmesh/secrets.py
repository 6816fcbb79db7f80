"""Secrets of the mesh: one master key, per-principal secrets derived from it.

The secrets file (JSON, mode 0600, never committed) holds a random master key
and the principals the router accepts, each with its role:

    {"version": 1, "key": "<base64>", "principals": {"weather": "node", "hub": "hub", "*": "node"}}

A principal's WAMP-CRA secret is HMAC-SHA256(key, "obsmesh:" + authid), so a
node deployed on another machine is given its own secret only (`obsmesh
secrets show NAME`), never the key; the local launcher gives its children the
file and each derives its own. `"*"` admits any authid with that role (the
local demo and the tests); leave it out to admit named principals only.

Standard library only: the router-hosted authenticator imports this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets as random_secrets
from dataclasses import dataclass, field

ROLES = ("node", "hub", "consumer")


class SecretsError(ValueError):
    pass


@dataclass
class Secrets:
    key: bytes
    principals: dict[str, str] = field(default_factory=dict)

    def role_of(self, authid: str) -> str | None:
        """The role an authid may take, or None when the router must refuse it."""
        if not isinstance(authid, str) or not authid or authid == "*":
            return None
        return self.principals.get(authid, self.principals.get("*"))

    def secret_for(self, authid: str) -> str:
        digest = hmac.new(self.key, b"obsmesh:" + authid.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def new(principals: dict[str, str] | None = None) -> Secrets:
    return Secrets(random_secrets.token_bytes(32), dict(principals or {}))


def load(path: str) -> Secrets:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        key = base64.b64decode(data["key"], validate=True)
        principals = data.get("principals", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SecretsError(f"cannot read the secrets file {path}: {exc}") from None
    if len(key) < 16:
        raise SecretsError(f"the key in {path} is too short")
    bad = {k: v for k, v in principals.items() if v not in ROLES}
    if bad:
        raise SecretsError(f"unknown roles in {path}: {bad}")
    return Secrets(key, dict(principals))


def save(path: str, secrets: Secrets) -> None:
    """Write atomically, readable by the owner only."""
    data = {
        "version": 1,
        "key": base64.b64encode(secrets.key).decode("ascii"),
        "principals": secrets.principals,
    }
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
