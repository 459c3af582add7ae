"""Benchmark of ``moments worker``: throughput, scaling, latency, memory, state, restarts.

Run with a broker up (``make bench`` starts the local one)::

    .venv/bin/python scripts/bench.py [--only SECTION,...] [--records N] [--max-seconds S]

It prints figures next to their targets and never asserts them. The sections
(``--only``, default all of them):

``baseline``
    a plain aiokafka consumer (no group, read_committed) reads the backlog of N usage
    records, ``orjson.loads`` each one and sums quantities per account: the ceiling of
    a Python consumer on this machine.
``throughput``
    ONE worker per guarantee (``--guarantee``) on that backlog, fresh app id and data
    dir each: records/s from ``/readyz`` 200 until ``moments_records_total`` (all
    outcomes) reaches N (target 50,000/s under exactly_once). Afterwards the peak RSS
    (VmHWM) and the size on disk of the worker's MOMENTS_DATA_DIR.
``two-workers``
    TWO exactly_once workers in one consumer group (same app id, own data dirs and
    ports) on a copy of that backlog in other topics. The copy is published inside one
    Kafka transaction that is committed only once both workers are steadily ready, so
    both see all of it at the same instant (exactly_once workers read read_committed; a
    worker counting records before the commit is reported as a leak). Records/s from
    the commit until the two workers' counts add up to N (target: 1.7 times one
    exactly_once worker, which is therefore measured too).
``latency``
    one exactly_once worker, then a paced producer offering ``--latency-rate``
    records/s (10,000) for ``--latency-seconds`` on fresh topics, sized so that accounts
    cross their plan levels all along; a read_committed consumer of
    ``<prefix>.threshold-near`` and ``<prefix>.threshold-hit`` maps each event's
    ``trigger_record_id`` back to the time its record was handed to the producer.
    p50/p99 of that end-to-end latency (target p99 < 500 ms); the worker's own
    ``moments_event_latency_seconds`` histogram as a secondary figure.
``rebuild``
    after the exactly_once throughput run (once the group has no member left, so a
    killed worker's session does not count), a fresh worker with the same app id and
    an EMPTY data dir: seconds from process start to ``/readyz`` 200, i.e. the tables
    rebuilt from the changelog topics. ``/accounts/{id}`` of 20 accounts must then read
    as it did on the original worker (else WRONG STATE, with every differing field).
    Like with like: the original's views are read once the drop evaluation and
    anniversary pass its post-backlog tick started are done on every partition (its
    log says so), and it is stopped right after; the rebuilt worker's once it too is
    idle; what could still make them differ (work the rebuilt one resumed or started:
    a new day or cut) is named. ``--rebuild-early`` reads both as the check once did
    (2.5 s after the last record, and at ready). The committed records in the
    changelogs are counted afterwards, and Faust's own count is read from its log.
``plans``
    ``--plans`` (100,000) plan records, then ``--plans-usage`` usage records on fresh
    topics; one worker: seconds from process start until the group's committed offset
    on the usage topic first exceeds 0 (target < 10 s).

Every wait is bounded by ``--max-seconds``; a section that runs out reports "did not
finish in S s" with its partial rate. Nothing in Kafka is deleted (every topic and app
id is unique to the run); data dirs are temporary, worker logs are kept in
``--log-dir``. A final table lists each figure, its target and whether it was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

# ------------------------------------------------------------------------ targets

TARGET_RPS: Final = 50_000.0
"""Records/s of one exactly_once worker with all tables on it."""
TARGET_SCALING: Final = 1.7
"""Two workers in one group: at least this many times one worker's rate."""
TARGET_P99_S: Final = 0.5
"""End-to-end latency p99 at a steady 10,000 records/s."""
TARGET_RSS_MB: Final = 600.0
TARGET_FIRST_COMMIT_S: Final = 10.0
"""Worker start to its first usage commit with 100,000 plans to read first."""

Guarantee = Literal["exactly_once", "at_least_once"]
GUARANTEES: Final[tuple[Guarantee, ...]] = ("exactly_once", "at_least_once")
SECTIONS: Final = ("baseline", "throughput", "two-workers", "latency", "rebuild", "plans")
THRESHOLD_KINDS: Final = ("threshold-near", "threshold-hit")

# ---------------------------------------------------------------------- test data

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

# ----------------------------------------------------------------------- plumbing

POLL_READY_S: Final = 0.1
POLL_METRICS_S: Final = 0.25
POLL_OFFSETS_S: Final = 0.1
PROGRESS_EVERY_S: Final = 5.0
SAMPLE_ACCOUNTS: Final = 20
"""Accounts whose /accounts/{id} view is compared between the original and rebuilt worker."""
SETTLE_S: Final = 2.0
"""Both workers must answer /readyz 200 this long before the two-worker backlog opens."""
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
LOG_PREFIX: Final = re.compile(r"^(\[[^\]]*\]\s*\[\d+\]\s*|[\d\-]+ [\d:,.]+\s+)")
"""Faust's ``[time] [pid] `` or logging's ``date time `` at the start of a log line."""
NOTABLE: Final = re.compile(r"\b(ERROR|CRITICAL|WARNING|Traceback|[Rr]ebalanc\w*|Exception)\b")
RECOVERY_LINE: Final = re.compile(r"(?i)restor|recover|rebuil|worker ready")
#: Log lines of background work (agents/ticks.py, agents/drops.py, agents/anniversaries.py).
BACKGROUND_LINE: Final = re.compile(
    r"partition (?P<p>\d+): (?:"
    r"day (?P<tick_day>\d+) closed, cut (?P<tick_cut>\d+) due .*tick sent"
    r"|evaluating day (?P<drop_start>\d+) for drops"
    r"|day (?P<drop_done>\d+) evaluated for drops"
    r"|anniversary pass at cut (?P<cut_start>\d+) started"
    r"|anniversary pass at cut (?P<cut_done>\d+) complete)"
)
#: After the log says background work is done: time for its last slice to commit and
#: reach RocksDB (the log line is written when the slice is decided, before its commit).
BACKGROUND_SETTLE_S: Final = 2.5
LOG_NOISE: Final = re.compile(
    r"^\+|Creating topic|Starting\.\.\.|Stopping\.\.\.|Highwater|offsets at"
)
"""Recovery-ish lines not worth showing (topic creation, service start/stop, tables)."""
LOG_TABLE_ROW: Final = re.compile(r"[│|]\s*(\S+)\s*[│|]\s*(\d+)\s*[│|]\s*(-?\d+)\s*[│|]")
"""A ``topic | partition | number`` row of Faust's recovery log tables."""

_running: list[Worker] = []
"""Workers started and not yet stopped, so an interrupted run leaves none behind."""


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
        per_account = expected / len(data.accounts)
        self.sizes: dict[tuple[str, str], float] = {}
        for account in data.accounts:
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
        account = self.data.accounts[rng.randrange(len(self.data.accounts))]
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


# -------------------------------------------------------------------------- kafka


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


async def create_topics(bootstrap: str, data: Dataset) -> None:
    """Create the usage topic and the compacted plans topic, P partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(data.usage_topic, data.partitions, 1),
                NewTopic(
                    data.plans_topic,
                    data.partitions,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ]
        )
    finally:
        await admin.close()


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


async def committed_offsets(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (0 when none yet)."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # group not there yet, coordinator moving: retry later
        return 0
    return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == topic)


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, list[int]]:
    """Partitions of each existing topic of ``topics``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d["error_code"] == 0 and d["partitions"]
    }


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int | None:
    """Members of a consumer group right now (None when it cannot be told)."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except Exception:  # coordinator moving: ask again later
        return None
    for response in responses:
        for entry in response.groups:
            # DescribeGroups: (error_code, group, state, protocol_type, protocol, members, ...)
            return len(entry[5])
    return None


async def wait_group_empty(bootstrap: str, group: str, max_seconds: float) -> float:
    """Wait until ``group`` has no members (a killed member expires with its session)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_seconds:
            if await group_members(admin, group) == 0:
                break
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    return time.monotonic() - started


async def changelog_records(bootstrap: str, app_id: str, max_seconds: float) -> tuple[int, int]:
    """(committed records, offsets) in the app's changelog topics, read from the start."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
    finally:
        await admin.close()
    partitions = await topic_partitions(bootstrap, [t for t in names if "changelog" in t])
    tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    if not tps:
        return 0, 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records = 0
        deadline = time.monotonic() + max_seconds
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for messages in batches.values():
                records += len(messages)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records, sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


# ----------------------------------------------------------------------- baseline


async def baseline(args: argparse.Namespace, data: Dataset) -> tuple[float, float, int]:
    """Plain consumer loop over the usage topic; returns (seconds, records/s, accounts)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(data.usage_topic, p) for p in range(data.partitions)])
        await consumer.seek_to_beginning()
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        started = time.perf_counter()
        deadline = started + args.max_seconds
        while seen < data.records and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    sums[record["account_id"]] += record["quantity"]
                seen += len(messages)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    if seen < data.records:
        print(f"  baseline read only {seen} of {data.records} records in {elapsed:.0f}s")
    return elapsed, seen / elapsed, len(sums)


# ------------------------------------------------------------------ worker plumbing


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (from the ephemeral range, above 17000)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET on a worker; (0, "") when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310 - fixed http URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {series: value} (series with its labels)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            continue
    return out


def total(series: dict[str, float], name: str) -> float:
    """Sum of every series of metric ``name`` (over its labels)."""
    return sum(v for k, v in series.items() if k == name or k.startswith(name + "{"))


def labelled(series: dict[str, float], name: str, label: str) -> dict[str, float]:
    """{label value: value} of metric ``name`` by one label."""
    pattern = re.compile(rf'{label}="([^"]*)"')
    out: dict[str, float] = {}
    for key, value in series.items():
        if key.startswith(name + "{") and (match := pattern.search(key)):
            out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


def histogram_quantile(series: dict[str, float], name: str, q: float) -> float | None:
    """Prometheus-style quantile of a histogram: linear within the bucket that holds it."""
    buckets = sorted(
        (math.inf if le == "+Inf" else float(le), count)
        for le, count in labelled(series, f"{name}_bucket", "le").items()
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def broker_pid() -> int | None:
    """The local broker's pid (scripts/kafka-local), if it left a pid file."""
    state = Path(os.environ.get("KAFKA_LOCAL_DIR", tempfile.gettempdir() + "/usage-moments-kafka"))
    try:
        pid = int((state / "kafka.pid").read_text().split()[0])
        cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes on disk as ``du`` counts them, apparent bytes) of a directory tree."""
    used = apparent = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            used += st.st_blocks * 512
            apparent += st.st_size
    return used, apparent


class Worker:
    """One ``moments worker`` process started by the bench, with its figures."""

    def __init__(
        self,
        args: argparse.Namespace,
        data: Dataset,
        app_id: str,
        guarantee: Guarantee,
        label: str,
        *,
        log_name: str | None = None,
    ) -> None:
        self.args = args
        self.label = label
        self.app_id = app_id
        self.guarantee = guarantee
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{log_name or app_id}-"))
        self.log_path = Path(args.log_dir) / f"{log_name or app_id}.log"
        self.command = [*shlex.split(args.worker_command)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
        env.update(
            MOMENTS_KAFKA_BOOTSTRAP=args.bootstrap,
            MOMENTS_APP_ID=app_id,
            MOMENTS_DATA_DIR=str(self.data_dir),
            MOMENTS_PROCESSING_GUARANTEE=guarantee,
            MOMENTS_TOPIC_USAGE=data.usage_topic,
            MOMENTS_TOPIC_ACCOUNTS=data.plans_topic,
            MOMENTS_TOPIC_PREFIX=f"{app_id}.moments",
            MOMENTS_PARTITIONS=str(data.partitions),
            MOMENTS_WEB_HOST="127.0.0.1",
            MOMENTS_WEB_ADVERTISED_HOST="127.0.0.1",
            MOMENTS_WEB_PORT=str(self.port),
            MOMENTS_LOG_LEVEL="info",
        )
        if args.batch_size is not None:
            env["MOMENTS_BATCH_SIZE"] = str(args.batch_size)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = math.nan
        self.ready_s = math.nan
        self.peak_rss_mb = 0.0
        self.cpu_s = 0.0
        self.exit_code: int | None = None
        self.stop_s = math.nan
        self.killed = False
        self.state_bytes: tuple[int, int] | None = None

    @property
    def prefix(self) -> str:
        """Event topic prefix of this worker."""
        return self.env["MOMENTS_TOPIC_PREFIX"]

    def start(self) -> None:
        """Start the process, logging to ``log_path``."""
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log)
        _running.append(self)

    def exited(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return None if self.proc is None else self.proc.poll()

    async def get(self, path: str) -> tuple[int, str]:
        """GET ``path`` on this worker without blocking the event loop."""
        return await asyncio.to_thread(http_get, self.port, path)

    async def series(self) -> dict[str, float] | None:
        """The worker's metrics, or None when it does not answer."""
        status, body = await self.get("/metrics")
        return parse_metrics(body) if status == 200 else None

    async def wait_ready(self, deadline: float) -> str:
        """Wait for /readyz 200; "" when ready, else why not."""
        while (await self.get("/readyz"))[0] != 200:
            if (code := self.exited()) is not None:
                return f"{self.label} exited with {code} before ready"
            if time.monotonic() > deadline:
                return f"{self.label} not ready in {self.args.max_seconds:.0f} s"
            await asyncio.sleep(POLL_READY_S)
        self.ready_s = time.monotonic() - self.started
        return ""

    def sample(self) -> tuple[float, float]:
        """(CPU seconds, RSS MB) now; also updates the peak RSS and CPU figures."""
        if self.proc is None or self.proc.poll() is not None:
            return self.cpu_s, 0.0
        try:
            self.cpu_s = cpu_seconds(self.proc.pid)
            rss = status_kb(self.proc.pid, "VmRSS") / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, status_kb(self.proc.pid, "VmHWM") / 1024)
        except (OSError, IndexError, ValueError):
            return self.cpu_s, 0.0
        return self.cpu_s, rss

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``--stop-timeout``; measures the state on disk."""
        proc = self.proc
        if proc is not None and self.exit_code is None:
            self.sample()
            stopping = time.monotonic()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, self.args.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
            self.exit_code = proc.returncode
            self.stop_s = time.monotonic() - stopping
        if self in _running:
            _running.remove(self)
        if self.state_bytes is None and self.data_dir.exists():
            self.state_bytes = disk_usage(self.data_dir)

    def stop_text(self) -> str:
        """How the process ended, for the report."""
        if self.killed:
            return f"still running {self.args.stop_timeout:.0f}s after SIGTERM, SIGKILLed"
        return f"stopped with SIGTERM in {self.stop_s:.1f}s, exit status {self.exit_code}"

    def remove_state(self) -> None:
        """Delete the data dir (after its size was taken)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_lines(self) -> list[str]:
        """The worker's log, without timestamps."""
        if not self.log_path.exists():
            return []
        return [
            LOG_PREFIX.sub("", line).strip()
            for line in self.log_path.read_text(errors="replace").splitlines()
        ]

    def report_log(self, limit: int = 6) -> None:
        """The most frequent warnings, errors and rebalance lines of the log."""
        shapes: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for line in self.log_lines():
            if NOTABLE.search(line):
                # Lines that differ only in numbers count together.
                shape = re.sub(r"\d+", "N", line[:200])
                shapes[shape] += 1
                examples.setdefault(shape, line[:200])
        if shapes:
            print(f"  {self.label}: notable log lines ({sum(shapes.values())}), {self.log_path}:")
            for shape, count in shapes.most_common(limit):
                print(f"    {count:5d} x {examples[shape]}")


async def stop_all(workers: Sequence[Worker]) -> None:
    """Stop workers in parallel."""
    await asyncio.gather(*(w.stop() for w in workers))


# ------------------------------------------------------------- measuring windows


class CpuMeter:
    """CPU used by workers, the broker, this bench and everything else, over a stretch."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = workers
        self.worker0 = [w.sample()[0] for w in workers]
        self.kafka = broker_pid()
        self.broker0 = self._broker()
        self.busy0 = machine_busy()
        self.own0 = time.process_time()
        self.wall0 = time.monotonic()
        self.worker_s: list[float] = []
        self.broker_s: float | None = None
        self.bench_s = self.other_s = self.wall_s = self.busy_pct = 0.0

    def _broker(self) -> float | None:
        try:
            return cpu_seconds(self.kafka) if self.kafka else None
        except OSError:
            return None

    def stop(self) -> CpuMeter:
        """Take the figures since construction."""
        self.worker_s = [w.sample()[0] - c for w, c in zip(self.workers, self.worker0, strict=True)]
        broker1 = self._broker()
        if broker1 is not None and self.broker0 is not None:
            self.broker_s = broker1 - self.broker0
        busy1 = machine_busy()
        self.busy_pct = 100 * (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1])
        self.bench_s = time.process_time() - self.own0
        self.wall_s = time.monotonic() - self.wall0
        self.other_s = max(
            0.0,
            (busy1[0] - self.busy0[0]) / CLK_TCK
            - sum(self.worker_s)
            - (self.broker_s or 0.0)
            - self.bench_s,
        )
        return self

    @property
    def other_cores(self) -> float:
        """Average cores used by other processes."""
        return self.other_s / self.wall_s if self.wall_s > 0 else 0.0

    def text(self) -> str:
        """One line of CPU figures."""
        if len(self.worker_s) != len(self.workers):
            return "CPU: not measured"
        cpu = ", ".join(
            f"{w.label} {c:.1f}s ({100 * c / max(self.wall_s, 1e-9):.0f}% of a core)"
            for w, c in zip(self.workers, self.worker_s, strict=True)
        )
        broker = f"; broker {self.broker_s:.1f}s" if self.broker_s is not None else ""
        return (
            f"CPU over {self.wall_s:.0f}s: {cpu}{broker}; bench {self.bench_s:.1f}s;"
            f" other processes {self.other_s:.1f}s ({self.other_cores:.2f} cores);"
            f" machine busy {self.busy_pct:.0f}% of {os.cpu_count()} CPUs"
        )


@dataclass(slots=True)
class Window:
    """Records counted by one or more workers over a measured stretch of time."""

    expected: int
    start_count: float
    started: float
    end: float = math.nan
    processed: float = 0.0
    finished: bool = False
    note: str = ""
    last: list[dict[str, float]] = field(default_factory=list)
    cpu: CpuMeter | None = None

    @property
    def seconds(self) -> float:
        """Length of the window (to the finish, or to where it was cut off)."""
        return self.end - self.started

    @property
    def counted(self) -> float:
        """Records counted inside the window."""
        return (self.expected if self.finished else self.processed) - self.start_count

    @property
    def rate(self) -> float:
        """Records/s inside the window (partial when not finished)."""
        return self.counted / self.seconds if self.seconds > 0 else 0.0


async def follow(
    workers: Sequence[Worker],
    expected: int,
    started: float,
    start_count: float,
    deadline: float,
    stall_s: float,
    limit_s: float,
) -> Window:
    """Poll the workers' metrics until their record counts add up to ``expected``.

    The finish time is interpolated between the two polls around it. Progress is
    printed every few seconds; the window ends early at ``deadline``, after
    ``stall_s`` without progress, or when a worker exits.
    """
    win = Window(expected, start_count, started, processed=start_count)
    meter = CpuMeter(workers)
    cpu0 = meter.worker0
    prev = (started, start_count)
    shown = (started, start_count, sum(cpu0))
    progress = (started, start_count)
    while True:
        await asyncio.sleep(POLL_METRICS_S)
        before = time.monotonic()
        gone = [w for w in workers if w.exited() is not None]
        if gone:
            win.note = f"{gone[0].label} exited with {gone[0].exited()} while processing"
            win.end = before
            break
        answers = await asyncio.gather(*(w.series() for w in workers))
        now = (before + time.monotonic()) / 2
        if all(a is not None for a in answers):
            win.last = [a for a in answers if a is not None]
            count = sum(total(a, "moments_records_total") for a in win.last)
            if count >= expected:
                win.processed = count
                win.end = prev[0] + (now - prev[0]) * (expected - prev[1]) / max(
                    count - prev[1], 1e-9
                )
                win.finished = True
                break
            win.processed = count
            prev = (now, count)
            if count > progress[1]:
                progress = (now, count)
        if now - progress[0] > stall_s:
            win.note = f"no progress for {stall_s:.0f} s"
            win.end = now
            break
        if now > deadline:
            win.note = f"did not finish in {limit_s:.0f} s"
            win.end = now
            break
        if now - shown[0] >= PROGRESS_EVERY_S:
            samples = [w.sample() for w in workers]
            cpu = sum(s[0] for s in samples)
            rss = "/".join(f"{s[1]:.0f}" for s in samples)
            print(
                f"  t+{now - started:6.1f}s  {win.processed:9.0f} records"
                f"  {(win.processed - shown[1]) / (now - shown[0]):8.0f} rec/s"
                f"  cpu {100 * (cpu - shown[2]) / (now - shown[0]):4.0f}%"
                f"  rss {rss} MB"
            )
            shown = (now, win.processed, cpu)
    win.cpu = meter.stop()
    return win


def report_window(win: Window, workers: Sequence[Worker]) -> None:
    """Details of a measured window below its progress lines."""
    state = "done" if win.finished else f"STOPPED EARLY: {win.note}"
    print(
        f"  {state}: {win.counted:.0f}/{win.expected - win.start_count:.0f} records in"
        f" {win.seconds:.1f}s -> {win.rate:,.0f} rec/s"
    )
    if win.cpu is not None:
        print(f"  {win.cpu.text()}")
    odd = {
        outcome: count
        for series in win.last
        for outcome, count in labelled(series, "moments_records_total", "outcome").items()
        if outcome not in ("accepted", "duplicate") and count
    }
    if odd:
        print(f"  NOTE: every record is valid and every account has a plan, yet {odd}")
    for w, series in zip(workers, win.last, strict=False):
        outcomes = labelled(series, "moments_records_total", "outcome")
        batches = series.get("moments_batch_seconds_count", 0.0)
        batch_s = series.get("moments_batch_seconds_sum", 0.0)
        shown = {k: int(v) for k, v in sorted(outcomes.items()) if v}
        line = (
            f"  {w.label}: outcomes {shown}; events"
            f" {total(series, 'moments_events_total'):.0f};"
            f" rebalances {total(series, 'moments_rebalances_total'):.0f}"
        )
        if batches:
            line += (
                f"; {batches:.0f} batches of {sum(outcomes.values()) / batches:.0f} records,"
                f" {1000 * batch_s / batches:.0f} ms each"
            )
        print(line)


def report_worker(w: Worker) -> None:
    """Readiness, memory, state and stop of one worker."""
    state = ""
    if w.state_bytes is not None:
        state = f"; data dir {mb(w.state_bytes[0])} on disk ({mb(w.state_bytes[1])} apparent)"
    ready = "never ready" if math.isnan(w.ready_s) else f"ready {w.ready_s:.1f}s after start"
    print(
        f"  {w.label}: {ready}; peak RSS {w.peak_rss_mb:.0f} MB;"
        f" CPU {w.cpu_s:.1f}s since start{state}; {w.stop_text()}"
    )
    w.report_log()


def mb(n: float) -> str:
    """Bytes as MB text."""
    return f"{n / 1e6:,.1f} MB"


# -------------------------------------------------------------------- the report


@dataclass(slots=True)
class Row:
    """One line of the final table."""

    order: tuple[int, int]
    figure: str
    measured: str
    target: str
    verdict: str


class Report:
    """Rows of the final table, printed sorted by the brief's figure numbers."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.failures = 0
        self.load: list[tuple[str, float]] = []

    def other_load(self, section: str, meter: CpuMeter | None) -> None:
        """Remember how much CPU other processes took during a measurement."""
        if meter is not None:
            self.load.append((section, meter.other_cores))

    def add(self, figure_no: int, figure: str, measured: str, target: str, verdict: str) -> None:
        """Add a row under figure ``figure_no`` (1-7)."""
        self.rows.append(Row((figure_no, len(self.rows)), figure, measured, target, verdict))

    def failed(self, figure_no: int, figure: str, target: str, why: str) -> None:
        """A figure that could not be measured."""
        self.failures += 1
        self.add(figure_no, figure, f"FAILED: {why}", target, "not measured")

    def rss(self, w: Worker) -> None:
        """The peak-RSS row of a worker."""
        if w.peak_rss_mb <= 0:
            return
        self.add(
            4,
            f"peak RSS, {w.label}",
            f"{w.peak_rss_mb:,.0f} MB",
            f"< {TARGET_RSS_MB:.0f} MB",
            at_most(w.peak_rss_mb, TARGET_RSS_MB, "MB", "{:,.0f}"),
        )

    def print(self) -> None:
        """The final table."""
        if self.load:
            section, cores = max(self.load, key=lambda item: item[1])
            self.add(
                8,
                "CPU of other processes during measurements (max)",
                f"{cores:.2f} cores ({section})",
                "~0 (a quiet machine)",
                "figures likely skewed by other load" if cores > 0.25 else "ok",
            )
        rows = sorted(self.rows, key=lambda r: r.order)
        header = Row((0, 0), "figure", "measured", "target", "verdict")
        widths = [
            max(len(getattr(r, name)) for r in (header, *rows))
            for name in ("figure", "measured", "target")
        ]
        print()
        for r in (header, *rows):
            print(
                f"{r.figure:<{widths[0]}}  {r.measured:>{widths[1]}}  {r.target:<{widths[2]}}"
                f"  {r.verdict}"
            )


def at_least(measured: float, target: float, unit: str, fmt: str = "{:,.0f}") -> str:
    """Verdict for a figure that must reach ``target``."""
    if measured >= target:
        return f"met (+{fmt.format(measured - target)} {unit}, {measured / target:.0%} of target)"
    short = f"{target / measured:.1f}x short" if measured > 0 else "nothing measured"
    return (
        f"MISSED by {fmt.format(target - measured)} {unit}"
        f" ({measured / target:.1%} of target, {short})"
    )


def at_most(measured: float, limit: float, unit: str, fmt: str = "{:,.1f}") -> str:
    """Verdict for a figure that must stay below ``limit``."""
    if measured < limit:
        return f"met ({fmt.format(limit - measured)} {unit} under)"
    return f"MISSED by {fmt.format(measured - limit)} {unit} ({measured / limit:.1f}x the limit)"


def partial(win: Window) -> str:
    """Suffix of a rate that was cut off."""
    return "" if win.finished else f" (partial: {win.note})"


# ---------------------------------------------------------------------- sections


@dataclass(slots=True)
class OneRun:
    """A one-worker backlog run."""

    worker: Worker
    window: Window | None = None
    note: str = ""
    views: dict[str, tuple[int, Any]] | None = None
    """/accounts/{id} of sampled accounts once every record was counted and background
    work was idle (for rebuild)."""
    views_note: str = ""
    """Why the views may not be comparable ("" when they are)."""
    early_views: dict[str, tuple[int, Any]] | None = None
    """The same views read when the check used to read them: 2.5 s after the last record,
    background work or not (kept to show what that check compared)."""


def sample_accounts(data: Dataset) -> list[str]:
    """Accounts spread over the dataset whose state is compared after the rebuild."""
    step = max(1, len(data.accounts) // SAMPLE_ACCOUNTS)
    return data.accounts[::step][:SAMPLE_ACCOUNTS]


@dataclass(slots=True)
class Background:
    """Background work per partition, as a worker's log tells it."""

    lines: int = 0
    """Background lines seen (any new one means work started or moved on)."""
    ticked: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per partition, (day, cut) of its last tick."""
    drops: dict[int, int] = field(default_factory=dict)
    """Per partition, the last day whose drop evaluation completed."""
    cuts: dict[int, int] = field(default_factory=dict)
    """Per partition, the last cut whose anniversary pass completed."""
    running: dict[int, list[str]] = field(default_factory=dict)
    """Per partition, work started and not completed."""
    resumed: list[str] = field(default_factory=list)
    """Work completed with no start in this log (resumed from another worker's cursor)."""

    def busy(self, partitions: int, *, ticks_expected: bool) -> list[str]:
        """What is not finished yet ([] when idle): work running, a tick's work not done,
        or (``ticks_expected``) a partition that has had no tick yet."""
        out: list[str] = []
        for p in range(partitions):
            out += [f"p{p} {what}" for what in self.running.get(p, [])]
            tick = self.ticked.get(p)
            if tick is None:
                if ticks_expected:
                    out.append(f"p{p} no tick yet")
                continue
            day, cut = tick
            if self.drops.get(p, -1) < day:
                out.append(f"p{p} drops of day {day} not evaluated")
            if self.cuts.get(p, -1) < cut:
                out.append(f"p{p} anniversary pass at cut {cut} not complete")
        return out


def background_of(lines: Iterable[str]) -> Background:
    """Background work started and completed, from a worker's log lines."""
    bg = Background()
    started: dict[tuple[int, str], int] = {}
    for line in lines:
        match = BACKGROUND_LINE.search(line)
        if match is None:
            continue
        bg.lines += 1
        p = int(match["p"])
        if match["tick_day"] is not None:
            bg.ticked[p] = (int(match["tick_day"]), int(match["tick_cut"]))
        elif match["drop_start"] is not None:
            started[p, "drops"] = int(match["drop_start"])
        elif match["cut_start"] is not None:
            started[p, "cut"] = int(match["cut_start"])
        elif match["drop_done"] is not None:
            day = bg.drops[p] = int(match["drop_done"])
            if started.pop((p, "drops"), None) is None:
                bg.resumed.append(f"p{p} drops of day {day}")
        elif match["cut_done"] is not None:
            cut = bg.cuts[p] = int(match["cut_done"])
            if started.pop((p, "cut"), None) is None:
                bg.resumed.append(f"p{p} anniversary pass at cut {cut}")
    for (p, kind), value in started.items():
        what = f"drops of day {value}" if kind == "drops" else f"anniversary pass at cut {value}"
        bg.running.setdefault(p, []).append(f"{what} running")
    return bg


async def wait_background_idle(
    w: Worker, partitions: int, deadline: float, *, ticks_expected: bool
) -> tuple[str, int]:
    """Wait until the worker's background work (drop evaluations, anniversary passes) is
    finished and has settled; ("", background lines then) or (why not, lines)."""
    while True:
        bg = background_of(w.log_lines())
        busy = bg.busy(partitions, ticks_expected=ticks_expected)
        if not busy:
            await asyncio.sleep(BACKGROUND_SETTLE_S)
            again = background_of(w.log_lines())
            if again.lines == bg.lines:
                return "", bg.lines
            continue  # something started meanwhile (a new day or cut): wait for it too
        if (code := w.exited()) is not None:
            return f"{w.label} exited with {code}", bg.lines
        if time.monotonic() > deadline:
            return "background work still running: " + ", ".join(busy), bg.lines
        await asyncio.sleep(0.5)


def differences(original: Any, rebuilt: Any, path: str = "") -> list[str]:
    """Every leaf where ``rebuilt`` differs from ``original``, with both values in full."""
    if isinstance(original, dict) and isinstance(rebuilt, dict):
        out: list[str] = []
        for key in sorted(original.keys() | rebuilt.keys(), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in rebuilt:
                out.append(f"{where}: original {original[key]!r}, rebuilt (missing)")
            elif key not in original:
                out.append(f"{where}: original (missing), rebuilt {rebuilt[key]!r}")
            else:
                out += differences(original[key], rebuilt[key], where)
        return out
    if (
        isinstance(original, list | tuple)
        and isinstance(rebuilt, list | tuple)
        and len(original) == len(rebuilt)
    ):
        out = []
        for i, (a, b) in enumerate(zip(original, rebuilt, strict=True)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    if original == rebuilt:
        return []
    return [f"{path or '(whole)'}: original {original!r}, rebuilt {rebuilt!r}"]


async def account_views(w: Worker, ids: Sequence[str]) -> dict[str, tuple[int, Any]]:
    """(status, parsed body) of ``/accounts/{id}`` for each id."""
    out: dict[str, tuple[int, Any]] = {}
    for account in ids:
        status, body = await w.get(f"/accounts/{account}")
        try:
            out[account] = (status, orjson.loads(body))
        except orjson.JSONDecodeError:
            out[account] = (status, body)
    return out


async def one_worker(
    args: argparse.Namespace,
    data: Dataset,
    guarantee: Guarantee,
    report: Report,
    *,
    keep_views: bool = False,
) -> OneRun:
    """Section ``throughput``: one worker on the backlog, from ready to the last record."""
    app_id = f"bench-{data.run_id}-{guarantee.replace('_', '-')}"
    w = Worker(args, data, app_id, guarantee, f"1 worker {guarantee}")
    run = OneRun(w)
    seen = 0  # background log lines when the views were read
    print(f"\n[throughput: 1 worker, {guarantee}] app id {app_id}, port {w.port}, log {w.log_path}")
    figure = f"1 worker {guarantee}, records/s on {data.records:,} backlog"
    target = f">= {TARGET_RPS:,.0f}/s" if guarantee == "exactly_once" else "- (none)"
    try:
        w.start()
        run.note = await w.wait_ready(w.started + args.max_seconds)
        if run.note:
            report.failed(1, figure, target, run.note)
            return run
        ready_at = w.started + w.ready_s
        series = await w.series() or {}
        at_ready = total(series, "moments_records_total")
        print(f"  ready after {w.ready_s:.1f}s ({at_ready:.0f} records already counted)")
        run.window = await follow(
            [w],
            data.records,
            ready_at,
            at_ready,
            ready_at + args.max_seconds,
            args.stall,
            args.max_seconds,
        )
        if keep_views and run.window.finished:
            # Compare like with like: the drop evaluations and anniversary passes the
            # tick after the backlog starts change the views, and a worker stopped half-way
            # through leaves the rebuilt one to finish them. Wait until they are done (the
            # log says so for every partition) and settled, then read the views.
            await asyncio.sleep(BACKGROUND_SETTLE_S)
            run.early_views = await account_views(w, sample_accounts(data))
            if args.rebuild_early:
                run.views = run.early_views
                run.views_note = "views read without waiting for background work"
            else:
                idle_since = time.monotonic()
                note, seen = await wait_background_idle(
                    w, data.partitions, idle_since + args.max_seconds, ticks_expected=True
                )
                print(
                    f"  background work {'idle' if not note else 'NOT idle'} after"
                    f" {time.monotonic() - idle_since:.1f}s{': ' + note if note else ''}"
                )
                run.views = await account_views(w, sample_accounts(data))
                run.views_note = note
                report_background_changes(run.early_views, run.views)
    finally:
        await w.stop()
        w.remove_state()
    if run.views is not None and not run.views_note:
        later = background_of(w.log_lines())
        if later.lines != seen:
            run.views_note = (
                "background work started after the views were read, before the worker"
                " stopped (a new day or cut became due)"
            )
    win = run.window
    report_window(win, [w])
    report.other_load(f"1 worker {guarantee}", win.cpu)
    report_worker(w)
    measured = f"{win.rate:,.0f}/s{partial(win)}"
    if guarantee == "exactly_once":
        report.add(1, figure, measured, target, at_least(win.rate, TARGET_RPS, "rec/s"))
    else:
        report.add(1, figure, measured, target, "(no target)")
    report.rss(w)
    if w.state_bytes is not None:
        report.add(
            5,
            f"state on disk after the run, {w.label}",
            mb(w.state_bytes[0]),
            "- (none)",
            f"(no target; {mb(w.state_bytes[1])} apparent)",
        )
    return run


async def rebuild(
    args: argparse.Namespace, data: Dataset, previous: OneRun, report: Report
) -> None:
    """Section ``rebuild``: same app id, empty data dir; start -> /readyz 200."""
    prev = previous.worker
    w = Worker(
        args,
        data,
        prev.app_id,
        "exactly_once",
        "rebuilt worker",
        log_name=f"{prev.app_id}-rebuild",
    )
    figure = "rebuild from changelogs (start -> /readyz 200)"
    print(
        f"\n[rebuild] app id {prev.app_id} again, empty data dir, port {w.port}, log {w.log_path}"
        f"\n  previous worker: {prev.stop_text()}"
    )
    # A worker that was SIGKILLed stays in the group until its session expires; the new
    # one would wait for that in its join. Not part of the rebuild: wait it out first.
    waited = await wait_group_empty(args.bootstrap, prev.app_id, args.max_seconds)
    if waited > 1:
        print(f"  waited {waited:.1f}s for the previous worker to leave the group")
    views: dict[str, tuple[int, Any]] = {}
    idle_note = ""
    try:
        w.start()
        note = await w.wait_ready(w.started + args.max_seconds)
        if not note:
            print(f"  ready after {w.ready_s:.1f}s")
            if previous.views is not None and args.rebuild_early:
                views = await account_views(w, list(previous.views))
                idle_note = "views read at ready, without waiting for background work"
            elif previous.views is not None:
                # Work the original left unfinished, or a day or cut that became due since,
                # runs here now: wait for it as the original's views did.
                idle_note, _ = await wait_background_idle(
                    w, data.partitions, time.monotonic() + args.max_seconds, ticks_expected=False
                )
                views = await account_views(w, list(previous.views))
    finally:
        await w.stop()
        w.remove_state()
    records, offsets = await changelog_records(args.bootstrap, prev.app_id, args.max_seconds)
    restored = faust_restored(w.log_lines())
    print(
        f"  changelog topics of {prev.app_id}: {records:,} committed records"
        f" ({offsets:,} offsets incl. transaction markers)"
        + ("" if restored is None else f"; Faust's log: {restored:,} offsets to restore")
    )
    check = ""
    if previous.views is None:
        print("  state not compared: the original run did not count every record")
    elif views:
        # Why the two sides may legitimately differ: either worker's background work was not
        # idle when its views were read, or the rebuilt worker did work the original had not
        # (left unfinished by it, or a day or cut that became due between the two reads).
        bg = background_of(w.log_lines())
        caveats = [n for n in (previous.views_note, idle_note) if n]
        if bg.resumed:
            caveats.append("the rebuilt worker finished " + ", ".join(bg.resumed))
        if bg.ticked:
            caveats.append(
                "the rebuilt worker started work of a new day or cut: "
                + ", ".join(f"p{p} day {d} cut {c}" for p, (d, c) in sorted(bg.ticked.items()))
            )
        differ = [a for a, view in previous.views.items() if views.get(a) != view]
        if differ:
            check = f"WRONG STATE: {len(differ)}/{len(views)} sampled accounts differ"
            if caveats:
                check += " (not like with like: " + "; ".join(caveats) + ")"
            print(f"  {check}, from the original worker's /accounts views:")
            for account in differ:
                for line in differences(previous.views[account], views.get(account)):
                    print(f"    {account} {line}")
        else:
            print(f"  state check: {len(views)}/{len(views)} sampled /accounts views identical")
            for caveat in caveats:
                print(f"    (note: {caveat})")

    told = [
        line[:160]
        for line in w.log_path.read_text(errors="replace").splitlines()
        if RECOVERY_LINE.search(line) and not LOG_NOISE.search(line)
    ]
    for line in told[:2] + ["..."] + told[-4:] if len(told) > 6 else told:
        print(f"    {line}")
    report_worker(w)
    report.rss(w)
    if note:
        report.failed(6, figure, "- (none)", note)
        return
    extra = f"{records:,} changelog records"
    if prev.killed:
        extra += "; previous worker was SIGKILLed"
    if check:
        report.add(6, figure, f"{w.ready_s:.1f} s", "- (none)", f"{check} ({extra})")
        report.failures += 1
    else:
        verified = "state verified" if views else "state not verified"
        report.add(6, figure, f"{w.ready_s:.1f} s", "- (none)", f"(no target; {verified}; {extra})")
    if w.state_bytes is not None:
        report.add(
            5,
            "state on disk after the rebuild",
            mb(w.state_bytes[0]),
            "- (none)",
            f"(no target; {mb(w.state_bytes[1])} apparent)",
        )


def report_background_changes(
    early: dict[str, tuple[int, Any]], idle: dict[str, tuple[int, Any]]
) -> None:
    """What background work changed in the views between 2.5 s after the last record
    (when the check used to read them) and idle: what a check without the wait mixes."""
    changed = {a: differences(v, idle.get(a)) for a, v in early.items()}
    changed = {a: d for a, d in changed.items() if d}
    fields = Counter(
        re.sub(r"\[\d+\]|\b\d{4}-\d\d-\d\d\b", "*", line.split(":")[0])
        for d in changed.values()
        for line in d
    )
    print(
        f"  background work after the last record changed {len(changed)}/{len(early)} views"
        + (": " + ", ".join(f"{f} x{n}" for f, n in fields.most_common()) if fields else "")
    )


def faust_restored(lines: list[str]) -> int | None:
    """Offsets Faust said it would read to recover, from its highwater/start log tables.

    faust-streaming 0.15 logs "Highwater for active changelog partitions" and "active
    offsets at start of reading", each followed by a ``topic | partition | n`` table
    (a ditto mark repeats the topic). None when the log has no such tables.
    """
    tables: dict[str, dict[tuple[str, int], int]] = {"high": {}, "start": {}}
    current: dict[tuple[str, int], int] | None = None
    topic = ""
    for line in lines:
        lowered = line.lower()
        if "highwater for active changelog" in lowered:
            current, topic = tables["high"], ""
        elif "active offsets at start of reading" in lowered:
            current, topic = tables["start"], ""
        elif current is not None and line[:1] in "|+│┌├└":
            if match := LOG_TABLE_ROW.search(line):
                name, partition, number = match.groups()
                topic = topic if name == "〃" else name
                current[topic, int(partition)] = int(number)
        else:
            current = None
    if not tables["high"]:
        return None
    return sum(max(0, high - tables["start"].get(tp, -1)) for tp, high in tables["high"].items())


async def two_workers(
    args: argparse.Namespace, run_id: str, reference: OneRun | None, report: Report
) -> None:
    """Section ``two-workers``: one group, two exactly_once workers, gated backlog."""
    data = make_dataset(args, run_id, "two", args.accounts, shape="backlog")
    figure = f"2 workers exactly_once, records/s on {args.records:,} backlog"
    ref_rate = reference.window.rate if reference and reference.window else 0.0
    target = f">= {TARGET_SCALING}x 1 worker" + (
        f" (>= {TARGET_SCALING * ref_rate:,.0f}/s)" if ref_rate else ""
    )
    app_id = f"bench-{run_id}-two"
    print(f"\n[two-workers] app id {app_id}, topics {data.usage_topic}, {data.plans_topic}")
    await create_topics(args.bootstrap, data)
    await publish_plans(args.bootstrap, data)
    gate, produce_s = await open_gated_backlog(args, data, args.records)
    print(
        f"  {data.records:,} usage records published in one open transaction in"
        f" {produce_s:.1f}s ({data.records / produce_s:,.0f} rec/s); invisible until commit"
    )
    workers = [
        Worker(args, data, app_id, "exactly_once", f"worker {n}/2", log_name=f"{app_id}-{n}")
        for n in (1, 2)
    ]
    window: Window | None = None
    note = ""
    committed = False
    early = rebalances_before = 0.0
    try:
        for w in workers:
            w.start()
            print(f"  {w.label}: port {w.port}, log {w.log_path}")
        deadline = time.monotonic() + args.max_seconds
        notes = await asyncio.gather(*(w.wait_ready(deadline) for w in workers))
        note = "; ".join(n for n in notes if n)
        if not note:
            note = await settle(workers, deadline, args.max_seconds)
        if not note:
            answers = await asyncio.gather(*(w.series() for w in workers))
            early = sum(total(a or {}, "moments_records_total") for a in answers)
            if early:
                print(f"  gate leaked: {early:.0f} records counted before the commit")
            rebalances_before = sum(total(a or {}, "moments_rebalances_total") for a in answers)
            try:
                await gate.commit_transaction()
                committed = True
            except Exception as exc:  # e.g. the transaction outlived its timeout
                note = f"the gated backlog could not be committed: {exc!r}"
        if committed:
            opened = time.monotonic()
            print(
                "  both ready ("
                + ", ".join(f"{w.label} after {w.ready_s:.1f}s" for w in workers)
                + "); backlog committed"
            )
            window = await follow(
                workers,
                data.records,
                opened,
                early,
                opened + args.max_seconds,
                args.stall,
                args.max_seconds,
            )
            rebalances = sum(total(a, "moments_rebalances_total") for a in window.last)
            if rebalances > rebalances_before:
                print(f"  NOTE: {rebalances - rebalances_before:.0f} rebalance(s) in the window")
            if window.finished:
                await asyncio.sleep(2.0)  # one commit interval and a bit
    finally:
        if not committed:
            # A transaction that timed out was aborted by the broker already.
            with contextlib.suppress(Exception):
                await gate.abort_transaction()
        await gate.stop()
        await stop_all(workers)
        for w in workers:
            w.remove_state()
    if window is not None:
        report_window(window, workers)
        report.other_load("two-workers", window.cpu)
        done = await group_committed(args.bootstrap, app_id, data.usage_topic)
        print(f"  group committed {done:,} offsets on the usage topic ({data.records:,} records)")
    for w in workers:
        report_worker(w)
        report.rss(w)
    if window is None:
        report.failed(2, figure, target, note)
        return
    if ref_rate:
        ratio = window.rate / ref_rate
        measured = f"{window.rate:,.0f}/s = {ratio:.2f}x{partial(window)}"
        if ratio >= TARGET_SCALING:
            verdict = f"met (+{ratio - TARGET_SCALING:.2f}x)"
        else:
            verdict = (
                f"MISSED by {TARGET_SCALING - ratio:.2f}x"
                f" ({TARGET_SCALING * ref_rate - window.rate:,.0f} rec/s short of"
                f" {TARGET_SCALING}x)"
            )
    else:
        measured = f"{window.rate:,.0f}/s{partial(window)}"
        verdict = "not judged: no 1-worker exactly_once rate"
    report.add(2, figure, measured, target, verdict)


async def settle(workers: Sequence[Worker], deadline: float, limit_s: float) -> str:
    """Wait until every worker has answered /readyz 200 for SETTLE_S in a row."""
    steady_since: float | None = None
    while True:
        answers = await asyncio.gather(*(w.get("/readyz") for w in workers))
        now = time.monotonic()
        if all(status == 200 for status, _ in answers):
            steady_since = steady_since or now
            if now - steady_since >= SETTLE_S:
                return ""
        else:
            steady_since = None
        for w in workers:
            if (code := w.exited()) is not None:
                return f"{w.label} exited with {code} before the group settled"
        if now > deadline:
            return f"the group did not settle (all ready) in {limit_s:.0f} s"
        await asyncio.sleep(POLL_READY_S)


async def group_committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of a group's committed offsets on one topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await committed_offsets(admin, group, topic)
    finally:
        await admin.close()


@dataclass(slots=True)
class EventLatencies:
    """What the event consumer saw."""

    latencies: list[float] = field(default_factory=list)
    received: int = 0
    unknown: int = 0


async def collect_events(
    consumer: AIOKafkaConsumer, sent_at: dict[str, float], stop: asyncio.Event, out: EventLatencies
) -> None:
    """Receive events until ``stop``: latency = receipt - send time of the trigger record."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        received_at = time.time()
        for messages in batches.values():
            for message in messages:
                out.received += 1
                try:
                    trigger = orjson.loads(message.value).get("trigger_record_id")
                except (orjson.JSONDecodeError, AttributeError):
                    trigger = None
                sent = sent_at.get(trigger) if isinstance(trigger, str) else None
                if sent is None:
                    out.unknown += 1
                else:
                    out.latencies.append(received_at - sent)


async def paced_produce(
    producer: AIOKafkaProducer,
    topic: str,
    source: UsageSource,
    rate: float,
    seconds: float,
    sent_at: dict[str, float],
) -> tuple[int, float]:
    """Offer ``rate`` records/s for ``seconds``; returns (records sent, seconds taken).

    Records due by now are sent every couple of milliseconds, so the event consumer
    in the same event loop gets its turn often. A record's send time is taken right
    before it is handed to the producer (wall clock, as is the receipt time).
    """
    count = int(rate * seconds)
    pending: list[asyncio.Future[Any]] = []
    started = time.monotonic()
    i = 0
    while i < count:
        due = min(count, int((time.monotonic() - started) * rate) + 1)
        while i < due:
            now = time.time()
            now_ms = int(now * 1000)
            key, value, record_id = source.record(i, now_ms, sent_ms=now_ms)
            pending.append(await producer.send(topic, value, key=key))
            sent_at.setdefault(record_id, now)
            i += 1
        if len(pending) >= 5_000:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    return count, time.monotonic() - started


async def event_partitions(
    bootstrap: str, topics: Sequence[str], deadline: float
) -> list[TopicPartition]:
    """Partitions of the event topics, waiting for the worker to have created them."""
    while True:
        found = await topic_partitions(bootstrap, topics)
        if len(found) == len(topics) or time.monotonic() > deadline:
            return [TopicPartition(t, p) for t, ps in found.items() for p in ps]
        await asyncio.sleep(0.5)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


async def sample_until(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Sample CPU and RSS of workers every second (for their peak RSS)."""
    while not stop.is_set():
        for w in workers:
            w.sample()
        await asyncio.sleep(1.0)


async def latency(args: argparse.Namespace, run_id: str, report: Report) -> None:
    """Section ``latency``: paced producer, one exactly_once worker, event consumer."""
    rate = args.latency_rate
    data = make_dataset(args, run_id, "latency", args.latency_accounts or args.accounts)
    count = int(rate * args.latency_seconds)
    app_id = f"bench-{run_id}-latency"
    w = Worker(args, data, app_id, "exactly_once", "latency worker")
    print(
        f"\n[latency] app id {app_id}, port {w.port}, log {w.log_path}; {rate:,.0f} rec/s"
        f" for {args.latency_seconds:.0f}s over {len(data.accounts):,} accounts"
    )
    await create_topics(args.bootstrap, data)
    await publish_plans(args.bootstrap, data)
    fig = f"end-to-end latency at {rate:,.0f} rec/s offered"
    target_p99 = f"< {TARGET_P99_S * 1000:.0f} ms"
    lat = EventLatencies()
    sent_at: dict[str, float] = {}
    series: dict[str, float] = {}
    stop = asyncio.Event()
    consumer: AIOKafkaConsumer | None = None
    producer: AIOKafkaProducer | None = None
    tasks: list[asyncio.Task[None]] = []
    note = ""
    caught_up = False
    sent, produce_s, drain_s, own_cpu_s, processed = 0, 0.0, 0.0, 0.0, 0.0
    meter: CpuMeter | None = None
    try:
        w.start()
        note = await w.wait_ready(w.started + args.max_seconds)
        if not note:
            print(f"  ready after {w.ready_s:.1f}s")
            consumer = AIOKafkaConsumer(
                bootstrap_servers=args.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await consumer.start()
            topics = [f"{w.prefix}.{kind}" for kind in THRESHOLD_KINDS]
            tps = await event_partitions(args.bootstrap, topics, time.monotonic() + 30)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            tasks = [
                asyncio.create_task(collect_events(consumer, sent_at, stop, lat)),
                asyncio.create_task(sample_until([w], stop)),
            ]
            producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=5)
            await producer.start()
            source = UsageSource(data, count, args.seed, args.duplicate_rate)
            meter = CpuMeter([w])
            cpu0 = time.process_time()
            started = time.monotonic()
            sent, produce_s = await paced_produce(
                producer, data.usage_topic, source, rate, args.latency_seconds, sent_at
            )
            own_cpu_s = time.process_time() - cpu0
            print(
                f"  offered {sent:,} records in {produce_s:.1f}s -> {sent / produce_s:,.0f} rec/s"
                f" (bench process CPU {own_cpu_s:.1f}s for producing and consuming)"
            )
            deadline = started + max(args.max_seconds, args.latency_seconds + 15)
            while True:
                answer = await w.series()
                if answer is not None:
                    series = answer
                processed = total(series, "moments_records_total")
                kinds = labelled(series, "moments_events_total", "kind")
                emitted = sum(kinds.get(k, 0.0) for k in THRESHOLD_KINDS)
                if processed >= sent and lat.received >= emitted:
                    caught_up = True
                    break
                if (code := w.exited()) is not None:
                    note = f"latency worker exited with {code}"
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(POLL_METRICS_S)
            drain_s = time.monotonic() - started - produce_s
            meter.stop()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if producer is not None:
            await producer.stop()
        if consumer is not None:
            await consumer.stop()
        await w.stop()
        w.remove_state()
    if meter is not None:
        print(f"  {meter.text()}")
        report.other_load("latency", meter)
    report_worker(w)
    report.rss(w)
    if not sent:
        report.failed(3, f"{fig}, p99", target_p99, note or "nothing was offered")
        return
    values = sorted(lat.latencies)
    print(
        f"  worker counted {processed:,.0f} of {sent:,} records"
        + (
            f", caught up {drain_s:.1f}s after the last send"
            if caught_up
            else f", NOT caught up {drain_s:.0f}s after the last send"
        )
        + f"; events received {lat.received:,} ({lat.unknown} with an unknown trigger)"
    )
    if values:
        print(
            "  latency send -> event received (ms):"
            f" p50 {1000 * percentile(values, 0.50):.0f}"
            f", p90 {1000 * percentile(values, 0.90):.0f}"
            f", p99 {1000 * percentile(values, 0.99):.0f}"
            f", max {1000 * values[-1]:.0f}, over {len(values):,} events"
        )
    hist = {q: histogram_quantile(series, "moments_event_latency_seconds", q) for q in (0.5, 0.99)}
    if hist[0.99] is not None:
        print(
            "  worker histogram moments_event_latency_seconds (emission - record arrival):"
            f" p50 ~{1000 * (hist[0.5] or 0):.0f} ms, p99 ~{1000 * hist[0.99]:.0f} ms"
            " (interpolated in buckets)"
        )
    if not values:
        report.failed(3, f"{fig}, p99", target_p99, note or "no threshold events received")
        return
    p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
    bound = "" if caught_up else " (lower bound)"
    report.add(3, f"{fig}, p50", f"{1000 * p50:,.0f} ms{bound}", "- (none)", "(no target)")
    if caught_up:
        verdict = at_most(1000 * p99, 1000 * TARGET_P99_S, "ms", "{:,.0f}")
    else:
        verdict = (
            f"MISSED: the worker fell behind ({processed:,.0f} of {sent:,} records counted"
            f" {drain_s:.0f}s after the last send); received events only"
        )
    report.add(3, f"{fig}, p99", f"{1000 * p99:,.0f} ms{bound}", target_p99, verdict)
    if hist[0.99] is not None:
        report.add(
            3,
            "latency p99, worker histogram (secondary)",
            f"~{1000 * hist[0.99]:,.0f} ms",
            target_p99,
            "(emission - record arrival, bucket-interpolated; not judged)",
        )
    if sent / produce_s < 0.95 * rate:
        report.add(
            3,
            "offered rate actually achieved",
            f"{sent / produce_s:,.0f}/s",
            f"{rate:,.0f}/s",
            "the bench's producer could not keep the pace: latency measured at a lower rate",
        )


async def plans_first_commit(args: argparse.Namespace, run_id: str, report: Report) -> None:
    """Section ``plans``: many plans, then usage; start -> first usage commit."""
    data = make_dataset(args, run_id, "plans", args.plans)
    app_id = f"bench-{run_id}-plans"
    figure = f"start -> first usage commit, {args.plans:,} plans before"
    target = f"< {TARGET_FIRST_COMMIT_S:.0f} s"
    print(f"\n[plans] app id {app_id}, topics {data.usage_topic}, {data.plans_topic}")
    await create_topics(args.bootstrap, data)
    plans_s = await publish_plans(args.bootstrap, data)
    usage_s = await publish_backlog(args, data, args.plans_usage)
    print(
        f"  published {args.plans:,} plans in {plans_s:.1f}s, then {data.records:,} usage"
        f" records in {usage_s:.1f}s"
    )
    w = Worker(args, data, app_id, "exactly_once", "plans worker")
    print(f"  port {w.port}, log {w.log_path}")
    first: float | None = None
    note = ""
    series: dict[str, float] = {}
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    ready: asyncio.Task[str] | None = None
    try:
        w.start()
        deadline = w.started + args.max_seconds
        ready = asyncio.create_task(w.wait_ready(deadline))
        while True:
            done = await committed_offsets(admin, app_id, data.usage_topic)
            now = time.monotonic()
            if done > 0:
                first = now - w.started
                series = await w.series() or {}
                # The readiness time is printed too: wait for it within the same limit.
                await asyncio.wait([ready], timeout=max(0.0, deadline - time.monotonic()))
                break
            if (code := w.exited()) is not None:
                note = f"plans worker exited with {code}"
                break
            if now > deadline:
                note = f"no usage commit in {args.max_seconds:.0f} s"
                series = await w.series() or {}
                break
            w.sample()
            await asyncio.sleep(POLL_OFFSETS_S)
    finally:
        if ready is not None and not ready.done():
            ready.cancel()
        await admin.close()
        await w.stop()
        w.remove_state()
    plans_applied = total(series, "moments_plan_records_total")
    usage_counted = total(series, "moments_records_total")
    print(
        (f"  first usage commit {first:.1f}s after start" if first is not None else f"  {note}")
        + (f"; ready after {w.ready_s:.1f}s" if not math.isnan(w.ready_s) else "; never ready")
        + f"; by then {plans_applied:,.0f} plan records and {usage_counted:,.0f} usage records"
        " counted"
    )
    report_worker(w)
    report.rss(w)
    if first is None:
        if note.startswith("no usage commit"):
            report.add(7, figure, f"> {args.max_seconds:.0f} s", target, f"MISSED ({note})")
        else:
            report.failed(7, figure, target, note)
        return
    report.add(7, figure, f"{first:.1f} s", target, at_most(first, TARGET_FIRST_COMMIT_S, "s"))


# -------------------------------------------------------------------------- main


def source_version() -> str:
    """The commit of the worker being measured, marked dirty when the tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + (" (dirty tree)" if dirty else "")


def sections_arg(text: str) -> tuple[str, ...]:
    """``--only``: comma-separated section names, or ``all``."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("all",):
        return SECTIONS
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown) or '(none)'}; choose from {','.join(SECTIONS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--only",
        type=sections_arg,
        default="all",
        metavar="SECTION[,SECTION...]",
        help=f"comma-separated sections to run: {','.join(SECTIONS)}, or all",
    )
    size = parser.add_argument_group("sizes")
    size.add_argument("--records", type=int, default=300_000, help="backlog usage records (N)")
    size.add_argument("--accounts", type=int, default=2_000, help="accounts of the backlogs")
    size.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    size.add_argument("--duplicate-rate", type=float, default=0.03, help="share of repeats")
    size.add_argument(
        "--latency-rate", type=float, default=10_000.0, help="latency: offered records/s"
    )
    size.add_argument(
        "--latency-seconds", type=float, default=30.0, help="latency: seconds of offered traffic"
    )
    size.add_argument(
        "--latency-accounts", type=int, default=None, help="latency: accounts (None: as --accounts)"
    )
    size.add_argument("--plans", type=int, default=100_000, help="plans: plan records first")
    size.add_argument(
        "--plans-usage", type=int, default=10_000, help="plans: usage records after the plans"
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--guarantee",
        choices=("both", *GUARANTEES),
        default="both",
        help="throughput: guarantees to run one worker under",
    )
    run.add_argument(
        "--max-seconds",
        type=float,
        default=90.0,
        help="longest wait of each section (for ready, and for the measured work)",
    )
    run.add_argument(
        "--stall", type=float, default=60.0, help="stop a backlog run this long without progress"
    )
    run.add_argument(
        "--stop-timeout", type=float, default=30.0, help="SIGKILL a worker this long after SIGTERM"
    )
    run.add_argument(
        "--batch-size", type=int, default=None, help="MOMENTS_BATCH_SIZE (None: the worker's)"
    )
    run.add_argument("--seed", type=int, default=7, help="random seed of the data")
    run.add_argument(
        "--rebuild-early",
        action="store_true",
        help="rebuild: read the views as the check once did, without waiting for background"
        " work (2.5 s after the last record, and at ready): shows what that compared",
    )
    run.add_argument(
        "--bootstrap",
        default=os.environ.get("MOMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap, from $MOMENTS_KAFKA_BOOTSTRAP when set",
    )
    run.add_argument(
        "--worker-command",
        default=f"{Path(sys.executable).with_name('moments')} worker",
        help="command that runs one worker (configured by MOMENTS_* variables)",
    )
    run.add_argument(
        "--log-dir",
        default=str(Path(tempfile.gettempdir()) / "bench-logs"),
        help="where worker logs are kept",
    )
    args = parser.parse_args(argv)
    if min(args.records, args.accounts, args.partitions, args.plans, args.plans_usage) < 1:
        parser.error("sizes must be at least 1")
    if args.latency_rate <= 0 or args.latency_seconds <= 0 or args.max_seconds <= 0:
        parser.error("--latency-rate, --latency-seconds and --max-seconds must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    """Every selected section, then the table; 1 when a figure could not be measured."""
    run_id = uuid.uuid4().hex[:8]
    sections = set(args.only)
    report = Report()
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    print(
        f"bench {run_id}: sections {','.join(s for s in SECTIONS if s in sections)};"
        f" {args.records:,} records, {args.accounts:,} accounts, {args.partitions} partitions;"
        f" max {args.max_seconds:.0f}s per section; broker {args.bootstrap};"
        f" {os.cpu_count()} CPUs, python {sys.version.split()[0]}; worker at {source_version()}"
        f" ({args.worker_command})"
    )
    # The exactly_once one-worker run is the reference of two-workers and builds the
    # state that rebuild restores, so those sections run it too.
    need_eos = bool(
        ("throughput" in sections and "exactly_once" in guarantees)
        or {"rebuild", "two-workers"} & sections
    )
    need_alo = "throughput" in sections and "at_least_once" in guarantees
    backlog = make_dataset(args, run_id, "backlog", args.accounts)
    if need_eos or need_alo or "baseline" in sections:
        await create_topics(args.bootstrap, backlog)
        plans_s = await publish_plans(args.bootstrap, backlog)
        produce_s = await publish_backlog(args, backlog, args.records)
        print(
            f"published {len(backlog.accounts):,} plans ({plans_s:.1f}s), then"
            f" {backlog.records:,} usage records ({backlog.duplicates:,} repeats) to"
            f" {backlog.usage_topic} in {produce_s:.1f}s -> {backlog.records / produce_s:,.0f}"
            " rec/s"
        )
    if "baseline" in sections:
        base_s, base_rps, base_accounts = await baseline(args, backlog)
        print(
            f"baseline aiokafka loop: {backlog.records:,} records in {base_s:.1f}s ->"
            f" {base_rps:,.0f} rec/s ({base_accounts} accounts summed)"
        )
        report.add(
            1,
            "baseline aiokafka loop (read + parse + sum), records/s",
            f"{base_rps:,.0f}/s",
            "- (reference)",
            "(reference: a plain Python consumer on this machine)",
        )
    eos: OneRun | None = None
    if need_eos:
        eos = await one_worker(
            args, backlog, "exactly_once", report, keep_views="rebuild" in sections
        )
    if "rebuild" in sections:
        if eos is not None and eos.window is not None:
            await rebuild(args, backlog, eos, report)
        else:
            report.failed(6, "rebuild from changelogs", "- (none)", "no exactly_once state")
    if need_alo:
        alo = await one_worker(args, backlog, "at_least_once", report)
        if alo.window and eos and eos.window and eos.window.rate > 0:
            print(f"  at_least_once / exactly_once: {alo.window.rate / eos.window.rate:.2f}x")
    if "two-workers" in sections:
        await two_workers(args, run_id, eos, report)
    if "latency" in sections:
        await latency(args, run_id, report)
    if "plans" in sections:
        await plans_first_commit(args, run_id, report)
    report.print()
    print(
        "\nrates: records counted by moments_records_total (all outcomes) per second, from"
        " /readyz 200 (two workers: from the commit of the gated backlog) to the last record;"
        " partial when a section ran out of --max-seconds. Peak RSS: VmHWM from /proc."
    )
    return 1 if report.failures else 0


def main() -> int:
    """Run the bench; stop every worker it started, whatever happens."""
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for w in list(_running):
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            w.remove_state()


if __name__ == "__main__":
    sys.exit(main())
