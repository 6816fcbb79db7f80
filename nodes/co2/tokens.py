"""Per-unit tokens: a JSON file of token hashes, never the tokens themselves.

Tokens are 256-bit random strings, so one SHA-256 of the token is enough to
store (no password stretching is needed for secrets that cannot be guessed).
Checks hash the presented token and compare the hashes in constant time.
A revoked unit stays in the file as revoked, so compatibility mode (units
without tokens) can refuse it too.

The file is written atomically (temporary file, fsync, rename, fsync of the
directory) with mode 0600, and re-read by a running server when it changes, so
`obsmesh co2 add-unit` takes effect without a restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "tokens.json"
_VERSION = 1
_PREFIX = "sha256:"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return _PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(stored_hash: str, token: str) -> bool:
    return hmac.compare_digest(stored_hash.encode("ascii"), hash_token(token).encode("ascii"))


class TokenFileError(ValueError):
    """The token file exists but cannot be used."""


@dataclass(frozen=True)
class UnitEntry:
    token_hash: str | None  # None once revoked
    added: str
    revoked: str | None = None


class TokenStore:
    """The token file of one data root. Reads are cheap (a stat per check)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._units: dict[str, UnitEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self.refresh()

    # -- reading ---------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the file if it changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._units, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        self._units = _load(self.path)
        self._stamp = stamp

    def check(self, unit_id: str, token: str) -> bool:
        """True when `token` is the current token of `unit_id`."""
        self.refresh()
        entry = self._units.get(unit_id)
        if entry is None or entry.token_hash is None:
            hash_token(token)  # same work either way: no timing hint about known ids
            return False
        return token_matches(entry.token_hash, token)

    def is_revoked(self, unit_id: str) -> bool:
        self.refresh()
        entry = self._units.get(unit_id)
        return entry is not None and entry.token_hash is None

    def units(self) -> dict[str, UnitEntry]:
        self.refresh()
        return dict(self._units)

    # -- changing (operator commands) ------------------------------------------

    def add(self, unit_id: str) -> str:
        """Give `unit_id` a new token (replacing any old one) and return it."""
        token = new_token()
        units = _load(self.path) if self.path.exists() else {}
        units[unit_id] = UnitEntry(hash_token(token), _now())
        _save(self.path, units)
        self.refresh()
        return token

    def revoke(self, unit_id: str) -> bool:
        """Revoke the unit's token; False if the unit was never added."""
        units = _load(self.path) if self.path.exists() else {}
        if unit_id not in units:
            return False
        units[unit_id] = UnitEntry(None, units[unit_id].added, _now())
        _save(self.path, units)
        self.refresh()
        return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load(path: Path) -> dict[str, UnitEntry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != _VERSION or not isinstance(doc.get("units"), dict):
            raise TokenFileError(f"{path}: not a version {_VERSION} token file")
        units = {}
        for unit_id, raw in doc["units"].items():
            token_hash = raw.get("token_hash")
            if token_hash is not None and not (
                isinstance(token_hash, str) and token_hash.startswith(_PREFIX)
            ):
                raise TokenFileError(f"{path}: bad hash for {unit_id!r}")
            units[unit_id] = UnitEntry(token_hash, str(raw.get("added", "")), raw.get("revoked"))
        return units
    except (OSError, ValueError, AttributeError) as exc:
        if isinstance(exc, TokenFileError):
            raise
        raise TokenFileError(f"{path}: unreadable token file ({exc})") from exc


def _save(path: Path, units: dict[str, UnitEntry]) -> None:
    doc = {
        "version": _VERSION,
        "units": {
            u: {k: v for k, v in vars(e).items() if v is not None} for u, e in sorted(units.items())
        },
    }
    data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
