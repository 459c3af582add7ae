"""Keys and lifetimes of distinct values (domain.intake.distinct, contract 1.4)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from domain.intake.distinct import (
    day_expiry,
    day_scope,
    distinct_key,
    distinct_retention_ms,
    period_expiry,
    period_scope,
)
from domain.plans.periods import day_start_ms, period_containing, utc_day

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

accounts = st.text(min_size=1, max_size=12)
metrics = st.from_regex(r"[a-z0-9_.-]{1,64}", fullmatch=True)
scopes = st.builds(lambda n: f"p{n}", st.integers(0, 2**45)) | st.builds(
    lambda n: f"d{n}", st.integers(0, 3_000_000)
)
# Any text: JSON text of a string may hold \x1f, colons, digits.
value_keys = st.text(max_size=12)
keys = st.tuples(accounts, metrics, scopes, value_keys)


def read_back(key: str) -> tuple[str, str, str, str]:
    """An independent oracle: the tuple a key was made of, read by its length prefix."""
    length, rest = key.split(":", 1)
    account, rest = rest[: int(length)], rest[int(length) :]
    assert rest[0] == "\x1f"
    metric, scope, value_key = rest[1:].split("\x1f", 2)
    return account, metric, scope, value_key


@given(parts=keys)
def test_a_key_reads_back_as_what_it_was_made_of(parts: tuple[str, str, str, str]) -> None:
    assert read_back(distinct_key(*parts)) == parts


@given(first=keys, second=keys)
def test_different_tuples_never_give_the_same_key(
    first: tuple[str, str, str, str], second: tuple[str, str, str, str]
) -> None:
    assert (distinct_key(*first) == distinct_key(*second)) == (first == second)


def test_keys_that_a_plain_join_would_confuse_stay_apart() -> None:
    assert distinct_key("a\x1fm", "x", "d1", "v") != distinct_key("a", "m\x1fx", "d1", "v")
    assert distinct_key("a", "m", "d1", '"42"') != distinct_key("a", "m", "d1", "42")
    assert distinct_key("1:a", "m", "d1", "v") != distinct_key("1", "m", "d1", "v")


def test_scopes_name_the_period_start_or_the_day() -> None:
    anchor = datetime(2026, 1, 15, tzinfo=UTC)
    period = period_containing(int(anchor.timestamp() * 1000) + DAY_MS, anchor, "month")
    assert period_scope(period) == f"p{period.start_ms}"
    assert day_scope(20_454) == "d20454"
    assert period_scope(period) != day_scope(period.start_ms)


def test_a_period_value_goes_when_the_period_stops_taking_records() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    period = period_containing(int(anchor.timestamp() * 1000), anchor, "month")
    expires = period_expiry(period, HOUR_MS)
    # The intake's rule (domain.intake.batch): late when period.end_ms < now - grace.
    assert not period.end_ms < (expires - 1) - HOUR_MS
    assert period.end_ms < expires - HOUR_MS


@given(day=st.integers(0, 100_000), retention=st.integers(1, 400), at=st.integers(0, DAY_MS - 1))
def test_a_day_value_goes_when_the_day_leaves_the_window(day: int, retention: int, at: int) -> None:
    expires = day_expiry(day, retention)
    # The intake keeps days >= utc_day(now) - retention + 1 (domain.intake.batch).
    for now_ms in (expires - DAY_MS + at, expires - 1):
        assert day >= utc_day(now_ms) - retention + 1
    for now_ms in (expires, expires + at):
        assert day < utc_day(now_ms) - retention + 1
    assert expires == day_start_ms(day + retention)


@given(retention=st.integers(1, 400), grace_ms=st.integers(0, 7 * DAY_MS))
def test_the_changelog_outlives_every_entry(retention: int, grace_ms: int) -> None:
    kept_ms = distinct_retention_ms(retention, grace_ms)
    # Marked while a record could fold in: a day entry up to retention + 1 days (a record of
    # tomorrow within the clock skew), a period entry up to a month of 31 days + the grace.
    assert kept_ms > (retention + 1) * DAY_MS
    assert kept_ms > 31 * DAY_MS + grace_ms
    assert distinct_retention_ms(35, HOUR_MS) == 37 * DAY_MS + HOUR_MS
