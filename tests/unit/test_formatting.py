"""Prose formats from CLDR: every currency's symbol and decimals, the catalog's locale.

The en_US wording of the shipped catalog (USD) is pinned byte for byte in test_messages.py
and the event examples; these tests cover what Babel brings and the fast path beside it.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest
from babel import Locale
from babel.numbers import format_decimal
from hypothesis import given
from hypothesis import strategies as st

from domain.common.formatting import (
    format_calendar_date,
    format_level,
    format_money,
    format_number,
    format_percent,
    format_unit_price,
)
from domain.common.numbers import MAX_AMOUNT
from domain.errors import CatalogError
from domain.plans.catalog import load_catalog, parse_catalog
from domain.rules.suggestions import suggest_upgrade

ROOT = Path(__file__).resolve().parents[2]
NBSP = "\xa0"


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "text"),
    [
        (D("79"), "USD", "en_US", "$79"),
        (D("19.5"), "USD", "en_US", "$19.50"),
        (D("-60"), "USD", "en_US", "-$60"),
        # Currencies' own decimals: no cents for yen, three decimals for dinars.
        (D("1234.5"), "JPY", "en_US", "¥1,234"),
        (D("1235.5"), "JPY", "en_US", "¥1,236"),
        (D("19.999"), "BHD", "en_US", "BHD 19.999"),
        # A symbol of letters keeps its space (CLDR currency spacing, not applied by Babel).
        (D("20"), "CHF", "en_US", "CHF 20"),
        (D("20.5"), "CHF", "en_US", "CHF 20.50"),
        (D("20"), "CAD", "en_US", "CA$20"),
        (D("20"), "XYZ", "en_US", "XYZ 20"),
        # The locale decides signs and where the symbol goes.
        (D("1499.5"), "EUR", "de_DE", f"1.499,50{NBSP}€"),
        (D("-1499"), "EUR", "de_DE", f"-1.499{NBSP}€"),
        (D("1234.5"), "CHF", "de_CH", f"CHF{NBSP}1'234.50"),
        (D("-1234.5"), "CHF", "de_CH", "CHF-1'234.50"),
        (D("1234567"), "INR", "en_IN", "₹12,34,567"),
    ],
)
def test_money_in_each_currency_and_locale(
    amount: D, currency: str, locale: str, text: str
) -> None:
    assert format_money(amount, currency, locale) == text


def test_a_unit_price_below_the_currency_unit_keeps_its_decimals() -> None:
    assert format_unit_price(D("0.002"), "USD") == "$0.002"
    assert format_unit_price(D("0.5"), "JPY") == "¥0.5"
    assert format_unit_price(D("2"), "JPY") == "¥2"
    assert format_unit_price(D("0.0125"), "EUR", "de_DE") == f"0,0125{NBSP}€"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        # Past the context's 28 digits abs() rounds the cents away; the amount still shows
        # them, as the worker wrote it before Babel (a projected overage of a huge total).
        (D("100000000000000000000000000.01"), "$100,000,000,000,000,000,000,000,000.00"),
        (D("-100000000000000000000000000.01"), "-$100,000,000,000,000,000,000,000,000.00"),
        (D("427586206896551724137931014.4"), "$427,586,206,896,551,724,137,931,014.40"),
    ],
)
def test_money_past_the_context_precision_keeps_its_cents(amount: D, text: str) -> None:
    assert format_money(amount, "USD") == text


@pytest.mark.parametrize("locale", ["en_IN", "de_CH", "en_US", "de_DE"])
@pytest.mark.parametrize(
    "value", [MAX_AMOUNT, -MAX_AMOUNT, D("123456789012345678901234567.89"), D("1e27")]
)
def test_amounts_up_to_the_ceiling_format_in_every_locale(value: D, locale: str) -> None:
    # Totals reach MAX_AMOUNT (1e30); a locale Babel formats must not fail on them (Babel
    # quantizes in the caller's 28-digit context) where en_US writes them.
    for text in (
        format_number(value, 2, locale),
        format_percent(value, locale),
        format_level(value, locale),
        format_money(value, "USD", locale),
        format_unit_price(abs(value), "USD", locale),
    ):
        assert text.strip()
    if locale == "en_IN" and value == MAX_AMOUNT:
        assert format_number(value, 2, locale) == "10,00,00,00,00,00,00,00,00,00,00,00,00,00,000"


def test_numbers_percentages_and_dates_follow_the_locale() -> None:
    assert format_number(D("1234567.125"), 3, "de_DE") == "1.234.567,125"
    assert format_number(D("1234567"), 2, "fr_FR") == "1\u202f234\u202f567"
    assert format_number(D("1234567.5"), 2, "en_IN") == "12,34,567.5"
    assert format_percent(D("0.8"), "de_DE") == f"80{NBSP}%"
    assert format_percent(D("0.001"), "de_DE") == f"under 1{NBSP}%"
    assert format_level(D("0.125"), "de_DE") == f"12,5{NBSP}%"
    assert format_calendar_date(date(2026, 12, 1)) == "December 1, 2026"
    assert format_calendar_date(date(2026, 12, 1), "de_DE") == "1. Dezember 2026"


def test_an_unknown_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown locale 'xx_YY'"):
        format_number(1, locale="xx_YY")


@given(
    value=st.decimals(min_value=-(10**15), max_value=10**15, places=3),
    locale=st.sampled_from(["en_US", "de_DE", "fr_FR", "sv_SE", "de_CH", "en_IN", "ja_JP"]),
)
def test_numbers_are_what_babel_writes(value: D, locale: str) -> None:
    """The fast path (Python's grouping, the locale's signs) writes what Babel writes."""
    expected = format_decimal(value, format="#,##0.###", locale=locale)
    if locale == "en_IN":
        expected = format_decimal(value, locale=locale)  # its own grouping: 12,34,567
    if value.is_zero():
        expected = expected.lstrip("-" + Locale.parse(locale).number_symbols["latn"]["minusSign"])
    assert format_number(value, 3, locale) == expected


def test_the_catalog_locale_reaches_the_wording() -> None:
    catalog = load_catalog(ROOT / "config" / "plans.toml")
    assert catalog.locale == "en_US"
    german = dataclasses.replace(catalog, locale="de_DE")
    current = catalog.plans[0]
    metric = next(iter(catalog.units))
    english = suggest_upgrade(catalog, current, metric, D("123456")).rationale
    translated = suggest_upgrade(german, current, metric, D("123456")).rationale
    assert "123,456" in english
    assert "123.456" in translated


def test_the_catalog_refuses_a_locale_cldr_lacks() -> None:
    text = (ROOT / "config" / "plans.toml").read_text(encoding="utf-8")
    assert 'locale = "en_US"' in text
    german = parse_catalog(text.replace('locale = "en_US"', 'locale = "de"', 1))
    assert german.locale == "de"
    with pytest.raises(CatalogError, match='locale: must be a locale CLDR knows.*"xx"'):
        parse_catalog(text.replace('locale = "en_US"', 'locale = "xx"', 1))
