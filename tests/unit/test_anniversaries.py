"""Billing anniversaries (contract 3.5) against an independent oracle.

The oracle walks the periods one by one from the anchor with the standard library's calendar
(no O(1) arithmetic), reads finality straight from the late rule (a record is late once
``now > end + grace``), and finds anniversaries by trying dates, so it shares no code with
:mod:`domain.rules.anniversaries`.
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import PACKAGED_MESSAGES_FILE, PACKAGED_PLANS_FILE
from domain.intake.accounts import AccountPlan
from domain.intake.usage import AccountTotals
from domain.moments.anniversary_pass import Held, PassRules, evaluate_anniversary
from domain.plans.catalog import Catalog, load_catalog
from domain.plans.periods import Period, PeriodLength
from domain.rules.anniversaries import (
    MetricRecap,
    Summary,
    due_cut,
    judge,
    latest_closed,
    periods_completed,
    recap_metrics,
    recap_text,
    suggest,
    summarize,
    whole_years,
)
from domain.wording.events import ClosedPeriod, Wording, anniversary_event
from domain.wording.templates import load_templates
from tests.schema import assert_valid

CATALOG = load_catalog(PACKAGED_PLANS_FILE)
TEMPLATES = load_templates(PACKAGED_MESSAGES_FILE)
GRACE_MS = 3_600_000


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- the oracle -----------------------------------------------------------------------------


def oracle_start(anchor: datetime, length: PeriodLength, k: int) -> datetime:
    """Start of the k-th period after the anchor (k >= 0), walking the calendar."""
    if length == "day":
        return anchor + timedelta(days=k)
    if length == "week":
        return anchor + timedelta(weeks=k)
    year, month = anchor.year, anchor.month
    for _ in range(k):
        month += 1
        if month == 13:
            year, month = year + 1, 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def oracle_latest_final(
    anchor: datetime, length: PeriodLength, now_ms: int
) -> tuple[int, datetime, datetime] | None:
    """``(periods completed, start, end)`` of the latest period that is final at ``now_ms``:
    ``end <= the last instant a record is late`` (no hourly rounding since the due index,
    issue 19: it was the whole hour at or before that instant)."""
    last_late_ms = now_ms - GRACE_MS - 1  # a record of a period ending here is late at now
    found = None
    k = 0
    while True:
        start, end = oracle_start(anchor, length, k), oracle_start(anchor, length, k + 1)
        if to_ms(end) > last_late_ms:
            return found
        found = (k + 1, start, end)
        k += 1


def oracle_years(anchor: datetime, start: datetime, end: datetime) -> int | None:
    for n in range(1, 12):
        try:
            day = anchor.replace(year=anchor.year + n)
        except ValueError:  # Feb 29 in a common year
            day = anchor.replace(year=anchor.year + n, day=28)
        if start < day <= end:
            return n
    return None


anchors = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
lengths = st.sampled_from(["month", "week", "day"])


def account(anchor_ms: int | None, plan_id: str = "starter", **extra: Any) -> AccountPlan:
    return AccountPlan("a", plan_id, anchor_ms, "active", {}, 0, **extra)


def catalog_of(length: PeriodLength) -> Catalog:
    return replace(CATALOG, period=length)


@settings(max_examples=300, deadline=None)
@given(
    anchor=anchors,
    length=lengths,
    after_s=st.integers(min_value=0, max_value=3 * 366 * 86_400),
)
def test_latest_final_period_counts_and_years_match_the_oracle(
    anchor: datetime, length: PeriodLength, after_s: int
) -> None:
    now_ms = to_ms(anchor) + after_s * 1000
    if length == "day":  # keep the oracle's walk short
        now_ms = to_ms(anchor) + (after_s % (800 * 86_400)) * 1000
    expected = oracle_latest_final(anchor, length, now_ms)
    cut = due_cut(now_ms, GRACE_MS)
    period = latest_closed(account(to_ms(anchor)), cut, catalog_of(length))
    completed = periods_completed(to_ms(anchor), period.end_ms, length)
    if expected is None:
        assert completed < 1  # nothing billed is final yet: no anniversary
        return
    k, start, end = expected
    assert (period.start, period.end) == (start, end)
    assert completed == k
    # Final: a record of the period would be late now, and it is due at once.
    assert period.end_ms + GRACE_MS < now_ms
    assert cut == now_ms - GRACE_MS - 1 and period.end_ms <= cut
    assert whole_years(to_ms(anchor), period) == oracle_years(anchor, start, end)
    if length == "month":
        assert (whole_years(to_ms(anchor), period) is not None) == (k % 12 == 0)


def test_a_period_is_due_as_soon_as_it_becomes_final() -> None:
    # Issue 19: a period ending at an odd second is due at its end plus the grace, not at the
    # next whole hour (cuts were whole hours before the due index).
    anchor = to_ms(datetime(2026, 10, 15, 23, 40, 37, tzinfo=UTC))
    end = to_ms(datetime(2026, 11, 15, 23, 40, 37, tzinfo=UTC))
    plan = account(anchor)
    # Still accepting records at end + grace: not final.
    assert latest_closed(plan, due_cut(end + GRACE_MS, GRACE_MS), CATALOG).end_ms < end
    # Final from end + grace + 1 ms, and due then.
    assert latest_closed(plan, due_cut(end + GRACE_MS + 1, GRACE_MS), CATALOG).end_ms == end


def test_leap_day_anchor_celebrates_on_feb_28_in_common_years() -> None:
    anchor = datetime(2024, 2, 29, 8, tzinfo=UTC)
    end = datetime(2025, 2, 28, 8, tzinfo=UTC)
    period = Period(datetime(2025, 1, 29, 8, tzinfo=UTC), end)
    assert whole_years(to_ms(anchor), period) == 1
    assert periods_completed(to_ms(anchor), to_ms(end), "month") == 12


# --- the suggestion rule --------------------------------------------------------------------

METRICS = ("api_calls", "storage_gb", "seats")
quantities = st.integers(min_value=0, max_value=200).map(Decimal)
limits = st.one_of(st.none(), st.integers(min_value=1, max_value=100).map(Decimal))


def oracle_action(
    limits_by_metric: dict[str, Decimal | None],
    now: dict[str, Decimal],
    previous: dict[str, Decimal] | None,
    level: Decimal,
) -> str:
    limited = [m for m, limit in limits_by_metric.items() if limit is not None]

    def reached(totals: dict[str, Decimal], m: str) -> bool:
        return totals[m] >= limits_by_metric[m]  # type: ignore[operator]

    def low(totals: dict[str, Decimal]) -> bool:
        return bool(limited) and all(
            totals[m] * 1 <= level * limits_by_metric[m]  # type: ignore[operator]
            for m in limited
        )

    periods = [now] if previous is None else [now, previous]
    if any(all(reached(t, m) for t in periods) for m in limited):
        return "upgrade"
    if all(low(t) for t in periods):
        return "downgrade"
    return "none"


@settings(max_examples=300, deadline=None)
@given(
    limits_by_metric=st.fixed_dictionaries({m: limits for m in METRICS}),
    now=st.fixed_dictionaries({m: quantities for m in METRICS}),
    previous=st.one_of(st.none(), st.fixed_dictionaries({m: quantities for m in METRICS})),
    level=st.sampled_from([Decimal("0.3"), Decimal("0.25"), Decimal("0.5")]),
)
def test_the_suggestion_rule_over_two_periods_matches_the_oracle(
    limits_by_metric: dict[str, Decimal | None],
    now: dict[str, Decimal],
    previous: dict[str, Decimal] | None,
    level: Decimal,
) -> None:
    period = Period.from_ms(1000, 2000)
    given_limits = {m: v for m, v in limits_by_metric.items() if v is not None}
    summary = summarize(period, recap_metrics(now, given_limits), level)
    before = None
    if previous is not None:
        before = summarize(Period.from_ms(0, 1000), recap_metrics(previous, given_limits), level)
    assert judge(summary, before) == oracle_action(limits_by_metric, now, previous, level)


def test_upgrade_needs_the_same_metric_at_its_limit_in_both_periods() -> None:
    now = Summary(2, frozenset({"api_calls"}), False)
    assert judge(now, Summary(1, frozenset({"seats"}), False)) == "none"
    assert judge(now, Summary(1, frozenset({"api_calls", "seats"}), False)) == "upgrade"
    assert judge(now, None) == "upgrade"  # first period: on its own


@given(totals=st.fixed_dictionaries({m: quantities.map(lambda q: q * 1000) for m in METRICS}))
def test_suggested_plans_are_the_cheapest_that_cover_the_period(
    totals: dict[str, Decimal],
) -> None:
    for current in CATALOG.plans:
        recap = recap_metrics(totals, dict(current.limits))

        def holds(plan: Any, recap: list[MetricRecap] = recap) -> bool:
            return all(
                plan.limit(m.metric) is None or plan.limit(m.metric) >= m.total for m in recap
            )

        up = suggest(CATALOG, current, "upgrade", recap, underuse_level=Decimal("0.3"), first=True)
        higher = [p for p in CATALOG.plans if p.rank > current.rank]
        if not higher:
            assert up.action == "none"
        else:
            covering = [p for p in higher if holds(p)]
            best = min(covering, key=lambda p: p.price) if covering else higher[-1]
            assert (up.action, up.plan_id) == ("upgrade", best.id)
        down = suggest(
            CATALOG, current, "downgrade", recap, underuse_level=Decimal("0.3"), first=False
        )
        cheaper = [p for p in CATALOG.plans if p.rank < current.rank and p.price < current.price]
        covering = [p for p in cheaper if holds(p)]
        if covering:
            best = min(covering, key=lambda p: p.price)
            assert (down.action, down.plan_id) == ("downgrade", best.id)
            assert down.price_delta is not None and down.price_delta < 0
        else:
            assert down.action == "none"


# --- one account in a pass ------------------------------------------------------------------


def totals_in(period: Period, **by_metric: int) -> AccountTotals:
    totals = AccountTotals()
    for metric, quantity in by_metric.items():
        totals.add(metric, period, Decimal(quantity))
    return totals


ANCHOR_MS = to_ms(datetime(2025, 11, 15, 9, 30, tzinfo=UTC))
CUT_MS = to_ms(datetime(2026, 11, 15, 10, 0, tzinfo=UTC))
CLOSED = Period(
    datetime(2026, 10, 15, 9, 30, tzinfo=UTC), datetime(2026, 11, 15, 9, 30, tzinfo=UTC)
)


def run(
    plan: AccountPlan, totals: AccountTotals, held: Held | None, done: int | None = None
) -> tuple[Held | None, dict[str, Any] | None]:
    return evaluate_anniversary(
        "a",
        plan,
        lambda: totals,
        lambda: held,
        CUT_MS,
        done_cut_ms=done,
        rules=PassRules(Decimal("0.3")),
        catalog=CATALOG,
        templates=TEMPLATES,
        now_ms=CUT_MS + 1000,
    )


def test_a_whole_year_is_celebrated_and_the_event_is_valid() -> None:
    keep, event = run(account(ANCHOR_MS), totals_in(CLOSED, api_calls=12_000), None)
    assert event is not None and keep is not None
    assert_valid(event)
    assert event["recap"]["anniversary"] == {"periods_completed": 12, "years": 1}
    assert event["message"]["title"] == "Happy 1 year with us!"
    assert "12,000 of 10,000 API calls (120%)" in event["message"]["body"]
    assert event["suggestion"]["action"] == "upgrade"  # no summary of the period before
    assert event["suggestion"]["plan_id"] == "growth"
    assert keep.summary == Summary(CLOSED.end_ms, frozenset({"api_calls"}), False)


def test_two_periods_decide_and_the_same_period_is_never_judged_twice() -> None:
    before = Held(Summary(CLOSED.start_ms, frozenset(), False), None)
    keep, event = run(account(ANCHOR_MS), totals_in(CLOSED, api_calls=12_000), before)
    assert event is not None and event["suggestion"]["action"] == "none"
    assert "Thank you" in event["message"]["body"]
    assert run(account(ANCHOR_MS), AccountTotals(), keep) == (None, None)
    assert run(account(ANCHOR_MS), AccountTotals(), None, done=CLOSED.end_ms) == (None, None)


def test_inactive_accounts_keep_a_summary_but_get_no_event() -> None:
    paused = replace(account(ANCHOR_MS), status="paused")
    keep, event = run(paused, AccountTotals(), None)
    assert event is None and keep is not None and keep.summary.underused


def test_an_account_without_anchor_counts_from_its_first_anniversary() -> None:
    keep, event = run(account(None), AccountTotals(), None)
    assert event is not None and keep is not None
    assert event["recap"]["anniversary"] == {"periods_completed": 1, "years": None}
    assert keep.origin_ms == to_ms(datetime(2026, 10, 1, tzinfo=UTC))


def test_an_unlimited_metric_is_in_the_recap_without_limit() -> None:
    plan = account(ANCHOR_MS, "enterprise")
    _, event = run(plan, totals_in(CLOSED, seats=7, api_calls=10), None)
    assert event is not None
    assert_valid(event)
    seats = next(m for m in event["recap"]["metrics"] if m["metric"] == "seats")
    assert seats == {"metric": "seats", "total": 7, "limit": None, "ratio": None, "unit": "seats"}
    assert [m["metric"] for m in event["recap"]["metrics"]] == ["api_calls", "seats", "storage_gb"]


def test_recap_metrics_holds_usage_or_a_limit_ordered_by_metric() -> None:
    recap = recap_metrics({"b": Decimal(1)}, {"a": Decimal(5)})
    assert recap == [MetricRecap("a", Decimal(0), Decimal(5)), MetricRecap("b", Decimal(1), None)]


def test_event_id_is_the_contract_identity() -> None:
    import hashlib

    _, event = run(account(ANCHOR_MS), AccountTotals(), None)
    assert event is not None
    text = "billing-anniversary|a|2026-10-15T09:30:00Z"
    assert event["event_id"] == hashlib.sha256(text.encode()).hexdigest()
    assert event["triggered_at"] == "2026-11-15T09:30:00Z"


def test_anniversary_event_builder_is_schema_valid_with_no_metrics() -> None:
    plan = CATALOG.plan("starter")
    assert plan is not None
    suggestion = suggest(CATALOG, plan, "none", [], underuse_level=Decimal("0.3"), first=True)
    event = anniversary_event(
        Wording(TEMPLATES, CATALOG),
        "a",
        plan,
        ClosedPeriod(period=CLOSED, recap=[], periods_completed=3, years=None),
        suggestion,
        CUT_MS,
    )
    assert_valid(event)
    assert "no usage recorded" in event["message"]["body"]


# --- messages -------------------------------------------------------------------------------


def test_every_anniversary_template_renders_with_every_kind_of_plan() -> None:
    """Unlimited metrics (enterprise), no higher plan (enterprise), no lower plan (free), no
    overage price (any), an empty recap, every action, with and without whole years."""
    from domain.wording.messages import anniversary_message
    from domain.wording.templates import PLACEHOLDERS

    tables = {t for t, _ in PLACEHOLDERS if t.startswith("billing-anniversary")}
    rendered = set()
    level = Decimal("0.3")
    recaps = {
        "empty": {},
        "light": {"api_calls": Decimal(10), "seats": Decimal(1)},
        "heavy": {"api_calls": Decimal(50_000_000), "seats": Decimal(80)},
    }
    for current in CATALOG.plans:
        for totals in recaps.values():
            recap = recap_metrics(totals, dict(current.limits))
            for action in ("upgrade", "downgrade", "none"):
                for first in (True, False):
                    suggestion = suggest(
                        CATALOG, current, action, recap, underuse_level=level, first=first
                    )
                    for years, completed in ((None, 1), (None, 5), (1, 12), (3, 36)):
                        message = anniversary_message(
                            TEMPLATES,
                            catalog=CATALOG,
                            plan=current,
                            account_id="acct-1",
                            period=CLOSED,
                            periods_completed=completed,
                            years=years,
                            recap=recap_text(CATALOG, recap),
                            suggestion=suggestion,
                        )
                        table = "billing-anniversary-years" if years else "billing-anniversary"
                        rendered.add((table, suggestion.action))
                        for text in (message.title, message.body):
                            assert text.strip()
                            assert "None" not in text and "{" not in text and "}" not in text
                            assert "  " not in text
                        if years:
                            assert f"{years} year" in message.title
    assert rendered == {
        (table, action) for table in tables for action in ("upgrade", "downgrade", "none")
    }


def test_anniversary_messages_carry_the_real_numbers() -> None:
    plan = CATALOG.plan("starter")
    assert plan is not None
    recap = recap_metrics({"api_calls": Decimal(200)}, dict(plan.limits))
    suggestion = suggest(
        CATALOG, plan, "downgrade", recap, underuse_level=Decimal("0.3"), first=False
    )
    event = anniversary_event(
        Wording(TEMPLATES, CATALOG),
        "a",
        plan,
        ClosedPeriod(period=CLOSED, recap=recap, periods_completed=5, years=None),
        suggestion,
        CUT_MS,
    )
    body = event["message"]["body"]
    assert "200 of 10,000 API calls (2%)" in body
    assert "5 months" in body and "October 15, 2026" in body and "November 15, 2026" in body
    assert "Free" in body and "$0" in body and "$19" in body
