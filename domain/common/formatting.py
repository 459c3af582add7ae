"""Prose formats of numbers, money and dates, from CLDR (Babel), for messages and the tail.

Formats are chosen for people: ``12,345`` and ``1,234.5`` with no float noise, ``80%``,
``$79`` or ``$19.50``, ``December 1, 2026`` rather than an ISO timestamp. Every function
takes the catalog's ``locale`` (default ``en_US``), never the worker's, so a machine's
settings never change a message.

From CLDR (Babel): the digit grouping and the decimal, group, minus and percent signs of the
locale; each ISO 4217 currency's symbol (``$``, ``€``, ``¥``, ``CA$``; the code itself
when CLDR has none), its number of decimals (JPY 0, BHD 3) and where the locale puts it;
dates in the locale's long form.

By hand, because CLDR has no such rule:

- at most ``places`` decimals without trailing zeros, and never ``-0``;
- money without decimals when the amount is whole (``$79``, not ``$79.00``), and a price
  per unit smaller than the currency's unit keeps up to 6 decimals (``$0.002``);
- a percentage rounded down (a message never claims 100 % of a limit not reached), and
  ``under 1%`` for a share between 0 and 1 %;
- a space between a currency symbol made of letters and the digits (``CHF 20``): CLDR's
  currency spacing, which Babel does not apply;
- the "about" rounding of :func:`format_approx`, and the English words of
  :func:`format_days`, :func:`format_count`, :func:`format_ordinal`, :func:`format_series`,
  :func:`singular_unit` and :func:`format_milestone` (the templates are English).

Babel's own ``apply`` costs about 30 µs a number; events are built per moment, not per
record, but a bench step makes thousands. So a locale whose grouping is Python's (groups of
3) is formatted by Python and the locale's signs swapped in, which a probe against Babel
checks once per locale; other locales (``en_IN``'s 12,34,567) go through Babel.
"""

from __future__ import annotations

import copy
import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, getcontext, localcontext
from functools import lru_cache
from typing import Final

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.numbers import NumberPattern, get_currency_precision, get_currency_symbol

from domain.common.bounded import remember
from domain.common.timeutil import DAY_MS, ms_to_datetime

DEFAULT_LOCALE: Final = "en_US"

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_HUNDRED: Final = Decimal(100)
_UNIT_PRICE_PLACES: Final = 6

_QUANTA: Final = tuple(_ONE.scaleb(-places) for places in range(8))
"""``1E-places`` for the numbers of decimals messages use: quantize only reads its exponent."""


def _quantize(value: Decimal, places: int, rounding: str) -> Decimal:
    """``value`` rounded to ``places`` decimals, with enough precision never to fail."""
    quantum = _QUANTA[places] if 0 <= places < len(_QUANTA) else _ONE.scaleb(-places)
    needed = value.adjusted() + places + 4
    if needed <= getcontext().prec:  # the context has the digits already (the usual case)
        return value.quantize(quantum, rounding)
    with localcontext() as ctx:
        ctx.prec = needed
        return value.quantize(quantum, rounding)


# ---------------------------------------------------------------------------------------------
# The locale's number style
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Style:
    """One locale's number conventions, read from CLDR once."""

    locale: Locale
    #: ``str.translate`` table from Python's ``,``/``.``/``-`` to the locale's signs (``None``
    #: when they are the same, as in en_US).
    table: dict[int, str] | None
    #: Whether Python's grouping (groups of 3) is the locale's; else Babel formats.
    python: bool
    decimal: NumberPattern
    #: The percent pattern's prefix and suffix, positive then negative, signs in place.
    percent: tuple[tuple[str, str], tuple[str, str]]
    percent_pattern: NumberPattern
    currency_pattern: NumberPattern

    def digits(
        self,
        number: Decimal | int,
        places: int,
        pattern: NumberPattern | None = None,
        *,
        fixed: bool = False,
    ) -> str:
        """``number`` (already rounded to at most ``places`` decimals, not negative when a
        ``pattern`` is given) in the locale, grouped as ``pattern`` (by default the decimal
        one) groups; ``fixed``: exactly ``places`` decimals when Babel writes it."""
        if self.python:
            text = f"{number:,}" if type(number) is int else format(number, ",f")
            return text if self.table is None else text.translate(self.table)
        bare = copy.copy(pattern or self.decimal)
        if pattern is not None:  # its digits only: the caller writes its signs and symbol
            bare.prefix = bare.suffix = ("", "")
            bare.scale = 0
        bare.frac_prec = (places if fixed else 0, places)
        value = Decimal(number)
        with localcontext() as ctx:
            # Babel quantizes in the caller's context: room for every digit (totals reach 1e30).
            ctx.prec = max(ctx.prec, value.adjusted() + places + 4)
            return str(bare.apply(value, self.locale))


def _affixes(
    locale: Locale, pattern: NumberPattern, sign: str, to: str
) -> tuple[tuple[str, str], tuple[str, str]]:
    """``pattern``'s (prefix, suffix), positive then negative, with ``sign`` (``¤`` or
    ``%``) replaced by ``to`` and the pattern's ``-`` by the locale's minus sign."""
    minus = locale.number_symbols["latn"]["minusSign"]
    pairs = []
    for negative in (False, True):
        prefix = pattern.prefix[negative].replace("'", "").replace("-", minus)
        suffix = pattern.suffix[negative].replace("'", "").replace("-", minus)
        prefix, suffix = prefix.replace(sign, to), suffix.replace(sign, to)
        if sign == "¤":
            # CLDR's currency spacing, which Babel does not apply: "CHF 20", not "CHF20".
            if prefix.endswith(to) and _letter(to[-1:]):
                prefix += " "
            if suffix.startswith(to) and _letter(to[:1]):
                suffix = " " + suffix
        pairs.append((prefix, suffix))
    return pairs[0], pairs[1]


def _letter(char: str) -> bool:
    return bool(char) and unicodedata.category(char) != "Sc" and not char.isspace()


@lru_cache(maxsize=64)
def _style(locale: str) -> _Style:
    """The number conventions of ``locale`` (a :class:`ValueError` when CLDR has none)."""
    try:
        parsed = Locale.parse(locale)
    except Exception as exc:  # babel raises UnknownLocaleError or ValueError
        raise ValueError(f"unknown locale {locale!r}: {exc}") from None
    symbols = parsed.number_symbols["latn"]
    swap = {",": symbols["group"], ".": symbols["decimal"], "-": symbols["minusSign"]}
    table = None if all(k == v for k, v in swap.items()) else str.maketrans(swap)
    decimal = parsed.decimal_formats[None]
    percent = _affixes(parsed, parsed.percent_formats[None], "%", symbols["percentSign"])
    patterns = (decimal, parsed.percent_formats[None], parsed.currency_formats["standard"])
    grouped = all(p.grouping == (3, 3) for p in patterns)
    percent_pattern, currency_pattern = patterns[1], patterns[2]
    style = _Style(parsed, table, grouped, decimal, percent, percent_pattern, currency_pattern)
    # Python's grouping must give what Babel gives, else Babel formats every number.
    probe = copy.copy(decimal)
    probe.frac_prec = (0, 3)
    for sample in (Decimal("1234567.125"), Decimal("-1234.5"), Decimal("999")):
        if style.python and style.digits(sample, 3) != probe.apply(sample, parsed):
            return dataclasses.replace(style, python=False)
    return style


def known_locale(locale: str) -> bool:
    """Whether CLDR (Babel) has ``locale``, so messages can be formatted in it."""
    try:
        _style(locale)
    except ValueError:
        return False
    return True


_EN_US: Final = _style(DEFAULT_LOCALE)  # read once: most messages are in the default locale
_EN_US_PYTHON: Final = _EN_US.python and _EN_US.table is None
"""Whether en_US writes numbers as Python's ``,`` format does (CLDR says so today)."""


@dataclass(frozen=True, slots=True)
class _Currency:
    """A currency as ``locale`` writes it: decimals, and the symbol around the digits."""

    style: _Style
    places: int
    #: (prefix, suffix), positive then negative.
    affixes: tuple[tuple[str, str], tuple[str, str]]

    def write(self, number: Decimal | int, places: int, *, fixed: bool = True) -> str:
        """``number`` (rounded already to ``places`` decimals) as an amount; ``fixed``: with
        exactly ``places`` decimals (a price per unit drops trailing zeros)."""
        negative = number < 0
        prefix, suffix = self.affixes[negative]
        # abs() also turns a rounded -0.004 into 0 ($0, not $-0), and rounds to the context
        # as the worker always has (amounts past 28 digits).
        size = abs(number) if isinstance(number, Decimal) else abs(number)
        if fixed and isinstance(size, Decimal):
            size = _quantize(size, places, ROUND_HALF_EVEN)  # the places abs() rounded away
        style = self.style
        return f"{prefix}{style.digits(size, places, style.currency_pattern, fixed=fixed)}{suffix}"


@lru_cache(maxsize=256)
def _currency(currency: str, locale: str) -> _Currency:
    """``currency`` in ``locale``: its CLDR symbol (the code when CLDR has none), decimals
    and place."""
    style = _style(locale)
    symbol = get_currency_symbol(currency, style.locale)
    pattern = style.locale.currency_formats["standard"]
    return _Currency(
        style, get_currency_precision(currency), _affixes(style.locale, pattern, "¤", symbol)
    )


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def _rounded(value: Decimal | int, places: int) -> Decimal | int:
    """``value`` with at most ``places`` decimals, half to even, no trailing zeros, no -0."""
    if type(value) is int:
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)  # whole already: what the roundings below come to, without them
    number = _quantize(Decimal(value), places, ROUND_HALF_EVEN)
    if number == number.to_integral_value():
        number = _quantize(number, 0, ROUND_HALF_EVEN)
    else:
        number = number.normalize()
    if number.is_zero():
        number = abs(number)
    return number


def format_number(value: Decimal | int, places: int = 2, locale: str = DEFAULT_LOCALE) -> str:
    """``value`` with the locale's grouping, at most ``places`` decimals, no trailing zeros.

    ``Decimal("12345")`` -> ``12,345``; ``Decimal("1234.50")`` -> ``1,234.5``;
    ``Decimal("0.1") + Decimal("0.2")`` -> ``0.3``. Rounds half to even; never prints ``-0``.
    """
    if locale == DEFAULT_LOCALE and _EN_US_PYTHON:  # most messages: no lookups, no calls
        if type(value) is Decimal:
            # Python's own text of the decimal (exact, grouped) is the answer when it has no
            # fractional digits (a whole number written with an exponent of 0 or above) and is
            # not a negative zero: what _rounded's int() would give, for half the work.
            text = format(value, ",f")
            if "." not in text and value.is_finite() and text != "-0":
                return text
        number = _rounded(value, places)
        return f"{number:,}" if type(number) is int else format(number, ",f")
    return _style(locale).digits(_rounded(value, places), places)


def format_approx(value: Decimal | int, locale: str = DEFAULT_LOCALE) -> str:
    """``value`` rounded the way people say "about": whole from 100 up, one decimal from 1 up,
    two below (``about 1,200 a day``, ``about 13.3 a day``, ``about 0.25 GB``)."""
    # A threshold event writes its projected total twice (the suggestion's rationale and the
    # message): the same object, so the last text is kept for it. One tuple, swapped whole.
    global _last_approx
    last = _last_approx
    if last[0] is value and last[1] == locale:
        return last[2]
    number = abs(Decimal(value))
    places = 0 if number >= _HUNDRED else 1 if number >= _ONE else 2
    text = format_number(value, places, locale)
    _last_approx = (value, locale, text)
    return text


# (value, locale, text) of the last format_approx: values are immutable, so the same object
# in the same locale always reads the same.
_last_approx: tuple[object, str, str] = (None, "", "")


def _percent(number: Decimal, places: int, locale: str) -> str:
    """``number`` (already a percentage) with the locale's percent sign and pattern."""
    rounded = _rounded(number, places)
    size = abs(rounded) if isinstance(rounded, Decimal) else abs(rounded)
    if locale == DEFAULT_LOCALE and _EN_US_PYTHON:
        prefix, suffix = _EN_US.percent[rounded < 0]
        text = f"{size:,}" if type(size) is int else format(size, ",f")
        return f"{prefix}{text}{suffix}"
    style = _style(locale)
    prefix, suffix = style.percent[rounded < 0]
    return f"{prefix}{style.digits(size, places, style.percent_pattern)}{suffix}"


def format_percent(ratio: Decimal, locale: str = DEFAULT_LOCALE) -> str:
    """``ratio`` as a whole percentage rounded down: ``Decimal("0.8")`` -> ``80%``.

    Rounding down means a message never claims 100 % of a limit that is not reached yet.
    A ratio strictly between 0 and 1 % reads ``under 1%`` rather than a misleading ``0%``.
    """
    percent = ratio * _HUNDRED
    if _ONE <= percent < _PERCENTS_WRITTEN and locale == DEFAULT_LOCALE and _EN_US_PYTHON:
        return _EN_US_PERCENTS[int(percent)]  # int() rounds a positive percentage down
    if _ZERO < percent < _ONE:
        return f"under {_percent(_ONE, 0, locale)}"
    return _percent(_quantize(percent, 0, ROUND_FLOOR), 0, locale)


_PERCENTS_WRITTEN: Final = Decimal(1000)
_EN_US_PERCENTS: Final = tuple(
    f"{_EN_US.percent[0][0]}{n:,}{_EN_US.percent[0][1]}" for n in range(int(_PERCENTS_WRITTEN))
)
"""The whole percentages below 1,000 % in en_US (what :func:`_percent` writes), written once:
threshold messages write one or two each."""


def format_level(level: Decimal, locale: str = DEFAULT_LOCALE) -> str:
    """A threshold level as an exact percentage: ``0.8`` -> ``80%``, ``0.125`` -> ``12.5%``."""
    return _level_text(level, locale)


@lru_cache(maxsize=256)
def _level_text(level: Decimal, locale: str) -> str:
    """:func:`format_level`, cached: a catalog has a few levels (they are checked finite)."""
    return _percent(level * _HUNDRED, 2, locale)


# ---------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------


# Amounts written before, by (amount, currency, locale): the prices and price differences of
# a catalog's plans are most of the amounts events write. Only amounts of up to 15 digits,
# which no context's precision rounds; cleared when full.
_MONEY_MAX: Final = 4096
_money_texts: dict[tuple[Decimal, str, str], str] = {}


def format_money(amount: Decimal, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """``amount`` of ``currency``: ``$79``, ``$19.50``, ``€1,499``, ``¥1,500``, ``CHF 20``.

    The currency's symbol and decimals from CLDR; no decimals when the amount is whole.
    """
    if not amount.is_finite() or amount.adjusted() >= 15:
        return _format_money(amount, currency, locale)
    key = (amount, currency, locale)
    text = _money_texts.get(key)
    if text is None:
        text = _format_money(amount, currency, locale)
        remember(_money_texts, key, text, _MONEY_MAX)
    return text


def _format_money(amount: Decimal, currency: str, locale: str) -> str:
    money = _currency(currency, locale)
    if (
        amount.is_finite()
        and amount == amount.to_integral_value()
        and amount.adjusted() + 6 <= getcontext().prec  # abs() below would round past this
    ):
        return money.write(int(amount), 0)  # whole already: what the roundings come to
    rounded = _quantize(amount, money.places, ROUND_HALF_EVEN)
    if rounded == rounded.to_integral_value():
        return money.write(_quantize(rounded, 0, ROUND_HALF_EVEN), 0)
    return money.write(rounded, money.places)


def format_unit_price(amount: Decimal, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """A price per unit, which may be a fraction of a cent: ``$0.002``, ``$1.50``, ``€0.0125``.

    Prices in the currency's decimals read as :func:`format_money`; a smaller price keeps up
    to 6 decimals (rounded), so ``$0.002`` never reads ``$0``.
    """
    money = _currency(currency, locale)
    if amount == _quantize(amount, money.places, ROUND_HALF_EVEN):
        return format_money(amount, currency, locale)
    return money.write(_rounded(amount, _UNIT_PRICE_PLACES), _UNIT_PRICE_PLACES, fixed=False)


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


# Dates written before, by (UTC day number, locale): an event's instants fall on a few days.
_DATES_MAX: Final = 4096
_date_texts: dict[tuple[int, str], str] = {}


def format_date(ms: int, locale: str = DEFAULT_LOCALE) -> str:
    """The UTC calendar date of instant ``ms`` in prose: ``December 1, 2026``."""
    key = (ms // DAY_MS, locale)
    text = _date_texts.get(key)
    if text is None:
        text = format_calendar_date(ms_to_datetime(ms).date(), locale)
        remember(_date_texts, key, text, _DATES_MAX)
    return text


@lru_cache(maxsize=4096)
def format_calendar_date(day: date, locale: str = DEFAULT_LOCALE) -> str:
    """A calendar date in the locale's long form: ``December 1, 2026``.

    Cached: an event names a few days (period start and end, a limit date) that many events
    share, and Babel takes tens of microseconds a date.
    """
    return babel_format_date(day, "long", locale=_style(locale).locale)


# ---------------------------------------------------------------------------------------------
# English wording (CLDR has plural categories, not these words)
# ---------------------------------------------------------------------------------------------


def format_days(days: int) -> str:
    """A span of recent days in prose: ``the last day``, ``the last 3 days``."""
    return "the last day" if days == 1 else f"the last {days} days"


def format_count(n: int, word: str, locale: str = DEFAULT_LOCALE) -> str:
    """``n`` of an English count noun: ``1 month``, ``12 months``, ``3 members``."""
    number = format_number(n, locale=locale)
    return f"{number} {word}" if n == 1 else f"{number} {word}s"


def format_ordinal(number: int) -> str:
    """``number`` as an English ordinal with thousands separators: ``1st``, ``2nd``, ``3rd``,
    ``11th``, ``12th``, ``13th``, ``21st``, ``101st``, ``111th``, ``10,000th``."""
    if number % 100 in (11, 12, 13):
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number:,}{suffix}"


def format_series(values: Sequence[str]) -> str:
    """Items in prose: ``10``, ``10 and 50``, ``10, 50 and 100`` (no serial comma, unlike
    CLDR's English list pattern: the wording the templates were written with)."""
    if len(values) <= 1:
        return "".join(values)
    return f"{', '.join(values[:-1])} and {values[-1]}"


def singular_unit(unit: str) -> str | None:
    """The singular of a plural display unit, for ordinals (``API calls`` -> ``API call``,
    ``purchases`` -> ``purchase``, ``searches`` -> ``search``, ``queries`` -> ``query``), or
    ``None`` when the unit is not a plain plural count (``GB of storage``, ``kWh``, ``bus``),
    where an ordinal would not read naturally."""
    head, _, last = unit.rpartition(" ")
    if not last.isascii() or not last.isalpha() or not last.islower() or len(last) < 3:
        return None
    if last.endswith(("ss", "us", "is")) or not last.endswith("s"):
        return None
    if last.endswith("ies") and len(last) > 4:
        one = last[:-3] + "y"
    elif last.endswith(("ches", "shes", "sses", "xes")):
        one = last[:-2]
    else:
        one = last[:-1]
    return f"{head} {one}" if head else one


def format_milestone(value: Decimal, unit: str, locale: str = DEFAULT_LOCALE) -> str:
    """A milestone in prose: ``your 50th purchase`` when it is a whole count of a plural
    unit, else the amount with its unit (``2.5 GB of storage``, ``1,000 kWh``)."""
    one = singular_unit(unit) if value == value.to_integral_value() else None
    if one is None:
        return f"{format_number(value, locale=locale)} {unit}"
    return f"your {format_ordinal(int(value))} {one}"
