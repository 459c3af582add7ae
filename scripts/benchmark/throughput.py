"""Sections ``baseline`` (a plain consumer loop) and ``throughput`` (one worker on the
backlog)."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from benchmark.report import (
    TARGET_SHARE,
    BaselineRef,
    Report,
    mb,
    partial,
    report_window,
    report_worker,
    share_verdict,
)
from benchmark.rules import create_rule_topics
from benchmark.views import (
    BACKGROUND_SETTLE_S,
    account_views,
    background_of,
    report_background_changes,
    sample_accounts,
    wait_background_idle,
)
from benchmark.workers import Guarantee, Window, Worker, follow
from benchmark.workload import Dataset
from tests.harness import kafka
from tests.harness.metrics import MissingSeries


async def baseline(args: argparse.Namespace, data: Dataset) -> tuple[BaselineRef, int]:
    """Plain consumer loop over the usage topic; returns its figures and the accounts summed.

    Its CPU per record is this process's CPU time over the loop (the bench does nothing
    else meanwhile)."""
    consumer = kafka.committed_consumer(args.bootstrap)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(data.usage_topic, p) for p in range(data.partitions)])
        await consumer.seek_to_beginning()
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        started = time.perf_counter()
        cpu0 = time.process_time()
        deadline = started + args.max_seconds
        while seen < data.records and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    sums[record["account_id"]] += record["quantity"]
                seen += len(messages)
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu0
    finally:
        await consumer.stop()
    if seen < data.records:
        print(f"  baseline read only {seen} of {data.records} records in {elapsed:.0f}s")
    ref = BaselineRef(
        rate=seen / elapsed,
        seconds=elapsed * data.records / max(seen, 1),
        cpu_us=1e6 * cpu_s / max(seen, 1),
    )
    return ref, len(sums)


async def print_events(w: Worker) -> None:
    """The events the run emitted, by kind (``--moments``: the custom rules' share of them)."""
    metrics = await w.metrics()
    if metrics is None:
        return
    try:
        kinds = {k: n for k, n in metrics.by_label("moments_events_total", "kind").items() if n}
    except MissingSeries:
        return
    custom = sum(n for k, n in kinds.items() if k.startswith("custom."))
    builtin = ", ".join(f"{k} {n:,.0f}" for k, n in sorted(kinds.items()) if "." not in k)
    print(
        f"  events: {sum(kinds.values()):,.0f} ({builtin or 'none built in'};"
        f" custom rules {custom:,.0f} from {sum(1 for k in kinds if '.' in k)} rules)"
    )


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
    cpu_us: float = math.nan
    """The worker's CPU microseconds per record over the window (process CPU time)."""
    early_views: dict[str, tuple[int, Any]] | None = None
    """The same views read when the check used to read them: 2.5 s after the last record,
    background work or not (kept to show what that check compared)."""


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
    target = f">= {TARGET_SHARE:.0%} of baseline" if guarantee == "exactly_once" else "- (none)"
    try:
        if getattr(args, "plans_file", None) is not None:
            await create_rule_topics(args.bootstrap, w.prefix, args.plans_file, data.partitions)
        w.start()
        run.note = await w.wait_ready(w.started + args.max_seconds)
        if run.note:
            report.failed(1, figure, target, run.note)
            return run
        ready_at = w.started + w.ready_s
        metrics = await w.metrics()
        at_ready = metrics.total("moments_records_total") if metrics else 0.0
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
        await print_events(w)
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
    rate = ("rate", win.rate)
    if guarantee == "exactly_once":
        verdict = share_verdict(win.rate, report.baseline, TARGET_SHARE)
        report.add(1, figure, measured, target, verdict, rate)
    else:
        report.add(1, figure, measured, target, "(no target)", rate)
    if win.cpu is not None and win.cpu.worker_s and win.counted > 0:
        cpu_us = 1e6 * sum(win.cpu.worker_s) / win.counted
        run.cpu_us = cpu_us
        report.add(
            1,
            f"1 worker {guarantee}, CPU us per record (process CPU time)",
            f"{cpu_us:,.1f} us",
            "- (none)",
            "(no target here; the peer benchmark's is 15 us)",
            ("cpu", cpu_us),
        )
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
