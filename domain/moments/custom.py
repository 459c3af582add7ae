"""Detection of the moments a business defines (contract 3.8): state in, events out.

``at_least`` rules are judged on the usage path, on each accepted record of a batch, after
thresholds and milestones (:func:`detect_custom`); ``at_most`` rules at a UTC day close, by
the day-close pass over the accounts (:func:`judge_closed_day`). Both read an account's rule
firings (:class:`~domain.rules.custom.RuleFirings`) only when a value meets a rule, and give
back the ones they changed, for the caller to write in the same step as the events.

Speed. :class:`CustomRules` is worked out once per catalog: the ``at_least`` rules by metric,
and by (metric, plan) the ones that apply. A record of a metric no rule watches costs one
dictionary lookup; one that a rule watches costs a comparison per rule, plus the window's
value. Rolling windows are replayed record by record over a copy of the account's daily
history taken before the batch folded into it (:class:`WindowSnapshots`), so each record is
judged on the window as it stood with that record, exactly as if records came one per batch:
the window's value is kept per (account, metric) and moved by each record of the window's last
day, and recomputed from the days only when a record falls on another day. A ``sum`` or
``count`` window inside the billing period is at most the period's value, and so is a ``max``
window inside it whose last day ends with the period at the latest, so a rule whose threshold
is above that value is passed over without reading the days. A record the intake
found ``late`` (its period over) is not judged, but it is replayed in its place (the intake
folded it into its day): a window holds it as if records came one per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from domain.common.bounded import remember
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.intake.accounts import AccountPlan, period_of
from domain.intake.batch import Accepted
from domain.intake.daily import AccountDaily, DailyHistory, DailyReadings, DailyTotals
from domain.intake.distinct import day_scope, distinct_key
from domain.intake.records import UsageRecord
from domain.intake.usage import AccountTotals
from domain.moments.detection import Moment
from domain.plans.catalog import Aggregation, Catalog, MomentRule, Plan
from domain.plans.periods import day_start_ms, utc_day
from domain.rules.custom import (
    RuleFirings,
    reached,
    threshold_of,
    window_value,
    window_values,
)
from domain.rules.thresholds import should_announce
from domain.wording.custom import Fired, custom_event, day_text
from domain.wording.events import Standing

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
#: Aggregations whose window inside a billing period is at most the period's value.
_ADDITIVE: Final = frozenset({"sum", "count"})


@dataclass(frozen=True, slots=True)
class CustomRules:
    """A catalog's ``[[moments]]`` rules, arranged once for the paths that judge them."""

    catalog: Catalog
    #: Metric -> its ``at_least`` rules, in catalog order.
    at_least: Mapping[str, tuple[MomentRule, ...]]
    #: The ``at_most`` rules, in catalog order.
    at_most: tuple[MomentRule, ...]
    #: Metrics with a rolling ``at_least`` rule: their daily history is replayed per record.
    rolling: frozenset[str]
    ids: frozenset[str]
    #: Metric -> the days of its rolling ``at_least`` windows, ascending (each once).
    spans: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    _by_plan: dict[tuple[str, str], tuple[MomentRule, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def of(cls, catalog: Catalog) -> CustomRules:
        """The rules of ``catalog`` (remembered per catalog)."""
        held = _arranged.get(id(catalog))
        if held is not None and held.catalog is catalog:
            return held
        at_least: dict[str, tuple[MomentRule, ...]] = {}
        for rule in catalog.moments:
            if rule.at_least:
                at_least[rule.metric] = (*at_least.get(rule.metric, ()), rule)
        rules = cls(
            catalog,
            at_least,
            tuple(rule for rule in catalog.moments if not rule.at_least),
            frozenset(
                rule.metric
                for rule in catalog.moments
                if rule.at_least and rule.window_days is not None
            ),
            frozenset(rule.id for rule in catalog.moments),
            {
                metric: tuple(sorted({r.window_days for r in rules if r.window_days is not None}))
                for metric, rules in at_least.items()
            },
        )
        remember(_arranged, id(catalog), rules, 8)
        return rules

    def at_least_for(self, metric: str, plan_id: str) -> tuple[MomentRule, ...]:
        """The ``at_least`` rules of ``metric`` that apply to accounts on ``plan_id``."""
        key = (metric, plan_id)
        found = self._by_plan.get(key)
        if found is None:
            found = self._by_plan[key] = tuple(
                rule for rule in self.at_least.get(metric, ()) if rule.applies_to(plan_id)
            )
        return found


_arranged: dict[int, CustomRules] = {}


class WindowSnapshots:
    """The daily histories of the rolling rules' metrics as they were before a batch.

    The intake's ``daily_of`` is wrapped by :meth:`wrap`, which sets each account's
    :attr:`~domain.intake.daily.AccountDaily.watcher` as it is read: a watched metric's days
    are copied just before the batch first changes them (few accounts and metrics of a batch
    do, and a copy shares a sum's stored days until either side changes them). A metric the
    batch did not change is copied only if a window of it is read (:meth:`before`).
    :meth:`release` takes the watchers off again, once the intake is done.
    """

    __slots__ = ("metrics", "read", "copies")

    def __init__(self, metrics: frozenset[str]) -> None:
        self.metrics = metrics
        #: The accounts' daily state as the intake read it (and changes it).
        self.read: dict[str, AccountDaily] = {}
        #: (id of an account's daily state, metric) -> its days before the batch changed them.
        self.copies: dict[tuple[int, str], DailyHistory | None] = {}

    def wrap(self, daily_of: Callable[[str], AccountDaily]) -> Callable[[str], AccountDaily]:
        """``daily_of`` that watches each account's state for changes to its watched metrics."""
        metrics, read, copies = self.metrics, self.read, self.copies

        def watch(daily: AccountDaily, metric: str) -> None:
            if metric in metrics:
                key = (id(daily), metric)
                if key not in copies:
                    history = daily.metrics.get(metric)
                    copies[key] = None if history is None else history.copy()

        def read_daily(account_id: str) -> AccountDaily:
            daily = read[account_id] = daily_of(account_id)
            daily.watcher = watch
            return daily

        return read_daily

    def before(self, account_id: str, metric: str) -> DailyHistory | None:
        """An independent copy of the days of ``metric`` as they were before the batch
        (``None``: none kept, or the account was not read)."""
        daily = self.read.get(account_id)
        if daily is None:
            return None
        key = (id(daily), metric)
        if key in self.copies:
            return self.copies.pop(key)  # read once: each (account, metric) has one replay
        history = daily.metrics.get(metric)  # unchanged by the batch
        return None if history is None else history.copy()

    def release(self) -> None:
        """Stop watching the accounts read (the state outlives the batch)."""
        for daily in self.read.values():
            daily.watcher = None


class _Replay:
    """One (account, metric)'s daily history replayed record by record through a batch, and
    the values of its windows ending on ``end_day`` (by days), kept up to date."""

    __slots__ = ("history", "aggregation", "spans", "end_day", "values", "counted")

    def __init__(
        self, history: DailyHistory | None, aggregation: Aggregation, spans: tuple[int, ...]
    ) -> None:
        self.history = history
        self.aggregation = aggregation
        self.spans = spans
        self.end_day: int | None = None
        self.values: dict[int, Decimal] = {}
        self.counted: set[str] = set()

    def fold(self, record: UsageRecord, new_distinct: Mapping[str, int]) -> None:
        """Fold ``record`` in as the intake folded it into the day."""
        ts_ms = record.timestamp_ms
        day = utc_day(ts_ms)
        aggregation = self.aggregation
        history = self.history
        step: Decimal | None
        if aggregation == "max" or aggregation == "latest":
            if not isinstance(history, DailyReadings) or history.kind != aggregation:
                history = self.history = DailyReadings(aggregation)
            history.fold(ts_ms, record.quantity)
            step = None
        else:
            if not isinstance(history, DailyTotals):
                history = self.history = DailyTotals()
            step = record.quantity
            if aggregation == "unique_count":
                unique = record.unique or ""
                key = distinct_key(record.account_id, record.metric, day_scope(day), unique)
                if key not in new_distinct or key in self.counted:
                    step = None  # not new that day: the day's count stays
                else:
                    self.counted.add(key)
                    step = _ONE
            if step is not None:
                history.add(ts_ms, step)
        if day != self.end_day:
            self.end_day = day
            self.values = {}
            return
        values = self.values
        if aggregation == "max":
            quantity = record.quantity
            for days, value in values.items():
                if quantity > value:
                    values[days] = quantity
        elif aggregation == "latest":
            values.clear()
        elif step is not None:
            for days in values:
                values[days] += step

    def value(self, days: int) -> Decimal:
        """The value of the ``days`` ending on the last folded record's day."""
        value = self.values.get(days)
        if value is None:
            end = self.end_day
            if end is None:
                return _ZERO
            if self.aggregation == "latest":
                value = self.values[days] = window_value(self.history, "latest", end, days)
            else:
                self.values = window_values(self.history, self.aggregation, end, self.spans)
                value = self.values[days]
        return value


@dataclass(slots=True)
class CustomResult:
    """Events in emission order, and the rule firings that changed, by account."""

    moments: list[Moment] = field(default_factory=list)
    firings: dict[str, RuleFirings] = field(default_factory=dict)


class _Firings:
    """The accounts' rule firings read in one step (each at most once), and those changed."""

    __slots__ = ("_of", "_loaded", "_ids", "changed")

    def __init__(self, firings_of: Callable[[str], RuleFirings], ids: frozenset[str]) -> None:
        self._of = firings_of
        self._loaded: dict[str, RuleFirings] = {}
        self._ids = ids
        self.changed: dict[str, RuleFirings] = {}

    def of(self, account_id: str) -> RuleFirings:
        firings = self._loaded.get(account_id)
        if firings is None:
            firings = self._loaded[account_id] = self._of(account_id)
            if firings.keep_only(self._ids):  # rules gone from the catalog: pruned
                self.changed[account_id] = firings
        return firings

    def fired(self, account_id: str) -> None:
        self.changed[account_id] = self._loaded[account_id]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The ``at_least`` rules of one metric for accounts on one plan with one limit of it:
    each with its threshold (rules that do not apply are left out), the lowest threshold,
    the longest rolling window (0 without one), whether the metric is additive, and whether
    it is a ``max``."""

    judged: tuple[tuple[MomentRule, Decimal], ...]
    lowest: Decimal
    longest: int
    additive: bool
    peak: bool

    @classmethod
    def of(cls, rules: CustomRules, metric: str, plan_id: str, limit: Decimal | None) -> _Bucket:
        judged = tuple(
            (rule, threshold)
            for rule in rules.at_least_for(metric, plan_id)
            if (threshold := threshold_of(rule, limit)) is not None
        )
        return cls(
            judged,
            min((threshold for _, threshold in judged), default=_ZERO),
            max((rule.window_days or 0 for rule, _ in judged), default=0),
            rules.catalog.aggregation(metric) in _ADDITIVE,
            rules.catalog.aggregation(metric) == "max",
        )


_Judging = tuple[AccountPlan, Plan | None, Decimal | None, _Bucket | None]


def _judging(
    rules: CustomRules,
    buckets: dict[tuple[str, str, Decimal | None], _Bucket],
    plan: AccountPlan,
    metric: str,
) -> _Judging:
    """``plan``, its catalog plan, its limit of ``metric`` and the bucket of rules to judge
    (``None`` when there is none: not an active account with a known plan, or no rule that
    applies to it)."""
    catalog_plan = rules.catalog.plan(plan.plan_id)
    if catalog_plan is None or not should_announce(plan):
        return (plan, None, None, None)
    limit = plan.limit(catalog_plan, metric)
    bucket = buckets.get((metric, plan.plan_id, limit))
    if bucket is None:
        bucket = buckets[(metric, plan.plan_id, limit)] = _Bucket.of(
            rules, metric, plan.plan_id, limit
        )
    return (plan, catalog_plan, limit, bucket if bucket.judged else None)


def detect_custom(
    accepted: Iterable[Accepted],
    *,
    catalog: Catalog,
    snapshots: WindowSnapshots | None,
    new_distinct: Mapping[str, int],
    firings_of: Callable[[str], RuleFirings],
    clock: Callable[[], int],
    late: Sequence[tuple[int, UsageRecord]] = (),
) -> CustomResult:
    """Fire the ``at_least`` rules the accepted records meet (contract 3.8).

    For each record of an active account with a known plan, each rule of its metric that
    applies to the plan is judged on the window's value with that record: the period's value
    (``change.after``) for ``"period"``, the replayed days for a rolling window ending on the
    record's UTC day. A rule that meets its threshold fires when its cooldown allows, stamped
    with the record's event time. ``new_distinct`` (the intake's newly counted distinct keys)
    tells which records of a ``unique_count`` metric were new in their day.
    """
    rules = CustomRules.of(catalog)
    result = CustomResult()
    if not rules.at_least:
        return result
    firings = _Firings(firings_of, rules.ids)
    replays: dict[tuple[str, str], _Replay] = {}
    # Records of an (account, metric) not yet replayed: folded in when a window is first read.
    waiting: dict[tuple[str, str], list[UsageRecord]] = {}
    buckets: dict[tuple[str, str, Decimal | None], _Bucket] = {}
    # (account, metric) -> its plan as last seen, and what follows from it (see _judging).
    judging: dict[tuple[str, str], _Judging] = {}
    at_least = rules.at_least
    # Late records are folded into the days but not judged: replayed in their place, so a
    # window holds them exactly as if records came one per batch.
    late_at = 0
    for index, item in enumerate(accepted):
        while late_at < len(late) and late[late_at][0] <= index:
            earlier = late[late_at][1]
            late_at += 1
            if earlier.metric in rules.spans:
                before = replays.get((earlier.account_id, earlier.metric))
                if before is not None:
                    before.fold(earlier, new_distinct)
                else:
                    waiting.setdefault((earlier.account_id, earlier.metric), []).append(earlier)
        change = item  # an Accepted is its own Change
        metric = change.metric
        if metric not in at_least:
            continue
        plan = item.plan
        if plan is None:
            continue
        record = item.record
        account = record.account_id
        key = (account, metric)
        known = judging.get(key)
        if known is None or known[0] is not plan:
            known = judging[key] = _judging(rules, buckets, plan, metric)
        _, catalog_plan, limit, bucket = known
        if catalog_plan is None or bucket is None:
            continue
        replay = replays.get(key)
        if replay is not None:
            replay.fold(record, new_distinct)
        elif bucket.longest:
            waiting.setdefault(key, []).append(record)
        total = change.after
        period = change.period
        end_day = utc_day(record.timestamp_ms)
        # The rolling windows of up to ``inside`` days lie in the billing period.
        inside = end_day - (period.start_ms + DAY_MS - 1) // DAY_MS + 1
        # Bounded by the period's value: a sum or count; a max whose windows of up to
        # ``inside`` days also end with the period (all their readings are the period's).
        bounded = (bucket.additive or bucket.peak) and (day_start_ms(end_day + 1) <= period.end_ms)
        if bounded and total < bucket.lowest and bucket.longest <= inside:
            continue  # no window inside the period exceeds its value: nothing reachable
        for rule, threshold in bucket.judged:
            days = rule.window_days
            if days is None:
                value = total
            else:
                if bounded and total < threshold and days <= inside:
                    continue  # days inside the period hold at most its value
                if replay is None:
                    replay = replays[key] = _Replay(
                        None if snapshots is None else snapshots.before(account, metric),
                        catalog.aggregation(metric),
                        rules.spans[metric],
                    )
                    for earlier in waiting.pop(key, ()):
                        replay.fold(earlier, new_distinct)
                value = replay.value(days)
            if value < threshold:
                continue
            at_ms = record.timestamp_ms
            account_firings = firings.of(account)
            if not account_firings.may_fire(rule, at_ms, period.start_ms):
                continue
            account_firings.fire(rule, at_ms, period.start_ms)
            firings.fired(account)
            if days is None:
                start = to_rfc3339(period.start_ms)
                span = max(1, -(-(at_ms - period.start_ms) // DAY_MS))
            else:
                start = day_text(end_day - days + 1)
                span = days
            fired = Fired(rule, value, threshold, start, span, at_ms)
            standing = Standing(account, catalog_plan, metric, period, total, limit)
            payload = custom_event(catalog, standing, fired, clock())
            result.moments.append(Moment(payload["kind"], account, payload, item.raw.timestamp))
    result.firings = firings.changed
    return result


@dataclass(frozen=True, slots=True)
class ClosedDay:
    """A UTC day closed for the ``at_most`` rules: its number and when it is judged."""

    day: int
    judged_at_ms: int

    @property
    def end_ms(self) -> int:
        """The end of the day: the instant an ``at_most`` firing is stamped with."""
        return day_start_ms(self.day + 1)


def active_since_known(plan: AccountPlan, now_ms: int) -> AccountPlan:
    """``plan`` with ``active_since_ms`` filled in with ``now_ms`` when an active plan stored
    by an older version lacks it (the day-close pass's own time: from then on it counts)."""
    if plan.status != "active" or plan.active_since_ms is not None:
        return plan
    return plan.with_active_since(now_ms)


def judge_closed_day(
    account_id: str,
    plan: AccountPlan,
    daily: AccountDaily | None,
    totals: AccountTotals | None,
    closed: ClosedDay,
    *,
    catalog: Catalog,
    firings: Callable[[], RuleFirings],
    emitted_at: Callable[[], int],
) -> list[Moment]:
    """Fire the ``at_most`` rules an account meets over the complete days ending on the
    ``closed`` day (contract 3.8): only an active account whose plan is known and was active
    since before the window's first day; silence counts as 0. ``firings`` reads the account's
    rule firings (called only when a rule is met; the object it returns is changed in place).
    """
    rules = CustomRules.of(catalog).at_most
    if not rules or plan.status != "active" or plan.active_since_ms is None:
        return []
    catalog_plan = catalog.plan(plan.plan_id)
    if catalog_plan is None:
        return []
    moments: list[Moment] = []
    at_ms = closed.end_ms
    held: RuleFirings | None = None
    for rule in rules:
        days = rule.window_days
        if days is None or not rule.applies_to(plan.plan_id):
            continue
        first_day = closed.day - days + 1
        if plan.active_since_ms >= day_start_ms(first_day):
            continue
        metric = rule.metric
        limit = plan.limit(catalog_plan, metric)
        threshold = threshold_of(rule, limit)
        if threshold is None:
            continue
        history = None if daily is None else daily.metrics.get(metric)
        value = window_value(history, catalog.aggregation(metric), closed.day, days)
        if not reached(rule, value, threshold):
            continue
        if held is None:
            held = firings()
        period = period_of(plan, at_ms - 1, catalog)
        if not held.may_fire(rule, at_ms, period.start_ms):
            continue
        held.fire(rule, at_ms, period.start_ms)
        total = _ZERO if totals is None else totals.total(metric, period)
        fired = Fired(rule, value, threshold, day_text(first_day), days, at_ms)
        standing = Standing(account_id, catalog_plan, metric, period, total, limit)
        payload = custom_event(catalog, standing, fired, emitted_at())
        moments.append(Moment(payload["kind"], account_id, payload, closed.judged_at_ms))
    return moments


__all__ = [
    "ClosedDay",
    "CustomResult",
    "CustomRules",
    "WindowSnapshots",
    "active_since_known",
    "detect_custom",
    "judge_closed_day",
]
