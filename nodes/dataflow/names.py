"""Names in the SuperDARN data flow: data files, summary logs, inotify flags, stages.

Pure functions over strings. Every parser returns None for a name it does not
recognise; none of them raises on bad input.

Data files:   YYYYMMDD.HHMM.SS.<rad>.<slice>.<kind>.<ext...>
              20240101.0000.00.sas.0.rawacf.h5       (Borealis array/site file)
              20240101.0000.00.sas.a.rawacf.bz2      (DMAP, slice as a letter)
              20240101.0000.00.sas.0.antennas_iq.antenna_3_0_70.jpg  (IQ plot)
Summary logs: [<rad>.]YYYYMMDD.<script>_summary.log, and archive_iq_plots'
              [<rad>.]YYYYMMDD.archive_iq.log
Flags:        .borealis_flag[_<rad>], .site-linux_flag_<rad>,
              .campus_dataflow_flag_<rad>
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
from dataclasses import dataclass

# Pipeline order; each stage is triggered by the previous one finishing.
STAGES: tuple[str, ...] = (
    "rsync_to_nas",
    "plot_antennas_iq",
    "rsync_to_campus",
    "convert_on_campus",
    "distribute_borealis_data",
    "archive_iq_plots",
)

# Flag file prefix -> the stage whose end it announces.
FLAG_STAGES: dict[str, str] = {
    ".borealis_flag": "rsync_to_nas",
    ".site-linux_flag": "rsync_to_campus",
    ".campus_dataflow_flag": "archive_iq_plots",
}

_DAY_CACHE: dict[str, float | None] = {}


def day_start(yyyymmdd: str) -> float | None:
    """UNIX seconds at 00:00 UTC of a `YYYYMMDD` date, or None if it is not a real date."""
    cached = _DAY_CACHE.get(yyyymmdd, False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    value: float | None = None
    if len(yyyymmdd) == 8 and yyyymmdd.isascii() and yyyymmdd.isdigit():
        try:
            # datetime.date validates the day of month (timegm alone would roll Feb 31 over)
            d = datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
            value = float(calendar.timegm(d.timetuple()))
        except ValueError:
            value = None
    if len(_DAY_CACHE) > 20000:  # hostile input must not grow the cache without bound
        _DAY_CACHE.clear()
    _DAY_CACHE[yyyymmdd] = value
    return value


def clock_seconds(hh: str, mm: str, ss: str) -> int | None:
    """Seconds into the day from two-digit fields, or None if out of range."""
    if not (len(hh) == 2 and len(mm) == 2 and len(ss) == 2):
        return None
    text = hh + mm + ss
    if not (text.isascii() and text.isdigit()):
        return None
    h, m, s = int(hh), int(mm), int(ss)
    if h > 23 or m > 59 or s > 60:  # 60: a leap second printed by date(1)
        return None
    return h * 3600 + m * 60 + s


def is_radar_code(text: str) -> bool:
    """SuperDARN radar codes are three lower-case ASCII letters."""
    return len(text) == 3 and text.isascii() and text.isalpha() and text.islower()


def stage_of(script: str) -> str:
    """Stage name from the script as printed (`$0` may be a full path or end in .sh)."""
    name = script.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".sh"):
        name = name[:-3]
    return name


@dataclass(frozen=True, slots=True)
class DataName:
    """What a data-file name says about the file."""

    time: float  # UNIX seconds of the file's start, from its name
    radar: str
    slice: str  # "0", "1", ... or the DMAP letter "a", "b", ...
    kind: str  # rawacf, antennas_iq, bfiq, ..., or iq_plot for plot images
    ext: str  # what follows the kind: "h5", "hdf5", "bz2", "hdf5.site", "jpg", ...


_IMAGE_EXTS = ("jpg", "jpeg", "png")
_DATA_NAME_RE = re.compile(
    r"(\d{8})\.(\d\d)(\d\d)\.(\d\d)\.([a-z]{3})\.([0-9A-Za-z]+)\.([A-Za-z0-9_]+)\.([^/]+)", re.ASCII
)


@functools.lru_cache(maxsize=65536)  # names repeat: one file is named on several lines and runs
def parse_data_name(name: str) -> DataName | None:
    """Parse a data-file base name (no directory); None if it is not one."""
    m = _DATA_NAME_RE.fullmatch(name)
    if m is None:
        return None
    day = day_start(m.group(1))
    sec = clock_seconds(m.group(2), m.group(3), m.group(4))
    if day is None or sec is None:
        return None
    kind, ext = m.group(7), m.group(8)
    if ext.rsplit(".", 1)[-1].lower() in _IMAGE_EXTS:
        kind = "iq_plot" if kind == "antennas_iq" else f"{kind}_plot"
    return DataName(day + sec, m.group(5), m.group(6), kind, ext)


def data_name_of_path(path: str) -> DataName | None:
    """`parse_data_name` of the last component of a path."""
    return parse_data_name(path.rstrip("/").rsplit("/", 1)[-1])


@dataclass(frozen=True, slots=True)
class LogName:
    """What a summary-log file name says: its UTC day, the script, and the radar if named."""

    day: float
    script: str
    radar: str | None


def parse_log_name(name: str) -> LogName | None:
    """Parse a summary-log base name; None if it is not one."""
    if not name.endswith(".log"):
        return None
    stem = name[:-4]
    radar: str | None = None
    head, _, rest = stem.partition(".")
    if is_radar_code(head):
        radar = head
        head, _, rest = rest.partition(".")
    day = day_start(head)
    if day is None or not rest:
        return None
    if rest.endswith("_summary"):
        script = rest[: -len("_summary")]
    elif rest == "archive_iq":  # the archive script names its summary this way
        script = "archive_iq_plots"
    else:
        return None
    if not script or "." in script or "/" in script:
        return None
    return LogName(day, script, radar)


@dataclass(frozen=True, slots=True)
class FlagName:
    """An inotify flag file: which stage finished, for which radar (None if unnamed)."""

    stage: str
    radar: str | None


def parse_flag_name(name: str) -> FlagName | None:
    """Parse a flag-file base name; None if it is not one."""
    for prefix, stage in FLAG_STAGES.items():
        if name == prefix:
            return FlagName(stage, None)
        if name.startswith(prefix + "_") and is_radar_code(name[len(prefix) + 1 :]):
            return FlagName(stage, name[len(prefix) + 1 :])
    return None
