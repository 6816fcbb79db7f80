"""Simulated hosts on this one machine: Linux network namespaces joined by veth
links (Debian's iproute2: `ip netns`, `ip link`; `tc netem` where the kernel has it).

Every namespace is named `omh-<pid>-<n>-<host>` (so runs and test sessions never
collide) and deleted on `Net.close()`, at interpreter exit, and by the next run
if this process died before it could: `sweep()` removes namespaces whose pid is
gone. The host's own interfaces and routes are never touched: both ends of
every veth pair are created inside the namespaces.

A `Host` runs processes inside its namespace (`ip netns exec`); a `Link` is one
veth pair that can be cut, healed and impaired.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

_counter = itertools.count()
_live: list[Net] = []


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "the multi-host lane needs root (network namespaces): run it as root"
    if shutil.which("ip") is None:
        return "the multi-host lane needs `ip` from iproute2 (apt-get install iproute2)"
    name = f"omh-{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here ({made.stderr.strip()}): no network namespaces"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def netem_available() -> bool:
    """Whether the kernel has the netem queueing discipline (many VM kernels lack it)."""
    net = Net()
    try:
        h = net.host("probe")
        return h.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).ok
    finally:
        net.close()


def sweep() -> None:
    """Remove namespaces left by runs of this lane whose process is gone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        m = re.match(r"^(omh-(\d+)-\S+)", line)
        if m and not pathlib.Path(f"/proc/{m.group(2)}").exists():
            _delete_namespace(m.group(1))


class Done:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Net:
    """A set of hosts and links, all removed by `close()`."""

    def __init__(self) -> None:
        self.tag = f"omh-{os.getpid()}-{next(_counter)}"
        self.hosts: list[Host] = []
        self.links: list[Link] = []
        _live.append(self)

    def host(self, name: str) -> Host:
        host = Host(self, name)
        self.hosts.append(host)
        return host

    def link(
        self, a: Host, a_addr: str, b: Host, b_addr: str, a_dev: str = "", b_dev: str = ""
    ) -> Link:
        """A veth pair between `a` and `b` with addresses like "10.77.0.1/30" ("" for none)."""
        link = Link(a, a_dev or a.next_dev(), b, b_dev or b.next_dev())
        _ip(
            "link",
            "add",
            link.a_dev,
            "netns",
            a.ns,
            "type",
            "veth",
            "peer",
            "name",
            link.b_dev,
            "netns",
            b.ns,
        )
        self.links.append(link)
        for host, dev, addr in ((a, link.a_dev, a_addr), (b, link.b_dev, b_addr)):
            if addr:
                host.ip("addr", "add", addr, "dev", dev)
            host.ip("link", "set", dev, "up")
        return link

    def close(self) -> None:
        for host in self.hosts:
            host.kill_all()
        for host in self.hosts:
            _delete_namespace(host.ns)
        self.hosts = []
        if self in _live:
            _live.remove(self)


class Host:
    """One simulated host: a network namespace with loopback up."""

    def __init__(self, net: Net, name: str) -> None:
        self.net = net
        self.name = name
        self.ns = f"{net.tag}-{name}"
        self._devs = itertools.count()
        self.procs: list[subprocess.Popen] = []
        _ip("netns", "add", self.ns)
        self.ip("link", "set", "lo", "up")

    def next_dev(self) -> str:
        return f"eth{next(self._devs)}"

    def ip(self, *args: str) -> None:
        _ip("-n", self.ns, *args)

    def run(self, args: Sequence[str], timeout: float = 60) -> Done:
        """Run a command in this host and wait for it."""
        return Done(
            subprocess.run(
                ["ip", "netns", "exec", self.ns, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        )

    def spawn(
        self,
        args: Sequence[str],
        env: dict[str, str],
        log: pathlib.Path,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.Popen:
        """A long-running process in this host (its own process group)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *args],
            env=env,
            cwd=cwd,
            stdout=open(log, "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def bridge(self, name: str, addr: str) -> str:
        """A bridge (the site's LAN switch) with this host's address on it."""
        self.ip("link", "add", name, "type", "bridge")
        self.ip("addr", "add", addr, "dev", name)
        self.ip("link", "set", name, "up")
        return name

    def kill_all(self) -> None:
        """Every process started in this host, by pid (ours: the namespace is ours)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        self.procs = []
        _kill_pids_in(self.ns)


class Link:
    """One veth pair; `cut()` takes both ends down (a pulled cable), `heal()` undoes it."""

    def __init__(self, a: Host, a_dev: str, b: Host, b_dev: str) -> None:
        self.a, self.a_dev, self.b, self.b_dev = a, a_dev, b, b_dev
        self.routes: list[tuple[Host, tuple[str, ...]]] = []

    def route(self, host: Host, *args: str) -> None:
        """A static route over this link (a device taken down loses its routes:
        `heal()` puts them back, as a host's network configuration would)."""
        host.ip("route", "replace", *args)
        self.routes.append((host, args))

    def cut(self) -> None:
        self.a.ip("link", "set", self.a_dev, "down")
        self.b.ip("link", "set", self.b_dev, "down")

    def heal(self) -> None:
        self.a.ip("link", "set", self.a_dev, "up")
        self.b.ip("link", "set", self.b_dev, "up")
        for host, args in self.routes:
            host.ip("route", "replace", *args)

    def enslave_b(self, bridge: str) -> None:
        """Plug the `b` end into a bridge of host `b` (the site switch)."""
        self.b.ip("link", "set", self.b_dev, "master", bridge)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _kill_pids_in(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _delete_namespace(ns: str) -> None:
    _kill_pids_in(ns)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if done.returncode == 0 or "No such file" in done.stderr:
            return
        time.sleep(0.1)


@atexit.register
def _close_all() -> None:
    for net in list(_live):
        net.close()
