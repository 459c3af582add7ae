"""The ingestion path through a real broker: totals, dead letters, dedup, restarts."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack, eventually, total_of

pytestmark = pytest.mark.integration


async def _total(stack: Stack, worker: Any, account: str, want: float) -> bool:
    return total_of(await stack.account(worker, account)) == want


async def test_valid_record_changes_totals(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    await stack.plan("acct-1", "starter")
    await stack.usage("acct-1", "r1", 120)
    await stack.usage("acct-1", "r2", 30.5)
    await eventually(lambda: _total(stack, worker, "acct-1", 150.5))
    view = await stack.account(worker, "acct-1")
    assert view is not None
    assert view["plan"]["id"] == "starter"
    assert view["status"] == "active"
    assert view["period_totals"]["api_calls"][-1]["limit"] == 10000
    await worker.metric_becomes("moments_records_total", 2, outcome="accepted")
    status, body = await worker.get("/accounts/nobody")
    assert status == 404, body


INVALID: list[tuple[bytes | None, str]] = [
    (b"{not json", "invalid JSON"),
    (
        orjson.dumps(
            {"account_id": "acct-1", "metric": "api_calls", "quantity": 1, "timestamp": 0}
        ),
        "record_id",
    ),
    (
        orjson.dumps(
            {
                "record_id": "x1",
                "account_id": "acct-1",
                "metric": "api_calls",
                "quantity": "12",
                "timestamp": 0,
            }
        ),
        "quantity",
    ),
    (
        orjson.dumps(
            {
                "record_id": "x2",
                "account_id": "acct-1",
                "metric": "api_calls",
                "quantity": -3,
                "timestamp": 0,
            }
        ),
        "quantity",
    ),
    (
        orjson.dumps(
            {
                "record_id": "x3",
                "account_id": "acct-1",
                "metric": "API Calls",
                "quantity": 1,
                "timestamp": 0,
            }
        ),
        "metric",
    ),
    (
        orjson.dumps(
            {
                "record_id": "x4",
                "account_id": "acct-1",
                "metric": "api_calls",
                "quantity": 1,
                "timestamp": "2999-01-01T00:00:00Z",
            }
        ),
        "timestamp",
    ),
    (
        orjson.dumps(
            {
                "record_id": "x5",
                "account_id": "acct-1",
                "metric": "api_calls",
                "quantity": 1,
                "timestamp": "2026-01-01T00:00:00",
            }
        ),
        "timestamp",
    ),
    (b"\xff\xfe binary", "invalid JSON"),
    (None, "empty value"),
]


async def test_each_invalid_record_goes_to_the_dlq_and_the_worker_keeps_going(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    for value, _ in INVALID:
        await stack.send(stack.usage_topic, "acct-1", value)
    await stack.usage("acct-1", "good", 7)
    await eventually(lambda: _total(stack, worker, "acct-1", 7))
    letters = await stack.read(f"{stack.usage_topic}.dlq", len(INVALID))
    assert len(letters) == len(INVALID)
    by_offset = sorted((orjson.loads(m.value) for m in letters), key=lambda d: d["offset"])
    for letter, (value, reason) in zip(by_offset, INVALID, strict=True):
        assert reason in letter["error"], letter
        assert letter["topic"] == stack.usage_topic
        assert set(letter) == {"error", "topic", "partition", "offset", "raw", "at"}
        if value is not None and value.startswith(b"\xff"):
            assert letter["raw"] != value.decode("latin-1")  # base64, not mangled text
    await worker.metric_becomes("moments_records_total", len(INVALID), outcome="invalid")
    await worker.metric_becomes("moments_records_total", 1, outcome="unknown_account")


async def test_repeated_record_id_counts_once(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    await stack.plan("acct-d")
    for _ in range(3):
        await stack.usage("acct-d", "same-id", 10)
    await stack.usage("acct-d", "other-id", 1)
    await eventually(lambda: _total(stack, worker, "acct-d", 11))
    await worker.metric_becomes("moments_records_total", 2, outcome="duplicate")
    # A later repeat, in another batch, is still a duplicate.
    await stack.usage("acct-d", "same-id", 10)
    await eventually(lambda: _metric_is(worker, "moments_records_total", 3, outcome="duplicate"))
    assert total_of(await stack.account(worker, "acct-d")) == 11


async def _metric_is(worker: Any, name: str, want: float, **labels: str) -> bool:
    return await worker.metric(name, **labels) == want


async def test_restart_keeps_totals_and_empty_data_dir_rebuilds_from_changelog(
    stack: Stack,
) -> None:
    first = await stack.worker("w1").start().ready()
    await stack.plan("acct-r")
    await stack.usage("acct-r", "r1", 5)
    await stack.usage("acct-r", "r2", 6)
    await eventually(lambda: _total(stack, first, "acct-r", 11))
    assert first.stop() == 0

    again = await stack.worker("w1-again", data_dir=stack.tmp / "w1").start().ready()
    assert total_of(await stack.account(again, "acct-r")) == 11
    await stack.usage("acct-r", "r3", 1)
    await stack.usage("acct-r", "r1", 5)  # a repeat from before the restart
    await eventually(lambda: _total(stack, again, "acct-r", 12))
    assert again.stop() == 0

    fresh = await stack.worker("w2", data_dir=stack.tmp / "empty").start().ready()
    assert total_of(await stack.account(fresh, "acct-r")) == 12
    view = await stack.account(fresh, "acct-r")
    assert view is not None and view["plan"]["id"] == "starter"
    await stack.usage("acct-r", "r2", 6)  # dedup state came back too
    await stack.usage("acct-r", "r4", 2)
    await eventually(lambda: _total(stack, fresh, "acct-r", 14))


async def test_plans_ordering_tombstones_and_catalog_check(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    await stack.plan("acct-p", "growth", updated_at="2026-02-01T00:00:00Z")
    await stack.plan("acct-p", "free", updated_at="2026-01-15T00:00:00Z")  # older: ignored
    await stack.plan("acct-q", "gold")  # not in the catalog
    await stack.send(
        stack.plans_topic,
        "acct-x",
        {"account_id": "acct-y", "plan_id": "free", "updated_at": "2026-01-01T00:00:00Z"},
    )
    await stack.usage("acct-p", "p1", 1)

    async def plan_is(plan_id: str | None) -> bool:
        view = await stack.account(worker, "acct-p")
        return (view or {}).get("plan", {}) and view["plan"]["id"] == plan_id  # type: ignore[index]

    await eventually(lambda: plan_is("growth"))
    letters = await stack.read(f"{stack.plans_topic}.dlq", 2)
    errors = sorted(orjson.loads(m.value)["error"] for m in letters)
    assert "not in the plan catalog" in errors[1] or "not in the plan catalog" in errors[0]
    assert any("differs from the record key" in e for e in errors)
    await worker.metric_becomes("moments_plan_records_total", 1, outcome="stale")

    await stack.send(stack.plans_topic, "acct-p", None)  # tombstone: forget the plan

    async def forgotten() -> bool:
        view = await stack.account(worker, "acct-p")
        return view is not None and view["plan"] is None

    await eventually(forgotten)


async def test_usage_backlog_is_judged_under_plans_published_before_it(stack: Stack) -> None:
    """Plans and usage published while no worker runs: the plans are read first."""
    await stack.create_topics(
        {stack.usage_topic: 2, stack.plans_topic: 2}, compact={stack.plans_topic}
    )
    now = int(time.time() * 1000)
    accounts = [f"acct-b{i}" for i in range(12)]
    for account in accounts:
        await stack.plan(account, "growth")
    for i in range(300):
        await stack.usage(accounts[i % len(accounts)], f"b{i}", 1, timestamp=now)
    worker = await stack.worker().start().ready()

    async def all_counted() -> bool:
        return await worker.metric("moments_records_total", outcome="accepted") == 300

    await eventually(all_counted)
    # Every record counts under one outcome: with all 300 accepted, none was judged
    # without its plan (a wait for 0 would be met at its first poll).
    assert await worker.metric("moments_records_total", outcome="unknown_account") == 0


async def test_record_keyed_by_something_else_is_counted_on_its_account(stack: Stack) -> None:
    worker = await stack.worker().start().ready()
    await stack.plan("acct-k")
    for i in range(6):
        await stack.usage("acct-k", f"k{i}", 2, key=f"device-{i}")
    await stack.usage("acct-k", "k0", 2, key="device-9")  # a repeat, via another key
    await eventually(lambda: _total(stack, worker, "acct-k", 12))
    await worker.metric_becomes("moments_records_total", 1, outcome="duplicate")


async def test_inputs_not_co_partitioned_refuse_to_start(stack: Stack) -> None:
    await stack.create_topics({stack.usage_topic: 2, stack.plans_topic: 3})
    worker = stack.worker().start()
    assert worker.proc is not None
    code = worker.proc.wait(timeout=60)
    assert code == 2
    log = worker.log()
    assert f"{stack.usage_topic} has 2 partitions but {stack.plans_topic} has 3" in log


async def test_partition_setting_must_match_existing_inputs(stack: Stack) -> None:
    await stack.create_topics({stack.usage_topic: 3, stack.plans_topic: 3})
    worker = stack.worker().start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=60) == 2
    assert "set MOMENTS_PARTITIONS=3" in worker.log()
