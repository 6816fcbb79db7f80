"""Settings of the `dataflow` node (`Settings`): section `[dataflow]` of the
configuration file, `OBSMESH_DATAFLOW_<KEY>` (lists comma-separated), the flags
of `obsmesh node dataflow`. `dir` names a tree laid out like the simulator's
and fills the roots not given explicitly; `resolve_options` derives the
automatic intervals and refuses what cannot work.
"""

from __future__ import annotations

import math
import os
from typing import Any

from nodes.dataflow.names import is_radar_code
from nodes.dataflow.products import DEFAULT_MARGIN, DEFAULT_PERIOD, DEFAULT_WINDOW
from obsmesh.settings import Section, Setting


class Settings(Section):
    section = "dataflow"
    dir = Setting("", "a tree laid out like the simulator's (summary/, data/, flags/)", flag=True)
    summary_roots = Setting(
        [], "directories of summary logs", flag="--summary-root", repeat=True, metavar="DIR"
    )
    data_dirs = Setting([], "data directories", flag="--data-dir", repeat=True, metavar="DIR")
    flag_dirs = Setting([], "flag directories", flag="--flag-dir", repeat=True, metavar="DIR")
    radars = Setting(
        [], "radars expected to run, comma-separated (stale if they never do)", flag=True
    )
    period = Setting(DEFAULT_PERIOD, "expected seconds between runs of a stage", flag=True)
    margin = Setting(DEFAULT_MARGIN, "seconds of grace after the period", flag=True)
    window = Setting(DEFAULT_WINDOW, "seconds of the success-rate window", flag=True)
    unfinished_after = Setting(0.0, "a run open this long died (0: period + margin)", flag=True)
    backlog = Setting(
        2 * 86400.0, "logs modified this many seconds before start are read from their start"
    )
    mode = Setting("auto", "how to watch", flag=True, choices=("auto", "inotify", "poll"))
    poll_interval = Setting(1.0, "seconds between polls (poll mode)")
    check_interval = Setting(0.0, "seconds between staleness checks (0: period / 10, 0.1-10 s)")
    sample_interval = Setting(
        0.0, "seconds between samples of the stages timeline (0: period / 20, 1-60 s)"
    )

    @classmethod
    def validate(cls, values: dict[str, Any], mesh: Any) -> dict[str, Any]:
        return resolve_options(values)


DEFAULTS: dict[str, Any] = Settings.defaults()


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Fill what `dir` implies and the automatic intervals; refuse what cannot work."""
    out = dict(options)
    d = out["dir"]
    if d:
        out["summary_roots"] = out["summary_roots"] or [os.path.join(d, "summary")]
        # the final destination only: every intermediate move would multiply the arrivals
        out["data_dirs"] = out["data_dirs"] or [
            os.path.join(d, "data", "campus", "borealis_site_data")
        ]
        out["flag_dirs"] = out["flag_dirs"] or [os.path.join(d, "flags", ".inotify_watchdir")]
    if not out["summary_roots"]:
        raise ValueError(
            "the dataflow node needs --dir or --summary-root (or OBSMESH_DATAFLOW_SUMMARY_ROOTS)"
        )
    for key in (
        "period",
        "margin",
        "window",
        "unfinished_after",
        "backlog",
        "poll_interval",
        "check_interval",
        "sample_interval",
    ):
        v = float(out[key])
        if not math.isfinite(v) or v < 0:
            raise ValueError(
                f"dataflow setting {key} must be a finite number >= 0, got {out[key]!r}"
            )
        out[key] = v
    if out["period"] <= 0 or out["poll_interval"] <= 0:
        raise ValueError("dataflow period and poll_interval must be positive")
    bad = [r for r in out["radars"] if not is_radar_code(r)]
    if bad:
        raise ValueError(f"dataflow radars must be three-letter codes, got {bad}")
    if out["mode"] not in ("auto", "inotify", "poll"):
        raise ValueError(f"dataflow mode must be auto, inotify or poll, got {out['mode']!r}")
    period = out["period"]
    out["unfinished_after"] = out["unfinished_after"] or period + out["margin"]
    out["check_interval"] = out["check_interval"] or _clamp(period / 10, 0.1, 10.0)
    out["sample_interval"] = out["sample_interval"] or _clamp(period / 20, 1.0, 60.0)
    return out
