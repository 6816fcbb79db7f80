"""`obsmesh up`: the whole local mesh, each service its own process.

What runs is the layout (obsmesh/layout.py): the router hosting the hub, the
Grafana bridge, and every node kind's demo recipe. A run:

1. takes the state directory's lock (one launcher per state directory) and
   stops what an earlier run of that directory left behind: the services its
   launcher.json names, and a crossbar still running from STATE/router (else
   crossbar refuses: "already running from node directory");
2. checks every port of the layout and names whatever holds one;
3. starts the reaper (obsmesh/reaper.py), then the router, waits until it
   listens and its hub has joined, then starts everything else at once;
4. supervises: a service that exits is restarted after a delay that doubles
   with each short run and starts over once the service has run well for
   STABLE_AFTER seconds; "obsmesh is up" is printed once every service is up
   (nodes listed by the hub, listeners listening), else after --wait seconds a
   line names each service that has not joined;
5. on Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops everything in parallel: SIGTERM
   to every node, simulator and the bridge at once, to the router once the
   nodes have left the hub (or NODES_FIRST seconds), SIGKILL to whatever is
   left at STOP_DEADLINE.

Children die with the launcher whatever kills it: each asks for SIGTERM when
its parent dies (obsmesh/procs.py), and the reaper kills what remains of
every service's process group. STATE/launcher.json holds the layout and each
service's process, restarts and last exit, for `obsmesh status`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from obsmesh import layout as layout_mod
from obsmesh import procs, router
from obsmesh.backoff import Backoff, Retry
from obsmesh.layout import LAUNCHER_AUTHID, NODE, ROUTER, Layout, Service

STABLE_AFTER = 30.0  # seconds of running after which an exit counts as the first failure again
NODES_FIRST = 2.5  # seconds the nodes get to leave the hub before the router is stopped
STOP_DEADLINE = 4.0  # seconds from Ctrl-C to SIGKILL of whatever is left
REAPER_GRACE = 3.0  # seconds the reaper gives orphaned services before SIGKILL
ROUTER_READY = 60.0
SETTLED = 3.0  # seconds a service with no port and no hub name must run to count as up


# seconds before restarting a service after short runs in a row: 1 s, 2 s, ... 30 s
RESTART = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)


@dataclass
class Running:
    """One service of the layout and its process."""

    svc: Service
    popen: subprocess.Popen | None = None
    started: float = 0.0  # monotonic
    started_at: float = 0.0  # wall clock
    restarts: int = 0
    retry: Retry = field(default_factory=lambda: Retry(RESTART, stable_after=STABLE_AFTER))
    next_start: float = 0.0
    last_exit: str | None = None
    up: bool = False

    @property
    def process(self) -> subprocess.Popen:
        """The process of a service that was started (every caller starts it first)."""
        if self.popen is None:
            raise RuntimeError(f"{self.svc.name} was never started")
        return self.popen

    def exited(self, now: float, code: int | None) -> float:
        """Count an exit at `now`; the delay before the next start."""
        ran = now - self.started
        self.restarts += 1
        self.last_exit = f"exited with {code} after {ran:.1f} s at {time.strftime('%H:%M:%S')}"
        return self.retry.failed(up_for=ran)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class HubWatch:
    """The nodes the hub lists, polled once a second in a thread (the client library)."""

    def __init__(self, lay: Layout, mesh: dict[str, Any], secret: str | None) -> None:
        from consumers.client import Mesh

        self.listed: set[str | None] = set()  # as the hub lists them
        self._client = Mesh(
            lay.router_url,
            mesh["realm"],
            prefix=mesh["prefix"],
            authid=LAUNCHER_AUTHID,
            secret=secret,
            timeout=5,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.listed = {n.get("name") for n in self._client.nodes()}
            except Exception:  # the router restarting, or not there yet: ask again
                self.listed = set()
            self._stop.wait(1.0)

    def close(self) -> None:
        """Stop asking (at once: a call in flight fails when the client closes)."""
        self._stop.set()
        self._client.close(0.5)


class StateLock:
    """One launcher per state directory: an flock the kernel drops when we die."""

    def __init__(self, state: str) -> None:
        self.path = os.path.join(state, "launcher.lock")
        self.file: IO[str] | None = None

    def acquire(self) -> str | None:
        """None when taken; else who holds it, in words."""
        f = open(self.path, "a+")  # noqa: SIM115 - held for the launcher's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            return f"pid {holder}"
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self.file = f
        return None


class Launcher:
    def __init__(self, lay: Layout, mesh: dict[str, Any], wait: float) -> None:
        self.layout = lay
        self.mesh = mesh
        self.wait = wait
        self.running = [Running(s) for s in lay.services]
        self.stopping = False
        self.reaper: subprocess.Popen | None = None
        self.watch: HubWatch | None = None
        self.state_file = os.path.join(lay.state_dir, "launcher.json")
        self.env: dict[str, str] = {}
        self.announced = False  # "obsmesh is up" printed
        self.named_missing = False  # the services not up after --wait named

    # -- before anything starts ------------------------------------------------
    def leftovers(self) -> None:
        """Stop what an earlier run of this state directory left running."""
        import psutil

        stale: list[tuple[int, str]] = []
        try:
            with open(self.state_file, encoding="utf-8") as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            earlier = {}
        for name, rec in (earlier.get("services") or {}).items():
            pid, born = rec.get("pid"), rec.get("create_time")
            try:
                if pid and born and abs(psutil.Process(pid).create_time() - born) < 0.01:
                    stale.append((pid, f"service {name}"))
            except (psutil.Error, TypeError, ValueError):
                continue
        try:
            with open(os.path.join(self.layout.cbdir, "node.pid"), encoding="utf-8") as f:
                pid = int(json.load(f)["pid"])
            if procs.alive(pid) and "crossbar" in procs.cmdline(pid) and pid not in dict(stale):
                stale.append((pid, "router (crossbar)"))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if not stale:
            return
        for pid, what in stale:
            print(
                f"obsmesh: stopping the {what} an earlier run of {self.layout.state_dir} left "
                f"running (pid {pid})",
                flush=True,
            )
        self._end_groups([self._group_of(pid) for pid, _ in stale], grace=5.0)

    @staticmethod
    def _group_of(pid: int) -> int:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return pid
        return pid if pgid == os.getpgrp() else pgid  # never our own group

    @staticmethod
    def _end_groups(groups: list[int], grace: float) -> None:
        for g in groups:
            procs.signal_group(g, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(procs.group_members(g) for g in groups):
            time.sleep(0.05)
        for g in groups:
            procs.signal_group(g, signal.SIGKILL)

    def busy_ports(self) -> list[str]:
        """One line per port of the layout something else holds."""
        return [
            f"port {x.port} on {x.host} ({x.what}, service {svc.name}) is in use by "
            f"{procs.port_holder(x.port)}"
            for svc, x in self.layout.listens()
            if not procs.port_free(x.host, x.port)
        ]

    # -- processes ---------------------------------------------------------------
    def _tell_reaper(self, line: str) -> None:
        stdin = self.reaper.stdin if self.reaper is not None else None
        if stdin is None:  # no reaper: nothing to tell
            return
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except (OSError, ValueError):  # the reaper is gone: nothing to tell
            pass

    def start(self, r: Running) -> None:
        log = open(os.path.join(self.layout.logs, f"{r.svc.name}.log"), "ab")  # noqa: SIM115
        try:
            r.popen = subprocess.Popen(
                [sys.executable, "-m", "obsmesh", *r.svc.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped and reaped as one
            )
        finally:
            log.close()  # the child has its own descriptor
        r.started, r.started_at, r.up = time.monotonic(), time.time(), False
        self._tell_reaper(f"+{r.process.pid}")

    def retire(self, r: Running) -> None:
        """A service's process exited: end what is left of its group."""
        pgid = r.process.pid
        procs.signal_group(pgid, signal.SIGKILL)
        self._tell_reaper(f"-{pgid}")

    def is_up(self, r: Running) -> bool:
        """A node is up when the hub lists it, a listener when its ports accept, any
        other service once it has run SETTLED seconds (one that crash-loops never is)."""
        if not r.alive:
            return False
        if r.svc.role == NODE:
            return self.watch is not None and r.svc.node in self.watch.listed
        if r.svc.listens:
            return all(router.port_open(x.host, x.port) for x in r.svc.listens)
        return time.monotonic() - r.started >= SETTLED

    def write_state(self) -> None:
        import psutil

        services = {}
        for r in self.running:
            pid = r.process.pid if r.alive else None
            try:
                born = psutil.Process(pid).create_time() if pid else None
            except psutil.Error:
                born = None
            services[r.svc.name] = {
                "pid": pid,
                "create_time": born,
                "started": r.started_at if pid else None,
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                "up": r.up,
            }
        data = {
            "pid": os.getpid(),
            "written": time.time(),
            "layout": self.layout.to_json(),
            "services": services,
        }
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.state_file)

    # -- the run -------------------------------------------------------------------
    def on_signal(self, *_: Any) -> None:
        self.stopping = True

    def start_router(self) -> bool:
        r = next(r for r in self.running if r.svc.role == ROUTER)
        log = os.path.join(self.layout.logs, f"{r.svc.name}.log")
        joins = router.hub_joins(log)
        self.start(r)
        deadline = time.monotonic() + ROUTER_READY
        while not self.stopping:
            if r.process.poll() is not None:
                with open(log, errors="replace") as f:
                    tail = f.read()[-3000:]
                print(
                    f"obsmesh: the router exited ({r.process.returncode}):\n{tail}", file=sys.stderr
                )
                self.retire(r)
                return False
            if self.is_up(r) and router.hub_joins(log) > joins:
                return True
            if time.monotonic() > deadline:
                print(f"obsmesh: the router is not ready after {ROUTER_READY:g} s (log {log})")
                return False
            time.sleep(0.05)
        return False

    def supervise(self) -> None:
        begun = time.monotonic()
        last_write = 0.0
        while not self.stopping:
            now = time.monotonic()
            changed = False
            for r in self.running:
                if r.popen is not None and r.popen.poll() is not None:
                    code = r.popen.returncode
                    self.retire(r)
                    delay = r.exited(now, code)
                    r.popen, r.next_start, r.up = None, now + delay, False
                    print(
                        f"obsmesh: {r.svc.name} exited ({code}); restarting in {delay:.1f} s",
                        flush=True,
                    )
                    changed = True
                if r.popen is None and now >= r.next_start:
                    self.start(r)
                    changed = True
                up = self.is_up(r)
                changed |= up != r.up
                r.up = up
            self.announce(now - begun)
            if changed or now - last_write > 2.0:
                self.write_state()
                last_write = now
            time.sleep(0.2)  # the supervision tick (signals cut it short)

    def announce(self, elapsed: float) -> None:
        if self.announced:
            return
        missing = [r for r in self.running if not r.up]
        if not missing:
            print("obsmesh is up:" if not self.named_missing else "obsmesh is up (all joined now):")
            if not self.named_missing:
                print("\n".join(self.layout.banner()))
                print("Ctrl-C stops everything.")
            sys.stdout.flush()
            self.announced = True
        elif elapsed >= self.wait and not self.named_missing:
            print(f"obsmesh: not every service is up after {self.wait:g} s:")
            print("\n".join(self.layout.banner()))
            for r in missing:
                why = "has not joined the hub" if r.svc.role == NODE else "is not up"
                restarts = f", restarted {r.restarts} times" if r.restarts else ""
                print(f"  {r.svc.name} {why}{restarts} (log {self.layout.logs}/{r.svc.name}.log)")
            print("Ctrl-C stops everything.", flush=True)
            self.named_missing = True

    def stop_all(self) -> float:
        """Stop every service, nodes before the router; the seconds it took."""
        t0 = time.monotonic()
        print("obsmesh: stopping ...", flush=True)
        if self.watch is not None:
            self.watch.close()
        rest = [r for r in self.running if r.svc.role != ROUTER and r.alive]
        for r in rest:
            procs.signal_group(r.process.pid, signal.SIGTERM)
        nodes = [r for r in rest if r.svc.role == NODE]
        while time.monotonic() - t0 < NODES_FIRST and any(r.alive for r in nodes):
            time.sleep(0.02)
        for r in self.running:
            if r.svc.role == ROUTER and r.alive:
                procs.signal_group(r.process.pid, signal.SIGTERM)
        started = [r for r in self.running if r.popen is not None]
        while time.monotonic() - t0 < STOP_DEADLINE and any(
            r.alive or procs.group_members(r.process.pid) for r in started
        ):
            time.sleep(0.02)
        late = [r.svc.name for r in started if r.alive]
        if late:
            print(f"obsmesh: killing {', '.join(late)} (not stopped after {STOP_DEADLINE:g} s)")
        for r in started:
            procs.signal_group(r.process.pid, signal.SIGKILL)
            r.process.wait()
            self._tell_reaper(f"-{r.process.pid}")
        return time.monotonic() - t0

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        if self.reaper is not None and self.reaper.stdin is not None:
            self.reaper.stdin.close()  # nothing left to reap: it exits at once
            self.reaper.wait(10)
        for r in self.running:
            r.popen = None
        self.write_state()


def up(settings: dict[str, Any], args: argparse.Namespace | None = None) -> int:
    from obsmesh.cli import ensure_secrets
    from obsmesh.wamp import credentials

    lay = layout_mod.local(
        settings, getattr(args, "kinds", None) or None, path=getattr(args, "config", None)
    )
    os.makedirs(lay.logs, exist_ok=True)
    lock = StateLock(lay.state_dir)
    holder = lock.acquire()
    if holder is not None:
        print(
            f"obsmesh: another `obsmesh up` runs from {lay.state_dir} ({holder}); stop it, or give "
            "this one its own state_dir (OBSMESH_STATE_DIR)",
            file=sys.stderr,
        )
        return 1
    launcher = Launcher(lay, settings, float(getattr(args, "wait", 90.0)))
    launcher.leftovers()
    busy = launcher.busy_ports()
    if busy:
        print("obsmesh: cannot start, ports of this mesh are taken:", file=sys.stderr)
        for line in busy:
            print(f"  {line}", file=sys.stderr)
        print(
            "Stop what holds them, or move every port of this mesh with OBSMESH_PORT_BASE "
            "(README, Configuration).",
            file=sys.stderr,
        )
        return 1
    # The secrets file, admitting each service of the layout by name (no wildcard principal).
    secrets_file = os.path.abspath(ensure_secrets(settings, lay.principals()))
    launcher.env = {
        **os.environ,
        **lay.env(),
        "OBSMESH_REALM": settings["realm"],
        "OBSMESH_PREFIX": settings["prefix"],
        "OBSMESH_SECRETS_FILE": secrets_file,
        procs.LAUNCHER_ENV: str(os.getpid()),
    }
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, launcher.on_signal)
    launcher.reaper = subprocess.Popen(
        [sys.executable, "-m", "obsmesh.reaper", str(REAPER_GRACE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    code = 0
    try:
        print(f"obsmesh: starting the router (log {lay.logs}/router.log) ...", flush=True)
        if launcher.start_router():
            secret = credentials({"secrets_file": secrets_file}, LAUNCHER_AUTHID)
            launcher.watch = HubWatch(
                lay, settings, secret["wampcra"]["secret"] if secret else None
            )
            launcher.supervise()
        elif not launcher.stopping:
            code = 1
    finally:
        took = launcher.stop_all()
        launcher.close()
        print(f"obsmesh: stopped in {took:.1f} s.", flush=True)
    return code
