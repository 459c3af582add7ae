"""The bench's workload: accounts with plans, usage records sized to cross plan levels,
and their publication (a backlog, or one left in an open transaction)."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from domain.plans.periods import period_containing_ms

# Plan mix of the accounts and the catalog's allotments the quantities are sized from
# (config/plans.toml), so a realistic share of accounts crosses its thresholds.
PLAN_WEIGHTS: Final = {"free": 0.2, "starter": 0.4, "growth": 0.3, "scale": 0.1}
LIMITS: Final[dict[str, dict[str, float]]] = {
    "free": {"api_calls": 1_000, "storage_gb": 1, "seats": 1, "events": 10_000},
    "starter": {"api_calls": 10_000, "storage_gb": 10, "seats": 3, "events": 100_000},
    "growth": {"api_calls": 100_000, "storage_gb": 100, "seats": 10, "events": 1_000_000},
    "scale": {"api_calls": 1_000_000, "storage_gb": 1_000, "seats": 50, "events": 10_000_000},
}
METRIC_SHARES: Final = {"api_calls": 0.55, "events": 0.30, "storage_gb": 0.10, "seats": 0.05}
INTEGRAL: Final = frozenset({"api_calls", "events", "seats"})
RFC3339_SHARE: Final = 0.15
REPEAT_WINDOW: Final = 64
"""A repeat re-sends one of the account's last this many records (a producer retry)."""
SPREAD_MS: Final = 50 * 60_000
"""Backlog event times fall in the last 50 minutes: never late, never in the future."""


@dataclass(slots=True)
class Dataset:
    """Topics and accounts of one section, and what was published to them."""

    run_id: str
    name: str
    shape: str
    """Seeds the accounts, plans and records: datasets of one shape hold the same data."""
    usage_topic: str
    plans_topic: str
    partitions: int
    accounts: list[str]
    plans: dict[str, str]
    records: int = 0
    duplicates: int = 0
    anchors: dict[str, int] = field(default_factory=dict)
    """``billing_anchor`` (epoch ms) of the accounts that have one; the others default."""


def make_dataset(
    args: argparse.Namespace, run_id: str, name: str, accounts: int, shape: str | None = None
) -> Dataset:
    """Fresh topic names and ``accounts`` accounts with a plan each (seeded by shape)."""
    shape = shape or name
    rng = random.Random(f"{args.seed}-{shape}")  # noqa: S311 - reproducible test data
    ids = [f"acct-{i:06d}" for i in range(accounts)]
    plans = {a: rng.choices(list(PLAN_WEIGHTS), list(PLAN_WEIGHTS.values()))[0] for a in ids}
    return Dataset(
        run_id=run_id,
        name=name,
        shape=shape,
        usage_topic=f"bench-{run_id}-{name}.usage",
        plans_topic=f"bench-{run_id}-{name}.plans",
        partitions=args.partitions,
        accounts=ids,
        plans=plans,
    )


class UsageSource:
    """Valid usage records for a dataset, sized so that accounts cross their plan levels.

    Per (account, metric) one quantity is chosen so that the account uses 20-110 % of
    its allotment over ``expected`` records: free and starter accounts cross their near
    levels and some hit their limits, at moments spread over the whole stream. A share
    of the records (``duplicate_rate``) re-sends one of the account's recent records,
    record_id and all.
    """

    def __init__(self, data: Dataset, expected: int, seed: int, duplicate_rate: float) -> None:
        self.data = data
        self.rng = random.Random(f"{seed}-{data.shape}-usage")  # noqa: S311 - test data
        self.duplicate_rate = duplicate_rate
        self.accounts = list(data.accounts)
        """The accounts with usage: those of the dataset when the source is made."""
        per_account = expected / len(self.accounts)
        self.sizes: dict[tuple[str, str], float] = {}
        for account in self.accounts:
            plan = data.plans[account]
            for metric, share in METRIC_SHARES.items():
                expected_n = max(1.0, per_account * share)
                self.sizes[account, metric] = (
                    LIMITS[plan][metric] * self.rng.uniform(0.2, 1.1) / expected_n
                )
        self.metrics = list(METRIC_SHARES)
        self.weights = list(METRIC_SHARES.values())
        self.sent: dict[str, list[tuple[str, bytes]]] = defaultdict(list)

    def record(self, i: int, ts_ms: int, sent_ms: int | None = None) -> tuple[bytes, bytes, str]:
        """The ``i``-th record as (key, value, record_id), with event time ``ts_ms``.

        ``sent_ms`` goes into ``attributes`` (which the worker ignores) for tracing.
        """
        rng = self.rng
        account = self.accounts[rng.randrange(len(self.accounts))]
        earlier = self.sent[account]
        self.data.records += 1
        if earlier and rng.random() < self.duplicate_rate:
            # A producer retry: the same record (same record_id) once more.
            self.data.duplicates += 1
            record_id, value = earlier[rng.randrange(len(earlier))]
            return account.encode(), value, record_id
        metric = rng.choices(self.metrics, self.weights)[0]
        size = self.sizes[account, metric] * rng.uniform(0.5, 1.5)
        quantity: float = max(1, round(size)) if metric in INTEGRAL else round(size, 3)
        timestamp: int | str = ts_ms
        if rng.random() < RFC3339_SHARE:
            timestamp = (
                datetime.fromtimestamp(ts_ms / 1000, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        record_id = f"{self.data.run_id}-{self.data.shape}-{i:09d}"
        attributes: dict[str, Any] = {"region": "eu-west-1", "sdk": "bench/1"}
        if sent_ms is not None:
            attributes["bench_sent_ms"] = sent_ms
        value = orjson.dumps(
            {
                "record_id": record_id,
                "account_id": account,
                "metric": metric,
                "quantity": quantity,
                "timestamp": timestamp,
                "attributes": attributes,
            }
        )
        # orjson's bytes keep a ~4 KiB buffer; an exact-size copy keeps 300k records small.
        earlier.append((record_id, bytes(memoryview(value))))
        if len(earlier) > REPEAT_WINDOW:
            del earlier[0]
        return account.encode(), value, record_id

    def backlog(self, count: int) -> Iterable[tuple[bytes, bytes]]:
        """``count`` records with event times spread over the last 50 minutes."""
        now_ms = int(time.time() * 1000)
        for i in range(count):
            key, value, _ = self.record(i, now_ms - self.rng.randrange(SPREAD_MS))
            yield key, value


def iso_ms(ts_ms: int) -> str:
    """RFC 3339 text of an epoch-ms instant, in UTC with milliseconds."""
    text = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


DAY_MS: Final = 86_400_000
HISTORY_SHARE: Final = 0.005
"""Of its plan's ``api_calls`` allotment, what a history account used on each past day."""
DROPPING_EVERY: Final = 5
"""One history account in this many (on plans whose daily use the drop rules look at) dips
over its last three days, so the drop evaluation of yesterday reports a drop."""


@dataclass(frozen=True, slots=True)
class BackgroundPlan:
    """When the latency section's background work falls due, without a fake clock.

    The worker runs on the real clock, so the bench picks settings and data that make work
    fall due while the load runs: a drop grace (``MOMENTS_DROP_GRACE``) that makes
    yesterday's close due ``close_at_ms`` (the day before yesterday is due at start, and
    evaluated during the warm-up), and billing anchors whose period ends become final
    (end + late grace) at ``anniversary_due_ms``, spread over the middle of the load.
    """

    load_start_ms: int
    close_at_ms: int
    drop_grace_ms: int
    anniversary_ends_ms: tuple[int, ...]
    late_grace_ms: int

    @property
    def anniversary_due_ms(self) -> tuple[int, ...]:
        """When each anniversary becomes due (its end plus the late grace)."""
        return tuple(end + self.late_grace_ms + 1 for end in self.anniversary_ends_ms)


def background_plan(
    now_ms: int, warmup_s: float, seconds: float, anniversaries: int, late_grace_ms: int
) -> BackgroundPlan:
    """The due times of a load starting ``warmup_s`` after ``now_ms`` and lasting ``seconds``:
    the day close a third of the way in, the anniversaries spread from 20 % to 70 % of it."""
    load_start = now_ms + int(1000 * warmup_s)
    close_at = load_start + int(1000 * seconds / 3)
    ends = tuple(
        load_start + int(1000 * seconds * (0.2 + 0.5 * i / max(1, anniversaries))) - late_grace_ms
        for i in range(anniversaries)
    )
    # due_day(now, grace) = utc_day(now - grace) - 1 moves to yesterday when now - grace
    # passes midnight: with grace = close_at's time of day, that is at close_at.
    return BackgroundPlan(load_start, close_at, close_at % DAY_MS, ends, late_grace_ms)


def anchor_ending_at(end_ms: int) -> int:
    """A billing anchor whose first (monthly) billing period ends at ``end_ms``: a period
    ending at or before the anchor completes none, and its anniversary is passed over. When
    the month before has no such day (``end_ms`` on the 29th-31st), the anchor is ``end_ms``
    itself: the pass still visits the account, but sends nothing."""
    start = period_containing_ms(end_ms - 1, end_ms, "month").start_ms
    return start if period_containing_ms(start, start, "month").end_ms == end_ms else end_ms


def add_anniversary_accounts(data: Dataset, plan: BackgroundPlan, seed: int) -> list[str]:
    """Accounts (without usage) whose first billing period ends at ``plan``'s ends
    (:func:`anchor_ending_at`), active: their anniversary sends a recap. Returns their ids."""
    rng = random.Random(f"{seed}-{data.shape}-anniversaries")  # noqa: S311 - test data
    ids = [f"anniv-{i:06d}" for i in range(len(plan.anniversary_ends_ms))]
    for account, end in zip(ids, plan.anniversary_ends_ms, strict=True):
        data.accounts.append(account)
        data.plans[account] = rng.choices(list(PLAN_WEIGHTS), list(PLAN_WEIGHTS.values()))[0]
        data.anchors[account] = anchor_ending_at(end)
    return ids


def history_anchor_ms(now_ms: int, days: int) -> int:
    """The billing anchor of history accounts: midnight ``days`` days ago, so their current
    (monthly: at least 28 days) period holds every day of history and today."""
    return (now_ms // DAY_MS - days) * DAY_MS


def history_quantity(plan_id: str, index: int, days_ago: int) -> int:
    """``api_calls`` of history account number ``index`` on the day ``days_ago`` days back
    (1: yesterday): a steady share of its allotment, and for one account in
    :data:`DROPPING_EVERY` on a plan whose daily use reaches the drop rules' minimum, a dip
    that only yesterday's evaluation sees (a fifth on the two days before, nothing
    yesterday)."""
    daily = max(1, round(LIMITS[plan_id]["api_calls"] * HISTORY_SHARE))
    if index % DROPPING_EVERY == 0 and daily >= 100 and days_ago <= 3:
        return 0 if days_ago == 1 else max(1, daily // 5)
    return daily


def history_records(
    data: Dataset, accounts: list[str], now_ms: int, days: int
) -> Iterable[tuple[bytes, bytes]]:
    """One ``api_calls`` record per account and past day (noon UTC), for ``days`` days up to
    yesterday; sets the accounts' anchors (:func:`history_anchor_ms`)."""
    anchor = history_anchor_ms(now_ms, days)
    today = now_ms // DAY_MS
    for account in accounts:
        data.anchors[account] = anchor
    for days_ago in range(days, 0, -1):
        noon = (today - days_ago) * DAY_MS + DAY_MS // 2
        for index, account in enumerate(accounts):
            quantity = history_quantity(data.plans[account], index, days_ago)
            if quantity <= 0:
                continue
            record_id = f"{data.run_id}-{data.shape}-history-{account}-{days_ago}"
            value = orjson.dumps(
                {
                    "record_id": record_id,
                    "account_id": account,
                    "metric": "api_calls",
                    "quantity": quantity,
                    "timestamp": noon,
                }
            )
            data.records += 1
            yield account.encode(), value


def new_producer(bootstrap: str, **extra: Any) -> AIOKafkaProducer:
    """A producer tuned for bulk publishing (big batches, some linger)."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": 1,
        "linger_ms": 20,
        "max_batch_size": 512 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    }
    config.update(extra)
    return AIOKafkaProducer(**config)


async def publish_plans(bootstrap: str, data: Dataset) -> float:
    """One plan record per account; returns the seconds it took."""
    producer = new_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        updated_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        pending: list[asyncio.Future[Any]] = []
        for account in data.accounts:
            plan = {"account_id": account, "plan_id": data.plans[account], "updated_at": updated_at}
            if account in data.anchors:
                plan["billing_anchor"] = iso_ms(data.anchors[account])
            pending.append(
                await producer.send(data.plans_topic, orjson.dumps(plan), key=account.encode())
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def send_all(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Send every (key, value) and wait for all acknowledgements."""
    pending: list[asyncio.Future[Any]] = []
    for key, value in records:
        pending.append(await producer.send(topic, value, key=key))
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def publish_records(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> float:
    """Publish (key, value) records as fast as aiokafka goes; returns seconds."""
    producer = new_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        await send_all(producer, topic, records)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def publish_backlog(args: argparse.Namespace, data: Dataset, count: int) -> float:
    """Publish ``count`` usage records as fast as aiokafka goes; returns seconds."""
    source = UsageSource(data, count, args.seed, args.duplicate_rate)
    producer = new_producer(args.bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        await send_all(producer, data.usage_topic, source.backlog(count))
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def open_gated_backlog(
    args: argparse.Namespace, data: Dataset, count: int
) -> tuple[AIOKafkaProducer, float]:
    """Publish ``count`` usage records inside one transaction and leave it OPEN.

    read_committed consumers see none of them until the caller commits, then all at
    once. Returns the producer (transaction open) and the seconds publishing took.
    """
    # The broker caps transactions at transaction.max.timeout.ms (15 min by default).
    timeout_ms = min(900_000, int((3 * args.max_seconds + 120) * 1000))
    producer = new_producer(
        args.bootstrap,
        acks="all",
        transactional_id=f"bench-{data.run_id}-{data.name}-gate",
        transaction_timeout_ms=timeout_ms,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        await producer.begin_transaction()
        source = UsageSource(data, count, args.seed, args.duplicate_rate)
        await send_all(producer, data.usage_topic, source.backlog(count))
    except BaseException:
        await producer.stop()
        raise
    return producer, time.perf_counter() - started
