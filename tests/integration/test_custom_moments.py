"""Moments you define (contract 3.8) end to end: an ``at_least`` rule on the usage path and an
``at_most`` rule at a day close, on the real broker, through real workers reading a catalog
with ``[[moments]]`` (``MOMENTS_PLANS_FILE``) and a movable clock (``MOMENTS_CLOCK=manual``).

Each rule fires once; a worker restarted on an empty data directory (state rebuilt from the
changelogs), with one more record and one more closed day, fires neither again.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.functional.test_custom_moments import RULES, shipped_without_rules
from tests.integration.conftest import Stack, Worker, eventually
from tests.integration.test_drops import at, clock_env, move_clock
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOV = date(2026, 11, 4)  # the worker's "today"


async def custom_events(stack: Stack, rule: str) -> list[dict[str, Any]]:
    messages = await stack.read_all(f"{stack.prefix}.custom.{rule}", settle_s=2.0)
    events = [orjson.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert_valid(event)
        assert message.key.decode() == event["account_id"]
    return events


async def plan_at(stack: Stack, account: str, timestamp_ms: int) -> None:
    """A starter plan record whose Kafka timestamp is ``timestamp_ms`` (active since then)."""
    producer = await stack.producer()
    record = {"account_id": account, "plan_id": "starter", "updated_at": "2026-10-01T00:00:00Z"}
    await producer.send_and_wait(
        stack.plans_topic,
        key=account.encode(),
        value=orjson.dumps(record),
        timestamp_ms=timestamp_ms,
    )


async def closed(worker: Worker, day: date, closes: int) -> bool:
    """Whether ``closes`` partitions logged the close of ``day`` for the at_most rules."""
    number = (day - date(1970, 1, 1)).days
    return worker.process.log_text().count(f"day {number} closed for at_most rules") >= closes


async def test_rules_fire_once_each_across_a_rebuild(stack: Stack, tmp_path: Path) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(shipped_without_rules() + RULES, "utf-8")
    await stack.create_inputs()
    month_ago = at(NOV - timedelta(days=30))
    for account in ("busy", "quiet"):
        await plan_at(stack, account, month_ago)
    await plan_at(stack, "new", at(NOV - timedelta(days=2)))  # not active the whole window
    for i in range(3):
        await stack.usage("busy", f"e{i}", metric="events", timestamp=at(NOV, 0) + i)
    await stack.usage("busy", "c1", timestamp=at(NOV - timedelta(days=2)))

    env = {"MOMENTS_PLANS_FILE": str(plans), **clock_env(NOV)}
    worker = await stack.worker(**env).start().ready()
    await eventually(lambda: closed(worker, NOV - timedelta(days=1), stack.partitions), timeout=60)
    [busy] = await custom_events(stack, "busy-week")
    assert busy["account_id"] == "busy"
    assert busy["custom"] == {"rule": "busy-week", "window": "7d", "value": 3, "threshold": 3}
    assert busy["triggered_at"] == "2026-11-04T00:00:00.002Z"
    [quiet] = await custom_events(stack, "quiet-week")
    assert quiet["account_id"] == "quiet"
    assert quiet["custom"]["value"] == 0
    assert quiet["triggered_at"] == "2026-11-04T00:00:00Z"
    assert quiet["suggestion"]["action"] == "pause"
    await worker.metric_becomes("moments_events_total", 1, kind="custom.busy-week")
    await worker.metric_becomes("moments_events_total", 1, kind="custom.quiet-week")
    assert worker.stop() == 0

    # A worker on an empty data directory rebuilds the firings from the changelogs: one more
    # record within the cooldown and the next day's close fire nothing.
    rebuilt = await stack.worker("w2", **env).start().ready()
    await stack.usage("busy", "e3", metric="events", timestamp=at(NOV, 0) + 10)
    await rebuilt.metric_becomes("moments_records_total", 1, outcome="accepted", timeout=60)
    await move_clock(rebuilt, NOV + timedelta(days=1))
    await eventually(lambda: closed(rebuilt, NOV, stack.partitions), timeout=60)
    assert len(await custom_events(stack, "busy-week")) == 1
    assert len(await custom_events(stack, "quiet-week")) == 1
    assert await rebuilt.metric("moments_events_total", kind="custom.busy-week") == 0
