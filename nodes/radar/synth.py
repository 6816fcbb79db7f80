"""Synthetic FITACF records: a radar sweeping its beams with plausible echoes.

Pure functions (no I/O, no clock): the caller says which radar and when.
Records hold every field RST's fitacf writer puts in, with the field types of
`dmap.FITACF_SCALAR_TYPES`/`FITACF_ARRAY_TYPES`, so darn-dmap's `write_fitacf`
accepts them and so does any RST reader.

Echo model (per beam, deterministic given the seed, radar, beam and time):
- ground scatter at near ranges (low velocity, narrow spectra, gflg = 1),
  its band edge moving slowly through the day;
- an ionospheric region whose centre drifts in range over tens of minutes,
  with line-of-sight velocities from a uniform flow whose direction rotates
  over two hours (so velocity changes sign across the beams), power falling
  with range, wide spectra (gflg = 0);
- now and then a beam with no echoes at all (its per-echo arrays are absent,
  as in real files).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from nodes.radar.products import radar_time

SCAN_START = 1
CAMPING = -32768
SOUNDING = -2

# Echo arrays present in every record with echoes, and those added when xcf is on.
_ECHO_FLOAT = (
    "p_l",
    "p_l_e",
    "p_s",
    "p_s_e",
    "v",
    "v_e",
    "w_l",
    "w_l_e",
    "w_s",
    "w_s_e",
    "sd_l",
    "sd_s",
    "sd_phi",
)
_XCF_FLOAT = (
    "x_p_l",
    "x_p_l_e",
    "x_p_s",
    "x_p_s_e",
    "x_v",
    "x_v_e",
    "x_w_l",
    "x_w_l_e",
    "x_w_s",
    "x_w_s_e",
    "phi0",
    "phi0_e",
    "elv",
    "elv_low",
    "elv_high",
    "x_sd_l",
    "x_sd_s",
    "x_sd_phi",
)
# Seven-pulse sequence (the classic SuperDARN katscan) and its lag table.
PTAB = np.array([0, 9, 12, 20, 22, 26, 27], dtype="<i2")
_LAGS = [
    (0, 0),
    (26, 27),
    (20, 22),
    (9, 12),
    (22, 26),
    (22, 27),
    (20, 26),
    (20, 27),
    (12, 20),
    (0, 9),
    (12, 22),
    (9, 20),
    (0, 12),
    (9, 22),
    (12, 26),
    (12, 27),
    (9, 26),
    (9, 27),
    (27, 27),
]
LTAB = np.array(_LAGS, dtype="<i2")  # numpy shape (mplgs + 1, 2), as files store it


def radar_time_fields(when: float) -> dict[str, int]:
    """`time.yr` ... `time.us` for a UNIX time (UTC)."""
    whole = math.floor(when)
    moment = _dt.datetime.fromtimestamp(whole, tz=_dt.UTC)
    return {
        "time.yr": moment.year,
        "time.mo": moment.month,
        "time.dy": moment.day,
        "time.hr": moment.hour,
        "time.mt": moment.minute,
        "time.sc": moment.second,
        "time.us": min(int(round((when - whole) * 1e6)), 999_999),
    }


def fitacf_record(
    *,
    stid: int,
    when: float,
    bmnum: int,
    scan: int,
    slist: np.ndarray,
    v: np.ndarray,
    p_l: np.ndarray,
    w_l: np.ndarray,
    gflg: np.ndarray,
    elv: np.ndarray | None = None,
    channel: int = 0,
    cp: int = 151,
    nrang: int = 75,
    frang: int = 180,
    rsep: int = 45,
    tfreq: int = 10800,
    noise: float = 3.0,
    nave: int = 24,
    xcf: bool = True,
    bmazm: float = 0.0,
    intt: float = 3.0,
    origin: str = "obsmesh synthetic radar",
) -> dict[str, Any]:
    """A complete FITACF record from its echo arrays (all of one length n).
    With n = 0 the per-echo arrays are left out, as RST does."""
    n = len(slist)
    for name, arr in (("v", v), ("p_l", p_l), ("w_l", w_l), ("gflg", gflg)):
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} values for {n} gates")
    if xcf and elv is not None and len(elv) != n:
        raise ValueError(f"elv has {len(elv)} values for {n} gates")
    mplgs = len(LTAB) - 1
    rec: dict[str, Any] = {
        "radar.revision.major": 1,
        "radar.revision.minor": 18,
        "origin.code": 0,
        "origin.time": _dt.datetime.fromtimestamp(math.floor(when), tz=_dt.UTC).strftime(
            "%a %b %d %H:%M:%S %Y"
        ),
        "origin.command": origin,
        "cp": cp,
        "stid": stid,
        **radar_time_fields(when),
        "txpow": 9000,
        "nave": nave,
        "atten": 0,
        "lagfr": 1200,
        "smsep": 300,
        "ercod": 0,
        "stat.agc": 0,
        "stat.lopwr": 0,
        "noise.search": noise * 1.1,
        "noise.mean": noise * 1.4,
        "channel": channel,
        "bmnum": bmnum,
        "bmazm": bmazm,
        "scan": scan,
        "offset": 0,
        "rxrise": 100,
        "intt.sc": int(intt),
        "intt.us": int(round((intt % 1) * 1e6)),
        "txpl": 300,
        "mpinc": 1500,
        "mppul": len(PTAB),
        "mplgs": mplgs,
        "mplgexs": 0,
        "ifmode": -1,
        "nrang": nrang,
        "frang": frang,
        "rsep": rsep,
        "xcf": 1 if xcf else 0,
        "tfreq": tfreq,
        "mxpwr": 1070000000,
        "lvmax": 20000,
        "combf": "$Id: synthetic fast normal scan $",
        "fitacf.revision.major": 3,
        "fitacf.revision.minor": 0,
        "noise.sky": noise,
        "noise.lag0": 0.0,
        "noise.vel": 0.0,
        "ptab": PTAB.copy(),
        "ltab": LTAB.copy(),
    }
    pwr0 = np.full(nrang, 0.5, dtype="<f4")
    slist = np.asarray(slist, dtype="<i2")
    if n:
        pwr0[slist] = np.asarray(p_l, dtype="<f4") + 3.0
    rec["pwr0"] = pwr0
    if n == 0:
        return rec
    p = np.asarray(p_l, dtype="<f4")
    vel = np.asarray(v, dtype="<f4")
    wid = np.asarray(w_l, dtype="<f4")
    rec["slist"] = slist
    rec["nlag"] = np.full(n, mplgs - 2, dtype="<i2")
    rec["qflg"] = np.ones(n, dtype="i1")
    rec["gflg"] = np.asarray(gflg, dtype="i1")
    derived = {
        "p_l": p,
        "p_l_e": np.abs(p) * 0.05 + 0.1,
        "p_s": p * 0.9,
        "p_s_e": np.abs(p) * 0.06 + 0.1,
        "v": vel,
        "v_e": np.abs(vel) * 0.05 + 20.0,
        "w_l": wid,
        "w_l_e": np.abs(wid) * 0.1 + 10.0,
        "w_s": wid * 0.8,
        "w_s_e": np.abs(wid) * 0.12 + 10.0,
        "sd_l": np.full(n, 0.1),
        "sd_s": np.full(n, 0.12),
        "sd_phi": np.full(n, 0.3),
    }
    for name in _ECHO_FLOAT:
        rec[name] = np.asarray(derived[name], dtype="<f4")
    if xcf:
        angle = np.asarray(elv, dtype="<f4") if elv is not None else np.full(n, 25.0, dtype="<f4")
        rec["x_qflg"] = np.ones(n, dtype="i1")
        rec["x_gflg"] = rec["gflg"].copy()
        for name in _XCF_FLOAT:
            if name == "elv":
                rec[name] = angle
            elif name == "elv_low":
                rec[name] = angle - 2.0
            elif name == "elv_high":
                rec[name] = angle + 2.0
            elif name.startswith("x_") and name[2:] in derived:
                rec[name] = np.asarray(derived[name[2:]], dtype="<f4")
            else:
                rec[name] = np.full(n, 0.2, dtype="<f4")
    return rec


class EchoModel:
    """Echoes for one radar: deterministic in (seed, stid, beam, time)."""

    def __init__(
        self,
        stid: int,
        seed: int = 0,
        beams: int = 16,
        nrang: int = 75,
        quiet_beam_chance: float = 0.08,
    ) -> None:
        self.stid = stid
        self.seed = seed
        self.beams = beams
        self.nrang = nrang
        self.quiet_beam_chance = quiet_beam_chance

    def beam(self, bmnum: int, when: float, xcf: bool = True) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(
            [self.seed & 0xFFFFFFFF, self.stid, bmnum, int(when * 10) & 0xFFFFFFFF]
        )
        empty = {
            "slist": np.zeros(0, "<i2"),
            "v": np.zeros(0, "<f4"),
            "p_l": np.zeros(0, "<f4"),
            "w_l": np.zeros(0, "<f4"),
            "gflg": np.zeros(0, "i1"),
            "elv": np.zeros(0, "<f4") if xcf else None,
        }
        if rng.random() < self.quiet_beam_chance:
            return empty
        gates = np.arange(self.nrang)
        day = 2 * math.pi * (when % 86400) / 86400
        # Ground scatter: a near-range band whose far edge breathes through the day.
        gs_edge = 14 + 6 * math.sin(day + bmnum / 5)
        ground = (gates >= 5) & (gates < gs_edge) & (rng.random(self.nrang) < 0.7)
        # Ionospheric region drifting in range; flow direction rotating over 2 h.
        centre = 40 + 12 * math.sin(2 * math.pi * when / 1800 + bmnum / 4)
        iono_prob = 0.85 * np.exp(-(((gates - centre) / 9.0) ** 2))
        iono = ~ground & (gates >= 15) & (rng.random(self.nrang) < iono_prob)
        slist = np.flatnonzero(ground | iono)
        n = len(slist)
        if n == 0:
            return empty
        is_ground = ground[slist]
        beam_az = (bmnum - (self.beams - 1) / 2) * 3.24
        flow_dir = (when / 7200 * 360) % 360
        los = 600 * math.cos(math.radians(beam_az - flow_dir))
        v = np.where(
            is_ground,
            rng.normal(0, 15, n),
            los * (0.6 + 0.4 * np.exp(-(((slist - centre) / 15.0) ** 2))) + rng.normal(0, 60, n),
        )
        p_l = np.where(is_ground, rng.uniform(15, 30, n), 32 - 0.35 * slist + rng.normal(0, 3, n))
        w_l = np.where(is_ground, np.abs(rng.normal(20, 8, n)), np.abs(rng.normal(180, 60, n)))
        elv = np.where(is_ground, rng.uniform(8, 20, n), rng.uniform(18, 40, n))
        return {
            "slist": slist.astype("<i2"),
            "v": v.astype("<f4"),
            "p_l": np.clip(p_l, 1, 60).astype("<f4"),
            "w_l": w_l.astype("<f4"),
            "gflg": is_ground.astype("i1"),
            "elv": elv.astype("<f4") if xcf else None,
        }


class RadarSynth:
    """A radar's record stream: scans start on minute boundaries, `beams` beams
    of `integration` seconds each, first beam flagged `scan_sign` (+1, or -1 as
    some radars do), the others 0. Every `sounding_every` scans a sounding
    record (scan -2) follows the scan; every `camping_every` scans a camping
    beam (scan -32768). Records carry radar times; the caller sends them when due."""

    def __init__(
        self,
        stid: int,
        *,
        seed: int = 0,
        beams: int = 16,
        integration: float = 3.0,
        scan_period: float = 60.0,
        scan_sign: int = 1,
        channel: int = 0,
        xcf: bool = True,
        sounding_every: int = 5,
        camping_every: int = 0,
        boresight: float = 0.0,
        nrang: int = 75,
    ) -> None:
        if beams < 1 or integration <= 0:
            raise ValueError("need at least one beam and a positive integration time")
        # Room for the beams plus an optional sounding and camping record.
        scan_period = max(scan_period, (beams + 2) * integration)
        self.stid = stid
        self.beams = beams
        self.integration = integration
        self.scan_period = scan_period
        self.scan_sign = 1 if scan_sign >= 0 else -1
        self.channel = channel
        self.xcf = xcf
        self.sounding_every = sounding_every
        self.camping_every = camping_every
        self.boresight = boresight
        self.nrang = nrang
        self.model = EchoModel(stid, seed=seed, beams=beams, nrang=nrang)

    def record(
        self, bmnum: int, when: float, scan: int, tfreq: int | None = None
    ) -> dict[str, Any]:
        echoes = self.model.beam(bmnum, when, self.xcf)
        noise_rng = np.random.default_rng([self.stid, int(when) & 0xFFFFFFFF, 7])
        return fitacf_record(
            stid=self.stid,
            when=when,
            bmnum=bmnum,
            scan=scan,
            channel=self.channel,
            xcf=self.xcf,
            nrang=self.nrang,
            tfreq=tfreq if tfreq is not None else 10800 + 200 * (int(when // 3600) % 4),
            noise=float(noise_rng.lognormal(1.2, 0.4)),
            bmazm=self.boresight + (bmnum - (self.beams - 1) / 2) * 3.24,
            intt=self.integration,
            **echoes,
        )

    def records(self, start: float) -> Iterator[dict[str, Any]]:
        """Records due at or after `start`, forever (joining the scan in
        progress, as a client connecting to a real radar does)."""
        scan_start = math.floor(start / self.scan_period) * self.scan_period
        number = int(scan_start // self.scan_period)
        while True:
            for record_time, bmnum, flag, tfreq in self._scan_plan(scan_start, number):
                if record_time >= start:
                    yield self.record(bmnum, record_time, flag, tfreq)
            scan_start += self.scan_period
            number += 1

    def _scan_plan(
        self, scan_start: float, number: int
    ) -> list[tuple[float, int, int, int | None]]:
        plan: list[tuple[float, int, int, int | None]] = [
            (scan_start + i * self.integration, i, self.scan_sign if i == 0 else 0, None)
            for i in range(self.beams)
        ]
        after = scan_start + self.beams * self.integration
        if self.sounding_every and number % self.sounding_every == 0:
            plan.append((after, self.beams // 2, SOUNDING, 13100))
            after += self.integration / 2
        if self.camping_every and number % self.camping_every == 0:
            plan.append((after, self.beams // 2, CAMPING, None))
        return plan


def stamp(record: dict[str, Any], when: float) -> dict[str, Any]:
    """A copy of `record` with its time fields set to `when`."""
    return {**record, **radar_time_fields(when)}


def synth_schedule(generator: RadarSynth, start: float) -> Iterator[tuple[float, dict[str, Any]]]:
    """(pause before sending, record) forever from the synthesiser's radar times."""
    previous = start
    for record in generator.records(start):
        when = radar_time(record)
        yield max(when - previous, 0.0), record
        previous = when
