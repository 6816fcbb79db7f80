"""Products per radar x stage: run figures, old files, success rates, staleness."""

from __future__ import annotations

import calendar

import pytest

from nodes.dataflow.products import (
    ProductBook,
    files_older_than,
    run_figures,
)
from nodes.dataflow.summary import Run, parse_text

SEP = "#" * 80
H = 3600.0


def utc(y, mo, d, h=0, mi=0, s=0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, s)))


def stamp(t: float, fmt: str) -> str:
    import time

    return time.strftime(fmt, time.gmtime(t))


def block(
    script: str, radar: str, start: float, ok=(), failed=(), end: float | None = None, nothing=False
) -> str:
    """A summary block; ok/failed are data-file start times."""
    lines = [
        SEP,
        "",
        f"Executing /home/x/data_flow/{script} on host for {radar}",
        stamp(start, "%Y%m%d %H:%M:%S UTC"),
    ]
    for i, t in enumerate(ok):
        lines.append(
            f"Successfully transferred: /d/{stamp(t, '%Y%m%d.%H%M.%S')}.{radar}.{i}.rawacf.h5"
        )
    for i, t in enumerate(failed):
        lines.append(f"Transfer failed: /d/{stamp(t, '%Y%m%d.%H%M.%S')}.{radar}.{i}.rawacf.h5")
    if nothing:
        lines.append("No files to be transferred.")
    if end is not None:
        lines += ["", f"Finished {script}. End time: {stamp(end, '%Y%m%d %H:%M:%S UTC')}", ""]
    return "\n".join(lines) + "\n"


def one_run(text: str) -> Run:
    records, parser = parse_text(text)
    done = [r for r in records if isinstance(r, Run)] + parser.close_all()
    assert len(done) == 1
    return done[0]


def test_run_figures_and_old_files_across_the_year_boundary():
    start = utc(2024, 1, 1, 0, 0, 5)
    run = one_run(
        block(
            "rsync_to_nas",
            "sas",
            start,
            ok=(utc(2023, 12, 31, 22), utc(2023, 12, 29, 22)),  # 2 h and 2 days before
            failed=(utc(2022, 12, 31, 22),),
            end=start + 40,
        )
    )
    assert files_older_than(run) == 2
    assert files_older_than(run, age=3 * 86400) == 1
    figures = run_figures(run)
    assert figures == {
        "files_ok": 2.0,
        "files_failed": 1.0,
        "duration": 40.0,
        "files_old": 2.0,
        "nothing_to_do": 0.0,
        "died": 0.0,
        "connection_errors": 0.0,
        "unknown_lines": 0.0,
    }


def test_figures_of_a_died_and_an_empty_run():
    died = one_run(block("rsync_to_nas", "sas", utc(2024, 3, 1), ok=(utc(2024, 3, 1),)))
    f = run_figures(died)
    assert f["died"] == 1.0 and f["duration"] is None and f["files_old"] == 0.0
    empty = one_run(
        block("rsync_to_nas", "sas", utc(2024, 3, 1), end=utc(2024, 3, 1), nothing=True)
    )
    assert run_figures(empty)["nothing_to_do"] == 1.0
    # archive_iq_plots moves old plots by design: no old-file figure for it
    arch = one_run(
        block(
            "archive_iq_plots", "sas", utc(2024, 3, 3), ok=(utc(2024, 3, 1),), end=utc(2024, 3, 3)
        )
    )
    assert run_figures(arch)["files_old"] is None


def test_success_rate_over_a_window_and_last_run():
    book = ProductBook(window=7 * H)
    t0 = utc(2024, 3, 1)
    # runs every 2 h; the first two fail one file each
    for k, (ok, failed) in enumerate([(1, 1), (2, 1), (3, 0), (4, 0)]):
        start = t0 + k * 2 * H
        book.add_run(
            one_run(
                block(
                    "rsync_to_nas",
                    "sas",
                    start,
                    ok=[start - H] * ok,
                    failed=[start - H] * failed,
                    end=start + 60,
                )
            )
        )
    p = book.products("sas", "rsync_to_nas", t0 + 6 * H + 120)
    # window [t0-58min, t0+6h+2min]: all four runs
    assert (p.runs, p.files_ok, p.files_failed) == (4, 10, 2)
    assert p.success_rate == pytest.approx(10 / 12)
    assert p.run_success_rate == pytest.approx(2 / 4)
    assert (p.last_files_ok, p.last_files_failed, p.last_duration) == (4, 0, 60.0)
    assert p.last_start == t0 + 6 * H and p.since_last_run == 120.0
    assert not p.stale
    later = book.products("sas", "rsync_to_nas", t0 + 9 * H)  # window from t0+2h: the last three
    assert (later.runs, later.files_ok, later.files_failed) == (3, 9, 1)
    assert later.success_rate == pytest.approx(0.9) and later.run_success_rate == pytest.approx(
        2 / 3
    )


def test_runs_arriving_out_of_order():
    book = ProductBook()
    t0 = utc(2024, 3, 1)
    for k in (3, 0, 2, 1):  # e.g. day files read in directory order
        book.add_run(
            one_run(
                block("rsync_to_campus", "pgr", t0 + k * 2 * H, ok=[t0], end=t0 + k * 2 * H + 10)
            )
        )
    p = book.products("pgr", "rsync_to_campus", t0 + 7 * H)
    assert p.last_start == t0 + 6 * H and p.runs == 4 and p.since_last_run == H


def test_staleness_changes_are_reported_once_each_way():
    book = ProductBook(period=2 * H, margin=0.5 * H)
    t0 = utc(2024, 3, 1)
    book.add_run(one_run(block("rsync_to_nas", "inv", t0, ok=[t0], end=t0 + 10)))
    assert book.check(t0 + 2.4 * H) == []
    (change,) = book.check(t0 + 2.6 * H)
    assert (change.radar, change.stage, change.stale, change.last_activity) == (
        "inv",
        "rsync_to_nas",
        True,
        t0,
    )
    assert book.check(t0 + 5 * H) == []  # still stale: no new change
    p = book.products("inv", "rsync_to_nas", t0 + 5 * H)
    assert p.stale and p.overdue == pytest.approx(2.5 * H)
    book.note_start("inv", "rsync_to_nas", t0 + 5 * H)  # a run began (header in, not finished)
    (back,) = book.check(t0 + 5 * H + 1)
    assert not back.stale
    assert not book.products("inv", "rsync_to_nas", t0 + 5 * H + 1).stale


def test_expected_stages_never_seen_go_stale_and_periods_per_stage():
    t0 = utc(2024, 3, 1)
    book = ProductBook(period=2 * H, margin=0.0, periods={"archive_iq_plots": 24 * H})
    book.expect(["cly"], since=t0, stages=("rsync_to_nas", "archive_iq_plots"))
    assert book.check(t0 + H) == []
    changes = book.check(t0 + 3 * H)
    assert [(c.stage, c.stale) for c in changes] == [("rsync_to_nas", True)]
    snap = {p.stage: p for p in book.snapshot(t0 + 3 * H)}
    assert snap["rsync_to_nas"].stale and snap["rsync_to_nas"].last_start is None
    assert not snap["archive_iq_plots"].stale and snap["archive_iq_plots"].success_rate is None


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        ProductBook(period=float("nan"))
    with pytest.raises(ValueError):
        ProductBook(margin=-1)
