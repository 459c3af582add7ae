"""The worker's components on the engine: handlers per input topic, background work,
timers and rebalance hooks. :func:`install` wires them onto a runtime; this is the one
place the agents, the tables and the engine meet.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from agents.anniversaries import AnniversaryEvaluation
from agents.custom_close import CustomClose
from agents.drops import DropEvaluation
from agents.gauges import GAUGE_INTERVAL_S, refresh_gauges
from agents.plans import PlansHandler
from agents.ticks import TickScheduler, TicksHandlers
from agents.usage import UsageHandler
from app.faust_internals import (
    ConsumerHooks,
    ProducerInternals,
    attach,
    register_topics,
    standby_partitions,
)
from app.main import Runtime, build_runtime
from app.security import client_kwargs
from config.settings import Settings, to_ms
from domain.intake.distinct import distinct_retention_ms
from engine.background import Background, Backgrounds
from engine.changelogs import ChangelogReader
from engine.committers import Committer, PlainCommitter, TransactionalCommitter
from engine.engine import Engine, Handler
from engine.progress import BacklogWatch
from state.store import StoreOptions
from state.table import TableSpec
from tables import dedup, distinct
from tables.registry import TABLE_NAMES, table_specs

logger = logging.getLogger(__name__)


def worker_runtime(settings: Settings, registry: CollectorRegistry | None = None) -> Runtime:
    """The worker's runtime: the app factory's, with a key-count series for every table."""
    return build_runtime(settings, registry, tables=TABLE_NAMES)


def producer_factory(runtime: Runtime) -> Any:
    """Builds the engine's producers: big batches, acks from all replicas."""
    s = runtime.settings
    kwargs = client_kwargs(s)

    def build(**extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=list(s.kafka_bootstrap),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # a step hands over whole batches: nothing to wait for
            max_batch_size=512 * 1024,
            # Kafka 3.8+ answers some first sends of a transaction with a retriable
            # NOT_ENOUGH_REPLICAS; the default 100 ms backoff costs ~15% throughput.
            retry_backoff_ms=10,
            request_timeout_ms=30_000,
            **kwargs,
            **extra,
        )

    return build


def changelog_consumer_factory(runtime: Runtime) -> Any:
    """Builds the restore/standby consumer: no group, read_committed."""
    s = runtime.settings

    def build() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=list(s.kafka_bootstrap),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_kwargs(s),
        )

    return build


def install(runtime: Runtime) -> Engine:
    """Build the engine with every handler, timer and hook, and attach it to the app."""
    s = runtime.settings
    app = runtime.app
    horizon_ms = to_ms(s.dedup_horizon_s)
    specs = worker_tables(s)
    usage = UsageHandler(runtime)
    plans = PlansHandler(runtime)
    # The at_most rules of [[moments]] close each day, when the catalog has any.
    custom_close = CustomClose(runtime) if CustomClose.wanted(runtime) else None
    works: list[Background] = [DropEvaluation(runtime), AnniversaryEvaluation(runtime)]
    if custom_close is not None:
        works.append(custom_close)
    handlers: dict[str, Handler] = {
        s.topic_accounts: plans,
        s.topic_plans_forward: plans,
        s.topic_usage: usage,
        s.topic_rekey: usage,
        s.topic_ticks: TicksHandlers(custom_close),
    }
    committer: Committer
    factory = producer_factory(runtime)
    hooks = ConsumerHooks(app)
    if s.processing_guarantee == "exactly_once":
        committer = TransactionalCommitter(
            factory, s.app_id, s.app_id, internals=ProducerInternals()
        )
    else:

        async def commit_offsets(offsets: Any) -> None:
            await hooks.consumer.commit_offsets(offsets)

        committer = PlainCommitter(factory, commit_offsets, internals=ProducerInternals())
    engine = Engine(
        app_id=s.app_id,
        data_dir=s.data_dir,
        specs=specs,
        handlers=handlers,
        topic_order=(
            s.topic_accounts,
            s.topic_plans_forward,
            s.topic_usage,
            s.topic_rekey,
            s.topic_ticks,
        ),
        plans_topic=s.topic_accounts,
        plans_forwarded_topic=s.topic_plans_forward,
        # Half the shutdown timeout for the steps in flight; the rest closes producers,
        # the reader and the stores, and leaves the group.
        stop_grace_s=s.shutdown_timeout_s / 2,
        usage_topics=(s.topic_usage, s.topic_rekey),
        committer=committer,
        reader=ChangelogReader(
            changelog_consumer_factory(runtime), s.app_id, specs, runtime.clock.now_ms
        ),
        store_options=StoreOptions(
            cache_mb=s.rocksdb_cache_mb,
            write_buffer_mb=s.rocksdb_write_buffer_mb,
            probed=[spec.name for spec in specs if spec.probed],
        ),
        now_ms=runtime.clock.now_ms,
        background=Backgrounds(*works),
        maintenance=lambda store, now_ms: _expire(store, now_ms, horizon_ms),
        standby_replicas=s.standby_replicas,
        # Decoded plans, totals and daily values of the hottest accounts: ~80k objects
        # per worker (~120 MB measured on the peer benchmark's accounts).
        cached_objects=max(1000, 80_000 // s.partitions),
        hooks=hooks,
        on_step=lambda partition, messages, seconds: runtime.metrics.batch_seconds.observe(seconds),
        state_cleanup_delay_s=s.state_cleanup_delay_s,
        state_stale_after_s=s.state_stale_after_s,
    )
    register_topics(app, handlers)
    attach(app, engine, read_committed=s.processing_guarantee == "exactly_once")
    scheduler = TickScheduler(runtime, engine)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types receivers as sync-or-awaitable only
    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        await engine.on_revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers as sync-or-awaitable only
    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        runtime.metrics.rebalances.inc()
        standbys = standby_partitions(app, s.topic_usage)
        await engine.on_assigned(args[0], int(app.consumer_generation_id), standbys)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types receivers as sync-or-awaitable only
    async def on_shutdown(sender: Any, *args: Any, **kwargs: Any) -> None:
        await engine.stop()

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def start_engine() -> None:
        await engine.start()

    @app.timer(s.evaluation_check_s)  # type: ignore[untyped-decorator]
    async def evaluation_timer() -> None:
        await scheduler.check()

    backlog = BacklogWatch(time.monotonic)

    @app.timer(GAUGE_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def gauges_timer() -> None:
        refresh_gauges(runtime, engine, backlog)

    return engine


def worker_tables(s: Settings) -> tuple[TableSpec, ...]:
    """Every table of the worker, with the changelog retentions the settings call for."""
    retention_ms = distinct_retention_ms(s.daily_retention_days, to_ms(s.late_grace_s))
    return table_specs(to_ms(s.dedup_horizon_s), retention_ms)


def _expire(store: Any, now_ms: int, horizon_ms: int) -> None:
    removed = dedup.expire(store, now_ms, horizon_ms)
    if removed:
        logger.info("%s: %d dedup entries expired", store.path.name, removed)
    removed = distinct.expire(store, now_ms)
    if removed:
        logger.info("%s: %d distinct values expired", store.path.name, removed)
