"""The simulated deployment of the multi-host lane, built as an operator would.

    site A (10.77.1.0/24)                              site B (10.77.2.0/24)
    n1 a-n1 ─┐                                      ┌─ cb  consumer
    n2 a-n2 ─┼─ ra  router + hub ══ WAN ══ rb  router + hub
    c  consumer ┘    (10.77.0.1)   10.77.0.0/30  (10.77.0.2)  b-one (on rb)

Each host is a network namespace (tests/netns.py). The site routers run
`obsmesh router` with the mesh's certificate (TLS on every transport), their
own secrets file and a `[site]` section linking them (crossbar realm links).
Node hosts run a node and a local redis-server (the node's history store);
they get nothing from the router host but their own secret (`obsmesh secrets
show NAME` there) and the CA certificate to trust. Consumer hosts run the
Python client (tests/hosts/probe.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

from obsmesh.router import REPO, hub_joins
from tests.netns import Host, Link, Net, netem_available

PYTHON = sys.executable
PUBLIC, BACKEND, LINKS = 18080, 18081, 18443
REDIS_PORT = 16379
SITES = {"a": "10.77.1", "b": "10.77.2"}
WAN = {"a": "10.77.0.1", "b": "10.77.0.2"}


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of the test session's secrets leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSMESH_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def obsmesh(host: Host, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", host.ns, PYTHON, "-m", "obsmesh", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"obsmesh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def json_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
    return out


def wait(predicate, timeout: float, what: str, interval: float = 0.1) -> float:
    """Wait for a condition; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class Router:
    """One site's router host: `obsmesh router` with TLS, secrets and site links."""

    def __init__(self, lane: Lane, site: str, host: Host) -> None:
        self.lane, self.site, self.host = lane, site, host
        self.addr = f"{SITES[site]}.1"
        self.dir = lane.dir / f"r{site}"
        self.dir.mkdir()
        self.cbdir = self.dir / "cbdir"
        self.secrets = self.dir / "secrets.json"
        self.log = self.dir / "router.log"
        self.conf = self.dir / "obsmesh.toml"
        self.proc: subprocess.Popen | None = None
        self.env = base_env()
        obsmesh(host, "secrets", "init", "--file", str(self.secrets), env=self.env)
        self.key = obsmesh(host, "router", "--show-key", "--cbdir", str(self.cbdir), env=self.env)

    @property
    def ws_url(self) -> str:
        return f"wss://{self.addr}:{PUBLIC}/ws"

    @property
    def backend_url(self) -> str:
        return f"rss://{self.addr}:{BACKEND}"

    def add_node(self, name: str) -> str:
        """The node principal, and its secret (what the operator carries to the node host)."""
        obsmesh(self.host, "secrets", "add", name, "--file", str(self.secrets), env=self.env)
        return obsmesh(
            self.host, "secrets", "show", name, "--file", str(self.secrets), env=self.env
        )

    def configure(self, peers: list[Router]) -> None:
        c = self.lane.certs
        peer_lines = ",\n  ".join(f'"{p.site} wss://{p.addr}:{LINKS}/ {p.key}"' for p in peers)
        self.conf.write_text(
            f"""realm = "obsmesh"
public_url = "{self.ws_url}"
router_url = "{self.backend_url}"
secrets_file = "{self.secrets}"
tls_cert = "{c / "server.pem"}"
tls_key = "{c / "server.key"}"
tls_ca = "{c / "ca.pem"}"

[router]
backend_tls = true

[site]
name = "{self.site}"
link_port = {LINKS}
peers = [
  {peer_lines}
]
"""
        )

    def start(self) -> None:
        joins = hub_joins(self.log)
        self.proc = self.host.spawn(
            [
                PYTHON,
                "-m",
                "obsmesh",
                "router",
                "--config",
                str(self.conf),
                "--host",
                self.addr,
                "--cbdir",
                str(self.cbdir),
            ],
            self.env,
            self.log,
            cwd=REPO,
        )
        wait(lambda: hub_joins(self.log) > joins or self.proc.poll() is not None, 90, "the router")
        if self.proc.poll() is not None:
            raise RuntimeError(f"router {self.site} exited:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        # crossbar's workers are children of its controller: gone with the group


class Lane:
    def __init__(self, root: pathlib.Path) -> None:
        self.dir = root
        self.net = Net()
        self.procs: dict[str, subprocess.Popen] = {}
        self.emulators: dict[str, subprocess.Popen] = {}
        self.netem = netem_available()
        self.figures: dict[str, Any] = {}
        n = self.net
        self.ra, self.rb = n.host("ra"), n.host("rb")
        self.n1, self.n2, self.c, self.cb = n.host("n1"), n.host("n2"), n.host("c"), n.host("cb")
        self.ra.bridge("br0", f"{SITES['a']}.1/24")
        self.rb.bridge("br0", f"{SITES['b']}.1/24")
        self.links: dict[str, Link] = {}
        for host, site, last in ((self.n1, "a", 11), (self.n2, "a", 12), (self.c, "a", 21)):
            self._attach(host, self.ra, f"{SITES[site]}.{last}/24")
        self._attach(self.cb, self.rb, f"{SITES['b']}.21/24")
        self.links["wan"] = n.link(
            self.ra, f"{WAN['a']}/30", self.rb, f"{WAN['b']}/30", "wan", "wan"
        )
        self.links["wan"].route(self.ra, f"{SITES['b']}.0/24", "via", WAN["b"])
        self.links["wan"].route(self.rb, f"{SITES['a']}.0/24", "via", WAN["a"])
        # One development CA; the routers' certificate names both router addresses.
        self.certs = self.dir / "certs"
        obsmesh(
            self.ra,
            "certs",
            str(self.certs),
            "--host",
            f"{SITES['a']}.1",
            "--host",
            f"{SITES['b']}.1",
            env=base_env(),
        )
        self.router_a = Router(self, "a", self.ra)
        self.router_b = Router(self, "b", self.rb)
        self.router_a.configure([self.router_b])
        self.router_b.configure([self.router_a])

    def _attach(self, host: Host, router: Host, addr: str) -> None:
        link = self.net.link(host, addr, router, "", "eth0", f"p-{host.name}")
        link.enslave_b("br0")
        self.links[host.name] = link

    # -- processes ------------------------------------------------------------
    def spawn(self, key: str, host: Host, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.dir / f"{key}.log"
        proc = host.spawn(argv, env, log, cwd=REPO)
        self.procs[key] = proc
        return proc

    def log(self, key: str) -> pathlib.Path:
        return self.dir / f"{key}.log"

    def start_node(self, host: Host, router: Router, name: str, redis: bool = True) -> None:
        secret = router.add_node(name)
        env = base_env(
            OBSMESH_ROUTER_URL=router.backend_url,
            OBSMESH_SECRET=secret,
            OBSMESH_TLS_CA=str(self.certs / "ca.pem"),
            OBSMESH_STATE_DIR=str(self.dir / name),
            # a dead path is noticed in 15 s (3 x 5 s): well within the 30 s cut
            OBSMESH_HEARTBEAT="5",
        )
        if redis:
            rdir = self.dir / f"redis-{name}"
            rdir.mkdir()
            self.spawn(
                f"redis-{name}",
                host,
                [
                    shutil.which("redis-server") or "redis-server",
                    "--port",
                    str(REDIS_PORT),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(rdir),
                ],
                env,
            )
            env.update(OBSMESH_STORE="redis", OBSMESH_REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0")
        self.spawn(name, host, [PYTHON, "-m", "tests.hosts.ticker", "--name", name], env)

    def consumer(self, key: str, host: Host, router: Router, *args: str) -> pathlib.Path:
        env = base_env(OBSMESH_TLS_CA=str(self.certs / "ca.pem"))
        self.spawn(key, host, [PYTHON, "-m", "tests.hosts.probe", router.ws_url, *args], env)
        return self.log(key)

    def stop(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)

    def history(self, host: Host, router: Router, node: str) -> dict[str, list]:
        key = f"history-{node}-{time.monotonic_ns()}"
        self.consumer(key, host, router, "history", node, "k")
        wait(lambda: self.procs[key].poll() is not None, 60, f"the history of {node}")
        lines = json_lines(self.log(key))
        if not lines:
            raise RuntimeError(self.log(key).read_text()[-2000:])
        return lines[-1]

    def status(self, host: Host, router: Router, node: str) -> dict:
        """The node's get_status, asked from `host` (what a test reports when it fails)."""
        key = f"status-{node}-{time.monotonic_ns()}"
        self.consumer(key, host, router, "status", node)
        wait(lambda: self.procs[key].poll() is not None, 60, f"the status of {node}")
        lines = [x for x in json_lines(self.log(key)) if "status" in x]
        return lines[-1]["status"] if lines else {"error": self.log(key).read_text()[-2000:]}

    # -- the network ---------------------------------------------------------
    def impair(self, name: str, delay: float, loss: float) -> str:
        """Delay and loss, both ways, on one host's link; returns what did it."""
        link = self.links[name]
        if self.netem:
            for host, dev in ((link.a, link.a_dev), (link.b, link.b_dev)):
                args = ["qdisc", "add", "dev", dev, "root", "netem"]
                args += ["delay", f"{delay * 1000:.0f}ms", "loss", f"{loss * 100:g}%"]
                done = host.run(["tc", *args])
                if not done.ok:
                    raise RuntimeError(done.stderr)
            return "tc netem"
        # No netem in this kernel: a cable emulator on the host's port of the site switch.
        router = link.b
        emu = router.spawn(
            [
                PYTHON,
                "-m",
                "tests.linkemu",
                "imp0",
                "imp1",
                "--delay",
                str(delay),
                "--loss",
                str(loss),
            ],
            base_env(),
            self.dir / f"linkemu-{name}.log",
            cwd=REPO,
        )
        self.emulators[name] = emu
        wait(lambda: "ready" in (self.dir / f"linkemu-{name}.log").read_text(), 20, "linkemu")
        router.ip("link", "add", "br-imp", "type", "bridge")
        for dev, master in (("imp0", "br-imp"), (link.b_dev, "br-imp"), ("imp1", "br0")):
            router.ip("link", "set", dev, "master", master)
        for dev in ("imp0", "imp1", "br-imp"):
            router.ip("link", "set", dev, "up")
        return "tests/linkemu.py (this kernel has no netem)"

    def clear(self, name: str) -> None:
        link = self.links[name]
        if self.netem:
            for host, dev in ((link.a, link.a_dev), (link.b, link.b_dev)):
                host.run(["tc", "qdisc", "del", "dev", dev, "root"])
            return
        emu = self.emulators.pop(name)
        link.b.ip("link", "set", link.b_dev, "master", "br0")
        link.b.ip("link", "del", "br-imp")
        os.killpg(emu.pid, 15)
        emu.wait(10)

    def close(self) -> None:
        for key in list(self.procs):
            self.stop(key)
        for r in (self.router_a, self.router_b):
            r.stop()
        self.net.close()
