"""Progress of long waits (a table restore, a backlog being caught up) for the log.

:class:`Progress` is pure: it is told how many offsets are done and how many remain,
and reads time from an injected clock; it gives a line (percentage, rate and an
estimate of the time left) at most every ``every_s`` seconds. The rate is taken over
the whole wait, so a pause early on shows in the estimate rather than being forgotten.
:func:`await_with_progress` logs those lines while a future is pending.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

#: Longest gap between two progress lines of one wait.
EVERY_S: Final = 10.0
#: How often :func:`await_with_progress` looks at the figures.
POLL_S: Final = 1.0

_T = TypeVar("_T")


def duration_text(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``; under a minute: ``42s``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass(slots=True)
class Progress:
    """Offsets done and remaining of one wait, and when to say so."""

    what: str
    now: Callable[[], float]
    every_s: float = EVERY_S
    started: float = field(init=False)
    last_said: float = field(init=False)
    done: int = field(init=False, default=0)
    remaining: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.started = self.last_said = self.now()

    @property
    def percent(self) -> float:
        """Share done, 0 to 100 (100 when nothing was ever to do)."""
        total = self.done + self.remaining
        return 100.0 if total <= 0 else 100.0 * self.done / total

    def rate(self) -> float:
        """Offsets per second since the start (0 before any time has passed)."""
        elapsed = self.now() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None while nothing is done."""
        rate = self.rate()
        if self.remaining <= 0:
            return 0.0
        return self.remaining / rate if rate > 0 else None

    def update(self, done: int, remaining: int) -> str | None:
        """Record the figures; a line to log when ``every_s`` passed since the last one."""
        self.done = max(0, done)
        self.remaining = max(0, remaining)
        now = self.now()
        if now - self.last_said < self.every_s:
            return None
        self.last_said = now
        return self.line()

    def line(self) -> str:
        """``restoring partitions [0, 1]: 42.0% (4,200 of 10,000), 700/s, about 8s left``."""
        eta = self.eta_s()
        left = (
            "time left unknown"
            if eta is None or math.isinf(eta)
            else f"about {duration_text(eta)} left"
        )
        return (
            f"{self.what}: {self.percent:.1f}% ({self.done:,} of {self.done + self.remaining:,}), "
            f"{self.rate():,.0f}/s, {left}"
        )


async def await_with_progress(
    awaitable: Awaitable[_T],
    progress: Progress,
    figures: Callable[[], tuple[int, int]],
    logger: logging.Logger,
    poll_s: float = POLL_S,
) -> _T:
    """Await ``awaitable``, logging ``progress`` (fed by ``figures()``: done, remaining)."""
    future = asyncio.ensure_future(awaitable)
    try:
        while True:
            finished, _ = await asyncio.wait({future}, timeout=poll_s)
            if finished:
                return future.result()
            line = progress.update(*figures())
            if line is not None:
                logger.info(line)
    finally:
        if not future.done():
            future.cancel()


#: A lag at least this large (records) is a backlog worth reporting: several seconds
#: of work at the benchmark's rate per worker (tens of thousands of records/s).
BACKLOG_MIN: Final = 100_000


@dataclass(slots=True)
class BacklogWatch:
    """Follows one worker's total lag and says how catching up a backlog goes.

    Fed every few seconds with the assignment's generation, the offsets processed so far
    on the worker's partitions and their lag; a new assignment starts the count again.
    """

    now: Callable[[], float]
    every_s: float = EVERY_S
    min_lag: int = BACKLOG_MIN
    _progress: Progress | None = field(init=False, default=None)
    _generation: int = field(init=False, default=-1)
    _base: int = field(init=False, default=0)

    def observe(self, generation: int, processed: int, lag: int) -> str | None:
        """A line to log, or None."""
        if self._progress is not None and generation != self._generation:
            self._progress = None  # other partitions now: their own backlog, counted anew
        if self._progress is None:
            if lag < self.min_lag:
                return None
            self._generation, self._base = generation, processed
            self._progress = Progress("catching up a backlog", self.now, self.every_s)
            self._progress.update(0, lag)
            return f"catching up a backlog of {lag:,} records"
        progress = self._progress
        if lag <= 0:
            self._progress = None
            elapsed = self.now() - progress.started
            return (
                f"backlog caught up: {max(0, processed - self._base):,} records "
                f"in {duration_text(elapsed)}"
            )
        return progress.update(processed - self._base, lag)
