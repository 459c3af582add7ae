"""CPU cost of the per-record business rules, with no Kafka, Faust or RocksDB around them.

Builds a realistic usage workload in memory and runs it through the usage path the way the
worker's engine does, one batch per partition: :func:`domain.intake.batch.run_intake` then
:func:`domain.moments.detection.detect_thresholds`, with dict-backed lookups that decode and encode
state from and to JSON bytes (orjson) as a store would. Prints microseconds of CPU per record
for each part, and a fingerprint of everything the rules produced (outcomes, dead letters,
events, final state) so that two versions of the rules can be checked for identical
behaviour on the same workload.

Parts, in microseconds per input record, of the pass with the shortest total out of
``--repeat`` (CPU time of this thread, so that other processes on the machine disturb the
figures as little as possible; the lookups' decoding by a wall clock around each lookup):

- ``parse``: :func:`domain.intake.records.parse_usage` alone, in a separate pass over every record;
- ``intake``: ``run_intake`` less the decoding its state lookups do (parse included);
- ``detection``: ``detect_thresholds`` (event building included) less its lookups' decoding;
- ``state decode``: ``orjson.loads`` + ``from_json`` of the plans, totals, daily, announced
  and dedup values, timed inside the lookups the rules call (so in the pass itself, where
  it costs more than in a loop of its own: the memory it allocates is cold);
- ``state encode``: ``to_json`` + ``orjson.dumps`` of every touched value (and of the events),
  dedup entries included;
- ``total``: the whole batch loop (intake + detection + encode), lookups included.

The workload: ``--records`` usage records (85 % epoch ms, 15 % RFC 3339 timestamps, about
2 % repeated record_ids, 0.1 % invalid) over ``--accounts`` accounts with Zipf-like activity
(``--zipf``), four metrics, plans from ``config/plans.toml`` for 95 % of the accounts (40 %
with their own billing anchor), cut into batches of ``--batch`` records per partition. A
share of the accounts (``--seeded``) already holds state mid-period, as a running worker's
accounts do: this period's totals, the levels they announced, and 35 days of daily totals.

Usage::

    .venv/bin/python scripts/profile_domain.py [--records 200000] [--accounts 20000]
        [--batch 5000] [--partitions 8] [--seeded 0.9] [--zipf 0.9] [--seed 7]
        [--repeat 3] [--no-gc] [--cprofile N] [--sort tottime|cumulative]

``--no-gc`` turns the cyclic garbage collector off while timing (to see what it costs);
``--cprofile N`` runs the batch loop once more under cProfile and prints the top N functions.
For a sampling profile: ``py-spy record -f raw -o out.txt -- .venv/bin/python <this script>``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.errors import InvalidUsageRecord  # noqa: E402
from domain.intake.accounts import AccountPlan, period_of  # noqa: E402
from domain.intake.batch import IntakeResult, IntakeRules, IntakeState, RawRecord, run_intake  # noqa: E402
from domain.intake.daily import AccountDaily  # noqa: E402
from domain.intake.records import Metering, parse_usage  # noqa: E402
from domain.intake.usage import AccountTotals  # noqa: E402
from domain.moments.detection import DetectionResult, detect_thresholds  # noqa: E402
from domain.plans.catalog import Catalog, load_catalog  # noqa: E402
from domain.rules.thresholds import AnnouncedLevels  # noqa: E402
from domain.wording.templates import Templates, load_templates  # noqa: E402

T = TypeVar("T")

DAY_MS: Final = 86_400_000
NOW_MS: Final = 1_794_830_400_000  # 2026-11-16T12:00:00Z, mid-period for most accounts
RULES: Final = IntakeRules(
    max_clock_skew_ms=5 * 60_000,
    dedup_horizon_ms=7 * DAY_MS,
    late_grace_ms=3_600_000,
    daily_retention_days=35,
)
PLAN_WEIGHTS: Final = {"free": 0.2, "starter": 0.4, "growth": 0.3, "scale": 0.1}
METRIC_SHARES: Final = {"api_calls": 0.55, "events": 0.30, "storage_gb": 0.10, "seats": 0.05}
INTEGRAL: Final = frozenset({"api_calls", "events", "seats"})
UNKNOWN_SHARE: Final = 0.05
"""Accounts without a plan yet (their usage accumulates in calendar months)."""
ANCHORED_SHARE: Final = 0.4
"""Accounts whose plan has its own billing anchor (the rest: the 1st, 00:00 UTC)."""
INACTIVE_SHARE: Final = 0.03
RFC3339_SHARE: Final = 0.15
DUPLICATE_SHARE: Final = 0.02
INVALID_SHARE: Final = 0.001
SPREAD_MS: Final = 50 * 60_000
ADDED_SHARE: Final = 0.15
"""The run adds up to this fraction of each allotment to an account's period total."""
DEFAULT_ALLOTMENT: Final = 1_000_000.0
"""Sizes the usage of metrics without a limit."""
OLD_SHARE: Final = 0.01
"""Records with event times up to 40 days old (late ones, and days of other periods)."""


@dataclass(slots=True)
class Stores:
    """Dict-backed tables holding JSON bytes, as RocksDB would."""

    plans: dict[str, bytes]
    totals: dict[str, bytes] = field(default_factory=dict)
    daily: dict[str, bytes] = field(default_factory=dict)
    announced: dict[str, bytes] = field(default_factory=dict)
    dedup: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Workload:
    """The batches of raw records, in the order an engine takes them, and the stored state."""

    catalog: Catalog
    templates: Templates
    batches: list[list[RawRecord]]
    stores: Stores
    records: int


def zipf_weights(n: int, s: float) -> list[float]:
    """Weights of ranks 1..n falling off as ``1 / rank**s``."""
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def rfc3339(rng: random.Random, ts_ms: int) -> str:
    """``ts_ms`` as RFC 3339 the way producers write it: ``Z`` or an offset, with or without
    milliseconds."""
    offset_min = rng.choice((0, 0, 0, 60, 120, -300, 330))
    zone = timezone(timedelta(minutes=offset_min))
    dt = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(zone)
    text = dt.isoformat(timespec="milliseconds" if rng.random() < 0.7 else "seconds")
    return text.replace("+00:00", "Z") if offset_min == 0 else text


def invalid_value(rng: random.Random, good: dict[str, Any]) -> bytes:
    """A broken record, of one of the kinds producers send."""
    kind = rng.randrange(6)
    if kind == 0:
        return b'{"record_id": "r", "account_id": '
    bad = dict(good)
    if kind == 1:
        bad["quantity"] = -3
    elif kind == 2:
        bad["metric"] = "API Calls"
    elif kind == 3:
        del bad["timestamp"]
    elif kind == 4:
        bad["timestamp"] = NOW_MS + DAY_MS
    else:
        bad["quantity"] = "12"
    return orjson.dumps(bad)


def seed_state(
    rng: random.Random,
    account: str,
    plan: AccountPlan | None,
    catalog: Catalog,
    used: dict[str, float],
) -> tuple[bytes, bytes, bytes | None]:
    """Stored state of an account mid-period: period-to-date totals at ``used`` fractions of
    its allotments, the announcements they made, and 35 days of daily totals."""
    totals = AccountTotals()
    announced = AnnouncedLevels()
    daily = AccountDaily()
    catalog_plan = None if plan is None else catalog.plan(plan.plan_id)
    period = period_of(plan, NOW_MS, catalog)
    today = NOW_MS // DAY_MS
    for metric, fraction in used.items():
        allotment = DEFAULT_ALLOTMENT
        levels: tuple[Decimal, ...] = ()
        if plan is not None and catalog_plan is not None:
            limit = plan.limit(catalog_plan, metric)
            if limit is not None:
                allotment = float(limit)
                levels = catalog_plan.levels
        total = quantity_of(metric, allotment * fraction)
        totals.add(metric, period, total)
        reached = [level for level in levels if total >= level * Decimal(str(allotment))]
        if plan is not None and reached:
            announced.mark(metric, period, plan.plan_id, reached)
        per_day = allotment * fraction / max(1, (NOW_MS - period.start_ms) / DAY_MS)
        for day in range(today - 35, today):
            if rng.random() < 0.9:
                stamp = day * DAY_MS + rng.randrange(DAY_MS)
                daily.add(metric, stamp, quantity_of(metric, per_day * rng.uniform(0.5, 1.5)))
    seeded_announced = orjson.dumps(announced.to_json()) if announced.levels else None
    return orjson.dumps(totals.to_json()), orjson.dumps(daily.to_json()), seeded_announced


def quantity_of(metric: str, size: float) -> Decimal:
    """A quantity as producers send it: whole units, or GB with three decimals."""
    if metric in INTEGRAL:
        return Decimal(max(1, round(size)))
    return Decimal(repr(round(size, 3)))


def build(args: argparse.Namespace) -> Workload:
    """Generate the workload: stored plans and state, then usage records by partition."""
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data, not crypto
    catalog = load_catalog(ROOT / "config" / "plans.toml")
    templates = load_templates(ROOT / "config" / "messages.toml")
    accounts = [f"acct-{i:06d}" for i in range(args.accounts)]
    weights = zipf_weights(len(accounts), args.zipf)
    total_weight = sum(weights)
    stores = Stores(plans={})

    sizes: dict[tuple[str, str], float] = {}
    for account, weight in zip(accounts, weights, strict=True):
        plan: AccountPlan | None = None
        if rng.random() >= UNKNOWN_SHARE:
            plan_id = rng.choices(list(PLAN_WEIGHTS), list(PLAN_WEIGHTS.values()))[0]
            anchor_ms: int | None = None
            if rng.random() < ANCHORED_SHARE:
                anchor_ms = NOW_MS - rng.randrange(400) * DAY_MS - rng.randrange(DAY_MS)
            overrides = {"api_calls": Decimal(2500)} if rng.random() < 0.02 else {}
            plan = AccountPlan(
                account_id=account,
                plan_id=plan_id,
                anchor_ms=anchor_ms,
                status="paused" if rng.random() < INACTIVE_SHARE else "active",
                limits=overrides,
                updated_at_ms=NOW_MS - 30 * DAY_MS,
            )
            stores.plans[account] = orjson.dumps(plan.to_json())
        catalog_plan = None if plan is None else catalog.plan(plan.plan_id)
        # The run adds up to ADDED_SHARE of each allotment to what the period already holds,
        # so accounts near a level cross it (about 2-3 % of records announce something).
        used = {metric: rng.uniform(0.0, 0.95) for metric in METRIC_SHARES}
        if rng.random() < args.seeded:
            totals, daily, announced = seed_state(rng, account, plan, catalog, used)
            stores.totals[account] = totals
            stores.daily[account] = daily
            if announced is not None:
                stores.announced[account] = announced
        expected_records = max(1.0, args.records * weight / total_weight)
        for metric, share in METRIC_SHARES.items():
            allotment = DEFAULT_ALLOTMENT
            if plan is not None and catalog_plan is not None:
                limit = plan.limit(catalog_plan, metric)
                allotment = DEFAULT_ALLOTMENT if limit is None else float(limit)
            added = allotment * rng.uniform(0.0, ADDED_SHARE)
            sizes[account, metric] = added / max(1.0, expected_records * share)

    metrics = list(METRIC_SHARES)
    metric_weights = list(METRIC_SHARES.values())
    picks = rng.choices(accounts, weights, k=args.records)
    sent: dict[str, list[bytes]] = {}
    by_partition: list[list[RawRecord]] = [[] for _ in range(args.partitions)]
    for i, account in enumerate(picks):
        earlier = sent.setdefault(account, [])
        if earlier and rng.random() < DUPLICATE_SHARE:
            value = earlier[rng.randrange(len(earlier))]
        else:
            metric = rng.choices(metrics, metric_weights)[0]
            size = sizes[account, metric] * rng.uniform(0.5, 1.5)
            quantity: float = max(1, round(size)) if metric in INTEGRAL else round(size, 3)
            if rng.random() < OLD_SHARE:
                ts_ms = NOW_MS - rng.randrange(40 * DAY_MS)
            else:
                ts_ms = NOW_MS - rng.randrange(SPREAD_MS)
            timestamp: int | str = rfc3339(rng, ts_ms) if rng.random() < RFC3339_SHARE else ts_ms
            record = {
                "record_id": f"rec-{i:09d}",
                "account_id": account,
                "metric": metric,
                "quantity": quantity,
                "timestamp": timestamp,
                "attributes": {"region": "eu-west-1", "sdk": "profile/1"},
            }
            if rng.random() < INVALID_SHARE:
                value = invalid_value(rng, record)
            else:
                value = orjson.dumps(record)
                earlier.append(value)
        partition = zlib.crc32(account.encode()) % args.partitions
        queue = by_partition[partition]
        queue.append(RawRecord(account.encode(), value, "usage-records", partition, len(queue), 0))

    # Batches of each partition in turn, as an engine would take them.
    batches: list[list[RawRecord]] = []
    offset = 0
    while any(offset < len(q) for q in by_partition):
        for queue in by_partition:
            chunk = queue[offset : offset + args.batch]
            if chunk:
                batches.append(chunk)
        offset += args.batch
    return Workload(catalog, templates, batches, stores, args.records)


@dataclass(slots=True)
class Clock:
    """CPU seconds of the parts of one pass (see the module docstring)."""

    intake: float = 0.0
    detection: float = 0.0
    decode_intake: float = 0.0
    decode_detection: float = 0.0
    encode: float = 0.0
    loop: float = 0.0


def timed(clock: Clock, part: str, fn: Callable[[str], T]) -> Callable[[str], T]:
    """``fn`` with its time added to ``clock.<part>``."""
    now = time.perf_counter

    def wrapper(key: str) -> T:
        start = now()
        try:
            return fn(key)
        finally:
            setattr(clock, part, getattr(clock, part) + now() - start)

    return wrapper


@dataclass(slots=True)
class Outputs:
    """Everything the rules decided, hashed as it goes (the behaviour fingerprint)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    moments: Counter[str] = field(default_factory=Counter)
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, result: IntakeResult, detected: DetectionResult) -> None:
        self.outcomes.update(result.outcomes)
        for _raw, letter in result.dead_letters:
            self.digest.update(orjson.dumps(letter, option=orjson.OPT_SORT_KEYS))
        for account, raw in result.rekey:
            self.digest.update(account.encode() + raw.value if raw.value else b"")
        for item in result.accepted:
            change = item.change
            self.digest.update(
                f"{item.record.record_id}|{change.metric}|{change.period.start_ms}|"
                f"{change.period.end_ms}|{change.before}|{change.after}".encode()
            )
        for moment in detected.moments:
            self.moments[moment.kind] += 1
            self.digest.update(orjson.dumps(moment.payload, option=orjson.OPT_SORT_KEYS))


def run(work: Workload, outputs: Outputs | None = None) -> Clock:
    """One pass over every batch, timed: batches in CPU seconds of this thread, and the decoding
    in the lookups by ``perf_counter`` (cheap enough to call around each lookup).

    With ``outputs``, hashes what the rules decided (not timed).
    """
    seeded = work.stores
    stores = Stores(
        dict(seeded.plans), dict(seeded.totals), dict(seeded.daily), dict(seeded.announced)
    )
    clock = Clock()
    loads, dumps = orjson.loads, orjson.dumps

    def plan_of(account: str) -> AccountPlan | None:
        held = stores.plans.get(account)
        return None if held is None else AccountPlan.from_json(loads(held))

    def totals_of(account: str) -> AccountTotals:
        held = stores.totals.get(account)
        return AccountTotals.from_json(None if held is None else loads(held))

    def daily_of(account: str) -> AccountDaily:
        held = stores.daily.get(account)
        return AccountDaily.from_json(None if held is None else loads(held))

    def announced_of(account: str) -> AnnouncedLevels:
        held = stores.announced.get(account)
        return AnnouncedLevels.from_json(None if held is None else loads(held))

    def seen_at(key: str) -> int | None:
        held = stores.dedup.get(key)
        return None if held is None else int(held)

    plan_lookup = timed(clock, "decode_intake", plan_of)
    totals_lookup = timed(clock, "decode_intake", totals_of)
    daily_lookup = timed(clock, "decode_intake", daily_of)
    seen_lookup = timed(clock, "decode_intake", seen_at)
    announced_lookup = timed(clock, "decode_detection", announced_of)
    now = time.thread_time
    loop_start = now()
    outside = 0.0
    for batch in work.batches:
        start = now()
        result = run_intake(
            batch,
            IntakeState(
                plan_of=plan_lookup,
                totals_of=totals_lookup,
                seen_at=seen_lookup,
                daily_of=daily_lookup,
            ),
            now_ms=NOW_MS,
            rules=RULES,
            catalog=work.catalog,
        )
        middle = now()
        detected = detect_thresholds(
            result.accepted,
            now_ms=NOW_MS,
            prune_before_ms=NOW_MS - RULES.late_grace_ms - 1,
            catalog=work.catalog,
            templates=work.templates,
            announced_of=announced_lookup,
        )
        end = now()
        clock.intake += middle - start
        clock.detection += end - middle
        for account, totals in result.totals.items():
            stores.totals[account] = dumps(totals.to_json())
        for key, seen_ms in result.seen.items():
            stores.dedup[key] = str(seen_ms).encode()
        for account, days in result.daily.items():
            stores.daily[account] = dumps(days.to_json())
        for account, levels in detected.announced.items():
            stores.announced[account] = dumps(levels.to_json())
        for moment in detected.moments:
            dumps(moment.payload)
        done = now()
        clock.encode += done - end
        if outputs is not None:
            outputs.add(result, detected)
            outside += now() - done
    clock.loop = now() - loop_start - outside
    if outputs is not None:
        for name in ("totals", "daily", "announced"):
            table: dict[str, bytes] = getattr(stores, name)
            for key in sorted(table):
                outputs.digest.update(f"{name}|{key}|".encode() + table[key])
        # Dedup keys are left out (their form is not behaviour), their number and times are not.
        outputs.digest.update(f"dedup|{len(stores.dedup)}".encode())
        for value in sorted(stores.dedup.values()):
            outputs.digest.update(value)
    return clock


def parse_pass(work: Workload) -> float:
    """CPU seconds to run parse_usage over every record."""
    metering = Metering.of(work.catalog)
    start = time.thread_time()
    for batch in work.batches:
        for raw in batch:
            try:
                parse_usage(raw.value, NOW_MS, RULES.max_clock_skew_ms, metering)
            except InvalidUsageRecord:
                pass
    return time.thread_time() - start


def best_of(repeat: int, fn: Callable[[], T], key: Callable[[T], float]) -> T:
    """The fastest of ``repeat`` calls of ``fn`` (the least disturbed by the machine)."""
    results = [fn() for _ in range(repeat)]
    return min(results, key=key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000, help="records per partition batch")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--seeded",
        type=float,
        default=0.9,
        help="share of accounts that already hold state: this period's totals, 35 daily totals",
    )
    parser.add_argument("--zipf", type=float, default=0.9, help="skew of account activity")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is shown")
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the cyclic garbage collector while timing"
    )
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="top N functions")
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    args = parser.parse_args()

    started = time.perf_counter()
    work = build(args)
    n = work.records
    print(
        f"workload: {n:,} records over {args.accounts:,} accounts, {len(work.batches)} batches "
        f"(<= {args.batch:,} records, {args.partitions} partitions), built in "
        f"{time.perf_counter() - started:.1f} s"
    )

    # The workload stays alive for the whole run; a worker holds only its current batch. Keep
    # the collector from walking the 200,000 records again and again (it still runs).
    gc.collect()
    gc.freeze()
    if args.no_gc:
        gc.disable()
    outputs = Outputs()
    run(work, outputs)  # warm-up, and the fingerprint
    moments = ", ".join(f"{k} {v:,}" for k, v in sorted(outputs.moments.items()))
    print(f"outcomes: {dict(sorted(outputs.outcomes.items()))}")
    print(f"events:   {moments}")
    print(f"fingerprint: {outputs.digest.hexdigest()}")

    gc.collect()
    parse_s = min(parse_pass(work) for _ in range(args.repeat))
    clock = best_of(args.repeat, lambda: run(work), key=lambda c: c.loop)
    rows = [
        ("parse (parse_usage alone)", parse_s),
        ("intake (without lookups, parse incl.)", clock.intake - clock.decode_intake),
        ("detection (without lookups)", clock.detection - clock.decode_detection),
        ("state decode", clock.decode_intake + clock.decode_detection),
        ("state encode", clock.encode),
        ("total (intake + detection + encode)", clock.loop),
    ]
    print(f"\n{'part':<38}{'us/record':>10}{'s':>8}")
    for name, seconds in rows:
        print(f"{name:<38}{seconds / n * 1e6:>10.2f}{seconds:>8.2f}")
    print(f"{'= records/s on one core':<38}{n / clock.loop:>10,.0f}")

    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.runcall(run, work)
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
