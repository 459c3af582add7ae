"""Billing anniversaries end to end: a movable worker clock, real broker, real RocksDB.

Workers run with ``MOMENTS_CLOCK=manual:<instant>``; moving the clock past a period's end plus
the late grace (1 h) makes the period final, and the worker announces it once its partitions
have caught up (issue 19: no longer at the next whole hour, see tests/integration/test_timers.py).
A worker's first pass on a partition visits every account (it builds the due index); later
passes run only on partitions with something due.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import pytest

from domain.intake.partitioning import account_partition
from domain.rules.anniversaries import due_cut
from tests.integration.conftest import Stack, Worker, eventually, total_of
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

FAST = {"MOMENTS_EVALUATION_CHECK": "200ms"}
ANCHOR = "2026-10-15T09:30:00Z"  # periods end on the 15th at 09:30 UTC
GRACE_MS = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def clock_env(instant: str) -> dict[str, str]:
    return {"MOMENTS_CLOCK": f"manual:{instant}", **FAST}


async def move_clock(worker: Worker, instant: str) -> None:
    body = orjson.dumps({"now_ms": ms(instant)})

    def post() -> int:
        request = urllib.request.Request(  # noqa: S310
            f"http://127.0.0.1:{worker.port}/clock", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return int(resp.status)

    assert await asyncio.to_thread(post) == 200


async def passes_complete(
    stack: Stack, worker: Worker, now: str, accounts: Sequence[str] | None = None
) -> None:
    """Wait until the anniversary pass at ``now``'s cut is complete on every partition, or on
    the partitions of ``accounts`` (those with something due)."""
    cut = due_cut(ms(now), GRACE_MS)
    partitions = (
        range(stack.partitions)
        if accounts is None
        else {account_partition(a, stack.partitions) for a in accounts}
    )
    markers = [f"partition {p}: anniversary pass at cut {cut} complete" for p in partitions]

    async def done() -> bool:
        log = worker.log_path.read_text(errors="replace")
        return all(marker in log for marker in markers)

    await eventually(done, timeout=60)


async def anniversaries(stack: Stack, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    messages = await stack.read_all(f"{stack.prefix}.billing-anniversary", settle_s=settle_s)
    events = [orjson.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert_valid(event)
        assert message.key.decode() == event["account_id"]
    return events


def expected_id(account: str, period_start: str) -> str:
    text = f"billing-anniversary|{account}|{period_start}"
    return hashlib.sha256(text.encode()).hexdigest()


async def test_one_anniversary_per_period_with_its_recap_exactly_once(stack: Stack) -> None:
    await stack.create_inputs()
    await stack.plan("busy", "starter", billing_anchor=ANCHOR)
    await stack.plan("quiet", "starter", billing_anchor=ANCHOR)  # no usage at all
    await stack.usage("busy", "b1", 9500, timestamp=ms("2026-11-10T12:00:00Z"))
    await stack.usage("busy", "b2", 2, metric="storage_gb", timestamp=ms("2026-11-12T12:00:00Z"))
    start = "2026-11-15T09:00:00Z"  # the first period (Oct 15 - Nov 15) still open
    worker = await stack.worker("w1", **clock_env(start)).start().ready()

    async def counted() -> bool:
        return total_of(await stack.account(worker, "busy")) == 9500

    await eventually(counted, timeout=60)
    await passes_complete(stack, worker, start)
    assert await anniversaries(stack, settle_s=1.0) == []

    # The period ended at 09:30, its grace at 10:30: due from then (no longer at 11:00).
    now = "2026-11-15T11:05:00Z"
    await move_clock(worker, now)
    await passes_complete(stack, worker, now, ["busy", "quiet"])
    events = await anniversaries(stack)
    by_account = {e["account_id"]: e for e in events}
    assert sorted(by_account) == ["busy", "quiet"], events
    busy = by_account["busy"]
    assert busy["event_id"] == expected_id("busy", "2026-10-15T09:30:00Z")
    assert busy["period"] == {"start": "2026-10-15T09:30:00Z", "end": "2026-11-15T09:30:00Z"}
    assert busy["triggered_at"] == "2026-11-15T09:30:00Z"
    assert busy["recap"]["anniversary"] == {"periods_completed": 1, "years": None}
    metrics = {m["metric"]: m for m in busy["recap"]["metrics"]}
    assert [m["metric"] for m in busy["recap"]["metrics"]] == sorted(metrics)
    assert metrics["api_calls"] == {
        "metric": "api_calls",
        "total": 9500,
        "limit": 10000,
        "ratio": 0.95,
        "unit": "API calls",
    }
    assert metrics["storage_gb"]["total"] == 2
    assert metrics["seats"]["total"] == 0  # a limit without usage is in the recap too
    assert busy["suggestion"]["action"] == "none"  # 95% of a limit: neither way
    assert "9,500 of 10,000 API calls (95%)" in busy["message"]["body"]
    quiet = by_account["quiet"]
    assert all(m["total"] == 0 for m in quiet["recap"]["metrics"])
    assert quiet["suggestion"]["action"] == "downgrade"
    assert quiet["suggestion"]["plan_id"] == "free"
    view = await stack.account(worker, "busy")
    assert view is not None and view["last_anniversary"] == {
        "period": busy["period"],
        "periods_completed": 1,
        "years": None,
        "reached": [],
        "underused": False,
    }

    # A record of the closed period arriving now is late: it changes nothing.
    await stack.usage("busy", "b3", 400, timestamp=ms("2026-11-15T09:00:00Z"))

    async def late() -> bool:
        return await worker.metric("moments_records_total", outcome="late") == 1

    await eventually(late)
    assert worker.stop() == 0

    # Another worker, with an empty data directory, restores the state from the changelogs
    # (the due index with it): nothing is due until the next periods end, and then only they
    # are announced, once. (Before the due index, passes ran every hour and this waited for
    # two of them announcing nothing.)
    later = "2026-11-15T13:05:00Z"
    again = await stack.worker("w2", **clock_env(later)).start().ready()
    await move_clock(again, "2026-12-15T10:30:05Z")
    await passes_complete(stack, again, "2026-12-15T10:30:05Z", ["busy", "quiet"])
    announced = await anniversaries(stack)
    november = {e["event_id"] for e in events}
    december = [e for e in announced if e["event_id"] not in november]
    assert len(announced) == len(events) + 2
    assert sorted(e["account_id"] for e in december) == ["busy", "quiet"]
    assert all(e["period"]["end"] == "2026-12-15T09:30:00Z" for e in december)
    assert await again.metric("moments_events_total", kind="billing-anniversary") == 2


async def test_a_worker_started_after_two_periods_emits_only_the_latest(stack: Stack) -> None:
    await stack.create_inputs()
    anchor = "2026-09-15T09:30:00Z"
    await stack.plan("away", "starter", billing_anchor=anchor)
    await stack.usage("away", "a1", 3000, timestamp=ms("2026-10-05T12:00:00Z"))
    first = "2026-10-10T12:00:00Z"
    worker = await stack.worker("w1", **clock_env(first)).start().ready()

    async def counted() -> bool:
        return total_of(await stack.account(worker, "away")) == 3000

    await eventually(counted, timeout=60)
    await passes_complete(stack, worker, first)
    assert worker.stop() == 0

    # Nobody runs while two periods end (Oct 15 and Nov 15): the next worker announces the
    # latest closed period only, its second since the anchor.
    now = "2026-11-15T11:05:00Z"
    again = await stack.worker("w1b", data_dir=stack.tmp / "w1", **clock_env(now)).start().ready()
    await passes_complete(stack, again, now, ["away"])
    [event] = await anniversaries(stack)
    assert event["period"] == {"start": "2026-10-15T09:30:00Z", "end": "2026-11-15T09:30:00Z"}
    assert event["recap"]["anniversary"] == {"periods_completed": 2, "years": None}
    api_calls = next(m for m in event["recap"]["metrics"] if m["metric"] == "api_calls")
    assert api_calls["total"] == 0  # the 3,000 were in the period before, never announced
