"""When timers are due (issue 19), against independent oracles: an account's next period end,
its next birthday (Feb 29 included), the long-past rule, birth dates, and the due index's key
order."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.birthdates import BirthDate, parse_birth_date
from domain.moments.birthdays import next_birthday_after
from domain.plans.periods import PeriodLength
from domain.rules.anniversaries import due_cut, next_end
from domain.rules.birthdays import age_on, birthday_in, long_past, next_birthday
from tables.due import ANNIVERSARY, BIRTHDAY, due_key, parse_key
from tests.unit.test_anniversaries import account, anchors, catalog_of, lengths, oracle_start, to_ms

GRACE_MS = 3_600_000
DAY = timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(anchor=anchors, length=lengths, after_s=st.integers(0, 2 * 366 * 86_400))
def test_the_next_end_is_the_first_period_end_after_the_instant(
    anchor: datetime, length: PeriodLength, after_s: int
) -> None:
    after_ms = to_ms(anchor) + after_s * 1000
    if length == "day":
        after_ms = to_ms(anchor) + (after_s % (400 * 86_400)) * 1000
    k = 0
    while to_ms(oracle_start(anchor, length, k + 1)) <= after_ms:
        k += 1
    expected = to_ms(oracle_start(anchor, length, k + 1))
    assert next_end(account(to_ms(anchor)), after_ms, catalog_of(length)) == expected


@given(now_ms=st.integers(0, 2**45), grace_ms=st.integers(0, 10**8))
def test_a_cut_is_the_last_instant_whose_records_are_late(now_ms: int, grace_ms: int) -> None:
    # A record of a period ending at e is late when now > e + grace (contract 2).
    cut = due_cut(now_ms, grace_ms)
    assert now_ms > cut + grace_ms and not now_ms > cut + 1 + grace_ms


def oracle_celebrated(month: int, day: int, year: int) -> date:
    """The day of a (month, day) birthday in ``year``, walking the year's calendar."""
    days = [date(year, 1, 1) + timedelta(days=i) for i in range(366)]
    found = [d for d in days if d.year == year and (d.month, d.day) == (month, day)]
    if found:
        return found[0]
    assert (month, day) == (2, 29) and not calendar.isleap(year)
    return date(year, 2, 28)


birth_dates = st.builds(
    lambda year, month, day, known: BirthDate(year if known else None, month, day),
    st.integers(1900, 2020),
    st.integers(1, 12),
    st.integers(1, 31),
    st.booleans(),
).filter(lambda b: b.day <= calendar.monthrange(2000 if b.year is None else b.year, b.month)[1])
instants = st.integers(
    to_ms(datetime(2024, 1, 1, tzinfo=UTC)), to_ms(datetime(2031, 12, 31, tzinfo=UTC))
)


@settings(max_examples=300, deadline=None)
@given(birth=birth_dates | st.just(BirthDate(None, 2, 29)), after_ms=instants)
def test_the_next_birthday_is_the_first_not_over_at_the_instant(
    birth: BirthDate, after_ms: int
) -> None:
    today = datetime.fromtimestamp(after_ms / 1000, UTC).date()
    expected = next(
        d
        for d in (oracle_celebrated(birth.month, birth.day, today.year + i) for i in range(3))
        if d >= today
    )
    assert next_birthday(birth, after_ms) == expected
    assert birthday_in(birth, expected.year) == expected


@settings(max_examples=300, deadline=None)
@given(birth=birth_dates, year=st.integers(2024, 2030), late_s=st.integers(0, 5 * 86_400))
def test_a_birthday_is_long_past_a_day_and_the_grace_after_its_end(
    birth: BirthDate, year: int, late_s: int
) -> None:
    day = birthday_in(birth, year)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    now_ms = to_ms(start) + late_s * 1000
    assert long_past(day, now_ms, GRACE_MS) == (now_ms > to_ms(start + 2 * DAY) + GRACE_MS)
    # The next one scheduled is after the day and not long past then.
    following = next_birthday_after(birth, day, now_ms, GRACE_MS)
    assert following > day and not long_past(following, now_ms, GRACE_MS)
    assert following == next(
        d
        for d in (oracle_celebrated(birth.month, birth.day, year + i) for i in range(1, 8))
        if not long_past(d, now_ms, GRACE_MS)
    )


def test_age_only_with_a_year() -> None:
    assert age_on(BirthDate(1996, 2, 29), date(2027, 2, 28)) == 31
    assert age_on(BirthDate(None, 2, 29), date(2027, 2, 28)) is None
    assert age_on(BirthDate(2062, 11, 20), date(2026, 11, 20)) is None  # a typo: no age
    assert age_on(BirthDate(2026, 11, 20), date(2026, 11, 20)) is None  # the day of birth


@settings(max_examples=500)
@given(text=st.from_regex(r"(\d{4}|-)-\d{2}-\d{2}", fullmatch=True) | st.text(max_size=12))
def test_a_birth_date_is_a_real_date(text: str) -> None:
    def oracle() -> bool:
        if text.startswith("--"):
            head, rest = None, text[2:]
        else:
            head, rest = text[:4], text[5:]
            if len(text) != 10 or text[4] != "-" or not (head.isascii() and head.isdigit()):
                return False
        if len(rest) != 5 or rest[2] != "-":
            return False
        month, day = rest[:2], rest[3:]
        if not (month.isascii() and month.isdigit() and day.isascii() and day.isdigit()):
            return False
        try:
            date(2000 if head is None else int(head), int(month), int(day))
        except ValueError:
            return False
        return True

    try:
        parsed = parse_birth_date(text)
    except ValueError:
        assert not oracle()
    else:
        assert oracle()
        assert str(parsed) == text


@pytest.mark.parametrize(
    "bad", [None, 19900101, "1990-1-01", "--13-01", "0000-01-01", "2023-02-29"]
)
def test_invalid_birth_dates_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_birth_date(bad)


@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from([ANNIVERSARY, BIRTHDAY]),
            st.integers(0, 10**15 - 1),
            st.text(min_size=1, max_size=8),
        ),
        max_size=20,
    )
)
def test_index_keys_sort_by_kind_then_due_time(entries: list[tuple[str, int, str]]) -> None:
    keys = [due_key(kind, due, account) for kind, due, account in entries]  # type: ignore[arg-type]
    assert [parse_key(k) for k in keys] == entries
    by_key = sorted(range(len(keys)), key=lambda i: keys[i])
    assert [entries[i][:2] for i in by_key] == sorted(e[:2] for e in entries)
