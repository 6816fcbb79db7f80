"""The container stack, checked without Docker (always part of `make test`).

- docker-compose.yml is valid: every image is built from a Dockerfile in
  Dockerfiles/, the Docker lane understands every key, ports are bound to
  loopback by default;
- every command is a real `obsmesh` subcommand (`--help` accepts it and the
  parser takes the whole command line);
- every variable a service reads is a real setting with a valid value, and is
  documented;
- the Dockerfiles run as non-root users, ask the service in their health
  checks and bake in no secret;
- Grafana's provisioning points at the bridge, and every dashboard's targets
  name fields the matching node really serves: each node kind the stack runs
  is started here (with its simulator) through a real router, the dashboard
  variables are resolved by the real bridge, and each target is checked
  against the node's get_fields and queried;
- the health checks (`python -m obsmesh.health`) ask real services.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
import pytest_twisted
import yaml
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, threads

from obsmesh import config, health, kinds
from obsmesh import layout as layout_mod
from tests.docker import compose
from tests.harness import (
    PYTHON,
    REPO,
    connect,
    free_port,
    free_port_range,
    spawn,
    stop_process,
    wait_until,
)

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILES = REPO / "Dockerfiles"
DOCS = [REPO / "Dockerfiles" / "README.md", REPO / "README.md"]
GRAFANA = REPO / "grafana"
# Per-dashboard variables that may resolve to nothing on some hosts (said so in their description).
MAY_BE_EMPTY = "may be empty"


def spec(env: dict | None = None) -> dict:
    return compose.load(COMPOSE, env or {})


def dockerfile_of(svc: dict) -> pathlib.Path:
    return REPO / svc["build"].get("context", ".") / svc["build"]["dockerfile"]


def instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions (continuation lines joined, comments dropped)."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def image_entrypoint(path: pathlib.Path) -> tuple[list[str] | None, list[str] | None]:
    entry = cmd = None
    for word, rest in instructions(path):
        if word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
    return entry, cmd


def obsmesh_image(svc: dict) -> bool:
    return image_entrypoint(dockerfile_of(svc))[0] == ["obsmesh"]


def argv_of(svc: dict) -> list[str]:
    """What the container runs: entrypoint + command, the image's where the service sets none."""
    entry, cmd = image_entrypoint(dockerfile_of(svc))
    entry = svc.get("entrypoint", entry) or []
    cmd = svc.get("command", cmd if "entrypoint" not in svc else []) or []
    return [*entry, *cmd]


def node_services(s: dict) -> dict[str, tuple[str, str]]:
    """service -> (kind, node name) for every `obsmesh node KIND` in the stack."""
    out = {}
    for name, svc in s["services"].items():
        argv = argv_of(svc)
        if argv[:2] == ["obsmesh", "node"]:
            args = argv[3:]
            out[name] = (argv[2], args[args.index("--name") + 1] if "--name" in args else argv[2])
    return out


def docs_text() -> str:
    return "\n".join(p.read_text() for p in DOCS if p.exists())


# -- the compose file ---------------------------------------------------------------
def test_every_image_is_built_from_a_dockerfile_in_dockerfiles():
    s = spec()
    assert s["services"], "no services"
    for name, svc in s["services"].items():
        assert "build" in svc, f"{name}: no build"
        assert svc["build"].get("context", ".") == ".", (
            f"{name}: the build context must be the repository"
        )
        path = dockerfile_of(svc)
        assert path.parent == DOCKERFILES and path.exists(), (
            f"{name}: {path} is not a Dockerfile in Dockerfiles/"
        )
        assert svc.get("image"), f"{name}: name the image it builds"
    # one image, one Dockerfile (the lane builds each once)
    assert len(compose.images(s, str(REPO))) == len(
        {dockerfile_of(v) for v in s["services"].values()}
    )


def test_the_lane_understands_every_key_and_the_start_order_holds():
    raw = yaml.safe_load(COMPOSE.read_text())
    assert set(k for k in raw if not k.startswith("x-")) <= compose.TOP_KEYS
    s = spec()
    for name, svc in s["services"].items():
        assert set(svc) <= compose.SERVICE_KEYS, (
            f"{name}: {sorted(set(svc) - compose.SERVICE_KEYS)}"
        )
        assert set(svc["build"]) <= compose.BUILD_KEYS, name
        assert set(svc.get("healthcheck") or {}) <= compose.HEALTHCHECK_KEYS, name
        for dep, condition in compose.depends_on(svc).items():
            assert condition in compose.CONDITIONS, f"{name} -> {dep}: {condition}"
            if condition == "service_healthy":
                dep_svc = s["services"][dep]
                has_check = any(w == "HEALTHCHECK" for w, _ in instructions(dockerfile_of(dep_svc)))
                assert has_check and not (dep_svc.get("healthcheck") or {}).get("disable"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no health check"
                )
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in s["volumes"], f"{name}: volume {source} is not declared"
        compose.container_args("p", name, svc, str(REPO))  # raises on anything it cannot translate
    order = compose.start_order(s["services"])
    assert order.index("router") < min(order.index(n) for n in node_services(s))


def test_ports_are_bound_to_loopback_unless_told_otherwise():
    published = [p for svc in spec()["services"].values() for p in svc.get("ports") or []]
    assert published
    # each host port a variable (the lane moves them all to free ports)
    assert len(set(compose.port_variables(COMPOSE))) == len(published)
    assert all(p.split(":")[0] == "127.0.0.1" for p in published), published
    opened = [
        p
        for svc in spec({"BIND_ADDRESS": "0.0.0.0", "CO2_BIND_ADDRESS": "0.0.0.0"})[
            "services"
        ].values()
        for p in svc.get("ports") or []
    ]
    assert all(p.split(":")[0] == "0.0.0.0" for p in opened), opened


def test_no_secret_in_the_compose_file():
    raw = yaml.safe_load(COMPOSE.read_text())  # before interpolation
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        assert not {"OBSMESH_SECRET", "OBSMESH_SECRET_FILE"} & set(env), (
            f"{name}: a secret in the environment"
        )
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key) and key != "OBSMESH_SECRETS_FILE":
                assert str(value).startswith("${"), (
                    f"{name}: {key} must come from the environment, not the file"
                )
    # every service that talks WAMP gets the secrets volume read-only; the router alone writes it
    for name, svc in spec()["services"].items():
        mounts = [v for v in svc.get("volumes") or [] if v.startswith("secrets:")]
        if name == "router":
            assert mounts == ["secrets:/var/lib/obsmesh/secrets"]
        elif "OBSMESH_SECRETS_FILE" in (svc.get("environment") or {}):
            assert mounts == ["secrets:/var/lib/obsmesh/secrets:ro"], name
        else:
            assert not mounts, f"{name}: mounts the secrets but does not use them"


def test_compose_interpolation_like_docker_compose():
    env = {"A": "x", "EMPTY": ""}
    assert compose.interpolate("${A}-$A-$$A", env) == "x-x-$A"
    assert compose.interpolate("${B:-d}|${EMPTY:-d}|${EMPTY-d}|${B-d}", env) == "d|d||d"
    assert compose.interpolate("${A:?need A}", env) == "x"
    with pytest.raises(compose.ComposeError, match="need B"):
        compose.interpolate("${B:?need B}", env)
    assert compose.duration("1m30s") == 90 * 10**9 and compose.duration("250ms") == 250 * 10**6
    with pytest.raises(compose.ComposeError):
        compose.duration("ten seconds")
    with pytest.raises(compose.ComposeError, match="cycle"):
        compose.start_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": {"a": {}}}})
    args = compose.container_args(
        "p",
        "s",
        {
            "image": "i",
            "ports": ["127.0.0.1:1:2"],
            "volumes": ["v:/x:ro", "/proc:/host/proc:ro"],
            "healthcheck": {"disable": True},
        },
        "/r",
    )
    assert args["ports"] == {"2/tcp": ("127.0.0.1", 1)}
    assert args["volumes"] == {
        "p_v": {"bind": "/x", "mode": "ro"},
        "/proc": {"bind": "/host/proc", "mode": "ro"},
    }
    assert args["healthcheck"] == {"test": ["NONE"]}
    with pytest.raises(compose.ComposeError, match="does not handle"):
        compose.container_args("p", "s", {"image": "i", "privileged": True}, "/r")


# -- commands ------------------------------------------------------------------
def _commands() -> dict[tuple[str, ...], str]:
    """Each distinct obsmesh command line of the stack -> a service running it."""
    out = {}
    for name, svc in spec()["services"].items():
        if not obsmesh_image(svc):
            assert "command" not in svc and "entrypoint" not in svc, (
                f"{name}: a command nothing checks"
            )
            continue
        argv = argv_of(svc)
        out.setdefault(tuple(argv), name)
    return out


def _subcommand_path(args: list[str]) -> list[str]:
    return args[:2] if args and args[0] in ("node", "simulate", "replay") else args[:1]


def _parse(parser, args: list[str]) -> tuple[int | str | None, str]:
    """Run argparse on a command line: (exit code or None if it parsed, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            return exc.code, out.getvalue()
    return None, out.getvalue()


@pytest.mark.slow  # measured 4.6 s
@pytest.mark.router  # starts its own processes
def test_every_command_is_a_real_obsmesh_subcommand():
    from obsmesh import cli

    commands = _commands()
    assert commands
    for argv, service in commands.items():
        assert argv[:1] == ("obsmesh",), f"{service}: runs {list(argv)}, not an obsmesh command"
        args = list(argv[1:])
        # the whole command line parses (options, choices, types), exactly as `obsmesh` will parse it
        code, said = _parse(cli.build_parser(), args)
        assert code is None, f"{service}: obsmesh {shlex.join(args)}: exit {code}: {said}"
        # and `--help` of that command line is the subcommand's own help
        code, said = _parse(cli.build_parser(), [*args, "--help"])
        usage = "usage: obsmesh " + " ".join(_subcommand_path(args))
        assert code == 0 and said.startswith(usage), (
            f"{service}: {shlex.join(args)} --help: {said[:300]!r}"
        )
    # the entry point itself, once, as a container runs it
    argv, service = next(iter(commands.items()))
    done = subprocess.run(
        [PYTHON, "-m", "obsmesh", *argv[1:], "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: obsmesh"), done.stderr[-2000:]


# -- environment -------------------------------------------------------------------
def known_settings() -> dict[str, tuple[dict, str | None]]:
    """Every OBSMESH_* variable a service reads -> (its defaults, its section): the mesh's,
    the bridge's, the router's own sections, and each registered node kind's settings class."""

    from consumers.grafana import cli as bridge_cli
    from obsmesh import router_layout, sites

    out: dict[str, tuple[dict, str | None]] = {
        f"OBSMESH_{k.upper()}": (config.MESH_DEFAULTS, None) for k in config.MESH_DEFAULTS
    }
    sections: dict[str, dict] = {
        "grafana": bridge_cli.DEFAULTS,
        "router": router_layout.ROUTER_DEFAULTS,
        "site": sites.SITE_DEFAULTS,
    }
    for kind in kinds.registry().kinds():
        sections[kind.name] = kind.settings.defaults()
    for section, defaults in sections.items():
        for key in defaults:
            out[f"OBSMESH_{section.upper()}_{key.upper()}"] = (defaults, section)
    return out


def test_every_variable_a_service_reads_is_a_setting_with_a_valid_value():
    from nodes.superdarn.node import load_radars

    known = known_settings()
    nodes = node_services(spec())
    for name, svc in spec()["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if not key.startswith("OBSMESH_"):
                continue
            assert key in known, (
                f"{name}: {key} is not a setting of obsmesh.config or of a node kind"
            )
            defaults, section = known[key]
            config.settings(
                defaults, section, path="", environ={key: str(value)}
            )  # ConfigError if bad
            if section is not None:  # a node kind's setting on a service running that kind
                command = argv_of(svc)[1:2]
                runs = nodes.get(name, (None,))[0] or (
                    {"grafana": "grafana", "router": "router"}.get(command[0]) if command else None
                )
                if section == "site":  # a site link is the router's too
                    section = "router"
                assert runs == section, f"{name}: sets {key} but does not run a {section} service"
            if key == "OBSMESH_SUPERDARN_RADARS":
                assert load_radars(value), f"{name}: no radar in {value!r}"


def test_every_variable_is_documented():
    text = docs_text()
    raw = json.dumps(
        yaml.safe_load(COMPOSE.read_text())
    )  # values before interpolation, no comments
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw))
    for svc in spec()["services"].values():
        names |= set(svc.get("environment") or {})
    assert names
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, (
        f"not documented in {', '.join(str(p.relative_to(REPO)) for p in DOCS)}: {missing}"
    )


# -- Dockerfiles ---------------------------------------------------------------------
def _resolved_from(path: pathlib.Path) -> str:
    """The final stage's base image, ARG defaults applied."""
    args, base = {}, ""
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            args.setdefault(k.strip(), v.strip())
        elif word == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), rest.split()[0])
    return base


def test_dockerfiles_run_as_non_root_ask_the_service_and_bake_in_no_secret():
    paths = sorted({dockerfile_of(svc) for svc in spec()["services"].values()})
    ignore = (REPO / ".dockerignore").read_text().split()
    for must in (
        ".env",
        ".obsmesh",
        "**/secrets.json",
        "secrets.env",
        ".venv",
        ".venv-router",
        ".git",
    ):
        assert must in ignore, f".dockerignore must keep {must} out of every image"
    for path in paths:
        steps = instructions(path)
        users = [rest for word, rest in steps if word == "USER"]
        assert users and users[-1] not in ("root", "0"), f"{path.name}: runs as root"
        assert any(word == "HEALTHCHECK" for word, _ in steps), f"{path.name}: no HEALTHCHECK"
        for word, rest in steps:
            if word in ("ENV", "ARG"):
                assert not re.search(r"(SECRET|PASSWORD|TOKEN)\w*\s*=", rest, re.I), (
                    f"{path.name}: {word} {rest}"
                )
            if word == "COPY" and "--from=" not in rest:
                for source in json.loads(rest)[:-1] if rest.startswith("[") else rest.split()[:-1]:
                    assert not re.search(r"secret|\.obsmesh|\.env", source), (
                        f"{path.name}: COPY {source}"
                    )
                    assert (REPO / source).exists(), (
                        f"{path.name}: COPY {source}: no such file in the repository"
                    )
    for path in (DOCKERFILES / "app.Dockerfile", DOCKERFILES / "router.Dockerfile"):
        assert _resolved_from(path).startswith("python:3.11-slim"), path.name
        check = next(rest for word, rest in instructions(path) if word == "HEALTHCHECK")
        assert check.endswith('CMD ["python", "-m", "obsmesh.health"]'), f"{path.name}: {check}"
    makefile = (REPO / "Makefile").read_text()
    version = re.search(r"^CROSSBAR_VERSION := (\S+)", makefile, re.M).group(1)
    assert f"ARG CROSSBAR_VERSION={version}" in (DOCKERFILES / "router.Dockerfile").read_text(), (
        "the router image must run the crossbar the Makefile installs"
    )


# -- Grafana provisioning ---------------------------------------------------------------
def _datasource() -> dict:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "obsmesh.yaml").read_text())
    (ds,) = doc["datasources"]
    return ds


def _dashboards() -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def _targets(dash: dict) -> list[tuple[str, dict, str | None]]:
    """(target text, payload, repeat variable) of every panel query and annotation query; a
    panel repeats by its own `repeat` or by that of the repeated row it sits under."""
    out = []
    row_repeat = None
    for panel in dash.get("panels", []):
        if panel.get("type") == "row":
            row_repeat = panel.get("repeat")
            inner = panel.get("panels") or []  # a collapsed row keeps its panels inside
        else:
            inner = [panel]
        for p in inner:
            for t in p.get("targets", []):
                payload = t.get("payload") or {}
                payload = json.loads(payload) if isinstance(payload, str) else payload
                out.append((t["target"], payload, p.get("repeat") or row_repeat))
    for anno in dash.get("annotations", {}).get("list", []):
        if "target" in anno and isinstance(anno["target"], dict):
            out.append((anno["target"]["target"], {}, None))
    return out


def test_grafana_is_provisioned_with_the_bridge_and_one_dashboard_per_node_kind():
    s = spec()
    ds = _datasource()
    grafana_df = (DOCKERFILES / "grafana.Dockerfile").read_text()
    assert f"plugins install {ds['type']}" in grafana_df, (
        "the datasource's plugin is not installed in the image"
    )
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", ds["url"]).groups()
    bridge = s["services"][host]
    argv = argv_of(bridge)
    assert argv[:2] == ["obsmesh", "grafana"], f"{host} is not the bridge"
    assert argv[argv.index("--port") + 1] == port
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "obsmesh.yaml").read_text()
    )
    (prov,) = provider["providers"]
    assert f"COPY grafana/dashboards/ {prov['options']['path']}/" in grafana_df
    assert "COPY grafana/provisioning/ /etc/grafana/provisioning/" in grafana_df

    kinds = {kind for kind, _ in node_services(s).values()}
    boards = _dashboards()
    assert set(boards) == kinds, (
        f"dashboards {sorted(boards)} vs node kinds in the stack {sorted(kinds)}"
    )
    assert len({d["uid"] for d in boards.values()}) == len(boards)
    for kind, dash in boards.items():
        assert dash["uid"] == f"obsmesh-{kind}"
        refs = re.findall(
            r'"datasource": \{"type": "([^"]+)", "uid": "([^"]+)"\}', json.dumps(dash)
        )
        assert refs and {r for r in refs if r[0] != "grafana"} == {(ds["type"], ds["uid"])}, kind
        names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
        for text, _, repeat in _targets(dash):
            for var, fmt in re.findall(r"\$\{(\w+)(?::(\w+))?\}", text):
                # all of a variable's values as {a,b}, or the one value of a panel repeated by it
                assert var in names, f"{kind}: {text}: no variable {var}"
                assert fmt == "glob" or (fmt == "raw" and var == repeat), (
                    f"{kind}: {text}: write ${{{var}:glob}}, or ${{{var}:raw}} in a panel repeated by {var}"
                )
            assert not re.search(r"\$(?!\{)", text), (
                f"{kind}: {text}: write variables as ${{var:glob}}"
            )
        for i, v in enumerate(dash.get("templating", {}).get("list", [])):
            for var, fmt in re.findall(r"\$\{(\w+)(?::(\w+))?\}", v.get("regex", "")):
                assert var in names[:i] and fmt == "regex", (
                    f"{kind}: variable {v['name']}: regex uses {var}"
                )


# -- health checks (pure) ------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            [
                "/app/.venv-router/bin/python",
                "/app/.venv-router/bin/crossbar",
                "start",
                "--cbdir",
                "/x",
            ],
            health.Check("router"),
        ),
        (
            [
                "/app/.venv/bin/python",
                "/app/.venv/bin/obsmesh",
                "node",
                "weather",
                "--dir",
                "/var/lib/obsmesh",
            ],
            health.Check("node", "weather"),
        ),
        (
            ["python", "-m", "obsmesh", "--config", "/c.toml", "node", "superdarn", "--name=sas"],
            health.Check("node", "sas", "/c.toml"),
        ),
        (
            ["/sbin/docker-init", "--", "obsmesh", "node", "co2", "--name", "a", "--name", "b"],
            health.Check("node", "b"),
        ),
        (
            ["python", "-m", "consumers.grafana", "--host", "0.0.0.0", "--port", "5001"],
            health.Check("http", "http://127.0.0.1:5001/"),
        ),
        (["obsmesh", "grafana"], health.Check("http", "http://127.0.0.1:5000/")),
        (
            ["obsmesh", "simulate", "radar", "--code", "pgr", "--port", "1402"],
            health.Check("tcp", "127.0.0.1:1402"),
        ),
        (
            ["obsmesh", "simulate", "canada", "--host", "0.0.0.0"],
            health.Check("tcp", "127.0.0.1:9696"),
        ),
        (["obsmesh", "hub"], health.Check("hub")),
    ],
)
def test_health_check_is_chosen_from_the_command_line(argv, expected):
    assert health.detect(argv, {}) == expected


def test_health_knows_the_ports_simulators_listen_on():
    import importlib

    ports = health.simulator_ports()
    assert ports, "no simulator declares a port"
    for name, (_, sim) in kinds.registry().simulators().items():
        parser = argparse.ArgumentParser()
        importlib.import_module(sim.module).configure(parser)
        assert parser.get_default("port") == ports.get(name), name


def test_health_check_of_a_service_that_serves_nothing_says_so():
    check = health.detect(["obsmesh", "simulate", "weather", "/data"], {})
    assert check.kind == "none" and "simulate weather" in check.target
    assert health.detect(["redis-server"], {}).kind == "none"
    assert health.detect(
        ["python", "-m", "consumers.grafana"], {"OBSMESH_GRAFANA_PORT": "5002"}
    ).target.endswith(":5002/")
    with pytest.raises(health.HealthError, match="simulate weather"):
        health.run_check(check)


# -- the node kinds of the stack, for real -------------------------------------------
@dataclass
class Demo:
    """Every node kind the stack runs, each under the name the stack gives it, fed by its simulator."""

    names: dict[str, str]  # kind -> node name
    procs: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    radar_ports: list[int] = field(default_factory=list)  # ports the simulators listen on

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
            for p in self.logs
            if p.exists()
        )


def _takes(simulator: str, flag: str) -> bool:
    """Whether `obsmesh simulate SIMULATOR` has the option `flag`."""
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(kinds.registry().simulators()[simulator][1].module).configure(parser)
    return flag in parser._option_string_actions


@pytest.fixture(scope="module")
def demo(router, tmp_path_factory):
    """The stack's node kinds as `obsmesh up` runs them (each kind's demo recipe, read from
    the registry), against the test router, in a temporary state directory on free ports."""
    services = node_services(spec())
    names = {kind: name for kind, name in services.values()}
    with_demo = {k.name for k in kinds.registry().kinds() if k.demo is not None}
    assert set(names) <= with_demo, (
        f"node kinds of the stack with no demo recipe to start them by: {sorted(set(names) - with_demo)}"
    )
    tmp = tmp_path_factory.mktemp("demo")
    mesh = config.mesh(
        environ={},
        state_dir=str(tmp),
        router_url=router.backend_url,
        public_url=router.ws_url,
        port_base=free_port_range(64),
    )
    lay = layout_mod.local(mesh, sorted(names))
    env = router.env()
    d = Demo(names)
    for svc in lay.services:
        if svc.role not in (layout_mod.NODE, layout_mod.SIMULATOR):
            continue  # the test router and the test's own bridge stand in for the layout's
        argv = list(svc.argv)
        if svc.role == layout_mod.NODE and names[svc.kind] != svc.node:
            argv += ["--name", names[svc.kind]]
        if svc.role == layout_mod.SIMULATOR:
            d.radar_ports.extend(x.port for x in svc.listens)
            if "--speed" not in argv and _takes(svc.argv[1], "--speed"):
                argv += ["--speed", "40"]  # every dashboard panel gets data within the wait
        log = tmp / f"{svc.name}.log"
        d.logs.append(log)
        d.procs.append(spawn(argv, env, log))
    yield d
    for proc in d.procs:  # all at once: each node leaves the hub gracefully, concurrently
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in reversed(d.procs):
        stop_process(proc)


async def _http(url: str, body=None) -> tuple[int, object]:
    from twisted.internet import reactor
    from twisted.web.client import Agent, FileBodyProducer, readBody
    from twisted.web.http_headers import Headers

    data = None if body is None else json.dumps(body).encode()
    headers = Headers({b"content-type": [b"application/json"]})
    d = Agent(reactor).request(
        b"GET" if body is None else b"POST",
        url.encode(),
        headers,
        None if data is None else FileBodyProducer(io.BytesIO(data)),
    )
    d.addTimeout(30, reactor)
    response = await d
    raw = await readBody(response)
    return response.code, json.loads(raw) if raw else None


async def _bridge(router):
    from twisted.internet import reactor

    from consumers.grafana import cli as bridge_cli

    mesh = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
    )
    bridge, port = bridge_cli.serve(
        mesh, {**bridge_cli.DEFAULTS, "port": 0, "query_timeout": 10.0}, reactor
    )
    return bridge, port, f"http://127.0.0.1:{port.getHost().port}"


def _grafana_regex(regex: str, values: dict[str, list[str]]) -> re.Pattern:
    """A variable's `/.../` regex, with `${var:regex}` as Grafana writes a multi-value variable."""

    def sub(m: re.Match) -> str:
        vals = values.get(m.group(1)) or []
        return (
            "(" + "|".join(re.escape(v) for v in vals) + ")"
            if len(vals) != 1
            else re.escape(vals[0])
        )

    body = re.fullmatch(r"/(.*)/([a-z]*)", regex, re.S)
    pattern = re.sub(r"\$\{(\w+):regex\}", sub, body.group(1))
    return re.compile(pattern, re.I if "i" in body.group(2) else 0)


def _glob(text: str, values: dict[str, list[str]]) -> str:
    """`${var:glob}` as Grafana writes the variable's "All": `{a,b}`, or `a` alone."""

    def sub(m: re.Match) -> str:
        vals = values[m.group(1)]
        return vals[0] if len(vals) == 1 else "{" + ",".join(vals) + "}"

    return re.sub(r"\$\{(\w+):glob\}", sub, text)


async def _dashboard_problems(
    url: str, session, prefix: str, kind: str, name: str, dash: dict
) -> list[str]:
    """What would not draw: variables that resolve to nothing, targets naming fields the node does not serve."""
    from consumers.grafana import protocol
    from obsmesh.uris import Uris

    problems: list[str] = []
    now = time.time()
    rng = {"from": _iso(now - 3600), "to": _iso(now + 60)}
    values: dict[str, list[str]] = {}
    for var in dash.get("templating", {}).get("list", []):
        code, listing = await _http(
            url + "/variable", {"payload": {"target": var["query"]["query"]}, "range": rng}
        )
        if code != 200:
            problems.append(f"{kind}: variable {var['name']}: /variable answered {code}: {listing}")
            continue
        pattern = _grafana_regex(var.get("regex") or "/.*/", values)
        found = []
        for option in listing:
            m = pattern.search(option["__text"])
            if m:
                found.append(m.group(1) if m.groups() else option["__text"])
        values[var["name"]] = list(dict.fromkeys(found))
        if not found and MAY_BE_EMPTY not in var.get("description", ""):
            problems.append(
                f"{kind}: variable {var['name']} ({var['query']['query']} {var['regex']}) has no value"
            )
    try:
        fields, timelines = await session.call(Uris(prefix).get_fields(name), -3600, now + 60)
    except ApplicationError as exc:  # not started yet, or broken
        return [*problems, f"{kind}: node {name}: get_fields: {exc.error}"]
    queries = []
    for text, payload, repeat in _targets(dash):
        names = re.findall(r"\$\{(\w+):(?:glob|raw)\}", text)
        if any(not values.get(v) for v in names):
            continue  # an empty optional variable: Grafana draws nothing and asks nothing
        # a repeated panel once per value of its variable, as Grafana repeats it
        for one in values[repeat] if repeat in names else [None]:
            target = _glob(
                text.replace(f"${{{repeat}:raw}}", one) if one is not None else text, values
            )
            for node, fname in protocol.split_target(target):
                if node != name:
                    problems.append(
                        f"{kind}: {text}: node {node!r}, but the stack's {kind} node is {name!r}"
                    )
                elif fname == protocol.EVENTS:
                    continue
                elif fname == protocol.WILDCARD:
                    if payload.get("timeline") not in timelines:
                        problems.append(
                            f"{kind}: {text}: no timeline {payload.get('timeline')!r} in {sorted(timelines)}"
                        )
                elif fname not in fields:
                    problems.append(
                        f"{kind}: {target}: {node} serves no field {fname!r} (has {len(fields)} fields)"
                    )
            queries.append(
                {
                    "refId": f"Q{len(queries)}",
                    "target": target,
                    "payload": payload,
                    **({"type": "table"} if target.endswith(protocol.EVENTS) else {}),
                }
            )
    if not problems:  # and the bridge draws each of them
        code, frames = await _http(
            url + "/query", {"range": rng, "maxDataPoints": 200, "targets": queries}
        )
        if code != 200:
            problems.append(f"{kind}: /query answered {code}: {frames}")
        else:
            for q in queries:
                if q.get("type") == "table":
                    continue
                points = sum(
                    len(f.get("datapoints", [])) for f in frames if f.get("refId") == q["refId"]
                )
                if not points:
                    problems.append(f"{kind}: {q['target']}: no data in the last hour")
    return problems


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest_twisted.ensureDeferred
async def test_every_dashboard_target_names_a_field_the_node_serves(router, demo):
    session = await connect(router.backend_url)
    bridge, port, url = await _bridge(router)
    boards = _dashboards()
    problems: list[str] = ["not checked yet"]

    async def all_drawn() -> bool:
        for proc in demo.procs:
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"a demo process exited with {proc.returncode}:\n{demo.tail()}")
        problems[:] = []
        for kind, dash in boards.items():
            problems.extend(
                await _dashboard_problems(url, session, router.prefix, kind, demo.names[kind], dash)
            )
        return not problems

    try:
        await wait_until(all_drawn, 90, "every dashboard to draw", interval=1.0)
    except TimeoutError:
        pytest.fail("dashboards that would not draw:\n" + "\n".join(problems) + "\n" + demo.tail())
    finally:
        await port.stopListening()
        await bridge.stop()
        session.leave()


def _health(*args: str, env: dict) -> defer.Deferred:
    return threads.deferToThread(
        subprocess.run,
        [PYTHON, "-m", "obsmesh.health", *args, "--timeout", "10"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest_twisted.ensureDeferred
async def test_health_checks_ask_the_real_services(router, demo):
    session = await connect(router.backend_url)
    name = demo.names["sensors"]

    async def listed() -> bool:
        return name in [
            n["name"] for n in await session.call(f"{router.prefix}.consumer.get_data_node")
        ]

    await wait_until(listed, 30, f"{name} listed")
    session.leave()
    bridge, port, url = await _bridge(router)
    env = router.env()
    try:
        await wait_until(lambda: bridge.connected, 20, "the bridge connected")
        checks = {
            "node": ("node", name),
            "no such node": ("node", "nosuchnode"),
            "router": ("router",),
            "hub": ("hub",),
        }
        results = await defer.gatherResults([_health(*args, env=env) for args in checks.values()])
        done = dict(zip(checks, results, strict=True))
        for what in ("node", "router", "hub"):
            assert done[what].returncode == 0 and done[what].stdout.startswith("ok: "), (
                what,
                done[what],
            )
        assert f"node {name}: answers get_status, listed by the hub" in done["node"].stdout
        assert done["no such node"].returncode == 1, done["no such node"]
        # a node that is not a principal is refused at the door (there is no wildcard)
        assert done["no such node"].stdout.startswith("unhealthy: the router refused the session")
        assert "no principal 'nosuchnode'" in done["no such node"].stdout
        # without the secrets the router refuses the check's session: unhealthy, and why
        bare = {k: v for k, v in env.items() if k != "OBSMESH_SECRETS_FILE"}
        refused = await _health("node", name, env=bare)
        assert refused.returncode == 1 and "the router refused the session" in refused.stdout, (
            refused
        )
        # HTTP and TCP checks need no reactor of their own
        assert (await threads.deferToThread(health.check_http, url + "/", 10)).endswith(
            "answered 200"
        )
        assert "accepts connections" in await threads.deferToThread(
            health.check_tcp, f"127.0.0.1:{demo.radar_ports[0]}", 10
        )
        with pytest.raises(health.HealthError, match="refused"):
            await threads.deferToThread(health.check_tcp, f"127.0.0.1:{free_port()}", 10)
        with pytest.raises(health.HealthError, match="404"):
            await threads.deferToThread(health.check_http, url + "/no-such-page", 10)
    finally:
        await port.stopListening()
        await bridge.stop()


@pytest.mark.router  # starts its own processes
def test_the_lane_says_so_and_fails_without_an_engine():
    env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.docker.lane"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no Docker engine is reachable" in done.stdout and "nothing was tested" in done.stdout


def test_the_stack_router_renders_its_configuration(tmp_path):
    """The router service's command and environment give a configuration the router
    accepts: its backend on the container's network (0.0.0.0) with authentication,
    plain only because the stack says every interface there is private."""
    from obsmesh import router, router_layout
    from obsmesh import secrets as mesh_secrets

    svc = spec()["services"]["router"]
    argv = argv_of(svc)
    host = argv[argv.index("--host") + 1]
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    layout = config.settings(router_layout.ROUTER_DEFAULTS, "router", path="", environ=env)
    secrets = tmp_path / "secrets.json"
    mesh_secrets.save(str(secrets), mesh_secrets.new({}))
    with pytest.raises(ValueError, match="backend_plain"):
        router.render_config(host=host, secrets_file=str(secrets))  # without the stack's word
    cfg = router.render_config(
        host=host, secrets_file=str(secrets), backend_plain=layout["backend_plain"]
    )
    backend = next(t for t in cfg["workers"][0]["transports"] if t["id"] == "backend")
    assert backend["endpoint"]["interface"] == "0.0.0.0" and "wampcra" in backend["auth"]
    published = [p for p in svc["ports"] if p.endswith(":8081")]
    assert published and all(p.startswith("127.0.0.1:") for p in published)  # the host: loopback
