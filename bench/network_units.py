"""The CO2 units of `make bench-network`: N simulated units (the firmware's
HTTP protocol: pings, readings files pushed in 4 KiB chunks, update checks),
each in its own thread, driven from stdin:

    python -m bench.network_units URL DATA_ROOT SD_DIR N

    rate K      K times the real cadence: a readings row every 20/K s and a
                communication cycle (ping, push, updates) every 60/K s
    stop        no more rows or cycles
    flush       one last cycle for every unit (what it measured is pushed)
    count       prints one JSON line: rows measured, pings made, failures
Prints "ready" once the units are registered.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from nodes.co2.admin import add_unit
from nodes.co2.simulator import SimUnit, unit_id_for

ROW_EVERY = 20.0  # seconds between a unit's readings rows at the real cadence
CYCLE_EVERY = 60.0  # seconds between its pings (and pushes)


class Units:
    def __init__(self, url: str, data_root: Path, sd_dir: Path, n: int) -> None:
        self.rate = 0.0
        self.lock = threading.Lock()
        self.stats: Counter = Counter()
        self.units = []
        for i in range(n):
            uid = unit_id_for(7, i)
            token = add_unit(data_root, uid)
            self.units.append(
                SimUnit(url, uid, sd_dir / uid, token, layout="mixed", seed=7000 + i, timeout=60)
            )
        self.wake = threading.Condition()
        self.stopped = False
        self.threads = [
            threading.Thread(target=self.run, args=(u,), daemon=True) for u in self.units
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def run(self, unit: SimUnit) -> None:
        rng = random.Random(unit.unit_id)
        next_row = next_cycle = None
        while not self.stopped:
            with self.wake:
                rate = self.rate
                if rate <= 0:
                    next_row = next_cycle = None
                    self.wake.wait(1.0)
                    continue
            now = time.monotonic()
            if next_row is None:  # units are not in step
                next_row = now + rng.uniform(0, ROW_EVERY / rate)
                next_cycle = now + rng.uniform(0, CYCLE_EVERY / rate)
            if now >= next_row:
                unit.measure(time.time())
                self.count("rows")
                next_row += ROW_EVERY / rate
            if now >= next_cycle:
                self.cycle(unit)
                next_cycle += CYCLE_EVERY / rate
            wait = min(next_row, next_cycle) - time.monotonic()
            if wait > 0:
                with self.wake:
                    self.wake.wait(wait)

    def cycle(self, unit: SimUnit) -> bool:
        try:
            unit.communicate(0.0)
            self.count("cycles")
            return True
        except (OSError, RuntimeError, ValueError):
            self.count("cycle_failed")  # what it measured stays on its card for the next cycle
            return False

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1

    def set_rate(self, rate: float) -> None:
        with self.wake:
            self.rate = rate
            self.wake.notify_all()

    def flush(self) -> None:
        """A last cycle for every unit, 20 at a time; units whose cycle failed
        (their rows are still on their cards) try again, up to 3 rounds."""
        pending = list(self.units)
        for _ in range(3):
            failed: list[SimUnit] = []
            for first in range(0, len(pending), 20):
                group = pending[first : first + 20]
                results: dict[str, bool] = {}
                threads = [
                    threading.Thread(
                        target=lambda u=u, r=results: r.__setitem__(u.unit_id, self.cycle(u))
                    )
                    for u in group
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                failed += [u for u in group if not results.get(u.unit_id)]
            if not failed:
                return
            pending = failed


def main() -> None:
    url, data_root, sd_dir, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    units = Units(url, data_root, sd_dir, n)
    units.start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "rate":
            units.set_rate(float(words[1]))
        elif words[0] == "stop":
            units.set_rate(0.0)
        elif words[0] == "flush":
            units.flush()
            print(json.dumps({"flushed": True}), flush=True)
        elif words[0] == "count":
            pings = sum(u.stats.get("ping_200", 0) for u in units.units)
            with units.lock:
                stats = dict(units.stats)
            print(json.dumps({"at": time.time(), **stats, "pings": pings}), flush=True)


if __name__ == "__main__":
    main()
