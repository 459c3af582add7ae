"""``moments deliver``: settings, endpoints and topics checked, then one consumer loop per
endpoint until SIGTERM; or ``--replay``.

On SIGTERM the loops stop fetching; attempts in flight get a third of
``MOMENTS_SHUTDOWN_TIMEOUT`` to finish, the rest are abandoned (not committed: they are sent
again after the restart), what finished is committed, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.preflight import check_broker_access_sync
from app.security import client_kwargs
from commands.deliver.consumer import EndpointLoop
from commands.deliver.delivery import Deliverer
from commands.deliver.http import HttpPoster, new_session
from commands.deliver.metrics import DeliverMetrics, build_deliver_metrics
from commands.deliver.replay import replay
from commands.deliver.topics import deliver_topics, ensure_deliver_topics, event_topics, tier_topics
from commands.signals import install_stop_handlers
from config.settings import Settings, load_settings, unknown_variables
from domain.delivery.endpoints import Endpoint, load_endpoints
from domain.delivery.schedule import RetrySchedule
from domain.errors import EndpointsError, SettingsError
from domain.plans.catalog import load_catalog
from domain.wording.kinds import KINDS, event_kinds

logger = logging.getLogger(__name__)

#: How long a batch may keep a consumer from polling before Kafka moves its partitions
#: (aiokafka's max_poll_interval_ms): a batch to an endpoint that hangs takes its timeout per
#: attempt of one account's chain.
MAX_POLL_INTERVAL_MS = 15 * 60 * 1000


def now_ms() -> int:
    """Wall-clock time in milliseconds (due times and webhook-timestamp are wall clock)."""
    return time.time_ns() // 1_000_000


class KafkaRecorder:
    """Writes retry records and dead letters; returns once the brokers acknowledged."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def write(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        await self.producer.send_and_wait(topic, value, key=key, headers=list(headers))


def _schedule(settings: Settings) -> RetrySchedule:
    try:
        return RetrySchedule(settings.deliver_schedule_s)
    except ValueError as exc:
        text = ",".join(f"{d:g}s" for d in settings.deliver_schedule_s)
        raise SettingsError("MOMENTS_DELIVER_SCHEDULE", text, str(exc)) from None


def run_deliver(args: argparse.Namespace) -> int:
    """Entry point of ``moments deliver``; returns the exit status."""
    settings = load_settings(os.environ)
    for name in unknown_variables(os.environ):
        logger.warning("%s is not a setting of usage-moments (typo?)", name)
    kinds = event_kinds(load_catalog(settings.plans_file))
    endpoints = load_endpoints(settings.endpoints_file, os.environ, KINDS)
    if not endpoints:
        raise EndpointsError(f"{settings.endpoints_file}: no [[endpoints]]: nothing to deliver to")
    for endpoint in endpoints:
        for pattern in endpoint.kinds_matching_nothing(kinds):
            # Not an error: the catalog's rules may change without touching endpoints.toml.
            logger.warning(
                "endpoint %s: kinds %r matches no event kind of the catalog %s (typo?): "
                "nothing will be delivered for it",
                endpoint.name,
                pattern,
                settings.plans_file,
            )
    if args.endpoint is not None and args.endpoint not in {e.name for e in endpoints}:
        raise EndpointsError(
            f"--endpoint {args.endpoint}: no such endpoint in {settings.endpoints_file}"
        )
    schedule = _schedule(settings)
    kwargs = client_kwargs(settings)
    check_broker_access_sync(settings, kwargs)
    if args.replay:
        return asyncio.run(
            replay(
                settings,
                kwargs,
                endpoints,
                schedule,
                endpoint=args.endpoint,
                event_id=args.event_id,
                now_ms=now_ms(),
            )
        )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return asyncio.run(_serve(settings, endpoints, schedule, kinds))


def _web_app(metrics: DeliverMetrics, loops: Sequence[EndpointLoop]) -> web.Application:
    async def metrics_view(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        joined = {loop.name: loop.joined for loop in loops}
        return web.json_response({"ready": all(joined.values()), "endpoints": joined},
                                 status=200 if all(joined.values()) else 503)  # fmt: skip

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _serve(
    settings: Settings,
    endpoints: Sequence[Endpoint],
    schedule: RetrySchedule,
    kinds: Sequence[str],
) -> int:
    kwargs = client_kwargs(settings)
    await ensure_deliver_topics(
        settings, kwargs, deliver_topics(settings, endpoints, schedule, kinds)
    )
    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)
    metrics = build_deliver_metrics(
        CollectorRegistry(), [e.name for e in endpoints], schedule.labels()
    )
    bootstrap = list(settings.kafka_bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        client_id="moments-deliver",
        **kwargs,
    )
    session = new_session()
    poster = HttpPoster(session)
    recorder = KafkaRecorder(producer)
    loops: list[EndpointLoop] = []
    for endpoint in endpoints:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=settings.deliver_group(endpoint.name),
            client_id=f"moments-deliver-{endpoint.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=round(settings.session_timeout_s * 1000),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            **kwargs,
        )
        deliverer = Deliverer(
            endpoint=endpoint,
            schedule=schedule,
            tier_topics=tier_topics(settings, endpoint, schedule),
            dlq_topic=settings.topic_deliver_dlq,
            poster=poster,
            recorder=recorder,
            metrics=metrics,
            now_ms=now_ms,
        )
        loops.append(
            EndpointLoop(
                deliverer,
                consumer,
                event_topics(settings, endpoint, kinds),
                concurrency=settings.deliver_concurrency,
                batch_size=settings.deliver_batch_size,
                stop=stop,
                grace_s=settings.shutdown_timeout_s / 3,
                now_ms=now_ms,
            )
        )
    runner = web.AppRunner(_web_app(metrics, loops), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.deliver_web_port).start()
    code = 0
    try:
        await producer.start()
        for loop in loops:
            loop.subscribe()
            await loop.consumer.start()
        logger.info(
            "delivering to %s",
            ", ".join(f"{e.name} ({len(e.kinds)} kind patterns)" for e in endpoints),
        )
        tasks = [asyncio.create_task(loop.run(), name=f"deliver-{loop.name}") for loop in loops]
        waiting = asyncio.create_task(stop.wait())
        while not stop.is_set():
            metrics.ready.set(1 if all(loop.joined for loop in loops) else 0)
            done, _ = await asyncio.wait(
                [*tasks, waiting], timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
            # A loop ends by itself only when stop is set (a SIGTERM that came meanwhile is
            # not a failure); else it raised, and the whole process stops with status 1.
            ended = [t for t in done if t is not waiting]
            if ended and not stop.is_set():
                for task in ended:
                    error = task.exception()
                    logger.error("endpoint loop %s ended: %r", task.get_name(), error)
                code = 1
                stop.set()
        logger.info("stopping: finishing or abandoning the deliveries in flight")
        await asyncio.wait(tasks, timeout=settings.shutdown_timeout_s * 2 / 3)
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("endpoint loop %s failed", task.get_name(), exc_info=task.exception())
                code = 1
    except KafkaError as exc:
        logger.error("Kafka failed: %r; check MOMENTS_KAFKA_BOOTSTRAP and the brokers", exc)
        code = 1
    finally:
        for loop in loops:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(loop.consumer.stop(), timeout=10)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(producer.stop(), timeout=10)
        await session.close()
        await runner.cleanup()
    return code
