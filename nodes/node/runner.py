"""Running one node as a process: ingest, WAMP, and on SIGTERM/SIGINT
subtract from the hub, then leave."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.python.failure import Failure

from obsmesh.memtune import keep_freed_memory

if TYPE_CHECKING:
    from nodes.base import DataNode


def run_node(node: DataNode) -> None:
    """Run one node as a process: ingest, WAMP, and on SIGTERM/SIGINT subtract then leave."""

    from twisted.internet import reactor as global_reactor

    from obsmesh import logs

    reactor: Any = global_reactor  # (Twisted's module-level reactor is not typed usefully)

    logs.begin()
    keep_freed_memory()  # queries allocate and free column-sized arrays: keep them warm
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(node.shutdown())
    )

    def begin() -> None:
        d = defer.ensureDeferred(node.launch())

        def failed(f: Failure) -> None:
            node.log.failure("node failed to start", failure=f)
            reactor.stop()

        d.addErrback(failed)

    reactor.callWhenRunning(begin)
    reactor.run()
