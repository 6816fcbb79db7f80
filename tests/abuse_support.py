"""What the fault-and-abuse suite measures: a process's memory and descriptors
while an attack runs, a well-behaved client's latency, and one figures line per
attack (printed, and appended to `$OBSMESH_ABUSE_FIGURES` when set)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tests.harness import REPO, rss_kb


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Watch:
    """Samples the RSS and descriptor count of some processes every 50 ms."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.before_kb = self._rss()
        self.before_fds = self._fds()
        self.peak_kb = self.before_kb
        self.peak_fds = self.before_fds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        return sum(rss_kb(p) for p in self.pids())

    def _fds(self) -> int:
        return sum(fd_count(p) for p in self.pids())

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, self._rss())
            self.peak_fds = max(self.peak_fds, self._fds())

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        return {
            "rss_before_mib": round(self.before_kb / 1024, 1),
            "rss_peak_mib": round(self.peak_kb / 1024, 1),
            "rss_after_mib": round(self._rss() / 1024, 1),
            "fds_before": self.before_fds,
            "fds_peak": self.peak_fds,
            "fds_after": self._fds(),
        }

    @property
    def now_kb(self) -> int:
        return self._rss()


def latency_figures(seconds: list[float]) -> dict:
    if not seconds:
        return {"good_requests": 0}
    return {
        "good_requests": len(seconds),
        "good_latency_median_s": round(statistics.median(seconds), 3),
        "good_latency_max_s": round(max(seconds), 3),
    }


def report(attack: str, figures: dict) -> None:
    """One line of figures per attack, for the report (pytest -rP shows it)."""
    line = {
        "attack": attack,
        "load_average": os.getloadavg()[0],
        **figures,
    }
    text = json.dumps(line)
    print(f"ABUSE {text}")
    path = os.environ.get("OBSMESH_ABUSE_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def limit_descriptors(n: int) -> Callable[[], None]:
    """A preexec_fn giving a child the descriptor limit of a small server (soft = hard = n)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        os.setsid()

    return apply


class Attacker:
    """`python -m tests.attackers ...` in its own process, with its figures."""

    def __init__(self, host: str, port: int, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.attackers", host, str(port), *args],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.last: dict = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.last = json.loads(line)
            except ValueError:
                pass

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.last


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    out = fn()
    return out, time.monotonic() - started
