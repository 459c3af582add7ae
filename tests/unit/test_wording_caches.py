"""The caches of the threshold path change no output: warm or cold, and across catalogs.

Event building keeps what does not depend on the running total (suggestion ladders, fixed
message placeholders, plan and limit numbers, compiled templates, the texts of recent seconds).
Each test checks a cached result against an independent oracle (the rule written plainly, or
``str.format_map``), or against the same call with every cache emptied first.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import domain.common.formatting as formatting
import domain.common.timeutil as timeutil
import domain.rules.suggestions as suggestions
import domain.wording.events as events
import domain.wording.messages as messages
import domain.wording.templates as templates_module
from domain.common.formatting import format_approx, format_money, format_number, format_percent
from domain.plans.catalog import Catalog, Plan, load_catalog, parse_catalog
from domain.plans.periods import Period
from domain.rules.suggestions import Suggestion, no_plan, pace_verb, suggest_upgrade, to_plan
from domain.rules.thresholds import Crossing
from domain.wording.events import Crossed, Standing, Wording, threshold_event
from domain.wording.templates import Templates, load_templates

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
NOV_START = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PERIOD = Period.from_ms(NOV_START, NOV_START + 30 * DAY_MS)


def empty_caches() -> None:
    """Forget everything the threshold path remembers."""
    suggestions._ladders.clear()
    messages._fixed.clear()
    messages._period_dates.clear()
    events._threshold_fixed_of.clear()
    events._catalog_numbers.clear()
    events._period_texts.clear()
    templates_module._compiled.clear()
    templates_module._renderers.clear()
    timeutil._second_texts.clear()
    formatting._last_approx = (None, "", "")


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(ROOT / "config" / "plans.toml")


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(ROOT / "config" / "messages.toml")


# --- suggest_upgrade against the rule written plainly -----------------------------------------


def reference_suggest_upgrade(
    catalog: Catalog, current: Plan, metric: str, projected: Decimal, override: Decimal | None
) -> Suggestion:
    """suggest_upgrade as it was written before its ladder was remembered."""
    loc, unit = catalog.locale, catalog.unit(metric)
    aggregation = catalog.aggregations.get(metric)
    if aggregation in ("latest", "max"):
        amount = f"{format_number(projected, locale=loc)} {unit}"
        if aggregation == "latest":
            level = f"you have {amount}"
        else:
            level = f"your peak this {catalog.period} is {amount}"
        heading, on_track = level[:1].upper() + level[1:], level
    else:
        where = f"about {format_approx(projected, locale=loc)} {unit} this {catalog.period}"
        heading = f"At this pace you'll {pace_verb(catalog, metric)} {where}"
        on_track = f"you're on track for {where}"
    current_limit = override if override is not None else current.limit(metric)
    higher = [p for p in catalog.plans if p.rank > current.rank]
    if not higher:
        return no_plan(
            "none",
            f"{current.name} is already the largest plan and {on_track}; "
            "talk to us about a custom limit.",
        )
    roomier = higher
    if current_limit is not None:
        roomier = [p for p in higher if p.limit(metric) is None or p.limit(metric) > current_limit]
        if not roomier:
            return no_plan(
                "none",
                f"Your limit of {format_number(current_limit, locale=loc)} {unit} is already "
                f"more than bigger plans include and {on_track}; talk to us about raising it.",
            )

    def offer(plan: Plan) -> str:
        delta = plan.price - current.price
        money = format_money(abs(delta), catalog.currency, locale=loc)
        difference = (
            "the same price as"
            if delta == 0
            else f"{money} more than"
            if delta > 0
            else f"{money} less than"
        )
        limit = plan.limit(metric)
        gives = (
            f"has no limit on {unit}"
            if limit is None
            else f"includes {format_number(limit, locale=loc)}"
        )
        price = format_money(plan.price, catalog.currency, locale=loc)
        return f"{plan.name} {gives} for {price} a {catalog.period}, {difference} {current.name}"

    covering = [p for p in roomier if p.limit(metric) is None or p.limit(metric) >= projected]
    if covering:
        chosen = min(covering, key=lambda p: (p.price, p.rank))
        return to_plan("upgrade", chosen, current, f"{heading}; {offer(chosen)}.")
    chosen = roomier[-1]
    return to_plan(
        "upgrade",
        chosen,
        current,
        f"{heading}, more than any plan includes; the largest, {offer(chosen)}.",
    )


AGGREGATIONS = ("sum", "count", "unique_count", "latest", "max")


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    """A catalog of 1-5 plans with prices that may tie and limits that may be missing."""
    aggregation = draw(st.sampled_from(AGGREGATIONS))
    unique = ', unique = "user_id"' if aggregation == "unique_count" else ""
    text = [
        f'[metrics]\nm = {{ unit = "things", aggregation = "{aggregation}"{unique} }}\n'
        'other = "others"\n'
    ]
    for rank in range(draw(st.integers(1, 5))):
        price = draw(st.sampled_from(["0", "19", "19.5", "79", "79", "299"]))
        limit = draw(st.none() | st.integers(1, 10**6))
        limits = "" if limit is None else f"m = {limit}"
        text.append(
            f'[[plans]]\nid = "p{rank}"\nname = "Plan {rank}"\nrank = {rank}\n'
            f"price = {price}\nlimits = {{ {limits} }}\n"
        )
    return parse_catalog("\n".join(text), "generated")


amounts = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    catalog=catalogs(),
    data=st.data(),
    calls=st.lists(st.tuples(amounts, st.none() | st.integers(1, 10**6)), min_size=1, max_size=6),
)
def test_suggest_upgrade_is_the_plain_rule_warm_or_cold(
    catalog: Catalog, data: st.DataObject, calls: list[tuple[Decimal, int | None]]
) -> None:
    for projected, override_int in calls:
        current = data.draw(st.sampled_from(catalog.plans))
        override = None if override_int is None else D(override_int)
        expected = reference_suggest_upgrade(catalog, current, "m", projected, override)
        assert suggest_upgrade(catalog, current, "m", projected, override) == expected
        assert suggest_upgrade(catalog, current, "m", projected, override) == expected  # warm
        assert suggest_upgrade(catalog, current, "other", projected, override) == (
            reference_suggest_upgrade(catalog, current, "other", projected, override)
        )


def test_a_new_catalog_with_the_same_plan_ids_is_not_served_the_old_ladder() -> None:
    def catalog(growth_limit: int, growth_price: str) -> Catalog:
        return parse_catalog(
            '[metrics]\napi_calls = "API calls"\n'
            '[[plans]]\nid = "starter"\nname = "Starter"\nrank = 1\nprice = 19\n'
            "limits = { api_calls = 10_000 }\n"
            '[[plans]]\nid = "growth"\nname = "Growth"\nrank = 2\n'
            f"price = {growth_price}\nlimits = {{ api_calls = {growth_limit} }}\n",
            "test",
        )

    first, second = catalog(100_000, "79"), catalog(20_000, "49")
    for each in (first, second, first, second):
        starter = each.plan("starter")
        assert starter is not None
        got = suggest_upgrade(each, starter, "api_calls", D(15_000))
        assert got == reference_suggest_upgrade(each, starter, "api_calls", D(15_000), None)
    growth = second.plan("growth")
    assert growth is not None and "Growth includes 20,000 for $49" in got.rationale


# --- compiled templates against str.format_map ------------------------------------------------

NAMES = ("total", "limit", "unit", "pace")
pieces = st.lists(
    st.sampled_from(["{total}", "{limit}", "{unit}", "{pace}", "{{", "}}", "%", "%s", "%%"])
    | st.text(alphabet="ab %-.\n", max_size=6),
    max_size=12,
)


@given(parts=pieces, values=st.lists(st.text(max_size=5), min_size=4, max_size=4))
def test_a_compiled_template_fills_as_format_map(parts: list[str], values: list[str]) -> None:
    template = "".join(parts)
    mapping = dict(zip(NAMES, values, strict=True))
    assert templates_module._fill(template, mapping) == template.format_map(mapping)
    assert templates_module._fill(template, mapping) == template.format_map(mapping)  # warm


@pytest.mark.parametrize(
    "template", ["{total!r} x", "{total:>8}", "{0}", "{}", "{total.real}", "{total", "a}b"]
)
def test_other_templates_keep_format_map_and_its_errors(template: str) -> None:
    mapping = {"total": "12"}

    def outcome(fill: object) -> str:
        try:
            return repr(fill())  # type: ignore[operator]
        except (KeyError, ValueError, IndexError, AttributeError) as exc:
            return f"{type(exc).__name__}: {exc}"

    expected = outcome(lambda: template.format_map(mapping))
    assert outcome(lambda: templates_module._fill(template, mapping)) == expected


def test_the_placeholders_a_compiled_template_uses_are_those_format_map_uses() -> None:
    template = "{total} of {limit} {unit}"
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    with pytest.raises(KeyError, match="unit"):
        templates_module._fill(template, {"total": "1", "limit": "2"})
    assert fields == ["total", "limit", "unit"]


# --- number formats' shortcuts ----------------------------------------------------------------


def reference_percent(ratio: Decimal) -> str:
    percent = ratio * 100
    if 0 < percent < 1:
        return "under 1%"
    floor = int(percent.quantize(D(1), rounding=ROUND_FLOOR))
    return f"{'-' if floor < 0 else ''}{abs(floor):,}%"


@given(
    st.decimals(min_value=-30, max_value=30, places=8, allow_nan=False)
    | st.sampled_from([D("0.01"), D("9.99"), D("10"), D("-0"), D("0.0099999"), D("0.80")])
)
def test_format_percent_rounds_down_as_ever(ratio: Decimal) -> None:
    assert format_percent(ratio) == reference_percent(ratio)


@given(st.lists(st.decimals(min_value=0, max_value=10**9, places=3), min_size=1, max_size=5))
def test_format_approx_of_the_same_object_again_is_the_same_text(values: list[Decimal]) -> None:
    for value in values:
        first = format_approx(value)
        assert format_approx(value) == first
        formatting._last_approx = (None, "", "")
        assert format_approx(value) == first
        assert format_approx(value, "de_DE") == format_number(
            value, 0 if value >= 100 else 1 if value >= 1 else 2, "de_DE"
        )


# --- whole threshold events, warm and cold ----------------------------------------------------


def thresholds_of(catalog: Catalog) -> Iterator[tuple[Plan, str, Decimal]]:
    for plan in catalog.plans:
        for metric, limit in plan.limits.items():
            yield plan, metric, limit


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_threshold_events_are_the_same_warm_or_cold(
    shipped: Catalog, templates: Templates, data: st.DataObject
) -> None:
    wording = Wording(templates, shipped)
    choices = list(thresholds_of(shipped))
    built = []
    for _ in range(data.draw(st.integers(1, 6))):
        plan, metric, limit = data.draw(st.sampled_from(choices))
        levels = sorted(set(plan.levels))
        level = data.draw(st.sampled_from(levels))
        crossed = tuple(lv for lv in levels if lv <= level)[-data.draw(st.integers(1, 2)) :]
        share = data.draw(st.decimals(min_value=D("0.01"), max_value=3, places=3))
        own = data.draw(st.sampled_from([limit, limit * 2, (limit / 3).quantize(D("0.01"))]))
        total = (own * max(share, level)).quantize(D("0.001"))  # the crossed level is reached
        at_ms = NOV_START + data.draw(st.integers(0, 30 * DAY_MS - 1))
        standing = Standing(f"acct-{len(built)}", plan, metric, PERIOD, total, own)
        reached = data.draw(st.none() | st.just(at_ms - 1000))
        event_of = (standing, Crossed(Crossing(level, crossed), "rec", at_ms, reached), at_ms + 7)
        built.append((event_of, threshold_event(wording, *event_of)))
    for event_of, warm in built:
        assert threshold_event(wording, *event_of) == warm
        empty_caches()
        assert threshold_event(wording, *event_of) == warm
