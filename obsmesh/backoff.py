"""One retry policy: capped exponential backoff with jitter, starting over after a good run.

`Backoff` is the pure delay function: the delay before attempt `n` (0-based,
counting failures in a row) is `initial * factor**n`, capped at `maximum`,
times a random factor in [1 - jitter, 1 + jitter], never above `maximum`.
Jitter spreads the reconnections of many clients after an outage.

`Retry` counts failures in a row under one `Backoff`: `failed()` gives the
next delay; `reset()` starts over (a connection that worked); a failure after
being up at least `stable_after` seconds counts as the first again (a process
that ran well for a while and then crashed is not in a crash loop). The clock
and the random source are injected, so tests need neither sleeps nor luck.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """The delay before attempt `n`; see the module docstring."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = self.initial
        for _ in range(min(attempt, 64)):  # no float overflow, whatever the attempt count
            base *= self.factor
            if base >= self.maximum:
                base = self.maximum
                break
        spread = 1.0 + self.jitter * (2.0 * rand() - 1.0) if self.jitter else 1.0
        return min(self.maximum, base * spread)

    def autobahn(self) -> dict[str, Any]:
        """The same policy as an autobahn transport's retry settings (forever)."""
        return {
            "max_retries": -1,
            "initial_retry_delay": self.initial,
            "max_retry_delay": self.maximum,
            "retry_delay_growth": self.factor,
            "retry_delay_jitter": self.jitter,
        }


# Reconnecting to the mesh's router (services and the consumer client alike):
# fast at first (a router restart takes about a second), never more than 5 s apart.
ROUTER = Backoff(initial=0.25, factor=1.6, maximum=5.0, jitter=0.25)


class Retry:
    """Failures in a row and the delay before the next attempt; see the module docstring."""

    def __init__(
        self,
        backoff: Backoff,
        *,
        stable_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.backoff = backoff
        self.stable_after = stable_after
        self.clock = clock
        self.rand = rand
        self.failures = 0  # in a row
        self._up_since: float | None = None

    def up(self) -> None:
        """The connection or process is up (now): a failure after `stable_after`
        seconds of it starts the backoff over."""
        self._up_since = self.clock()

    def reset(self) -> None:
        """It worked: the next failure waits `initial` again."""
        self.failures = 0

    def failed(self, up_for: float | None = None) -> float:
        """Count a failure; the seconds to wait before the next attempt. `up_for`
        is how long it had been up (default: since `up()`, by the clock)."""
        if up_for is None and self._up_since is not None:
            up_for = self.clock() - self._up_since
        self._up_since = None
        if self.stable_after is not None and up_for is not None and up_for >= self.stable_after:
            self.failures = 0
        delay = self.backoff.delay(self.failures, self.rand)
        self.failures += 1
        return delay
