"""An account's plan as held by the worker, and what follows from it.

The accounts table stores :class:`AccountPlan` as JSON. Which billing period a
record belongs to, and whether a newer plan record replaces the held one, are
decided here so that the plans agent and the usage agent agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal, cast

from domain.common.timeutil import datetime_to_ms
from domain.intake.records import PlanRecord
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import (
    Period,
    PeriodLength,
    calendar_month,
    default_anchor,
    period_containing_ms,
)

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
    members: int | None = None
    region: str | None = None
    #: ``YYYY-MM-DD`` or ``--MM-DD`` (contract 3.7), validated on intake.
    birth_date: str | None = None
    #: When the account became active (contract 3.8: ``at_most`` rules judge only accounts
    #: active for the whole window): the Kafka timestamp of the plan record that first stored
    #: it active, or changed its status to active; kept while it stays active. ``None`` when
    #: not active, and for plans stored by versions before it (the day-close pass fills it in).
    active_since_ms: int | None = None
    #: When the account's plan first became known here: the Kafka timestamp (at most the
    #: worker's clock) of the plan record that stored the account, kept through later plan
    #: records until a tombstone forgets the account. A billing period that ended before it
    #: was never observed, so it gets no anniversary (contract 3.5: "every active account with
    #: a known plan"). ``None`` for plans stored by versions before it.
    known_since_ms: int | None = None

    @classmethod
    def from_record(
        cls,
        record: PlanRecord,
        known_since_ms: int | None = None,
        active_since_ms: int | None = None,
    ) -> AccountPlan:
        """The held form of a validated plan record (``known_since_ms``, ``active_since_ms``:
        see the fields)."""
        anchor = record.billing_anchor
        return cls(
            account_id=record.account_id,
            plan_id=record.plan_id,
            anchor_ms=None if anchor is None else datetime_to_ms(anchor),
            status=record.status,
            limits=dict(record.limits),
            updated_at_ms=record.updated_at_ms,
            members=record.members,
            region=record.region,
            birth_date=record.birth_date,
            active_since_ms=active_since_ms,
            known_since_ms=known_since_ms,
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
        """JSON-ready form for the accounts table (optional fields only when set)."""
        out: dict[str, Any] = {
            "account_id": self.account_id,
            "plan_id": self.plan_id,
            "anchor_ms": self.anchor_ms,
            "status": self.status,
            "limits": {m: str(v) for m, v in self.limits.items()},
            "updated_at_ms": self.updated_at_ms,
        }
        # Set one by one, in this order (the stored bytes keep it), rather than unpacking a
        # dict per field: every plan record a worker reads at start is encoded (issue 20).
        if self.members is not None:
            out["members"] = self.members
        if self.region is not None:
            out["region"] = self.region
        if self.birth_date is not None:
            out["birth_date"] = self.birth_date
        if self.active_since_ms is not None:
            out["active_since_ms"] = self.active_since_ms
        if self.known_since_ms is not None:
            out["known_since_ms"] = self.known_since_ms
        return out

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
            members=data.get("members"),
            region=data.get("region"),
            birth_date=data.get("birth_date"),
            active_since_ms=data.get("active_since_ms"),
            known_since_ms=data.get("known_since_ms"),
        )

    def with_active_since(self, active_since_ms: int | None) -> AccountPlan:
        """This plan with ``active_since_ms`` set (see the field).

        Built field by field rather than with :func:`dataclasses.replace`, which costs four
        times as much: every plan record a worker reads at start goes through here (issue
        20, first usage commit after 100,000 plans)."""
        return AccountPlan(
            account_id=self.account_id,
            plan_id=self.plan_id,
            anchor_ms=self.anchor_ms,
            status=self.status,
            limits=self.limits,
            updated_at_ms=self.updated_at_ms,
            members=self.members,
            region=self.region,
            birth_date=self.birth_date,
            active_since_ms=active_since_ms,
            known_since_ms=self.known_since_ms,
        )


def carry_active_since(held: AccountPlan | None, plan: AccountPlan, at_ms: int) -> AccountPlan:
    """``plan`` (replacing ``held``) with its ``active_since_ms``: ``at_ms`` (the plan record's
    Kafka timestamp) when it makes the account active or moves it to another plan, what
    ``held`` had while it stays active on the same plan, ``None`` when it is not active.

    A move starts afresh because an ``at_most`` rule judges a window spent on its plan
    (contract 3.8: "whose plan was known and active before the window's first day"): a
    quiet month on Free is not a quiet week on the Starter plan bought yesterday."""
    since = active_since(held, plan.status, plan.plan_id, at_ms)
    return plan if plan.active_since_ms == since else plan.with_active_since(since)


def active_since(held: AccountPlan | None, status: str, plan_id: str, at_ms: int) -> int | None:
    """The ``active_since_ms`` of a plan of ``status`` on ``plan_id`` replacing ``held``, its
    record's Kafka timestamp ``at_ms`` (see :func:`carry_active_since`)."""
    if status != "active":
        return None
    if held is None or held.status != "active" or held.plan_id != plan_id:
        return at_ms
    return held.active_since_ms


def known_since(held: AccountPlan | None, at_ms: int) -> int | None:
    """The ``known_since_ms`` of a plan replacing ``held``: ``at_ms`` for an account new here
    (none held, or forgotten by a tombstone since), else what ``held`` had (``None`` too: a
    plan stored before the field keeps announcing as it did)."""
    return at_ms if held is None else held.known_since_ms


def supersedes(new: PlanRecord, held: AccountPlan | None) -> bool:
    """Whether ``new`` replaces ``held``: a record older than the one held is ignored."""
    return held is None or new.updated_at_ms >= held.updated_at_ms


# Epoch ms of AccountPlan.anchor() per (anchor_ms, length): the anchor goes through a datetime
# once per account rather than once per record. Bounded like the period cache.
_ANCHORS_MAX: Final = 65_536
_anchors: dict[tuple[int | None, str], int] = {}


def _anchor_ms(plan: AccountPlan, length: PeriodLength) -> int:
    """``datetime_to_ms(plan.anchor(length))``, remembered."""
    key = (plan.anchor_ms, length)
    anchor_ms = _anchors.get(key)
    if anchor_ms is None:
        anchor_ms = datetime_to_ms(plan.anchor(length))
        if len(_anchors) >= _ANCHORS_MAX:
            _anchors.clear()
        _anchors[key] = anchor_ms
    return anchor_ms


def period_of(plan: AccountPlan | None, ts_ms: int, catalog: Catalog) -> Period:
    """The billing period containing ``ts_ms``; calendar months while the plan is unknown."""
    if plan is None:
        return calendar_month(ts_ms)
    length = catalog.period
    return period_containing_ms(ts_ms, _anchor_ms(plan, length), length)
