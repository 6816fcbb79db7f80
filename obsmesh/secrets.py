"""Secrets of the mesh: one master key and the named principals the router admits.

The secrets file (JSON, mode 0600, never committed) holds a random master key
and every principal with its role; a principal may also carry a secret of its
own (an existing installation's, kept with `obsmesh secrets add NAME
--secret-file F`):

    {"version": 2, "key": "<base64>",
     "principals": {"weather": "node", "hub": "hub", "old-node": {"role": "node", "secret": "..."}}}

A principal without a secret of its own answers WAMP-CRA with
HMAC-SHA256(key, "obsmesh:" + authid), so a node deployed on another machine is
given its own secret only (`obsmesh secrets show NAME`), never the key; the
local launcher gives its children the file and each derives its own. There is
no wildcard: every authid the router admits is named here, with the one role it
may take. (Files of older versions may hold a `"*"` principal; it is ignored,
`ignored` says so, and `admit` removes it.)

Standard library only: the router-hosted authenticator imports this module.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets as random_secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from obsmesh.uris import valid_node_name

ROLES = ("node", "hub", "consumer")
WILDCARD = "*"  # older files admitted any authid as a node with it; never honoured now
MAX_SECRET = 1024  # characters of a given secret
MAX_AUTHID = 128

T = TypeVar("T")


class SecretsError(ValueError):
    pass


def check_principal(authid: object, role: object) -> None:
    """A name the router may admit with `role`, else SecretsError saying why."""
    if role not in ROLES:
        raise SecretsError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(authid, str) or not authid or len(authid) > MAX_AUTHID:
        raise SecretsError(f"a principal is a name of 1 to {MAX_AUTHID} characters, got {authid!r}")
    if authid == WILDCARD:
        raise SecretsError("there is no wildcard principal: name each principal")
    if not authid.isprintable() or any(c.isspace() for c in authid):
        raise SecretsError(f"principal {authid!r} holds spaces or control characters")
    if role == "node" and not valid_node_name(authid):
        # A node may only act under P.consumer.<authid>., so its name is a URI component.
        raise SecretsError(
            f"node principal {authid!r} must be a node name: [a-z0-9][a-z0-9_-]*, at most 63 characters"
        )


def check_secret(secret: object) -> str:
    """A given WAMP-CRA secret: printable text, no surrounding blanks."""
    if not isinstance(secret, str) or not secret:
        raise SecretsError("the secret is empty")
    if len(secret) > MAX_SECRET:
        raise SecretsError(f"the secret is longer than {MAX_SECRET} characters")
    if not secret.isprintable() or secret != secret.strip():
        raise SecretsError("the secret holds control characters or surrounding blanks")
    return secret


@dataclass
class Secrets:
    key: bytes
    principals: dict[str, str] = field(default_factory=dict)  # authid -> role
    given: dict[str, str] = field(default_factory=dict, repr=False)  # authid -> its own secret
    ignored: list[str] = field(default_factory=list)  # entries of an older file not honoured

    def role_of(self, authid: object) -> str | None:
        """The role an authid may take, or None when the router must refuse it."""
        if not isinstance(authid, str):
            return None
        return self.principals.get(authid)

    def secret_for(self, authid: str) -> str:
        """The principal's WAMP-CRA secret: its own if it was given one, else derived."""
        given = self.given.get(authid)
        return given if given is not None else self.derived(authid)

    def derived(self, authid: str) -> str:
        digest = hmac.new(self.key, b"obsmesh:" + authid.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def add(self, authid: str, role: str, secret: str | None = None) -> None:
        """Admit (or replace) a principal; with `secret`, it keeps that secret."""
        check_principal(authid, role)
        self.principals[authid] = role
        if secret is None:
            self.given.pop(authid, None)
        else:
            self.given[authid] = check_secret(secret)

    def revoke(self, authid: str) -> bool:
        self.given.pop(authid, None)
        return self.principals.pop(authid, None) is not None

    def credentials(self) -> dict[str, tuple[str, str]]:
        """authid -> (role, secret): what a session authenticated with (revocation compares these)."""
        return {a: (r, self.secret_for(a)) for a, r in self.principals.items()}

    def listing(self) -> list[tuple[str, str, str]]:
        """(authid, role, "given" | "derived"), sorted: what may be shown (never a secret)."""
        return [
            (a, r, "given" if a in self.given else "derived")
            for a, r in sorted(self.principals.items())
        ]


def new(principals: Mapping[str, str] | None = None) -> Secrets:
    s = Secrets(random_secrets.token_bytes(32))
    for authid, role in (principals or {}).items():
        s.add(authid, role)
    return s


def parse(text: str, where: str = "the secrets file") -> Secrets:
    """A secrets file's text (pure). Entries that are not valid principals are
    refused, except an older file's wildcard, which is ignored."""
    try:
        data = json.loads(text)
        key = base64.b64decode(data["key"], validate=True)
        raw = data.get("principals", {})
        if not isinstance(raw, dict):
            raise TypeError("principals is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretsError(f"cannot read {where}: {exc}") from None
    if len(key) < 16:
        raise SecretsError(f"the key in {where} is too short")
    s = Secrets(key)
    for authid, entry in raw.items():
        if authid == WILDCARD:
            s.ignored.append(authid)
            continue
        role: Any  # as the file holds them: add() checks both
        secret: Any
        role, secret = (
            (entry.get("role"), entry.get("secret")) if isinstance(entry, dict) else (entry, None)
        )
        try:
            s.add(authid, role, secret)
        except SecretsError as exc:
            raise SecretsError(f"{where}: principal {authid!r}: {exc}") from None
    return s


def load(path: str) -> Secrets:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SecretsError(f"cannot read the secrets file {path}: {exc}") from None
    return parse(text, path)


def dumps(secrets: Secrets) -> str:
    principals = {
        a: ({"role": r, "secret": secrets.given[a]} if a in secrets.given else r)
        for a, r in sorted(secrets.principals.items())
    }
    data = {
        "version": 2,
        "key": base64.b64encode(secrets.key).decode("ascii"),
        "principals": principals,
    }
    return json.dumps(data, indent=2)


def save(path: str, secrets: Secrets) -> None:
    """Write atomically (a reader sees the old file or the new one), owner-only."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dumps(secrets))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """One writer at a time (the CLI, the launcher, test processes share a file)."""
    fd = os.open(f"{path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(path: str, change: Callable[[Secrets], T], create: bool = False) -> T:
    """Read, change and write the file under a lock; `create` starts a missing file
    with a fresh key. Returns what `change` returns."""
    with _locked(path):
        if create and not os.path.exists(path):
            s, before = new(), None
        else:
            s = load(path)
            before = dumps(s)
        result = change(s)
        if dumps(s) != before:  # an unchanged file is not rewritten (readers reload on writes)
            save(path, s)
    return result


def admit(path: str, principals: Mapping[str, str]) -> list[str]:
    """Make sure these principals exist (creating the file if needed); a
    principal already there keeps its role and secret. An older file's wildcard
    is dropped. Returns the names added."""
    for authid, role in principals.items():
        check_principal(authid, role)

    def change(s: Secrets) -> list[str]:
        added = [a for a in principals if a not in s.principals]
        for a in added:
            s.add(a, principals[a])
        s.ignored.clear()
        return added

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return update(path, change, create=True)


def read_secret(source: str) -> str:
    """A secret from a file, or from standard input for "-"; one line ending is dropped."""
    try:
        if source == "-":
            text = sys.stdin.read(MAX_SECRET + 3)
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read(MAX_SECRET + 3)
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError(f"cannot read the secret from {source}: {exc}") from None
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return check_secret(text)
