"""The showcase of ``moments simulate``: a few demo accounts whose traffic triggers every kind
of moment within minutes of ``make run``, with the wall clock and default settings.

Pure and deterministic for a clock reading (no Kafka, no asyncio);
:mod:`commands.simulate.publish` sends what :class:`Showcase` plans. Each demo account is there
for one or two kinds, and its records are shaped by the worker's own rules, not by any shortcut:

* ``demo-drop-<tag>``: four weeks of steady daily usage, then silence from three days before
  the latest closed UTC day. The worker's drop evaluation of that day (run once when a worker
  starts, or when a UTC day closes plus ``MOMENTS_DROP_GRACE``) finds recent usage at 0 % of
  expected: a ``sudden-drop``.
* ``demo-back-<tag>``: the same history and silence (a drop too), then usage again today (from
  90 s into the run), about as much as three usual days. The first evaluation of a later day
  (the next UTC day close, plus the grace) finds recent usage back above 60 % of expected:
  ``usage-recovered``. That cannot happen sooner: a closed day is evaluated once.
* ``demo-year-<tag>``: billing anchor exactly a year before the latest *cut* (the whole hour at
  or before ``now - MOMENTS_LATE_GRACE``), so its 12th period became final just over the grace
  ago: the worker's first anniversary pass announces it (``billing-anniversary``, one year).
* ``demo-renew-<tag>``: anchor a year before the *next* cut, so its period ends within the
  coming hour and the hourly pass after that announces it, even on a worker that was running
  already (at most about an hour later).
* ``demo-milestone-<tag>``: lifetime purchases (the first ``[[milestones]]`` metric) two short of
  the first milestone in its history, then a few live purchases: ``milestone`` within seconds.
* ``demo-overage-<tag>``: a batch job that takes the account from 70 % of its allotment to
  85 %, 105 % and 160 % in four steps half a minute apart: ``threshold-near``,
  ``threshold-hit`` and ``threshold-hit`` at an overage level (with its cost where the plan
  prices overage).
* ``demo-change-<tag>``: plan records every 20 s that upgrade, add members, change region,
  pause, resume, downgrade and finally cancel: one ``account-change`` of each type.

History records have past timestamps: those of closed periods are *late* for thresholds but
count in daily totals (35 days) and lifetime totals, as the contract says. ``tag`` makes the
demo account ids new for each run, so a second run on the same broker still shows every kind
(a milestone is announced once per account, ever). What no tag can change: a worker evaluates
a closed day for drops once per partition, so a second run on the same UTC day and broker
shows its drop at the next day close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

import orjson

from domain.common.timeutil import DAY_MS, datetime_to_ms, ms_to_datetime, to_rfc3339
from domain.moments.evaluation import due_day
from domain.plans.catalog import Catalog, Plan
from domain.plans.periods import day_start_ms, period_containing_ms
from domain.rules.anniversaries import HOUR_MS, due_cut
from domain.wording.kinds import Kind

HISTORY_DAYS: Final = 28
"""Days of steady usage before the silence: 14 days of history are needed before the recent
days, and four weeks give each weekday of the baseline its full four observations."""
RECENT_DAYS: Final = 3
"""MOMENTS_DROP_RECENT_DAYS's default: the silence covers the recent days of the due day."""
MIN_DAILY: Final = Decimal(200)
"""A day of usage of the drop accounts, at least: three days must expect >= 100 units."""
CHANGE_EVERY_S: Final = 20.0
STEP_EVERY_S: Final = 30.0
BACK_AFTER_S: Final = 90.0
REGIONS: Final = ("eu-west-1", "us-east-1")


@dataclass(frozen=True, slots=True)
class Planned:
    """One record the showcase sends ``at_s`` seconds after the live traffic starts (history
    and first plans go before it, at 0), for the kinds it is meant to trigger."""

    topic: Literal["plans", "usage"]
    key: bytes
    value: bytes
    at_s: float
    kinds: tuple[Kind, ...] = ()


class Showcase:
    """The demo accounts of one run and every record they send.

    ``now_ms`` is the wall clock when the simulator starts; ``late_grace_ms`` and
    ``drop_grace_ms`` are the worker's settings (MOMENTS_LATE_GRACE, MOMENTS_DROP_GRACE) so
    the anchors and the silence line up with the worker's cuts and due day.
    """

    def __init__(
        self,
        catalog: Catalog,
        now_ms: int,
        *,
        tag: str = "demo",
        late_grace_ms: int = HOUR_MS,
        drop_grace_ms: int = 15 * 60_000,
        run_id: str = "demo",
    ) -> None:
        self.catalog = catalog
        self.now_ms = now_ms
        self.tag = tag
        self.late_grace_ms = late_grace_ms
        self.run_id = run_id
        self.due_day = due_day(now_ms, drop_grace_ms)
        self.cut_ms = due_cut(now_ms, late_grace_ms)
        self._seq = 0
        plans = catalog.plans
        # The second rung (pausable, priced overage in the shipped catalog), else the only one.
        self.base_plan = plans[1] if len(plans) > 1 else plans[0]
        self.metric = self._limited_metric(self.base_plan)
        self.history: list[Planned] = []
        self.live: list[Planned] = []
        self._build()

    # ------------------------------------------------------------------ helpers

    def account(self, role: str) -> str:
        """The id of the demo account for ``role`` in this run."""
        return f"demo-{role}-{self.tag}"

    def _limited_metric(self, plan: Plan) -> str:
        """The metric the demo accounts use: a sum (its daily totals and steps add up, as
        the drop history and the overage job need), ``api_calls`` when the plan limits it."""
        sums = [m for m in sorted(plan.limits) if self.catalog.aggregation(m) == "sum"]
        if "api_calls" in sums:
            return "api_calls"
        if sums:
            return sums[0]
        return next(
            (m for m in self.catalog.units if self.catalog.aggregation(m) == "sum"),
            next(iter(self.catalog.units)),
        )

    def _plan_value(self, account_id: str, plan: Plan, updated_ms: int, **extra: Any) -> bytes:
        value: dict[str, Any] = {
            "account_id": account_id,
            "plan_id": plan.id,
            "status": "active",
            "updated_at": to_rfc3339(updated_ms - updated_ms % 1000),
        }
        value.update(extra)
        return orjson.dumps(value)

    def _usage_value(self, account_id: str, metric: str, quantity: Decimal, ts_ms: int) -> bytes:
        self._seq += 1
        return orjson.dumps(
            {
                "record_id": f"{self.run_id}-{self.tag}-{self._seq:06d}",
                "account_id": account_id,
                "metric": metric,
                "quantity": int(quantity)
                if quantity == quantity.to_integral()
                else float(quantity),
                "timestamp": ts_ms,
                "attributes": {"source": "simulator-showcase"},
            }
        )

    def _plan(self, account_id: str, plan: Plan, at_s: float = 0.0, **extra: Any) -> Planned:
        # Each later plan record of an account is newer by its offset (updated_at orders them).
        updated = self.now_ms + int(at_s * 1000)
        value = self._plan_value(account_id, plan, updated, **extra)
        return Planned("plans", account_id.encode(), value, at_s)

    def _usage(
        self,
        account_id: str,
        metric: str,
        quantity: Decimal,
        ts_ms: int,
        at_s: float = 0.0,
        kinds: tuple[Kind, ...] = (),
    ) -> Planned:
        value = self._usage_value(account_id, metric, quantity, ts_ms)
        return Planned("usage", account_id.encode(), value, at_s, kinds)

    def _daily(self, account_id: str, metric: str, per_day: Decimal, last_day: int) -> None:
        """``HISTORY_DAYS`` days of ``per_day`` units (two records a day) ending on ``last_day``."""
        half = per_day / 2
        for day in range(last_day - HISTORY_DAYS + 1, last_day + 1):
            for hour in (9, 15):
                ts = day_start_ms(day) + hour * HOUR_MS
                self.history.append(self._usage(account_id, metric, half, ts))

    def anchor_ending_at(self, end_ms: int) -> int:
        """A billing anchor a year before ``end_ms`` whose periods end at ``end_ms`` (the
        anniversary message then celebrates a year); one period before it when a year does not
        line up (an anchor on Feb 29)."""
        length = self.catalog.period
        moment = ms_to_datetime(end_ms)
        candidates: list[int] = []
        if length == "month":
            for months in (12, 1):
                index = moment.year * 12 + moment.month - 1 - months
                try:
                    earlier = moment.replace(year=index // 12, month=index % 12 + 1, tzinfo=UTC)
                except ValueError:  # a day the earlier month does not have
                    continue
                candidates.append(datetime_to_ms(earlier))
        else:
            step = 7 * DAY_MS if length == "week" else DAY_MS
            candidates += [end_ms - (52 if length == "week" else 365) * step, end_ms - step]
        for anchor in candidates:
            if period_containing_ms(end_ms - 1, anchor, length).end_ms == end_ms:
                return anchor
        return end_ms - DAY_MS if length == "day" else candidates[-1]

    # ------------------------------------------------------------------ the accounts

    def _build(self) -> None:
        plan, metric = self.base_plan, self.metric
        limit = plan.limits.get(metric)
        per_day = MIN_DAILY if limit is None else max(MIN_DAILY, (limit / 60).to_integral())
        last_active_day = self.due_day - RECENT_DAYS  # silent on every recent day

        # Sudden drop: steady, then silent.
        drop = self.account("drop")
        self.history.append(self._plan(drop, plan))
        self._daily(drop, metric, per_day, last_active_day)

        # Drop, then back today: recovered at the next evaluation.
        back = self.account("back")
        self.history.append(self._plan(back, plan))
        self._daily(back, metric, per_day, last_active_day)
        # From 90 s on: by then the worker's start-up evaluation has run, and the drop event
        # shows no activity after the silence.
        for i in range(3):
            at_s = BACK_AFTER_S + i * STEP_EVERY_S
            ts = self.now_ms - 1000 + int(at_s * 1000)
            kinds: tuple[Kind, ...] = ("usage-recovered",) if i == 2 else ()
            self.live.append(self._usage(back, metric, per_day, ts, at_s, kinds))

        # Billing anniversaries: a period final just over the grace ago, and one in the hour.
        for role, end_ms in (("year", self.cut_ms), ("renew", self.cut_ms + HOUR_MS)):
            account_id = self.account(role)
            anchor = to_rfc3339(self.anchor_ending_at(end_ms))
            self.history.append(self._plan(account_id, plan, billing_anchor=anchor))
            # Some usage in the closed period, for the recap (late ones count only in days).
            for hours in (30, 6):
                ts = end_ms - hours * HOUR_MS
                if ts <= self.now_ms:
                    self.history.append(self._usage(account_id, metric, per_day, ts))

        # Milestone: two short of the first, then live purchases.
        milestones = next(iter(self.catalog.milestones.values()), None)
        if milestones is not None:
            account_id = self.account("milestone")
            first = milestones.at[0]
            self.history.append(self._plan(account_id, plan))
            before = max(first - 2, Decimal(0))
            if before:
                ts = day_start_ms(self.due_day) + 12 * HOUR_MS
                self.history.append(self._usage(account_id, milestones.metric, before, ts))
            for i in range(3):
                ts = self.now_ms - 1000 + i * 10_000
                kinds = ("milestone",) if i == 1 else ()
                self.live.append(
                    self._usage(account_id, milestones.metric, Decimal(1), ts, 5 + i * 10, kinds)
                )

        # Thresholds and overage: a batch job in four steps.
        if limit is not None:
            account_id = self.account("overage")
            self.history.append(self._plan(account_id, plan))
            steps: tuple[tuple[Decimal, tuple[Kind, ...]], ...] = (
                (Decimal("0.70"), ()),
                (Decimal("0.15"), ("threshold-near",)),
                (Decimal("0.20"), ("threshold-hit",)),
                (Decimal("0.55"), ("threshold-hit",)),
            )
            for i, (share, kinds) in enumerate(steps):
                at_s = 10 + i * STEP_EVERY_S
                ts = self.now_ms - 1000 + int(at_s * 1000)
                quantity = (limit * share).to_integral()
                self.live.append(self._usage(account_id, metric, quantity, ts, at_s, kinds))

        # Account changes: one of each type, 20 s apart.
        self._changes()

        # Birthday (contract 3.7): a plan record arriving on the holder's birthday is due now.
        today = datetime.fromtimestamp(self.now_ms / 1000, UTC)
        birthday = self._plan(self.account("birthday"), plan, 10, birth_date=f"--{today:%m-%d}")
        self.live.append(Planned("plans", birthday.key, birthday.value, 10, ("birthday",)))

    def _changes(self) -> None:
        account_id = self.account("change")
        plans = self.catalog.plans
        low = self.base_plan
        high = next((p for p in plans if p.rank > low.rank), None)
        self.history.append(self._plan(account_id, low, members=2, region=REGIONS[0]))
        state: dict[str, Any] = {"plan": low, "members": 2, "region": REGIONS[0]}
        steps: list[dict[str, Any]] = []
        if high is not None:
            steps.append({"plan": high})
        steps += [
            {"members": 4},
            {"region": REGIONS[1]},
            {"status": "paused"},
            {"status": "active"},
        ]
        if high is not None:
            steps.append({"plan": low})
        steps.append({"status": "cancelled"})
        for i, change in enumerate(steps, start=1):
            state.update(change)
            at_s = i * CHANGE_EVERY_S
            planned = self._plan(
                account_id,
                state["plan"],
                at_s,
                members=state["members"],
                region=state["region"],
            )
            value = orjson.loads(planned.value)
            value["status"] = state.get("status", "active")
            self.live.append(
                Planned("plans", planned.key, orjson.dumps(value), at_s, ("account-change",))
            )

    # ------------------------------------------------------------------ what it promises

    def kinds(self) -> set[Kind]:
        """Every kind some planned record (or the history) is meant to trigger."""
        kinds: set[Kind] = {k for p in self.live for k in p.kinds}
        kinds |= {"sudden-drop", "billing-anniversary"}
        return kinds


def run_tag(now_ms: int) -> str:
    """A short tag for the demo accounts of a run started at ``now_ms``: its UTC time."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%m%d%H%M%S")
