"""Simulated CO2 observation units that behave like the firmware.

Each unit keeps an "SD card" directory: measurements are appended to
`data/readings/readings-NNNN.tsv` (rolled at 100 KiB, as the firmware does),
and a communication cycle pings `/ou/<id>/alive`, pushes every file of
`data/readings` and `errors` in 4 KiB chunks with push-sequential (resuming
from the `ack_file` state it keeps, adopting the server's `ack_file` on 200
and 416), then lists `/ou/<id>/updates`.

Interrupted uploads, at `interrupt_rate`: either the body is cut half way and
the connection dropped ("cut"; the server must store nothing of it), or the
whole request is sent and the connection dropped before the answer ("lost
ack"; the server may have stored it). Either way the unit resends from its own
last acknowledged offset, which exercises resume and duplicate chunks.

Blocking code (threads and http.client): run it in its own process or threads,
never on a reactor. `obsmesh simulate co2` is `configure(parser)` + `main(args)`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

READINGS_DIR = "data/readings"
SYNC_DIRS = (READINGS_DIR, "errors")
FILE_ROLL_BYTES = 100 * 1024
CHUNK = 4 * 1024
YEAR_S = 365.2425 * 86400
DAY_S = 86400.0
SITE_UTC_OFFSET_H = -10.4  # local solar time at 156.6° W


def unit_id_for(seed: int, index: int) -> str:
    """A deterministic hardware id in the firmware's form."""
    return "co2unit-" + hashlib.sha256(f"{seed}-{index}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Row:
    """What a simulated unit wrote: the exact values the server must deliver."""

    t: float
    temperature: float | None
    flash_count: int
    co2: tuple[int | None, ...]
    extra: tuple[float, ...]


class ArcticAir:
    """The air a unit samples at a high-Arctic coastal site (about 71° N, like
    NOAA's Utqiaġvik observatory): CO2 on the global background (about
    426 ppm at the start of 2026, +2.4 ppm a year) with the Arctic's seasonal
    cycle (highest in spring, drawn down by the tundra in late summer), a
    diurnal cycle only while plants grow, and slow synoptic swings of a few
    ppm as air masses pass; air temperature from about -28 °C in midwinter to
    +5 °C in July, with a diurnal cycle that vanishes in the polar night and
    synoptic swings of several degrees, larger in winter. Each unit adds its
    own calibration offset and noise: readings of one site agree to a few ppm
    and a degree or so."""

    def __init__(self, rng: random.Random) -> None:
        self.phases = [rng.uniform(0, 2 * math.pi) for _ in range(6)]
        self.co2_offset = rng.uniform(-1.5, 1.5)  # calibration
        self.temp_offset = rng.uniform(-0.8, 0.8)  # siting
        self.rng = rng

    def _season(self, t: float) -> tuple[float, float]:
        """(year fraction from 1 January, daylight 0..1: 0 in the polar night)."""
        f = (t / YEAR_S) % 1.0
        return f, max(0.0, math.cos(2 * math.pi * (f - 0.47))) ** 0.5

    def _synoptic(self, t: float, first: int) -> float:
        """Weather systems: periods of about 3, 5 and 8 days, unit-free (-1..1)."""
        days = t / DAY_S
        waves = zip((2.7, 4.6, 7.9), (0.5, 0.3, 0.2), self.phases[first : first + 3], strict=False)
        return sum(w * math.sin(2 * math.pi * days / p + ph) for p, w, ph in waves)

    def temperature(self, t: float) -> float:
        f, light = self._season(t)
        seasonal = -11.5 + 16.5 * math.cos(2 * math.pi * (f - 0.55))  # max late July
        local_hour = (t / 3600.0 + SITE_UTC_OFFSET_H) % 24
        diurnal = (0.2 + 2.8 * light) * math.cos(2 * math.pi * (local_hour - 15) / 24)
        weather = (2.0 + 4.0 * (1 - light)) * self._synoptic(t, 0)
        noise = self.rng.gauss(0, 0.15)
        return seasonal + diurnal + weather + self.temp_offset + noise

    def co2(self, t: float) -> float:
        f, light = self._season(t)
        background = 426.0 + 2.4 * (t / YEAR_S - 56.0)  # 56 years after 1970: 2026
        # two harmonics fitted to Utqiaġvik's detrended monthly means (scaled by 0.6)
        seasonal = 4.3 * math.cos(2 * math.pi * (f - 0.18)) + 2.1 * math.cos(
            4 * math.pi * (f - 0.39)
        )
        local_hour = (t / 3600.0 + SITE_UTC_OFFSET_H) % 24
        growing = max(0.0, math.cos(2 * math.pi * (f - 0.53))) ** 2  # June to August
        diurnal = 2.5 * growing * math.cos(2 * math.pi * (local_hour - 4) / 24)  # night respiration
        weather = 1.5 * self._synoptic(t, 3)
        return background + seasonal + diurnal + weather + self.co2_offset

    def readings(self, t: float, n: int) -> tuple[float, tuple[int, ...]]:
        """(temperature in 1/16 °C steps, `n` CO2 readings in whole ppm)."""
        temp = round(self.temperature(t) * 16) / 16
        true = self.co2(t)
        return temp, tuple(round(true + self.rng.gauss(0, 1.5)) for _ in range(n))


def _fmt(value: object) -> str:
    return "None" if value is None else str(value)


class SimUnit:
    def __init__(
        self,
        url: str,
        unit_id: str,
        sd_dir: Path,
        token: str | None = None,
        token_in: str = "header",
        nickname: str = "sim",
        layout: str = "base",
        seed: int = 0,
        chunk: int = CHUNK,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// URL, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.unit_id = unit_id
        self.sd = Path(sd_dir)
        self.token = token
        self.token_in = token_in
        self.nickname = nickname
        self.layout = layout
        self.chunk = chunk
        self.timeout = timeout
        self.rng = random.Random(seed)
        self.air = ArcticAir(random.Random(seed + 7919))
        self.rows: list[Row] = []
        self.stats: Counter = Counter()
        self.sync_state: dict[str, list] = {}  # dir -> [fname, progress, totalsize]
        self.on_ack: Callable[[str, str, int, int, float, float], None] | None = None
        (self.sd / READINGS_DIR).mkdir(parents=True, exist_ok=True)
        (self.sd / "errors").mkdir(parents=True, exist_ok=True)

    # -- measuring ---------------------------------------------------------------

    def measure(self, t: float, clock_reset: bool = False) -> Row | None:
        """Append one readings row taken at `t` (whole seconds, UTC; at least a
        second after the unit's previous row, as a measurement takes seconds).
        With `clock_reset` the row is dated 1970 as after an RTC reset, and
        is not expected to be delivered (returns None)."""
        t = float(int(t))
        if self.rows and not clock_reset:
            t = max(t, self.rows[-1].t + 1)
        rng = self.rng
        temp, readings = self.air.readings(t, 10)
        temp = None if rng.random() < 0.05 else temp  # a failed sensor read
        co2 = tuple(None if rng.random() < 0.02 else c for c in readings)
        extra = tuple(round(rng.uniform(0, 5000), 2) for _ in range(5))
        if self.layout == "mixed":
            extra = extra if rng.random() < 0.5 else ()
        elif self.layout == "base":
            extra = ()
        row = Row(t, temp, rng.randrange(0, 4), co2, extra)
        stamp = time.gmtime(t if not clock_reset else t % 86400)
        cells = [
            self.unit_id,
            self.nickname,
            time.strftime("%Y-%m-%d", stamp),
            time.strftime("%H:%M:%S", stamp),
            _fmt(temp),
            str(row.flash_count),
            *map(_fmt, co2),
            *map(_fmt, extra),
        ]
        self._append_line("\t".join(cells))
        if clock_reset:
            return None
        self.rows.append(row)
        return row

    def write_raw_line(self, text: str) -> None:
        """Append an arbitrary line (tests: malformed rows)."""
        self._append_line(text)

    def _append_line(self, text: str) -> None:
        folder = self.sd / READINGS_DIR
        files = sorted(folder.glob("readings-*.tsv"))
        target = files[-1] if files else folder / "readings-0000.tsv"
        if target.exists() and target.stat().st_size >= FILE_ROLL_BYTES:
            target = folder / f"readings-{int(target.stem.split('-')[1]) + 1:04d}.tsv"
        with open(target, "a", encoding="utf-8") as f:
            f.write(text + "\n")

    # -- communicating ---------------------------------------------------------------

    def _url(self, path: str, query: dict[str, object] | None = None) -> str:
        query = dict(query or {})
        if self.token is not None and self.token_in == "query":
            query["token"] = self.token
        if query:
            path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return path

    def _headers(self) -> dict[str, str]:
        if self.token is not None and self.token_in == "header":
            return {"X-Unit-Token": self.token}
        return {}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=self._headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _interrupted_put(self, path: str, body: bytes, cut: bool) -> None:
        """Send a PUT and hang up: half way through the body, or before the answer."""
        head = [
            f"PUT {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        head += [f"{k}: {v}" for k, v in self._headers().items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + (body[: len(body) // 2] if cut else body)
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            sock.sendall(data)
        self.stats["interrupted_cut" if cut else "interrupted_lost_ack"] += 1

    def ping(self, rssi_dbm: int = -97) -> int:
        query = {"site_code": self.nickname, "rssi_raw": 8, "rssi_dbm": rssi_dbm, "ber_raw": 99}
        status, _ = self.request("POST", self._url(f"/ou/{self.unit_id}/alive", query))
        self.stats[f"ping_{status}"] += 1
        return status

    def push_dir(self, dirname: str, interrupt_rate: float = 0.0) -> None:
        """Push every file of `dirname` from the saved sync state, like the firmware."""
        folder = self.sd / dirname
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        fname, progress, _ = self.sync_state.get(dirname, [None, 0, 0])
        index = names.index(fname) if fname in names else 0
        if fname not in names:
            progress = 0
        while index < len(names):
            fname = names[index]
            size = (folder / fname).stat().st_size
            while progress < size:
                with open(folder / fname, "rb") as f:
                    f.seek(progress)
                    data = f.read(self.chunk)
                path = self._url(
                    f"/ou/{self.unit_id}/push-sequential/{dirname}/{fname}", {"offset": progress}
                )
                if interrupt_rate and self.rng.random() < interrupt_rate:
                    self._interrupted_put(path, data, cut=self.rng.random() < 0.5)
                    continue  # resend from the last acknowledged offset
                started = time.time()
                status, raw = self.request("PUT", path, data)
                self.stats[f"push_{status}"] += 1
                if status not in (200, 416):
                    raise RuntimeError(f"{self.unit_id} PUT {fname}@{progress}: {status} {raw!r}")
                if status == 200:
                    progress += len(data)
                    if self.on_ack is not None:
                        self.on_ack(
                            self.unit_id,
                            fname,
                            progress - len(data),
                            len(data),
                            started,
                            time.time(),
                        )
                ack_name, ack_progress, _ = json.loads(raw)["ack_file"]
                if ack_name != fname or ack_progress != progress:
                    self.stats["resumed_from_server_ack"] += 1
                    if ack_name in names:
                        index, progress = names.index(ack_name), ack_progress
                        fname = ack_name
                        size = (folder / fname).stat().st_size
                self.sync_state[dirname] = [fname, progress, size]
            self.sync_state[dirname] = [fname, progress, size]
            if index + 1 < len(names):
                index, progress = index + 1, 0
            else:
                break

    def fetch_updates(self) -> list[str] | None:
        status, raw = self.request(
            "GET", self._url(f"/ou/{self.unit_id}/updates", {"recursive": "False"})
        )
        self.stats[f"updates_{status}"] += 1
        return json.loads(raw) if status == 200 else None

    def log_error_line(self, text: str) -> None:
        """Append to the unit's operational log (`errors/errors-0000.txt`), pushed
        like the readings."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.sd / "errors" / "errors-0000.txt", "a", encoding="utf-8") as f:
            f.write(f"----- {stamp} INFO  {text}\n")

    def communicate(self, interrupt_rate: float = 0.0) -> None:
        """One firmware communication cycle."""
        rssi_dbm = -self.rng.randrange(60, 110)
        self.log_error_line(f"Comm cycle. Signal quality {{'rssi_dbm': {rssi_dbm}}}")
        self.ping(rssi_dbm=rssi_dbm)
        for dirname in SYNC_DIRS:
            self.push_dir(dirname, interrupt_rate)
        self.fetch_updates()


# -- command line: `obsmesh simulate co2` ---------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the CO2 endpoint, e.g. http://127.0.0.1:8090")
    parser.add_argument("--units", type=int, default=5)
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between a unit's communication cycles"
    )
    parser.add_argument("--rows-per-cycle", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=0, help="0: run until interrupted")
    parser.add_argument(
        "--interrupt-rate",
        type=float,
        default=0.1,
        help="fraction of chunks sent as interrupted uploads",
    )
    parser.add_argument("--layout", choices=("base", "extended", "mixed"), default="mixed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sd-dir", type=Path, help="units' SD card directories (default: temp)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--data-root",
        type=Path,
        help="register the units in this (local) data root and use their tokens",
    )
    auth.add_argument("--tokens", type=Path, help="JSON file {unit id: token}")
    parser.add_argument("--token-in", choices=("header", "query"), default="header")


def make_units(args: argparse.Namespace, sd_root: Path) -> list[SimUnit]:
    tokens: dict[str, str] = {}
    if args.tokens:
        tokens = json.loads(Path(args.tokens).read_text())
    units = []
    for i in range(args.units):
        unit_id = unit_id_for(args.seed, i)
        if args.data_root:
            from nodes.co2.admin import add_unit

            tokens[unit_id] = add_unit(args.data_root, unit_id)
        units.append(
            SimUnit(
                args.url,
                unit_id,
                sd_root / unit_id,
                tokens.get(unit_id),
                args.token_in,
                nickname=f"sim-{i:02d}",
                layout=args.layout,
                seed=args.seed * 1000 + i,
            )
        )
    return units


def main(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="co2sim-") as tmp:
        sd_root = Path(args.sd_dir) if args.sd_dir else Path(tmp)
        units = make_units(args, sd_root)
        stop = threading.Event()

        def run(unit: SimUnit) -> None:
            cycle = 0
            stop.wait(unit.rng.uniform(0, args.interval))  # units are not in step
            while not stop.is_set() and (args.cycles == 0 or cycle < args.cycles):
                now = time.time()
                spacing = args.interval / max(1, args.rows_per_cycle)
                for k in range(args.rows_per_cycle):
                    unit.measure(now - (args.rows_per_cycle - 1 - k) * spacing)
                try:
                    unit.communicate(args.interrupt_rate)
                except (OSError, RuntimeError, ValueError) as exc:
                    unit.stats["cycle_failed"] += 1
                    print(f"{unit.unit_id}: cycle failed: {exc}", flush=True)
                cycle += 1
                stop.wait(args.interval)

        threads = [threading.Thread(target=run, args=(u,), daemon=True) for u in units]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            stop.set()
        total = Counter()
        for u in units:
            total.update(u.stats)
        print(json.dumps({"units": [u.unit_id for u in units], "stats": dict(total)}), flush=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m nodes.co2.simulator")
    configure(p)
    raise SystemExit(main(p.parse_args()))
