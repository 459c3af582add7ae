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
  ago: the worker's first anniversary pass announces it (``billing-anniversary``, one year). Its
  plan record's Kafka timestamp is a day before that end: a period that ended before the
  worker knew the account gets no anniversary.
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
* ``demo-birthday-<tag>`` and ``demo-bday-<tag>``: born on today's date (UTC), one with the year
  (28 years ago), one without (``--MM-DD``): a ``birthday`` each within a minute of the worker's
  start (contract 3.7).
* ``demo-<rule id>-<tag>``, one per ``[[moments]]`` rule of the catalog (contract 3.8), on the
  first plan from the second rung up that the rule applies to (and that limits the metric,
  for ``of_limit``). An ``at_least`` rule's account reaches the threshold from 20 s on, its
  last units in quick succession (three support calls 10 s apart for the shipped
  ``support-heavy``, one export for ``first-export``), as CloudEvents when a meter feeds the
  metric: ``custom.<id>`` within seconds. An ``at_most`` rule's account was already on its
  plan before the window: its plan record's Kafka timestamp (and ``updated_at``) is two days
  before the first day of the window of the due day, so the worker takes it as active since
  then, and it has used well below the threshold since (half of it, on the due day's eve, for
  a sum; nothing otherwise). The worker's day-close pass at start finds it: ``custom.<id>``
  within a minute or two, like the drop. That is the only honest way to a quiet week in
  minutes: the account's week is in the past, as the drop account's four weeks are.

History records have past timestamps: those of closed periods are *late* for thresholds but
count in daily totals (35 days) and lifetime totals, as the contract says. ``tag`` makes the
demo account ids new for each run, so a second run on the same broker still shows every kind
(a milestone is announced once per account, ever). What no tag can change: a worker evaluates
a closed day for drops (and ``at_most`` rules) once per partition, so a second run on the same
UTC day and broker shows its drop and its quiet account at the next day close.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Final, Literal

import orjson

from commands.simulate.traffic import STRUCTURED_HEADERS, cloudevent, sending_meters
from domain.common.timeutil import DAY_MS, datetime_to_ms, ms_to_datetime, to_rfc3339
from domain.moments.evaluation import due_day
from domain.plans.catalog import Catalog, MomentRule, Plan
from domain.plans.periods import day_start_ms, period_containing_ms, utc_day
from domain.rules.anniversaries import HOUR_MS, due_cut

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
BIRTHDAY_AGE: Final = 28
"""Age of the demo account born on today's date with a year: 28 years before a Feb 29 is a
Feb 29 too (this century)."""
RULE_AFTER_S: Final = 20.0
"""When the first ``at_least`` rule's live records start; each next rule's 5 s later."""
RULE_EVERY_S: Final = 10.0
LIVE_UNITS: Final = 3
"""An ``at_least`` rule's last units go live, in quick succession; the rest before, as history."""
MAX_RULE_RECORDS: Final = 1_000
"""A counted rule needing more records than this is not shown (a threshold too big to demo)."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One record the showcase sends ``at_s`` seconds after the live traffic starts (history
    and first plans go before it, at 0), for the kinds it is meant to trigger (built-in kinds,
    ``birthday`` and ``custom.<rule id>``). ``timestamp_ms`` is the Kafka record's timestamp
    (None: the producer's clock); ``headers`` its Kafka headers (a CloudEvent's content type)."""

    topic: Literal["plans", "usage"]
    key: bytes
    value: bytes
    at_s: float
    kinds: tuple[str, ...] = ()
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


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
        kinds: tuple[str, ...] = (),
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
            kinds: tuple[str, ...] = ("usage-recovered",) if i == 2 else ()
            self.live.append(self._usage(back, metric, per_day, ts, at_s, kinds))

        # Billing anniversaries: a period final just over the grace ago, and one in the hour.
        for role, end_ms in (("year", self.cut_ms), ("renew", self.cut_ms + HOUR_MS)):
            account_id = self.account(role)
            anchor = to_rfc3339(self.anchor_ending_at(end_ms))
            planned = self._plan(account_id, plan, billing_anchor=anchor)
            if end_ms <= self.now_ms:
                # A period that ended before the account's plan was known gets no anniversary
                # (contract 3.5): this account's plan record carries a Kafka timestamp a day
                # before the end, as if published then.
                planned = replace(planned, timestamp_ms=end_ms - DAY_MS)
            self.history.append(planned)
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
            steps: tuple[tuple[Decimal, tuple[str, ...]], ...] = (
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
        self._birthdays()
        for index, rule in enumerate(self.catalog.moments):
            self._rule(rule, index)

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

    def _birthdays(self) -> None:
        today = ms_to_datetime(self.now_ms)
        month_day = f"{today.month:02d}-{today.day:02d}"
        born = (f"{today.year - BIRTHDAY_AGE:04d}-{month_day}", f"--{month_day}")
        for role, birth_date in zip(("birthday", "bday"), born, strict=True):
            planned = self._plan(self.account(role), self.base_plan, birth_date=birth_date)
            self.history.append(Planned("plans", planned.key, planned.value, 0.0, ("birthday",)))

    # ------------------------------------------------------------------ rules of [[moments]]

    def _rule(self, rule: MomentRule, index: int) -> None:
        """The demo account of ``rule``, when a plan of the catalog can show it."""
        plan = self.rule_plan(rule)
        if plan is None:
            return
        threshold = rule.amount
        if rule.of_limit:
            threshold *= plan.limits[rule.metric]
        if rule.at_least:
            self._at_least(rule, plan, threshold, RULE_AFTER_S + 5 * index)
        else:
            self._at_most(rule, plan, threshold)

    def rule_plan(self, rule: MomentRule) -> Plan | None:
        """The plan of ``rule``'s demo account: the first from the second rung up (then the
        first) that the rule applies to and, for ``of_limit``, that limits its metric."""
        plans = self.catalog.plans
        start = plans.index(self.base_plan)
        for plan in (*plans[start:], *plans[:start]):
            if rule.applies_to(plan.id) and (
                not rule.of_limit or plan.limit(rule.metric) is not None
            ):
                return plan
        return None

    def _at_least(self, rule: MomentRule, plan: Plan, threshold: Decimal, after_s: float) -> None:
        """Records that take the window's value to ``threshold``: the last ones live."""
        account_id = self.account(rule.id)
        aggregation = self.catalog.aggregation(rule.metric)
        whole = threshold.to_integral(ROUND_CEILING)
        if aggregation in ("max", "latest"):
            quantities = [whole]  # one reading at the threshold
        elif aggregation in ("count", "unique_count"):
            if whole > MAX_RULE_RECORDS:
                return
            quantities = [Decimal(1)] * int(whole)
        else:
            part = (whole / LIVE_UNITS).to_integral(ROUND_CEILING)
            quantities = [part] * (LIVE_UNITS - 1) + [whole - part * (LIVE_UNITS - 1)]
            quantities = [q for q in quantities if q > 0]
        self.history.append(self._plan(account_id, plan))
        live = quantities[-LIVE_UNITS:]
        early = quantities[: -len(live)]
        # The earlier units: just before the run, today (so a one-day window holds them too).
        early_ts, early_s = max(self.now_ms - 120_000, day_start_ms(utc_day(self.now_ms))), 0.0
        last_ts = self.now_ms - 1000 + int((after_s + (len(live) - 1) * RULE_EVERY_S) * 1000)
        if utc_day(last_ts) != utc_day(self.now_ms):
            # A UTC day starts before the last one: every unit goes after it, in one window.
            after_s += (day_start_ms(utc_day(last_ts)) - self.now_ms) / 1000
            early_ts, early_s = self.now_ms - 1000 + int(after_s * 1000), after_s
        for i, quantity in enumerate(early):
            planned = self._rule_usage(rule, account_id, quantity, early_ts, early_s, i)
            (self.live if early_s else self.history).append(planned)
        for i, quantity in enumerate(live):
            at_s = after_s + i * RULE_EVERY_S
            ts = self.now_ms - 1000 + int(at_s * 1000)
            kinds = (rule.kind,) if i == len(live) - 1 else ()
            planned = self._rule_usage(rule, account_id, quantity, ts, at_s, len(early) + i, kinds)
            self.live.append(planned)

    def _at_most(self, rule: MomentRule, plan: Plan, threshold: Decimal) -> None:
        """An account on ``plan`` since before the window of the due day, quiet since."""
        account_id = self.account(rule.id)
        days = rule.window_days or 1
        since_ms = day_start_ms(self.due_day - days - 2)
        value = self._plan_value(account_id, plan, since_ms)
        self.history.append(
            Planned("plans", account_id.encode(), value, 0.0, (rule.kind,), since_ms)
        )
        little = (threshold / 2).to_integral(ROUND_FLOOR)
        if self.catalog.aggregation(rule.metric) == "sum" and little >= 1:
            ts = day_start_ms(self.due_day - 1) + 10 * HOUR_MS
            self.history.append(self._rule_usage(rule, account_id, little, ts, 0.0, 0))

    def _rule_usage(
        self,
        rule: MomentRule,
        account_id: str,
        quantity: Decimal,
        ts_ms: int,
        at_s: float,
        n: int,
        kinds: tuple[str, ...] = (),
    ) -> Planned:
        """A record of ``rule``'s metric: a structured CloudEvent when a meter can carry it (a
        support-call event), else a plain record; a distinct user ``n`` for a unique_count."""
        value = orjson.loads(self._usage_value(account_id, rule.metric, quantity, ts_ms))
        unique = self.catalog.unique_fields.get(rule.metric)
        if unique is not None:
            into = value["attributes"]
            for name in unique[:-1]:
                into = into.setdefault(name, {})
            into[unique[-1]] = f"user-{n + 1:04d}"
        meter = sending_meters(self.catalog).get(rule.metric)
        # A meter without `value` counts an event as one: a bigger quantity goes plain.
        if meter is None or (meter.value is None and quantity != 1):
            return Planned("usage", account_id.encode(), orjson.dumps(value), at_s, kinds)
        event = cloudevent(
            meter, value["record_id"], account_id, to_rfc3339(ts_ms), value["quantity"]
        )
        return Planned(
            "usage",
            account_id.encode(),
            orjson.dumps(event),
            at_s,
            kinds,
            headers=STRUCTURED_HEADERS,
        )

    # ------------------------------------------------------------------ what it promises

    def kinds(self) -> set[str]:
        """Every kind some planned record (or the history) is meant to trigger."""
        kinds: set[str] = {k for p in self.history + self.live for k in p.kinds}
        kinds |= {"sudden-drop", "billing-anniversary"}
        return kinds

    def announcements(self) -> list[str]:
        """What the showcase's history sets up for the worker's start, for the log."""
        lines = [
            f"birthdays today: {self.account('birthday')} (born {BIRTHDAY_AGE} years ago today)"
            f" and {self.account('bday')} (no year): a birthday each within a minute"
        ]
        for planned in self.history:
            quiet = [k for k in planned.kinds if k.startswith("custom.")]
            if quiet and planned.topic == "plans" and planned.timestamp_ms is not None:
                lines.append(
                    f"{planned.key.decode()} on its plan since {to_rfc3339(planned.timestamp_ms)},"
                    f" quiet since: {quiet[0]} at the worker's first day-close pass (at start,"
                    " or 00:00 UTC + MOMENTS_DROP_GRACE when this UTC day was judged already)"
                )
        return lines


def run_tag(now_ms: int) -> str:
    """A short tag for the demo accounts of a run started at ``now_ms``: its UTC time."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%m%d%H%M%S")
