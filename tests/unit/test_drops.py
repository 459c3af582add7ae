"""Sudden-drop detection (contract 3.2): daily totals, assessments, episodes, projection."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import DAY_MS
from domain.intake.daily import CLOSED, DailyTotals, Episode
from domain.plans.periods import date_to_day, day_start_ms, weekday
from domain.rules.drops import (
    Assessment,
    DropRules,
    assess,
    expected_for,
    new_pace_period_projection,
    recovered,
    step,
)

RULES = DropRules()
MONDAY = date_to_day(date(2026, 1, 5))
SATURDAY = MONDAY + 5
WEEKDAYS = range(5)  # Monday to Friday
WEEKEND = (5, 6)

Usage = Callable[[int], Decimal | int]
"""Usage of each day, by day number."""


def totals(usage: Usage, first: int, last: int) -> DailyTotals:
    """Daily totals of a series from day ``first`` to ``last`` (both included), one record a day
    at noon; a day of zero still sends a record, so ``first`` is the account's first day."""
    daily = DailyTotals()
    for day in range(first, last + 1):
        daily.add(day_start_ms(day) + DAY_MS // 2, Decimal(usage(day)))
    return daily


def simulate(
    usage: Usage, first: int, last: int, rules: DropRules = RULES
) -> tuple[list[int], Episode]:
    """Feed the series day by day, evaluating each day as it closes, as the worker does.

    Returns the days on whose close an event was emitted, and the final episode.
    """
    daily = DailyTotals()
    episode = CLOSED
    emitted = []
    for day in range(first, last + 1):
        daily.add(day_start_ms(day) + DAY_MS // 2, Decimal(usage(day)))
        emit, episode = step(episode, assess(daily, day, rules), rules)
        if emit:
            emitted.append(day)
        daily.prune(day - rules.lookback_days + 1)
    return emitted, episode


def with_days(first_day: int, days: dict[int, Decimal | int]) -> DailyTotals:
    """Daily totals whose history starts at ``first_day`` and holds exactly ``days``."""
    return DailyTotals({day: Decimal(total) for day, total in days.items()}, first_day, None)


def steady(rate: Decimal | int) -> Usage:
    return lambda _day: rate


def weekly(profile: Iterable[Decimal | int]) -> Usage:
    """Usage that repeats every week: ``profile[weekday]``, Monday first."""
    by_weekday = list(profile)
    return lambda day: by_weekday[weekday(day)]


def silent_from(start: int, before: Usage) -> Usage:
    return lambda day: 0 if day >= start else before(day)


def test_calendar_constants() -> None:
    assert weekday(MONDAY) == 0
    assert weekday(SATURDAY) == 5


# --- DailyTotals ---------------------------------------------------------------------------


def test_add_sums_a_day_and_tracks_first_day_and_last_activity() -> None:
    daily = DailyTotals()
    noon = day_start_ms(MONDAY) + DAY_MS // 2
    daily.add(noon, Decimal("1.5"))
    daily.add(noon + 1000, Decimal("2.25"))
    daily.add(day_start_ms(MONDAY) - 1, Decimal(4))  # late record, the Sunday before
    assert daily.total(MONDAY) == Decimal("3.75")
    assert daily.total(MONDAY - 1) == 4
    assert daily.total(MONDAY + 1) == 0
    assert daily.first_day == MONDAY - 1
    assert daily.last_active_ms == noon + 1000


def test_zero_quantity_starts_history_but_is_not_activity() -> None:
    daily = DailyTotals()
    daily.add(day_start_ms(MONDAY), Decimal(5))
    daily.add(day_start_ms(MONDAY - 3), Decimal(0))
    daily.add(day_start_ms(MONDAY + 1), Decimal(0))
    assert daily.first_day == MONDAY - 3
    assert daily.last_active_ms == day_start_ms(MONDAY)
    assert daily.days == {MONDAY: Decimal(5)}  # zero days are not stored


@pytest.mark.parametrize("quantity", ["-1", "NaN", "Infinity", "sNaN"])
def test_add_refuses_bad_quantities(quantity: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        DailyTotals().add(0, Decimal(quantity))


def test_prune_keeps_first_day() -> None:
    daily = totals(steady(10), MONDAY - 40, MONDAY)
    assert daily.prune(MONDAY - 30)
    assert min(daily.days) == MONDAY - 30
    assert daily.first_day == MONDAY - 40
    assert not daily.prune(MONDAY - 30)


def test_json_is_compact_and_round_trips() -> None:
    daily = DailyTotals()
    daily.add(day_start_ms(MONDAY) + 5, Decimal("12.50"))
    daily.add(day_start_ms(MONDAY - 2), Decimal("0"))
    data = daily.to_json()
    assert data == {"f": MONDAY - 2, "a": day_start_ms(MONDAY) + 5, "d": {str(MONDAY): "12.50"}}
    assert DailyTotals.from_json(orjson.loads(orjson.dumps(data))) == daily
    assert DailyTotals().to_json() == {}
    assert DailyTotals.from_json(None) == DailyTotals()
    assert DailyTotals.from_json({}) == DailyTotals()


records = st.lists(
    st.tuples(
        st.integers(0, 4_102_444_800_000),  # 1970 .. 2100
        st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False),
    ),
    max_size=30,
)


@given(records, st.integers(0, 50_000))
def test_json_round_trip_property(batch: list[tuple[int, Decimal]], keep_from: int) -> None:
    daily = DailyTotals()
    for ts_ms, quantity in batch:
        daily.add(ts_ms, quantity)
    daily.prune(keep_from)
    assert DailyTotals.from_json(orjson.loads(orjson.dumps(daily.to_json()))) == daily


# Totals read back from JSON keep their days as stored text until ``days`` is read; whatever
# happens to them, they must behave as totals whose days were parsed, and leave the JSON they
# came from, or went out as, alone.
DAY0 = MONDAY - 40
stored_days = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from([Decimal(0), Decimal(1), Decimal("0.10"), Decimal("1E+3"), Decimal(7)])
        | st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False),
    ),
    max_size=12,
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(-2, 45),
            st.integers(0, DAY_MS - 1),
            st.sampled_from([Decimal(0), Decimal(2), Decimal("0.25"), Decimal("2.50E+2")])
            | st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
        ),
        st.tuples(st.just("prune"), st.integers(-2, 46)),
        st.tuples(st.just("total"), st.integers(-2, 45)),
        st.tuples(st.sampled_from(["to_json", "is_empty", "days"])),
    ),
    max_size=25,
)


def apply(daily: DailyTotals, op: tuple[object, ...]) -> object:
    match op:
        case ("add", int(day), int(ms), Decimal() as quantity):
            daily.add(day_start_ms(DAY0 + day) + ms, quantity)
            return None
        case ("prune", int(day)):
            return daily.prune(DAY0 + day)
        case ("total", int(day)):
            return daily.total(DAY0 + day)
        case ("to_json",):
            return list(daily.to_json().get("d", {}).items())  # order too: it is what is stored
        case ("is_empty",):
            return daily.is_empty()
        case ("days",):
            return dict(daily.days)
    raise AssertionError(op)


@given(stored_days, st.integers(-1, 40), operations)
def test_totals_read_from_json_behave_as_parsed_totals(
    history: list[tuple[int, Decimal]], keep_from: int, ops: list[tuple[object, ...]]
) -> None:
    written = DailyTotals()
    for day, quantity in history:
        written.add(day_start_ms(DAY0 + day), quantity)
    written.prune(DAY0 + keep_from)
    data = orjson.loads(orjson.dumps(written.to_json()))
    before = orjson.dumps(data)
    stored = DailyTotals.from_json(data)
    parsed = DailyTotals(
        {int(day): Decimal(total) for day, total in data.get("d", {}).items()},
        data.get("f"),
        data.get("a"),
    )
    handed_out = []
    for op in ops:
        assert apply(stored, op) == apply(parsed, op)
        if op[0] == "to_json":
            json = stored.to_json()
            handed_out.append((json, orjson.dumps(json)))
    assert orjson.dumps(stored.to_json()) == orjson.dumps(parsed.to_json())
    assert stored == parsed
    assert orjson.dumps(data) == before
    for json, text in handed_out:
        assert orjson.dumps(json) == text


# --- DropRules -----------------------------------------------------------------------------


def test_rules_defaults_follow_the_contract() -> None:
    assert RULES == DropRules(3, 4, Decimal(100), Decimal("0.7"), 14, Decimal("0.6"))
    assert RULES.lookback_days == 31  # within the 35 days the contract keeps


@pytest.mark.parametrize(
    "changes",
    [
        {"recent_days": 0},
        {"baseline_weeks": 0},
        {"min_expected": Decimal(-1)},
        {"min_expected": Decimal("NaN")},
        {"fraction": Decimal(0)},
        {"fraction": Decimal("1.01")},
        {"min_history_days": -1},
        {"rearm_ratio": Decimal(-1)},
    ],
)
def test_rules_refuse_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DropRules(**changes)  # type: ignore[arg-type]


# --- assess --------------------------------------------------------------------------------


def test_steady_usage_is_as_expected() -> None:
    a = assess(totals(steady(200), MONDAY - 40, MONDAY), MONDAY, RULES)
    assert a.recent_days == (MONDAY - 2, MONDAY - 1, MONDAY)
    assert a.first_recent_day == MONDAY - 2
    assert (a.recent_total, a.expected_total, a.ratio) == (Decimal(600), Decimal(600), Decimal(1))
    assert a.history_days == 38
    assert a.eligible and not a.is_drop


def test_open_day_is_ignored() -> None:
    daily = totals(steady(200), MONDAY - 40, MONDAY)
    daily.add(day_start_ms(MONDAY + 1), Decimal(10**6))
    assert assess(daily, MONDAY, RULES).recent_total == 600


def test_baseline_skips_days_before_history_and_counts_gaps_within_it() -> None:
    day = MONDAY
    # History from day - 14: baseline days day-7 and day-14 count, day-21 and day-28 do not.
    daily = with_days(day - 14, {day - 7: 100, day - 14: 200, day - 21: 10_000})
    assert expected_for(daily, day, 4) == 150
    # A day within history with no usage is a zero, not a gap.
    assert expected_for(with_days(day - 14, {day - 14: 200}), day, 4) == 100
    # No baseline day in history, or no history at all: nothing expected.
    assert expected_for(with_days(day - 6, {day - 6: 500}), day, 4) == 0
    assert expected_for(DailyTotals(), day, 4) == 0


def test_young_account_expects_its_own_level_not_a_diluted_one() -> None:
    a = assess(totals(steady(100), MONDAY - 9, MONDAY), MONDAY, RULES)
    assert a.expected_total == 300
    assert a.history_days == 7
    assert not a.eligible


def test_non_terminating_mean_is_compared_exactly() -> None:
    day = MONDAY
    # Three weeks of history: the mean of 100, 100 and 101 is 301/3.
    daily = with_days(day - 21, {day - 7: 100, day - 14: 100, day - 21: 101})
    rules = DropRules(recent_days=1, min_history_days=0, min_expected=Decimal(0))
    a = assess(daily, day, rules)
    assert a.expected_exact == Fraction(301, 3)
    assert a.expected_total == Decimal("100.3333333333333333333333333")
    # 0.3 * 301/3 = 30.1 exactly: the rounded decimal would put 30.1 just above the line.
    daily.days[day] = Decimal("30.1")
    assert assess(daily, day, rules).is_drop
    daily.days[day] = Decimal("30.1000000000000000000000001")
    assert not assess(daily, day, rules).is_drop


def test_ratio_is_none_when_nothing_is_expected() -> None:
    a = assess(with_days(MONDAY - 30, {MONDAY: 5}), MONDAY, RULES)
    assert a.expected_total == 0
    assert a.ratio is None
    assert not a.eligible and not a.is_drop


def baseline_then(recent: dict[int, Decimal | int], per_day: Decimal | int = 100) -> DailyTotals:
    """Five weeks of ``per_day`` before the recent days ending on MONDAY, then ``recent``."""
    daily = totals(steady(per_day), MONDAY - 37, MONDAY - 3)
    for day, total in recent.items():
        if total:
            daily.days[day] = Decimal(total)
    return daily


@pytest.mark.parametrize(
    ("recent_total", "is_drop"),
    [(0, True), (89, True), (90, True), ("90.000", True), ("90.001", False), (91, False)],
)
def test_a_fall_of_exactly_the_fraction_is_a_drop(recent_total: str | int, is_drop: bool) -> None:
    a = assess(baseline_then({MONDAY: Decimal(recent_total)}), MONDAY, RULES)
    assert a.expected_total == 300
    assert a.eligible
    assert a.is_drop is is_drop


@given(st.integers(100, 10**9), st.sampled_from(["0.5", "0.7", "0.9", "1"]))
def test_drop_boundary_property(expected: int, fraction: str) -> None:
    """recent == (1 - fraction) * expected fires, one unit more does not."""
    rules = DropRules(recent_days=1, fraction=Decimal(fraction))
    daily = with_days(MONDAY - 35, {MONDAY - 7 * k: expected for k in range(1, 5)})
    line = (1 - Decimal(fraction)) * expected
    daily.days[MONDAY] = line
    assert assess(daily, MONDAY, rules).is_drop
    daily.days[MONDAY] = line + 1
    assert not assess(daily, MONDAY, rules).is_drop


def test_expected_below_minimum_is_never_a_drop() -> None:
    # The recent weekdays expect 50 + 50 + 0 = 100: exactly the minimum is judged.
    profile = {weekday(MONDAY - 2): 50, weekday(MONDAY - 1): 50}
    usage = weekly(profile.get(w, 0) for w in range(7))
    daily = totals(usage, MONDAY - 35, MONDAY - 3)
    a = assess(daily, MONDAY, RULES)
    assert (a.expected_total, a.recent_total) == (Decimal(100), Decimal(0))
    assert a.is_drop
    daily.days[MONDAY - 9] = Decimal("49.96")  # one baseline Saturday: mean 49.99
    a = assess(daily, MONDAY, RULES)
    assert a.expected_total == Decimal("99.99")
    assert not a.eligible and not a.is_drop


@pytest.mark.parametrize(("history", "is_drop"), [(0, False), (13, False), (14, True)])
def test_history_before_the_recent_days_must_be_fourteen_days(history: int, is_drop: bool) -> None:
    first_recent = MONDAY - 2
    daily = totals(steady(1000), first_recent - history, first_recent - 1)
    a = assess(daily, MONDAY, RULES)
    assert a.history_days == history
    assert a.recent_total == 0
    assert a.is_drop is is_drop


# --- whole series, day by day -----------------------------------------------------------


@pytest.mark.parametrize("rate", [34, 100, "1234.5", 10**9])
def test_steady_usage_never_fires(rate: int | str) -> None:
    emitted, episode = simulate(steady(Decimal(rate)), MONDAY - 100, MONDAY + 100)
    assert emitted == []
    assert episode == CLOSED


@pytest.mark.parametrize(
    "profile",
    [
        [1000, 1000, 1000, 1000, 1000, 0, 0],  # weekdays only
        [0, 0, 0, 0, 0, 500, 500],  # weekends only
        [0, 0, 0, 0, 0, 0, 5000],  # Sundays only
        [800, 900, 1000, 1000, 900, 40, 30],  # busy weekdays, quiet weekends
    ],
)
def test_weekly_rhythms_never_fire(profile: list[int]) -> None:
    emitted, _ = simulate(weekly(profile), MONDAY - 70, MONDAY + 70)
    assert emitted == []


@pytest.mark.parametrize("last_complete_day", range(MONDAY, MONDAY + 7))
def test_quiet_weekend_is_expected(last_complete_day: int) -> None:
    """Usage Monday to Friday only, judged on every day of the week (a Monday after the quiet
    weekend included): recent always matches expected."""
    usage = weekly([1000] * 5 + [0, 0])
    a = assess(totals(usage, MONDAY - 60, last_complete_day), last_complete_day, RULES)
    assert a.recent_total == a.expected_total
    assert not a.is_drop


def test_silence_after_steady_use_fires_once_until_recovery() -> None:
    start, silence = MONDAY - 60, MONDAY
    resume, stop_again = MONDAY + 5, MONDAY + 12

    def usage(day: int) -> int:
        return 200 if day < silence or resume <= day < stop_again else 0

    emitted, episode = simulate(usage, start, MONDAY + 20)
    # The third silent day is the first whose three recent days are all silent. Back at the
    # old level from day 5 it re-arms, and the second silence is a new drop.
    assert emitted == [silence + 2, stop_again + 2]
    assert episode == Episode(True, stop_again)


def test_silence_fires_once_then_rearms_when_the_baseline_is_gone() -> None:
    emitted, episode = simulate(silent_from(MONDAY, steady(200)), MONDAY - 60, MONDAY + 60)
    assert emitted == [MONDAY + 2]
    # After four silent weeks nothing is expected any more: the episode is over, and a new
    # drop needs new usage to fall from.
    assert episode == CLOSED


def test_partial_recovery_below_the_rearm_ratio_keeps_the_episode() -> None:
    # Back at half the old level two days after the drop: recent reaches 300 of 600 expected
    # (0.5), then silence again. The baseline has not adapted yet, so no second event.
    def usage(day: int) -> int:
        if day < MONDAY:
            return 200
        return 100 if MONDAY + 3 <= day < MONDAY + 6 else 0

    emitted, _ = simulate(usage, MONDAY - 60, MONDAY + 8)
    assert emitted == [MONDAY + 2]


def test_low_volume_accounts_never_fire() -> None:
    emitted, _ = simulate(silent_from(MONDAY, steady(33)), MONDAY - 60, MONDAY + 60)
    assert emitted == []


@given(st.lists(st.integers(0, 10**6), min_size=16, max_size=16))
def test_new_accounts_never_fire(usage: list[int]) -> None:
    """Whatever a new account does, nothing fires while its recent days start less than 14
    days after its first record (the last day simulated has 13 days of history)."""
    emitted, _ = simulate(lambda day: usage[day - MONDAY], MONDAY, MONDAY + 15)
    assert emitted == []


def test_history_is_age_not_busy_days() -> None:
    # Busy for five days, then silent: judged once the account is old enough, the silence
    # is a drop against the busy days in its baseline.
    emitted, _ = simulate(silent_from(MONDAY + 5, steady(10**6)), MONDAY, MONDAY + 60)
    assert emitted == [MONDAY + 16]


@st.composite
def noisy_weekly(draw: st.DrawFn) -> tuple[Usage, int]:
    """A weekly profile (some days may be zero) with up to ±20% noise on every day."""
    profile = draw(st.lists(st.integers(0, 10**6), min_size=7, max_size=7))
    history = draw(st.integers(1, 60))
    noise = draw(
        st.lists(st.integers(-200, 200), min_size=history + 40, max_size=history + 40)
    )  # per-mille

    def usage(day: int) -> Decimal:
        base = profile[weekday(day)]
        return Decimal(base) * (1000 + noise[(day - MONDAY) % len(noise)]) / 1000

    return usage, history


@given(noisy_weekly())
def test_noise_within_twenty_percent_never_fires(series: tuple[Usage, int]) -> None:
    usage, history = series
    daily = DailyTotals()
    for day in range(MONDAY, MONDAY + history + 40):
        daily.add(day_start_ms(day), Decimal(usage(day)))
        a = assess(daily, day, RULES)
        assert not a.is_drop
        # 0.8 / 1.2 > 0.6: noise alone stays in re-arm territory, far from the drop line.
        assert recovered(a, RULES)


@given(st.integers(34, 10**9), st.integers(14, 60), st.integers(0, 6))
def test_silence_after_any_steady_history_fires_exactly_once(
    rate: int, history: int, offset: int
) -> None:
    start = MONDAY + offset
    silence = start + history
    emitted, episode = simulate(silent_from(silence, steady(rate)), start, silence + 40)
    assert emitted == [silence + 2]
    assert episode == CLOSED


# --- episodes ------------------------------------------------------------------------------


def assessment(recent: int, expected: int, *, eligible: bool = True) -> Assessment:
    is_drop = eligible and Fraction(recent) <= Fraction(3, 10) * expected
    return Assessment(
        recent_days=(MONDAY - 2, MONDAY - 1, MONDAY),
        recent_total=Decimal(recent),
        expected_total=Decimal(expected),
        ratio=Decimal(recent) / expected if expected else None,
        history_days=30,
        eligible=eligible,
        is_drop=is_drop,
        expected_exact=Fraction(expected),
    )


def test_a_drop_opens_an_episode_and_emits_once() -> None:
    emit, episode = step(CLOSED, assessment(0, 600), RULES)
    assert emit
    assert episode == Episode(True, MONDAY - 2)
    # The same day judged again (a restart) or a later drop: nothing more.
    assert step(episode, assessment(0, 600), RULES) == (False, episode)
    assert step(episode, assessment(100, 600), RULES) == (False, episode)


def test_no_drop_and_no_episode_is_quiet() -> None:
    assert step(CLOSED, assessment(500, 600), RULES) == (False, CLOSED)
    assert step(CLOSED, assessment(0, 600, eligible=False), RULES) == (False, CLOSED)


@pytest.mark.parametrize(("recent", "closes"), [(359, False), (360, True), (600, True)])
def test_episode_rearms_at_sixty_percent(recent: int, closes: bool) -> None:
    episode = Episode(True, MONDAY - 9)
    assert step(episode, assessment(recent, 600), RULES) == (False, CLOSED if closes else episode)


def test_an_assessment_that_is_a_drop_never_rearms() -> None:
    # With a re-arm ratio below the drop line, a drop is not a recovery.
    rules = DropRules(rearm_ratio=Decimal("0.1"))
    episode = Episode(True, MONDAY - 9)
    assert step(episode, assessment(100, 600), rules) == (False, episode)
    assert step(episode, assessment(181, 600), rules) == (False, CLOSED)


def test_episode_json_and_invariant() -> None:
    for episode in (CLOSED, Episode(True, MONDAY)):
        assert Episode.from_json(orjson.loads(orjson.dumps(episode.to_json()))) == episode
    with pytest.raises(ValueError):
        Episode(True, None)
    with pytest.raises(ValueError):
        Episode(False, MONDAY)


# --- projection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent", "days", "remaining", "to_date", "projected"),
    [
        ("30", 3, 10, "500", "600"),
        ("0", 3, 20, "1234.5", "1234.5"),
        ("30", 3, Decimal("2.5"), "0", "25"),
        ("10", 3, 1, "0", "3.333333333333333333333333333"),
        ("10", 3, 0, "7", "7"),
    ],
)
def test_new_pace_projection(
    recent: str, days: int, remaining: Decimal | int, to_date: str, projected: str
) -> None:
    result = new_pace_period_projection(Decimal(recent), days, remaining, Decimal(to_date))
    assert result == Decimal(projected)


def test_new_pace_projection_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="recent_days"):
        new_pace_period_projection(Decimal(1), 0, 1, Decimal(0))
    with pytest.raises(ValueError, match="remaining"):
        new_pace_period_projection(Decimal(1), 3, -1, Decimal(0))
