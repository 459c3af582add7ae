"""The usage path of one batch (contract 1.1, 2, 3.1): one outcome per record, exact totals."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.intake.accounts import AccountPlan
from domain.intake.batch import (
    IntakeResult,
    IntakeRules,
    IntakeState,
    RawRecord,
    dedup_key,
    run_intake,
)
from domain.intake.usage import AccountTotals
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import Period
from tests.unit.factories import DAY_MS, HOUR_MS, NOW, Raws, ms

D = Decimal
CATALOG_TOML = """
[defaults]
period = "month"
[metrics]
api_calls = "API calls"
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { api_calls = 100 }
[[plans]]
id = "growth"
name = "Growth"
rank = 2
price = 79
limits = { api_calls = 1000 }
"""
CATALOG: Catalog = parse_catalog(CATALOG_TOML, "test-plans.toml")

RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS
)


MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))
FEB = Period.from_ms(ms("2026-02-01T00:00:00"), ms("2026-03-01T00:00:00"))


def plan(account: str = "acct-1", anchor: str | None = None, **limits: str) -> AccountPlan:
    return AccountPlan(
        account_id=account,
        plan_id="starter",
        anchor_ms=None if anchor is None else ms(anchor),
        status="active",
        limits={m: D(v) for m, v in limits.items()},
        updated_at_ms=NOW - DAY_MS,
    )


@dataclass
class State:
    """Dict-backed lookups standing in for the accounts, totals and dedup tables."""

    plans: dict[str, AccountPlan] = field(default_factory=dict)
    totals: dict[str, AccountTotals] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def run(self, batch: Iterable[RawRecord], now_ms: int = NOW) -> IntakeResult:
        result = run_intake(
            batch,
            IntakeState(
                plan_of=self.plans.get,
                totals_of=lambda a: AccountTotals.from_json(
                    self.totals[a].to_json() if a in self.totals else None
                ),
                seen_at=self.seen.get,
            ),
            now_ms=now_ms,
            rules=RULES,
            catalog=CATALOG,
        )
        # Write back, as the agent does.
        self.totals.update(result.totals)
        self.seen.update(result.seen)
        return result


@pytest.fixture
def make_state() -> Callable[..., State]:
    def make(*plans: AccountPlan) -> State:
        return State(plans={p.account_id: p for p in plans})

    return make


def only(result: IntakeResult) -> str:
    (outcome,) = [o for o, n in result.outcomes.items() if n]
    assert sum(result.outcomes.values()) == 1
    return outcome


# --- single outcomes ------------------------------------------------------------------------


def test_a_valid_record_is_accepted_and_totalled(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    result = state.run([Raws().usage(quantity=7)])
    assert only(result) == "accepted"
    (accepted,) = result.accepted
    assert accepted.plan == plan()
    assert (accepted.change.before, accepted.change.after) == (D(0), D(7))
    assert accepted.change.period == MARCH
    assert result.totals["acct-1"].total("api_calls", MARCH) == D(7)
    assert result.seen == {dedup_key("acct-1", accepted.record.record_id): NOW}
    assert not result.dead_letters and not result.rekey


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        orjson.dumps({"record_id": "r", "account_id": "acct-1", "metric": "api_calls"}),
        orjson.dumps(
            {"record_id": "r", "account_id": "a", "metric": "x", "quantity": -1, "timestamp": NOW}
        ),
        orjson.dumps(
            {"record_id": "r", "account_id": "a", "metric": "x", "quantity": 1, "timestamp": "y"}
        ),
        orjson.dumps(
            {
                "record_id": "r",
                "account_id": "a",
                "metric": "x",
                "quantity": 1,
                "timestamp": NOW + RULES.max_clock_skew_ms + 1,
            }
        ),
    ],
)
def test_invalid_records_are_dead_lettered_with_their_origin(
    make_state: Callable[..., State], value: bytes | None
) -> None:
    raws = Raws(topic="usage-records", partition=5, next_offset=42)
    result = make_state(plan()).run([raws.value(value)])
    assert only(result) == "invalid"
    ((raw, letter),) = result.dead_letters
    assert raw.offset == 42
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("usage-records", 5, 42)
    assert letter["error"]
    assert letter["at"] == "2026-03-15T12:00:00Z"
    assert not result.accepted and not result.seen and not result.totals


def test_a_dead_letter_says_which_field_is_wrong(make_state: Callable[..., State]) -> None:
    result = make_state(plan()).run([Raws().usage(quantity=-3)])
    ((_, letter),) = result.dead_letters
    assert letter["error"].startswith("quantity")
    assert '"quantity":-3' in (letter["raw"] or "")


def test_a_timestamp_just_within_the_skew_is_valid(make_state: Callable[..., State]) -> None:
    result = make_state(plan()).run([Raws().usage(timestamp=NOW + RULES.max_clock_skew_ms)])
    assert only(result) == "accepted"


def test_attributes_are_ignored(make_state: Callable[..., State]) -> None:
    result = make_state(plan()).run([Raws().usage(attributes={"region": [1, None]})])
    assert only(result) == "accepted"


# --- re-keying ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, b"", b"acct-2", b"ACCT-1", b"acct-1 "])
def test_records_keyed_other_than_by_account_are_rekeyed(
    make_state: Callable[..., State], key: bytes | None
) -> None:
    raws = Raws()
    first = raws.usage(key=key, record_id="r-x")
    again = raws.usage(key=key, record_id="r-x")
    state = make_state(plan())
    result = state.run([first, again])
    assert sum(result.outcomes.values()) == 0
    assert result.rekey == [("acct-1", first), ("acct-1", again)]  # not deduped here
    assert not result.seen and not result.totals and not result.accepted


def test_a_rekeyed_record_is_counted_once_back_under_its_account(
    make_state: Callable[..., State],
) -> None:
    raws = Raws()
    state = make_state(plan())
    ((_, raw),) = state.run([raws.usage(key=None, record_id="r-x")]).rekey
    back = RawRecord(b"acct-1", raw.value, "usage-moments-usage-rekeyed", 3, 0, raw.arrived_ms)
    assert only(state.run([back])) == "accepted"
    assert only(state.run([back])) == "duplicate"


# --- duplicates -----------------------------------------------------------------------------


def test_duplicates_within_a_batch_count_once(make_state: Callable[..., State]) -> None:
    raws = Raws()
    batch = [raws.usage(record_id="r-1", quantity=5) for _ in range(3)]
    result = make_state(plan()).run(batch)
    assert result.outcomes == {"accepted": 1, "duplicate": 2}
    assert result.totals["acct-1"].total("api_calls", MARCH) == D(5)


def test_same_record_id_of_other_accounts_is_not_a_duplicate(
    make_state: Callable[..., State],
) -> None:
    raws = Raws()
    batch = [raws.usage(record_id="r-1", account_id=a) for a in ("acct-1", "acct-2")]
    result = make_state(plan("acct-1"), plan("acct-2")).run(batch)
    assert result.outcomes == {"accepted": 2}


def test_ids_holding_the_separator_do_not_make_other_accounts_duplicates(
    make_state: Callable[..., State],
) -> None:
    # Joined with the separator alone, both would be "a\x1fb\x1fc".
    raws = Raws()
    state = make_state(plan("a\x1fb"), plan("a"))
    first = state.run([raws.usage(account_id="a\x1fb", record_id="c")])
    second = state.run([raws.usage(account_id="a", record_id="b\x1fc")])
    assert (first.outcomes, second.outcomes) == ({"accepted": 1}, {"accepted": 1})
    assert len(state.seen) == 2


ids = st.text(alphabet=st.sampled_from("ab:1\x1f"), max_size=6)


@given(head=ids, middle=ids, tail=ids, separator=st.sampled_from(["\x1f", ":", "1", "a"]))
def test_dedup_keys_of_two_ways_to_split_the_same_text_differ(
    head: str, middle: str, tail: str, separator: str
) -> None:
    # (head+sep+middle, tail) and (head, middle+sep+tail): the same characters, other ids.
    assert dedup_key(head + separator + middle, tail) != dedup_key(head, middle + separator + tail)


@pytest.mark.parametrize(
    ("age_ms", "outcome"),
    [
        (0, "duplicate"),
        (HOUR_MS, "duplicate"),
        (RULES.dedup_horizon_ms - 1, "duplicate"),
        (RULES.dedup_horizon_ms + 1, "accepted"),
        (30 * DAY_MS, "accepted"),
    ],
)
def test_duplicates_across_batches_within_the_horizon(
    make_state: Callable[..., State], age_ms: int, outcome: str
) -> None:
    state = make_state(plan())
    state.seen[dedup_key("acct-1", "r-1")] = NOW - age_ms
    result = state.run([Raws().usage(record_id="r-1")])
    assert only(result) == outcome
    if outcome == "accepted":
        assert result.seen[dedup_key("acct-1", "r-1")] == NOW  # the horizon starts again


def test_a_repeat_after_the_horizon_counts_again(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    raws = Raws()
    assert only(state.run([raws.usage(record_id="r-1", quantity=2)])) == "accepted"
    later = NOW + RULES.dedup_horizon_ms - 1
    record = raws.usage(record_id="r-1", quantity=2, timestamp=later - HOUR_MS)
    assert only(state.run([record], now_ms=later)) == "duplicate"
    later = NOW + RULES.dedup_horizon_ms + 1
    record = raws.usage(record_id="r-1", quantity=2, timestamp=later - HOUR_MS)
    assert only(state.run([record], now_ms=later)) == "accepted"
    assert state.totals["acct-1"].total("api_calls", MARCH) == D(4)


# --- late records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after_end_ms", "outcome"),
    [
        (0, "accepted"),
        (RULES.late_grace_ms - 1, "accepted"),
        (RULES.late_grace_ms, "accepted"),  # exactly at the grace: not yet late
        (RULES.late_grace_ms + 1, "late"),
        (2 * DAY_MS, "late"),
    ],
)
def test_late_is_period_end_plus_grace_before_now(
    make_state: Callable[..., State], after_end_ms: int, outcome: str
) -> None:
    result = make_state(plan()).run(
        [Raws().usage(timestamp=FEB.start_ms + DAY_MS)], now_ms=FEB.end_ms + after_end_ms
    )
    assert only(result) == outcome
    if outcome == "late":
        assert not result.accepted and "acct-1" not in result.totals


def test_exactly_at_the_grace_is_not_late(make_state: Callable[..., State]) -> None:
    now = FEB.end_ms + RULES.late_grace_ms
    result = make_state(plan()).run([Raws().usage(timestamp=FEB.end_ms - 1)], now_ms=now)
    assert only(result) == "accepted"
    assert result.accepted[0].change.period == FEB


def test_a_period_that_still_accepts_records_keeps_its_total(
    make_state: Callable[..., State],
) -> None:
    now = FEB.end_ms + RULES.late_grace_ms
    result = make_state(plan()).run(
        [Raws().usage(timestamp=FEB.end_ms - 1, quantity=9)], now_ms=now
    )
    assert result.outcomes == {"accepted": 1}
    assert result.totals["acct-1"].total("api_calls", FEB) == D(9)


def test_late_records_are_remembered_for_dedup(make_state: Callable[..., State]) -> None:
    raws = Raws()
    state = make_state(plan())
    old = FEB.start_ms
    assert only(state.run([raws.usage(record_id="r-old", timestamp=old)])) == "late"
    assert only(state.run([raws.usage(record_id="r-old", timestamp=old)])) == "duplicate"


def test_late_follows_the_accounts_billing_period(make_state: Callable[..., State]) -> None:
    # Anchored on the 20th: Feb 20 .. Mar 20 is still open on Mar 15, so a record of Feb 25
    # is not late, though the calendar month of February is over.
    state = make_state(plan(anchor="2025-01-20T00:00:00"))
    result = state.run([Raws().usage(timestamp=ms("2026-02-25T00:00:00"))])
    assert only(result) == "accepted"
    period = result.accepted[0].change.period
    assert (period.start_ms, period.end_ms) == (
        ms("2026-02-20T00:00:00"),
        ms("2026-03-20T00:00:00"),
    )


# --- unknown accounts -----------------------------------------------------------------------


def test_unknown_accounts_accumulate_in_calendar_months(make_state: Callable[..., State]) -> None:
    state = make_state()  # no plans
    raws = Raws()
    result = state.run([raws.usage(quantity=3), raws.usage(quantity=4)])
    assert result.outcomes == {"unknown_account": 2}
    assert [a.plan for a in result.accepted] == [None, None]
    assert [a.change.period for a in result.accepted] == [MARCH, MARCH]
    assert result.totals["acct-1"].total("api_calls", MARCH) == D(7)


def test_an_unknown_account_record_of_a_closed_month_is_late(
    make_state: Callable[..., State],
) -> None:
    result = make_state().run([Raws().usage(timestamp=FEB.start_ms)])
    assert only(result) == "late"


def test_a_plan_arriving_later_is_used_on_the_next_record(make_state: Callable[..., State]) -> None:
    state = make_state()
    raws = Raws()
    assert only(state.run([raws.usage()])) == "unknown_account"
    state.plans["acct-1"] = plan(anchor="2025-01-10T00:00:00")
    result = state.run([raws.usage()])
    assert only(result) == "accepted"
    period = result.accepted[0].change.period
    assert period.start_ms == ms("2026-03-10T00:00:00")


def test_the_plan_is_looked_up_once_per_account_and_batch(
    make_state: Callable[..., State],
) -> None:
    calls: list[str] = []
    state = make_state(plan())

    def plan_of(account: str) -> AccountPlan | None:
        calls.append(account)
        return state.plans.get(account)

    raws = Raws()
    run_intake(
        [raws.usage() for _ in range(5)],
        IntakeState(plan_of=plan_of, totals_of=lambda _: AccountTotals(), seen_at=lambda _: None),
        now_ms=NOW,
        rules=RULES,
        catalog=CATALOG,
    )
    assert calls == ["acct-1"]


# --- totals ---------------------------------------------------------------------------------


def test_totals_are_exact_decimals(make_state: Callable[..., State]) -> None:
    raws = Raws()
    result = make_state(plan()).run([raws.usage(quantity=0.1), raws.usage(quantity=0.2)])
    total = result.totals["acct-1"].total("api_calls", MARCH)
    assert total == D("0.3")
    assert [a.change.after for a in result.accepted] == [D("0.1"), D("0.3")]


def test_totals_continue_from_the_stored_state(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    raws = Raws()
    state.run([raws.usage(quantity=40)])
    result = state.run([raws.usage(quantity=45)])
    change = result.accepted[0].change
    assert (change.before, change.after) == (D(40), D(85))


def test_prune_drops_periods_ended_before_now_minus_grace(
    make_state: Callable[..., State],
) -> None:
    state = make_state(plan())
    stored = AccountTotals()
    jan = Period.from_ms(ms("2026-01-01T00:00:00"), FEB.start_ms)
    stored.add("api_calls", jan, D(1))
    stored.add("api_calls", MARCH, D(2))
    stored.add("storage_gb", FEB, D(3))
    state.totals["acct-1"] = stored
    result = state.run([Raws().usage(quantity=1)])
    totals = result.totals["acct-1"]
    assert totals.total("api_calls", MARCH) == D(3)
    assert totals.total("api_calls", jan) == D(0)
    assert "storage_gb" not in totals.periods


def test_prune_keeps_a_closed_period_within_the_grace(make_state: Callable[..., State]) -> None:
    state = make_state(plan())
    now = FEB.end_ms + RULES.late_grace_ms - 1
    raws = Raws()
    result = state.run([raws.usage(timestamp=FEB.end_ms - 1, quantity=2)], now_ms=now)
    assert result.totals["acct-1"].total("api_calls", FEB) == D(2)


# --- every record, one outcome --------------------------------------------------------------

KINDS = ("valid", "invalid", "duplicate", "late", "unknown", "rekey", "seen_before")


@given(
    kinds=st.lists(st.sampled_from(KINDS), max_size=40),
    quantities=st.lists(st.integers(min_value=0, max_value=10**6), min_size=40, max_size=40),
)
def test_every_record_ends_under_exactly_one_outcome(
    kinds: list[str], quantities: list[int]
) -> None:
    state = State(plans={"acct-1": plan("acct-1"), "acct-2": plan("acct-2")})
    state.seen[dedup_key("acct-2", "old")] = NOW - DAY_MS
    raws = Raws()
    batch: list[RawRecord] = []
    expected: dict[str, int] = {}
    accepted_total = {"acct-1": D(0), "acct-2": D(0), "nobody": D(0)}
    for index, kind in enumerate(kinds):
        account = ("acct-1", "acct-2")[index % 2]
        q = quantities[index]
        if kind == "valid":
            batch.append(raws.usage(account_id=account, quantity=q))
            outcome = "accepted"
            accepted_total[account] += q
        elif kind == "invalid":
            batch.append(raws.usage(account_id=account, quantity=-1 - q))
            outcome = "invalid"
        elif kind == "duplicate":
            batch.append(raws.usage(account_id="acct-1", record_id="dup", quantity=q))
            outcome = "duplicate" if "accepted-dup" in expected else "accepted"
            if outcome == "accepted":
                expected["accepted-dup"] = 1
                accepted_total["acct-1"] += q
        elif kind == "late":
            batch.append(raws.usage(account_id=account, timestamp=FEB.start_ms))
            outcome = "late"
        elif kind == "unknown":
            batch.append(raws.usage(account_id="nobody", quantity=q))
            outcome = "unknown_account"
            accepted_total["nobody"] += q
        elif kind == "rekey":
            batch.append(raws.usage(account_id=account, key=None))
            outcome = "rekey"
        else:
            batch.append(raws.usage(account_id="acct-2", record_id="old"))
            outcome = "duplicate"
        expected[outcome] = expected.get(outcome, 0) + 1
    expected.pop("accepted-dup", None)

    result = state.run(batch)

    assert sum(result.outcomes.values()) + len(result.rekey) == len(batch)
    assert {k: v for k, v in result.outcomes.items() if v} == {
        k: v for k, v in expected.items() if k != "rekey"
    }
    assert len(result.rekey) == expected.get("rekey", 0)
    assert len(result.dead_letters) == result.outcomes["invalid"]
    assert len(result.accepted) == result.outcomes["accepted"] + result.outcomes["unknown_account"]
    for account, total in accepted_total.items():
        got = result.totals[account].total("api_calls", MARCH) if account in result.totals else 0
        assert got == total


@pytest.mark.parametrize("value", [b"not json", orjson.dumps({"record_id": "r"})])
def test_a_refused_batch_leaves_no_reference_cycle(
    make_state: Callable[..., State], value: bytes
) -> None:
    """A refusal kept until its dead letter once held, through its traceback, the frame
    whose locals hold it: the whole batch then waited for the cyclic collector."""
    state = make_state(plan())
    raws = Raws()
    batch = [raws.usage(), raws.value(value), raws.usage()]
    gc.collect()
    gc.disable()
    try:
        result = state.run(batch)
        assert result.outcomes["invalid"] == 1
        del result
        assert gc.collect() == 0  # nothing unreachable: freed as the batch ended
    finally:
        gc.enable()
