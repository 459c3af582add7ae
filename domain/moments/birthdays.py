"""One account's birthday timer, visited when due (contract 3.7).

Pure: the agent hands in the account's plan, the day the timer celebrates, what it holds of the
last birthday celebrated and the pass's time, and gets back the next day to schedule and the
event to send, if any. When a day is due, long past or celebrated: :mod:`domain.rules.birthdays`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from domain.common.timeutil import DAY_MS
from domain.intake.accounts import AccountPlan, period_of
from domain.intake.birthdates import BirthDate, parse_birth_date
from domain.plans.catalog import Catalog
from domain.rules.birthdays import (
    age_on,
    birthday_in,
    birthday_start_ms,
    long_past,
    next_birthday,
)
from domain.wording.events import Wording, birthday_event
from domain.wording.payloads import BirthdayEvent
from domain.wording.templates import Templates


@dataclass(frozen=True, slots=True)
class BirthdayRules:
    """Settings of birthdays: after downtime a birthday is still celebrated until its day's
    end plus ``late_grace_ms`` plus one day."""

    late_grace_ms: int


@dataclass(frozen=True, slots=True)
class Judged:
    """A visit's outcome: the next birthday to schedule (None: none, the timer was stale)
    and the event to send (None: nothing)."""

    next_day: date | None
    event: BirthdayEvent | None


def next_birthday_after(birth: BirthDate, day: date, at_ms: int, late_grace_ms: int) -> date:
    """The first birthday after ``day`` that is not long past at ``at_ms``."""
    after_day_ms = birthday_start_ms(day) + DAY_MS
    return next_birthday(birth, max(after_day_ms, at_ms - DAY_MS - late_grace_ms - 1))


def evaluate_birthday(
    account_id: str,
    plan: AccountPlan,
    day: date,
    celebrated_of: Callable[[], date | None],
    at_ms: int,
    *,
    rules: BirthdayRules,
    catalog: Catalog,
    templates: Templates,
    now_ms: int,
) -> Judged:
    """Judge the birthday timer of ``day`` at ``at_ms`` (the pass's time, at or after the day's
    start), once.

    A timer the plan no longer asks for (no birth date, or another one) is stale: nothing, and
    nothing scheduled (the plan record that changed it scheduled its own). Otherwise the next
    birthday is scheduled and ``day`` is celebrated unless it is long past, a birthday of its
    year was celebrated already (``celebrated_of``), or the account is not active or its plan
    not in the catalog.
    """
    if plan.birth_date is None:
        return Judged(None, None)
    birth = parse_birth_date(plan.birth_date)
    if birthday_in(birth, day.year) != day:
        return Judged(None, None)
    following = next_birthday_after(birth, day, at_ms, rules.late_grace_ms)
    if long_past(day, at_ms, rules.late_grace_ms):
        return Judged(following, None)
    celebrated = celebrated_of()
    if celebrated is not None and celebrated.year >= day.year:
        return Judged(following, None)
    catalog_plan = catalog.plan(plan.plan_id)
    if plan.status != "active" or catalog_plan is None:
        return Judged(following, None)
    age = age_on(birth, day) if catalog.birthday.show_age else None
    period = period_of(plan, birthday_start_ms(day), catalog)
    wording = Wording(templates, catalog)
    event = birthday_event(wording, account_id, catalog_plan, period, day, age, now_ms)
    return Judged(following, event)
