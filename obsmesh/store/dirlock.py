"""One process per store directory: an exclusive `flock` on `<dir>/LOCK`.

The kernel drops the lock when the process ends, however it ends (SIGKILL
included), so a stale lock never needs cleaning. The holder writes its pid
into the file so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os

from obsmesh.store.base import StoreError


class StoreLocked(StoreError):
    """Another process has the store directory open."""


class DirLock:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "LOCK")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked; works on a read-only directory
        too when the lock file exists already (reads are still served)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            writable = True
        except OSError:
            fd = os.open(self.path, os.O_RDONLY)  # read-only: lock without writing the pid
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise StoreLocked(
                f"store directory {os.path.dirname(self.path)} is taken by another process{who}: "
                "one process per store directory (give this node another name or store_dir)"
            ) from None
        if writable:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the pid is a courtesy; the lock holds without it
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
