"""An account's plan as held by the worker, and what follows from it.

The accounts table stores :class:`AccountPlan` as JSON. Which billing period a
record belongs to, and whether a newer plan record replaces the held one, are
decided here so that the plans agent and the usage agent agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

from domain.catalog import Catalog, Plan
from domain.periods import Period, PeriodLength, calendar_month, default_anchor, period_containing
from domain.records import PlanRecord
from domain.timeutil import datetime_to_ms

Status = Literal["active", "paused", "cancelled"]


@dataclass(frozen=True, slots=True)
class AccountPlan:
    """The plan record currently in force for one account."""

    account_id: str
    plan_id: str
    anchor_ms: int | None
    status: Status
    limits: dict[str, Decimal]
    updated_at_ms: int

    @classmethod
    def from_record(cls, record: PlanRecord) -> AccountPlan:
        """The held form of a validated plan record."""
        anchor = record.billing_anchor
        return cls(
            account_id=record.account_id,
            plan_id=record.plan_id,
            anchor_ms=None if anchor is None else datetime_to_ms(anchor),
            status=record.status,
            limits=dict(record.limits),
            updated_at_ms=record.updated_at_ms,
        )

    def anchor(self, length: PeriodLength) -> datetime:
        """Start of the first billing period (contract default: the 1st, 00:00 UTC)."""
        if self.anchor_ms is None:
            return default_anchor(length)
        return datetime.fromtimestamp(self.anchor_ms / 1000, tz=UTC)

    def limit(self, plan: Plan, metric: str) -> Decimal | None:
        """The account's allotment of ``metric``: its own override, else the plan's."""
        override = self.limits.get(metric)
        return override if override is not None else plan.limits.get(metric)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the accounts table."""
        return {
            "account_id": self.account_id,
            "plan_id": self.plan_id,
            "anchor_ms": self.anchor_ms,
            "status": self.status,
            "limits": {m: str(v) for m, v in self.limits.items()},
            "updated_at_ms": self.updated_at_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountPlan:
        """Inverse of :meth:`to_json`."""
        return cls(
            account_id=data["account_id"],
            plan_id=data["plan_id"],
            anchor_ms=data["anchor_ms"],
            status=cast(Status, data["status"]),
            limits={m: Decimal(v) for m, v in data["limits"].items()},
            updated_at_ms=data["updated_at_ms"],
        )


def supersedes(new: PlanRecord, held: AccountPlan | None) -> bool:
    """Whether ``new`` replaces ``held``: a record older than the one held is ignored."""
    return held is None or new.updated_at_ms >= held.updated_at_ms


def period_of(plan: AccountPlan | None, ts_ms: int, catalog: Catalog) -> Period:
    """The billing period containing ``ts_ms``; calendar months while the plan is unknown."""
    if plan is None:
        return calendar_month(ts_ms)
    return period_containing(ts_ms, plan.anchor(catalog.period), catalog.period)
