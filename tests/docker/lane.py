"""The Docker test lane (`make test-docker`; never part of `make test`).

With the Docker SDK and a reachable Docker engine it builds the images of
docker-compose.yml, brings the whole stack up under a project name of its own
(its own network, volumes and free host ports, so a stack already running is
left alone), and checks:

1. every container with a health check turns healthy (each asks its service);
2. the hub lists every node the compose file runs (through the Grafana bridge);
3. Grafana has the obsmesh datasource and a dashboard per node kind, and the
   datasource answers a query with data through Grafana itself;
4. after the router container restarts, every node is listed again and new
   samples flow (the nodes reconnect and re-announce);

then tears everything down, whatever happened. Exit status 0 only when every
check passed; 2 when no Docker engine is reachable (it says so).

    .venv/bin/python -m tests.docker.lane [--keep] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import pathlib
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from tests.docker import compose

REPO = pathlib.Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROBE_TARGET = "weather::temperature"  # a field with a sample a second, from the first minute on


class LaneFailure(Exception):
    pass


class Fatal(LaneFailure):
    """No point in waiting longer (a container exited)."""


def say(text: str) -> None:
    print(f"[docker lane {time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float, what: str, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Fatal:
            raise
        except (OSError, ValueError, LaneFailure) as exc:
            last_error = exc
        time.sleep(interval)
    raise LaneFailure(
        f"timed out after {timeout:.0f} s waiting for {what}"
        + (f" ({last_error})" if last_error else "")
    )


def http_json(
    url: str, body: Any = None, auth: tuple[str, str] | None = None, timeout: float = 15.0
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout
        ) as response:  # our own stack, on loopback
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise LaneFailure(
            f"{url}: HTTP {exc.code}: {exc.read(500).decode('utf-8', 'replace')}"
        ) from None


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def node_names(spec: dict[str, Any]) -> list[str]:
    """Every node the compose file runs: `node KIND [--name NAME]`."""
    out = []
    for svc in spec["services"].values():
        cmd = svc.get("command") or []
        if isinstance(cmd, list) and len(cmd) >= 2 and cmd[0] == "node":
            name = cmd[cmd.index("--name") + 1] if "--name" in cmd else cmd[1]
            out.append(name)
    return sorted(out)


class Stack:
    """The compose stack brought up with the Docker SDK under one project name."""

    def __init__(self, client, spec: dict[str, Any], project: str) -> None:
        self.client = client
        self.spec = spec
        self.project = project
        self.network = f"{project}_default"
        self.containers: dict[str, Any] = {}

    def build(self) -> None:
        for image in compose.images(self.spec, str(REPO)):
            say(f"building {image.tag} from {image.dockerfile} ...")
            started = time.monotonic()
            try:
                self.client.images.build(
                    path=image.context,
                    dockerfile=image.dockerfile,
                    tag=image.tag,
                    buildargs=image.args or None,
                    rm=True,
                    forcerm=True,
                    pull=True,
                )
            except Exception as exc:  # BuildError carries the build log
                log = "".join(
                    str(chunk.get("stream", chunk.get("error", "")))
                    for chunk in getattr(exc, "build_log", [])
                )
                raise LaneFailure(f"building {image.tag} failed: {exc}\n{log[-4000:]}") from None
            say(f"built {image.tag} in {time.monotonic() - started:.0f} s")

    def up(self, timeout: float) -> None:
        labels = {"obsmesh.lane": self.project}
        self.client.networks.create(self.network, driver="bridge", labels=labels)
        for volume in compose.named_volumes(self.spec, self.project):
            self.client.volumes.create(name=volume, labels=labels)
        services = self.spec["services"]
        for name in compose.start_order(services):
            for dep, condition in compose.depends_on(services[name]).items():
                if condition == "service_healthy":
                    wait(
                        lambda d=dep: self.health(d) == "healthy",
                        timeout,
                        f"{dep} healthy (before {name})",
                    )
            kwargs = compose.container_args(self.project, name, services[name], str(REPO))
            endpoint = self.client.api.create_endpoint_config(aliases=[name])
            container = self.client.containers.create(
                network=self.network, networking_config={self.network: endpoint}, **kwargs
            )
            self.containers[name] = container
            container.start()
            say(f"started {name}")

    def health(self, name: str) -> str:
        container = self.containers[name]
        container.reload()
        if container.status in ("exited", "dead"):
            tail = container.logs(tail=40).decode("utf-8", "replace")
            raise Fatal(f"{name} is {container.status}:\n{tail}")
        state = container.attrs["State"]
        return (state.get("Health") or {}).get("Status", "none")

    def logs(self, name: str, lines: int = 60) -> str:
        return self.containers[name].logs(tail=lines).decode("utf-8", "replace")

    def down(self) -> None:
        flt = {"label": f"obsmesh.lane={self.project}"}
        for container in self.client.containers.list(all=True, filters=flt):
            try:
                container.remove(force=True, v=True)
            except Exception as exc:
                say(f"could not remove {container.name}: {exc}")
        for network in self.client.networks.list(filters=flt):
            try:
                network.remove()
            except Exception as exc:
                say(f"could not remove network {network.name}: {exc}")
        for volume in self.client.volumes.list(filters=flt):
            try:
                volume.remove(force=True)
            except Exception as exc:
                say(f"could not remove volume {volume.name}: {exc}")


def check_healthy(stack: Stack, timeout: float) -> None:
    with_checks = [n for n in stack.containers if stack.health(n) != "none"]
    for name in with_checks:
        try:
            wait(lambda n=name: stack.health(n) == "healthy", timeout, f"{name} healthy")
        except LaneFailure as exc:
            health = stack.containers[name].attrs["State"].get("Health", {})
            last = (health.get("Log") or [{}])[-1].get("Output", "")
            raise LaneFailure(f"{exc}\nlast health check: {last}\n{stack.logs(name)}") from None
    say(f"healthy: {', '.join(sorted(with_checks))}")


def listed(bridge: str, expected: list[str]) -> list[str]:
    nodes = http_json(bridge + "/").get("nodes", [])
    missing = sorted(set(expected) - set(nodes))
    if missing:
        raise LaneFailure(f"not listed yet: {missing}")
    return nodes


def newest_sample(bridge: str, target: str, since: float) -> float | None:
    now = time.time()
    body = {
        "range": {"from": iso(since), "to": iso(now + 5)},
        "maxDataPoints": 500,
        "targets": [{"refId": "A", "target": target}],
    }
    frames = http_json(bridge + "/query", body)
    times = [p[1] / 1000.0 for f in frames for p in f.get("datapoints", []) if p[0] is not None]
    return max(times) if times else None


def check_grafana(grafana: str, auth: tuple[str, str], kinds: list[str], timeout: float) -> str:
    wait(
        lambda: http_json(grafana + "/api/health").get("database") == "ok",
        timeout,
        "Grafana's /api/health",
    )
    ds = http_json(grafana + "/api/datasources/uid/obsmesh", auth=auth)
    if ds.get("type") != "simpod-json-datasource":
        raise LaneFailure(f"the obsmesh datasource has type {ds.get('type')!r}")
    boards = {b.get("uid") for b in http_json(grafana + "/api/search?type=dash-db", auth=auth)}
    missing = sorted(f"obsmesh-{k}" for k in kinds if f"obsmesh-{k}" not in boards)
    if missing:
        raise LaneFailure(f"dashboards not provisioned: {missing}")

    def answered() -> str | None:
        # A backend datasource answers /api/ds/query; a frontend-only one is reached
        # through Grafana's datasource proxy. Either way Grafana itself carries the query.
        query = {
            "refId": "A",
            "datasource": {"uid": "obsmesh", "type": "simpod-json-datasource"},
            "target": PROBE_TARGET,
            "payload": "",
            "maxDataPoints": 100,
            "intervalMs": 1000,
        }
        try:
            reply = http_json(
                grafana + "/api/ds/query",
                {"queries": [query], "from": "now-5m", "to": "now"},
                auth=auth,
            )
            frames = reply.get("results", {}).get("A", {}).get("frames", [])
            if any(
                v for f in frames for col in f.get("data", {}).get("values", [])[1:] for v in col
            ):
                return "/api/ds/query"
        except LaneFailure:
            pass
        now = time.time()
        body = {
            "range": {"from": iso(now - 300), "to": iso(now)},
            "maxDataPoints": 100,
            "targets": [{"refId": "A", "target": PROBE_TARGET}],
        }
        frames = http_json(grafana + "/api/datasources/proxy/uid/obsmesh/query", body, auth=auth)
        if any(p[0] is not None for f in frames for p in f.get("datapoints", [])):
            return "the datasource proxy"
        return None

    path = wait(answered, timeout, f"Grafana's datasource to answer {PROBE_TARGET} with data")
    return path


def run(args: argparse.Namespace) -> int:
    try:
        import docker
    except ImportError:
        say("the Docker SDK is not installed (pip install docker); cannot run the Docker lane")
        return 2
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        say(
            f"no Docker engine is reachable ({exc}). Start one, or point DOCKER_HOST at one; "
            "nothing was tested."
        )
        return 2
    env = {**compose.read_env_file(REPO / ".env"), **os.environ}
    env.update({v: str(free_port()) for v in compose.port_variables(COMPOSE_FILE)})
    env.update(
        BIND_ADDRESS="127.0.0.1",
        CO2_BIND_ADDRESS="127.0.0.1",
        IMAGE_TAG="lane",
        GRAFANA_ADMIN_PASSWORD=secrets.token_urlsafe(16),
    )
    spec = compose.load(COMPOSE_FILE, env)
    project = f"obsmesh-lane-{os.getpid()}"
    stack = Stack(client, spec, project)
    bridge = f"http://127.0.0.1:{env['BRIDGE_PORT']}"
    grafana = f"http://127.0.0.1:{env['GRAFANA_PORT']}"
    expected = node_names(spec)
    kinds = sorted(
        {
            svc["command"][1]
            for svc in spec["services"].values()
            if isinstance(svc.get("command"), list) and svc["command"][:1] == ["node"]
        }
    )
    failures = 0
    try:
        stack.build()
        say(f"bringing the stack up as {project} ...")
        stack.up(args.timeout)
        check_healthy(stack, args.timeout)
        nodes = wait(lambda: listed(bridge, expected), args.timeout, f"the hub to list {expected}")
        say(f"listed by the hub: {', '.join(nodes)}")
        path = check_grafana(grafana, ("admin", env["GRAFANA_ADMIN_PASSWORD"]), kinds, args.timeout)
        say(f"Grafana's obsmesh datasource answered {PROBE_TARGET} through {path}")

        say("restarting the router container ...")
        restarted = time.time()
        stack.containers["router"].restart(timeout=20)
        wait(lambda: stack.health("router") == "healthy", args.timeout, "the router healthy again")
        wait(
            lambda: listed(bridge, expected),
            args.timeout,
            "every node listed again after the restart",
        )
        newest = wait(
            lambda: (t := newest_sample(bridge, PROBE_TARGET, restarted)) and t > restarted and t,
            args.timeout,
            "samples newer than the restart",
        )
        say(
            f"recovered: every node listed again, {PROBE_TARGET} has a sample "
            f"{newest - restarted:.1f} s after the restart"
        )
        check_healthy(stack, args.timeout)
    except LaneFailure as exc:
        failures += 1
        say(f"FAILED: {exc}")
    except Exception as exc:  # the Docker API itself failing is a failure of the lane, said plainly
        failures += 1
        say(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        if args.keep and failures:
            say(
                f"--keep: leaving {project} up for a look (docker ps --filter label=obsmesh.lane={project})"
            )
        else:
            say("tearing down ...")
            stack.down()
    say("passed" if not failures else "failed")
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.docker.lane", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for each wait (default 300)"
    )
    parser.add_argument("--keep", action="store_true", help="leave a failed stack up to inspect it")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
