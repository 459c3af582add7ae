"""Threshold detection (contract 3.1): which levels of a limit a record crossed.

A level ``L`` of a plan (its ``near_levels``, then 1.0, then its ``over_levels``) is crossed
when the period total reaches ``L * limit``. Each (account, metric, period, plan, level) is
announced at most once: the levels already announced are kept per account in
:class:`AnnouncedLevels`, and a record whose total newly reaches several levels yields one
:class:`Crossing` for the highest of them that still lists them all. Levels from 1.0 up are
threshold-hit (above 1.0: overage), lower ones threshold-near.

Everything here is exact decimal arithmetic: a total of exactly 80 % of a limit announces 0.8,
also for limits such as 0.29 where a float product (``0.8 * 0.29``) would miss or overshoot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, localcontext
from typing import Any, Final, Literal

from domain.common.bounded import remember
from domain.intake.accounts import AccountPlan
from domain.plans.periods import Period, span_of_text, span_text

_DEFAULT_PRECISION: Final = 28

HIT_LEVEL: Final = Decimal(1)
"""The level of threshold-hit: the whole limit. Every lower level is a threshold-near."""

ThresholdKind = Literal["threshold-near", "threshold-hit"]


def threshold_kind(level: Decimal) -> ThresholdKind:
    """``threshold-hit`` for level 1.0 and the overage levels above it, else
    ``threshold-near`` (contract 3.1: overage levels are announced like the limit itself)."""
    return "threshold-hit" if level >= HIT_LEVEL else "threshold-near"


@dataclass(frozen=True, slots=True)
class Crossing:
    """The levels one record newly crossed: ``crossed`` ascending, ``level`` the highest."""

    level: Decimal
    crossed: tuple[Decimal, ...]


def _product(level: Decimal, limit: Decimal) -> Decimal:
    """``level * limit``, exact: with as many digits as it needs (Decimal's default context
    keeps 28 and would round a long product), and ``Inexact`` trapped so a rounding could never
    go unnoticed."""
    digits = len(level.as_tuple().digits) + len(limit.as_tuple().digits)
    with localcontext() as ctx:
        ctx.prec = max(_DEFAULT_PRECISION, digits + 1)
        ctx.traps[Inexact] = True
        return level * limit


def reaches(total: Decimal, level: Decimal, limit: Decimal) -> bool:
    """Whether ``total >= level * limit``, computed exactly (Decimal comparisons are exact,
    and the product is too)."""
    return total >= _product(level, limit)


Threshold = tuple[Decimal, Decimal]
"""A level and the period total that reaches it: ``(level, level * limit)``."""

# thresholds() per (levels, limit): a few plans and metrics make nearly every pair, so each
# product is worked out once. Bounded like the other caches (accounts may have own limits).
_THRESHOLDS_MAX: Final = 65_536
_thresholds: dict[tuple[tuple[Decimal, ...], Decimal], tuple[Threshold, ...]] = {}


def thresholds(levels: Sequence[Decimal], limit: Decimal) -> tuple[Threshold, ...]:
    """Each distinct level of ``levels`` (by value; the first written wins) with the total that
    reaches it, ``level * limit`` exactly (as in :func:`reaches`), ascending by level."""
    key = (tuple(levels), limit)
    found = _thresholds.get(key)
    if found is None:
        distinct = sorted(dict.fromkeys(key[0]))
        found = tuple((level, _product(level, limit)) for level in distinct)
        remember(_thresholds, key, found, _THRESHOLDS_MAX)
    return found


def _crossing(
    total: Decimal, levels: tuple[Threshold, ...], announced: Set[Decimal]
) -> Crossing | None:
    """The levels of ``levels`` that ``total`` reaches and that are not in ``announced``."""
    crossed = tuple(
        level for level, reached_at in levels if level not in announced and total >= reached_at
    )
    if not crossed:
        return None
    return Crossing(crossed[-1], crossed)


def detect(
    total: Decimal,
    limit: Decimal | None,
    levels: Sequence[Decimal],
    announced: Set[Decimal],
) -> Crossing | None:
    """The levels that ``total`` reaches and that are not in ``announced``, or ``None``.

    ``levels`` are the plan's levels (:attr:`domain.plans.catalog.Plan.levels`); ``limit`` is the
    account's allotment of the metric, ``None`` when unlimited (no thresholds then). Levels are
    compared by value, so ``Decimal("1")`` and ``Decimal("1.0")`` are the same level.
    """
    if limit is None:
        return None
    return _crossing(total, thresholds(levels, limit), announced)


def should_announce(plan: AccountPlan | None, *, late: bool = False) -> bool:
    """Whether a record of this account may announce thresholds at all (contract 1.2, 2, 3.1).

    Only accounts whose plan is known and ``active`` get events; a ``late`` record (its period
    ended more than the grace ago) never announces for the period that is over.
    """
    return plan is not None and plan.status == "active" and not late


def level_text(level: Decimal) -> str:
    """A level as plain decimal text with at least one fractional digit: ``0.8``, ``0.75``,
    ``1.0``. It is the text JSON gives the event's ``level`` number and the level part of the
    event id (see :mod:`domain.wording.events`), and how levels are stored in state."""
    # The text depends on the value only (0.8 and 0.80 give "0.8"), except for the sign of a
    # zero, so a cache by value holds for every level but zero. Plans have a few levels.
    text = _level_texts.get(level) if level else None
    if text is None:
        text = format(level.normalize(), "f")
        if "." not in text:
            text = f"{text}.0"
        if level:
            remember(_level_texts, level, text, _LEVELS_MAX)
    return text


def _level_of_text(text: str) -> Decimal:
    """``Decimal(text)`` of a stored level, remembered (levels are a few texts)."""
    level = _levels_of_text.get(text)
    if level is None:
        level = Decimal(text)
        remember(_levels_of_text, text, level, _LEVELS_MAX)
    return level


_LEVELS_MAX: Final = 4096
_level_texts: dict[Decimal, str] = {}
_levels_of_text: dict[str, Decimal] = {}


_Span = tuple[int, int]
_NO_SPANS: Final[dict[_Span, dict[str, set[Decimal]]]] = {}
_NOTHING: Final[frozenset[Decimal]] = frozenset()


_REACHED_KEY: Final = "@reached"


@dataclass(slots=True)
class AnnouncedLevels:
    """The levels already announced for one account, per metric, billing period and plan.

    ``levels[metric][(start_ms, end_ms)][plan_id]`` is the set of levels announced in that
    period while the account was on that plan. A plan change starts a fresh set (contract 3.1)
    but keeps the old plan's, so switching back within a period does not repeat a moment.
    """

    levels: dict[str, dict[_Span, dict[str, set[Decimal]]]] = field(default_factory=dict)
    #: (metric, span, plan_id) -> event time of the record that reached the limit (level 1.0):
    #: what a later event of the period gives as ``projection.limit_reached_at``.
    reached: dict[tuple[str, _Span, str], int] = field(default_factory=dict)

    def note_reached(self, metric: str, period: Period, plan_id: str, at_ms: int) -> None:
        """Remember that the limit of ``metric`` under ``plan_id`` was reached at ``at_ms``."""
        self.reached.setdefault((metric, (period.start_ms, period.end_ms), plan_id), at_ms)

    def reached_at(self, metric: str, period: Period, plan_id: str) -> int | None:
        """When the limit of ``metric`` under ``plan_id`` was reached in ``period``, if known."""
        return self.reached.get((metric, (period.start_ms, period.end_ms), plan_id))

    def announced(self, metric: str, period: Period, plan_id: str) -> frozenset[Decimal]:
        """Levels already announced for ``metric`` in ``period`` under ``plan_id``."""
        found = self.levels.get(metric, {}).get((period.start_ms, period.end_ms), {}).get(plan_id)
        return frozenset(found) if found else frozenset()

    def mark(self, metric: str, period: Period, plan_id: str, levels: Iterable[Decimal]) -> None:
        """Record ``levels`` as announced for ``metric`` in ``period`` under ``plan_id``."""
        span = (period.start_ms, period.end_ms)
        by_plan = self.levels.setdefault(metric, {}).setdefault(span, {})
        by_plan.setdefault(plan_id, set()).update(levels)

    def observe(
        self,
        metric: str,
        period: Period,
        plan_id: str,
        total: Decimal,
        limit: Decimal | None,
        levels: Sequence[Decimal],
    ) -> Crossing | None:
        """:func:`detect` against what is announced, and mark what it finds as announced.

        What the usage path does per accepted record of an account that
        :func:`should_announce` lets through (through :meth:`observe_thresholds`).
        """
        if limit is None:
            return None
        return self.observe_thresholds(metric, period, plan_id, total, thresholds(levels, limit))

    def observe_thresholds(
        self,
        metric: str,
        period: Period,
        plan_id: str,
        total: Decimal,
        levels: tuple[Threshold, ...],
    ) -> Crossing | None:
        """:meth:`observe` with the levels and the totals reaching them already worked out
        (:func:`thresholds` of the plan's levels and the account's limit)."""
        span = (period.start_ms, period.end_ms)
        by_plan = self.levels.get(metric, _NO_SPANS).get(span)
        held = None if by_plan is None else by_plan.get(plan_id)
        crossing = _crossing(total, levels, held or _NOTHING)
        if crossing is not None:
            if held is None:
                if by_plan is None:
                    by_plan = self.levels.setdefault(metric, {}).setdefault(span, {})
                held = by_plan[plan_id] = set()
            held.update(crossing.crossed)
        return crossing

    def prune(self, keep_end_after_ms: int) -> bool:
        """Forget periods that ended at or before ``keep_end_after_ms``; True if any went.

        Same cut-off rule as :meth:`domain.intake.usage.AccountTotals.prune`: once a period is too
        old for late records to count, nothing can be announced in it any more.
        """
        changed = False
        for metric in list(self.levels):
            by_span = self.levels[metric]
            for span in [s for s in by_span if s[1] <= keep_end_after_ms]:
                del by_span[span]
                changed = True
            if not by_span:
                del self.levels[metric]
        for key in [k for k in self.reached if k[1][1] <= keep_end_after_ms]:
            del self.reached[key]
            changed = True
        return changed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for a table: ``{metric: {"start:end": {plan_id: ["0.8", "1.0"]}}}``.

        Levels are written as text (:func:`level_text`), ascending, so nothing is rounded.
        """
        out: dict[str, Any] = {
            metric: {
                span_text(span): {
                    plan_id: [level_text(level) for level in sorted(levels)]
                    for plan_id, levels in by_plan.items()
                }
                for span, by_plan in by_span.items()
            }
            for metric, by_span in self.levels.items()
        }
        if self.reached:
            # "@" cannot start a metric name, so the key never meets a metric's.
            out[_REACHED_KEY] = [
                [metric, span_text(span), plan_id, at_ms]
                for (metric, span, plan_id), at_ms in self.reached.items()
            ]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AnnouncedLevels:
        """Inverse of :meth:`to_json`; ``None`` gives nothing announced."""
        announced = cls()
        if data:
            held = announced.levels
            for metric, span, plan_id, at_ms in data.get(_REACHED_KEY, ()):
                announced.reached[(metric, span_of_text(span), plan_id)] = at_ms
            for metric, by_span in data.items():
                if metric == _REACHED_KEY:
                    continue
                held[metric] = {
                    span_of_text(span): {
                        plan_id: {_level_of_text(level) for level in levels}
                        for plan_id, levels in by_plan.items()
                    }
                    for span, by_plan in by_span.items()
                }
        return announced
