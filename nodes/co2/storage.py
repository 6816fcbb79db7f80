"""Files and the ping database under one data root. Blocking code: the server
runs every call here in a worker thread (`Workers`), never on the reactor.

Layout of the data root:

    units/<unit>/<path>        uploaded files, exactly as sent
    updates/<unit>/update-X/   firmware updates, placed by the operator only
    pings/pings-NNNN.tsv       alive pings, escaped TSV, rolled at ~100 KiB (pinglog.py)
    spool/                     request bodies while they arrive (nameless temporary files)
    co2.sqlite3                pings and the readings parse progress (pinglog.py)
    tokens.json                per-unit token hashes (see tokens.py)

Paths are walked one name at a time from directory descriptors with
O_NOFOLLOW, so a symbolic link anywhere below the root is refused rather than
followed, and nothing can be reached outside the unit's own directory even if
a validated name were wrong. Bytes are acknowledged only after fsync of the
file, and of the directory when an entry was created.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from nodes.co2 import upload
from nodes.co2.errors import Rejected
from nodes.co2.paths import READINGS_NAME, is_plain_name
from obsmesh.sqlite import DatabaseThread

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the tree must not hang a worker.
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


BLOCK = 64 * 1024  # bytes of a body or a stored file handled at a time


@dataclass(frozen=True)
class PushResult:
    action: upload.Action
    size_before: int
    size_after: int  # bytes [size_before, size_after) were appended when action == "append"


def _not_regular(what: str) -> Rejected:
    return Rejected(409, "not_a_regular_file", f"{what} is a link or special file on the server")


class Storage:
    """Uploads and updates under `root` (blocking; thread-safe for distinct files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for sub in ("units", "updates", "pings", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._units_fd = os.open("units", DIR_FLAGS, dir_fd=self._root_fd)
        self._updates_fd = os.open("updates", DIR_FLAGS, dir_fd=self._root_fd)

    def close(self) -> None:
        for fd in (self._units_fd, self._updates_fd, self._root_fd):
            os.close(fd)

    # -- walking -------------------------------------------------------------

    def _walk(self, base_fd: int, names: tuple[str, ...], create: bool) -> int | None:
        """A descriptor of the directory `names` below `base_fd`; None if missing
        and not `create`. Refuses links and non-directories on the way."""
        fd = os.dup(base_fd)
        try:
            for name in names:
                try:
                    nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                        os.fsync(fd)  # the new entry is durable before anything in it is
                    except FileExistsError:
                        pass
                    nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _not_regular(name) from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _open_file(dir_fd: int, name: str, flags: int) -> int | None:
        try:
            fd = os.open(name, flags | FILE_FLAGS, 0o644, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise _not_regular(name) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _not_regular(name)
        return fd

    # -- uploads ----------------------------------------------------------------

    def push(
        self,
        unit_id: str,
        names: tuple[str, ...],
        offset: int,
        body_fd: int,
        body_len: int,
        max_file_bytes: int,
    ) -> PushResult:
        """Carry out one push-sequential request whose body is the first
        `body_len` bytes of the spool file `body_fd`; durable before it returns.

        The body is compared and copied block by block, never read whole.
        Callers serialise pushes to the same file. Nothing is created unless
        bytes are appended (a refused request leaves no empty file behind).
        """
        dir_fd = self._walk(self._units_fd, (unit_id, *names[:-1]), create=False)
        fd = None
        try:
            if dir_fd is not None:
                fd = self._open_file(dir_fd, names[-1], os.O_RDWR)
            size = os.fstat(fd).st_size if fd is not None else 0
            start, length = upload.overlap(size, offset, body_len)
            matches = _same_bytes(fd, start, body_fd, 0, length) if length else True
            decision = upload.decide(size, offset, body_len, matches, max_file_bytes)
            if decision.action != "append":
                return PushResult(decision.action, size, size)
            if fd is None:
                if dir_fd is None:
                    dir_fd = self._walk(self._units_fd, (unit_id, *names[:-1]), create=True)
                fd = self._create_file(dir_fd, names[-1])
                if os.fstat(fd).st_size != 0:  # appeared meanwhile: callers serialise, so never
                    raise Rejected(409, "conflict", "file appeared during the upload")
            _copy(body_fd, decision.tail_from, fd, decision.append_at, decision.tail_len)
            os.fsync(fd)
            return PushResult("append", size, decision.size_after)
        finally:
            if fd is not None:
                os.close(fd)
            if dir_fd is not None:
                os.close(dir_fd)

    # -- request bodies on their way in ----------------------------------------------

    def open_spool(self) -> int:
        """A nameless temporary file under <root>/spool for one request body; it
        disappears when closed (or when the process dies)."""
        directory = self.root / "spool"
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except (AttributeError, OSError):
            fd = None
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)  # an old kernel or a file system without O_TMPFILE
            fd = None
        if fd is None:
            fd, path = tempfile.mkstemp(dir=directory)
            os.unlink(path)
        return fd

    def spool_write(self, fd: int | None, data: bytes, at: int) -> int:
        """Write a block of a body to its spool file (opened on the first block); the fd."""
        if fd is None:
            fd = self.open_spool()
        _pwrite_all(fd, data, at)
        return fd

    def _create_file(self, dir_fd: int, name: str) -> int:
        try:
            fd = os.open(
                name, os.O_RDWR | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o644, dir_fd=dir_fd
            )
        except FileExistsError:
            fd = self._open_file(dir_fd, name, os.O_RDWR)
            assert fd is not None
            return fd
        os.fsync(dir_fd)
        return fd

    def size(self, unit_id: str, names: tuple[str, ...]) -> int | None:
        dir_fd = self._walk(self._units_fd, (unit_id, *names[:-1]), create=False)
        if dir_fd is None:
            return None
        try:
            fd = self._open_file(dir_fd, names[-1], os.O_RDONLY)
            if fd is None:
                return None
            try:
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def read(self, unit_id: str, names: tuple[str, ...], start: int, length: int) -> bytes:
        """Bytes [start, start+length) of an uploaded file (fewer at its end)."""
        dir_fd = self._walk(self._units_fd, (unit_id, *names[:-1]), create=False)
        if dir_fd is None:
            return b""
        try:
            fd = self._open_file(dir_fd, names[-1], os.O_RDONLY)
            if fd is None:
                return b""
            try:
                return _pread_all(fd, length, start)
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def readings_files(self) -> list[tuple[str, tuple[str, ...], int, float]]:
        """Every stored readings file: (unit id, names, size, mtime)."""
        found = []
        for unit_id in sorted(_plain_entries(self._units_fd, want_dirs=True)):
            dir_fd = self._walk(self._units_fd, (unit_id, "data", "readings"), create=False)
            if dir_fd is None:
                continue
            try:
                for name in sorted(_plain_entries(dir_fd, want_dirs=False)):
                    if READINGS_NAME.fullmatch(name):
                        names = ("data", "readings", name)
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                        found.append((unit_id, names, st.st_size, st.st_mtime))
            finally:
                os.close(dir_fd)
        return found

    # -- firmware updates (read only: placed by the operator, see admin.py) -----

    def get_update(
        self, unit_id: str, names: tuple[str, ...], recursive: bool, max_bytes: int
    ) -> list[str] | bytes | None:
        """A directory listing (list of names, or of relative file paths when
        `recursive`), a file's bytes, or None when missing."""
        try:  # a link on the way is "not found" for a unit: never followed, never served
            dir_fd = self._walk(self._updates_fd, (unit_id, *names[:-1]), create=False)
        except Rejected:
            return None
        if dir_fd is None:
            return None
        if not names:
            return _listing(dir_fd, recursive)
        try:
            try:
                fd = os.open(names[-1], os.O_RDONLY | FILE_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENXIO):
                    return None  # links and special files are never served
                raise
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                return _listing(fd, recursive)
            try:
                if not stat.S_ISREG(mode):
                    return None
                size = os.fstat(fd).st_size
                if size > max_bytes:
                    raise Rejected(413, "update_too_large", "update file exceeds the limit")
                return _pread_all(fd, size, 0)
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)


def _plain_entries(dir_fd: int, want_dirs: bool) -> list[str]:
    """Names in a directory that are plain names and real (non-link) dirs or files."""
    out = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            if not is_plain_name(entry.name) or entry.is_symlink():
                continue
            if (
                entry.is_dir(follow_symlinks=False)
                if want_dirs
                else entry.is_file(follow_symlinks=False)
            ):
                out.append(entry.name)
    return out


def _listing(fd: int, recursive: bool) -> list[str]:
    """Listing of an open directory; closes `fd`."""
    try:
        if not recursive:
            return sorted(_plain_entries(fd, True) + _plain_entries(fd, False))
        out = list(_plain_entries(fd, False))
        for sub in _plain_entries(fd, True):
            sub_fd = os.open(sub, DIR_FLAGS, dir_fd=fd)
            out += [f"{sub}/{p}" for p in _listing(sub_fd, True)]
        return sorted(out)
    finally:
        os.close(fd)


def _pread_all(fd: int | None, length: int, start: int) -> bytes:
    if fd is None or length <= 0:
        return b""
    parts = []
    while length > 0:
        chunk = os.pread(fd, length, start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
        length -= len(chunk)
    return b"".join(parts)


def _same_bytes(a: int | None, a_at: int, b: int, b_at: int, length: int) -> bool:
    """Whether `length` bytes of two files at the given offsets are equal (blockwise)."""
    while length > 0:
        n = min(BLOCK, length)
        left, right = _pread_all(a, n, a_at), _pread_all(b, n, b_at)
        if len(left) != n or left != right:
            return False
        a_at, b_at, length = a_at + n, b_at + n, length - n
    return True


def _copy(src: int, src_at: int, dst: int, dst_at: int, length: int) -> None:
    """Copy `length` bytes between files, a block at a time."""
    while length > 0:
        block = _pread_all(src, min(BLOCK, length), src_at)
        if not block:
            raise OSError(f"spool file ended {length} bytes early")
        _pwrite_all(dst, block, dst_at)
        src_at, dst_at, length = src_at + len(block), dst_at + len(block), length - len(block)


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view = view[n:]
        at += n


class Workers:
    """Threads for blocking storage work: several for files (distinct files in
    parallel; the server serialises each file), and the database's one thread
    (obsmesh.sqlite), which also keeps the ping files in order."""

    def __init__(self, reactor, file_threads: int = 4) -> None:
        self.reactor = reactor
        self.files = ThreadPool(1, file_threads, name="co2-files")
        self.db = DatabaseThread(reactor, "co2-db")
        self._running = False

    def start(self) -> None:
        if not self._running:
            self.files.start()
            self.db.start()
            self._running = True

    async def stop(self, close_db: Callable[[], object] | None = None) -> None:
        """Stop the threads; `close_db` (the database's close) runs on its thread first."""
        if self._running:
            self._running = False
            self.files.stop()
            await self.db.stop(close_db)

    def in_files(self, fn, *args) -> Deferred:
        return threads.deferToThreadPool(self.reactor, self.files, fn, *args)

    def in_db(self, fn, *args) -> Deferred:
        return self.db.run(fn, *args)
