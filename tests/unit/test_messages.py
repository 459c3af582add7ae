"""Message wording: prose formats, template validation, and rendered messages."""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.formatting import (
    format_approx,
    format_date,
    format_days,
    format_level,
    format_money,
    format_number,
    format_percent,
)
from domain.common.timeutil import parse_rfc3339_ms
from domain.errors import ConfigError
from domain.plans.catalog import Catalog, Plan, load_catalog
from domain.plans.periods import Period
from domain.rules.projection import Projection
from domain.rules.suggestions import Suggestion, suggest_for_drop, suggest_upgrade
from domain.wording.messages import RecentDays, Situation, drop_message, threshold_message
from domain.wording.templates import (
    PLACEHOLDERS,
    Message,
    Templates,
    load_templates,
    parse_templates,
)

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "messages.toml"
PERIOD = Period.from_ms(
    parse_rfc3339_ms("2026-11-01T00:00:00Z"), parse_rfc3339_ms("2026-12-01T00:00:00Z")
)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(SHIPPED)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "config" / "plans.toml")


def plan(catalog: Catalog, plan_id: str) -> Plan:
    found = catalog.plan(plan_id)
    assert found is not None
    return found


# --- Prose formats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D(12345), "12,345"),
        (D("1234.5"), "1,234.5"),
        (D("1234.50"), "1,234.5"),
        (D("0.1") + D("0.2"), "0.3"),
        (D("0.8000000001"), "0.8"),
        (D("1E+3"), "1,000"),
        (D("1000000"), "1,000,000"),
        (D("-0.001"), "0"),
        (D("2.675"), "2.68"),
        (D(0), "0"),
        (7, "7"),
    ],
)
def test_format_number(value: Decimal | int, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(D("1234.56"), "1,235"), (D("13.333"), "13.3"), (D("0.254"), "0.25"), (D(100), "100")],
)
def test_format_approx(value: Decimal, text: str) -> None:
    assert format_approx(value) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (D("0.8"), "80%"),
        (D("0.9999"), "99%"),  # never 100 % before the limit
        (D(1), "100%"),
        (D("12.5"), "1,250%"),
        (D("0.001"), "under 1%"),
        (D(0), "0%"),
    ],
)
def test_format_percent(ratio: Decimal, text: str) -> None:
    assert format_percent(ratio) == text


def test_format_level() -> None:
    assert [format_level(D(x)) for x in ("0.8", "1", "0.125", "0.75")] == [
        "80%",
        "100%",
        "12.5%",
        "75%",
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (D("79.0"), "USD", "$79"),
        (D("19.5"), "USD", "$19.50"),
        (D("1499"), "EUR", "€1,499"),
        (D("5"), "GBP", "£5"),
        (D("20"), "CHF", "CHF 20"),
        (D("-60"), "USD", "-$60"),
        (D("0.004"), "USD", "$0"),
    ],
)
def test_format_money(amount: Decimal, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


def test_format_dates_and_days() -> None:
    assert format_date(parse_rfc3339_ms("2026-12-01T00:00:00Z")) == "December 1, 2026"
    assert format_date(parse_rfc3339_ms("2026-11-30T23:59:59.999Z")) == "November 30, 2026"
    assert format_date(parse_rfc3339_ms("2026-12-01T00:30:00+01:00")) == "November 30, 2026"
    assert format_days(1) == "the last day"
    assert format_days(3) == "the last 3 days"


@given(st.decimals(min_value=-(10**15), max_value=10**15, places=6))
def test_format_number_is_plain_grouped_and_close(value: Decimal) -> None:
    text = format_number(value)
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d{1,2})?", text), text
    assert abs(D(text.replace(",", "")) - value) <= D("0.005")


def rounded(value: Decimal, places: int, rounding: str) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, value.adjusted() + places + 4)
        return value.quantize(D(1).scaleb(-places), rounding=rounding)


def reference_format_number(value: Decimal | int, places: int) -> str:
    """format_number by rounding alone, without its shortcut for whole values."""
    number = rounded(D(value), places, ROUND_HALF_EVEN)
    if number == number.to_integral_value():
        number = rounded(number, 0, ROUND_HALF_EVEN)
    else:
        number = number.normalize()
    if number.is_zero():
        number = abs(number)
    return format(number, ",f")


def reference_format_money(amount: Decimal, currency: str) -> str:
    """format_money by rounding alone, without its shortcut for whole amounts."""
    cents = rounded(amount, 2, ROUND_HALF_EVEN)
    places = 0 if cents == cents.to_integral_value() else 2
    text = format(rounded(abs(cents), places, ROUND_HALF_EVEN), ",f")
    money = f"$ {text}" if currency == "USD" else f"{currency} {text}"
    return f"-{money}" if cents < 0 else money


numbers = (
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.decimals(min_value=-(10**40), max_value=10**40, places=0)
    | st.sampled_from([D("-0"), D("-0.00"), D("1E+3"), D("1.000E+5"), D("12.50"), D("-7.0")])
    | st.integers(-(10**30), 10**30)
)


@given(value=numbers, places=st.integers(0, 3))
def test_format_number_of_whole_values_is_what_rounding_gives(
    value: Decimal | int, places: int
) -> None:
    assert format_number(value, places) == reference_format_number(value, places)


@given(amount=numbers.map(D), currency=st.sampled_from(["USD", "CHF"]))
def test_format_money_of_whole_amounts_is_what_rounding_gives(
    amount: Decimal, currency: str
) -> None:
    assert format_money(amount, currency).replace("$", "$ ") == reference_format_money(
        amount, currency
    )


# --- Templates ---------------------------------------------------------------------------------


def test_shipped_templates_are_complete(templates: Templates) -> None:
    sentences = {("pace", k) for k in templates.pace} | {("overage", k) for k in templates.overage}
    assert set(templates.messages) | sentences == set(PLACEHOLDERS)
    assert templates.source == str(SHIPPED)


def shipped_with(old: str, new: str) -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


def test_unknown_placeholder_names_file_template_and_placeholder() -> None:
    text = shipped_with("title = \"You've reached your limit", "title = \"{usage} You've reached")
    with pytest.raises(ConfigError) as error:
        parse_templates(text, "custom.toml")
    message = str(error.value)
    assert message.startswith("custom.toml: [threshold-hit.upgrade] title: ")
    assert "unknown placeholder {usage}" in message
    assert "{limit}" in message  # says what is known


def test_placeholder_of_another_action_is_refused() -> None:
    # A check-in message names no suggested plan.
    text = shipped_with(
        "{period_word}) and pick up", "{period_word}, or {suggested_plan}) and pick up"
    )
    with pytest.raises(
        ConfigError,
        match=r"\[sudden-drop.pause\] body: unknown placeholder "
        r"\{suggested_plan\}",
    ):
        parse_templates(text, "custom.toml")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("[sudden-drop.none]", "[sudden-drop.nothing]", r"\[sudden-drop\] unknown key 'nothing'"),
        ("\n[pace]\n", "\n[paces]\n", r"unknown table \[paces\]"),
        ('title = "{percent} used', 'titel = "{percent} used', r"unknown key 'titel'"),
        ("{percent} used:", "{percent:>5} used:", r"placeholder \{percent\} has a format"),
        ("{percent} used:", "{percent!r} used:", r"placeholder \{percent\} has a format"),
        ("{percent} used:", "{percent used:", r"threshold-near.upgrade\] title: .*literal brace"),
        ("{percent} used:", "{0} used:", r"unknown placeholder \{0\}"),
        ('reaches_limit = "', 'reaches_limit = 3 #"', r"\[pace\] reaches_limit: must be a non"),
        ("\n[pace]\n", "\n[pace\n", "custom.toml: not valid TOML"),
    ],
)
def test_invalid_templates(old: str, new: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_templates(shipped_with(old, new), "custom.toml")


def test_missing_template_is_named() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    start = text.index("[threshold-hit.none]")
    end = text.index("[sudden-drop.pause]")
    with pytest.raises(ConfigError, match=r"custom.toml: \[threshold-hit.none\] missing"):
        parse_templates(text[:start] + text[end:], "custom.toml")
    # Every [sudden-drop.*] table out, whatever tables follow them.
    start = text.index("[sudden-drop.pause]")
    after = re.search(r"^(#|\[(?!sudden-drop\.))", text[start:], re.MULTILINE)
    end = len(text) if after is None else start + after.start()
    with pytest.raises(ConfigError, match=r"\[sudden-drop\] missing"):
        parse_templates(text[:start] + text[end:], "custom.toml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MOMENTS_MESSAGES_FILE"):
        load_templates(tmp_path / "absent.toml")


def test_literal_braces_are_allowed() -> None:
    text = shipped_with("{percent} used:", "{{braces}} {percent} used:")
    templates = parse_templates(text)
    values = dict.fromkeys(PLACEHOLDERS[("threshold-near", "upgrade")], "x")
    assert templates.render("threshold-near", "upgrade", values).title.startswith("{braces} x")


# --- Rendered messages -------------------------------------------------------------------------

ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}|T\d{2}:\d{2}")
FLOAT_NOISE = re.compile(r"\d\.\d{3,}|e[+-]?\d|E[+-]?\d")
PROSE_DATE = re.compile(
    r"(January|February|March|April|May|June|July|August|September|October"
    r"|November|December) \d{1,2}, \d{4}"
)


def assert_clean_prose(message: Message) -> None:
    for text in (message.title, message.body):
        assert text and text == text.strip()
        assert not ISO_TIMESTAMP.search(text), text
        assert not FLOAT_NOISE.search(text), text
        assert "{" not in text and "}" not in text, text
        assert "None" not in text and "  " not in text, text
        # Numbers of four digits or more are grouped (years in prose dates aside).
        assert not re.search(r"\d{4,}", PROSE_DATE.sub("", text)), text


def near(
    templates: Templates,
    catalog: Catalog,
    plan_id: str,
    total: Decimal,
    projection: Projection,
    kind: str = "threshold-near",
    level: Decimal = Decimal("0.8"),
) -> Message:
    current = plan(catalog, plan_id)
    limit = current.limit("api_calls")
    assert limit is not None
    suggestion = suggest_upgrade(catalog, current, "api_calls", projection.period_total)
    return threshold_message(
        templates,
        Situation(catalog, current, "acct-1", "api_calls", PERIOD, total, projection, suggestion),
        kind=kind,  # type: ignore[arg-type]
        limit=limit,
        level=level,
    )


def test_threshold_near_message(templates: Templates, catalog: Catalog) -> None:
    reached = parse_rfc3339_ms("2026-11-22T18:30:00Z")
    message = near(templates, catalog, "starter", D(8000), Projection(D(13780), reached))
    assert message.title == "80% used: 8,000 of 10,000 API calls"
    assert "November 22, 2026" in message.body
    assert "December 1, 2026" in message.body
    assert "Growth includes 100,000 API calls for $79 a month ($60 more)" in message.body
    assert_clean_prose(message)

    within = near(templates, catalog, "starter", D(8000), Projection(D(8446), None))
    assert "use about 8,446 API calls by December 1, 2026" in within.body
    assert_clean_prose(within)

    top = near(templates, catalog, "enterprise", D(8_000_000), Projection(D(9_000_000), None))
    assert "Enterprise is already the largest plan" in top.body
    assert_clean_prose(top)


def test_threshold_hit_message(templates: Templates, catalog: Catalog) -> None:
    reached = parse_rfc3339_ms("2026-11-25T10:00:00Z")
    message = near(
        templates,
        catalog,
        "starter",
        D("10000.5"),
        Projection(D("12287.33"), reached),
        "threshold-hit",
        D(1),
    )
    assert message.title == "You've reached your limit of 10,000 API calls"
    assert "you reached that on November 25, 2026" in message.body
    assert "about 12,287 API calls" in message.body
    assert_clean_prose(message)
    with pytest.raises(ValueError, match="limit_reached_at"):
        near(templates, catalog, "starter", D(10000), Projection(D(1), None), "threshold-hit", D(1))


def drop(
    templates: Templates,
    catalog: Catalog,
    plan_id: str,
    recent: Decimal,
    projected: Decimal,
    last_active: int | None = None,
) -> Message:
    current = plan(catalog, plan_id)
    suggestion: Suggestion = suggest_for_drop(
        catalog, current, "api_calls", recent, projected, recent_days=3
    )
    return drop_message(
        templates,
        Situation(
            catalog,
            current,
            "acct-1",
            "api_calls",
            PERIOD,
            D(30_000),
            Projection(projected, None),
            suggestion,
        ),
        RecentDays(days=3, total=recent, expected=D(3600)),
        ratio=recent / D(3600),
        last_active_at_ms=last_active,
        first_recent_day=date(2026, 11, 21),
    )


def test_drop_messages(templates: Templates, catalog: Catalog) -> None:
    pause = drop(
        templates, catalog, "growth", D(0), D(30_000), parse_rfc3339_ms("2026-11-20T13:00:00Z")
    )
    assert pause.title == "No API calls in the last 3 days"
    assert pause.body.startswith(
        "Your API calls went from about 1,200 a day to none over the last 3 days; the last were "
        "on November 20, 2026. Taking a break? You can pause your Growth plan ($79 a month)"
    )
    assert_clean_prose(pause)
    # Without a known last activity: the day before the recent days began.
    assert "November 20, 2026" in drop(templates, catalog, "growth", D(0), D(30_000)).body

    downgrade = drop(templates, catalog, "growth", D(40), D(5_000))
    assert "fell from about 1,200 a day to about 13.3 a day over the last 3 days" in downgrade.body
    assert "Starter covers with 10,000 API calls for $19 a month, $60 less than Growth" in (
        downgrade.body
    )
    assert_clean_prose(downgrade)

    check_in = drop(templates, catalog, "growth", D(40), D(30_040))
    assert "check-in" in check_in.body
    assert_clean_prose(check_in)


def test_rendering_uses_operator_wording(catalog: Catalog) -> None:
    text = shipped_with(
        'title = "No {unit} in {recent_span}"', 'title = "{plan_name}: quiet {recent_span}"'
    )
    message = drop(parse_templates(text), catalog, "growth", D(0), D(1))
    assert message.title == "Growth: quiet the last 3 days"
