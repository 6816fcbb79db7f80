"""Which samples of a unit's timeline to store, given their times (pure).

A unit's clock is outside input. A sample is *implausible* when it is dated
ahead of the server's clock by more than `future_tolerance`, or before
`epoch` (no unit ran before it). An implausible sample is flagged and
counted by the node, stays in the uploaded file byte for byte, and changes
nothing for the samples after it: the timeline's "last stored time" moves
only with samples that are stored.

Samples out of order are merged into the store (it keeps each timeline in
time order) as long as they are no more than `reorder_tolerance` older than
the newest stored sample; older ones are counted as too late. Within that
window every stored time is remembered, so a sample delivered twice (the
readings ingest is at-least-once across restarts) is never stored twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DEFAULT_FUTURE_TOLERANCE = 600.0  # seconds a unit's clock may run ahead of the server's
DEFAULT_REORDER_TOLERANCE = 3600.0  # seconds a sample may be older than the newest stored
DEFAULT_EPOCH = 1_514_764_800.0  # 2018-01-01T00:00:00Z: no unit ran before it


@dataclass(frozen=True)
class TimeRules:
    future_tolerance: float = DEFAULT_FUTURE_TOLERANCE
    reorder_tolerance: float = DEFAULT_REORDER_TOLERANCE
    epoch: float = DEFAULT_EPOCH

    def __post_init__(self) -> None:
        for name in ("future_tolerance", "reorder_tolerance"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if not math.isfinite(self.epoch):
            raise ValueError(f"epoch must be a UNIX time, got {self.epoch!r}")


@dataclass
class Admitted:
    """The verdict on one batch: indices to store, and why the others are not."""

    index: list[int] = field(default_factory=list)
    duplicate: int = 0  # stored already (a replay)
    too_late: int = 0  # older than the reorder window
    ahead: list[int] = field(default_factory=list)  # implausible: ahead of the server's clock
    before_epoch: list[int] = field(default_factory=list)  # implausible: before the epoch

    @property
    def implausible(self) -> list[int]:
        return sorted(self.ahead + self.before_epoch)


class Admission:
    """The admission state of one timeline: its newest stored time and the
    times stored within the reorder window."""

    def __init__(self, rules: TimeRules) -> None:
        self.rules = rules
        self.last = -math.inf
        self._recent: set[float] = set()

    def seed(self, times: Iterable[float]) -> None:
        """Times already stored (read back from the store after a restart)."""
        for t in times:
            if math.isfinite(t):
                self._remember(float(t))

    def admit(self, times: Sequence[float], now: float) -> Admitted:
        rules = self.rules
        out = Admitted()
        latest = now + rules.future_tolerance
        for i, t in enumerate(times):
            if not math.isfinite(t):
                out.before_epoch.append(i)  # the parser never gives one; refuse it all the same
            elif t > latest:
                out.ahead.append(i)
            elif t < rules.epoch:
                out.before_epoch.append(i)
            elif t <= self.last - rules.reorder_tolerance:
                out.too_late += 1
            elif t in self._recent:
                out.duplicate += 1
            else:
                out.index.append(i)
                self._remember(float(t))
        return out

    def _remember(self, t: float) -> None:
        self._recent.add(t)
        if t > self.last:
            self.last = t
            horizon = t - self.rules.reorder_tolerance
            if len(self._recent) > 64 and min(self._recent) <= horizon:
                self._recent = {x for x in self._recent if x > horizon}
