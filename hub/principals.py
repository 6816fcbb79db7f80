"""The secrets file as the router-hosted authenticator sees it.

- Read off the reactor (a thread), never blocking it.
- Fresh for every join: `fresh()` answers with a reading that began after it
  was asked, so a principal revoked a moment ago is refused at its next join.
  Concurrent askers share readings (one at a time, one queued).
- Watched: inotify on the file's directory (the file is replaced atomically,
  so its own inode changes) and a slow poll as a safety net; every change is
  compared with the previous reading and `on_lost` hears which authids lost
  the credentials they authenticated with (revoked, or given another role or
  secret), so their open sessions can be ended at once.

A file that cannot be read keeps the previous reading (and says so, once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from obsmesh import secrets as mesh_secrets
from obsmesh.periodic import Periodic

POLL = 2.0  # seconds between safety-net readings
WATCH_MASK_NAMES = ("IN_CLOSE_WRITE", "IN_MOVED_TO", "IN_CREATE", "IN_DELETE", "IN_MOVED_FROM")


def lost_credentials(old: mesh_secrets.Secrets | None, new: mesh_secrets.Secrets) -> set[str]:
    """Authids whose (role, secret) in `old` is no longer in `new` (pure)."""
    if old is None:
        return set()
    before, after = old.credentials(), new.credentials()
    return {a for a, cred in before.items() if after.get(a) != cred}


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class PrincipalsFile:
    log = Logger()

    def __init__(
        self, path: str, reactor: Any, on_lost: Callable[[set[str]], Any], poll: float = POLL
    ) -> None:
        self.path = path
        self.reactor = reactor
        self.on_lost = on_lost
        self.poll = poll
        self.current: mesh_secrets.Secrets | None = None
        self._text: str | None = None
        self._error = ""
        self._reading = False
        self._waiting: list[defer.Deferred] = []  # served by the next reading
        self._poller: Periodic | None = None
        self._notifier: Any = None

    # -- readings ------------------------------------------------------------
    def fresh(self) -> defer.Deferred:
        """The principals as read after this call (None if the file was never readable)."""
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        if not self._reading:
            self._start_reading()
        return d

    def _start_reading(self) -> None:
        waiters, self._waiting = self._waiting, []
        self._reading = True
        reading = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _read, self.path
        )
        reading.addCallbacks(self._got, self._failed)
        reading.addBoth(lambda _: self._done(waiters))

    def _got(self, text: str) -> None:
        if text == self._text:
            return
        try:
            new = mesh_secrets.parse(text, self.path)
        except mesh_secrets.SecretsError as exc:
            self._report(f"keeping the previous principals: {exc}")
            return
        self._text, self._error = text, ""
        old, self.current = self.current, new
        if new.ignored:
            self.log.warn(
                "ignored in the secrets file: {names} (no wildcard: name each principal)",
                names=", ".join(new.ignored),
            )
        lost = lost_credentials(old, new)
        if old is None:
            self.log.info("principals read: {n}", n=len(new.principals))
        else:
            self.log.info(
                "principals changed: {n} now, {lost} revoked or changed",
                n=len(new.principals),
                lost=len(lost),
            )
        if lost:
            self.on_lost(lost)

    def _failed(self, failure) -> None:
        self._report(f"cannot read the secrets file {self.path}: {failure.getErrorMessage()}")

    def _report(self, message: str) -> None:
        if message != self._error:  # one line per new problem, not one per reading
            self._error = message
            self.log.error("{message}", message=message)

    def _done(self, waiters: list[defer.Deferred]) -> None:
        self._reading = False
        if self._waiting:
            self._start_reading()
        for d in waiters:
            d.callback(self.current)

    # -- watching ------------------------------------------------------------
    def watch(self) -> None:
        self._poller = Periodic(self.reactor, self.poll, self.fresh, name="principals poll")
        self._poller.start(now=False)
        try:
            from twisted.internet import inotify
            from twisted.python.filepath import FilePath

            mask = 0
            for name in WATCH_MASK_NAMES:
                mask |= getattr(inotify, name)
            notifier = inotify.INotify(self.reactor)
            notifier.startReading()
            notifier.watch(
                FilePath(os.path.dirname(os.path.abspath(self.path))),
                mask=mask,
                callbacks=[self._on_event],
            )
            self._notifier = notifier
        except Exception as exc:  # no inotify here: the poll alone notices changes
            self.log.warn(
                "not watching {path} ({exc}); reading it every {s} s",
                path=self.path,
                exc=exc,
                s=self.poll,
            )

    def _on_event(self, _watch, filepath, _mask) -> None:
        if os.fsdecode(filepath.basename()) == os.path.basename(self.path):  # inotify gives bytes
            self.fresh()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        if self._notifier is not None:
            self._notifier.connectionLost(None)
            self._notifier = None
