"""obsmesh.follow on real files in a temporary directory: reads in threads, lines once."""

from __future__ import annotations

import os
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from obsmesh.follow import Followed, Follower
from obsmesh.watch import inotify_available
from tests.harness import wait_until

MODES = ["poll"] + (["inotify"] if inotify_available() else [])


class Got:
    """What a Follower handed out, per file, and on which threads it was read."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.roots: list[tuple[str, str | None]] = []
        self.read_threads: set[str] = set()
        self.callback_threads: set[str] = set()

    def on_read(self, f: Followed, data: bytes) -> None:
        self.callback_threads.add(threading.current_thread().name)
        self.data[f.path] = self.data.get(f.path, b"") + data

    def transform(self, _path: str, data: bytes) -> bytes:
        self.read_threads.add(threading.current_thread().name)
        return data

    def text(self, path) -> str:
        return self.data.get(str(path), b"").decode()


def append(path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def follower(tmp_path, mode: str, got: Got) -> Follower:
    f = Follower(reactor, got.on_read, transform=got.transform)
    f.watch(
        [str(tmp_path)],
        accept=lambda p: p.endswith(".log"),
        on_root=lambda root, error: got.roots.append((root, error)),
        mode=mode,
        poll_interval=0.05,
    )
    f.start()
    return f


@pytest.mark.parametrize("mode", MODES)
@pytest_twisted.ensureDeferred
async def test_appends_partial_lines_and_new_files(tmp_path, mode):
    a = tmp_path / "a.log"
    a.write_text("one\ntw")
    (tmp_path / "skip.txt").write_text("not followed\n")
    got = Got()
    f = follower(tmp_path, mode, got)
    try:
        await wait_until(lambda: got.text(a) == "one\n", 10, "the existing file")
        assert got.roots == [(str(tmp_path), None)]
        append(a, "o\nthree")  # completes a line, starts another
        await wait_until(lambda: got.text(a) == "one\ntwo\n", 10, "the completed line")
        append(a, "\n")
        await wait_until(lambda: got.text(a) == "one\ntwo\nthree\n", 10, "the last line")
        b = tmp_path / "b.log"
        b.write_text("new file\n")
        await wait_until(lambda: got.text(b) == "new file\n", 10, "a new file")
        assert str(tmp_path / "skip.txt") not in got.data
        # reads and the transform ran in threads, the callbacks on the reactor thread
        assert threading.main_thread().name not in got.read_threads
        assert got.callback_threads == {threading.main_thread().name}
    finally:
        f.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest_twisted.ensureDeferred
async def test_truncation_rotation_and_deletion(tmp_path, mode):
    a = tmp_path / "a.log"
    a.write_text("1\n2\n")
    got = Got()
    f = follower(tmp_path, mode, got)
    try:
        await wait_until(lambda: got.text(a) == "1\n2\n", 10, "the first lines")
        with open(a, "r+") as fh:  # copytruncate: emptied in place, written anew
            fh.truncate(0)
        append(a, "3\n")
        await wait_until(lambda: got.text(a) == "1\n2\n3\n", 10, "the line after truncation")
        append(a, "4\n")  # written before the rotation, not read yet: still read
        os.rename(a, tmp_path / "a.old")
        a.write_text("5\n")
        await wait_until(lambda: got.text(a).endswith("5\n"), 10, "the rotated file's new lines")
        assert got.text(a) == "1\n2\n3\n4\n5\n"
        append(a, "6\n")
        os.unlink(a)  # the deleted inode is still read to its end
        await wait_until(lambda: got.text(a).endswith("6\n"), 10, "the deleted file's last line")
        a.write_text("7\n")
        await wait_until(lambda: got.text(a).endswith("7\n"), 10, "the recreated file")
        assert got.text(a) == "1\n2\n3\n4\n5\n6\n7\n"
    finally:
        f.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest_twisted.ensureDeferred
async def test_missing_directory_is_reported_then_followed(tmp_path, mode):
    root = tmp_path / "later"
    got = Got()
    f = Follower(reactor, got.on_read)
    f.watch(
        [str(root)],
        on_root=lambda r, error: got.roots.append((r, error)),
        mode=mode,
        poll_interval=0.05,
    )
    f.start()
    try:
        await wait_until(lambda: got.roots, 10, "the missing root reported")
        assert "No such file or directory" in (got.roots[0][1] or "")
        root.mkdir()
        (root / "x.log").write_text("x\n")
        await wait_until(lambda: got.text(root / "x.log") == "x\n", 10, "the late root's file")
        assert got.roots[-1] == (str(root), None)
    finally:
        f.stop()


@pytest_twisted.ensureDeferred
async def test_long_files_come_in_chunks_and_a_burst_of_changes_reads_once_more(tmp_path):
    a = tmp_path / "big.log"
    a.write_text("".join(f"line {i}\n" for i in range(2000)))
    reads = []
    got = Got()

    def on_read(followed: Followed, data: bytes) -> None:
        reads.append(len(data))
        got.on_read(followed, data)

    f = Follower(reactor, on_read, max_chunk=1024)
    f.follow(str(a))
    for _ in range(5):  # five events while the first read is in flight
        f.changed(str(a))
    await wait_until(lambda: got.text(a) == a.read_text(), 10, "the whole file")
    assert max(reads) <= 1024 and len(reads) >= a.stat().st_size // 1024
    f.stop()
    followed = f.files[str(a)]
    await wait_until(lambda: not followed.reading, 10, "the last read done")
    assert not followed.tail.is_open  # stopping closes the descriptor


def test_a_file_older_than_old_before_is_read_from_its_end(tmp_path):
    a = tmp_path / "old.log"
    a.write_text("history\n")
    os.utime(a, (1_000_000, 1_000_000))
    f = Follower(reactor, lambda *_: None)
    tail = f.follow(str(a), old_before=2_000_000).tail
    assert tail.read() == b""
    append(a, "news\n")
    assert tail.read() == b"news\n"
    tail.close()
