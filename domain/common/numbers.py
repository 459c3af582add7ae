"""How amounts are written in events, and which amounts can be (contract 4).

Every amount a worker holds is an exact :class:`~decimal.Decimal`. An event must carry it as a
JSON number that every common parser reads without loss: JavaScript, Go's ``float64`` and
Java's ``double`` read IEEE doubles, Python and ``BigDecimal`` read the text exactly, and
int64 parsers read integers below 2**63. So an amount is *exact in JSON* when

- it is whole and below 2**63 in size, and a double holds it exactly (written as an integer:
  ``10000``; every parser reads that very value), or
- its decimal text is the shortest round-trip text of a double (written as that text:
  ``12.5``, ``0.29``, ``1e+20``; a double parser gets back the double whose text it is, a
  decimal parser the text itself).

Amounts a record brings in (quantities, and the period and lifetime totals they make) must be
exact in JSON and zero or between :data:`MIN_AMOUNT` and :data:`MAX_AMOUNT`; a record that
would break this is dead-lettered, never retried. Limits outside these bounds are refused the
same way (an override is left out, a catalog limit stops start-up). 1e20, a common way to say
"unlimited", is fine.

Figures *derived* from amounts (ratios, projections, drop means, overage costs) are estimates:
they are written as the nearest double, which the ceiling keeps finite.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

MAX_AMOUNT: Final = Decimal("1e30")
"""Ceiling for quantities, totals and limits: room for 1e20 ("unlimited"), and low enough that
every derived figure (a projection over a month of milliseconds, say) stays inside a double's
range."""

MIN_AMOUNT: Final = Decimal("1e-30")
"""Floor for amounts other than zero, so a ratio of the ceiling to the floor (1e60) is still
a finite double."""

_INT63: Final = 2**63
_INT53: Final = 2**53
_DEC53: Final = Decimal(_INT53)  # Decimal-to-Decimal comparisons are ~4x faster than to int
_NEG_DEC53: Final = -_DEC53  # made once: a negation makes a new Decimal each time


def exact_in_json(value: Decimal) -> bool:
    """Whether ``value`` is zero or between :data:`MIN_AMOUNT` and :data:`MAX_AMOUNT` in size,
    and written losslessly by :func:`json_number` (see the module docstring)."""
    if _NEG_DEC53 <= value <= _DEC53 and value == value.to_integral_value():
        return True  # the usual case, checked cheaply: whole numbers a double holds exactly
    if not within_bounds(value):
        return False
    if not value:
        return True
    as_float = float(value)
    if value == value.to_integral_value() and abs(value) < _INT63 and Decimal(as_float) == value:
        return True
    return Decimal(repr(as_float)) == value


def json_number(value: Decimal) -> int | float:
    """``value`` as a JSON number: an integer when whole and below 2**63 in size, else the
    nearest double (exact when :func:`exact_in_json`; the nearest estimate otherwise)."""
    if value == value.to_integral_value() and abs(value) < _INT63:
        return int(value)
    return float(value)


def within_bounds(value: Decimal) -> bool:
    """Whether ``value`` is zero, or finite and between :data:`MIN_AMOUNT` and
    :data:`MAX_AMOUNT` in size."""
    if not value.is_finite():
        return False
    size = abs(value)
    return not size or MIN_AMOUNT <= size <= MAX_AMOUNT
