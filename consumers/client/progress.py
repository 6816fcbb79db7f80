"""A progress bar for long `get` calls: tqdm (its notebook widget in Jupyter)
when installed, else rich, else one updating line on stderr. All optional."""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """total(n), update(n), close(): drawn from the calling thread only."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.done = 0
        self.expected = 0
        self._impl = _make(description)

    def total(self, n: int) -> None:
        self.expected = max(n, self.done)
        self._impl.total(self.expected)

    def update(self, n: int) -> None:
        self.done += n
        if self.done > self.expected:
            self.expected = self.done
            self._impl.total(self.expected)
        self._impl.update(n)

    def close(self, completed: bool) -> None:
        if completed and self.done != self.expected:
            self.expected = self.done
            self._impl.total(self.done)
        self._impl.close()


def _make(description: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        pass
    else:
        return _Tqdm(tqdm, description)
    try:
        from rich.progress import Progress
    except ImportError:
        return _Plain(description)
    return _Rich(Progress, description)


class _Tqdm:
    def __init__(self, tqdm: Any, description: str) -> None:
        self.bar = tqdm(total=0, desc=description, unit=" points", unit_scale=True, leave=True)

    def total(self, n: int) -> None:
        self.bar.total = n
        self.bar.refresh()

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _Rich:
    def __init__(self, progress_cls: Any, description: str) -> None:
        self.progress = progress_cls(transient=False)
        self.progress.start()
        self.task = self.progress.add_task(description, total=None)

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n)

    def update(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def close(self) -> None:
        self.progress.stop()


class _Plain:
    def __init__(self, description: str) -> None:
        self.description = description
        self.n = 0
        self.of = 0

    def total(self, n: int) -> None:
        self.of = n
        self._draw()

    def update(self, n: int) -> None:
        self.n += n
        self._draw()

    def _draw(self) -> None:
        pct = f" {100 * self.n / self.of:5.1f}%" if self.of else ""
        sys.stderr.write(f"\r{self.description}: {self.n:,} of {self.of:,} points{pct}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
