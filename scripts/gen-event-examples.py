#!/usr/bin/env python3
"""Print one example event of each kind, built by the real domain code, for docs/events.md.

Every event comes from the code the worker runs: thresholds from
:func:`domain.rules.thresholds.detect` and :func:`domain.wording.events.threshold_event`, drops
and recoveries from :func:`domain.wording.events.drop_event` and
:func:`domain.wording.events.recovered_event`, milestones from
:func:`domain.moments.milestones.detect_milestones`, anniversaries from
:func:`domain.moments.anniversary_pass.evaluate_anniversary` (the pass's own judgement) and account
changes from :func:`domain.moments.changes.diff_accounts` and
:func:`domain.moments.changes.change_events`, birthdays from
:func:`domain.moments.birthdays.evaluate_birthday` (the timer pass's judgement), with the shipped
plan catalog
(``config/plans.toml``), message templates (``config/messages.toml``)
and fixed inputs, so the output is the same on every run. The examples tell one story: a
Starter account, acct-0042, through November 2026 and into December, and a Growth account,
acct-0117, that goes quiet and comes back. Paste the output into the "Example payloads"
section of docs/events.md; ``tests/ops/test_docs_events.py`` fails when the doc and this
output differ.

    .venv/bin/python scripts/gen-event-examples.py
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.common.timeutil import parse_rfc3339_ms
from domain.intake.accounts import AccountPlan, period_of
from domain.intake.lifetime import AccountLifetime, MilestoneDue
from domain.intake.records import UsageRecord
from domain.intake.usage import AccountTotals
from domain.moments.anniversary_pass import Held, PassRules, evaluate_anniversary
from domain.moments.birthdays import BirthdayRules, evaluate_birthday
from domain.moments.changes import change_events, diff_accounts
from domain.moments.milestones import detect_milestones
from domain.plans.catalog import Catalog, Plan, load_catalog, parse_catalog
from domain.plans.periods import Period, utc_day
from domain.rules.anniversaries import Summary, due_cut
from domain.rules.thresholds import detect
from domain.wording.custom import Fired, custom_event, day_text
from domain.wording.events import (
    Crossed,
    Evaluation,
    Standing,
    Wording,
    drop_event,
    recovered_event,
    threshold_event,
)
from domain.wording.templates import Templates, load_templates

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "acct-0042"
METRIC = "api_calls"
LATE_GRACE_MS = 3_600_000  # MOMENTS_LATE_GRACE's default: 1 h
# The billing period of the November examples: November 2026 (monthly plans, anchored on the
# 1st: acct-0042 joined on December 1, 2025).
PERIOD = Period.from_ms(
    parse_rfc3339_ms("2026-11-01T00:00:00Z"), parse_rfc3339_ms("2026-12-01T00:00:00Z")
)


def _ms(text: str) -> int:
    return parse_rfc3339_ms(text)


def _plan(catalog: Catalog, plan_id: str) -> Plan:
    found = catalog.plan(plan_id)
    if found is None:
        raise SystemExit(f"plan {plan_id!r} is not in the shipped catalog")
    return found


def _account(plan_id: str, updated_at: str, **extra: Any) -> AccountPlan:
    """acct-0042's plan record as the worker holds it."""
    return AccountPlan(
        account_id=ACCOUNT,
        plan_id=plan_id,
        anchor_ms=_ms("2025-12-01T00:00:00Z"),
        status="active",
        limits={},
        updated_at_ms=_ms(updated_at),
        **extra,
    )


def _standing(account_id: str, plan: Plan, total: Decimal, metric: str = METRIC) -> Standing:
    """Where the account's API calls (or ``metric``) stand in November, with its plan's limit."""
    return Standing(
        account_id=account_id,
        plan=plan,
        metric=metric,
        period=PERIOD,
        total=total,
        limit=plan.limit(metric),
    )


def _usual_three_days(recent_total: Decimal, last_active: str, evaluated: str) -> Evaluation:
    """acct-0117's last three days against its usual 3,600 API calls in three days."""
    expected = Decimal(3_600)
    return Evaluation(
        recent_days=3,
        recent_total=recent_total,
        expected_total=expected,
        ratio=recent_total / expected,
        last_active_at_ms=_ms(last_active),
        evaluated_at_ms=_ms(evaluated),
    )


def _threshold(
    catalog: Catalog,
    templates: Templates,
    *,
    total: int,
    announced: frozenset[Decimal],
    record_id: str,
    at: str,
    emitted: str,
    limit_reached_at: str | None = None,
    metric: str = METRIC,
) -> dict[str, Any]:
    starter = _plan(catalog, "starter")
    limit = starter.limit(metric)
    if limit is None:
        raise SystemExit(f"the starter plan has no {metric} limit")
    crossing = detect(Decimal(total), limit, starter.levels, announced)
    if crossing is None:
        raise SystemExit(f"{total} of {limit} crosses no level not in {sorted(announced)}")
    return threshold_event(
        Wording(templates, catalog),
        _standing(ACCOUNT, starter, Decimal(total), metric),
        Crossed(
            crossing=crossing,
            record_id=record_id,
            at_ms=_ms(at),
            limit_reached_at_ms=None if limit_reached_at is None else _ms(limit_reached_at),
        ),
        _ms(emitted),
    )


def _milestone(catalog: Catalog, templates: Templates) -> dict[str, Any]:
    """acct-0042's customers place 3 orders on November 18, its 50th to 52nd ever (the 10th
    was celebrated in September); November's purchases come to 17 with them."""
    lifetime = AccountLifetime(
        totals={"purchases": Decimal(49)}, announced={"purchases": (Decimal(10),)}
    )
    record = UsageRecord(
        "rec-9b41c7", ACCOUNT, "purchases", Decimal(3), _ms("2026-11-18T14:05:09Z")
    )
    total = lifetime.add("purchases", record.quantity)
    assert total is not None  # noqa: S101  # 52 is exact
    due = MilestoneDue(
        record=record,
        arrived_ms=_ms("2026-11-18T14:05:09.870Z"),
        plan=_account("starter", "2025-12-01T00:00:00Z"),
        lifetime_total=total,
        period=PERIOD,
        period_total=Decimal(17),
    )
    result = detect_milestones(
        [due],
        lifetime_of=lambda _: lifetime,
        catalog=catalog,
        templates=templates,
        now_ms=_ms("2026-11-18T14:05:10.033Z"),
    )
    [moment] = result.moments
    return moment.payload


def _anniversary(catalog: Catalog, templates: Templates) -> dict[str, Any]:
    """November closes acct-0042's first year: 15,000 API calls, past the limit as in October
    (the held summary of the previous period), so the pass suggests a bigger plan."""
    account = _account("starter", "2025-12-01T00:00:00Z")
    span = (PERIOD.start_ms, PERIOD.end_ms)
    totals = AccountTotals(
        {
            METRIC: {span: Decimal(15_000)},
            "storage_gb": {span: Decimal("3.5")},
            "seats": {span: Decimal(2)},
        }
    )
    october = Held(Summary(PERIOD.start_ms, frozenset({METRIC}), underused=False), None)
    now_ms = _ms("2026-12-01T01:05:00.318Z")  # the first pass after the period became final
    _, event = evaluate_anniversary(
        ACCOUNT,
        account,
        lambda: totals,
        lambda: october,
        due_cut(now_ms, LATE_GRACE_MS),
        done_cut_ms=None,
        rules=PassRules(catalog.underuse_level),
        catalog=catalog,
        templates=templates,
        now_ms=now_ms,
    )
    if event is None:
        raise SystemExit("the anniversary pass announced nothing")
    return event


def _changes(catalog: Catalog, templates: Templates) -> list[dict[str, Any]]:
    """On December 1 acct-0042 moves to Growth (1,250 API calls into the new period), then
    adds two members to its team of three."""
    held = _account("starter", "2025-12-01T00:00:00Z", members=3)
    events = []
    for new, emitted, totals in (
        (
            _account("growth", "2026-12-01T09:12:40Z", members=3),
            "2026-12-01T09:12:40.655Z",
            {METRIC: Decimal(1_250)},
        ),
        (
            _account("growth", "2026-12-03T16:48:00Z", members=5),
            "2026-12-03T16:48:00.201Z",
            {METRIC: Decimal(6_900)},
        ),
    ):
        changes = diff_accounts(held, new, catalog)
        events += change_events(
            templates=templates,
            catalog=catalog,
            account=new,
            changes=changes,
            period=period_of(new, new.updated_at_ms, catalog),
            totals=totals,
            emitted_at_ms=_ms(emitted),
        )
        held = new
    return events


def _birthday(catalog: Catalog, templates: Templates) -> dict[str, Any]:
    """December 7 is the birthday of acct-0042's holder (born 1988; the shipped catalog shows
    no age and has no birthday offer): celebrated seconds after the day starts."""
    account = _account("growth", "2026-12-03T16:48:00Z", members=5, birth_date="1988-12-07")
    judged = evaluate_birthday(
        ACCOUNT,
        account,
        date(2026, 12, 7),
        lambda: None,
        _ms("2026-12-07T00:00:04.512Z"),
        rules=BirthdayRules(LATE_GRACE_MS),
        catalog=catalog,
        templates=templates,
        now_ms=_ms("2026-12-07T00:00:04.690Z"),
    )
    if judged.event is None:
        raise SystemExit("the birthday pass celebrated nothing")
    return dict(judged.event)


def examples(plans: Path = ROOT / "config" / "plans.toml") -> dict[str, dict[str, Any]]:
    """The examples by section title, in topic order (a kind's variants after it), with the
    catalog at ``plans`` (the shipped one in the guide)."""
    catalog = load_catalog(plans)
    templates = load_templates(ROOT / "config" / "messages.toml")
    # Starter (10,000 API calls a month): 8,000 used on November 18 at 10:00 UTC.
    near = _threshold(
        catalog,
        templates,
        total=8_000,
        announced=frozenset(),
        record_id="rec-7f3a9c",
        at="2026-11-18T10:00:00Z",
        emitted="2026-11-18T10:00:00.412Z",
    )
    # The same account reaches its 10,000 on November 24; 0.8 was announced above.
    hit = _threshold(
        catalog,
        templates,
        total=10_000,
        announced=frozenset({Decimal("0.8")}),
        record_id="rec-81d2e0",
        at="2026-11-24T15:20:00Z",
        emitted="2026-11-24T15:20:00.387Z",
    )
    # ... and keeps going: 15,000 on November 28, 150% (the over level 1.5), at $0.002 per
    # call past the limit.
    over = _threshold(
        catalog,
        templates,
        total=15_000,
        announced=frozenset({Decimal("0.8"), Decimal("1.0")}),
        record_id="rec-a20c55",
        at="2026-11-28T11:45:00Z",
        emitted="2026-11-28T11:45:00.291Z",
        limit_reached_at="2026-11-24T15:20:00Z",
    )
    # Its seats are a level (aggregation "latest"): the product reported 3 seats on
    # November 26, all that Starter includes. No pace, so no projection.
    seats = _threshold(
        catalog,
        templates,
        total=3,
        announced=frozenset(),
        record_id="rec-c41b07",
        at="2026-11-26T09:30:00Z",
        emitted="2026-11-26T09:30:00.118Z",
        metric="seats",
    )
    # Another account, on Growth, usually makes about 1,200 API calls a day and made none on
    # November 21, 22 and 23: evaluated when November 23 closed (emitted after the 15 min grace).
    growth = _plan(catalog, "growth")
    drop = drop_event(
        Wording(templates, catalog),
        _standing("acct-0117", growth, Decimal(24_000)),
        _usual_three_days(Decimal(0), "2026-11-20T17:42:10Z", "2026-11-24T00:00:00Z"),
        date(2026, 11, 21),
        _ms("2026-11-24T00:15:02.130Z"),
    )
    # It is back: 3,400 calls on November 27, 28 and 29, 94% of the usual 3,600, which ends
    # the episode of the drop above.
    recovered = recovered_event(
        Wording(templates, catalog),
        _standing("acct-0117", growth, Decimal(27_400)),
        _usual_three_days(Decimal(3_400), "2026-11-29T22:10:31Z", "2026-11-30T00:00:00Z"),
        date(2026, 11, 21),
        _ms("2026-11-30T00:15:01.884Z"),
        paused=False,
    )
    upgraded, members = _changes(catalog, templates)
    return {
        "threshold-near": near,
        "threshold-hit": hit,
        "threshold-hit past the limit (overage)": over,
        "threshold-hit of a level (seats)": seats,
        "sudden-drop": drop,
        "usage-recovered": recovered,
        "milestone": _milestone(catalog, templates),
        "billing-anniversary": _anniversary(catalog, templates),
        "account-change (plan_upgraded)": upgraded,
        "account-change (members_added)": members,
        "birthday": _birthday(catalog, templates),
        "custom.busy-week": _custom(),
    }


#: A rule of ``[[moments]]`` (contract 3.8) for the example of a moment you define.
CUSTOM_RULE = """
[[moments]]
id = "busy-week"
metric = "purchases"
window = "7d"
at_least = 10
title = "{value} orders this week"
body = "{value} orders in {window_days} days: busy {plan_name} stores get {offer}."
action = "offer"
offer = "a free month of priority shipping labels"
"""


def _custom() -> dict[str, Any]:
    """acct-0042's customers place their 12th order of the week on November 18: the shipped
    catalog with :data:`CUSTOM_RULE` fires ``custom.busy-week`` (the 17th order of November)."""
    text = (ROOT / "config" / "plans.toml").read_text("utf-8")
    catalog = parse_catalog(text + CUSTOM_RULE, "plans.toml")
    rule = next(r for r in catalog.moments if r.id == "busy-week")  # beside the shipped rules
    at_ms = _ms("2026-11-18T14:05:09Z")
    fired = Fired(rule, Decimal(12), rule.amount, day_text(utc_day(at_ms) - 6), 7, at_ms)
    standing = _standing(ACCOUNT, _plan(catalog, "starter"), Decimal(17), "purchases")
    return dict(custom_event(catalog, standing, fired, _ms("2026-11-18T14:05:09.518Z")))


def render(event: dict[str, Any]) -> str:
    """An event as it appears in the doc: indented JSON (the wire form has no spaces)."""
    return json.dumps(event, indent=2, ensure_ascii=False)


def main() -> None:
    for title, event in examples().items():
        print(f"### {title}\n\n```json\n{render(event)}\n```\n")


if __name__ == "__main__":
    main()
