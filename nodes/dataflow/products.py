"""Products per radar x stage, computed from parsed runs. Pure: the clock is an argument.

Per run (one sample on the stage's timeline): files ok / failed, duration,
files older than a day at transfer (file-name timestamp vs run start).
Per stage at a given time: time since the last run, success rate over a
window, and staleness: a stage that has not started a run within its expected
period plus a margin is stale. `ProductBook.check` returns only the changes
(stale -> fresh and back), so a caller turns each into one status change and
one event.

All times are UNIX seconds in the logs' own clock (the UTC time lines).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodes.dataflow.names import STAGES
from nodes.dataflow.summary import FAILED, OK, Run

DAY = 86400.0
DEFAULT_PERIOD = 7200.0  # every stage runs once per two-hour Borealis file
DEFAULT_MARGIN = 1800.0
DEFAULT_WINDOW = DAY
# Stages whose files are old by design (archive_iq_plots moves plots over 24 h old).
OLD_BY_DESIGN = frozenset({"archive_iq_plots"})


def files_older_than(run: Run, age: float = DAY) -> int | None:
    """Files of a run whose name's timestamp is more than `age` before the run's start.

    None when the run has no start time. Files without a parseable name are not counted.
    """
    if run.start is None:
        return None
    cutoff = run.start - age
    return sum(1 for f in run.files if f.name is not None and f.name.time < cutoff)


def run_figures(run: Run, old_after: float = DAY) -> dict[str, float | None]:
    """The numbers one run contributes to its radar x stage timeline."""
    old = None if run.script in OLD_BY_DESIGN else files_older_than(run, old_after)
    return {
        "files_ok": float(run.files_ok),
        "files_failed": float(run.files_failed),
        "duration": run.duration,
        "files_old": None if old is None else float(old),
        "nothing_to_do": 1.0 if run.nothing_to_do else 0.0,
        "died": 0.0 if run.state == "finished" else 1.0,
        "connection_errors": float(len(run.connection_errors)),
        "unknown_lines": float(run.unknown_count),
    }


@dataclass(frozen=True, slots=True)
class StageProducts:
    """The figures of one radar x stage at a time `now`."""

    radar: str
    stage: str
    now: float
    runs: int  # runs started within the window
    last_start: float | None
    last_end: float | None
    last_state: str | None
    last_files_ok: int | None
    last_files_failed: int | None
    last_duration: float | None
    last_files_old: int | None
    since_last_run: float | None  # now - start of the latest run (or activity)
    files_ok: int  # over the window
    files_failed: int
    success_rate: float | None  # files ok / files tried over the window; None if none tried
    run_success_rate: float | None  # finished runs without failures / runs, over the window
    stale: bool
    overdue: float  # seconds past period + margin (0 when not stale)

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class StaleChange:
    """A stage became stale (or fresh again) at time `now`."""

    radar: str
    stage: str
    stale: bool
    now: float
    last_activity: float | None
    period: float
    margin: float


@dataclass(slots=True)
class _Entry:
    start: float
    end: float | None
    state: str
    ok: int
    failed: int
    old: int | None
    duration: float | None


class StageHistory:
    """Runs of one radar x stage, kept for a window (they may arrive out of order)."""

    def __init__(
        self, radar: str, stage: str, window: float = DEFAULT_WINDOW, keep: int = 10000
    ) -> None:
        self.radar = radar
        self.stage = stage
        self.window = window
        self._keep = keep
        self._starts: list[float] = []
        self._entries: list[_Entry] = []
        self.last_activity: float | None = None  # latest start seen (runs or RunStart records)
        self.total_runs = 0

    def add(self, run: Run, old_after: float = DAY) -> None:
        if run.start is None or not math.isfinite(run.start):
            return  # a run without a time line has no place on a timeline
        old = None if self.stage in OLD_BY_DESIGN else files_older_than(run, old_after)
        entry = _Entry(
            run.start, run.end, run.state, run.files_ok, run.files_failed, old, run.duration
        )
        i = bisect.bisect_right(self._starts, run.start)
        self._starts.insert(i, run.start)
        self._entries.insert(i, entry)
        self.total_runs += 1
        self.note_activity(run.start)
        self._prune()

    def note_activity(self, t: float | None) -> None:
        if (
            t is not None
            and math.isfinite(t)
            and (self.last_activity is None or t > self.last_activity)
        ):
            self.last_activity = t

    def _prune(self) -> None:
        # keep what any window ending at the newest run could need, and at most `keep`
        newest = self._starts[-1]
        cut = bisect.bisect_left(self._starts, newest - self.window)
        cut = max(cut - 1, len(self._starts) - self._keep, 0)  # the one just before: "last run"
        if cut > 0:
            del self._starts[:cut]
            del self._entries[:cut]

    def products(self, now: float, stale: bool = False, overdue: float = 0.0) -> StageProducts:
        lo = bisect.bisect_left(self._starts, now - self.window)
        hi = bisect.bisect_right(self._starts, now)
        window = self._entries[lo:hi]
        ok = sum(e.ok for e in window)
        failed = sum(e.failed for e in window)
        good_runs = sum(1 for e in window if e.state == "finished" and e.failed == 0)
        last = self._entries[hi - 1] if hi > 0 else None
        since = None if self.last_activity is None else now - self.last_activity
        return StageProducts(
            radar=self.radar,
            stage=self.stage,
            now=now,
            runs=len(window),
            last_start=None if last is None else last.start,
            last_end=None if last is None else last.end,
            last_state=None if last is None else last.state,
            last_files_ok=None if last is None else last.ok,
            last_files_failed=None if last is None else last.failed,
            last_duration=None if last is None else last.duration,
            last_files_old=None if last is None else last.old,
            since_last_run=since,
            files_ok=ok,
            files_failed=failed,
            success_rate=(ok / (ok + failed)) if ok + failed else None,
            run_success_rate=(good_runs / len(window)) if window else None,
            stale=stale,
            overdue=overdue,
        )


class ProductBook:
    """All radar x stage histories, and their staleness.

    `periods` overrides the expected period of single stages. `expect` declares
    radar x stage pairs that should run even if never seen (they go stale
    `period + margin` after `since`).
    """

    def __init__(
        self,
        *,
        period: float = DEFAULT_PERIOD,
        margin: float = DEFAULT_MARGIN,
        window: float = DEFAULT_WINDOW,
        periods: Mapping[str, float] | None = None,
        old_after: float = DAY,
    ) -> None:
        for name, value in (
            ("period", period),
            ("margin", margin),
            ("window", window),
            ("old_after", old_after),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.period = float(period)
        self.margin = float(margin)
        self.window = float(window)
        self.old_after = float(old_after)
        self.periods = {k: float(v) for k, v in (periods or {}).items()}
        self._stages: dict[tuple[str, str], StageHistory] = {}
        self._since: dict[tuple[str, str], float] = {}
        self._stale: dict[tuple[str, str], bool] = {}

    def history(self, radar: str, stage: str) -> StageHistory:
        key = (radar, stage)
        h = self._stages.get(key)
        if h is None:
            h = self._stages[key] = StageHistory(radar, stage, self.window)
        return h

    def expect(self, radars: Iterable[str], since: float, stages: Iterable[str] = STAGES) -> None:
        stages = tuple(stages)
        for radar in radars:
            for stage in stages:
                self.history(radar, stage)
                self._since.setdefault((radar, stage), since)

    def add_run(self, run: Run) -> None:
        self.history(run.radar, run.script).add(run, self.old_after)

    def note_start(self, radar: str, stage: str, t: float | None) -> None:
        """A run has started (its header is in): activity, even before it finishes."""
        self.history(radar, stage).note_activity(t)

    def period_of(self, stage: str) -> float:
        return self.periods.get(stage, self.period)

    def _staleness(self, key: tuple[str, str], now: float) -> tuple[bool, float, float | None]:
        h = self._stages[key]
        ref = h.last_activity if h.last_activity is not None else self._since.get(key)
        if ref is None:
            return False, 0.0, None
        late = now - ref - self.period_of(key[1]) - self.margin
        return late > 0, max(late, 0.0), h.last_activity

    def check(self, now: float) -> list[StaleChange]:
        """Stages whose staleness changed since the last check (first check: the stale ones)."""
        changes = []
        for key in self._stages:
            stale, _, last = self._staleness(key, now)
            if stale != self._stale.get(key, False):
                self._stale[key] = stale
                changes.append(
                    StaleChange(
                        key[0], key[1], stale, now, last, self.period_of(key[1]), self.margin
                    )
                )
        return changes

    def products(self, radar: str, stage: str, now: float) -> StageProducts:
        key = (radar, stage)
        self.history(radar, stage)
        stale, overdue, _ = self._staleness(key, now)
        return self._stages[key].products(now, stale, overdue)

    def snapshot(self, now: float) -> list[StageProducts]:
        return [self.products(r, s, now) for (r, s) in sorted(self._stages)]


__all__ = [
    "DAY",
    "DEFAULT_MARGIN",
    "DEFAULT_PERIOD",
    "DEFAULT_WINDOW",
    "FAILED",
    "OK",
    "ProductBook",
    "StageHistory",
    "StageProducts",
    "StaleChange",
    "files_older_than",
    "run_figures",
]
