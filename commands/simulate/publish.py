"""``moments simulate``'s Kafka side: pace the generated traffic and publish it with aiokafka.

What is sent comes from the pure generators, :class:`~commands.simulate.traffic.Simulator`
(plans and paced usage) and :class:`~commands.simulate.demo.Showcase` (the demo accounts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from commands.signals import install_stop_handlers
from commands.simulate.demo import Planned, Showcase, run_tag
from commands.simulate.traffic import Simulator
from config.settings import Settings, to_ms

logger = logging.getLogger(__name__)

HISTORY_PUBLISHED: Final = "history published"
"""Start of the log line that says the showcase's history is in Kafka: ``scripts/run-local``
waits for it before it starts the worker, whose start-up evaluation then sees it."""

SUMMARY_EVERY_S: Final = 10.0
TICK_S: Final = 0.1
FLUSH_TIMEOUT_S: Final = 15.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Delivery:
    """Counts acknowledgements and failures of sent records without waiting for them."""

    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.last_error: BaseException | None = None

    def done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.failed += 1
            return
        error = future.exception()
        if error is None:
            self.acked += 1
        else:
            self.failed += 1
            self.last_error = error


def _summary(prefix: str, sim: Simulator, delivery: _Delivery, elapsed_s: float, prev: int) -> str:
    stats = sim.stats
    rate = stats.total / elapsed_s if elapsed_s > 0 else 0.0
    events = f"{stats.cloudevents} CloudEvents, " if stats.cloudevents else ""
    text = (
        f"{prefix}{stats.total} records ({rate:.1f}/s, +{stats.total - prev} since the last "
        f"summary): {stats.usage} usage, {events}{stats.duplicates} duplicates, {stats.bad} bad; "
        f"{delivery.acked} acknowledged by Kafka, {delivery.failed} failed"
    )
    if delivery.last_error is not None:
        text += f" (last error: {delivery.last_error!r})"
        delivery.last_error = None
    return text


async def _send_planned(
    producer: AIOKafkaProducer, settings: Settings, planned: Planned
) -> asyncio.Future[Any]:
    """Send one record of the showcase (with its Kafka timestamp and headers, if any)."""
    topic = settings.topic_accounts if planned.topic == "plans" else settings.topic_usage
    future: asyncio.Future[Any] = await producer.send(
        topic,
        planned.value,
        key=planned.key,
        headers=list(planned.headers) or None,
        timestamp_ms=planned.timestamp_ms,
    )
    return future


async def _publish(
    args: argparse.Namespace,
    sim: Simulator,
    producer: AIOKafkaProducer,
    settings: Settings,
    stop: asyncio.Event,
    showcase: Showcase | None = None,
) -> None:
    """Send the plans and the showcase's history, then paced usage (and the showcase's live
    records when due) until ``stop`` is set or ``--duration`` is over."""
    loop = asyncio.get_running_loop()
    delivery = _Delivery()
    for key, value in sim.plans(_now_ms()):
        await producer.send_and_wait(settings.topic_accounts, value, key=key)
    live: deque[Planned] = deque()
    if showcase is not None:
        for planned in showcase.history:
            await _send_planned(producer, settings, planned)
        await producer.flush()
        live.extend(sorted(showcase.live, key=lambda p: p.at_s))
    if showcase is None:
        logger.info("%s: none (--no-showcase)", HISTORY_PUBLISHED)
    else:
        logger.info(
            "%s: %d plan and usage records of the demo accounts *-%s (weeks of usage, then "
            "silence; anchors a year back; birthdays today; a milestone, overage, account "
            "changes and the catalog's [[moments]] rules to come)",
            HISTORY_PUBLISHED,
            len(showcase.history),
            showcase.tag,
        )
        for line in showcase.announcements():
            logger.info("%s", line)
    hot = ", ".join(f"{a.account_id} ({a.plan.name})" for a in sim.hot_accounts) or "none"
    logger.info(
        "published %d account plans to %s; now ~%g usage records/s to %s "
        "(one bad in %s); hot accounts, near their %s limits within minutes: %s",
        len(sim.accounts),
        settings.topic_accounts,
        args.rate,
        settings.topic_usage,
        args.bad_every or "never",
        ", ".join(sim.hot_metrics) or "no",
        hot,
    )
    started = last_tick = last_summary = loop.time()
    budget = 0.0
    reported = 0
    try:
        while not stop.is_set():
            now = loop.time()
            if args.duration and now - started >= args.duration:
                break
            # A token bucket holding at most one second of records: no flood after a stall.
            budget = min(budget + (now - last_tick) * args.rate, max(args.rate, 1.0))
            last_tick = now
            due = int(budget)
            budget -= due
            if due:
                for record in sim.next_records(due, _now_ms()):
                    future = await producer.send(
                        settings.topic_usage,
                        record.value,
                        key=record.key,
                        headers=list(record.headers) or None,  # a binary-mode CloudEvent's
                    )
                    future.add_done_callback(delivery.done)
            while live and live[0].at_s <= now - started:
                planned = live.popleft()
                future = await _send_planned(producer, settings, planned)
                future.add_done_callback(delivery.done)
                if "usage-recovered" in planned.kinds:
                    logger.info(
                        "sent usage of %s again, after its drop: usage-recovered when the worker "
                        "evaluates the next closed UTC day (00:00 UTC + MOMENTS_DROP_GRACE)",
                        planned.key.decode(),
                    )
                elif planned.kinds:
                    logger.info(
                        "sent a record of %s, for %s",
                        planned.key.decode(),
                        ", ".join(planned.kinds),
                    )
            if now - last_summary >= SUMMARY_EVERY_S:
                logger.info(_summary("sent ", sim, delivery, now - started, reported))
                reported = sim.stats.total
                last_summary = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_S)
    finally:
        try:
            await asyncio.wait_for(producer.flush(), timeout=FLUSH_TIMEOUT_S)
        except (TimeoutError, KafkaError):
            logger.warning("Kafka did not acknowledge every record within %g s", FLUSH_TIMEOUT_S)
        elapsed = loop.time() - started
        logger.info(_summary("stopped; sent ", sim, delivery, elapsed, reported))


async def _simulate(args: argparse.Namespace) -> int:
    # Imported here: app.security imports faust, which the pure generator does not need.
    from app.security import client_kwargs
    from app.topology import ensure_topics
    from config.settings import load_settings
    from domain.plans.catalog import load_catalog

    settings = load_settings(os.environ)
    catalog = load_catalog(settings.plans_file)
    sim = Simulator(
        catalog,
        accounts=args.accounts,
        rate=args.rate,
        bad_every=args.bad_every,
        seed=args.seed,
        run_id=f"sim-{args.seed}-{_now_ms():x}",
    )
    showcase = None
    if getattr(args, "showcase", True):
        now_ms = _now_ms()
        showcase = Showcase(
            catalog,
            now_ms,
            tag=run_tag(now_ms),
            late_grace_ms=to_ms(settings.late_grace_s),
            drop_grace_ms=to_ms(settings.drop_grace_s),
            run_id=f"sim-{args.seed}-{now_ms:x}",
        )
    kwargs = client_kwargs(settings)
    bootstrap = ",".join(settings.kafka_bootstrap)
    # The worker's own check: creates missing topics with its layout, refuses a wrong one.
    await ensure_topics(settings, kwargs)

    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)
    producer = AIOKafkaProducer(
        bootstrap_servers=list(settings.kafka_bootstrap),
        client_id="moments-simulate",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        **kwargs,
    )
    try:
        await producer.start()
        await _publish(args, sim, producer, settings, stop, showcase)
    except KafkaError as exc:
        print(f"moments simulate: Kafka at {bootstrap} failed: {exc!r}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(TimeoutError, KafkaError):
            await asyncio.wait_for(producer.stop(), timeout=FLUSH_TIMEOUT_S)
    return 0


def run_simulation(args: argparse.Namespace) -> int:
    """Entry point of ``moments simulate``; returns the exit status."""
    return asyncio.run(_simulate(args))
