"""CPU cost of the account-plans path, through the real handler on a real RocksDB store.

What a worker does with each plan record at start (issue 20: first usage commit after
100,000 plans), with no Kafka around it: steps of ``--step`` records through
:class:`agents.plans.PlansHandler`, each followed by what the engine does for a committed
step (the changelog messages of :meth:`engine.checkpoint.Checkpoint.with_changelogs`, the
RocksDB write batch, the object cache settled, the after-commit callbacks). Prints
microseconds of CPU (this process's) per plan record, and a fingerprint of everything the
steps produced (messages, including events and changelog records, and the final store) so
that two versions can be checked for identical behaviour on the same workload.

Workloads (``--workload``):

- ``bench``: as ``scripts/bench.py --only plans``: one plan record per account (new
  accounts), a quarter with a billing anchor, on a fresh store;
- ``mixed``: accounts with several records in a step (plan, status, members, region,
  anchor and birth-date changes, stale repeats, tombstones and records after them, invalid
  records and entries left out, records of another partition forwarded, forwarded
  tombstones), on a store that already holds usage and an anniversary pass.

Usage::

    .venv/bin/python scripts/profile_plans.py [--workload bench|mixed] [--records 100000]
        [--step 20000] [--repeat 3] [--cprofile N]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiling import (  # noqa: E402
    as_a_worker,
    cprofile_report,
    fingerprint,
    fingerprint_store,
    worker_store_options,
)

from agents.plans import PlansHandler  # noqa: E402
from agents.usage import UsageHandler  # noqa: E402
from app.main import Runtime  # noqa: E402
from domain.common.timeutil import DAY_MS, to_rfc3339  # noqa: E402
from domain.intake.partitioning import account_partition, forwarded_tombstone  # noqa: E402
from engine.collector import COLLECTOR  # noqa: E402
from engine.step import Messages, Step  # noqa: E402
from state.store import PartitionStore  # noqa: E402
from state.transaction import StepState  # noqa: E402
from tables.anniversary_passes import Pass, put_pass  # noqa: E402
from tests.harness.steps import (  # noqa: E402
    Record,
    commit,
    open_store,
    runtime_of,
    with_changelogs,
)

NOW_MS: Final = 1_795_176_000_000  # 2026-11-20T12:00:00Z
PLAN_IDS: Final = ("free", "starter", "growth", "scale")
#: The worker's object cache per partition with the bench's four (commands/worker/wiring.py).
CACHED_OBJECTS: Final = 80_000 // 4


def iso(ms: int) -> str:
    return to_rfc3339(ms)


def bench_records(n: int, topic: str, rng: random.Random) -> list[Record]:
    """One plan per new account, a quarter with a billing anchor (as the bench's)."""
    updated = iso(NOW_MS - 60_000)
    out: list[Record] = []
    for i in range(n):
        account = f"acct-{i:06d}"
        plan: dict[str, Any] = {
            "account_id": account,
            "plan_id": rng.choice(PLAN_IDS),
            "updated_at": updated,
        }
        if rng.random() < 0.25:
            plan["billing_anchor"] = iso(NOW_MS - rng.randrange(40) * DAY_MS)
        out.append(Record(account.encode(), orjson.dumps(plan), i, NOW_MS - 1000, topic))
    return out


def mixed_records(
    n: int, topic: str, forward_topic: str, partitions: int, rng: random.Random
) -> list[Record]:
    """Several records per account, of every kind the handler tells apart."""
    accounts = [f"acct-{i:05d}" for i in range(max(1, n // 6))]
    out: list[Record] = []
    for i in range(n):
        account = rng.choice(accounts)
        key: bytes | None = account.encode()
        at = NOW_MS - rng.randrange(3 * DAY_MS)
        roll = rng.random()
        top = topic
        value: bytes | None
        if roll < 0.06:
            value = None  # tombstone
        elif roll < 0.08 and account_partition(account, partitions) == 0:
            top, value = forward_topic, forwarded_tombstone(at - rng.randrange(DAY_MS))
        elif roll < 0.09:
            value = b"{not json"
        elif roll < 0.10:
            key = None
            value = orjson.dumps({"account_id": account, "plan_id": "free", "updated_at": iso(at)})
        elif roll < 0.11:
            value = orjson.dumps({"account_id": account, "plan_id": "nope", "updated_at": iso(at)})
        else:
            plan: dict[str, Any] = {
                "account_id": account,
                "plan_id": rng.choice(PLAN_IDS),
                # A tenth older than the record before: stale.
                "updated_at": iso(at - (DAY_MS if rng.random() < 0.1 else 0)),
            }
            if rng.random() < 0.3:
                plan["status"] = rng.choice(("active", "active", "paused", "cancelled"))
            if rng.random() < 0.3:
                plan["members"] = rng.randrange(5)
            if rng.random() < 0.2:
                plan["region"] = rng.choice(("eu", "us", "ap"))
            if rng.random() < 0.2:
                plan["billing_anchor"] = iso(NOW_MS - rng.randrange(1, 3) * 20 * DAY_MS)
            if rng.random() < 0.1:
                plan["birth_date"] = rng.choice(("1990-11-21", "--11-20", "--02-29", "nope"))
            if rng.random() < 0.1:
                plan["limits"] = {"api_calls": rng.choice((1000, -1, "x"))}
            value = orjson.dumps(plan)
        out.append(Record(key, value, i, at, top))
    return out


def seed(runtime: Runtime, store: PartitionStore, n: int, rng: random.Random) -> None:
    """Usage for a third of the mixed workload's accounts, and a complete anniversary pass."""
    usage = UsageHandler(runtime)
    accounts = [f"acct-{i:05d}" for i in range(0, max(1, n // 6), 3)]
    records = []
    for i, account in enumerate(accounts):
        if account_partition(account, runtime.settings.partitions) != 0:
            continue
        value = {
            "record_id": f"r{i}",
            "account_id": account,
            "metric": "api_calls",
            "quantity": rng.randrange(1, 5000),
            "timestamp": NOW_MS - rng.randrange(30) * DAY_MS,
        }
        records.append(
            Record(account.encode(), orjson.dumps(value), i, NOW_MS, runtime.settings.topic_usage)
        )
    step = Step(0, StepState(store), NOW_MS)
    usage.process(step, runtime.settings.topic_usage, records)
    put_pass(
        step.state,
        0,
        Pass(
            NOW_MS - DAY_MS,
            None,
            NOW_MS - DAY_MS,
            indexed=True,
            period=runtime.catalog.period,
        ),
    )
    store.apply(step.state.updates())


def one_step(
    handler: PlansHandler,
    store: PartitionStore,
    chunk: list[Record],
    topics: tuple[str, str],
) -> Messages:
    """One step of ``chunk`` as the engine runs and applies it; returns its messages."""
    step = Step(0, StepState(store), NOW_MS)
    # The engine hands a step's records per topic, in offset order.
    for top in topics:
        of_topic = [r for r in chunk if r.topic == top]
        if of_topic:
            handler.process(step, top, of_topic)
    messages = with_changelogs(step)
    commit(store, step)
    return messages


class Outcome(NamedTuple):
    cpu_s: float
    wall_s: float
    fingerprint: str
    messages: int


def run(args: argparse.Namespace, profile: cProfile.Profile | None = None) -> Outcome:
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data
    partitions = 1 if args.workload == "bench" else 2
    with tempfile.TemporaryDirectory(prefix="profile-plans-") as tmp:
        runtime = runtime_of(Path(tmp), partitions, clock_ms=NOW_MS)
        settings = runtime.settings
        store = open_store(Path(tmp), 0, worker_store_options(), CACHED_OBJECTS)
        topic, forward = settings.topic_accounts, settings.topic_plans_forward
        if args.workload == "bench":
            records = bench_records(args.records, topic, rng)
        else:
            seed(runtime, store, args.records, rng)
            records = mixed_records(args.records, topic, forward, partitions, rng)
        handler = PlansHandler(runtime)
        sent: list[Messages] = []
        if profile is not None:
            profile.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, len(records), args.step):
            chunk = records[start : start + args.step]
            with COLLECTOR.step():  # as the engine runs a step
                sent.append(one_step(handler, store, chunk, (topic, forward)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profile is not None:
            profile.disable()
        digest = hashlib.sha256()
        messages = sum(fingerprint(digest, step_messages, args.dump) for step_messages in sent)
        fingerprint_store(digest, store, args.dump)  # the dedup tables: the seed's usage
        store.close()
    return Outcome(cpu, wall, digest.hexdigest()[:16], messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("bench", "mixed"), default="bench")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--step", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--dump", type=argparse.FileType("w"), help="write every message and stored value here"
    )
    args = parser.parse_args()
    as_a_worker()
    outcomes = [run(args) for _ in range(args.repeat)]
    best = min(outcomes, key=lambda o: o.cpu_s)
    prints = {o.fingerprint for o in outcomes}
    print(
        f"{args.workload}: {args.records:,} plan records in steps of {args.step:,}: "
        f"{best.cpu_s / args.records * 1e6:.1f} us CPU per record (best of {args.repeat}; all: "
        f"{', '.join(f'{o.cpu_s / args.records * 1e6:.1f}' for o in outcomes)}), "
        f"{best.messages:,} messages, fingerprint {' '.join(sorted(prints))}"
    )
    if args.cprofile:
        cprofile_report(lambda profile: run(args, profile), args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
