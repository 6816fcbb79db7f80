"""One thread per SQLite database: every statement of a database off the reactor, in order.

A SQLite connection must not be used by two threads at once, and a statement
blocks on the disk. `DatabaseThread` owns a thread pool of exactly one thread
for one database: `run(fn, *args)` calls `fn(*args)` there and returns a
Deferred fired on the reactor thread. Calls run one at a time, in the order
they were made, so the objects holding the connection (an `EchoStore`, a
`PingLog`) need no locks of their own, and a write is visible to every call
made after it.

Lifecycle: `start()` (also done by the first `run`), `stop()` once the last
call is made. `stop(close)` runs `close` (the connection's own close) on the
thread before stopping it, so the connection is closed where it was used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


class DatabaseThread:
    """The one thread every call on one database runs in; see the module docstring."""

    def __init__(self, reactor: Any, name: str) -> None:
        self.reactor = reactor
        self.name = name
        self._pool: ThreadPool | None = None
        self._trigger: Any = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPool(1, 1, name=self.name)
            self._pool.start()
            # a thread left running would keep the process alive after the reactor stops
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._shutdown)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """`fn(*args, **kwargs)` on the database's thread, after every call made before."""
        self.start()
        assert self._pool is not None
        return threads.deferToThreadPool(self.reactor, self._pool, fn, *args, **kwargs)

    async def stop(self, close: Callable[[], Any] | None = None) -> None:
        """Run `close` on the thread (after the calls queued), then end the thread.
        Never started: `close` runs at once (the database was not used here)."""
        if self._pool is None:
            if close is not None:
                close()
            return
        if close is not None:
            try:
                await self.run(close)
            finally:
                self._stop_pool()
        else:
            await self.run(lambda: None)  # the calls queued before this one are done
            self._stop_pool()

    def _shutdown(self) -> None:
        self._trigger = None  # firing now: nothing to remove
        self._stop_pool()

    def _stop_pool(self) -> None:
        # the thread is idle by now: joining it does not hold the reactor up
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            if self._trigger is not None:
                self.reactor.removeSystemEventTrigger(self._trigger)
                self._trigger = None
