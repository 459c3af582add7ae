"""What events say and suggest per aggregation (contract 1.4, issue 18).

A level (``latest``, ``max``) has no pace: its events carry no projection, its suggestions weigh
its current value, and its messages speak of what the account has (or peaked at), never of a
pace or of what it "used". Distinct counts keep their projection and read as people or things
had. Every template renders for every aggregation, and the file is checked at start for the
variants each aggregation the catalog uses needs.
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.common.timeutil import parse_rfc3339_ms
from domain.errors import ConfigError
from domain.plans.catalog import AGGREGATIONS, Aggregation, Plan, parse_catalog
from domain.plans.periods import Period
from domain.rules.anniversaries import MetricRecap, recap_text
from domain.rules.overage import overage_of, overage_suggestion
from domain.rules.projection import Projection
from domain.rules.suggestions import Suggestion, no_plan, suggest_upgrade, to_plan
from domain.rules.thresholds import detect
from domain.wording.events import (
    ClosedPeriod,
    Crossed,
    Evaluation,
    Standing,
    Wording,
    anniversary_event,
    drop_event,
    recovered_event,
    threshold_event,
)
from domain.wording.messages import (
    RecentDays,
    Situation,
    drop_message,
    recovered_message,
    threshold_message,
)
from domain.wording.templates import (
    USAGE_KINDS,
    Message,
    Templates,
    load_templates,
    parse_templates,
)
from tests.schema import assert_valid

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "messages.toml"
TEMPLATES = load_templates(SHIPPED)
PERIOD = Period.from_ms(
    parse_rfc3339_ms("2026-11-01T00:00:00Z"), parse_rfc3339_ms("2026-12-01T00:00:00Z")
)

CATALOG_TEXT = """
[defaults]
period = "month"
currency = "USD"

[metrics]
api_calls = "API calls"
logins = { unit = "logins", aggregation = "count" }
storage_gb = { unit = "GB of storage", aggregation = "max" }
seats = { unit = "seats", aggregation = "latest" }
active_users = { unit = "active users", aggregation = "unique_count", unique = "user_id" }

[[plans]]
id = "free"
name = "Free"
rank = 0
price = 0
pausable = false
limits = { api_calls = 1_000, logins = 100, storage_gb = 1, seats = 1, active_users = 3 }

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
pausable = true
limits = { api_calls = 10_000, logins = 1_000, storage_gb = 10, seats = 3, active_users = 10 }
overage = { api_calls = 0.002, logins = 0.01, storage_gb = 0.5, seats = 5, active_users = 2 }

[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79
pausable = true
limits = { api_calls = 100_000, logins = 10_000, storage_gb = 100, seats = 10, active_users = 50 }

[[plans]]
id = "scale"
name = "Scale"
rank = 3
price = 299
pausable = true
limits = { api_calls = 1_000_000 }
"""
CATALOG = parse_catalog(CATALOG_TEXT, "aggregations.toml")
WORDING = Wording(TEMPLATES, CATALOG)
METRIC_OF: dict[Aggregation, str] = {
    "sum": "api_calls",
    "count": "logins",
    "max": "storage_gb",
    "latest": "seats",
    "unique_count": "active_users",
}
LEVELS = frozenset({"latest", "max"})  # the oracle: aggregations that are levels, not paces
LIMITED_PLANS = ("free", "starter", "growth")


def plan(plan_id: str) -> Plan:
    found = CATALOG.plan(plan_id)
    assert found is not None
    return found


def test_the_test_catalog_has_one_metric_per_aggregation() -> None:
    assert {CATALOG.aggregation(m): m for m in METRIC_OF.values()} == METRIC_OF
    assert set(METRIC_OF) == set(AGGREGATIONS)


def assert_reads_well(message: Message, aggregation: Aggregation) -> None:
    """Clean prose, and a level never speaks of a pace or of what was used."""
    for text in (message.title, message.body):
        assert text and text == text.strip(), text
        assert "{" not in text and "}" not in text and "None" not in text, text
        assert "  " not in text and " ." not in text, text
        if aggregation in LEVELS:
            assert not re.search(r"\bpace\b|\bused\b|\buse about\b", text), text
        if aggregation in ("latest", "unique_count"):
            assert not re.search(r"\byou('ve)? used\b", text), text


# --- Thresholds: no projection for a level ---------------------------------------------------


def threshold(
    aggregation: Aggregation,
    plan_id: str,
    total: Decimal,
    at_ms: int,
    announced: frozenset[Decimal] = frozenset(),
) -> dict[str, Any] | None:
    current = plan(plan_id)
    metric = METRIC_OF[aggregation]
    limit = current.limit(metric)
    assert limit is not None
    crossing = detect(total, limit, current.levels, announced)
    if crossing is None:
        return None
    return threshold_event(
        WORDING,
        Standing("acct-1", current, metric, PERIOD, total, limit),
        Crossed(crossing=crossing, record_id="r-1", at_ms=at_ms),
        at_ms + 1,
    )


@given(
    aggregation=st.sampled_from(AGGREGATIONS),
    plan_id=st.sampled_from(LIMITED_PLANS),
    share=st.decimals(min_value=D("0.8"), max_value=D(5), places=2),
    at_ms=st.integers(PERIOD.start_ms, PERIOD.end_ms - 1),
)
def test_a_threshold_of_a_level_has_no_projection_whatever_the_values(
    aggregation: Aggregation, plan_id: str, share: Decimal, at_ms: int
) -> None:
    limit = plan(plan_id).limit(METRIC_OF[aggregation])
    assert limit is not None
    total = (limit * share).quantize(D(1))
    event = threshold(aggregation, plan_id, total, at_ms)
    assume(event is not None)
    assert event is not None
    assert_valid(event)
    assert (event["projection"] is None) == (aggregation in LEVELS)
    assert_reads_well(Message(**event["message"]), aggregation)
    suggestion = event["suggestion"]
    if aggregation in LEVELS and suggestion["action"] == "upgrade":
        # The oracle: the cheapest higher plan whose limit holds the value now, else the largest.
        higher = [p for p in CATALOG.plans if p.rank > plan(plan_id).rank]
        metric = METRIC_OF[aggregation]
        holding = [p for p in higher if (p.limit(metric) or total) >= total]
        want = min(holding, key=lambda p: (p.price, p.rank)) if holding else higher[-1]
        assert suggestion["plan_id"] == want.id
    if "overage" in event and aggregation in LEVELS:
        assert event["overage"]["projected_cost"] == event["overage"]["cost"]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_a_level_is_worded_as_what_the_account_has(aggregation: Aggregation) -> None:
    limit = plan("starter").limit(METRIC_OF[aggregation])
    assert limit is not None
    event = threshold(aggregation, "starter", limit, parse_rfc3339_ms("2026-11-12T08:00:00Z"))
    assert event is not None
    title, body = event["message"]["title"], event["message"]["body"]
    rationale = event["suggestion"]["rationale"]
    if aggregation == "latest":
        assert title == "You have 3 of 3 seats"
        assert body.startswith("Your Starter plan includes 3 seats, and you reached that on Nov")
        assert (
            rationale
            == "You have 3 seats; Growth includes 10 for $79 a month, $60 more than Starter."
        )
    elif aggregation == "max":
        assert body.startswith("Your Starter plan includes 10 GB of storage, and on November 12")
        assert rationale.startswith("Your peak this month is 10 GB of storage; Growth includes")
    elif aggregation == "unique_count":
        assert "you'd have about" in body
        assert rationale.startswith("At this pace you'll have about")
    else:
        assert "you'd use about" in body
        assert rationale.startswith("At this pace you'll use about")


# --- Drops and recoveries ------------------------------------------------------------------


USUAL = D(3600)


def evaluation(recent: Decimal, expected: Decimal = USUAL) -> Evaluation:
    return Evaluation(
        recent_days=3,
        recent_total=recent,
        expected_total=expected,
        ratio=recent / expected,
        last_active_at_ms=parse_rfc3339_ms("2026-11-20T13:00:00Z"),
        evaluated_at_ms=parse_rfc3339_ms("2026-11-24T00:00:00Z"),
    )


@given(
    aggregation=st.sampled_from(AGGREGATIONS),
    plan_id=st.sampled_from(["starter", "growth", "scale"]),
    total=st.integers(0, 200_000).map(D),
    recent=st.integers(0, 3_000).map(D),
)
def test_a_drop_of_a_level_has_no_projection_and_covers_its_value(
    aggregation: Aggregation, plan_id: str, total: Decimal, recent: Decimal
) -> None:
    current = plan(plan_id)
    metric = METRIC_OF[aggregation]
    standing = Standing("acct-1", current, metric, PERIOD, total, current.limit(metric))
    event = drop_event(WORDING, standing, evaluation(recent), date(2026, 11, 21), 1)
    assert_valid(event)
    assert (event["projection"] is None) == (aggregation in LEVELS)
    assert_reads_well(Message(**event["message"]), aggregation)
    suggestion = event["suggestion"]
    if aggregation in LEVELS and suggestion["action"] == "downgrade":
        # The oracle: the cheapest cheaper plan holding the value now (no limit holds anything).
        cheaper = [p for p in CATALOG.plans if p.rank < current.rank and p.price < current.price]
        holding = [p for p in cheaper if (p.limit(metric) or total) >= total]
        assert suggestion["plan_id"] == min(holding, key=lambda p: (p.price, p.rank)).id
    recovered = recovered_event(
        WORDING, standing, evaluation(recent), date(2026, 11, 21), 1, paused=True
    )
    assert_valid(recovered)
    assert (recovered["projection"] is None) == (aggregation in LEVELS)
    assert_reads_well(Message(**recovered["message"]), aggregation)


# --- Every template, every aggregation -------------------------------------------------------


SUGGESTIONS: dict[str, Suggestion] = {
    "upgrade": to_plan("upgrade", plan("growth"), plan("starter"), "Growth has room."),
    "downgrade": to_plan("downgrade", plan("free"), plan("starter"), "Free would do."),
    "pause": no_plan("pause", "You can pause."),
    "resume": no_plan("resume", "You can resume."),
    "none": no_plan("none", "Nothing to change."),
}


def situation(aggregation: Aggregation, action: str, total: Decimal) -> Situation:
    projection = None
    if aggregation not in LEVELS:
        projection = Projection(total * 2, parse_rfc3339_ms("2026-11-20T00:00:00Z"))
    return Situation(
        CATALOG,
        plan("starter"),
        "acct-1",
        METRIC_OF[aggregation],
        PERIOD,
        total,
        projection,
        SUGGESTIONS[action],
    )


def render_all(templates: Templates, aggregation: Aggregation) -> dict[tuple[str, str], Message]:
    """One message of each usage (table, action), for a metric of ``aggregation``."""
    limit = plan("starter").limit(METRIC_OF[aggregation])
    assert limit is not None
    reached = parse_rfc3339_ms("2026-11-20T00:00:00Z")
    out: dict[tuple[str, str], Message] = {}
    for action in ("upgrade", "none"):
        for table, level in (("threshold-near", D("0.8")), ("threshold-hit", D(1))):
            out[(table, action)] = threshold_message(
                templates,
                situation(aggregation, action, limit * level),
                kind=table,  # type: ignore[arg-type]
                limit=limit,
                level=level,
                limit_reached_at_ms=reached,
            )
        current = plan("starter")
        for priced in (True, False):
            total = limit * D("1.5")
            overage = overage_of(current, METRIC_OF[aggregation], total, limit, total * 2)
            out[("threshold-over", action)] = threshold_message(
                templates,
                situation(aggregation, action, total),
                kind="threshold-hit",
                limit=limit,
                level=D("1.5"),
                overage=overage if priced else None,
                limit_reached_at_ms=reached,
            )
    recent = RecentDays(days=3, total=D(40), expected=D(3600))
    for action in ("pause", "downgrade", "none"):
        out[("sudden-drop", action)] = drop_message(
            templates,
            situation(aggregation, action, D(5)),
            recent,
            ratio=D(40) / D(3600),
            last_active_at_ms=None,
            first_recent_day=date(2026, 11, 21),
        )
    for action in ("resume", "none"):
        out[("usage-recovered", action)] = recovered_message(
            templates,
            situation(aggregation, action, D(5)),
            RecentDays(days=3, total=D(3400), expected=D(3600)),
            dropped_on=date(2026, 11, 21),
        )
    return out


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_usage_template_renders_for_every_aggregation(aggregation: Aggregation) -> None:
    rendered = render_all(TEMPLATES, aggregation)
    assert set(rendered) == {key for key in TEMPLATES.messages if key[0] in USAGE_KINDS}
    for message in rendered.values():
        assert_reads_well(message, aggregation)


def test_every_variant_is_rendered() -> None:
    """Each variant of the shipped file is what its aggregation renders: its title and body,
    not the plain table's."""
    for (table, key, variant), template in TEMPLATES.variants.items():
        if table not in USAGE_KINDS:
            continue
        assert isinstance(template, dict) or hasattr(template, "get")
        rendered = render_all(TEMPLATES, variant)[(table, key)]  # type: ignore[arg-type]
        first = template["title"].split("{")[0]  # type: ignore[index]
        assert rendered.title.startswith(first), (table, key, variant)


def test_a_sum_and_a_count_read_the_plain_tables() -> None:
    for aggregation in ("sum", "count"):
        for (table, key), message in render_all(TEMPLATES, aggregation).items():  # type: ignore[arg-type]
            plain = TEMPLATES.messages[(table, key)]["title"].split("{")[0]
            assert message.title.startswith(plain)


# --- Validation of the file ------------------------------------------------------------------


def without(text: str, table: str) -> str:
    """``text`` without the table ``[table]`` (up to the next table or comment block)."""
    start = text.index(f"[{table}]\n")
    rest = text[start + 1 :]
    ends = [rest.find(mark) for mark in ("\n[", "\n#") if rest.find(mark) >= 0]
    return text[:start] + rest[min(ends) + 1 :]


def test_a_missing_variant_is_refused_only_where_the_catalog_needs_it() -> None:
    text = without(SHIPPED.read_text(encoding="utf-8"), "threshold-near.upgrade.latest")
    with pytest.raises(ConfigError) as error:
        parse_templates(text, "custom.toml", {"sum", "latest"})
    message = str(error.value)
    assert message.startswith("custom.toml: [threshold-near.upgrade] ")
    assert "uses {pace}" in message and "'latest'" in message
    assert "add [threshold-near.upgrade.latest]" in message
    # A catalog of sums (and distinct counts, which have a pace) needs no level variant.
    parse_templates(text, "custom.toml", {"sum", "count", "unique_count"})


def test_a_file_without_any_variant_serves_a_catalog_of_sums() -> None:
    """An operator's file from before meters keeps working with a catalog of sums."""
    text = SHIPPED.read_text(encoding="utf-8")
    for table, key, variant in list(TEMPLATES.variants):
        name = f"{table}.{key}.{variant}" if table not in ("pace", "overage") else None
        if name is not None:
            text = without(text, name)
    for table in ("pace.unique_count", "overage.latest", "overage.max"):
        text = without(text, table)
    plain = parse_templates(text, "old.toml", {"sum"})
    assert not plain.variants
    with pytest.raises(ConfigError, match=r"a metric aggregated as 'max'"):
        parse_templates(text, "old.toml", {"sum", "max"})
    # Without variants a distinct count renders the plain tables: placeholders are all there.
    parse_templates(text, "old.toml", {"sum", "unique_count", "count"})


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (
            "\n[threshold-near.upgrade.latest]\n",
            "\n[threshold-near.upgrade.gauge]\n",
            r"\[threshold-near.upgrade\] unknown key 'gauge'; accepted: 'title', 'body', 'count'",
        ),
        (
            '[overage.latest]\npriced = "At',
            '[overage.latest]\npriced = "{projected_overage_cost} At',
            r"\[overage.latest\] priced: unknown placeholder \{projected_overage_cost\}",
        ),
        (
            "\n[billing-anniversary.none.levels]\n",
            "\n[billing-anniversary.none.latest]\n",
            r"\[billing-anniversary.none\] unknown key 'latest'; accepted: 'title', 'body', "
            r"'levels'",
        ),
        (
            "[pace.unique_count]",
            "[pace.unique]",
            r"\[pace\] unknown key 'unique'",
        ),
    ],
)
def test_invalid_variants(old: str, new: str, match: str) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(ConfigError, match=match):
        parse_templates(text.replace(old, new, 1), "custom.toml")


def test_a_latest_variant_may_not_speak_of_a_pace() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    old = '[threshold-near.none.latest]\ntitle = "You have'
    assert old in text
    with pytest.raises(
        ConfigError, match=r"\[threshold-near.none.latest\] title: unknown placeholder \{pace\}"
    ):
        parse_templates(text.replace(old, old.replace("You have", "{pace} You have")), "c.toml")


# --- Overage, suggestions and the anniversary ------------------------------------------------


def test_the_overage_of_a_level_is_what_it_costs_now() -> None:
    starter = plan("starter")
    overage = overage_of(starter, "seats", D(5), D(3), D(5))
    assert overage is not None and overage.cost == overage.projected_cost == D(10)
    suggestion = suggest_upgrade(CATALOG, starter, "seats", D(5), D(3))
    priced = overage_suggestion(CATALOG, starter, "seats", suggestion, D(5), overage)
    assert priced.rationale == (
        "Growth costs $60 more a month and would save about $10 of overage this month, so for "
        "now the overage costs less than the upgrade; you have 5 seats, and Growth includes 10."
    )
    none = overage_suggestion(
        CATALOG, starter, "seats", no_plan("none", "No bigger plan."), D(5), overage
    )
    assert none.rationale == "No bigger plan. At this level that's $10 of overage this month."


def test_the_largest_plan_and_an_override_speak_of_the_level() -> None:
    scale = plan("scale")
    assert suggest_upgrade(CATALOG, scale, "seats", D(60)).rationale == (
        "Scale is already the largest plan and you have 60 seats; talk to us about a custom limit."
    )
    assert suggest_upgrade(CATALOG, scale, "storage_gb", D(500)).rationale == (
        "Scale is already the largest plan and your peak this month is 500 GB of storage; talk "
        "to us about a custom limit."
    )
    # An account whose own limit beats every bigger plan's (none unlimited for seats here).
    capped = parse_catalog(
        CATALOG_TEXT.replace(
            "limits = { api_calls = 1_000_000 }", "limits = { api_calls = 1_000_000, seats = 20 }"
        )
    )
    starter = capped.plan("starter")
    assert starter is not None
    assert suggest_upgrade(capped, starter, "seats", D(25), D(30)).rationale == (
        "Your limit of 30 seats is already more than bigger plans include and you have 25 "
        "seats; talk to us about raising it."
    )


def test_the_recap_of_levels_does_not_say_used() -> None:
    starter = plan("starter")
    recap = [
        MetricRecap("api_calls", D(9500), D(10_000)),
        MetricRecap("seats", D(3), D(3)),
        MetricRecap("storage_gb", D(42), D(10)),
        MetricRecap("active_users", D(7), D(10)),
    ]
    assert recap_text(CATALOG, recap) == (
        "9,500 of 10,000 API calls (95%), 3 of 3 seats (100%), a peak of 42 of 10 GB of "
        "storage (420%) and 7 of 10 active users (70%)"
    )
    closed = ClosedPeriod(PERIOD, recap, periods_completed=3, years=None)
    event = anniversary_event(WORDING, "acct-1", starter, closed, no_plan("none", "Thanks."), 1)
    assert_valid(event)
    body = event["message"]["body"]
    assert "you used" not in body
    assert "December 1, 2026, here's where you stood: 9,500 of 10,000 API calls" in body
    sums = ClosedPeriod(PERIOD, recap[:1], periods_completed=3, years=None)
    event = anniversary_event(WORDING, "acct-1", starter, sums, no_plan("none", "Thanks."), 1)
    assert "December 1, 2026 you used 9,500 of 10,000 API calls (95%)." in event["message"]["body"]


@pytest.mark.parametrize(
    ("years", "action"), list(itertools.product([None, 2], ["upgrade", "downgrade", "none"]))
)
def test_every_anniversary_template_renders_with_levels(years: int | None, action: str) -> None:
    recap = [MetricRecap("seats", D(3), D(3)), MetricRecap("storage_gb", D(2), None)]
    suggestion = SUGGESTIONS[action] if action != "downgrade" else SUGGESTIONS["downgrade"]
    closed = ClosedPeriod(PERIOD, recap, periods_completed=24 if years else 5, years=years)
    event = anniversary_event(WORDING, "acct-1", plan("starter"), closed, suggestion, 1)
    assert_valid(event)
    assert_reads_well(Message(**event["message"]), "latest")
    assert "3 of 3 seats (100%) and a peak of 2 GB of storage" in event["message"]["body"]


def test_the_pace_of_a_distinct_count_speaks_of_having() -> None:
    limit = D(10)
    message = threshold_message(
        TEMPLATES,
        Situation(
            CATALOG,
            plan("starter"),
            "acct-1",
            "active_users",
            PERIOD,
            D(8),
            Projection(D(9), None),
            SUGGESTIONS["none"],
        ),
        kind="threshold-near",
        limit=limit,
        level=D("0.8"),
    )
    assert message.title == "8 of 10 active users this month"
    assert "you've had 8 since November 1, 2026" in message.body
    assert "you'll have about 9 active users by December 1, 2026" in message.body


def test_a_plan_change_reads_a_peak_as_one() -> None:
    from domain.wording.messages import account_change_message

    message = account_change_message(
        TEMPLATES,
        key="plan_upgraded",
        catalog=CATALOG,
        plan=plan("growth"),
        account_id="acct-1",
        changed_at_ms=PERIOD.start_ms + 1,
        period=PERIOD,
        figures=[("api_calls", D(900), D(100_000)), ("storage_gb", D(42), D(100))],
        past=[],
        rationale="Enjoy.",
        extra={"old_plan_name": "Starter", "old_plan_price": "$19"},
    )
    assert "100,000 API calls (under 1%), a peak of 42 of 100 GB of storage (42%)" in (message.body)


def test_the_shipped_file_words_every_usage_table_for_levels() -> None:
    """Every usage table of the shipped file has its latest and max variants, and every
    anniversary table its levels variant: nothing falls back to wording of what was used."""
    for table, key in TEMPLATES.messages:
        if table in USAGE_KINDS:
            assert {(table, key, "latest"), (table, key, "max")} <= set(TEMPLATES.variants)
        if table.startswith("billing-anniversary"):
            assert (table, key, "levels") in TEMPLATES.variants
