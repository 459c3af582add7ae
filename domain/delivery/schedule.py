"""When a failed delivery is tried again.

A delivery is tried once from the event topic, then once from each retry tier of the schedule
(by default 5 s, 1 min, 10 min, 1 h, 6 h: six attempts over about seven hours). The attempt
after a failure is due ``delay`` later, the delay of the tier it goes to, moved by a random
jitter of up to +-10 % so that the events of an outage do not all come back in the same second;
when the answer carried ``Retry-After`` (seconds or an HTTP-date), never before it. No wait is
longer than :data:`MAX_WAIT_S` (6 h), whatever ``Retry-After`` asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

JITTER: Final = 0.1
MAX_WAIT_S: Final = 6 * 3600.0

_UNITS: Final = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """The delays of the retry tiers, in seconds, in the order a delivery goes through them."""

    delays_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.delays_s:
            raise ValueError("a schedule needs at least one delay")
        if any(not math.isfinite(d) or d <= 0 or d > MAX_WAIT_S for d in self.delays_s):
            raise ValueError(f"every delay must be above 0 and at most {MAX_WAIT_S:g} s")
        labels = [tier_label(d) for d in self.delays_s]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two delays name the same tier: {', '.join(labels)}")

    @property
    def max_attempts(self) -> int:
        """Attempts a delivery gets: the first, then one per tier."""
        return 1 + len(self.delays_s)

    def next_tier(self, attempts: int) -> int | None:
        """The tier (index) a delivery goes to after its ``attempts``-th attempt failed and
        should be retried; None when that was its last attempt (it is dead)."""
        return attempts - 1 if 1 <= attempts <= len(self.delays_s) else None

    def labels(self) -> tuple[str, ...]:
        """Each tier's name in topic names: ``5s``, ``1m``, ``10m``, ``1h``, ``6h``."""
        return tuple(tier_label(d) for d in self.delays_s)


def tier_label(delay_s: float) -> str:
    """``delay_s`` as the shortest whole number of one unit: ``5s``, ``10m``, ``200ms``.

    Milliseconds are the finest unit (a delay is rounded to them)."""
    ms = max(1, round(delay_s * 1000))
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable: every whole number of ms has a unit")  # pragma: no cover


def wait_s(delay_s: float, retry_after_s: float | None, spread: float) -> float:
    """Seconds to wait before the next attempt.

    ``spread`` in [-1, 1] picks the jitter (``delay_s * (1 + JITTER * spread)``); the wait is
    never shorter than ``retry_after_s`` and never longer than :data:`MAX_WAIT_S`.
    """
    if not -1.0 <= spread <= 1.0:
        raise ValueError(f"spread must be within [-1, 1], got {spread}")
    wait = delay_s * (1.0 + JITTER * spread)
    if retry_after_s is not None and retry_after_s > wait:
        wait = retry_after_s
    return min(wait, MAX_WAIT_S)


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait: a whole number of seconds or an
    HTTP-date (RFC 9110 10.2.3), from ``now_s`` (unix seconds). None when absent or unreadable
    (seconds are ASCII digits only); a date in the past is 0; never raises."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Past 15 digits (millions of years) the exact figure does not matter: wait_s caps it,
        # and int() and float() would raise on thousands of digits.
        return float(int(text)) if len(text) <= 15 else math.inf
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
