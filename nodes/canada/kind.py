"""The `canada` kind: Canadian SuperDARN radars over ZeroMQ (the aggregated
CANADA_ADDR feed and Borealis sites' own PUB sockets)."""

from __future__ import annotations

from obsmesh.kinds import Demo, NodeKind, Port, Simulator
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import NOT_NEGATIVE, POSITIVE, Section, Setting, at_least

BOREALIS_PORT = 9696
ONE = at_least(1)


class Settings(Section):
    section = "canada"
    addr = Setting("", "the aggregated feed, host:port (the old CANADA_ADDR)", flag=True)
    borealis = Setting(
        [],
        f"Borealis sites' PUB sockets, comma-separated code=host[:port] (port {BOREALIS_PORT})",
        flag=True,
    )
    silence = Setting(
        10.0, "seconds without a message before a socket is re-created", flag=True, check=POSITIVE
    )
    stale_after = Setting(
        120.0, "seconds without a record before a radar is stale", flag=True, check=POSITIVE
    )
    sites = Setting(
        [],
        "accept only these radar codes, comma-separated (empty: any well-formed code)",
        flag=True,
    )
    max_sites = Setting(64, "radars one node takes on (a hostile feed cannot grow it)", check=ONE)
    max_frame = Setting(
        1 << 20, "bytes of one ZeroMQ frame (ZMQ_MAXMSGSIZE: refused before buffered)", check=ONE
    )
    max_decompressed = Setting(
        4 << 20, "bytes one message may inflate to (decompression bombs)", check=ONE
    )
    max_records = Setting(64, "FITACF records in one message", check=ONE)
    rcvhwm = Setting(
        1000,
        "messages ZeroMQ queues per socket (when the node lags, the excess is dropped)",
        check=ONE,
    )
    batch_messages = Setting(2000, "messages taken in one reactor turn at most", check=ONE)
    batch_ms = Setting(
        2.0, "milliseconds one reactor turn may spend on the feeds (shared by all)", check=POSITIVE
    )
    echo_db = Setting(
        "",
        "SQLite file of per-scan echo counts (empty: <state_dir>/canada/<name>-echoes.sqlite)",
        flag=True,
    )
    retention_days = Setting(
        30.0, "days of echo counts kept (0: forever)", flag=True, check=NOT_NEGATIVE
    )
    purge_interval = Setting(3600.0, "seconds between purges of old echo counts", check=POSITIVE)


# The Canadian sites the simulated aggregator sends (the superdarn demo feeds others).
SITES = "sas,pgr,inv,cly,rkn"


def demo(d: DemoContext) -> list[Service]:
    """A simulated aggregator (ZeroMQ PUB) on its port slot, and the node subscribed to it."""
    feed = f"127.0.0.1:{d.ports['aggregator']}"
    return [
        d.simulator(
            "canada",
            "--port",
            str(d.ports["aggregator"]),
            "--sites",
            SITES,
            where=f"simulated Canadian aggregator (ZeroMQ PUB, {SITES}) on {feed}",
            listens=[d.listen("aggregator", "Canadian aggregator simulator")],
        ),
        d.node(
            "--addr",
            feed,
            "--echo-db",
            d.path("canada", "echoes.sqlite"),
            where=f"node canada (ZeroMQ feed {feed})",
        ),
    ]


KIND = NodeKind(
    name="canada",
    description="Canadian radars over ZeroMQ: per-beam and per-scan products",
    settings=Settings,
    build="nodes.canada.node:build",
    simulators=(
        Simulator(
            "canada",
            "nodes.canada.simulator",
            "a Canadian aggregator (ZeroMQ PUB)",
            port=BOREALIS_PORT,
        ),
    ),
    demo=Demo(demo, simulator_ports=(Port("aggregator", BOREALIS_PORT),)),
    view="radars",
    readme="README.md",
)
