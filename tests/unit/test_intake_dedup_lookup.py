"""The dedup lookup of a batch: one ``seen_many`` call gives what ``seen_at`` per key gives.

``run_intake`` parses the whole batch before it judges any record, so that the worker reads
every dedup key at once (one RocksDB multi-get); these tests pin that path against the
per-key one, and the order of dead letters across the two passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.intake.batch import IntakeResult, IntakeState, RawRecord, dedup_key, run_intake
from domain.intake.usage import AccountTotals
from tests.unit.factories import DAY_MS, NOW, Raws
from tests.unit.test_intake import CATALOG, FEB, MARCH, RULES, plan

PLANS = {"acct-1": plan("acct-1"), "acct-2": plan("acct-2")}
SEEN_BEFORE = {
    dedup_key("acct-2", "old"): NOW - DAY_MS,  # within the horizon: a duplicate
    dedup_key("acct-1", "older"): NOW - 8 * DAY_MS,  # past it: counts again
}


def run(
    batch: list[RawRecord], totals: Mapping[str, str], many: bool
) -> tuple[IntakeResult, list[str]]:
    """Run ``batch`` with ``seen_many`` (``many``) or ``seen_at`` only; the keys asked for."""
    asked: list[str] = []

    def seen_at(key: str) -> int | None:
        asked.append(key)
        return SEEN_BEFORE.get(key)

    def seen_many(keys: Sequence[str]) -> dict[str, int]:
        asked.extend(keys)
        return {k: SEEN_BEFORE[k] for k in keys if k in SEEN_BEFORE}

    def totals_of(account: str) -> AccountTotals:
        held = AccountTotals()
        if account in totals:
            held.add("api_calls", MARCH, Decimal(totals[account]))
        return held

    state = IntakeState(
        plan_of=PLANS.get,
        totals_of=totals_of,
        seen_at=seen_at,
        seen_many=seen_many if many else None,
    )
    result = run_intake(batch, state, now_ms=NOW, rules=RULES, catalog=CATALOG)
    return result, asked


def decided(result: IntakeResult) -> object:
    """Everything a batch decided, comparable."""
    return (
        dict(result.outcomes),
        [(raw.offset, letter) for raw, letter in result.dead_letters],
        [(account, raw.offset) for account, raw in result.rekey],
        [
            (a.record, a.raw.offset, a.plan, a.change.before, a.change.after)
            for a in result.accepted
        ],
        {account: totals.to_json() for account, totals in result.totals.items()},
        result.seen,
    )


KINDS = ("valid", "invalid", "same_id", "late", "unknown", "rekey", "seen_before", "expired")


@given(
    kinds=st.lists(st.sampled_from(KINDS), max_size=30),
    quantities=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=2**53 + 2),
            st.floats(min_value=0, max_value=1e26, allow_nan=False),
        ),
        min_size=30,
        max_size=30,
    ),
    near_limit=st.booleans(),
)
def test_one_lookup_per_batch_decides_as_one_per_key(
    kinds: list[str], quantities: list[int | float], near_limit: bool
) -> None:
    raws = Raws()
    batch: list[RawRecord] = []
    for index, kind in enumerate(kinds):
        account = ("acct-1", "acct-2")[index % 2]
        q = quantities[index]
        if kind == "valid":
            batch.append(raws.usage(account_id=account, quantity=q))
        elif kind == "invalid":
            batch.append(raws.usage(account_id=account, quantity=-1))
        elif kind == "same_id":
            batch.append(raws.usage(account_id="acct-1", record_id="dup", quantity=q))
        elif kind == "late":
            batch.append(raws.usage(account_id=account, timestamp=FEB.start_ms))
        elif kind == "unknown":
            batch.append(raws.usage(account_id="nobody", quantity=q))
        elif kind == "rekey":
            batch.append(raws.usage(account_id=account, key=None))
        elif kind == "seen_before":
            batch.append(raws.usage(account_id="acct-2", record_id="old"))
        else:
            batch.append(raws.usage(account_id="acct-1", record_id="older", quantity=q))
    # Near 1e25 a float quantity can make a total inexact: dead letters from both passes.
    totals = {"acct-1": "1e25"} if near_limit else {}

    by_key, asked_by_key = run(batch, totals, many=False)
    at_once, asked_at_once = run(batch, totals, many=True)

    assert decided(at_once) == decided(by_key)
    # Each key asked for once, and only the keys the per-key path asked for.
    assert len(asked_at_once) == len(set(asked_at_once))
    assert set(asked_at_once) == set(asked_by_key)


def test_dead_letters_keep_the_order_of_their_records() -> None:
    raws = Raws()
    batch = [
        raws.usage(quantity=0.001),  # 1e25 + 0.001 rounds: refused while folding
        raws.value(b"not json"),  # refused by the parser
        raws.usage(quantity=-1),
        raws.usage(quantity=0.002),
    ]
    result, _ = run(batch, {"acct-1": "1e25"}, many=True)
    assert [raw.offset for raw, _ in result.dead_letters] == [raw.offset for raw in batch]
    assert result.outcomes["invalid"] == 4
    assert result.totals["acct-1"].total("api_calls", MARCH) == Decimal("1e25")
