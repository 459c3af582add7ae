"""Section ``scaling``: N (3) exactly_once workers in one group on a copy of the backlog that
opens to all at once (one Kafka transaction committed once all are ready); their CPU per
record against one worker's.

The machine has two cores, so three workers (and the broker) cannot run three times as fast:
the judged figure is CPU time per record, summed over the workers' processes, against the one
worker's over its own run on the same data. Records/s is printed, not judged."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import time
from collections.abc import Sequence
from typing import Final

from benchmark.admin import create_topics, group_committed
from benchmark.report import (
    TARGET_CPU_SCALING,
    Report,
    partial,
    report_window,
    report_worker,
)
from benchmark.throughput import OneRun
from benchmark.workers import POLL_READY_S, Window, Worker, follow, stop_all
from benchmark.workload import make_dataset, open_gated_backlog, publish_plans

SETTLE_S: Final = 2.0
"""Every worker must answer /readyz 200 this long before the gated backlog opens."""


def cpu_scaling_verdict(one_us: float, many_us: float, limit: float = TARGET_CPU_SCALING) -> str:
    """Verdict for N workers' CPU per record against one worker's (at most ``limit`` x)."""
    if not (one_us > 0 and many_us > 0):
        return "not judged: no CPU per record of one worker"
    ratio = many_us / one_us
    if ratio <= limit:
        return f"met ({ratio:.2f}x one worker's, {limit - ratio:.2f}x under {limit:.2f}x)"
    return f"MISSED by {ratio - limit:.2f}x ({ratio:.2f}x one worker's, limit {limit:.2f}x)"


async def scaling(
    args: argparse.Namespace, run_id: str, reference: OneRun | None, report: Report
) -> None:
    """Section ``scaling``: one group, N exactly_once workers, gated backlog."""
    n = args.scale_workers
    data = make_dataset(args, run_id, "scale", args.accounts, shape="backlog")
    figure = f"{n} workers exactly_once, CPU us per record on {args.records:,} backlog"
    one_us = reference.cpu_us if reference is not None else math.nan
    target = f"<= {TARGET_CPU_SCALING:.2f}x 1 worker" + (
        f" (<= {TARGET_CPU_SCALING * one_us:,.1f} us)" if one_us > 0 else ""
    )
    rate_figure = f"{n} workers exactly_once, records/s on {args.records:,} backlog"
    ref_rate = reference.window.rate if reference and reference.window else 0.0
    app_id = f"bench-{run_id}-scale"
    print(
        f"\n[scaling: {n} workers] app id {app_id}, topics {data.usage_topic},"
        f" {data.plans_topic}; CPU per record is judged, not records/s ({os.cpu_count()} CPUs)"
    )
    await create_topics(args.bootstrap, data)
    await publish_plans(args.bootstrap, data)
    gate, produce_s = await open_gated_backlog(args, data, args.records)
    print(
        f"  {data.records:,} usage records published in one open transaction in"
        f" {produce_s:.1f}s ({data.records / produce_s:,.0f} rec/s); invisible until commit"
    )
    workers = [
        Worker(args, data, app_id, "exactly_once", f"worker {i}/{n}", log_name=f"{app_id}-{i}")
        for i in range(1, n + 1)
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
            answers = [a for a in await asyncio.gather(*(w.metrics() for w in workers)) if a]
            early = sum(a.total("moments_records_total") for a in answers)
            if early:
                print(f"  gate leaked: {early:.0f} records counted before the commit")
            rebalances_before = sum(a.total("moments_rebalances_total") for a in answers)
            try:
                await gate.commit_transaction()
                committed = True
            except Exception as exc:  # e.g. the transaction outlived its timeout
                note = f"the gated backlog could not be committed: {exc!r}"
        if committed:
            opened = time.monotonic()
            print(
                "  all ready ("
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
            rebalances = sum(a.total("moments_rebalances_total") for a in window.last)
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
        report.other_load("scaling", window.cpu)
        done = await group_committed(args.bootstrap, app_id, data.usage_topic)
        print(f"  group committed {done:,} offsets on the usage topic ({data.records:,} records)")
    for w in workers:
        report_worker(w)
        report.rss(w)
    if window is None:
        report.failed(2, figure, target, note)
        return
    cpu = window.cpu
    many_us = (
        1e6 * sum(cpu.worker_s) / window.counted
        if cpu is not None and cpu.worker_s and window.counted > 0
        else math.nan
    )
    if cpu is not None:
        print(
            f"  CPU per record: {n} workers {many_us:,.1f} us (their CPU times summed over the"
            f" window, {window.counted:,.0f} records) against 1 worker {one_us:,.1f} us"
        )
    measured = f"{many_us:,.1f} us{partial(window)}"
    report.add(2, figure, measured, target, cpu_scaling_verdict(one_us, many_us), ("cpu", many_us))
    rate_ratio = f" = {window.rate / ref_rate:.2f}x 1 worker" if ref_rate else ""
    report.add(
        2,
        rate_figure,
        f"{window.rate:,.0f}/s{rate_ratio}{partial(window)}",
        "- (none)",
        f"(not judged: {os.cpu_count()} CPUs shared with the broker and the bench)",
        ("rate", window.rate),
    )


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
