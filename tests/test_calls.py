"""obsmesh.calls.SharedCall: wait for a call a while, never cancel it."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from obsmesh.calls import SharedCall


@pytest_twisted.ensureDeferred
async def test_an_answer_before_or_after_waiting_reaches_every_waiter():
    d: defer.Deferred = defer.Deferred()
    done = []
    call = SharedCall(d, lambda: done.append(1))
    first, second = call.wait(5), call.wait(5)
    d.callback([1, 2])
    assert await first == [1, 2] and await second == [1, 2] and done == [1]
    assert call.finished and await call.wait(5) == [1, 2]  # answered already: at once
    early = SharedCall(defer.succeed("now"), lambda: None)  # a router may answer at once
    assert await early.wait(5) == "now"


@pytest_twisted.ensureDeferred
async def test_waiting_ends_without_cancelling_the_call():
    d: defer.Deferred = defer.Deferred(canceller=lambda _d: pytest.fail("cancelled"))
    call = SharedCall(d, lambda: None)
    assert await call.wait(0.05) is None  # no answer in time
    assert not d.called and not call.finished
    d.errback(RuntimeError("late"))  # the late outcome is dropped, not left unhandled
    with pytest.raises(RuntimeError):
        await call.wait(1)
