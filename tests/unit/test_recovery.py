"""Usage recovered (contract 3.3): the end of an announced drop episode, once, with its ids."""

from __future__ import annotations

import hashlib
from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.accounts import Status
from domain.intake.daily import CLOSED, AccountDaily, Episode
from domain.intake.usage import AccountTotals
from domain.moments.evaluation import evaluate_account
from domain.plans.periods import day_start_ms, day_to_date
from domain.wording.events import Evaluation, Standing, Wording, recovered_event
from tests.schema import assert_valid
from tests.unit.test_evaluation import (
    CATALOG,
    DAY,
    DAY_MS,
    FIRST_RECENT,
    GRACE_MS,
    MINUTE_MS,
    RULES,
    TEMPLATES,
    D,
    plan,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run(daily: AccountDaily, status: Status, day: int, plan_id: str = "starter") -> list[Any]:
    moments, _ = evaluate_account(
        "acct-1",
        daily,
        plan(plan_id, status),
        AccountTotals(),
        day,
        rules=RULES,
        catalog=CATALOG,
        templates=TEMPLATES,
        now_ms=day_start_ms(day + 1) + GRACE_MS,
        arrived_ms=0,
    )
    return [m.payload for m in moments]


def test_episodes_keep_whether_their_drop_was_sent() -> None:
    for episode in (CLOSED, Episode(True, 20000), Episode(True, 20000, announced=False)):
        assert Episode.from_json(episode.to_json()) == episode
    assert Episode.from_json(20000) == Episode(True, 20000, announced=True)  # stored before


# --- The oracle: the contract's rules on exact fractions, written out independently --------


def oracle(
    rates: list[int], first: int, statuses: list[Status], start: int
) -> list[tuple[int, str, str]]:
    """(day, kind, first recent day of the drop) of every event the rules call for, with
    ``rates`` used from day ``first`` on and days evaluated from ``start``, one a status."""
    used = {first + i: r for i, r in enumerate(rates) if r}
    first_day = min(used) if used else None
    out: list[tuple[int, str, str]] = []
    opened: tuple[int, bool] | None = None  # (first recent day, drop sent)
    for i, status in enumerate(statuses):
        day = start + i
        recent_days = [day - 2, day - 1, day]
        recent = Fraction(sum(used.get(d, 0) for d in recent_days))
        expected = Fraction(0)
        for d in recent_days:
            base = [used.get(d - 7 * k, 0) for k in range(1, 5)]
            base = [
                v for k, v in enumerate(base, 1) if first_day is not None and d - 7 * k >= first_day
            ]
            if base:
                expected += Fraction(sum(base), len(base))
        history = 0 if first_day is None else max(0, recent_days[0] - first_day)
        drop = history >= 14 and expected >= 100 and recent <= Fraction(3, 10) * expected
        back = recent >= Fraction(6, 10) * expected
        if opened is not None:
            if not drop and back:
                if opened[1] and status != "cancelled" and recent > 0:
                    out.append((day, "usage-recovered", day_to_date(opened[0]).isoformat()))
                opened = None
        elif drop:
            opened = (recent_days[0], status == "active")
            if status == "active":
                out.append((day, "sudden-drop", day_to_date(recent_days[0]).isoformat()))
    return out


@settings(max_examples=150)
@given(
    rates=st.lists(st.sampled_from([0, 0, 50, 400, 1000]), min_size=50, max_size=50),
    statuses=st.lists(
        st.sampled_from(["active", "active", "paused", "cancelled"]), min_size=30, max_size=30
    ),
)
def test_recoveries_follow_their_sent_drops_once(rates: list[int], statuses: list[Status]) -> None:
    first = DAY - 49
    daily = AccountDaily()
    for i, rate in enumerate(rates):
        if rate:
            daily.add("api_calls", day_start_ms(first + i) + DAY_MS // 2, D(rate))
    evaluated_from = first + 20
    got: list[tuple[int, str, str]] = []
    drop_ids: dict[str, str] = {}
    for i, status in enumerate(statuses):
        day = evaluated_from + i
        for event in run(daily, status, day):
            assert_valid(event)
            kind = event["kind"]
            if kind == "sudden-drop":
                first_recent = day_to_date(day - 2).isoformat()
                drop_ids[first_recent] = event["event_id"]
                got.append((day, kind, first_recent))
                continue
            dropped_on = event["drop"]["dropped_on"]
            assert event["drop"]["drop_event_id"] == drop_ids[dropped_on]
            assert event["event_id"] == sha(f"usage-recovered|acct-1|api_calls|{dropped_on}")
            want = "resume" if status == "paused" else "none"
            assert event["suggestion"]["action"] == want
            got.append((day, kind, dropped_on))
    assert got == oracle(rates, first, statuses, evaluated_from)


def test_a_silence_that_empties_the_baseline_closes_the_episode_without_a_welcome() -> None:
    daily = AccountDaily()
    for day in range(DAY - 40, FIRST_RECENT):
        daily.add("api_calls", day_start_ms(day) + DAY_MS // 2, D(200))
    assert [e["kind"] for e in run(daily, "active", DAY)] == ["sudden-drop"]
    # Five silent weeks on, nothing is expected any more: the episode ends, nobody is back.
    assert run(daily, "active", DAY + 35) == []
    assert daily.episode("api_calls") == CLOSED


@pytest.mark.parametrize("plan_id", ["free", "starter", "pro"])  # no lower, middle, no higher
@pytest.mark.parametrize("paused", [True, False])
@pytest.mark.parametrize("metric", ["api_calls", "events"])  # limited, unlimited
def test_every_recovery_template_reads_well(plan_id: str, paused: bool, metric: str) -> None:
    found = CATALOG.plan(plan_id)
    assert found is not None
    limit = found.limit(metric)
    event = recovered_event(
        Wording(TEMPLATES, CATALOG),
        Standing(
            account_id="acct-1",
            plan=found,
            metric=metric,
            period=_march(),
            total=D(1234),
            limit=limit,
        ),
        Evaluation(
            recent_days=3,
            recent_total=D(2900),
            expected_total=D(3000),
            ratio=D(2900) / D(3000),
            last_active_at_ms=day_start_ms(DAY) + 5 * MINUTE_MS,
            evaluated_at_ms=day_start_ms(DAY + 1),
        ),
        date(2026, 3, 1),
        day_start_ms(DAY + 1) + 1,
        paused=paused,
    )
    assert_valid(event)
    assert event["suggestion"]["action"] == ("resume" if paused else "none")
    assert event["drop"]["ratio"] == 0.966666
    assert event["usage"]["limit"] == (None if limit is None else int(limit))
    for text in (
        event["message"]["title"],
        event["message"]["body"],
        event["suggestion"]["rationale"],
    ):
        assert text and "None" not in text and "{" not in text and "}" not in text
    assert "96% of your usual" in event["message"]["body"]
    assert "March 1, 2026" in event["message"]["body"]


def _march() -> Any:
    from domain.intake.accounts import period_of

    return period_of(plan(), day_start_ms(DAY), CATALOG)
