"""Overage levels (contract 3.1) and usage recovery (3.3) end to end: real broker, real
RocksDB, real worker processes restarted in between, every event schema-checked."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
import pytest

from domain.common.timeutil import to_rfc3339
from domain.wording.events import drop_event_id, recovered_event_id
from tests.integration.conftest import Stack, Worker, eventually, total_of
from tests.integration.test_drops import NOV, clock_env, evaluated, history, move_clock, span
from tests.schema import assert_valid

pytestmark = pytest.mark.integration


async def _events(stack: Stack, kind: str, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    """Every committed event of ``kind``, schema-checked and keyed by account."""
    messages = await stack.read_all(f"{stack.prefix}.{kind}", settle_s=settle_s)
    events = [orjson.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert_valid(event)
        assert message.key.decode() == event["account_id"]
        assert event["kind"] == kind
    return events


async def _total_is(stack: Stack, worker: Worker, account: str, want: float) -> bool:
    return total_of(await stack.account(worker, account)) == want


async def _has_plan(stack: Stack, worker: Worker, account: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"])


async def test_overage_levels_are_announced_once_across_restarts(stack: Stack) -> None:
    # starter: 10,000 API calls, near 0.8, over levels 1.5 and 2.0, $0.002 per extra call.
    worker = await stack.worker("w1").start().ready()
    await stack.plan("over", "starter")
    await eventually(lambda: _has_plan(stack, worker, "over"))
    now = int(time.time() * 1000)
    reached_ms = now - 60_000
    await stack.usage("over", "o0", 9000, timestamp=now - 120_000)  # 90%: near 0.8
    await stack.usage("over", "o1", 7000, timestamp=reached_ms)  # 160%: 1.0 and 1.5 at once
    await eventually(lambda: _total_is(stack, worker, "over", 16000))
    await worker.metric_becomes("moments_events_total", 1, kind="threshold-hit")
    assert worker.stop() == 0

    # Same data directory: the repeat of o1 counts once and announces nothing.
    again = await stack.worker("w1b", data_dir=stack.tmp / "w1").start().ready()
    await stack.usage("over", "o1", 7000, timestamp=reached_ms)
    await stack.usage("over", "o2", 1000, timestamp=now)  # 170%: nothing new
    await eventually(lambda: _total_is(stack, again, "over", 17000))
    assert again.stop() == 0

    # An empty data directory: state rebuilt from the changelogs, 2.0 is next.
    fresh = await stack.worker("w2", data_dir=stack.tmp / "empty").start().ready()
    await stack.usage("over", "o3", 3000, timestamp=now)  # 200%: 2.0
    await eventually(lambda: _total_is(stack, fresh, "over", 20000))

    near = await _events(stack, "threshold-near")
    hits = await _events(stack, "threshold-hit")
    assert [(e["level"], e["crossed_levels"]) for e in near] == [(0.8, [0.8])]
    assert [(e["level"], e["crossed_levels"], e["trigger_record_id"]) for e in hits] == [
        (1.5, [1.0, 1.5], "o1"),
        (2.0, [2.0], "o3"),
    ]
    first, second = hits
    assert first["overage"]["units"] == 6000
    assert first["overage"]["unit_price"] == 0.002
    assert first["overage"]["cost"] == 12
    assert first["overage"]["projected_cost"] >= 12
    assert first["projection"]["limit_reached_at"] == to_rfc3339(reached_ms)
    assert first["message"]["title"] == "You're 60% past your 10,000 API calls"
    assert "$12 of overage so far" in first["message"]["body"]
    assert first["suggestion"]["action"] == "upgrade"
    assert "of overage this month" in first["suggestion"]["rationale"]
    assert second["overage"]["units"] == 10000
    assert second["overage"]["cost"] == 20
    # The limit was reached by o1, before two restarts: that is when, still.
    assert second["projection"]["limit_reached_at"] == to_rfc3339(reached_ms)
    assert second["message"]["title"] == "You're 100% past your 10,000 API calls"
    await fresh.metric_becomes("moments_events_total", 1, kind="threshold-hit")


async def test_a_drop_then_a_recovery_each_once_across_restarts(stack: Stack) -> None:
    await stack.create_inputs()
    baseline = span(NOV - timedelta(days=31), NOV - timedelta(days=4))
    for account in ("back", "paused-back"):
        await stack.plan(account, "starter")
        await history(stack, account, baseline, 1000)  # then silent from Nov 1
    worker = await stack.worker("w1", **clock_env(NOV)).start().ready()
    await eventually(lambda: evaluated(stack, worker, "back", NOV - timedelta(days=1)), timeout=60)
    drops = await _events(stack, "sudden-drop")
    assert sorted(e["account_id"] for e in drops) == ["back", "paused-back"]
    drop_ids = {e["account_id"]: e["event_id"] for e in drops}
    # "paused-back" pauses its plan after the drop; its episode stays open.
    await stack.plan("paused-back", "starter", status="paused", updated_at="2026-11-04T00:30:00Z")
    await eventually(lambda: _paused(stack, worker, "paused-back"))
    assert worker.stop() == 0

    # Restarted the next day: still silent, episodes open, nothing new.
    again = (
        await stack.worker("w1b", data_dir=stack.tmp / "w1", **clock_env(NOV + timedelta(days=1)))
        .start()
        .ready()
    )
    await eventually(lambda: evaluated(stack, again, "back", NOV))
    # Nov 5 brings the usual 3 days' worth: recent (Nov 3-5) is back to expected.
    for account in ("back", "paused-back"):
        await history(stack, account, [NOV + timedelta(days=1)], 3000, hour=0)
    await move_clock(again, NOV + timedelta(days=2))
    await eventually(lambda: evaluated(stack, again, "paused-back", NOV + timedelta(days=1)))
    recovered = await _events(stack, "usage-recovered")
    await again.metric_becomes("moments_events_total", 2, kind="usage-recovered")
    assert again.stop() == 0

    # An empty data directory, two days on: rebuilt state repeats neither event.
    fresh_env = clock_env(NOV + timedelta(days=3))
    fresh = await stack.worker("w2", data_dir=stack.tmp / "empty", **fresh_env).start().ready()
    await eventually(lambda: evaluated(stack, fresh, "back", NOV + timedelta(days=2)))
    assert len(await _events(stack, "sudden-drop")) == 2
    assert len(await _events(stack, "usage-recovered")) == 2

    by_account = {e["account_id"]: e for e in recovered}
    assert sorted(by_account) == ["back", "paused-back"]
    for account, event in by_account.items():
        assert event["drop"]["drop_event_id"] == drop_ids[account]
        assert event["drop"]["drop_event_id"] == drop_event_id(
            account, "api_calls", NOV - timedelta(days=3)
        )
        assert event["drop"]["dropped_on"] == "2026-11-01"
        assert event["event_id"] == recovered_event_id(
            account, "api_calls", NOV - timedelta(days=3)
        )
        assert event["drop"]["recent_total"] == 3000
        assert event["drop"]["expected_total"] == 3000
        assert event["triggered_at"] == "2026-11-06T00:00:00Z"
        assert event["message"]["title"] == "Welcome back: 3,000 API calls in the last 3 days"
    assert by_account["back"]["suggestion"]["action"] == "none"
    assert by_account["paused-back"]["suggestion"]["action"] == "resume"


async def _paused(stack: Stack, worker: Worker, account: str) -> bool:
    view = await stack.account(worker, account)
    return bool(view and view["plan"] and view["plan"].get("status") == "paused")
