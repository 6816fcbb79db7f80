"""The synchronous client: plain calls that block until the answer is there,
for scripts and notebooks. No Twisted knowledge needed.

    from consumers.client import Mesh
    with Mesh() as mesh:
        print(mesh.nodes())
        r = mesh.get("weather", ["temperature"], "-1h")
        r["temperature"], r.time("temperature")        # numpy arrays
        for item in mesh.stream("weather"):            # Batch or Gap items
            ...
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from consumers.client import args as check
from consumers.client.core import Core, Fields
from consumers.client.errors import Closed
from consumers.client.live import Batch, Gap, Inbox, StreamCore
from consumers.client.reactor import Call, shared
from consumers.client.result import Result
from consumers.client.settings import resolve
from consumers.client.times import parse_time

log = logging.getLogger("obsmesh.client")

DEFAULT_TIMEOUT = 30.0
DEFAULT_QUEUE = 1000
_open: weakref.WeakSet = weakref.WeakSet()


class Mesh:
    """A connection to the mesh that reconnects on its own.

    `url` is the router (`rs://host:8081` rawsocket, fastest; or `ws://host:8080/ws`),
    `realm` and `prefix` default to the configuration (`OBSMESH_ROUTER_URL`,
    `OBSMESH_REALM`, `OBSMESH_PREFIX`, or the TOML file in `OBSMESH_CONFIG`).
    `authid` and `secret` answer the router's WAMP-CRA challenge on the backend
    transport (defaults: see `consumers.client.settings`).
    `timeout` bounds waiting for the router and for each answer (a large `get`
    may take longer in total: each chunk resets it). Safe to use from several
    threads at once.
    """

    def __init__(
        self,
        url: str | None = None,
        realm: str | None = None,
        *,
        prefix: str | None = None,
        serializer: str = "msgpack",
        timeout: float = DEFAULT_TIMEOUT,
        authid: str | None = None,
        secret: str | None = None,
        config: str | None = None,
    ) -> None:
        conf = resolve(url, realm, prefix, config, authid, secret)
        self.url, self.realm, self.prefix = conf.url, conf.realm, conf.prefix
        self.timeout = check.positive_seconds(timeout, "timeout")
        self._rt = shared()
        self._core = Core(self._rt, conf, serializer, self.timeout)
        self._streams: weakref.WeakSet = weakref.WeakSet()
        self._closed = False
        self._rt.call(self._core.conn.start)
        _open.add(self)

    # -- plumbing ---------------------------------------------------------------
    def _submit(self, fn: Callable, *a: Any, **kw: Any) -> Call:
        if self._closed:
            raise Closed("this Mesh is closed")
        if self._rt.in_thread():
            raise RuntimeError("Mesh methods block; they cannot run in the client's reactor thread")
        return self._rt.submit(fn, *a, **kw)

    @staticmethod
    def _wait(call: Call) -> Any:
        try:
            return call.result()
        except KeyboardInterrupt:
            call.abort()
            raise

    def _run(self, fn: Callable, *a: Any, **kw: Any) -> Any:
        return self._wait(self._submit(fn, *a, **kw))

    # -- the API ------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._core.conn.session is not None

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until joined to the router (MeshUnavailable after `timeout`)."""
        self._run(self._core.conn.ready, self.timeout if timeout is None else timeout)

    def nodes(self) -> list[dict]:
        """The data nodes on the mesh: `[{"name", "description", ...}]`."""
        return self._run(self._core.nodes)

    def fields(self, node: str, start: Any = -3600.0, end: Any = 0.0) -> Fields:
        """The node's fields: a dict field -> info ("timeline", "type", "units",
        "description"), with `.timelines` (per timeline the mean sample
        interval in [start, end), None with fewer than two samples there)."""
        node = check.node_name(node)
        t0, t1 = check.interval(start, end)
        return self._run(self._core.fields, node, t0, t1)

    def status(self, node: str) -> dict:
        """The node's health: sources, connected, last sample times, counters."""
        return self._run(self._core.status, check.node_name(node))

    def get(
        self,
        node: str,
        fields: str | list[str] | None = None,
        start: Any = -3600.0,
        end: Any = 0.0,
        min_stride: Any = None,
        reduce: str | None = None,
        *,
        as_frame: bool = False,
        progress: bool = False,
    ) -> Result | Any:
        """History of `fields` (all the node's fields when None) in [start, end).

        Returns a `Result`: `r[field]` values and `r.time(field)` times as numpy
        arrays, `r.timelines[name].t / .data` per timeline; or, with
        `as_frame=True`, a pandas DataFrame indexed by UTC time. `min_stride`
        (seconds or '1m') bins the data, `reduce="minmax"` keeps spikes.
        Any size works (large replies come in chunks); `progress=True` draws a
        progress bar.
        """
        node = check.node_name(node)
        names = check.field_names(fields)
        t0, t1 = check.interval(start, end)
        stride = check.stride(min_stride)
        how = check.reduction(reduce)
        if not progress:
            result = self._run(self._core.get, node, names, t0, t1, stride, how)
        else:
            result = self._get_with_bar(node, names, t0, t1, stride, how)
        return result.frame() if as_frame else result

    def _get_with_bar(self, node, names, t0, t1, stride, how) -> Result:
        from consumers.client.progress import Bar

        events: queue.SimpleQueue = queue.SimpleQueue()
        call = self._submit(
            self._core.get, node, names, t0, t1, stride, how, lambda k, n: events.put((k, n))
        )
        bar = Bar(f"{node}")
        ok = False
        try:
            while True:
                try:
                    result = call.result(timeout=0.1)
                    ok = True
                except concurrent.futures.TimeoutError:
                    result = None
                except KeyboardInterrupt:
                    call.abort()
                    raise
                while not events.empty():
                    kind, n = events.get()
                    if kind == "total":
                        bar.total(n)
                    else:
                        bar.update(n)  # negative when a piece restarts after a reconnection
                if ok:
                    return result
        finally:
            bar.close(ok)

    def stream(
        self,
        node: str,
        fields: str | list[str] | None = None,
        *,
        maxsize: int = DEFAULT_QUEUE,
        backfill: bool = True,
        since: Any = None,
        latest: bool = False,
    ) -> Stream:
        """Live samples of `node` (only `fields` when given) as an iterator of
        `Batch` items, with a `Gap` item wherever the stream was interrupted
        (router or node restart, or the reader falling `maxsize` batches behind).
        With `backfill` (the default) the missed samples follow the gap, fetched
        from history. `since` first delivers history from that time; `latest`
        starts with the node's last published batch."""
        node = check.node_name(node)
        names = check.field_names(fields)
        check.positive_int(maxsize, "maxsize")
        since_t = None if since is None else parse_time(since, "since")
        if since_t is not None and since_t <= 0:
            import time as _time

            since_t = _time.time() + since_t
        inbox = Inbox(maxsize)
        core = StreamCore(
            self._core, node, names, inbox, backfill=backfill, since=since_t, latest=latest
        )
        try:
            self._run(core.open)
        except BaseException:
            self._rt.call(core.close)
            raise
        s = Stream(self, core, inbox)
        self._streams.add(s)
        return s

    def subscribe(
        self,
        node: str,
        callback: Callable[[Batch | Gap], Any],
        fields: str | list[str] | None = None,
        **stream_options: Any,
    ) -> Subscription:
        """Call `callback(item)` for every live `Batch` (and `Gap`) of `node`, in
        a thread of its own (a slow callback never stalls the network).
        Returns a handle with `close()`."""
        if not callable(callback):
            from consumers.client.errors import InvalidArgument

            raise InvalidArgument("callback must be callable")
        return Subscription(self.stream(node, fields, **stream_options), callback)

    def close(self, timeout: float = 5.0) -> None:
        """Stop streams, leave the router, stop reconnecting. Idempotent."""
        if self._closed:
            return
        for s in list(self._streams):
            s.close()
        self._closed = True
        _open.discard(self)
        call = self._rt.submit(self._core.conn.close)
        try:
            call.result(timeout)
        except Exception:  # a close that cannot finish cleanly still stops reconnecting
            pass

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.connected else "connecting")
        return f"<Mesh {self.url} realm={self.realm} {state}>"


class Stream:
    """An iterator of `Batch` and `Gap` items; ends when closed."""

    def __init__(self, mesh: Mesh, core: StreamCore, inbox: Inbox) -> None:
        self._mesh = mesh
        self._core = core
        self._inbox = inbox
        self.node = core.node

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Batch | Gap:
        return self._inbox.get()

    def get(self, timeout: float | None = None) -> Batch | Gap:
        """The next item; MeshTimeout if none within `timeout`; Closed once closed."""
        try:
            return self._inbox.get(timeout)
        except StopIteration:
            raise Closed("the stream is closed") from None

    def close(self) -> None:
        self._inbox.close()
        self._mesh._rt.call(self._core.close)

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    @property
    def pending(self) -> int:
        """Items waiting to be read."""
        return len(self._inbox)

    @property
    def gaps(self) -> int:
        """Gaps reported so far."""
        return self._core.gaps

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Subscription:
    """Feeds a stream to a callback in a daemon thread."""

    def __init__(self, stream: Stream, callback: Callable[[Batch | Gap], Any]) -> None:
        self.stream = stream
        self.callback = callback
        self.errors = 0
        self.thread = threading.Thread(
            target=self._pump, name=f"obsmesh-subscribe-{stream.node}", daemon=True
        )
        self.thread.start()

    def _pump(self) -> None:
        for item in self.stream:
            try:
                self.callback(item)
            except Exception:
                self.errors += 1
                log.exception("subscription callback for %s failed", self.stream.node)

    def close(self, timeout: float = 5.0) -> None:
        self.stream.close()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    unsubscribe = close

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for mesh in list(_open):
        try:
            mesh.close(timeout=1.0)
        except Exception:
            pass
