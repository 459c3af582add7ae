"""Benchmark of ``moments worker``: throughput, scaling, latency, memory, state, restarts.

Run with a broker up (``make bench`` starts the local one)::

    .venv/bin/python scripts/bench.py [--only SECTION,...] [--records N] [--max-seconds S]

It prints figures next to their targets and never asserts them. The sections
(``--only``, default all of them):

``baseline``
    a plain aiokafka consumer (no group, read_committed) reads the backlog of N usage
    records, ``orjson.loads`` each one and sums quantities per account: the ceiling of
    a Python consumer on this machine. It always runs: every figure is also printed
    relative to it (a rate as its share, CPU per record and times as multiples).
``throughput``
    ONE worker per guarantee (``--guarantee``) on that backlog, fresh app id and data
    dir each: records/s from ``/readyz`` 200 until ``moments_records_total`` (all
    outcomes) reaches N (target: 35 % of the baseline loop's under exactly_once), and its
    CPU per record. Afterwards the peak RSS
    (VmHWM) and the size on disk of the worker's MOMENTS_DATA_DIR.
``scaling``
    ``--scale-workers`` (3) exactly_once workers in one consumer group (same app id, own
    data dirs and ports) on a copy of that backlog in other topics, published inside one
    Kafka transaction committed only once all are steadily ready, so all see it at the
    same instant (a worker counting records before the commit is reported as a leak).
    Judged: their CPU per record (process CPU times summed over the window) against the
    one exactly_once worker's (which is therefore measured too), at most 1.10x; the
    machine has two cores, so records/s is printed, not judged.
``latency``
    one exactly_once worker, then a paced producer offering 40 % of the exactly_once
    worker's measured records/s (``--latency-rate`` fixes it) for ``--latency-seconds`` on
    fresh topics, sized so that accounts cross their plan levels all along, with background
    work falling due during the load: days of history per account (published before the
    worker starts), ``MOMENTS_DROP_GRACE`` timed so that yesterday's close is due a third
    of the way in, and accounts whose billing period ends (plus the late grace) in the
    middle of it. A read_committed consumer of ``<prefix>.threshold-near`` and
    ``<prefix>.threshold-hit`` maps each event's ``trigger_record_id`` back to the time its
    record was handed to the producer. p50/p99 of that end-to-end latency (target p99 <
    250 ms), the background work that ran, the steps of the load; the worker's own
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
    on the usage topic first exceeds 0 (target < 5 s).

``deliver``
    ``moments deliver`` and a local receiver (the tests' scripted one, verifying every
    signature): deliveries/s of a ``--deliver-backlog`` burst, then the latency from an event
    handed to the producer to its webhook's arrival, p50/p99, at a steady ``--deliver-rate``
    (1,000) events/s for ``--deliver-seconds`` (target p99 < 500 ms).

``--moments N`` runs the throughput section's workers (and rebuild's) on the shipped catalog
with its own ``[[moments]]`` rules taken out and N generated ones over the bench's metrics
added (``scripts/benchmark/rules.py``; the rules' event topics are created first). Issue 19's
measure is ``--only throughput --guarantee exactly_once``, ``--moments 0`` against
``--moments 50``, alternated; the section prints the events by kind, custom ones apart.
Without it, workers read the shipped catalog as it is.

Every wait is bounded by ``--max-seconds``; a section that runs out reports "did not
finish in S s" with its partial rate. Nothing in Kafka is deleted (every topic and app
id is unique to the run); data dirs are temporary, worker logs are kept in
``--log-dir``. A final table lists each figure, its target and whether it was met.

This file is the command line; the workload, the Kafka admin reads, each section and
the report are modules of ``scripts/benchmark/``, and the workers run on the process
harness the tests use (``tests/harness/``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from benchmark.admin import create_topics
from benchmark.deliver import deliver
from benchmark.latency import latency
from benchmark.plans import plans_first_commit
from benchmark.rebuild import rebuild
from benchmark.report import LATENCY_SHARE, Report
from benchmark.rules import write_catalog
from benchmark.scaling import scaling
from benchmark.throughput import OneRun, baseline, one_worker
from benchmark.workers import GUARANTEES, stop_running
from benchmark.workload import make_dataset, publish_backlog, publish_plans

SECTIONS: Final = ("baseline", "throughput", "scaling", "latency", "rebuild", "plans", "deliver")


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
        "--latency-rate",
        type=float,
        default=None,
        help="latency: offered records/s (None: 40%% of the exactly_once worker's measured rate)",
    )
    size.add_argument(
        "--latency-seconds", type=float, default=30.0, help="latency: seconds of offered traffic"
    )
    size.add_argument(
        "--latency-accounts", type=int, default=None, help="latency: accounts (None: as --accounts)"
    )
    size.add_argument(
        "--deliver-backlog", type=int, default=5_000, help="deliver: events of the backlog"
    )
    size.add_argument(
        "--deliver-rate", type=float, default=1_000.0, help="deliver: offered events/s"
    )
    size.add_argument(
        "--deliver-seconds", type=float, default=20.0, help="deliver: seconds of offered events"
    )
    size.add_argument(
        "--deliver-concurrency", type=int, default=None,
        help="deliver: MOMENTS_DELIVER_CONCURRENCY (None: the deliverer's)",
    )  # fmt: skip
    size.add_argument(
        "--history-days",
        type=int,
        default=27,
        help="latency: days of usage history per account published before the worker starts",
    )
    size.add_argument(
        "--anniversaries",
        type=int,
        default=None,
        help="latency: accounts whose billing period ends during the load (None: a quarter of"
        " the latency accounts)",
    )
    size.add_argument(
        "--warmup-seconds",
        type=float,
        default=40.0,
        help="latency: worker start to the load's start (history consumed, start-up background"
        " work done); the day close and anniversaries are timed from it",
    )
    size.add_argument("--scale-workers", type=int, default=3, help="scaling: workers in one group")
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
        "--moments",
        type=int,
        default=None,
        metavar="N",
        help="run the workers on the shipped catalog with N generated [[moments]] rules instead"
        " of its own (0: none); default: the shipped catalog as it is",
    )
    run.add_argument(
        "--moments-silent",
        action="store_true",
        help="with --moments: the same rules with every at_least threshold out of reach (what"
        " judging them costs, without firing)",
    )
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
    if args.moments is not None and args.moments < 0:
        parser.error("--moments must be 0 or more")
    if args.moments is not None and set(args.only) - {"baseline", "throughput", "rebuild"}:
        parser.error("--moments applies to the throughput section (and rebuild, which follows it)")
    if (args.latency_rate is not None and args.latency_rate <= 0) or min(
        args.latency_seconds, args.max_seconds
    ) <= 0:
        parser.error("--latency-rate, --latency-seconds and --max-seconds must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    """Every selected section, then the table; 1 when a figure could not be measured."""
    run_id = uuid.uuid4().hex[:8]
    # Every figure is also given relative to the baseline loop of the same run.
    sections = set(args.only) | {"baseline"}
    report = Report()
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    catalog = "the shipped catalog"
    if args.moments is not None:
        silent = args.moments_silent
        args.plans_file = write_catalog(Path(args.log_dir), args.moments, args.seed, silent=silent)
        never = ", at_least out of reach" if silent else ""
        catalog = f"{args.moments} generated [[moments]] rules{never} ({args.plans_file})"
    print(
        f"bench {run_id}: sections {','.join(s for s in SECTIONS if s in sections)};"
        f" {args.records:,} records, {args.accounts:,} accounts, {args.partitions} partitions;"
        f" max {args.max_seconds:.0f}s per section; broker {args.bootstrap};"
        f" {os.cpu_count()} CPUs, python {sys.version.split()[0]}; worker at {source_version()}"
        f" ({args.worker_command}); {catalog}"
    )
    # The exactly_once one-worker run is the reference of scaling and latency and builds the
    # state that rebuild restores, so those sections run it too.
    need_eos = bool(
        ("throughput" in sections and "exactly_once" in guarantees)
        or {"rebuild", "scaling"} & sections
        or ("latency" in sections and args.latency_rate is None)
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
        ref, base_accounts = await baseline(args, backlog)
        report.baseline = ref
        print(
            f"baseline aiokafka loop: {backlog.records:,} records in {ref.seconds:.1f}s ->"
            f" {ref.rate:,.0f} rec/s, {ref.cpu_us:.1f} us CPU/record ({base_accounts} accounts"
            " summed); every figure is also given relative to it"
        )
        report.add(
            1,
            "baseline aiokafka loop (read + parse + sum), records/s",
            f"{ref.rate:,.0f}/s",
            "- (reference)",
            "(reference: a plain Python consumer on this machine)",
            ("rate", ref.rate),
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
    if "scaling" in sections:
        await scaling(args, run_id, eos, report)
    if "latency" in sections:
        rate = args.latency_rate
        if rate is None:
            own = eos.window.rate if eos is not None and eos.window is not None else 0.0
            rate = LATENCY_SHARE * own
            print(
                f"\nlatency rate: {LATENCY_SHARE:.0%} of the exactly_once worker's"
                f" {own:,.0f} rec/s measured above = {rate:,.0f} rec/s"
            )
        if rate > 0:
            await latency(args, run_id, rate, report)
        else:
            report.failed(3, "end-to-end latency", "-", "no exactly_once rate to offer 40 % of")
    if "plans" in sections:
        await plans_first_commit(args, run_id, report)
    if "deliver" in sections:
        await deliver(args, run_id, report)
    report.print()
    print(
        "\nrates: records counted by moments_records_total (all outcomes) per second, from"
        " /readyz 200 (scaling: from the commit of the gated backlog) to the last record;"
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
        stop_running()


if __name__ == "__main__":
    sys.exit(main())
