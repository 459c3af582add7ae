"""The engine under faults: clean stops, SIGKILL of one of two workers, SIGTERM under load.

Contract section 4: a worker with an empty data directory rebuilds exactly the state
its predecessor committed; a crash or a rebalance neither loses nor repeats a record
or an event; SIGTERM commits what is finished and exits 0 within
MOMENTS_SHUTDOWN_TIMEOUT. Real broker, real ``moments worker`` processes, real
signals; events are read ``read_committed``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import BOOTSTRAP, Stack, Worker, eventually, total_of

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FREE_LIMIT = 1000  # the catalog's "free" plan: api_calls 1,000, near levels 0.5 and 0.8
FREE_LEVELS = (0.5, 0.8, 1.0, 1.5, 2.0)  # and the default overage levels 1.5 and 2.0


def levels_reached(total: float, limit: int = FREE_LIMIT) -> list[float]:
    """Levels of the free plan a period total has reached (exact: integer totals)."""
    return [level for level in FREE_LEVELS if total * 10 >= round(level * 10) * limit]


def usage_record(account: str, record_id: str, quantity: float, timestamp: int) -> bytes:
    return orjson.dumps(
        {
            "record_id": record_id,
            "account_id": account,
            "metric": "api_calls",
            "quantity": quantity,
            "timestamp": timestamp,
        }
    )


def plan_record(account: str, plan_id: str = "free") -> bytes:
    return orjson.dumps(
        {"account_id": account, "plan_id": plan_id, "updated_at": "2026-01-01T00:00:00Z"}
    )


async def send_all(
    producer: AIOKafkaProducer, topic: str, messages: Iterable[tuple[str, bytes]]
) -> int:
    """Send ``(key, value)`` messages without waiting for each; wait for all at the end."""
    futures = []
    for key, value in messages:
        futures.append(await producer.send(topic, key=key.encode(), value=value))
    await asyncio.gather(*futures)
    return len(futures)


async def records_counted(worker: Worker) -> dict[str, float]:
    """``moments_records_total`` by outcome, from one scrape of ``/metrics``."""
    return (await worker.metrics()).by_label("moments_records_total", "outcome")


async def threshold_events(stack: Stack) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind in ("threshold-near", "threshold-hit"):
        out += [orjson.loads(m.value) for m in await stack.read_all(f"{stack.prefix}.{kind}")]
    return out


def assert_announced_exactly_once(
    events: list[dict[str, Any]], expected: set[tuple[str, float]]
) -> None:
    """Unique event ids, and every (account, level) crossed once, no more, no less."""
    ids = Counter(e["event_id"] for e in events)
    repeated = {i: n for i, n in ids.items() if n > 1}
    assert not repeated, f"events delivered more than once: {repeated}"
    crossed = Counter((e["account_id"], level) for e in events for level in e["crossed_levels"])
    twice = {k: n for k, n in crossed.items() if n > 1}
    assert not twice, f"levels announced more than once: {twice}"
    missing = expected - set(crossed)
    extra = set(crossed) - expected
    assert not missing and not extra, f"missing {sorted(missing)}; unexpected {sorted(extra)}"


async def views_of(stack: Stack, worker: Worker, accounts: list[str]) -> dict[str, Any]:
    views = await asyncio.gather(*(stack.account(worker, a) for a in accounts))
    return dict(zip(accounts, views, strict=True))


async def totals_of(stack: Stack, worker: Worker, accounts: list[str]) -> dict[str, Any]:
    views = await views_of(stack, worker, accounts)
    return {a: total_of(v) for a, v in views.items()}


def full_log(worker: Worker) -> str:
    return worker.log_path.read_text(errors="replace")


async def test_clean_stop_then_empty_data_dir_rebuilds_same_state(stack: Stack) -> None:
    accounts = [f"rebuild-{i:02d}" for i in range(30)]
    await stack.create_inputs()
    producer = await stack.producer()
    await send_all(producer, stack.plans_topic, ((a, plan_record(a)) for a in accounts))
    first = await stack.worker("w1").start().ready()

    # Account i: 10 records of 20 + 10*i -> totals 200, 300, ..., 3,100, so accounts
    # stop below every level, exactly on 0.5, 0.8 and 1.0, and past them all.
    now = int(time.time() * 1000)
    quantity = {a: 20 + 10 * i for i, a in enumerate(accounts)}
    originals = [
        (a, usage_record(a, f"{a}-r{n}", quantity[a], now)) for n in range(10) for a in accounts
    ]
    repeats = [
        (a, usage_record(a, f"{a}-r{n}", quantity[a], now)) for n in (0, 1, 2) for a in accounts
    ]
    await send_all(producer, stack.usage_topic, originals + repeats)
    totals = {a: 10 * quantity[a] for a in accounts}

    async def all_counted() -> bool:
        return sum((await records_counted(first)).values()) >= len(originals) + len(repeats)

    await eventually(all_counted, timeout=60)
    assert await records_counted(first) == {
        "accepted": len(originals),
        "duplicate": len(repeats),
        "invalid": 0,
        "late": 0,
        "unknown_account": 0,
        "unmetered": 0,
    }

    async def stable_views() -> dict[str, Any] | None:
        # Background work (a drop evaluation) may still touch the view: take it once
        # two reads a moment apart agree.
        before = await views_of(stack, first, accounts)
        await asyncio.sleep(1.0)
        after = await views_of(stack, first, accounts)
        return after if before == after and all(after.values()) else None

    views = await eventually(stable_views, timeout=30)
    for account in accounts:
        assert total_of(views[account]) == totals[account], views[account]
        reached = levels_reached(totals[account])
        announced = views[account]["period_totals"]["api_calls"][-1]["announced"]
        assert announced == ({"free": reached} if reached else {}), (account, announced)

    assert first.stop() == 0, f"SIGTERM exit status, log:\n{first.log()}"

    second = await stack.worker("w2").start().ready()  # same app id, empty data dir
    rebuilt = await views_of(stack, second, accounts)
    for account in accounts:
        assert rebuilt[account] == views[account], (account, rebuilt[account], views[account])

    # Already-sent records again (dedup entries must have been restored), and new ones
    # that cross no level: nothing may be counted twice or announced again.
    again = [
        (a, usage_record(a, f"{a}-r{n}", quantity[a], now)) for n in (3, 4, 5) for a in accounts
    ]
    fresh = [(a, usage_record(a, f"{a}-new", 1, now)) for a in accounts]
    for account in accounts:
        assert levels_reached(totals[account] + 1) == levels_reached(totals[account])
    await send_all(producer, stack.usage_topic, again + fresh)

    async def second_counted() -> bool:
        counted = await records_counted(second)
        return counted["accepted"] + counted["duplicate"] >= len(again) + len(fresh)

    await eventually(second_counted, timeout=60)
    counted = await records_counted(second)
    assert counted["duplicate"] == len(again), counted
    assert counted["accepted"] == len(fresh), counted
    now_totals = await totals_of(stack, second, accounts)
    assert now_totals == {a: totals[a] + 1 for a in accounts}

    expected = {(a, level) for a in accounts for level in levels_reached(totals[a])}
    assert_announced_exactly_once(await threshold_events(stack), expected)


async def test_two_workers_one_killed_mid_stream_survivor_takes_over(stack: Stack) -> None:
    stack.partitions = 4
    accounts = [f"takeover-{i:03d}" for i in range(300)]
    rounds = 100  # 100 records of 10 per account: every account reaches 0.5, 0.8, 1.0
    await stack.create_inputs()
    producer = await stack.producer()
    await send_all(producer, stack.plans_topic, ((a, plan_record(a)) for a in accounts))
    # A short session timeout, so the group moves the dead worker's partitions soon.
    fast = {"MOMENTS_SESSION_TIMEOUT": "6s"}
    w1 = await stack.worker("w1", **fast).start().ready()
    w2 = await stack.worker("w2", **fast).start().ready()
    await w1.ready()

    now = int(time.time() * 1000)
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for n in range(rounds):
            sent += await send_all(
                producer,
                stack.usage_topic,
                ((a, usage_record(a, f"{a}-{n}", 10, now)) for a in accounts),
            )
            await asyncio.sleep(0.25)

    production = asyncio.create_task(produce())
    try:

        async def w2_busy() -> bool:
            return await w2.metric("moments_records_total", outcome="accepted") >= 1500

        await eventually(w2_busy, timeout=60, interval=0.1)
        assert not production.done(), "production ended before the kill: not mid-stream"
        log_mark = len(full_log(w1))
        w2.kill()
        killed_at = sent

        async def w1_owns_all() -> bool:
            return "partitions [0, 1, 2, 3] ready in" in full_log(w1)[log_mark:]

        await eventually(w1_owns_all, timeout=40, interval=0.2)
        await asyncio.sleep(1.0)
        w2b = await stack.worker("w2b", data_dir=stack.tmp / "w2", **fast).start().ready()
        await production
    finally:
        if not production.done():
            production.cancel()
    assert 0 < killed_at < rounds * len(accounts), killed_at

    async def all_counted() -> bool:
        totals = await totals_of(stack, w1, accounts)
        return all(t == rounds * 10 for t in totals.values())

    await eventually(all_counted, timeout=90, interval=1.0)
    # Every account is answered by either worker (each routes to the owner).
    assert await totals_of(stack, w2b, accounts) == {a: rounds * 10.0 for a in accounts}

    expected = {(a, level) for a in accounts for level in levels_reached(rounds * 10)}
    assert_announced_exactly_once(await threshold_events(stack), expected)

    assert w1.proc is not None and w1.proc.poll() is None, f"w1 exited:\n{w1.log()}"
    log = full_log(w1)
    for bad in ("Traceback", "ConsistencyError"):
        assert bad not in log, f"{bad} in w1's log:\n{w1.log()}"


async def test_sigterm_under_exactly_once_after_large_backlog_exits_zero_in_time(
    stack: Stack,
) -> None:
    accounts = [f"backlog-{i:04d}" for i in range(2000)]
    per_account = 100  # 200,000 records
    total_records = per_account * len(accounts)
    await stack.create_inputs()
    fast = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await fast.start()
    now = int(time.time() * 1000)
    expected: dict[str, int] = {a: 0 for a in accounts}
    try:
        await send_all(fast, stack.plans_topic, ((a, plan_record(a)) for a in accounts))
        for n in range(per_account):
            batch = []
            for j, account in enumerate(accounts):
                quantity = 1 + (j + n) % 19
                expected[account] += quantity
                batch.append((account, usage_record(account, f"{account}-{n}", quantity, now)))
            await send_all(fast, stack.usage_topic, batch)
    finally:
        await fast.stop()

    exactly_once = {"MOMENTS_PROCESSING_GUARANTEE": "exactly_once"}
    first = stack.worker("w1", MOMENTS_SHUTDOWN_TIMEOUT="30s", **exactly_once).start()
    await first.ready()

    async def counted(worker: Worker) -> float:
        return sum((await records_counted(worker)).values())

    async def some_processed() -> float:
        done = await counted(first)
        return done if done > 10_000 else 0

    done_before = await eventually(some_processed, timeout=90, interval=0.05)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert done_before < total_records, "the backlog was processed before SIGTERM"
    try:
        status = await asyncio.to_thread(first.proc.wait, 45)
    except subprocess.TimeoutExpired:  # still running: fail below with the log
        first.proc.kill()
        status = None
    took = time.monotonic() - signalled
    assert status == 0 and took <= 30.0, (
        f"exit status {status} after {took:.1f}s; log:\n{first.log()}"
    )

    second = await stack.worker("w1b", data_dir=stack.tmp / "w1", **exactly_once).start().ready()
    sample = accounts[::40]  # 50 accounts

    async def sample_done() -> bool:
        totals = await totals_of(stack, second, sample)
        return all(totals[a] == expected[a] for a in sample)

    await eventually(sample_done, timeout=90, interval=1.0)
    totals = await totals_of(stack, second, accounts)
    wrong = {a: (totals[a], expected[a]) for a in accounts if totals[a] != expected[a]}
    assert not wrong, f"{len(wrong)} accounts off (got, want): {dict(list(wrong.items())[:10])}"
    # What the first worker committed is not redone: nothing is a duplicate, and the
    # second worker counts at most the records the first did not report counted.
    after = await records_counted(second)
    assert after["duplicate"] == 0, after
    assert after["accepted"] + done_before <= total_records, (after, done_before)

    expected_levels = {(a, level) for a in accounts for level in levels_reached(expected[a])}
    assert_announced_exactly_once(await threshold_events(stack), expected_levels)
