"""Sudden-drop moments end to end: a movable worker clock, real broker, real RocksDB.

Workers run with ``MOMENTS_CLOCK=manual:<instant>`` so a test closes UTC days on
demand; usage history is published with event times in the past, as late data.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack, Worker, eventually
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

FAST = {"MOMENTS_EVALUATION_CHECK": "200ms"}


def at(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


def clock_env(day: date, hour: int = 1) -> dict[str, str]:
    return {"MOMENTS_CLOCK": f"manual:{day.isoformat()}T{hour:02d}:00:00Z", **FAST}


async def history(
    stack: Stack,
    account: str,
    days: Iterable[date],
    per_day: float,
    *,
    per_record: int = 1,
    hour: int = 12,
) -> None:
    """``per_day`` api_calls on each day, in ``per_record`` records."""
    producer = await stack.producer()
    for day in days:
        for i in range(per_record):
            record = {
                "record_id": f"{account}-{day.isoformat()}-{i}",
                "account_id": account,
                "metric": "api_calls",
                "quantity": per_day / per_record,
                "timestamp": at(day, hour) + i,
            }
            await producer.send(stack.usage_topic, key=account.encode(), value=orjson.dumps(record))
    await producer.flush()


def span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def drop_events(stack: Stack, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    messages = await stack.read_all(f"{stack.prefix}.sudden-drop", settle_s=settle_s)
    events = [orjson.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert_valid(event)
        assert message.key.decode() == event["account_id"]
    return events


async def evaluated(stack: Stack, worker: Worker, account: str, day: date) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["drops"]["last_evaluated_day"] == day.isoformat())


async def move_clock(worker: Worker, day: date, hour: int = 1) -> None:
    import asyncio
    import urllib.request

    body = orjson.dumps({"now_ms": at(day, hour)})

    def post() -> int:
        request = urllib.request.Request(  # noqa: S310
            f"http://127.0.0.1:{worker.port}/clock", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return int(resp.status)

    assert await asyncio.to_thread(post) == 200


NOV = date(2026, 11, 4)  # the worker's "today": recent days are Nov 1-3


async def test_silent_and_partial_drops_fire_once_until_recovery(stack: Stack) -> None:
    await stack.create_inputs()
    yesterday = NOV - timedelta(days=1)
    baseline = span(NOV - timedelta(days=31), NOV - timedelta(days=4))
    await stack.plan("silent", "starter")  # pausable
    await stack.plan("partial", "growth")
    await stack.plan("steady", "starter")
    await stack.plan("young", "starter")
    await stack.plan("low", "starter")
    await history(stack, "silent", baseline, 1000)
    await history(stack, "partial", baseline, 1000)
    await history(stack, "partial", span(NOV - timedelta(days=3), yesterday), 100)
    await history(stack, "steady", span(baseline[0], yesterday), 1000)
    await history(stack, "young", span(NOV - timedelta(days=12), NOV - timedelta(days=4)), 1000)
    await history(stack, "low", baseline, 10)
    worker = await stack.worker(**clock_env(NOV)).start().ready()
    await eventually(lambda: evaluated(stack, worker, "steady", yesterday), timeout=60)

    events = await drop_events(stack)
    by_account = {e["account_id"]: e for e in events}
    assert sorted(by_account) == ["partial", "silent"], events
    silent = by_account["silent"]
    assert silent["suggestion"]["action"] == "pause"
    assert silent["drop"]["recent_total"] == 0
    assert silent["drop"]["recent_days"] == 3
    assert silent["drop"]["expected_total"] == 3000
    partial = by_account["partial"]
    assert partial["drop"]["recent_total"] == 300
    assert partial["suggestion"]["action"] == "downgrade"
    assert partial["suggestion"]["plan_id"] == "starter"  # cheapest lower plan covering ~3,000
    assert partial["suggestion"]["price_delta"] < 0
    view = await stack.account(worker, "silent")
    assert view is not None
    assert view["drops"]["open_episodes"] == {
        "api_calls": {"since": "2026-11-01", "announced": True, "drop_event_id": silent["event_id"]}
    }

    # Next day: still down, episode open: nothing new.
    await move_clock(worker, NOV + timedelta(days=1))
    await eventually(lambda: evaluated(stack, worker, "silent", NOV))
    assert len(await drop_events(stack)) == 2

    # "silent" recovers on Nov 5 (back to its usual 3 days' worth), then goes quiet again.
    # At 00:00 of Nov 5, an hour before the worker's clock: not in the future, whenever
    # the worker reads it (at noon it raced the clock move below and could be invalid).
    await history(stack, "silent", [NOV + timedelta(days=1)], 3000, hour=0)
    await move_clock(worker, NOV + timedelta(days=2))
    await eventually(lambda: evaluated(stack, worker, "silent", NOV + timedelta(days=1)))
    view = await stack.account(worker, "silent")
    assert view is not None and view["drops"]["open_episodes"] == {}
    await move_clock(worker, NOV + timedelta(days=5))
    await eventually(lambda: evaluated(stack, worker, "silent", NOV + timedelta(days=4)))
    events = await drop_events(stack)
    silent_events = [e for e in events if e["account_id"] == "silent"]
    assert len(silent_events) == 2, events
    assert len({e["event_id"] for e in silent_events}) == 2
    # By Nov 8, "steady" has been silent since Nov 4 and fires; "young" went quiet with
    # 9 days of history: too new on Nov 3, but by Nov 8 it has the 14 days before its
    # recent days that the contract asks for, and it fires too.
    assert sorted(e["account_id"] for e in events) == [
        "partial",
        "silent",
        "silent",
        "steady",
        "young",
    ]
    await worker.metric_becomes("moments_events_total", 5, kind="sudden-drop")


async def test_restart_with_a_backlog_of_normal_usage_fires_nothing(stack: Stack) -> None:
    await stack.create_inputs()
    accounts = [f"busy-{i}" for i in range(30)]
    first_day = NOV - timedelta(days=31)
    for account in accounts:
        await stack.plan(account, "growth")
        await history(stack, account, span(first_day, NOV - timedelta(days=4)), 1000)
    worker = await stack.worker("w1", **clock_env(NOV - timedelta(days=3), hour=12)).start().ready()
    await eventually(lambda: evaluated(stack, worker, accounts[0], NOV - timedelta(days=4)))
    assert worker.stop() == 0

    # While the worker is down, the last three days arrive (a backlog), many records each.
    for account in accounts:
        await history(
            stack,
            account,
            span(NOV - timedelta(days=3), NOV - timedelta(days=1)),
            1000,
            per_record=20,
        )
    again = await stack.worker("w1b", data_dir=stack.tmp / "w1", **clock_env(NOV)).start().ready()
    for account in accounts:
        await eventually(lambda a=account: evaluated(stack, again, a, NOV - timedelta(days=1)))
    assert await drop_events(stack) == []
    # The backlog was counted (30 accounts x 3 days x 20 records), not skipped.
    await again.metric_becomes("moments_records_total", 30 * 3 * 20, outcome="accepted")


async def test_two_workers_never_both_emit_for_an_account(stack: Stack) -> None:
    await stack.create_inputs()
    accounts = [f"quiet-{i}" for i in range(12)]
    for account in accounts:
        await stack.plan(account, "starter")
        await history(stack, account, span(NOV - timedelta(days=31), NOV - timedelta(days=4)), 500)
    env = clock_env(NOV)
    one = await stack.worker("w1", **env).start().ready()
    await eventually(lambda: evaluated(stack, one, accounts[0], NOV - timedelta(days=1)))
    # A second worker joins: it takes over partitions whose day is already evaluated.
    two = await stack.worker("w2", **env).start().ready()
    await eventually(lambda: evaluated(stack, two, accounts[-1], NOV - timedelta(days=1)))
    events = await drop_events(stack, settle_s=4.0)
    assert sorted(e["account_id"] for e in events) == sorted(accounts)
    # Both move to the next day: the open episodes keep both workers quiet.
    await move_clock(one, NOV + timedelta(days=1))
    await move_clock(two, NOV + timedelta(days=1))
    for account in accounts:
        await eventually(lambda a=account: evaluated(stack, two, a, NOV))
    assert len(await drop_events(stack)) == len(accounts)
