"""A 1,000,000-record backlog drains with flat memory; dedup keys fall back past the horizon.

Issue #8. Contract 1.1 (a repeated record_id counts once *within* the dedup horizon) and
docs/architecture.md (dedup's size is bounded by the horizon): the worker's resident memory
must not grow with the number of records it has processed, and once its (manual) clock has
moved past ``MOMENTS_DEDUP_HORIZON`` the dedup entries are expired and an old record_id
counts again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.usage import key_partition
from tests.integration.conftest import BOOTSTRAP, Stack, Worker, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RECORDS = 1_000_000
EARLY = 200_000
ACCOUNTS = 1000
PARTITIONS = 2
START = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)  # mid-month, mid-day: no period or day ends
START_MS = int(START.timestamp() * 1000)
HORIZON_S = 3600
# Memory the worker may gain between 200k and 1M records drained. Measured on the 2-core
# machine (5 runs, see the commit): RSS is reached by ~200k records and then moves by
# a few MB either way (allocator arenas, RocksDB memtables being flushed and refilled,
# the 32 MB block cache of this test filling up). A leak of 100 bytes per record would
# add 80 MB over the 800k records after the first sample; 40 MB catches 50 bytes per record.
MAX_GROWTH_MB = 40.0
OUTCOMES = ("accepted", "duplicate", "invalid", "late", "unknown_account")


def account(i: int) -> str:
    return f"bk-{i % ACCOUNTS:04d}"


def record(i: int) -> tuple[bytes, bytes]:
    acct = account(i)
    value = orjson.dumps(
        {
            "record_id": f"b-{i}",
            "account_id": acct,
            "metric": "api_calls",
            "quantity": 1,
            "timestamp": START_MS - 60_000,
        }
    )
    return acct.encode(), value


async def produce_backlog(topic: str) -> float:
    """Publish RECORDS usage records in batches, one per partition at a time; seconds taken."""
    started = time.monotonic()
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks=1, linger_ms=20, max_batch_size=1_000_000
    )
    await producer.start()
    try:
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        pending: list[asyncio.Future[Any]] = []
        for i in range(RECORDS):
            key, value = record(i)
            p = key_partition(key, PARTITIONS)
            if batches[p].append(key=key, value=value, timestamp=None) is None:
                batches[p].close()
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None)
            if len(pending) >= 64:
                await asyncio.gather(*pending)
                pending.clear()
        for p, batch in batches.items():
            batch.close()
            pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def counted(worker: Worker) -> dict[str, float]:
    return {o: await worker.metric("moments_records_total", outcome=o) for o in OUTCOMES}


@pytest.mark.xfail(
    # Not strict: the growth (38-50 MB at 1M) straddles the 40 MB bound; 1 run in 5 passed.
    strict=False,
    reason="issue #8 report: RSS grows ~50-60 bytes per record drained (182 MB at 200k, "
    "240 MB at 1M, 280 MB at 2M) while every record_id is within the dedup horizon",
)
async def test_million_record_backlog_drains_flat_and_dedup_expires_past_horizon(
    stack: Stack,
) -> None:
    stack.partitions = PARTITIONS
    await stack.create_inputs()
    for i in range(ACCOUNTS):
        await stack.plan(account(i), "enterprise")  # api_calls 10,000,000: no events
    produce_s = await produce_backlog(stack.usage_topic)

    worker = stack.worker(
        "w1",
        MOMENTS_CLOCK=f"manual:{START.isoformat().replace('+00:00', 'Z')}",
        MOMENTS_DEDUP_HORIZON=f"{HORIZON_S}s",
        MOMENTS_ROCKSDB_CACHE_MB="32",
    ).start()
    assert worker.proc is not None
    pid = worker.proc.pid
    started = time.monotonic()
    samples: list[tuple[float, float, float]] = []  # (seconds, records counted, RSS MB)
    while True:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()}"
        status, _ = await worker.get("/healthz")
        done = sum((await counted(worker)).values()) if status == 200 else 0.0
        samples.append((time.monotonic() - started, done, rss_mb(pid)))
        if done >= RECORDS:
            break
        assert time.monotonic() - started < 150, f"not drained: {samples[-1]}\n{worker.log()}"
        await asyncio.sleep(0.5)
    drain_s = samples[-1][0] - next(s for s, n, _ in samples if n > 0)
    at_early = next(rss for _, n, rss in samples if n >= EARLY)
    at_end = samples[-1][2]
    peak = max(rss for _, _, rss in samples)
    report = (
        f"produced {RECORDS} in {produce_s:.1f}s; drained in {drain_s:.1f}s "
        f"({RECORDS / drain_s:.0f}/s); RSS at {EARLY}: {at_early:.0f} MB, at {RECORDS}: "
        f"{at_end:.0f} MB, peak {peak:.0f} MB"
    )
    print(report)  # noqa: T201 - the figures the memory bound was chosen from
    curve = [(round(n), round(rss)) for _, n, rss in samples if n]
    assert await counted(worker) == {
        "accepted": RECORDS,
        "duplicate": 0,
        "invalid": 0,
        "late": 0,
        "unknown_account": 0,
    }

    async def dedup_keys() -> float:
        return await worker.metric("moments_table_keys", table="dedup")

    # The gauge is refreshed every 5 s; RocksDB's count is an estimate.
    held = await eventually(lambda: _at_least(dedup_keys, 0.9 * RECORDS), timeout=30)
    # A repeat within the horizon is a duplicate...
    await stack.usage(account(1), "b-1", timestamp=START_MS - 60_000)
    await eventually(lambda: _counted_is(worker, "duplicate", 1))

    status, body = await worker.get("/clock")
    assert status == 200 and body["kind"].startswith("manual"), body
    later = START_MS + (HORIZON_S + 60) * 1000
    answer = await asyncio.to_thread(_post_clock, worker.port, later)
    assert answer == {"now_ms": later, "kind": body["kind"]}, answer

    # ...past it, the entries are expired (in chunks, every few seconds) and counts again.
    expired_from = time.monotonic()
    await eventually(lambda: _at_most(dedup_keys, 0.01 * RECORDS), timeout=120, interval=1)
    expiry_s = time.monotonic() - expired_from
    print(f"dedup keys {held:.0f} -> expired in {expiry_s:.0f}s")  # noqa: T201
    await stack.usage(account(0), "b-0", timestamp=START_MS - 60_000)
    await eventually(lambda: _counted_is(worker, "accepted", RECORDS + 1))
    assert (await counted(worker))["duplicate"] == 1
    # Last, so that the dedup expiry above is checked whatever memory did.
    assert at_end - at_early <= MAX_GROWTH_MB, f"{report}; (records, RSS MB): {curve}"


async def _at_least(probe: Any, want: float) -> float | None:
    got = await probe()
    return got if got >= want else None


async def _at_most(probe: Any, want: float) -> bool:
    return bool(await probe() <= want)


async def _counted_is(worker: Worker, outcome: str, want: float) -> bool:
    return await worker.metric("moments_records_total", outcome=outcome) == want


def _post_clock(port: int, now_ms: int) -> Any:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - a local worker
        f"http://127.0.0.1:{port}/clock",
        data=orjson.dumps({"now_ms": now_ms}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        return orjson.loads(resp.read())
