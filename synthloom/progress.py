"""Progress of a long loop as plain events: done/total, rate and ETA, for any sink.

Core loops take a plain callable (`progress(done)` or a `ProgressReporter`) and never import
Prefect; the task layer decides where events go (the Prefect run log, the CLI's bar).
rate = (done - start_done) / elapsed seconds, where start_done counts units already done when
the loop started (e.g. shards kept from a failed attempt); eta = (total - done) / rate (None
until the rate is known).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Log records that carry a progress event have this attribute ({stage, done, total, unit,
# elapsed, rate, eta}): tasks.runtime.stage_progress writes them, the CLI's progress bar
# (cli/progress_bar.py) draws them.
PROGRESS_EXTRA = "synthloom_progress"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress observation of a named loop (`stage`) in `unit`s."""

    stage: str
    done: int
    total: int
    unit: str
    elapsed: float
    start_done: int = 0

    @property
    def rate(self) -> float:
        """Units per second done by this loop so far (0.0 before any time has passed)."""
        return (self.done - self.start_done) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None while nothing is done."""
        if self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def describe(self) -> str:
        """'1200/2000 rows (60%, 345.2 rows/s, ETA 2.3 s)'; '64/2000 rows (3%, starting)'
        before this loop has done anything (no rate yet)."""
        share = 100.0 * self.done / self.total if self.total else 100.0
        if self.done == self.start_done and not self.finished:
            return f"{self.done}/{self.total} {self.unit} ({share:.0f}%, starting)"
        eta = "?" if self.eta is None else f"{self.eta:.1f} s"
        return (
            f"{self.done}/{self.total} {self.unit} ({share:.0f}%, "
            f"{self.rate:.1f} {self.unit}/s, ETA {eta})"
        )


class ProgressReporter:
    """Turns `update(done)` calls into ProgressEvents for `sink`, at most every `min_interval`
    seconds (the first and the final event always pass)."""

    def __init__(
        self,
        stage: str,
        total: int,
        sink: Callable[[ProgressEvent], None],
        *,
        unit: str = "items",
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self._sink, self._clock, self._min_interval = sink, clock, min_interval
        self._start = clock()
        self._last_emit: float | None = None
        self._start_done: int | None = None
        self.done = 0

    def update(self, done: int) -> None:
        """Report the absolute count done so far (the first call sets the starting count)."""
        if self._start_done is None:
            self._start_done = done
        self.done = done
        now = self._clock()
        final = done >= self.total
        if not final and self._last_emit is not None and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        elapsed = now - self._start
        self._sink(
            ProgressEvent(self.stage, done, self.total, self.unit, elapsed, self._start_done)
        )

    def advance(self, count: int = 1) -> None:
        """Report `count` more units done."""
        self.update(self.done + count)

    def __call__(self, done: int) -> None:
        self.update(done)
