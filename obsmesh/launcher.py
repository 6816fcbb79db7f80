"""`obsmesh up`: the whole local mesh, each service its own process.

The router (hosting the hub) starts first; then the simulators and the nodes.
A service that dies is restarted with a growing delay, so the demo keeps
running; Ctrl-C (or SIGTERM) stops everything, nodes before the router, so each
node can subtract itself and leave.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from obsmesh import router


@dataclass
class Service:
    name: str
    argv: list[str]
    where: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    log: Any = field(default=None, repr=False)


def services(settings: dict[str, Any], state: str) -> list[Service]:
    """Every service `obsmesh up` runs, in start order (the router is separate)."""
    py = [sys.executable, "-m", "obsmesh"]
    weather_dir = os.path.join(state, "weather")
    from nodes.co2.settings import endpoint_url, resolve

    co2_root = os.path.join(state, "co2")  # uploads, pings and the simulated units' tokens
    co2_url = endpoint_url(resolve(None, settings))
    dataflow_dir = os.path.join(state, "dataflow")
    radars = "sas,pgr,inv,cly,rkn"
    sd_sites = {"sas": 14011, "pgr": 14012, "rkn": 14013}  # simulated radar sites: code -> port
    sd_radars = json.dumps({code: f"127.0.0.1:{port}" for code, port in sd_sites.items()})
    sd_options = {
        "sas": [],
        "pgr": ["--scan-sign", "-1"],
        "rkn": ["--no-xcf"],
    }  # as real sites differ
    return [
        Service(
            "grafana", [*py, "grafana"], "Grafana JSON datasource bridge on http://127.0.0.1:5000/"
        ),
        Service(
            "weather-simulator", [*py, "simulate", "weather", weather_dir], f"writes {weather_dir}"
        ),
        Service("sensors", [*py, "node", "sensors"], "node sensors (this host)"),
        Service(
            "weather",
            [*py, "node", "weather", "--dir", weather_dir],
            f"node weather ({weather_dir})",
        ),
        Service(
            "co2",
            [*py, "node", "co2", "--data-root", co2_root],
            f"node co2, unit endpoint {co2_url}/",
        ),
        Service(
            "co2-simulator",
            [
                *py,
                "simulate",
                "co2",
                "--units",
                "5",
                "--data-root",
                co2_root,
                "--sd-dir",
                os.path.join(state, "co2-units"),
                co2_url,
            ],
            f"5 simulated CO2 units uploading to {co2_url}",
        ),
        # a cycle every 4 s (speed 1800), random failures, an injected few and a 40-s stop
        Service(
            "dataflow-simulator",
            [
                *py,
                "simulate",
                "dataflow",
                dataflow_dir,
                "--radars",
                radars,
                "--speed",
                "1800",
                "--antennas",
                "2",
                "--failure-rate",
                "0.03",
                "--inject",
                "connection@5:pgr",
                "--inject",
                "died@8:inv",
                "--stop",
                "rsync_to_campus@15:cly+10",
            ],
            f"writes {dataflow_dir} (a data-flow cycle every 4 s)",
        ),
        Service(
            "dataflow",
            [
                *py,
                "node",
                "dataflow",
                "--dir",
                dataflow_dir,
                "--radars",
                radars,
                "--period",
                "4",
                "--margin",
                "4",
            ],
            f"node dataflow ({dataflow_dir})",
        ),
        *[
            Service(
                f"radar-{code}",
                [*py, "simulate", "radar", "--code", code, "--port", str(port), *sd_options[code]],
                f"simulated radar site {code} on 127.0.0.1:{port}",
            )
            for code, port in sd_sites.items()
        ],
        Service(
            "superdarn",
            [
                *py,
                "node",
                "superdarn",
                "--radars",
                sd_radars,
                "--echo-db",
                os.path.join(state, "superdarn", "echoes.sqlite"),
            ],
            f"node superdarn ({', '.join(sd_sites)})",
        ),
        # das2 over the example readers; its das2.2 HTTP interface on the default address
        Service(
            "das2",
            [*py, "node", "das2", "--cache-dir", os.path.join(state, "das2-cache")],
            "node das2 (example readers), das2 HTTP on http://127.0.0.1:8091/",
        ),
        # Canadian radars over ZeroMQ: a simulated aggregator (the CANADA_ADDR feed) on 9696
        Service(
            "canada-simulator",
            [*py, "simulate", "canada", "--port", "9696", "--sites", radars],
            f"simulated Canadian aggregator (ZeroMQ PUB, {radars}) on 127.0.0.1:9696",
        ),
        Service(
            "canada",
            [
                *py,
                "node",
                "canada",
                "--addr",
                "127.0.0.1:9696",
                "--echo-db",
                os.path.join(state, "canada", "echoes.sqlite"),
            ],
            "node canada (ZeroMQ feed 127.0.0.1:9696)",
        ),
    ]


def _start(svc: Service, env: dict[str, str], logs: str) -> None:
    if svc.log is None:
        svc.log = open(os.path.join(logs, f"{svc.name}.log"), "ab")  # noqa: SIM115 - kept for the child's life
    svc.proc = subprocess.Popen(
        svc.argv,
        env=env,
        stdout=svc.log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def up(settings: dict[str, Any], args: argparse.Namespace | None = None) -> int:
    state = os.path.abspath(settings["state_dir"])
    logs = os.path.join(state, "logs")
    os.makedirs(logs, exist_ok=True)
    public = urlparse(settings["public_url"])
    backend = urlparse(settings["router_url"])
    router_log = os.path.join(logs, "router.log")
    joins = router.hub_joins(router_log)
    from obsmesh.cli import ensure_secrets, local_principals, router_config, secrets_path

    cbdir = os.path.join(state, "router")
    rendered = router_config(settings, public.hostname or "127.0.0.1")
    print(f"obsmesh: starting the router (log {router_log}) ...", flush=True)
    router_proc = router.start_router(cbdir, rendered, router_log)
    stopping = False

    def on_signal(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        router.wait_ready(router_proc, router_log, [public.port, backend.port], joins)
    except (RuntimeError, TimeoutError) as exc:
        print(f"obsmesh: the router did not start: {exc}", file=sys.stderr)
        _stop(router_proc)
        return 1
    env = dict(os.environ)
    env.update(
        OBSMESH_ROUTER_URL=settings["router_url"],
        OBSMESH_PUBLIC_URL=settings["public_url"],
        OBSMESH_REALM=settings["realm"],
        OBSMESH_PREFIX=settings["prefix"],
        OBSMESH_SECRETS_FILE=os.path.abspath(secrets_path(settings)),
    )
    svcs = services(settings, state)
    ensure_secrets(settings, local_principals([s.argv for s in svcs]))  # each node by name
    for svc in svcs:
        _start(svc, env, logs)
    http = f"http://{public.hostname}:{public.port}/"
    print("obsmesh is up:")
    print(f"  dashboard (browser)     {http}")
    print(f"  WAMP for consumers      {settings['public_url']}  realm {settings['realm']}")
    print(f"  WAMP for services       {settings['router_url']}")
    for svc in svcs:
        print(f"  {svc.name:<22}  {svc.where}")
    print(f"  logs                    {logs}")
    print("Ctrl-C stops everything.", flush=True)
    try:
        while not stopping:
            time.sleep(0.2)
            if router_proc.poll() is not None:
                print(
                    f"obsmesh: the router exited ({router_proc.returncode}); restarting it",
                    flush=True,
                )
                joins = router.hub_joins(router_log)
                router_proc = router.start_router(cbdir, rendered, router_log)
            now = time.monotonic()
            for svc in svcs:
                if svc.proc is not None and svc.proc.poll() is not None and not stopping:
                    svc.restarts += 1
                    delay = min(30.0, 0.5 * 2 ** min(svc.restarts, 6))
                    print(
                        f"obsmesh: {svc.name} exited ({svc.proc.returncode}); restarting in {delay:.1f} s",
                        flush=True,
                    )
                    svc.proc, svc.next_start = None, now + delay
                if svc.proc is None and now >= svc.next_start and not stopping:
                    _start(svc, env, logs)
    finally:
        print("obsmesh: stopping ...", flush=True)
        for svc in reversed(svcs):
            _stop(svc.proc)
        _stop(router_proc)
        print("obsmesh: stopped.", flush=True)
    return 0
