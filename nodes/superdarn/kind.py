"""The `superdarn` kind: SuperDARN radars' realtime feeds over TCP (Connex framing, DMAP)."""

from __future__ import annotations

import json

from obsmesh.kinds import Command, Demo, NodeKind, Port, Simulator
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import NOT_NEGATIVE, POSITIVE, Section, Setting, at_least


class Settings(Section):
    section = "superdarn"
    radars = Setting(
        None,
        'radars: a JSON/TOML file, inline JSON such as {"sas": "127.0.0.1:1401"}, '
        "or (in TOML) a list or table",
        flag=True,
    )
    stale_after = Setting(
        120.0, "seconds of silence before a radar is marked stale", flag=True, check=POSITIVE
    )
    echo_db = Setting(
        "",
        "SQLite file of per-scan echo counts (empty: <state_dir>/superdarn/<name>-echoes.sqlite)",
        flag=True,
    )
    retention_days = Setting(
        30.0, "days of echo counts kept (0: forever)", flag=True, check=NOT_NEGATIVE
    )
    purge_interval = Setting(
        3600.0, "seconds between purges of old echo counts (the first at start)", check=POSITIVE
    )
    max_payload = Setting(
        1 << 20, "larger frames are drained and counted, never buffered", check=at_least(1024)
    )
    backoff_initial = Setting(
        1.0, "first reconnect delay, seconds (doubles, with jitter)", check=POSITIVE
    )
    backoff_max = Setting(60.0, "longest reconnect delay, seconds", check=POSITIVE)
    reconnect_after_silence = Setting(
        600.0,
        "drop and remake a connection silent this long, seconds (0: never)",
        check=NOT_NEGATIVE,
    )


# Three real sites, none of them the Canadian ones the canada demo feeds (sas, pgr,
# inv, cly, rkn), differing as real sites do: code -> simulator options.
SITES = {"bks": [], "fhe": ["--scan-sign", "-1"], "kod": ["--no-xcf"]}


def demo(d: DemoContext) -> list[Service]:
    """One simulated radar site per code on its port slot, and the node reading them all."""
    feeds = {code: f"127.0.0.1:{d.ports[f'radar-{code}']}" for code in SITES}
    sims = [
        d.simulator(
            "radar",
            "--code",
            code,
            "--port",
            str(d.ports[f"radar-{code}"]),
            *options,
            name=f"radar-{code}",
            where=f"simulated radar site {code} on {feeds[code]}",
            listens=[d.listen(f"radar-{code}", f"radar simulator {code}")],
        )
        for code, options in SITES.items()
    ]
    node = d.node(
        "--radars",
        json.dumps(feeds),
        "--echo-db",
        d.path("superdarn", "echoes.sqlite"),
        where=f"node superdarn ({', '.join(SITES)})",
    )
    return [*sims, node]


KIND = NodeKind(
    name="superdarn",
    description="SuperDARN radars over TCP (Connex framing, DMAP): per-beam and per-scan products",
    settings=Settings,
    build="nodes.superdarn.node:build",
    simulators=(
        Simulator("radar", "nodes.superdarn.simulator", "a radar site's realtime feed", port=1401),
    ),
    demo=Demo(
        demo,
        simulator_ports=tuple(Port(f"radar-{code}", 14011 + i) for i, code in enumerate(SITES)),
    ),
    view="radars",
    replay=Command("superdarn", "nodes.superdarn.replay_command", "replay superdarn fitacf files"),
    readme="README.md",
)
