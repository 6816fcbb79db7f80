"""obsmesh.periodic on a fake clock: ticks, survives errors, never overlaps."""

from twisted.internet import defer, task

from obsmesh.periodic import Periodic


def test_ticks_on_the_given_clock_and_stops():
    clock = task.Clock()
    calls = []
    p = Periodic(clock, 2.0, lambda: calls.append(clock.seconds()))
    p.start()
    clock.advance(2.0)
    clock.advance(2.0)
    p.stop()
    clock.advance(10.0)
    assert calls == [2.0, 4.0]
    assert not p.running
    p.stop()  # twice is fine


def test_an_error_is_counted_and_the_loop_goes_on():
    clock = task.Clock()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    p = Periodic(clock, 1.0, flaky)
    p.start(now=True)
    clock.advance(1.0)
    clock.advance(1.0)
    assert len(calls) == 3
    assert p.failures == 1
    assert p.running


def test_a_slow_deferred_tick_is_waited_for():
    clock = task.Clock()
    pending: list[defer.Deferred] = []

    def slow():
        d = defer.Deferred()
        pending.append(d)
        return d

    p = Periodic(clock, 1.0, slow)
    p.start(now=True)
    clock.advance(5.0)
    assert len(pending) == 1  # no second run while the first is not done
    pending[0].errback(RuntimeError("late failure"))
    assert p.failures == 1
    clock.advance(1.0)
    assert len(pending) == 2


def test_refuses_a_period_that_is_not_positive():
    import pytest

    with pytest.raises(ValueError):
        Periodic(task.Clock(), 0, lambda: None)
