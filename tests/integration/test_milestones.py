"""Milestone moments end to end (contract 3.4): real broker, real workers, read_committed.

The shipped catalog celebrates purchases at 10, 50, 100, 500 and 1,000. Records cross 10,
then 50 (one record crosses both for another account), across a SIGTERM and restart on the
same data and a start from an empty data directory (state rebuilt from the changelogs): each
milestone is announced exactly once.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack, Worker, eventually, total_of
from tests.schema import assert_valid

pytestmark = pytest.mark.integration


async def _milestones(stack: Stack, count: int) -> list[dict[str, Any]]:
    """Every committed milestone event once ``count`` arrived (and nothing more for a while)."""
    topic = f"{stack.prefix}.milestone"
    await stack.read(topic, count)
    messages = await stack.read_all(topic)
    events = []
    for m in messages:
        event = orjson.loads(m.value)
        assert m.key.decode() == event["account_id"]
        assert_valid(event)
        events.append(event)
    return events


async def _purchases(stack: Stack, worker: Worker, account: str, want: float) -> bool:
    return total_of(await stack.account(worker, account), "purchases") == want


async def _has_plan(stack: Stack, worker: Worker, account: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"])


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, float, list[float], float]]:
    return sorted(
        (
            e["account_id"],
            e["milestone"]["value"],
            e["milestone"]["reached"],
            e["milestone"]["lifetime_total"],
        )
        for e in events
    )


async def test_milestones_are_announced_exactly_once_across_restarts(stack: Stack) -> None:
    worker = await stack.worker("w1").start().ready()
    now = int(time.time() * 1000)
    await stack.plan("m-1", "starter")
    await stack.plan("m-2", "starter")
    for account in ("m-1", "m-2"):
        await eventually(lambda a=account: _has_plan(stack, worker, a))

    await stack.usage("m-1", "p0", 9, metric="purchases", timestamp=now)  # 9: nothing
    await stack.usage("m-1", "p1", 1, metric="purchases", timestamp=now)  # 10: 10th
    [tenth] = await _milestones(stack, 1)
    assert worker.stop() == 0  # SIGTERM: commits what it finished, exits 0

    again = await stack.worker("w1b", data_dir=stack.tmp / "w1").start().ready()
    await stack.usage("m-1", "p1", 1, metric="purchases", timestamp=now)  # repeat: nothing
    await stack.usage("m-1", "p2", 30, metric="purchases", timestamp=now)  # 40: nothing
    await eventually(lambda: _purchases(stack, again, "m-1", 40))
    await stack.usage("m-1", "p3", 10, metric="purchases", timestamp=now)  # 50: 50th
    await stack.usage("m-2", "q0", 60, metric="purchases", timestamp=now)  # 10 and 50 at once
    await _milestones(stack, 3)
    assert again.stop() == 0

    # An empty data directory: the lifetime table comes back from its changelog.
    fresh = await stack.worker("w2", data_dir=stack.tmp / "empty").start().ready()
    await stack.usage("m-1", "p4", 1, metric="purchases", timestamp=now)  # 51: nothing
    await stack.usage("m-2", "q1", 1, metric="purchases", timestamp=now)  # 61: nothing
    await eventually(lambda: _purchases(stack, fresh, "m-2", 61))
    await stack.usage("m-1", "p5", 49, metric="purchases", timestamp=now)  # 100: 100th
    events = await _milestones(stack, 4)

    assert _summary(events) == [
        ("m-1", 10, [10], 10),
        ("m-1", 50, [50], 50),
        ("m-1", 100, [100], 100),
        ("m-2", 50, [10, 50], 60),
    ]
    for event in events:
        identity = f"milestone|{event['account_id']}|purchases|{event['milestone']['value']}"
        assert event["event_id"] == hashlib.sha256(identity.encode()).hexdigest()
        assert event["suggestion"]["action"] == "reward"
        assert event["suggestion"]["offer"] == "15% off your next order"
    assert tenth["message"]["title"] == "Congratulations on your 10th purchase!"
    await fresh.metric_becomes("moments_events_total", 1, kind="milestone")
    # GET /accounts/{id} shows the lifetime totals and the milestones reached, restored from
    # the changelog on the fresh worker.
    view = await stack.account(fresh, "m-1")
    assert view is not None
    assert view["lifetime"]["purchases"] == {"total": 100, "milestones_reached": [10, 50, 100]}
