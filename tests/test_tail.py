"""File follower on real files: appends, partial lines, rotation, replacement, truncation."""

from __future__ import annotations

import os

import pytest

from nodes.dataflow.summary import Run, RunStart, SummaryParser
from obsmesh.tail import Tail

SEP = "#" * 80


def block(radar: str, minute: int, n_files: int = 2, finished: bool = True) -> str:
    lines = [
        SEP,
        "",
        f"Executing /home/radar/data_flow/borealis/rsync_to_nas on {radar}main207 for {radar}",
        f"20240315 14:{minute:02d}:00 UTC",
    ]
    lines += [
        f"Successfully transferred: /d/20240315.1200.00.{radar}.{i}.rawacf.h5"
        for i in range(n_files)
    ]
    if finished:
        lines += ["", f"Finished rsync_to_nas. End time: 20240315 14:{minute:02d}:30 UTC", ""]
    return "\n".join(lines) + "\n"


def append(path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def replace(path, text: str) -> None:
    """Like rsync: write a temporary, rename it over the path (a new inode)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def test_appends_partial_lines_and_nothing_twice(tmp_path):
    p = tmp_path / "a.log"
    p.write_text("one\ntw")
    f = Tail(str(p))
    assert f.read() == b"one\n"
    assert f.read() == b""
    append(p, "o\nthree")
    assert f.read() == b"two\n"
    append(p, "\n")
    assert f.read() == b"three\n"
    assert f.stats.lines == 3 and f.offset == len(b"one\ntwo\nthree\n")


def test_missing_file_then_created(tmp_path):
    p = tmp_path / "late.log"
    f = Tail(str(p))
    assert f.read() == b"" and f.error is None
    p.write_text("x\n")
    assert f.read() == b"x\n"


def test_rsync_replacement_with_more_content_is_not_read_twice(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("a\nb\n")
    f = Tail(str(p))
    assert f.read() == b"a\nb\n"
    replace(p, "a\nb\nc\n")
    assert f.read() == b"c\n"
    replace(p, "a\nb\nc\n")  # same content, new inode
    assert f.read() == b""
    assert f.stats.replaced == 2 and f.stats.resumed == 2 and f.stats.restarted == 0


def test_rotation_reads_the_rest_of_the_old_file_then_all_of_the_new(tmp_path):
    p = tmp_path / "s.log"
    p.write_text(block("sas", 0))
    f = Tail(str(p))
    first = f.read()
    append(p, block("sas", 10))  # written before the rotation, not read yet
    os.rename(p, tmp_path / "s.log.1")
    # the new file starts exactly like the old one did: its header must not be skipped
    p.write_text(block("sas", 20))
    rest = f.read()
    assert first + rest == (block("sas", 0) + block("sas", 10) + block("sas", 20)).encode()
    assert f.stats.restarted == 1


def test_copytruncate_reads_the_new_content(tmp_path):
    p = tmp_path / "s.log"
    p.write_text(block("sas", 0))
    f = Tail(str(p))
    f.read()
    os.truncate(p, 0)
    assert f.read() == b""
    append(p, block("sas", 0))  # identical bytes written anew: a new run, read again
    assert f.read() == block("sas", 0).encode()


def test_truncate_then_regrow_before_the_next_read(tmp_path):
    p = tmp_path / "s.log"
    p.write_text(block("pgr", 0))
    f = Tail(str(p))
    f.read()
    with open(p, "r+") as fh:  # truncated and written past the old offset before we look
        fh.truncate(0)
        fh.write(block("pgr", 5) + block("pgr", 6))
    assert f.read() == (block("pgr", 5) + block("pgr", 6)).encode()
    assert f.stats.rewritten == 1 and f.stats.restarted == 1


def test_shortened_file_is_read_again_from_its_start(tmp_path):
    # a shorter file that matches what was read cannot tell where it was cut:
    # it is read again (the reader above recognises what it has seen)
    p = tmp_path / "s.log"
    p.write_text("a\nb\nc\n")
    f = Tail(str(p))
    f.read()
    os.truncate(p, 4)  # "a\nb\n"
    assert f.read() == b"a\nb\n"
    append(p, "d\n")
    assert f.read() == b"d\n"
    os.truncate(p, 5)  # "a\nb\nd" : cut in the middle of a line
    assert f.read() == b"a\nb\n"
    append(p, "x\n")
    assert f.read() == b"dx\n"
    assert f.stats.restarted == 2 and f.stats.truncated == 2


def test_cut_then_written_with_lines_like_the_old_ones_loses_nothing(tmp_path):
    # copytruncate while a run goes on: the new file starts like the old one did,
    # and is read when it is still a prefix of the old content
    p = tmp_path / "s.log"
    old = block("sas", 0)
    p.write_text(old + block("pgr", 5))
    f = Tail(str(p))
    f.read()
    os.truncate(p, 0)
    head = "".join(old.splitlines(keepends=True)[:3])  # separator, blank, Executing ... for sas
    append(p, head)
    assert f.read() == head.encode()
    append(p, block("sas", 10)[len(head) :])
    assert f.read() == block("sas", 10)[len(head) :].encode()


def test_deleted_then_recreated(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("a\n")
    f = Tail(str(p))
    f.read()
    append(p, "b\n")
    os.unlink(p)
    assert f.read() == b"b\n"  # the deleted inode is still read to its end
    p.write_text("c\n")
    assert f.read() == b"c\n"


def test_close_and_compact_then_continue(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("a\nb\n")
    f = Tail(str(p))
    f.read()
    f.close()
    f.compact()
    assert not f.is_open
    append(p, "c\n")
    assert f.read() == b"c\n" and f.is_open
    f.close()
    replace(p, "a\nb\nc\nd\n")
    assert f.read() == b"d\n"


def test_start_offset_skips_what_was_accounted_for(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("a\nb\npartial")
    f = Tail(str(p), start_offset=os.path.getsize(p))
    assert f.read() == b""  # moved back to the end of "b\n"; the partial line is not complete
    append(p, "\n")
    assert f.read() == b"partial\n"
    replace(p, "a\nb\npartial\nz\n")
    assert f.read() == b"z\n"


def test_bounded_reads_and_long_lines(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("".join(f"line {i}\n" for i in range(100)))
    f = Tail(str(p), max_chunk=64)
    out = b""
    reads = 0
    while True:
        chunk = f.read()
        out += chunk
        reads += 1
        if not f.more:
            break
    assert out == p.read_bytes() and reads > 5
    p.write_text("y" * 200 + "\n")  # same inode, rewritten: a line longer than max_chunk
    got = b""
    while True:
        got += f.read()
        if not f.more:
            break
    assert got == b"y" * 200 + b"\n"


def test_not_a_regular_file_is_an_error_not_an_exception(tmp_path):
    d = tmp_path / "dir.log"
    d.mkdir()
    f = Tail(str(d))
    assert f.read() == b"" and f.error and f.stats.errors == 1


def test_max_chunk_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        Tail(str(tmp_path / "x"), max_chunk=0)


def test_parser_behind_follower_sees_every_run_once_through_rotations(tmp_path):
    """Blocks written in pieces while the file is replaced, rotated and truncated."""
    p = tmp_path / "20240315.rsync_to_nas_summary.log"
    f = Tail(str(p))
    parser = SummaryParser(str(p))
    records = []

    def pump():
        while True:
            records.extend(parser.feed(f.read()))
            if not f.more:
                break

    written = []
    text = block("sas", 0)
    half = len(text) // 2
    append(p, text[:half])
    pump()  # a block cut in the middle
    append(p, text[half:])
    written.append(("sas", 0))
    pump()
    replace(p, p.read_text() + block("pgr", 1))  # rsync replacement
    written.append(("pgr", 1))
    pump()
    append(p, block("inv", 2))
    written.append(("inv", 2))
    os.rename(p, tmp_path / "old.log")  # rotated before being read
    append(p, block("cly", 3))
    written.append(("cly", 3))
    pump()
    os.truncate(p, 0)  # copytruncate
    pump()
    b = block("rkn", 4)
    append(p, b[:100])
    pump()
    append(p, b[100:])
    written.append(("rkn", 4))
    pump()
    done = [r for r in records if isinstance(r, Run)]
    assert [(r.radar, int((r.start % 3600) // 60)) for r in done] == written
    assert all(r.state == "finished" and r.files_ok == 2 for r in done)
    assert len([r for r in records if isinstance(r, RunStart)]) == len(written)
    assert parser.stats.unknown == 0 and parser.open_count == 0


def test_parser_behind_follower_shortened_inside_an_open_run(tmp_path):
    """A log cut inside a run that goes on: read again from the start, the open run
    ends once, finished (the complete run before it comes twice: SummaryLogs drops it)."""
    p = tmp_path / "20240315.rsync_to_nas_summary.log"
    f = Tail(str(p))
    parser = SummaryParser(str(p))
    records = []

    def pump():
        while True:
            records.extend(parser.feed(f.read()))
            if not f.more:
                break

    done = block("sas", 0)
    running = block("pgr", 1, n_files=3, finished=False)
    append(p, done + running)
    pump()
    cut = len(done) + running.index("Successfully transferred: /d/20240315.1200.00.pgr.1")
    os.truncate(p, cut)  # the last file line of the open pgr run is gone
    append(p, "Successfully transferred: /d/20240315.1200.00.pgr.5.rawacf.h5\n")
    append(p, "\nFinished rsync_to_nas. End time: 20240315 14:01:30 UTC\n")
    pump()
    ended = [r for r in records if isinstance(r, Run)]
    assert [(r.radar, r.state) for r in ended] == [
        ("sas", "finished"),
        ("sas", "finished"),
        ("pgr", "finished"),
    ]
    assert [x.basename.split(".")[4] for x in ended[2].files] == ["0", "5"]
    assert f.stats.restarted == 1 and parser.stats.reread == 1 and parser.stats.died == 0
