"""The hub's directory of data nodes as a plain state machine (no I/O).

A name belongs to one WAMP session at a time. Re-announcing from the holding
session updates the entry; another session may take the name only once the
holder is known to be gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Entry:
    name: str
    description: str
    session: int
    info: dict = field(default_factory=dict)

    def public(self) -> dict:
        """The shape consumers see: `{"name", "description", ...info}`."""
        return {**self.info, "name": self.name, "description": self.description}


class Directory:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def holder(self, name: str) -> int | None:
        entry = self._entries.get(name)
        return entry.session if entry else None

    def add(self, name: str, description: str, session: int, info: dict) -> tuple[bool, bool]:
        """Record `name` for `session`; returns (accepted, changed).

        Refused when another session holds the name; the caller decides first
        whether that holder is still alive (and `drop_session`s it if not).
        """
        current = self._entries.get(name)
        if current is not None and current.session != session:
            return False, False
        entry = Entry(name, description, session, dict(info))
        changed = current is None or current.public() != entry.public()
        self._entries[name] = entry
        return True, changed

    def subtract(self, name: str, session: int) -> Entry | None:
        """Remove `name` if `session` holds it; the removed entry, else None."""
        current = self._entries.get(name)
        if current is None or current.session != session:
            return None
        return self._entries.pop(name)

    def drop_session(self, session: int) -> list[Entry]:
        """Remove every node of a session that left."""
        gone = [e for e in self._entries.values() if e.session == session]
        for entry in gone:
            del self._entries[entry.name]
        return gone

    def listing(self) -> list[dict]:
        return [e.public() for e in sorted(self._entries.values(), key=lambda e: e.name)]

    def __len__(self) -> int:
        return len(self._entries)
