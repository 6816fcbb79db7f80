"""Which samples of a unit's timeline are stored (nodes/co2/timecheck.py, pure):
implausible times flagged and never holding back later rows, replays never
stored twice, rows out of order merged within the reorder window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.co2.timecheck import Admission, TimeRules

NOW = 1_800_000_000.0
RULES = TimeRules(future_tolerance=600.0, reorder_tolerance=3600.0, epoch=1_500_000_000.0)


def test_a_row_hours_ahead_is_flagged_and_the_correct_rows_after_it_are_stored():
    adm = Admission(RULES)
    good = [NOW - 3000 + 60 * i for i in range(20)]
    times = [NOW - 3600, NOW + 6 * 3600, *good]  # the attack: one row 6 h ahead
    verdict = adm.admit(times, NOW)
    assert verdict.ahead == [1] and verdict.implausible == [1]
    assert verdict.index == [0, *range(2, 22)]
    assert adm.last == good[-1]


def test_rows_before_the_epoch_are_implausible():
    verdict = Admission(RULES).admit([RULES.epoch - 1, RULES.epoch, math.nan], NOW)
    assert verdict.before_epoch == [0, 2] and verdict.index == [1]


def test_out_of_order_rows_within_the_window_are_kept_and_replays_are_not():
    adm = Admission(RULES)
    assert adm.admit([NOW - 100, NOW - 50], NOW).index == [0, 1]
    late = adm.admit([NOW - 70, NOW - 100, NOW - 50 - 3600, NOW - 50 - 3599], NOW)
    assert late.index == [0, 3] and late.duplicate == 1 and late.too_late == 1
    again = adm.admit([NOW - 100, NOW - 70, NOW - 50], NOW)
    assert again.index == [] and again.duplicate == 3


def test_seeded_times_are_not_stored_again_after_a_restart():
    adm = Admission(RULES)
    adm.seed([NOW - 20, NOW - 10])
    verdict = adm.admit([NOW - 20, NOW - 15, NOW - 10, NOW - 5], NOW)
    assert verdict.index == [1, 3] and verdict.duplicate == 2


def test_bad_rules_are_refused():
    for bad in (
        {"future_tolerance": -1.0},
        {"reorder_tolerance": math.inf},
        {"epoch": math.nan},
    ):
        with pytest.raises(ValueError):
            TimeRules(**bad)


offsets = st.one_of(
    st.floats(-8000, 8000), st.sampled_from([math.nan, math.inf, -math.inf, -4e8, 4e4])
)


@pytest.mark.slow  # about 1 s in the unit lane
@given(st.lists(st.lists(offsets, max_size=30), max_size=6))
def test_every_sample_gets_one_verdict_and_nothing_is_stored_twice(batches):
    adm = Admission(RULES)
    stored: list[float] = []
    for batch in batches:
        times = [NOW + x for x in batch]
        v = adm.admit(times, NOW)
        counted = len(v.index) + v.duplicate + v.too_late + len(v.implausible)
        assert counted == len(times)
        kept = [times[i] for i in v.index]
        for i in v.ahead:
            assert times[i] > NOW + RULES.future_tolerance
        for t in kept:
            assert RULES.epoch <= t <= NOW + RULES.future_tolerance
        stored += kept
        # an implausible sample never moves the timeline: only stored ones do
        assert adm.last == (max(stored) if stored else -math.inf)
    assert len(stored) == len(set(stored))
