"""Where a period is heading: its total at the current pace, and when the limit is reached.

Only metrics that add up through a period have a pace (sum, count, unique_count); a level
(``latest``, ``max``) has none and is not projected (:func:`has_pace`). Two paces exist.
Threshold moments use the period-to-date pace (:func:`project`): the total so far spread over
the time elapsed since the period started. Sudden drops use the recent pace
(:func:`project_recent`): what the last few days used, carried over the rest of the period,
because the point of a drop is that the period-to-date pace no longer holds.

Arithmetic is decimal throughout. Projected totals are rounded for people (see
:func:`round_total`); instants are whole epoch milliseconds, rounded up, so a projected
"limit reached at" is never earlier than the pace implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, getcontext, localcontext
from typing import Final

from domain.common.timeutil import DAY_MS
from domain.plans.catalog import Aggregation
from domain.plans.periods import Period

PACELESS: Final[frozenset[Aggregation]] = frozenset({"latest", "max"})
"""Aggregations whose period value is a level, not a running total (contract 1.4): a pace
means nothing for them, so their events have no projection (``projection`` is null), and
suggestions weigh the current value where others weigh the projected period total."""


def has_pace(aggregation: Aggregation | None) -> bool:
    """Whether a metric of ``aggregation`` (``None``: undeclared, a sum) has a pace to
    project: sums, counts and distinct counts grow through a period; levels do not."""
    return aggregation not in PACELESS


_ZERO: Final = Decimal(0)
_CENT: Final = Decimal("0.01")
_ONE: Final = Decimal(1)


@dataclass(frozen=True, slots=True)
class Projection:
    """A period's projected total, and when its limit is (or was) reached, if it is.

    ``limit_reached_at_ms`` is ``None`` when there is no limit, when the pace is zero, or when
    the pace does not reach the limit before the period ends.
    """

    period_total: Decimal
    limit_reached_at_ms: int | None


def round_total(projected: Decimal, total: Decimal) -> Decimal:
    """``projected`` rounded for display and JSON, never below the ``total`` already used.

    Integral totals (counts: API calls, seats) project to whole numbers; other totals to
    hundredths, or to as many decimals as ``total`` has when that is more (0.001 GB does not
    project to 0.00). Never less than ``total``: a projection includes what is already used.
    """
    if total == total.to_integral_value():
        quantum = _ONE
    else:
        # Totals are finite, so the exponent is a number, never "n", "N" or "F".
        quantum = min(_CENT, _ONE.scaleb(int(total.normalize().as_tuple().exponent)))
    # quantize fails rather than round when the result needs more digits than the context.
    needed = projected.adjusted() + 4
    if needed <= getcontext().prec:  # the context has the digits already (the usual case)
        rounded = projected.quantize(quantum, ROUND_HALF_EVEN)
    else:
        with localcontext() as ctx:
            ctx.prec = needed
            rounded = projected.quantize(quantum, ROUND_HALF_EVEN)
    return total if total > rounded else rounded  # max(rounded, total), without the call


def _ceil_ms(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_CEILING))


def project(
    total: Decimal,
    period: Period,
    at_ms: int,
    limit: Decimal | None,
    crossed_limit_at_ms: int | None,
) -> Projection:
    """Project ``period`` from ``total`` used by ``at_ms``, at the period-to-date pace.

    The pace is ``total`` over the time elapsed since the period started, clamped to 1 ms..the
    period's length (a record stamped at the very start still divides by something; one within
    the late grace after the end counts the whole period). When ``total`` already reached
    ``limit``, the limit was reached at ``crossed_limit_at_ms``: the event time of the record
    that reached it, which only the caller knows (``None`` when it does not).
    """
    start_ms = period.start_ms
    length = period.end_ms - start_ms
    elapsed = at_ms - start_ms
    if elapsed < 1:
        elapsed = 1
    elif elapsed > length:
        elapsed = length
    period_total = round_total(total * length / elapsed, total)
    if limit is None:
        return Projection(period_total, None)
    if total >= limit:
        return Projection(period_total, crossed_limit_at_ms)
    if total <= _ZERO:
        return Projection(period_total, None)
    # At pace total/elapsed the limit is reached limit/pace = limit*elapsed/total after start.
    reached = start_ms + _ceil_ms(limit * elapsed / total)
    return Projection(period_total, reached if reached < period.end_ms else None)


def project_recent(
    total: Decimal,
    period: Period,
    at_ms: int,
    limit: Decimal | None,
    recent_total: Decimal,
    recent_days: int,
    crossed_limit_at_ms: int | None = None,
) -> Projection:
    """Project ``period`` from ``total`` used by ``at_ms``, at the pace of the recent days.

    The pace is ``recent_total`` per ``recent_days`` UTC days; the rest of the period (from
    ``at_ms``, clamped into the period) is assumed to go at it. This is the projection of a
    sudden drop, and what a downgrade must cover (contract 3.2).
    """
    if recent_days < 1:
        raise ValueError(f"recent_days must be at least 1, got {recent_days}")
    at = min(max(at_ms, period.start_ms), period.end_ms)
    window_ms = recent_days * DAY_MS
    period_total = round_total(total + recent_total * (period.end_ms - at) / window_ms, total)
    if limit is None:
        return Projection(period_total, None)
    if total >= limit:
        return Projection(period_total, crossed_limit_at_ms)
    if recent_total <= _ZERO:
        return Projection(period_total, None)
    reached = at + _ceil_ms((limit - total) * window_ms / recent_total)
    return Projection(period_total, reached if reached < period.end_ms else None)
