"""Follow one growing file by path: appended bytes, handed out as whole lines, once.

Every call here blocks on the file: run it in a worker thread, one call per
`Tail` at a time (`obsmesh.follow.Follower` does both).

Logs are not only appended to. On the telemetry host a summary log is
replaced by rsync after every run (a new inode holding the same bytes plus
more); logrotate renames it away and starts a new one, or truncates it in
place (copytruncate); a tool shortens it. The follower tells these apart by
content:

- for every line it hands out it keeps a checkpoint: the line's end offset and
  the CRC-32 of the file from byte 0 to there;
- when the path names another inode, when the file is shorter than what was
  read, or when the bytes just before the read offset changed, it compares the
  file with the checkpoints and finds the longest matching prefix `p`:
  * everything read still matches (`p` is the old offset): carry on there
    (an rsync replacement; nothing is read twice);
  * otherwise (rotation, copytruncate, a file shortened or rewritten): read
    it from the start. A partial match is not trusted, because summary logs
    repeat themselves (every block starts with the same separator and
    `Executing` lines): a file cut to `c` and written on before it is read
    looks exactly like one shortened to a longer prefix `p`, and resuming at
    `p` would skip the new lines between. Reading again is safe: the reader
    above (the data-flow node's `ingest.SummaryLogs`) recognises runs it has
    delivered, and the parser a run header it has seen.

Lines already handed out are never taken back. Bytes of the old inode not yet
read are read before switching to the new one. Only complete lines are handed
out (a line longer than `max_chunk` goes out in pieces). Reads are bounded by
`max_chunk`, so a caller can hand each chunk on before the next read (`more`).
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from array import array
from dataclasses import dataclass

TAIL_WINDOW = 256  # bytes before the offset compared on every read (in-place rewrites)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


@dataclass
class TailStats:
    reads: int = 0
    bytes: int = 0
    lines: int = 0
    replaced: int = 0  # the path named a new inode
    truncated: int = 0  # same inode, shorter than the offset
    rewritten: int = 0  # same inode, the bytes before the offset changed
    resumed: int = 0  # after one of the above, everything read still matched
    restarted: int = 0  # ... new content, read from the start
    partial_dropped: int = 0  # an unterminated last line of an inode that was replaced
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Tail:
    """Reads the new complete lines of the file at `path`; see the module docstring.

    `start_offset` skips content the caller has already accounted for: it is
    moved back to the last line end at or before it, and that prefix becomes
    the baseline later changes are compared with. `old_before` (a UNIX time)
    does the same with the whole file when, at its first open, it was last
    modified before then (old news: only what is written from now on counts).
    """

    def __init__(
        self,
        path: str,
        *,
        start_offset: int = 0,
        max_chunk: int = 1 << 18,
        old_before: float | None = None,
    ) -> None:
        if max_chunk < 1:
            raise ValueError("max_chunk must be positive")
        self.path = path
        self.max_chunk = max_chunk
        self.offset = 0  # end of the last byte handed out, in the current inode
        self.more = False  # the last read stopped at max_chunk: call again
        self.error: str | None = None  # the last OS error, if the last read failed
        self.stats = TailStats()
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._crc = 0  # CRC-32 of [0, offset)
        self._ends = array("q")  # line ends handed out ...
        self._crcs = array("L")  # ... and the CRC-32 of [0, end)
        self._tail = b""  # the last TAIL_WINDOW bytes before offset
        self._start_offset = max(0, int(start_offset))
        self._old_before = old_before

    # ---- public --------------------------------------------------------------

    def read(self) -> bytes:
        """New complete lines since the last call (possibly b""). Never raises OSError."""
        self.stats.reads += 1
        self.more = False
        try:
            out = self._read()
            self.error = None
        except OSError as e:
            self.stats.errors += 1
            self.error = f"{e.strerror or e}: {self.path}"
            self._close_fd()
            return b""
        self.stats.bytes += len(out)
        return out

    def close(self) -> None:
        """Release the file descriptor; the state is kept and checked on the next read()."""
        self._close_fd()

    def compact(self) -> None:
        """Keep only the last checkpoint (for an idle file): memory stays small; a
        later change is then either a continuation of all that was read, or new."""
        if len(self._ends) > 1:
            self._ends = array("q", self._ends[-1:])
            self._crcs = array("L", self._crcs[-1:])

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    # ---- reading -------------------------------------------------------------

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _read(self) -> bytes:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # moved away or deleted: what the old inode holds is still ours to read
            return self._drain() if self._fd is not None else b""
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        out = b""
        if self._fd is not None and (st.st_dev, st.st_ino) != self._ident:
            out = self._drain()
            if self._fd is not None:
                return out  # the old inode still had more than max_chunk: finish it first
        if self._fd is None:
            self._open()
        fd = self._fd
        assert fd is not None
        size = os.fstat(fd).st_size
        if size < self.offset:
            self.stats.truncated += 1
            self._resync(size)
        elif (
            self._tail
            and os.pread(fd, len(self._tail), self.offset - len(self._tail)) != self._tail
        ):
            self.stats.rewritten += 1
            self._resync(size)
        return out + self._consume(size)

    def _open(self) -> None:
        fd = os.open(self.path, _OPEN_FLAGS)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        self._fd = fd
        ident = (st.st_dev, st.st_ino)
        if self._ident is None:  # first open
            self._ident = ident
            start = self._start_offset
            if self._old_before is not None and st.st_mtime < self._old_before:
                start = st.st_size
            if start:
                self._adopt_prefix(min(start, st.st_size))
            return
        if ident != self._ident:
            self.stats.replaced += 1
            self._ident = ident
            self._resync(st.st_size)
        # the same inode reopened after close(): _read's size and tail checks decide

    def _drain(self) -> bytes:
        """Read the rest of the inode held open (the path names another inode, or none).

        Returns at most max_chunk bytes per call; the fd stays open until it is
        read to its end and the path names a different inode.
        """
        fd = self._fd
        assert fd is not None
        out = self._consume(None)
        if self.more:
            self.more = True  # the caller comes back for the rest
            return out
        try:
            st = os.stat(self.path)
            replaced = (st.st_dev, st.st_ino) != self._ident
        except FileNotFoundError:
            replaced = False  # deleted or moved away: its writer may still append to it
        if replaced:
            if os.fstat(fd).st_size > self.offset:
                self.stats.partial_dropped += 1
            self._close_fd()
        return out

    def _consume(self, size: int | None) -> bytes:
        """Read whole lines from offset, at most max_chunk bytes, and checkpoint them."""
        fd = self._fd
        assert fd is not None
        if size is None:
            size = os.fstat(fd).st_size
        if size <= self.offset:
            return b""
        want = min(self.max_chunk, size - self.offset)
        data = os.pread(fd, want, self.offset)
        nl = data.rfind(b"\n")
        if nl < 0:
            if len(data) < self.max_chunk:
                return b""  # a partial line: wait for its newline
            take = data  # a line longer than max_chunk: out it goes in pieces
        else:
            take = data[: nl + 1]
        self._record(take)
        self.more = self.offset < size and len(data) == want
        return take

    def _record(self, take: bytes) -> None:
        crc, pos, start = self._crc, self.offset, 0
        ends, crcs, find = self._ends, self._crcs, take.find
        while (nl := find(b"\n", start)) >= 0:
            crc = zlib.crc32(take[start : nl + 1], crc)
            ends.append(pos + nl + 1)
            crcs.append(crc)
            start = nl + 1
            self.stats.lines += 1
        if start < len(take):
            crc = zlib.crc32(take[start:], crc)
        self.offset = pos + len(take)
        self._crc = crc
        self._tail = (self._tail + take)[-TAIL_WINDOW:]

    # ---- resynchronising -----------------------------------------------------

    def _adopt_prefix(self, upto: int) -> None:
        """Take [0, last newline <= upto) as already handed out (start_offset)."""
        fd = self._fd
        assert fd is not None
        crc = pos = end = end_crc = 0
        while pos < upto:
            block = os.pread(fd, min(1 << 20, upto - pos), pos)
            if not block:
                break
            nl = block.rfind(b"\n")
            if nl >= 0:
                end, end_crc = pos + nl + 1, zlib.crc32(block[: nl + 1], crc)
            crc = zlib.crc32(block, crc)
            pos += len(block)
        if end:
            self._ends, self._crcs = array("q", [end]), array("L", [end_crc])
            self._position(end, end_crc)

    def _resync(self, size: int) -> None:
        """The file changed other than by appending: decide where reading continues."""
        fd = self._fd
        assert fd is not None
        old = self.offset
        ends, crcs = self._ends, self._crcs
        good, crc, pos = -1, 0, 0  # the last checkpoint the file still matches
        for i in range(len(ends)):
            end = ends[i]
            if end > size:
                break
            while pos < end:
                block = os.pread(fd, min(1 << 20, end - pos), pos)
                if not block:
                    break
                crc = zlib.crc32(block, crc)
                pos += len(block)
            if pos != end or crc != crcs[i]:
                break
            good = i
        p = ends[good] if good >= 0 else 0
        if p == old and good >= 0:
            self.stats.resumed += 1  # all that was read is still there
            self._position(p, crcs[good])
            return
        if p == old:
            return  # nothing had been read: nothing to keep
        self.stats.restarted += 1
        self._ends, self._crcs = array("q"), array("L")
        self.offset, self._crc, self._tail = 0, 0, b""

    def _position(self, end: int, crc: int) -> None:
        fd = self._fd
        assert fd is not None
        self.offset, self._crc = end, crc
        lo = max(0, end - TAIL_WINDOW)
        self._tail = os.pread(fd, end - lo, lo)
