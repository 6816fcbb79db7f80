"""Follow growing files without blocking the reactor: one `Tail` per file, read in threads.

`Follower` keeps a `Tail` (obsmesh.tail: appended complete lines, across
rotation, truncation and replacement) for every file it is told about, and
reads it in a thread pool whenever it hears the file changed:

- at most one read per file is in flight; changes heard meanwhile make one
  more read after it (a burst of events costs one or two reads, not one each);
- a read that stopped at `max_chunk` is followed by the next at once, each
  result handed to `on_read` on the reactor thread in between;
- `transform(path, data)`, when given, runs in the same thread as the read
  (parsing a week of rows must not stall the reactor either); `on_read` gets
  its result instead of the bytes.

`Follower.watch(roots, ...)` wires a `TreeWatcher` (obsmesh.watch: inotify,
a poll without it) to it for the files `accept` takes, and optionally rescans
every `rescan_every` seconds (a network share, where inotify sees nothing of
what other hosts write). A caller with its own events calls `follow` and
`changed` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from obsmesh.periodic import Periodic
from obsmesh.tail import Tail
from obsmesh.watch import EXISTS, GONE, RESCAN, RootCallback, TreeWatcher

log = Logger()


class Followed:
    """One file being followed: its `Tail` and whether a read is in flight."""

    __slots__ = ("path", "tail", "found", "reading", "again", "closing")

    def __init__(self, path: str, tail: Tail, found: bool) -> None:
        self.path = path
        self.tail = tail
        # found by the first scan: its reads are history, not news, until one reaches its end
        self.found = found
        self.reading = False
        self.again = False  # changed while being read: read once more after
        self.closing = False  # idle: close the descriptor once the read in flight is done

    @property
    def is_open(self) -> bool:
        """A descriptor is held (and kept beyond the read in flight, if any)."""
        return self.tail.is_open and not self.closing


ReadCallback = Callable[[Followed, Any], None]
FailureCallback = Callable[[Followed, Failure], None]


class Follower:
    """Files followed by path; see the module docstring.

    `on_read(followed, data)` gets every read's result (possibly empty) on
    the reactor thread, `on_failure(followed, failure)` a failed `transform`.
    `pool` is the thread pool reads run in (default: the reactor's).
    """

    def __init__(
        self,
        reactor: Any,
        on_read: ReadCallback,
        *,
        transform: Callable[[str, bytes], Any] | None = None,
        on_failure: FailureCallback | None = None,
        pool: ThreadPool | None = None,
        max_chunk: int = 1 << 18,
    ) -> None:
        self.reactor = reactor
        self.on_read = on_read
        self.transform = transform
        self.on_failure = on_failure
        self.pool = pool
        self.max_chunk = max_chunk
        self.files: dict[str, Followed] = {}
        self.watcher: TreeWatcher | None = None
        self._rescan: Periodic | None = None
        self._running = True

    # ---- files -------------------------------------------------------------------

    def follow(
        self, path: str, *, old_before: float | None = None, found: bool = False
    ) -> Followed:
        """Follow `path` from its start (or its end, if last modified before
        `old_before`); a file followed already is left as it is."""
        f = self.files.get(path)
        if f is None:
            tail = Tail(path, max_chunk=self.max_chunk, old_before=old_before)
            f = self.files[path] = Followed(path, tail, found)
        return f

    def changed(self, path: str) -> None:
        """The file may have changed: read it (once the read in flight is done)."""
        f = self.files.get(path)
        if f is None or not self._running:
            return
        if f.reading:
            f.again = True
        else:
            self._read(f)

    def close_idle(self, idle: Callable[[Followed], bool]) -> None:
        """Close the descriptors of the files `idle` picks (their state is kept:
        the next read opens the file again and checks it is the same)."""
        for f in self.files.values():
            if f.is_open and idle(f):
                if f.reading:
                    f.closing = True  # a thread is using the descriptor: close it after
                else:
                    self._close(f)

    @staticmethod
    def _close(f: Followed) -> None:
        f.closing = False
        f.tail.close()
        f.tail.compact()

    def _read(self, f: Followed) -> None:
        f.reading, f.again = True, False
        pool = self.pool if self.pool is not None else self.reactor.getThreadPool()
        d: Deferred = threads.deferToThreadPool(self.reactor, pool, self._read_in_thread, f)
        d.addCallbacks(self._done, self._failed, callbackArgs=(f,), errbackArgs=(f,))

    def _read_in_thread(self, f: Followed) -> Any:
        data = f.tail.read()
        return data if self.transform is None else self.transform(f.path, data)

    def _done(self, result: Any, f: Followed) -> None:
        try:
            if self._running:
                self.on_read(f, result)
        except Exception:  # noqa: BLE001 - a consumer's bug must not stop the follower
            log.failure("handling what {path} gained failed", path=f.path)
        self._next(f)

    def _failed(self, failure: Failure, f: Followed) -> None:
        if self.on_failure is not None and self._running:
            try:
                self.on_failure(f, failure)
            except Exception:  # noqa: BLE001
                log.failure("handling a failed read of {path} failed", path=f.path)
        else:
            log.failure("reading {path} failed", failure, path=f.path)
        self._next(f)

    def _next(self, f: Followed) -> None:
        f.reading = False
        if not f.tail.more:
            f.found = False  # read to its end: what comes next is news
        if f.closing:
            self._close(f)
        if not self._running:
            f.tail.close()  # stopped while this read was in flight
        elif f.tail.more or f.again:
            self._read(f)

    # ---- watching ------------------------------------------------------------------

    def watch(
        self,
        roots: Iterable[str],
        *,
        accept: Callable[[str], bool] = lambda path: True,
        old_before: Callable[[], float] | None = None,
        on_root: RootCallback | None = None,
        mode: str = "auto",
        poll_interval: float = 1.0,
        rescan_every: float | None = None,
    ) -> TreeWatcher:
        """Follow the files under `roots` that `accept` takes (call `start`).

        `old_before()`, when given, is the time before which a file found by a
        scan (rather than seen being written) counts as old: read from its end.
        """

        def on_event(path: str, kind: str) -> None:
            if path not in self.files:
                if kind == GONE or not accept(path):
                    return
                scanned = kind in (EXISTS, RESCAN)
                when = old_before() if old_before is not None and scanned else None
                self.follow(path, old_before=when, found=kind == EXISTS)
            self.changed(path)

        self.watcher = TreeWatcher(
            roots,
            on_event,
            reactor=self.reactor,
            mode=mode,
            poll_interval=poll_interval,
            on_root=on_root,
            pool=self.pool,
        )
        if rescan_every is not None:
            self._rescan = Periodic(self.reactor, rescan_every, self.watcher.rescan, "rescan")
        return self.watcher

    def start(self) -> None:
        self._running = True
        if self.watcher is not None:
            self.watcher.start()
            if self._rescan is not None and self.watcher.mode == "inotify":
                self._rescan.start()

    def stop(self) -> None:
        """Stop watching and reading; descriptors are closed (reads in flight: when done)."""
        self._running = False
        if self._rescan is not None:
            self._rescan.stop()
        if self.watcher is not None:
            self.watcher.stop()
        for f in self.files.values():
            if not f.reading:
                f.tail.close()
