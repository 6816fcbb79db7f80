"""Real parts for the tests: a crossbar router from .venv-router on free ports,
redis-server on a free port, node processes, and WAMP sessions."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from autobahn.twisted.component import Component
from twisted.internet import defer

from obsmesh import secrets as mesh_secrets
from obsmesh import wamp as obsmesh_wamp
from obsmesh.cli import DEFAULT_PRINCIPALS
from obsmesh.router import REPO, hub_joins, render_config, start_router, wait_ready
from obsmesh.router import port_open as _port_open
from obsmesh.uris import valid_node_name

PYTHON = sys.executable

# One secrets file for the whole test session: every router authenticates
# backend services with it, and every process the tests start (and every
# in-process service reading the environment) derives its secret from it.
# Processes started by the tests that import this module reuse the same file.
# It names every principal (there is no wildcard): the local ones of a mesh,
# and each node name a test uses, admitted as the test creates that node's
# process or session (`admit`, `spawn`, `backend_credentials`, and every
# secret derived through `obsmesh.wamp.credentials` in a process that
# imported this module).
SECRETS_FILE = os.environ.get("OBSMESH_TEST_SECRETS_FILE", "")
if not SECRETS_FILE or not os.path.exists(SECRETS_FILE):
    SECRETS_FILE = os.path.join(tempfile.mkdtemp(prefix="obsmesh-secrets-"), "secrets.json")
    mesh_secrets.save(SECRETS_FILE, mesh_secrets.new(DEFAULT_PRINCIPALS))
os.environ["OBSMESH_TEST_SECRETS_FILE"] = SECRETS_FILE
os.environ["OBSMESH_SECRETS_FILE"] = SECRETS_FILE


def admit(*names: str, role: str = "node", secrets_file: str = SECRETS_FILE) -> None:
    """Make `names` principals of the test secrets file (with `role`), unless
    they are already (then they keep their role; the file is not rewritten)."""
    mesh_secrets.admit(secrets_file, {n: role for n in names})


def _admitting(credentials):
    """`obsmesh.wamp.credentials`, admitting a node name first when the secret
    is derived from the test secrets file (a session a test creates)."""

    def wrapper(settings, authid):
        path = settings.get("secrets_file") or ""
        derived = not (settings.get("secret") or settings.get("secret_file"))
        if derived and path and os.path.abspath(path) == os.path.abspath(SECRETS_FILE):
            if valid_node_name(authid):
                admit(authid)
        return credentials(settings, authid)

    return wrapper


obsmesh_wamp.credentials = _admitting(obsmesh_wamp.credentials)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n: int, lowest: int = 20000, highest: int | None = None) -> int:
    """A base port B with B .. B+n-1 all free now (for OBSMESH_PORT_BASE), below the
    ephemeral range, where the kernel would otherwise hand one of them to a client."""
    import random

    from obsmesh.procs import port_free

    if highest is None:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            highest = int(f.read().split()[0])
    for _ in range(200):
        base = random.randrange(lowest, highest - n)
        if all(port_free("127.0.0.1", p) for p in range(base, base + n)):
            return base
    raise RuntimeError(f"no {n} free ports in a row between {lowest} and {highest}")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll a condition (not a sleep standing in for synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def port_open(port: int) -> bool:
    return _port_open("127.0.0.1", port)


class Router:
    """A crossbar router in a temporary cbdir; ports stay the same across restarts."""

    def __init__(self, realm: str = "obsmesh", prefix: str = "obsmesh", **options) -> None:
        self.realm = realm
        self.prefix = prefix
        self.public_port = free_port()
        self.backend_port = free_port()
        options.setdefault("secrets_file", SECRETS_FILE)
        self.options = options
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="obsmesh-router-"))
        self.log = self.dir / "router.log"
        self.proc: subprocess.Popen | None = None

    @property
    def backend_url(self) -> str:
        return f"rs://127.0.0.1:{self.backend_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.public_port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}/"

    def env(self) -> dict[str, str]:
        """Environment for a service process pointed at this router."""
        env = dict(os.environ)
        env.update(
            OBSMESH_ROUTER_URL=self.backend_url,
            OBSMESH_PUBLIC_URL=self.ws_url,
            OBSMESH_REALM=self.realm,
            OBSMESH_PREFIX=self.prefix,
            OBSMESH_SECRETS_FILE=self.options["secrets_file"] or "",
            PYTHONPATH=str(REPO),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        joins = hub_joins(self.log)
        config = render_config(
            realm=self.realm,
            prefix=self.prefix,
            public_port=self.public_port,
            backend_port=self.backend_port,
            **self.options,
        )
        self.proc = start_router(self.dir / "cbdir", config, self.log)
        wait_ready(
            self.proc,
            self.log,
            [self.backend_port, self.public_port],
            joins,
            hosted_hub=self.options.get("host_hub", True),
            timeout=timeout,
        )

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        wait_for(lambda: not port_open(self.backend_port), 10, "the backend port to close")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="obsmesh-redis-")
        self.exe = exe
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 20, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def children() -> dict[int, list[int]]:
    """Every process's children, read from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            out.setdefault(ppid, []).append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    kids = children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def spawn(args: list[str], env: dict[str, str], log: pathlib.Path) -> subprocess.Popen:
    """A service process (`python -m obsmesh ...`) with its output in `log`; a
    node's name is admitted as a principal first."""
    if len(args) >= 2 and args[0] == "node" and env.get("OBSMESH_SECRETS_FILE") == SECRETS_FILE:
        admit(args[args.index("--name") + 1] if "--name" in args else args[1])
    return subprocess.Popen(
        [PYTHON, "-m", "obsmesh", *args],
        env=env,
        cwd=str(REPO),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def backend_credentials(
    authid: str = "tester", secrets_file: str | None = SECRETS_FILE
) -> dict | None:
    if not secrets_file:
        return None
    if valid_node_name(authid):
        admit(authid, secrets_file=secrets_file)
    return {
        "wampcra": {"authid": authid, "secret": mesh_secrets.load(secrets_file).secret_for(authid)}
    }


async def connect(
    url: str,
    realm: str = "obsmesh",
    serializer: str = "msgpack",
    timeout: float = 15.0,
    authentication: dict | None = None,
):
    """One WAMP session, joined (no reconnection: a test sees failures). On the
    backend transport it authenticates as the node `tester` unless told otherwise."""
    from twisted.internet import reactor

    from obsmesh.wamp import no_delay, transport

    spec = transport(url, serializer)
    spec["max_retries"] = 0
    if authentication is None and url.startswith(("rs://", "rss://")):
        authentication = backend_credentials()
    comp = no_delay(Component(transports=[spec], realm=realm, authentication=authentication or {}))
    joined: defer.Deferred = defer.Deferred()

    @comp.on_join
    def _(session, details):
        if not joined.called:
            joined.callback(session)

    done = comp.start(reactor)
    done.addErrback(lambda f: joined.errback(f) if not joined.called else None)
    joined.addTimeout(timeout, reactor)
    session = await joined
    session._test_component = comp
    return session


async def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Async polling inside the reactor (for conditions a test cannot subscribe to)."""
    from twisted.internet import reactor, task

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, defer.Deferred) or hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, interval, lambda: None)


class Up:
    """`obsmesh up` as a user runs it: its own state directory, its ports moved to
    `port_base`, its own secrets file (written on first use), output in up.log."""

    def __init__(self, directory: pathlib.Path, port_base: int, *args: str, **env: str) -> None:
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = self.dir / "state"
        self.port_base = port_base
        self.log = self.dir / "up.log"
        self.args = args
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OBSMESH_SECRETS_FILE", "OBSMESH_TEST_SECRETS_FILE")
        }
        self.env.update(OBSMESH_STATE_DIR=str(self.state), OBSMESH_PORT_BASE=str(port_base), **env)
        self.proc: subprocess.Popen | None = None

    @property
    def public_url(self) -> str:
        return f"ws://127.0.0.1:{self.port_base}/ws"

    def start(self) -> Up:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "obsmesh", "up", *self.args],
                cwd=str(self.dir),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_text(self, text: str, timeout: float = 240) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"obsmesh up exited ({self.proc.returncode}):\n{self.text()[-3000:]}"
                )
            return text in self.text()

        try:
            wait_for(seen, timeout, f"{text!r} from obsmesh up", interval=0.25)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.text()[-3000:]}") from None

    def obsmesh(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Another `obsmesh` command, run with this mesh's settings."""
        return subprocess.run(
            [PYTHON, "-m", "obsmesh", *args],
            cwd=str(self.dir),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def listed(self) -> set[str]:
        """The nodes the hub lists (asked anonymously over the public WebSocket)."""
        from consumers.client import Mesh

        try:
            # secret="": anonymous, whatever OBSMESH_SECRETS_FILE this test process has
            with Mesh(self.public_url, "obsmesh", timeout=10, secret="") as mesh:
                return {n["name"] for n in mesh.nodes()}
        except Exception:
            return set()

    def processes(self) -> list[int]:
        """The launcher and everything it started (alive, not zombies)."""
        return [p for p in process_tree(self.proc.pid) if alive(p)]

    def interrupt(self, timeout: float = 60) -> float:
        """Ctrl-C: the seconds until the launcher exited."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout)
        return time.monotonic() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                for p in self.processes():
                    os.kill(p, signal.SIGKILL)
                self.proc.wait(10)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
