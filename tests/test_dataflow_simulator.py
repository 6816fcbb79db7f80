"""Simulator: realistic logs of all six scripts, exact injections, stops, time compression."""

from __future__ import annotations

import argparse
import calendar
import glob
import json
import os

import pytest

from nodes.dataflow.names import STAGES, parse_log_name
from nodes.dataflow.products import ProductBook, files_older_than
from nodes.dataflow.simulator import (
    Injection,
    Simulator,
    SimulatorError,
    Stop,
    configure,
    main,
    parse_injection,
    parse_stop,
)
from nodes.dataflow.summary import Run, SummaryParser

P = 7200.0
T0 = float(calendar.timegm((2024, 3, 15, 0, 0, 0)))


def parse_tree(root: str) -> tuple[list[Run], dict[str, int]]:
    runs: list[Run] = []
    totals: dict[str, int] = {}
    for path in sorted(glob.glob(os.path.join(root, "summary", "*", "*", "*.log"))):
        p = SummaryParser(path)
        runs += [r for r in p.feed(open(path, "rb").read()) if isinstance(r, Run)]
        runs += p.close_all()
        for k, v in p.stats.as_dict().items():
            totals[k] = totals.get(k, 0) + v
    return runs, totals


def simulate(
    tmp_path, cycles=3, radars=("sas", "pgr", "cly"), start=T0, **kw
) -> tuple[Simulator, list[Run], dict]:
    kw.setdefault("failure_rate", 0.0)
    kw.setdefault("antennas", 2)
    sim = Simulator(str(tmp_path), radars, seed=3, **kw)
    sim.run(cycles, start=start, realtime=False)
    runs, totals = parse_tree(str(tmp_path))
    return sim, runs, totals


def at(
    runs: list[Run], script: str, radar: str, cycle: int, period: float = P, start: float = T0
) -> Run:
    found = [
        r
        for r in runs
        if r.script == script
        and r.radar == radar
        and r.start is not None
        and start + cycle * period <= r.start < start + (cycle + 1) * period
    ]
    assert len(found) == 1, (script, radar, cycle, found)
    return found[0]


def test_clean_cycles_run_every_stage_for_every_radar(tmp_path):
    sim, runs, totals = simulate(tmp_path)
    assert totals["unknown"] == 0 and totals["malformed"] == 0 and totals["orphan"] == 0
    assert all(r.state == "finished" and r.files_failed == 0 for r in runs)
    for radar in ("sas", "pgr", "cly"):
        for stage in STAGES:
            for cycle in range(3):
                at(runs, stage, radar, cycle)
    # cycle 0 has nothing yet; cycle 1 moves the first two-hour block
    assert at(runs, "rsync_to_nas", "sas", 0).nothing_to_do
    nas = at(runs, "rsync_to_nas", "sas", 1)
    assert nas.files_ok == 4 and {f.name.kind for f in nas.files} == {"rawacf", "antennas_iq"}
    assert all(f.name.time == T0 for f in nas.files)  # the block that just ended
    assert at(runs, "rsync_to_nas", "pgr", 1).files_ok == 2
    # low-bandwidth sites convert on campus; the others do not
    assert at(runs, "convert_on_campus", "cly", 1).files_ok == 1
    assert at(runs, "convert_on_campus", "sas", 1).nothing == ("Not converting files for sas.",)
    dist = at(runs, "distribute_borealis_data", "cly", 1)
    assert sorted(f.name.ext for f in dist.files) == ["bz2", "h5"]
    assert at(runs, "plot_antennas_iq", "sas", 1).files_info == 2 * 2  # "Resizing file" per image
    # log files by day, blocks of all radars in each, hosts as on the real machines
    names = [
        os.path.basename(p) for p in glob.glob(str(tmp_path / "summary" / "2024" / "03" / "*.log"))
    ]
    assert sorted(parse_log_name(n).script for n in names) == sorted(STAGES)
    assert {r.host for r in runs if r.script == "rsync_to_nas"} == {
        "sasmain207",
        "pgrmain207",
        "clymain207",
    }
    # data ended in the campus archive by year/month; flags of the last daemon are up
    site = tmp_path / "data" / "campus" / "borealis_site_data"
    assert sorted(os.listdir(site)) == [
        "cly_rawacf",
        "cly_rawacf_dmap",
        "pgr_rawacf",
        "pgr_rawacf_dmap",
        "sas_rawacf",
        "sas_rawacf_dmap",
    ]
    assert os.listdir(site / "sas_rawacf_dmap" / "2024" / "03")
    assert sorted(os.listdir(sim.flag_dir)) == [
        f".campus_dataflow_flag_{r}" for r in ("cly", "pgr", "sas")
    ]
    big = os.path.getsize(next(iter(glob.glob(str(site / "sas_rawacf" / "2024" / "03" / "*")))))
    assert big > 10_000_000  # sparse files of a realistic size


def test_runs_of_one_log_never_overlap(tmp_path):
    _, runs, _ = simulate(
        tmp_path, cycles=4, radars=("sas", "pgr", "inv", "cly", "rkn"), failure_rate=0.2
    )
    by_log: dict[str, list[Run]] = {}
    for r in runs:
        by_log.setdefault(r.source, []).append(r)
    for rs in by_log.values():
        rs.sort(key=lambda r: r.first_line)
        for a, b in zip(rs, rs[1:], strict=False):
            assert a.last_line < b.first_line


@pytest.mark.parametrize(
    ("spec", "script", "radar", "check"),
    [
        (
            "transfer@1:sas",
            "rsync_to_nas",
            "sas",
            lambda r: r.files_failed == 1 and r.files_ok == 3,
        ),
        (
            "connection@1:pgr",
            "rsync_to_campus",
            "pgr",
            lambda r: len(r.connection_errors) == 1 and r.files_failed == 2 and r.files_ok == 0,
        ),
        ("convert@1", "convert_on_campus", "cly", lambda r: r.files_failed == 1),
        (
            "plot@1:sas",
            "plot_antennas_iq",
            "sas",
            lambda r: r.files_failed == 1 and r.files_ok == 1,
        ),
        (
            "integrity@1:sas",
            "distribute_borealis_data",
            "sas",
            lambda r: [f.path for f in r.files if f.outcome == "failed"] == [""],
        ),
        (
            "bzip2@1:pgr",
            "distribute_borealis_data",
            "pgr",
            lambda r: (
                [f.status for f in r.files if f.outcome == "failed"]
                == ["DMAP file failed bzip2 test"]
            ),
        ),
        (
            "distribute@1:sas",
            "distribute_borealis_data",
            "sas",
            lambda r: (
                [f.status for f in r.files if f.outcome == "failed"] == ["File distribution failed"]
            ),
        ),
        (
            "old@1:pgr",
            "rsync_to_nas",
            "pgr",
            lambda r: files_older_than(r) == 1 and r.files_failed == 0,
        ),
        ("nothing@1:sas", "rsync_to_nas", "sas", lambda r: r.nothing_to_do),
        ("unknown@1:sas", "rsync_to_nas", "sas", lambda r: r.unknown_count == 1),
        (
            "died@1:sas",
            "rsync_to_campus",
            "sas",
            lambda r: r.state == "died" and r.reason == "superseded",
        ),
        ("died@1:cly:convert_on_campus", "convert_on_campus", "cly", lambda r: r.state == "died"),
    ],
)
def test_each_injection_shows_in_the_logs(tmp_path, spec, script, radar, check):
    sim, runs, _ = simulate(tmp_path, injections=(parse_injection(spec),))
    run = at(runs, script, radar, 1)
    assert check(run), run
    # and only there: the same stage one cycle earlier is clean
    before = at(runs, script, radar, 0)
    assert before.state == "finished" and before.files_failed == 0 and not before.connection_errors
    journal = [json.loads(line) for line in open(tmp_path / "simulator.jsonl")]
    assert [(j["cycle"], j["radar"], j["stage"], j["kind"]) for j in journal] == [
        (1, radar, script, parse_injection(spec).kind)
    ]


def test_failed_transfers_are_retried_and_a_died_run_blocks_its_followers(tmp_path):
    _, runs, _ = simulate(
        tmp_path, injections=(Injection("transfer", 1, "sas"), Injection("died", 1, "pgr"))
    )
    failed = [f.basename for f in at(runs, "rsync_to_nas", "sas", 1).files if f.outcome == "failed"]
    retried = [f.basename for f in at(runs, "rsync_to_nas", "sas", 2).files if f.outcome == "ok"]
    assert failed and failed[0] in retried
    # pgr's rsync_to_campus died in cycle 1: no flag, so no campus runs for pgr then
    assert not [
        r
        for r in runs
        if r.radar == "pgr" and r.script == "convert_on_campus" and T0 + P <= r.start < T0 + 2 * P
    ]


def test_a_stopped_stage_goes_stale(tmp_path):
    _, runs, _ = simulate(tmp_path, cycles=5, stops=(parse_stop("rsync_to_campus@2:pgr"),))
    pgr_campus = [r for r in runs if r.radar == "pgr" and r.script == "rsync_to_campus"]
    assert len(pgr_campus) == 2  # cycles 0 and 1 only
    assert len([r for r in runs if r.radar == "pgr" and r.script == "rsync_to_nas"]) == 5
    assert not [
        r
        for r in runs
        if r.radar == "pgr" and r.script == "archive_iq_plots" and r.start >= T0 + 2 * P
    ]
    book = ProductBook(period=P, margin=600.0)
    for r in runs:
        book.add_run(r)
    stale = {(c.radar, c.stage) for c in book.check(T0 + 5 * P) if c.stale}
    assert stale == {("pgr", s) for s in STAGES[2:]}


def test_stop_for_some_cycles_then_resume(tmp_path):
    _, runs, _ = simulate(tmp_path, cycles=5, stops=(Stop("rsync_to_nas", 1, "cly", 2),))
    cycles = sorted(
        int((r.start - T0) // P) for r in runs if r.radar == "cly" and r.script == "rsync_to_nas"
    )
    assert cycles == [0, 3, 4]
    resumed = at(runs, "rsync_to_nas", "cly", 3)
    # the blocks of the stopped cycles waited: three blocks of a rawacf and an antennas_iq file
    assert resumed.files_ok == 6 and len({f.name.time for f in resumed.files}) == 3


def test_year_boundary_layout(tmp_path):
    start = float(calendar.timegm((2023, 12, 31, 20, 0, 0)))
    _, runs, _ = simulate(tmp_path, cycles=3, radars=("sas",), start=start)
    assert os.path.isdir(tmp_path / "summary" / "2023" / "12") and os.path.isdir(
        tmp_path / "summary" / "2024" / "01"
    )
    new_year = [r for r in runs if r.script == "rsync_to_nas" and r.start >= start + 4 * 3600]
    (run,) = new_year
    assert os.path.basename(run.source) == "20240101.rsync_to_nas_summary.log"
    assert {f.name.time for f in run.files} == {start + 2 * 3600}  # 20231231.2200 files
    assert files_older_than(run) == 0


def test_compressed_time_schedule_without_real_sleeping(tmp_path):
    clock = [1_000_000.0]
    slept = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    sim = Simulator(str(tmp_path), ("sas", "pgr"), period=2.0, seed=1, failure_rate=0.0, antennas=1)
    assert sim.run(3, clock=lambda: clock[0], sleep=sleep) == 3
    # three cycles two seconds apart: the last one starts 4 s in and takes part of a cycle
    assert 4.0 < clock[0] - 1_000_000.0 < 6.0 and max(slept) <= 0.5
    runs, _ = parse_tree(str(tmp_path))
    assert len({r.start for r in runs if r.script == "rsync_to_nas" and r.radar == "sas"}) == 3


def test_command_line(tmp_path, capsys):
    parser = configure(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            str(tmp_path),
            "--radars",
            "inv,rkn",
            "--fast",
            "--cycles",
            "2",
            "--speed",
            "3600",
            "--failure-rate",
            "0",
            "--inject",
            "transfer@1:inv",
            "--stop",
            "archive_iq_plots@1",
            "--seed",
            "5",
        ]
    )
    assert main(args) == 0
    runs, _ = parse_tree(str(tmp_path))
    assert {r.radar for r in runs} == {"inv", "rkn"}
    assert (
        len([r for r in runs if r.script == "archive_iq_plots"]) == 2
    )  # cycle 0 only, both radars
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--radars", "SAS"])
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--inject", "meteor@1"])
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--stop", "rsync_to_nas@x"])
    bad = parser.parse_args([str(tmp_path / "b"), "--speed", "7200.1", "--fast", "--cycles", "1"])
    assert main(bad) == 2 and "period" in capsys.readouterr().err


def test_argument_parsers():
    assert parse_injection("died@4:inv:convert_on_campus") == Injection(
        "died", 4, "inv", "convert_on_campus"
    )
    assert parse_stop("rsync_to_campus@2:pgr+3") == Stop("rsync_to_campus", 2, "pgr", 3)
    assert parse_stop("plot_antennas_iq@0") == Stop("plot_antennas_iq", 0, None, None)
    for bad in (
        "transfer",
        "transfer@-1",
        "transfer@1:SAS",
        "transfer@1:sas:nowhere",
        "x@1",
        "transfer@1:sas:rsync_to_nas:z",
    ):
        with pytest.raises(SimulatorError):
            parse_injection(bad)
    for bad in ("nowhere@1", "rsync_to_nas@", "rsync_to_nas@1+x", "rsync_to_nas@1:Pgr"):
        with pytest.raises(SimulatorError):
            parse_stop(bad)
    with pytest.raises(SimulatorError):
        Simulator("/tmp/x", ("sas", "sas"))
    with pytest.raises(SimulatorError):
        Simulator("/tmp/x", period=0.5)


def test_bad_speed_is_an_error_not_a_crash(tmp_path, capsys):
    parser = configure(argparse.ArgumentParser())
    assert main(parser.parse_args([str(tmp_path), "--speed", "0", "--fast", "--cycles", "1"])) == 2
    assert "speed" in capsys.readouterr().err
