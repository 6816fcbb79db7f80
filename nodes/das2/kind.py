"""The `das2` kind: das2 readers with reduction and a block cache; das2.2 HTTP."""

from __future__ import annotations

import argparse
from typing import Any

from obsmesh import config
from obsmesh.kinds import Demo, NodeKind, Port
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import NOT_NEGATIVE, POSITIVE, Check, Section, Setting, at_least

HTTP_PORT = Check(
    lambda v: isinstance(v, int) and -1 <= v <= 65535, "a TCP port (0: any free one, -1: none)"
)


def http_address(text: str) -> tuple[str, int]:
    """`host:port` of the das2 HTTP interface."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"http address must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


class Settings(Section):
    section = "das2"
    catalog = Setting("", "directory of DSDF files (empty: the example readers)", flag=True)
    host = Setting("127.0.0.1", "interface of the das2 HTTP interface")
    port = Setting(8091, "port of the das2 HTTP interface", flag=True, check=HTTP_PORT)
    server_id = Setting("obsmesh-das2", "what `?server=id` answers")
    cache = Setting(
        "auto",
        "where blocks are cached (auto: redis with the redis store, else disk)",
        flag=True,
        choices=("auto", "redis", "disk", "off"),
    )
    redis_url = Setting("", "Redis of the cache (empty: the mesh's redis_url)", flag=True)
    cache_namespace = Setting(
        "", "cache key prefix; replicas sharing it share blocks (empty: <prefix>:das2cache)"
    )
    cache_dir = Setting(
        "", "directory of the disk cache (empty: <state_dir>/das2-cache)", flag=True
    )
    cache_ttl = Setting(30 * 86400.0, "seconds a block is kept", check=POSITIVE)
    max_block_bytes = Setting(
        64 * 1024 * 1024,
        "bytes of the largest block cached (a bigger one is not)",
        check=at_least(1),
    )
    build_concurrency = Setting(
        1, "readers building blocks at once (besides the requests' readers)", check=at_least(1)
    )
    build_queue = Setting(
        256,
        "most block builds waiting at once; a full queue takes no more (jobs_refused_queue_full)",
        check=at_least(1),
    )
    build_per_request = Setting(
        32,
        "most block builds one request may queue, the first missing blocks of its interval",
        check=at_least(1),
    )
    build_max_age = Setting(
        600.0,
        "seconds after which a queued build nobody asked for since is dropped (jobs_stale)",
        check=POSITIVE,
    )
    readers = Setting(
        4,
        "readers answering requests at once, reading their output (further ones wait their turn)",
        check=at_least(1),
    )
    reader_processes = Setting(
        16,
        "reader processes for requests, counting those paused by a client that does not read",
        check=at_least(1),
    )
    live_readers = Setting(
        1,
        "reader slots kept for the live reads alone (clients cannot take them)",
        check=at_least(1),
    )
    reader_timeout = Setting(600.0, "seconds a reader may run before it is killed", check=POSITIVE)
    reader_output_cap = Setting(
        2 * 1024**3, "bytes a reader may write before it is killed", check=at_least(1)
    )
    reader_memory = Setting(
        1024**3,
        "RLIMIT_AS and RLIMIT_DATA of each reader process and what it starts, bytes (0: none)",
        check=NOT_NEGATIVE,
    )
    max_request_bytes = Setting(
        1024**3,
        "a request whose readers would write more (estimated before any starts) is refused",
        check=at_least(1),
    )
    stall_timeout = Setting(
        60.0,
        "seconds an HTTP client may read nothing before it is cut off and its reader killed",
        check=POSITIVE,
    )
    live_poll = Setting(
        10.0, "seconds between two reads of a live dataset", flag=True, check=POSITIVE
    )
    live_window = Setting(60.0, "seconds the first live read reaches back", check=POSITIVE)
    probe_seconds = Setting(
        600.0, "seconds of data read to learn a dataset's planes", check=POSITIVE
    )
    max_values = Setting(
        20_000_000, "values one get_data may gather (progressive results too)", check=NOT_NEGATIVE
    )

    @classmethod
    def extra_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--http", help="das2 HTTP interface host:port (default 127.0.0.1:8091; '' for none)"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace | None) -> dict[str, Any]:
        """`--http HOST:PORT` sets both; `--http ''` turns the interface off."""
        out = super().from_args(args)
        text = getattr(args, "http", None)
        if text is not None:
            try:
                out["host"], out["port"] = http_address(text) if text else (None, -1)
            except ValueError as exc:
                raise config.ConfigError(f"[das2] {exc}") from None
        return out


def demo(d: DemoContext) -> list[Service]:
    """The node over the example readers, its das2.2 HTTP interface on its port slot."""
    port = d.ports["http"]
    return [
        d.node(
            "--port",
            str(port),
            "--cache-dir",
            d.path("das2-cache"),
            where=f"node das2 (example readers), das2 HTTP on http://127.0.0.1:{port}/",
            listens=[d.listen("http", "das2 HTTP interface")],
        )
    ]


KIND = NodeKind(
    name="das2",
    description="das2 readers with reduction and a block cache; das2.2 HTTP for das2 clients",
    settings=Settings,
    build="nodes.das2.node:build",
    demo=Demo(demo, ports=(Port("http", 8091, setting="port"),)),
    readme="README.md",
)
