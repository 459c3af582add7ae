"""Review of the meters (issue 18): inputs and histories that tried to break the intake.

- A catalog that turns a ``latest`` metric into a sum (or a count) between two runs: the
  gauge's cells start over, as every other change of aggregation does, and the state is
  still written (it was a ``KeyError`` in ``AccountTotals.to_json``: the worker's step died on
  every retry of the record).
- A CloudEvent whose readings, folded one after the other, would make a total inexact at
  the second one: refused whole, nothing of it folded (it was folded in part: the check
  before the fold added the readings' quantities first, and that sum rounds).
- ``run_intake`` over arbitrary JSON values and headers for a catalog that uses every
  aggregation and meters: it never raises, every record ends under exactly one outcome (or
  is forwarded), and the state it returns is written and read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from domain.intake.accounts import AccountPlan
from domain.intake.batch import IntakeResult, IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.daily import AccountDaily
from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import AccountTotals
from domain.plans.catalog import Catalog, parse_catalog
from domain.plans.periods import Period
from tests.unit.factories import DAY_MS, HOUR_MS, ms

D = Decimal
NOW = ms("2026-03-20T12:00:00")
MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))
APRIL = Period.from_ms(ms("2026-04-01T00:00:00"), ms("2026-05-01T00:00:00"))
RULES = IntakeRules(max_clock_skew_ms=300_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS)
_PLANS = """
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { calls = 100, seats = 3, users = 5 }
"""
PLAN = AccountPlan(
    account_id="acct-1",
    plan_id="starter",
    anchor_ms=None,
    status="active",
    limits={},
    updated_at_ms=NOW - 30 * DAY_MS,
)


def _catalog(metrics: str, rest: str = "") -> Catalog:
    return parse_catalog(f"[metrics]\n{metrics}\n{_PLANS}\n{rest}", "test-plans.toml")


class _Store:
    """One account's tables as JSON, read before and written after every batch."""

    def __init__(self) -> None:
        self.totals: Any = None
        self.daily: Any = None
        self.lifetime: Any = None
        self.seen: dict[str, int] = {}
        self.distinct: dict[str, int] = {}

    def state(self) -> IntakeState:
        held: Callable[[Sequence[str]], set[str]] = lambda keys: {  # noqa: E731
            k for k in keys if k in self.distinct
        }
        return IntakeState(
            plan_of=lambda account: PLAN if account == "acct-1" else None,
            totals_of=lambda _: AccountTotals.from_json(self.totals),
            seen_at=self.seen.get,
            daily_of=lambda _: AccountDaily.from_json(self.daily),
            lifetime_of=lambda _: AccountLifetime.from_json(self.lifetime),
            distinct_held=held,
        )

    def run(self, raws: list[RawRecord], catalog: Catalog, now_ms: int = NOW) -> IntakeResult:
        result = run_intake(raws, self.state(), now_ms=now_ms, rules=RULES, catalog=catalog)
        self.write(result)
        return result

    def write(self, result: IntakeResult) -> None:
        for totals in result.totals.values():
            self.totals = orjson.loads(orjson.dumps(totals.to_json()))
        for daily in result.daily.values():
            self.daily = orjson.loads(orjson.dumps(daily.to_json()))
        for lifetime in result.lifetime.values():
            self.lifetime = orjson.loads(orjson.dumps(lifetime.to_json()))
        self.seen.update(result.seen)
        self.distinct.update(result.distinct)


def _record(record_id: str, metric: str, quantity: Any, timestamp: str, offset: int) -> RawRecord:
    value = {
        "record_id": record_id,
        "account_id": "acct-1",
        "metric": metric,
        "quantity": quantity,
        "timestamp": timestamp,
    }
    return RawRecord(b"acct-1", orjson.dumps(value), "usage", 0, offset, NOW)


# -- a gauge made a sum ------------------------------------------------------------------


def test_a_latest_metric_made_a_sum_starts_over_in_the_same_period() -> None:
    store = _Store()
    store.run(
        [_record("r1", "seats", 3, "2026-03-05T00:00:00Z", 0)],
        _catalog('seats = { unit = "seats", aggregation = "latest" }'),
    )
    result = store.run(
        [_record("r2", "seats", 2, "2026-03-06T00:00:00Z", 1)], _catalog('seats = "seats"')
    )
    assert result.outcomes == {"accepted": 1}
    # The gauge's reading means nothing to a sum: it starts over, as fold does on any other
    # change of aggregation (not 3 + 2).
    assert AccountTotals.from_json(store.totals).total("seats", MARCH) == D(2)
    assert store.totals == {"seats": {f"{MARCH.start_ms}:{MARCH.end_ms}": "2"}}


def test_a_latest_metric_made_a_count_is_written_in_a_new_period() -> None:
    store = _Store()
    store.run(
        [_record("r1", "seats", 3, "2026-03-05T00:00:00Z", 0)],
        _catalog('seats = { unit = "seats", aggregation = "latest" }'),
    )
    april = ms("2026-04-02T12:00:00")
    later = [
        RawRecord(r.key, r.value, r.topic, 0, 1, april)
        for r in [_record("r2", "seats", 2, "2026-04-02T00:00:00Z", 1)]
    ]
    result = store.run(
        later, _catalog('seats = { unit = "seats", aggregation = "count" }'), april
    )  # was: KeyError in AccountTotals.to_json, the step's write
    assert result.outcomes == {"accepted": 1}
    assert AccountTotals.from_json(store.totals).total("seats", APRIL) == D(1)
    assert AccountTotals.from_json(store.totals).total("seats", MARCH) == D(0)


# -- a CloudEvent folded in part ---------------------------------------------------------

_TWO_METERS = _catalog(
    'calls = "calls"',
    """
[[meters]]
event_type = "job"
metric = "calls"
value = "small"
[[meters]]
event_type = "job"
metric = "calls"
value = "big"
where = { kind = "x" }
""",
)


def _job(time: str, small: Any, big: Any) -> RawRecord:
    event = {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "/jobs",
        "type": "job",
        "subject": "acct-1",
        "time": time,
        "data": {"small": small, "big": big, "kind": "x"},
    }
    return RawRecord(b"acct-1", orjson.dumps(event), "usage", 0, 0, NOW)


def test_an_event_whose_second_reading_rounds_the_total_is_refused_whole() -> None:
    # 0.001 then 1e25: each quantity is exact, so is their rounded sum (1e25), but the
    # period total after the second reading (1e25 + 0.001) needs 29 digits.
    store = _Store()
    result = store.run([_job("2026-03-20T11:00:00Z", 0.001, 1e25)], _TWO_METERS)
    assert result.outcomes == {"invalid": 1}
    assert len(result.dead_letters) == 1
    assert not result.accepted
    assert AccountTotals.from_json(store.totals).total("calls", MARCH) == D(0)
    assert AccountLifetime.from_json(store.lifetime).total("calls") == D(0)
    assert not AccountDaily.from_json(store.daily).metrics


def test_a_late_event_whose_second_reading_rounds_the_lifetime_is_refused_whole() -> None:
    store = _Store()
    result = store.run([_job("2026-02-20T11:00:00Z", 0.001, 1e25)], _TWO_METERS)
    assert result.outcomes == {"invalid": 1}
    assert AccountLifetime.from_json(store.lifetime).total("calls") == D(0)
    assert not AccountDaily.from_json(store.daily).metrics
