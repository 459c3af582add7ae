"""Threshold detection (contract 3.1): which levels of a limit a record crossed.

A level ``L`` of a plan (its ``near_levels``, then 1.0) is crossed when the period total reaches
``L * limit``. Each (account, metric, period, plan, level) is announced at most once: the
levels already announced are kept per account in :class:`AnnouncedLevels`, and a record whose
total newly reaches several levels yields one :class:`Crossing` for the highest of them that
still lists them all.

Everything here is exact decimal arithmetic: a total of exactly 80 % of a limit announces 0.8,
also for limits such as 0.29 where a float product (``0.8 * 0.29``) would miss or overshoot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, localcontext
from typing import Any, Final, Literal

from domain.accounts import AccountPlan
from domain.periods import Period

_DEFAULT_PRECISION: Final = 28

HIT_LEVEL: Final = Decimal(1)
"""The level of threshold-hit: the whole limit. Every lower level is a threshold-near."""

ThresholdKind = Literal["threshold-near", "threshold-hit"]


def threshold_kind(level: Decimal) -> ThresholdKind:
    """``threshold-hit`` for level 1.0, else ``threshold-near``."""
    return "threshold-hit" if level == HIT_LEVEL else "threshold-near"


@dataclass(frozen=True, slots=True)
class Crossing:
    """The levels one record newly crossed: ``crossed`` ascending, ``level`` the highest."""

    level: Decimal
    crossed: tuple[Decimal, ...]


def reaches(total: Decimal, level: Decimal, limit: Decimal) -> bool:
    """Whether ``total >= level * limit``, computed exactly.

    The product gets as many digits as it needs (Decimal's default context keeps 28 and would
    round a long product), and ``Inexact`` is trapped so a rounding could never go unnoticed.
    """
    digits = len(level.as_tuple().digits) + len(limit.as_tuple().digits)
    with localcontext() as ctx:
        ctx.prec = max(_DEFAULT_PRECISION, digits + 1)
        ctx.traps[Inexact] = True
        return total >= level * limit


def detect(
    total: Decimal,
    limit: Decimal | None,
    levels: Sequence[Decimal],
    announced: Set[Decimal],
) -> Crossing | None:
    """The levels that ``total`` reaches and that are not in ``announced``, or ``None``.

    ``levels`` are the plan's levels (:attr:`domain.catalog.Plan.levels`); ``limit`` is the
    account's allotment of the metric, ``None`` when unlimited (no thresholds then). Levels are
    compared by value, so ``Decimal("1")`` and ``Decimal("1.0")`` are the same level.
    """
    if limit is None:
        return None
    crossed = sorted(
        {level for level in levels if level not in announced and reaches(total, level, limit)}
    )
    if not crossed:
        return None
    return Crossing(crossed[-1], tuple(crossed))


def should_announce(plan: AccountPlan | None, *, late: bool = False) -> bool:
    """Whether a record of this account may announce thresholds at all (contract 1.2, 2, 3.1).

    Only accounts whose plan is known and ``active`` get events; a ``late`` record (its period
    ended more than the grace ago) never announces for the period that is over.
    """
    return plan is not None and plan.status == "active" and not late


def level_text(level: Decimal) -> str:
    """A level as plain decimal text with at least one fractional digit: ``0.8``, ``0.75``,
    ``1.0``. It is the text JSON gives the event's ``level`` number and the level part of the
    event id (see :mod:`domain.events`), and how levels are stored in state."""
    text = format(level.normalize(), "f")
    return text if "." in text else f"{text}.0"


_Span = tuple[int, int]


@dataclass(slots=True)
class AnnouncedLevels:
    """The levels already announced for one account, per metric, billing period and plan.

    ``levels[metric][(start_ms, end_ms)][plan_id]`` is the set of levels announced in that
    period while the account was on that plan. A plan change starts a fresh set (contract 3.1)
    but keeps the old plan's, so switching back within a period does not repeat a moment.
    """

    levels: dict[str, dict[_Span, dict[str, set[Decimal]]]] = field(default_factory=dict)

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

        The one call the usage path makes per accepted record of an account that
        :func:`should_announce` lets through.
        """
        crossing = detect(total, limit, levels, self.announced(metric, period, plan_id))
        if crossing is not None:
            self.mark(metric, period, plan_id, crossing.crossed)
        return crossing

    def prune(self, keep_end_after_ms: int) -> bool:
        """Forget periods that ended at or before ``keep_end_after_ms``; True if any went.

        Same cut-off rule as :meth:`domain.usage.AccountTotals.prune`: once a period is too old
        for late records to count, nothing can be announced in it any more.
        """
        changed = False
        for metric in list(self.levels):
            by_span = self.levels[metric]
            for span in [s for s in by_span if s[1] <= keep_end_after_ms]:
                del by_span[span]
                changed = True
            if not by_span:
                del self.levels[metric]
        return changed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for a table: ``{metric: {"start:end": {plan_id: ["0.8", "1.0"]}}}``.

        Levels are written as text (:func:`level_text`), ascending, so nothing is rounded.
        """
        return {
            metric: {
                f"{start}:{end}": {
                    plan_id: [level_text(level) for level in sorted(levels)]
                    for plan_id, levels in by_plan.items()
                }
                for (start, end), by_plan in by_span.items()
            }
            for metric, by_span in self.levels.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AnnouncedLevels:
        """Inverse of :meth:`to_json`; ``None`` gives nothing announced."""
        announced = cls()
        for metric, by_span in (data or {}).items():
            parsed: dict[_Span, dict[str, set[Decimal]]] = {}
            for span, by_plan in by_span.items():
                start, _, end = span.partition(":")
                parsed[(int(start), int(end))] = {
                    plan_id: {Decimal(level) for level in levels}
                    for plan_id, levels in by_plan.items()
                }
            announced.levels[metric] = parsed
        return announced
