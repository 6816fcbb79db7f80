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
scans run in a thread: a large data tree must not stall the reactor.

Twisted's INotify has two sharp edges handled here: it drops the whole inotify
connection when any watched directory is deleted, and it ignores the kernel's
queue-overflow event. `_Notifier` keeps the connection and turns an overflow
into a full rescan; a lost connection is rebuilt and rescanned.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable

from twisted.internet import task, threads
from twisted.logger import Logger
from twisted.python.filepath import FilePath

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
_IN_ISDIR = 0x40000000

EventCallback = Callable[[str, str], None]


def inotify_available() -> bool:
    return _inotify_mod is not None


def _scan(roots: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """Every regular file under the roots with (inode, size, mtime_ns), sorted by path.

    Runs in a thread. Unreadable directories and vanishing files are skipped.
    """
    found: list[tuple[str, tuple[int, int, int]]] = []
    stack = [r for r in roots if os.path.isdir(r)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    found.append((e.path, (st.st_ino, st.st_size, st.st_mtime_ns)))
            except OSError:
                continue
    found.sort()
    return found


if _inotify_mod is not None:

    class _Notifier(_inotify_mod.INotify):
        """INotify that survives a deleted subdirectory and reports queue overflows."""

        def __init__(
            self, reactor, on_overflow: Callable[[], None], on_lost: Callable[[], None]
        ) -> None:
            super().__init__(reactor)
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
    """

    def __init__(
        self,
        roots: Iterable[str],
        on_event: EventCallback,
        *,
        reactor=None,
        mode: str = "auto",
        modify: bool = True,
        poll_interval: float = 1.0,
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
        self.reactor = reactor
        self.modify = modify
        self.poll_interval = poll_interval
        self.mode = "inotify" if mode in ("auto", "inotify") and inotify_available() else "poll"
        self.counters = {"events": 0, "overflows": 0, "restarts": 0, "scans": 0, "errors": 0}
        self._notifier = None
        self._pending_roots: set[str] = set()  # roots that do not exist (yet)
        self._retry = None
        self._poller: task.LoopingCall | None = None
        self._known: dict[str, tuple[int, int, int]] = {}  # poll mode: the last scan
        self._running = False
        self._scanning = False
        self._scan_again = False
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
            self._poller = task.LoopingCall(self._poll)
            self._poller.clock = self.reactor
            self._poller.start(self.poll_interval, now=True)
        else:
            self._full_scan(EXISTS)

    def stop(self) -> None:
        self._running = False
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._stop_inotify()

    # ---- inotify ---------------------------------------------------------------

    def _start_inotify(self) -> None:
        self._notifier = _Notifier(self.reactor, self._overflowed, self._lost)
        self._notifier.startReading()
        for root in self.roots:
            self._watch_root(root)

    def _stop_inotify(self) -> None:
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None

    def _watch_root(self, root: str) -> None:
        if not os.path.isdir(root):
            self._pending_roots.add(root)
            self._schedule_retry()
            return
        self._pending_roots.discard(root)
        assert self._notifier is not None
        self._notifier.watch(
            FilePath(root), mask=self.mask, autoAdd=True, callbacks=[self._notify], recursive=True
        )

    def _schedule_retry(self) -> None:
        # only for roots that do not exist yet: nothing to watch until they do
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self.poll_interval, self._retry_roots)

    def _retry_roots(self) -> None:
        if not self._running or self._notifier is None:
            return
        appeared = [r for r in sorted(self._pending_roots) if os.path.isdir(r)]
        for root in appeared:
            try:
                self._watch_root(root)
            except Exception as e:  # noqa: BLE001
                self.counters["errors"] += 1
                log.warn("cannot watch {root}: {err}", root=root, err=e)
        if appeared:
            self._scan_paths(appeared, ARRIVED if self._first_scan_done else EXISTS)
        if self._pending_roots:
            self._schedule_retry()

    def _notify(self, _ignored, filepath: FilePath, mask: int) -> None:
        if not self._running:
            return
        path = os.fsdecode(filepath.path)
        if mask & _IN_ISDIR:
            if mask & _IN_MOVED_TO and self._notifier is not None:
                # a whole directory moved in: Twisted only follows created ones
                try:
                    self._notifier.watch(
                        filepath,
                        mask=self.mask,
                        autoAdd=True,
                        callbacks=[self._notify],
                        recursive=True,
                    )
                except Exception as e:  # noqa: BLE001
                    self.counters["errors"] += 1
                    log.warn("cannot watch {path}: {err}", path=path, err=e)
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
            self._start_inotify()
        except Exception as e:  # noqa: BLE001
            log.warn("inotify restart failed ({err}); polling", err=e)
            self._stop_inotify()
            self.mode = "poll"
            self._poller = task.LoopingCall(self._poll)
            self._poller.clock = self.reactor
            self._poller.start(self.poll_interval, now=True)
            return
        self._full_scan(RESCAN)

    # ---- scans -------------------------------------------------------------------

    def rescan(self) -> None:
        """Report every file again as "rescan" (idempotent consumers catch up)."""
        if self.mode == "inotify":
            self._full_scan(RESCAN)

    def _full_scan(self, kind: str) -> None:
        self._scan_paths(self.roots, kind)

    def _scan_paths(self, paths: list[str], kind: str) -> None:
        self.counters["scans"] += 1
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _scan, list(paths)
        )

        def done(found: list[tuple[str, tuple[int, int, int]]]) -> None:
            if kind == EXISTS:
                self._first_scan_done = True
            for path, _sig in found:
                if not self._running:
                    return
                self._emit(path, kind)

        def failed(f) -> None:
            self.counters["errors"] += 1
            log.failure("scan of {paths} failed", f, paths=paths)

        d.addCallbacks(done, failed)

    # ---- polling (no inotify) ------------------------------------------------------

    def _poll(self):
        if self._scanning:
            return None
        self._scanning = True
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _scan, list(self.roots)
        )

        def done(found: list[tuple[str, tuple[int, int, int]]]) -> None:
            first = not self._first_scan_done
            self._first_scan_done = True
            self.counters["scans"] += 1
            now = dict(found)
            old = self._known
            self._known = now
            for path, sig in found:
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

        def finally_(result):
            self._scanning = False
            return result

        d.addCallback(done)
        d.addErrback(lambda f: log.failure("poll scan failed", f))
        d.addBoth(finally_)
        return None  # never make the LoopingCall wait: a slow scan just skips a tick

    def _emit(self, path: str, kind: str) -> None:
        self.counters["events"] += 1
        try:
            self.on_event(path, kind)
        except Exception:  # noqa: BLE001 - a consumer's bug must not stop the watcher
            self.counters["errors"] += 1
            log.failure("event handler failed for {path} ({kind})", path=path, kind=kind)
