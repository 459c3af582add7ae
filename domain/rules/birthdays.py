"""Birthdays (contract 3.7): the day celebrated in a year, when it is next due, and when it is
long past.

Pure rules. A ``birth_date`` is ``YYYY-MM-DD`` or ``--MM-DD`` (the year unknown): a real date,
Feb 29 allowed with or without a year. The birthday of year ``y`` is the same month and day;
Feb 29 falls on Feb 28 in years that have no Feb 29. A birthday is *due* at the start (UTC) of
its day, and is still celebrated after downtime while ``now <= day end + late grace + 1 day``;
later it is *long past*: skipped, and the next year's is scheduled. (Reading a ``birth_date``
is intake's: :mod:`domain.intake.birthdates`.)
"""

from __future__ import annotations

import calendar
from datetime import date

from domain.common.timeutil import DAY_MS
from domain.intake.birthdates import BirthDate
from domain.plans.periods import date_to_day, day_start_ms, day_to_date, utc_day


def birthday_in(birth: BirthDate, year: int) -> date:
    """The day ``birth`` is celebrated in ``year`` (Feb 29 -> Feb 28 in other years)."""
    day = birth.day
    if birth.month == 2 and day == 29 and not calendar.isleap(year):
        day = 28
    return date(year, birth.month, day)


def next_birthday(birth: BirthDate, after_ms: int) -> date:
    """The first birthday whose day has not ended at ``after_ms`` (today's, on the day)."""
    today = day_to_date(utc_day(after_ms))
    this_year = birthday_in(birth, today.year)
    return this_year if this_year >= today else birthday_in(birth, today.year + 1)


def birthday_start_ms(day: date) -> int:
    """When the birthday of ``day`` is due: the start of its UTC day."""
    return day_start_ms(date_to_day(day))


def long_past(day: date, now_ms: int, late_grace_ms: int) -> bool:
    """Whether ``day``'s birthday is too old to celebrate at ``now_ms``: after its day's end
    plus ``late_grace_ms`` plus one day."""
    return now_ms > birthday_start_ms(day) + 2 * DAY_MS + late_grace_ms


def age_on(birth: BirthDate, day: date) -> int | None:
    """The age reached on the birthday ``day``, when the year of birth is known and before
    ``day``'s year (a birth date on or after the day, a typo, has no age to tell)."""
    if birth.year is None or birth.year >= day.year:
        return None
    return day.year - birth.year
