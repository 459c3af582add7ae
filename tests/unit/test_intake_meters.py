"""The intake under each aggregation (contract 1.4), against an oracle.

Records of one account arrive in any order, with repeats (the same record_id again) and in
batches of any size, the state written back and read again between batches as the worker
does (JSON round trip included). Whatever the order and the split, the period values, the
day values and the lifetime totals equal those of a naive oracle over the distinct records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.accounts import AccountPlan
from domain.intake.batch import IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.daily import AccountDaily
from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import AccountTotals
from domain.plans.catalog import Aggregation, parse_catalog
from domain.plans.periods import Period, utc_day
from tests.unit.factories import DAY_MS, HOUR_MS, ms

D = Decimal
CATALOG = parse_catalog(
    """
[metrics]
calls = "calls"
logins = { unit = "logins", aggregation = "count" }
storage = { unit = "GB", aggregation = "max" }
seats = { unit = "seats", aggregation = "latest" }
users = { unit = "users", aggregation = "unique_count", unique = "user_id" }
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { calls = 100, seats = 3, users = 5 }
""",
    "test-plans.toml",
)
RULES = IntakeRules(
    max_clock_skew_ms=5 * 60_000,
    dedup_horizon_ms=60 * DAY_MS,
    late_grace_ms=HOUR_MS,
    daily_retention_days=35,
)
NOW = ms("2026-03-20T12:00:00")
FEB = Period.from_ms(ms("2026-02-01T00:00:00"), ms("2026-03-01T00:00:00"))
MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))
PLAN = AccountPlan(
    account_id="acct-1",
    plan_id="starter",
    anchor_ms=None,
    status="active",
    limits={},
    updated_at_ms=NOW - 90 * DAY_MS,
)
# Timestamps from Feb 20 to Mar 20: two periods (Feb is late by now: daily values only), and
# about thirty days, some sharing a timestamp (ties for latest).
_STAMPS = st.integers(0, 28 * 4).map(lambda i: ms("2026-02-20T00:00:00") + i * 6 * HOUR_MS)


@dataclass(frozen=True)
class Rec:
    record_id: str
    ts_ms: int
    quantity: int
    user: str


_RECORDS = st.lists(
    st.builds(
        Rec,
        st.sampled_from([f"r{i}" for i in range(12)]),  # few ids: repeats are common
        _STAMPS,
        st.integers(0, 9),
        st.sampled_from(["u1", "u2", "u3", "u4"]),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Store:
    """The tables as JSON, read and written around every batch like the worker's store."""

    totals: dict[str, Any] | None = None
    daily: dict[str, Any] | None = None
    lifetime: dict[str, Any] | None = None
    seen: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)

    def run(self, metric: str, batch: list[Rec], offset: int) -> None:
        raws = [
            RawRecord(
                b"acct-1",
                orjson.dumps(
                    {
                        "record_id": r.record_id,
                        "account_id": "acct-1",
                        "metric": metric,
                        "quantity": r.quantity,
                        "timestamp": r.ts_ms,
                        "attributes": {"user_id": r.user},
                    }
                ),
                "usage",
                0,
                offset + i,
                NOW,
            )
            for i, r in enumerate(batch)
        ]
        result = run_intake(
            raws,
            IntakeState(
                plan_of=lambda _: PLAN,
                totals_of=lambda _: AccountTotals.from_json(self.totals),
                seen_at=self.seen.get,
                daily_of=lambda _: AccountDaily.from_json(self.daily),
                lifetime_of=lambda _: AccountLifetime.from_json(self.lifetime),
                distinct_held=lambda keys: {k for k in keys if k in self.distinct},
            ),
            now_ms=NOW,
            rules=RULES,
            catalog=CATALOG,
        )
        assert not result.dead_letters
        for totals in result.totals.values():
            self.totals = orjson.loads(orjson.dumps(totals.to_json()))
        for daily in result.daily.values():
            self.daily = orjson.loads(orjson.dumps(daily.to_json()))
        for lifetime in result.lifetime.values():
            self.lifetime = orjson.loads(orjson.dumps(lifetime.to_json()))
        self.seen.update(result.seen)
        self.distinct.update(result.distinct)


def _value(aggregation: Aggregation, records: list[Rec], earlier: list[Rec]) -> Decimal | None:
    """The oracle: the value of ``records`` (arrival order) under ``aggregation``; a gauge
    without a reading of its own carries the latest of ``earlier``."""
    if aggregation == "sum":
        return D(sum(r.quantity for r in records)) if records else None
    if aggregation == "count":
        return D(len(records)) if records else None
    if aggregation == "max":
        return D(max(r.quantity for r in records)) if records else None
    if aggregation == "unique_count":
        return D(len({r.user for r in records})) if records else None
    readings = records or earlier
    if not readings:
        return None
    latest = max(r.ts_ms for r in readings)
    return D([r for r in readings if r.ts_ms == latest][-1].quantity)  # a tie: the last read


@settings(max_examples=60)
@given(
    st.sampled_from(["calls", "logins", "storage", "seats", "users"]),
    _RECORDS,
    st.lists(st.integers(1, 6), min_size=1, max_size=8),
)
def test_values_equal_the_oracle_whatever_the_order_and_batches(
    metric: str, records: list[Rec], cuts: list[int]
) -> None:
    aggregation = CATALOG.aggregation(metric)
    store = Store()
    at = 0
    for size in [*cuts, len(records)]:
        batch = records[at : at + size]
        if batch:
            store.run(metric, batch, at)
        at += size
    # The oracle's records: the first of each record_id (later ones are duplicates).
    first: dict[str, Rec] = {}
    for r in records:
        first.setdefault(r.record_id, r)
    counted = list(first.values())

    totals = AccountTotals.from_json(store.totals)
    march = [r for r in counted if MARCH.start_ms <= r.ts_ms]
    feb = [r for r in counted if r.ts_ms < MARCH.start_ms]
    # February is over (late): only March's value is kept, a gauge carrying February's.
    want = _value(aggregation, march, [])
    if aggregation == "latest" and not march:
        want = None  # nothing folded into March, and late February readings carry nothing
    got = totals.period_values(MARCH).get(metric)
    assert got == want
    assert totals.total(metric, MARCH) == (want or D(0))
    assert FEB not in totals.periods.get(metric, {})
    assert not feb or not any(k == (FEB.start_ms, FEB.end_ms) for k in totals.periods)

    daily = AccountDaily.from_json(store.daily)
    history = daily.metrics.get(metric)
    days = sorted({utc_day(r.ts_ms) for r in counted})
    for day in range(days[0], utc_day(NOW) + 1):
        on_day = [r for r in counted if utc_day(r.ts_ms) == day]
        before = [r for r in counted if utc_day(r.ts_ms) < day]
        expected = _value(aggregation, on_day, before) or D(0)
        assert history is not None
        assert history.total(day) == expected, (day, on_day)

    lifetime = AccountLifetime.from_json(store.lifetime)
    if aggregation in ("sum", "count"):
        assert lifetime.total(metric) == _value(aggregation, counted, [])
    else:
        assert lifetime.total(metric) == 0  # no lifetime for max, latest, unique_count
