"""Watch directory trees for file changes: inotify through Twisted, polling only without it.

`TreeWatcher` calls `on_event(path, kind)` on the reactor thread for regular
files under its roots, with kind one of:

    exists   found by the first scan of a root
    rescan   found by a later full scan (after an inotify queue overflow or restart)
    created  a file appeared (it may still be empty)
    changed  a file was written to (only when watching modifications)
    arrived  a file was closed after writing or moved in (a finished file)
    gone     a file was deleted or moved away

New subdirectories (the YYYY/MM directories of the logs and archives) are
watched as they appear, and files already in them are reported. Directory
scans run in a thread: a large data tree must not stall the reactor. A root
that does not exist (yet) is looked for every `poll_interval`; `on_root` hears
whether each root can be listed.

Twisted's INotify has three sharp edges handled here: it drops the whole inotify
connection when any watched directory is deleted, it ignores the kernel's
queue-overflow event, and it lists a new subdirectory on the reactor.
`_Notifier` keeps the connection, turns an overflow into a full rescan and
lists new subdirectories in a thread; a lost connection is rebuilt and
rescanned.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool

from obsmesh.periodic import Periodic

try:  # Linux only
    from twisted.internet import inotify as _inotify_mod
except Exception:  # noqa: BLE001 - any failure to load means "no inotify here"
    _inotify_mod = None  # type: ignore[assignment]

log = Logger()

EXISTS, RESCAN, CREATED, CHANGED, ARRIVED, GONE = (
    "exists",
    "rescan",
    "created",
    "changed",
    "arrived",
    "gone",
)

_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000

EventCallback = Callable[[str, str], None]
RootCallback = Callable[[str, "str | None"], None]
Signature = tuple[int, int, int]  # (inode, size, mtime_ns)


def inotify_available() -> bool:
    return _inotify_mod is not None


@dataclass
class Scan:
    """What one walk of some roots found (made in a worker thread)."""

    files: list[tuple[str, Signature]] = field(default_factory=list)  # sorted by path
    dirs: list[str] = field(default_factory=list)  # every directory, roots included
    errors: dict[str, str] = field(default_factory=dict)  # root -> why it cannot be listed


def _scan(roots: list[str]) -> Scan:
    """Every regular file and directory under the roots, with (inode, size, mtime_ns).

    Runs in a thread. A root that cannot be listed is named in `errors`;
    unreadable subdirectories and vanishing files are skipped.
    """
    out = Scan()
    stack = list(roots)
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as err:
            if d in roots:
                out.errors[d] = str(err)
            continue
        out.dirs.append(d)
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.files.append((e.path, (st.st_ino, st.st_size, st.st_mtime_ns)))
            except OSError:
                continue
    out.files.sort()
    return out


def _children(path: FilePath) -> list[tuple[FilePath, bool]]:
    """The subdirectories (True) and regular files (False) of a directory (worker thread)."""
    try:
        children = path.children()
    except OSError:
        return []  # removed before it could be listed
    out = []
    for child in children:
        if child.isdir():
            out.append((child, True))
        elif child.isfile():
            out.append((child, False))
    return out


if _inotify_mod is not None:

    class _Notifier(_inotify_mod.INotify):
        """INotify that survives a deleted subdirectory and reports queue overflows."""

        def __init__(
            self, reactor, on_overflow: Callable[[], None], on_lost: Callable[[], None]
        ) -> None:
            super().__init__(reactor)
            self._reactor: Any = reactor  # Twisted types its own as a bare IReactorFDSet
            self._on_overflow = on_overflow
            self._on_lost = on_lost
            self._closing = False

        def _doRead(self, in_: bytes) -> None:
            # the kernel hands out whole events; look for an overflow (wd -1) before Twisted drops it
            overflow = False
            i = 0
            while i + 16 <= len(in_):
                _wd, mask, _cookie, size = struct.unpack_from("=LLLL", in_, i)
                if mask & _IN_Q_OVERFLOW:
                    overflow = True
                i += 16 + size
            super()._doRead(in_)
            if overflow:
                self._on_overflow()

        def _addChildren(self, iwp: Any) -> None:  # noqa: N802 - Twisted's name
            # Twisted lists a directory made under a watched one on the reactor: list it in a thread
            pool = self._reactor.getThreadPool()
            d = threads.deferToThreadPool(self._reactor, pool, _children, iwp.path)
            d.addCallback(self._add_children, iwp)
            d.addErrback(lambda f: log.failure("listing {path} failed", f, path=iwp.path))

        def _add_children(self, children: list[tuple[FilePath, bool]], iwp: Any) -> None:
            # what Twisted's _addChildren does with the listing (events for what is already there)
            if self._closing:
                return
            for child, is_dir in children:
                if is_dir:
                    try:
                        wd = self.watch(child, mask=iwp.mask, autoAdd=True, callbacks=iwp.callbacks)
                    except Exception:  # noqa: BLE001 - gone meanwhile
                        continue
                    iwp._notify(child, _IN_ISDIR | _IN_CREATE)
                    self._reactor.callLater(0, self._addChildren, self._watchpoints[wd])
                else:
                    iwp._notify(child, _IN_CREATE | _IN_CLOSE_WRITE)

        def loseConnection(self, *args) -> None:  # noqa: N802 - Twisted's name
            # Twisted calls this whenever any watched directory is deleted; only we may close
            if self._closing:
                super().loseConnection(*args)

        def close(self) -> None:
            self._closing = True
            self.loseConnection()

        def connectionLost(self, reason) -> None:  # noqa: N802 - Twisted's name
            super().connectionLost(reason)
            if not self._closing:
                self._on_lost()


class TreeWatcher:
    """Report file events under `roots` (see the module docstring).

    mode: "auto" (inotify if available, else polling), "inotify" or "poll".
    modify: also report writes to files (needed for logs; not for data trees
    where only finished files matter and writers would flood the queue).
    on_root: told `(root, error)` whenever a root becomes unlistable (the
    error's text) or listable (None), the first scan included.
    """

    def __init__(
        self,
        roots: Iterable[str],
        on_event: EventCallback,
        *,
        reactor: Any = None,
        mode: str = "auto",
        modify: bool = True,
        poll_interval: float = 1.0,
        on_root: RootCallback | None = None,
        pool: ThreadPool | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if mode not in ("auto", "inotify", "poll"):
            raise ValueError(f"mode must be auto, inotify or poll, not {mode!r}")
        if mode == "inotify" and not inotify_available():
            raise RuntimeError("inotify is not available on this system")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be positive")
        self.roots = [os.path.abspath(r) for r in roots]
        self.on_event = on_event
        self.on_root = on_root
        self.reactor = reactor
        self.pool = pool
        self.modify = modify
        self.poll_interval = poll_interval
        self.mode = "inotify" if mode in ("auto", "inotify") and inotify_available() else "poll"
        self.counters = {"events": 0, "overflows": 0, "restarts": 0, "scans": 0, "errors": 0}
        self.root_errors: dict[str, str | None] = {}  # the last state told to on_root
        self._notifier: Any = None
        self._pending_roots: set[str] = set()  # roots not watched (they do not exist, yet)
        self._retry: Any = None
        self._poller: Periodic | None = None
        self._known: dict[str, Signature] = {}  # poll mode: the last scan
        self._running = False
        self._first_scan_done = False

    @property
    def mask(self) -> int:
        m = _IN_CREATE | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE
        m |= _IN_DELETE_SELF | _IN_MOVE_SELF
        return m | (_IN_MODIFY | _IN_ATTRIB if self.modify else 0)

    def start(self) -> None:
        """Begin watching; the first scan reports every existing file as "exists"."""
        if self._running:
            return
        self._running = True
        if self.mode == "inotify":
            try:
                self._start_inotify()
            except Exception as e:  # noqa: BLE001 - e.g. the watch limit is reached
                log.warn(
                    "inotify unavailable ({err}); polling every {s} s", err=e, s=self.poll_interval
                )
                self._stop_inotify()
                self.mode = "poll"
        if self.mode == "poll":
            self._start_polling()

    def stop(self) -> None:
        self._running = False
        if self._poller is not None:
            self._poller.stop()
        self._poller = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._stop_inotify()

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        pool = self.pool if self.pool is not None else self.reactor.getThreadPool()
        return threads.deferToThreadPool(self.reactor, pool, fn, *args)

    def _tell_roots(self, scanned: Iterable[str], errors: dict[str, str]) -> None:
        """Tell on_root about the roots among `scanned` whose state changed."""
        for root in scanned:
            if root not in self.roots:
                continue
            error = errors.get(root)
            if root in self.root_errors and self.root_errors[root] == error:
                continue
            self.root_errors[root] = error
            if self.on_root is not None:
                try:
                    self.on_root(root, error)
                except Exception:  # noqa: BLE001 - a consumer's bug must not stop the watcher
                    self.counters["errors"] += 1
                    log.failure("root handler failed for {root}", root=root)

    # ---- inotify ---------------------------------------------------------------

    def _start_inotify(self, kind: str = EXISTS) -> None:
        self._notifier = _Notifier(self.reactor, self._overflowed, self._lost)
        self._notifier.startReading()
        self._pending_roots = set(self.roots)
        self._watch_pending(kind)

    def _stop_inotify(self) -> None:
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None

    def _watch_dir(self, path: str) -> None:
        """One directory, not its subdirectories: those are listed in a thread and
        watched one by one (Twisted's recursive watch walks the tree on the reactor)."""
        if self._notifier is None:
            return
        try:
            self._notifier.watch(
                FilePath(path), mask=self.mask, autoAdd=True, callbacks=[self._notify]
            )
        except Exception as e:  # noqa: BLE001 - gone meanwhile, or the watch limit
            self.counters["errors"] += 1
            log.warn("cannot watch {path}: {err}", path=path, err=e)

    def _watch_root(self, root: str) -> bool:
        """Watch a root directory itself, at once (one system call, no listing:
        whatever is written after `start` returns is seen)."""
        try:
            self._notifier.watch(
                FilePath(root), mask=self.mask | _IN_ONLYDIR, autoAdd=True, callbacks=[self._notify]
            )
        except Exception:  # noqa: BLE001 - missing, not a directory: the scan says why
            return False
        return True

    def _watch_pending(self, kind: str) -> None:
        """Watch the roots not watched yet, then scan them in a thread (watch
        first: nothing written between the two is missed); the scan watches their
        subdirectories. Roots that cannot be watched are tried again every poll_interval."""
        roots = sorted(self._pending_roots)
        self._pending_roots -= {r for r in roots if self._watch_root(r)}
        if self._pending_roots:
            self._schedule_retry()
        # a root that appears after the first scan: its files are news
        late = kind == EXISTS and self._first_scan_done
        self._scan_paths(roots, ARRIVED if late else kind)

    def _schedule_retry(self) -> None:
        # only for roots that do not exist yet: nothing to watch until they do
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self.poll_interval, self._retry_roots)

    def _retry_roots(self) -> None:
        if self._running and self._notifier is not None and self._pending_roots:
            self._watch_pending(EXISTS)

    def _notify(self, _ignored: Any, filepath: FilePath, mask: int) -> None:
        if not self._running:
            return
        path = os.fsdecode(filepath.path)
        if mask & _IN_ISDIR:
            if mask & _IN_MOVED_TO:
                # a whole directory moved in: Twisted only follows created ones
                self._watch_dir(path)
                self._scan_paths([path], ARRIVED)
            return
        if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF):
            if path in self.roots:
                self._pending_roots.add(path)
                self._schedule_retry()
            return
        if mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
            kind = ARRIVED
        elif mask & (_IN_MODIFY | _IN_ATTRIB):
            kind = CHANGED
        elif mask & _IN_CREATE:
            kind = CREATED
        elif mask & (_IN_DELETE | _IN_MOVED_FROM):
            kind = GONE
        else:
            return
        self._emit(path, kind)

    def _overflowed(self) -> None:
        self.counters["overflows"] += 1
        log.warn("inotify queue overflowed; rescanning {n} roots", n=len(self.roots))
        self._full_scan(RESCAN)

    def _lost(self) -> None:
        if not self._running:
            return
        self.counters["restarts"] += 1
        log.warn("inotify connection lost; restarting it")
        self._notifier = None
        try:
            self._start_inotify(RESCAN)
        except Exception as e:  # noqa: BLE001
            log.warn("inotify restart failed ({err}); polling", err=e)
            self._stop_inotify()
            self.mode = "poll"
            self._start_polling()

    # ---- scans -------------------------------------------------------------------

    def rescan(self) -> None:
        """Report every file again as "rescan" (idempotent consumers catch up)."""
        if self.mode == "inotify":
            self._full_scan(RESCAN)

    def _full_scan(self, kind: str) -> None:
        self._scan_paths(self.roots, kind)

    def _scan_paths(self, paths: list[str], kind: str) -> None:
        self.counters["scans"] += 1
        d = self._in_thread(_scan, list(paths))

        def done(found: Scan) -> None:
            if kind == EXISTS:
                self._first_scan_done = True
            if not self._running:
                return
            for path in found.dirs:  # a directory made while its parent was being watched
                self._watch_dir(path)
            self._tell_roots(paths, found.errors)
            for path, _sig in found.files:
                if not self._running:
                    return
                self._emit(path, kind)

        d.addCallbacks(done, self._scan_failed, errbackArgs=(paths,))

    def _scan_failed(self, failure: Failure, paths: list[str]) -> None:
        self.counters["errors"] += 1
        log.failure("scan of {paths} failed", failure, paths=paths)

    # ---- polling (no inotify) ------------------------------------------------------

    def _start_polling(self) -> None:
        self._poller = Periodic(self.reactor, self.poll_interval, self._poll, name="tree poll")
        self._poller.start(now=True)

    def _poll(self) -> Deferred:
        """One scan, compared with the last (the next waits for it to finish)."""
        d = self._in_thread(_scan, list(self.roots))

        def done(found: Scan) -> None:
            first = not self._first_scan_done
            self._first_scan_done = True
            self.counters["scans"] += 1
            if not self._running:
                return
            self._tell_roots(self.roots, found.errors)
            now = dict(found.files)
            old = self._known
            self._known = now
            for path, sig in found.files:
                if not self._running:
                    return
                before = old.get(path)
                if first:
                    self._emit(path, EXISTS)
                elif before is None or before[0] != sig[0]:
                    self._emit(path, ARRIVED)
                elif before != sig and self.modify:
                    self._emit(path, CHANGED)
            if not first:
                for path in old.keys() - now.keys():
                    self._emit(path, GONE)

        return d.addCallback(done)

    def _emit(self, path: str, kind: str) -> None:
        self.counters["events"] += 1
        try:
            self.on_event(path, kind)
        except Exception:  # noqa: BLE001 - a consumer's bug must not stop the watcher
            self.counters["errors"] += 1
            log.failure("event handler failed for {path} ({kind})", path=path, kind=kind)
