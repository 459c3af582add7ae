"""Account changes end to end (contract 3.6): plan records through a real worker and broker.

Exactly the expected ``account-change`` events arrive, in order per account, and exactly once
across a SIGTERM'd and restarted worker; records that change nothing (the first of an account,
a repeat, an older record, the first after a tombstone) yield nothing, before and after the
restart.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from domain.common.timeutil import parse_rfc3339_ms, to_rfc3339
from domain.wording.events import change_event_id
from tests.integration.conftest import Stack, Worker, eventually, total_of
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

KIND = "account-change"


async def _events(stack: Stack, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    """Every committed account-change event of the test, in topic order per partition."""
    return [
        {"_key": m.key.decode(), "_partition": m.partition, **orjson.loads(m.value)}
        for m in await stack.read_all(f"{stack.prefix}.{KIND}", settle_s=settle_s)
    ]


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


async def _plan_is(stack: Stack, worker: Worker, account: str, **want: Any) -> bool:
    view = await stack.account(worker, account)
    plan = (view or {}).get("plan") or {}
    return all(plan.get(k) == v for k, v in want.items())


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    return [
        (e["account_id"], e["change"]["type"], e["change"]["from"], e["change"]["to"])
        for e in events
    ]


async def test_account_changes_end_to_end_exactly_once_across_a_restart(stack: Stack) -> None:
    await stack.create_inputs()
    worker = await stack.worker("w1").start().ready()
    now = int(time.time() * 1000)

    def at(seconds: int) -> str:
        return to_rfc3339(now + seconds * 1000)

    # First records: nothing.
    await stack.plan("c-up", "starter", updated_at=at(0), members=2, region="CA")
    await stack.plan("c-multi", "starter", updated_at=at(0), members=2, region="CA")
    await stack.plan("c-same", "growth", updated_at=at(0), members=4)
    await stack.plan("c-old", "growth", updated_at=at(10))
    await stack.plan("c-tomb", "growth", updated_at=at(0))
    for account, plan_id in (
        ("c-up", "starter"),
        ("c-multi", "starter"),
        ("c-same", "growth"),
        ("c-old", "growth"),
        ("c-tomb", "growth"),
    ):
        await eventually(lambda a=account, p=plan_id: _plan_is(stack, worker, a, id=p))
    # 85,000 API calls this period: 85% of Growth's 100,000.
    await stack.usage("c-up", "u0", 85_000, timestamp=now)

    async def counted() -> bool:
        return total_of(await stack.account(worker, "c-up")) == 85_000

    await eventually(counted)

    # Changes.
    await stack.plan("c-up", "growth", updated_at=at(1), members=2, region="CA")
    await stack.plan("c-multi", "scale", updated_at=at(1), status="paused", members=5, region="NY")
    # Nothing: the same record again, then a newer record with the same content.
    await stack.plan("c-same", "growth", updated_at=at(0), members=4)
    await stack.plan("c-same", "growth", updated_at=at(5), members=4)
    # Nothing: older than the record held.
    await stack.plan("c-old", "free", updated_at=at(1))
    # Nothing: a tombstone, then the account's first record again.
    await stack.send(stack.plans_topic, "c-tomb", None)
    await eventually(lambda: _plan_is(stack, worker, "c-tomb", id=None))
    await stack.plan("c-tomb", "starter", updated_at=at(60))
    await eventually(lambda: _plan_is(stack, worker, "c-tomb", id="starter"))
    await eventually(lambda: _plan_is(stack, worker, "c-same", id="growth"))

    async def five() -> list[dict[str, Any]] | None:
        events = await _events(stack, settle_s=0.5)
        return events if len(events) >= 5 else None

    await eventually(five)
    await worker.metric_becomes("moments_events_total", 5, kind=KIND)
    assert worker.stop() == 0  # SIGTERM: commits what it finished, exits 0

    again = await stack.worker("w1b", data_dir=stack.tmp / "w1").start().ready()
    # Repeats of records processed before the restart: nothing.
    await stack.plan("c-up", "growth", updated_at=at(1), members=2, region="CA")
    await stack.plan("c-same", "growth", updated_at=at(5), members=4)
    # A new change after the restart: one event.
    await stack.plan("c-up", "growth", updated_at=at(2), members=2, region="CA", status="cancelled")
    await eventually(lambda: _plan_is(stack, again, "c-up", status="cancelled"))

    events = await _events(stack)
    for event in events:
        assert_valid(_strip(event))
        assert event["_key"] == event["account_id"]
        assert event["event_id"] == change_event_id(
            event["account_id"], event["change"]["type"], parse_rfc3339_ms(event["triggered_at"])
        )
    by_account: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_account.setdefault(event["account_id"], []).append(event)
    assert sorted(by_account) == ["c-multi", "c-up"], _summary(events)
    assert _summary(by_account["c-multi"]) == [
        ("c-multi", "plan_upgraded", "starter", "scale"),
        ("c-multi", "paused", "active", "paused"),
        ("c-multi", "members_added", 2, 5),
        ("c-multi", "region_changed", "CA", "NY"),
    ]
    assert _summary(by_account["c-up"]) == [
        ("c-up", "plan_upgraded", "starter", "growth"),
        ("c-up", "cancelled", "active", "cancelled"),
    ]
    assert len({e["event_id"] for e in events}) == len(events) == 6

    upgrade = by_account["c-up"][0]
    assert upgrade["triggered_at"] == at(1)
    assert upgrade["plan"]["id"] == "growth"
    assert "85,000 of 100,000 API calls (85%)" in upgrade["message"]["body"]
    assert upgrade["suggestion"]["action"] == "none"
    members = by_account["c-multi"][2]
    assert members["suggestion"]["action"] == "offer"
    assert "family discount" in members["suggestion"]["offer"]
    region = by_account["c-multi"][3]
    assert region["suggestion"]["offer"] == "new services in your new area"
    await again.metric_becomes("moments_events_total", 1, kind=KIND)
