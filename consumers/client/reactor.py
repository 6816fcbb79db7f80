"""One Twisted reactor in one background daemon thread, shared by every client in
the process.

The reactor is a private instance, never installed as `twisted.internet.reactor`:
a process may already own the global reactor (pytest-twisted runs it in a
greenlet of the main thread, a Twisted application runs it itself), and a
second thread must never drive that one. Everything the client does on the
network runs in this thread; callers marshal work to it with `submit`, which
returns a `concurrent.futures.Future` that sync code waits on and asyncio code
wraps with `asyncio.wrap_future`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

_lock = threading.Lock()
_shared: ReactorThread | None = None


def _new_reactor():
    """A fresh reactor object of the best kind for this platform, not installed."""
    try:
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()
    except ImportError:  # not Linux
        from twisted.internet.selectreactor import SelectReactor

        return SelectReactor()


class ReactorThread:
    def __init__(self) -> None:
        self.reactor = _new_reactor()
        self._running = threading.Event()
        self.thread = threading.Thread(target=self._run, name="obsmesh-client-reactor", daemon=True)
        self.thread.start()
        if not self._running.wait(10):
            raise RuntimeError("the obsmesh client reactor did not start")

    def _run(self) -> None:
        self.reactor.callWhenRunning(self._running.set)
        self.reactor.run(installSignalHandlers=False)

    def in_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run `fn` in the reactor thread soon, result ignored (fire and forget)."""
        if self.in_thread():
            fn(*args, **kwargs)
        else:
            self.reactor.callFromThread(fn, *args, **kwargs)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        """Run `fn` (plain, Deferred-returning or a coroutine function) in the
        reactor thread; its outcome lands in the returned Future."""
        future = Call(self)

        def start() -> None:
            if not future.set_running_or_notify_cancel():
                return
            d = defer.maybeDeferred(fn, *args, **kwargs)
            future.deferred = d
            d.addCallbacks(future._resolve, future._reject)

        self.call(start)
        return future


class Call(concurrent.futures.Future):
    """A Future for work running in the reactor thread; `abort()` cancels the
    Deferred behind it even once it runs (a plain Future cannot be cancelled then)."""

    def __init__(self, owner: ReactorThread) -> None:
        super().__init__()
        self.owner = owner
        self.deferred: defer.Deferred | None = None

    def _resolve(self, value: Any) -> None:
        if not self.done():
            self.set_result(value)

    def _reject(self, failure: Failure) -> None:
        if not self.done():
            self.set_exception(failure.value)

    def abort(self) -> None:
        if self.cancel():
            return

        def cancel() -> None:
            if self.deferred is not None and not self.deferred.called:
                self.deferred.cancel()

        self.owner.call(cancel)


def shared() -> ReactorThread:
    """The process-wide reactor thread, started on first use."""
    global _shared
    with _lock:
        if _shared is None or not _shared.thread.is_alive():
            _shared = ReactorThread()
        return _shared
