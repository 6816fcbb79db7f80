"""Running one node as a process: ingest, WAMP, and on SIGTERM/SIGINT
subtract from the hub, then leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.python.failure import Failure

from obsmesh.memtune import keep_freed_memory

if TYPE_CHECKING:
    from nodes.base import DataNode


def run_node(node: DataNode) -> None:
    """Run one node as a process: ingest, WAMP, and on SIGTERM/SIGINT subtract then leave."""

    from twisted.internet import reactor

    from obsmesh import logs

    logs.begin()
    keep_freed_memory()  # queries allocate and free column-sized arrays: keep them warm
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", lambda: defer.ensureDeferred(node.shutdown())
    )

    def begin() -> None:
        d = defer.ensureDeferred(node.launch())

        def failed(f: Failure) -> None:
            node.log.failure("node failed to start", failure=f)
            reactor.stop()  # type: ignore[attr-defined]

        d.addErrback(failed)

    reactor.callWhenRunning(begin)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
