"""The HAPI side's calls into the mesh, through the Grafana bridge's WAMP session.

- `datasets(node)`: the node's `get_fields` over its whole history, as HAPI
  datasets. Requests arriving while a call for that node is in flight share it,
  so a thousand `/info` requests cost one call per node, and every request
  still sees fields declared a moment before.
- `get_data(...)`: one `get_data` call with binary columns and progressive
  results (chunks go to a callback as they arrive), with the node's errors
  turned into HAPI codes.
- `string_lengths(dataset)`: the longest UTF-8 value of each string field,
  scanned incrementally (only samples newer than the last scan, less an hour
  for late arrivals), so `length` in `/info` covers what binary will carry.

The directory of nodes is the bridge's catalog, kept fresh by the hub's events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from consumers.hapi.datasets import Dataset, datasets_of, split_id, string_length
from consumers.hapi.status import HapiError

FIRST = 1e-3  # the mesh reads times <= 0 as "before now": its earliest absolute time
FAR_FUTURE = 366 * 86400.0
LATE_ARRIVALS = 3600.0  # a string scan looks this far back before its last end again
CALL_TIMEOUT_FACTOR = 10  # a data window may take ten times a panel query's timeout


class Source:
    log = Logger()

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self._inflight: dict[str, list] = {}
        self._longest: dict[
            tuple[str, str], tuple[int, float]
        ] = {}  # (node, field) -> (bytes, until)
        self._scans: dict[str, list] = {}

    # -- plumbing ----------------------------------------------------------------
    def _session(self):
        session = self.bridge.session
        if session is None:
            raise HapiError(1500, "the mesh's router is unreachable; retrying", http=503)
        return session

    async def _call(self, uri: str, *args: Any, timeout: float, **kwargs: Any) -> Any:
        d = self._session().call(uri, *args, **kwargs)
        d.addTimeout(timeout, self.bridge.reactor)
        try:
            return await d
        except defer.TimeoutError:
            raise HapiError(1501, "a node did not answer in time", http=504) from None
        except ApplicationError as exc:
            raise self._mesh_error(exc) from None

    def _mesh_error(self, exc: ApplicationError) -> HapiError:
        prefix = self.bridge.uris.prefix + ".error."
        kind = exc.error[len(prefix) :] if exc.error.startswith(prefix) else ""
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc.error
        if kind == "no_such_field":
            return HapiError(1407)
        if kind == "invalid_argument":
            return HapiError(1400, f"the node refused: {message}"[:300])
        if kind == "too_many_points":
            return TooManyPoints(message)
        return HapiError(1501, f"the node failed: {message}"[:300], http=502)

    @property
    def now(self) -> float:
        return self.bridge.clock()

    # -- datasets ----------------------------------------------------------------
    async def nodes(self) -> list[str]:
        if not self.bridge.catalog.nodes:
            await self._directory()
        return sorted(self.bridge.catalog.nodes)

    async def _directory(self) -> None:
        self._session()
        try:
            await self.bridge.refresh_directory()
        except Exception as exc:
            self.log.info("hub directory: {exc}", exc=exc)

    async def datasets(self, node: str) -> dict[str, Dataset]:
        """The node's datasets; concurrent callers share one get_fields call."""
        return await share(self._inflight, node, lambda: self._fetch_fields(node))

    async def _fetch_fields(self, node: str) -> dict[str, Dataset]:
        entry = self.bridge.catalog.nodes.get(node)
        if entry is None:
            return {}
        answer = await self._call(
            self.bridge.uris.get_fields(node),
            FIRST,
            self.now + FAR_FUTURE,
            timeout=self.bridge.timeout,
        )
        return datasets_of(node, entry.info, answer, entry.description)

    async def all_datasets(self) -> dict[str, Dataset]:
        """Every node's datasets; a node that fails or does not answer lists none."""
        self._session()  # the router unreachable: 503, not an empty catalog
        nodes = await self.nodes()
        answers = await defer.DeferredList(
            [defer.ensureDeferred(self.datasets(n)) for n in nodes], consumeErrors=True
        )
        out: dict[str, Dataset] = {}
        for node, (ok, value) in zip(nodes, answers, strict=True):
            if ok:
                out.update(value)
            else:
                self.log.info("datasets of {node}: {err}", node=node, err=value.getErrorMessage())
        return dict(sorted(out.items()))

    async def dataset(self, dataset_id: str) -> Dataset:
        """One dataset by id (the directory is read again for a node it does not know)."""
        node, timeline = split_id(dataset_id)
        if not node or not timeline:
            raise HapiError(1406)
        self._session()
        if node not in self.bridge.catalog.nodes:
            await self._directory()
        if node not in self.bridge.catalog.nodes:
            raise HapiError(1406)
        ds = (await self.datasets(node)).get(dataset_id)
        if ds is None:
            raise HapiError(1406)
        return ds

    # -- data --------------------------------------------------------------------
    async def get_data(
        self,
        ds: Dataset,
        fields: list[str],
        start: float,
        end: float,
        stride: float | None,
        reduce: str,
        on_chunk: Callable[[Any], None],
    ) -> Any:
        """One get_data call: every progressive chunk but the last to `on_chunk`,
        the last returned."""
        uri = self.bridge.uris.get_data(ds.node)
        timeout = CALL_TIMEOUT_FACTOR * self.bridge.timeout
        if not ds.obsmesh:  # a sisock node: plain lists, mean bins, no progressive results
            return await self._call(uri, fields, start, end, stride, timeout=timeout)
        return await self._call(
            uri,
            fields,
            start,
            end,
            timeout=timeout,
            min_stride=stride,
            reduce=reduce,
            encoding="array",
            options=CallOptions(on_progress=lambda reply, *a, **kw: on_chunk(reply)),
        )

    # -- string lengths --------------------------------------------------------------
    async def string_lengths(self, ds: Dataset) -> dict[str, int]:
        """`length` of each string parameter; also stored on the dataset."""
        names = [p.name for p in ds.parameters if p.kind == "string"]
        if names and ds.first is not None and ds.last is not None:
            await share(self._scans, ds.id, lambda: self._scan(ds, names))
        ds.string_lengths = {
            n: string_length(self._longest.get((ds.node, n), (0, 0.0))[0]) for n in names
        }
        return ds.string_lengths

    async def _scan(self, ds: Dataset, names: list[str]) -> None:
        since = min(self._longest.get((ds.node, n), (0, FIRST))[1] for n in names)
        start = max(ds.first, since - LATE_ARRIVALS, FIRST)
        end = ds.last + 1e-3
        if end <= start:
            return
        longest = {n: self._longest.get((ds.node, n), (0, 0.0))[0] for n in names}

        def take(reply: Any) -> None:
            data = reply.get("data") if isinstance(reply, dict) else None
            if not isinstance(data, dict):
                return
            for n in names:
                col = data.get(n)
                if isinstance(col, list):
                    for v in col:
                        if isinstance(v, str) and len(v) * 4 > longest[n]:
                            longest[n] = max(longest[n], len(v.encode("utf-8")))

        take(await self.get_data(ds, names, start, end, None, "mean", take))
        for n in names:
            self._longest[(ds.node, n)] = (longest[n], end)


class TooManyPoints(HapiError):
    """A node refused a window as too large even with progressive results (das2's cap)."""

    def __init__(self, message: str) -> None:
        super().__init__(1408, message[:300])


def share(table: dict, key: Any, make: Callable[[], Any]) -> defer.Deferred:
    """Callers asking for `key` while a call for it runs wait for that call's outcome;
    the first one starts it (with `make`)."""
    mine: defer.Deferred = defer.Deferred()
    waiters = table.get(key)
    if waiters is not None:
        waiters.append(mine)
        return mine
    table[key] = [mine]

    def done(result):
        for w in table.pop(key):
            w.errback(result) if isinstance(result, Failure) else w.callback(result)

    defer.ensureDeferred(make()).addBoth(done)
    return mine
