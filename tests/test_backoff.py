"""obsmesh.backoff: the one retry policy (pure: clock and randomness injected)."""

from __future__ import annotations

import pytest

from obsmesh.backoff import ROUTER, Backoff, Retry


def test_delays_grow_are_capped_and_jittered_within_bounds():
    b = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.25)
    assert [b.delay(n, lambda: 0.5) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.delay(3, lambda: 0.0) == 6.0 and b.delay(3, lambda: 1.0) == 10.0
    assert b.delay(10_000, lambda: 1.0) == 30.0  # capped after the jitter too; no overflow
    assert Backoff(initial=2.0, maximum=10.0, jitter=0.0).delay(1, lambda: 1.0) == 4.0


@pytest.mark.parametrize(
    "kw", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_bad_policies_are_refused(kw):
    with pytest.raises(ValueError):
        Backoff(**kw)


def test_autobahn_settings_say_the_same():
    assert ROUTER.autobahn() == {
        "max_retries": -1,
        "initial_retry_delay": 0.25,
        "max_retry_delay": 5.0,
        "retry_delay_growth": 1.6,
        "retry_delay_jitter": 0.25,
    }


def test_retry_counts_failures_in_a_row_and_reset_starts_over():
    r = Retry(Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0))
    assert [r.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert r.failures == 5
    r.reset()
    assert r.failed() == 1.0


def test_a_failure_after_a_stable_period_counts_as_the_first():
    now = [0.0]
    r = Retry(Backoff(jitter=0.0), stable_after=30.0, clock=lambda: now[0])
    for _ in range(3):  # up for a second each time: a crash loop
        r.up()
        now[0] += 1.0
        r.failed()
    r.up()
    now[0] += 29.0
    assert r.failed() == 8.0  # 29 s is not stable yet
    r.up()
    now[0] += 30.0
    assert r.failed() == 1.0  # it had run well: start over
    assert r.failed(up_for=5.0) == 2.0 and r.failed(up_for=31.0) == 1.0


def test_jitter_comes_from_the_injected_source():
    draws = iter([0.0, 1.0])
    r = Retry(Backoff(initial=4.0, maximum=100.0, jitter=0.5), rand=lambda: next(draws))
    assert r.failed() == 2.0 and r.failed() == 12.0
