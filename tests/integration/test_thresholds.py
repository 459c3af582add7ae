"""Threshold moments end to end: real broker, read_committed consumer, schema-checked."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from domain.plans.periods import calendar_month
from domain.wording.events import event_id
from tests.integration.conftest import Stack, Worker, eventually, total_of
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

KINDS = ("threshold-near", "threshold-hit", "sudden-drop")


async def _events(stack: Stack, count: int, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    """Every committed event of the test, read after ``count`` arrived and a quiet wait."""
    out: list[dict[str, Any]] = []
    for kind in KINDS:
        topic = f"{stack.prefix}.{kind}"
        out += [
            {"_key": m.key.decode(), "_partition": m.partition, **orjson.loads(m.value)}
            for m in await stack.read_all(topic, settle_s=settle_s)
        ]
    assert len(out) >= count, f"expected at least {count} events, got {len(out)}: {out}"
    return out


async def _total_is(stack: Stack, worker: Worker, account: str, want: float) -> bool:
    return total_of(await stack.account(worker, account)) == want


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


async def test_threshold_rules_end_to_end(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    now = int(time.time() * 1000)
    # starter: api_calls 10,000, near level 0.8
    await stack.plan("a-steps", "starter")
    await stack.plan("a-jump", "starter")
    await stack.plan("a-exact", "starter")
    await stack.plan("a-paused", "starter", status="paused")
    await stack.plan("a-change", "growth")
    await stack.plan("a-nolimit", "enterprise")  # no seats limit
    # Plans first, so no record is judged before its plan is known.
    for account in ("a-steps", "a-jump", "a-exact", "a-paused", "a-change", "a-nolimit"):
        await eventually(lambda a=account: _has_plan(stack, worker, a))

    # Steps: 7,000 (nothing) -> 8,000 (near) -> 9,500 (nothing) -> 10,100 (hit).
    for i, quantity in enumerate((7000, 1000, 1500, 600)):
        await stack.usage("a-steps", f"s{i}", quantity, timestamp=now)
    await stack.usage("a-steps", "s1", 1000, timestamp=now)  # duplicate: no second event
    # Jump over both levels at once: one hit event listing both.
    await stack.usage("a-jump", "j0", 12000, timestamp=now)
    # Exactly 80% announces 0.8 (decimal arithmetic: 0.1 + 0.2 style sums are exact).
    await stack.usage("a-exact", "e0", 7999.9, timestamp=now)
    await stack.usage("a-exact", "e1", 0.1, timestamp=now)
    # Paused accounts, unknown accounts and metrics without a limit announce nothing.
    await stack.usage("a-paused", "p0", 20000, timestamp=now)
    await stack.usage("a-unknown", "u0", 20000, timestamp=now)
    await stack.usage("a-nolimit", "n0", 10**9, metric="seats", timestamp=now)
    # A late record (its period ended long ago) counts as late and announces nothing.
    await stack.usage("a-steps", "late", 10**6, timestamp="2025-01-15T00:00:00Z")
    # Plan change: growth (100,000) at 9,000 -> downgrade to starter: 90% is announced
    # on the next record, against the new plan.
    await stack.usage("a-change", "c0", 9000, timestamp=now)
    await eventually(lambda: _total_is(stack, worker, "a-change", 9000))
    await stack.plan("a-change", "starter", updated_at="2026-06-01T00:00:00Z")
    await eventually(lambda: _plan_is(stack, worker, "a-change", "starter"))
    await stack.usage("a-change", "c1", 1, timestamp=now)

    events = await _events(stack, 5)
    for event in events:
        assert_valid(_strip(event))
        assert event["_key"] == event["account_id"]
    got = sorted(
        (e["account_id"], e["kind"], e["level"], tuple(e["crossed_levels"])) for e in events
    )
    assert got == [
        ("a-change", "threshold-near", 0.8, (0.8,)),
        ("a-exact", "threshold-near", 0.8, (0.8,)),
        ("a-jump", "threshold-hit", 1.0, (0.8, 1.0)),
        ("a-steps", "threshold-hit", 1.0, (1.0,)),
        ("a-steps", "threshold-near", 0.8, (0.8,)),
    ]
    steps = {e["kind"]: e for e in events if e["account_id"] == "a-steps"}
    assert steps["threshold-near"]["trigger_record_id"] == "s1"
    assert steps["threshold-near"]["usage"]["total"] == 8000
    assert steps["threshold-hit"]["trigger_record_id"] == "s3"
    assert steps["threshold-hit"]["usage"]["total"] == 10100
    assert steps["threshold-hit"]["suggestion"]["action"] == "upgrade"
    period = calendar_month(now)
    start = datetime.fromtimestamp(period.start_ms / 1000, tz=UTC)
    assert steps["threshold-near"]["period"]["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert steps["threshold-near"]["event_id"] == event_id(
        "threshold-near", "a-steps", "api_calls", period.start_ms, "starter", Decimal("0.8")
    )
    # One account's events share a partition number across the event topics.
    assert len({e["_partition"] for e in events if e["account_id"] == "a-steps"}) == 1
    await worker.metric_becomes("moments_records_total", 1, outcome="late")
    await worker.metric_becomes("moments_events_total", 3, kind="threshold-near")
    await worker.metric_becomes("moments_events_total", 2, kind="threshold-hit")
    view = await stack.account(worker, "a-steps")
    assert view is not None
    assert view["period_totals"]["api_calls"][-1]["announced"] == {"starter": [0.8, 1.0]}


async def _has_plan(stack: Stack, worker: Worker, account: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"])


async def _plan_is(stack: Stack, worker: Worker, account: str, plan_id: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"] and view["plan"]["id"] == plan_id)


async def test_restart_neither_repeats_nor_loses_events(stack: Stack) -> None:
    worker = await stack.worker("w1").start().ready()
    now = int(time.time() * 1000)
    await stack.plan("r-1", "free")  # api_calls 1,000, near levels 0.5 and 0.8
    await eventually(lambda: _has_plan(stack, worker, "r-1"))
    await stack.usage("r-1", "x0", 600, timestamp=now)  # 0.5
    await eventually(lambda: _total_is(stack, worker, "r-1", 600))
    assert worker.stop() == 0

    again = await stack.worker("w1b", data_dir=stack.tmp / "w1").start().ready()
    await stack.usage("r-1", "x0", 600, timestamp=now)  # repeat from before: nothing
    await stack.usage("r-1", "x1", 100, timestamp=now)  # 700: nothing new
    await stack.usage("r-1", "x2", 150, timestamp=now)  # 850: 0.8
    await eventually(lambda: _total_is(stack, again, "r-1", 850))
    assert again.stop() == 0

    fresh = await stack.worker("w2", data_dir=stack.tmp / "empty").start().ready()
    await stack.usage("r-1", "x3", 10, timestamp=now)  # 860: nothing (0.8 already announced)
    await stack.usage("r-1", "x4", 140, timestamp=now)  # 1,000: hit
    await eventually(lambda: _total_is(stack, fresh, "r-1", 1000))

    events = await _events(stack, 3)
    levels = sorted(e["level"] for e in events)
    assert levels == [0.5, 0.8, 1.0], events
    assert len({e["event_id"] for e in events}) == 3
