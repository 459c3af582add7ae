"""Section ``two-workers``: two exactly_once workers in one group on a backlog that
opens to both at once (one Kafka transaction committed once both are ready)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Final

from benchmark.admin import create_topics, group_committed
from benchmark.report import TARGET_SCALING, Report, partial, report_window, report_worker
from benchmark.throughput import OneRun
from benchmark.workers import POLL_READY_S, Window, Worker, follow, stop_all
from benchmark.workload import make_dataset, open_gated_backlog, publish_plans

SETTLE_S: Final = 2.0
"""Both workers must answer /readyz 200 this long before the two-worker backlog opens."""


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
