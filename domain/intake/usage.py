"""Period totals of one account: the state the usage path folds records into.

One :class:`AccountTotals` holds, per metric, the totals of the few most recent
billing periods (the current one, plus the previous ones while late records may
still count). Keeping one value per account lets a batch touch each account's
state once, however many of its records the batch holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.common.slots import slot_setter
from domain.plans.periods import Period, span_of_text, span_text

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Change:
    """A period total before and after one record was added."""

    metric: str
    period: Period
    before: Decimal
    after: Decimal


@dataclass(slots=True)
class AccountTotals:
    """Per-metric, per-period usage totals of one account.

    ``periods[metric][(start_ms, end_ms)]`` is the sum of accepted quantities of
    that metric whose timestamps fall in the period.
    """

    periods: dict[str, dict[tuple[int, int], Decimal]] = field(default_factory=dict)

    def add(self, metric: str, period: Period, quantity: Decimal) -> Change:
        """Add ``quantity`` to the total of ``metric`` in ``period``."""
        by_period = self.periods.get(metric)
        if by_period is None:
            by_period = self.periods[metric] = {}
        key = (period.start_ms, period.end_ms)
        before = by_period.get(key, _ZERO)
        after = before + quantity
        by_period[key] = after
        # Change(metric, period, before, after), by its slot setters (see domain.common.slots).
        change: Change = _new(Change)
        _set_metric(change, metric)
        _set_period(change, period)
        _set_before(change, before)
        _set_after(change, after)
        return change

    def undo(self, change: Change) -> None:
        """Take back ``change``, the latest :meth:`add` (a record refused after all)."""
        by_period = self.periods[change.metric]
        key = (change.period.start_ms, change.period.end_ms)
        if change.before:
            by_period[key] = change.before
        else:  # nothing was counted before: leave no zero behind
            del by_period[key]
            if not by_period:
                del self.periods[change.metric]

    def total(self, metric: str, period: Period) -> Decimal:
        """Total of ``metric`` in ``period`` (zero when nothing was counted)."""
        return self.periods.get(metric, {}).get((period.start_ms, period.end_ms), _ZERO)

    def prune(self, keep_end_after_ms: int) -> bool:
        """Forget periods that ended at or before ``keep_end_after_ms``; True if any went."""
        if _all_open(self.periods, keep_end_after_ms):  # the usual case, checked cheaply
            return False
        changed = False
        for metric in list(self.periods):
            by_period = self.periods[metric]
            for key in [k for k in by_period if k[1] <= keep_end_after_ms]:
                del by_period[key]
                changed = True
            if not by_period:
                del self.periods[metric]
        return changed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the table (decimals as strings, so nothing is rounded)."""
        return {
            metric: {span_text(span): str(total) for span, total in by_period.items()}
            for metric, by_period in self.periods.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AccountTotals:
        """Inverse of :meth:`to_json`; ``None`` gives empty totals."""
        totals = cls()
        if data:
            periods = totals.periods
            for metric, by_period in data.items():
                periods[metric] = {
                    span_of_text(span): Decimal(total) for span, total in by_period.items()
                }
        return totals


def _all_open(periods: dict[str, dict[tuple[int, int], Decimal]], keep_end_after_ms: int) -> bool:
    """Whether every metric holds periods, all ending after ``keep_end_after_ms``."""
    for by_period in periods.values():
        if not by_period:
            return False
        for _, end in by_period:
            if end <= keep_end_after_ms:
                return False
    return True


_new = object.__new__
_set_metric = slot_setter(Change, "metric")
_set_period = slot_setter(Change, "period")
_set_before = slot_setter(Change, "before")
_set_after = slot_setter(Change, "after")
