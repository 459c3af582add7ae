"""Section ``latency``: a paced producer, one exactly_once worker, and a consumer of its
threshold events timing each back to its trigger record."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_args

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmark.admin import create_topics, event_partitions
from benchmark.report import TARGET_P99_S, Report, at_most, report_worker
from benchmark.workers import POLL_METRICS_S, CpuMeter, Worker
from benchmark.workload import (
    UsageSource,
    add_anniversary_accounts,
    background_plan,
    history_records,
    make_dataset,
    publish_plans,
    publish_records,
)
from domain.rules.thresholds import ThresholdKind
from tests.harness import kafka
from tests.harness.metrics import Metrics

THRESHOLD_KINDS: Final[tuple[str, ...]] = get_args(ThresholdKind)


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


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


async def sample_until(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Sample CPU and RSS of workers every second (for their peak RSS)."""
    while not stop.is_set():
        for w in workers:
            w.sample()
        await asyncio.sleep(1.0)


LATE_GRACE_MS: Final = 3_600_000
"""The worker's MOMENTS_LATE_GRACE (its default, which the bench leaves as it is)."""
#: Background work in a worker's log (agents/ticks.py, agents/drops.py, agents/anniversaries.py).
BACKGROUND_WORK: Final = {
    "ticks sent": re.compile(r"partition \d+: day \d+ closed, cut \S+ due .*tick sent"),
    "drop evaluations started": re.compile(r"partition \d+: evaluating day \d+ for drops"),
    "drop evaluations done": re.compile(r"partition \d+: day \d+ evaluated for drops"),
    "timer passes started": re.compile(r"partition \d+: .*pass at cut \d+ started"),
    "timer passes complete": re.compile(r"partition \d+: anniversary pass at cut \d+ complete"),
}
BACKGROUND_KINDS: Final = ("sudden-drop", "usage-recovered", "billing-anniversary", "birthday")


def count_background(lines: Sequence[str]) -> dict[str, int]:
    """Background work started and finished, by what it was, in log ``lines``."""
    return {
        what: sum(1 for line in lines if pattern.search(line))
        for what, pattern in BACKGROUND_WORK.items()
    }


def background_text(counts: dict[str, int], events: dict[str, float]) -> str:
    """One line: background work from the log, and the events it sent, by kind."""
    work = ", ".join(f"{what} {n}" for what, n in counts.items())
    sent = ", ".join(f"{kind} {n:,.0f}" for kind, n in events.items() if n) or "none"
    return f"{work}; background events: {sent}"


def events_by_kind(metrics: Metrics | None) -> dict[str, float]:
    """``moments_events_total`` by kind (empty without metrics)."""
    if metrics is None:
        return {}
    return metrics.by_label("moments_events_total", "kind")


#: The engine's summary of its steps, every 10 s (engine/checkpoint.py).
STEPS_LINE: Final = re.compile(
    r"last \d+s: (?P<records>\d+) records in (?P<steps>\d+) steps .*; per step"
    r" (?P<step_ms>[\d.]+) ms, of which (?P<commit_ms>[\d.]+) ms in the Kafka commit"
    r"(?:; deciding (?P<decide_ms>[\d.]+) ms, of which (?P<queued_ms>[\d.]+) ms waiting)?"
)


def step_figures(lines: Sequence[str]) -> str:
    """Steps, records per step, and the step's, its Kafka commit's and its decision's
    milliseconds (with the wait for the decide thread), from the engine's 10 s summaries in
    log ``lines`` (weighted by steps)."""
    steps = records = decided = 0
    step_ms = commit_ms = decide_ms = queued_ms = 0.0
    for line in lines:
        match = STEPS_LINE.search(line)
        if match is None:
            continue
        n = int(match["steps"])
        steps += n
        records += int(match["records"])
        step_ms += n * float(match["step_ms"])
        commit_ms += n * float(match["commit_ms"])
        if match["decide_ms"] is not None:
            decided += n
            decide_ms += n * float(match["decide_ms"])
            queued_ms += n * float(match["queued_ms"])
    if not steps:
        return "the worker's log has no step summary"
    deciding = (
        f", {decide_ms / decided:,.1f} ms deciding ({queued_ms / decided:,.1f} ms of it waiting"
        " for the decide thread)"
        if decided
        else ""
    )
    return (
        f"{steps:,} steps of {records / steps:,.0f} records, {step_ms / steps:,.1f} ms each"
        f" of which {commit_ms / steps:,.1f} ms in the Kafka commit{deciding} (worker's log,"
        " 10 s summaries)"
    )


def batch_figures(before: Metrics | None, after: Metrics | None) -> str:
    """Steps between two metric reads: how many, records per step, seconds per step."""
    if before is None or after is None:
        return "steps: not measured"
    steps = after.value("moments_batch_seconds_count") - before.value("moments_batch_seconds_count")
    secs = after.value("moments_batch_seconds_sum") - before.value("moments_batch_seconds_sum")
    records = after.total("moments_records_total") - before.total("moments_records_total")
    if steps <= 0:
        return "steps: none"
    return (
        f"{steps:,.0f} batches of {records / steps:,.0f} records on average,"
        f" {1000 * secs / steps:.1f} ms each"
    )


def quantile_since(
    before: Metrics | None, after: Metrics | None, name: str, q: float
) -> float | None:
    """Prometheus-style quantile of histogram ``name`` over what it counted between two
    reads (the load, without the warm-up's history); None when it counted nothing."""
    return None if after is None else after.histogram_quantile(name, q, since=before)


async def finish_background(
    w: Worker, log_at_load: int, work: dict[str, int], limit_s: float
) -> str:
    """After the load: wait (at most ``limit_s``) for the drop evaluations and timer passes
    the load started to finish, so the report tells how much background work there was;
    what they sent then is in the worker's metrics (not in the latency figures)."""
    started = time.monotonic()
    while work["drop evaluations started"] or work["timer passes started"]:
        now = count_background(w.log_lines()[log_at_load:])
        done = (
            now["drop evaluations done"] >= now["drop evaluations started"]
            and now["timer passes complete"] >= now["timer passes started"]
        )
        waited = time.monotonic() - started
        if done or waited > limit_s or w.exited() is not None:
            sent = {k: v for k, v in events_by_kind(await w.metrics()).items() if v}
            state = "finished" if done else "NOT finished"
            shown = {k: sent.get(k, 0.0) for k in BACKGROUND_KINDS}
            return (
                f"background work the load started {state} {waited:.1f}s after the catch-up:"
                f" {background_text(now, shown)} (events since the worker started)"
            )
        await asyncio.sleep(POLL_METRICS_S)
    return ""


async def wait_warmup(w: Worker, history: int, load_start: float, deadline: float) -> str:
    """Until ``load_start`` (wall clock): the history counted by the worker; "" or why not."""
    while True:
        metrics = await w.metrics()
        counted = metrics.total("moments_records_total") if metrics else 0.0
        now = time.time()
        if counted >= history and now >= load_start:
            return ""
        if (code := w.exited()) is not None:
            return f"latency worker exited with {code} during the warm-up"
        if now >= load_start:
            return (
                f"warm-up not done at the load's start ({counted:,.0f} of {history:,} history"
                " records counted): the load starts anyway"
            )
        if time.monotonic() > deadline:
            return "warm-up timed out"
        await asyncio.sleep(POLL_METRICS_S)


async def latency(args: argparse.Namespace, run_id: str, rate: float, report: Report) -> None:
    """Section ``latency``: history, warm-up, then a paced producer with background work
    falling due during it, one exactly_once worker, event consumer."""
    data = make_dataset(args, run_id, "latency", args.latency_accounts or args.accounts)
    count = int(rate * args.latency_seconds)
    loaded = list(data.accounts)
    source = UsageSource(data, count, args.seed, args.duplicate_rate)
    anniversaries = len(loaded) // 4 if args.anniversaries is None else args.anniversaries
    now_ms = int(time.time() * 1000)
    plan = background_plan(
        now_ms, args.warmup_seconds, args.latency_seconds, anniversaries, LATE_GRACE_MS
    )
    add_anniversary_accounts(data, plan, args.seed)
    history = list(history_records(data, loaded, now_ms, args.history_days))
    data.records = 0
    app_id = f"bench-{run_id}-latency"
    w = Worker(
        args,
        data,
        app_id,
        "exactly_once",
        "latency worker",
        extra={"MOMENTS_DROP_GRACE": f"{plan.drop_grace_ms}ms"},
    )
    print(
        f"\n[latency] app id {app_id}, port {w.port}, log {w.log_path}; {rate:,.0f} rec/s"
        f" for {args.latency_seconds:.0f}s over {len(loaded):,} accounts with"
        f" {args.history_days} days of history ({len(history):,} records) each; {anniversaries:,}"
        " more accounts whose billing period turns during the load"
    )
    await create_topics(args.bootstrap, data)
    await publish_plans(args.bootstrap, data)
    await publish_records(args.bootstrap, data.usage_topic, history)
    start_at = plan.load_start_ms / 1000
    print(
        f"  load starts in {start_at - time.time():.0f}s; yesterday's close due"
        f" {(plan.close_at_ms - plan.load_start_ms) / 1000:.0f}s into it (MOMENTS_DROP_GRACE"
        f" {plan.drop_grace_ms} ms); anniversaries due from"
        f" {(min(plan.anniversary_due_ms, default=0) - plan.load_start_ms) / 1000:.0f}s to"
        f" {(max(plan.anniversary_due_ms, default=0) - plan.load_start_ms) / 1000:.0f}s into it"
    )
    fig = f"end-to-end latency at {rate:,.0f} rec/s offered"
    target_p99 = f"< {TARGET_P99_S * 1000:.0f} ms"
    lat = EventLatencies()
    sent_at: dict[str, float] = {}
    metrics: Metrics | None = None
    at_load: Metrics | None = None
    stop = asyncio.Event()
    consumer: AIOKafkaConsumer | None = None
    producer: AIOKafkaProducer | None = None
    tasks: list[asyncio.Task[None]] = []
    note = ""
    caught_up = False
    sent, produce_s, drain_s, own_cpu_s, processed = 0, 0.0, 0.0, 0.0, 0.0
    meter: CpuMeter | None = None
    log_at_load = 0
    work: dict[str, int] = {}
    steps_text = finished = ""
    warmup_work: dict[str, int] = {}
    try:
        w.start()
        note = await w.wait_ready(w.started + args.max_seconds)
        if not note:
            print(f"  ready after {w.ready_s:.1f}s")
            consumer = kafka.committed_consumer(args.bootstrap)
            await consumer.start()
            topics = [f"{w.prefix}.{kind}" for kind in THRESHOLD_KINDS]
            tps = await event_partitions(args.bootstrap, topics, time.monotonic() + 30)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=5)
            await producer.start()
            warm = await wait_warmup(
                w, len(history), start_at, time.monotonic() + args.warmup_seconds + 60
            )
            if warm:
                print(f"  NOTE: {warm}")
            lines = w.log_lines()
            log_at_load = len(lines)
            warmup_work = count_background(lines)
            at_load = await w.metrics()
            sent_bg = {k: v for k, v in events_by_kind(at_load).items() if k in BACKGROUND_KINDS}
            print(f"  warm-up: {background_text(warmup_work, sent_bg)}")
            tasks = [
                asyncio.create_task(collect_events(consumer, sent_at, stop, lat)),
                asyncio.create_task(sample_until([w], stop)),
            ]
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
            expected = len(history) + sent
            deadline = started + max(args.max_seconds, args.latency_seconds + 15)
            while True:
                metrics = await w.metrics() or metrics
                if metrics is not None:
                    processed = metrics.total("moments_records_total")
                    emitted = sum(
                        metrics.value("moments_events_total", kind=k) for k in THRESHOLD_KINDS
                    )
                else:
                    processed = emitted = 0.0
                if processed >= expected and lat.received >= emitted:
                    caught_up = True
                    break
                if (code := w.exited()) is not None:
                    note = f"latency worker exited with {code}"
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(POLL_METRICS_S)
            processed -= len(history)
            drain_s = time.monotonic() - started - produce_s
            meter.stop()
            during_load = w.log_lines()[log_at_load:]
            work = count_background(during_load)
            steps_text = step_figures(during_load)
            finished = await finish_background(w, log_at_load, work, args.max_seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if producer is not None:
            await producer.stop()
        if consumer is not None:
            await consumer.stop()
        await w.stop()
        w.remove_state()
    if work:
        before = events_by_kind(at_load)
        after = events_by_kind(metrics)
        during = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in BACKGROUND_KINDS}
        print(f"  background work during the load: {background_text(work, during)}")
        print(f"  during the load: {batch_figures(at_load, metrics)}; {steps_text}")
        if finished:
            print(f"  {finished}")
        ran = work["drop evaluations started"] + work["timer passes started"]
        report.add(
            3,
            "background work during the latency load",
            f"{ran} passes, {sum(during.values()):,.0f} events",
            "> 0 (drops and anniversaries due)",
            "ran" if ran else "NONE ran: the latency figure is without background work",
        )
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
    hist = {
        q: quantile_since(at_load, metrics, "moments_event_latency_seconds", q) for q in (0.5, 0.99)
    }
    if hist[0.99] is not None:
        print(
            "  worker histogram moments_event_latency_seconds (emission - record arrival),"
            f" during the load: p50 ~{1000 * (hist[0.5] or 0):.0f} ms, p99"
            f" ~{1000 * hist[0.99]:.0f} ms (interpolated in buckets)"
        )
    if not values:
        report.failed(3, f"{fig}, p99", target_p99, note or "no threshold events received")
        return
    p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
    bound = "" if caught_up else " (lower bound)"
    report.add(
        3,
        f"{fig}, p50",
        f"{1000 * p50:,.0f} ms{bound}",
        "- (none)",
        "(no target)",
        ("time", p50),
    )
    if caught_up:
        verdict = at_most(1000 * p99, 1000 * TARGET_P99_S, "ms", "{:,.0f}")
    else:
        verdict = (
            f"MISSED: the worker fell behind ({processed:,.0f} of {sent:,} records counted"
            f" {drain_s:.0f}s after the last send); received events only"
        )
    report.add(3, f"{fig}, p99", f"{1000 * p99:,.0f} ms{bound}", target_p99, verdict, ("time", p99))
    hist99 = hist[0.99]
    if hist99 is not None:
        report.add(
            3,
            "latency p99, worker histogram (secondary)",
            f"~{1000 * hist99:,.0f} ms",
            target_p99,
            "(emission - record arrival, bucket-interpolated; not judged)",
            ("time", hist99),
        )
    if sent / produce_s < 0.95 * rate:
        report.add(
            3,
            "offered rate actually achieved",
            f"{sent / produce_s:,.0f}/s",
            f"{rate:,.0f}/s",
            "the bench's producer could not keep the pace: latency measured at a lower rate",
            ("rate", sent / produce_s),
        )
