"""Builds the one ``faust.App`` of a worker process, and what every agent shares.

Importing this module reads the settings and the plan catalog once; a bad value
raises :class:`~domain.errors.ConfigError`, which the CLI turns into one line and
exit status 2. This module imports nothing from ``agents/`` or ``tables/``: the
worker discovers them by name (``autodiscover``).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, cast

import faust
from faust.types import TableT
from prometheus_client import CollectorRegistry

from app.clock import Clock, ManualClock, WallClock
from app.metrics import Metrics, build_metrics
from app.security import broker_credentials
from app.topics import Topics, build_topics
from config.settings import Settings, load_settings
from domain.catalog import Catalog, load_catalog
from domain.messages import Templates, load_templates

logger = logging.getLogger(__name__)

#: Tables of the worker, named here so metrics and the RocksDB budget know them up front.
TABLE_NAMES = ("accounts", "period-totals", "dedup", "announced", "daily", "evaluations")


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    """Per-partition RocksDB options that keep the whole worker inside its budget.

    Faust's defaults give every table partition its own 2 GiB block cache and
    3 x 64 MiB memtables, which with a few tables and a few dozen partitions
    promises far more memory than a container has. We share the configured
    cache out over every table partition this worker could hold.
    """
    dbs = max(1, len(TABLE_NAMES) * settings.partitions)
    cache_bytes = max(1 << 20, settings.rocksdb_cache_mb * (1 << 20) // dbs)
    return {
        "block_cache_size": cache_bytes,
        "block_cache_compressed_size": 0,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * (1 << 20),
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * (1 << 20),
        "max_open_files": 256,
    }


def new_table(app: faust.App, settings: Settings, name: str, help: str) -> TableT[str, bytes]:
    """A RocksDB-backed, changelogged table of str keys and raw byte values.

    Keys are stored and changelogged as plain UTF-8, not Faust's default JSON, so a
    changelog key hashes to the same partition as the input record's key; table
    routing of ``/accounts/{id}`` depends on that. Faust derives the key codec from
    ``key_type`` alone, so the table is declared with ``bytes`` keys (the raw codec,
    which also takes ``str``); every caller passes ``str`` account ids.
    """
    table = app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        default=None,
        partitions=settings.partitions,
        options=rocksdb_options(settings),
        help=help,
    )
    return cast(TableT[str, bytes], table)


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app from settings (no I/O until the worker starts)."""
    advertised = settings.web_advertised_host or socket.gethostname()
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap],
        broker_credentials=broker_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval_s,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=advertised,
        canonical_url=f"http://{advertised}:{settings.web_port}",
        # Our own /metrics replaces Faust's statistics pages.
        web_metrics_enabled=False,
        # Discovery is ours (app.cli.load_components): Faust's only logs a warning
        # when a module fails to import, and the worker then runs without it.
        autodiscover=False,
        origin="app",
    )


settings: Settings = load_settings(os.environ)
catalog: Catalog = load_catalog(settings.plans_file)
templates: Templates = load_templates(settings.messages_file)
clock: Clock = (
    WallClock()
    if settings.clock == "wall"
    else ManualClock(settings.clock_start_ms or WallClock().now_ms())
)
metrics: Metrics = build_metrics(CollectorRegistry(auto_describe=True), TABLE_NAMES)
app: faust.App = build_app(settings)
topics: Topics = build_topics(app, settings)
