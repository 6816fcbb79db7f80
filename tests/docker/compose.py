"""docker-compose.yml read the way `docker compose` reads it, for the Docker SDK
(pure functions: no Docker, no I/O but reading the file).

The Docker test lane brings the stack up with the Docker SDK, not the compose
plugin (which a machine may lack): this module interpolates `${VAR}` forms,
orders services by `depends_on`, and turns each service into the arguments of
`client.containers.create`. It understands exactly the keys in `SERVICE_KEYS`;
tests/test_compose.py checks that the compose file uses no other, so the lane
never silently drops a setting `docker compose` would apply.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "volumes",
    "ports",
    "depends_on",
    "healthcheck",
    "restart",
}
TOP_KEYS = {"name", "services", "volumes"}  # and `x-*` extension fields (anchors)
BUILD_KEYS = {"context", "dockerfile", "args"}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?$", re.S)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class ComposeError(ValueError):
    pass


# -- interpolation -------------------------------------------------------------
def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}` (`:` also treats an empty value as unset)."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        b = _BRACED.match(m.group("braced"))
        if b is None:
            raise ComposeError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = b.group("name"), b.group("op"), b.group("arg")
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return interpolate(arg, env) if unset else value
        if op in (":?", "?"):
            if unset:
                raise ComposeError(f"{name} is required: {arg or 'not set'}")
            return value
        return value or ""

    return _VAR.sub(one, text)


def _walk(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_walk(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, env) for k, v in value.items()}
    return value


def load(path: str | os.PathLike, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file, anchors merged and every value interpolated from `env`."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise ComposeError(f"{path}: no services")
    return _walk({k: v for k, v in raw.items() if not str(k).startswith("x-")}, env)


def port_variables(path: str | os.PathLike) -> list[str]:
    """The variables that set published host ports (`IP:${X_PORT:-n}:n`), so a second stack can move them."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    out = []
    for svc in (raw.get("services") or {}).values():
        for port in svc.get("ports") or []:
            m = re.fullmatch(
                r"(?:\$\{\w+(?::-[^}]*)?\}|[^:$]+):\$\{(\w+)(?::-\d+)?\}:\d+(?:/\w+)?", str(port)
            )
            if m is None:
                raise ComposeError(
                    f"published port {port!r}: write the host port as ${{NAME_PORT:-n}}"
                )
            out.append(m.group(1))
    return out


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """A compose `.env` file: KEY=VALUE lines, # comments, optional quotes."""
    out: dict[str, str] = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()  # noqa: SIM115
    except FileNotFoundError:
        return out
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip().removeprefix("export ").strip()] = value
    return out


# -- structure -----------------------------------------------------------------
def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """`depends_on` as {service: condition} (the list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Services so that each comes after what it depends on (file order otherwise)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ComposeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in services:
            raise ComposeError(f"{path[-1] if path else '?'} depends on unknown service {name!r}")
        state[name] = "visiting"
        for dep in depends_on(services[name]):
            visit(dep, (*path, name))
        state[name] = "done"
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def duration(text: Any) -> int:
    """A compose duration (`10s`, `1m30s`, `500ms`) in nanoseconds, as the Engine API wants."""
    if isinstance(text, int | float):
        return int(text * 1e9)
    s = str(text).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ComposeError(f"not a duration: {text!r}")
    return int(total * 1e9)


@dataclass(frozen=True)
class Image:
    tag: str
    context: str
    dockerfile: str
    args: dict[str, str]


def images(spec: Mapping[str, Any], project_dir: str) -> list[Image]:
    """The images to build, once each (several services share the app image)."""
    out: dict[str, Image] = {}
    for name, svc in spec["services"].items():
        build = svc.get("build")
        if build is None:
            raise ComposeError(f"service {name}: no build (every image is built from Dockerfiles/)")
        tag = svc.get("image") or f"{spec.get('name', 'obsmesh')}-{name}"
        image = Image(
            tag,
            os.path.normpath(os.path.join(project_dir, build.get("context", "."))),
            build["dockerfile"],
            {k: str(v) for k, v in (build.get("args") or {}).items()},
        )
        if tag in out and out[tag] != image:
            raise ComposeError(f"image {tag} is built two different ways")
        out[tag] = image
    return list(out.values())


def _port(text: str) -> tuple[str, tuple[str, int]]:
    """`IP:HOST:CONTAINER` (or `HOST:CONTAINER`) to the SDK's {"C/tcp": (ip, host)}."""
    parts = str(text).split(":")
    if len(parts) == 2:
        parts = ["0.0.0.0", *parts]
    if len(parts) != 3:
        raise ComposeError(f"port {text!r}: expected IP:HOST:CONTAINER")
    ip, host, container = parts
    proto = "tcp"
    if "/" in container:
        container, proto = container.split("/", 1)
    return f"{int(container)}/{proto}", (ip, int(host))


def _volume(text: str, project: str, project_dir: str) -> tuple[str, dict[str, str]]:
    parts = str(text).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ComposeError(f"volume {text!r}: expected SOURCE:TARGET[:ro|rw]")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if source.startswith((".", "/", "~")):
        source = os.path.abspath(os.path.join(project_dir, os.path.expanduser(source)))
    else:
        source = f"{project}_{source}"
    return source, {"bind": target, "mode": mode}


def healthcheck(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A compose healthcheck as the Engine API's; None keeps the image's."""
    if not spec:
        return None
    if spec.get("disable"):
        return {"test": ["NONE"]}
    out: dict[str, Any] = {}
    if "test" in spec:
        test = spec["test"]
        out["test"] = ["CMD-SHELL", test] if isinstance(test, str) else list(test)
    for key in ("interval", "timeout", "start_period"):
        if key in spec:
            out[key] = duration(spec[key])
    if "retries" in spec:
        out["retries"] = int(spec["retries"])
    return out


def container_args(
    project: str, name: str, svc: Mapping[str, Any], project_dir: str
) -> dict[str, Any]:
    """Keyword arguments of `client.containers.create` for one service (network set by the caller)."""
    unknown = set(svc) - SERVICE_KEYS
    if unknown:
        raise ComposeError(f"service {name}: keys the lane does not handle: {sorted(unknown)}")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    kwargs: dict[str, Any] = {
        "image": svc.get("image") or f"{project}-{name}",
        "name": f"{project}-{name}-1",
        "hostname": name,
        "environment": {k: "" if v is None else str(v) for k, v in env.items()},
        "labels": {
            "com.docker.compose.project": project,
            "com.docker.compose.service": name,
            "obsmesh.lane": project,
        },
        "detach": True,
    }
    if "command" in svc:
        kwargs["command"] = (
            list(svc["command"]) if isinstance(svc["command"], list) else svc["command"]
        )
    if "entrypoint" in svc:
        kwargs["entrypoint"] = svc["entrypoint"]
    if svc.get("restart"):
        kwargs["restart_policy"] = {"Name": svc["restart"]}
    ports = dict(_port(p) for p in svc.get("ports") or [])
    if ports:
        kwargs["ports"] = ports
    volumes = dict(_volume(v, project, project_dir) for v in svc.get("volumes") or [])
    if volumes:
        kwargs["volumes"] = volumes
    hc = healthcheck(svc.get("healthcheck"))
    if hc is not None:
        kwargs["healthcheck"] = hc
    return kwargs


def named_volumes(spec: Mapping[str, Any], project: str) -> list[str]:
    return [f"{project}_{v}" for v in (spec.get("volumes") or {})]
