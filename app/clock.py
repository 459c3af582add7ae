"""The worker's notion of "now", injected so tests can move it.

Production uses :class:`WallClock`. Integration tests start a worker with
``MOMENTS_TEST_CLOCK=1``-style wiring that swaps in a :class:`ManualClock` they can
move over HTTP; nothing patches ``time`` globally.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of the current time in epoch milliseconds (UTC)."""

    def now_ms(self) -> int:
        """Current time in epoch milliseconds."""
        ...


class WallClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        """Current wall-clock time in epoch milliseconds."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """The time last set."""
        return self._now_ms

    def set_ms(self, now_ms: int) -> None:
        """Move the clock (forwards or backwards) to ``now_ms``."""
        self._now_ms = now_ms
