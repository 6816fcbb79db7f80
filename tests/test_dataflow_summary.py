"""Summary-log parser: realistic blocks of every script, cut blocks, interleaving, fuzz."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.dataflow.names import (
    parse_data_name,
    parse_flag_name,
    parse_log_name,
    stage_of,
)
from nodes.dataflow.summary import (
    FAILED,
    INFO,
    OK,
    FileLine,
    Run,
    RunStart,
    SummaryParser,
    parse_text,
    parse_utc_line,
)

SEP = "#" * 80


def utc(y, mo, d, h=0, mi=0, s=0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, s)))


def runs(records) -> list[Run]:
    return [r for r in records if isinstance(r, Run)]


# ---- realistic blocks, as the scripts print them (`printf ... | tee --append`) ----

RSYNC_TO_NAS = f"""{SEP}

Executing /home/radar/data_flow/borealis/rsync_to_nas on sasmain207 for sas
20240315 14:00:07 UTC
data_flow: On branch main, last commit: \t\t9b47e20 2024-02-12 15:04:11 -0600
Transferring from: /data/borealis_data/
Transferring to NAS: /borealis_nfs/borealis_data

Successfully transferred: /data/borealis_data/20240315/20240315.1200.00.sas.0.antennas_iq.h5
Successfully transferred: /data/borealis_data/20240315/20240315.1200.00.sas.0.rawacf.h5
check_timestamp failed: /data/borealis_data/20240315/20240315.1200.00.sas.1.rawacf.h5
Successfully transferred: /data/borealis_data/20240315/20240315.1200.00.sas.1.rawacf.h5
Transfer failed: /data/borealis_data/20240315/20240315.1200.00.sas.1.antennas_iq.h5

Finished rsync_to_nas. End time: 20240315 14:01:12 UTC

{SEP}

Executing /home/radar/data_flow/borealis/rsync_to_nas on sasmain207 for sas
20240315 16:00:05 UTC
data_flow: On branch main, last commit: \t\t9b47e20 2024-02-12 15:04:11 -0600
Transferring from: /data/borealis_data/
Transferring to NAS: /borealis_nfs/borealis_data

No files to be transferred.

Finished rsync_to_nas. End time: 20240315 16:00:06 UTC

"""

PLOT_ANTENNAS_IQ = f"""{SEP}

Executing /home/transfer/data_flow/site-linux/plot_antennas_iq on sasdist205 for sas
20240315 14:01:20 UTC
data_flow: On branch main, last commit: \t\t9b47e20 2024-02-12 15:04:11 -0600
IQ plot directory: /home/transfer/logs/daily_plots/

Successfully converted: /borealis_nfs/borealis_data/antennas_iq_array/20240315.1200.00.sas.0.antennas_iq.h5
Failed to generate iq plot from: /borealis_nfs/borealis_data/antennas_iq_array/20240315.1200.00.sas.1.antennas_iq.h5
Resizing file: /borealis_nfs/borealis_data/antennas_iq_array/20240315.1200.00.sas.1.antennas_iq.h5
Resizing file: /borealis_nfs/borealis_data/antennas_iq_array/20240315.1200.00.sas.1.antennas_iq.h5

Finished plot_antennas_iq. End time: 20240315 14:02:40 UTC

"""

RSYNC_TO_CAMPUS = f"""{SEP}

Executing /home/transfer/data_flow/site-linux/rsync_to_campus on sasdist205 for sas
20240315 14:02:45 UTC
data_flow: On branch main, last commit: \t\t9b47e20 2024-02-12 15:04:11 -0600
pyDARNio: On branch develop, last commit: \t\t4c1d2e3 2023-11-28 09:41:55 -0600
Transferring from: /borealis_nfs/borealis_data
Transferring to: dataman@sdc-serv.usask.ca:/sddata/sas_data/

ssh: connect to host sdc-serv.usask.ca port 22: Connection timed out
Transfer failed: /borealis_nfs/borealis_data/rawacf_dmap/20240315.1200.00.sas.a.rawacf.bz2
Transfer failed: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.sas.0.rawacf.h5

Finished rsync_to_campus. End time: 20240315 14:06:02 UTC

"""

CONVERT_ON_CAMPUS = f"""{SEP}

Executing /home/dataman/data_flow/campus/convert_on_campus on sdc-serv for cly
20240315 14:07:00 UTC
data_flow: On branch main, last commit: \
            9b47e20 2024-02-12 15:04:11 -0600
pyDARNio: , last commit: \

Successfully converted: /sddata/cly_holding_dir/20240315.1200.00.cly.0.rawacf.h5
File failed to convert: /sddata/cly_holding_dir/20240315.1200.00.cly.1.rawacf.h5

Finished convert_on_campus. End time: 20240315 14:08:30 UTC

{SEP}

Executing /home/dataman/data_flow/campus/convert_on_campus on sdc-serv for sas
20240315 14:07:01 UTC

Not converting files for sas.

Finished convert_on_campus. End time: 20240315 14:07:01 UTC

""".replace("\\\n", "")

DISTRIBUTE = f"""{SEP}

Executing distribute_borealis_data on sdc-serv for sas
20240315 14:10:00 UTC
data_flow: On branch main, last commit: \t\t9b47e20 2024-02-12 15:04:11 -0600
pyDARNio: On branch main, last commit: \t\t4c1d2e3 2023-11-28 09:41:55 -0600
Distributing from: /sddata/sas_data
Distributing to:\x20
        \tNAS: /data/borealis_site_data
        \tMirror: /data/holding/globus
        \tInstitutions: /home/bas/outgoing/sas\t/home/vtsd/outgoing/sas

File distribution successful: /sddata/sas_data/20240315.1200.00.sas.a.rawacf.bz2
DMAP integrity test failed:\x20
DMAP file failed bzip2 test: /sddata/sas_data/20240315.1000.00.sas.a.rawacf.bz2
File distribution failed: /sddata/sas_data/20240315.0800.00.sas.a.rawacf.bz2
File distribution successful: /sddata/sas_data/20240315.1200.00.sas.0.rawacf.h5
Array file failed h5stat test: /sddata/sas_data/20240315.1200.00.sas.1.rawacf.h5

Finished distribute_borealis_data. End time: 20240315 14:11:00 UTC

"""

ARCHIVE = f"""{SEP}

Executing /home/dataman/data_flow/campus/archive_iq_plots on sdc-serv for sas
20240315 14:12:00 UTC
Archiving from: /sddata/antennas_iq_plots/sas_iq_plots/
Archiving to: /sddata/antennas_iq_plots/sas_iq_plots/archive/

Successfully archived: /sddata/antennas_iq_plots/sas_iq_plots/20240314.1000.00.sas.0.antennas_iq.antenna_0_0_70.jpg
Successfully archived: /sddata/antennas_iq_plots/sas_iq_plots/20240314.1000.00.sas.0.antennas_iq.antenna_1_0_70.jpg

Finished archive_iq_plots. End time: 20240315 14:12:01 UTC

"""


def test_rsync_to_nas_blocks():
    records, parser = parse_text(RSYNC_TO_NAS, "nas.log")
    first, second = runs(records)
    assert (first.script, first.host, first.radar) == ("rsync_to_nas", "sasmain207", "sas")
    assert first.start == utc(2024, 3, 15, 14, 0, 7) and first.end == utc(2024, 3, 15, 14, 1, 12)
    assert first.duration == 65.0 and first.state == "finished"
    assert (first.files_ok, first.files_failed) == (3, 2)
    assert first.git[0].repo == "data_flow" and first.git[0].branch == "main"
    assert first.git[0].commit == "9b47e20" and first.git[0].date == "2024-02-12 15:04:11 -0600"
    assert first.source_dir == "/data/borealis_data/"
    assert first.destination == "/borealis_nfs/borealis_data"
    assert [f.name.kind for f in first.files] == [
        "antennas_iq",
        "rawacf",
        "rawacf",
        "rawacf",
        "antennas_iq",
    ]
    assert first.files[0].name.time == utc(2024, 3, 15, 12)
    assert not first.nothing_to_do
    assert second.nothing_to_do and second.nothing == ("No files to be transferred.",)
    assert (second.files_ok, second.files_failed) == (0, 0)
    assert parser.stats.unknown == 0 and parser.stats.malformed == 0 and parser.open_count == 0
    # one RunStart per block, file lines as they come, in order
    kinds = [type(r).__name__ for r in records]
    assert kinds == ["RunStart", *["FileLine"] * 5, "Run", "RunStart", "Run"]


def test_plot_antennas_iq_block():
    (run,) = runs(parse_text(PLOT_ANTENNAS_IQ)[0])
    assert run.script == "plot_antennas_iq" and run.host == "sasdist205"
    assert (run.files_ok, run.files_failed, run.files_info) == (1, 1, 2)
    assert [f.outcome for f in run.files] == [OK, FAILED, INFO, INFO]
    assert run.destination == "/home/transfer/logs/daily_plots/"


def test_rsync_to_campus_connection_failure():
    (run,) = runs(parse_text(RSYNC_TO_CAMPUS)[0])
    assert run.connection_errors == (
        "ssh: connect to host sdc-serv.usask.ca port 22: Connection timed out",
    )
    assert (run.files_ok, run.files_failed) == (0, 2)
    assert [g.repo for g in run.git] == ["data_flow", "pyDARNio"] and run.git[1].branch == "develop"
    assert run.destination == "dataman@sdc-serv.usask.ca:/sddata/sas_data/"
    assert run.files[0].name.kind == "rawacf" and run.files[0].name.slice == "a"
    assert run.files[0].name.ext == "bz2"
    assert run.unknown_count == 0


def test_convert_on_campus_both_kinds_of_site():
    records, parser = parse_text(CONVERT_ON_CAMPUS)
    cly, sas = runs(records)
    assert cly.radar == "cly" and (cly.files_ok, cly.files_failed) == (1, 1)
    # a failed `git status` leaves an empty branch and commit; the line still parses
    assert cly.git[1].repo == "pyDARNio" and cly.git[1].branch is None and cly.git[1].commit is None
    assert cly.git[0].commit == "9b47e20"
    assert sas.nothing_to_do and sas.nothing == ("Not converting files for sas.",)
    assert sas.duration == 0.0
    assert parser.stats.unknown == 0


def test_distribute_block_with_empty_path_and_destinations():
    (run,) = runs(parse_text(DISTRIBUTE)[0])
    assert run.script == "distribute_borealis_data"  # printed without a directory
    assert (run.files_ok, run.files_failed) == (2, 4)
    empty = [f for f in run.files if f.status == "DMAP integrity test failed"]
    assert len(empty) == 1 and empty[0].path == "" and empty[0].name is None
    labels = [label for label, _ in run.context]
    assert labels == ["Distributing from", "Distributing to", "NAS", "Mirror", "Institutions"]
    assert dict(run.context)["Institutions"] == "/home/bas/outgoing/sas\t/home/vtsd/outgoing/sas"
    assert run.source_dir == "/sddata/sas_data"
    assert run.destination == "/data/borealis_site_data"  # the first non-empty one
    assert run.unknown_count == 0


def test_archive_iq_plots_block():
    (run,) = runs(parse_text(ARCHIVE)[0])
    assert run.script == "archive_iq_plots" and run.files_ok == 2
    assert run.files[0].name.kind == "iq_plot" and run.files[0].name.ext == "antenna_0_0_70.jpg"
    assert run.files[0].name.time == utc(2024, 3, 14, 10)


def test_all_scripts_in_one_stream_and_chunking_does_not_matter():
    text = (
        RSYNC_TO_NAS + PLOT_ANTENNAS_IQ + RSYNC_TO_CAMPUS + CONVERT_ON_CAMPUS + DISTRIBUTE + ARCHIVE
    )
    whole, _ = parse_text(text)
    data = text.encode()
    for size in (1, 7, 80, 4096):
        p = SummaryParser()
        pieces = []
        for i in range(0, len(data), size):
            pieces += p.feed(data[i : i + size])
        pieces += p.flush()
        assert pieces == whole, size
    assert [r.script for r in runs(whole)] == [
        "rsync_to_nas",
        "rsync_to_nas",
        "plot_antennas_iq",
        "rsync_to_campus",
        "convert_on_campus",
        "convert_on_campus",
        "distribute_borealis_data",
        "archive_iq_plots",
    ]


def test_block_cut_in_the_middle_waits_then_completes():
    data = RSYNC_TO_CAMPUS.encode()
    cut = data.index(b"Transfer failed") + 10  # in the middle of a file line
    p = SummaryParser("campus.log")
    first = p.feed(data[:cut], now=1000.0)
    assert [type(r) for r in first] == [RunStart]  # the partial file line is held back
    (running,) = p.running()
    assert running.state == "running" and running.files_failed == 0 and running.end is None
    assert running.connection_errors  # what is in so far is visible
    rest = p.feed(data[cut:], now=1001.0)
    (run,) = runs(rest)
    assert run.state == "finished" and run.files_failed == 2
    assert [f.status for f in rest if isinstance(f, FileLine)] == [
        "Transfer failed",
        "Transfer failed",
    ]


def test_unfinished_block_expires_as_died_once():
    text = RSYNC_TO_NAS.split("Transfer failed")[0]  # the run stopped writing here
    p = SummaryParser()
    assert runs(p.feed(text.encode(), now=utc(2024, 3, 15, 16, 30))) == []
    start = utc(2024, 3, 15, 14, 0, 7)
    assert p.expire(start + 3600, limit=7200) == []  # still within the limit: a run going on
    (died,) = p.expire(start + 7201, limit=7200)
    assert died.state == "died" and died.reason == "expired" and died.end is None
    assert (died.files_ok, died.files_failed) == (3, 1) and died.duration is None
    assert p.expire(start + 99999, limit=7200) == [] and p.open_count == 0


def test_block_without_time_line_expires_from_when_it_was_seen():
    p = SummaryParser()
    p.feed(f"{SEP}\n\nExecuting /x/rsync_to_nas on h for pgr\n".encode(), now=500.0)
    assert p.expire(600.0, limit=200) == []
    (died,) = p.expire(701.0, limit=200)
    assert died.start is None and died.seen_at == 500.0 and died.radar == "pgr"


def test_restart_of_same_script_and_radar_ends_the_old_run_as_died():
    head = RSYNC_TO_NAS.split(
        "Successfully transferred: /data/borealis_data/20240315/20240315.1200.00.sas.0.rawacf"
    )[0]
    second_block = RSYNC_TO_NAS[RSYNC_TO_NAS.index(SEP, 10) :]
    records, p = parse_text(head + second_block)
    died, finished = runs(records)
    assert died.state == "died" and died.reason == "superseded" and died.files_ok == 1
    assert finished.state == "finished" and finished.nothing_to_do
    assert p.stats.died == 1 and p.stats.finished == 1


def test_header_of_an_open_run_read_again_continues_it_never_a_died_run():
    # a rewritten log is read again from its start while a run is still open
    first = RSYNC_TO_NAS[: RSYNC_TO_NAS.index("\nFinished")]
    head = first[: first.index("check_timestamp")]
    p = SummaryParser()
    out = p.feed(head.encode())
    assert [type(r) for r in out].count(RunStart) == 1 and not runs(out)
    out = p.feed(head.encode())  # the same header and lines again: no RunStart, no died run
    assert out == [r for r in out if isinstance(r, FileLine)]
    out = p.feed(RSYNC_TO_NAS[len(head) :].encode())
    finished = runs(out)
    assert [r.state for r in finished] == ["finished", "finished"]
    assert finished[0].files_ok == 3 and finished[0].files_failed == 2  # each file once
    assert p.stats.reread == 1 and p.stats.died == 0 and p.stats.reread_file_lines == 2


def test_new_header_of_an_open_run_ends_it_as_died_at_its_time_line():
    first = RSYNC_TO_NAS[: RSYNC_TO_NAS.index("check_timestamp")]
    p = SummaryParser()
    p.feed(first.encode())
    again = first.replace("20240315 14:00:07 UTC", "20240315 16:00:07 UTC")
    header, _, rest = again.partition("20240315 16:00:07 UTC\n")
    assert runs(p.feed(header.encode())) == []  # undecided until the time line
    out = p.feed(("20240315 16:00:07 UTC\n" + rest).encode())
    (died,) = runs(out)
    assert died.state == "died" and died.reason == "superseded" and died.files_ok == 2
    assert [r.start for r in out if isinstance(r, RunStart)] == [utc(2024, 3, 15, 16, 0, 7)]
    # a different host is another run, even at the same second
    p = SummaryParser()
    p.feed(first.encode())
    (died,) = runs(p.feed(first.replace("on sasmain207", "on sasbore206").encode()))
    assert died.host == "sasmain207" and p.stats.reread == 0


def test_interleaved_radars_are_kept_apart():
    # two runs of one script appending to the same file at the same time
    lines = [
        SEP,
        "",
        "Executing /home/transfer/data_flow/site-linux/rsync_to_campus on sasdist205 for sas",
        "20240315 14:02:45 UTC",
        SEP,
        "",
        "Executing /home/transfer/data_flow/site-linux/rsync_to_campus on pgrdist205 for pgr",
        "20240315 14:02:46 UTC",
        "Successfully transferred: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.sas.0.rawacf.h5",
        "Successfully transferred: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.pgr.0.rawacf.h5",
        "Transfer failed: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.sas.1.rawacf.h5",
        "Successfully transferred: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.pgr.1.rawacf.h5",
        "Transfer failed: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.pgr.2.rawacf.h5",
        "Finished rsync_to_campus. End time: 20240315 14:03:00 UTC",
        "Successfully transferred: /borealis_nfs/borealis_data/rawacf_array/20240315.1200.00.sas.2.rawacf.h5",
        "Finished rsync_to_campus. End time: 20240315 14:03:10 UTC",
    ]
    records, p = parse_text("\n".join(lines) + "\n")
    starts = [r for r in records if isinstance(r, RunStart)]
    assert [(s.radar, s.start) for s in starts] == [
        ("sas", utc(2024, 3, 15, 14, 2, 45)),
        ("pgr", utc(2024, 3, 15, 14, 2, 46)),
    ]
    by_radar = {r.radar: r for r in runs(records)}
    assert (by_radar["sas"].files_ok, by_radar["sas"].files_failed) == (2, 1)
    assert (by_radar["pgr"].files_ok, by_radar["pgr"].files_failed) == (2, 1)
    assert all(f.name.radar == "sas" for f in by_radar["sas"].files)
    assert all(f.name.radar == "pgr" for f in by_radar["pgr"].files)
    # a Finished line goes to the run of that script that wrote last
    assert by_radar["pgr"].end == utc(2024, 3, 15, 14, 3, 0)
    assert by_radar["sas"].end == utc(2024, 3, 15, 14, 3, 10)
    assert p.open_count == 0


def test_interleaved_radar_blocks_from_the_simulator_layout():
    # blocks of several radars, one after another in one file (the shared summary file)
    blocks = []
    for i, rad in enumerate(("sas", "pgr", "inv", "cly", "rkn")):
        blocks.append(
            f"{SEP}\n\nExecuting /home/radar/data_flow/borealis/rsync_to_nas on {rad}main207 for {rad}\n"
            f"20240315 14:0{i}:00 UTC\n"
            f"Successfully transferred: /data/borealis_data/20240315/20240315.1200.00.{rad}.0.rawacf.h5\n"
            f"\nFinished rsync_to_nas. End time: 20240315 14:0{i}:30 UTC\n\n"
        )
    got = runs(parse_text("".join(blocks))[0])
    assert [(r.radar, r.files_ok, r.duration) for r in got] == [
        (rad, 1, 30.0) for rad in ("sas", "pgr", "inv", "cly", "rkn")
    ]


def test_year_boundary_run_and_file_names():
    # summary/2023/12/20240101.rsync_to_nas_summary.log: the directory is local time, the name UTC
    name = parse_log_name("20240101.rsync_to_nas_summary.log")
    assert name is not None and name.day == utc(2024, 1, 1) and name.script == "rsync_to_nas"
    text = (
        f"{SEP}\n\nExecuting /home/radar/data_flow/borealis/rsync_to_nas on sasmain207 for sas\n"
        "20231231 23:59:50 UTC\n"
        "Successfully transferred: /data/borealis_data/20231231/20231231.2200.00.sas.0.rawacf.h5\n"
        "Successfully transferred: /data/borealis_data/20221231/20221231.2200.00.sas.0.rawacf.h5\n"
        "\nFinished rsync_to_nas. End time: 20240101 00:00:20 UTC\n\n"
    )
    (run,) = runs(parse_text(text)[0])
    assert run.start == utc(2023, 12, 31, 23, 59, 50) and run.end == utc(2024, 1, 1, 0, 0, 20)
    assert run.duration == 30.0
    assert run.files[0].name.time == utc(2023, 12, 31, 22)
    assert run.files[1].name.time == utc(2022, 12, 31, 22)


def test_unknown_lines_are_kept_and_counted_never_fatal():
    text = RSYNC_TO_NAS.replace(
        "Transfer failed:", "rsync warning: some files vanished (code 24)\n\x00\x00Transfer failed:"
    )
    text = "garbage before any block\n" + text + "trailing junk\n"
    records, p = parse_text(text)
    first = runs(records)[0]
    assert first.unknown == ("rsync warning: some files vanished (code 24)",)
    assert first.unknown_count == 1 and first.files_failed == 2  # NULs stripped, line still parsed
    assert p.stats.unknown == 3 and p.stats.nul == 1
    assert list(p.orphans) == ["garbage before any block", "trailing junk"]


def test_malformed_known_forms_are_unknown_lines():
    text = (
        f"{SEP}\n\nExecuting /x/rsync_to_nas on h for sas\n"
        "20240230 10:00:00 UTC\n"  # no such day
        "20240315 25:00:00 UTC\n"  # no such hour
        "Finished rsync_to_nas. End time: garbage\n"
        "Executing nonsense\n"
    )
    records, p = parse_text(text)
    assert not runs(records) and p.open_count == 1
    (running,) = p.running()
    assert running.start is None and running.unknown_count == 4
    assert p.stats.malformed == 2  # the Finished and Executing lines


def test_crlf_and_missing_radar():
    text = (
        f"{SEP}\r\n\r\nExecuting /x/rsync_to_nas.sh on  for \r\n20240315 10:00:00 UTC\r\n"
        "Finished rsync_to_nas. End time: 20240315 10:00:01 UTC\r\n"
    )
    (run,) = runs(parse_text(text)[0])
    assert run.script == "rsync_to_nas" and run.radar == "unknown" and run.host == ""
    assert run.duration == 1.0


def test_over_long_line_is_cut_and_parsing_continues():
    p = SummaryParser(max_line=1000)
    out = p.feed(b"x" * 5000)
    out += p.feed(b"y" * 5000 + b"\n" + RSYNC_TO_NAS.encode())
    assert p.stats.too_long == 1 and len(runs(out)) == 2
    assert p.stats.unknown == 1  # the cut line, once


def test_feed_rejects_text():
    with pytest.raises(TypeError):
        SummaryParser().feed("text")  # type: ignore[arg-type]


def test_utc_line_and_names():
    assert parse_utc_line("20240101 00:00:00 UTC") == utc(2024, 1, 1)
    assert parse_utc_line("20240101 00:00:00 CST") is None
    assert parse_utc_line("２0240101 00:00:00 UTC") is None
    n = parse_data_name("20231004.1400.00.pgr.1.rawacf.hdf5")
    assert n is not None and (n.radar, n.slice, n.kind, n.ext) == ("pgr", "1", "rawacf", "hdf5")
    assert parse_data_name("20231004.1400.00.PGR.1.rawacf.hdf5") is None
    assert parse_data_name("20231332.1400.00.pgr.1.rawacf.hdf5") is None
    assert parse_data_name("20231004.1400.00.pgr.1.rawacf") is None
    assert parse_log_name("sas.20240101.convert_on_campus_summary.log").radar == "sas"
    assert parse_log_name("cly.20240101.archive_iq.log").script == "archive_iq_plots"
    assert parse_log_name("20240101.rsync_to_nas.log") is None  # the full log, not the summary
    assert parse_flag_name(".site-linux_flag_sas").stage == "rsync_to_campus"
    assert parse_flag_name(".borealis_flag").radar is None
    assert parse_flag_name(".borealis_flag_SAS") is None
    assert stage_of("./rsync_to_nas.sh") == "rsync_to_nas"


# ---- fuzz ----------------------------------------------------------------------

_PIECES = [
    SEP,
    "",
    "Executing /x/rsync_to_nas on h for sas",
    "Executing /x/rsync_to_nas on h for pgr",
    "Executing distribute_borealis_data on sdc-serv for sas",
    "20240315 14:00:07 UTC",
    "Successfully transferred: /d/20240315.1200.00.sas.0.rawacf.h5",
    "Transfer failed: /d/20240315.1200.00.pgr.0.rawacf.h5",
    "DMAP integrity test failed: ",
    "Finished rsync_to_nas. End time: 20240315 14:01:12 UTC",
    "Finished distribute_borealis_data. End time: 20240315 14:01:12 UTC",
    "No files to be transferred.",
    "data_flow: On branch main, last commit: \t\tabc1234 x",
    "Transferring from: /data",
    "ssh: connect to host x port 22: Connection refused",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=60)), max_size=60),
    st.integers(min_value=1, max_value=50),
)
@pytest.mark.slow  # measured 4.6 s (fuzz)
def test_fuzz_lines_never_crash_and_are_all_counted(lines, chunk):
    text = "\n".join(lines) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    p = SummaryParser()
    out = []
    for i in range(0, len(data), chunk):
        out += p.feed(data[i : i + chunk], now=0.0)
    out += p.flush() + p.expire(1e12, 1.0)
    assert p.stats.lines == text.count("\n")
    done = runs(out)
    assert len(done) == p.stats.finished + p.stats.died == p.stats.blocks - p.stats.reread
    assert all(isinstance(r, RunStart | FileLine | Run) for r in out)
    # nothing is lost: every file line is either in a run or reported outside one
    assert (
        sum(len(r.files) for r in done)
        + sum(1 for r in out if isinstance(r, FileLine) and r.script is None)
        + p.stats.reread_file_lines  # a run's header read again: its block starts over
        == p.stats.file_lines
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=300))
def test_fuzz_bytes_never_crash(data, chunk):
    p = SummaryParser(max_line=256)
    for i in range(0, len(data), chunk):
        p.feed(data[i : i + chunk])
    p.flush()
    p.expire(1e12, 0.0)
    assert p.stats.bytes == len(data)


def test_lines_between_a_separator_and_its_header_belong_to_no_run():
    text = (
        f"{SEP}\n\nExecuting /x/rsync_to_nas on h for sas\n20240315 10:00:00 UTC\n"
        "Successfully transferred: /d/20240315.0800.00.sas.0.rawacf.h5\n"
        # the sas run died here; the next block starts
        f"{SEP}\n\nstray line\nNo files to be transferred.\n"
        "Executing /x/rsync_to_nas on h for pgr\n20240315 10:05:00 UTC\n"
        "Finished rsync_to_nas. End time: 20240315 10:05:01 UTC\n"
    )
    records, p = parse_text(text)
    (pgr,) = runs(records)
    assert pgr.radar == "pgr" and pgr.nothing == ()
    (sas,) = p.running()
    assert sas.unknown == () and sas.nothing == () and sas.files_ok == 1
    assert list(p.orphans) == ["stray line", "No files to be transferred."]
