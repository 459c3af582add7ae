"""A worker killed mid-stream (SIGKILL) loses and repeats nothing after its restart."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.integration.conftest import Stack, eventually, total_of

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_sigkill_mid_stream_then_restart_counts_and_announces_exactly_once(
    stack: Stack,
) -> None:
    accounts = [f"crash-{i}" for i in range(20)]
    await stack.create_inputs()
    for account in accounts:
        await stack.plan(account, "free")  # api_calls 1,000; levels 0.5, 0.8, 1.0
    worker = await stack.worker("w1").start().ready()
    now = int(time.time() * 1000)
    producer = await stack.producer()
    for i in range(100):
        for account in accounts:
            record = {
                "record_id": f"{account}-{i}",
                "account_id": account,
                "metric": "api_calls",
                "quantity": 10,
                "timestamp": now,
            }
            await producer.send(stack.usage_topic, key=account.encode(), value=orjson.dumps(record))
    await producer.flush()

    async def some_processed() -> bool:
        return await worker.metric("moments_records_total", outcome="accepted") >= 100

    await eventually(some_processed, interval=0.05)
    worker.kill()

    again = await stack.worker("w1b", data_dir=stack.tmp / "w1").start().ready()
    # The local stores are kept (they never run ahead of Kafka) and catch up from
    # the offsets they recorded, instead of being thrown away.
    assert "ready in" in again.log_path.read_text(errors="replace")

    async def all_counted() -> bool:
        totals = [total_of(await stack.account(again, a)) for a in accounts]
        return all(t == 1000 for t in totals) or False

    await eventually(all_counted, timeout=90)
    for account in accounts:
        assert total_of(await stack.account(again, account)) == 1000

    events = []
    for kind in ("threshold-near", "threshold-hit"):
        events += [orjson.loads(m.value) for m in await stack.read_all(f"{stack.prefix}.{kind}")]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    got = sorted((e["account_id"], e["level"]) for e in events)
    assert got == sorted((a, level) for a in accounts for level in (0.5, 0.8, 1.0))
