"""Builds a worker's application: the ``faust.App`` and what every component shares.

Nothing is built on import: :func:`build_runtime` takes settings and returns a
:class:`Runtime`; the worker command wires the engine, tables, handlers and views
onto it (:mod:`commands.worker`). This module imports nothing from ``agents/`` or
``tables/``: the worker passes the tables' names in.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from app.clock import Clock, ManualClock, WallClock
from app.faust_internals import MomentsApp, PromptTableManager
from app.metrics import Metrics, build_metrics
from app.security import broker_credentials
from config.settings import Settings
from domain.errors import CatalogError
from domain.plans.catalog import Catalog, load_catalog
from domain.wording.cloudevents_out import event_headers
from domain.wording.kinds import event_kinds
from domain.wording.templates import Templates, load_templates
from engine.step import Step
from state import jsonbytes

logger = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app from settings (no I/O until the worker starts).

    Faust runs in at-least-once mode whatever the processing guarantee: the engine
    does exactly-once itself, with its own transactional producers, and Faust has no
    topic of its own to commit (see ``app.faust_internals``).
    """
    advertised = settings.web_advertised_host or socket.gethostname()
    return MomentsApp(
        settings.app_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap],
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        processing_guarantee="at_least_once",
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=settings.batch_size,
        # Bigger fetches make bigger steps: fewer transactions per record.
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_session_timeout=settings.session_timeout_s,
        # A tenth of the session: survivors hear of a rebalance sooner after a crash.
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 10),
        consumer_group_instance_id=settings.instance_id,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # Faust's PartitionAssignor (co-partitioning of equal-count topics) is used
        # only with standbys or changelog tables; we have no Faust tables.
        table_standby_replicas=max(1, settings.standby_replicas),
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=advertised,
        canonical_url=f"http://{advertised}:{settings.web_port}",
        web_metrics_enabled=False,
        autodiscover=False,
        origin="app",
        TableManager=PromptTableManager,
        # No Faust leader election (nothing here runs on the leader only): its topic,
        # created as the consumer starts, was missing from the group's first metadata
        # once nothing slept before subscribing (PromptTableManager).
        topic_disable_leader=True,
    )


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a worker's components share, built once from settings."""

    settings: Settings
    catalog: Catalog
    templates: Templates
    clock: Clock
    metrics: Metrics
    app: faust.App

    @property
    def daily_days(self) -> int:
        """Days of daily state kept, today included: see :func:`daily_days_kept`."""
        return daily_days_kept(self.catalog, self.settings)

    def send_event(self, step: Step, kind: str, key: bytes, payload: Mapping[str, Any]) -> None:
        """Queue the event ``payload`` of ``kind`` in ``step``: on its topic, keyed ``key`` (the
        account id), its JSON as the value and its CloudEvents binary-mode headers beside it.
        Every event record the worker sends goes through here."""
        step.send(
            self.settings.event_topic(kind),
            key,
            jsonbytes.dumps(payload),
            headers=event_headers(payload, self.settings.event_source.encode()),
        )


def build_runtime(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    tables: tuple[str, ...] = (),
) -> Runtime:
    """Read the catalog and templates (raising ConfigError on a bad one), build the app.

    ``tables`` names the tables whose metric series exist from the first scrape (the
    worker passes every table of :mod:`tables.registry`).
    """
    catalog = load_catalog(settings.plans_file)
    _check_windows(catalog, settings)
    # Templates need a variant only for the aggregations the catalog uses (contract 1.4).
    templates = load_templates(settings.messages_file, {"sum", *catalog.aggregations.values()})
    clock: Clock = (
        WallClock()
        if settings.clock == "wall"
        else ManualClock(settings.clock_start_ms or WallClock().now_ms())
    )
    metrics = build_metrics(
        registry or CollectorRegistry(auto_describe=True),
        tables,
        (settings.topic_usage, settings.topic_accounts),
        event_kinds(catalog),
    )
    return Runtime(settings, catalog, templates, clock, metrics, build_app(settings))


def daily_days_kept(catalog: Catalog, settings: Settings) -> int:
    """Days of daily state kept, today included: MOMENTS_DAILY_RETENTION_DAYS, or one day more
    than the longest ``at_most`` window when that is more (contract 3.8).

    An ``at_most`` window of N days is judged the day after the day it ends with, when the
    usage path and the drop pass have already pruned the days to today and the ones before
    it: with 35 kept, a 35-day window's first day would read as 0 (an account whose only call
    was that day would be "quiet" for 35 days)."""
    longest = max(
        (rule.window_days or 0 for rule in catalog.moments if not rule.at_least), default=0
    )
    return max(settings.daily_retention_days, longest + 1)


def _check_windows(catalog: Catalog, settings: Settings) -> None:
    """Every rolling window of ``[[moments]]`` fits in the daily state kept (contract 3.8)."""
    kept = daily_days_kept(catalog, settings)
    for rule in catalog.moments:
        days = rule.window_days
        if days is None:
            continue
        needed = days if rule.at_least else days + 1
        if needed > kept:  # never with windows of at most 35 days; kept for a longer limit
            raise CatalogError(
                f"{settings.plans_file}: moment {rule.id!r}: window: {rule.window} needs "
                f"{needed} days of daily state, more than MOMENTS_DAILY_RETENTION_DAYS={kept} "
                f"keeps; shorten it or set MOMENTS_DAILY_RETENTION_DAYS={needed}"
            )
