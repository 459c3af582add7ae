"""Section ``plans``: many plan records, then usage; one worker's start to its first
usage commit."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient

from benchmark.admin import committed_offsets, create_topics
from benchmark.report import TARGET_FIRST_COMMIT_S, Report, at_most, report_worker
from benchmark.workers import Worker
from benchmark.workload import make_dataset, publish_backlog, publish_plans
from tests.harness.metrics import Metrics

POLL_OFFSETS_S: Final = 0.1


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
    metrics: Metrics | None = None
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
                metrics = await w.metrics()
                # The readiness time is printed too: wait for it within the same limit.
                await asyncio.wait([ready], timeout=max(0.0, deadline - time.monotonic()))
                break
            if (code := w.exited()) is not None:
                note = f"plans worker exited with {code}"
                break
            if now > deadline:
                note = f"no usage commit in {args.max_seconds:.0f} s"
                metrics = await w.metrics()
                break
            w.sample()
            await asyncio.sleep(POLL_OFFSETS_S)
    finally:
        if ready is not None and not ready.done():
            ready.cancel()
        await admin.close()
        await w.stop()
        w.remove_state()
    plans_applied = metrics.total("moments_plan_records_total") if metrics else 0.0
    usage_counted = metrics.total("moments_records_total") if metrics else 0.0
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
    report.add(
        7,
        figure,
        f"{first:.1f} s",
        target,
        at_most(first, TARGET_FIRST_COMMIT_S, "s"),
        ("time", first),
    )
