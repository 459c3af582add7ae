"""CloudEvents through the intake (contract 1.4): one record, one outcome, several meters.

The parsing itself is tested in test_cloudevents.py; here a batch of events and plain
records is folded as the worker folds it: idempotency by (source, id), events no meter takes
counted ``unmetered``, an event feeding two metrics, refused whole when one reading would make
a total inexact, and re-keyed like a plain record when its Kafka key is not its subject.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from domain.intake.accounts import AccountPlan
from domain.intake.batch import IntakeResult, IntakeRules, IntakeState, RawRecord, run_intake
from domain.intake.daily import AccountDaily
from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import AccountTotals
from domain.plans.catalog import parse_catalog
from domain.plans.periods import Period
from tests.unit.factories import DAY_MS, HOUR_MS, ms

D = Decimal
NOW = ms("2026-03-20T12:00:00")
TIME = "2026-03-20T11:00:00Z"
MARCH = Period.from_ms(ms("2026-03-01T00:00:00"), ms("2026-04-01T00:00:00"))
CATALOG = parse_catalog(
    """
[metrics]
api_calls = "API calls"
tokens = "tokens"
active_users = { unit = "active users", aggregation = "unique_count", unique = "user" }
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { api_calls = 100 }
[[meters]]
event_type = "llm-completion"
metric = "api_calls"
[[meters]]
event_type = "llm-completion"
metric = "active_users"
[[meters]]
event_type = "llm-completion"
metric = "tokens"
value = "tokens"
""",
    "test-plans.toml",
)
RULES = IntakeRules(max_clock_skew_ms=300_000, dedup_horizon_ms=7 * DAY_MS, late_grace_ms=HOUR_MS)
PLAN = AccountPlan(
    account_id="acct-1",
    plan_id="starter",
    anchor_ms=None,
    status="active",
    limits={},
    updated_at_ms=NOW - 30 * DAY_MS,
)


def _event(
    event_id: str = "ev-1", *, source: str = "/chat", tokens: Any = 812, **fields: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "llm-completion",
        "subject": "acct-1",
        "time": TIME,
        "data": {"tokens": tokens, "user": "u-1"},
    }
    event.update(fields)
    return event


def _structured(event: dict[str, Any], offset: int, key: bytes = b"acct-1") -> RawRecord:
    return RawRecord(key, orjson.dumps(event), "usage", 0, offset, NOW)


def _binary(event: dict[str, Any], offset: int) -> RawRecord:
    headers = tuple(
        (f"ce_{name}", str(value).encode())
        for name, value in event.items()
        if name != "data" and value is not None
    )
    return RawRecord(
        b"acct-1",
        orjson.dumps(event["data"]),
        "usage",
        0,
        offset,
        NOW,
        (*headers, ("content-type", b"application/json")),
    )


class _Store:
    def __init__(self) -> None:
        self.totals = AccountTotals()
        self.lifetime = AccountLifetime()
        self.seen: dict[str, int] = {}
        self.distinct: dict[str, int] = {}

    def run(self, *raws: RawRecord) -> IntakeResult:
        result = run_intake(
            raws,
            IntakeState(
                plan_of=lambda _: PLAN,
                totals_of=lambda _: self.totals,
                seen_at=self.seen.get,
                daily_of=lambda _: AccountDaily(),
                lifetime_of=lambda _: self.lifetime,
                distinct_held=lambda keys: {k for k in keys if k in self.distinct},
            ),
            now_ms=NOW,
            rules=RULES,
            catalog=CATALOG,
        )
        self.seen.update(result.seen)
        self.distinct.update(result.distinct)
        return result


def test_one_event_feeds_every_meter_that_takes_it_in_either_mode() -> None:
    store = _Store()
    result = store.run(_structured(_event("ev-1"), 0), _binary(_event("ev-2", tokens=188), 1))
    assert dict(result.outcomes) == {"accepted": 2}
    assert store.totals.period_values(MARCH) == {
        "api_calls": D(2),
        "active_users": D(1),  # the same user twice
        "tokens": D(1000),
    }
    # Each reading is accepted on its own (thresholds judge each metric) and names the event.
    assert [(a.record.metric, a.record.record_id) for a in result.accepted] == [
        ("api_calls", "ev-1"),
        ("active_users", "ev-1"),
        ("tokens", "ev-1"),
        ("api_calls", "ev-2"),
        ("active_users", "ev-2"),
        ("tokens", "ev-2"),
    ]
    assert store.lifetime.total("tokens") == D(1000)


def test_source_and_id_make_the_idempotency_key() -> None:
    store = _Store()
    first = store.run(_structured(_event("ev-1"), 0))
    again = store.run(
        _binary(_event("ev-1"), 1),  # the same event in the other mode: a repeat
        _structured(_event("ev-1", source="/other"), 2),  # another source: another event
        # A plain record whose record_id is the event's id is not the event.
        RawRecord(
            b"acct-1",
            orjson.dumps(
                {
                    "record_id": "ev-1",
                    "account_id": "acct-1",
                    "metric": "api_calls",
                    "quantity": 1,
                    "timestamp": TIME,
                }
            ),
            "usage",
            0,
            3,
            NOW,
        ),
    )
    assert dict(first.outcomes) == {"accepted": 1}
    assert dict(again.outcomes) == {"duplicate": 1, "accepted": 2}
    assert store.totals.total("api_calls", MARCH) == D(3)
    assert store.totals.total("tokens", MARCH) == D(1624)


def test_an_event_no_meter_takes_is_unmetered_and_changes_nothing() -> None:
    store = _Store()
    result = store.run(_structured(_event(type="page-view"), 0), _binary(_event(type="x"), 1))
    assert dict(result.outcomes) == {"unmetered": 2}
    assert store.totals.is_empty()
    assert not result.dead_letters
    assert not result.seen


def test_an_event_is_refused_whole_when_one_reading_would_be_inexact() -> None:
    store = _Store()
    store.run(_structured(_event("ev-1", tokens=2**52), 0))
    before = (store.totals.to_json(), store.lifetime.to_json(), dict(store.distinct))
    # 2**52 + 0.5 needs 54 bits: a double cannot carry the tokens total exactly.
    result = store.run(_structured({**_event("ev-2"), "data": {"tokens": 0.5, "user": "u-2"}}, 1))
    assert dict(result.outcomes) == {"invalid": 1}
    ((_, letter),) = result.dead_letters
    assert letter["error"].startswith("tokens: the event's readings would make the total")
    # Nothing of the event was folded: not its api call, not its new user (both read before
    # the tokens).
    assert (store.totals.to_json(), store.lifetime.to_json(), dict(store.distinct)) == before
    assert not result.seen


def test_an_event_keyed_by_another_account_is_rekeyed_to_its_subject() -> None:
    store = _Store()
    result = store.run(_structured(_event(), 0, key=b"someone-else"))
    assert result.rekey and result.rekey[0][0] == "acct-1"
    assert not result.outcomes
