"""CPU cost of small usage steps, through the real handler on a real RocksDB store.

What a worker does per record at low load (``make bench``'s latency section: ~6,000
records/s over 2,000 accounts and 4 partitions, so steps of a few hundred records), with
no broker around it: steps of ``--step`` usage records of partition 0 through
:class:`agents.usage.UsageHandler` on a :class:`state.store.PartitionStore` with a
:class:`state.transaction.StepState`, each followed by what the engine does for a
committed step: the changelog messages of
:meth:`engine.checkpoint.Checkpoint.with_changelogs`, the Kafka batches built as
:func:`engine.committers._send` builds them (aiokafka's ``BatchBuilder``, its record
batch encoded as the sender would; the send itself is a stand-in), the RocksDB write
batch, the object cache settled, the after-commit callbacks.

Prints microseconds of CPU (this process's) per record, split into parts:

- ``decide``: ``UsageHandler.process`` (intake, rules, the state's encoding, events);
- ``changelogs``: ``with_changelogs`` (the changelog records, dedup segments encoded);
- ``batches``: every message appended to aiokafka batches and each batch encoded;
- ``apply``: ``PartitionStore.apply`` (RocksDB's write batch; its background flushes and
  compactions count too: the clock is the process's);
- ``settle``: the object cache settled, the after-commit callbacks;

and per touched key, and a fingerprint of every message (events, dead letters, changelog
records; the dedup segments' random keys left out) and of the final store, so that two
versions can be checked for identical outputs on the same workload.

The workload is the bench's own (:class:`benchmark.workload.UsageSource`: plans mixed as
the bench's, quantities sized to cross plan levels, 3 % repeats, 15 % RFC 3339
timestamps), for the accounts of partition 0 among ``--accounts``, first ``--warm``
records (not timed: the accounts hold state, as during the latency section) then
``--records`` timed ones.

Instruction counts of the timed steps alone: ``valgrind --tool=callgrind --instr-atstart=no
.venv/bin/python scripts/profile_steps.py --repeat 1 --callgrind`` (the total of the
callgrind output is theirs).

Usage::

    .venv/bin/python scripts/profile_steps.py [--records 40000] [--step 400]
        [--accounts 2000] [--partitions 4] [--warm 20000] [--repeat 3] [--cprofile N]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any, Final

import orjson

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from aiokafka.producer.message_accumulator import BatchBuilder  # noqa: E402
from benchmark.workload import UsageSource, make_dataset  # noqa: E402
from profiling import (  # noqa: E402
    as_a_worker,
    cprofile_report,
    fingerprint,
    fingerprint_store,
    worker_store_options,
)

from agents.plans import PlansHandler  # noqa: E402
from agents.usage import UsageHandler  # noqa: E402
from domain.common.timeutil import to_rfc3339  # noqa: E402
from domain.intake.partitioning import account_partition  # noqa: E402
from engine.collector import COLLECTOR  # noqa: E402
from engine.committers import _send  # noqa: E402
from engine.step import Messages, Step  # noqa: E402
from state.store import PartitionStore  # noqa: E402
from state.transaction import StepState  # noqa: E402
from tests.harness.steps import Record, open_store, runtime_of, with_changelogs  # noqa: E402

NOW_MS: Final = 1_795_176_000_000  # 2026-11-20T12:00:00Z
#: commands/worker/wiring.py: the producer's batches.
MAX_BATCH: Final = 512 * 1024
PARTS: Final = ("decide", "changelogs", "batches", "apply", "settle")
DUMP: IO[str] | None = None


class _Producer:
    """What :func:`engine.committers._send` uses of a transactional producer: its batches
    are built (encoded, as the sender does before a produce request), not sent."""

    def __init__(self) -> None:
        self.built = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(MAX_BATCH, 0, is_transactional=True)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> None:
        self.built += len(batch._build())  # noqa: SLF001 - what the sender encodes


def plan_records(accounts: list[str], plans: dict[str, str], topic: str) -> list[Record]:
    updated = to_rfc3339(NOW_MS - 86_400_000)
    return [
        Record(
            a.encode(),
            orjson.dumps({"account_id": a, "plan_id": plans[a], "updated_at": updated}),
            i,
            NOW_MS - 86_400_000,
            topic,
        )
        for i, a in enumerate(accounts)
    ]


def usage_records(args: argparse.Namespace, topic: str, partitions: int) -> list[Record]:
    """``--warm`` + ``--records`` bench records of partition 0's accounts."""
    data = make_dataset(
        SimpleNamespace(seed=args.seed, partitions=partitions), "profile", "latency", args.accounts
    )
    data.accounts = [a for a in data.accounts if account_partition(a, partitions) == 0]
    total = args.warm + args.records
    source = UsageSource(data, total, args.seed, 0.03)
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data
    out: list[Record] = []
    for i in range(total):
        # Event times at most a minute before the step's clock: on time, as under low load.
        at = NOW_MS + i * 250 // args.step
        key, value, _ = source.record(i, at - rng.randrange(60_000))
        out.append(Record(key, value, i, at, topic))
    return out


def run(args: argparse.Namespace, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    partitions = args.partitions
    with tempfile.TemporaryDirectory(prefix="profile-steps-") as tmp:
        runtime = runtime_of(Path(tmp), partitions, clock_ms=NOW_MS)
        settings = runtime.settings
        store: PartitionStore = open_store(
            Path(tmp),
            0,
            worker_store_options(),
            max(1000, 80_000 // partitions),  # commands/worker/wiring.py
        )
        topic = settings.topic_usage
        data = make_dataset(
            SimpleNamespace(seed=args.seed, partitions=partitions),
            "profile",
            "latency",
            args.accounts,
        )
        ours = [a for a in data.accounts if account_partition(a, partitions) == 0]
        step = Step(0, StepState(store), NOW_MS)
        PlansHandler(runtime).process(
            step, settings.topic_accounts, plan_records(ours, data.plans, settings.topic_accounts)
        )
        store.apply(step.state.updates())
        records = usage_records(args, topic, partitions)
        gc.collect()
        gc.freeze()  # the workload's records are the harness's, not the worker's garbage
        handler = UsageHandler(runtime)
        producer = _Producer()
        loop = asyncio.new_event_loop()
        digest = hashlib.sha256()
        parts = dict.fromkeys(PARTS, 0.0)
        keys = messages_n = 0
        clock = time.process_time
        sent: list[Messages] = []
        for start in range(0, len(records), args.step):
            timed = start >= args.warm
            if timed and args.callgrind and start - args.step < args.warm:
                callgrind("on")
            if timed and profile is not None:
                profile.enable()
            if timed and args.no_gc:
                gc.disable()
            chunk = records[start : start + args.step]
            now_ms = chunk[-1].timestamp
            runtime.clock.set_ms(now_ms)  # type: ignore[attr-defined]
            with COLLECTOR.step():  # as the engine runs a step
                t0 = clock()
                step = Step(0, StepState(store), now_ms)
                handler.process(step, topic, chunk)
                t1 = clock()
                messages = with_changelogs(step)
                t2 = clock()
                loop.run_until_complete(_send(producer, messages))  # type: ignore[arg-type]
                t3 = clock()
                updates = step.state.updates()
                store.apply(updates, {"totals": start})
                t4 = clock()
                store.objects.settle(updates, step.state.objects)
                for callback in step.after_commit:
                    callback()
                t5 = clock()
            if profile is not None:
                profile.disable()
            if not timed:
                continue
            for part, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                parts[part] += dt
            keys += len(step.state)
            sent.append(messages)
        if args.callgrind:
            callgrind("off")
        for messages in sent:
            messages_n += fingerprint(digest, messages, DUMP)
        gc.enable()
        loop.close()
        fingerprint_store(digest, store)
        store.close()
    return {
        "parts": parts,
        "keys": keys,
        "messages": messages_n,
        "bytes": producer.built,
        "fingerprint": digest.hexdigest()[:16],
    }


def callgrind(switch: str) -> None:
    """Turn callgrind's instrumentation of this process on or off (``--callgrind``)."""
    subprocess.run(  # noqa: S603 - our own pid
        ["callgrind_control", "-i", switch, str(os.getpid())],  # noqa: S607
        check=True,
        capture_output=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--step", type=int, default=400)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under valgrind --tool=callgrind --instr-atstart=no: instrument the timed steps only",
    )
    parser.add_argument("--no-gc", action="store_true", help="no cyclic GC while timing")
    parser.add_argument("--dump", help="write every message here (one run)")
    args = parser.parse_args()
    if args.dump:
        global DUMP  # noqa: PLW0603 - a debugging aid
        DUMP = open(args.dump, "w")  # noqa: SIM115, PTH123
        args.repeat = 1
    as_a_worker()
    outcomes = [run(args) for _ in range(args.repeat)]
    n = args.records
    best = {part: min(o["parts"][part] for o in outcomes) for part in PARTS}
    total = min(sum(o["parts"].values()) for o in outcomes)
    first = outcomes[0]
    prints = sorted({o["fingerprint"] for o in outcomes})
    print(
        f"{n:,} records in steps of {args.step} ({first['keys'] / (n / args.step):.0f} touched "
        f"keys, {first['messages'] / (n / args.step):.0f} messages per step), "
        f"best of {args.repeat}, CPU us per record:"
    )
    for part in PARTS:
        print(
            f"  {part:<11} {best[part] / n * 1e6:7.2f}"
            f"  ({best[part] / first['keys'] * 1e6:.2f} per key)"
        )
    print(
        f"  {'total':<11} {total / n * 1e6:7.2f}  (runs: "
        + ", ".join(f"{sum(o['parts'].values()) / n * 1e6:.1f}" for o in outcomes)
        + ")"
    )
    print(
        f"fingerprint {' '.join(prints)}, {first['messages']:,} messages, {first['bytes']:,} bytes"
    )
    if args.cprofile:
        cprofile_report(lambda profile: run(args, profile), args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
