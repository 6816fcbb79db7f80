"""The asyncio flavour: the same API as `Mesh`, as coroutines. The network work
runs in the shared client reactor thread; each call is awaited through
`asyncio.wrap_future`, so the event loop is never blocked.

    async with AsyncMesh() as mesh:
        r = await mesh.get("weather", "temperature", "-1h")
        async with await mesh.stream("weather") as live:
            async for item in live:
                ...
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

from consumers.client import args as check
from consumers.client.core import Core, Fields
from consumers.client.errors import Closed, InvalidArgument
from consumers.client.live import Batch, Gap, Inbox, StreamCore
from consumers.client.mesh import DEFAULT_QUEUE, DEFAULT_TIMEOUT
from consumers.client.reactor import shared
from consumers.client.result import Result
from consumers.client.settings import resolve
from consumers.client.times import parse_time


class AsyncMesh:
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
        self._streams: list[AsyncStream] = []
        self._closed = False
        self._rt.call(self._core.conn.start)

    async def _run(self, fn: Callable, *a: Any, **kw: Any) -> Any:
        if self._closed:
            raise Closed("this AsyncMesh is closed")
        call = self._rt.submit(fn, *a, **kw)
        try:
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            call.abort()
            raise

    @property
    def connected(self) -> bool:
        return self._core.conn.session is not None

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self._run(self._core.conn.ready, self.timeout if timeout is None else timeout)

    async def nodes(self) -> list[dict]:
        return await self._run(self._core.nodes)

    async def fields(self, node: str, start: Any = -3600.0, end: Any = 0.0) -> Fields:
        node = check.node_name(node)
        t0, t1 = check.interval(start, end)
        return await self._run(self._core.fields, node, t0, t1)

    async def status(self, node: str) -> dict:
        return await self._run(self._core.status, check.node_name(node))

    async def get(
        self,
        node: str,
        fields: str | list[str] | None = None,
        start: Any = -3600.0,
        end: Any = 0.0,
        min_stride: Any = None,
        reduce: str | None = None,
        *,
        as_frame: bool = False,
    ) -> Result | Any:
        node = check.node_name(node)
        names = check.field_names(fields)
        t0, t1 = check.interval(start, end)
        result = await self._run(
            self._core.get, node, names, t0, t1, check.stride(min_stride), check.reduction(reduce)
        )
        return result.frame() if as_frame else result

    async def stream(
        self,
        node: str,
        fields: str | list[str] | None = None,
        *,
        maxsize: int = DEFAULT_QUEUE,
        backfill: bool = True,
        since: Any = None,
        latest: bool = False,
    ) -> AsyncStream:
        node = check.node_name(node)
        names = check.field_names(fields)
        check.positive_int(maxsize, "maxsize")
        since_t = None if since is None else parse_time(since, "since")
        if since_t is not None and since_t <= 0:
            since_t = time.time() + since_t
        inbox = Inbox(maxsize)
        core = StreamCore(
            self._core, node, names, inbox, backfill=backfill, since=since_t, latest=latest
        )
        try:
            await self._run(core.open)
        except BaseException:
            self._rt.call(core.close)
            raise
        s = AsyncStream(self, core, inbox)
        self._streams.append(s)
        return s

    async def subscribe(
        self,
        node: str,
        callback: Callable[[Batch | Gap], Any],
        fields: Any = None,
        **stream_options: Any,
    ) -> AsyncSubscription:
        """`callback(item)` (a function or a coroutine function) for every item,
        run in this event loop by a task."""
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        return AsyncSubscription(await self.stream(node, fields, **stream_options), callback)

    async def close(self) -> None:
        if self._closed:
            return
        for s in self._streams:
            s.close()
        self._streams.clear()
        self._closed = True
        call = self._rt.submit(self._core.conn.close)
        try:
            await asyncio.wait_for(asyncio.wrap_future(call), 5.0)
        except Exception:
            pass

    async def __aenter__(self) -> AsyncMesh:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncStream:
    def __init__(self, mesh: AsyncMesh, core: StreamCore, inbox: Inbox) -> None:
        self._mesh = mesh
        self._core = core
        self._inbox = inbox
        self.node = core.node

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Batch | Gap:
        return await self._inbox.aget()

    async def get(self, timeout: float | None = None) -> Batch | Gap:
        try:
            return await asyncio.wait_for(self._inbox.aget(), timeout)
        except StopAsyncIteration:
            raise Closed("the stream is closed") from None

    def close(self) -> None:
        self._inbox.close()
        self._mesh._rt.call(self._core.close)

    async def aclose(self) -> None:
        self.close()

    @property
    def gaps(self) -> int:
        return self._core.gaps

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class AsyncSubscription:
    def __init__(self, stream: AsyncStream, callback: Callable[[Batch | Gap], Any]) -> None:
        self.stream = stream
        self.callback = callback
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        async for item in self.stream:
            result = self.callback(item)
            if inspect.isawaitable(result):
                await result

    async def close(self) -> None:
        self.stream.close()
        try:
            await self.task
        except Exception:
            pass
