"""The rules of moments a business defines (contract 3.8): windows, thresholds, cooldowns.

Pure: the window value of an (account, metric) is read from its daily history
(:mod:`domain.intake.daily`) or its period value, a rule's threshold follows from its amount and
the account's limit, and :class:`RuleFirings` (one per account, in the ``custom_firings``
table) says whether a rule may fire again.

Windows. A rolling window ``"<N>d"`` ending on day ``E`` is the UTC days ``E-N+1 .. E``; its
value under the metric's aggregation is the sum of the days' values (``sum``, ``count``, and a
``unique_count`` of one day: the day's distinct count), their maximum (``max``), or the reading
in force at the end of ``E`` (``latest``, carried over days without one). ``at_least`` rules
judge the window ending on the day of each accepted record (the current partial day
included); ``at_most`` rules the complete days ending on a closed day. A ``"period"`` window is
the billing period's value (:class:`domain.intake.usage.AccountTotals`).

Thresholds. ``at_least = 3`` is 3 in the metric's unit; with ``of_limit``, the fraction times
the account's limit of the metric (its override, else its plan's), computed exactly. A rule
with ``of_limit`` does not apply to an account that has no limit for the metric: there is no
quantity to compare with.

Cooldowns (shared design notes). A firing is stamped with its instant (``at_least``: the
triggering record's event time; ``at_most``: the end of the judged day). A rule fires again for
the account only at an instant at or after the last one plus the cooldown, whole days, so two
firings of a rolling rule never share a window start (the event id). A ``"period"`` rule fires
at most once per billing period, whatever its cooldown (its event id is the period's).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Final

from domain.common.timeutil import DAY_MS
from domain.intake.daily import DailyHistory, DailyTotals
from domain.plans.catalog import Aggregation, MomentRule

_ZERO: Final = Decimal(0)


def window_first_day(rule: MomentRule, end_day: int) -> int:
    """The first UTC day of ``rule``'s rolling window ending on ``end_day``."""
    days = rule.window_days
    if days is None:
        raise ValueError(f"rule {rule.id!r} watches the billing period, not days")
    return end_day - days + 1


def window_value(
    history: DailyHistory | None, aggregation: Aggregation, end_day: int, days: int
) -> Decimal:
    """The value of the ``days`` UTC days ending on ``end_day`` under ``aggregation`` (see the
    module doc); zero without a history."""
    if history is None:
        return _ZERO
    if aggregation == "latest":
        return history.total(end_day)
    first = end_day - days + 1
    if aggregation == "max":
        return max((history.total(day) for day in range(first, end_day + 1)), default=_ZERO)
    total = _ZERO
    for day in range(first, end_day + 1):
        total += history.total(day)
    return total


def window_values(
    history: DailyHistory | None, aggregation: Aggregation, end_day: int, spans: tuple[int, ...]
) -> dict[int, Decimal]:
    """:func:`window_value` of each of ``spans`` (days, ascending) ending on ``end_day``, in
    one pass over the longest (``sum``, ``count``, ``unique_count`` and ``max``)."""
    if history is None:
        return dict.fromkeys(spans, _ZERO)
    longest = spans[-1]
    first = end_day - longest + 1
    if isinstance(history, DailyTotals):
        days = history.totals_between(first, end_day)
    else:
        days = [(day, history.total(day)) for day in range(first, end_day + 1)]
    peak = aggregation == "max"
    values: dict[int, Decimal] = {}
    for span in spans:
        since = end_day - span + 1
        inside = [value for day, value in days if day >= since]
        if peak:
            values[span] = max(inside, default=_ZERO)
        else:
            values[span] = sum(inside, _ZERO)
    return values


def threshold_of(rule: MomentRule, limit: Decimal | None) -> Decimal | None:
    """``rule``'s threshold as a quantity of its metric for an account whose limit of it is
    ``limit`` (``None``: unlimited); ``None`` when the rule does not apply (``of_limit``
    without a limit). Exact: the product of two 15-digit amounts keeps every digit."""
    if not rule.of_limit:
        return rule.amount
    if limit is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 64
        return rule.amount * limit


def reached(rule: MomentRule, value: Decimal, threshold: Decimal) -> bool:
    """Whether ``value`` meets ``rule``: at or above the threshold (``at_least``), at or below
    it (``at_most``)."""
    return value >= threshold if rule.at_least else value <= threshold


@dataclass(frozen=True, slots=True)
class Firing:
    """When a rule last fired for an account: its latest instant and, for a ``"period"`` rule,
    the start of the latest billing period it fired in and of the one it fired in before.

    Two periods, because records of a period are accepted until its end plus
    ``MOMENTS_LATE_GRACE``: the period just ended may fire (or be asked to fire again) after
    the new one fired."""

    at_ms: int
    period_start_ms: int | None = None
    earlier_period_ms: int | None = None


class RuleFirings:
    """The last firing of each rule for one account (contract 3.8's cooldowns).

    Written in the same step as the events it records, so a restart fires nothing twice.
    """

    __slots__ = ("fired",)

    def __init__(self, fired: dict[str, Firing] | None = None) -> None:
        self.fired: dict[str, Firing] = {} if fired is None else fired

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleFirings):
            return NotImplemented
        return self.fired == other.fired

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RuleFirings({self.fired!r})"

    def may_fire(self, rule: MomentRule, at_ms: int, period_start_ms: int | None = None) -> bool:
        """Whether ``rule`` may fire at ``at_ms`` (in the period starting ``period_start_ms``,
        for a ``"period"`` rule): never fired, or its cooldown has passed and, for a
        ``"period"`` rule, it has not fired in this period."""
        last = self.fired.get(rule.id)
        if last is None:
            return True
        if rule.window_days is None and period_start_ms in (
            last.period_start_ms,
            last.earlier_period_ms,
        ):
            return False
        cooldown = rule.cooldown_days
        return cooldown is None or at_ms >= last.at_ms + cooldown * DAY_MS

    def fire(self, rule: MomentRule, at_ms: int, period_start_ms: int | None = None) -> None:
        """Record that ``rule`` fired at ``at_ms`` (for a ``"period"`` rule, in the period
        starting ``period_start_ms``)."""
        last = self.fired.get(rule.id)
        if rule.window_days is None and period_start_ms is not None:
            if last is None or last.period_start_ms is None:
                self.fired[rule.id] = Firing(at_ms, period_start_ms)
                return
            latest, earlier = sorted((period_start_ms, last.period_start_ms), reverse=True)
            self.fired[rule.id] = Firing(max(at_ms, last.at_ms), latest, earlier)
            return
        self.fired[rule.id] = Firing(at_ms)

    def keep_only(self, rule_ids: Collection[str]) -> bool:
        """Forget the firings of rules not in ``rule_ids`` (no longer in the catalog); True if
        any went."""
        gone = [rule_id for rule_id in self.fired if rule_id not in rule_ids]
        for rule_id in gone:
            del self.fired[rule_id]
        return bool(gone)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form: rule id -> ``[at_ms]``, ``[at_ms, period_start_ms]``, or
        ``[at_ms, period_start_ms, earlier_period_ms]``."""
        return {rule_id: _firing_json(f) for rule_id, f in self.fired.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RuleFirings:
        """Inverse of :meth:`to_json`; ``None`` gives no firings."""
        if not data:
            return cls()
        return cls(
            {
                rule_id: Firing(
                    int(held[0]),
                    None if len(held) < 2 else int(held[1]),
                    None if len(held) < 3 else int(held[2]),
                )
                for rule_id, held in data.items()
            }
        )


def _firing_json(firing: Firing) -> list[int]:
    if firing.period_start_ms is None:
        return [firing.at_ms]
    if firing.earlier_period_ms is None:
        return [firing.at_ms, firing.period_start_ms]
    return [firing.at_ms, firing.period_start_ms, firing.earlier_period_ms]
