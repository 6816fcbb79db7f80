"""Settings of the `dataflow` node: defaults, the command line, and checks.

Section `[dataflow]` of the configuration file; every key can be given as
`OBSMESH_DATAFLOW_<KEY>` (lists comma-separated). `dir` names a tree laid out
like the simulator's and fills the roots not given explicitly.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from nodes.dataflow.names import is_radar_code
from nodes.dataflow.products import DEFAULT_MARGIN, DEFAULT_PERIOD, DEFAULT_WINDOW
from obsmesh import config

DEFAULTS: dict[str, Any] = {
    "dir": "",  # a tree laid out like the simulator's: summary/, data/, flags/
    "summary_roots": [],
    "data_dirs": [],
    "flag_dirs": [],
    "radars": [],  # radars expected to run (stale if they never do)
    "period": DEFAULT_PERIOD,
    "margin": DEFAULT_MARGIN,
    "window": DEFAULT_WINDOW,
    "unfinished_after": 0.0,  # 0: period + margin
    "backlog": 2 * 86400.0,
    "mode": "auto",  # auto | inotify | poll
    "poll_interval": 1.0,
    "check_interval": 0.0,  # 0: period / 10, within [0.1, 10] s
    "sample_interval": 0.0,  # 0: period / 20, within [1, 60] s
}

# the keys the command line can set
CLI_KEYS = (
    "dir",
    "summary_roots",
    "data_dirs",
    "flag_dirs",
    "radars",
    "period",
    "margin",
    "window",
    "unfinished_after",
    "mode",
)


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


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", help="a tree laid out like the simulator's (summary/, data/, flags/)"
    )
    parser.add_argument(
        "--summary-root",
        action="append",
        dest="summary_roots",
        help="directory of summary logs (repeatable)",
    )
    parser.add_argument(
        "--data-dir", action="append", dest="data_dirs", help="data directory (repeatable)"
    )
    parser.add_argument(
        "--flag-dir", action="append", dest="flag_dirs", help="flag directory (repeatable)"
    )
    parser.add_argument(
        "--radars", help="comma-separated radars expected to run (stale if they never do)"
    )
    parser.add_argument(
        "--period", type=float, help="expected seconds between runs of a stage (default 7200)"
    )
    parser.add_argument(
        "--margin", type=float, help="seconds of grace after the period (default 1800)"
    )
    parser.add_argument(
        "--window", type=float, help="seconds of the success-rate window (default 86400)"
    )
    parser.add_argument(
        "--unfinished-after", type=float, help="a run open this long died (default period+margin)"
    )
    parser.add_argument(
        "--mode", choices=("auto", "inotify", "poll"), help="how to watch (default auto)"
    )


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the file, the environment and the command line (unchecked)."""
    overrides = {k: getattr(args, k, None) for k in CLI_KEYS}
    return config.settings(DEFAULTS, "dataflow", path=args.config, overrides=overrides)
